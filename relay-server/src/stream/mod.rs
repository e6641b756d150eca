//! One client stream: its first frame names its kind, and each kind has a
//! file of its own. Every kind asks [`crate::authorize`] first.
//!
//! ```text
//! first frame ─▶ Open   ─▶ open::serve   (authorize, audit, agent, answer, splice)
//!             ├▶ List   ─▶ list::serve   (the agents and what the caller may open)
//!             └▶ Direct ─▶ direct::serve (grant, connection-ID routes, audit)
//! ```

use std::sync::Arc;

use proto::{ErrorCode, Frame, Refused};
use relay_net::cert::PeerCert;
use relay_net::framed::{refuse, FrameReader};

use crate::Shared;

mod direct;
mod list;
pub(crate) mod open;

/// Reads the first frame of a client's stream and serves the stream.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    peer: PeerCert,
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let mut reader = FrameReader::new(recv);
    let frame = match reader.expect(shared.limits.first_frame_timeout).await {
        Ok(frame) => frame,
        Err(e) => {
            tracing::debug!(err = %e, "bad first frame");
            let _ = send.reset(e.code().0.into());
            let _ = reader.recv.stop(e.code().0.into());
            return;
        }
    };
    let span = tracing::Span::current();
    match &frame {
        Frame::Open(o) => {
            span.record("agent", tracing::field::display(&o.agent));
            span.record("target", tracing::field::display(&o.target));
            span.record("kind", tracing::field::display(o.kind.as_str()));
        }
        Frame::Direct(d) => {
            span.record("agent", tracing::field::display(&d.agent));
            span.record("kind", tracing::field::display("direct"));
        }
        _ => {}
    }
    match frame {
        Frame::Open(o) => {
            open::serve(
                &shared,
                &peer,
                shared.remote(conn.remote_address()),
                send,
                reader,
                o,
            )
            .await
        }
        Frame::List(_) => list::serve(&shared, &peer, send).await,
        Frame::Direct(d) => direct::serve(&shared, &peer, &conn, send, reader, d).await,
        Frame::Forwarded(_) => {
            tracing::warn!("client sent Forwarded");
            let r = Refused::new(
                ErrorCode::UNAUTHORIZED,
                "only the relay may name a caller: clients send Open, not Forwarded",
            );
            refuse(&mut send, &mut reader.recv, r).await;
        }
        other => {
            let r = Refused::new(
                ErrorCode::PROTOCOL_VIOLATION,
                format!(
                    "a stream must start with Open, List or Direct, not {:?}",
                    other.frame_type()
                ),
            );
            refuse(&mut send, &mut reader.recv, r).await;
        }
    }
}
