//! `relay-agent`: runs inside the private network, dials **out** to the
//! relay (one connection to every relay address in its credential), and
//! serves the streams the relay forwards to it, but only to the targets in
//! its own [`allowlist::Allowlist`].
//!
//! Layout: [`config`], [`allowlist`] (what is exposed), [`session`] (one
//! relay connection: register, serve), [`stream`] (one forwarded stream:
//! checks, [`dial`], splice), [`sessions`] (shell and command sessions, off
//! unless `--allow-shell`: [`shell`] on a PTY, [`exec`] without one,
//! [`record`]ed in asciicast v2), [`socks`] (SOCKS destinations: rules,
//! resolution, checks; off unless `--allow-socks`), [`bench`] (the built-in
//! benchmark target), [`direct`] (clients' direct paths through the relay,
//! with the relay's grants), [`cli`]. The agent never listens on a port (only the
//! separate, hidden `relay-agent bench-server` benchmark baseline does).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub mod allowlist;
pub mod bench;
pub mod cli;
pub mod config;
pub mod dial;
pub mod direct;
pub mod exec;
pub mod metrics;
pub mod record;
pub mod session;
pub mod sessions;
pub mod shell;
pub mod socks;
pub mod stream;

pub use config::Config;

/// A configured agent.
#[derive(Debug)]
pub struct Agent {
    config: Config,
    /// Number of relays we are registered with right now.
    registered: watch::Sender<usize>,
    metrics: Arc<metrics::Metrics>,
}

impl Agent {
    /// An agent ready to [`run`](Agent::run).
    pub fn new(config: Config) -> Agent {
        let metrics = Arc::new(metrics::Metrics::default());
        metrics
            .certificate_expiry
            .set(config.credential.cert.not_after.unix_timestamp());
        Agent {
            config,
            registered: watch::channel(0).0,
            metrics,
        }
    }

    /// Changes whenever a registration comes up or goes down; the value is
    /// the number of relays we are registered with.
    pub fn registered(&self) -> watch::Receiver<usize> {
        self.registered.subscribe()
    }

    /// Keeps a registered connection to every relay address until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let ctx = Arc::new(stream::StreamContext {
            me: self.config.credential.cert.identity.clone(),
            allowlist: self.config.allowlist.clone(),
            dial_timeout: self.config.dial_timeout,
            first_frame_timeout: Duration::from_secs(10),
            metrics: self.metrics.clone(),
            dials: Arc::new(tokio::sync::Semaphore::new(self.config.max_dials)),
            sessions: self.config.sessions.clone(),
            socks: self.config.socks.clone(),
            grants: direct::Grants::default(),
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
                        shutdown.clone(),
                    ));
                }
                Err(err) => tracing::error!(%err, "admin endpoint unavailable"),
            }
        }
        let agent = Arc::new(self);
        let mut supervisors = tokio::task::JoinSet::new();
        supervisors.spawn(warn_before_expiry(
            agent.config.credential.cert.clone(),
            shutdown.clone(),
        ));
        for addr in agent.config.credential.credential.relay.clone() {
            supervisors.spawn(supervise(
                agent.clone(),
                ctx.clone(),
                addr,
                shutdown.clone(),
            ));
        }
        while supervisors.join_next().await.is_some() {}
    }
}

/// Dial, register, serve; on loss re-dial with exponential backoff and full
/// jitter, reset after a successful registration.
async fn supervise(
    agent: Arc<Agent>,
    ctx: Arc<stream::StreamContext>,
    addr: String,
    shutdown: CancellationToken,
) {
    let backoff = &agent.config.backoff;
    let mut delay = backoff.initial;
    let mut ever_up = false;
    loop {
        let mut was_up = false;
        let result = session::run(&agent.config, &ctx, &addr, &shutdown, || {
            was_up = true;
            agent.registered.send_modify(|n| *n += 1);
            agent.metrics.registered.inc();
            if std::mem::replace(&mut ever_up, true) {
                agent.metrics.reconnects.inc();
            }
        })
        .await;
        if was_up {
            agent.registered.send_modify(|n| *n = n.saturating_sub(1));
            agent.metrics.registered.dec();
            delay = backoff.initial;
        }
        let wait = match result {
            Ok(session::Ended::Shutdown) => return,
            Ok(session::Ended::GoAway(after)) => after + jitter(after),
            Ok(session::Ended::Lost(reason)) => {
                tracing::warn!(%addr, %reason, "lost the relay; re-dialling");
                Duration::ZERO
            }
            Err(e) => {
                let wait = jitter(delay);
                tracing::warn!(%addr, err = %e, retry_in = ?wait, "cannot register with the relay");
                delay = (delay * 2).min(backoff.max);
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Logs a warning from two thirds of the credential's lifetime on (and an
/// error once it has expired), every few hours, until `shutdown`.
async fn warn_before_expiry(cert: relay_net::cert::PeerCert, shutdown: CancellationToken) {
    const REPEAT: Duration = Duration::from_secs(6 * 3600);
    loop {
        let now = time::OffsetDateTime::now_utc();
        let wait = if now < cert.renew_after() {
            Duration::try_from(cert.renew_after() - now).unwrap_or(REPEAT)
        } else {
            if now >= cert.not_after {
                tracing::error!(not_after = %relay_net::cert::rfc3339(cert.not_after), "agent credential has expired: the relay will refuse this agent; issue a new one");
            } else {
                tracing::warn!(not_after = %relay_net::cert::rfc3339(cert.not_after), "agent credential expires soon: issue a new one");
            }
            REPEAT
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Full jitter: uniformly in [d/2, d], so a fleet of agents that lost the
/// same relay does not come back in lock-step.
fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + half.mul_f64(rand::random::<f64>())
}
