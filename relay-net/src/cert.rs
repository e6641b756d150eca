//! Reading identity, role and serial out of a certificate that rustls has
//! already verified against the relay's CA. Identity is taken from here,
//! never from a frame field (DESIGN "Identity and trust").

use proto::{CertSerial, Identity, IdentityError, Name, Role};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// What the relay, an agent or a client knows about a verified peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCert {
    /// The relay this identity belongs to.
    pub relay: Name,
    /// Role and name of the peer.
    pub identity: Identity,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// The groups the certificate names (`relay-group:` URI names), which
    /// the policy's `group = ...` entries match.
    pub groups: Vec<Name>,
    /// The single sign-on that minted it, if one did (`relay-login:` URI name).
    pub login: Option<Login>,
    /// The serial of the intermediate that signed it (the relay's online
    /// signer), `None` when the root CA did. Known only from a connection's
    /// chain ([`PeerCert::of_connection`]).
    pub signer: Option<String>,
}

/// The OpenID Connect login a certificate was minted for: the provider's
/// issuer and the person's or workload's subject there, which audit
/// records carry beside the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// The provider's issuer URL (`iss`).
    pub issuer: String,
    /// The subject at that provider (`sub`).
    pub subject: String,
}

/// The URI name of a group: `relay-group:<name>`.
pub const GROUP_PREFIX: &str = "relay-group:";

impl Login {
    /// The URI name prefix: `relay-login:?iss=<issuer>&sub=<subject>`,
    /// both percent-encoded.
    pub const PREFIX: &'static str = "relay-login:?";

    /// The certificate URI name of this login.
    pub fn to_uri(&self) -> String {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        format!(
            "{}iss={}&sub={}",
            Login::PREFIX,
            utf8_percent_encode(&self.issuer, NON_ALPHANUMERIC),
            utf8_percent_encode(&self.subject, NON_ALPHANUMERIC)
        )
    }

    /// Parses a `relay-login:` URI name.
    ///
    /// # Errors
    /// If it is not exactly `relay-login:?iss=…&sub=…` with UTF-8 values.
    pub fn from_uri(uri: &str) -> Result<Login, CertError> {
        let bad = || CertError::Parse(format!("malformed login name {uri:?}"));
        let rest = uri.strip_prefix(Login::PREFIX).ok_or_else(bad)?;
        let (iss, sub) = rest.split_once('&').ok_or_else(bad)?;
        let value = |part: &str, key: &str| {
            let raw = part.strip_prefix(key).ok_or_else(bad)?;
            percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| bad())
        };
        Ok(Login {
            issuer: value(iss, "iss=")?,
            subject: value(sub, "sub=")?,
        })
    }
}

/// Why a certificate carries no usable identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertError {
    /// The DER does not parse as X.509.
    #[error("certificate does not parse: {0}")]
    Parse(String),
    /// Not exactly one `relay://` URI SAN.
    #[error("certificate must carry exactly one relay:// URI name, found {0}")]
    UriCount(usize),
    /// The URI SAN is malformed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The extended key usage does not match the role in the URI.
    #[error("certificate for {identity} lacks the {usage} key usage its role requires")]
    KeyUsage {
        /// The identity named in the certificate.
        identity: Identity,
        /// The missing usage.
        usage: &'static str,
    },
}

