//! Measurements behind `relay-client bench`: bulk throughput both ways (1
//! and N streams), 64-byte ping-pong latency and the stream-open rate, over
//! a [`BenchPath`]: the tunnel to an agent's built-in `bench` target, or
//! plain TCP to a `relay-agent bench-server` (the direct baseline, or the
//! same server behind `ssh -L` in `bench/compare.sh`).
//!
//! Both paths speak the same sub-protocol ([`proto::BenchHeader`]) through
//! the same splice traits, so the figures differ only by the path. Nothing
//! here asserts a time: it measures and reports.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proto::{BenchHeader, BenchMode, ErrorCode, BENCH_COUNT_LEN};
use relay_net::splice::{tcp_halves, ChunkRead, ChunkWrite, Failure, TcpRead, TcpWrite};
use serde::Serialize;

use crate::stream::Answered;
use crate::{Client, Destination, OpenError};

/// Size of the chunks bulk senders write: one static buffer, cloned (not
/// copied) into each `Bytes`.
const CHUNK: usize = 1 << 20;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// Size of a ping-pong message.
pub const PING_LEN: usize = 64;

/// Pings before the measured ones (the first carries the stream open).
const WARMUP_PINGS: u32 = 10;

/// Why a measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The tunnel stream could not be opened.
    #[error("cannot open a stream to the benchmark target: {0}")]
    Open(#[from] OpenError),
    /// The direct TCP connection failed.
    #[error("cannot connect to {addr}: {err}")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// The socket error.
        err: std::io::Error,
    },
    /// A plain QUIC stream could not be opened.
    #[error("cannot open a QUIC stream: {0}")]
    Quic(String),
    /// A stream failed in the middle of a measurement.
    #[error("benchmark stream failed: {0}{hint}", hint = limit_hint(.0))]
    Stream(Failure),
    /// The other end saw a different number of bytes than were sent.
    #[error("{what}: expected {expected} bytes, got {got}")]
    Mismatch {
        /// Which measurement.
        what: &'static str,
        /// Bytes sent or asked for.
        expected: u64,
        /// Bytes counted.
        got: u64,
    },
}

impl From<Failure> for BenchError {
    fn from(f: Failure) -> BenchError {
        BenchError::Stream(f)
    }
}

/// What to do about a relay limit: the open-rate test opens thousands of
/// streams as fast as it can, which is what the relay's limit is there to stop.
fn limit_hint(f: &Failure) -> &'static str {
    if f.code == ErrorCode::LIMIT_EXCEEDED {
        " (a relay limit: for the open-rate test, measure fewer streams with --opens, \
         a relay allows bursts of twice its `relay-server run --max-open-rate`, \
         or raise that limit)"
    } else {
        ""
    }
}

/// Where the benchmark streams go.
#[derive(Clone, Debug)]
pub enum BenchPath {
    /// Through the relay to an agent that exposes `bench`.
    Tunnel {
        /// The client (one QUIC connection for every stream).
        client: Arc<Client>,
        /// `agent/bench`.
        dest: Destination,
    },
    /// Plain TCP to a `relay-agent bench-server` (or a forward to one).
    Tcp(SocketAddr),
    /// Plain quinn streams on one connection to `relay-client
    /// bench-quic-server`: one QUIC hop, the yardstick for CPU per GiB.
    Quic(quinn::Connection),
}

impl BenchPath {
    /// Opens a stream and sends `header`; for the tunnel, the header rides
    /// right behind `Open`, as a forward's first bytes do.
    ///
    /// # Errors
    /// If the stream or connection cannot be opened.
    pub async fn open(&self, header: BenchHeader) -> Result<BenchStream, BenchError> {
        let mut stream = match self {
            BenchPath::Tunnel { client, dest } => {
                let (send, recv) = client.open_raw(dest.open()).await?;
                BenchStream {
                    read: Reader::Quic(Box::new(Answered::new(recv))),
                    write: Writer::Quic(send),
                    buf: BytesMut::new(),
                }
            }
            BenchPath::Quic(conn) => {
                let (send, recv) = conn
                    .open_bi()
                    .await
                    .map_err(|e| BenchError::Quic(relay_net::dial::describe(&e)))?;
                BenchStream {
                    read: Reader::Raw(recv),
                    write: Writer::Quic(send),
                    buf: BytesMut::new(),
                }
            }
            BenchPath::Tcp(addr) => {
                let tcp = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|err| BenchError::Connect { addr: *addr, err })?;
                let (read, write) = tcp_halves(tcp);
                BenchStream {
                    read: Reader::Tcp(read),
                    write: Writer::Tcp(write),
                    buf: BytesMut::new(),
                }
            }
        };
        stream.write.write_chunk(header.to_bytes()).await?;
        Ok(stream)
    }
}

