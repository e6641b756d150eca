//! One dial attempt at one relay address: over QUIC (UDP), over the TCP
//! carrier ([`crate::tcp`], perhaps through an HTTP proxy), or both raced
//! (`--transport auto`); then the QUIC handshake and the checks that the
//! peer is our relay. And the probe that moves a carrier's connection back
//! to QUIC once UDP gets through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::{CidPrefix, ErrorCode, Role};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::ConnectionError;

use super::{dial_one, Candidate, DialError, Origin, RelayConn, STAGGER};
use crate::cert::PeerCert;
use crate::endpoint::{self, Transport, Via};
use crate::gone::{Cause, PeerGone};
use crate::proxy::Proxy;
use crate::tcp::{self, CarrierError, StreamSocket};

/// Tries QUIC again for a connection over the TCP carrier, every
/// `transport.reprobe`, until a QUIC connection to the same relay address
/// is up (returned) or the credential is unusable (never returns then). A
/// probe that finds UDP still blocked costs a few Initial packets.
pub async fn quic_again(
    credential: &crate::renew::Reloading,
    candidate: &Candidate,
    origin: Option<&Origin>,
    transport: &Transport,
) -> RelayConn {
    let quic = Transport {
        via: Via::Quic,
        ..transport.clone()
    };
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + transport.reprobe,
        transport.reprobe,
    );
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if candidate.at_proxy() {
        // No address to try QUIC at: the name resolves at the proxy only.
        return std::future::pending().await;
    }
    loop {
        every.tick().await;
        let cred = credential.current();
        match dial_one(&cred, candidate, origin, &quic, REPROBE_TIMEOUT).await {
            Ok(rc) => return rc,
            Err(e) => {
                tracing::debug!(relay = %candidate, err = %e, "QUIC still does not get through; staying on the TCP carrier")
            }
        }
    }
}

/// How long a probe waits for QUIC to answer.
const REPROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) async fn dial_candidate(
    candidate: Candidate,
    origin: Option<Origin>,
    tls: Arc<QuicClientConfig>,
    expected: Option<proto::Name>,
    transport: Transport,
    timeout: Duration,
    ca_pem: Arc<str>,
) -> Result<RelayConn, DialError> {
    // An endpoint of our own is closed if the dial fails; a shared one is not.
    let from = |origin: Option<Origin>| match origin {
        Some(origin) => Ok((origin, false)),
        None => Origin::bind(candidate.addr, &transport).map(|o| (o, true)),
    };
    let quic = |(origin, own)| {
        dial_quic(
            candidate.clone(),
            origin,
            own,
            tls.clone(),
            expected.clone(),
            transport.clone(),
            timeout,
        )
    };
    let tcp = || {
        dial_tcp(
            candidate.clone(),
            tls.clone(),
            expected.clone(),
            transport.clone(),
            timeout,
            ca_pem.clone(),
        )
    };
    match transport.via {
        Via::Quic => quic(from(origin)?).await,
        Via::Tcp => tcp().await,
        // Only the proxy knows where it is.
        Via::Auto if candidate.at_proxy() => tcp().await,
        Via::Auto => {
            let tcp_port = transport.tcp_port.unwrap_or(candidate.addr.port());
            let (origin, own) = from(origin)?;
            let heard = origin.ears.hear(candidate.addr);
            race(quic((origin, own)), heard, tcp(), &candidate, tcp_port).await
        }
    }
}

