//! QUIC endpoints and transport settings shared by the three programs.
//!
//! Liveness lives in quinn's transport (keep-alive, idle timeout), never in
//! an application heartbeat. Figures and reasons: `shared/notes/quinn.md`.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use crate::direct::{connection_id, random_prefix, Forwarding, PrefixedCids, RelayCids, Router};
use crate::tcp::{Carriers, StreamSocket};
use proto::CidPrefix;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{AsyncUdpSocket, IdleTimeout, TransportConfig, VarInt};
use socket2::{Domain, Protocol, Socket, Type};

/// Requested UDP socket buffer size. The kernel caps it at
/// `net.core.rmem_max`/`wmem_max`; the default 208 KiB loses packets at
/// Gbit/s rates, and each loss halves the congestion window on a WAN.
const SOCKET_BUFFER: usize = 4 << 20;

/// Transport settings of one side of a connection.
#[derive(Clone, Debug)]
pub struct Transport {
    /// Idle timeout; the effective one is the smaller of both peers'.
    pub idle_timeout: Duration,
    /// Keep-alive interval; must stay well below both idle timeouts and the
    /// ~30 s after which NATs forget UDP flows.
    pub keep_alive: Option<Duration>,
    /// Bidirectional streams the peer may have open toward us at once.
    pub max_bidi_streams: u32,
    /// Per-stream receive window (bytes): caps one stream at window / RTT,
    /// and is the most a stalled stream holds in our memory.
    ///
    /// There is no connection-wide receive window below the sum of the
    /// stream windows: one relay connection carries the streams of many
    /// clients, and a finite connection window let a few streams that no one
    /// reads take all of its credit, stalling every other client's stream
    /// (issue #13). Memory is bounded instead by streams × this window, and
    /// streams by the caps per identity (docs/ARCHITECTURE.md "What one
    /// identity can hold").
    pub stream_window: u32,
    /// Bytes sent but not yet acknowledged, over all streams of a
    /// connection. A stalled reader acknowledges what its window admitted,
    /// so this limits only data in flight, never what stalls.
    pub send_window: u32,
    /// Upper bound of path MTU discovery (UDP payload bytes). Packets start
    /// at 1200 bytes and grow only as far as probes prove the path carries
    /// them, so a high bound is safe on any network; it only pays where the
    /// path allows more than 1500 (loopback, jumbo frames).
    pub mtu_upper_bound: u16,
    /// Bytes of received QUIC datagrams held until read; `None` refuses
    /// datagrams. Only a client and the relay exchange them (a liveness
    /// probe and the relay's `GoAway`, [`proto::Datagram`]); small, as
    /// each is 9 bytes and the reader keeps up.
    pub datagram_buffer: Option<usize>,
    /// How relays are reached: QUIC over UDP, the TCP carrier, or both
    /// raced (issue #15). Only agents and clients dial.
    pub via: Via,
    /// The relay's TCP carrier port, where it is not the QUIC port.
    pub tcp_port: Option<u16>,
    /// The HTTP proxy the TCP carrier goes through (`--proxy URL`); `None`
    /// takes `HTTPS_PROXY` and `NO_PROXY` from the environment.
    pub proxy: Option<String>,
    /// With [`Via::Auto`], how often a connection over the TCP carrier
    /// tries QUIC again, to move back to it once UDP gets through.
    pub reprobe: Duration,
}

/// How often a connection over the TCP carrier tries QUIC again: 30 s, or
/// `RELAY_QUIC_REPROBE` (e.g. `1s`; tests and impatient operators).
fn default_reprobe() -> Duration {
    std::env::var("RELAY_QUIC_REPROBE")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(Duration::from_secs(30))
}

/// How an agent or a client reaches relays (`--transport`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Via {
    /// QUIC first; the TCP carrier too if QUIC has not answered within
    /// [`crate::dial::STAGGER`]; back to QUIC when it works again.
    #[default]
    Auto,
    /// QUIC over UDP only.
    Quic,
    /// QUIC over the TCP carrier only (TLS over TCP, perhaps through an
    /// HTTPS proxy).
    Tcp,
}

