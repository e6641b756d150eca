//! One connection to one relay instance, the agent's uplink: register on
//! the control stream of a dialled connection ([`crate::relays`] dials),
//! then serve the streams the relay opens ([`crate::connection`]) and the
//! direct connections it forwards to this agent's endpoint
//! ([`crate::direct`]) until the connection ends, the relay goes away, or
//! the agent shuts down.
//!
//! ```text
//! Register ─▶ Registered ─▶ serve streams ─▶ GoAway, or silent past the keep-alive ─▶ keep serving (in the background) for the grace
//!          │              └▶ lost / shutdown
//!          ├▶ Registered by an instance already held through another address ─▶ Duplicate
//!          └▶ Refused, or the relay closes ─▶ RegisterError
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::{Capabilities, ErrorCode, Frame, FrameType, Refused, Register, PROTOCOL_VERSION};
use quinn::ConnectionError;
use relay_net::cert::PeerCert;
use relay_net::dial::{describe, quic_again, Candidate, DialError, Origin, RelayConn};
use relay_net::endpoint::Via;
use relay_net::framed::{write_frame, FrameError, FrameReader};
use relay_net::tls::TlsError;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::connection::{self, ConnectionEnd};
use crate::shared::Shared;
use crate::Config;

/// How a registered uplink ended.
#[derive(Debug)]
pub enum UplinkEnd {
    /// The relay asked us to come back after this long (`GoAway`); its
    /// connection is still served in the background until the relay closes
    /// it, so clients that have not moved yet are not cut off.
    GoAway(Duration),
    /// This relay instance is already held through another address.
    Duplicate(String),
    /// The connection was lost after a successful registration.
    Lost(LostRelay),
    /// We are shutting down.
    Shutdown,
}

/// How a registered connection to the relay was lost.
#[derive(Debug, thiserror::Error)]
pub enum LostRelay {
    /// The connection ended (closed by the relay, timed out, reset).
    #[error("{}", describe(.0))]
    Connection(ConnectionError),
    /// The relay finished the control stream while the connection stayed up.
    #[error("relay closed the control stream")]
    ControlClosed,
    /// The relay sent a frame that has no place on the control stream.
    #[error("unexpected {0} on the control stream")]
    UnexpectedControlFrame(FrameType),
    /// The control stream failed while the connection stayed up.
    #[error("{0}")]
    Control(FrameError),
    /// Nothing came from the relay for this long, keep-alives included
    /// (a relay that died and whose restart's reset did not reach us).
    #[error("the relay has been silent for {0:?}")]
    Silent(Duration),
}

impl LostRelay {
    /// Whether the relay fell silent (no reset, no close: the path may be
    /// what broke) rather than ending the connection in words.
    pub fn is_silence(&self) -> bool {
        matches!(
            self,
            LostRelay::Silent(_) | LostRelay::Connection(ConnectionError::TimedOut)
        )
    }
}

/// Why the agent could not register with a relay.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The relay could not be reached or verified, or the credential is unusable.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The credential cannot serve direct paths (its key or certificate).
    #[error("cannot set up TLS for direct paths with this credential: {0}")]
    DirectTls(TlsError),
    /// The relay answered `Register` with `Refused`.
    #[error("the relay refused the registration: {0}")]
    Refused(Refused),
    /// The relay answered `Register` with another frame.
    #[error("the relay answered Register with {0}, not Registered")]
    UnexpectedFrame(FrameType),
    /// The connection ended before the relay answered (the relay closes it
    /// with a code when it refuses the peer itself: revoked, wrong relay).
    #[error("registration failed: {}", describe(.0))]
    Lost(ConnectionError),
    /// `Register` could not be sent on a live connection.
    #[error("registration failed: cannot send Register: {0}")]
    Send(quinn::WriteError),
    /// No valid answer on a live connection (timeout, reset, bad frame).
    #[error("registration failed: no answer to Register: {0}")]
    NoAnswer(FrameError),
}

