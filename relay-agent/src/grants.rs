//! The live grants: what the relay lets each client open on a direct path
//! (end-to-end mode). A grant lives as long as the relay holds its stream
//! open ([`crate::stream::grant`]); [`crate::direct`] admits connections and
//! [`crate::stream`] checks opens against it, and both follow its changes.
//!
//! A grant is bound to the certificate the client showed the relay (its
//! serial): another certificate of the same identity, such as one the
//! relay revoked by serial, is not admitted on it. Here too are the caps
//! the agent itself keeps on direct paths, per client identity: live
//! connections ([`DirectLimits::max_connections`]) and stream opens per
//! second ([`DirectLimits::open_rate`]), so one client cannot take every
//! direct slot or flood the agent with opens the relay never sees.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use proto::{ErrorCode, Grant, Identity, Open, Refused};
use relay_net::cert::PeerCert;
use relay_net::quota::{Held, Quota};
use tokio::sync::watch;

/// The agent's own caps on direct paths, per client identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectLimits {
    /// Direct connections one identity may hold at once.
    pub max_connections: usize,
    /// Stream opens per second one identity may make on its direct
    /// connections (the relay's default for its own path).
    pub open_rate: u32,
    /// Burst allowance above `open_rate`.
    pub open_burst: u32,
}

impl Default for DirectLimits {
    fn default() -> Self {
        DirectLimits {
            max_connections: 8,
            open_rate: 2_000,
            open_burst: 4_000,
        }
    }
}

/// Live grants, by client identity.
type Live = HashMap<Identity, Vec<(GrantId, Grant)>>;

/// The grants the relay holds open, by client identity, and the direct
/// connections each identity holds.
#[derive(Debug)]
pub struct Grants {
    live: Mutex<Live>,
    next: AtomicU64,
    /// Bumped whenever a grant comes or goes.
    changes: watch::Sender<u64>,
    limits: DirectLimits,
    connections: Quota<Identity>,
    opens: governor::DefaultKeyedRateLimiter<Identity>,
}

/// One held grant, to withdraw it by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantId(u64);

impl Default for Grants {
    fn default() -> Self {
        Grants::new(DirectLimits::default())
    }
}

/// One of an identity's direct connection slots; dropping it frees it.
pub type ConnectionSlot = Held<Identity>;

/// Whether a live grant was issued for `peer`'s very certificate.
fn bound_to(grant: &Grant, peer: &PeerCert) -> bool {
    peer.cert_serial().as_ref() == Some(&grant.serial)
}

