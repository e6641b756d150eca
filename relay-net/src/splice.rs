//! The splice: copy both ways between two byte streams until both finish.
//!
//! Written once for every pair the project needs (QUIC⇄QUIC at the relay,
//! TCP⇄QUIC at the agent and the client, stdio⇄QUIC for `connect`):
//! - a clean end of one direction is mirrored as a clean end (QUIC finish,
//!   TCP half-close), so half-closed protocols work;
//! - a failure of one direction aborts *both* directions on both sides (QUIC
//!   reset/stop-sending, TCP RST), so a truncated transfer never looks
//!   complete and no half of a dead pair lingers;
//! - chunks move as `Bytes` without copies between QUIC streams, and with
//!   64 KiB reads on TCP (8 KiB costs ~6% more CPU per GiB, notes/quinn.md);
//! - they move in batches: QUIC hands over one chunk per received frame
//!   (~1.2 KiB), so every chunk ready is taken at once and written to TCP
//!   with one `writev`, not one system call each.

use std::future::Future;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use proto::ErrorCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Read size for byte-stream sources.
const READ_SIZE: usize = 64 * 1024;
/// Chunks moved per read and write at most.
const BATCH: usize = 16;
/// Below this much room left in the read buffer, a new one is allocated.
/// Chunks handed on share their buffer until QUIC has them acknowledged,
/// so small reads (an interactive session, a ping) keep filling one
/// allocation instead of taking a fresh 64 KiB each.
const MIN_READ: usize = 8 * 1024;

/// Why a direction of a splice ended abnormally.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Failure {
    /// The code to pass on to the other side (the peer's reset code if the
    /// failure was a reset).
    pub code: ErrorCode,
    /// A human description.
    pub reason: String,
    /// The failure was the peer's STOP_SENDING on the sink: it will not read
    /// more, but what it sends the other way (a refusal, say) still counts.
    pub stopped: bool,
}

impl Failure {
    /// A failure with this code and description.
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> Failure {
        Failure {
            code,
            reason: reason.into(),
            stopped: false,
        }
    }

    fn io(err: &std::io::Error) -> Failure {
        Failure::new(ErrorCode::STREAM_ABORTED, err.to_string())
    }
}

/// A source of chunks.
pub trait ChunkRead: Send {
    /// The next chunk, `Ok(None)` at a clean end.
    fn read_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, Failure>> + Send;
    /// As many chunks as are ready, at least one, into `out` (not empty);
    /// `Ok(0)` at a clean end. By default, one chunk.
    fn read_chunks(
        &mut self,
        out: &mut [Bytes],
    ) -> impl Future<Output = Result<usize, Failure>> + Send {
        read_one(self, out)
    }
    /// Tells the sender to stop: the data will not be delivered.
    fn abort(&mut self, code: ErrorCode);
}

/// [`ChunkRead::read_chunks`] one chunk at a time (its default).
///
/// # Errors
/// As `read_chunk`.
pub async fn read_one<R: ChunkRead + ?Sized>(
    src: &mut R,
    out: &mut [Bytes],
) -> Result<usize, Failure> {
    Ok(match (src.read_chunk().await?, out.first_mut()) {
        (Some(chunk), Some(slot)) => {
            *slot = chunk;
            1
        }
        _ => 0,
    })
}

/// A sink of chunks.
pub trait ChunkWrite: Send {
    /// Writes a whole chunk.
    fn write_chunk(&mut self, chunk: Bytes) -> impl Future<Output = Result<(), Failure>> + Send;
    /// Writes all of `chunks`, in order (they are left empty or stale). By
    /// default, one at a time.
    fn write_chunks(
        &mut self,
        chunks: &mut [Bytes],
    ) -> impl Future<Output = Result<(), Failure>> + Send {
        async move {
            for chunk in chunks {
                self.write_chunk(std::mem::take(chunk)).await?;
            }
            Ok(())
        }
    }
    /// Signals a clean end of data.
    fn finish(&mut self) -> impl Future<Output = Result<(), Failure>> + Send;
    /// Signals that the data is incomplete.
    fn abort(&mut self, code: ErrorCode);
}

/// How one direction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Everything was delivered and the end mirrored.
    Finished,
    /// Reading failed (peer reset, TCP error); the sink was aborted.
    ReadFailed(Failure),
    /// Writing failed (peer stopped, TCP error); the source was aborted.
    WriteFailed(Failure),
    /// The other direction failed, so this one was aborted.
    Aborted,
}

/// One direction's bytes and ending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes delivered to the sink.
    pub bytes: u64,
    /// How it ended.
    pub end: End,
}

