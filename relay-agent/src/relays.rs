//! The relay instances this agent keeps a connection to (DESIGN
//! "Scale-out"): every address every relay entry of its credential
//! resolves to (all A and AAAA records, e.g. a Kubernetes headless
//! Service), looked up again every [`RESOLVE_EVERY`]; one supervised
//! [`uplink`] per address. An instance reached through two addresses (the
//! id it reports in `Registered`) is held once.
//!
//! ```text
//! resolve ─▶ new address ─▶ supervise: dial ─▶ uplink ─▶ lost / GoAway ─▶ redial every 500 ms for 30 s, then back off
//!         └▶ address gone from DNS ─▶ retire its uplink
//! ```
//!
//! Every uplink of one address family leaves from one endpoint
//! ([`Origins`]: one socket, one connection-ID prefix), which also accepts
//! clients' direct connections, so any relay holding the agent can route a
//! direct path to it, and a direct path outlives the relay that set it up:
//! its packets may arrive through another relay (a QUIC migration quinn
//! validates) as long as some relay grants it.
//!
//! A relay that restarts is back within [`REDIAL_EVERY`] of listening:
//! after a loss the agent does not wait out a handshake timeout but starts
//! an attempt every [`REDIAL_EVERY`] while the relay is silent, over the
//! transport it lost ([`redial`]). One that answers busy (a reconnect
//! storm) is dialled again after a short jittered wait, one attempt at a
//! time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use relay_net::dial::{dial_one, resolve_all, Candidate, DialError, Origin, RelayConn};
use relay_net::endpoint::Via;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::AgentError;
use crate::metrics::RelayLabel;
use crate::shared::Shared;
use crate::uplink::{self, Instances};
use crate::Agent;

/// How often relay names are resolved again (instances come and go).
pub const RESOLVE_EVERY: Duration = Duration::from_secs(30);

/// How often the agent retries while no relay address resolves.
const RESOLVE_RETRY: Duration = Duration::from_secs(2);

/// After losing a relay: a new dial attempt this often...
pub const REDIAL_EVERY: Duration = Duration::from_millis(500);
/// ...each allowed this long while the relay is silent (a handshake with
/// `Retry` takes two round trips)...
const REDIAL_ATTEMPT: Duration = Duration::from_secs(2);
/// ...for this long; then the usual exponential backoff.
const REDIAL_FOR: Duration = Duration::from_secs(30);
/// The longest wait (before jitter) after a relay refused us as busy: it
/// is up, and over its handshake budget only for moments.
const BUSY_BACKOFF: Duration = Duration::from_secs(4);

