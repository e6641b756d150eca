//! The agent's audit log, of the streams it serves on direct paths (end-to-end
//! mode): the relay forwards those without seeing them, so the agent keeps
//! their record, one JSON line each for `open`, `refused` and `close`, with
//! the relay's own fields ([`relay_net::audit::AuditEvent`]).
//!
//! Fail closed as the relay is: [`Audit::record`] says when a line could
//! not be written, and the direct stream is then refused with
//! `AUDIT_UNAVAILABLE` ([`crate::stream::direct`]). Writes run on tokio's
//! blocking pool, never on a runtime thread.
//!
//! What a stream's kind learns on the way (bytes each way, its refusal) is
//! noted in the stream's [`Tally`] through [`count`] and [`note_refused`],
//! so the kinds need not know whether they are audited.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use proto::Refused;
use relay_net::audit::{now_rfc3339, AuditEvent};

/// The audit log could not take a line.
#[derive(Debug, thiserror::Error)]
#[error("agent audit log {path} cannot be written: {err}")]
pub struct AuditError {
    /// The log file.
    pub path: String,
    /// What went wrong.
    pub err: String,
}

/// An append-only JSON-lines audit log (created 0600), opened again on the
/// next line after it could not be opened.
#[derive(Debug, Clone)]
pub struct Audit {
    path: PathBuf,
    file: Arc<Mutex<Option<std::fs::File>>>,
}

impl Audit {
    /// The log at `path`, opened now if it can be (else it is logged, and
    /// tried again on each line: direct streams are refused meanwhile).
    pub fn open(path: &Path) -> Audit {
        let file = match open_file(path) {
            Ok(file) => Some(file),
            Err(e) => {
                tracing::error!(err = %e, "direct streams will be refused until the audit log can be written");
                None
            }
        };
        Audit {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(file)),
        }
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event as a single write of a whole line.
    ///
    /// # Errors
    /// If the line cannot be written; the caller must fail closed.
    pub async fn record(&self, mut event: AuditEvent) -> Result<(), AuditError> {
        event.time = now_rfc3339();
        let fail = |err: String| AuditError {
            path: self.path.display().to_string(),
            err,
        };
        let mut line = serde_json::to_vec(&event).map_err(|e| fail(e.to_string()))?;
        line.push(b'\n');
        let file = self.file.clone();
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut slot = file.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(open_file(&path).map_err(|e| e.err)?);
            }
            match slot.as_mut() {
                Some(f) => f.write_all(&line).map_err(|e| e.to_string()),
                None => Err("not open".to_owned()),
            }
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(fail(e)),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// Records an event whose loss cannot be turned into a refusal (a
    /// close): the failure is logged as our own fault.
    pub async fn record_or_log(&self, event: AuditEvent) {
        if let Err(err) = self.record(event).await {
            tracing::error!(%err, "audit event lost");
        }
    }
}

fn open_file(path: &Path) -> Result<std::fs::File, AuditError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| AuditError {
            path: path.display().to_string(),
            err: e.to_string(),
        })
}

/// What one audited stream's kind reported: bytes each way, and the
/// refusal it answered, if it did.
#[derive(Debug, Default)]
pub struct Tally {
    /// Bytes from the client to the target.
    pub up: AtomicU64,
    /// Bytes from the target to the client.
    pub down: AtomicU64,
    /// The refusal the stream ended with.
    pub refused: Mutex<Option<Refused>>,
}

tokio::task_local! {
    static TALLY: Arc<Tally>;
}

/// Runs `fut` (one audited stream) with `tally` as the place its kind
/// reports to.
pub async fn tallied<F: std::future::Future>(tally: Arc<Tally>, fut: F) -> F::Output {
    TALLY.scope(tally, fut).await
}

/// Adds bytes moved by the current stream to its tally (a no-op for a
/// stream that is not audited, such as one from the relay).
pub fn count(up: u64, down: u64) {
    let _ = TALLY.try_with(|t| {
        t.up.fetch_add(up, Ordering::Relaxed);
        t.down.fetch_add(down, Ordering::Relaxed);
    });
}

/// Notes that the current stream was refused (a no-op outside an audited
/// stream).
pub fn note_refused(refused: &Refused) {
    let _ = TALLY.try_with(|t| {
        *t.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(refused.clone());
    });
}
