//! Registered agents. Several connections with the same agent name form a
//! pool (HA replicas); opens are spread across a pool round-robin.
//!
//! A registration is a drop guard: when the connection task ends, for any
//! reason, the instance leaves the registry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use proto::CidPrefix;
use proto::{AgentName, Capabilities, TargetName};
use tokio::sync::watch;

/// One connected agent instance.
#[derive(Clone, Debug)]
pub struct Instance {
    /// Unique within this relay process.
    pub id: u64,
    /// The agent's connection.
    pub conn: quinn::Connection,
    /// Its certificate serial (several replicas may share one certificate).
    pub serial: String,
    /// What it says it exposes (informational: the agent enforces).
    pub targets: Arc<[TargetName]>,
    /// The stream kinds it serves.
    pub capabilities: Capabilities,
    /// The prefix of its connection IDs, if it serves direct paths.
    pub prefix: Option<CidPrefix>,
}

/// A registered agent, as [`Registry::snapshot`] sees it.
#[derive(Clone, Debug)]
pub struct Pool {
    /// The agent's name.
    pub agent: AgentName,
    /// How many instances are connected.
    pub instances: usize,
    /// The union of the targets its instances expose.
    pub targets: Vec<TargetName>,
    /// The union of the stream kinds its instances serve.
    pub capabilities: Capabilities,
}

/// The result of looking an agent up.
#[derive(Debug)]
pub enum Lookup {
    /// Live instances, in the order to try them.
    Found(Vec<Instance>),
    /// The agent has registered since the relay started but is not connected now.
    Offline,
    /// No agent of that name has registered since the relay started.
    Unknown,
}

#[derive(Debug, Default)]
struct State {
    pools: BTreeMap<AgentName, Vec<Instance>>,
    seen: BTreeSet<AgentName>,
}

/// All registered agents.
#[derive(Debug)]
pub struct Registry {
    state: Mutex<State>,
    next_id: AtomicU64,
    round_robin: AtomicU64,
    /// Bumped on every change, so tests and `list` can wait on it.
    changes: watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
            round_robin: AtomicU64::new(0),
            changes: watch::channel(0).0,
        }
    }
}

/// Keeps an instance registered while alive.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    agent: AgentName,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.registry.lock();
        if let Some(pool) = state.pools.get_mut(&self.agent) {
            pool.retain(|i| i.id != self.id);
            if pool.is_empty() {
                state.pools.remove(&self.agent);
            }
        }
        drop(state);
        self.registry.changes.send_modify(|v| *v += 1);
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the maps half-updated
        // (each update is one call), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an instance of `agent`; it stays until the guard drops.
    pub fn register(
        self: &Arc<Self>,
        agent: AgentName,
        conn: quinn::Connection,
        serial: String,
        targets: Vec<TargetName>,
        capabilities: Capabilities,
        prefix: Option<CidPrefix>,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let instance = Instance {
            id,
            conn,
            serial,
            targets: targets.into(),
            capabilities,
            prefix,
        };
        let mut state = self.lock();
        state.seen.insert(agent.clone());
        state.pools.entry(agent.clone()).or_default().push(instance);
        drop(state);
        self.changes.send_modify(|v| *v += 1);
        Registration {
            registry: self.clone(),
            agent,
            id,
        }
    }

    /// The instances of `agent`, rotated so successive opens start at
    /// successive instances.
    pub fn lookup(&self, agent: &AgentName) -> Lookup {
        let state = self.lock();
        match state.pools.get(agent) {
            Some(pool) if !pool.is_empty() => {
                let start = self.round_robin.fetch_add(1, Ordering::Relaxed) as usize % pool.len();
                let mut order = pool.clone();
                order.rotate_left(start);
                Lookup::Found(order)
            }
            _ if state.seen.contains(agent) => Lookup::Offline,
            _ => Lookup::Unknown,
        }
    }

    /// Every registered agent: its instance count and what any of its
    /// instances offers.
    pub fn snapshot(&self) -> Vec<Pool> {
        let state = self.lock();
        state
            .pools
            .iter()
            .map(|(name, pool)| {
                let targets: BTreeSet<TargetName> = pool
                    .iter()
                    .flat_map(|i| i.targets.iter().cloned())
                    .collect();
                Pool {
                    agent: name.clone(),
                    instances: pool.len(),
                    targets: targets.into_iter().collect(),
                    capabilities: pool
                        .iter()
                        .fold(Capabilities::EMPTY, |all, i| all | i.capabilities),
                }
            })
            .collect()
    }

    /// Whether a live instance of any agent holds `prefix` for its
    /// connection IDs (no client may route with it: #13).
    pub fn holds_prefix(&self, prefix: CidPrefix) -> bool {
        self.lock()
            .pools
            .values()
            .flatten()
            .any(|i| i.prefix == Some(prefix))
    }

    /// Number of live instances of `agent`.
    pub fn instances(&self, agent: &AgentName) -> usize {
        self.lock().pools.get(agent).map_or(0, Vec::len)
    }

    /// A receiver that changes whenever an agent registers or leaves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
