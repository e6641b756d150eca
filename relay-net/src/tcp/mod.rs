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
mod relay;
mod stream;

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use quinn::udp::RecvMeta;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

pub use relay::{serve, Carriers, TcpLimits};
pub use stream::{connect, CarrierError, StreamSocket};

/// Bytes waiting to be written on one carrier before new datagrams are
/// dropped: about 4 ms at 1 Gbit/s, enough to absorb a burst of a paced
/// sender, small enough that a slow link does not queue seconds.
const OUTBOX_LIMIT: usize = 512 << 10;

/// Bytes waiting in all the relay's outboxes together: each carrier may
/// queue up to [`OUTBOX_LIMIT`], but thousands of peers that stop reading
/// must not hold gigabytes. Past it, datagrams to carriers are dropped.
const RELAY_OUTBOX_BUDGET: usize = 256 << 20;

/// Datagrams read from carriers and not yet taken by quinn. A full inbox
/// stops reading (TCP's window then slows the sender).
const INBOX_DATAGRAMS: usize = 1024;

/// A carrier on which nothing arrives for this long is closed: every QUIC
/// connection sends keep-alives well within it, and its idle timeout ends
/// it sooner, so only a peer that never spoke QUIC is left to end here.
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// One datagram read from a carrier, with the peer address it stands for.
type Inbound = (SocketAddr, Bytes);

/// Whether `addr` is a carrier's virtual address (`100::/64`).
pub fn is_virtual(addr: SocketAddr) -> bool {
    matches!(addr, SocketAddr::V6(a) if a.ip().segments()[..4] == [0x100, 0, 0, 0])
}

/// The virtual address of carrier number `n`.
fn virtual_addr(n: u64) -> SocketAddr {
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
    /// A write on the caller's thread left bytes in the TLS layer: the task
    /// must flush them.
    unflushed: bool,
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

    /// Sends `datagram`, or queues it for the writer task; drops it if the
    /// outbox (or the budget it shares) is full, or it is closed.
    fn push(&self, datagram: &[u8]) {
        let mut state = self.lock();
        if state.closed || state.frames.len() + datagram.len() > OUTBOX_LIMIT {
            return;
        }
        if let Some(budget) = &self.budget {
            if budget.load(Ordering::Relaxed) + datagram.len() > RELAY_OUTBOX_BUDGET {
                return;
            }
        }
        let before = state.frames.len();
        if proto::carrier::encode(datagram, &mut state.frames).is_err() {
            return;
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
                if !state.frames.is_empty() || state.unflushed {
                    if let Some(writer) = state.writer.take() {
                        state.unflushed = false;
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
    /// Writes the queued frames on the caller's thread if the stream is
    /// free and takes them without waiting; whether nothing is left for
    /// the task.
    fn write_now(&mut self) -> bool {
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
        if let Poll::Ready(Ok(())) = Pin::new(&mut *writer).poll_flush(&mut cx) {
            return true;
        }
        self.unflushed = true;
        false
    }
}

/// Runs one carrier stream until either direction ends: frames from
/// `outbox` are written, datagrams read go to `inbox` as coming from
/// `from`. Returns why it ended. (The relay's carriers; an agent's or
/// client's [`StreamSocket`] reads on quinn's task and only writes here.)
async fn run_link<S>(
    stream: S,
    from: SocketAddr,
    outbox: Arc<Outbox>,
    inbox: mpsc::Sender<Inbound>,
) -> std::io::Error
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let read = async {
        let mut buf = BytesMut::with_capacity(64 << 10);
        loop {
            while let Some(datagram) = proto::carrier::decode(&mut buf)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
            {
                if inbox.send((from, datagram)).await.is_err() {
                    return Ok(());
                }
            }
            match tokio::time::timeout(IDLE, reader.read_buf(&mut buf)).await {
                Ok(Ok(0)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "nothing received for 60 s",
                    ))
                }
            }
        }
    };
    tokio::select! {
        why = write_link(Box::new(writer), &outbox) => why,
        r = read => {
            if let Some(mut writer) = outbox.close() {
                let _ = writer.shutdown().await;
            }
            match r {
                Err(e) => e,
                Ok(()) => std::io::Error::other("carrier closed"),
            }
        }
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
            outbox.push(&datagram);
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
        outbox.push(&datagram);
        assert!(outbox.lock().frames.is_empty());
        let mut got = vec![0u8; 5 + 1200];
        tokio::io::AsyncReadExt::read_exact(&mut far, &mut got)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&got[..5], &[23, 3, 3, 4, 176]);
        assert!(outbox.close().is_some());
        outbox.push(&datagram);
        assert!(outbox.take().await.is_none());
    }

    #[tokio::test]
    async fn the_shared_budget_counts_only_what_waits() {
        let budget = Arc::new(AtomicUsize::new(0));
        let outbox = Outbox::within(budget.clone());
        let datagram = vec![2u8; 1000];
        for _ in 0..5 {
            outbox.push(&datagram);
        }
        assert_eq!(budget.load(Ordering::Relaxed), 5 * 1005);
        let (near, _far) = tokio::io::duplex(1 << 20);
        outbox.give_back(Box::new(near));
        let (writer, frames) = outbox.take().await.unwrap_or_else(|| panic!("closed"));
        assert_eq!(frames.len(), 5 * 1005);
        assert_eq!(budget.load(Ordering::Relaxed), 0);
        outbox.give_back(writer);
        // Written at once: nothing waits, nothing counts.
        outbox.push(&datagram);
        assert_eq!(budget.load(Ordering::Relaxed), 0);
        // Past the budget, datagrams are dropped.
        budget.store(RELAY_OUTBOX_BUDGET, Ordering::Relaxed);
        let _ = outbox.close();
        let other = Outbox::within(budget.clone());
        other.push(&datagram);
        assert!(other.lock().frames.is_empty());
    }
}
