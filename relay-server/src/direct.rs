//! Direct paths (end-to-end mode): a client asks with `Direct`; the relay
//! checks the policy as for `List`, sends one agent instance a `Grant` of
//! what the client may open there, answers `Path`, and from then on passes
//! the datagrams of the client's own QUIC connection to that agent on by
//! connection ID ([`Routes`], `relay_net::direct`), without decrypting them.
//!
//! The grant lives as long as both streams (client's `Direct`, agent's
//! `Grant`) stay open and the policy still gives the same: revocation closes
//! the client's connection, a policy reload that changes the grant ends it,
//! and either side leaving ends it. The agent enforces each open against the
//! grant; the relay audits the path (`direct`, `direct_close` with bytes).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use proto::{Accepted, Direct, ErrorCode, Frame, Grant, Path, Refused};
use relay_net::cert::PeerCert;
use relay_net::direct::{Prefix, Router};
use relay_net::framed::{refuse, write_frame, FrameReader};

use crate::audit::AuditEvent;
use crate::Shared;

/// One direction of a path: datagrams for `prefix` from `from`'s address go
/// to `to`'s address (both read per datagram: peers may change address).
#[derive(Debug)]
struct Leg {
    path: u64,
    from: quinn::Connection,
    to: quinn::Connection,
    bytes: Arc<AtomicU64>,
}

/// The legs of every live path, by the prefix of the receiving side.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    legs: RwLock<HashMap<Prefix, Vec<Leg>>>,
    next: AtomicU64,
}

