//! `Direct` (end-to-end mode): a client asks for a path to an agent; the
//! relay checks it ([`crate::authorize::direct`]), sends one agent instance
//! a `Grant` of what the client may open there, installs the connection-ID
//! routes ([`crate::routes`]), answers `Path`, and from then on passes the
//! datagrams of the client's own QUIC connection to that agent without
//! decrypting them.
//!
//! The grant lives as long as both streams (client's `Direct`, agent's
//! `Grant`) stay open and the policy still gives the same: revocation closes
//! the client's connection, a policy reload that changes the grant ends it,
//! and either side leaving ends it. The agent enforces each open against the
//! grant; the relay audits the path (`direct`, `direct_close` with bytes).

use std::time::Instant;

use proto::CidPrefix;
use proto::{Accepted, AgentName, Direct, ErrorCode, Grant, Path, Reach, Refused};
use relay_net::answer::{read_answer, AnswerError};
use relay_net::cert::PeerCert;
use relay_net::framed::{refuse, write_frame, FrameReader};

use crate::audit::{AuditEvent, Event};
use crate::registry::Instance;
use crate::routes::{End, Installed, RouteError};
use crate::Shared;

/// Serves a client's `Direct` stream until the path ends.
pub(super) async fn serve(
    shared: &Shared,
    peer: &PeerCert,
    conn: &quinn::Connection,
    mut send: quinn::SendStream,
    mut reader: FrameReader,
    direct: Direct,
) {
    let started = Instant::now();
    let mut event = AuditEvent::of_peer(
        Event::Direct,
        peer,
        Some(shared.remote(conn.remote_address())),
    );
    event.agent = Some(direct.agent.to_string());
    let granted = match grant(shared, peer, conn, &direct).await {
        Ok(granted) => granted,
        Err(r) => {
            shared.metrics.refused(r.code);
            event.kind = Some("direct");
            shared.audit.record_or_log(event.refused(&r)).await;
            return refuse(&mut send, &mut reader.recv, r).await;
        }
    };
    let Granted {
        installed,
        mut agent_send,
        mut agent_recv,
        agent_prefix,
        grant,
        served,
    } = granted;
    if let Err(e) = shared.audit.record(event.clone()).await {
        let r = Refused::new(
            ErrorCode::AUDIT_UNAVAILABLE,
            format!("{e}; refusing new paths"),
        );
        return refuse(&mut send, &mut reader.recv, r).await;
    }
    // The client learns what the instance's grant holds, and sends the
    // rest on the relay path.
    let path = Path {
        prefix: agent_prefix,
        reach: Some(served),
    };
    if write_frame(&mut send, path).await.is_err() {
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
            () = installed.replaced() => break "replaced by a newer Direct".to_owned(),
            changed = reloads.changed() => {
                if changed.is_err() {
                    break "relay shutting down".to_owned();
                }
                if crate::authorize::grant(shared, peer, &direct.agent).as_ref() != Some(&grant) {
                    break "the policy changed: ask for the path again".to_owned();
                }
            }
        }
    };
    tracing::info!(%reason, "direct path down");
    let (up, down) = installed.bytes();
    drop(installed);
    let mut event = event.because(None, reason);
    event.event = Event::DirectClose;
    event.bytes_up = Some(up);
    event.bytes_down = Some(down);
    event.duration_ms = Some(started.elapsed().as_millis() as u64);
    shared.audit.record_or_log(event).await;
    // Both ends learn of the end once it is on record.
    let _ = send.finish();
    let _ = agent_send.finish();
}

/// A path the relay has set up: its routes, and the agent's `Grant` stream.
struct Granted<'a> {
    installed: Installed<'a>,
    agent_send: quinn::SendStream,
    agent_recv: FrameReader,
    agent_prefix: CidPrefix,
    /// The pool's grant as the policy gives it (a reload that changes it
    /// ends the path).
    grant: Grant,
    /// What the chosen instance was granted of it.
    served: Reach,
}

