//! `relay-server`: the public rendezvous of the QUIC reverse tunnel.
//!
//! Agents dial in and register (`control`); clients open one stream per
//! forwarded connection (`client`, then `stream` by its first frame),
//! each authorized in one place (`authorize`) against the caller's
//! certificate identity and the [`policy::Policy`], then spliced to an agent
//! instance from the [`registry::Registry`]. Every open, refusal and close is
//! an [`audit`] event. `run` never reads the CA private key: `cmd::init` and
//! `cmd::issue` are the only code that touches it.
//!
//! ```text
//! lib (bind, run) ─▶ conn (handshake → identity → role) ─┬▶ control (an agent: Register … GoAway)
//!                                                        └▶ client (accept, open rate)
//!                                                             └▶ stream ─┬▶ open   ─▶ agent, splice
//!                                                                        ├▶ list
//!                                                                        └▶ direct ─▶ routes
//!                  every stream kind asks authorize (revocation, policy, presence, reach)
//! ```
//!
//! A new stream kind is a file in `stream/` and a line in its dispatch; a
//! new source of identity ends in `conn` as a [`PeerCert`]; a new transport
//! hands `conn` its connections. Beside them: [`config`], `reload`
//! (policy/revocation changes), `reset_key` (one per instance, locked), [`cmd`] (init, issue, issued, revoke, unrevoke), [`cli`].

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use proto::{ErrorCode, Name, Refused};
use relay_net::cert::PeerCert;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub mod audit;
mod authorize;
pub mod cli;
mod client;
pub mod cmd;
pub mod config;
pub mod config_file;
mod conn;
mod control;
pub mod login;
pub mod metrics;
pub mod policy;
pub mod registry;
mod reload;
mod reset_key;
pub mod revocation;
mod routes;
mod stream;
pub mod web;

pub use config::Config;

