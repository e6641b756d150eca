//! A client's connection: accept its streams, hold it to its open rate,
//! and hand each stream to [`crate::stream`]. The stream limit grows with
//! use; a client that keeps pushing past its rate is dropped.

use std::time::Instant;

use proto::{ErrorCode, Refused};
use relay_net::cert::PeerCert;
use relay_net::endpoint::StreamAllowance;
use relay_net::framed::refuse;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::audit::{AuditEvent, Event};
use crate::Shared;

/// Serves a client's connection until it ends or the relay shuts down.
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
    let mut allowance = StreamAllowance::new(INITIAL_STREAMS, shared.limits.client_streams);
    allowance.announce(conn);
    let mut over_rate = OverRate::default();
    let mut pongs = Pongs::default();
    // Set once the relay shuts down: until then, streams are served as usual.
    let mut draining: Option<Draining> = None;
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
                        shared.audit.record_or_log(
                            AuditEvent::of_peer(Event::Refused, peer, Some(shared.remote(conn.remote_address())))
                                .because(Some(ErrorCode::LIMIT_EXCEEDED), format!("{reason}; connection closed")),
                        ).await;
                        conn.close(ErrorCode::LIMIT_EXCEEDED.0.into(), reason.as_bytes());
                        return;
                    }
                    shared.metrics.refused(ErrorCode::LIMIT_EXCEEDED);
                    let message = format!(
                        "client {} exceeded its open rate ({} per second); slow down",
                        peer.identity.name, shared.limits.open_rate
                    );
                    let refused = Refused::new(ErrorCode::LIMIT_EXCEEDED, message);
                    shared.audit.record_or_log(
                        AuditEvent::of_peer(Event::Refused, peer, Some(shared.remote(conn.remote_address()))).refused(&refused),
                    ).await;
                    streams.spawn(async move { refuse(&mut send, &mut recv, refused).await });
                }
                Ok((mut send, mut recv)) => {
                    let Some(held) = shared.client_streams.try_hold(&peer.identity.name) else {
                        let refused = over_streams(shared, peer, conn).await;
                        streams.spawn(async move { refuse(&mut send, &mut recv, refused).await });
                        continue;
                    };
                    // Filled in from the first frame, so every line of the stream
                    // says what it is for (stream::serve).
                    let span = tracing::debug_span!("stream", id = send.id().index(), agent = tracing::field::Empty, target = tracing::field::Empty, kind = tracing::field::Empty);
                    let stream = crate::stream::serve(shared.clone(), peer.clone(), conn.clone(), send, recv);
                    streams.spawn(async move {
                        // The identity's slot is given back when the stream ends.
                        let _held = held;
                        stream.await;
                    }.instrument(span));
                    allowance.used(conn, streams.len());
                }
                Err(e) => {
                    tracing::info!(reason = %relay_net::dial::describe_peer(&e, proto::Role::Client), "client disconnected");
                    return;
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            datagram = conn.read_datagram(), if pongs.open => match datagram {
                Ok(bytes) => pongs.answer(conn, &bytes),
                Err(_) => pongs.open = false,
            },
            () = shutdown.cancelled(), if draining.is_none() => {
                draining = Some(Draining::new(shared.limits.shutdown_grace));
            }
            () = tokio::time::sleep_until(draining.as_ref().map_or_else(tokio::time::Instant::now, |d| d.next_notice)), if draining.is_some() => {
                let Some(d) = draining.as_mut() else { continue };
                if d.notice(conn) {
                    break;
                }
            }
        }
    }
}

/// A client's connection while the relay drains: it gets `GoAway` in a
/// datagram, repeated (datagrams may be lost) until it leaves; streams it
/// still opens are served, since it may not have heard yet. The grace
/// period ends it.
struct Draining {
    next_notice: tokio::time::Instant,
    deadline: tokio::time::Instant,
}

/// How often a draining relay repeats its `GoAway` to a client.
const NOTICE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Draining {
    fn new(grace: std::time::Duration) -> Draining {
        let now = tokio::time::Instant::now();
        Draining {
            next_notice: now,
            deadline: now + grace,
        }
    }

    /// Sends `GoAway`; true once the grace period is over.
    fn notice(&mut self, conn: &quinn::Connection) -> bool {
        let now = tokio::time::Instant::now();
        if now >= self.deadline {
            return true;
        }
        let away = proto::Datagram::GoAway {
            reconnect_in_ms: crate::control::RECONNECT_IN_MS,
        };
        // A client that predates datagrams learns when its streams are refused.
        let _ = conn.send_datagram(bytes::Bytes::copy_from_slice(&away.encode()));
        self.next_notice = (now + NOTICE_EVERY).min(self.deadline);
        false
    }
}

/// Answers a client's liveness probes (`Ping` → `Pong`), at most one per
/// [`PONG_EVERY`]: a probe is rare, a flood of them earns nothing.
struct Pongs {
    open: bool,
    last: Option<Instant>,
}

impl Default for Pongs {
    fn default() -> Pongs {
        Pongs {
            open: true,
            last: None,
        }
    }
}

/// The least time between two answered probes of one connection.
const PONG_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

impl Pongs {
    fn answer(&mut self, conn: &quinn::Connection, bytes: &[u8]) {
        let Ok(proto::Datagram::Ping(nonce)) = proto::Datagram::decode(bytes) else {
            return;
        };
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < PONG_EVERY) {
            return;
        }
        self.last = Some(now);
        let pong = proto::Datagram::Pong(nonce).encode();
        let _ = conn.send_datagram(bytes::Bytes::copy_from_slice(&pong));
    }
}

/// The refusal of a stream past the identity's cap on open streams,
/// counted and audited.
async fn over_streams(
    shared: &std::sync::Arc<Shared>,
    peer: &PeerCert,
    conn: &quinn::Connection,
) -> Refused {
    shared.metrics.limit_hit("client_streams");
    shared.metrics.refused(ErrorCode::LIMIT_EXCEEDED);
    let message = format!(
        "client {} already has {} streams open through this relay, its limit \
         (relay-server run --max-streams-per-client); close some and try again",
        peer.identity.name,
        shared.client_streams.cap()
    );
    let refused = Refused::new(ErrorCode::LIMIT_EXCEEDED, message);
    shared
        .audit
        .record_or_log(
            AuditEvent::of_peer(
                Event::Refused,
                peer,
                Some(shared.remote(conn.remote_address())),
            )
            .refused(&refused),
        )
        .await;
    refused
}

/// Streams a client may open at first; raised as it uses them
/// ([`StreamAllowance`]: at 256 they were 21 KiB of every idle client's
/// ~55 KiB on the relay, issue #19).
const INITIAL_STREAMS: u32 = 16;

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
