//! Dialing the relay from an agent or a client, and turning every way it can
//! fail into a message a person can act on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::{ErrorCode, Role};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::ConnectionError;

use crate::cert::PeerCert;
use crate::credential::Loaded;
use crate::endpoint::{self, Transport, Via};
use crate::gone::{Cause, PeerGone};
use crate::proxy::Proxy;
use crate::tcp::{self, CarrierError, StreamSocket};
use proto::CidPrefix;

/// Why the relay could not be reached or refused us.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The credential itself is unusable (expired, bad PEM).
    #[error("{0}")]
    Credential(String),
    /// The relay address does not resolve.
    #[error("cannot resolve relay address {addr}: {reason}")]
    Resolve {
        /// The address as written in the credential.
        addr: String,
        /// The resolver's answer.
        reason: String,
    },
    /// No answer, or the connection failed before it was established.
    #[error("relay {addr} unreachable: {reason}")]
    Unreachable {
        /// The address dialed.
        addr: String,
        /// A human description.
        reason: String,
    },
    /// The TLS handshake failed: one side does not trust the other's certificate.
    #[error("relay {addr} and this credential do not trust each other: {reason}")]
    Untrusted {
        /// The address dialed.
        addr: String,
        /// A human description.
        reason: String,
    },
    /// The relay's certificate is signed by this credential's CA but is not
    /// issued for the host name or address that was dialed.
    #[error("relay {addr}: {mismatch}")]
    WrongName {
        /// The address dialed.
        addr: String,
        /// The name dialed and the names the certificate carries.
        mismatch: crate::gone::NameMismatch,
    },
    /// The relay is not the relay named in the credential.
    #[error("{addr} is not the relay of this credential: {reason}")]
    NotRelay {
        /// The address dialed.
        addr: String,
        /// What did not match.
        reason: String,
    },
    /// The HTTP proxy for the TCP carrier is misconfigured or would not
    /// open a tunnel to the relay.
    #[error("relay {addr}: {reason}")]
    Proxy {
        /// The address dialled.
        addr: String,
        /// What the proxy (or its setting) got wrong, and what to do.
        reason: String,
    },
    /// A local socket could not be bound.
    #[error("cannot open a UDP socket: {0}")]
    Socket(std::io::Error),
}

/// An established, verified connection to the relay.
#[derive(Debug)]
pub struct RelayConn {
    /// The QUIC connection.
    pub conn: quinn::Connection,
    /// The endpoint it runs on (kept alive with the connection).
    pub endpoint: quinn::Endpoint,
    /// The relay's verified identity.
    pub relay: PeerCert,
    /// The address that answered.
    pub addr: String,
    /// The prefix of the endpoint's connection IDs, which routes a direct
    /// path to it ([`crate::direct`]).
    pub prefix: CidPrefix,
    /// How it reaches the relay: [`Via::Quic`] (UDP) or [`Via::Tcp`] (the carrier).
    pub via: Via,
    /// The relay address dialled.
    pub candidate: Candidate,
}

/// One address a relay name resolved to: where to send, and the name to
/// check the relay's certificate against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The relay address as written (credential, config): `host:port`.
    pub entry: String,
    /// The TLS server name: the host part of `entry`.
    pub host: String,
    /// One address `entry` resolves to.
    pub addr: SocketAddr,
}

impl std::fmt::Display for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.entry == self.addr.to_string() {
            write!(f, "{}", self.entry)
        } else {
            write!(f, "{} ({})", self.entry, self.addr)
        }
    }
}

/// The UDP endpoint a program dials relays from, kept across dials: one
/// socket and one connection-ID prefix for all its relay connections of one
/// address family. Any relay can then route the program's direct paths
/// (they carry the same prefix and leave from the same address), and a
/// re-dial leaves from the address the relays already know, which is what
/// lets an end-to-end path move to another relay (issue #14).
#[derive(Clone, Debug)]
pub struct Origin {
    /// The endpoint (a client endpoint: no server configuration unless an
    /// agent adds one for direct paths).
    pub endpoint: quinn::Endpoint,
    /// The prefix of its connection IDs.
    pub prefix: CidPrefix,
}