use audit::Audit;
use policy::Policy;
use registry::Registry;
use revocation::Revocations;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A file of the relay directory is missing or unreadable.
    #[error("cannot read {path}: {err} (did you run `relay-server init --dir {dir}`?)")]
    Missing {
        /// The file.
        path: String,
        /// The directory.
        dir: String,
        /// What went wrong.
        err: std::io::Error,
    },
    /// A certificate or key is invalid.
    #[error(transparent)]
    Tls(#[from] relay_net::tls::TlsError),
    /// The relay certificate carries no relay identity.
    #[error("relay certificate: {0}")]
    Cert(#[from] relay_net::cert::CertError),
    /// The policy is invalid.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// The revocation list is invalid.
    #[error(transparent)]
    Revocation(#[from] revocation::RevocationError),
    /// The audit log cannot be opened.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    /// Single sign-on cannot start (its signer is missing, say).
    #[error("{0}")]
    Login(String),
    /// The UDP address cannot be bound.
    #[error("cannot listen on {addr}: {err}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        err: std::io::Error,
    },
}

/// State shared by every connection task.
#[derive(Debug)]
pub(crate) struct Shared {
    relay_name: Name,
    /// This process among the instances of one relay, random at start:
    /// agents that reach it through two addresses keep one connection
    /// (`Registered::instance`).
    instance: u64,
    /// When this process started serving: a young relay gives agents a
    /// moment to come back ([`Shared::when_agents_are_back`]).
    started: std::time::Instant,
    policy: RwLock<Arc<Policy>>,
    revocations: RwLock<Arc<Revocations>>,
    registry: Arc<Registry>,
    conns: conn::ConnTable,
    audit: Audit,
    limits: config::Limits,
    metrics: Arc<metrics::Metrics>,
    /// Opens per second per client identity.
    open_limiter: governor::DefaultKeyedRateLimiter<Name>,
    /// Streams open at once per client identity.
    client_streams: relay_net::quota::Quota<Name>,
    /// Handshakes under way (one key: the relay's), capped at
    /// [`config::Limits::handshakes`].
    handshakes: relay_net::quota::Quota<()>,
    /// Handshakes under way per source address ([`conn::address_key`]),
    /// capped at [`config::Limits::handshakes_per_address`].
    handshakes_per_address: relay_net::quota::Quota<std::net::IpAddr>,
    /// Live client connections, so tests and tools can wait on them.
    clients: tokio::sync::watch::Sender<usize>,
    /// The relay's socket: UDP and the TCP carriers, which know the real
    /// address behind a carrier's virtual one ([`Shared::remote`]).
    carriers: Arc<relay_net::tcp::Carriers>,
    /// How connections on a carrier are accepted (larger packets).
    carrier_config: Arc<quinn::ServerConfig>,
    /// Bumped after every reload attempt of policy or revocations.
    reloads: tokio::sync::watch::Sender<u64>,
    /// Routes of direct paths, read by the UDP socket for every datagram.
    direct: Arc<routes::Routes>,
    /// Single sign-on, if configured: the one service of a connection
    /// without a certificate.
    login: Option<login::Logins>,
    /// The browser shell, if configured (`[web]`).
    web: Option<Arc<web::Web>>,
}

/// How long a freshly started relay lets agents come back before it says an
/// agent is unknown or offline: after a restart, agents register again
/// within about half a second (they re-dial every 500 ms), and a client that
/// lands here first must not be told the agent is gone.
const AGENTS_RETURN_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

impl Shared {
    /// `check`, run again as agents register while this relay is younger
    /// than [`AGENTS_RETURN_WITHIN`] and `check` finds an agent missing.
    async fn when_agents_are_back<T>(
        &self,
        check: impl Fn() -> Result<T, Refused>,
    ) -> Result<T, Refused> {
        let mut changes = self.registry.subscribe();
        loop {
            let result = check();
            let missing = matches!(&result, Err(r) if r.code == ErrorCode::UNKNOWN_AGENT || r.code == ErrorCode::AGENT_OFFLINE);
            let left = AGENTS_RETURN_WITHIN.saturating_sub(self.started.elapsed());
            if !missing || left.is_zero() {
                return result;
            }
            if tokio::time::timeout(left, changes.changed()).await.is_err() {
                return check();
            }
        }
    }

    /// The policy in force; a stream reads one snapshot.
    fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }

    /// The revocation list in force.
    fn revocations(&self) -> Arc<Revocations> {
        self.revocations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_revocations(&self, list: Arc<Revocations>) {
        *self.revocations.write().unwrap_or_else(|p| p.into_inner()) = list;
    }

    /// Why `peer` is revoked, if it is.
    fn revoked(&self, peer: &PeerCert) -> Option<String> {
        self.revocations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .check(peer)
            .map(|revoked| revoked.to_string())
    }
}

impl Shared {
    /// The peer's real address: a carrier's TCP peer rather than its
    /// virtual address, for audit records, logs and per-address limits.
    pub(crate) fn remote(&self, conn_remote: SocketAddr) -> SocketAddr {
        self.carriers.real(conn_remote)
    }
}

/// Binds the QUIC listener's UDP socket and, unless off, the TCP carrier's
/// listener. With the default (the same port number) and port 0, both take
/// one port number the kernel picks for TCP.
fn bind_listeners(
    listen: SocketAddr,
    tcp: config::ListenTcp,
) -> Result<(std::net::UdpSocket, Option<std::net::TcpListener>), RelayError> {
    use config::ListenTcp;
    let bind_tcp = |addr: SocketAddr| {
        std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|err| RelayError::Bind { addr, err })
    };
    let bind_udp = |addr: SocketAddr| {
        relay_net::endpoint::bind_udp(addr).map_err(|err| RelayError::Bind { addr, err })
    };
    match tcp {
        ListenTcp::Off => Ok((bind_udp(listen)?, None)),
        ListenTcp::At(addr) => Ok((bind_udp(listen)?, Some(bind_tcp(addr)?))),
        ListenTcp::SamePort if listen.port() != 0 => {
            Ok((bind_udp(listen)?, Some(bind_tcp(listen)?)))
        }
        ListenTcp::SamePort => {
            // The port TCP got may be taken for UDP: a few tries.
            let mut last = None;
            for _ in 0..16 {
                let tcp = bind_tcp(listen)?;
                let addr = tcp
                    .local_addr()
                    .map_err(|err| RelayError::Bind { addr: listen, err })?;
                match bind_udp(addr) {
                    Ok(udp) => return Ok((udp, Some(tcp))),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or(RelayError::Bind {
                addr: listen,
                err: std::io::ErrorKind::AddrInUse.into(),
            }))
        }
    }
}

/// The relay's TCP port: the carrier's listener and TLS, and the web
/// page's TLS when `[web]` is on.
#[derive(Debug)]
struct TcpPort {
    listener: std::net::TcpListener,
    carrier: Arc<rustls::ServerConfig>,
    web: Option<Arc<rustls::ServerConfig>>,
}

/// A bound relay, ready to [`run`](Relay::run).
#[derive(Debug)]
pub struct Relay {
    endpoint: quinn::Endpoint,
    /// The TCP port (carrier and web page), unless turned off.
    tcp: Option<TcpPort>,
    shared: Arc<Shared>,
    config: Config,
    admin: Option<std::net::TcpListener>,
    /// The policy and revocation files as they were before they were
    /// loaded: what the reload task compares against.
    seen: reload::Seen,
    /// Locked while the relay runs, so no other instance uses the key.
    _reset_key: reset_key::ResetKey,
}

impl Relay {
    /// Loads the relay directory (never the CA key) and binds the endpoint.
    ///
    /// # Errors
    /// If a file is missing or invalid, or the address cannot be bound.
    pub fn bind(config: Config) -> Result<Relay, RelayError> {
        let paths = &config.paths;
        let read = |path: std::path::PathBuf| {
            std::fs::read_to_string(&path).map_err(|err| RelayError::Missing {
                path: path.display().to_string(),
                dir: paths.dir.display().to_string(),
                err,
            })
        };
        let ca = read(paths.ca_cert())?;
        let cert = read(paths.relay_cert())?;
        let key = read(paths.relay_key())?;
        let relay_name = PeerCert::from_pem(&cert)?.relay;
        // Read before they are loaded: a change in between is reloaded.
        let seen = reload::Seen::now(paths);
        let policy = Policy::load(&paths.policy())?;
        let revocations = Revocations::load(&paths.revoked())?;
        let audit = Audit::open_with(&config.audit_log, config.limits.auth_failed_window)?;
        let metrics = Arc::new(metrics::Metrics {
            audit_failures: audit.failure_counter(),
            ..metrics::Metrics::default()
        });
        let admin = match config.metrics {
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|err| RelayError::Bind { addr, err })?;
                Some(listener)
            }
            None => None,
        };
        let login = config
            .login
            .as_ref()
            .map(|settings| login::Logins::load(settings, paths))
            .transpose()
            .map_err(RelayError::Login)?;
        let web = config
            .web
            .clone()
            .map(|settings| web::Web::load(settings, config.login.as_ref()).map(Arc::new))
            .transpose()
            .map_err(RelayError::Login)?;
        let tls = relay_net::tls::relay_server_config(&cert, &key, &ca, login.is_some())?;
        // Until a peer's role is known it may open only a few streams; the
        // role's own limit is set once its certificate is read (conn.rs).
        let mut transport = config.transport.clone();
        transport.max_bidi_streams = config.limits.unauthenticated_streams;
        let rate =
            std::num::NonZeroU32::new(config.limits.open_rate).unwrap_or(std::num::NonZeroU32::MIN);
        let burst = std::num::NonZeroU32::new(config.limits.open_burst).unwrap_or(rate);
        let open_limiter =
            governor::RateLimiter::keyed(governor::Quota::per_second(rate).allow_burst(burst));
        let routes = Arc::new(routes::Routes::new(
            config.limits.direct_per_client,
            config.limits.direct_per_agent,
        ));
        let reset_key = reset_key::load(&config.reset_key);
        let (udp, tcp) = bind_listeners(config.listen, config.listen_tcp)?;
        let relay_net::endpoint::Server {
            endpoint,
            carriers,
            carrier_config,
        } = relay_net::endpoint::server(
            udp,
            tls,
            &transport,
            reset_key.key.as_ref(),
            Some(routes.clone()),
        )
        .map_err(|err| RelayError::Bind {
            addr: config.listen,
            err,
        })?;
        let tcp = match tcp {
            Some(listener) => Some(TcpPort {
                listener,
                carrier: relay_net::tls::carrier_server_config(&cert, &key)?,
                web: match web {
                    Some(_) => Some(relay_net::tls::web_server_config(&cert, &key)?),
                    None => None,
                },
            }),
            None if web.is_some() => {
                return Err(RelayError::Login(
                    "[web] serves the page on the TCP port: listen-tcp must not be \"off\"".into(),
                ))
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            relay_name,
            instance: rand::random(),
            started: std::time::Instant::now(),
            policy: RwLock::new(Arc::new(policy)),
            revocations: RwLock::new(Arc::new(revocations)),
            registry: Arc::default(),
            conns: conn::ConnTable::default(),
            audit,
            limits: config.limits.clone(),
            reloads: tokio::sync::watch::channel(0).0,
            clients: tokio::sync::watch::channel(0).0,
            metrics,
            open_limiter,
            client_streams: relay_net::quota::Quota::new(config.limits.streams_per_client as usize),
            handshakes: relay_net::quota::Quota::new(config.limits.handshakes),
            handshakes_per_address: relay_net::quota::Quota::new(
                config.limits.handshakes_per_address,
            ),
            direct: routes,
            carriers,
            carrier_config,
            login,
            web,
        });
        Ok(Relay {
            endpoint,
            tcp,
            shared,
            config,
            admin,
            seen,
            _reset_key: reset_key,
        })
    }

    /// The bound UDP address (useful with port 0).
    ///
    /// # Errors
    /// If the socket is gone.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The TCP carrier's address, unless it is off.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|t| t.listener.local_addr().ok())
    }

    /// Whether the TCP port also serves the web shell (`[web]`).
    pub fn serves_web(&self) -> bool {
        self.tcp.as_ref().is_some_and(|t| t.web.is_some())
    }

    /// The admin endpoint's address (`/metrics`, `/healthz`, `/readyz`), if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The agent registry, e.g. to wait for an agent to register.
    pub fn registry(&self) -> Arc<Registry> {
        self.shared.registry.clone()
    }

    /// Changes after every reload of the policy or revocation files (also
    /// failed ones), so a test can wait for a change to take effect.
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.reloads.subscribe()
    }

    /// Changes whenever a client connection comes or goes; the value is
    /// the number of live client connections.
    pub fn client_connections(&self) -> tokio::sync::watch::Receiver<usize> {
        self.shared.clients.subscribe()
    }

    /// The relay's name (from its certificate).
    pub fn name(&self) -> &Name {
        &self.shared.relay_name
    }

    /// Serves until `shutdown` is cancelled, then drains: `GoAway` to
    /// agents and clients, refuse new connections, serve the live ones until
    /// the clients have moved on (then the agents' connections close) or
    /// the grace period ends, close.
    pub async fn run(self, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        tasks.spawn(reload::run(
            self.shared.clone(),
            self.config.paths.clone(),
            self.seen.clone(),
            shutdown.clone(),
        ));
        if let Some(listener) = self.admin.as_ref().and_then(|l| l.try_clone().ok()) {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    // Not ready while draining: a load balancer stops
                    // sending new peers here.
                    let draining = shutdown.clone();
                    let admin = relay_net::admin::Admin {
                        registry: self.shared.metrics.register(),
                        ready: Box::new(move || !draining.is_cancelled()),
                    };
                    tasks.spawn(relay_net::admin::serve(
                        listener,
                        Arc::new(admin),
                        shutdown.clone(),
                    ));
                }
                Err(err) => tracing::error!(%err, "admin endpoint unavailable"),
            }
        }
        if let Some(port) = &self.tcp {
            match port
                .listener
                .try_clone()
                .and_then(tokio::net::TcpListener::from_std)
            {
                Ok(listener) => {
                    if let Ok(addr) = listener.local_addr() {
                        tracing::info!(%addr, "tcp carrier listening");
                    }
                    // Stops taking carriers when draining, as the QUIC
                    // listener stops taking connections; live ones go on.
                    // A carrier that ends takes its peer's connection with
                    // it now: an agent behind it is offline at once.
                    let shared = Arc::downgrade(&self.shared);
                    let gone = move |addr| {
                        if let Some(shared) = shared.upgrade() {
                            shared.conns.close_remote(addr);
                        }
                    };
                    let web = port.web.clone().map(|tls| {
                        let shared = self.shared.clone();
                        relay_net::tcp::Web {
                            tls,
                            serve: Arc::new(move |stream, remote| {
                                Box::pin(web::serve(shared.clone(), stream, remote))
                            }),
                        }
                    });
                    tasks.spawn(relay_net::tcp::serve(
                        listener,
                        port.carrier.clone(),
                        self.shared.carriers.clone(),
                        relay_net::tcp::TcpLimits::default(),
                        shutdown.clone(),
                        Arc::new(gone),
                        web,
                    ));
                }
                Err(err) => tracing::error!(%err, "tcp carrier unavailable"),
            }
        }
        match self.endpoint.local_addr() {
            Ok(addr) => {
                tracing::info!(%addr, relay = %self.shared.relay_name, instance = %format_args!("{:016x}", self.shared.instance), "relay listening")
            }
            Err(err) => {
                tracing::info!(%err, relay = %self.shared.relay_name, "relay listening (address unknown)")
            }
        }
        loop {
            let incoming = tokio::select! {
                i = self.endpoint.accept() => match i { Some(i) => i, None => break },
                () = shutdown.cancelled() => break,
            };
            // Address validation before any per-connection state: a spoofed
            // source cannot make us do handshake work (QUIC Retry).
            // A carrier's peer is validated by TCP already.
            let carried = relay_net::tcp::is_virtual(incoming.remote_address());
            if !incoming.remote_address_validated() && incoming.may_retry() && !carried {
                let _ = incoming.retry();
                continue;
            }
            // Over the handshake budget, or its share for this address:
            // refused now, so the peer backs off (a reconnect storm spreads
            // itself instead of timing out).
            let from = self.shared.remote(incoming.remote_address()).ip();
            let handshake = match conn::HandshakeSlot::take(&self.shared, from) {
                Ok(slot) => slot,
                Err(limit) => {
                    self.shared.metrics.limit_hit(limit);
                    incoming.refuse();
                    continue;
                }
            };
            let span = tracing::debug_span!("incoming", remote = %incoming.remote_address());
            let serve = conn::serve(self.shared.clone(), incoming, handshake, shutdown.clone());
            tasks.spawn(serve.instrument(span));
        }
        // Draining: agents got `GoAway` on their control streams and
        // clients in datagrams; live connections are served until they
        // leave or the grace ends. New ones are refused, so a client's
        // happy eyeballs moves on to another relay at once.
        tasks.close();
        let grace = self.config.limits.shutdown_grace + std::time::Duration::from_secs(1);
        let refuse_new = async {
            while let Some(incoming) = self.endpoint.accept().await {
                incoming.refuse();
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(grace, tasks.wait()) => {}
            () = refuse_new => {}
        }
        self.endpoint
            .close(ErrorCode::GOING_AWAY.0.into(), b"relay shutting down");
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.endpoint.wait_idle())
            .await;
        tracing::info!("relay stopped");
    }
}
