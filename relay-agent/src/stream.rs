//! Serving one stream: `Forwarded` (from the relay) → checks → dial →
//! `Accepted` → splice; for `Socks`, resolve → rule check → dial
//! ([`crate::socks`]) → `Accepted` → splice; or, for `Shell` and `Exec` (only with
//! `--allow-shell`), a session ([`crate::shell`], [`crate::exec`]); or, for
//! the built-in `bench` target, [`crate::bench::serve`]. Nothing here assumes the relay is the peer beyond
//! the one rule that only a peer with the `relay` role may name a caller
//! (DESIGN "end-to-end mode": keep the seam).

use std::sync::Arc;
use std::time::Duration;

use proto::{Accepted, ErrorCode, Frame, Identity, Refused, Role, StreamKind};
use relay_net::cert::PeerCert;
use relay_net::framed::{refuse, write_frame, FrameReader};
use relay_net::splice::{splice, tcp_halves};

use crate::allowlist::{Allowlist, Target};
use crate::sessions::Sessions;
use crate::socks::Socks;

/// What every stream handler needs.
#[derive(Debug)]
pub struct StreamContext {
    /// The agent's own identity, for messages.
    pub me: Identity,
    /// Exposed targets.
    pub allowlist: Allowlist,
    /// Deadline for dialling a target.
    pub dial_timeout: Duration,
    /// Deadline for the first frame of a stream.
    pub first_frame_timeout: Duration,
    /// Counters.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Permits for target dials in flight.
    pub dials: Arc<tokio::sync::Semaphore>,
    /// Shell and command sessions.
    pub sessions: Sessions,
    /// SOCKS rules (off when empty).
    pub socks: Socks,
    /// What the relay lets clients open on direct paths.
    pub grants: crate::direct::Grants,
}

impl StreamContext {
    /// A permit for one target dial, or the refusal when too many are in flight.
    fn dial_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Refused> {
        self.dials.clone().try_acquire_owned().map_err(|_| {
            Refused::new(
                ErrorCode::LIMIT_EXCEEDED,
                format!(
                    "agent {} has too many dials in flight; try again",
                    self.me.name
                ),
            )
        })
    }

    /// Refuses a stream, counting the refusal.
    async fn refuse(
        &self,
        send: &mut quinn::SendStream,
        recv: &mut quinn::RecvStream,
        refused: Refused,
    ) {
        self.metrics.refused(refused.code);
        refuse(send, recv, refused).await;
    }
}