impl Grants {
    /// No grants yet; direct paths capped by `limits`.
    pub fn new(limits: DirectLimits) -> Grants {
        let rate = NonZeroU32::new(limits.open_rate).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.open_burst).unwrap_or(rate);
        Grants {
            live: Mutex::default(),
            next: AtomicU64::new(0),
            changes: watch::channel(0).0,
            limits,
            connections: Quota::new(limits.max_connections),
            opens: governor::RateLimiter::keyed(
                governor::Quota::per_second(rate).allow_burst(burst),
            ),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a live grant was issued for `peer`: its identity, and the
    /// very certificate it presents (by serial).
    pub fn holds(&self, peer: &PeerCert) -> bool {
        self.lock()
            .get(&peer.identity)
            .is_some_and(|g| g.iter().any(|(_, g)| bound_to(g, peer)))
    }

    /// Whether a live grant for `peer`'s certificate lets it make `open`.
    pub fn allows(&self, peer: &PeerCert, open: &Open) -> bool {
        let live = self.lock();
        let Some(grants) = live.get(&peer.identity) else {
            return false;
        };
        grants
            .iter()
            .any(|(_, g)| bound_to(g, peer) && g.reach.covers(open.kind.capability(), &open.target))
    }

    /// Takes one of `caller`'s direct connection slots.
    ///
    /// # Errors
    /// `LIMIT_EXCEEDED` when `caller` already holds
    /// [`DirectLimits::max_connections`] direct connections.
    pub fn connect(&self, caller: &Identity) -> Result<ConnectionSlot, Refused> {
        self.connections.try_hold(caller).ok_or_else(|| {
            Refused::new(
                ErrorCode::LIMIT_EXCEEDED,
                format!(
                    "{caller} already holds {} direct connections to this agent (the most it may); close one",
                    self.connections.cap()
                ),
            )
        })
    }

    /// Counts one stream open of `caller` on a direct path.
    ///
    /// # Errors
    /// `LIMIT_EXCEEDED` above [`DirectLimits::open_rate`] per second.
    pub fn open_permit(&self, caller: &Identity) -> Result<(), Refused> {
        self.opens.check_key(caller).map_err(|_| {
            Refused::new(
                ErrorCode::LIMIT_EXCEEDED,
                format!(
                    "{caller} opens streams faster than {} per second on direct paths to this agent; slow down",
                    self.limits.open_rate
                ),
            )
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
        // Rate-limiter state of identities long gone need not pile up.
        self.opens.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{CertSerial, Role};

    fn peer(serial: &str) -> PeerCert {
        PeerCert {
            relay: "relay".parse().unwrap(),
            identity: Identity {
                role: Role::Client,
                name: "bob".parse().unwrap(),
            },
            serial: serial.into(),
            not_before: time::OffsetDateTime::UNIX_EPOCH,
            not_after: time::OffsetDateTime::UNIX_EPOCH,
            groups: Vec::new(),
            login: None,
            signer: None,
        }
    }

    fn grant(serial: &str) -> Grant {
        Grant {
            caller: peer(serial).identity,
            serial: CertSerial::from_hex(serial).unwrap(),
            reach: proto::Reach {
                targets: vec!["db".parse().unwrap()],
                sessions: proto::Capabilities::default(),
            },
        }
    }

    #[test]
    fn a_grant_admits_only_its_certificate() {
        let grants = Grants::default();
        let id = grants.insert(grant("0a1b"));
        let open = Open {
            agent: "edge".parse().unwrap(),
            target: "db".parse().unwrap(),
            kind: proto::StreamKind::Tcp,
        };
        assert!(grants.holds(&peer("0a1b")));
        assert!(grants.allows(&peer("0a1b"), &open));
        // Same identity, another certificate (say, one revoked by serial).
        assert!(!grants.holds(&peer("0a1c")));
        assert!(!grants.allows(&peer("0a1c"), &open));
        grants.withdraw(&peer("0a1b").identity, id);
        assert!(!grants.holds(&peer("0a1b")));
    }

    #[test]
    fn connections_are_capped_per_identity_and_freed_on_drop() {
        let grants = Grants::new(DirectLimits {
            max_connections: 2,
            ..DirectLimits::default()
        });
        let bob = peer("01").identity;
        let a = grants.connect(&bob).unwrap();
        let _b = grants.connect(&bob).unwrap();
        let refused = grants.connect(&bob).unwrap_err();
        assert_eq!(refused.code, ErrorCode::LIMIT_EXCEEDED);
        assert!(
            refused.message.contains("client/bob"),
            "{}",
            refused.message
        );
        drop(a);
        assert!(grants.connect(&bob).is_ok());
    }

    #[test]
    fn opens_are_rate_limited_per_identity() {
        let grants = Grants::new(DirectLimits {
            open_rate: 1,
            open_burst: 2,
            ..DirectLimits::default()
        });
        let bob = peer("01").identity;
        assert!(grants.open_permit(&bob).is_ok());
        assert!(grants.open_permit(&bob).is_ok());
        let refused = grants.open_permit(&bob).unwrap_err();
        assert_eq!(refused.code, ErrorCode::LIMIT_EXCEEDED);
        let alice = Identity {
            role: Role::Client,
            name: "alice".parse().unwrap(),
        };
        assert!(grants.open_permit(&alice).is_ok());
    }
}
