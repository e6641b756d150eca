//! The revocation list (`DIR/revoked.toml`), written by `relay-server
//! revoke` and applied by a running relay without restart.
//!
//! ```toml
//! [[revoked]]
//! role = "client"
//! name = "alice"
//!
//! [[revoked]]
//! serial = "3f09c1…"
//! ```

use std::path::Path;

use proto::{Name, Role};
use relay_net::cert::PeerCert;
use serde::{Deserialize, Serialize};

/// One revocation: by role and name, or by certificate serial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    /// Role of the revoked identity (with `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Name of the revoked identity (with `role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Serial of one revoked certificate, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// When it was revoked (RFC 3339), for people reading the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// The parsed list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocations {
    /// Entries.
    #[serde(default)]
    pub revoked: Vec<Revoked>,
}

/// Why the list could not be read.
#[derive(Debug, thiserror::Error)]
#[error("revocation list {path}: {reason}")]
pub struct RevocationError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl Revocations {
    /// Reads the list; a missing file is an empty list.
    ///
    /// # Errors
    /// If the file exists but cannot be read or parsed, or an entry names
    /// neither `role`+`name` nor `serial`.
    pub fn load(path: &Path) -> Result<Revocations, RevocationError> {
        let err = |reason: String| RevocationError {
            path: path.display().to_string(),
            reason,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Revocations::default()),
            Err(e) => return Err(err(e.to_string())),
        };
        let list: Revocations = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        for entry in &list.revoked {
            let by_name = match (&entry.role, &entry.name) {
                (Some(role), Some(name)) => {
                    role.parse::<Role>().map_err(|e| err(e.to_string()))?;
                    Name::try_from(name.as_str()).map_err(|e| err(e.to_string()))?;
                    true
                }
                (None, None) => false,
                _ => return Err(err("an entry needs both role and name".into())),
            };
            if !by_name && entry.serial.is_none() {
                return Err(err("an entry needs role and name, or serial".into()));
            }
        }
        Ok(list)
    }

    /// Whether `peer` is revoked, with the matching entry described.
    pub fn check(&self, peer: &PeerCert) -> Option<String> {
        self.revoked.iter().find_map(|r| {
            let by_name = r.role.as_deref() == Some(peer.identity.role.as_str())
                && r.name.as_deref() == Some(peer.identity.name.as_str());
            let by_serial = r
                .serial
                .as_deref()
                .is_some_and(|s| normalize_serial(s) == peer.serial);
            (by_name || by_serial).then(|| {
                if by_name {
                    format!("{} is revoked", peer.identity)
                } else {
                    format!(
                        "certificate {} of {} is revoked",
                        peer.serial, peer.identity
                    )
                }
            })
        })
    }
}

/// Serials may be written with colons or upper case (as openssl prints them).
pub fn normalize_serial(s: &str) -> String {
    s.chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect::<String>()
        .trim_start_matches('0')
        .to_owned()
}
