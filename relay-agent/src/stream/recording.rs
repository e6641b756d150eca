//! `Recording` streams: the session recordings in `--record-dir`, read
//! only, for the relay's web page (policy `recordings = true`). An empty
//! name lists them, one JSON line each (`name`, `size`, `modified` as Unix
//! seconds, `title` from the header), newest first; a name sends that
//! file's bytes and finishes. The name is a plain file name (the frame's
//! rule), so nothing outside the folder is ever read.

use std::path::{Path, PathBuf};

use proto::{Accepted, ErrorCode, Identity, Refused};
use relay_net::framed::{write_frame, FrameReader};
use tokio::io::AsyncReadExt;

use crate::shared::Shared;

/// Recordings listed at most (the newest).
const LISTED: usize = 1000;

/// Serves one `Recording` stream.
pub(super) async fn serve(
    shared: &Shared,
    caller: &Identity,
    name: &str,
    mut send: quinn::SendStream,
    mut reader: FrameReader,
) {
    let Some(dir) = shared.sessions.record_dir.clone() else {
        let r = Refused::new(
            ErrorCode::UNSUPPORTED,
            "this agent records no sessions (it runs without --record-dir)",
        );
        return shared.refuse(&mut send, &mut reader.recv, r).await;
    };
    let answered = if name.is_empty() {
        tracing::info!(%caller, "recordings listed");
        match list(&dir).await {
            Ok(lines) => send_all(&mut send, lines.as_bytes()).await,
            Err(e) => Err(e),
        }
    } else {
        tracing::info!(%caller, recording = %name, "recording read");
        copy(&dir.join(name), &mut send).await
    };
    match answered {
        Ok(()) => {
            let _ = send.finish();
        }
        Err(Answer::Refused(r)) => {
            let _ = write_frame(&mut send, r).await;
            let _ = send.finish();
        }
        Err(Answer::Failed) => {
            let _ = send.reset(ErrorCode::STREAM_ABORTED.0.into());
        }
    }
}

/// Why a recording stream did not answer in full.
enum Answer {
    /// Before `Accepted`: refused with this.
    Refused(Refused),
    /// After it: the stream is reset.
    Failed,
}

async fn send_all(send: &mut quinn::SendStream, bytes: &[u8]) -> Result<(), Answer> {
    write_frame(send, Accepted)
        .await
        .map_err(|_| Answer::Failed)?;
    send.write_all(bytes).await.map_err(|_| Answer::Failed)
}

/// The folder's recordings as JSON lines, newest first.
async fn list(dir: &Path) -> Result<String, Answer> {
    let dir = dir.to_owned();
    let listed = tokio::task::spawn_blocking(move || list_blocking(&dir)).await;
    match listed {
        Ok(Ok(lines)) => Ok(lines),
        Ok(Err(e)) => Err(Answer::Refused(Refused::new(
            ErrorCode::INTERNAL,
            format!("cannot read the recordings folder: {e}"),
        ))),
        Err(_) => Err(Answer::Failed),
    }
}

fn list_blocking(dir: &Path) -> std::io::Result<String> {
    let mut found: Vec<(u64, u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".cast") || !proto::StreamKind::is_recording_name(name) {
            continue;
        }
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        found.push((modified, meta.len(), path));
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
    let mut lines = String::new();
    for (modified, size, path) in found.into_iter().take(LISTED) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let line = serde_json::json!({
            "name": name,
            "size": size,
            "modified": modified,
            "title": title_of(&path).unwrap_or_default(),
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    Ok(lines)
}

/// The `title` of a recording's header (its first line), if it has one.
fn title_of(path: &Path) -> Option<String> {
    use std::io::{BufRead, Read};
    let file = std::fs::File::open(path).ok()?;
    let mut first = String::new();
    std::io::BufReader::new(file.take(64 << 10))
        .read_line(&mut first)
        .ok()?;
    let header: serde_json::Value = serde_json::from_str(&first).ok()?;
    header.get("title")?.as_str().map(str::to_owned)
}

/// Sends the recording at `path`.
async fn copy(path: &Path, send: &mut quinn::SendStream) -> Result<(), Answer> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Answer::Refused(Refused::new(
                ErrorCode::TARGET_NOT_EXPOSED,
                "no such recording on this agent",
            )))
        }
        Err(e) => {
            return Err(Answer::Refused(Refused::new(
                ErrorCode::INTERNAL,
                format!("cannot open the recording: {e}"),
            )))
        }
    };
    write_frame(send, Accepted)
        .await
        .map_err(|_| Answer::Failed)?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf).await.map_err(|_| Answer::Failed)?;
        if n == 0 {
            return Ok(());
        }
        send.write_all(&buf[..n])
            .await
            .map_err(|_| Answer::Failed)?;
    }
}
