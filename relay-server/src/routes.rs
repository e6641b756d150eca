//! The connection-ID routes of live direct paths (end-to-end mode): the
//! relay's UDP socket asks [`Routes`] for every datagram whose destination
//! ID carries a routable prefix (`relay_net::direct`), and passes it on to
//! the other peer's current address without decrypting it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use proto::CidPrefix;
use relay_net::direct::Router;

/// One direction of a path: datagrams for `prefix` from `from`'s address go
/// to `to`'s address (both read per datagram: peers may change address).
#[derive(Debug)]
struct Leg {
    path: u64,
    from: quinn::Connection,
    to: quinn::Connection,
    bytes: Arc<AtomicU64>,
}

/// A connection-ID prefix already routes to another connection: the
/// asking peer must reconnect to draw a new one.
#[derive(Debug, thiserror::Error)]
#[error("connection-ID prefix {0} is taken by another connection; reconnect")]
pub(crate) struct PrefixTaken(CidPrefix);

/// The legs of every live path, by the prefix of the receiving side.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    legs: RwLock<HashMap<CidPrefix, Vec<Leg>>>,
    next: AtomicU64,
}

impl Router for Routes {
    fn route(&self, prefix: CidPrefix, from: SocketAddr, len: usize) -> Option<SocketAddr> {
        let legs = self.legs.read().unwrap_or_else(|p| p.into_inner());
        let leg = legs
            .get(&prefix)?
            .iter()
            .find(|leg| leg.from.remote_address() == from)?;
        leg.bytes.fetch_add(len as u64, Ordering::Relaxed);
        Some(leg.to.remote_address())
    }
}

/// A live path's two legs; dropping it removes them.
pub(crate) struct Installed<'a> {
    routes: &'a Routes,
    id: u64,
    prefixes: [CidPrefix; 2],
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl Installed<'_> {
    /// Bytes routed from the client to the agent, and back, so far.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        let mut legs = self.routes.legs.write().unwrap_or_else(|p| p.into_inner());
        for prefix in self.prefixes {
            if let Some(list) = legs.get_mut(&prefix) {
                list.retain(|leg| leg.path != self.id);
                if list.is_empty() {
                    legs.remove(&prefix);
                }
            }
        }
    }
}

impl Routes {
    /// Installs both legs between `client` (its IDs start with `client_prefix`)
    /// and `agent`, unless a prefix already routes to another connection.
    pub(crate) fn install(
        &self,
        client: &quinn::Connection,
        client_prefix: CidPrefix,
        agent: &quinn::Connection,
        agent_prefix: CidPrefix,
    ) -> Result<Installed<'_>, PrefixTaken> {
        let mut legs = self.legs.write().unwrap_or_else(|p| p.into_inner());
        for (prefix, owner) in [(client_prefix, client), (agent_prefix, agent)] {
            let taken = legs
                .get(&prefix)
                .is_some_and(|list| list.iter().any(|l| l.to.stable_id() != owner.stable_id()));
            if taken {
                return Err(PrefixTaken(prefix));
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let up = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicU64::new(0));
        legs.entry(agent_prefix).or_default().push(Leg {
            path: id,
            from: client.clone(),
            to: agent.clone(),
            bytes: up.clone(),
        });
        legs.entry(client_prefix).or_default().push(Leg {
            path: id,
            from: agent.clone(),
            to: client.clone(),
            bytes: down.clone(),
        });
        Ok(Installed {
            routes: self,
            id,
            prefixes: [agent_prefix, client_prefix],
            up,
            down,
        })
    }
}
