//! An `Open` from a client on a direct path (end-to-end mode): checked
//! against the relay's grant for that client's certificate and the
//! per-identity open rate, and on the agent's audit log as the relay would
//! write it: `open` before anything is served (a line that cannot be
//! written refuses the stream, `AUDIT_UNAVAILABLE`), then `close` with
//! bytes and duration, or `refused` with the code the stream was refused
//! with.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use proto::{ErrorCode, Open, Refused};
use relay_net::audit::{AuditEvent, Event};
use relay_net::cert::PeerCert;

use crate::audit::{tallied, Tally};
use crate::shared::Shared;

/// A direct stream that may be served: its `open` line is on record.
#[derive(Debug)]
pub struct Admitted {
    event: AuditEvent,
    started: Instant,
    tally: Arc<Tally>,
}

/// Checks `open` from `peer` (grant, open rate) and records it.
///
/// # Errors
/// The refusal to answer (already on the audit log where it can be):
/// `UNAUTHORIZED` outside the grant, `LIMIT_EXCEEDED` above the open rate,
/// `AUDIT_UNAVAILABLE` if the `open` line cannot be written.
pub async fn admit(shared: &Shared, peer: &PeerCert, open: &Open) -> Result<Admitted, Refused> {
    // The client's address is the relay's here (it forwards the path): the
    // relay's own `direct` line has the client's.
    let event = AuditEvent::of_peer(Event::Open, peer, None).with_open(open);
    let checked = if shared.grants.allows(peer, open) {
        shared.grants.open_permit(&peer.identity)
    } else {
        Err(Refused::new(
            ErrorCode::UNAUTHORIZED,
            format!(
                "the relay's grant for {} (certificate {}) does not cover {} {}",
                peer.identity, peer.serial, open.kind, open.target
            ),
        ))
    };
    if let Err(r) = checked {
        shared.audit.record_or_log(event.refused(&r)).await;
        return Err(r);
    }
    if let Err(e) = shared.audit.record(event.clone()).await {
        return Err(Refused::new(
            ErrorCode::AUDIT_UNAVAILABLE,
            format!("{e}; refusing direct streams (relay-agent --audit-log PATH sets the log)"),
        ));
    }
    tracing::info!("direct stream");
    Ok(Admitted {
        event,
        started: Instant::now(),
        tally: Arc::default(),
    })
}

impl Admitted {
    /// Serves the stream (`serving`, its kind) and records how it ended.
    pub async fn serve(self, shared: &Shared, serving: impl Future<Output = ()>) {
        tallied(self.tally.clone(), serving).await;
        let tally = &self.tally;
        let refused = tally
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let event = match refused {
            Some(r) => self.event.refused(&r),
            None => AuditEvent {
                event: Event::Close,
                bytes_up: Some(tally.up.load(Ordering::Relaxed)),
                bytes_down: Some(tally.down.load(Ordering::Relaxed)),
                duration_ms: Some(self.started.elapsed().as_millis() as u64),
                ..self.event
            },
        };
        shared.audit.record_or_log(event).await;
    }
}
