//! The TCP carrier (issue #15): QUIC datagrams carried over a TCP stream
//! that opens with a TLS handshake, where UDP is blocked, under quinn, so
//! everything above the socket (mutual TLS, streams, policy, audit, direct
//! paths) stays the same. Each datagram then travels as one TLS record's
//! payload, sealed once, by QUIC ([`proto::carrier`], [`handshake`]).
//!
//! ```text
//! agent/client: quinn ─▶ StreamSocket ─▶ TCP [─▶ HTTP CONNECT proxy] ─▶ relay's TCP listener
//! relay:        quinn ─▶ Forwarding ─▶ Carriers ─┬─▶ UDP socket
//!                                                └─▶ one TCP stream per carrier, by virtual address
//! ```
//!
//! Both ends are an [`quinn::AsyncUdpSocket`]: [`StreamSocket`] (one
//! stream, the agent's or client's endpoint) and [`Carriers`] (the relay's
//! UDP socket plus every carrier stream). The relay gives each carrier a
//! virtual peer address from the discard prefix `100::/64` (RFC 6666, never
//! a real peer), so quinn and the relay's routes tell carriers apart as they
//! tell UDP peers apart.
//!
//! A carrier behaves like a path, not like a pipe: what cannot be written at
//! once waits in a bounded outbox, and a full outbox drops the datagram, as
//! a full router queue would; QUIC's loss recovery and congestion control
//! then slow the sender, instead of the queue growing without end.

mod handshake;
mod hello;
mod relay;
mod stream;

