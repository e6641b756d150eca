//! An agent's control stream: `Register` → `Registered`, then held open
//! until the agent leaves or the relay sends `GoAway` on shutdown.

use proto::{AgentName, ErrorCode, Frame, GoAway, Refused, Registered, PROTOCOL_VERSION};
use relay_net::cert::PeerCert;
use relay_net::framed::{write_frame, FrameReader};
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditEvent, Event};
use crate::Shared;

/// How soon agents should come back after a relay shutdown; they add jitter.
pub(crate) const RECONNECT_IN_MS: u32 = 1_000;

pub(crate) async fn serve(
    shared: &Shared,
    conn: &quinn::Connection,
    peer: &PeerCert,
    shutdown: &CancellationToken,
) {
    // An agent opens exactly one stream; the streams it serves are opened by us.
    conn.set_max_concurrent_bi_streams(1u32.into());
    let timeout = shared.limits.first_frame_timeout;
    let close = |code: ErrorCode, reason: &str| {
        tracing::warn!(%code, reason, "agent dropped");
        conn.close(code.0.into(), reason.as_bytes());
    };
    let (mut send, recv) = match tokio::time::timeout(timeout, conn.accept_bi()).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return tracing::debug!(err = %e, "agent left before registering"),
        Err(_) => return close(ErrorCode::LIMIT_EXCEEDED, "no control stream in time"),
    };
    let mut reader = FrameReader::new(recv);
    let register = match reader.expect(timeout).await {
        Ok(Frame::Register(r)) => r,
        Ok(other) => {
            return close(
                ErrorCode::PROTOCOL_VIOLATION,
                &format!("expected Register, got {:?}", other.frame_type()),
            )
        }
        Err(e) => return close(e.code(), &e.to_string()),
    };
    let event =
        |event| AuditEvent::of_peer(event, peer, Some(shared.remote(conn.remote_address())));
    if register.version != PROTOCOL_VERSION {
        let reason = format!(
            "agent speaks protocol version {}, this relay speaks {PROTOCOL_VERSION}",
            register.version
        );
        let _ = write_frame(
            &mut send,
            Refused::new(ErrorCode::UNSUPPORTED, reason.clone()),
        )
        .await;
        return close(ErrorCode::UNSUPPORTED, &reason);
    }
    if let Err(e) = shared.audit.record(event(Event::Register)).await {
        let _ = write_frame(
            &mut send,
            Refused::new(ErrorCode::AUDIT_UNAVAILABLE, e.to_string()),
        )
        .await;
        return close(ErrorCode::AUDIT_UNAVAILABLE, "audit log unavailable");
    }
    let agent = AgentName::from(peer.identity.name.clone());
    let targets = register.targets.len();
    let _registration = shared.registry.register(
        agent,
        conn.clone(),
        peer.serial.clone(),
        register.targets,
        register.capabilities,
        register.prefix,
    );
    let _counted = relay_net::admin::GaugeGuard::new(&shared.metrics.agents);
    let registered = Registered {
        version: PROTOCOL_VERSION,
        capabilities: register.capabilities,
        instance: Some(shared.instance),
    };
    if write_frame(&mut send, registered).await.is_err() {
        return;
    }
    tracing::info!(targets, "agent registered");
    let reason = tokio::select! {
        r = reader.read() => match r {
            Ok(None) => "agent closed its control stream".to_owned(),
            Ok(Some(f)) => {
                let reason = format!("unexpected {:?} on the control stream", f.frame_type());
                close(ErrorCode::PROTOCOL_VIOLATION, &reason);
                reason
            }
            Err(e) => e.to_string(),
        },
        () = shutdown.cancelled() => {
            let _ = write_frame(&mut send, GoAway { reconnect_in_ms: RECONNECT_IN_MS }).await;
            let _ = send.finish();
            // The agent keeps serving this connection while clients that
            // have not yet moved to another relay still open streams on it;
            // once they are gone (or the grace is), it is closed.
            let mut clients = shared.clients.subscribe();
            let grace = shared.limits.shutdown_grace;
            let gone = async {
                let _ = clients.wait_for(|n| *n == 0).await;
                // Closing sooner would discard a GoAway not yet delivered.
                let _ = send.stopped().await;
                conn.close(ErrorCode::GOING_AWAY.0.into(), b"relay shutting down");
            };
            let _ = tokio::time::timeout(grace, async {
                tokio::select! {
                    () = gone => {}
                    _ = conn.closed() => {}
                }
            })
            .await;
            "relay shutting down".to_owned()
        }
    };
    tracing::info!(%reason, "agent unregistered");
    shared
        .audit
        .record_or_log(event(Event::Unregister).because(None, reason))
        .await;
}
