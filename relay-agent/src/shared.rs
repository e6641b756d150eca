//! [`Shared`]: what every connection and stream of the agent reads, made
//! once at start by [`crate::Agent`] and handed down behind an `Arc`.

use std::sync::Arc;
use std::time::Duration;

use proto::{ErrorCode, Identity, Refused};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::allowlist::Allowlist;
use crate::grants::Grants;
use crate::metrics::Metrics;
use crate::session::Sessions;
use crate::socks::Socks;

/// The agent's state shared by all its connections and streams.
#[derive(Debug)]
pub struct Shared {
    /// The agent's own identity, for messages.
    pub me: Identity,
    /// Exposed targets.
    pub allowlist: Allowlist,
    /// Deadline for dialling a target.
    pub dial_timeout: Duration,
    /// Deadline for the first frame of a stream.
    pub first_frame_timeout: Duration,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Permits for target dials in flight.
    pub dials: Arc<Semaphore>,
    /// Shell and command sessions.
    pub sessions: Sessions,
    /// SOCKS rules (off when empty).
    pub socks: Socks,
    /// What the relay lets clients open on direct paths.
    pub grants: Grants,
    /// The audit log of direct streams.
    pub audit: crate::audit::Audit,
}

impl Shared {
    /// A permit for one target dial, or the refusal when too many are in flight.
    ///
    /// # Errors
    /// `LIMIT_EXCEEDED` when `--max-dials` dials are under way.
    pub fn dial_permit(&self) -> Result<OwnedSemaphorePermit, Refused> {
        self.dials.clone().try_acquire_owned().map_err(|_| {
            Refused::new(
                ErrorCode::LIMIT_EXCEEDED,
                format!(
                    "agent {} has too many dials in flight; try again",
                    self.me.name
                ),
            )
        })
    }

    /// Refuses a stream, counting the refusal.
    pub async fn refuse(
        &self,
        send: &mut quinn::SendStream,
        recv: &mut quinn::RecvStream,
        refused: Refused,
    ) {
        self.metrics.refused(refused.code);
        crate::audit::note_refused(&refused);
        relay_net::framed::refuse(send, recv, refused).await;
    }
}