impl Via {
    /// The name on the command line, in logs and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Auto => "auto",
            Via::Quic => "quic",
            Via::Tcp => "tcp",
        }
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Via {
    type Err = String;

    fn from_str(s: &str) -> Result<Via, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Via::Auto),
            "quic" | "udp" => Ok(Via::Quic),
            "tcp" => Ok(Via::Tcp),
            _ => Err(format!(
                "unknown transport {s:?}: expected auto, quic or tcp"
            )),
        }
    }
}

/// `RELAY_QUIC_ACK_FREQUENCY=N`: ask peers to ACK every N packets (a
/// benchmarking knob, off by default; docs/PERFORMANCE.md).
fn ack_frequency_threshold() -> Option<u32> {
    std::env::var("RELAY_QUIC_ACK_FREQUENCY")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// The streams a peer may have open at once on a connection we accept
/// streams on, raised as it uses them: quinn keeps two hash-map entries for
/// every stream a peer may open (16,384 of them were 1.4 MiB per agent
/// connection, 256 were 21 KiB of an idle client's 55 on the relay), so a
/// peer starts with few and is given twice as many whenever it has three
/// quarters of them open. A burst waits a round trip per doubling.
#[derive(Debug)]
pub struct StreamAllowance {
    allowed: u32,
    max: u32,
}

impl StreamAllowance {
    /// Starts at `initial` (what the connection's transport announced, or
    /// set with [`StreamAllowance::announce`]), never above `max`.
    pub fn new(initial: u32, max: u32) -> StreamAllowance {
        let max = max.max(1);
        StreamAllowance {
            allowed: initial.clamp(1, max),
            max,
        }
    }

    /// Sets the peer's limit on `conn` to the current allowance.
    pub fn announce(&self, conn: &quinn::Connection) {
        conn.set_max_concurrent_bi_streams(self.allowed.into());
    }

    /// After a stream was accepted, with `open` streams now open: raises the
    /// limit when three quarters of it are in use.
    pub fn used(&mut self, conn: &quinn::Connection, open: usize) {
        if open as u64 * 4 >= u64::from(self.allowed) * 3 && self.allowed < self.max {
            self.allowed = self.allowed.saturating_mul(2).min(self.max);
            self.announce(conn);
        }
    }
}

/// Streams an agent lets a relay (or a direct client) have open at first;
/// [`StreamAllowance`] raises it with use up to [`AGENT_MAX_STREAMS`].
pub const AGENT_INITIAL_STREAMS: u32 = 64;

/// The most streams an agent lets one connection have open.
pub const AGENT_MAX_STREAMS: u32 = 16_384;

/// quinn's default MTU discovery bound: within Ethernet's 1500 for IPv4 and IPv6.
pub const ETHERNET_MTU_BOUND: u16 = 1452;

/// The default MTU discovery bound, overridable with `RELAY_QUIC_MTU_MAX`
/// (a benchmarking knob: `bench/compare.sh` and docs/PERFORMANCE.md).
fn default_mtu_bound() -> u16 {
    std::env::var("RELAY_QUIC_MTU_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MTU_BOUND)
}

/// Default upper bound of MTU discovery: 6000 bytes. On a 1500-byte path
/// discovery stops at what the path carries (probes that do not arrive cost
/// nothing but themselves); where the path allows more (loopback, jumbo
/// frames) each packet carries 4× the data, and CPU per GiB halves
/// (docs/PERFORMANCE.md). Not higher: quinn sends up to 10 datagrams per GSO
/// batch, and 10 × 8952 passes the kernel's 64 KiB limit (measured: 8952
/// collapses throughput; notes/quinn.md §3 saw the same).
pub const DEFAULT_MTU_BOUND: u16 = 6000;

/// Upper bound of MTU discovery on the TCP carrier ([`crate::tcp`]): TCP
/// carries any datagram size, and each QUIC packet costs about the same CPU
/// whatever its size, so a connection on the carrier grows its packets far
/// past what UDP allows. Measured (`relay-client --transport tcp bench`,
/// loopback, 1 GiB): 6000 → 1.5 Gbit/s and 10.4 CPU-s per GiB over client,
/// relay and agent; 16000 → 2.4 and 6.4; 32000 → 3.0 and 5.0; 60000 → 2.7
/// and 5.1 (docs/PERFORMANCE.md, with every record sealed by TLS again).
/// Now the largest payload of a TLS record ([`proto::carrier::MAX_CARRIED`]),
/// so each packet travels as one well-formed record.
pub const CARRIER_MTU_BOUND: u16 = 16_640;
const _: () = assert!(CARRIER_MTU_BOUND as usize == proto::carrier::MAX_CARRIED);

impl Transport {
    /// The relay's side: many peers, who keep their connections alive
    /// themselves (a packet either way resets both sides' keep-alive timers,
    /// so the shorter interval drives); the relay's own keep-alive is for a
    /// peer that sends none.
    pub fn relay() -> Transport {
        Transport {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(25)),
            max_bidi_streams: 16_384,
            stream_window: 2 << 20,
            send_window: 32 << 20,
            mtu_upper_bound: default_mtu_bound(),
            datagram_buffer: Some(4096),
            via: Via::Auto,
            tcp_port: None,
            proxy: None,
            reprobe: default_reprobe(),
        }
    }

    /// An agent: keeps NAT mappings alive with a keep-alive every 15 s, half
    /// the shortest UDP mapping timeout in common use (30 s: Linux conntrack
    /// for a flow not yet seen both ways, GCP Cloud NAT's default), which
    /// 10,000 idle agents make cost the relay ~3.5 % of a core (3 s: ~9 %;
    /// docs/PERFORMANCE.md). A restarted relay answers the next keep-alive
    /// with a stateless reset; one that is silently gone is noticed at the
    /// idle timeout, 30 s (the lower of the two ends' applies, and the
    /// relay's is 30 s; meanwhile the agent's other relays serve). Gives
    /// the streams it serves a growing allowance.
    pub fn agent() -> Transport {
        Transport {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(15)),
            datagram_buffer: None,
            max_bidi_streams: AGENT_INITIAL_STREAMS,
            ..Transport::relay()
        }
    }

    /// A client: opens streams, accepts none but its own replies.
    pub fn client() -> Transport {
        Transport {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(10)),
            max_bidi_streams: 0,
            ..Transport::relay()
        }
    }

    /// The same settings for a connection on the TCP carrier: larger
    /// packets ([`CARRIER_MTU_BOUND`]).
    pub fn over_carrier(&self) -> Transport {
        Transport {
            mtu_upper_bound: CARRIER_MTU_BOUND,
            ..self.clone()
        }
    }

    pub(crate) fn to_quinn(&self) -> TransportConfig {
        let mut t = TransportConfig::default();
        t.max_idle_timeout(IdleTimeout::try_from(self.idle_timeout).ok());
        t.keep_alive_interval(self.keep_alive);
        t.max_concurrent_bidi_streams(VarInt::from_u32(self.max_bidi_streams));
        t.max_concurrent_uni_streams(VarInt::from_u32(0));
        t.stream_receive_window(VarInt::from_u32(self.stream_window));
        // Not binding: see `stream_window`.
        t.receive_window(VarInt::MAX);
        t.send_window(u64::from(self.send_window));
        t.datagram_receive_buffer_size(self.datagram_buffer);
        if let Some(threshold) = ack_frequency_threshold() {
            // Ask the peer to acknowledge every `threshold` ack-eliciting
            // packets instead of every other one (an extension; ignored by
            // peers without it).
            let mut ack = quinn::AckFrequencyConfig::default();
            ack.ack_eliciting_threshold(VarInt::from_u32(threshold));
            t.ack_frequency_config(Some(ack));
        }
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(self.mtu_upper_bound);
        t.mtu_discovery_config(Some(mtu));
        t
    }

    /// Endpoint settings: accept UDP payloads as large as MTU discovery may
    /// grow to (the peer's discovery is bounded by what we announce).
    fn endpoint_config(&self) -> quinn::EndpointConfig {
        let mut config = quinn::EndpointConfig::default();
        self.apply_to(&mut config);
        config
    }

    /// Lets the endpoint receive datagrams as large as MTU discovery may probe.
    fn apply_to(&self, config: &mut quinn::EndpointConfig) {
        let _ = config.max_udp_payload_size(self.mtu_upper_bound.max(1472));
    }
}

