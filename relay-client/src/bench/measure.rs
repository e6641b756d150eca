//! The measurements: bulk throughput both ways (1 and N streams), 64-byte
//! ping-pong latency and the stream-open rate, with their results. Nothing
//! here asserts a time: it measures and reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::{BenchHeader, BenchMode, ErrorCode, BENCH_COUNT_LEN};
use relay_net::splice::{ChunkWrite, Failure};
use serde::Serialize;

use super::meter::{CpuMeter, Progress};
use super::path::BenchPath;
use super::{BenchError, Options};

/// Size of the chunks bulk senders write: one static buffer, cloned (not
/// copied) into each `Bytes`.
const CHUNK: usize = 1 << 20;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// Size of a ping-pong message.
pub const PING_LEN: usize = 64;

/// Pings before the measured ones (the first carries the stream open).
const WARMUP_PINGS: u32 = 10;

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
    /// How they were opened and closed.
    pub pattern: OpenPattern,
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
    /// Open, 1-byte echo, close: N at a time, each half-closed before its
    /// echo is read ([`OpenPattern::HalfClose`]).
    pub opens: Opens,
    /// The same one at a time, each closed after its echo
    /// ([`OpenPattern::OneAtATime`]).
    pub opens_one: Opens,
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
    let opens = open_rate(path, opts.opens, OpenPattern::HalfClose, n, progress, label).await?;
    let opens_one = open_rate(
        path,
        opts.opens,
        OpenPattern::OneAtATime,
        1,
        progress,
        label,
    )
    .await?;
    Ok(Measurements {
        label: label.to_owned(),
        up_1,
        up_n,
        down_1,
        down_n,
        ping,
        opens,
        opens_one,
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

/// How the open-rate test opens and closes its connections: the figure
/// depends on it (a multiplexer gains most from many at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenPattern {
    /// Several at a time; each sends 1 byte, half-closes, and reads the
    /// echo to the end.
    HalfClose,
    /// One at a time: connect, send 1 byte, read the echo, close (a client
    /// that opens a connection per request).
    OneAtATime,
}

/// Opens `count` streams in `pattern` (`concurrency` at a time for
/// [`OpenPattern::HalfClose`]), each echoing 1 byte.
///
/// # Errors
/// The first failed stream or short echo.
pub async fn open_rate(
    path: &BenchPath,
    count: u32,
    pattern: OpenPattern,
    concurrency: usize,
    progress: &Progress,
    label: &str,
) -> Result<Opens, BenchError> {
    let concurrency = match pattern {
        OpenPattern::HalfClose => concurrency.max(1),
        OpenPattern::OneAtATime => 1,
    };
    let progress = progress.phase(
        format!("{label}: open+echo+close ×{concurrency}"),
        u64::from(count),
        false,
    );
    let left = Arc::new(AtomicU64::new(u64::from(count)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (path, left, progress) = (path.clone(), left.clone(), progress.clone());
        tasks.spawn(async move {
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let mut s = path.open(BenchHeader::new(BenchMode::Echo, 0)).await?;
                s.write.write_chunk(Bytes::from_static(b"x")).await?;
                if pattern == OpenPattern::OneAtATime {
                    s.read_exact(1, "open+echo").await?;
                    s.write.finish().await?;
                    progress.inc(1);
                    continue; // dropped: closed
                }
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
        pattern,
        concurrency,
        secs,
        per_s: f64::from(count) / secs.max(1e-9),
    })
}
