//! `relay-server revoke`: adds an entry to `DIR/revoked.toml`; a running
//! relay applies it within its reload interval (new streams refused, live
//! connections of the revoked identity closed).

use proto::{Name, Role};

use crate::audit::now_rfc3339;
use crate::config::Paths;
use crate::revocation::{normalize_serial, Revocations, Revoked};

/// What to revoke.
#[derive(Clone, Debug)]
pub enum Target {
    /// Every certificate of this identity.
    Identity(Role, Name),
    /// One certificate.
    Serial(String),
}

/// Appends a revocation; returns false if it was already there.
///
/// # Errors
/// If the list cannot be read or written.
pub fn revoke(paths: &Paths, target: Target) -> anyhow::Result<bool> {
    let path = paths.revoked();
    let mut list = Revocations::load(&path)?;
    let entry = match target {
        Target::Identity(role, name) => Revoked {
            role: Some(role.as_str().to_owned()),
            name: Some(name.to_string()),
            serial: None,
            at: Some(now_rfc3339()),
        },
        Target::Serial(serial) => {
            let serial = normalize_serial(&serial);
            if serial.is_empty() || !serial.chars().all(|c| c.is_ascii_hexdigit()) {
                anyhow::bail!("serial must be hexadecimal, as `issue` printed it");
            }
            Revoked {
                role: None,
                name: None,
                serial: Some(serial),
                at: Some(now_rfc3339()),
            }
        }
    };
    let exists = list
        .revoked
        .iter()
        .any(|r| r.role == entry.role && r.name == entry.name && r.serial == entry.serial);
    if exists {
        return Ok(false);
    }
    list.revoked.push(entry);
    let text = format!(
        "# Revoked identities and certificates; written by `relay-server revoke`.\n{}",
        toml::to_string(&list)?
    );
    relay_net::fsutil::write_public(&path, text.as_bytes())?;
    Ok(true)
}
