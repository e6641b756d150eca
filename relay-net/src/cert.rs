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
        let [uri] = uris[..] else {
            return Err(CertError::UriCount(uris.len()));
        };
        let (relay, identity) = Identity::from_uri(uri)?;
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
        let der = crate::pem::certs(pem)
            .map_err(|e| CertError::Parse(e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| CertError::Parse("no certificate in PEM".into()))?;
        PeerCert::from_der(&der)
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
        let leaf = certs
            .first()
            .ok_or_else(|| CertError::Parse("peer presented no certificate".into()))?;
        PeerCert::from_der(leaf)
    }
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