/// Serves one bidirectional stream opened by `peer`.
pub async fn serve(
    ctx: Arc<StreamContext>,
    peer: Arc<PeerCert>,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let mut reader = FrameReader::new(recv);
    let frame = match reader.expect(ctx.first_frame_timeout).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(err = %e, "bad stream header");
            let _ = send.reset(e.code().0.into());
            let _ = reader.recv.stop(e.code().0.into());
            return;
        }
    };
    let (caller, open) = match frame {
        // Only the relay may speak for someone else: identity comes from the
        // TLS session, and a caller field is trusted only from a relay.
        Frame::Forwarded(f) if peer.identity.role == Role::Relay => (f.caller, f.open),
        Frame::Forwarded(_) => {
            let r = Refused::new(ErrorCode::UNAUTHORIZED, "only the relay may name a caller");
            return ctx.refuse(&mut send, &mut reader.recv, r).await;
        }
        // A grant for a direct path, held while the relay keeps the stream.
        Frame::Grant(g) if peer.identity.role == Role::Relay => {
            return crate::direct::hold(&ctx, g, send, reader).await;
        }
        // On a direct path the caller is the peer itself, and the relay's
        // grant says what it may open.
        Frame::Open(open) if peer.identity.role == Role::Client => {
            if !ctx.grants.allows(&peer.identity, &open) {
                let r = Refused::new(
                    ErrorCode::UNAUTHORIZED,
                    format!(
                        "the relay's grant for {} does not cover {} {}",
                        peer.identity, open.kind, open.target
                    ),
                );
                return ctx.refuse(&mut send, &mut reader.recv, r).await;
            }
            // The relay cannot see this stream: the agent's log is its record.
            tracing::info!(caller = %peer.identity, target = %open.target, kind = %open.kind, "direct stream");
            (peer.identity.clone(), open)
        }
        other => {
            let r = Refused::new(
                ErrorCode::PROTOCOL_VIOLATION,
                format!(
                    "a stream must start with Forwarded, not {}",
                    other.frame_type()
                ),
            );
            return ctx.refuse(&mut send, &mut reader.recv, r).await;
        }
    };
    let span =
        tracing::debug_span!("stream", caller = %caller, target = %open.target, kind = %open.kind);
    let _enter = span.enter();
    if let StreamKind::Socks { dest } = &open.kind {
        return socks(&ctx, &caller, dest, send, reader).await;
    }
    if !matches!(open.kind, StreamKind::Tcp) {
        if !ctx.sessions.allow {
            let r = Refused::new(
                ErrorCode::UNSUPPORTED,
                format!(
                    "agent {} does not offer {} sessions (it runs without --allow-shell)",
                    ctx.me.name, open.kind
                ),
            );
            return ctx.refuse(&mut send, &mut reader.recv, r).await;
        }
        return session(&ctx, &caller, &open.kind, send, reader).await;
    }
    let Some(target) = ctx.allowlist.get(&open.target) else {
        tracing::warn!(caller = %caller, target = %open.target, "open for a target not exposed");
        let r = Refused::new(
            ErrorCode::TARGET_NOT_EXPOSED,
            format!(
                "agent {} does not expose target {}",
                ctx.me.name, open.target
            ),
        );
        return ctx.refuse(&mut send, &mut reader.recv, r).await;
    };
    let addr = match target {
        Target::Tcp { addr } => addr,
        Target::Bench => {
            // The built-in benchmark: the stream is served here instead of
            // being spliced to a dialled connection.
            if write_frame(&mut send, Accepted).await.is_err() {
                return;
            }
            let (mut recv, early) = reader.into_parts();
            match crate::bench::serve(&mut recv, &mut send, early, ctx.first_frame_timeout).await {
                Ok(s) => {
                    tracing::debug!(mode = ?s.mode, up = s.read, down = s.written, "bench stream closed")
                }
                Err(f) => tracing::debug!(err = %f, "bench stream failed"),
            }
            return;
        }
    };
    let dialing = match ctx.dial_permit() {
        Ok(permit) => permit,
        Err(r) => return ctx.refuse(&mut send, &mut reader.recv, r).await,
    };
    let dialed = crate::dial::dial(&open.target, addr, ctx.dial_timeout).await;
    drop(dialing);
    let tcp = match dialed {
        Ok(tcp) => tcp,
        Err(r) => {
            tracing::info!(code = %r.code, reason = %r.message, "dial failed");
            return ctx.refuse(&mut send, &mut reader.recv, r).await;
        }
    };
    accept_and_splice(&ctx, &open.kind, send, reader, tcp).await;
}

/// A `Socks` stream: resolve the destination here, check every address
/// against the rules and the deny list, dial only what passed.
async fn socks(
    ctx: &StreamContext,
    caller: &Identity,
    dest: &proto::Destination,
    mut send: quinn::SendStream,
    mut reader: FrameReader,
) {
    if !ctx.socks.enabled() {
        let r = Refused::new(
            ErrorCode::UNSUPPORTED,
            format!(
                "agent {} does not offer SOCKS (it runs without --allow-socks)",
                ctx.me.name
            ),
        );
        return ctx.refuse(&mut send, &mut reader.recv, r).await;
    }
    let dialing = match ctx.dial_permit() {
        Ok(permit) => permit,
        Err(r) => return ctx.refuse(&mut send, &mut reader.recv, r).await,
    };
    let dialed = match ctx
        .socks
        .resolve(ctx.me.name.as_str(), dest, ctx.dial_timeout)
        .await
    {
        Ok(addrs) => crate::socks::dial(dest, &addrs, ctx.dial_timeout).await,
        Err(r) => Err(r),
    };
    drop(dialing);
    let tcp = match dialed {
        Ok(tcp) => tcp,
        Err(r) => {
            if r.code == ErrorCode::TARGET_NOT_EXPOSED {
                tracing::warn!(%caller, %dest, reason = %r.message, "socks destination refused");
            } else {
                tracing::info!(%caller, %dest, code = %r.code, reason = %r.message, "socks dial failed");
            }
            return ctx.refuse(&mut send, &mut reader.recv, r).await;
        }
    };
    tracing::debug!(%caller, %dest, peer = ?tcp.peer_addr().ok(), "socks connected");
    accept_and_splice(
        ctx,
        &StreamKind::Socks { dest: dest.clone() },
        send,
        reader,
        tcp,
    )
    .await;
}

