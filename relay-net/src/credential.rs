//! Credential files: the one file handed to an agent or a client. It holds
//! the identity certificate, its private key (unless the key was made on the
//! host with `keygen`), the relay's CA and the relay address(es).
//!
//! ```toml
//! # relay credential: client/alice of relay relay.example.com
//! relay = ["relay.example.com:4433"]
//! identity = "relay://relay.example.com/client/alice"
//! certificate = """-----BEGIN CERTIFICATE-----..."""
//! private_key = """-----BEGIN PRIVATE KEY-----..."""
//! ca = """-----BEGIN CERTIFICATE-----..."""
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::cert::{CertError, PeerCert};

/// Errors reading or writing a credential file.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The file could not be read or written.
    #[error("credential file {path}: {err}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        err: std::io::Error,
    },
    /// The file is not a valid credential.
    #[error("credential file {path} is invalid: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The private key is not the key of the certificate: the certificate
    /// was issued for another key (another CSR), or the wrong key file was
    /// given. Nothing can heal that, so loading fails instead of every dial.
    #[error(
        "the private key in {key} does not belong to its certificate in {path} \
         (was the certificate issued for another key/CSR? give the key that `keygen` \
         wrote with the CSR this credential was issued from, or issue a new credential)"
    )]
    KeyMismatch {
        /// The credential file.
        path: PathBuf,
        /// The file holding the key (the credential itself, or `--key`).
        key: PathBuf,
    },
    /// The file has no private key and none was given.
    #[error(
        "credential file {path} holds no private key (it was issued from a CSR): \
         pass --key FILE with the key written by `keygen`"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
}

/// A credential as stored on disk.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// Relay addresses (`host:port`) to dial, in order of preference.
    pub relay: Vec<String>,
    /// The identity URI of the certificate, for people reading the file.
    pub identity: String,
    /// The identity certificate, PEM.
    pub certificate: String,
    /// Its private key, PEM; absent when issued from a CSR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// The relay's CA certificate, PEM.
    pub ca: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("relay", &self.relay)
            .field("identity", &self.identity)
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// A credential loaded and checked: ready to dial with.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The file contents; `private_key` is always present here.
    pub credential: Credential,
    /// The identity in the certificate.
    pub cert: PeerCert,
    /// Where it came from, for messages and for re-reading it
    /// ([`crate::renew::Reloading`]).
    pub path: PathBuf,
    /// The separate key file (`--key`), for a credential issued from a CSR.
    pub key_file: Option<PathBuf>,
}

impl Credential {
    /// Serializes to TOML with a header comment saying what the file is.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!(
            "# relay credential for {} — keep it secret: it grants access to the relay.\n{body}",
            self.identity
        )
    }

    /// Writes the credential to `path` with mode 0600.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), CredentialError> {
        crate::fsutil::write_private(path, self.to_toml().as_bytes()).map_err(|err| {
            CredentialError::Io {
                path: path.to_owned(),
                err,
            }
        })
    }

    /// Reads and checks a credential file; `key_file` supplies the private
    /// key for a credential issued from a CSR.
    ///
    /// # Errors
    /// If the file is unreadable, malformed, or has no private key.
    pub fn load(path: &Path, key_file: Option<&Path>) -> Result<Loaded, CredentialError> {
        let text = std::fs::read_to_string(path).map_err(|err| CredentialError::Io {
            path: path.to_owned(),
            err,
        })?;
        let key = key_file
            .map(|key_file| {
                std::fs::read_to_string(key_file).map_err(|err| CredentialError::Io {
                    path: key_file.to_owned(),
                    err,
                })
            })
            .transpose()?;
        #[cfg(feature = "net")]
        warn_if_others_can_read(key_file.unwrap_or(path));
        let mut loaded =
            Credential::parse_with_key(&text, path, key.map(|k| (k, key_file.unwrap_or(path))))?;
        loaded.key_file = key_file.map(Path::to_owned);
        Ok(loaded)
    }

    /// Parses and checks credential text; `key` supplies the private key for
    /// a credential issued from a CSR. `path` only names the file in errors.
    ///
    /// # Errors
    /// If the text is malformed or there is no private key.
    pub fn parse(text: &str, path: &Path, key: Option<String>) -> Result<Loaded, CredentialError> {
        Credential::parse_with_key(text, path, key.map(|k| (k, path)))
    }

    /// [`Credential::parse`] with the file the key came from, for messages.
    fn parse_with_key(
        text: &str,
        path: &Path,
        key: Option<(String, &Path)>,
    ) -> Result<Loaded, CredentialError> {
        let key_path = key.as_ref().map_or(path, |(_, p)| *p).to_owned();
        let key = key.map(|(k, _)| k);
        let invalid = |reason: String| CredentialError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let mut credential: Credential =
            toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if key.is_some() {
            credential.private_key = key;
        }
        let Some(key) = &credential.private_key else {
            return Err(CredentialError::NoKey {
                path: path.to_owned(),
            });
        };
        if credential.relay.is_empty() {
            return Err(invalid("no relay address".into()));
        }
        let cert = PeerCert::from_pem(&credential.certificate)
            .map_err(|e: CertError| invalid(e.to_string()))?;
        // Check the key and CA parse now, so a broken file is named here and
        // not as a TLS failure later.
        crate::pem::private_key(key).map_err(|e| invalid(e.to_string()))?;
        crate::pem::certs(&credential.ca).map_err(|e| invalid(e.to_string()))?;
        #[cfg(feature = "net")]
        if !crate::tls::key_matches(&credential.certificate, key)
            .map_err(|e| invalid(e.to_string()))?
        {
            return Err(CredentialError::KeyMismatch {
                path: path.to_owned(),
                key: key_path,
            });
        }
        #[cfg(not(feature = "net"))]
        let _ = key_path;
        Ok(Loaded {
            credential,
            cert,
            path: path.to_owned(),
            key_file: None,
        })
    }
}