impl RegisterError {
    /// The relay's error code: of its `Refused`, or of its connection close.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            RegisterError::Refused(r) => Some(r.code),
            RegisterError::Lost(ConnectionError::ApplicationClosed(close)) => {
                u32::try_from(close.error_code.into_inner())
                    .ok()
                    .map(ErrorCode)
            }
            _ => None,
        }
    }

    /// Whether trying again could succeed without anyone changing this
    /// agent's credential or program. No for an unusable credential and for
    /// the relay's `UNAUTHORIZED`, `REVOKED`, `CERT_EXPIRED` and
    /// `PROTOCOL_VIOLATION` (a client credential sends `Register` where the
    /// relay expects `Open`): the same registration gets the same answer.
    /// Yes for everything transient (unreachable, going away, limits, the
    /// relay's audit log) and for what a relay upgrade or rollback can fix
    /// (`UNSUPPORTED` version, untrusted certificate, a relay answering
    /// nonsense), so a fleet of agents survives a relay roll-out. What does
    /// not heal is still retried once when the credential file was renewed
    /// since the dial ([`crate::renewal::retry_with_renewed`]).
    pub fn heals(&self) -> bool {
        match self {
            RegisterError::Dial(DialError::Credential(_)) | RegisterError::DirectTls(_) => false,
            _ => !matches!(
                self.code(),
                Some(
                    ErrorCode::UNAUTHORIZED
                        | ErrorCode::REVOKED
                        | ErrorCode::CERT_EXPIRED
                        | ErrorCode::PROTOCOL_VIOLATION
                )
            ),
        }
    }
}

/// A registered connection to the relay.
struct Registration {
    /// The relay instance (`Registered::instance`), while we hold it.
    _instance: Held,
    conn: quinn::Connection,
    relay: PeerCert,
    control: FrameReader,
    /// Kept open: finishing it tells the relay we left.
    _control_send: quinn::SendStream,
    /// Over QUIC or the TCP carrier, and the address dialled.
    via: Via,
    candidate: Candidate,
}

/// Registers on `dialled` and serves until the connection ends. `on_up`
/// runs once registered, with the transport registered over, and again
/// when the registration moves from the TCP carrier to QUIC.
///
/// # Errors
/// If the relay refuses the registration.
pub async fn run(
    config: &Config,
    shared: &Arc<Shared>,
    dialled: RelayConn,
    origin: &Origin,
    instances: &Instances,
    shutdown: &CancellationToken,
    mut on_up: impl FnMut(Via),
) -> Result<UplinkEnd, RegisterError> {
    let addr = dialled.conn.remote_address();
    let mut registration = tokio::select! {
        registered = register(config, dialled, instances) => match registered? {
            Ok(registration) => registration,
            Err(duplicate) => return Ok(duplicate),
        },
        () = shutdown.cancelled() => return Ok(UplinkEnd::Shutdown),
    };
    let via = registration.via;
    tracing::info!(transport = %via, relay = %registration.relay.identity.name, %addr, "registered with relay");
    on_up(via);
    loop {
        match serve(config, shared, registration, origin, instances, shutdown).await {
            Served::Ended(end) => return Ok(end),
            Served::Upgraded(quic) => {
                tracing::info!(transport = %quic.via, relay = %quic.relay.identity.name, %addr, "registered with relay again over QUIC: UDP gets through now; streams already on the TCP carrier finish there");
                on_up(quic.via);
                registration = *quic;
            }
        }
    }
}

/// The relay instances this agent holds a connection to, by the id each
/// reports in `Registered`, with the address that holds it; and the
/// addresses of every registered relay (direct paths must come through
/// one of them, [`crate::direct`]).
#[derive(Clone, Debug, Default)]
pub struct Instances(Arc<std::sync::Mutex<Holding>>);

#[derive(Debug, Default)]
struct Holding {
    /// The address holding each instance, and how many uplinks through it
    /// do (two for a moment while one moves from TCP to QUIC).
    by_id: std::collections::HashMap<u64, (SocketAddr, usize)>,
    addrs: std::collections::HashMap<SocketAddr, usize>,
}

