//! The benchmark service, written once: a sink, source and echo on any
//! pair of splice ends ([`ChunkRead`]/[`ChunkWrite`]). `relay-agent` serves
//! it on streams to its built-in `bench` target (`--expose-bench`) and on
//! TCP (`relay-agent bench-server`, the direct baseline); `relay-client
//! bench-quic-server` serves it on plain quinn streams (the one-hop QUIC
//! baseline). The sub-protocol is documented with [`proto::BenchHeader`].

use std::time::Duration;

use crate::splice::{pump, ChunkRead, ChunkWrite, End, Failure};
use bytes::{Bytes, BytesMut};
use proto::{BenchHeader, BenchMode, ErrorCode};

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
