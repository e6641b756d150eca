//! `relay-client connect AGENT/TARGET`: one stream on stdin/stdout, for
//! `ssh -o ProxyCommand='relay-client ... connect aks-prod/ssh' host`.

use relay_net::splice::{splice, End, Failure, IoRead, IoWrite};

use crate::{AgentTarget, Client, OpenError};

/// Pipes stdin/stdout through one stream until both directions end.
///
/// # Errors
/// The refusal or failure, with its message.
pub async fn run(client: &Client, dest: &AgentTarget) -> Result<(), OpenError> {
    let (mut send, mut recv) = client.open_early(dest.open()).await?;
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
        (End::ReadFailed(f), _) if outcome.backward.bytes == 0 => Some(f),
        (_, Some(f)) => Some(f),
        (_, None) => None,
    };
    let failure = match failure {
        // The relay connection's close, if it closed, is the part a person
        // can act on (revoked, relay shutting down).
        Some(Failure { code, reason, .. }) => Some(match client.relay_lost().await {
            Some(lost) => (*code, format!("{dest}: {lost}")),
            None => (*code, format!("{dest}: {reason}")),
        }),
        None => None,
    };
    client.close().await;
    match failure {
        None => Ok(()),
        Some((code, message)) => Err(OpenError::Refused(proto::Refused { code, message })),
    }
}