/// QUIC first, the TCP carrier once QUIC has not answered within
/// [`STAGGER`] or has failed; the first connection up wins. When both fail,
/// the error says what each got.
///
/// `heard` fires when anything from the relay has arrived over UDP (its
/// Retry, at the latest): UDP gets through, and a handshake still going at
/// the stagger is a busy relay (a reconnect storm), not a blocked network,
/// so QUIC is waited for alone ([`HEARD_GRACE`] more) and the carrier
/// tried only after that (a herd of agents registering at once otherwise
/// sends many to carriers, which cost the relay more, issue #19).
async fn race(
    quic: impl std::future::Future<Output = Result<RelayConn, DialError>>,
    mut heard: tokio::sync::oneshot::Receiver<()>,
    tcp: impl std::future::Future<Output = Result<RelayConn, DialError>>,
    candidate: &Candidate,
    tcp_port: u16,
) -> Result<RelayConn, DialError> {
    tokio::pin!(quic);
    let quic_failed = tokio::select! {
        r = &mut quic => match r {
            Ok(conn) => return Ok(conn),
            Err(e) => Some(e),
        },
        () = tokio::time::sleep(STAGGER) => None,
    };
    // UDP gets through and the relay answered that it is busy: the carrier
    // would only cost it a TLS handshake more.
    let mut quic_failed = match quic_failed {
        Some(busy @ DialError::Busy { .. }) => return Err(busy),
        other => other,
    };
    if quic_failed.is_none() && heard.try_recv().is_ok() {
        // Not for ever: a path that passes a small Retry but drops full-size
        // packets must still reach the carrier.
        quic_failed = tokio::select! {
            r = &mut quic => match r {
                Ok(conn) => return Ok(conn),
                Err(e) => Some(e),
            },
            () = tokio::time::sleep(HEARD_GRACE) => None,
        };
    }
    tokio::pin!(tcp);
    let (quic_err, tcp_err) = match quic_failed {
        Some(quic_err) => match tcp.await {
            Ok(conn) => return Ok(conn),
            Err(tcp_err) => (quic_err, tcp_err),
        },
        None => tokio::select! {
            r = &mut quic => match r {
                Ok(conn) => return Ok(conn),
                Err(quic_err) => match tcp.await {
                    Ok(conn) => return Ok(conn),
                    Err(tcp_err) => (quic_err, tcp_err),
                },
            },
            r = &mut tcp => match r {
                Ok(conn) => return Ok(conn),
                Err(tcp_err) => match quic.await {
                    Ok(conn) => return Ok(conn),
                    Err(quic_err) => (quic_err, tcp_err),
                },
            },
        },
    };
    // What a person must fix (trust, names) speaks for itself; two kinds of
    // silence are told together, with what to check.
    Err(match (quic_err, tcp_err) {
        (DialError::Unreachable { reason: q, .. }, DialError::Unreachable { reason: t, .. }) => {
            let (remote, udp) = (candidate.addr, candidate.addr.port());
            DialError::Unreachable {
                addr: candidate.entry.clone(),
                reason: format!(
                    "UDP {udp} (QUIC): {q}; TCP {tcp_port}: {t} — check that the relay is \
                     running at {remote}, and that UDP port {udp} is reachable from here (QUIC \
                     runs over UDP; some networks block it) or its TCP listener is on \
                     (relay-server run --listen-tcp) and TCP port {tcp_port} is reachable"
                ),
            }
        }
        (DialError::Unreachable { reason: q, .. }, DialError::Proxy { addr, reason }) => {
            DialError::Proxy {
                addr,
                reason: format!(
                    "{reason} (and QUIC over UDP {}: {q})",
                    candidate.addr.port()
                ),
            }
        }
        (DialError::Unreachable { .. }, telling) | (telling, _) => telling,
    })
}

/// How long QUIC is waited for alone once the relay has answered over UDP
/// (a handshake queued behind thousands at a busy relay), before the
/// carrier races it after all.
const HEARD_GRACE: Duration = Duration::from_secs(3);

/// `host` as it goes before `:port`: an IPv6 address in brackets.
fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Dials `candidate` over QUIC (UDP), from `origin` if given.
async fn dial_quic(
    candidate: Candidate,
    origin: Origin,
    own: bool,
    tls: Arc<QuicClientConfig>,
    expected: Option<proto::Name>,
    transport: Transport,
    timeout: Duration,
) -> Result<RelayConn, DialError> {
    let Origin {
        endpoint,
        prefix,
        ears,
    } = origin;
    // Raced with TCP, the race's error says what to check.
    let hint = match transport.via {
        Via::Auto => String::new(),
        _ => no_answer_hint(candidate.addr),
    };
    let mut rc = handshake(
        endpoint, prefix, own, candidate, tls, expected, transport, timeout, &hint,
    )
    .await?;
    rc.ears = Some(ears);
    Ok(rc)
}

