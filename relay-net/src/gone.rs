//! Why a QUIC connection ended, told from this side and naming the peer: a
//! relay describing a lost client must not say "closed by the relay".
//!
//! [`PeerGone`] is the typed form a crate boundary can carry (the peer's
//! role, the code it closed with); its `Display` is the sentence for a log
//! line or an error message.

use std::fmt;

use proto::{ErrorCode, Role};
use quinn::ConnectionError;

/// How a connection ended, seen from this side.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// The peer closed the connection with an application code and reason
    /// (`None`: a code outside the protocol's table).
    Closed {
        /// The code, when it fits the protocol's table.
        code: Option<ErrorCode>,
        /// The peer's reason text (may be empty).
        reason: String,
    },
    /// The peer's TLS stack ended the handshake with this alert (RFC 8446 §6).
    Alert {
        /// The alert number.
        alert: u8,
        /// quinn's description of the close, for alerts without a sentence.
        close: String,
    },
    /// The peer aborted the connection at the transport level.
    Aborted(String),
    /// The peer's certificate chains to our CA but names other hosts than
    /// the one dialed (only a relay's certificate carries host names).
    WrongName(NameMismatch),
    /// This side's TLS did not trust the peer's certificate.
    Untrusted(String),
    /// This side's transport found another fault.
    Transport(String),
    /// The peer stopped answering.
    TimedOut,
    /// The peer had no state for the connection: it restarted.
    Reset,
    /// This side closed the connection.
    LocallyClosed,
    /// Anything else quinn reports.
    Other(String),
}

/// A server certificate that is valid (its chain leads to our CA) but is
/// not issued for the name that was dialed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameMismatch {
    /// The name dialed (host part of the relay address).
    pub expected: String,
    /// The DNS names and IP addresses the certificate is issued for.
    pub presented: Vec<String>,
}

impl NameMismatch {
    /// Reads rustls' "certificate not valid for name" error out of the text
    /// quinn carries it in (quinn reports TLS errors as strings). The wording
    /// is rustls' `CertificateError::NotValidForNameContext`; a unit test
    /// feeds it rustls' own error so a change of wording shows up there.
    pub fn from_tls_text(text: &str) -> Option<NameMismatch> {
        let rest = text.split_once("certificate not valid for name ")?.1;
        let (expected, rest) = rest.split_once(';')?;
        let expected = expected.trim().trim_matches('"').to_owned();
        let presented = rest
            .split_once("is only valid for ")
            .map(|(_, names)| names)
            .unwrap_or_default();
        let presented = presented
            .split(", ")
            .flat_map(|part| part.split(" or "))
            .filter_map(general_name)
            .collect();
        Some(NameMismatch {
            expected,
            presented,
        })
    }
}

/// A host name out of webpki's `DnsName("x")` or `IpAddress(1.2.3.4)`;
/// `None` for the certificate's other names (its `relay://` URI).
fn general_name(part: &str) -> Option<String> {
    let part = part.trim();
    let inner = |prefix: &str| {
        part.strip_prefix(prefix)
            .and_then(|p| p.strip_suffix(')'))
            .map(|p| p.trim_matches('"').to_owned())
    };
    inner("DnsName(").or_else(|| inner("IpAddress("))
}

impl fmt::Display for NameMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the relay's certificate is valid (signed by this credential's CA) but is not issued for {}: ",
            self.expected
        )?;
        if self.presented.is_empty() {
            f.write_str("it names no host")?;
        } else {
            write!(f, "it names {}", self.presented.join(", "))?;
        }
        f.write_str(
            "; connect with a name the relay was initialised with (relay-server init --name ...)",
        )
    }
}

/// A connection that ended, with the role of the peer on the other end.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", Sentence(self))]
pub struct PeerGone {
    /// Who was on the other end: the relay for agents and clients, a client
    /// or an agent for the relay, a client for an agent's direct path.
    pub peer: Role,
    /// How it ended.
    pub cause: Cause,
}

