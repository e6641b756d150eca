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
//!
//! Lines are written by a thread of their own (`audit-writer`), never on
//! the runtime's threads: a disk that stalls must not stall the streams
//! already flowing. Callers await their line's write (so a refusal or an
//! open is on disk before the client hears of it, as before); the writer
//! drains what has queued up in one `write`, and a queue of
//! [`QUEUE_LINES`] lines that the disk does not drain fails new records,
//! which fail closed.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
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
/// Lines that may wait for the writer: far above any burst a healthy disk
/// leaves behind, small enough (a few MiB) to hold in memory.
pub const QUEUE_LINES: usize = 16_384;
/// Lines the writer joins into one `write` at most.
const BATCH_LINES: usize = 256;

/// One line for the writer, and where to say whether it was written.
struct Job {
    line: Vec<u8>,
    done: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

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

/// The writer's queue and the throttle's state, shared with the thread that
/// ends the throttle's windows.
#[derive(Debug)]
struct Inner {
    path: PathBuf,
    queue: SyncSender<Job>,
    /// Set by [`Audit::reopen`]; the writer reopens before its next line.
    reopen: Arc<AtomicBool>,
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
        let fail = |err: String| AuditError {
            path: path.display().to_string(),
            err,
        };
        let sink = Sink::open(path).map_err(|e| fail(e.to_string()))?;
        let reopen = Arc::new(AtomicBool::new(false));
        let window = window.max(Duration::from_millis(10));
        let failures = prometheus_client::metrics::counter::Counter::default();
        let (queue, jobs) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        let (counted, asked) = (failures.clone(), reopen.clone());
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_lines(sink, &jobs, &asked, &counted))
            .map_err(|e| fail(format!("cannot start its writer thread: {e}")))?;
        let inner = Arc::new(Inner {
            path: path.to_owned(),
            queue,
            reopen,
            failures,
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

    /// Reopens the log file at its path before the next line (SIGHUP, after
    /// logrotate moved it away); standard output stays as it is.
    pub fn reopen(&self) {
        self.inner.reopen.store(true, Ordering::Relaxed);
    }

    /// Appends one event as a whole line, written off the runtime's threads
    /// (lines of concurrent writers never interleave).
    ///
    /// # Errors
    /// If the line cannot be written; the caller must fail closed.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let (done, written) = tokio::sync::oneshot::channel();
        self.inner.submit(event, Some(done))?;
        let result = written
            .await
            .unwrap_or_else(|_| Err("its writer thread has stopped".into()));
        result.map_err(|err| self.inner.error(err))
    }

    /// Records an event whose loss cannot be turned into a refusal (a close,
    /// an unregistration): the failure is logged as our own fault.
    pub async fn record_or_log(&self, event: AuditEvent) {
        if let Err(err) = self.record(event).await {
            tracing::error!(%err, "audit event lost");
        }
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
            self.inner.detached(event);
        }
    }
}

/// Locks `m`; every update under these locks is a single step, so a
/// poisoned lock still holds consistent state.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// Queues `event` for the writer; `done` hears whether it was written.
    fn submit(
        &self,
        mut event: AuditEvent,
        done: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
    ) -> Result<(), AuditError> {
        event.time = now_rfc3339();
        let mut line = serde_json::to_vec(&event).map_err(|e| self.error(e.to_string()))?;
        line.push(b'\n');
        self.queue
            .try_send(Job { line, done })
            .map_err(|e| match e {
                TrySendError::Full(_) => self.error(format!(
                    "{QUEUE_LINES} lines are waiting for the disk (is it stalled?)"
                )),
                TrySendError::Disconnected(_) => self.error("its writer thread has stopped".into()),
            })
    }

    /// Queues `event` without waiting for it (the throttle's lines, which
    /// gate nothing); a failure is logged as our own fault.
    fn detached(&self, event: AuditEvent) {
        if let Err(err) = self.submit(event, None) {
            tracing::error!(%err, "audit event lost");
        }
    }

    /// An error about this log, counted for the metrics.
    fn error(&self, err: String) -> AuditError {
        self.failures.inc();
        AuditError {
            path: self.path.display().to_string(),
            err,
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
            self.detached(event);
        }
    }
}

/// Where the writer appends: a file (mode 0600, reopened on request) or,
/// for the path `-`, standard output (container log collection).
enum Sink {
    Stdout,
    File { path: PathBuf, file: std::fs::File },
}