/// Dials `candidate` over the TCP carrier ([`crate::tcp`]): TCP (to
/// the relay's carrier port), TLS, then the same QUIC handshake inside.
async fn dial_tcp(
    candidate: Candidate,
    tls: Arc<QuicClientConfig>,
    expected: Option<proto::Name>,
    transport: Transport,
    timeout: Duration,
    ca_pem: Arc<str>,
) -> Result<RelayConn, DialError> {
    let unreachable = |reason: String| DialError::Unreachable {
        addr: candidate.entry.clone(),
        reason,
    };
    let port = transport.tcp_port.unwrap_or(candidate.addr.port());
    let remote = SocketAddr::new(candidate.addr.ip(), port);
    let carrier_tls = crate::tls::carrier_client_config(&ca_pem)
        .map_err(|e| DialError::Credential(format!("the credential's CA: {e}")))?;
    let proxy = Proxy::choose(transport.proxy.as_deref(), &candidate.host).map_err(|e| {
        DialError::Proxy {
            addr: candidate.entry.clone(),
            reason: e.to_string(),
        }
    })?;
    let started = Instant::now();
    let setup = async {
        let tcp = match &proxy {
            // The proxy resolves the name (as a browser's CONNECT does).
            Some(proxy) => {
                let target = format!("{}:{port}", bracketed(&candidate.host));
                let tcp = proxy.connect(&target, timeout).await?;
                let _ = tcp.set_nodelay(true);
                tcp
            }
            None => tcp::connect(remote, timeout).await?,
        };
        let local = match tcp.local_addr().unwrap_or(remote) {
            // quinn dials only addresses of its socket's family: an IPv6
            // relay (or a stand-in, `Candidate::at_proxy`) behind a proxy
            // reached over IPv4 needs an IPv6 local address.
            SocketAddr::V4(v4) if candidate.addr.is_ipv6() => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            local => local,
        };
        StreamSocket::handshake(tcp, local, candidate.addr, &candidate.host, carrier_tls).await
    };
    let socket = match tokio::time::timeout(timeout, setup).await {
        Ok(Ok(socket)) => Arc::new(socket),
        Ok(Err(CarrierError::Proxy(e))) => {
            return Err(DialError::Proxy {
                addr: candidate.entry.clone(),
                reason: e.to_string(),
            })
        }
        Ok(Err(e)) if transport.via == Via::Auto => return Err(unreachable(e.reason())),
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => {
            return Err(unreachable(format!(
                "TCP {port}: no answer within {timeout:?}"
            )))
        }
    };
    let ended = socket.ended();
    let transport = transport.over_carrier();
    let prefix = crate::direct::random_prefix();
    let endpoint = endpoint::over_carrier(socket, &transport, prefix).map_err(DialError::Socket)?;
    let left = timeout.saturating_sub(started.elapsed());
    let hint = format!("over TCP {port}, the relay did not finish the QUIC handshake");
    let mut rc = handshake(
        endpoint, prefix, true, candidate, tls, expected, transport, left, &hint,
    )
    .await?;
    rc.via = Via::Tcp;
    if let Some(proxy) = &proxy {
        tracing::debug!(relay = %rc.candidate, proxy = %proxy.addr(), "TCP carrier through an HTTP proxy");
    }
    // A carrier that ends takes its connection with it now, not after the
    // idle timeout.
    let conn = rc.conn.clone();
    let relay = rc.candidate.to_string();
    tokio::spawn(async move {
        tokio::select! {
            why = ended => {
                tracing::warn!(%relay, reason = %why, "the TCP carrier to the relay closed");
                conn.close(ErrorCode::GOING_AWAY.0.into(), b"tcp carrier closed");
            }
            _ = conn.closed() => {}
        }
    });
    Ok(rc)
}