impl PeerGone {
    /// Classifies quinn's error for a connection to `peer`.
    pub fn new(peer: Role, err: &ConnectionError) -> PeerGone {
        let cause = match err {
            ConnectionError::ApplicationClosed(close) => Cause::Closed {
                code: u32::try_from(close.error_code.into_inner())
                    .ok()
                    .map(ErrorCode),
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            },
            ConnectionError::ConnectionClosed(close) => {
                let raw = u64::from(close.error_code);
                match raw.checked_sub(0x100).map(u8::try_from) {
                    Some(Ok(alert)) => Cause::Alert {
                        alert,
                        close: close.to_string(),
                    },
                    _ => Cause::Aborted(close.to_string()),
                }
            }
            ConnectionError::TransportError(e) => {
                let text = e.to_string();
                if let Some(mismatch) = NameMismatch::from_tls_text(&text) {
                    Cause::WrongName(mismatch)
                } else if text.contains("UnknownIssuer")
                    || text.contains("invalid peer certificate")
                {
                    Cause::Untrusted(text)
                } else {
                    Cause::Transport(text)
                }
            }
            ConnectionError::TimedOut => Cause::TimedOut,
            ConnectionError::Reset => Cause::Reset,
            ConnectionError::LocallyClosed => Cause::LocallyClosed,
            other => Cause::Other(other.to_string()),
        };
        PeerGone { peer, cause }
    }

    /// The protocol code the peer closed with, if it closed with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match &self.cause {
            Cause::Closed { code, .. } => *code,
            _ => None,
        }
    }
}

/// TLS alerts (RFC 8446 §6) that quinn reports as CRYPTO_ERROR 0x100 + alert,
/// worded for `peer`.
fn alert_text(peer: Role, alert: u8) -> Option<String> {
    Some(match alert {
        42 => format!("the {peer} rejected our certificate (bad certificate)"),
        44 => format!("the {peer} says our certificate is revoked"),
        45 => format!("the {peer} says our certificate has expired; ask for a new credential"),
        46 | 48 | 51 if peer == Role::Relay => "the relay does not trust our certificate (issued by another relay's CA, or before the relay's CA was re-created?)".to_owned(),
        46 | 48 | 51 => format!("the {peer} does not trust our certificate (issued by another CA?)"),
        116 => format!("the {peer} requires a client certificate"),
        120 => format!("the {peer} speaks another protocol version (ALPN mismatch)"),
        _ => return None,
    })
}

/// The sentence of a [`PeerGone`].
struct Sentence<'a>(&'a PeerGone);

