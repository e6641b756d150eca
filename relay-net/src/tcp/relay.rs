//! The relay's side of the carrier: one socket for quinn that is the UDP
//! socket and every TCP carrier at once, and the TCP listener that adds
//! carriers to it.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::handshake::accept_hello;
use super::{is_virtual, virtual_addr, write_link, FrameReader, Outbox, Read, IDLE};

/// The relay's socket: UDP, and every carrier by its virtual address.
///
/// Carriers are read on quinn's own task, in `poll_recv`, as the UDP
/// socket is: a carrier whose stream has bytes puts itself on a queue
/// (its waker) and wakes quinn, which takes datagrams from the carriers on
/// the queue in turn. No task and no channel stand in between.
#[derive(Debug)]
pub struct Carriers {
    udp: Arc<dyn AsyncUdpSocket>,
    links: RwLock<HashMap<SocketAddr, Arc<Link>>>,
    ready: Arc<Ready>,
    next: AtomicU64,
    /// Bytes queued in all outboxes together ([`super::RELAY_OUTBOX_BUDGET`]).
    budget: Arc<AtomicUsize>,
    /// Which source `poll_recv` looks at first, alternating, so neither
    /// UDP nor the carriers can starve the other.
    carriers_first: AtomicBool,
}

/// Carriers with bytes to read, and quinn's task to wake for them.
#[derive(Debug, Default)]
struct Ready {
    queue: Mutex<VecDeque<SocketAddr>>,
    quinn: Mutex<Option<Waker>>,
}

impl Ready {
    fn push(&self, addr: SocketAddr) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(addr);
        let quinn = self
            .quinn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(quinn) = quinn {
            quinn.wake();
        }
    }

    fn pop(&self) -> Option<SocketAddr> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }
}

/// One live carrier.
#[derive(Debug)]
struct Link {
    outbox: Arc<Outbox>,
    peer: SocketAddr,
    read: Mutex<LinkRead>,
    wake: Arc<LinkWake>,
}

/// A carrier's reader, and how to tell its task that the stream ended.
struct LinkRead {
    frames: FrameReader,
    /// Tells the carrier's task why the stream ended; taken when it does.
    ended: Option<oneshot::Sender<io::Error>>,
}

impl std::fmt::Debug for LinkRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkRead").finish_non_exhaustive()
    }
}

/// A carrier's waker: queues the carrier (once) and wakes quinn.
#[derive(Debug)]
struct LinkWake {
    addr: SocketAddr,
    queued: AtomicBool,
    ready: Arc<Ready>,
}

impl Wake for LinkWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.push(self.addr);
        }
    }
}

impl Carriers {
    /// Wraps the relay's UDP socket.
    pub fn new(udp: Arc<dyn AsyncUdpSocket>) -> Arc<Carriers> {
        Arc::new(Carriers {
            udp,
            links: RwLock::default(),
            ready: Arc::default(),
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
        self.link(addr).map_or(addr, |l| l.peer)
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
    /// handshake) until it ends; returns the carrier's virtual address and
    /// why it ended. Datagrams are read by quinn's task; this task writes
    /// what the outbox holds back and watches for silence.
    pub async fn carry<S>(&self, stream: S, peer: SocketAddr) -> (SocketAddr, io::Error)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let addr = virtual_addr(self.next.fetch_add(1, Ordering::Relaxed));
        let (half, writer) = tokio::io::split(stream);
        let (ended_tx, ended) = oneshot::channel();
        let link = Arc::new(Link {
            outbox: Arc::new(Outbox::within(self.budget.clone())),
            peer,
            read: Mutex::new(LinkRead {
                frames: FrameReader::new(Box::new(half)),
                ended: Some(ended_tx),
            }),
            wake: Arc::new(LinkWake {
                addr,
                queued: AtomicBool::new(false),
                ready: self.ready.clone(),
            }),
        });
        self.links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(addr, link.clone());
        tracing::debug!(%peer, carrier = %addr, "tcp carrier up");
        // Its first read, on quinn's task.
        Waker::from(link.wake.clone()).wake();
        let silent = async {
            loop {
                let last = link
                    .read
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .frames
                    .last;
                if last.elapsed() >= IDLE {
                    return io::Error::new(io::ErrorKind::TimedOut, "nothing received for 60 s");
                }
                tokio::time::sleep_until((last + IDLE).into()).await;
            }
        };
        let why = tokio::select! {
            why = write_link(Box::new(writer), &link.outbox) => why,
            why = ended => why.unwrap_or_else(|_| io::Error::other("carrier closed")),
            why = silent => why,
        };
        self.links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&addr);
        if let Some(mut writer) = link.outbox.close() {
            let _ = writer.shutdown().await;
        }
        (addr, why)
    }

    fn link(&self, addr: SocketAddr) -> Option<Arc<Link>> {
        self.links
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&addr)
            .cloned()
    }

