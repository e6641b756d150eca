//! `relay-client connect AGENT/TARGET`: one stream on stdin/stdout, for
//! `ssh -o ProxyCommand='relay-client ... connect aks-prod/ssh' host`.

use relay_net::splice::{splice, End, Failure, IoRead, IoWrite};

use crate::stream::Answered;
use crate::{Client, Destination, OpenError};

/// Pipes stdin/stdout through one stream until both directions end.
///
/// # Errors
/// The refusal or failure, with its message.
pub async fn run(client: &Client, dest: &Destination) -> Result<(), OpenError> {
    let (mut send, recv) = client.open_raw(dest.open()).await?;
    let mut recv = Answered::new(recv);
    let mut stdin = IoRead::new(tokio::io::stdin());
    let mut stdout = IoWrite::new(tokio::io::stdout());
    let outcome = splice(
        &mut stdin,
        &mut stdout,
        &mut recv,
        &mut send,
        bytes::Bytes::new(),
        bytes::Bytes::new(),
    )
    .await;
    let failure = match (&outcome.backward.end, outcome.failure()) {
        (End::ReadFailed(Failure { code, reason, .. }), _) if outcome.backward.bytes == 0 => {
            Some(format!("{dest}: {}", client.explain(reason.clone()).await)).map(|m| (*code, m))
        }
        (_, Some(f)) => Some((
            f.code,
            format!("{dest}: {}", client.explain(f.reason.clone()).await),
        )),
        (_, None) => None,
    };
    client.close().await;
    match failure {
        None => Ok(()),
        Some((code, message)) => Err(OpenError::Refused(proto::Refused { code, message })),
    }
}