/// Binds a UDP socket with large buffers, logging what the kernel granted.
///
/// # Errors
/// If the address cannot be bound.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Serve both families on `[::]`, as users expect of a public relay.
        let _ = socket.set_only_v6(false);
    }
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    let granted = socket.recv_buffer_size().unwrap_or(0);
    if granted < SOCKET_BUFFER {
        tracing::debug!(
            requested = SOCKET_BUFFER,
            granted,
            "udp receive buffer capped by net.core.rmem_max"
        );
    }
    Ok(socket.into())
}

/// The least time between two stateless resets the relay sends: none.
/// quinn's default, one per 20 ms, counts from the instant of a batch of
/// received datagrams, so under load one reset went out per batch: after a
/// restart under 2,500 agents, 1 % missed theirs and waited out their idle
/// timeout (all back in 38 s, not 15). What bounds resets is what bounds
/// packets: one goes only to an ID that passes the generator's keyed check
/// (junk passes it once in 2^40), and is smaller than the packet that asked
/// for it, so it amplifies nothing.
const MIN_RESET_INTERVAL: Duration = Duration::ZERO;

/// A server endpoint (the relay) on `udp` (bound with [`bind_udp`]).
///
/// # Errors
/// If quinn cannot use the socket.
///
/// `router` claims the datagrams of direct paths (module [`crate::direct`]);
/// the relay's own connection IDs never look like theirs.
///
/// Its socket is [`Carriers`]: UDP, and the TCP carriers that
/// [`crate::tcp::serve`] adds to it (issue #15), returned so the relay
/// can feed it and tell a carrier's real peer address.
///
/// `reset_key` keys the stateless-reset tokens. A relay that keeps it across
/// restarts (or crashes) lets its peers learn at once that their connection
/// is gone, instead of waiting out the idle timeout (DESIGN "Scale-out").
pub fn server(
    udp: UdpSocket,
    tls: QuicServerConfig,
    transport: &Transport,
    reset_key: Option<&[u8; 32]>,
    router: Option<Arc<dyn Router>>,
) -> std::io::Result<Server> {
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(tls));
    config.transport_config(Arc::new(transport.to_quinn()));
    // Bounds on handshakes in flight, well below quinn's big-server defaults
    // (notes/reliability.md §6).
    config.max_incoming(4096);
    config.incoming_buffer_size_total(16 << 20);
    let endpoint_config = match reset_key {
        Some(key) => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
            // The connection-ID generator's key must survive too: a restarted
            // relay only answers with a reset to a CID it recognises as one
            // it could have issued.
            let tag = ring::hmac::sign(&key, b"relay connection id generator");
            let mut cid_key = [0u8; 8];
            cid_key.copy_from_slice(&tag.as_ref()[..8]);
            let cid_key = u64::from_le_bytes(cid_key);
            let mut config = quinn::EndpointConfig::new(Arc::new(key));
            config.cid_generator(move || {
                Box::new(RelayCids(
                    quinn_proto::HashedConnectionIdGenerator::from_key(cid_key),
                ))
            });
            config
        }
        None => {
            let mut config = quinn::EndpointConfig::default();
            config.cid_generator(|| {
                Box::new(RelayCids(
                    quinn_proto::RandomConnectionIdGenerator::default(),
                ))
            });
            config
        }
    };
    let mut endpoint_config = endpoint_config;
    // Every peer of a restarted relay gets its stateless reset.
    endpoint_config.min_reset_interval(MIN_RESET_INTERVAL);
    // Peers on the carrier may send packets up to its bound; over UDP their
    // own discovery keeps them within what the path carries.
    transport.over_carrier().apply_to(&mut endpoint_config);
    let mut carrier_config = config.clone();
    carrier_config.transport_config(Arc::new(transport.over_carrier().to_quinn()));
    let udp = quinn::Runtime::wrap_udp_socket(&quinn::TokioRuntime, udp)?;
    let carriers = Carriers::new(udp);
    let socket: Arc<dyn AsyncUdpSocket> = match router {
        Some(router) => Arc::new(Forwarding::new(carriers.clone(), router)),
        None => carriers.clone(),
    };
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        endpoint_config,
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok(Server {
        endpoint,
        carriers,
        carrier_config: Arc::new(carrier_config),
    })
}

