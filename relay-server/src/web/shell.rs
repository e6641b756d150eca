//! The page's shells: opening one on an agent under the signed-in person's
//! name (the same authorize, audit and agent stream as a client's `Open`,
//! the audit saying `via: browser`), and carrying a page's WebSocket to it.
//!
//! WebSocket messages: binary is terminal bytes (output down, keys up);
//! text is JSON with a `type`: up `resize`; down `opened` (with the
//! terminal's id and the output offset it starts at), `exit`, `refused`,
//! `ended`, `detached` (another tab took the terminal).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use hyper_tungstenite::tungstenite::Message;
use hyper_tungstenite::HyperWebsocketStream;
use proto::{Channel, ErrorCode, Frame, Open, Refused, StreamKind};
use relay_net::framed::{send_data, write_frame};
use serde_json::json;
use tokio::sync::mpsc;

use super::session::WebSession;
use super::terminal::{Ended, Terminal};
use super::Web;
use crate::audit::{AuditEvent, Event};
use crate::Shared;

/// Terminals one sign-in may hold at once.
const TERMINALS_PER_SESSION: usize = 8;

/// Terminals the relay holds at once: each keeps up to
/// [`super::terminal::BUFFER`] of output, so this bounds their memory
/// (256 MiB).
const TERMINALS: usize = 256;

/// Opens a shell on `agent` for `session`: authorize, audit, the agent's
/// stream, its answer; then runs it in its own task until it ends.
///
/// # Errors
/// The refusal to show (policy, agent, audit).
pub(crate) async fn open(
    shared: &Arc<Shared>,
    web: &Arc<Web>,
    session: &Arc<WebSession>,
    agent: proto::AgentName,
    (cols, rows): (u16, u16),
    remote: SocketAddr,
) -> Result<Arc<Terminal>, Refused> {
    if web.terminals_of(session) >= TERMINALS_PER_SESSION {
        return Err(Refused::new(
            ErrorCode::LIMIT_EXCEEDED,
            format!("you have {TERMINALS_PER_SESSION} shells open already: end one first"),
        ));
    }
    if web.terminal_count() >= TERMINALS {
        shared.metrics.limit_hit("web_shells");
        return Err(Refused::new(
            ErrorCode::LIMIT_EXCEEDED,
            format!("the relay holds {TERMINALS} browser shells already: try again later"),
        ));
    }
    let open = Open {
        agent: agent.clone(),
        target: proto::TargetName::try_from("shell")
            .map_err(|e| Refused::new(ErrorCode::INTERNAL, e.to_string()))?,
        kind: StreamKind::Shell {
            term: "xterm-256color".into(),
            cols: cols.clamp(1, 1000),
            rows: rows.clamp(1, 1000),
            argv: Vec::new(),
        },
    };
    let peer = &session.peer;
    let mut event = AuditEvent::of_peer(Event::Open, peer, Some(remote)).with_open(&open);
    event.via = Some("browser");
    let (_accepted, send, reader) =
        match crate::stream::open::to_agent(shared, peer, &open, &event).await {
            Ok(answered) => answered,
            Err(r) => {
                shared.metrics.refused(r.code);
                shared.audit.record_or_log(event.refused(&r)).await;
                return Err(r);
            }
        };
    let (input, frames) = mpsc::channel(64);
    let terminal = Arc::new(Terminal::new(
        super::random_token(),
        agent,
        session.clone(),
        input,
    ));
    web.add_terminal(terminal.clone());
    let started = Instant::now();
    let writer = tokio::spawn(write_agent(send, frames, terminal.hang_up.clone()));
    let (shared, web, running) = (shared.clone(), web.clone(), terminal.clone());
    tokio::spawn(async move {
        let ended = tokio::select! {
            (_, ended) = running.read_agent(reader) => ended,
            why = super::watch::until_over(&shared, &web, &running) => running.finish(Ended::Other(why)),
        };
        running.hang_up.cancel();
        let up = writer.await.unwrap_or_default();
        web.remove_terminal(&running.id);
        let mut event = AuditEvent {
            event: Event::Close,
            ..event
        };
        event.bytes_up = Some(up);
        event.duration_ms = Some(started.elapsed().as_millis() as u64);
        event.reason = Some(match &ended {
            Ended::Exit(exit) => exit.to_string(),
            Ended::Other(why) => why.clone(),
        });
        shared.audit.record_or_log(event).await;
    });
    Ok(terminal)
}

