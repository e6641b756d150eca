//! The audit log: one JSON line per open, refusal, close, registration,
//! authentication failure, policy reload and revocation.
//!
//! Audit is never silently dropped: [`Audit::record`] returns an error when
//! the line cannot be written, and the relay refuses new opens then (fail
//! closed, DESIGN "Identity and trust").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// One audit event. Field names are stable (documented in the README).
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditEvent {
    /// RFC 3339 UTC time; filled in by [`Audit::record`].
    pub time: String,
    /// `open`, `refused`, `close`, `register`, `unregister`, `auth_failed`,
    /// `revoked`, `policy_reload`; `direct` and `direct_close` for a direct
    /// path (end-to-end mode: the relay sees the path, not its streams).
    pub event: &'static str,
    /// The peer's identity (`client/alice`), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The peer's certificate serial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The peer's UDP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The agent of an open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The target of an open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `tcp`, `shell`, `exec` or `socks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// The command of an `exec` (or of a `shell` started with one), its
    /// arguments quoted as a shell would need them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The `host:port` a `socks` stream asked for (as the client named it;
    /// the agent resolves and checks it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Error code name of a refusal or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Human reason of a refusal or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bytes from client to agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_up: Option<u64>,
    /// Bytes from agent to client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_down: Option<u64>,
    /// Duration of a stream, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

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

/// Current UTC time in RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_millisecond(now.millisecond()).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}