impl Transfer {
    /// Whether this direction's failure must abort the other direction too.
    /// A peer that only stopped reading still gets to finish what it sends
    /// (a refusal frame behind a STOP_SENDING, say).
    fn aborts_both(&self) -> bool {
        match &self.end {
            End::ReadFailed(_) => true,
            End::WriteFailed(f) => !f.stopped,
            _ => false,
        }
    }
}

/// Both directions of a splice, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpliceOutcome {
    /// From the first pair's reader to the second pair's writer.
    pub forward: Transfer,
    /// From the second pair's reader to the first pair's writer.
    pub backward: Transfer,
}

impl SpliceOutcome {
    /// The first failure, if any direction failed.
    pub fn failure(&self) -> Option<&Failure> {
        [&self.forward.end, &self.backward.end]
            .into_iter()
            .find_map(|e| match e {
                End::ReadFailed(f) | End::WriteFailed(f) => Some(f),
                _ => None,
            })
    }
}

/// Copies `prefix` then everything from `src` into `dst`, mirroring the end.
/// On failure the *other* half of the failing pair is aborted here.
pub async fn pump<R: ChunkRead, W: ChunkWrite>(
    src: &mut R,
    dst: &mut W,
    prefix: Bytes,
) -> Transfer {
    let mut bytes = 0u64;
    let mut batch: [Bytes; BATCH] = Default::default();
    let mut ready = usize::from(!prefix.is_empty());
    batch[0] = prefix;
    loop {
        if ready == 0 {
            ready = match src.read_chunks(&mut batch).await {
                Ok(0) => {
                    let end = match dst.finish().await {
                        Ok(()) => End::Finished,
                        Err(f) => End::WriteFailed(f),
                    };
                    return Transfer { bytes, end };
                }
                Ok(n) => n,
                Err(f) => {
                    dst.abort(f.code);
                    return Transfer {
                        bytes,
                        end: End::ReadFailed(f),
                    };
                }
            };
        }
        let chunks = &mut batch[..ready];
        let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        if let Err(f) = dst.write_chunks(chunks).await {
            src.abort(f.code);
            return Transfer {
                bytes,
                end: End::WriteFailed(f),
            };
        }
        // Let go of the buffers now, not at the next read: an idle stream
        // must not pin what it forwarded last.
        chunks.fill(Bytes::new());
        bytes += len;
        ready = 0;
    }
}

/// Splices `(a_read, a_write)` with `(b_read, b_write)`: `a_prefix` is sent
/// to `b_write` first, `b_prefix` to `a_write`. Returns when both directions
/// have ended; if one fails, the other is aborted at once.
pub async fn splice<AR, AW, BR, BW>(
    a_read: &mut AR,
    a_write: &mut AW,
    b_read: &mut BR,
    b_write: &mut BW,
    a_prefix: Bytes,
    b_prefix: Bytes,
) -> SpliceOutcome
where
    AR: ChunkRead,
    AW: ChunkWrite,
    BR: ChunkRead,
    BW: ChunkWrite,
{
    let aborted = Transfer {
        bytes: 0,
        end: End::Aborted,
    };
    let (forward, backward) = {
        let fwd = pump(a_read, b_write, a_prefix);
        let bwd = pump(b_read, a_write, b_prefix);
        tokio::pin!(fwd, bwd);
        tokio::select! {
            f = &mut fwd => {
                if f.aborts_both() { (f, None) } else { let b = bwd.await; (f, Some(b)) }
            }
            b = &mut bwd => {
                if b.aborts_both() { (aborted.clone(), Some(b)) } else { let f = fwd.await; (f, Some(b)) }
            }
        }
    };
    // A failed direction cut the splice short: abort what is still running.
    match (forward, backward) {
        (forward, Some(backward)) if forward.end == End::Aborted => {
            a_read.abort(backward_code(&backward));
            b_write.abort(backward_code(&backward));
            SpliceOutcome { forward, backward }
        }
        (forward, None) => {
            let code = backward_code(&forward);
            b_read.abort(code);
            a_write.abort(code);
            SpliceOutcome {
                forward,
                backward: aborted,
            }
        }
        (forward, Some(backward)) => SpliceOutcome { forward, backward },
    }
}

fn backward_code(t: &Transfer) -> ErrorCode {
    match &t.end {
        End::ReadFailed(f) | End::WriteFailed(f) => f.code,
        _ => ErrorCode::STREAM_ABORTED,
    }
}

// ---- QUIC streams ---------------------------------------------------------

