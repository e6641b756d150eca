//! The live grants: what the relay lets each client open on a direct path
//! (end-to-end mode). A grant lives as long as the relay holds its stream
//! open ([`crate::stream::grant`]); [`crate::direct`] admits connections and
//! [`crate::stream`] checks opens against it, and both follow its changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use proto::{Grant, Identity, Open, StreamKind};
use tokio::sync::watch;

/// The grants the relay holds open, by client identity.
#[derive(Debug)]
pub struct Grants {
    live: Mutex<HashMap<Identity, Vec<(GrantId, Grant)>>>,
    next: AtomicU64,
    /// Bumped whenever a grant comes or goes.
    changes: watch::Sender<u64>,
}

/// One held grant, to withdraw it by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantId(u64);

impl Default for Grants {
    fn default() -> Self {
        Grants {
            live: Mutex::default(),
            next: AtomicU64::new(0),
            changes: watch::channel(0).0,
        }
    }
}

impl Grants {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Identity, Vec<(GrantId, Grant)>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether any grant for `caller` is live.
    pub fn holds(&self, caller: &Identity) -> bool {
        self.lock().get(caller).is_some_and(|g| !g.is_empty())
    }

    /// Whether a live grant lets `caller` make `open`.
    pub fn allows(&self, caller: &Identity, open: &Open) -> bool {
        let live = self.lock();
        let Some(grants) = live.get(caller) else {
            return false;
        };
        grants.iter().any(|(_, g)| match &open.kind {
            StreamKind::Tcp => g.targets.contains(&open.target),
            kind => g.sessions.contains(kind.capability()),
        })
    }

    /// Changes whenever a grant comes or goes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Makes `grant` live until [`Grants::withdraw`].
    pub fn insert(&self, grant: Grant) -> GrantId {
        let id = GrantId(self.next.fetch_add(1, Ordering::Relaxed));
        self.lock()
            .entry(grant.caller.clone())
            .or_default()
            .push((id, grant));
        self.changes.send_modify(|v| *v += 1);
        id
    }

    /// Ends the grant `id` of `caller`.
    pub fn withdraw(&self, caller: &Identity, id: GrantId) {
        let mut live = self.lock();
        if let Some(list) = live.get_mut(caller) {
            list.retain(|(i, _)| *i != id);
            if list.is_empty() {
                live.remove(caller);
            }
        }
        drop(live);
        self.changes.send_modify(|v| *v += 1);
    }
}
