//! The connection-ID routes of live direct paths (end-to-end mode): the
//! relay's UDP socket asks [`Routes`] for every datagram whose destination
//! ID carries a routable prefix (`relay_net::direct`), and passes it on to
//! the other peer without decrypting it.
//!
//! A route is one hash lookup by (destination prefix, sender address): no
//! scan, no lock of a quinn connection per datagram (quinn's one receive
//! task runs it). Both addresses of a path are those the relay's own,
//! validated, QUIC connections with the two peers had when the path was
//! granted, and they stay fixed: quinn moves a connection to a peer's new
//! address *before* validating it (`quinn-proto` 0.11 `migrate`), so
//! following it would let a peer that spoofs its source aim the other
//! peer's datagrams at a third address. A peer whose address changes loses
//! its paths (the client asks again on its next open).
//!
//! Who may route what: a prefix belongs to one connection (an agent's, as
//! registered, or the client's that first used it while its paths live);
//! a `Direct` that names a prefix someone else holds is refused. A new
//! connection with the same certificate takes it over: that is its owner
//! dialling again after losing the old connection (a partition, say) before
//! the relay noticed, and the old connection's paths end. Each client
//! identity and each agent has a cap on live paths, and a second `Direct`
//! from one client connection to one agent instance replaces the first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use proto::{AgentName, CidPrefix, Name};
use relay_net::direct::Router;
use tokio::sync::Notify;

/// Live direct paths one client identity may hold at once (all its
/// connections together): a forward to a few dozen agents fits, a flood
/// of `Direct`s does not pile up routes and `Grant` streams.
pub(crate) const DIRECT_PER_CLIENT: usize = 64;

/// Live direct paths to one agent (all its instances, all clients).
pub(crate) const DIRECT_PER_AGENT: usize = 1_024;

/// One direction of a path: datagrams for its prefix from its sender's
/// address go to `to`.
#[derive(Debug)]
struct Leg {
    path: u64,
    to: SocketAddr,
    bytes: Arc<AtomicU64>,
}

/// A live path, for counting, replacing and removing it.
#[derive(Debug)]
struct Live {
    client: Name,
    agent: AgentName,
    keys: [(CidPrefix, SocketAddr); 2],
    replaced: Arc<Notify>,
}

/// Why the relay will not route a path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    /// The prefix is another connection's.
    #[error(
        "connection-ID prefix {0} is taken by another connection; reconnect to draw a new one"
    )]
    PrefixTaken(CidPrefix),
    /// The client identity holds its cap of live paths.
    #[error("client {client} already holds {max} direct paths (the relay's limit); end one first")]
    PerClient {
        /// The client.
        client: Name,
        /// The cap.
        max: usize,
    },
    /// The agent serves its cap of live paths.
    #[error("agent {agent} already serves {max} direct paths (the relay's limit); use the relay path or try later")]
    PerAgent {
        /// The agent.
        agent: AgentName,
        /// The cap.
        max: usize,
    },
}

/// Who holds a prefix: a connection (its `stable_id`), with the serial of
/// its certificate, for as many live paths.
#[derive(Debug)]
struct Owner {
    conn: usize,
    serial: String,
    paths: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Legs by (destination prefix, sender address).
    legs: HashMap<(CidPrefix, SocketAddr), Leg>,
    /// Live paths by id.
    paths: HashMap<u64, Live>,
    /// Prefixes held by a connection with live paths.
    owners: HashMap<CidPrefix, Owner>,
    per_client: HashMap<Name, usize>,
    per_agent: HashMap<AgentName, usize>,
}

/// Takes one from `key`'s count, forgetting it at zero.
fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl State {
    /// Whether one more path of `client` to `agent` fits the caps.
    fn room(
        &self,
        client: &Name,
        per_client: usize,
        agent: &AgentName,
        per_agent: usize,
    ) -> Result<(), RouteError> {
        if self.per_client.get(client).copied().unwrap_or(0) >= per_client {
            return Err(RouteError::PerClient {
                client: client.clone(),
                max: per_client,
            });
        }
        if self.per_agent.get(agent).copied().unwrap_or(0) >= per_agent {
            return Err(RouteError::PerAgent {
                agent: agent.clone(),
                max: per_agent,
            });
        }
        Ok(())
    }

    /// Removes path `id` (its legs, counts and prefix holds).
    fn remove(&mut self, id: u64) -> Option<Live> {
        let live = self.paths.remove(&id)?;
        for key in live.keys {
            if self.legs.get(&key).is_some_and(|l| l.path == id) {
                self.legs.remove(&key);
            }
            if let Some(owner) = self.owners.get_mut(&key.0) {
                owner.paths = owner.paths.saturating_sub(1);
                if owner.paths == 0 {
                    self.owners.remove(&key.0);
                }
            }
        }
        decrement(&mut self.per_client, &live.client);
        decrement(&mut self.per_agent, &live.agent);
        Some(live)
    }
}

/// The legs of every live path.
#[derive(Debug)]
pub(crate) struct Routes {
    state: RwLock<State>,
    next: AtomicU64,
    per_client: usize,
    per_agent: usize,
}

