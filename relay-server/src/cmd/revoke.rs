//! `relay-server revoke` and `unrevoke`: add an entry to `DIR/revoked.toml`
//! or take one out; a running relay applies either within its reload
//! interval (on revoke: new streams refused, live connections of the revoked
//! identity closed).

use proto::{Name, Role};

use crate::audit::now_rfc3339;
use crate::cmd::issued;
use crate::config::Paths;
use crate::revocation::{normalize_serial, Revocations, Revoked};

/// What to revoke or unrevoke.
#[derive(Clone, Debug)]
pub enum Target {
    /// Every certificate of this identity.
    Identity(Role, Name),
    /// One certificate.
    Serial(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Identity(role, name) => write!(f, "{role}/{name}"),
            Target::Serial(serial) => write!(f, "certificate {serial}"),
        }
    }
}

impl Target {
    /// The list entry this target writes (serial normalized), with no time.
    ///
    /// # Errors
    /// If the serial is not hexadecimal.
    fn entry(&self) -> anyhow::Result<Revoked> {
        Ok(match self {
            Target::Identity(role, name) => Revoked {
                role: Some(role.as_str().to_owned()),
                name: Some(name.to_string()),
                serial: None,
                at: None,
            },
            Target::Serial(serial) => Revoked {
                role: None,
                name: None,
                serial: Some(check_serial(serial)?),
                at: None,
            },
        })
    }
}

/// The serial as the list stores it; hexadecimal checked with the `hex`
/// crate (an odd digit count is fine: leading zeros are not significant).
fn check_serial(serial: &str) -> anyhow::Result<String> {
    let serial = normalize_serial(serial);
    let even = if serial.len() % 2 == 1 {
        format!("0{serial}")
    } else {
        serial.clone()
    };
    if serial.is_empty() || hex::decode(even).is_err() {
        anyhow::bail!("serial must be hexadecimal, as `issue` printed it");
    }
    Ok(serial)
}

/// Whether `entry` is the entry `target` writes (serials in any notation).
fn same(entry: &Revoked, target: &Revoked) -> bool {
    entry.role == target.role
        && entry.name == target.name
        && entry.serial.as_deref().map(normalize_serial)
            == target.serial.as_deref().map(normalize_serial)
}

fn save(paths: &Paths, list: &Revocations) -> anyhow::Result<()> {
    let text = format!(
        "# Revoked identities and certificates; written by `relay-server revoke` and `unrevoke`.\n{}",
        toml::to_string(list)?
    );
    relay_net::fsutil::write_public(&paths.revoked(), text.as_bytes())?;
    Ok(())
}

/// Appends a revocation; returns false if it was already there.
///
/// # Errors
/// If the serial is not hexadecimal, or the list cannot be read or written.
pub fn revoke(paths: &Paths, target: Target) -> anyhow::Result<bool> {
    let mut list = Revocations::load(&paths.revoked())?;
    let mut entry = target.entry()?;
    if list.revoked.iter().any(|r| same(r, &entry)) {
        return Ok(false);
    }
    entry.at = Some(now_rfc3339());
    list.revoked.push(entry);
    save(paths, &list)?;
    Ok(true)
}

/// Removes the revocation `revoke` wrote for `target`; returns false if
/// there was none.
///
/// # Errors
/// If the serial is not hexadecimal, or the list cannot be read or written.
pub fn unrevoke(paths: &Paths, target: &Target) -> anyhow::Result<bool> {
    let mut list = Revocations::load(&paths.revoked())?;
    let entry = target.entry()?;
    let before = list.revoked.len();
    list.revoked.retain(|r| !same(r, &entry));
    if list.revoked.len() == before {
        return Ok(false);
    }
    save(paths, &list)?;
    Ok(true)
}

