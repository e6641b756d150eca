//! `relay-agent`: runs inside the private network, dials **out** to the
//! relay (one connection to every relay address in its credential), and
//! serves the streams the relay forwards to it, but only to the targets in
//! its own [`allowlist::Allowlist`]. It never listens on a port (only the
//! separate, hidden `relay-agent bench-server` benchmark baseline does).
//!
//! Layout, top-down along a forwarded connection:
//!
//! - [`Agent`] (here) runs [`relays`]: one [`uplink`] per relay instance
//!   (every address the relay names resolve to), re-dialled at once after
//!   a loss; it stops on an [`error::AgentError`] retrying cannot heal.
//! - [`uplink`]: one connection to one relay: register, then serve it.
//! - [`connection`]: serve one connection (the relay's, or a direct one):
//!   a task per stream, in a span naming it.
//! - [`direct`]: only *admits* clients' direct connections (end-to-end
//!   mode) against the relay's live [`grants`] (bound to the client's
//!   certificate, capped per identity), then hands them to [`connection`];
//!   their streams are written to the agent's own [`audit`] log
//!   ([`stream::direct`]).
//! - [`stream`]: one stream: its first frame, who is asking, then its kind
//!   in a file of its own ([`stream::tcp`], [`stream::socks`],
//!   [`stream::shell_exec`], [`stream::bench`], [`stream::grant`]).
//! - What the kinds use: [`allowlist`] (what is exposed), [`socks`] (SOCKS
//!   rules, resolution, checks; off unless `--allow-socks`), [`session`]
//!   (shell and command sessions, off unless `--allow-shell`:
//!   [`session::shell`] on a PTY, [`session::exec`] without one,
//!   [`session::record`]ed in asciicast v2), [`bench`] (the built-in
//!   benchmark target).
//! - [`renewal`]: the credential file followed while running (SIGHUP, a
//!   check every minute): renewed certificates need no restart.
//! - [`shared`]: the state all of them read, with the [`per_caller`]
//!   limits (dials and streams one caller may hold); [`config`], [`cli`],
//!   [`metrics`].
//!
//! No module imports one that imports it back.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub mod allowlist;
pub mod audit;
pub mod bench;
pub mod cli;
pub mod config;
pub mod connection;
pub mod direct;
pub mod error;
pub mod grants;
pub mod metrics;
pub mod per_caller;
pub mod relays;
pub mod renewal;
pub mod session;
pub mod shared;
pub mod socks;
pub mod stream;
pub mod uplink;

pub use config::Config;
pub use error::AgentError;

/// A configured agent.
#[derive(Debug)]
pub struct Agent {
    config: Config,
    /// Number of relays we are registered with right now.
    registered: watch::Sender<usize>,
    metrics: Arc<metrics::Metrics>,
    /// The credential file, followed ([`renewal`]).
    credential: relay_net::renew::Reloading,
}

impl Agent {
    /// An agent ready to [`run`](Agent::run).
    pub fn new(config: Config) -> Agent {
        let metrics = Arc::new(metrics::Metrics::default());
        metrics
            .certificate_expiry
            .set(config.credential.cert.not_after.unix_timestamp());
        Agent {
            credential: relay_net::renew::Reloading::new(config.credential.clone()),
            config,
            registered: watch::channel(0).0,
            metrics,
        }
    }

    /// The credential it dials with, following its file: what
    /// `relay-agent`'s SIGHUP handler reloads.
    pub fn credential(&self) -> relay_net::renew::Reloading {
        self.credential.clone()
    }

    /// Changes whenever a registration comes up or goes down; the value is
    /// the number of relays we are registered with.
    pub fn registered(&self) -> watch::Receiver<usize> {
        self.registered.subscribe()
    }

    /// Keeps a registered connection to every relay address until
    /// `shutdown`, or until an error that retrying cannot heal, which it
    /// logs (see [`Agent::try_run`] to get it).
    pub async fn run(self, shutdown: CancellationToken) {
        if let Err(e) = self.try_run(shutdown).await {
            tracing::error!(err = %e, "agent stopped");
        }
    }

    /// As [`Agent::run`], but hands back the error that stopped it.
    ///
    /// # Errors
    /// A credential that is not an agent's, or unusable; a relay refusing
    /// this agent for good (revoked, unauthorized, ...): see
    /// [`uplink::RegisterError::heals`]. With several relays, each such
    /// refusal stops only that relay's uplink; the agent stops when every
    /// relay has refused it (the first error is returned).
    pub async fn try_run(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        error::check_role(&self.config.credential)?;
        // Cancelled on shutdown, or once every relay has refused us for good.
        let stop = shutdown.child_token();
        let shared = Arc::new(shared::Shared {
            me: self.config.credential.cert.identity.clone(),
            credential: self.credential.clone(),
            allowlist: self.config.allowlist.clone(),
            dial_timeout: self.config.dial_timeout,
            first_frame_timeout: Duration::from_secs(10),
            metrics: self.metrics.clone(),
            dials: Arc::new(tokio::sync::Semaphore::new(self.config.max_dials)),
            caller_dials: per_caller::DialQueues::new(self.config.max_dials_per_caller),
            caller_streams: relay_net::quota::Quota::new(self.config.max_streams_per_caller),
            sessions: self.config.sessions.clone(),
            socks: self.config.socks.clone(),
            grants: grants::Grants::new(self.config.direct),
            audit: audit::Audit::open(&self.config.audit_log),
        });
        if let Some(listener) = self
            .config
            .metrics
            .as_ref()
            .and_then(|l| l.try_clone().ok())
        {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    let registered = self.registered.subscribe();
                    let admin = relay_net::admin::Admin {
                        registry: self.metrics.register(),
                        ready: Box::new(move || *registered.borrow() > 0),
                    };
                    tokio::spawn(relay_net::admin::serve(
                        listener,
                        Arc::new(admin),
                        stop.clone(),
                    ));
                }
                Err(err) => tracing::error!(%err, "admin endpoint unavailable"),
            }
        }
        let agent = Arc::new(self);
        let following = tokio::spawn(renewal::follow(
            agent.credential(),
            agent.metrics.clone(),
            agent.config.credential_check,
            stop.clone(),
        ));
        let stopped = relays::run(agent.clone(), shared, stop.clone()).await;
        stop.cancel();
        let _ = following.await;
        stopped
    }
}
