//! A credential that follows its file, so a renewed certificate is used
//! without a restart: [`Reloading`] holds the current [`Loaded`] behind a
//! cheap shared handle; [`Reloading::reload`] re-reads the same file (and
//! key file) and takes the new credential only if it is for the same role,
//! name and relay; [`Reloading::reload_if_changed`] first compares the
//! files' size, modification time and inode, so checking every minute costs
//! two `stat` calls.
//!
//! What the new credential is used for is up to its holders: new dials (an
//! agent's registrations, a client's re-dial) take [`Reloading::current`];
//! live QUIC connections keep the certificate they were made with (TLS
//! cannot swap it), so they serve on until the relay closes them at that
//! certificate's end of validity, and the holder re-dials with the new one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::cert::rfc3339;
use crate::credential::{Credential, CredentialError, Loaded};

/// How often holders check the file by themselves ([`Reloading::reload_if_changed`]):
/// often enough that a file rotated by cert-manager or a timer is taken
/// long before the old certificate expires, cheap since it is two `stat`s.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

/// The current credential of a program, re-read from its file on demand.
/// Clones share the same credential.
#[derive(Clone, Debug)]
pub struct Reloading {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    current: watch::Sender<Arc<Loaded>>,
    /// The files as last read (or found unreadable), so an unchanged file is
    /// neither parsed nor logged again.
    seen: Mutex<Option<Stamp>>,
}

/// What identifies one version of the credential and key files without
/// reading them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    credential: FileStamp,
    key: Option<FileStamp>,
}

/// Size, modification time and inode: a file replaced by a rename (an
/// editor, `relay-server issue --out`, a Kubernetes Secret's symlink swap)
/// changes the inode even when size and time happen to match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    dev: u64,
    ino: u64,
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// What a reload found.
#[derive(Clone, Debug)]
pub enum Reload {
    /// The file holds the certificate already in use.
    Unchanged(Arc<Loaded>),
    /// The file holds a new certificate for the same identity, now current.
    Renewed {
        /// The credential used until now.
        old: Arc<Loaded>,
        /// The credential used from now on.
        new: Arc<Loaded>,
    },
}

/// Why the file was not taken; the current credential stays in use.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file cannot be read or is not a valid credential.
    #[error(transparent)]
    Unreadable(#[from] CredentialError),
    /// The file holds a credential for someone or somewhere else: taking it
    /// would silently turn this program into another identity.
    #[error("{path} now holds a credential whose {what} is {found}, not {expected}")]
    Different {
        /// The file.
        path: PathBuf,
        /// `role`, `name` or `relay`.
        what: &'static str,
        /// What the program runs as.
        expected: String,
        /// What the file says.
        found: String,
    },
    /// The file holds a certificate that has already expired.
    #[error("{path} holds a certificate that expired at {not_after}")]
    Expired {
        /// The file.
        path: PathBuf,
        /// Its end of validity.
        not_after: String,
    },
}

impl Reloading {
    /// Follows the file `loaded` was read from (and its key file).
    pub fn new(loaded: Loaded) -> Reloading {
        let seen = stamp(&loaded);
        Reloading {
            inner: Arc::new(Inner {
                current: watch::channel(Arc::new(loaded)).0,
                seen: Mutex::new(seen),
            }),
        }
    }

    /// The credential to dial with now.
    pub fn current(&self) -> Arc<Loaded> {
        self.inner.current.borrow().clone()
    }