/// A warning when `target` names nothing `issue` recorded in
/// `DIR/issued.jsonl` (a typo?). Only a warning: the certificate may have
/// been issued before the record existed or with another copy of the CA.
/// Nothing is said when there is no record at all.
pub fn never_issued(paths: &Paths, target: &Target) -> Option<String> {
    let path = paths.issued();
    let issued = match issued::load(&path) {
        Ok(Some(issued)) => issued,
        Ok(None) => return None,
        Err(err) => return Some(format!("{err}: cannot tell whether {target} was issued")),
    };
    let known = match target {
        Target::Identity(role, name) => issued::has_name(&issued, *role, name),
        Target::Serial(serial) => issued::has_serial(&issued, serial),
    };
    (!known).then(|| {
        format!(
            "{target} was never issued from this directory ({} does not list it): a typo? It is revoked anyway, in case it was issued elsewhere",
            path.display()
        )
    })
}

/// After an unrevoke by name, the serial revocations of that identity's
/// recorded certificates that still refuse them.
pub fn still_revoked_by_serial(paths: &Paths, role: Role, name: &Name) -> Vec<String> {
    let (Ok(Some(issued)), Ok(list)) = (
        issued::load(&paths.issued()),
        Revocations::load(&paths.revoked()),
    ) else {
        return Vec::new();
    };
    issued
        .iter()
        .filter(|c| c.role == role.as_str() && c.name == name.as_str())
        .filter(|c| {
            list.revoked.iter().any(|r| {
                r.serial
                    .as_deref()
                    .is_some_and(|s| normalize_serial(s) == normalize_serial(&c.serial))
            })
        })
        .map(|c| c.serial.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn paths() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::from(dir.path());
        (dir, paths)
    }

    #[test]
    fn unrevoke_undoes_revoke() {
        let (_dir, paths) = paths();
        let bob = Target::Identity(Role::Client, Name::try_from("bob").unwrap());
        let serial = Target::Serial("0A:1B".into());
        assert!(revoke(&paths, bob.clone()).unwrap());
        assert!(!revoke(&paths, bob.clone()).unwrap());
        assert!(revoke(&paths, serial).unwrap());
        assert!(unrevoke(&paths, &bob).unwrap());
        assert!(!unrevoke(&paths, &bob).unwrap());
        // The serial may be written another way than at revoke.
        assert!(unrevoke(&paths, &Target::Serial("a1b".into())).unwrap());
        assert_eq!(Revocations::load(&paths.revoked()).unwrap().revoked, vec![]);
    }

    #[test]
    fn serials_must_be_hex() {
        let (_dir, paths) = paths();
        for bad in ["", "xyz", "0g"] {
            let err = revoke(&paths, Target::Serial(bad.into())).unwrap_err();
            assert_eq!(
                err.to_string(),
                "serial must be hexadecimal, as `issue` printed it",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_name_never_issued_is_named() {
        let (_dir, paths) = paths();
        let typo = Target::Identity(Role::Client, Name::try_from("alcie").unwrap());
        assert_eq!(never_issued(&paths, &typo), None, "no record: no opinion");
        let alice = proto::Identity::new(Role::Client, Name::try_from("alice").unwrap());
        let mut record = issued::Record::open(&paths.issued()).unwrap();
        record
            .append(&alice, "0a1b", time::OffsetDateTime::now_utc())
            .unwrap();
        let warning = never_issued(&paths, &typo).unwrap();
        assert!(
            warning.starts_with("client/alcie was never issued from this directory"),
            "{warning}"
        );
        assert!(
            warning.contains("in case it was issued elsewhere"),
            "{warning}"
        );
        let right = Target::Identity(Role::Client, alice.name.clone());
        assert_eq!(never_issued(&paths, &right), None);
        assert_eq!(never_issued(&paths, &Target::Serial("0A:1B".into())), None);
        assert!(never_issued(&paths, &Target::Serial("0c".into())).is_some());

        revoke(&paths, Target::Serial("0a1b".into())).unwrap();
        assert_eq!(
            still_revoked_by_serial(&paths, Role::Client, &alice.name),
            vec!["0a1b".to_owned()]
        );
    }
}
