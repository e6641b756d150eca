//! The relay's run-time configuration. Building it never binds a socket, so
//! tests construct it directly with small limits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use relay_net::endpoint::Transport;

/// Files in the relay's directory (`--dir`).
#[derive(Clone, Debug)]
pub struct Paths {
    /// The directory.
    pub dir: PathBuf,
}

impl Paths {
    /// CA certificate (public; clients and agents get a copy in their credential).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// CA private key: needed only by `init` and `issue`, never by `run`.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// The relay's server certificate.
    pub fn relay_cert(&self) -> PathBuf {
        self.dir.join("relay.crt")
    }
    /// The relay's server key.
    pub fn relay_key(&self) -> PathBuf {
        self.dir.join("relay.key")
    }
    /// The authorization policy.
    pub fn policy(&self) -> PathBuf {
        self.dir.join("policy.toml")
    }
    /// The revocation list.
    pub fn revoked(&self) -> PathBuf {
        self.dir.join("revoked.toml")
    }
    /// The record of issued certificates, one JSON line each (written by
    /// `issue`, read by `issued` and `revoke`).
    pub fn issued(&self) -> PathBuf {
        self.dir.join("issued.jsonl")
    }
    /// The default key of QUIC stateless resets, kept across restarts
    /// (created by `run` if missing; `--reset-key` for another file).
    pub fn reset_key(&self) -> PathBuf {
        self.dir.join("reset.key")
    }
    /// The default audit log.
    pub fn audit(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }
    /// The online signer's certificate: an intermediate of the CA that
    /// mints client certificates at single sign-on (`relay-server signer`).
    pub fn signer_cert(&self) -> PathBuf {
        self.dir.join("signer.crt")
    }
    /// The online signer's key: the one private key of the PKI that `run`
    /// reads, and only with `[login]` configured.
    pub fn signer_key(&self) -> PathBuf {
        self.dir.join("signer.key")
    }
}

impl From<&Path> for Paths {
    fn from(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_owned(),
        }
    }
}

/// Limits and timeouts; each has a safe default and is configurable.
#[derive(Clone, Debug)]
pub struct Limits {
    /// A QUIC handshake must complete within this.
    pub handshake_timeout: Duration,
    /// The first frame of a stream (Register, Open, List) must arrive within this.
    pub first_frame_timeout: Duration,
    /// An agent must answer a forwarded Open within this (it covers the
    /// agent's own dial timeout).
    pub answer_timeout: Duration,
    /// How often policy and revocation files are checked for changes.
    pub reload_interval: Duration,
    /// How long shutdown waits for live streams before closing.
    pub shutdown_grace: Duration,
    /// Streams a client may have open at once on one connection (a forward
    /// of thousands of idle connections must fit).
    pub client_streams: u32,
    /// Streams one client identity may have open at once over all its
    /// connections. With the stream window this bounds what one identity's
    /// stalled streams hold on the relay (docs/ARCHITECTURE.md "What one
    /// identity can hold").
    pub streams_per_client: u32,
    /// Streams a peer may open before its role is known.
    pub unauthenticated_streams: u32,
    /// Stream opens per second per client identity, resets included (the
    /// Rapid Reset lesson: every open makes the agent dial).
    pub open_rate: u32,
    /// Burst allowance above `open_rate`.
    pub open_burst: u32,
    /// Window of the `auth_failed` audit throttle (see `audit`).
    pub auth_failed_window: Duration,
    /// Live direct paths (end-to-end mode) per client identity.
    pub direct_per_client: usize,
    /// Live direct paths per agent (all instances, all clients).
    pub direct_per_agent: usize,
    /// Handshakes the relay works on at once. Past it a new peer is refused
    /// at once (QUIC `CONNECTION_REFUSED`) and backs off with jitter: a
    /// reconnect storm is spread by its peers, instead of every handshake
    /// slowing down until they all time out and are tried again. Fewer
    /// at once keep the relay's latency for peers already connected low
    /// while a herd comes in; more bring a herd in sooner (256: 10,000
    /// agents back within ~31-35 s here, a client's p99 1.5-4.6x unloaded;
    /// 1,024: 24-27 s, 8-11x; docs/PERFORMANCE.md).
    pub handshakes: usize,
    /// Of those, how many one source address may have under way (an IPv6
    /// address counts by its /64): a flood from one place cannot take the
    /// whole budget and keep everyone else's agents out. Many agents
    /// behind one NAT are refused past it only for moments, as past the
    /// budget.
    pub handshakes_per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            first_frame_timeout: Duration::from_secs(5),
            answer_timeout: Duration::from_secs(15),
            reload_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
            client_streams: 16_384,
            streams_per_client: 1_024,
            unauthenticated_streams: 8,
            open_rate: 2_000,
            open_burst: 4_000,
            auth_failed_window: crate::audit::AUTH_FAILED_WINDOW,
            direct_per_client: crate::routes::DIRECT_PER_CLIENT,
            direct_per_agent: crate::routes::DIRECT_PER_AGENT,
            handshakes: 256,
            handshakes_per_address: 64,
        }
    }
}

/// Where the relay's TCP carrier listens, for agents and clients on
/// networks that block UDP ([`relay_net::tcp`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenTcp {
    /// TCP on the QUIC listener's address and port number (the default, as
    /// HTTP/3 and HTTP/2 share 443).
    SamePort,
    /// TCP on this address.
    At(SocketAddr),
    /// No TCP carrier.
    Off,
}

impl std::str::FromStr for ListenTcp {
    type Err = String;

    fn from_str(s: &str) -> Result<ListenTcp, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(ListenTcp::Off);
        }
        s.parse()
            .map(ListenTcp::At)
            .map_err(|_| format!("{s:?} is neither an address (e.g. 0.0.0.0:443) nor \"off\""))
    }
}

/// Everything `relay-server run` needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Where the TCP carrier listens (issue #15).
    pub listen_tcp: ListenTcp,
    /// The relay directory.
    pub paths: Paths,
    /// The audit log file.
    pub audit_log: PathBuf,
    /// The stateless-reset key file: one per relay process (locked while
    /// it runs; see `reset_key`). Default `DIR/reset.key`.
    pub reset_key: PathBuf,
    /// Limits and timeouts.
    pub limits: Limits,
    /// QUIC transport settings.
    pub transport: Transport,
    /// Local address of the admin endpoint (`/metrics`, `/healthz`,
    /// `/readyz`); off when `None`.
    pub metrics: Option<SocketAddr>,
    /// Single sign-on (`[login]` in the config file); off when `None`.
    pub login: Option<crate::login::settings::LoginSettings>,
    /// The browser shell (`[web]` in the config file); off when `None`.
    pub web: Option<crate::web::settings::WebSettings>,
}

impl Config {
    /// Defaults for a relay directory and listen address.
    pub fn new(dir: &Path, listen: SocketAddr) -> Config {
        let paths = Paths::from(dir);
        Config {
            listen,
            listen_tcp: ListenTcp::SamePort,
            audit_log: paths.audit(),
            reset_key: paths.reset_key(),
            paths,
            limits: Limits::default(),
            transport: Transport::relay(),
            metrics: None,
            login: None,
            web: None,
        }
    }
}