enum Reader {
    Quic(Box<Answered>),
    Raw(quinn::RecvStream),
    Tcp(TcpRead),
}

impl ChunkRead for Reader {
    async fn read_chunk(&mut self) -> Result<Option<Bytes>, Failure> {
        match self {
            Reader::Quic(r) => r.read_chunk().await,
            Reader::Raw(r) => ChunkRead::read_chunk(r).await,
            Reader::Tcp(r) => r.read_chunk().await,
        }
    }

    fn abort(&mut self, code: ErrorCode) {
        match self {
            Reader::Quic(r) => ChunkRead::abort(r.as_mut(), code),
            Reader::Raw(r) => ChunkRead::abort(r, code),
            Reader::Tcp(r) => ChunkRead::abort(r, code),
        }
    }
}

enum Writer {
    Quic(quinn::SendStream),
    Tcp(TcpWrite),
}

impl ChunkWrite for Writer {
    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), Failure> {
        match self {
            Writer::Quic(w) => ChunkWrite::write_chunk(w, chunk).await,
            Writer::Tcp(w) => w.write_chunk(chunk).await,
        }
    }

    async fn finish(&mut self) -> Result<(), Failure> {
        match self {
            Writer::Quic(w) => ChunkWrite::finish(w).await,
            Writer::Tcp(w) => w.finish().await,
        }
    }

    fn abort(&mut self, code: ErrorCode) {
        match self {
            Writer::Quic(w) => ChunkWrite::abort(w, code),
            Writer::Tcp(w) => ChunkWrite::abort(w, code),
        }
    }
}

/// One benchmark stream, after its header was sent.
pub struct BenchStream {
    read: Reader,
    write: Writer,
    buf: BytesMut,
}

impl std::fmt::Debug for BenchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchStream").finish_non_exhaustive()
    }
}

impl BenchStream {
    /// Reads exactly `n` bytes.
    async fn read_exact(&mut self, n: usize, what: &'static str) -> Result<Bytes, BenchError> {
        while self.buf.len() < n {
            match self.read.read_chunk().await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => {
                    return Err(BenchError::Mismatch {
                        what,
                        expected: n as u64,
                        got: self.buf.len() as u64,
                    })
                }
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// Reads to the end; returns the byte count (buffered bytes included).
    async fn drain(&mut self, progress: Option<&Progress>) -> Result<u64, BenchError> {
        let mut n = self.buf.len() as u64;
        self.buf.clear();
        while let Some(chunk) = self.read.read_chunk().await? {
            n += chunk.len() as u64;
            if let Some(p) = progress {
                p.inc(chunk.len() as u64);
            }
        }
        Ok(n)
    }
}

/// What one run measures.
#[derive(Clone, Debug, Serialize)]
pub struct Options {
    /// Streams of the "N streams" bulk tests and concurrent openers.
    pub streams: usize,
    /// Bytes per bulk test (split over its streams).
    pub bytes: u64,
    /// Measured 64-byte round trips.
    pub pings: u32,
    /// Streams opened (open, 1-byte echo, close) for the open rate.
    pub opens: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            streams: 8,
            bytes: 1 << 30,
            pings: 5000,
            opens: 3000,
        }
    }
}

/// A progress sink: an `indicatif` bar, or nothing.
#[derive(Clone, Debug)]
pub struct Progress {
    enabled: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Draws one bar per measurement on stderr (indicatif hides them when
    /// stderr is not a terminal).
    pub fn stderr() -> Progress {
        Progress {
            enabled: true,
            bar: None,
        }
    }

    /// Draws nothing.
    pub fn hidden() -> Progress {
        Progress {
            enabled: false,
            bar: None,
        }
    }

    fn phase(&self, label: String, len: u64, bytes: bool) -> Progress {
        if !self.enabled {
            return Progress::hidden();
        }
        let template = if bytes {
            "{msg:40} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}"
        } else {
            "{msg:40} [{bar:30}] {pos}/{len} {per_sec}"
        };
        let style = indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(len),
            indicatif::ProgressDrawTarget::stderr(),
        )
        .with_style(style)
        .with_message(label);
        Progress {
            enabled: true,
            bar: Some(bar),
        }
    }

    fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// CPU time of a set of processes (this one included), for CPU-seconds per
/// GiB: `/proc/PID/stat` utime + stime, where there is a `/proc`.
#[derive(Clone, Debug, Default)]
pub struct CpuMeter {
    pids: Vec<u32>,
}

impl CpuMeter {
    /// This process plus `others`.
    pub fn new(others: &[u32]) -> CpuMeter {
        let mut pids = vec![std::process::id()];
        pids.extend_from_slice(others);
        CpuMeter { pids }
    }

