//! Frames on a quinn stream: the few frames at the start of a stream (and the
//! control stream's frames) are read through a small buffer; whatever bytes
//! arrive behind a frame stay in the buffer as the start of the raw data.

use bytes::{Bytes, BytesMut};
use proto::{Channel, Data, DecodeError, ErrorCode, Frame};
use quinn::{RecvStream, SendStream};
use tokio::sync::mpsc;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The stream ended before a whole frame arrived.
    #[error("stream ended before a complete frame")]
    Truncated,
    /// The stream was reset or the connection lost.
    #[error("stream failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// The frame did not arrive in time.
    #[error("no frame within {0:?}")]
    Timeout(std::time::Duration),
}

impl FrameError {
    /// The code to reset the stream (or close the connection) with.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::Decode(e) => e.code(),
            FrameError::Truncated => ErrorCode::PROTOCOL_VIOLATION,
            FrameError::Read(_) => ErrorCode::STREAM_ABORTED,
            FrameError::Timeout(_) => ErrorCode::LIMIT_EXCEEDED,
        }
    }
}

/// The receiving half of a stream with its frame buffer.
#[derive(Debug)]
pub struct FrameReader {
    /// The stream.
    pub recv: RecvStream,
    buf: BytesMut,
}

impl FrameReader {
    /// Wraps a receive stream.
    pub fn new(recv: RecvStream) -> FrameReader {
        FrameReader {
            recv,
            buf: BytesMut::new(),
        }
    }

    /// Reads the next frame; `Ok(None)` on a clean end of stream between frames.
    ///
    /// # Errors
    /// A decode error, a truncated frame or a stream failure.
    ///
    /// # Cancel safety
    /// Cancel safe: bytes read so far stay buffered.
    pub async fn read(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some(frame) = Frame::decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            match self.recv.read_chunk(proto::MAX_FRAME_LEN, true).await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk.bytes),
                None if self.buf.is_empty() => return Ok(None),
                None => return Err(FrameError::Truncated),
            }
        }
    }

    /// Reads one frame, failing on end of stream or after `timeout`.
    ///
    /// # Errors
    /// As [`FrameReader::read`], plus `Truncated` on a clean end and `Timeout`.
    pub async fn expect(&mut self, timeout: std::time::Duration) -> Result<Frame, FrameError> {
        match tokio::time::timeout(timeout, self.read()).await {
            Err(_) => Err(FrameError::Timeout(timeout)),
            Ok(r) => r?.ok_or(FrameError::Truncated),
        }
    }

    /// Gives back the stream and the bytes already read behind the last frame.
    pub fn into_parts(self) -> (RecvStream, Bytes) {
        (self.recv, self.buf.freeze())
    }
}

/// Writes one frame.
///
/// # Errors
/// If the stream was stopped or the connection lost.
pub async fn write_frame(
    send: &mut SendStream,
    frame: impl Into<Frame>,
) -> Result<(), quinn::WriteError> {
    send.write_chunk(frame.into().to_bytes()).await
}

/// Sends `Refused` and finishes the stream, stopping the peer's sending side
/// so that any early data it sent is discarded (DESIGN "Protocol").
pub async fn refuse(send: &mut SendStream, recv: &mut RecvStream, refused: proto::Refused) {
    let code = refused.code;
    let _ = write_frame(send, refused).await;
    let _ = send.finish();
    let _ = recv.stop(code.0.into());
}

/// Why [`send_frames`] stopped before every frame was sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A write failed: the peer stopped the stream or the connection is gone.
    #[error("stream failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// The stream was already finished or reset (by this side).
    #[error("the stream was already closed by this side")]
    Finished,
}

/// Queued frames are coalesced into writes of about this size.
const BATCH: usize = 256 * 1024;

/// How long [`send_frames`] waits for the peer to acknowledge the end of
/// the stream, so a process that exits right after does not cut it off.
const FINISH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Writes the frames of `rx` to `send`, coalescing queued frames into one
/// write, until every sender is gone; then finishes the stream and waits
/// (briefly) until the peer has it all. The one writer of a session stream,
/// fed by its producers (output pipes, stdin, signals) through a bounded
/// queue, so a slow peer slows only this stream's producers.
///
/// Returns the `Data` payload bytes written.
///
/// # Errors
/// The stream failed (peer gone, stopped or reset), as quinn reported it.
pub async fn send_frames(
    mut send: SendStream,
    mut rx: mpsc::Receiver<Frame>,
) -> Result<u64, SendError> {
    let mut bytes = 0u64;
    let mut buf = BytesMut::new();
    while let Some(frame) = rx.recv().await {
        let mut next = Some(frame);
        while let Some(frame) = next.take() {
            if let Frame::Data(d) = &frame {
                bytes += d.bytes.len() as u64;
            }
            frame.encode(&mut buf);
            if buf.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        send.write_chunk(buf.split().freeze()).await?;
    }
    send.finish().map_err(|_| SendError::Finished)?;
    let _ = tokio::time::timeout(FINISH_WAIT, send.stopped()).await;
    Ok(bytes)
}

/// Queues `bytes` on `channel` as [`Data`] frames of at most the frame limit.
/// `false` if the writer is gone.
pub async fn send_data(tx: &mpsc::Sender<Frame>, channel: Channel, bytes: Bytes) -> bool {
    for data in Data::chunks(channel, bytes) {
        if tx.send(data.into()).await.is_err() {
            return false;
        }
    }
    true
}
