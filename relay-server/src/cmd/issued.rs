//! `DIR/issued.jsonl`: one line per certificate `issue` signed, so an
//! operator can list what is out there (`relay-server issued`) and `revoke`
//! can tell a typo from a name that was issued.
//!
//! ```json
//! {"time":"2026-12-06T21:00:00.000Z","role":"client","name":"alice","serial":"3f09…","not_after":"2026-12-07T09:00:00Z"}
//! ```
//!
//! The record is written on the machine that holds the CA key; credentials
//! issued before it existed (or with another copy of the CA) are not in it.

use std::io::Write;
use std::path::{Path, PathBuf};

use proto::{Identity, Name, Role};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::revocation::{normalize_serial, Revocations, RevokedBy};

/// One issued certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    /// When it was issued (RFC 3339 UTC).
    pub time: String,
    /// `agent` or `client`.
    pub role: String,
    /// The agent's or client's name.
    pub name: String,
    /// Its serial, lowercase hex (as `revoke --serial` takes it).
    pub serial: String,
    /// End of validity (RFC 3339 UTC).
    pub not_after: String,
}

/// The record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IssuedError {
    /// The file could not be opened, read or appended to.
    #[error("issued certificates record {path}: {err}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        err: std::io::Error,
    },
    /// A line is not a record of this format.
    #[error("issued certificates record {path}, line {line}: {err}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line number (from 1).
        line: usize,
        /// What is wrong with it.
        err: serde_json::Error,
    },
}

/// The record opened for appending: opened before the CA signs, so a
/// certificate is never issued without its line.
#[derive(Debug)]
pub struct Record {
    path: PathBuf,
    file: std::fs::File,
}

impl Record {
    /// Opens (creating, mode 0644: it holds no secret) `path` for appending.
    ///
    /// # Errors
    /// If the file cannot be opened.
    pub fn open(path: &Path) -> Result<Record, IssuedError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(path)
            .map_err(|err| IssuedError::Io {
                path: path.to_owned(),
                err,
            })?;
        Ok(Record {
            path: path.to_owned(),
            file,
        })
    }

    /// Appends one certificate as a single line.
    ///
    /// # Errors
    /// If the line cannot be written.
    pub fn append(
        &mut self,
        identity: &Identity,
        serial: &str,
        not_after: OffsetDateTime,
    ) -> Result<(), IssuedError> {
        let entry = IssuedCert {
            time: crate::audit::now_rfc3339(),
            role: identity.role.as_str().to_owned(),
            name: identity.name.to_string(),
            serial: serial.to_owned(),
            not_after: relay_net::cert::rfc3339(not_after),
        };
        let io = |err| IssuedError::Io {
            path: self.path.clone(),
            err,
        };
        let mut line = serde_json::to_vec(&entry).map_err(|e| io(e.into()))?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(io)
    }
}

/// Reads the record; `None` when there is none yet (nothing was issued
/// from this directory since the record exists).
///
/// # Errors
/// If the file exists but cannot be read, or a line does not parse.
pub fn load(path: &Path) -> Result<Option<Vec<IssuedCert>>, IssuedError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(IssuedError::Io {
                path: path.to_owned(),
                err,
            })
        }
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|err| IssuedError::Parse {
                path: path.to_owned(),
                line: i + 1,
                err,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

impl IssuedCert {
    /// The identity the certificate was issued to, if the line names a
    /// valid one.
    pub fn identity(&self) -> Option<Identity> {
        let role = self.role.parse::<Role>().ok()?;
        let name = Name::try_from(self.name.as_str()).ok()?;
        Some(Identity::new(role, name))
    }
}

/// Whether the record lists a certificate of `role/name`.
pub fn has_name(issued: &[IssuedCert], role: Role, name: &Name) -> bool {
    issued
        .iter()
        .any(|c| c.role == role.as_str() && c.name == name.as_str())
}

/// Whether the record lists a certificate with this serial (any notation).
pub fn has_serial(issued: &[IssuedCert], serial: &str) -> bool {
    let serial = normalize_serial(serial);
    issued.iter().any(|c| normalize_serial(&c.serial) == serial)
}

/// The state of an issued certificate, for the listing.
pub fn state(cert: &IssuedCert, revocations: &Revocations, now: OffsetDateTime) -> String {
    let Some(identity) = cert.identity() else {
        return "unknown (not a valid identity)".to_owned();
    };
    match revocations.find(&identity, &cert.serial) {
        Some(revoked) => match revoked.by {
            RevokedBy::Name => "revoked (by name)".to_owned(),
            RevokedBy::Serial => "revoked (by serial)".to_owned(),
            RevokedBy::Signer => "revoked (its signer)".to_owned(),
        },
        None => {
            let expired = time::OffsetDateTime::parse(
                &cert.not_after,
                &time::format_description::well_known::Rfc3339,
            )
            .is_ok_and(|t| t < now);
            if expired { "expired" } else { "valid" }.to_owned()
        }
    }
}

/// The listing `relay-server issued` prints: one line per certificate,
/// oldest first, with its state.
pub fn table(issued: &[IssuedCert], revocations: &Revocations, now: OffsetDateTime) -> String {
    let mut out = format!(
        "{:<6}  {:<24}  {:<32}  {:<20}  {:<20}  STATE\n",
        "ROLE", "NAME", "SERIAL", "ISSUED", "NOT AFTER"
    );
    for cert in issued {
        let issued_at = cert
            .time
            .get(..19)
            .map_or(cert.time.clone(), |t| format!("{t}Z"));
        out.push_str(&format!(
            "{:<6}  {:<24}  {:<32}  {:<20}  {:<20}  {}\n",
            cert.role,
            cert.name,
            cert.serial,
            issued_at,
            cert.not_after,
            state(cert, revocations, now)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn alice() -> Identity {
        Identity::new(Role::Client, Name::try_from("alice").unwrap())
    }

    #[test]
    fn appended_lines_read_back_with_their_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issued.jsonl");
        assert_eq!(load(&path).unwrap(), None);
        let mut record = Record::open(&path).unwrap();
        let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
        record.append(&alice(), "0a1b", later).unwrap();
        record
            .append(&alice(), "0c2d", OffsetDateTime::UNIX_EPOCH)
            .unwrap();
        let issued = load(&path).unwrap().unwrap();
        assert_eq!(issued.len(), 2);
        assert!(has_name(&issued, Role::Client, &alice().name));
        assert!(!has_name(&issued, Role::Agent, &alice().name));
        assert!(has_serial(&issued, "0A:1B"));
        assert!(!has_serial(&issued, "0a1c"));

        let now = OffsetDateTime::now_utc();
        let none = Revocations::default();
        assert_eq!(state(&issued[0], &none, now), "valid");
        assert_eq!(state(&issued[1], &none, now), "expired");
        let by_serial = Revocations::parse("[[revoked]]\nserial = \"0a1b\"\n", "r").unwrap();
        assert_eq!(state(&issued[0], &by_serial, now), "revoked (by serial)");
        let by_name =
            Revocations::parse("[[revoked]]\nrole = \"client\"\nname = \"alice\"\n", "r").unwrap();
        let listing = table(&issued, &by_name, now);
        assert!(listing.starts_with("ROLE "), "{listing}");
        assert_eq!(listing.matches("revoked (by name)").count(), 2, "{listing}");
    }

    #[test]
    fn a_broken_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issued.jsonl");
        std::fs::write(&path, "{\"role\":\"client\"}\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("issued.jsonl, line 1"), "{err}");
    }
}