impl Origin {
    /// A new origin for relays of `remote`'s address family.
    ///
    /// # Errors
    /// If no local socket can be bound.
    pub fn bind(remote: SocketAddr, transport: &Transport) -> Result<Origin, DialError> {
        let prefix = crate::direct::random_prefix();
        let endpoint = endpoint::origin(remote, transport, prefix).map_err(DialError::Socket)?;
        Ok(Origin { endpoint, prefix })
    }

    /// Whether relays at `remote` can be dialled from here.
    pub fn reaches(&self, remote: SocketAddr) -> bool {
        self.endpoint
            .local_addr()
            .is_ok_and(|local| local.is_ipv4() == remote.is_ipv4())
    }
}

/// How long happy eyeballs waits for one relay address before it also
/// tries the next (RFC 8305 suggests 250 ms): a dead or black-holed relay
/// costs a client this much, not a dial timeout.
pub const STAGGER: Duration = Duration::from_millis(250);

/// Every address every entry resolves to (all A and AAAA records), in
/// order, without repeats; the entries that do not resolve, with why.
pub async fn resolve_all(entries: &[String]) -> (Vec<Candidate>, Vec<DialError>) {
    let mut found: Vec<Candidate> = Vec::new();
    let mut failed = Vec::new();
    for entry in entries {
        match resolve(entry).await {
            Ok((host, addrs)) => {
                for addr in addrs {
                    if !found.iter().any(|c| c.addr == addr && c.host == host) {
                        found.push(Candidate {
                            entry: entry.clone(),
                            host: host.clone(),
                            addr,
                        });
                    }
                }
            }
            Err(e) => failed.push(e),
        }
    }
    (found, failed)
}

/// Dials every address of every relay entry of `cred`, happy-eyeballs
/// style ([`dial_any`]), and returns the first verified connection.
///
/// # Errors
/// The most telling failure when none works ([`dial_any`]).
pub async fn dial(
    cred: &Loaded,
    transport: &Transport,
    timeout: Duration,
) -> Result<RelayConn, DialError> {
    let (candidates, unresolved) = resolve_all(&cred.credential.relay).await;
    match unresolved.into_iter().next() {
        Some(unresolved) if candidates.is_empty() => Err(unresolved),
        _ => dial_any(cred, &candidates, None, transport, timeout).await,
    }
}

/// Happy eyeballs over relay addresses (RFC 8305): starts with the first,
/// and starts the next whenever [`STAGGER`] passes without an answer or
/// an attempt fails; the first connection that completes and proves to be
/// our relay wins, the other attempts are dropped. A dead or black-holed
/// relay among several therefore costs one stagger, not a timeout.
/// Attempts leave from `origin` where it reaches the address's family, else
/// from an endpoint of their own.
///
/// # Errors
/// When every address fails: a failure that is not "unreachable" if there
/// is one (an untrusted or wrong relay is what a person must fix), else
/// the first address's.
pub async fn dial_any(
    cred: &Loaded,
    candidates: &[Candidate],
    origin: Option<&Origin>,
    transport: &Transport,
    timeout: Duration,
) -> Result<RelayConn, DialError> {
    let tls = client_tls(cred)?;
    let ca_pem: Arc<str> = cred.credential.ca.as_str().into();
    let relay = cred.cert.relay.clone();
    let mut waiting = candidates.iter().enumerate();
    let mut attempts = tokio::task::JoinSet::new();
    let mut failures: Vec<(usize, DialError)> = Vec::new();
    let mut start_next = |attempts: &mut tokio::task::JoinSet<_>| {
        let Some((i, c)) = waiting.next() else {
            return false;
        };
        let from = origin.filter(|o| o.reaches(c.addr)).cloned();
        let attempt = dial_candidate(
            c.clone(),
            from,
            tls.clone(),
            relay.clone(),
            transport.clone(),
            timeout,
            ca_pem.clone(),
        );
        attempts.spawn(async move { (i, attempt.await) });
        true
    };
    let mut more = start_next(&mut attempts);
    while !attempts.is_empty() {
        tokio::select! {
            Some(done) = attempts.join_next() => match done {
                Ok((_, Ok(conn))) => return Ok(conn),
                Ok((i, Err(e))) => {
                    tracing::debug!(relay = %candidates[i], err = %e, "relay address failed");
                    failures.push((i, e));
                    more = more && start_next(&mut attempts);
                }
                Err(e) => tracing::error!(err = %e, "a dial attempt panicked"),
            },
            () = tokio::time::sleep(STAGGER), if more => more = start_next(&mut attempts),
        }
    }
    if failures.is_empty() {
        return Err(DialError::Credential(
            "no relay address to dial: the credential lists none".into(),
        ));
    }
    failures.sort_by_key(|(i, _)| *i);
    let telling = failures
        .iter()
        .position(|(_, e)| !matches!(e, DialError::Unreachable { .. }))
        .unwrap_or(0);
    Err(failures.swap_remove(telling).1)
}

