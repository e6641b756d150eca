//! Measurements behind `relay-client bench`: bulk throughput both ways (1
//! and N streams), 64-byte ping-pong latency and the stream-open rate, over
//! a [`BenchPath`]: the tunnel to an agent's built-in `bench` target, or
//! plain TCP to a `relay-agent bench-server` (the direct baseline, or the
//! same server behind `ssh -L` in `bench/compare.sh`).
//!
//! Both paths speak the same sub-protocol ([`proto::BenchHeader`]) through
//! the same splice traits, so the figures differ only by the path. Nothing
//! here asserts a time: it measures and reports.
//!
//! Layout: [`path`] (where the streams go, one stream), [`measure`] (the
//! measurements and their results), [`meter`] (progress bars, CPU and
//! memory of the processes on the path); here the options, the error and
//! the plain-quinn server of the baseline.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use proto::ErrorCode;
use relay_net::splice::Failure;
use serde::Serialize;

use crate::OpenError;

pub mod measure;
pub mod meter;
pub mod path;

pub use measure::{
    bulk, measure, open_rate, ping_pong, Bulk, Latency, Measurements, OpenPattern, Opens, PING_LEN,
};
pub use meter::{cpu_seconds, peak_rss_kib, CpuMeter, Progress};
pub use path::{BenchPath, BenchStream};

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
        " (an open-rate limit: for the open-rate test, measure fewer streams with --opens, \
         or raise the limit: bursts of twice `relay-server run --max-open-rate` on the relay \
         path, of twice `relay-agent --max-direct-open-rate` end to end)"
    } else {
        ""
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
    /// Streams opened (1-byte echo) for each open-rate pattern.
    pub opens: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            streams: 8,
            bytes: 1 << 30,
            pings: 5000,
            opens: 1500,
        }
    }
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
