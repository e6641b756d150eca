//! The audit log: one JSON line per open, refusal, close, registration,
//! authentication failure, policy reload and revocation.
//!
//! Audit is never silently dropped: [`Audit::record`] returns an error when
//! the line cannot be written, and the relay refuses new opens then (fail
//! closed, DESIGN "Identity and trust").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

// The record itself is shared with the agent's direct-path audit.
pub use relay_net::audit::{now_rfc3339, AuditEvent, Event};

/// The audit sink could not take an event.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path} cannot be written: {err}")]
pub struct AuditError {
    /// The log file.
    pub path: String,
    /// What went wrong.
    pub err: String,
}

/// An append-only JSON-lines audit log.
#[derive(Debug)]
pub struct Audit {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    failures: prometheus_client::metrics::counter::Counter,
}

impl Audit {
    /// Opens (creating, mode 0600) the log for appending.
    ///
    /// # Errors
    /// If the file cannot be opened.
    pub fn open(path: &Path) -> Result<Audit, AuditError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| AuditError {
                path: path.display().to_string(),
                err: e.to_string(),
            })?;
        Ok(Audit {
            path: path.to_owned(),
            file: Mutex::new(file),
            failures: Default::default(),
        })
    }

    /// Counts events that could not be written (for the metrics).
    pub fn failure_counter(&self) -> prometheus_client::metrics::counter::Counter {
        self.failures.clone()
    }

    /// Appends one event as a single `write` of a whole line, so lines of
    /// concurrent writers never interleave.
    ///
    /// # Errors
    /// If the line cannot be written; the caller must fail closed.
    pub fn record(&self, mut event: AuditEvent) -> Result<(), AuditError> {
        event.time = now_rfc3339();
        let fail = |err: String| {
            self.failures.inc();
            AuditError {
                path: self.path.display().to_string(),
                err,
            }
        };
        let mut line = serde_json::to_vec(&event).map_err(|e| fail(e.to_string()))?;
        line.push(b'\n');
        let mut file = self.file.lock().map_err(|_| fail("lock poisoned".into()))?;
        file.write_all(&line).map_err(|e| fail(e.to_string()))
    }

    /// Records an event whose loss cannot be turned into a refusal (a close,
    /// an unregistration): the failure is logged as our own fault.
    pub fn record_or_log(&self, event: AuditEvent) {
        if let Err(err) = self.record(event) {
            tracing::error!(%err, "audit event lost");
        }
    }
}