/// Keeps an uplink to every relay address until `stop`; returns the first
/// error that cannot heal once no relay is left serving.
pub(crate) async fn run(
    agent: Arc<Agent>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Result<(), AgentError> {
    let entries = agent.config.credential.credential.relay.clone();
    let instances = Instances::default();
    let origins = Origins::new(
        &agent.config,
        shared.clone(),
        instances.clone(),
        stop.clone(),
    )?;
    // Live uplinks by address: the entry it came from, and its retirement.
    let mut uplinks: HashMap<SocketAddr, (String, CancellationToken)> = HashMap::new();
    // Addresses whose relay refused this agent for good.
    let mut gave_up: HashSet<SocketAddr> = HashSet::new();
    let mut supervisors = JoinSet::new();
    let mut first_error = None;
    let mut next_resolve = Instant::now();
    let mut said_unresolved = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next_resolve) => {
                let (found, unresolved) = resolve_all(&entries, &agent.config.transport).await;
                for e in &unresolved {
                    if uplinks.is_empty() {
                        // Retried every few seconds: said at debug after the first.
                        if std::mem::replace(&mut said_unresolved, true) {
                            tracing::debug!(err = %e, "cannot resolve a relay address yet");
                        } else {
                            tracing::warn!(err = %e, "cannot resolve a relay address; trying again every {RESOLVE_RETRY:?}");
                        }
                    } else {
                        tracing::warn!(err = %e, "cannot resolve a relay address; keeping the instances it had");
                    }
                }
                let resolved: HashSet<&str> = found.iter().map(|c| c.entry.as_str()).collect();
                uplinks.retain(|addr, (entry, retire)| {
                    let keep = !resolved.contains(entry.as_str()) || found.iter().any(|c| c.addr == *addr);
                    if !keep {
                        tracing::info!(%entry, %addr, "relay address no longer resolves; leaving it");
                        agent.metrics.relays.remove(&RelayLabel::of(addr));
                        retire.cancel();
                    }
                    keep
                });
                for candidate in found {
                    if uplinks.contains_key(&candidate.addr) || gave_up.contains(&candidate.addr) {
                        continue;
                    }
                    let retire = stop.child_token();
                    uplinks.insert(candidate.addr, (candidate.entry.clone(), retire.clone()));
                    let span = tracing::info_span!("uplink", relay = %candidate);
                    let addr = candidate.addr;
                    // A name only the proxy resolves has no address to
                    // dial over UDP: any origin will do for it.
                    let reach = if candidate.at_proxy() {
                        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, addr.port()))
                    } else {
                        addr
                    };
                    let origin = match origins.reaching(reach) {
                        Ok(origin) => origin,
                        Err(e) => {
                            tracing::error!(relay = %candidate, err = %e, "cannot open a UDP socket for this relay");
                            uplinks.remove(&candidate.addr);
                            continue;
                        }
                    };
                    let supervising = supervise(agent.clone(), shared.clone(), candidate, origin, instances.clone(), retire);
                    supervisors.spawn(async move { (addr, supervising.await) }.instrument(span));
                }
                let wait = if uplinks.is_empty() { RESOLVE_RETRY } else { RESOLVE_EVERY };
                next_resolve = Instant::now() + wait;
            }
            Some(joined) = supervisors.join_next() => {
                let Ok((addr, ended)) = joined else { continue };
                uplinks.remove(&addr);
                if let Err(e) = ended {
                    gave_up.insert(addr);
                    if uplinks.is_empty() {
                        stop.cancel();
                        origins.close().await;
                        return Err(first_error.unwrap_or(e));
                    }
                    tracing::error!(err = %e, "this relay will not take the agent; serving through the others");
                    first_error.get_or_insert(e);
                }
            }
            () = stop.cancelled() => {
                while supervisors.join_next().await.is_some() {}
                origins.close().await;
                return Ok(());
            }
        }
    }
}

