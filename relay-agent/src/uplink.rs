//! One connection to one relay, the agent's uplink: dial, register on the
//! control stream, then serve the streams the relay opens
//! ([`crate::connection`]) and the direct connections it forwards to this
//! agent's endpoint ([`crate::direct`]) until the connection ends, the
//! relay goes away, or the agent shuts down.
//!
//! ```text
//! dial ─▶ Register ─▶ Registered ─▶ serve streams ─▶ GoAway / lost / shutdown
//!                  └▶ Refused, or the relay closes ─▶ RegisterError
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::{Capabilities, ErrorCode, Frame, FrameType, Name, Refused, Register, PROTOCOL_VERSION};
use quinn::ConnectionError;
use relay_net::cert::PeerCert;
use relay_net::dial::{describe, dial_addr, DialError, RelayConn};
use relay_net::framed::{write_frame, FrameError, FrameReader};
use relay_net::tls::TlsError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::connection::{self, ConnectionEnd};
use crate::shared::Shared;
use crate::Config;

/// How a registered uplink ended.
#[derive(Debug)]
pub enum UplinkEnd {
    /// The relay asked us to come back after this long (`GoAway`).
    GoAway(Duration),
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
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    relay: PeerCert,
    control: FrameReader,
    /// Kept open: finishing it tells the relay we left.
    _control_send: quinn::SendStream,
}

/// Dials `addr`, registers, and serves until the connection ends. `on_up`
/// runs once registered.
///
/// # Errors
/// If the relay cannot be reached or refuses the registration.
pub async fn run(
    config: &Config,
    shared: &Arc<Shared>,
    addr: &str,
    shutdown: &CancellationToken,
    on_up: impl FnOnce(),
) -> Result<UplinkEnd, RegisterError> {
    let cred = shared.credential.current();
    let registration = tokio::select! {
        registered = register(config, &cred, addr) => registered?,
        () = shutdown.cancelled() => return Ok(UplinkEnd::Shutdown),
    };
    tracing::info!(relay = %registration.relay.identity.name, %addr, "registered with relay");
    on_up();
    Ok(serve(config, shared, registration, shutdown).await)
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
    caps
}

/// Dials `addr` with `cred` (the current one: see [`crate::renewal`]) and
/// registers on a control stream.
async fn register(
    config: &Config,
    cred: &relay_net::credential::Loaded,
    addr: &str,
) -> Result<Registration, RegisterError> {
    let RelayConn {
        conn,
        endpoint,
        relay,
        prefix,
        ..
    } = dial_addr(cred, addr, &config.transport, config.connect_timeout).await?;
    // Whatever failed on a connection the relay closed, its close says why.
    let lost = |conn: &quinn::Connection| conn.close_reason().map(RegisterError::Lost);
    let (mut send, recv) = conn.open_bi().await.map_err(RegisterError::Lost)?;
    let register = Register {
        version: PROTOCOL_VERSION,
        capabilities: capabilities(config),
        targets: config.allowlist.names(),
        prefix: Some(prefix),
    };
    // Clients the relay grants a direct path reach this endpoint through
    // the relay's address (module `direct`).
    let tls = relay_net::tls::server_config(
        &cred.credential.certificate,
        cred.key_pem(),
        &cred.credential.ca,
    )
    .map_err(RegisterError::DirectTls)?;
    relay_net::endpoint::accept_direct(&endpoint, tls, &config.transport);
    if let Err(e) = write_frame(&mut send, register).await {
        return Err(lost(&conn).unwrap_or(RegisterError::Send(e)));
    }
    let mut control = FrameReader::new(recv);
    match control.expect(config.connect_timeout).await {
        Ok(Frame::Registered(_)) => Ok(Registration {
            conn,
            endpoint,
            relay,
            control,
            _control_send: send,
        }),
        Ok(Frame::Refused(r)) => Err(RegisterError::Refused(r)),
        Ok(other) => Err(RegisterError::UnexpectedFrame(other.frame_type())),
        Err(e) => Err(lost(&conn).unwrap_or(RegisterError::NoAnswer(e))),
    }
}

/// Serves a registered connection: the relay's streams, and the direct
/// connections that reach this agent's endpoint, until the connection
/// ends, the relay sends `GoAway`, or `shutdown`.
async fn serve(
    config: &Config,
    shared: &Arc<Shared>,
    registration: Registration,
    shutdown: &CancellationToken,
) -> UplinkEnd {
    let Registration {
        conn,
        endpoint,
        relay,
        mut control,
        _control_send,
    } = registration;
    let relay_addr = conn.remote_address();
    let relay_name = relay.relay.clone();
    let mut direct = JoinSet::new();
    let until = async {
        loop {
            tokio::select! {
                frame = control.read() => return match frame {
                    Ok(Some(Frame::GoAway(g))) => {
                        tracing::info!(reconnect_in = ?g.reconnect_in(), "relay is going away");
                        UplinkEnd::GoAway(g.reconnect_in())
                    }
                    Ok(Some(other)) => UplinkEnd::Lost(LostRelay::UnexpectedControlFrame(other.frame_type())),
                    Ok(None) => UplinkEnd::Lost(LostRelay::ControlClosed),
                    Err(e) => UplinkEnd::Lost(conn.close_reason().map_or(LostRelay::Control(e), LostRelay::Connection)),
                },
                Some(incoming) = endpoint.accept() => {
                    admit_direct(shared, &mut direct, relay_addr, &relay_name, incoming);
                }
                Some(_) = direct.join_next(), if !direct.is_empty() => {}
                () = shutdown.cancelled() => return UplinkEnd::Shutdown,
            }
        }
    };
    let (end, streams) = connection::serve(shared, &conn, Arc::new(relay), until).await;
    let ended = match end {
        ConnectionEnd::Closed(e) => UplinkEnd::Lost(LostRelay::Connection(e)),
        ConnectionEnd::Stopped(ended) => ended,
    };
    if matches!(ended, UplinkEnd::Shutdown | UplinkEnd::GoAway(_)) {
        // Let live streams finish before closing: a GoAway'ing relay drains them too.
        let direct_drained = async { while direct.join_next().await.is_some() {} };
        let grace = config.shutdown_grace;
        let _ = tokio::time::timeout(grace, async {
            tokio::join!(streams.drain(grace), direct_drained)
        })
        .await;
        conn.close(ErrorCode::GOING_AWAY.0.into(), b"agent shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    }
    ended
}

/// Starts admitting one direct connection, in a span of its own.
fn admit_direct(
    shared: &Arc<Shared>,
    direct: &mut JoinSet<()>,
    relay_addr: SocketAddr,
    relay_name: &Name,
    incoming: quinn::Incoming,
) {
    let span = tracing::info_span!("direct", caller = tracing::field::Empty);
    let admitting = crate::direct::admit(shared.clone(), relay_addr, relay_name.clone(), incoming);
    direct.spawn(admitting.instrument(span));
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
