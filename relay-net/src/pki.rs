//! The relay's certificate authority: minting the CA, the relay's server
//! certificate and identity certificates (from a fresh key or from a CSR).
//!
//! Every identity certificate carries exactly one URI SAN
//! `relay://<relay>/<role>/<name>` and the extended key usage of its role
//! (DESIGN "Identity and trust"): clients client-auth; agents client-auth and
//! server-auth (for the planned end-to-end mode); the relay server-auth.

use std::time::Duration;

use proto::{Identity, Name, Role};

use crate::cert::{Login, GROUP_PREFIX};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

/// Certificates are valid from a little before "now", so a peer whose clock is
/// slightly behind does not reject a certificate minted a second ago.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// Lifetime of the relay's CA certificate.
pub const CA_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Default lifetime of the relay's server certificate.
pub const RELAY_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default lifetime of a client credential: short, as operators and CI jobs
/// get fresh ones often (Teleport's short-lived certificates).
pub const CLIENT_TTL: Duration = Duration::from_secs(12 * 3600);
/// Default lifetime of the relay's online signer: long enough that its
/// rotation (on the machine with the root key) is a quarterly chore, short
/// enough that a stolen signer key stops working on its own.
pub const SIGNER_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// Default lifetime of an agent credential.
pub const AGENT_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// Errors while minting or parsing certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or the key.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The CSR could not be parsed or its signature is wrong.
    #[error("invalid certificate signing request: {0}")]
    Csr(rcgen::Error),
    /// A `--name` is neither an IP address nor a valid DNS name.
    #[error("{name:?} is not a valid DNS name or IP address for the relay certificate")]
    BadServerName {
        /// The rejected name.
        name: String,
    },
    /// A lifetime that does not fit in a certificate.
    #[error("certificate lifetime {0:?} is out of range")]
    BadTtl(Duration),
}

/// A certificate (and, when generated here, its private key) in PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM; `None` when the certificate was signed from a CSR.
    pub key_pem: Option<String>,
    /// The certificate serial, lowercase hex (as `revoke --serial` takes it).
    pub serial: String,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .field("key_pem", &self.key_pem.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Where the public key of a new certificate comes from.
pub enum KeySource<'a> {
    /// Generate a fresh key pair and return its private key with the certificate.
    Generate,
    /// Use the public key of this PEM certificate signing request (made by
    /// `keygen` on the host that keeps the private key).
    Csr(&'a str),
}

/// The relay's certificate authority, loaded with its private key.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl Ca {
    /// Creates a new CA for the relay named `relay`.
    ///
    /// The CA's subject carries a random suffix: two CAs made for the same
    /// relay name (`init --force`, a second environment) must not share a
    /// subject, or a certificate of one would look like a forged certificate
    /// of the other instead of one from an unknown issuer.
    ///
    /// # Errors
    /// If rcgen fails to generate the key or certificate.
    pub fn generate(relay: &Name) -> Result<(Ca, String /* key pem */), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("{relay} relay CA {}", &random_serial().1[..8]),
        );
        // Path length 1: one intermediate, the relay's online signer
        // ([`Ca::issue_signer`]), may stand between the CA and a leaf.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, CA_TTL)?;
        params.serial_number = Some(random_serial().0);
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        let cert_pem = cert.pem();
        Ok((
            Ca {
                issuer: Issuer::new(params, key),
                cert_pem,
            },
            key_pem,
        ))
    }

    /// Loads a CA from its certificate and private key (PEM).
    ///
    /// # Errors
    /// If either does not parse.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Ca {
            issuer,
            cert_pem: cert_pem.to_owned(),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues the relay's server certificate for `server_names` (DNS names or
    /// IP addresses clients dial) with the identity `relay/<relay>`.
    ///
    /// # Errors
    /// If a server name is invalid or generation fails.
    pub fn issue_relay(
        &self,
        relay: &Name,
        server_names: &[String],
        ttl: Duration,
    ) -> Result<Issued, PkiError> {
        let identity = Identity {
            role: Role::Relay,
            name: relay.clone(),
        };
        let mut sans = Vec::new();
        for name in server_names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.as_str()
                        .try_into()
                        .map_err(|_| PkiError::BadServerName { name: name.clone() })?,
                ),
            };
            sans.push(san);
        }
        self.issue(relay, &identity, sans, ttl, KeySource::Generate)
    }

    /// Issues an identity certificate for an agent or a client.
    ///
    /// # Errors
    /// If the CSR is invalid or generation fails.
    pub fn issue_identity(
        &self,
        relay: &Name,
        identity: &Identity,
        ttl: Duration,
        key: KeySource<'_>,
    ) -> Result<Issued, PkiError> {
        self.issue(relay, identity, Vec::new(), ttl, key)
    }

    /// Issues an identity certificate that also names `groups` and, for a
    /// single sign-on, the `login` it came from ([`crate::cert::PeerCert`]
    /// reads both back).
    ///
    /// # Errors
    /// If the CSR is invalid or generation fails.
    pub fn issue_identity_with(
        &self,
        relay: &Name,
        identity: &Identity,
        groups: &[Name],
        login: Option<&Login>,
        ttl: Duration,
        key: KeySource<'_>,
    ) -> Result<Issued, PkiError> {
        let uri = |text: String| {
            text.as_str()
                .try_into()
                .map(SanType::URI)
                .map_err(|_| PkiError::BadServerName { name: text.clone() })
        };
        let mut sans = groups
            .iter()
            .map(|g| uri(format!("{GROUP_PREFIX}{g}")))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(login) = login {
            sans.push(uri(login.to_uri())?);
        }
        self.issue(relay, identity, sans, ttl, key)
    }

    /// Issues the relay's online signer: an intermediate CA the relay keeps
    /// on its host to mint client certificates at single sign-on, so the
    /// root key can stay offline. It may sign client-auth certificates
    /// only (its extended key usage), no further CA (path length 0), and
    /// the relay refuses any other role from it.
    ///
    /// # Errors
    /// If generation fails or `ttl` is out of range.
    pub fn issue_signer(&self, relay: &Name, ttl: Duration) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let (serial_number, serial) = random_serial();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("{relay} online signer {}", &serial[..8]),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let not_after = set_validity(&mut params, ttl)?;
        params.serial_number = Some(serial_number);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: Some(key.serialize_pem()),
            serial,
            not_after,
        })
    }

    /// Issues an identity certificate valid exactly from `not_before` to
    /// `not_after` (tests use it to mint already-expired certificates).
    ///
    /// # Errors
    /// If the CSR is invalid or generation fails.
    pub fn issue_identity_between(
        &self,
        relay: &Name,
        identity: &Identity,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        key: KeySource<'_>,
    ) -> Result<Issued, PkiError> {
        self.issue(
            relay,
            identity,
            Vec::new(),
            Validity::Between(not_before, not_after),
            key,
        )
    }

    fn issue(
        &self,
        relay: &Name,
        identity: &Identity,
        mut sans: Vec<SanType>,
        validity: impl Into<Validity>,
        key: KeySource<'_>,
    ) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, identity.to_string());
        let uri = identity.to_uri(relay);
        sans.insert(
            0,
            SanType::URI(
                uri.as_str()
                    .try_into()
                    .map_err(|_| PkiError::BadServerName { name: uri.clone() })?,
            ),
        );
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match identity.role {
            Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Role::Agent => vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ],
            Role::Relay => vec![ExtendedKeyUsagePurpose::ServerAuth],
        };
        params.use_authority_key_identifier_extension = true;
        let not_after = match validity.into() {
            Validity::For(ttl) => set_validity(&mut params, ttl)?,
            Validity::Between(from, to) => {
                params.not_before = from;
                params.not_after = to;
                to
            }
        };
        let (serial_number, serial) = random_serial();
        params.serial_number = Some(serial_number);
        let (cert, key_pem) = match key {
            KeySource::Generate => {
                let key = KeyPair::generate()?;
                (
                    params.signed_by(&key, &self.issuer)?,
                    Some(key.serialize_pem()),
                )
            }
            KeySource::Csr(pem) => {
                // Only the public key is taken from the request; names, key
                // usage and lifetime are the issuer's decision.
                let csr = CertificateSigningRequestParams::from_pem(pem).map_err(PkiError::Csr)?;
                (params.signed_by(&csr.public_key, &self.issuer)?, None)
            }
        };
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem,
            serial,
            not_after,
        })
    }
}