/// The QUIC handshake with the relay at `candidate` from `endpoint`, and the
/// checks that it is our relay. `hint` says what to check if nothing answers.
#[allow(clippy::too_many_arguments)]
async fn handshake(
    endpoint: quinn::Endpoint,
    prefix: CidPrefix,
    own: bool,
    candidate: Candidate,
    tls: Arc<QuicClientConfig>,
    expected: Option<proto::Name>,
    transport: Transport,
    timeout: Duration,
    hint: &str,
) -> Result<RelayConn, DialError> {
    let dialled = candidate.clone();
    let Candidate {
        entry,
        host,
        addr: remote,
    } = candidate;
    let addr = entry.as_str();
    let unreachable = |reason: String| DialError::Unreachable {
        addr: addr.to_owned(),
        reason,
    };
    let mut config = quinn::ClientConfig::new(tls);
    config.transport_config(Arc::new(transport.to_quinn()));
    let connecting = endpoint
        .connect_with(config, remote, &host)
        .map_err(|e| unreachable(e.to_string()))?;
    let conn = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => {
            if own {
                endpoint.close(0u32.into(), b"");
            }
            return Err(unreachable(no_answer(timeout, hint)));
        }
        Ok(Err(e)) if is_refused(&e) => {
            return Err(DialError::Busy {
                addr: addr.to_owned(),
            })
        }
        Ok(Err(e)) => {
            let gone = PeerGone::new(Role::Relay, &e);
            return Err(match gone.cause {
                Cause::WrongName(mismatch) => DialError::WrongName {
                    addr: addr.to_owned(),
                    mismatch,
                },
                _ if is_tls_failure(&e) => DialError::Untrusted {
                    addr: addr.to_owned(),
                    reason: gone.to_string(),
                },
                Cause::TimedOut => unreachable(format!("{gone}: {hint}")),
                _ => unreachable(gone.to_string()),
            });
        }
        Ok(Ok(conn)) => conn,
    };
    let not_relay = |reason: String| DialError::NotRelay {
        addr: addr.to_owned(),
        reason,
    };
    let relay = PeerCert::of_connection(&conn).map_err(|e| not_relay(e.to_string()))?;
    if relay.identity.role != Role::Relay {
        conn.close(ErrorCode::UNAUTHORIZED.0.into(), b"not a relay");
        return Err(not_relay(format!(
            "it presented a {} certificate",
            relay.identity
        )));
    }
    if let Some(expected) = expected.filter(|e| *e != relay.relay) {
        conn.close(ErrorCode::UNAUTHORIZED.0.into(), b"wrong relay");
        return Err(not_relay(format!(
            "it is relay {}, the credential is for {}",
            relay.relay, expected
        )));
    }
    Ok(RelayConn {
        conn,
        endpoint,
        relay,
        prefix,
        via: Via::Quic,
        candidate: dialled,
        ears: None,
    })
}

/// Whether the relay refused the connection before its handshake (it is
/// over its handshake budget).
fn is_refused(err: &ConnectionError) -> bool {
    matches!(err, ConnectionError::ConnectionClosed(c)
        if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED)
}

/// Whether a connection failed in the TLS handshake (a CRYPTO_ERROR).
fn is_tls_failure(err: &ConnectionError) -> bool {
    let code = match err {
        ConnectionError::TransportError(e) => u64::from(e.code),
        ConnectionError::ConnectionClosed(c) => u64::from(c.error_code),
        _ => return false,
    };
    (0x100..0x200).contains(&code)
}

/// The relay did not answer within `timeout`.
pub(super) fn no_answer(timeout: Duration, hint: &str) -> String {
    if hint.is_empty() {
        return format!("no answer within {timeout:?}");
    }
    format!("no answer within {timeout:?}: {hint}")
}

/// What to check when the relay does not answer at all.
pub(super) fn no_answer_hint(remote: SocketAddr) -> String {
    format!(
        "check that the relay is running at {remote} and that UDP port {} is reachable from here (QUIC runs over UDP; some networks block it)",
        remote.port()
    )
}