/// Checks, grants on one instance and installs the routes.
async fn grant<'a>(
    shared: &'a Shared,
    peer: &PeerCert,
    conn: &quinn::Connection,
    direct: &Direct,
) -> Result<Granted<'a>, Refused> {
    let client_prefix = direct.prefix;
    let (grant, instances) = shared
        .when_agents_are_back(|| crate::authorize::direct(shared, peer, &direct.agent))
        .await?;
    let client = &peer.identity.name;
    shared
        .direct
        .room(client, &direct.agent)
        .map_err(route_refusal)?;
    if shared.registry.holds_prefix(client_prefix) {
        return Err(route_refusal(RouteError::PrefixTaken(client_prefix)));
    }
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
        // What this instance serves of it: the client sends the rest of a
        // pool's targets on the relay path, which routes by target.
        let served = Grant {
            reach: within(&grant.reach, &instance),
            ..grant.clone()
        };
        if served.reach.is_empty() {
            continue;
        }
        let (agent_send, agent_recv) = match offer(shared, &direct.agent, &instance, &served).await
        {
            Ok(streams) => streams,
            Err(Some(refused)) => {
                last = refused;
                continue;
            }
            Err(None) => continue,
        };
        let installed = shared
            .direct
            .install(
                client,
                End {
                    conn,
                    serial: &peer.serial,
                    prefix: client_prefix,
                },
                &direct.agent,
                End {
                    conn: &instance.conn,
                    serial: &instance.serial,
                    prefix: agent_prefix,
                },
            )
            .map_err(route_refusal)?;
        return Ok(Granted {
            installed,
            agent_send,
            agent_recv,
            agent_prefix,
            grant,
            served: served.reach,
        });
    }
    Err(last)
}

/// The part of `reach` that `instance` serves: the targets it exposes and
/// the session kinds it offers (instances of one pool may differ).
fn within(reach: &Reach, instance: &Instance) -> Reach {
    Reach {
        targets: reach
            .targets
            .iter()
            .filter(|t| instance.targets.contains(t))
            .cloned()
            .collect(),
        sessions: reach.sessions.intersection(instance.capabilities),
    }
}

/// The refusal of a path the routes will not take.
fn route_refusal(e: RouteError) -> Refused {
    let code = match e {
        RouteError::PrefixTaken(_) => ErrorCode::UNAUTHORIZED,
        RouteError::PerClient { .. } | RouteError::PerAgent { .. } => ErrorCode::LIMIT_EXCEEDED,
    };
    Refused::new(code, e.to_string())
}

/// Offers `grant` to one instance on a stream of its own: the streams if it
/// accepted, its refusal (or why it failed) if it answered, `None` if it
/// could not be reached.
async fn offer(
    shared: &Shared,
    agent: &AgentName,
    instance: &Instance,
    grant: &Grant,
) -> Result<(quinn::SendStream, FrameReader), Option<Refused>> {
    let opened = tokio::time::timeout(shared.limits.answer_timeout, instance.conn.open_bi()).await;
    let Ok(Ok((mut agent_send, agent_recv))) = opened else {
        return Err(None);
    };
    if write_frame(&mut agent_send, grant.clone()).await.is_err() {
        return Err(None);
    }
    let mut agent_recv = FrameReader::new(agent_recv);
    let within = Some(shared.limits.answer_timeout);
    let refused = match read_answer(&mut agent_recv, within).await {
        Ok(Accepted) => return Ok((agent_send, agent_recv)),
        Err(AnswerError::Refused(r)) => r,
        Err(AnswerError::Unexpected(frame)) => Refused::new(
            ErrorCode::INTERNAL,
            format!("agent {agent} answered {frame}"),
        ),
        Err(e) => Refused::new(
            ErrorCode::AGENT_OFFLINE,
            format!("agent {agent} failed: {e}"),
        ),
    };
    Err(Some(refused))
}