fn code_of(code: quinn::VarInt) -> ErrorCode {
    ErrorCode(u32::try_from(code.into_inner()).unwrap_or(ErrorCode::STREAM_ABORTED.0))
}

/// A stream ended by its connection's end: the error the peer closed the
/// connection with (`REVOKED`, say), else `STREAM_ABORTED`. The splice does
/// not know which peer that was (the relay splices clients to agents), so
/// the words name none; the code says what happened.
fn connection_lost(e: &quinn::ConnectionError) -> Failure {
    let code = match e {
        quinn::ConnectionError::ApplicationClosed(close) => Some(code_of(close.error_code)),
        _ => None,
    }
    .filter(|code| *code != ErrorCode::NO_ERROR)
    .unwrap_or(ErrorCode::STREAM_ABORTED);
    Failure::new(code, format!("connection lost: {e}"))
}

fn read_failure(e: quinn::ReadError) -> Failure {
    match e {
        quinn::ReadError::Reset(code) => Failure::new(
            code_of(code),
            format!("stream reset by peer: {}", code_of(code).description()),
        ),
        quinn::ReadError::ConnectionLost(e) => connection_lost(&e),
        e => Failure::new(ErrorCode::STREAM_ABORTED, e.to_string()),
    }
}

impl ChunkRead for quinn::RecvStream {
    async fn read_chunk(&mut self) -> Result<Option<Bytes>, Failure> {
        match quinn::RecvStream::read_chunk(self, usize::MAX, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(e) => Err(read_failure(e)),
        }
    }

    async fn read_chunks(&mut self, out: &mut [Bytes]) -> Result<usize, Failure> {
        match quinn::RecvStream::read_chunks(self, out).await {
            Ok(n) => Ok(n.unwrap_or(0)),
            Err(e) => Err(read_failure(e)),
        }
    }

    fn abort(&mut self, code: ErrorCode) {
        let _ = self.stop(code.0.into());
    }
}

fn write_failure(e: quinn::WriteError) -> Failure {
    match e {
        quinn::WriteError::Stopped(code) => Failure {
            stopped: true,
            ..Failure::new(
                code_of(code),
                format!("peer stopped reading: {}", code_of(code).description()),
            )
        },
        quinn::WriteError::ConnectionLost(e) => connection_lost(&e),
        e => Failure::new(ErrorCode::STREAM_ABORTED, e.to_string()),
    }
}

impl ChunkWrite for quinn::SendStream {
    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), Failure> {
        quinn::SendStream::write_chunk(self, chunk)
            .await
            .map_err(write_failure)
    }

    async fn write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<(), Failure> {
        quinn::SendStream::write_all_chunks(self, chunks)
            .await
            .map_err(write_failure)
    }

    async fn finish(&mut self) -> Result<(), Failure> {
        quinn::SendStream::finish(self)
            .map_err(|e| Failure::new(ErrorCode::STREAM_ABORTED, e.to_string()))
    }

    fn abort(&mut self, code: ErrorCode) {
        let _ = self.reset(code.0.into());
    }
}

// ---- byte streams (TCP, stdio) --------------------------------------------

/// How to abort a byte stream half: for TCP, an RST instead of a FIN.
pub trait Abortable: Sized {
    /// Consumes the half so its close signals an error, where the kind allows.
    fn abort_io(self) {}
}

impl Abortable for tokio::net::tcp::OwnedReadHalf {
    fn abort_io(self) {
        // Linger 0: closing the socket sends RST, so the TCP peer sees an
        // error rather than a clean end of a truncated stream.
        let _ = socket2::SockRef::from(self.as_ref()).set_linger(Some(std::time::Duration::ZERO));
    }
}

impl Abortable for tokio::net::tcp::OwnedWriteHalf {
    fn abort_io(self) {
        let _ = socket2::SockRef::from(self.as_ref()).set_linger(Some(std::time::Duration::ZERO));
        // Dropping the half would send FIN first; `forget` leaves the RST to
        // the close of the socket.
        self.forget();
    }
}

impl Abortable for tokio::io::Stdin {}
impl Abortable for tokio::io::Stdout {}
impl Abortable for tokio::io::DuplexStream {}
impl Abortable for tokio::io::ReadHalf<tokio::io::DuplexStream> {}
impl Abortable for tokio::io::WriteHalf<tokio::io::DuplexStream> {}

fn aborted_io() -> Failure {
    Failure::new(ErrorCode::STREAM_ABORTED, "stream aborted")
}

/// A byte-stream reader as a chunk source.
#[derive(Debug)]
pub struct IoRead<R> {
    inner: Option<R>,
    buf: BytesMut,
}

