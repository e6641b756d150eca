//! `relay-client forward LOCAL AGENT/TARGET`: a local TCP listener; every
//! accepted connection becomes one stream through the relay. The client's
//! first bytes go right behind `Open` (no round trip per connection).

use std::sync::Arc;

use relay_net::splice::{splice, tcp_halves, End};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::stream::Answered;
use crate::{Client, Destination};

/// Accepts on `listener` until `shutdown`, forwarding each connection to `dest`.
pub async fn run(
    client: Arc<Client>,
    listener: TcpListener,
    dest: Destination,
    shutdown: CancellationToken,
) {
    let local = listener.local_addr().ok();
    tracing::debug!(?local, %dest, "forwarding");
    crate::listen::serve_each(listener, shutdown, |tcp, peer| {
        let span = tracing::debug_span!("stream", %peer, %dest);
        one(client.clone(), tcp, dest.clone()).instrument(span)
    })
    .await;
}

/// Forwards one accepted connection; a refusal is logged with its message
/// and the local connection is reset (RST), never closed as if complete.
pub async fn one(client: Arc<Client>, tcp: TcpStream, dest: Destination) {
    let (mut tcp_read, mut tcp_write) = tcp_halves(tcp);
    let (mut send, recv) = match client.open_raw(dest.open()).await {
        Ok(streams) => streams,
        Err(e) => {
            tracing::warn!(%dest, err = %e, "cannot open stream");
            relay_net::splice::ChunkWrite::abort(&mut tcp_write, proto::ErrorCode::STREAM_ABORTED);
            return;
        }
    };
    let mut recv = Answered::new(recv);
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
            let reason = client.explain(f.reason.clone()).await;
            tracing::warn!(%dest, code = %f.code, %reason, "connection refused");
        }
        (_, Some(f)) => tracing::info!(%dest, reason = %f, "connection failed"),
        (_, None) => tracing::debug!(
            up = outcome.forward.bytes,
            down = outcome.backward.bytes,
            "connection closed"
        ),
    }
}
