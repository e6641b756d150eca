//! [`Shared`]: what every connection and stream of the agent reads, made
//! once at start by [`crate::Agent`] and handed down behind an `Arc`.

use std::sync::Arc;
use std::time::Duration;

use proto::{ErrorCode, Identity, Refused};
use relay_net::admin::GaugeGuard;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::allowlist::Allowlist;
use crate::grants::Grants;
use crate::metrics::Metrics;
use crate::per_caller::{CallerDial, DialQueues};
use crate::session::Sessions;
use crate::socks::Socks;
use relay_net::quota::{Held, Quota};

/// The agent's state shared by all its connections and streams.
#[derive(Debug)]
pub struct Shared {
    /// The agent's own identity, for messages.
    pub me: Identity,
    /// Its credential, following the file: each dial takes the current one.
    pub credential: relay_net::renew::Reloading,
    /// Exposed targets.
    pub allowlist: Allowlist,
    /// Deadline for dialling a target.
    pub dial_timeout: Duration,
    /// Deadline for the first frame of a stream.
    pub first_frame_timeout: Duration,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Permits for target dials in flight, all callers together.
    pub dials: Arc<Semaphore>,
    /// Dials in flight per caller, within `dials`.
    pub caller_dials: DialQueues,
    /// Streams open per caller.
    pub caller_streams: Quota<Identity>,
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
    /// A permit for one target dial by `caller`: first a place among the
    /// caller's own dials (waiting, until `deadline`, while it has
    /// `--max-dials-per-caller` in flight), then one of the agent's
    /// `--max-dials` (refused at once when they are all taken). Held until
    /// the dial ends.
    ///
    /// # Errors
    /// `LIMIT_EXCEEDED`, naming the limit and the flag that raises it.
    pub async fn dial_permit(
        &self,
        caller: &Identity,
        deadline: Instant,
    ) -> Result<DialPermit, Refused> {
        let waiting = GaugeGuard::new(&self.metrics.dials_waiting);
        let mine = self.caller_dials.take(caller, deadline).await;
        drop(waiting);
        let Some(mine) = mine else {
            return Err(Refused::new(
                ErrorCode::LIMIT_EXCEEDED,
                format!(
                    "{caller} kept {} dials in flight on agent {} until the dial deadline, \
                     the most one caller may have (relay-agent --max-dials-per-caller); \
                     try again once its slow targets answer",
                    self.caller_dials.max(),
                    self.me.name
                ),
            ));
        };
        let all = self.dials.clone().try_acquire_owned().map_err(|_| {
            Refused::new(
                ErrorCode::LIMIT_EXCEEDED,
                format!(
                    "agent {} has too many dials in flight (relay-agent --max-dials); try again",
                    self.me.name
                ),
            )
        })?;
        Ok(DialPermit {
            _all: all,
            _mine: mine,
            _gauge: GaugeGuard::new(&self.metrics.dials_in_flight),
        })
    }

    /// A slot for one more stream of `caller`.
    ///
    /// # Errors
    /// `LIMIT_EXCEEDED` when it has `--max-streams-per-caller` open.
    pub fn stream_slot(&self, caller: &Identity) -> Result<Held<Identity>, Refused> {
        self.caller_streams.try_hold(caller).ok_or_else(|| {
            Refused::new(
                ErrorCode::LIMIT_EXCEEDED,
                format!(
                    "{caller} already has {} streams open on agent {}, the most one caller \
                     may have (relay-agent --max-streams-per-caller); close one and try again",
                    self.caller_streams.cap(),
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

/// One target dial in flight: a permit of the agent's and one of the
/// caller's, both given back on drop.
#[derive(Debug)]
pub struct DialPermit {
    _all: OwnedSemaphorePermit,
    _mine: CallerDial,
    _gauge: GaugeGuard,
}
