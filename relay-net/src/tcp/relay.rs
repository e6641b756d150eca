//! The relay's side of the carrier: one socket for quinn that is the UDP
//! socket and every TCP carrier at once, and the TCP listener that adds
//! carriers to it.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::handshake::accept;
use super::{deliver, is_virtual, run_link, virtual_addr, Inbound, Outbox, INBOX_DATAGRAMS};

/// The relay's socket: UDP, and every carrier by its virtual address.
#[derive(Debug)]
pub struct Carriers {
    udp: Arc<dyn AsyncUdpSocket>,
    inbox: Mutex<mpsc::Receiver<Inbound>>,
    sender: mpsc::Sender<Inbound>,
    links: RwLock<HashMap<SocketAddr, Carried>>,
    next: AtomicU64,
    /// Bytes queued in all outboxes together ([`super::RELAY_OUTBOX_BUDGET`]).
    budget: Arc<AtomicUsize>,
    /// Which source `poll_recv` looks at first, alternating, so neither
    /// UDP nor the carriers can starve the other.
    carriers_first: AtomicBool,
}

/// One live carrier.
#[derive(Debug, Clone)]
struct Carried {
    outbox: Arc<Outbox>,
    peer: SocketAddr,
}

impl Carriers {
    /// Wraps the relay's UDP socket.
    pub fn new(udp: Arc<dyn AsyncUdpSocket>) -> Arc<Carriers> {
        let (sender, inbox) = mpsc::channel(INBOX_DATAGRAMS);
        Arc::new(Carriers {
            udp,
            inbox: Mutex::new(inbox),
            sender,
            links: RwLock::default(),
            next: AtomicU64::new(1),
            budget: Arc::default(),
            carriers_first: AtomicBool::new(false),
        })
    }

    /// The real address behind `addr`: the TCP peer of a live carrier,
    /// else `addr` itself.
    pub fn real(&self, addr: SocketAddr) -> SocketAddr {
        if !is_virtual(addr) {
            return addr;
        }
        self.links
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&addr)
            .map_or(addr, |c| c.peer)
    }

    /// Live carriers.
    pub fn len(&self) -> usize {
        self.links
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no carrier is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Carries QUIC datagrams over `stream` (from `peer`, after the TLS
    /// handshake)
    /// until it ends; returns the carrier's virtual address and why it ended.
    pub async fn carry<S>(&self, stream: S, peer: SocketAddr) -> (SocketAddr, io::Error)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let addr = virtual_addr(self.next.fetch_add(1, Ordering::Relaxed));
        let outbox = Arc::new(Outbox::within(self.budget.clone()));
        self.links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                addr,
                Carried {
                    outbox: outbox.clone(),
                    peer,
                },
            );
        tracing::debug!(%peer, carrier = %addr, "tcp carrier up");
        let ended = run_link(stream, addr, outbox, self.sender.clone()).await;
        self.links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&addr);
        (addr, ended)
    }

    fn outbox(&self, addr: SocketAddr) -> Option<Arc<Outbox>> {
        self.links
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&addr)
            .map(|c| c.outbox.clone())
    }

    /// Takes datagrams read from carriers, as many as `bufs` hold.
    fn poll_carriers(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<usize> {
        let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        let mut n = 0;
        while n < bufs.len().min(meta.len()) {
            match inbox.poll_recv(cx) {
                Poll::Ready(Some((from, datagram))) => {
                    n += usize::from(deliver(&datagram, from, &mut bufs[n], &mut meta[n]));
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        if n == 0 {
            Poll::Pending
        } else {
            Poll::Ready(n)
        }
    }
}

impl AsyncUdpSocket for Carriers {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        // Carriers never answer `WouldBlock` (a full outbox drops), so
        // only the UDP socket's readiness matters.
        self.udp.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        if !is_virtual(transmit.destination) {
            return self.udp.try_send(transmit);
        }
        // A carrier that ended drops what is still sent to it, as a path would.
        if let Some(outbox) = self.outbox(transmit.destination) {
            let size = transmit
                .segment_size
                .unwrap_or(transmit.contents.len())
                .max(1);
            for datagram in transmit.contents.chunks(size) {
                outbox.push(datagram);
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let carriers_first = !self.carriers_first.fetch_xor(true, Ordering::Relaxed);
        if carriers_first {
            if let Poll::Ready(n) = self.poll_carriers(cx, bufs, meta) {
                return Poll::Ready(Ok(n));
            }
            return self.udp.poll_recv(cx, bufs, meta);
        }
        match self.udp.poll_recv(cx, bufs, meta) {
            Poll::Pending => self.poll_carriers(cx, bufs, meta).map(Ok),
            ready => ready,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.udp.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.udp.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.udp.may_fragment()
    }
}

/// Bounds on the relay's TCP carriers: every one holds a task, a TLS
/// session and up to an outbox of memory.
#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    /// Carriers at once, from anyone.
    pub total: usize,
    /// Carriers at once from one IP address.
    pub per_ip: usize,
    /// Time for the TCP peer to finish the TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> TcpLimits {
        TcpLimits {
            total: 4096,
            // Everyone behind one HTTPS proxy or NAT shares an address.
            per_ip: 1024,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Accepts TCP carriers on `listener` (a TLS handshake with `tls` first) into `carriers`
/// until `stop`; carriers already up run on until their peers leave.
/// `gone` hears the virtual address of each carrier that ended, so the
/// connection inside can be closed now rather than after its idle timeout.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    carriers: Arc<Carriers>,
    limits: TcpLimits,
    stop: CancellationToken,
    gone: Arc<dyn Fn(SocketAddr) + Send + Sync>,
) {
    let live = Arc::new(AtomicUsize::new(0));
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or similar: the listener stays.
                    tracing::warn!(err = %e, "tcp carrier accept failed");
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let Some(slot) = Slot::take(&live, &per_ip, peer.ip(), limits) else {
            tracing::debug!(%peer, "tcp carrier refused: too many carriers");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let carriers = carriers.clone();
        let gone = gone.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let tcp = match tokio::time::timeout(limits.handshake_timeout, accept(tcp, tls)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => {
                    return tracing::debug!(%peer, err = %e, "tcp carrier handshake failed")
                }
                Err(_) => return tracing::debug!(%peer, "tcp carrier handshake timed out"),
            };
            let (addr, ended) = carriers.carry(tcp, peer).await;
            tracing::debug!(%peer, reason = %ended, "tcp carrier closed");
            gone(addr);
        });
    }
}

/// A carrier's place under [`TcpLimits`], given back when dropped.
struct Slot {
    live: Arc<AtomicUsize>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Slot {
    fn take(
        live: &Arc<AtomicUsize>,
        per_ip: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        limits: TcpLimits,
    ) -> Option<Slot> {
        let mut counts = per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = counts.entry(ip).or_default();
        if *mine >= limits.per_ip || live.load(Ordering::Relaxed) >= limits.total {
            if *mine == 0 {
                counts.remove(&ip);
            }
            return None;
        }
        *mine += 1;
        live.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            live: live.clone(),
            per_ip: per_ip.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
        let mut counts = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}
