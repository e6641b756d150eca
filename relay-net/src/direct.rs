//! Direct paths (DESIGN "end-to-end mode"): a client's QUIC connection to an
//! agent that the relay forwards as UDP datagrams, by connection ID, without
//! decrypting them.
//!
//! Every agent and client endpoint issues connection IDs that start with its
//! own random [`CidPrefix`] (high bit set); the relay's own IDs have the high bit
//! clear ([`RelayCids`]). The relay's socket ([`Forwarding`]) reads the
//! destination ID of each datagram first: a prefix its [`Router`] knows, sent
//! from the address it expects, is passed on to the peer behind it; all else
//! goes to quinn as before.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use proto::CidPrefix;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use quinn_proto::{ConnectionId, ConnectionIdGenerator, InvalidCid};

/// A fresh random prefix for an agent or client endpoint's connection IDs.
pub fn random_prefix() -> CidPrefix {
    CidPrefix::routable(rand::random())
}

/// A random connection ID that starts with `prefix` (a client's first
/// destination ID toward an agent).
pub fn connection_id(prefix: CidPrefix) -> ConnectionId {
    let mut bytes = [0u8; CID_LEN];
    bytes[..4].copy_from_slice(&prefix.bytes());
    bytes[4..].copy_from_slice(&rand::random::<[u8; CID_LEN - 4]>());
    ConnectionId::new(&bytes)
}

/// Length of the IDs an agent or client issues: the prefix and 8 random bytes.
const CID_LEN: usize = 12;

/// Issues connection IDs that start with one [`CidPrefix`].
#[derive(Debug, Clone, Copy)]
pub struct PrefixedCids(pub CidPrefix);

impl ConnectionIdGenerator for PrefixedCids {
    fn generate_cid(&mut self) -> ConnectionId {
        connection_id(self.0)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

/// The relay's own connection IDs: those of `inner` with the high bit of the
/// first byte clear, so none can be taken for a route prefix.
#[derive(Debug)]
pub struct RelayCids<G>(pub G);

impl<G: ConnectionIdGenerator> ConnectionIdGenerator for RelayCids<G> {
    fn generate_cid(&mut self) -> ConnectionId {
        // Half of the IDs qualify; drawing again keeps `inner`'s validation
        // (a keyed hash) intact where clearing the bit would not.
        loop {
            let cid = self.0.generate_cid();
            if cid.first().is_none_or(|b| b & 0x80 == 0) {
                return cid;
            }
        }
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        self.0.validate(cid)
    }

    fn cid_len(&self) -> usize {
        self.0.cid_len()
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        self.0.cid_lifetime()
    }
}

/// The route prefix of a QUIC datagram's destination connection ID, if it
/// has one (short header: the ID follows the first byte; long header: after
/// version and length).
pub fn route_prefix(datagram: &[u8]) -> Option<CidPrefix> {
    let first = *datagram.first()?;
    let cid = if first & 0x80 == 0 {
        datagram.get(1..5)?
    } else {
        let len = usize::from(*datagram.get(5)?);
        if len < 4 {
            return None;
        }
        datagram.get(6..10)?
    };
    CidPrefix::from_bytes([cid[0], cid[1], cid[2], cid[3]])
}

/// Where the relay sends a datagram for a route prefix. It runs in quinn's
/// one receive task for every routable datagram: an implementation should
/// answer with one lookup, and take no lock of a quinn connection (the
/// relay's `routes` keys by prefix and sender address).
pub trait Router: Send + Sync + fmt::Debug + 'static {
    /// The address to pass a datagram of `len` bytes with destination
    /// prefix `prefix`, received from `from`, on to; `None` leaves it to quinn.
    fn route(&self, prefix: CidPrefix, from: SocketAddr, len: usize) -> Option<SocketAddr>;
}

/// Receive batches read in one poll when every datagram is forwarded.
const FORWARD_ROUNDS: usize = 32;

/// A UDP socket that forwards routed datagrams before quinn sees them.
#[derive(Debug)]
pub struct Forwarding {
    inner: Arc<dyn AsyncUdpSocket>,
    router: Arc<dyn Router>,
}

impl Forwarding {
    /// Wraps `inner`, forwarding what `router` claims.
    pub fn new(inner: Arc<dyn AsyncUdpSocket>, router: Arc<dyn Router>) -> Forwarding {
        Forwarding { inner, router }
    }