/// Writes the page's frames to the agent until the terminal ends; resets
/// the stream when it is hung up (the agent then hangs the program up).
/// Returns the key bytes sent.
async fn write_agent(
    mut send: quinn::SendStream,
    mut frames: mpsc::Receiver<Frame>,
    hang_up: tokio_util::sync::CancellationToken,
) -> u64 {
    let mut up = 0u64;
    loop {
        let frame = tokio::select! {
            frame = frames.recv() => frame,
            () = hang_up.cancelled() => None,
        };
        let Some(frame) = frame else {
            let _ = send.reset(ErrorCode::STREAM_ABORTED.0.into());
            return up;
        };
        if let Frame::Data(d) = &frame {
            up += d.bytes.len() as u64;
        }
        if write_frame(&mut send, frame).await.is_err() {
            return up;
        }
    }
}

/// Carries one page's WebSocket to `terminal`, from output offset `from`,
/// until the page leaves, another takes its place, or the terminal ends.
pub(crate) async fn attach(ws: HyperWebsocketStream, terminal: Arc<Terminal>, from: u64) {
    let (attachment, mut at) = terminal.attach(from);
    let (mut down, mut up) = ws.split();
    let opened = json!({"type": "opened", "agent": terminal.agent.as_str(), "session": terminal.id, "from": at});
    if down.send(Message::text(opened.to_string())).await.is_err() {
        return terminal.detach(&attachment);
    }
    let mut told: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            output = terminal.next_output(at) => match output {
                Ok(bytes) => {
                    at += bytes.len() as u64;
                    if down.send(Message::binary(bytes)).await.is_err() {
                        break;
                    }
                }
                Err(ended) => {
                    let _ = down.send(Message::text(end_message(&ended).to_string())).await;
                    let _ = down.close().await;
                    break;
                }
            },
            message = up.next() => match message {
                Some(Ok(Message::Binary(keys))) => {
                    if !send_data(&terminal.input, Channel::Stdin, keys).await {
                        break;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    if let Some(resize) = resize_of(&text) {
                        if terminal.input.send(resize.into()).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            () = terminal.changed() => {
                let now = terminal.watchers();
                if now != told {
                    let notice = json!({"type": "watchers", "watchers": now});
                    if down.send(Message::text(notice.to_string())).await.is_err() {
                        break;
                    }
                    told = now;
                }
            }
            () = attachment.gone.cancelled() => {
                let moved = json!({"type": "detached", "message": "this shell was opened in another window"});
                let _ = down.send(Message::text(moved.to_string())).await;
                let _ = down.close().await;
                break;
            }
        }
    }
    terminal.detach(&attachment);
}

/// Carries another person's shell to `watcher`'s page, read-only: its
/// output from the start of the buffer, nothing back. Audited (`watch`,
/// then `close`), fail-closed; the shell's own page is told who watches.
pub(crate) async fn watch(
    shared: &Shared,
    mut ws: HyperWebsocketStream,
    terminal: Arc<Terminal>,
    watcher: &WebSession,
    remote: SocketAddr,
) {
    let owner = terminal.session.peer.identity.to_string();
    let mut event = AuditEvent::of_peer(Event::Watch, &watcher.peer, Some(remote));
    event.via = Some("browser");
    event.agent = Some(terminal.agent.to_string());
    event.kind = Some("shell");
    event.watched = Some(format!("{owner} {}", terminal.id));
    if let Err(e) = shared.audit.record(event.clone()).await {
        let refused = json!({"type": "refused", "message": format!("the relay cannot audit, so no one may watch: {e}")});
        let _ = ws.send(Message::text(refused.to_string())).await;
        let _ = ws.close(None).await;
        return;
    }
    let started = Instant::now();
    let who = watcher.peer.identity.to_string();
    terminal.watched_by(&who);
    let (mut down, mut up) = ws.split();
    let mut at = 0u64;
    let opened = json!({"type": "opened", "agent": terminal.agent.as_str(), "session": terminal.id, "from": 0, "watching": owner});
    let mut sent = down.send(Message::text(opened.to_string())).await.is_ok();
    // Polled across the loop, so no reload of the lists goes unseen.
    let over = super::watch::until_signed_out(shared, watcher);
    tokio::pin!(over);
    while sent {
        tokio::select! {
            output = terminal.watched_output(at) => match output {
                Ok((from, bytes)) => {
                    at = from + bytes.len() as u64;
                    sent = down.send(Message::binary(bytes)).await.is_ok();
                }
                Err(ended) => {
                    let _ = down.send(Message::text(end_message(&ended).to_string())).await;
                    let _ = down.close().await;
                    break;
                }
            },
            message = up.next() => {
                // Read-only: keys are dropped; only the end counts.
                sent = matches!(message, Some(Ok(_)));
            }
            why = &mut over => {
                let ended = json!({"type": "ended", "message": why});
                let _ = down.send(Message::text(ended.to_string())).await;
                let _ = down.close().await;
                break;
            }
        }
    }
    terminal.unwatched_by(&who);
    let mut event = AuditEvent {
        event: Event::Close,
        ..event
    };
    event.duration_ms = Some(started.elapsed().as_millis() as u64);
    shared.audit.record_or_log(event).await;
}

/// The page's message for a terminal's end.
pub(crate) fn end_message(ended: &Ended) -> serde_json::Value {
    match ended {
        Ended::Exit(exit) => json!({
            "type": "exit",
            "status": exit.shell_status(),
            "message": match exit {
                proto::Exit::Code(code) => format!("exited with status {code}"),
                proto::Exit::Signal(signal) => format!("killed by signal {signal}"),
            },
        }),
        Ended::Other(why) => json!({"type": "ended", "message": why}),
    }
}

/// A `{"type":"resize","cols":C,"rows":R}` message, if that is what `text` is.
fn resize_of(text: &str) -> Option<proto::Resize> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    if value.get("type")?.as_str()? != "resize" {
        return None;
    }
    let dim = |key: &str| {
        value
            .get(key)?
            .as_u64()
            .and_then(|n| u16::try_from(n.clamp(1, 1000)).ok())
    };
    Some(proto::Resize {
        cols: dim("cols")?,
        rows: dim("rows")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resize_message_is_read_and_anything_else_ignored() {
        let r = resize_of(r#"{"type":"resize","cols":120,"rows":40}"#);
        assert_eq!(
            r,
            Some(proto::Resize {
                cols: 120,
                rows: 40
            })
        );
        let huge = resize_of(r#"{"type":"resize","cols":99999,"rows":0}"#);
        assert_eq!(
            huge,
            Some(proto::Resize {
                cols: 1000,
                rows: 1
            })
        );
        assert_eq!(resize_of(r#"{"type":"other"}"#), None);
        assert_eq!(resize_of("not json"), None);
        assert_eq!(resize_of(r#"{"type":"resize","cols":"x","rows":2}"#), None);
    }

    #[test]
    fn an_exit_reads_as_a_shell_reports_it() {
        let m = end_message(&Ended::Exit(proto::Exit::Code(3)));
        assert_eq!(m["status"], 3);
        assert_eq!(m["message"], "exited with status 3");
        let m = end_message(&Ended::Exit(proto::Exit::Signal(9)));
        assert_eq!(m["status"], 137);
    }
}
