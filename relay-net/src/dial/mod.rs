//! Dialing the relay from an agent or a client, and turning every way it can
//! fail into a message a person can act on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::Role;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::ConnectionError;

mod attempt;

use attempt::dial_candidate;
pub use attempt::quic_again;

use crate::cert::PeerCert;
use crate::credential::Loaded;
use crate::endpoint::{self, Transport, Via};
use crate::gone::PeerGone;
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
    /// The relay refused the connection: it is working on as many
    /// handshakes as it takes at once (a reconnect storm). Back off with
    /// jitter and try again.
    #[error("relay {addr} is busy: too many peers are connecting at once; try again shortly")]
    Busy {
        /// The address dialed.
        addr: String,
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
    /// The prefix of the endpoint's connection IDs, which routes a direct
    /// path to it ([`crate::direct`]).
    pub prefix: CidPrefix,
    /// How it reaches the relay: [`Via::Quic`] (UDP) or [`Via::Tcp`] (the carrier).
    pub via: Via,
    /// The relay address dialled.
    pub candidate: Candidate,
    /// Who the endpoint's socket has heard from; `None` on the carrier.
    pub ears: Option<Arc<crate::heard::Ears>>,
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

impl Candidate {
    /// A relay name this machine cannot resolve, dialled through an HTTP
    /// proxy that resolves it (corporate networks often resolve outside
    /// names only at the proxy, as browsers use them): TCP carrier only;
    /// `addr` is a stand-in from `100::/64` that no packet is sent to.
    pub fn at_proxy(&self) -> bool {
        crate::tcp::is_virtual(self.addr)
    }

    /// The candidate for `entry` (`host:port`) when it does not resolve
    /// here but the TCP carrier may reach it through a proxy that will.
    fn through_proxy(entry: &str, transport: &Transport) -> Option<Candidate> {
        if transport.via == Via::Quic {
            return None;
        }
        let (host, port) = split_host_port(entry)?;
        let port: u16 = port.parse().ok()?;
        // A proxy setting that does not parse still means one: the dial
        // then says what is wrong with it.
        if let Ok(None) = crate::proxy::Proxy::choose(transport.proxy.as_deref(), host) {
            return None;
        }
        // Stable per entry, distinct between entries.
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(entry, &mut hasher);
        let mut addr = crate::tcp::virtual_addr(std::hash::Hasher::finish(&hasher));
        addr.set_port(port);
        Some(Candidate {
            entry: entry.to_owned(),
            host: host.to_owned(),
            addr,
        })
    }
}

impl std::fmt::Display for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at_proxy() {
            write!(f, "{} (resolved by the proxy)", self.entry)
        } else if self.entry == self.addr.to_string() {
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
    /// Who its socket has heard from (the dial race, [`crate::heard`]).
    pub ears: Arc<crate::heard::Ears>,
}

impl Origin {
    /// A new origin for relays of `remote`'s address family.
    ///
    /// # Errors
    /// If no local socket can be bound.
    pub fn bind(remote: SocketAddr, transport: &Transport) -> Result<Origin, DialError> {
        let prefix = crate::direct::random_prefix();
        let (endpoint, ears) =
            endpoint::origin(remote, transport, prefix).map_err(DialError::Socket)?;
        Ok(Origin {
            endpoint,
            prefix,
            ears,
        })
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
/// order, without repeats; the entries that do not resolve, with why. An
/// entry that does not resolve here but that `transport` may reach through
/// an HTTP proxy is left to the proxy to resolve
/// ([`Candidate::at_proxy`]).
pub async fn resolve_all(
    entries: &[String],
    transport: &Transport,
) -> (Vec<Candidate>, Vec<DialError>) {
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
            Err(e) => match Candidate::through_proxy(entry, transport) {
                Some(candidate) => {
                    tracing::debug!(%entry, err = %e, "relay name does not resolve here; the proxy will resolve it");
                    if !found.contains(&candidate) {
                        found.push(candidate);
                    }
                }
                None => failed.push(e),
            },
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
    let (candidates, unresolved) = resolve_all(&cred.credential.relay, transport).await;
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
    let relay = Some(cred.cert.relay.clone());
    dial_first(tls, ca_pem, relay, candidates, origin, transport, timeout).await
}

/// Dials the relay at `entries` (`host:port`) without a certificate of
/// one's own, trusting `ca_pem`: a single sign-on's connection, whose one
/// service is the login. Any relay of that CA will do: the CA is the
/// relay's own (`relay-server init`).
///
/// # Errors
/// If no address resolves or no relay can be reached or verified.
pub async fn dial_login(
    ca_pem: &str,
    entries: &[String],
    transport: &Transport,
    timeout: Duration,
) -> Result<RelayConn, DialError> {
    let tls = crate::tls::login_client_config(ca_pem)
        .map_err(|e| DialError::Credential(format!("the relay's CA: {e}")))?;
    let (candidates, unresolved) = resolve_all(entries, transport).await;
    if candidates.is_empty() {
        if let Some(e) = unresolved.into_iter().next() {
            return Err(e);
        }
    }
    dial_first(
        Arc::new(tls),
        ca_pem.into(),
        None,
        &candidates,
        None,
        transport,
        timeout,
    )
    .await
}

/// The first of `candidates` to answer, tried a [`STAGGER`] apart.
async fn dial_first(
    tls: Arc<QuicClientConfig>,
    ca_pem: Arc<str>,
    relay: Option<proto::Name>,
    candidates: &[Candidate],
    origin: Option<&Origin>,
    transport: &Transport,
    timeout: Duration,
) -> Result<RelayConn, DialError> {
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
    let relay = Some(cred.cert.relay.clone());
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

/// `host:port` split at its last colon, the host without IPv6 brackets.
fn split_host_port(entry: &str) -> Option<(&str, &str)> {
    let (host, port) = entry.rsplit_once(':')?;
    Some((host.trim_start_matches('[').trim_end_matches(']'), port))
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
    let (host, _port) = split_host_port(addr).ok_or_else(|| fail("expected host:port".into()))?;
    let host = host.to_owned();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_answer_says_what_to_check() {
        let remote: SocketAddr = "203.0.113.7:4433".parse().unwrap_or_else(|e| panic!("{e}"));
        let err = DialError::Unreachable {
            addr: "relay.example.com:4433".into(),
            reason: attempt::no_answer(Duration::from_secs(10), &attempt::no_answer_hint(remote)),
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
