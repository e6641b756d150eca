//! A client's streams: each starts with `Open` (or `List`). Every `Open` is
//! authorized against the identity of the connection's certificate, then
//! forwarded to an instance of the agent as `Forwarded { caller, open }`
//! with the client's early bytes right behind it; the agent's answer goes
//! back to the client, and an accepted stream is spliced.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use proto::{AgentInfo, ErrorCode, Forwarded, Frame, Open, Refused, StreamKind};
use relay_net::cert::PeerCert;
use relay_net::framed::{refuse, write_frame, FrameError, FrameReader};
use relay_net::splice::splice;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::audit::AuditEvent;
use crate::registry::Lookup;
use crate::Shared;

pub(crate) async fn serve(
    shared: &std::sync::Arc<Shared>,
    conn: &quinn::Connection,
    peer: &PeerCert,
    shutdown: &CancellationToken,
) {
    let mut streams = JoinSet::new();
    // quinn keeps state for every stream a peer may open, so the limit grows
    // with use (doubling at 3/4) instead of starting at its maximum: an idle
    // client costs little, a forward of thousands of connections still fits.
    let max_streams = shared.limits.client_streams.max(1);
    let mut allowed = INITIAL_STREAMS.min(max_streams);
    conn.set_max_concurrent_bi_streams(allowed.into());
    let mut over_rate = OverRate::default();
    loop {
        tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok((mut send, mut recv)) if shared.open_limiter.check_key(&peer.identity.name).is_err() => {
                    // Over the open rate: refused before anything is read or
                    // dialled; resets count too, since each costs an accept.
                    shared.metrics.limit_hit("open_rate");
                    if over_rate.hit(shared.limits.open_burst) {
                        // Sustained abuse: refusing every open costs us more
                        // than dropping the peer.
                        shared.metrics.limit_hit("open_rate_dropped");
                        let reason = format!(
                            "client {} kept opening streams past its open rate",
                            peer.identity.name
                        );
                        tracing::warn!(%reason, "client dropped");
                        shared.audit.record_or_log(AuditEvent {
                            event: "refused",
                            peer: Some(peer.identity.to_string()),
                            serial: Some(peer.serial.clone()),
                            remote: Some(conn.remote_address().to_string()),
                            code: Some(ErrorCode::LIMIT_EXCEEDED.to_string()),
                            reason: Some(format!("{reason}; connection closed")),
                            ..AuditEvent::default()
                        });
                        conn.close(ErrorCode::LIMIT_EXCEEDED.0.into(), reason.as_bytes());
                        return;
                    }
                    shared.metrics.refused(ErrorCode::LIMIT_EXCEEDED);
                    let message = format!(
                        "client {} exceeded its open rate ({} per second); slow down",
                        peer.identity.name, shared.limits.open_rate
                    );
                    shared.audit.record_or_log(AuditEvent {
                        event: "refused",
                        peer: Some(peer.identity.to_string()),
                        serial: Some(peer.serial.clone()),
                        remote: Some(conn.remote_address().to_string()),
                        code: Some(ErrorCode::LIMIT_EXCEEDED.to_string()),
                        reason: Some(message.clone()),
                        ..AuditEvent::default()
                    });
                    let refused = Refused::new(ErrorCode::LIMIT_EXCEEDED, message);
                    streams.spawn(async move { refuse(&mut send, &mut recv, refused).await });
                }
                Ok((send, recv)) => {
                    let span = tracing::debug_span!("stream", id = %send.id());
                    streams.spawn(handle(shared.clone(), peer.clone(), conn.clone(), send, recv).instrument(span));
                    if streams.len() as u64 * 4 >= u64::from(allowed) * 3 && allowed < max_streams {
                        allowed = allowed.saturating_mul(2).min(max_streams);
                        conn.set_max_concurrent_bi_streams(allowed.into());
                    }
                }
                Err(e) => {
                    tracing::info!(reason = %relay_net::dial::describe(&e), "client disconnected");
                    return;
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            () = shutdown.cancelled() => break,
        }
    }
    // Shutting down: live streams get the grace period to finish.
    let drain = async { while streams.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(shared.limits.shutdown_grace, drain).await;
}

/// Streams a client may open at first; raised as it uses them.
const INITIAL_STREAMS: u32 = 256;

/// Opens refused for the rate within the current second.
#[derive(Default)]
struct OverRate {
    since: Option<Instant>,
    count: u32,
}

impl OverRate {
    /// Counts one refused open; true when more than `limit` came within a
    /// second (so the peer keeps pushing instead of slowing down).
    fn hit(&mut self, limit: u32) -> bool {
        let now = Instant::now();
        match self.since {
            Some(t) if now.duration_since(t) < std::time::Duration::from_secs(1) => self.count += 1,
            _ => {
                self.since = Some(now);
                self.count = 1;
            }
        }
        self.count > limit.max(64)
    }
}

async fn handle(
    shared: std::sync::Arc<Shared>,
    peer: PeerCert,
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let remote = conn.remote_address();
    let mut reader = FrameReader::new(recv);
    let refusal = |code: ErrorCode, message: String| Refused::new(code, message);
    let frame = match reader.expect(shared.limits.first_frame_timeout).await {
        Ok(frame) => frame,
        Err(e) => {
            tracing::debug!(err = %e, "bad first frame");
            let _ = send.reset(e.code().0.into());
            let _ = reader.recv.stop(e.code().0.into());
            return;
        }
    };
    match frame {
        Frame::Open(open) => forward(&shared, &peer, remote, send, reader, open).await,
        Frame::List(_) => list(&shared, &peer, send).await,
        Frame::Direct(direct) => {
            crate::direct::serve(&shared, &peer, &conn, send, reader, direct).await;
        }
        Frame::Forwarded(_) => {
            let r = refusal(
                ErrorCode::UNAUTHORIZED,
                "only the relay may name a caller: clients send Open, not Forwarded".into(),
            );
            tracing::warn!("client sent Forwarded");
            refuse(&mut send, &mut reader.recv, r).await;
        }
        other => {
            let r = refusal(
                ErrorCode::PROTOCOL_VIOLATION,
                format!(
                    "a stream must start with Open, List or Direct, not {:?}",
                    other.frame_type()
                ),
            );
            refuse(&mut send, &mut reader.recv, r).await;
        }
    }
}

async fn forward(
    shared: &Shared,
    peer: &PeerCert,
    remote: std::net::SocketAddr,
    mut client_send: quinn::SendStream,
    client: FrameReader,
    open: Open,
) {
    let started = Instant::now();
    let mut event = AuditEvent {
        peer: Some(peer.identity.to_string()),
        serial: Some(peer.serial.clone()),
        remote: Some(remote.to_string()),
        agent: Some(open.agent.to_string()),
        target: Some(open.target.to_string()),
        kind: Some(open.kind.as_str()),
        command: Some(open.kind.command_line()).filter(|c| !c.is_empty()),
        destination: match &open.kind {
            StreamKind::Socks { dest } => Some(dest.to_string()),
            _ => None,
        },
        ..AuditEvent::default()
    };
    let (mut client_recv, early) = client.into_parts();
    // Bytes that came right behind `Open` go to the agent with it, not
    // through the splice: they count toward the bytes up all the same.
    let early_bytes = early.len() as u64;
    let agent_streams = match authorize(shared, peer, &open) {
        Ok(instances) => match shared.audit.record(AuditEvent {
            event: "open",
            ..event.clone()
        }) {
            Ok(()) => dial_agent(instances, peer, &open, early, shared).await,
            Err(e) => Err(Refused::new(
                ErrorCode::AUDIT_UNAVAILABLE,
                format!("{e}; refusing new streams"),
            )),
        },
        Err(r) => Err(r),
    };
    let (mut agent_send, agent_recv) = match agent_streams {
        Ok(streams) => streams,
        Err(r) => {
            shared.metrics.refused(r.code);
            tracing::debug!(code = %r.code, reason = %r.message, "open refused");
            event.event = "refused";
            event.code = Some(r.code.to_string());
            event.reason = Some(r.message.clone());
            shared.audit.record_or_log(event);
            return refuse(&mut client_send, &mut client_recv, r).await;
        }
    };
    let mut agent = FrameReader::new(agent_recv);
    let answer = agent.expect(shared.limits.answer_timeout).await;
    let refused = match answer {
        Ok(Frame::Accepted(accepted)) => {
            let kind = crate::metrics::KindLabel {
                kind: open.kind.as_str().to_owned(),
            };
            shared.metrics.streams.get_or_create(&kind).inc();
            let _open =
                crate::metrics::GaugeGuard::new(&shared.metrics.streams_open.get_or_create(&kind));
            if write_frame(&mut client_send, accepted).await.is_ok() {
                let (mut agent_recv, leftover) = agent.into_parts();
                let outcome = splice(
                    &mut client_recv,
                    &mut client_send,
                    &mut agent_recv,
                    &mut agent_send,
                    Bytes::new(),
                    leftover,
                )
                .await;
                let up = early_bytes + outcome.forward.bytes;
                let bytes = &shared.metrics.bytes;
                bytes
                    .get_or_create(&crate::metrics::DirectionLabel { direction: "up" })
                    .inc_by(up);
                bytes
                    .get_or_create(&crate::metrics::DirectionLabel { direction: "down" })
                    .inc_by(outcome.backward.bytes);
                event.event = "close";
                event.bytes_up = Some(up);
                event.bytes_down = Some(outcome.backward.bytes);
                event.duration_ms = Some(started.elapsed().as_millis() as u64);
                if let Some(f) = outcome.failure() {
                    event.code = Some(f.code.to_string());
                    event.reason = Some(f.reason.clone());
                }
                tracing::debug!(up, down = outcome.backward.bytes, "stream closed");
            } else {
                let _ = agent_send.reset(ErrorCode::STREAM_ABORTED.0.into());
                event.event = "close";
                event.reason = Some("client went away before the answer".into());
            }
            shared.audit.record_or_log(event);
            return;
        }
        Ok(Frame::Refused(r)) => r,
        Ok(other) => {
            let _ = agent_send.reset(ErrorCode::PROTOCOL_VIOLATION.0.into());
            Refused::new(
                ErrorCode::INTERNAL,
                format!(
                    "agent {} answered with {:?}",
                    open.agent,
                    other.frame_type()
                ),
            )
        }
        Err(FrameError::Timeout(t)) => {
            let _ = agent_send.reset(ErrorCode::TARGET_TIMEOUT.0.into());
            Refused::new(
                ErrorCode::TARGET_TIMEOUT,
                format!("agent {} did not answer within {t:?}", open.agent),
            )
        }
        Err(e) => {
            let _ = agent_send.reset(ErrorCode::STREAM_ABORTED.0.into());
            Refused::new(
                ErrorCode::AGENT_OFFLINE,
                format!("agent {} failed: {e}", open.agent),
            )
        }
    };
    let _ = agent_send.finish();
    shared.metrics.refused(refused.code);
    event.event = "refused";
    event.code = Some(refused.code.to_string());
    event.reason = Some(refused.message.clone());
    shared.audit.record_or_log(event);
    refuse(&mut client_send, &mut client_recv, refused).await;
}

/// Policy, revocation and presence checks for one `Open`.
fn authorize(
    shared: &Shared,
    peer: &PeerCert,
    open: &Open,
) -> Result<Vec<crate::registry::Instance>, Refused> {
    let client = &peer.identity.name;
    if let Some(reason) = shared.revoked(peer) {
        return Err(Refused::new(ErrorCode::REVOKED, reason));
    }
    let policy = shared.policy();
    let denied = match &open.kind {
        StreamKind::Tcp => (!policy.allows_tcp(client, &open.agent, &open.target)).then(|| {
            format!(
                "client {client} may not open tcp to {}/{}: no [[allow]] entry in the relay policy grants it",
                open.agent, open.target
            )
        }),
        StreamKind::Shell { .. } => (!policy.allows_shell(client, &open.agent)).then(|| {
            format!(
                "client {client} may not open a shell on {}: no [[allow]] entry in the relay policy has shell = true for it",
                open.agent
            )
        }),
        StreamKind::Exec { .. } => (!policy.allows_run(client, &open.agent)).then(|| {
            format!(
                "client {client} may not run commands on {}: no [[allow]] entry in the relay policy has run = true for it",
                open.agent
            )
        }),
        StreamKind::Socks { dest } => (!policy.allows_socks(client, &open.agent)).then(|| {
            format!(
                "client {client} may not use SOCKS through {} (to {dest}): no [[allow]] entry in the relay policy has socks = true for it",
                open.agent
            )
        }),
    };
    if let Some(message) = denied {
        return Err(Refused::new(ErrorCode::UNAUTHORIZED, message));
    }
    // Only instances that serve this kind: a pool may mix versions or
    // configurations, and an open must not land on one that lacks it.
    let needed = open.kind.capability();
    let able: Vec<_> = instances(shared, &open.agent)?
        .into_iter()
        .filter(|i| i.capabilities.contains(needed))
        .collect();
    if able.is_empty() {
        let flag = match open.kind {
            StreamKind::Shell { .. } | StreamKind::Exec { .. } => "--allow-shell",
            StreamKind::Socks { .. } => "--allow-socks",
            _ => "the flag that enables them",
        };
        return Err(Refused::new(
            ErrorCode::UNSUPPORTED,
            format!(
                "agent {} does not offer {} sessions (it runs without {flag})",
                open.agent, open.kind
            ),
        ));
    }
    Ok(able)
}

/// The live instances of `agent`, or why there are none.
pub(crate) fn instances(
    shared: &Shared,
    agent: &proto::AgentName,
) -> Result<Vec<crate::registry::Instance>, Refused> {
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

/// Opens a stream to the first instance that takes it and sends
/// `Forwarded` with the client's early bytes behind it.
async fn dial_agent(
    instances: Vec<crate::registry::Instance>,
    peer: &PeerCert,
    open: &Open,
    early: Bytes,
    shared: &Shared,
) -> Result<(quinn::SendStream, quinn::RecvStream), Refused> {
    let forwarded = Frame::from(Forwarded {
        caller: peer.identity.clone(),
        open: open.clone(),
    });
    let mut head = BytesMut::with_capacity(forwarded.encoded_len() + early.len());
    forwarded.encode(&mut head);
    head.extend_from_slice(&early);
    let head = head.freeze();
    for instance in instances {
        let opened =
            tokio::time::timeout(shared.limits.answer_timeout, instance.conn.open_bi()).await;
        let Ok(Ok((mut send, recv))) = opened else {
            tracing::debug!(
                instance = instance.id,
                "agent instance unusable, trying the next"
            );
            continue;
        };
        if send.write_chunk(head.clone()).await.is_ok() {
            return Ok((send, recv));
        }
    }
    Err(Refused::new(
        ErrorCode::AGENT_OFFLINE,
        format!("agent {} is offline (its connection failed)", open.agent),
    ))
}

/// Answers `List`: one `AgentInfo` per registered agent the client has a
/// grant for, listing only the targets and session kinds it may open.
async fn list(shared: &Shared, peer: &PeerCert, mut send: quinn::SendStream) {
    let policy = shared.policy();
    let client = &peer.identity.name;
    for pool in shared.registry.snapshot() {
        let agent = pool.agent;
        if !policy.mentions(client, &agent) {
            continue;
        }
        let info = AgentInfo {
            targets: policy
                .reachable(client, &agent, &pool.targets)
                .into_iter()
                .cloned()
                .collect(),
            sessions: policy
                .sessions(client, &agent)
                .intersection(pool.capabilities),
            agent,
            instances: u16::try_from(pool.instances).unwrap_or(u16::MAX),
        };
        if write_frame(&mut send, info).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}