    /// Changes each time a renewed credential is taken.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Loaded>> {
        self.inner.current.subscribe()
    }

    /// Re-reads the file; takes its credential if it is a new certificate
    /// for the same role, name and relay that has not expired.
    ///
    /// # Errors
    /// If the file cannot be read, is invalid, or holds a credential of
    /// another identity or relay, or an expired one: the current credential
    /// stays in use.
    pub fn reload(&self) -> Result<Reload, ReloadError> {
        let old = self.current();
        *self.seen() = stamp(&old);
        let new = Credential::load(&old.path, old.key_file.as_deref())?;
        same_identity(&old, &new)?;
        if new.credential.certificate == old.credential.certificate
            && new.credential.relay == old.credential.relay
        {
            return Ok(Reload::Unchanged(old));
        }
        if new.check_expiry(time::OffsetDateTime::now_utc()).is_err() {
            return Err(ReloadError::Expired {
                path: new.path.clone(),
                not_after: rfc3339(new.cert.not_after),
            });
        }
        let new = Arc::new(new);
        self.inner.current.send_replace(new.clone());
        Ok(Reload::Renewed { old, new })
    }

    /// [`Reloading::reload`] if the file changed (size, time or inode)
    /// since it was last read; `None` (after two `stat`s) if not.
    pub fn reload_if_changed(&self) -> Option<Result<Reload, ReloadError>> {
        let now = stamp(&self.current());
        if *self.seen() == now {
            return None;
        }
        Some(self.reload())
    }

    /// The credential as the file holds it now: [`Reloading::reload_if_changed`]
    /// (logged), then [`Reloading::current`]. Two `stat`s: call it where a
    /// dial happens, not per stream.
    pub fn latest(&self) -> Arc<Loaded> {
        if let Some(outcome) = self.reload_if_changed() {
            log(&outcome);
        }
        self.current()
    }

    /// Whether a credential newer than `used` is current, after checking
    /// the file: a relay's refusal of `used` (expired, revoked) need not be
    /// final when the file was renewed meanwhile.
    pub fn renewed_since(&self, used: &Arc<Loaded>) -> bool {
        !Arc::ptr_eq(&self.latest(), used)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Option<Stamp>> {
        // The stamp is plain data: a panic elsewhere cannot leave it torn.
        self.inner
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn stamp(loaded: &Loaded) -> Option<Stamp> {
    let key = match &loaded.key_file {
        Some(path) => Some(file_stamp(path)?),
        None => None,
    };
    Some(Stamp {
        credential: file_stamp(&loaded.path)?,
        key,
    })
}

/// The checks that keep a reload from changing who this program is.
fn same_identity(old: &Loaded, new: &Loaded) -> Result<(), ReloadError> {
    let differ = |what, expected: String, found: String| {
        Err(ReloadError::Different {
            path: new.path.clone(),
            what,
            expected,
            found,
        })
    };
    let (was, is) = (&old.cert.identity, &new.cert.identity);
    if was.role != is.role {
        return differ("role", was.role.to_string(), is.role.to_string());
    }
    if was.name != is.name {
        return differ("name", was.name.to_string(), is.name.to_string());
    }
    if old.cert.relay != new.cert.relay {
        return differ(
            "relay",
            old.cert.relay.to_string(),
            new.cert.relay.to_string(),
        );
    }
    Ok(())
}

/// Logs what a reload found: one info line naming the new expiry on a
/// renewal, an error naming what is wrong (and what stays in use) if the
/// file was not taken.
pub fn log(outcome: &Result<Reload, ReloadError>) {
    match outcome {
        Ok(Reload::Renewed { old, new }) => {
            if new.credential.relay != old.credential.relay {
                tracing::warn!(
                    was = ?old.credential.relay,
                    now = ?new.credential.relay,
                    "the renewed credential lists other relay addresses: new dials use them"
                );
            }
            tracing::info!(
                path = %new.path.display(),
                serial = %new.cert.serial,
                not_after = %rfc3339(new.cert.not_after),
                "credential renewed: new connections use the new certificate"
            );
        }
        Ok(Reload::Unchanged(current)) => tracing::info!(
            path = %current.path.display(),
            serial = %current.cert.serial,
            not_after = %rfc3339(current.cert.not_after),
            "credential file unchanged: still the same certificate"
        ),
        Err(err) => tracing::error!(
            %err,
            "credential not reloaded: the current certificate stays in use; fix the file (it is checked again when it changes, or on SIGHUP)"
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::pki::{Ca, KeySource};
    use proto::{Identity, Name, Role};

    fn issue(ca: &Ca, role: Role, name: &str, ttl: Duration) -> Credential {
        let relay = Name::try_from("relay.test").unwrap();
        let identity = Identity::new(role, Name::try_from(name).unwrap());
        let issued = ca
            .issue_identity(&relay, &identity, ttl, KeySource::Generate)
            .unwrap();
        Credential {
            relay: vec!["relay.test:4433".into()],
            identity: identity.to_uri(&relay),
            certificate: issued.cert_pem,
            private_key: issued.key_pem,
            ca: ca.cert_pem().to_owned(),
        }
    }

    fn setup() -> (Ca, tempfile::TempDir, PathBuf, Reloading) {
        let ca = Ca::generate(&Name::try_from("relay.test").unwrap())
            .unwrap()
            .0;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.cred");
        issue(&ca, Role::Agent, "edge", Duration::from_secs(60))
            .save(&path)
            .unwrap();
        let reloading = Reloading::new(Credential::load(&path, None).unwrap());
        (ca, dir, path, reloading)
    }

    #[test]
    fn an_untouched_file_is_not_read_again() {
        let (_ca, _dir, _path, reloading) = setup();
        assert!(reloading.reload_if_changed().is_none());
        assert!(matches!(reloading.reload(), Ok(Reload::Unchanged(_))));
    }

    #[test]
    fn a_renewed_file_is_taken_and_announced() {
        let (ca, _dir, path, reloading) = setup();
        let mut changes = reloading.subscribe();
        let used = reloading.current();
        issue(&ca, Role::Agent, "edge", Duration::from_secs(3600))
            .save(&path)
            .unwrap();
        let Some(Ok(Reload::Renewed { old, new })) = reloading.reload_if_changed() else {
            panic!("the renewed file was not taken");
        };
        assert!(Arc::ptr_eq(&old, &used));
        assert_ne!(new.cert.serial, old.cert.serial);
        assert!(changes.has_changed().unwrap());
        assert_eq!(changes.borrow_and_update().cert.serial, new.cert.serial);
        assert!(reloading.renewed_since(&used));
        assert!(!reloading.renewed_since(&new));
        assert!(
            reloading.reload_if_changed().is_none(),
            "read once per change"
        );
    }

    #[test]
    fn another_identity_or_a_broken_file_is_refused_and_the_old_one_kept() {
        let (ca, _dir, path, reloading) = setup();
        let used = reloading.current();
        issue(&ca, Role::Agent, "other", Duration::from_secs(3600))
            .save(&path)
            .unwrap();
        let err = reloading.reload_if_changed().unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} now holds a credential whose name is other, not edge",
                path.display()
            )
        );
        issue(&ca, Role::Client, "edge", Duration::from_secs(3600))
            .save(&path)
            .unwrap();
        let err = reloading.reload().unwrap_err().to_string();
        assert!(err.contains("role is client, not agent"), "{err}");
        std::fs::write(&path, "not a credential").unwrap();
        let err = reloading.reload().unwrap_err().to_string();
        assert!(err.contains("is invalid"), "{err}");
        assert!(Arc::ptr_eq(&reloading.current(), &used));
        assert!(!reloading.renewed_since(&used));
    }
}