impl fmt::Display for Sentence<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = self.0.peer;
        match &self.0.cause {
            Cause::Closed { code, reason } => match code {
                Some(code) if reason.is_empty() => {
                    write!(f, "closed by the {peer}: {}", code.description())
                }
                Some(code) => write!(f, "closed by the {peer}: {}: {reason}", code.description()),
                None => write!(f, "closed by the {peer}: {reason}"),
            },
            Cause::Alert { alert, close } => match alert_text(peer, *alert) {
                Some(text) => f.write_str(&text),
                None => write!(f, "the {peer} aborted the connection: {close}"),
            },
            Cause::Aborted(close) => write!(f, "the {peer} aborted the connection: {close}"),
            Cause::WrongName(mismatch) if peer == Role::Relay => write!(f, "{mismatch}"),
            Cause::WrongName(mismatch) => write!(
                f,
                "the {peer}'s certificate is not issued for {}",
                mismatch.expected
            ),
            Cause::Untrusted(text) if peer == Role::Relay => write!(
                f,
                "the relay's certificate is not trusted by this credential's CA ({text})"
            ),
            Cause::Untrusted(text) => {
                write!(
                    f,
                    "the {peer}'s certificate is not trusted by our CA ({text})"
                )
            }
            Cause::Transport(text) | Cause::Other(text) => f.write_str(text),
            Cause::TimedOut => write!(f, "no answer from the {peer} (timed out)"),
            Cause::Reset => write!(f, "the {peer} forgot this connection (it restarted?)"),
            Cause::LocallyClosed => f.write_str("closed locally"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;

    fn closed(code: ErrorCode, reason: &str) -> ConnectionError {
        ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: code.0.into(),
            reason: bytes::Bytes::copy_from_slice(reason.as_bytes()),
        })
    }

    fn alert(n: u8) -> ConnectionError {
        ConnectionError::ConnectionClosed(quinn::ConnectionClose {
            error_code: quinn_proto::TransportErrorCode::crypto(n),
            frame_type: None,
            reason: bytes::Bytes::new(),
        })
    }

    /// Every way a connection ends names the peer that was on the other
    /// end: the relay's log about a client must blame the client.
    #[test]
    fn each_cause_names_the_peer() {
        let causes = [
            closed(ErrorCode::REVOKED, "client/alice is revoked"),
            closed(ErrorCode::NO_ERROR, ""),
            alert(45),
            alert(48),
            alert(99),
            ConnectionError::TimedOut,
            ConnectionError::Reset,
        ];
        for role in Role::ALL {
            for err in &causes {
                let text = PeerGone::new(role, err).to_string();
                assert!(text.contains(&format!("the {role}")), "{role}: {text}");
                for other in Role::ALL.into_iter().filter(|r| *r != role) {
                    assert!(
                        !text.contains(&format!("the {other}")),
                        "{role}: {text} blames the {other}"
                    );
                }
            }
        }
    }

    #[test]
    fn wording_for_each_peer() {
        let revoked = closed(ErrorCode::REVOKED, "client/alice is revoked");
        assert_eq!(
            PeerGone::new(Role::Relay, &revoked).to_string(),
            "closed by the relay: credential revoked: client/alice is revoked"
        );
        assert_eq!(
            PeerGone::new(Role::Client, &closed(ErrorCode::NO_ERROR, "")).to_string(),
            "closed by the client: no error"
        );
        assert_eq!(
            PeerGone::new(Role::Agent, &ConnectionError::TimedOut).to_string(),
            "no answer from the agent (timed out)"
        );
        assert_eq!(
            PeerGone::new(Role::Client, &ConnectionError::Reset).to_string(),
            "the client forgot this connection (it restarted?)"
        );
        assert_eq!(
            PeerGone::new(Role::Relay, &alert(45)).to_string(),
            "the relay says our certificate has expired; ask for a new credential"
        );
        let unknown = PeerGone::new(Role::Client, &alert(99)).to_string();
        assert!(
            unknown.starts_with("the client aborted the connection: "),
            "{unknown}"
        );
    }

    #[test]
    fn the_code_travels_with_the_error() {
        let gone = PeerGone::new(Role::Relay, &closed(ErrorCode::REVOKED, "x"));
        assert_eq!(gone.peer, Role::Relay);
        assert_eq!(gone.code(), Some(ErrorCode::REVOKED));
        assert_eq!(PeerGone::new(Role::Relay, &alert(45)).code(), None);
    }

    /// rustls' own error for a relay certificate issued for another name,
    /// through quinn's transport error as the dial sees it.
    #[test]
    fn a_certificate_for_another_name_is_read_from_rustls() {
        let ca = crate::pki::Ca::generate(&proto::Name::try_from("relay.test").unwrap())
            .unwrap()
            .0;
        let issued = ca
            .issue_relay(
                &proto::Name::try_from("relay.test").unwrap(),
                &["relay.test".into(), "203.0.113.7".into()],
                std::time::Duration::from_secs(3600),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in crate::pem::certs(ca.cert_pem()).unwrap() {
            roots.add(cert).unwrap();
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            crate::tls::provider(),
        )
        .build()
        .unwrap();
        let leaf = crate::pem::certs(&issued.cert_pem).unwrap().remove(0);
        let dialed = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let err = rustls::client::danger::ServerCertVerifier::verify_server_cert(
            verifier.as_ref(),
            &leaf,
            &[],
            &dialed,
            &[],
            rustls_pki_types::UnixTime::now(),
        )
        .unwrap_err();
        let quinn_err = ConnectionError::TransportError(quinn_proto::TransportError {
            code: quinn_proto::TransportErrorCode::crypto(42),
            frame: None,
            reason: err.to_string(),
        });
        let gone = PeerGone::new(Role::Relay, &quinn_err);
        assert_eq!(
            gone.cause,
            Cause::WrongName(NameMismatch {
                expected: "127.0.0.1".into(),
                presented: vec!["relay.test".into(), "203.0.113.7".into()],
            }),
            "{err}"
        );
        let text = gone.to_string();
        assert_eq!(
            text,
            "the relay's certificate is valid (signed by this credential's CA) but is not \
             issued for 127.0.0.1: it names relay.test, 203.0.113.7; connect with a name the \
             relay was initialised with (relay-server init --name ...)"
        );
        assert!(!text.contains("not trusted"), "{text}");
    }

    #[test]
    fn an_unknown_issuer_is_still_untrusted() {
        let err = ConnectionError::TransportError(quinn_proto::TransportError {
            code: quinn_proto::TransportErrorCode::crypto(48),
            frame: None,
            reason: "invalid peer certificate: UnknownIssuer".into(),
        });
        let text = PeerGone::new(Role::Relay, &err).to_string();
        assert!(
            text.starts_with("the relay's certificate is not trusted by this credential's CA"),
            "{text}"
        );
    }
}
