//! `relay-client forward LOCAL AGENT/TARGET`: a local TCP listener; every
//! accepted connection becomes one stream through the relay. The client's
//! first bytes go right behind `Open` (no round trip per connection).
//!
//! A forward keeps running through errors that can heal (relay restarting,
//! agent offline: each connection is reset with the reason logged), and
//! stops on one that cannot (the credential expired): it says so once and
//! [`run`] returns it, instead of failing every connection the same way.

use std::sync::Arc;

use relay_net::splice::{splice, tcp_halves, End};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{AgentTarget, Client, OpenError};

/// Accepts on `listener` until `shutdown`, forwarding each connection to
/// `dest`. An error that trying again cannot heal cancels `shutdown` (so
/// the forwards that share it stop too) and is returned.
///
/// # Errors
/// The first permanent error ([`OpenError::is_permanent`]).
pub async fn run(
    client: Arc<Client>,
    listener: TcpListener,
    dest: AgentTarget,
    shutdown: CancellationToken,
) -> Result<(), OpenError> {
    let local = listener.local_addr().ok();
    tracing::debug!(?local, %dest, "forwarding");
    crate::listen::serve_until_permanent(listener, shutdown, |tcp, peer| {
        let span = tracing::debug_span!("stream", %peer, %dest);
        one(client.clone(), tcp, dest.clone()).instrument(span)
    })
    .await
}

/// Forwards one accepted connection; a refusal is logged with its message
/// and the local connection is reset (RST), never closed as if complete.
///
/// # Errors
/// Only a permanent error (the connection is reset all the same); every
/// other failure is logged here.
pub async fn one(client: Arc<Client>, tcp: TcpStream, dest: AgentTarget) -> Result<(), OpenError> {
    let (mut tcp_read, mut tcp_write) = tcp_halves(tcp);
    let (mut send, mut recv) = match client.open_early(dest.open()).await {
        Ok(streams) => streams,
        Err(e) => {
            relay_net::splice::ChunkWrite::abort(&mut tcp_write, proto::ErrorCode::STREAM_ABORTED);
            if e.is_permanent() {
                return Err(e);
            }
            tracing::warn!(%dest, err = %e, "cannot open stream");
            return Ok(());
        }
    };
    let outcome = splice(
        &mut tcp_read,
        &mut tcp_write,
        &mut recv,
        &mut send,
        bytes::Bytes::new(),
        bytes::Bytes::new(),
    )
    .await;
    match (&outcome.backward.end, outcome.failure()) {
        (End::ReadFailed(f), _) if outcome.backward.bytes == 0 => {
            let reason = match client.relay_lost().await {
                Some(lost) => lost.to_string(),
                None => f.reason.clone(),
            };
            tracing::warn!(%dest, code = %f.code, %reason, "connection refused");
        }
        (_, Some(f)) => tracing::info!(%dest, reason = %f, "connection failed"),
        (_, None) => tracing::debug!(
            up = outcome.forward.bytes,
            down = outcome.backward.bytes,
            "connection closed"
        ),
    }
    Ok(())
}