    /// Forwards the routed datagrams of one received buffer and keeps the
    /// rest in place; returns the length kept (0 if all were forwarded).
    /// Consecutive datagrams for one destination leave in one send (GSO),
    /// as they came in (GRO): a datagram each would cost a system call each.
    fn forward(&self, buf: &mut [u8], meta: &RecvMeta) -> usize {
        let stride = meta.stride.max(1);
        let len = meta.len.min(buf.len());
        let max_run = self.inner.max_transmit_segments().max(1) * stride;
        let mut kept = 0;
        // The run waiting to be sent: its start and destination.
        let mut run: Option<(usize, SocketAddr)> = None;
        let mut start = 0;
        while start < len {
            let end = (start + stride).min(len);
            let to = route_prefix(&buf[start..end])
                .and_then(|p| self.router.route(p, meta.addr, end - start));
            if let Some((from, dest)) = run {
                if to != Some(dest) || end - from > max_run {
                    self.send(&buf[from..start], stride, dest, meta);
                    run = None;
                }
            }
            match to {
                Some(dest) => {
                    run.get_or_insert((start, dest));
                }
                None => {
                    buf.copy_within(start..end, kept);
                    kept += end - start;
                }
            }
            start = end;
        }
        if let Some((from, dest)) = run {
            self.send(&buf[from..len], stride, dest, meta);
        }
        kept
    }

    /// Sends `datagrams` (each `stride` long but the last) to `to`. A full
    /// socket drops them, as a router would: QUIC's loss recovery resends.
    fn send(&self, datagrams: &[u8], stride: usize, to: SocketAddr, meta: &RecvMeta) {
        let _ = self.inner.try_send(&Transmit {
            destination: to,
            ecn: meta.ecn,
            contents: datagrams,
            segment_size: (datagrams.len() > stride).then_some(stride),
            src_ip: meta.dst_ip,
        });
    }
}

impl AsyncUdpSocket for Forwarding {
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
        // Bounded, so a flood of forwarded datagrams cannot starve quinn's task.
        for _ in 0..FORWARD_ROUNDS {
            let n = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            let mut out = 0;
            for i in 0..n {
                let kept = self.forward(&mut bufs[i], &meta[i]);
                if kept == 0 {
                    continue;
                }
                // Only the last datagram of a batch may be shorter than the
                // stride, and forwarding keeps the order: the rest stay a batch.
                let mut m = meta[i];
                m.len = kept;
                if out != i {
                    let (head, tail) = bufs.split_at_mut(i);
                    head[out][..kept].copy_from_slice(&tail[0][..kept]);
                }
                meta[out] = m;
                out += 1;
            }
            if out > 0 {
                return Poll::Ready(Ok(out));
            }
            // Everything was forwarded: read on (a drained socket returns
            // Pending above, with the waker registered).
        }
        cx.waker().wake_by_ref();
        Poll::Pending
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
    use proptest::prelude::*;

    fn short_header(cid: &ConnectionId, rest: &[u8]) -> Vec<u8> {
        let mut d = vec![0x40];
        d.extend_from_slice(cid);
        d.extend_from_slice(rest);
        d
    }

    fn long_header(cid: &ConnectionId, rest: &[u8]) -> Vec<u8> {
        let mut d = vec![0xc0, 0, 0, 0, 1, cid.len() as u8];
        d.extend_from_slice(cid);
        d.extend_from_slice(rest);
        d
    }

    proptest! {
        #[test]
        fn prefixed_ids_route_in_both_headers(rest in proptest::collection::vec(any::<u8>(), 0..64)) {
            let prefix = random_prefix();
            let cid = PrefixedCids(prefix).generate_cid();
            prop_assert_eq!(route_prefix(&short_header(&cid, &rest)), Some(prefix));
            prop_assert_eq!(route_prefix(&long_header(&cid, &rest)), Some(prefix));
            prop_assert_eq!(CidPrefix::from_u32(prefix.to_u32()), Some(prefix));
        }

        #[test]
        fn relay_ids_never_route(rest in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut relay = RelayCids(quinn_proto::HashedConnectionIdGenerator::new());
            let cid = relay.generate_cid();
            prop_assert!(relay.validate(&cid).is_ok());
            prop_assert_eq!(route_prefix(&short_header(&cid, &rest)), None);
            prop_assert_eq!(route_prefix(&long_header(&cid, &rest)), None);
        }

        #[test]
        fn arbitrary_datagrams_never_panic(d in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Some(p) = route_prefix(&d) {
                prop_assert!(p.bytes()[0] & CidPrefix::ROUTABLE != 0);
            }
        }
    }
}