/// An instance (and its address) held by one uplink; released when dropped.
#[derive(Debug)]
struct Held {
    instances: Instances,
    id: Option<u64>,
    addr: SocketAddr,
}

impl Instances {
    fn lock(&self) -> std::sync::MutexGuard<'_, Holding> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Holds instance `id` (if the relay reports one) for `addr`, or names
    /// the address that already holds it.
    fn hold(&self, id: Option<u64>, addr: SocketAddr) -> Result<Held, SocketAddr> {
        let mut held = self.lock();
        if let Some(id) = id {
            match held.by_id.get_mut(&id) {
                Some((other, _)) if *other != addr => return Err(*other),
                Some((_, n)) => *n += 1,
                None => {
                    held.by_id.insert(id, (addr, 1));
                }
            }
        }
        *held.addrs.entry(addr).or_default() += 1;
        Ok(Held {
            instances: self.clone(),
            id,
            addr,
        })
    }

    /// Whether a relay at `addr` holds this agent now.
    pub fn holds_addr(&self, addr: SocketAddr) -> bool {
        self.lock().addrs.contains_key(&addr)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.instances.lock();
        if let Some(id) = self.id {
            if let Some((addr, n)) = held.by_id.get_mut(&id) {
                if *addr == self.addr {
                    *n -= 1;
                    if *n == 0 {
                        held.by_id.remove(&id);
                    }
                }
            }
        }
        if let Some(n) = held.addrs.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                held.addrs.remove(&self.addr);
            }
        }
    }
}

/// What this agent offers, for `Register`.
fn capabilities(config: &Config) -> Capabilities {
    let mut caps = Capabilities::TCP;
    if config.sessions.allow {
        caps |= Capabilities::SHELL | Capabilities::EXEC;
    }
    if config.socks.enabled() {
        caps |= Capabilities::SOCKS;
    }
    if config.sessions.record_dir.is_some() {
        caps |= Capabilities::RECORDINGS;
    }
    caps
}

/// Registers on a control stream of `dialled`; a relay instance already
/// held through another address is let go (`Err(Duplicate)`).
async fn register(
    config: &Config,
    dialled: RelayConn,
    instances: &Instances,
) -> Result<Result<Registration, UplinkEnd>, RegisterError> {
    let RelayConn {
        conn,
        relay,
        prefix,
        via,
        candidate,
        ..
    } = dialled;
    // Whatever failed on a connection the relay closed, its close says why.
    let lost = |conn: &quinn::Connection| conn.close_reason().map(RegisterError::Lost);
    let (mut send, recv) = conn.open_bi().await.map_err(RegisterError::Lost)?;
    let register = Register {
        version: PROTOCOL_VERSION,
        capabilities: capabilities(config),
        targets: config.allowlist.names(),
        // Direct paths reach the agent's UDP endpoints only: over the TCP
        // carrier it offers none, and clients use the relay path (or, with
        // --end-to-end=on, are told why not).
        prefix: (via == Via::Quic).then_some(prefix),
    };
    if let Err(e) = write_frame(&mut send, register).await {
        return Err(lost(&conn).unwrap_or(RegisterError::Send(e)));
    }
    let mut control = FrameReader::new(recv);
    match control.expect(config.connect_timeout).await {
        Ok(Frame::Registered(registered)) => {
            let held = match instances.hold(registered.instance, conn.remote_address()) {
                Err(other) => {
                    conn.close(
                        0u32.into(),
                        b"instance already held through another address",
                    );
                    return Ok(Err(UplinkEnd::Duplicate(other.to_string())));
                }
                Ok(held) => held,
            };
            Ok(Ok(Registration {
                _instance: held,
                conn,
                relay,
                control,
                _control_send: send,
                via,
                candidate,
            }))
        }
        Ok(Frame::Refused(r)) => Err(RegisterError::Refused(r)),
        Ok(other) => Err(RegisterError::UnexpectedFrame(other.frame_type())),
        Err(e) => Err(lost(&conn).unwrap_or(RegisterError::NoAnswer(e))),
    }
}

