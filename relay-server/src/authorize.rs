//! Who may do what. Every client stream kind asks here and nowhere else:
//! revocation, the policy, the agent's presence, and the *reach* of a
//! client on an agent (the targets and session kinds it may open), which
//! `List` shows and a direct path's `Grant` carries.
//!
//! Refusals name what to do; an agent the client may not use is described
//! the same whether or not it exists, so the policy does not reveal agents.

use proto::{AgentInfo, AgentName, ErrorCode, Grant, Name, Open, Reach, Refused, StreamKind};
use relay_net::cert::PeerCert;

use crate::policy::{Caller, Carrier, Policy, View};
use crate::registry::{Instance, Lookup, Pool};
use crate::Shared;

/// Refuses a peer whose certificate has been revoked since it connected.
pub(crate) fn not_revoked(shared: &Shared, peer: &PeerCert) -> Result<(), Refused> {
    match shared.revoked(peer) {
        Some(reason) => Err(Refused::new(ErrorCode::REVOKED, reason)),
        None => Ok(()),
    }
}

/// Checks one `Open`: revocation, the policy for its kind, and an instance
/// of the agent that serves the kind. Gives those instances, best first.
pub(crate) fn open(
    shared: &Shared,
    peer: &PeerCert,
    open: &Open,
) -> Result<Vec<Instance>, Refused> {
    not_revoked(shared, peer)?;
    let policy = shared.policy();
    let client = &peer.identity.name;
    let caller = Caller::from(peer);
    let agent = &open.agent;
    let allowed = |view: View<'_>| match &open.kind {
        StreamKind::Tcp => view.allows_tcp(caller, agent, &open.target),
        StreamKind::Shell { .. } => view.allows_shell(caller, agent),
        StreamKind::Exec { .. } => view.allows_run(caller, agent),
        StreamKind::Socks { .. } => view.allows_socks(caller, agent),
        StreamKind::Recording { .. } => view.allows_recordings(caller, agent),
    };
    if !allowed(policy.on(Carrier::Relay)) {
        if allowed(policy.on(Carrier::Direct)) {
            return Err(direct_required(client, open));
        }
        return Err(denied(&policy, peer, open));
    }
    // Only instances that serve this kind: a pool may mix versions or
    // configurations, and an open must not land on one that lacks it.
    let needed = open.kind.capability();
    let able: Vec<_> = instances(shared, agent)?
        .into_iter()
        .filter(|i| i.capabilities.contains(needed))
        .collect();
    if able.is_empty() {
        return Err(unsupported(open));
    }
    // A pool of same-named agents may expose different targets: a TCP open
    // goes only to the instances that expose its target, never to one that
    // would refuse it.
    if let StreamKind::Tcp = open.kind {
        let exposing: Vec<_> = able
            .into_iter()
            .filter(|i| i.targets.contains(&open.target))
            .collect();
        if exposing.is_empty() {
            return Err(Refused::new(
                ErrorCode::TARGET_NOT_EXPOSED,
                format!("agent {agent} does not expose target {}", open.target),
            ));
        }
        return Ok(exposing);
    }
    Ok(able)
}

/// The refusal of an `Open` on the relay path that the policy grants only
/// on end-to-end paths (`direct = "require"`).
fn direct_required(client: &Name, open: &Open) -> Refused {
    let what = match &open.kind {
        StreamKind::Tcp => format!("{}/{}", open.agent, open.target),
        kind => format!("{kind} sessions on {}", open.agent),
    };
    Refused::new(
        ErrorCode::UNAUTHORIZED,
        format!(
            "client {client} may reach {what} only end to end: the relay policy says direct = \"require\" for it, and this stream came on the relay path (the client runs with --end-to-end=off, or could not set up its end-to-end path: its log says why)"
        ),
    )
}

/// The refusal for a kind no instance of the agent serves.
fn unsupported(open: &Open) -> Refused {
    let flag = match open.kind {
        StreamKind::Shell { .. } | StreamKind::Exec { .. } => "--allow-shell",
        StreamKind::Socks { .. } => "--allow-socks",
        StreamKind::Recording { .. } => "--record-dir",
        StreamKind::Tcp => "the flag that enables them",
    };
    Refused::new(
        ErrorCode::UNSUPPORTED,
        format!(
            "agent {} does not offer {} sessions (it runs without {flag})",
            open.agent, open.kind
        ),
    )
}