    /// Total CPU seconds so far, if every process could be read.
    pub fn total(&self) -> Option<f64> {
        self.pids.iter().map(|&p| cpu_seconds(p)).sum()
    }
}

/// CPU seconds (user + system) of `pid`, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture we build for.
    Some((utime + stime) as f64 / 100.0)
}

/// Peak resident memory of `pid` in KiB (`VmHWM` of `/proc/PID/status`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One bulk test.
#[derive(Clone, Debug, Serialize)]
pub struct Bulk {
    /// Streams used.
    pub streams: usize,
    /// Bytes delivered (confirmed by the receiving end).
    pub bytes: u64,
    /// Seconds from the first open to the last confirmation.
    pub secs: f64,
    /// Throughput.
    pub gbit_s: f64,
    /// CPU seconds per GiB of every process on the path, if measurable.
    pub cpu_s_per_gib: Option<f64>,
}

/// The ping-pong test.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// Round trips measured.
    pub count: u32,
    /// Median round trip, microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
}

/// The stream-open test.
#[derive(Clone, Debug, Serialize)]
pub struct Opens {
    /// Streams opened, each echoing one byte.
    pub count: u32,
    /// Concurrent openers.
    pub concurrency: usize,
    /// Seconds for all of them.
    pub secs: f64,
    /// Opens per second.
    pub per_s: f64,
}

/// Everything measured over one path.
#[derive(Clone, Debug, Serialize)]
pub struct Measurements {
    /// What the path is ("tunnel", "direct TCP", ...).
    pub label: String,
    /// Client → agent, one stream.
    pub up_1: Bulk,
    /// Client → agent, N streams.
    pub up_n: Bulk,
    /// Agent → client, one stream.
    pub down_1: Bulk,
    /// Agent → client, N streams.
    pub down_n: Bulk,
    /// 64-byte ping-pong.
    pub ping: Latency,
    /// Open, 1-byte echo, close.
    pub opens: Opens,
}

/// Runs every measurement over `path`.
///
/// # Errors
/// The first failed stream or byte-count mismatch.
pub async fn measure(
    path: &BenchPath,
    label: &str,
    opts: &Options,
    cpu: &CpuMeter,
    progress: &Progress,
) -> Result<Measurements, BenchError> {
    let n = opts.streams.max(1);
    let up_1 = bulk(path, BenchMode::Sink, 1, opts.bytes, cpu, progress, label).await?;
    let up_n = bulk(path, BenchMode::Sink, n, opts.bytes, cpu, progress, label).await?;
    let down_1 = bulk(path, BenchMode::Source, 1, opts.bytes, cpu, progress, label).await?;
    let down_n = bulk(path, BenchMode::Source, n, opts.bytes, cpu, progress, label).await?;
    let ping = ping_pong(path, opts.pings, progress, label).await?;
    let opens = open_rate(path, opts.opens, n, progress, label).await?;
    Ok(Measurements {
        label: label.to_owned(),
        up_1,
        up_n,
        down_1,
        down_n,
        ping,
        opens,
    })
}

/// Moves `total` bytes over `streams` streams: `Sink` = client → agent,
/// `Source` = agent → client. Every stream's count is checked.
///
/// # Errors
/// A failed stream or a count that does not add up.
pub async fn bulk(
    path: &BenchPath,
    mode: BenchMode,
    streams: usize,
    total: u64,
    cpu: &CpuMeter,
    progress: &Progress,
    label: &str,
) -> Result<Bulk, BenchError> {
    let dir = if mode == BenchMode::Sink {
        "client→agent"
    } else {
        "agent→client"
    };
    let progress = progress.phase(format!("{label}: {dir} ×{streams}"), total, true);
    let cpu_before = cpu.total();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let streams = streams.max(1);
    for i in 0..streams {
        let per = total / streams as u64 + u64::from(i == 0) * (total % streams as u64);
        let path = path.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            match mode {
                BenchMode::Sink => send_bulk(&path, per, &progress).await,
                _ => receive_bulk(&path, per, &progress).await,
            }
        });
    }
    let mut bytes = 0;
    while let Some(done) = tasks.join_next().await {
        bytes += done.map_err(|e| Failure::new(ErrorCode::INTERNAL, e.to_string()))??;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_s_per_gib = match (cpu_before, cpu.total()) {
        (Some(a), Some(b)) if bytes > 0 => Some((b - a) / (bytes as f64 / (1u64 << 30) as f64)),
        _ => None,
    };
    progress.done();
    Ok(Bulk {
        streams,
        bytes,
        secs,
        gbit_s: bytes as f64 * 8.0 / secs.max(1e-9) / 1e9,
        cpu_s_per_gib,
    })
}

