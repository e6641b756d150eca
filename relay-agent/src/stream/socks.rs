//! A `Socks` stream: the caller names the destination, so the agent
//! resolves it here, checks every address against its rules and deny list
//! ([`crate::socks`]), dials only what passed, answers `Accepted`, splices.

use proto::{Destination, ErrorCode, Identity, Refused, StreamKind};
use relay_net::framed::FrameReader;

use crate::shared::Shared;

/// Serves a `Socks` open for `dest` by `caller`.
pub async fn serve(
    shared: &Shared,
    caller: &Identity,
    dest: &Destination,
    mut send: quinn::SendStream,
    mut reader: FrameReader,
) {
    if !shared.socks.enabled() {
        let r = Refused::new(
            ErrorCode::UNSUPPORTED,
            format!(
                "agent {} does not offer SOCKS (it runs without --allow-socks)",
                shared.me.name
            ),
        );
        return shared.refuse(&mut send, &mut reader.recv, r).await;
    }
    // One deadline for waiting on the caller's own dials, resolving and
    // dialling, so the answer comes before the relay's answer timeout.
    let deadline = tokio::time::Instant::now() + shared.dial_timeout;
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    let dialing = match shared.dial_permit(caller, deadline).await {
        Ok(permit) => permit,
        Err(r) => {
            tracing::warn!(reason = %r.message, "socks dial refused: limit");
            return shared.refuse(&mut send, &mut reader.recv, r).await;
        }
    };
    let dialed = match shared
        .socks
        .resolve(shared.me.name.as_str(), dest, left())
        .await
    {
        Ok(addrs) => crate::socks::dial(dest, &addrs, left()).await,
        Err(r) => Err(r),
    };
    drop(dialing);
    let tcp = match dialed {
        Ok(tcp) => tcp,
        Err(r) => {
            if r.code == ErrorCode::TARGET_NOT_EXPOSED {
                tracing::warn!(reason = %r.message, "socks destination refused");
            } else {
                tracing::info!(code = %r.code, reason = %r.message, "socks dial failed");
            }
            return shared.refuse(&mut send, &mut reader.recv, r).await;
        }
    };
    tracing::debug!(peer = ?tcp.peer_addr().ok(), "socks connected");
    let kind = StreamKind::Socks { dest: dest.clone() };
    super::tcp::accept_and_splice(shared, &kind, send, reader, tcp).await;
}
