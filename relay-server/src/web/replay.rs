//! Recordings in the page (policy `recordings = true`): the agent's list,
//! and a recording played from any point without sending it whole.
//!
//! The agent streams the file (a `Recording` stream); the relay reads it
//! as it comes, feeding the output before the asked point into asciinema's
//! own terminal emulator (`avt`), and answers a short asciicast: the screen
//! at that point as its first frame, then the events of the next
//! [`WINDOW`] seconds (at most [`WINDOW_BYTES`]). The page plays it and asks
//! for the next window when it ends, or for any other point to seek. The
//! rest of the file is not read: the relay holds one line and one screen
//! at a time, the browser one window, whatever the recording's size.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use proto::{AgentName, Open, Refused, StreamKind, TargetName};
use serde_json::{json, Value};

use super::session::WebSession;
use crate::audit::{AuditEvent, Event};
use crate::Shared;

/// Recording time one answer covers, seconds.
pub(crate) const WINDOW: f64 = 60.0;
/// Event text one answer carries at most.
pub(crate) const WINDOW_BYTES: usize = 2 << 20;
/// The longest line (event) of a recording read.
const MAX_LINE: usize = 4 << 20;
/// The longest list the agent may send.
const MAX_LIST: usize = 4 << 20;

/// The agent's recordings, newest first.
///
/// # Errors
/// The refusal, or why the list could not be read.
pub(crate) async fn list(
    shared: &Shared,
    session: &WebSession,
    agent: AgentName,
    remote: SocketAddr,
) -> Result<Vec<Value>, String> {
    let mut stream = RecordingStream::open(shared, session, agent, String::new(), remote).await?;
    let mut all = BytesMut::new();
    while let Some(chunk) = stream.next().await? {
        if all.len() + chunk.len() > MAX_LIST {
            return Err("the agent's list of recordings is too long".into());
        }
        all.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&all)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// The window of recording `name` that starts `from` seconds in.
///
/// # Errors
/// The refusal, or why the recording could not be read.
pub(crate) async fn window(
    shared: &Shared,
    session: &WebSession,
    agent: AgentName,
    name: String,
    from: f64,
    remote: SocketAddr,
) -> Result<Value, String> {
    let stream = RecordingStream::open(shared, session, agent, name, remote).await?;
    let mut lines = Lines {
        stream,
        buf: BytesMut::new(),
    };
    let header_line = lines.next().await?.ok_or("the recording is empty")?;
    let header: Value = serde_json::from_slice(&header_line)
        .map_err(|e| format!("the recording's header is not JSON: {e}"))?;
    let size = |key: &str, default: u64| {
        header
            .get(key)
            .and_then(Value::as_u64)
            .unwrap_or(default)
            .clamp(1, 1000) as usize
    };
    let mut vt = avt::Vt::new(size("width", 80), size("height", 24));
    let mut events: Vec<Value> = Vec::new();
    let mut carried = 0usize;
    let mut next = None;
    let mut started = false;
    while let Some(line) = lines.next().await? {
        let Ok(Value::Array(event)) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        let (Some(at), Some(kind), Some(data)) = (
            event.first().and_then(Value::as_f64),
            event.get(1).and_then(Value::as_str),
            event.get(2).and_then(Value::as_str),
        ) else {
            continue;
        };
        if at < from {
            match kind {
                "o" => {
                    vt.feed_str(data);
                }
                "r" => {
                    if let Some((cols, rows)) = resize_of(data) {
                        vt.resize(cols, rows);
                    }
                }
                _ => {}
            }
            continue;
        }
        if !started {
            events.push(json!([0.0, "o", vt.dump()]));
            started = true;
        }
        if at - from > WINDOW || carried > WINDOW_BYTES {
            next = Some(at);
            break;
        }
        carried += data.len();
        events.push(json!([at - from, kind, data]));
    }
    if !started {
        events.push(json!([0.0, "o", vt.dump()]));
    }
    let (cols, rows) = vt.size();
    let mut cast = json!({
        "version": 2,
        "width": cols,
        "height": rows,
        "title": header.get("title").cloned().unwrap_or(Value::Null),
    })
    .to_string();
    for event in &events {
        cast.push('\n');
        cast.push_str(&event.to_string());
    }
    cast.push('\n');
    Ok(json!({ "cast": cast, "from": from, "next": next }))
}

/// `"COLSxROWS"`, as asciicast resize events write it.
fn resize_of(data: &str) -> Option<(usize, usize)> {
    let (cols, rows) = data.split_once('x')?;
    let dim = |s: &str| s.trim().parse::<usize>().ok().map(|n| n.clamp(1, 1000));
    Some((dim(cols)?, dim(rows)?))
}

/// A `Recording` stream from the agent, opened under the page's person.
struct RecordingStream {
    recv: quinn::RecvStream,
    leftover: Option<Bytes>,
}

impl RecordingStream {
    async fn open(
        shared: &Shared,
        session: &WebSession,
        agent: AgentName,
        name: String,
        remote: SocketAddr,
    ) -> Result<RecordingStream, String> {
        if !StreamKind::is_recording_name(&name) {
            return Err(format!("{name:?} is not a recording's name"));
        }
        let open = Open {
            agent,
            target: TargetName::try_from("recording").map_err(|e| e.to_string())?,
            kind: StreamKind::Recording { name },
        };
        let peer = &session.peer;
        let mut event = AuditEvent::of_peer(Event::Open, peer, Some(remote)).with_open(&open);
        event.via = Some("browser");
        match crate::stream::open::to_agent(shared, peer, &open, &event).await {
            Ok((_accepted, mut send, reader)) => {
                let _ = send.finish();
                let (recv, leftover) = reader.into_parts();
                Ok(RecordingStream {
                    recv,
                    leftover: Some(leftover).filter(|b| !b.is_empty()),
                })
            }
            Err(r) => {
                let r: Refused = r;
                shared.metrics.refused(r.code);
                shared.audit.record_or_log(event.refused(&r)).await;
                Err(r.message)
            }
        }
    }

    /// The next bytes, `None` at the end.
    async fn next(&mut self) -> Result<Option<Bytes>, String> {
        if let Some(first) = self.leftover.take() {
            return Ok(Some(first));
        }
        match self.recv.read_chunk(64 << 10, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(e) => Err(format!("the agent's stream failed: {e}")),
        }
    }
}

/// A recording, line by line.
struct Lines {
    stream: RecordingStream,
    buf: BytesMut,
}

impl Lines {
    async fn next(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            if let Some(at) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(at + 1).freeze();
                return Ok(Some(line.slice(..at)));
            }
            if self.buf.len() > MAX_LINE {
                return Err("a line of the recording is longer than 4 MiB".into());
            }
            match self.stream.next().await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None if self.buf.is_empty() => return Ok(None),
                None => return Ok(Some(self.buf.split().freeze())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resize_event_reads_as_columns_and_rows() {
        assert_eq!(resize_of("100x40"), Some((100, 40)));
        assert_eq!(resize_of("0x99999"), Some((1, 1000)));
        assert_eq!(resize_of("wide"), None);
    }

    #[test]
    fn the_screen_at_a_point_is_rebuilt_from_what_came_before() {
        let mut vt = avt::Vt::new(20, 3);
        vt.feed_str("one\r\ntwo\r\n\x1b[2Jthree");
        let mut again = avt::Vt::new(20, 3);
        again.feed_str(&vt.dump());
        assert_eq!(again.text(), vt.text());
        assert!(vt.text().iter().any(|l| l.contains("three")));
        assert!(!vt.text().iter().any(|l| l.contains("one")));
    }
}