/// The relay's endpoint ([`server`]).
#[derive(Debug)]
pub struct Server {
    /// The QUIC endpoint.
    pub endpoint: quinn::Endpoint,
    /// Its socket: UDP and the TCP carriers.
    pub carriers: Arc<Carriers>,
    /// The server configuration for connections on a carrier (accept them
    /// with `Incoming::accept_with`): larger packets, [`CARRIER_MTU_BOUND`].
    pub carrier_config: Arc<quinn::ServerConfig>,
}

/// A client endpoint (agent or client) on an ephemeral port of the family of
/// `remote`, with `tls` as its default client configuration.
///
/// # Errors
/// If no local socket can be bound.
pub fn client(
    remote: SocketAddr,
    tls: Arc<QuicClientConfig>,
    transport: &Transport,
) -> std::io::Result<quinn::Endpoint> {
    client_with_prefix(remote, tls, transport, random_prefix())
}

/// [`client`], issuing connection IDs that start with `prefix`, so the
/// relay can route a direct path to this endpoint ([`crate::direct`]).
///
/// # Errors
/// If no local socket can be bound.
pub fn client_with_prefix(
    remote: SocketAddr,
    tls: Arc<QuicClientConfig>,
    transport: &Transport,
    prefix: CidPrefix,
) -> std::io::Result<quinn::Endpoint> {
    let (mut endpoint, _ears) = origin(remote, transport, prefix)?;
    let mut config = quinn::ClientConfig::new(tls);
    config.transport_config(Arc::new(transport.to_quinn()));
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// An endpoint to dial relays from ([`crate::dial::Origin`]), on an
/// ephemeral port of `remote`'s family, issuing connection IDs that start
/// with `prefix`; every dial brings its own client configuration.
///
/// # Errors
/// If no local socket can be bound.
pub fn origin(
    remote: SocketAddr,
    transport: &Transport,
    prefix: CidPrefix,
) -> std::io::Result<(quinn::Endpoint, Arc<crate::heard::Ears>)> {
    use quinn::Runtime;
    let local: SocketAddr = if remote.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint_config = transport.endpoint_config();
    endpoint_config.cid_generator(move || Box::new(PrefixedCids(prefix)));
    let runtime = Arc::new(quinn::TokioRuntime);
    let socket = runtime.wrap_udp_socket(bind_udp(local)?)?;
    let ears = Arc::new(crate::heard::Ears::default());
    let socket = Arc::new(crate::heard::Listening::new(socket, ears.clone()));
    let endpoint =
        quinn::Endpoint::new_with_abstract_socket(endpoint_config, None, socket, runtime)?;
    Ok((endpoint, ears))
}

/// An endpoint to dial a relay over a TCP carrier ([`StreamSocket`]),
/// issuing connection IDs that start with `prefix`.
///
/// # Errors
/// If quinn cannot start the endpoint.
pub fn over_carrier(
    socket: Arc<StreamSocket>,
    transport: &Transport,
    prefix: CidPrefix,
) -> std::io::Result<quinn::Endpoint> {
    let mut endpoint_config = transport.endpoint_config();
    endpoint_config.cid_generator(move || Box::new(PrefixedCids(prefix)));
    quinn::Endpoint::new_with_abstract_socket(
        endpoint_config,
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// Lets an agent's endpoint accept direct paths from clients
/// ([`crate::direct`]): mutual TLS with the agent's own certificate, on the
/// socket its relay connection already holds open through any NAT.
pub fn accept_direct(endpoint: &quinn::Endpoint, tls: QuicServerConfig, transport: &Transport) {
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(tls));
    config.transport_config(Arc::new(transport.to_quinn()));
    // Handshakes come only from clients the relay has granted a path.
    config.max_incoming(256);
    endpoint.set_server_config(Some(config));
}

/// A client configuration for a direct path to the agent whose endpoint
/// issues connection IDs with `agent`: the first packets carry that prefix
/// too, so the relay forwards them before the agent has chosen an ID.
pub fn direct_client(
    tls: Arc<QuicClientConfig>,
    transport: &Transport,
    agent: CidPrefix,
) -> quinn::ClientConfig {
    let mut config = quinn::ClientConfig::new(tls);
    config.transport_config(Arc::new(transport.to_quinn()));
    config.initial_dst_cid_provider(Arc::new(move || connection_id(agent)));
    config
}
