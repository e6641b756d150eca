//! In-process UDP fault injection: a proxy between a QUIC peer and the
//! relay that drops datagrams with a seeded probability, delays them, and can
//! cut the path entirely (a partition). Loopback only.
//!
//! ```text
//! peer ──UDP──▶ ChaosProxy.addr ──(loss, delay, partition)──▶ upstream (relay)
//! ```
//!
//! Each peer address gets its own upstream socket, so the relay sees one
//! stable source per peer, as through a NAT.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct Faults {
    /// Drop probability in parts per million, each direction.
    loss_ppm: AtomicU32,
    /// Extra one-way delay in microseconds.
    delay_us: AtomicU64,
    partitioned: AtomicBool,
    rng: Mutex<StdRng>,
    dropped: AtomicU64,
    passed: AtomicU64,
}

impl Faults {
    /// Whether to deliver the next datagram.
    fn deliver(&self) -> bool {
        if self.partitioned.load(Ordering::Relaxed) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let ppm = self.loss_ppm.load(Ordering::Relaxed);
        let drop = ppm > 0 && {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            rng.random_range(0..1_000_000) < ppm
        };
        if drop {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.passed.fetch_add(1, Ordering::Relaxed);
        }
        !drop
    }

    fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct ChaosProxy {
    /// Where peers send to instead of the relay.
    pub addr: SocketAddr,
    faults: Arc<Faults>,
    upstream: Arc<Upstream>,
    stop: CancellationToken,
}

/// Where the proxy sends, and the sockets it sends from (one per peer).
#[derive(Debug)]
struct Upstream {
    addr: Mutex<SocketAddr>,
    /// The loopback address new peers' sockets are bound to.
    source: Mutex<std::net::IpAddr>,
    sockets: Mutex<Vec<Arc<UdpSocket>>>,
}

/// Sends `data` to `to` on `socket`, after the configured delay if any.
fn forward(socket: &Arc<UdpSocket>, faults: &Faults, data: Vec<u8>, to: Option<SocketAddr>) {
    if !faults.deliver() {
        return;
    }
    let delay = faults.delay();
    let socket = socket.clone();
    let send = async move {
        let _ = match to {
            Some(to) => socket.send_to(&data, to).await,
            None => socket.send(&data).await,
        };
    };
    if delay.is_zero() {
        tokio::spawn(send);
    } else {
        // The delay simulates the network; it synchronises nothing.
        tokio::spawn(async move {
            #[allow(clippy::disallowed_methods)] // the fault itself: a slow link
            tokio::time::sleep(delay).await; // sleep-ok: the injected link delay
            send.await;
        });
    }
}

impl ChaosProxy {
    /// Starts a proxy on 127.0.0.1:0 toward `upstream`, with a seeded RNG so
    /// a failing run can be replayed.
    ///
    /// # Panics
    /// If no loopback socket can be bound.
    pub async fn start(upstream: SocketAddr, seed: u64) -> ChaosProxy {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind proxy"));
        let addr = front.local_addr().expect("proxy addr");
        let faults = Arc::new(Faults {
            loss_ppm: AtomicU32::new(0),
            delay_us: AtomicU64::new(0),
            partitioned: AtomicBool::new(false),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            dropped: AtomicU64::new(0),
            passed: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        let upstream = Arc::new(Upstream {
            addr: Mutex::new(upstream),
            source: Mutex::new(std::net::Ipv4Addr::LOCALHOST.into()),
            sockets: Mutex::default(),
        });
        tokio::spawn(run(front, upstream.clone(), faults.clone(), stop.clone()));
        ChaosProxy {
            addr,
            faults,
            upstream,
            stop,
        }
    }

    /// Peers seen from now on reach the upstream from `source` (another
    /// loopback address, e.g. 127.0.0.2: another machine to the relay).
    pub fn set_source(&self, source: std::net::IpAddr) {
        *self
            .upstream
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = source;
    }

    /// Sends from now on to `upstream`, from the same sockets: what a load
    /// balancer does when the instance behind it dies and another one takes
    /// its flows (the new one sees each peer at the same source address).
    pub async fn set_upstream(&self, upstream: SocketAddr) {
        *self.upstream.addr.lock().unwrap_or_else(|p| p.into_inner()) = upstream;
        let sockets = self
            .upstream
            .sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for socket in sockets {
            let _ = socket.connect(upstream).await;
        }
    }

    /// Drops each datagram (both directions) with probability `fraction`.
    pub fn set_loss(&self, fraction: f64) {
        let ppm = (fraction.clamp(0.0, 1.0) * 1_000_000.0) as u32;
        self.faults.loss_ppm.store(ppm, Ordering::Relaxed);
    }

    /// Delays every datagram by `delay` each way.
    pub fn set_delay(&self, delay: Duration) {
        self.faults
            .delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Cuts (`true`) or heals (`false`) the path.
    pub fn partition(&self, cut: bool) {
        self.faults.partitioned.store(cut, Ordering::Relaxed);
    }

    /// Cuts the path for `length`, then heals it by itself: a partition of
    /// a fixed length is the fault being simulated, not a synchronisation.
    pub fn partition_for(&self, length: Duration) {
        self.partition(true);
        let faults = self.faults.clone();
        tokio::spawn(async move {
            #[allow(clippy::disallowed_methods)] // the fault itself: a partition this long
            tokio::time::sleep(length).await; // sleep-ok: the injected partition's length
            faults.partitioned.store(false, Ordering::Relaxed);
        });
    }

    /// Datagrams dropped and delivered so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.faults.dropped.load(Ordering::Relaxed),
            self.faults.passed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn run(
    front: Arc<UdpSocket>,
    upstream: Arc<Upstream>,
    faults: Arc<Faults>,
    stop: CancellationToken,
) {
    let mut sessions: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = tokio::select! {
            r = front.recv_from(&mut buf) => match r { Ok(r) => r, Err(_) => continue },
            () = stop.cancelled() => return,
        };
        let back = match sessions.get(&peer) {
            Some(s) => s.clone(),
            None => {
                let source = *upstream.source.lock().unwrap_or_else(|p| p.into_inner());
                let Ok(s) = UdpSocket::bind(SocketAddr::new(source, 0)).await else {
                    continue;
                };
                let to = *upstream.addr.lock().unwrap_or_else(|p| p.into_inner());
                if s.connect(to).await.is_err() {
                    continue;
                }
                let s = Arc::new(s);
                sessions.insert(peer, s.clone());
                upstream
                    .sockets
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(s.clone());
                tokio::spawn(reverse(
                    s.clone(),
                    front.clone(),
                    peer,
                    faults.clone(),
                    stop.clone(),
                ));
                s
            }
        };
        forward(&back, &faults, buf[..n].to_vec(), None);
    }
}

/// Upstream → peer for one session.
async fn reverse(
    back: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    peer: SocketAddr,
    faults: Arc<Faults>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = tokio::select! {
            r = back.recv(&mut buf) => match r { Ok(n) => n, Err(_) => continue },
            () = stop.cancelled() => return,
        };
        forward(&front, &faults, buf[..n].to_vec(), Some(peer));
    }
}
