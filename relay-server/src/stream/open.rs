//! `Open`: authorize, audit, send `Forwarded { caller, open }` with the
//! client's early bytes to an instance of the agent, pass the agent's answer
//! back, and splice an accepted stream until either side ends it.
//!
//! ```text
//! authorize::open ─▶ audit "open" ─▶ agent_stream ─▶ answer ─▶ Accepted: splice, audit "close"
//!                                                          └▶ Refused: audit "refused", refuse
//! ```

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use proto::{ErrorCode, Forwarded, Frame, Open, Refused};
use relay_net::answer::{read_answer, AnswerError};
use relay_net::cert::PeerCert;
use relay_net::framed::{refuse, write_frame, FrameError, FrameReader};
use relay_net::splice::splice;

use crate::audit::{AuditEvent, Event};
use crate::registry::Instance;
use crate::Shared;

/// Serves one `Open` until the stream ends.
pub(super) async fn serve(
    shared: &Shared,
    peer: &PeerCert,
    remote: SocketAddr,
    mut client_send: quinn::SendStream,
    client: FrameReader,
    open: Open,
) {
    let started = Instant::now();
    let event = AuditEvent::of_peer(Event::Open, peer, Some(remote)).with_open(&open);
    let (mut client_recv, early) = client.into_parts();
    // Bytes that came right behind `Open` go to the agent with it, not
    // through the splice: they count toward the bytes up all the same.
    let early_bytes = early.len() as u64;
    let agent = match authorized(shared, peer, &open, &event).await {
        Ok(instances) => agent_stream(instances, peer, &open, early, shared).await,
        Err(r) => Err(r),
    };
    let answered = match agent {
        Ok((agent_send, agent_recv)) => answer(shared, &open, agent_send, agent_recv).await,
        Err(r) => Err(r),
    };
    let (accepted, mut agent_send, agent) = match answered {
        Ok(answered) => answered,
        Err(r) => {
            shared.metrics.refused(r.code);
            tracing::debug!(code = %r.code, reason = %r.message, "open refused");
            shared.audit.record_or_log(event.refused(&r)).await;
            return refuse(&mut client_send, &mut client_recv, r).await;
        }
    };
    let kind = crate::metrics::KindLabel {
        kind: open.kind.as_str().to_owned(),
    };
    shared.metrics.streams.get_or_create(&kind).inc();
    let _open =
        relay_net::admin::GaugeGuard::new(&shared.metrics.streams_open.get_or_create(&kind));
    let mut event = AuditEvent {
        event: Event::Close,
        ..event
    };
    if write_frame(&mut client_send, accepted).await.is_err() {
        let _ = agent_send.reset(ErrorCode::STREAM_ABORTED.0.into());
        return shared
            .audit
            .record_or_log(event.because(None, "client went away before the answer"))
            .await;
    }
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
    let down = outcome.backward.bytes;
    let bytes = &shared.metrics.bytes;
    bytes
        .get_or_create(&crate::metrics::DirectionLabel { direction: "up" })
        .inc_by(up);
    bytes
        .get_or_create(&crate::metrics::DirectionLabel { direction: "down" })
        .inc_by(down);
    tracing::debug!(up, down, "stream closed");
    event.bytes_up = Some(up);
    event.bytes_down = Some(down);
    event.duration_ms = Some(started.elapsed().as_millis() as u64);
    if let Some(f) = outcome.failure() {
        event = event.because(Some(f.code), f.reason.clone());
    }
    shared.audit.record_or_log(event).await;
}

/// An open the relay makes itself (the web page's): authorize, the `open`
/// audit line, the agent's stream, its answer; the same steps as a
/// client's `Open`, with nothing sent behind it.
///
/// # Errors
/// The refusal (not yet audited: the caller records it).
pub(crate) async fn to_agent(
    shared: &Shared,
    peer: &PeerCert,
    open: &Open,
    event: &AuditEvent,
) -> Result<(proto::Accepted, quinn::SendStream, FrameReader), Refused> {
    let instances = authorized(shared, peer, open, event).await?;
    let (send, recv) = agent_stream(instances, peer, open, Bytes::new(), shared).await?;
    answer(shared, open, send, recv).await
}

/// [`crate::authorize::open`], then the `open` audit line: an open that
/// cannot be recorded is refused (fail closed).
async fn authorized(
    shared: &Shared,
    peer: &PeerCert,
    open: &Open,
    event: &AuditEvent,
) -> Result<Vec<Instance>, Refused> {
    let instances = shared
        .when_agents_are_back(|| crate::authorize::open(shared, peer, open))
        .await?;
    shared.audit.record(event.clone()).await.map_err(|e| {
        Refused::new(
            ErrorCode::AUDIT_UNAVAILABLE,
            format!("{e}; refusing new streams"),
        )
    })?;
    Ok(instances)
}

/// The agent's answer: `Accepted` with the agent's streams, or the refusal
/// to pass on (the agent's own, or ours when it failed to answer).
async fn answer(
    shared: &Shared,
    open: &Open,
    mut agent_send: quinn::SendStream,
    agent_recv: quinn::RecvStream,
) -> Result<(proto::Accepted, quinn::SendStream, FrameReader), Refused> {
    let mut agent = FrameReader::new(agent_recv);
    let within = Some(shared.limits.answer_timeout);
    let (reset, refused) = match read_answer(&mut agent, within).await {
        Ok(accepted) => return Ok((accepted, agent_send, agent)),
        Err(AnswerError::Refused(r)) => (None, r),
        Err(AnswerError::Unexpected(frame)) => (
            Some(ErrorCode::PROTOCOL_VIOLATION),
            Refused::new(
                ErrorCode::INTERNAL,
                format!("agent {} answered with {frame:?}", open.agent),
            ),
        ),
        Err(AnswerError::Read(FrameError::Timeout(t))) => (
            Some(ErrorCode::TARGET_TIMEOUT),
            Refused::new(
                ErrorCode::TARGET_TIMEOUT,
                format!("agent {} did not answer within {t:?}", open.agent),
            ),
        ),
        Err(e) => (
            Some(ErrorCode::STREAM_ABORTED),
            Refused::new(
                ErrorCode::AGENT_OFFLINE,
                format!("agent {} failed: {e}", open.agent),
            ),
        ),
    };
    match reset {
        Some(code) => {
            let _ = agent_send.reset(code.0.into());
        }
        None => {
            let _ = agent_send.finish();
        }
    }
    Err(refused)
}

/// Opens a stream to the first instance that takes it and sends
/// `Forwarded` with the client's early bytes behind it.
async fn agent_stream(
    instances: Vec<Instance>,
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