/// Dials one relay address (an agent keeps a connection to every relay
/// instance, DESIGN "Scale-out"), from `origin` if it reaches the
/// address's family.
///
/// # Errors
/// If the credential is unusable or the relay cannot be reached or verified.
pub async fn dial_one(
    cred: &Loaded,
    candidate: &Candidate,
    origin: Option<&Origin>,
    transport: &Transport,
    timeout: Duration,
) -> Result<RelayConn, DialError> {
    let tls = client_tls(cred)?;
    let relay = cred.cert.relay.clone();
    let from = origin.filter(|o| o.reaches(candidate.addr)).cloned();
    dial_candidate(
        candidate.clone(),
        from,
        tls,
        relay,
        transport.clone(),
        timeout,
        cred.credential.ca.as_str().into(),
    )
    .await
}

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

/// As [`dial_one`], for an address as written (`host:port`): its first
/// address. For tools that dial one relay on purpose (`bench`).
///
/// # Errors
/// If it does not resolve, or as [`dial_one`].
pub async fn dial_addr(
    cred: &Loaded,
    addr: &str,
    transport: &Transport,
    timeout: Duration,
) -> Result<RelayConn, DialError> {
    let (host, addrs) = resolve(addr).await?;
    let candidate = Candidate {
        entry: addr.to_owned(),
        host,
        addr: addrs[0],
    };
    dial_one(cred, &candidate, None, transport, timeout).await
}

fn client_tls(cred: &Loaded) -> Result<Arc<QuicClientConfig>, DialError> {
    cred.check_expiry(time::OffsetDateTime::now_utc())
        .map_err(DialError::Credential)?;
    let tls = crate::tls::client_config(
        &cred.credential.certificate,
        cred.key_pem(),
        &cred.credential.ca,
    )
    .map_err(|e| DialError::Credential(format!("{}: {e}", cred.path.display())))?;
    Ok(Arc::new(tls))
}