/// Answers `Accepted` and splices the stream with a dialled connection.
async fn accept_and_splice(
    ctx: &StreamContext,
    kind: &StreamKind,
    mut send: quinn::SendStream,
    reader: FrameReader,
    tcp: tokio::net::TcpStream,
) {
    if write_frame(&mut send, Accepted).await.is_err() {
        return;
    }
    let m = &ctx.metrics;
    m.streams
        .get_or_create(&crate::metrics::KindLabel {
            kind: kind.as_str().to_owned(),
        })
        .inc();
    m.streams_open.inc();
    let _open = scopeguard(&m.streams_open);
    let (mut recv, early) = reader.into_parts();
    let (mut tcp_read, mut tcp_write) = tcp_halves(tcp);
    let outcome = splice(
        &mut recv,
        &mut send,
        &mut tcp_read,
        &mut tcp_write,
        early,
        bytes::Bytes::new(),
    )
    .await;
    match outcome.failure() {
        None => tracing::debug!(
            up = outcome.forward.bytes,
            down = outcome.backward.bytes,
            "stream closed"
        ),
        Some(f) => {
            tracing::debug!(up = outcome.forward.bytes, down = outcome.backward.bytes, err = %f, "stream failed")
        }
    }
}

/// Decrements `gauge` when dropped.
fn scopeguard(gauge: &prometheus_client::metrics::gauge::Gauge) -> impl Drop + '_ {
    struct Dec<'a>(&'a prometheus_client::metrics::gauge::Gauge);
    impl Drop for Dec<'_> {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    Dec(gauge)
}

/// Runs a `Shell` or `Exec` session and logs how it ended: the agent's
/// half of the audit (the relay records who, when and bytes; only the
/// agent sees the exit status).
async fn session(
    ctx: &StreamContext,
    caller: &Identity,
    kind: &StreamKind,
    send: quinn::SendStream,
    reader: FrameReader,
) {
    let started = std::time::Instant::now();
    let command = match kind.command_line() {
        c if c.is_empty() => "(login shell)".to_owned(),
        c => c,
    };
    tracing::info!(%caller, kind = %kind, %command, "session started");
    let ended = match kind {
        StreamKind::Exec { argv } => {
            crate::exec::run(&ctx.sessions, caller, argv, send, reader).await
        }
        StreamKind::Shell {
            term,
            cols,
            rows,
            argv,
        } => {
            let req = crate::shell::Request {
                term,
                cols: *cols,
                rows: *rows,
                argv,
                agent: ctx.me.name.as_str(),
            };
            crate::shell::run(&ctx.sessions, caller, req, send, reader).await
        }
        // Checked by the caller.
        StreamKind::Tcp | StreamKind::Socks { .. } => return,
    };
    let exit = ended
        .exit
        .map_or_else(|| "none".to_owned(), |e| e.to_string());
    tracing::info!(
        %caller,
        kind = %kind,
        %command,
        %exit,
        bytes_in = ended.bytes_in,
        bytes_out = ended.bytes_out.unwrap_or(0),
        client_gone = ended.client_gone,
        duration_ms = started.elapsed().as_millis() as u64,
        "session ended"
    );
}