impl Sink {
    fn open(path: &Path) -> std::io::Result<Sink> {
        if path == Path::new("-") {
            return Ok(Sink::Stdout);
        }
        Ok(Sink::File {
            path: path.to_owned(),
            file: append_private(path)?,
        })
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        if let Sink::File { path, file } = self {
            *file = append_private(path)?;
        }
        Ok(())
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Sink::File { file, .. } => file.write_all(bytes),
        }
    }
}

/// Opens `path` for appending, created with mode 0600.
fn append_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The writer thread: appends queued lines until every sender is gone,
/// joining what has queued up into one `write` (an appending file keeps
/// each whole). A failed write fails every line of its batch: some may be
/// on disk, but fail closed errs on the side of refusing.
fn write_lines(
    mut sink: Sink,
    jobs: &Receiver<Job>,
    reopen: &AtomicBool,
    failures: &prometheus_client::metrics::counter::Counter,
) {
    let mut bytes = Vec::new();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH_LINES {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        bytes.clear();
        for job in &batch {
            bytes.extend_from_slice(&job.line);
        }
        if reopen.swap(false, Ordering::Relaxed) {
            match sink.reopen() {
                Ok(()) => tracing::info!("audit log reopened"),
                // The old file stays in use: lines are kept, not lost.
                Err(err) => {
                    tracing::error!(%err, "audit log not reopened; writing on to the old file")
                }
            }
        }
        let written = sink.write_all(&bytes).map_err(|e| e.to_string());
        for job in batch {
            match job.done {
                Some(done) => {
                    let _ = done.send(written.clone());
                }
                None if written.is_err() => {
                    failures.inc();
                    tracing::error!(err = ?written, "audit event lost");
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn records_are_on_disk_in_order_once_awaited() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&path).unwrap();
        runtime().block_on(async {
            for event in [Event::Open, Event::Close, Event::Refused] {
                audit.record(AuditEvent::new(event)).await.unwrap();
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let events: Vec<_> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
            .collect();
        assert_eq!(events, ["open", "close", "refused"]);
    }

    #[test]
    fn a_reopen_after_rotation_writes_to_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotated = dir.path().join("audit.jsonl.1");
        let audit = Audit::open(&path).unwrap();
        let rt = runtime();
        rt.block_on(audit.record(AuditEvent::new(Event::Open)))
            .unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        audit.reopen();
        rt.block_on(audit.record(AuditEvent::new(Event::Close)))
            .unwrap();
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
        assert_eq!((lines(&rotated), lines(&path)), (1, 1));
    }

    #[test]
    fn a_full_disk_fails_the_record() {
        // Every write to /dev/full fails with ENOSPC.
        let audit = Audit::open(Path::new("/dev/full")).unwrap();
        let err = runtime()
            .block_on(audit.record(AuditEvent::new(Event::Open)))
            .unwrap_err();
        assert!(err.to_string().contains("/dev/full"), "{err}");
        assert_eq!(audit.failure_counter().get(), 1);
    }

    /// A disk that stops taking writes (here a pipe no one reads) holds the
    /// records waiting for it, never the runtime's thread: before the
    /// writer thread, the first write past the pipe's buffer froze it.
    #[test]
    fn a_stalled_disk_does_not_stall_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("audit.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Opened for reading and writing, the pipe has a reader that never
        // reads, and the log's own open does not wait for one.
        let stalled = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        let audit = Arc::new(Audit::open(&fifo).unwrap());
        let (alive, heard) = std::sync::mpsc::channel();
        let served = std::thread::spawn(move || {
            runtime().block_on(async {
                // ~1 MiB of lines, far past a pipe's 64 KiB buffer.
                for _ in 0..4_000 {
                    let audit = audit.clone();
                    let mut event = AuditEvent::new(Event::Close);
                    event.reason = Some("x".repeat(256));
                    tokio::spawn(async move { audit.record_or_log(event).await });
                }
                for _ in 0..100 {
                    tokio::task::yield_now().await;
                }
                let _ = alive.send(());
            });
        });
        let answered = heard.recv_timeout(Duration::from_secs(30));
        drop(stalled); // the writer's write fails now (EPIPE), freeing all
        assert!(
            answered.is_ok(),
            "the runtime froze on a stalled audit write"
        );
        served.join().unwrap();
    }

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