impl Router for Routes {
    fn route(&self, prefix: Prefix, from: SocketAddr, len: usize) -> Option<SocketAddr> {
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
struct Installed<'a> {
    routes: &'a Routes,
    id: u64,
    prefixes: [Prefix; 2],
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
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
    fn install(
        &self,
        client: &quinn::Connection,
        client_prefix: Prefix,
        agent: &quinn::Connection,
        agent_prefix: Prefix,
    ) -> Result<Installed<'_>, String> {
        let mut legs = self.legs.write().unwrap_or_else(|p| p.into_inner());
        for (prefix, owner) in [(client_prefix, client), (agent_prefix, agent)] {
            let taken = legs
                .get(&prefix)
                .is_some_and(|list| list.iter().any(|l| l.to.stable_id() != owner.stable_id()));
            if taken {
                return Err(format!(
                    "connection-ID prefix {prefix:?} is taken by another connection; reconnect"
                ));
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

/// Serves a client's `Direct` stream until the path ends.
pub(crate) async fn serve(
    shared: &Shared,
    peer: &PeerCert,
    conn: &quinn::Connection,
    mut send: quinn::SendStream,
    mut reader: FrameReader,
    direct: Direct,
) {
    let started = Instant::now();
    let mut event = AuditEvent {
        peer: Some(peer.identity.to_string()),
        serial: Some(peer.serial.clone()),
        remote: Some(conn.remote_address().to_string()),
        agent: Some(direct.agent.to_string()),
        ..AuditEvent::default()
    };
    let granted = match grant(shared, peer, conn, &direct).await {
        Ok(granted) => granted,
        Err(r) => {
            shared.metrics.refused(r.code);
            event.event = "refused";
            event.kind = Some("direct");
            event.code = Some(r.code.to_string());
            event.reason = Some(r.message.clone());
            shared.audit.record_or_log(event);
            return refuse(&mut send, &mut reader.recv, r).await;
        }
    };
    let Granted {
        installed,
        mut agent_send,
        mut agent_recv,
        agent_prefix,
        grant,
    } = granted;
    event.event = "direct";
    if let Err(e) = shared.audit.record(event.clone()) {
        let r = Refused::new(
            ErrorCode::AUDIT_UNAVAILABLE,
            format!("{e}; refusing new paths"),
        );
        return refuse(&mut send, &mut reader.recv, r).await;
    }
    if write_frame(
        &mut send,
        Path {
            prefix: agent_prefix.to_u32(),
        },
    )
    .await
    .is_err()
    {
        return;
    }
    tracing::info!(agent = %direct.agent, "direct path up");
    let mut reloads = shared.reloads.subscribe();
    let reason = loop {
        tokio::select! {
            r = reader.read() => break match r {
                Ok(None) => "client ended the path".to_owned(),
                Ok(Some(f)) => format!("unexpected {} on a Direct stream", f.frame_type()),
                Err(e) => e.to_string(),
            },
            r = agent_recv.read() => break match r {
                Ok(None) => "agent ended the path".to_owned(),
                Ok(Some(f)) => format!("agent sent {} on a Grant stream", f.frame_type()),
                Err(e) => format!("agent: {e}"),
            },
            changed = reloads.changed() => {
                if changed.is_err() {
                    break "relay shutting down".to_owned();
                }
                if current_grant(shared, peer, &direct).as_ref() != Some(&grant) {
                    break "the policy changed: ask for the path again".to_owned();
                }
            }
        }
    };
    tracing::info!(%reason, "direct path down");
    event.event = "direct_close";
    event.reason = Some(reason);
    event.bytes_up = Some(installed.up.load(Ordering::Relaxed));
    event.bytes_down = Some(installed.down.load(Ordering::Relaxed));
    drop(installed);
    event.duration_ms = Some(started.elapsed().as_millis() as u64);
    shared.audit.record_or_log(event);
    // Both ends learn of the end once it is on record.
    let _ = send.finish();
    let _ = agent_send.finish();
}

struct Granted<'a> {
    installed: Installed<'a>,
    agent_send: quinn::SendStream,
    agent_recv: FrameReader,
    agent_prefix: Prefix,
    grant: Grant,
}

/// What the policy lets `peer` open on `direct.agent` now, as a grant;
/// `None` if nothing.
fn current_grant(shared: &Shared, peer: &PeerCert, direct: &Direct) -> Option<Grant> {
    let pool = shared
        .registry
        .snapshot()
        .into_iter()
        .find(|p| p.agent == direct.agent)?;
    let policy = shared.policy();
    let client = &peer.identity.name;
    let targets: Vec<_> = policy
        .reachable(client, &direct.agent, &pool.targets)
        .into_iter()
        .cloned()
        .collect();
    let sessions = policy
        .sessions(client, &direct.agent)
        .intersection(pool.capabilities);
    (!targets.is_empty() || !sessions.is_empty()).then(|| Grant {
        caller: peer.identity.clone(),
        targets,
        sessions,
    })
}

/// Checks, grants on one instance and installs the routes.
async fn grant<'a>(
    shared: &'a Shared,
    peer: &PeerCert,
    conn: &quinn::Connection,
    direct: &Direct,
) -> Result<Granted<'a>, Refused> {
    let Some(client_prefix) = Prefix::from_u32(direct.prefix) else {
        return Err(Refused::new(
            ErrorCode::PROTOCOL_VIOLATION,
            "Direct carries no routable connection-ID prefix (high bit clear)",
        ));
    };
    if let Some(reason) = shared.revoked(peer) {
        return Err(Refused::new(ErrorCode::REVOKED, reason));
    }
    let instances = crate::route::instances(shared, &direct.agent)?;
    let Some(grant) = current_grant(shared, peer, direct) else {
        return Err(Refused::new(
            ErrorCode::UNAUTHORIZED,
            format!(
                "client {} may open nothing on {}: no [[allow]] entry in the relay policy grants it",
                peer.identity.name, direct.agent
            ),
        ));
    };
    let mut last = Refused::new(
        ErrorCode::UNSUPPORTED,
        format!(
            "agent {} does not serve direct paths (an older version); use the relay path",
            direct.agent
        ),
    );
    for instance in instances {
        let Some(agent_prefix) = instance.prefix else {
            continue;
        };
        let opened =
            tokio::time::timeout(shared.limits.answer_timeout, instance.conn.open_bi()).await;
        let Ok(Ok((mut agent_send, agent_recv))) = opened else {
            continue;
        };
        if write_frame(&mut agent_send, grant.clone()).await.is_err() {
            continue;
        }
        let mut agent_recv = FrameReader::new(agent_recv);
        match agent_recv.expect(shared.limits.answer_timeout).await {
            Ok(Frame::Accepted(Accepted)) => {}
            Ok(Frame::Refused(r)) => {
                last = r;
                continue;
            }
            Ok(other) => {
                last = Refused::new(
                    ErrorCode::INTERNAL,
                    format!("agent {} answered {}", direct.agent, other.frame_type()),
                );
                continue;
            }
            Err(e) => {
                last = Refused::new(
                    ErrorCode::AGENT_OFFLINE,
                    format!("agent {} failed: {e}", direct.agent),
                );
                continue;
            }
        }
        let installed = shared
            .direct
            .install(conn, client_prefix, &instance.conn, agent_prefix)
            .map_err(|m| Refused::new(ErrorCode::LIMIT_EXCEEDED, m))?;
        return Ok(Granted {
            installed,
            agent_send,
            agent_recv,
            agent_prefix,
            grant,
        });
    }
    Err(last)
}