async fn send_bulk(path: &BenchPath, len: u64, progress: &Progress) -> Result<u64, BenchError> {
    let mut s = path.open(BenchHeader::new(BenchMode::Sink, 0)).await?;
    let chunk = Bytes::from_static(&ZEROS);
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        s.write.write_chunk(chunk.slice(..n)).await?;
        left -= n as u64;
        progress.inc(n as u64);
    }
    s.write.finish().await?;
    let count = s.read_exact(BENCH_COUNT_LEN, "sink count").await?;
    let mut be = [0u8; BENCH_COUNT_LEN];
    be.copy_from_slice(&count);
    let got = u64::from_be_bytes(be);
    if got != len {
        return Err(BenchError::Mismatch {
            what: "client→agent",
            expected: len,
            got,
        });
    }
    s.drain(None).await?;
    Ok(got)
}

async fn receive_bulk(path: &BenchPath, len: u64, progress: &Progress) -> Result<u64, BenchError> {
    let mut s = path.open(BenchHeader::new(BenchMode::Source, len)).await?;
    s.write.finish().await?;
    let got = s.drain(Some(progress)).await?;
    if got != len {
        return Err(BenchError::Mismatch {
            what: "agent→client",
            expected: len,
            got,
        });
    }
    Ok(got)
}

/// `count` 64-byte round trips on one stream (after a short warm-up).
///
/// # Errors
/// A failed stream or a short echo.
pub async fn ping_pong(
    path: &BenchPath,
    count: u32,
    progress: &Progress,
    label: &str,
) -> Result<Latency, BenchError> {
    let progress = progress.phase(
        format!("{label}: ping-pong {PING_LEN} B"),
        u64::from(count),
        false,
    );
    let mut s = path.open(BenchHeader::new(BenchMode::Echo, 0)).await?;
    let ping = Bytes::from_static(&[0x55; PING_LEN]);
    let mut rtts = Vec::with_capacity(count as usize);
    for i in 0..WARMUP_PINGS + count {
        let t = Instant::now();
        s.write.write_chunk(ping.clone()).await?;
        s.read_exact(PING_LEN, "ping-pong echo").await?;
        if i >= WARMUP_PINGS {
            rtts.push(t.elapsed());
            progress.inc(1);
        }
    }
    s.write.finish().await?;
    s.drain(None).await?;
    progress.done();
    rtts.sort_unstable();
    Ok(Latency {
        count,
        p50_us: percentile(&rtts, 0.50),
        p99_us: percentile(&rtts, 0.99),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

/// Opens `count` streams, `concurrency` at a time: open, 1-byte echo, close.
///
/// # Errors
/// A failed stream or a missing echo.
pub async fn open_rate(
    path: &BenchPath,
    count: u32,
    concurrency: usize,
    progress: &Progress,
    label: &str,
) -> Result<Opens, BenchError> {
    let progress = progress.phase(
        format!("{label}: open+echo+close ×{concurrency}"),
        u64::from(count),
        false,
    );
    let left = Arc::new(AtomicU64::new(u64::from(count)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (path, left, progress) = (path.clone(), left.clone(), progress.clone());
        tasks.spawn(async move {
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let mut s = path.open(BenchHeader::new(BenchMode::Echo, 0)).await?;
                s.write.write_chunk(Bytes::from_static(b"x")).await?;
                s.write.finish().await?;
                let got = s.drain(None).await?;
                if got != 1 {
                    return Err(BenchError::Mismatch {
                        what: "open+echo",
                        expected: 1,
                        got,
                    });
                }
                progress.inc(1);
            }
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| Failure::new(ErrorCode::INTERNAL, e.to_string()))??;
    }
    let secs = started.elapsed().as_secs_f64();
    progress.done();
    Ok(Opens {
        count,
        concurrency: concurrency.max(1),
        secs,
        per_s: f64::from(count) / secs.max(1e-9),
    })
}

/// Serves the benchmark sub-protocol on every bidirectional stream of every
/// connection `endpoint` accepts, until `shutdown` (`relay-client
/// bench-quic-server`: the plain-quinn baseline, same TLS and transport
/// settings as the relay).
pub async fn serve_quic(endpoint: quinn::Endpoint, shutdown: tokio_util::sync::CancellationToken) {
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            () = shutdown.cancelled() => break,
        };
        tasks.spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    let timeout = Duration::from_secs(10);
                    if let Err(f) =
                        relay_net::bench::serve(&mut recv, &mut send, Bytes::new(), timeout).await
                    {
                        tracing::debug!(err = %f, "benchmark stream failed");
                    }
                });
            }
        });
    }
    tasks.close();
    endpoint.close(0u32.into(), b"done");
}