impl Router for Routes {
    fn route(&self, prefix: CidPrefix, from: SocketAddr, len: usize) -> Option<SocketAddr> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let leg = state.legs.get(&(prefix, from))?;
        leg.bytes.fetch_add(len as u64, Ordering::Relaxed);
        Some(leg.to)
    }
}

/// One end of a path to install: the relay's connection with the peer, the
/// serial of the certificate it showed, and the prefix of its connection IDs.
pub(crate) struct End<'c> {
    pub(crate) conn: &'c quinn::Connection,
    pub(crate) serial: &'c str,
    pub(crate) prefix: CidPrefix,
}

/// A live path's two legs; dropping it removes them.
pub(crate) struct Installed<'a> {
    routes: &'a Routes,
    id: u64,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    replaced: Arc<Notify>,
}

impl Installed<'_> {
    /// Bytes routed from the client to the agent, and back, so far.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }

    /// Completes when a newer path has taken this one's place: from the
    /// same client connection to the same agent instance, or from a new
    /// connection of the same certificate that took its prefix over.
    ///
    /// # Cancel safety
    /// Cancel safe: a replacement that happens meanwhile is kept.
    pub(crate) async fn replaced(&self) {
        self.replaced.notified().await;
    }
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        self.routes.write().remove(self.id);
    }
}

impl Routes {
    /// Routes with these caps of live paths per client identity and per agent.
    pub(crate) fn new(per_client: usize, per_agent: usize) -> Routes {
        Routes {
            state: RwLock::default(),
            next: AtomicU64::new(0),
            per_client,
            per_agent,
        }
    }

    /// Whether `client` and `agent` are below their caps, checked before a
    /// grant is offered so a refused path costs the agent no `Grant` stream
    /// ([`Routes::install`] checks again).
    ///
    /// # Errors
    /// The cap reached.
    pub(crate) fn room(&self, client: &Name, agent: &AgentName) -> Result<(), RouteError> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.room(client, self.per_client, agent, self.per_agent)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs both legs between `client` (identity `client_name`) and
    /// `agent` (named `agent_name`). The caller has checked that no
    /// registered agent holds the client's prefix.
    ///
    /// # Errors
    /// A prefix someone else holds, or a cap reached.
    pub(crate) fn install(
        &self,
        client_name: &Name,
        client: End<'_>,
        agent_name: &AgentName,
        agent: End<'_>,
    ) -> Result<Installed<'_>, RouteError> {
        if client.prefix == agent.prefix {
            return Err(RouteError::PrefixTaken(client.prefix));
        }
        let client_addr = client.conn.remote_address();
        let agent_addr = agent.conn.remote_address();
        let up_key = (agent.prefix, client_addr);
        let down_key = (client.prefix, agent_addr);
        let mut state = self.write();
        let mut taken_over = Vec::new();
        for end in [&client, &agent] {
            match state.owners.get(&end.prefix) {
                Some(owner) if owner.conn == end.conn.stable_id() => {}
                Some(owner) if owner.serial == end.serial => taken_over.push(end.prefix),
                Some(_) => return Err(RouteError::PrefixTaken(end.prefix)),
                None => {}
            }
        }
        // The same certificate on a new connection: the old one's paths
        // with that prefix end (their owner has moved on).
        for prefix in taken_over {
            let ids: Vec<u64> = state
                .paths
                .iter()
                .filter(|(_, live)| live.keys.iter().any(|k| k.0 == prefix))
                .map(|(id, _)| *id)
                .collect();
            for old in ids.into_iter().filter_map(|id| state.remove(id)) {
                old.replaced.notify_one();
            }
        }
        // The same client connection to the same agent instance: the new
        // path takes the old one's place (and its count).
        let old = state.legs.get(&up_key).map(|l| l.path);
        if let Some(old) = old.and_then(|id| state.remove(id)) {
            old.replaced.notify_one();
        }
        state.room(client_name, self.per_client, agent_name, self.per_agent)?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let up = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicU64::new(0));
        let replaced = Arc::new(Notify::new());
        state.legs.insert(
            up_key,
            Leg {
                path: id,
                to: agent_addr,
                bytes: up.clone(),
            },
        );
        // A leftover leg of another path under the same key (an agent
        // instance that reconnected from the same address) is overwritten.
        state.legs.insert(
            down_key,
            Leg {
                path: id,
                to: client_addr,
                bytes: down.clone(),
            },
        );
        for end in [&client, &agent] {
            state
                .owners
                .entry(end.prefix)
                .or_insert_with(|| Owner {
                    conn: end.conn.stable_id(),
                    serial: end.serial.to_owned(),
                    paths: 0,
                })
                .paths += 1;
        }
        *state.per_client.entry(client_name.clone()).or_default() += 1;
        *state.per_agent.entry(agent_name.clone()).or_default() += 1;
        state.paths.insert(
            id,
            Live {
                client: client_name.clone(),
                agent: agent_name.clone(),
                keys: [up_key, down_key],
                replaced: replaced.clone(),
            },
        );
        Ok(Installed {
            routes: self,
            id,
            up,
            down,
            replaced,
        })
    }
}
