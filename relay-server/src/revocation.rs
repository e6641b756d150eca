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

use proto::{Identity, Name, Role};
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
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Revocations::default()),
            Err(e) => {
                return Err(RevocationError {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        Revocations::parse(&text, &path.display().to_string())
    }

    /// Parses and checks revocation list text (`path` names it in errors).
    ///
    /// # Errors
    /// On invalid TOML or an entry that names neither `role`+`name` nor `serial`.
    pub fn parse(text: &str, path: &str) -> Result<Revocations, RevocationError> {
        let err = |reason: String| RevocationError {
            path: path.to_owned(),
            reason,
        };
        let list: Revocations = toml::from_str(text).map_err(|e| err(e.to_string()))?;
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

    /// Whether `peer` is revoked: the first entry that names its identity
    /// or its certificate's serial.
    /// A certificate from a revoked online signer is revoked with it.
    pub fn check(&self, peer: &PeerCert) -> Option<RevokedPeer> {
        self.find(&peer.identity, &peer.serial).or_else(|| {
            let signer = peer.signer.as_deref()?;
            let entry = self.revoked.iter().find(|r| {
                r.serial
                    .as_deref()
                    .is_some_and(|s| normalize_serial(s) == normalize_serial(signer))
            })?;
            Some(RevokedPeer {
                identity: peer.identity.clone(),
                serial: signer.to_owned(),
                by: RevokedBy::Signer,
                entry: entry.clone(),
            })
        })
    }

    /// As [`Revocations::check`], for a certificate known by identity and
    /// serial (e.g. from the list of issued certificates).
    pub fn find(&self, identity: &Identity, serial: &str) -> Option<RevokedPeer> {
        self.revoked.iter().find_map(|r| {
            let by = if names(r, identity.role, &identity.name) {
                RevokedBy::Name
            } else if r
                .serial
                .as_deref()
                .is_some_and(|s| normalize_serial(s) == normalize_serial(serial))
            {
                RevokedBy::Serial
            } else {
                return None;
            };
            Some(RevokedPeer {
                identity: identity.clone(),
                serial: serial.to_owned(),
                by,
                entry: r.clone(),
            })
        })
    }

    /// The entry revoking every certificate of `role/name`, if there is one.
    pub fn by_name(&self, role: Role, name: &Name) -> Option<&Revoked> {
        self.revoked.iter().find(|r| names(r, role, name))
    }
}

/// Whether `entry` revokes every certificate of `role/name`.
fn names(entry: &Revoked, role: Role, name: &Name) -> bool {
    entry.role.as_deref() == Some(role.as_str()) && entry.name.as_deref() == Some(name.as_str())
}

/// Which part of a revoked peer's certificate the list named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokedBy {
    /// Its role and name: every certificate of the identity.
    Name,
    /// Its serial: that one certificate.
    Serial,
    /// The serial of the online signer that issued it (`serial` is the
    /// signer's): every certificate that signer minted.
    Signer,
}

/// A peer found on the revocation list, with the entry that matched it.
/// `Display` is the reason a refusal or a close carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedPeer {
    /// The peer's identity.
    pub identity: Identity,
    /// The peer's certificate serial.
    pub serial: String,
    /// What the entry named.
    pub by: RevokedBy,
    /// The entry of `revoked.toml` (with its `at`).
    pub entry: Revoked,
}

impl std::fmt::Display for RevokedPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.by {
            RevokedBy::Name => write!(f, "{} is revoked", self.identity),
            RevokedBy::Serial => write!(
                f,
                "certificate {} of {} is revoked",
                self.serial, self.identity
            ),
            RevokedBy::Signer => write!(
                f,
                "the online signer {} that issued the certificate of {} is revoked; log in again",
                self.serial, self.identity
            ),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entries_need_a_name_or_a_serial() {
        assert!(
            Revocations::parse("[[revoked]]\nrole = \"client\"\nname = \"alice\"\n", "r").is_ok()
        );
        assert!(Revocations::parse("[[revoked]]\nserial = \"0a1b\"\n", "r").is_ok());
        let e = Revocations::parse("[[revoked]]\nrole = \"client\"\n", "r").unwrap_err();
        assert!(e.to_string().contains("both role and name"), "{e}");
        assert!(Revocations::parse("[[revoked]]\nat = \"now\"\n", "r").is_err());
        assert!(Revocations::parse("[[revoked]]\nrole = \"boss\"\nname = \"a\"\n", "r").is_err());
    }

    #[test]
    fn serials_are_normalized() {
        assert_eq!(normalize_serial("0A:1B:ff"), "a1bff");
    }

    /// A serial whose hex starts with 0 (first byte < 0x10) must match however
    /// it is written: this once failed one revocation in eight.
    #[test]
    fn revoked_serial_with_a_leading_zero_matches() {
        let peer = PeerCert {
            relay: Name::try_from("r").unwrap(),
            identity: proto::Identity::new(Role::Client, Name::try_from("alice").unwrap()),
            serial: "0a1b2c".into(),
            not_before: time::OffsetDateTime::UNIX_EPOCH,
            not_after: time::OffsetDateTime::UNIX_EPOCH,
            groups: Vec::new(),
            login: None,
            signer: None,
        };
        for written in ["0a1b2c", "0A:1B:2C", "a1b2c"] {
            let list =
                Revocations::parse(&format!("[[revoked]]\nserial = \"{written}\"\n"), "r").unwrap();
            assert!(list.check(&peer).is_some(), "{written}");
        }
    }

    #[test]
    fn a_match_says_what_it_matched() {
        let alice = proto::Identity::new(Role::Client, Name::try_from("alice").unwrap());
        let list = Revocations::parse(
            "[[revoked]]\nserial = \"0A:1B\"\n[[revoked]]\nrole = \"client\"\nname = \"bob\"\nat = \"2026-01-01T00:00:00Z\"\n",
            "r",
        )
        .unwrap();
        let by_serial = list.find(&alice, "0a1b").unwrap();
        assert_eq!(by_serial.by, RevokedBy::Serial);
        assert_eq!(
            by_serial.to_string(),
            "certificate 0a1b of client/alice is revoked"
        );
        assert!(list.find(&alice, "0a1c").is_none());
        let bob = proto::Identity::new(Role::Client, Name::try_from("bob").unwrap());
        let by_name = list.find(&bob, "ff").unwrap();
        assert_eq!(by_name.by, RevokedBy::Name);
        assert_eq!(by_name.entry.at.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(by_name.to_string(), "client/bob is revoked");
        assert!(list.by_name(Role::Client, &bob.name).is_some());
        assert!(list.by_name(Role::Agent, &bob.name).is_none());
    }

    proptest! {
        #[test]
        fn round_trips(names in proptest::collection::vec("[a-z][a-z0-9-]{0,10}", 0..5), serial in "[0-9a-f]{2,32}") {
            let mut list = Revocations::default();
            for n in &names {
                list.revoked.push(Revoked { role: Some("client".into()), name: Some(n.clone()), serial: None, at: None });
            }
            list.revoked.push(Revoked { role: None, name: None, serial: Some(serial), at: Some("2026-01-01T00:00:00Z".into()) });
            let text = toml::to_string(&list).unwrap();
            prop_assert_eq!(Revocations::parse(&text, "r").unwrap(), list);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,400}") {
            let _ = Revocations::parse(&s, "r");
        }
    }
}