    /// Takes datagrams from the carriers that have bytes, in turn, as many
    /// as `bufs` hold.
    fn poll_carriers(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<usize> {
        {
            // Called on every other receive, carriers or not: no clone
            // while quinn's waker is the one kept.
            let mut quinn = self
                .ready
                .quinn
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !quinn.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *quinn = Some(cx.waker().clone());
            }
        }
        let max = bufs.len().min(meta.len());
        let mut n = 0;
        while n < max {
            let Some(addr) = self.ready.pop() else { break };
            let Some(link) = self.link(addr) else {
                continue;
            };
            link.wake.queued.store(false, Ordering::Release);
            let waker = Waker::from(link.wake.clone());
            let mut link_cx = Context::from_waker(&waker);
            let mut read = link.read.lock().unwrap_or_else(PoisonError::into_inner);
            let (got, what) =
                read.frames
                    .poll(&mut link_cx, addr, &mut bufs[n..max], &mut meta[n..max]);
            n += got;
            match what {
                // Perhaps more: its turn again after the others'.
                Read::Full => waker.wake_by_ref(),
                Read::Ended(why) => {
                    if let Some(ended) = read.ended.take() {
                        let _ = ended.send(why);
                    }
                }
                Read::Pending | Read::Done => {}
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
        if let Some(outbox) = self.link(transmit.destination).map(|l| l.outbox.clone()) {
            let segment = transmit.segment_size.unwrap_or(transmit.contents.len());
            outbox.push(transmit.contents, segment);
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

/// A browser's connection to the relay's TCP port, after its TLS
/// handshake: the bytes of its ClientHello are read again from the front.
pub type WebStream = tokio_rustls::server::TlsStream<
    tokio::io::Join<
        tokio::io::Chain<std::io::Cursor<Vec<u8>>, tokio::net::tcp::OwnedReadHalf>,
        tokio::net::tcp::OwnedWriteHalf,
    >,
>;

/// Serving one browser connection, to its end.
pub type WebServed = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Where the relay's TCP port sends a peer that does not offer the
/// carrier's ALPN (a browser): its TLS, and what serves the connection.
#[derive(Clone)]
pub struct Web {
    /// The TLS of the web page (ALPN `http/1.1`).
    pub tls: Arc<rustls::ServerConfig>,
    /// Serves one connection from a peer, until it ends.
    pub serve: Arc<dyn Fn(WebStream, SocketAddr) -> WebServed + Send + Sync>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Web")
    }
}

/// Accepts TCP carriers on `listener` (a TLS handshake with `tls` first) into `carriers`
/// until `stop`; carriers already up run on until their peers leave.
/// `gone` hears the virtual address of each carrier that ended, so the
/// connection inside can be closed now rather than after its idle timeout.
/// A peer that does not offer the carrier's ALPN goes to `web`, if there
/// is one (under the same limits: a browser is a peer on this port too).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    carriers: Arc<Carriers>,
    limits: TcpLimits,
    stop: CancellationToken,
    gone: Arc<dyn Fn(SocketAddr) + Send + Sync>,
    web: Option<Web>,
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
        let web = web.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let greeted = tokio::time::timeout(limits.handshake_timeout, greet(tcp, tls, web));
            let tcp = match greeted.await {
                Ok(Ok(Greeted::Carrier(tcp))) => tcp,
                Ok(Ok(Greeted::Web(stream, web))) => return (web.serve)(*stream, peer).await,
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

/// Who a TCP peer turned out to be, after its TLS handshake.
enum Greeted {
    Carrier(tokio::net::TcpStream),
    Web(Box<WebStream>, Web),
}

/// Reads the peer's ClientHello and runs the handshake its ALPN asks for:
/// the carrier's, or the web page's when there is one and the peer does
/// not ask for the carrier (a peer asking for neither then gets the
/// carrier's refusal: no protocol in common).
async fn greet(
    mut tcp: tokio::net::TcpStream,
    tls: Arc<rustls::ServerConfig>,
    web: Option<Web>,
) -> io::Result<Greeted> {
    let hello = super::hello::read(&mut tcp).await?;
    match web {
        Some(web) if !hello.offers(proto::carrier::CARRIER_ALPN) => {
            let (read, write) = tcp.into_split();
            let replayed = tokio::io::join(
                tokio::io::AsyncReadExt::chain(std::io::Cursor::new(hello.bytes), read),
                write,
            );
            let stream = tokio_rustls::TlsAcceptor::from(web.tls.clone())
                .accept(replayed)
                .await?;
            Ok(Greeted::Web(Box::new(stream), web))
        }
        _ => Ok(Greeted::Carrier(
            accept_hello(tcp, hello.accepted, tls).await?,
        )),
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
