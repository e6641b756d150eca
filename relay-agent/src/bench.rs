//! The built-in benchmark target: a sink, source and echo service inside the
//! agent process, so `relay-client bench` measures the tunnel and not some
//! server behind it.
//!
//! Off by default; `relay-agent --expose-bench` exposes it as target
//! `bench` ([`crate::allowlist::Target::Bench`]). A stream to it goes through
//! exactly the checks of a real target (relay policy, agent allowlist) and
//! gets `Accepted` like one; only the dial is replaced by [`serve`] on the
//! QUIC stream itself (no TCP hop).
//!
//! The sub-protocol, carried in the stream's raw bytes after `Accepted`
//! (header codec in [`proto::BenchHeader`]):
//!
//! ```text
//! client → agent:  mode: u8 | len: u64 BE
//!   1 sink    client sends bytes and finishes; agent answers count: u64 BE, finishes
//!   2 source  agent sends `len` bytes and finishes; client sends only its finish
//!   3 echo    agent echoes until the client finishes, then finishes
//! ```
//!
//! `relay-agent bench-server --listen ADDR` ([`serve_tcp`]) serves the very
//! same sub-protocol on plain TCP, in a process of its own, as the direct-TCP
//! baseline that `relay-client bench` compares the tunnel with.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proto::{BenchHeader, BenchMode, ErrorCode};
use relay_net::splice::{pump, tcp_halves, ChunkRead, ChunkWrite, End, Failure};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Size of the source's chunks: one static buffer, cloned (not copied) into
/// every `Bytes` it sends.
const SOURCE_CHUNK: usize = 1 << 20;

static ZEROS: [u8; SOURCE_CHUNK] = [0; SOURCE_CHUNK];

/// What one benchmark stream did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// The mode the client asked for.
    pub mode: BenchMode,
    /// Bytes read from the client after the header.
    pub read: u64,
    /// Bytes written to the client.
    pub written: u64,
}

/// Reads the header (within `header_timeout`), then serves the mode; `early`
/// holds bytes already read from `read`.
///
/// # Errors
/// A malformed header, a missing one, or a failure of either direction; the
/// stream has then been aborted both ways.
pub async fn serve<R: ChunkRead, W: ChunkWrite>(
    read: &mut R,
    write: &mut W,
    early: Bytes,
    header_timeout: Duration,
) -> Result<Served, Failure> {
    let mut buf = BytesMut::from(early);
    let header = match tokio::time::timeout(header_timeout, read_header(read, &mut buf)).await {
        Ok(Ok(h)) => h,
        Ok(Err(f)) => return Err(abort_both(read, write, f)),
        Err(_) => {
            let f = Failure::new(
                ErrorCode::LIMIT_EXCEEDED,
                format!("no benchmark header within {header_timeout:?}"),
            );
            return Err(abort_both(read, write, f));
        }
    };
    match header.mode {
        BenchMode::Sink => {
            let mut count = buf.len() as u64;
            loop {
                match read.read_chunk().await {
                    Ok(Some(chunk)) => count += chunk.len() as u64,
                    Ok(None) => break,
                    Err(f) => {
                        write.abort(f.code);
                        return Err(f);
                    }
                }
            }
            let answer = Bytes::copy_from_slice(&count.to_be_bytes());
            let sent = answer.len() as u64;
            write.write_chunk(answer).await?;
            write.finish().await?;
            Ok(Served {
                mode: header.mode,
                read: count,
                written: sent,
            })
        }
        BenchMode::Source => {
            let chunk = Bytes::from_static(&ZEROS);
            let mut left = header.len;
            while left > 0 {
                let n = usize::try_from(left)
                    .unwrap_or(SOURCE_CHUNK)
                    .min(SOURCE_CHUNK);
                if let Err(f) = write.write_chunk(chunk.slice(..n)).await {
                    read.abort(f.code);
                    return Err(f);
                }
                left -= n as u64;
            }
            write.finish().await?;
            // The client sends nothing but its finish; wait for it so the
            // stream closes cleanly on both sides.
            let mut extra = buf.len() as u64;
            while let Some(c) = read.read_chunk().await? {
                extra += c.len() as u64;
            }
            Ok(Served {
                mode: header.mode,
                read: extra,
                written: header.len,
            })
        }
        BenchMode::Echo => {
            let t = pump(read, write, buf.freeze()).await;
            match t.end {
                End::Finished => Ok(Served {
                    mode: header.mode,
                    read: t.bytes,
                    written: t.bytes,
                }),
                End::ReadFailed(f) | End::WriteFailed(f) => Err(f),
                End::Aborted => Err(Failure::new(ErrorCode::STREAM_ABORTED, "aborted")),
            }
        }
    }
}

async fn read_header<R: ChunkRead>(
    read: &mut R,
    buf: &mut BytesMut,
) -> Result<BenchHeader, Failure> {
    loop {
        match BenchHeader::decode(buf) {
            Ok(Some(h)) => return Ok(h),
            Ok(None) => {}
            Err(e) => return Err(Failure::new(ErrorCode::PROTOCOL_VIOLATION, e.to_string())),
        }
        match read.read_chunk().await? {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None => {
                return Err(Failure::new(
                    ErrorCode::PROTOCOL_VIOLATION,
                    "stream ended before the benchmark header",
                ))
            }
        }
    }
}

fn abort_both<R: ChunkRead, W: ChunkWrite>(read: &mut R, write: &mut W, f: Failure) -> Failure {
    read.abort(f.code);
    write.abort(f.code);
    f
}

/// Serves the benchmark sub-protocol on every TCP connection accepted on
/// `listener`, until `shutdown` (`relay-agent bench-server`).
pub async fn serve_tcp(listener: TcpListener, shutdown: CancellationToken) {
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(err = %e, "accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        tasks.spawn(async move {
            let (mut r, mut w) = tcp_halves(tcp);
            if let Err(f) = serve(&mut r, &mut w, Bytes::new(), Duration::from_secs(10)).await {
                tracing::debug!(err = %f, "benchmark connection failed");
            }
        });
    }
    tasks.close();
}