/// How [`serve`] returned.
enum Served {
    /// The uplink ended.
    Ended(UplinkEnd),
    /// A connection over the TCP carrier found QUIC working again and
    /// registered over it: serve that one now.
    Upgraded(Box<Registration>),
}

/// Beyond the keep-alive interval, how long the relay may stay silent
/// before the agent dials it anew beside the old connection: the relay
/// acknowledges each keep-alive within a round trip, so this much silence
/// is a lost relay, noticed long before the idle timeout.
const SILENCE_SLACK: Duration = Duration::from_secs(3);

/// Resolves once nothing has arrived on `conn` for `keep_alive` plus
/// [`SILENCE_SLACK`]; never without keep-alives. Looks once a second.
async fn silence(conn: &quinn::Connection, keep_alive: Option<Duration>) -> Duration {
    let Some(keep_alive) = keep_alive else {
        return std::future::pending().await;
    };
    let limit = keep_alive + SILENCE_SLACK;
    let mut heard = (conn.stats().udp_rx.datagrams, tokio::time::Instant::now());
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let count = conn.stats().udp_rx.datagrams;
        if count != heard.0 {
            heard = (count, tokio::time::Instant::now());
        } else if heard.1.elapsed() >= limit {
            return heard.1.elapsed();
        }
    }
}