/// How long a certificate is valid.
enum Validity {
    /// From now (less clock skew) for this long.
    For(Duration),
    /// Exactly this window.
    Between(OffsetDateTime, OffsetDateTime),
}

impl From<Duration> for Validity {
    fn from(d: Duration) -> Validity {
        Validity::For(d)
    }
}

/// Makes a private key and a certificate signing request for it, so that a
/// private key never has to leave the host that uses it. Returns
/// `(key_pem, csr_pem)`.
///
/// # Errors
/// If rcgen fails.
pub fn keygen(subject: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, subject);
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// Makes a key pair for a `role` credential, writes the private key to
/// `out` (mode 0600, never readable by others) and gives the CSR to hand
/// to the relay's operator: the agent's and the client's `keygen`.
///
/// # Errors
/// If the key cannot be made or written.
pub fn new_key_file(out: &std::path::Path, role: Role) -> Result<String, KeyFileError> {
    let (key, csr) = keygen(&format!("relay {role}"))?;
    crate::fsutil::write_private(out, key.as_bytes()).map_err(|err| KeyFileError::Write {
        path: out.display().to_string(),
        err,
    })?;
    Ok(csr)
}

/// Why [`new_key_file`] failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The key or the CSR could not be made.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The key file could not be written.
    #[error("cannot write {path}: {err}")]
    Write {
        /// The file.
        path: String,
        /// What went wrong.
        err: std::io::Error,
    },
}

fn set_validity(params: &mut CertificateParams, ttl: Duration) -> Result<OffsetDateTime, PkiError> {
    let now = OffsetDateTime::now_utc();
    let ttl_time = time::Duration::try_from(ttl).map_err(|_| PkiError::BadTtl(ttl))?;
    let not_after = now
        .checked_add(ttl_time)
        .filter(|t| t.year() < 9999)
        .ok_or(PkiError::BadTtl(ttl))?;
    params.not_before = now - CLOCK_SKEW;
    params.not_after = not_after;
    Ok(not_after)
}

/// A random positive 128-bit serial, returned with its hex form. The first
/// byte is kept in 0x01..=0x7f so that DER encodes it as given (no sign
/// padding, no leading zero stripped) and the hex form is stable.
fn random_serial() -> (SerialNumber, String) {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f).max(1);
    (SerialNumber::from_slice(&bytes), hex::encode(bytes))
}