impl<R> IoRead<R> {
    /// Wraps a reader.
    pub fn new(inner: R) -> IoRead<R> {
        IoRead {
            inner: Some(inner),
            buf: BytesMut::new(),
        }
    }
}

impl<R: AsyncRead + Abortable + Unpin + Send> ChunkRead for IoRead<R> {
    async fn read_chunk(&mut self) -> Result<Option<Bytes>, Failure> {
        let inner = self.inner.as_mut().ok_or_else(aborted_io)?;
        if self.buf.capacity() < MIN_READ {
            self.buf.reserve(READ_SIZE);
        }
        match inner.read_buf(&mut self.buf).await {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(self.buf.split().freeze())),
            Err(e) => Err(Failure::io(&e)),
        }
    }

    fn abort(&mut self, _code: ErrorCode) {
        if let Some(inner) = self.inner.take() {
            inner.abort_io();
        }
    }
}

/// A byte-stream writer as a chunk sink.
#[derive(Debug)]
pub struct IoWrite<W> {
    inner: Option<W>,
}

impl<W> IoWrite<W> {
    /// Wraps a writer.
    pub fn new(inner: W) -> IoWrite<W> {
        IoWrite { inner: Some(inner) }
    }
}

impl<W: AsyncWrite + Abortable + Unpin + Send> ChunkWrite for IoWrite<W> {
    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), Failure> {
        let inner = self.inner.as_mut().ok_or_else(aborted_io)?;
        inner.write_all(&chunk).await.map_err(|e| Failure::io(&e))?;
        inner.flush().await.map_err(|e| Failure::io(&e))
    }

    async fn write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<(), Failure> {
        let inner = self.inner.as_mut().ok_or_else(aborted_io)?;
        let mut next = 0;
        loop {
            while chunks.get(next).is_some_and(Bytes::is_empty) {
                next += 1;
            }
            let rest = &mut chunks[next..];
            if rest.is_empty() {
                break;
            }
            let mut slices = [IoSlice::new(&[]); BATCH];
            let count = rest.len().min(BATCH);
            for (slice, chunk) in slices.iter_mut().zip(rest.iter()) {
                *slice = IoSlice::new(chunk);
            }
            let mut written = match inner.write_vectored(&slices[..count]).await {
                Ok(0) => return Err(Failure::io(&std::io::ErrorKind::WriteZero.into())),
                Ok(n) => n,
                Err(e) => return Err(Failure::io(&e)),
            };
            for chunk in rest.iter_mut() {
                let step = written.min(chunk.len());
                chunk.advance(step);
                written -= step;
                if written == 0 {
                    break;
                }
            }
        }
        inner.flush().await.map_err(|e| Failure::io(&e))
    }

    async fn finish(&mut self) -> Result<(), Failure> {
        let inner = self.inner.as_mut().ok_or_else(aborted_io)?;
        inner.shutdown().await.map_err(|e| Failure::io(&e))
    }

    fn abort(&mut self, _code: ErrorCode) {
        if let Some(inner) = self.inner.take() {
            inner.abort_io();
        }
    }
}

/// TCP halves as splice ends.
pub type TcpRead = IoRead<tokio::net::tcp::OwnedReadHalf>;
/// TCP halves as splice ends.
pub type TcpWrite = IoWrite<tokio::net::tcp::OwnedWriteHalf>;

/// Splits a TCP stream into splice halves (with Nagle off: forwarded
/// protocols do their own batching, and interactive ones need low latency).
pub fn tcp_halves(stream: tokio::net::TcpStream) -> (TcpRead, TcpWrite) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    (IoRead::new(r), IoWrite::new(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A batch written to a pipe that takes a few bytes at a time
        /// arrives whole and in order (partial writes resume mid-chunk).
        #[test]
        fn write_chunks_survives_partial_writes(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..BATCH + 8),
            pipe in 1usize..64,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let expected: Vec<u8> = chunks.concat();
            let received = rt.block_on(async {
                let (near, mut far) = tokio::io::duplex(pipe);
                let mut sink = IoWrite::new(near);
                let mut batch: Vec<Bytes> = chunks.into_iter().map(Bytes::from).collect();
                let write = async {
                    sink.write_chunks(&mut batch).await?;
                    sink.finish().await
                };
                let mut received = Vec::new();
                let (written, read) = tokio::join!(write, far.read_to_end(&mut received));
                written.map_err(|f| TestCaseError::fail(f.reason))?;
                read.map_err(|e| TestCaseError::fail(e.to_string()))?;
                Ok::<_, TestCaseError>(received)
            })?;
            prop_assert_eq!(received, expected);
        }
    }
}