async fn dial_candidate(
    candidate: Candidate,
    origin: Option<Origin>,
    tls: Arc<QuicClientConfig>,
    expected: proto::Name,
    transport: Transport,
    timeout: Duration,
    ca_pem: Arc<str>,
) -> Result<RelayConn, DialError> {
    let quic = || {
        dial_quic(
            candidate.clone(),
            origin.clone(),
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
        Via::Quic => quic().await,
        Via::Tcp => tcp().await,
        Via::Auto => {
            let tcp_port = transport.tcp_port.unwrap_or(candidate.addr.port());
            race(quic(), tcp(), &candidate, tcp_port).await
        }
    }
}

/// QUIC first, the TCP carrier once QUIC has not answered within
/// [`STAGGER`] or has failed; the first connection up wins. When both fail,
/// the error says what each got.
async fn race(
    quic: impl std::future::Future<Output = Result<RelayConn, DialError>>,
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
    origin: Option<Origin>,
    tls: Arc<QuicClientConfig>,
    expected: proto::Name,
    transport: Transport,
    timeout: Duration,
) -> Result<RelayConn, DialError> {
    // An endpoint of our own is closed if the dial fails; a shared one is not.
    let (Origin { endpoint, prefix }, own) = match origin {
        Some(origin) => (origin, false),
        None => (Origin::bind(candidate.addr, &transport)?, true),
    };
    // Raced with TCP, the race's error says what to check.
    let hint = match transport.via {
        Via::Auto => String::new(),
        _ => no_answer_hint(candidate.addr),
    };
    handshake(
        endpoint, prefix, own, candidate, tls, expected, transport, timeout, &hint,
    )
    .await
}

/// Dials `candidate` over the TCP carrier ([`crate::tcp`]): TCP (to
/// the relay's carrier port), TLS, then the same QUIC handshake inside.
async fn dial_tcp(
    candidate: Candidate,
    tls: Arc<QuicClientConfig>,
    expected: proto::Name,
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
    let proxy = match &transport.proxy {
        Some(url) => Some(Proxy::parse(url)),
        None => Proxy::from_env(&candidate.host).transpose(),
    }
    .transpose()
    .map_err(|e| DialError::Proxy {
        addr: candidate.entry.clone(),
        reason: e.to_string(),
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
        let local = tcp.local_addr().unwrap_or(remote);
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
    let relay = rc.addr.clone();
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
    expected: proto::Name,
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
    if relay.relay != expected {
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
        addr: addr.to_owned(),
        prefix,
        via: Via::Quic,
        candidate: dialled,
    })
}

/// Splits `host:port` and resolves it to every address it names; the host
/// (without port) is the TLS server name.
async fn resolve(addr: &str) -> Result<(String, Vec<SocketAddr>), DialError> {
    let fail = |reason: String| DialError::Resolve {
        addr: addr.to_owned(),
        reason,
    };
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok((sa.ip().to_string(), vec![sa]));
    }
    let (host, _port) = addr
        .rsplit_once(':')
        .ok_or_else(|| fail("expected host:port".into()))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let mut remotes: Vec<SocketAddr> = Vec::new();
    for remote in tokio::net::lookup_host(addr)
        .await
        .map_err(|e| fail(e.to_string()))?
    {
        if !remotes.contains(&remote) {
            remotes.push(remote);
        }
    }
    if remotes.is_empty() {
        return Err(fail("no address found".into()));
    }
    Ok((host, remotes))
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

/// A human description of a connection failure of an agent or a client:
/// their peer is the relay. Elsewhere use [`describe_peer`].
pub fn describe(err: &ConnectionError) -> String {
    describe_peer(err, Role::Relay)
}

/// A human description of a connection failure, naming `peer`, the side on
/// the other end (the relay describing a client's connection passes
/// [`Role::Client`]). [`PeerGone`] is the typed form.
pub fn describe_peer(err: &ConnectionError, peer: Role) -> String {
    PeerGone::new(peer, err).to_string()
}

/// The relay did not answer within `timeout`.
fn no_answer(timeout: Duration, hint: &str) -> String {
    if hint.is_empty() {
        return format!("no answer within {timeout:?}");
    }
    format!("no answer within {timeout:?}: {hint}")
}

/// What to check when the relay does not answer at all.
fn no_answer_hint(remote: SocketAddr) -> String {
    format!(
        "check that the relay is running at {remote} and that UDP port {} is reachable from here (QUIC runs over UDP; some networks block it)",
        remote.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_answer_says_what_to_check() {
        let remote: SocketAddr = "203.0.113.7:4433".parse().unwrap_or_else(|e| panic!("{e}"));
        let err = DialError::Unreachable {
            addr: "relay.example.com:4433".into(),
            reason: no_answer(Duration::from_secs(10), &no_answer_hint(remote)),
        };
        assert_eq!(
            err.to_string(),
            "relay relay.example.com:4433 unreachable: no answer within 10s: check that the \
             relay is running at 203.0.113.7:4433 and that UDP port 4433 is reachable from here \
             (QUIC runs over UDP; some networks block it)"
        );
    }

    #[test]
    fn a_wrong_name_is_not_called_untrusted() {
        let err = DialError::WrongName {
            addr: "127.0.0.1:4433".into(),
            mismatch: crate::gone::NameMismatch {
                expected: "127.0.0.1".into(),
                presented: vec!["relay.example.com".into()],
            },
        };
        let text = err.to_string();
        assert!(
            text.starts_with("relay 127.0.0.1:4433: the relay's certificate is valid (signed by this credential's CA) but is not issued for 127.0.0.1: it names relay.example.com"),
            "{text}"
        );
        assert!(text.contains("relay-server init --name"), "{text}");
        assert!(!text.contains("trust each other"), "{text}");
    }
}
