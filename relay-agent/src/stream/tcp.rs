//! A `Tcp` stream to an exposed target: look the target up in the
//! allowlist, dial it (with a deadline, failures mapped to the protocol's
//! error codes and a message that names the target), answer `Accepted`,
//! splice. The built-in `bench` target is served by [`super::bench`]
//! instead of being dialled.

use std::time::Duration;

use proto::{Accepted, ErrorCode, Identity, Refused, StreamKind, TargetName};
use relay_net::admin::GaugeGuard;
use relay_net::framed::{write_frame, FrameReader};
use relay_net::splice::{splice, tcp_halves};
use tokio::net::TcpStream;

use crate::allowlist::Target;
use crate::metrics::KindLabel;
use crate::shared::Shared;

/// Serves a `Tcp` open for `target` by `caller`.
pub async fn serve(
    shared: &Shared,
    caller: &Identity,
    target: &TargetName,
    mut send: quinn::SendStream,
    mut reader: FrameReader,
) {
    let addr = match shared.allowlist.get(target) {
        Some(Target::Tcp { addr }) => addr,
        Some(Target::Bench) => return super::bench::serve(shared, send, reader).await,
        None => {
            tracing::warn!("open for a target not exposed");
            let r = Refused::new(
                ErrorCode::TARGET_NOT_EXPOSED,
                format!("agent {} does not expose target {target}", shared.me.name),
            );
            return shared.refuse(&mut send, &mut reader.recv, r).await;
        }
    };
    // One deadline for waiting on the caller's own dials and dialling, so
    // the answer comes before the relay's answer timeout.
    let deadline = tokio::time::Instant::now() + shared.dial_timeout;
    let dialing = match shared.dial_permit(caller, deadline).await {
        Ok(permit) => permit,
        Err(r) => {
            tracing::warn!(reason = %r.message, "dial refused: limit");
            return shared.refuse(&mut send, &mut reader.recv, r).await;
        }
    };
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let dialed = dial(target, addr, left).await;
    drop(dialing);
    let tcp = match dialed {
        Ok(tcp) => tcp,
        Err(r) => {
            tracing::info!(code = %r.code, reason = %r.message, "dial failed");
            return shared.refuse(&mut send, &mut reader.recv, r).await;
        }
    };
    accept_and_splice(shared, &StreamKind::Tcp, send, reader, tcp).await;
}

/// Connects to `addr` (target `name`); a refusal to send back on failure.
///
/// # Errors
/// `TARGET_TIMEOUT`, `TARGET_REFUSED` or `TARGET_UNREACHABLE` with a message.
pub async fn dial(name: &TargetName, addr: &str, timeout: Duration) -> Result<TcpStream, Refused> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Err(_) => Err(Refused::new(
            ErrorCode::TARGET_TIMEOUT,
            format!("target {name} ({addr}) did not answer within {timeout:?}"),
        )),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(Refused::new(
            ErrorCode::TARGET_REFUSED,
            format!("target {name} ({addr}) refused the connection"),
        )),
        Ok(Err(e)) => Err(Refused::new(
            ErrorCode::TARGET_UNREACHABLE,
            format!("target {name} ({addr}) unreachable: {e}"),
        )),
    }
}

/// Answers `Accepted` and splices the stream with a dialled connection
/// (a `Tcp` or `Socks` stream), counted in the stream metrics while open.
pub async fn accept_and_splice(
    shared: &Shared,
    kind: &StreamKind,
    mut send: quinn::SendStream,
    reader: FrameReader,
    tcp: TcpStream,
) {
    if write_frame(&mut send, Accepted).await.is_err() {
        return;
    }
    let m = &shared.metrics;
    m.streams
        .get_or_create(&KindLabel {
            kind: kind.as_str().to_owned(),
        })
        .inc();
    let _open = GaugeGuard::new(&m.streams_open);
    let (mut recv, early) = reader.into_parts();
    let (mut tcp_read, mut tcp_write) = tcp_halves(tcp);
    let outcome = splice(
        &mut recv,
        &mut send,
        &mut tcp_read,
        &mut tcp_write,
        early,
        bytes::Bytes::new(),
    )
    .await;
    crate::audit::count(outcome.forward.bytes, outcome.backward.bytes);
    match outcome.failure() {
        None => tracing::debug!(
            up = outcome.forward.bytes,
            down = outcome.backward.bytes,
            "stream closed"
        ),
        Some(f) => {
            tracing::debug!(up = outcome.forward.bytes, down = outcome.backward.bytes, err = %f, "stream failed")
        }
    }
}