/// Serves a registered connection (the relay's streams) until it ends, the
/// relay sends `GoAway`, or `shutdown`. Direct connections reach the
/// agent's endpoint, not this connection: they are served apart
/// ([`crate::relays`]), so they outlive the relay that set them up.
///
/// A connection over the TCP carrier (with `--transport auto`) tries QUIC
/// again every `reprobe`; once a QUIC connection registers, this one
/// finishes its control stream (the relay opens no more streams on it) and
/// serves the streams it has in the background until the relay closes it.
async fn serve(
    config: &Config,
    shared: &Arc<Shared>,
    registration: Registration,
    origin: &Origin,
    instances: &Instances,
    shutdown: &CancellationToken,
) -> Served {
    let Registration {
        _instance: instance,
        conn,
        relay,
        mut control,
        _control_send: mut control_send,
        via,
        candidate,
    } = registration;
    let upgrade = async {
        if via != Via::Tcp || config.transport.via != Via::Auto {
            return std::future::pending().await;
        }
        loop {
            let quic = quic_again(
                &shared.credential,
                &candidate,
                Some(origin),
                &config.transport,
            )
            .await;
            match register(config, quic, instances).await {
                Ok(Ok(registration)) => return registration,
                Ok(Err(end)) => tracing::debug!(
                    ?end,
                    "QUIC reached another instance; staying on the TCP carrier"
                ),
                Err(e) => {
                    tracing::debug!(err = %e, "QUIC gets through but did not register; staying on the TCP carrier")
                }
            }
        }
    };
    let until = async {
        tokio::select! {
            frame = control.read() => Served::Ended(match frame {
                Ok(Some(Frame::GoAway(g))) => {
                    tracing::info!(reconnect_in = ?g.reconnect_in(), "relay is going away");
                    UplinkEnd::GoAway(g.reconnect_in())
                }
                Ok(Some(other)) => UplinkEnd::Lost(LostRelay::UnexpectedControlFrame(other.frame_type())),
                Ok(None) => UplinkEnd::Lost(LostRelay::ControlClosed),
                Err(e) => UplinkEnd::Lost(conn.close_reason().map_or(LostRelay::Control(e), LostRelay::Connection)),
            }),
            () = shutdown.cancelled() => Served::Ended(UplinkEnd::Shutdown),
            quic = upgrade => Served::Upgraded(Box::new(quic)),
            silent = silence(&conn, config.transport.keep_alive) => Served::Ended(UplinkEnd::Lost(LostRelay::Silent(silent))),
        }
    };
    let relay = Arc::new(relay);
    let (end, streams) = connection::serve(shared, &conn, relay.clone(), until).await;
    let ended = match end {
        ConnectionEnd::Closed(e) => Served::Ended(UplinkEnd::Lost(LostRelay::Connection(e))),
        ConnectionEnd::Stopped(ended) => ended,
    };
    let grace = config.shutdown_grace;
    match &ended {
        Served::Ended(UplinkEnd::Shutdown) => {
            // Let live streams finish before closing.
            streams.drain(grace).await;
            conn.close(ErrorCode::GOING_AWAY.0.into(), b"agent shutting down");
        }
        Served::Ended(UplinkEnd::GoAway(_) | UplinkEnd::Lost(LostRelay::Silent(_))) => {
            // The relay drains (or fell silent, and may yet answer): clients that have not yet moved to another
            // relay may still open streams here, so keep serving until the
            // relay closes the connection (it does once they are gone),
            // bounded by our grace; meanwhile the caller dials again.
            let shared = shared.clone();
            let shutdown = shutdown.clone();
            let draining = async move {
                let until = async {
                    tokio::select! {
                        () = tokio::time::sleep(grace) => {}
                        () = shutdown.cancelled() => {}
                    }
                };
                let (_, more) = connection::serve(&shared, &conn, relay, until).await;
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    tokio::join!(streams.drain(grace), more.drain(grace))
                })
                .await;
                conn.close(ErrorCode::GOING_AWAY.0.into(), b"relay went away");
                drop(instance);
            };
            tokio::spawn(draining.instrument(tracing::Span::current()));
        }
        Served::Upgraded(_) => {
            // The relay unregisters this connection and opens nothing more
            // on it; it closes it once the streams on it have ended.
            let _ = control_send.finish();
            drop(instance);
            let shared = shared.clone();
            let shutdown = shutdown.clone();
            let draining = async move {
                // A stream the relay opened before it read the finish is
                // still served.
                let (end, more) =
                    connection::serve(&shared, &conn, relay, shutdown.cancelled()).await;
                if let ConnectionEnd::Stopped(()) = end {
                    let _ = tokio::time::timeout(grace, async {
                        tokio::join!(streams.drain(grace), more.drain(grace))
                    })
                    .await;
                    conn.close(ErrorCode::GOING_AWAY.0.into(), b"agent shutting down");
                }
            };
            tokio::spawn(draining.instrument(tracing::Span::current()));
        }
        Served::Ended(_) => {}
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed_with(code: ErrorCode) -> RegisterError {
        RegisterError::Lost(ConnectionError::ApplicationClosed(
            quinn::ApplicationClose {
                error_code: code.0.into(),
                reason: bytes::Bytes::from_static(b"why"),
            },
        ))
    }

    #[test]
    fn what_cannot_heal_stops_the_agent() {
        for code in [
            ErrorCode::UNAUTHORIZED,
            ErrorCode::REVOKED,
            ErrorCode::CERT_EXPIRED,
            ErrorCode::PROTOCOL_VIOLATION,
        ] {
            let refused = RegisterError::Refused(Refused::new(code, "no"));
            assert!(!refused.heals(), "{refused}");
            assert!(!closed_with(code).heals(), "{code}");
            assert_eq!(closed_with(code).code(), Some(code));
        }
        let credential = RegisterError::Dial(DialError::Credential("expired".into()));
        assert!(!credential.heals());
    }

    #[test]
    fn what_is_transient_is_retried() {
        for code in [
            ErrorCode::AGENT_OFFLINE,
            ErrorCode::LIMIT_EXCEEDED,
            ErrorCode::GOING_AWAY,
            ErrorCode::AUDIT_UNAVAILABLE,
            ErrorCode::UNSUPPORTED,
            ErrorCode::INTERNAL,
        ] {
            assert!(RegisterError::Refused(Refused::new(code, "later")).heals());
            assert!(closed_with(code).heals(), "{code}");
        }
        assert!(RegisterError::Lost(ConnectionError::TimedOut).heals());
        assert!(RegisterError::UnexpectedFrame(FrameType::GoAway).heals());
        let unreachable = RegisterError::Dial(DialError::Unreachable {
            addr: "127.0.0.1:1".into(),
            reason: "no answer".into(),
        });
        assert!(unreachable.heals());
    }
}
