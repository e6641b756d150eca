//! The key of QUIC stateless resets: kept in a file so a restarted relay
//! can reset its peers' old connections at once (they re-dial in
//! milliseconds instead of after their idle timeout), and held under an
//! exclusive lock so two relay processes never use the same key.
//!
//! Why never the same key: a relay answers a packet for a connection it
//! does not know with a reset that any peer of an instance *sharing its
//! key* accepts. Behind a load balancer that routes by address (not by
//! connection ID), a packet sent to the wrong instance, by a NAT rebinding
//! or on purpose, would then end a live connection of another instance
//! (RFC 9000 section 21.11 forbids sharing the key unless every packet of a
//! connection reaches the instance that holds it). So each instance keeps
//! its own file (`--reset-key`); one that finds the file locked by another
//! process (several instances started on one shared directory) says so
//! and uses a key of its own, kept in memory only.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The key, and the locked file (the lock lasts as long as the handle).
#[derive(Debug)]
pub(crate) struct ResetKey {
    /// `None`: quinn picks a key of its own (not kept).
    pub(crate) key: Option<[u8; 32]>,
    /// Held while the relay runs.
    _lock: Option<File>,
}

/// Loads (or creates, 0600) the key in `path` and locks the file. Never
/// fails: without a usable file the relay runs with a key of its own, and
/// the log says what that costs and how to fix it.
pub(crate) fn load(path: &Path) -> ResetKey {
    let ephemeral = |why: &str| {
        tracing::warn!(path = %path.display(), "{why}: this relay uses a stateless-reset key of its own, not kept; after a restart its peers notice only after their idle timeout");
        ResetKey {
            key: Some(rand::random()),
            _lock: None,
        }
    };
    let mut file = match open(path) {
        Ok(file) => file,
        Err(err) => return ephemeral(&format!("cannot open the reset key ({err})")),
    };
    // flock(2): released by the kernel when the process ends, however it ends.
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            return ephemeral(
                "the reset key is in use by another relay process (several instances on one directory?); give each instance its own --reset-key FILE",
            )
        }
        Err(err) => return ephemeral(&format!("cannot lock the reset key ({err})")),
    }
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    if let Some(key) = parse(&text) {
        return ResetKey {
            key: Some(key),
            _lock: Some(file),
        };
    }
    if !text.trim().is_empty() {
        tracing::warn!(path = %path.display(), "reset key unreadable; making a new one");
    }
    let key: [u8; 32] = rand::random();
    // In place, not by rename: the lock is on this file, not on its name.
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(hex::encode(key).as_bytes()))
        .and_then(|()| file.sync_all());
    match written {
        Ok(()) => ResetKey {
            key: Some(key),
            _lock: Some(file),
        },
        Err(err) => ephemeral(&format!("cannot keep a stateless-reset key ({err})")),
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        // A key given read-only (a per-instance Secret) is used as it is.
        .or_else(|_| File::open(path))
}

fn parse(text: &str) -> Option<[u8; 32]> {
    hex::decode(text.trim()).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_kept_across_restarts_and_never_shared_by_two_processes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reset.key");
        let first = load(&path);
        assert!(first.key.is_some());
        // A second relay on the same file while the first runs: a key of its own.
        let second = load(&path);
        assert_ne!(second.key, first.key);
        assert!(second._lock.is_none());
        let key = first.key;
        drop(first);
        drop(second);
        // The first restarted: the same key as before.
        assert_eq!(load(&path).key, key);
    }
}
