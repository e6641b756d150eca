//! Serving one stream: read its first frame, decide who is asking, and
//! hand the stream to its kind, each in a file of its own:
//!
//! ```text
//! Forwarded{caller, open}  from the relay ──┐
//! Open  from a client on a direct path, ────┴─▶ Tcp   ─▶ tcp    (allowlist → dial → Accepted → splice)
//!       checked and audited by direct                  the bench target ─▶ bench
//!                                                Socks ─▶ socks  (resolve → rules → dial → splice)
//!                                                Shell, Exec ─▶ shell_exec (start, log how it ended)
//! Grant  from the relay ─▶ grant (held until the relay ends the stream)
//! ```
//!
//! Nothing here assumes the relay is the peer beyond the one rule that
//! only a peer with the `relay` role may name a caller or grant a path
//! (DESIGN "end-to-end mode": keep the seam).
//!
//! Every stream runs in the span of [`span`]: its id, the agent, and, once
//! the first frame is read, the caller, target and kind, so each log line
//! of the stream carries them.

use std::sync::Arc;

use proto::{ErrorCode, Frame, Identity, Open, Refused, Role, StreamKind};
use relay_net::cert::PeerCert;
use relay_net::framed::FrameReader;
use tracing::field::{display, Empty};

use crate::shared::Shared;

pub mod bench;
pub mod direct;
pub mod grant;
mod recording;
pub mod shell_exec;
pub mod socks;
pub mod tcp;

/// The span of one stream: its id on its connection and the agent now;
/// caller, target and kind are recorded once the first frame is read (the
/// connection's span says which relay or direct caller it came over).
pub fn span(shared: &Shared, recv: &quinn::RecvStream) -> tracing::Span {
    tracing::info_span!(
        "stream",
        id = recv.id().index(),
        agent = %shared.me.name,
        caller = Empty,
        target = Empty,
        kind = Empty,
    )
}

/// Serves one bidirectional stream opened by `peer`. Runs in its [`span`].
pub async fn serve(
    shared: Arc<Shared>,
    peer: Arc<PeerCert>,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let mut reader = FrameReader::new(recv);
    let frame = match reader.expect(shared.first_frame_timeout).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(err = %e, "bad stream header");
            let _ = send.reset(e.code().0.into());
            let _ = reader.recv.stop(e.code().0.into());
            return;
        }
    };
    let span = tracing::Span::current();
    let (caller, open) = match frame {
        // Only the relay may speak for someone else: identity comes from the
        // TLS session, and a caller field is trusted only from a relay.
        Frame::Forwarded(f) if peer.identity.role == Role::Relay => (f.caller, f.open),
        Frame::Forwarded(_) => {
            let r = Refused::new(ErrorCode::UNAUTHORIZED, "only the relay may name a caller");
            return shared.refuse(&mut send, &mut reader.recv, r).await;
        }
        // A grant for a direct path, held while the relay keeps the stream.
        Frame::Grant(g) if peer.identity.role == Role::Relay => {
            span.record("caller", display(&g.caller));
            span.record("kind", display("grant"));
            return grant::hold(&shared, g, send, reader).await;
        }
        // On a direct path the caller is the peer itself, and the relay's
        // grant for its certificate says what it may open; the relay cannot
        // see the stream, so the agent's audit log is its record.
        Frame::Open(open) if peer.identity.role == Role::Client => {
            record(&span, &peer.identity, &open);
            let admitted = match direct::admit(&shared, &peer, &open).await {
                Ok(admitted) => admitted,
                Err(r) => return shared.refuse(&mut send, &mut reader.recv, r).await,
            };
            let serving = dispatch(&shared, &peer.identity, &open, send, reader);
            return admitted.serve(&shared, serving).await;
        }
        other => {
            let r = Refused::new(
                ErrorCode::PROTOCOL_VIOLATION,
                format!(
                    "a stream must start with Forwarded, not {}",
                    other.frame_type()
                ),
            );
            return shared.refuse(&mut send, &mut reader.recv, r).await;
        }
    };
    record(&span, &caller, &open);
    dispatch(&shared, &caller, &open, send, reader).await;
}

/// Hands an authorized stream to its kind, counted against the caller's
/// share of the agent for as long as it lasts, whatever its kind and path.
async fn dispatch(
    shared: &Shared,
    caller: &Identity,
    open: &Open,
    mut send: quinn::SendStream,
    mut reader: FrameReader,
) {
    let _slot = match shared.stream_slot(caller) {
        Ok(slot) => slot,
        Err(r) => {
            tracing::warn!(reason = %r.message, "stream refused: per-caller limit");
            return shared.refuse(&mut send, &mut reader.recv, r).await;
        }
    };
    match &open.kind {
        StreamKind::Tcp => tcp::serve(shared, caller, &open.target, send, reader).await,
        StreamKind::Socks { dest } => socks::serve(shared, caller, dest, send, reader).await,
        StreamKind::Shell { .. } | StreamKind::Exec { .. } => {
            shell_exec::serve(shared, caller, &open.kind, send, reader).await;
        }
        StreamKind::Recording { name } => {
            recording::serve(shared, caller, name, send, reader).await;
        }
    }
}

/// Records who asked for what in the stream's span.
fn record(span: &tracing::Span, caller: &Identity, open: &Open) {
    span.record("caller", display(caller));
    span.record("kind", display(open.kind.as_str()));
    match &open.kind {
        StreamKind::Socks { dest } => span.record("target", display(dest)),
        _ => span.record("target", display(&open.target)),
    };
}