impl Loaded {
    /// The private key PEM (always present once loaded).
    pub fn key_pem(&self) -> &str {
        self.credential.private_key.as_deref().unwrap_or_default()
    }

    /// `Err` with a message naming the expiry if the certificate has expired.
    ///
    /// # Errors
    /// When `now` is past the certificate's end of validity.
    pub fn check_expiry(&self, now: OffsetDateTime) -> Result<(), String> {
        if now > self.cert.not_after {
            return Err(format!(
                "the credential {} for {} expired at {}; ask the relay operator for a new one",
                self.path.display(),
                self.cert.identity,
                crate::cert::rfc3339(self.cert.not_after)
            ));
        }
        Ok(())
    }
}

/// Warns when the file holding a private key can be read by other users:
/// the key is used all the same (refusing would break a deployment on a
/// mere chmod), but whoever can read it can act as this identity.
#[cfg(feature = "net")]
fn warn_if_others_can_read(key_file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(key_file) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "{} holds a private key and can be read by other users (mode {mode:o}): anyone who can read it can act as this identity; chmod 600 {}",
            key_file.display(),
            key_file.display()
        );
    }
}

#[cfg(all(test, feature = "net"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::pki::{Ca, KeySource};
    use proto::{Identity, Name, Role};

    fn credential(ca: &Ca, name: &str, key: KeySource<'_>) -> (Credential, Option<String>) {
        let relay = Name::try_from("relay.test").unwrap();
        let identity = Identity::new(Role::Agent, Name::try_from(name).unwrap());
        let issued = ca
            .issue_identity(&relay, &identity, std::time::Duration::from_secs(3600), key)
            .unwrap();
        let credential = Credential {
            relay: vec!["relay.test:4433".into()],
            identity: identity.to_uri(&relay),
            certificate: issued.cert_pem,
            private_key: issued.key_pem.clone(),
            ca: ca.cert_pem().to_owned(),
        };
        (credential, issued.key_pem)
    }

    /// A credential issued from one CSR, run with the key of another: the
    /// load says which file holds the wrong key, and nothing dials.
    #[test]
    fn a_key_of_another_csr_is_refused_at_load() {
        let ca = Ca::generate(&Name::try_from("relay.test").unwrap())
            .unwrap()
            .0;
        let (key_a, csr_a) = crate::pki::keygen("relay agent").unwrap();
        let (key_b, _) = crate::pki::keygen("relay agent").unwrap();
        let (from_csr, _) = credential(&ca, "edge", KeySource::Csr(&csr_a));
        let dir = tempfile::tempdir().unwrap();
        let cred = dir.path().join("agent.cred");
        from_csr.save(&cred).unwrap();
        let right = dir.path().join("agent.key");
        let wrong = dir.path().join("other.key");
        std::fs::write(&right, &key_a).unwrap();
        std::fs::write(&wrong, &key_b).unwrap();

        assert!(Credential::load(&cred, Some(&right)).is_ok());
        let err = Credential::load(&cred, Some(&wrong)).unwrap_err();
        assert!(
            matches!(err, CredentialError::KeyMismatch { .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "the private key in {} does not belong to its certificate in {} (was the \
                 certificate issued for another key/CSR? give the key that `keygen` wrote with \
                 the CSR this credential was issued from, or issue a new credential)",
                wrong.display(),
                cred.display()
            )
        );
    }

    /// A credential file whose key was swapped for another one names the file.
    #[test]
    fn a_credential_holding_another_key_is_refused() {
        let ca = Ca::generate(&Name::try_from("relay.test").unwrap())
            .unwrap()
            .0;
        let (mut first, _) = credential(&ca, "edge", KeySource::Generate);
        let (_, other_key) = credential(&ca, "edge", KeySource::Generate);
        first.private_key = other_key;
        let err = Credential::parse(&first.to_toml(), Path::new("edge.cred"), None).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "the private key in edge.cred does not belong to its certificate in edge.cred"
            ),
            "{err}"
        );
    }
}
