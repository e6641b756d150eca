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
    /// Where it came from, for messages.
    pub path: PathBuf,
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
        Credential::parse(&text, path, key)
    }

    /// Parses and checks credential text; `key` supplies the private key for
    /// a credential issued from a CSR. `path` only names the file in errors.
    ///
    /// # Errors
    /// If the text is malformed or there is no private key.
    pub fn parse(text: &str, path: &Path, key: Option<String>) -> Result<Loaded, CredentialError> {
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
        Ok(Loaded {
            credential,
            cert,
            path: path.to_owned(),
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
