//! The audit log: one JSON line per open, refusal, close, registration,
//! authentication failure, policy reload and revocation.
//!
//! Audit is never silently dropped: [`Audit::record`] returns an error when
//! the line cannot be written, and the relay refuses new opens then (fail
//! closed, DESIGN "Identity and trust").
//!
//! The one exception is deliberate: failed handshakes cost an attacker
//! nothing, so `auth_failed` lines are throttled ([`Audit::auth_failed`]):
//! per window, the first [`AUTH_FAILED_PER_ADDRESS`] per source address and
//! [`AUTH_FAILED_PER_WINDOW`] in all are written, the rest are counted in
//! one `auth_failed_suppressed` line when the window ends (the metrics count
//! every failure). Unthrottled, a loop of bad handshakes could fill the
//! disk, and a full disk makes fail-closed audit refuse everyone (#13 item 7).

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

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

/// `auth_failed` lines written per source address per window.
pub const AUTH_FAILED_PER_ADDRESS: u32 = 10;
/// `auth_failed` lines written per window, all sources together.
pub const AUTH_FAILED_PER_WINDOW: u32 = 100;
/// The default throttling window of `auth_failed` lines.
pub const AUTH_FAILED_WINDOW: Duration = Duration::from_secs(60);

/// What the `auth_failed` throttle has let through in the current window.
#[derive(Debug)]
struct Throttle {
    window: Duration,
    start: Instant,
    /// At most [`AUTH_FAILED_PER_WINDOW`] entries: one is added only with
    /// a line written.
    per_address: HashMap<IpAddr, u32>,
    written: u32,
    suppressed: u64,
}

impl Throttle {
    /// Starts a new window if the current one has ended; returns how many
    /// events the ended window suppressed.
    fn roll(&mut self, now: Instant) -> u64 {
        if now.saturating_duration_since(self.start) < self.window {
            return 0;
        }
        self.start = now;
        self.per_address.clear();
        self.written = 0;
        std::mem::take(&mut self.suppressed)
    }

    /// Whether an event from `from` is written (else it is counted).
    fn admit(&mut self, from: IpAddr) -> bool {
        if self.written < AUTH_FAILED_PER_WINDOW {
            let n = self.per_address.entry(from).or_insert(0);
            if *n < AUTH_FAILED_PER_ADDRESS {
                *n += 1;
                self.written += 1;
                return true;
            }
        }
        self.suppressed += 1;
        false
    }
}

/// The log file and its state, shared with the thread that ends the
/// throttle's windows.
#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    failures: prometheus_client::metrics::counter::Counter,
    throttle: Mutex<Throttle>,
}

/// An append-only JSON-lines audit log.
#[derive(Debug)]
pub struct Audit {
    inner: Arc<Inner>,
}

impl Audit {
    /// Opens (creating, mode 0600) the log for appending, with the default
    /// `auth_failed` window.
    ///
    /// # Errors
    /// If the file cannot be opened.
    pub fn open(path: &Path) -> Result<Audit, AuditError> {
        Audit::open_with(path, AUTH_FAILED_WINDOW)
    }

    /// As [`Audit::open`], with `auth_failed` lines throttled per `window`.
    /// A thread ends each window (writing its `auth_failed_suppressed`
    /// line) even when no failure follows; it stops with the log.
    ///
    /// # Errors
    /// If the file cannot be opened or the thread cannot start.
    pub fn open_with(path: &Path, window: Duration) -> Result<Audit, AuditError> {
        use std::os::unix::fs::OpenOptionsExt;
        let fail = |err: String| AuditError {
            path: path.display().to_string(),
            err,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| fail(e.to_string()))?;
        let window = window.max(Duration::from_millis(10));
        let inner = Arc::new(Inner {
            path: path.to_owned(),
            file: Mutex::new(file),
            failures: Default::default(),
            throttle: Mutex::new(Throttle {
                window,
                start: Instant::now(),
                per_address: HashMap::new(),
                written: 0,
                suppressed: 0,
            }),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("audit-windows".into())
            .spawn(move || loop {
                std::thread::sleep(window);
                let Some(inner) = weak.upgrade() else { return };
                inner.end_window(Instant::now());
            })
            .map_err(|e| fail(format!("cannot start its thread: {e}")))?;
        Ok(Audit { inner })
    }

    /// Counts events that could not be written (for the metrics).
    pub fn failure_counter(&self) -> prometheus_client::metrics::counter::Counter {
        self.inner.failures.clone()
    }

    /// Appends one event as a single `write` of a whole line, so lines of
    /// concurrent writers never interleave.
    ///
    /// # Errors
    /// If the line cannot be written; the caller must fail closed.
    pub fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.inner.record(event)
    }

    /// Records an event whose loss cannot be turned into a refusal (a close,
    /// an unregistration): the failure is logged as our own fault.
    pub fn record_or_log(&self, event: AuditEvent) {
        self.inner.record_or_log(event);
    }

    /// Records a failed handshake or identity check from `from`, throttled
    /// (see the module doc): the first lines of a window are written, the
    /// rest counted in the window's `auth_failed_suppressed` line.
    pub fn auth_failed(&self, from: IpAddr, event: AuditEvent) {
        let now = Instant::now();
        // The ended window's summary goes before this window's first line.
        self.inner.end_window(now);
        let admitted = lock(&self.inner.throttle).admit(from);
        if admitted {
            self.inner.record_or_log(event);
        }
    }
}

/// Locks `m`; every update under these locks is a single step, so a
/// poisoned lock still holds consistent state.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn record(&self, mut event: AuditEvent) -> Result<(), AuditError> {
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

    fn record_or_log(&self, event: AuditEvent) {
        if let Err(err) = self.record(event) {
            tracing::error!(%err, "audit event lost");
        }
    }

    /// Ends the throttle's window if it is over, writing its summary line
    /// when it suppressed anything.
    fn end_window(&self, now: Instant) {
        let (suppressed, window) = {
            let mut t = lock(&self.throttle);
            (t.roll(now), t.window)
        };
        if suppressed > 0 {
            let event = AuditEvent {
                count: Some(suppressed),
                duration_ms: u64::try_from(window.as_millis()).ok(),
                reason: Some(format!(
                    "{suppressed} more failed handshakes in this window were not written: at most \
                     {AUTH_FAILED_PER_ADDRESS} per source address and {AUTH_FAILED_PER_WINDOW} in \
                     all are, per window (the metric relay_handshake_failures_total counts all)"
                )),
                ..AuditEvent::new(Event::AuthFailedSuppressed)
            };
            self.record_or_log(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_admits_per_address_and_in_all_then_counts() {
        let mut t = Throttle {
            window: Duration::from_secs(60),
            start: Instant::now(),
            per_address: HashMap::new(),
            written: 0,
            suppressed: 0,
        };
        let one = IpAddr::from([192, 0, 2, 1]);
        let admitted = (0..50).filter(|_| t.admit(one)).count();
        assert_eq!(admitted, AUTH_FAILED_PER_ADDRESS as usize);
        let many = (0..1000u32)
            .filter(|i| t.admit(IpAddr::from(i.to_be_bytes())))
            .count();
        assert_eq!(
            admitted + many,
            AUTH_FAILED_PER_WINDOW as usize,
            "at most the window's total"
        );
        assert!(t.per_address.len() <= AUTH_FAILED_PER_WINDOW as usize);
        assert_eq!(t.roll(t.start), 0, "the window has not ended");
        let ended = t.start + t.window;
        assert_eq!(t.roll(ended), 1050 - AUTH_FAILED_PER_WINDOW as u64);
        assert!(t.admit(one), "a new window admits again");
    }
}