impl PeerCert {
    /// Parses the identity out of a DER certificate.
    ///
    /// # Errors
    /// If the certificate does not parse, has not exactly one `relay://` URI
    /// SAN, or its extended key usage does not match its role.
    pub fn from_der(der: &[u8]) -> Result<PeerCert, CertError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| CertError::Parse(e.to_string()))?;
        let uris: Vec<&str> = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => return Err(CertError::Parse(e.to_string())),
        };
        let identities: Vec<&str> = uris
            .iter()
            .copied()
            .filter(|u| u.starts_with("relay://"))
            .collect();
        let [uri] = identities[..] else {
            return Err(CertError::UriCount(identities.len()));
        };
        let (relay, identity) = Identity::from_uri(uri)?;
        let mut groups = Vec::new();
        let mut login = None;
        for uri in &uris {
            if let Some(group) = uri.strip_prefix(GROUP_PREFIX) {
                let group = Name::try_from(group)
                    .map_err(|e| CertError::Parse(format!("group name {group:?}: {e}")))?;
                groups.push(group);
            } else if uri.starts_with(Login::PREFIX) {
                if login.is_some() {
                    return Err(CertError::Parse("more than one login name".into()));
                }
                login = Some(Login::from_uri(uri)?);
            }
        }
        let eku = cert
            .extended_key_usage()
            .map_err(|e| CertError::Parse(e.to_string()))?
            .map(|e| e.value.clone());
        let (client_auth, server_auth) =
            eku.map_or((false, false), |e| (e.client_auth, e.server_auth));
        let missing = match identity.role {
            Role::Client | Role::Agent if !client_auth => Some("client-auth"),
            Role::Agent | Role::Relay if !server_auth => Some("server-auth"),
            _ => None,
        };
        if let Some(usage) = missing {
            return Err(CertError::KeyUsage { identity, usage });
        }
        let time = |t: x509_parser::time::ASN1Time| {
            OffsetDateTime::from_unix_timestamp(t.timestamp())
                .map_err(|e| CertError::Parse(e.to_string()))
        };
        let not_before = time(cert.validity().not_before)?;
        let not_after = time(cert.validity().not_after)?;
        Ok(PeerCert {
            relay,
            identity,
            serial: hex::encode(cert.raw_serial()),
            not_before,
            not_after,
            groups,
            login,
            signer: None,
        })
    }

    /// When to start warning that the certificate will expire: at two thirds
    /// of its lifetime, so renewal has a third of it to happen.
    pub fn renew_after(&self) -> OffsetDateTime {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }

    /// The serial as a [`CertSerial`] (what a direct path's `Grant` binds);
    /// `None` only for a serial longer than any CA issues (over 32 bytes).
    pub fn cert_serial(&self) -> Option<CertSerial> {
        CertSerial::from_hex(&self.serial)
    }

    /// Parses the first certificate of a PEM document.
    ///
    /// # Errors
    /// As [`PeerCert::from_der`], or if the PEM holds no certificate.
    pub fn from_pem(pem: &str) -> Result<PeerCert, CertError> {
        PeerCert::from_der(&first_der(pem)?)
    }

    /// The identity of the peer of an established quinn connection.
    ///
    /// # Errors
    /// If the peer presented no certificate or it carries no valid identity.
    #[cfg(feature = "net")]
    pub fn of_connection(conn: &quinn::Connection) -> Result<PeerCert, CertError> {
        let certs = conn
            .peer_identity()
            .and_then(|any| {
                any.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .ok_or_else(|| CertError::Parse("peer presented no certificate".into()))?;
        PeerCert::from_chain(&certs)
    }

    /// The identity of a verified chain: its leaf, and the serial of the
    /// intermediate that issued it, if one did (the relay's online signer).
    /// The chain is the one rustls verified, so the leaf's issuer is either
    /// the root or an intermediate the root signed.
    ///
    /// # Errors
    /// As [`PeerCert::from_der`].
    pub fn from_chain(
        certs: &[rustls_pki_types::CertificateDer<'_>],
    ) -> Result<PeerCert, CertError> {
        let leaf = certs
            .first()
            .ok_or_else(|| CertError::Parse("peer presented no certificate".into()))?;
        let mut peer = PeerCert::from_der(leaf)?;
        fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
            X509Certificate::from_der(der)
                .map(|(_, cert)| cert)
                .map_err(|e| CertError::Parse(e.to_string()))
        }
        let parsed = parse(leaf)?;
        for der in &certs[1..] {
            let cert = parse(der)?;
            let self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
            if cert.subject().as_raw() == parsed.issuer().as_raw() && !self_signed {
                peer.signer = Some(hex::encode(cert.raw_serial()));
            }
        }
        Ok(peer)
    }
}

/// The serial (lowercase hex) of the first certificate of a PEM document,
/// one that names no identity too (the online signer's).
///
/// # Errors
/// If the PEM holds no certificate that parses.
pub fn serial_of_pem(pem: &str) -> Result<String, CertError> {
    let der = first_der(pem)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| CertError::Parse(e.to_string()))?;
    Ok(hex::encode(cert.raw_serial()))
}

/// The first certificate of a PEM document, DER.
fn first_der(pem: &str) -> Result<rustls_pki_types::CertificateDer<'static>, CertError> {
    crate::pem::certs(pem)
        .map_err(|e| CertError::Parse(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| CertError::Parse("no certificate in PEM".into()))
}

/// A time as people and logs read it: RFC 3339 in UTC, whole seconds.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any issuer and subject survive the URI name, percent-encoded.
        #[test]
        fn login_uri_round_trips(issuer in ".{0,80}", subject in ".{0,80}") {
            let login = Login { issuer, subject };
            prop_assert_eq!(Login::from_uri(&login.to_uri()), Ok(login));
        }

        #[test]
        fn login_uri_parse_never_panics(s in "relay-login:\\?.{0,80}") {
            let _ = Login::from_uri(&s);
        }
    }

    /// A certificate from the online signer names its groups and login,
    /// and the chain tells the signer's serial; the root's own do not.
    #[cfg(feature = "net")]
    #[test]
    fn a_signed_online_chain_names_its_signer_groups_and_login() {
        use crate::pki::{Ca, KeySource};
        use proto::{Identity, Role};
        let relay = Name::try_from("relay.test").unwrap();
        let (root, _) = Ca::generate(&relay).unwrap();
        let signer = root
            .issue_signer(&relay, std::time::Duration::from_secs(3600))
            .unwrap();
        let signer_ca = Ca::load(&signer.cert_pem, signer.key_pem.as_deref().unwrap()).unwrap();
        let alice = Identity::new(Role::Client, Name::try_from("alice").unwrap());
        let login = Login {
            issuer: "https://login.example.com/t/v2.0".into(),
            subject: "a b/c".into(),
        };
        let groups = [
            Name::try_from("sre").unwrap(),
            Name::try_from("dev").unwrap(),
        ];
        let leaf = signer_ca
            .issue_identity_with(
                &relay,
                &alice,
                &groups,
                Some(&login),
                std::time::Duration::from_secs(600),
                KeySource::Generate,
            )
            .unwrap();
        let chain = crate::pem::certs(&format!("{}{}", leaf.cert_pem, signer.cert_pem)).unwrap();
        let peer = PeerCert::from_chain(&chain).unwrap();
        assert_eq!(peer.identity, alice);
        assert_eq!(peer.groups, groups);
        assert_eq!(peer.login, Some(login));
        assert_eq!(peer.signer.as_deref(), Some(signer.serial.as_str()));

        let direct = root
            .issue_identity(
                &relay,
                &alice,
                std::time::Duration::from_secs(600),
                KeySource::Generate,
            )
            .unwrap();
        let chain = crate::pem::certs(&format!("{}{}", direct.cert_pem, root.cert_pem())).unwrap();
        let peer = PeerCert::from_chain(&chain).unwrap();
        assert_eq!((peer.signer, peer.groups, peer.login), (None, vec![], None));
    }
}
