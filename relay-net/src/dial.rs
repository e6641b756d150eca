//! Dialing the relay from an agent or a client, and turning every way it can
//! fail into a message a person can act on.

use std::net::SocketAddr;
use std::time::Duration;

use proto::{ErrorCode, Role};
use quinn::ConnectionError;

use crate::cert::PeerCert;
use crate::credential::Loaded;
use crate::endpoint::{self, Transport};
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
    /// The relay is not the relay named in the credential.
    #[error("{addr} is not the relay of this credential: {reason}")]
    NotRelay {
        /// The address dialed.
        addr: String,
        /// What did not match.
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
}

/// Dials the relay addresses of `cred` in order and returns the first
/// connection that completes the handshake and proves to be our relay.
///
/// # Errors
/// The last address's failure if none works.
pub async fn dial(
    cred: &Loaded,
    transport: &Transport,
    timeout: Duration,
) -> Result<RelayConn, DialError> {
    let tls = client_tls(cred)?;
    let mut last = None;
    for addr in &cred.credential.relay {
        match dial_one(addr, tls.clone(), cred, transport, timeout).await {
            Ok(conn) => return Ok(conn),
            Err(e) => {
                tracing::debug!(%addr, err = %e, "relay address failed");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| DialError::Credential("no relay address in credential".into())))
}

/// Dials one relay address (an agent keeps a connection to every relay
/// instance, DESIGN "Scale-out").
///
/// # Errors
/// If the credential is unusable or the relay cannot be reached or verified.
pub async fn dial_addr(
    cred: &Loaded,
    addr: &str,
    transport: &Transport,
    timeout: Duration,
) -> Result<RelayConn, DialError> {
    dial_one(addr, client_tls(cred)?, cred, transport, timeout).await
}

fn client_tls(
    cred: &Loaded,
) -> Result<std::sync::Arc<quinn::crypto::rustls::QuicClientConfig>, DialError> {
    cred.check_expiry(time::OffsetDateTime::now_utc())
        .map_err(DialError::Credential)?;
    let tls = crate::tls::client_config(
        &cred.credential.certificate,
        cred.key_pem(),
        &cred.credential.ca,
    )
    .map_err(|e| DialError::Credential(format!("{}: {e}", cred.path.display())))?;
    Ok(std::sync::Arc::new(tls))
}

async fn dial_one(
    addr: &str,
    tls: std::sync::Arc<quinn::crypto::rustls::QuicClientConfig>,
    cred: &Loaded,
    transport: &Transport,
    timeout: Duration,
) -> Result<RelayConn, DialError> {
    let (host, remote) = resolve(addr).await?;
    let prefix = crate::direct::random_prefix();
    let endpoint =
        endpoint::client_with_prefix(remote, tls, transport, prefix).map_err(DialError::Socket)?;
    let unreachable = |reason: String| DialError::Unreachable {
        addr: addr.to_owned(),
        reason,
    };
    let connecting = endpoint
        .connect(remote, &host)
        .map_err(|e| unreachable(e.to_string()))?;
    let conn = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => {
            endpoint.close(0u32.into(), b"");
            return Err(unreachable(format!("no answer within {timeout:?}")));
        }
        Ok(Err(e)) if is_tls_failure(&e) => {
            return Err(DialError::Untrusted {
                addr: addr.to_owned(),
                reason: describe(&e),
            })
        }
        Ok(Err(e)) => return Err(unreachable(describe(&e))),
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
    if relay.relay != cred.cert.relay {
        conn.close(ErrorCode::UNAUTHORIZED.0.into(), b"wrong relay");
        return Err(not_relay(format!(
            "it is relay {}, the credential is for {}",
            relay.relay, cred.cert.relay
        )));
    }
    Ok(RelayConn {
        conn,
        endpoint,
        relay,
        addr: addr.to_owned(),
        prefix,
    })
}

/// Splits `host:port` and resolves it; the host (without port) is the TLS
/// server name.
async fn resolve(addr: &str) -> Result<(String, SocketAddr), DialError> {
    let fail = |reason: String| DialError::Resolve {
        addr: addr.to_owned(),
        reason,
    };
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok((sa.ip().to_string(), sa));
    }
    let (host, _port) = addr
        .rsplit_once(':')
        .ok_or_else(|| fail("expected host:port".into()))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let remote = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail("no address found".into()))?;
    Ok((host, remote))
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

/// TLS alerts (RFC 8446 §6) that quinn reports as CRYPTO_ERROR 0x100 + alert.
fn alert_text(alert: u64) -> Option<&'static str> {
    Some(match alert {
        42 => "the relay rejected our certificate (bad certificate)",
        44 => "the relay says our certificate is revoked",
        45 => "the relay says our certificate has expired; ask for a new credential",
        46 | 48 | 51 => "the relay does not trust our certificate (issued by another relay's CA, or before the relay's CA was re-created?)",
        116 => "the relay requires a client certificate",
        120 => "the relay speaks another protocol version (ALPN mismatch)",
        _ => return None,
    })
}

/// A human description of a connection failure, naming the side at fault.
pub fn describe(err: &ConnectionError) -> String {
    match err {
        ConnectionError::ApplicationClosed(close) => {
            let code = u32::try_from(close.error_code.into_inner()).map(ErrorCode);
            let reason = String::from_utf8_lossy(&close.reason);
            match code {
                Ok(code) if reason.is_empty() => {
                    format!("closed by the relay: {}", code.description())
                }
                Ok(code) => format!("closed by the relay: {}: {reason}", code.description()),
                Err(_) => format!("closed by the relay: {reason}"),
            }
        }
        ConnectionError::ConnectionClosed(close) => {
            let code = close.error_code;
            let raw = u64::from(code);
            if (0x100..0x200).contains(&raw) {
                if let Some(text) = alert_text(raw - 0x100) {
                    return text.to_owned();
                }
            }
            format!("the relay aborted the connection: {close}")
        }
        ConnectionError::TransportError(e) => {
            let text = e.to_string();
            if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
                format!("the relay's certificate is not trusted by this credential's CA ({text})")
            } else {
                text
            }
        }
        ConnectionError::TimedOut => "no answer (timed out)".to_owned(),
        ConnectionError::Reset => "the relay forgot this connection (it restarted?)".to_owned(),
        ConnectionError::LocallyClosed => "closed locally".to_owned(),
        other => other.to_string(),
    }
}
