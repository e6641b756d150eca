//! Whether a relay has answered over UDP at all, for the dial race
//! (`dial::attempt::race`): a relay that sent anything (a Retry comes back
//! within a round trip, stateless, even when the relay is swamped) is
//! reachable over QUIC, and a slow handshake there is a busy relay, not a
//! blocked network. Without this, a herd of agents registering at once
//! (every relay restart) sent a fifth of them to the TCP carrier, which
//! costs the relay more per agent than the QUIC they gave up (issue #19).
//!
//! [`Listening`] wraps an agent's or client's UDP socket; a dial asks its
//! [`Ears`] to [`Ears::hear`] from the relay's address before it sends. The
//! receive path pays one atomic load per batch while nobody listens.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::oneshot;

/// Who a socket is listening for, and whom to tell.
#[derive(Default)]
pub struct Ears {
    /// How many wait (read without the lock on every receive).
    waiting: AtomicUsize,
    who: Mutex<Vec<(SocketAddr, oneshot::Sender<()>)>>,
}

impl fmt::Debug for Ears {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ears")
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .finish()
    }
}

impl Ears {
    /// Resolves once a datagram from `from` arrives on this socket.
    pub fn hear(&self, from: SocketAddr) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut who = self.who.lock().unwrap_or_else(PoisonError::into_inner);
        who.retain(|(_, tx)| !tx.is_closed());
        who.push((from, tx));
        self.waiting.store(who.len(), Ordering::Relaxed);
        rx
    }

    /// Tells those waiting for the senders of `meta`.
    fn heard(&self, meta: &[RecvMeta]) {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut who = self.who.lock().unwrap_or_else(PoisonError::into_inner);
        let mut i = 0;
        while i < who.len() {
            if who[i].1.is_closed() || meta.iter().any(|m| m.addr == who[i].0) {
                let (_, tx) = who.swap_remove(i);
                let _ = tx.send(());
            } else {
                i += 1;
            }
        }
        self.waiting.store(who.len(), Ordering::Relaxed);
    }
}

/// A UDP socket that tells its [`Ears`] who sent what it receives.
#[derive(Debug)]
pub(crate) struct Listening {
    inner: Arc<dyn AsyncUdpSocket>,
    ears: Arc<Ears>,
}

impl Listening {
    pub(crate) fn new(inner: Arc<dyn AsyncUdpSocket>, ears: Arc<Ears>) -> Listening {
        Listening { inner, ears }
    }
}

impl AsyncUdpSocket for Listening {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let polled = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(n)) = polled {
            self.ears.heard(&meta[..n]);
        }
        polled
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_from(addr: SocketAddr) -> RecvMeta {
        RecvMeta {
            addr,
            ..RecvMeta::default()
        }
    }

    #[test]
    fn hears_only_whom_it_listens_for() {
        let ears = Ears::default();
        let relay: SocketAddr = "127.0.0.1:4433".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut heard = ears.hear(relay);
        ears.heard(&[meta_from(other)]);
        assert!(heard.try_recv().is_err(), "not from the relay");
        ears.heard(&[meta_from(other), meta_from(relay)]);
        assert!(heard.try_recv().is_ok());
        assert_eq!(ears.waiting.load(Ordering::Relaxed), 0);
        // A listener that gave up is forgotten.
        drop(ears.hear(relay));
        ears.heard(&[meta_from(other)]);
        assert_eq!(ears.waiting.load(Ordering::Relaxed), 0);
    }
}