/// Dial, register, serve one relay address; on loss re-dial at once and
/// every [`REDIAL_EVERY`] for [`REDIAL_FOR`], then with exponential backoff
/// and full jitter. Returns on `shutdown` (or retirement), or with the
/// first registration error that cannot heal.
async fn supervise(
    agent: Arc<Agent>,
    shared: Arc<Shared>,
    candidate: Candidate,
    origin: Origin,
    instances: Instances,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let config = &agent.config;
    let label = RelayLabel::of(&candidate.addr);
    let relay_up = agent.metrics.relays.get_or_create(&label).clone();
    relay_up.set(0);
    let over_tcp = agent.metrics.relays_over_tcp.get_or_create(&label).clone();
    let mut delay = config.backoff.initial;
    let mut ever_up = false;
    // Set after a loss: until then, re-dial quickly.
    let mut quickly_until: Option<Instant> = None;
    // The transport the relay last answered on, kept while it goes on
    // answering (lost, then busy): with `--transport auto` the agent
    // dials only that one meanwhile. A restarted relay answers there as
    // soon as it listens, and a herd that raced the carrier too would
    // cost it a TLS handshake more per agent (issue #19).
    let mut answered_on: Option<Via> = None;
    loop {
        let quickly = quickly_until.is_some_and(|until| Instant::now() < until);
        // Each dial takes the credential file as it is now (module renewal).
        let used = shared.credential.current();
        let transport = match (config.transport.via, answered_on) {
            (Via::Auto, Some(via)) => relay_net::endpoint::Transport {
                via,
                ..config.transport.clone()
            },
            _ => config.transport.clone(),
        };
        let dialling = async {
            if quickly {
                redial(config, &transport, &used, &candidate, &origin).await
            } else {
                let timeout = config.connect_timeout;
                dial_one(&used, &candidate, Some(&origin), &transport, timeout).await
            }
        };
        let dialled = tokio::select! {
            dialled = dialling => dialled,
            () = shutdown.cancelled() => return Ok(()),
        };
        let mut was_up = false;
        let result = match dialled {
            Ok(rc) => {
                uplink::run(config, &shared, rc, &origin, &instances, &shutdown, |via| {
                    over_tcp.set(i64::from(via == Via::Tcp));
                    answered_on = Some(via);
                    if std::mem::replace(&mut was_up, true) {
                        return; // moved from TCP to QUIC: still one registration
                    }
                    agent.registered.send_modify(|n| *n += 1);
                    agent.metrics.registered.inc();
                    relay_up.set(1);
                    if std::mem::replace(&mut ever_up, true) {
                        agent.metrics.reconnects.inc();
                    }
                })
                .await
            }
            Err(e) => Err(uplink::RegisterError::Dial(e)),
        };
        if was_up {
            agent.registered.send_modify(|n| *n = n.saturating_sub(1));
            agent.metrics.registered.dec();
            relay_up.set(0);
            delay = config.backoff.initial;
            quickly_until = Some(Instant::now() + REDIAL_FOR);
        }
        let addr = &candidate.entry;
        let wait = match result {
            Ok(uplink::UplinkEnd::Shutdown) => return Ok(()),
            // Going away: the old connection is still served; dial the
            // instance that replaces it (or another relay through DNS).
            Ok(uplink::UplinkEnd::GoAway(_)) => jitter(REDIAL_EVERY) - REDIAL_EVERY / 2,
            Ok(uplink::UplinkEnd::Duplicate(other)) => {
                tracing::info!(%other, "this relay instance is already held through another address; checking again later");
                quickly_until = None;
                answered_on = None;
                jitter(RESOLVE_EVERY)
            }
            Ok(uplink::UplinkEnd::Lost(reason)) => {
                tracing::warn!(%addr, %reason, "lost the relay; re-dialling");
                if reason.is_silence() {
                    // The transport itself may have stopped working (UDP
                    // blocked from now on): both are tried again.
                    answered_on = None;
                }
                Duration::ZERO
            }
            Err(e)
                if !e.heals()
                    && !crate::renewal::retry_with_renewed(&shared.credential, &used, &e) =>
            {
                let identity = &config.credential.cert.identity;
                return Err(AgentError::registration(addr, identity, e));
            }
            Err(e) => {
                quickly_until = None;
                // A busy relay is up and takes us within seconds: the wait
                // stays short, and jittered, which spreads the herd.
                let busy = matches!(e, uplink::RegisterError::Dial(DialError::Busy { .. }));
                if !busy {
                    answered_on = None;
                }
                let wait = jitter(if busy { delay.min(BUSY_BACKOFF) } else { delay });
                if busy {
                    tracing::info!(%addr, retry_in = ?wait, "the relay is busy (a reconnect storm): trying again");
                } else {
                    tracing::warn!(%addr, err = %e, retry_in = ?wait, "cannot register with the relay");
                }
                // Busy stays busy-short: a relay that answered is not
                // waited for as long as one that did not.
                let cap = if busy {
                    BUSY_BACKOFF
                } else {
                    config.backoff.max
                };
                delay = (delay * 2).min(cap);
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// Dials `candidate` again after a loss, over `transport` (with
/// `--transport auto`, the one the lost connection used, unless the relay
/// fell silent: then both).
///
/// Over QUIC (or both) a new attempt starts every [`REDIAL_EVERY`] while the relay
/// is silent, since a QUIC handshake alone would resend its first packet
/// only after 1, 3, 7 s; each is given up after [`REDIAL_ATTEMPT`] of
/// silence. Once the relay has answered no more start, and those under way
/// run to the connect timeout: a busy relay is not sent one handshake per
/// agent every [`REDIAL_EVERY`]. Over TCP one attempt at a time (a relay
/// that is down refuses the connection at once). Ends when one connects,
/// one fails for another reason than no answer, or [`REDIAL_FOR`] passes.
async fn redial(
    config: &crate::Config,
    transport: &relay_net::endpoint::Transport,
    credential: &relay_net::credential::Loaded,
    candidate: &Candidate,
    origin: &Origin,
) -> Result<RelayConn, DialError> {
    let overlap = transport.via != Via::Tcp;
    let mut heard = origin.ears.hear(candidate.addr);
    let mut answered = false;
    let until = Instant::now() + REDIAL_FOR;
    let mut attempts = JoinSet::new();
    // Attempts started while the relay was silent, oldest first: each is
    // given up after REDIAL_ATTEMPT of silence; once the relay answers they
    // run to the connect timeout (a busy relay's handshake is slow, and
    // starting it again costs the relay more).
    let mut silent: std::collections::VecDeque<(Instant, tokio::task::AbortHandle)> =
        std::collections::VecDeque::new();
    let mut next = Instant::now();
    let mut last = None;
    loop {
        let more = next < until && (attempts.is_empty() || (overlap && !answered));
        let give_up = silent.front().map(|(at, _)| *at + REDIAL_ATTEMPT);
        tokio::select! {
            () = tokio::time::sleep_until(next), if more => {
                let (cred, c, o, t) = (credential.clone(), candidate.clone(), origin.clone(), transport.clone());
                let timeout = config.connect_timeout;
                let abort = attempts.spawn(async move { dial_one(&cred, &c, Some(&o), &t, timeout).await });
                if !answered {
                    silent.push_back((Instant::now(), abort));
                }
                next = Instant::now().max(next + REDIAL_EVERY);
            }
            () = tokio::time::sleep_until(give_up.unwrap_or(until)), if give_up.is_some() => {
                if let Some((_, attempt)) = silent.pop_front() {
                    attempt.abort();
                }
            }
            // (Not once nothing is left to wait for: `else` ends the loop.)
            _ = &mut heard, if !answered && (more || !attempts.is_empty()) => {
                answered = true;
                silent.clear();
            }
            Some(done) = attempts.join_next() => match done {
                Ok(Ok(rc)) => return Ok(rc),
                Ok(Err(e @ DialError::Unreachable { .. })) => last = Some(e),
                Ok(Err(e)) => return Err(e),
                Err(e) if e.is_cancelled() => {}
                Err(e) => tracing::error!(err = %e, "a dial attempt panicked"),
            },
            else => {
                return Err(last.unwrap_or_else(|| DialError::Unreachable {
                    addr: candidate.entry.clone(),
                    reason: format!("no answer within {REDIAL_FOR:?}"),
                }));
            }
        }
    }
}

/// The agent's endpoints, one per address family, made on first use. Each
/// accepts clients' direct connections ([`crate::direct::admit`]) for as
/// long as the agent runs.
struct Origins {
    made: std::sync::Mutex<Vec<Origin>>,
    direct: Arc<Direct>,
    acceptors: std::sync::Mutex<JoinSet<()>>,
}

/// What each endpoint accepts direct connections with ([`accept_direct`]).
struct Direct {
    transport: relay_net::endpoint::Transport,
    shared: Arc<Shared>,
    instances: Instances,
    relay_name: proto::Name,
    stop: CancellationToken,
    /// How long direct connections get to finish at shutdown.
    grace: Duration,
}

impl Origins {
    fn new(
        config: &crate::Config,
        shared: Arc<Shared>,
        instances: Instances,
        stop: CancellationToken,
    ) -> Result<Origins, AgentError> {
        let cred = &config.credential;
        // Checked once here, so a credential that cannot serve direct paths
        // stops the agent at start.
        server_tls(cred).map_err(|e| {
            let error = uplink::RegisterError::DirectTls(e);
            AgentError::registration("", &cred.cert.identity, error)
        })?;
        Ok(Origins {
            made: std::sync::Mutex::default(),
            direct: Arc::new(Direct {
                transport: config.transport.clone(),
                shared,
                instances,
                relay_name: cred.cert.relay.clone(),
                stop,
                grace: config.shutdown_grace,
            }),
            acceptors: std::sync::Mutex::default(),
        })
    }

    /// The endpoint for relays at `remote`, made (and accepting direct
    /// connections) on first use.
    fn reaching(&self, remote: SocketAddr) -> Result<Origin, DialError> {
        let mut made = self
            .made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(origin) = made.iter().find(|o| o.reaches(remote)) {
            return Ok(origin.clone());
        }
        let origin = Origin::bind(remote, &self.direct.transport)?;
        let accepting = accept_direct(origin.endpoint.clone(), self.direct.clone());
        self.acceptors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .spawn(accepting);
        made.push(origin.clone());
        Ok(origin)
    }

    /// Waits for the acceptors to stop (they drain their direct
    /// connections within the grace) and the endpoints to go idle.
    async fn close(&self) {
        let mut acceptors = std::mem::take(
            &mut *self
                .acceptors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        while acceptors.join_next().await.is_some() {}
        let made = std::mem::take(
            &mut *self
                .made
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for origin in made {
            let _ = tokio::time::timeout(Duration::from_secs(1), origin.endpoint.wait_idle()).await;
        }
    }
}

/// The TLS configuration direct connections are accepted with: the agent's
/// own certificate, clients of its CA.
fn server_tls(
    cred: &relay_net::credential::Loaded,
) -> Result<quinn::crypto::rustls::QuicServerConfig, relay_net::tls::TlsError> {
    relay_net::tls::server_config(
        &cred.credential.certificate,
        cred.key_pem(),
        &cred.credential.ca,
    )
}

/// Lets `endpoint` accept direct connections with the current credential.
fn serve_direct_with(
    endpoint: &quinn::Endpoint,
    transport: &relay_net::endpoint::Transport,
    cred: &relay_net::credential::Loaded,
) {
    match server_tls(cred) {
        Ok(tls) => relay_net::endpoint::accept_direct(endpoint, tls, transport),
        Err(e) => tracing::error!(err = %e, "this credential cannot serve direct paths"),
    }
}

/// Admits the direct connections that reach `endpoint`, each in a span of
/// its own, until `stop`; then gives them the grace period to finish. A
/// renewed credential (module `renewal`) is what new direct handshakes see.
async fn accept_direct(endpoint: quinn::Endpoint, with: Arc<Direct>) {
    let Direct {
        transport,
        shared,
        instances,
        relay_name,
        stop,
        grace,
    } = &*with;
    let mut renewed = shared.credential.subscribe();
    serve_direct_with(&endpoint, transport, &renewed.borrow_and_update());
    let mut direct = JoinSet::new();
    loop {
        tokio::select! {
            Ok(()) = renewed.changed() => {
                let cred = renewed.borrow_and_update().clone();
                serve_direct_with(&endpoint, transport, &cred);
            }
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let span = tracing::info_span!("direct", caller = tracing::field::Empty);
                let admitting = crate::direct::admit(shared.clone(), instances.clone(), relay_name.clone(), incoming);
                direct.spawn(admitting.instrument(span));
            }
            Some(_) = direct.join_next(), if !direct.is_empty() => {}
            () = stop.cancelled() => break,
        }
    }
    let drained = async { while direct.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(*grace, drained).await;
}

/// Full jitter: uniformly in [d/2, d], so a fleet of agents that lost the
/// same relay does not come back in lock-step.
pub(crate) fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + half.mul_f64(rand::random::<f64>())
}