/// Why the policy refuses `open`. When no `[[allow]]` entry for the client
/// names the agent at all, the name may be a typo or an agent it may not
/// use: say both, and how to see the agents it may use.
fn denied(policy: &Policy, peer: &PeerCert, open: &Open) -> Refused {
    let client = &peer.identity.name;
    let agent = &open.agent;
    let message = if !policy.mentions(peer, agent) {
        let what = match &open.kind {
            StreamKind::Tcp => format!("{agent}/{}", open.target),
            kind => format!("{kind} sessions on {agent}"),
        };
        format!(
            "client {client} may not open {what}: no agent named {agent} is known to this relay, or no [[allow]] entry in the relay policy grants it to {client} (`relay-client list` shows the agents you may use)"
        )
    } else {
        match &open.kind {
            StreamKind::Tcp => format!(
                "client {client} may not open tcp to {agent}/{}: no [[allow]] entry in the relay policy grants it",
                open.target
            ),
            StreamKind::Shell { .. } => format!(
                "client {client} may not open a shell on {agent}: no [[allow]] entry in the relay policy has shell = true for it"
            ),
            StreamKind::Exec { .. } => format!(
                "client {client} may not run commands on {agent}: no [[allow]] entry in the relay policy has run = true for it"
            ),
            StreamKind::Socks { dest } => format!(
                "client {client} may not use SOCKS through {agent} (to {dest}): no [[allow]] entry in the relay policy has socks = true for it"
            ),
            StreamKind::Recording { .. } => format!(
                "client {client} may not see the recordings of {agent}: no [[allow]] entry in the relay policy has recordings = true for it"
            ),
        }
    };
    Refused::new(ErrorCode::UNAUTHORIZED, message)
}

/// The live instances of `agent`, or why there are none.
pub(crate) fn instances(shared: &Shared, agent: &AgentName) -> Result<Vec<Instance>, Refused> {
    match shared.registry.lookup(agent) {
        Lookup::Found(instances) => Ok(instances),
        Lookup::Offline => Err(Refused::new(
            ErrorCode::AGENT_OFFLINE,
            format!("agent {agent} is offline (not connected to the relay)"),
        )),
        Lookup::Unknown => Err(Refused::new(
            ErrorCode::UNKNOWN_AGENT,
            format!("no agent named {agent} has connected to this relay"),
        )),
    }
}

/// What `client` may open on `pool` under `policy` (as it applies on one
/// carrier): the exposed targets the policy lets it reach, and the session
/// kinds both the policy grants and the agent serves.
fn reach_of(policy: View<'_>, client: Caller<'_>, pool: &Pool) -> Reach {
    Reach {
        targets: policy
            .reachable(client, &pool.agent, &pool.targets)
            .into_iter()
            .cloned()
            .collect(),
        sessions: policy
            .sessions(client, &pool.agent)
            .intersection(pool.capabilities),
    }
}

/// One `AgentInfo` per registered agent that the policy names for `peer`
/// (what `List` answers).
pub(crate) fn listing(shared: &Shared, peer: &PeerCert) -> Vec<AgentInfo> {
    let policy = shared.policy();
    shared
        .registry
        .snapshot()
        .into_iter()
        .filter(|pool| policy.mentions(peer, &pool.agent))
        .map(|pool| {
            let reach = reach_of(policy.on(Carrier::Any), peer.into(), &pool);
            AgentInfo {
                targets: reach.targets,
                sessions: reach.sessions,
                instances: u16::try_from(pool.instances).unwrap_or(u16::MAX),
                agent: pool.agent,
            }
        })
        .collect()
}

/// The grant of a direct path to `agent` for `peer` as the policy stands
/// now (only entries that allow end-to-end paths); `None` if it may open
/// nothing there (or the agent is gone).
pub(crate) fn grant(shared: &Shared, peer: &PeerCert, agent: &AgentName) -> Option<Grant> {
    let pool = shared
        .registry
        .snapshot()
        .into_iter()
        .find(|p| &p.agent == agent)?;
    let policy = shared.policy();
    let reach = reach_of(policy.on(Carrier::Direct), peer.into(), &pool);
    // Bound to this certificate: no other of the same identity rides on it.
    let serial = peer.cert_serial()?;
    (!reach.is_empty()).then(|| Grant {
        caller: peer.identity.clone(),
        serial,
        reach,
    })
}

/// Checks a request for a direct path to `agent`: revocation, the policy,
/// presence, and a non-empty grant. Gives the grant and the instances to
/// offer it to.
///
/// The policy comes before presence: a client the policy names nothing
/// for on `agent` gets the same refusal whether `agent` exists or not.
pub(crate) fn direct(
    shared: &Shared,
    peer: &PeerCert,
    agent: &AgentName,
) -> Result<(Grant, Vec<Instance>), Refused> {
    not_revoked(shared, peer)?;
    let client = &peer.identity.name;
    {
        let policy = shared.policy();
        if !policy.on(Carrier::Direct).mentions(peer, agent) {
            let message = if policy.mentions(peer, agent) {
                format!(
                    "client {client} may not use end-to-end paths to {agent}: the relay policy says direct = \"deny\" for it; relay-client --end-to-end=auto (the default) uses the relay path instead"
                )
            } else {
                format!(
                    "client {client} may open nothing on {agent}: no agent named {agent} is known to this relay, or no [[allow]] entry in the relay policy grants it to {client} (`relay-client list` shows the agents you may use)"
                )
            };
            return Err(Refused::new(ErrorCode::UNAUTHORIZED, message));
        }
    }
    let instances = instances(shared, agent)?;
    let Some(grant) = grant(shared, peer, agent) else {
        return Err(Refused::new(
            ErrorCode::UNAUTHORIZED,
            format!(
                "client {client} may open nothing on {agent} end to end: no [[allow]] entry in the relay policy that allows direct paths grants it a target {agent} exposes"
            ),
        ));
    };
    Ok((grant, instances))
}
