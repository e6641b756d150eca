//! Serving one stream: `Forwarded` (from the relay) → checks → dial →
//! `Accepted` → splice (or, for the built-in `bench` target, checks →
//! `Accepted` → [`crate::bench::serve`]). Nothing here assumes the relay is the peer beyond
//! the one rule that only a peer with the `relay` role may name a caller
//! (DESIGN "end-to-end mode": keep the seam).

use std::sync::Arc;
use std::time::Duration;

use proto::{Accepted, ErrorCode, Frame, Identity, Refused, Role, StreamKind};
use relay_net::cert::PeerCert;
use relay_net::framed::{refuse, write_frame, FrameReader};
use relay_net::splice::{splice, tcp_halves};

use crate::allowlist::{Allowlist, Target};

/// What every stream handler needs.
#[derive(Debug)]
pub struct StreamContext {
    /// The agent's own identity, for messages.
    pub me: Identity,
    /// Exposed targets.
    pub allowlist: Allowlist,
    /// Deadline for dialling a target.
    pub dial_timeout: Duration,
    /// Deadline for the first frame of a stream.
    pub first_frame_timeout: Duration,
}

/// Serves one bidirectional stream opened by `peer`.
pub async fn serve(
    ctx: Arc<StreamContext>,
    peer: Arc<PeerCert>,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let mut reader = FrameReader::new(recv);
    let frame = match reader.expect(ctx.first_frame_timeout).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(err = %e, "bad stream header");
            let _ = send.reset(e.code().0.into());
            let _ = reader.recv.stop(e.code().0.into());
            return;
        }
    };
    let (caller, open) = match frame {
        // Only the relay may speak for someone else: identity comes from the
        // TLS session, and a caller field is trusted only from a relay.
        Frame::Forwarded(f) if peer.identity.role == Role::Relay => (f.caller, f.open),
        Frame::Forwarded(_) => {
            let r = Refused::new(ErrorCode::UNAUTHORIZED, "only the relay may name a caller");
            return refuse(&mut send, &mut reader.recv, r).await;
        }
        Frame::Open(open) if peer.identity.role == Role::Client => (peer.identity.clone(), open),
        other => {
            let r = Refused::new(
                ErrorCode::PROTOCOL_VIOLATION,
                format!(
                    "a stream must start with Forwarded, not {}",
                    other.frame_type()
                ),
            );
            return refuse(&mut send, &mut reader.recv, r).await;
        }
    };
    let span =
        tracing::debug_span!("stream", caller = %caller, target = %open.target, kind = %open.kind);
    let _enter = span.enter();
    if !matches!(open.kind, StreamKind::Tcp) {
        let r = Refused::new(
            ErrorCode::UNSUPPORTED,
            format!(
                "agent {} does not offer {} sessions",
                ctx.me.name, open.kind
            ),
        );
        return refuse(&mut send, &mut reader.recv, r).await;
    }
    let Some(target) = ctx.allowlist.get(&open.target) else {
        tracing::warn!(caller = %caller, target = %open.target, "open for a target not exposed");
        let r = Refused::new(
            ErrorCode::TARGET_NOT_EXPOSED,
            format!(
                "agent {} does not expose target {}",
                ctx.me.name, open.target
            ),
        );
        return refuse(&mut send, &mut reader.recv, r).await;
    };
    let addr = match target {
        Target::Tcp { addr } => addr,
        Target::Bench => {
            // The built-in benchmark: the stream is served here instead of
            // being spliced to a dialled connection.
            if write_frame(&mut send, Accepted).await.is_err() {
                return;
            }
            let (mut recv, early) = reader.into_parts();
            match crate::bench::serve(&mut recv, &mut send, early, ctx.first_frame_timeout).await {
                Ok(s) => {
                    tracing::debug!(mode = ?s.mode, up = s.read, down = s.written, "bench stream closed")
                }
                Err(f) => tracing::debug!(err = %f, "bench stream failed"),
            }
            return;
        }
    };
    let tcp = match crate::dial::dial(&open.target, addr, ctx.dial_timeout).await {
        Ok(tcp) => tcp,
        Err(r) => {
            tracing::info!(code = %r.code, reason = %r.message, "dial failed");
            return refuse(&mut send, &mut reader.recv, r).await;
        }
    };
    if write_frame(&mut send, Accepted).await.is_err() {
        return;
    }
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