use std::io::{ErrorKind, IoSlice, IoSliceMut};
use std::net::{Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use proto::carrier::HEADER;
use quinn::udp::RecvMeta;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

pub use relay::{serve, Carriers, TcpLimits, Web, WebServed, WebStream};
pub use stream::{connect, CarrierError, StreamSocket};

/// Bytes waiting to be written on one carrier before new datagrams are
/// dropped: about 4 ms at 1 Gbit/s, enough to absorb a burst of a paced
/// sender, small enough that a slow link does not queue seconds.
const OUTBOX_LIMIT: usize = 512 << 10;

/// Bytes waiting in all the relay's outboxes together: each carrier may
/// queue up to [`OUTBOX_LIMIT`], but thousands of peers that stop reading
/// must not hold gigabytes. Past it, datagrams to carriers are dropped.
const RELAY_OUTBOX_BUDGET: usize = 256 << 20;

/// Bytes asked of a carrier stream per read.
const READ_CHUNK: usize = 64 << 10;

/// A carrier on which nothing arrives for this long is closed: every QUIC
/// connection sends keep-alives well within it, and its idle timeout ends
/// it sooner, so only a peer that never spoke QUIC is left to end here.
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether `addr` is a carrier's virtual address (`100::/64`).
pub fn is_virtual(addr: SocketAddr) -> bool {
    matches!(addr, SocketAddr::V6(a) if a.ip().segments()[..4] == [0x100, 0, 0, 0])
}

/// The virtual address of carrier number `n` (on the relay), or of a
/// relay name only a proxy resolves (on agents and clients,
/// [`crate::dial::Candidate::at_proxy`]).
pub(crate) fn virtual_addr(n: u64) -> SocketAddr {
    let low = n.to_be_bytes();
    let ip = Ipv6Addr::from([
        0x01, 0, 0, 0, 0, 0, 0, 0, low[0], low[1], low[2], low[3], low[4], low[5], low[6], low[7],
    ]);
    SocketAddr::new(ip.into(), 443)
}

/// The write half of a carrier stream.
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Hands one datagram read from a carrier to quinn: copied into `buf`, as
/// coming from `from`. Whether it fit (one larger than quinn accepts is
/// dropped, as a UDP socket would truncate it).
fn deliver(datagram: &[u8], from: SocketAddr, buf: &mut [u8], meta: &mut RecvMeta) -> bool {
    let Some(to) = buf.get_mut(..datagram.len()) else {
        return false;
    };
    to.copy_from_slice(datagram);
    *meta = RecvMeta {
        addr: from,
        len: datagram.len(),
        stride: datagram.len(),
        ..RecvMeta::default()
    };
    true
}

/// The read half of a carrier stream and what was read of it but not yet
/// handed to quinn. Both sockets read it on quinn's own task, in
/// `poll_recv`: no reader task, no channel, no wake-up in between.
struct FrameReader {
    half: Box<dyn AsyncRead + Send + Unpin>,
    buf: BytesMut,
    /// When bytes last arrived (the relay closes a carrier silent for [`IDLE`]).
    last: Instant,
    /// The stream ended: nothing more is read.
    done: bool,
}

/// What one [`FrameReader::poll`] came to.
enum Read {
    /// The buffers are full; the stream may have more.
    Full,
    /// Nothing more now; the waker of the poll's context is registered.
    Pending,
    /// The stream ended in this poll, and why (said once).
    Ended(std::io::Error),
    /// It had ended before.
    Done,
}

impl FrameReader {
    fn new(half: Box<dyn AsyncRead + Send + Unpin>) -> FrameReader {
        FrameReader {
            half,
            buf: BytesMut::new(),
            last: Instant::now(),
            done: false,
        }
    }

    /// Reads datagrams into `bufs` (as coming from `from`) until they are
    /// full or the stream has nothing more now; how many, and why it stopped.
    fn poll(
        &mut self,
        cx: &mut Context,
        from: SocketAddr,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> (usize, Read) {
        let max = bufs.len().min(meta.len());
        let mut n = 0;
        if self.done {
            return (n, Read::Done);
        }
        loop {
            while n < max {
                match proto::carrier::decode(&mut self.buf) {
                    Ok(Some(datagram)) => {
                        n += usize::from(deliver(&datagram, from, &mut bufs[n], &mut meta[n]));
                    }
                    Ok(None) => break,
                    Err(e) => return (n, self.end(std::io::Error::new(ErrorKind::InvalidData, e))),
                }
            }
            if n == max {
                return (n, Read::Full);
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.half), cx, &mut self.buf) {
                Poll::Pending => {
                    // An idle carrier holds no read buffer (thousands of
                    // idle agents may sit on carriers, issue #19); the next
                    // read takes one again.
                    if self.buf.is_empty() {
                        self.buf = BytesMut::new();
                    }
                    return (n, Read::Pending);
                }
                Poll::Ready(Ok(0)) => return (n, self.end(ErrorKind::UnexpectedEof.into())),
                Poll::Ready(Ok(_)) => self.last = Instant::now(),
                Poll::Ready(Err(e)) => return (n, self.end(e)),
            }
        }
    }

    fn end(&mut self, why: std::io::Error) -> Read {
        self.done = true;
        Read::Ended(why)
    }
}

/// Datagrams to write on one carrier. Sent on the caller's thread when the
/// stream takes them at once (no task wake-up on the way out); what it does
/// not take waits, framed, for the link's writer task.
#[derive(Default)]
struct Outbox {
    state: Mutex<OutState>,
    ready: Notify,
    /// Bytes queued in every outbox sharing this budget (the relay's).
    budget: Option<Arc<AtomicUsize>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct OutState {
    /// Frames waiting for the writer task.
    frames: BytesMut,
    /// The stream's write half while no task is writing on it.
    writer: Option<Writer>,
    closed: bool,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An outbox whose queued bytes count against `budget` too.
    fn within(budget: Arc<AtomicUsize>) -> Outbox {
        Outbox {
            budget: Some(budget),
            ..Outbox::default()
        }
    }

    /// Sends the datagrams of one transmit (`contents`, a datagram every
    /// `segment` bytes) in one write, straight from quinn's buffer, when the
    /// stream takes them at once; what it does not take waits, framed, for
    /// the writer task. A datagram that does not fit the outbox (or the
    /// budget it shares) is dropped, as is everything once it is closed.
    fn push(&self, contents: &[u8], segment: usize) {
        let frames: Vec<([u8; HEADER], &[u8])> = contents
            .chunks(segment.max(1))
            .filter_map(|d| Some((proto::carrier::header(d.len()).ok()?, d)))
            .collect();
        let mut state = self.lock();
        if state.closed {
            return;
        }
        let before = state.frames.len();
        let mut written = if before == 0 {
            state.write_vectored(&frames)
        } else {
            0
        };
        for (header, datagram) in &frames {
            let len = HEADER + datagram.len();
            if written >= len {
                written -= len;
                continue;
            }
            if written > 0 {
                // The rest of a frame the stream took in part must follow.
                state
                    .frames
                    .extend_from_slice(header.get(written..).unwrap_or_default());
                state
                    .frames
                    .extend_from_slice(&datagram[written.saturating_sub(HEADER)..]);
                written = 0;
                continue;
            }
            let over_budget = self
                .budget
                .as_ref()
                .is_some_and(|budget| budget.load(Ordering::Relaxed) + len > RELAY_OUTBOX_BUDGET);
            if state.frames.len() + len <= OUTBOX_LIMIT && !over_budget {
                state.frames.extend_from_slice(header);
                state.frames.extend_from_slice(datagram);
            }
        }
        let sent = state.write_now();
        // The budget counts what stays queued.
        let after = state.frames.len();
        if let Some(budget) = &self.budget {
            if after > before {
                budget.fetch_add(after - before, Ordering::Relaxed);
            } else {
                budget.fetch_sub(before - after, Ordering::Relaxed);
            }
        }
        if sent {
            return;
        }
        drop(state);
        self.ready.notify_one();
    }

    /// Gives `n` queued bytes back to the shared budget.
    fn release(&self, n: usize) {
        if let Some(budget) = &self.budget {
            budget.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Waits until there is something to write and the stream is free;
    /// returns its write half and the frames; `None` once closed.
    async fn take(&self) -> Option<(Writer, BytesMut)> {
        loop {
            {
                let mut state = self.lock();
                if state.closed {
                    return None;
                }
                if !state.frames.is_empty() {
                    if let Some(writer) = state.writer.take() {
                        let frames = state.frames.split();
                        self.release(frames.len());
                        return Some((writer, frames));
                    }
                }
            }
            self.ready.notified().await;
        }
    }

    /// Gives the write half back to the outbox after the task wrote.
    fn give_back(&self, writer: Writer) {
        self.lock().writer = Some(writer);
        // Frames that came meanwhile are the task's to write.
        self.ready.notify_one();
    }

    fn close(&self) -> Option<Writer> {
        let writer = {
            let mut state = self.lock();
            state.closed = true;
            let left = state.frames.split();
            self.release(left.len());
            state.writer.take()
        };
        self.ready.notify_one();
        writer
    }
}

impl OutState {
    /// Writes `frames` on the caller's thread, headers and datagrams in one
    /// vectored write, if the stream is free; how many bytes it took.
    fn write_vectored(&mut self, frames: &[([u8; HEADER], &[u8])]) -> usize {
        let Some(writer) = self.writer.as_mut() else {
            return 0;
        };
        let mut slices: Vec<IoSlice<'_>> = frames
            .iter()
            .flat_map(|(header, datagram)| [IoSlice::new(header), IoSlice::new(datagram)])
            .collect();
        let mut unwritten = &mut slices[..];
        let mut cx = Context::from_waker(Waker::noop());
        let mut written = 0;
        while !unwritten.is_empty() {
            match Pin::new(&mut *writer).poll_write_vectored(&mut cx, unwritten) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    written += n;
                    IoSlice::advance_slices(&mut unwritten, n);
                }
                // Would block, or an error the task will meet too.
                _ => break,
            }
        }
        written
    }

    /// Writes the queued frames on the caller's thread if the stream is
    /// free and takes them without waiting; whether nothing is left for
    /// the task. (The stream is a TCP socket, directly or through a proxy:
    /// what it takes is sent, no flush is owed.)
    fn write_now(&mut self) -> bool {
        if self.frames.is_empty() {
            return true;
        }
        let Some(writer) = self.writer.as_mut() else {
            return false; // the task is writing: it takes these next
        };
        let mut cx = Context::from_waker(Waker::noop());
        while !self.frames.is_empty() {
            match Pin::new(&mut *writer).poll_write(&mut cx, &self.frames) {
                Poll::Ready(Ok(n)) if n > 0 => self.frames.advance(n),
                // Would block, or an error the task will meet too.
                _ => return false,
            }
        }
        true
    }
}

/// Writes what `outbox` queues on `writer` until the outbox is closed or a
/// write fails; shuts the stream's write side down; returns why it ended.
async fn write_link(writer: Writer, outbox: &Outbox) -> std::io::Error {
    outbox.give_back(writer);
    let written = async {
        while let Some((mut writer, frames)) = outbox.take().await {
            let written = async {
                writer.write_all(&frames).await?;
                writer.flush().await
            }
            .await;
            outbox.give_back(writer);
            written?;
        }
        Ok::<_, std::io::Error>(())
    }
    .await;
    if let Some(mut writer) = outbox.close() {
        let _ = writer.shutdown().await;
    }
    match written {
        Err(e) => e,
        Ok(()) => std::io::Error::other("carrier closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_addresses_are_recognised_and_distinct() {
        let a = virtual_addr(1);
        let b = virtual_addr(u64::MAX);
        assert!(is_virtual(a) && is_virtual(b));
        assert_ne!(a, b);
        for real in [
            "127.0.0.1:4433",
            "[::1]:4433",
            "[2001:db8::1]:443",
            "[100:0:0:1::1]:1",
        ] {
            let real: SocketAddr = real.parse().unwrap_or_else(|e| panic!("{e}"));
            assert!(!is_virtual(real), "{real}");
        }
    }

    #[tokio::test]
    async fn a_full_outbox_drops_and_a_closed_one_ends_the_writer() {
        // No stream yet: everything waits in the outbox, up to its limit.
        let outbox = Outbox::default();
        let datagram = vec![1u8; 1200];
        for _ in 0..(OUTBOX_LIMIT / 1200 + 10) {
            outbox.push(&datagram, datagram.len());
        }
        let queued = outbox.lock().frames.len();
        assert!(
            (OUTBOX_LIMIT - 1205..=OUTBOX_LIMIT).contains(&queued),
            "{queued}"
        );
        // A stream that takes everything: the queue goes out, and what is
        // pushed next is written at once, without the task.
        let (near, mut far) = tokio::io::duplex(4 << 20);
        outbox.give_back(Box::new(near));
        let (writer, frames) = outbox.take().await.unwrap_or_else(|| panic!("closed"));
        assert_eq!(frames.len(), queued);
        outbox.give_back(writer);
        outbox.push(&datagram, datagram.len());
        assert!(outbox.lock().frames.is_empty());
        let mut got = vec![0u8; 5 + 1200];
        tokio::io::AsyncReadExt::read_exact(&mut far, &mut got)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&got[..5], &[23, 3, 3, 4, 176]);
        assert!(outbox.close().is_some());
        outbox.push(&datagram, datagram.len());
        assert!(outbox.take().await.is_none());
    }

    #[tokio::test]
    async fn a_batch_the_stream_takes_in_part_arrives_whole_and_in_order() {
        // A stream that takes 1,000 bytes at once: the first write ends
        // inside the first frame, the writer task sends the rest.
        let (near, mut far) = tokio::io::duplex(1000);
        let outbox = Arc::new(Outbox::default());
        let task = tokio::spawn({
            let outbox = outbox.clone();
            async move { write_link(Box::new(near), &outbox).await }
        });
        // Three datagrams of 1,200 bytes in one transmit, then one more.
        let batch: Vec<u8> = (0..3 * 1200).map(|i| (i / 1200) as u8 + 1).collect();
        while outbox.lock().writer.is_none() {
            tokio::task::yield_now().await;
        }
        outbox.push(&batch, 1200);
        outbox.push(&[9; 700], 700);
        let mut wire = vec![0u8; 3 * (5 + 1200) + 5 + 700];
        tokio::io::AsyncReadExt::read_exact(&mut far, &mut wire)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut wire = BytesMut::from(&wire[..]);
        let mut got = Vec::new();
        while let Ok(Some(datagram)) = proto::carrier::decode(&mut wire) {
            got.push(datagram.to_vec());
        }
        assert_eq!(
            got,
            vec![vec![1; 1200], vec![2; 1200], vec![3; 1200], vec![9; 700]]
        );
        let _ = outbox.close();
        let _ = task.await;
    }

    #[tokio::test]
    async fn the_shared_budget_counts_only_what_waits() {
        let budget = Arc::new(AtomicUsize::new(0));
        let outbox = Outbox::within(budget.clone());
        let datagram = vec![2u8; 1000];
        for _ in 0..5 {
            outbox.push(&datagram, datagram.len());
        }
        assert_eq!(budget.load(Ordering::Relaxed), 5 * 1005);
        let (near, _far) = tokio::io::duplex(1 << 20);
        outbox.give_back(Box::new(near));
        let (writer, frames) = outbox.take().await.unwrap_or_else(|| panic!("closed"));
        assert_eq!(frames.len(), 5 * 1005);
        assert_eq!(budget.load(Ordering::Relaxed), 0);
        outbox.give_back(writer);
        // Written at once: nothing waits, nothing counts.
        outbox.push(&datagram, datagram.len());
        assert_eq!(budget.load(Ordering::Relaxed), 0);
        // Past the budget, datagrams are dropped.
        budget.store(RELAY_OUTBOX_BUDGET, Ordering::Relaxed);
        let _ = outbox.close();
        let other = Outbox::within(budget.clone());
        other.push(&datagram, datagram.len());
        assert!(other.lock().frames.is_empty());
    }
}
