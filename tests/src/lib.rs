//! Test harness: a real relay, real agents and real clients on 127.0.0.1
//! ephemeral ports, with a throwaway CA minted in a temporary directory.
//!
//! In-process parts ([`TestRelay`], [`TestRelay::agent`], [`TestRelay::client`])
//! run the library code of the three programs; [`launch`] starts the
//! programs themselves (paths from [`programs!`]) for tests that need a
//! separate process (one to kill with SIGKILL, say); [`tinyproxy`] runs a
//! real HTTP CONNECT proxy; [`browser`] drives a real headless Chromium.
//! Nothing here sleeps to synchronise: it waits on watch channels, bound
//! ports and log lines, under a hang guard (`tests/clippy.toml` bans the
//! sleeps).

// A harness failure is a test failure: panicking with a message is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::{Name, Role};
use relay_agent::allowlist::Allowlist;
use relay_client::direct::EndToEnd;
use relay_client::Client;
use relay_net::credential::{Credential, Loaded};
use relay_server::cmd::init::Init;
use relay_server::cmd::issue::Issue;
use relay_server::config::{Config, Paths};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use relay_client::AgentTarget as Destination;

pub mod browser;
pub mod chaos;
pub mod launch;
pub mod oidc;
pub mod tinyproxy;
pub mod web;

pub use tinyproxy::{TinyProxy, TinyProxyConfig};

/// The hang guard of every wait in the harness: generous, as CI machines
/// are small, and never a pacing device.
pub const GUARD: Duration = Duration::from_secs(30);

/// Installs a test subscriber once (`RUST_LOG=debug cargo test` to see logs).
pub fn trace_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Awaits `f` under the hang guard.
///
/// # Panics
/// If `f` does not complete within [`GUARD`] (a hang is a test failure).
pub async fn guard<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("hang guard: {what} did not complete within {GUARD:?}"),
    }
}

/// A policy that lets any client reach any target of any agent.
pub const ALLOW_ALL: &str = "[[allow]]\nclient = \"*\"\nagent = \"*\"\ntargets = [\"*\"]\n";

/// A policy that lets any client reach any target, open shells and run
/// commands on any agent.
pub const ALLOW_SESSIONS: &str =
    "[[allow]]\nclient = \"*\"\nagent = \"*\"\ntargets = [\"*\"]\nshell = true\nrun = true\n";

/// An agent config tweak: serve shell and command sessions with `/bin/sh`
/// (the test machine's bash would read the user's profile files).
pub fn allow_sessions(config: &mut relay_agent::Config) {
    config.sessions.allow = true;
    config.sessions.shell = PathBuf::from("/bin/sh");
}

/// A relay running in this process.
pub struct TestRelay {
    /// Its directory (CA, certificates, policy, audit log).
    pub dir: tempfile::TempDir,
    /// Its UDP address.
    pub addr: SocketAddr,
    /// Its registry, to wait for agents.
    pub registry: std::sync::Arc<relay_server::registry::Registry>,
    /// Its admin endpoint (`/metrics`...), when the config enabled one.
    pub admin: Option<SocketAddr>,
    reloads: watch::Receiver<u64>,
    /// Live client connections, as the relay counts them.
    pub clients: watch::Receiver<usize>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl TestRelay {
    /// A relay with `policy`, on 127.0.0.1:0, with small test limits.
    pub async fn start(policy: &str) -> TestRelay {
        TestRelay::start_with(policy, |_| {}).await
    }

    /// As [`TestRelay::start`], with the config adjusted by `tweak`.
    pub async fn start_with(policy: &str, tweak: impl FnOnce(&mut Config)) -> TestRelay {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = Paths::from(dir.path());
        Init::new(paths.clone(), vec!["127.0.0.1".into()])
            .run()
            .expect("init");
        std::fs::write(paths.policy(), policy).expect("policy");
        TestRelay::run_in(dir, "127.0.0.1:0".parse().expect("addr"), tweak).await
    }

    /// Runs a relay on an existing directory (for restarts).
    pub async fn run_in(
        dir: tempfile::TempDir,
        listen: SocketAddr,
        tweak: impl FnOnce(&mut Config),
    ) -> TestRelay {
        let mut config = Config::new(dir.path(), listen);
        config.limits.reload_interval = Duration::from_millis(50);
        config.limits.shutdown_grace = Duration::from_millis(500);
        tweak(&mut config);
        let relay = relay_server::Relay::bind(config).expect("relay bind");
        let addr = relay.local_addr().expect("local addr");
        let admin = relay.admin_addr();
        let registry = relay.registry();
        let reloads = relay.reloads();
        let clients = relay.client_connections();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(relay.run(shutdown.clone()));
        TestRelay {
            dir,
            addr,
            registry,
            admin,
            reloads,
            clients,
            shutdown,
            task: Some(task),
        }
    }

    /// The relay directory's paths.
    pub fn paths(&self) -> Paths {
        Paths::from(self.dir.path())
    }

    /// Issues a credential file for `role/name`; returns its path.
    pub fn issue(&self, role: Role, name: &str) -> PathBuf {
        self.issue_with(role, name, None)
    }

    /// Issues a credential with a given lifetime.
    pub fn issue_with(&self, role: Role, name: &str, ttl: Option<Duration>) -> PathBuf {
        let (credential, _) = Issue {
            paths: self.paths(),
            role,
            name: Name::try_from(name).expect("name"),
            relay: vec![self.addr.to_string()],
            ttl,
            csr: None,
            groups: Vec::new(),
        }
        .run()
        .expect("issue");
        let path = self.dir.path().join(format!("{role}-{name}.cred"));
        credential.save(&path).expect("save credential");
        path
    }

    /// Loads a freshly issued credential.
    pub fn credential(&self, role: Role, name: &str) -> Loaded {
        Credential::load(&self.issue(role, name), None).expect("load credential")
    }

    /// An in-process client named `name`, on the relay path: what most
    /// tests check is the relay's (its audit, metrics, limits, routing).
    /// `.end_to_end(mode)` gives the others, e.g. the product's default,
    /// `EndToEnd::Auto`; the programs the tests launch run with it.
    pub fn client(&self, name: &str) -> Client {
        Client::new(self.credential(Role::Client, name)).end_to_end(EndToEnd::Off)
    }

    /// An in-process agent named `name` exposing `targets`, registered.
    pub async fn agent(&self, name: &str, targets: &[(&str, SocketAddr)]) -> TestAgent {
        self.agent_with(name, targets, |_| {}).await
    }

    /// As [`TestRelay::agent`], with the config adjusted by `tweak`.
    pub async fn agent_with(
        &self,
        name: &str,
        targets: &[(&str, SocketAddr)],
        tweak: impl FnOnce(&mut relay_agent::Config),
    ) -> TestAgent {
        let mut allowlist = Allowlist::default();
        for (t, addr) in targets {
            allowlist.add(t, &addr.to_string()).expect("target");
        }
        let mut config = relay_agent::Config::new(self.credential(Role::Agent, name), allowlist);
        config.backoff.initial = Duration::from_millis(20);
        config.backoff.max = Duration::from_millis(200);
        config.shutdown_grace = Duration::from_millis(200);
        tweak(&mut config);
        let agent = relay_agent::Agent::new(config);
        let mut registered = agent.registered();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(agent.run(shutdown.clone()));
        guard("agent registration", registered.wait_for(|n| *n > 0))
            .await
            .expect("agent alive");
        TestAgent {
            registered,
            shutdown,
            task: Some(task),
        }
    }

    /// A receiver that changes after each reload of policy or revocations.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.reloads.clone()
    }

    /// Replaces the policy and waits until the relay has reloaded it.
    pub async fn set_policy(&mut self, policy: &str) {
        self.reloads.borrow_and_update();
        relay_net::fsutil::write_public(&self.paths().policy(), policy.as_bytes())
            .expect("write policy");
        guard("policy reload", self.reloads.changed())
            .await
            .expect("relay alive");
    }

    /// Runs `relay-server revoke` logic and waits until the relay applied it.
    pub async fn revoke(&mut self, role: Role, name: &str) {
        self.reloads.borrow_and_update();
        let target =
            relay_server::cmd::revoke::Target::Identity(role, Name::try_from(name).expect("name"));
        relay_server::cmd::revoke::revoke(&self.paths(), target).expect("revoke");
        guard("revocation reload", self.reloads.changed())
            .await
            .expect("relay alive");
    }

    /// Revokes one certificate by serial and waits until the relay applied it.
    pub async fn revoke_serial(&mut self, serial: &str) {
        self.reloads.borrow_and_update();
        let target = relay_server::cmd::revoke::Target::Serial(serial.to_owned());
        relay_server::cmd::revoke::revoke(&self.paths(), target).expect("revoke");
        guard("revocation reload", self.reloads.changed())
            .await
            .expect("relay alive");
    }

    /// Waits until `agent` has exactly `n` registered instances.
    pub async fn wait_instances(&self, agent: &str, n: usize) {
        let name = proto::AgentName::try_from(agent).expect("agent name");
        let mut changes = self.registry.subscribe();
        guard(
            "agent instances",
            changes.wait_for(|_| self.registry.instances(&name) == n),
        )
        .await
        .expect("registry alive");
    }

    /// The audit log's events, parsed.
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        audit_in(self.dir.path())
    }

    /// Shuts the relay down cleanly (GoAway, drain, close) and keeps its directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            guard("relay shutdown", task).await.expect("relay task");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// Shuts the relay down cleanly.
    pub async fn shutdown(self) {
        let _ = self.stop().await;
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An agent running in this process.
pub struct TestAgent {
    /// Number of relays it is registered with.
    pub registered: watch::Receiver<usize>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl TestAgent {
    /// Waits until it is registered with at least one relay.
    pub async fn wait_registered(&mut self) {
        guard("agent registration", self.registered.wait_for(|n| *n > 0))
            .await
            .expect("agent alive");
    }

    /// Shuts it down cleanly.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            guard("agent shutdown", task).await.expect("agent task");
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A TCP echo server on 127.0.0.1:0: echoes until the peer half-closes,
/// then half-closes back.
pub async fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A TCP sink on 127.0.0.1:0: reads each connection to EOF, then replies
/// with the SHA-256 of what it read and closes. A transfer is byte-exact iff
/// the reply equals the sender's hash; a truncation that looked like a clean
/// end would show as a different hash.
pub async fn hashing_sink() -> SocketAddr {
    use sha2::{Digest, Sha256};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
    let addr = listener.local_addr().expect("sink addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut hash = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => hash.update(&buf[..n]),
                        Err(_) => return,
                    }
                }
                let _ = tcp.write_all(&hash.finalize()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

/// A TCP target on 127.0.0.1:0 that writes to each connection without end
/// and never reads it: a peer that pushes data at someone who stalls. What
/// it has written in all is on the returned channel, for tests to wait on.
pub async fn firehose() -> (SocketAddr, tokio::sync::watch::Receiver<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind firehose");
    let addr = listener.local_addr().expect("firehose addr");
    let (total, written) = tokio::sync::watch::channel(0u64);
    let total = std::sync::Arc::new(total);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let total = total.clone();
            tokio::spawn(async move {
                let chunk = vec![7u8; 64 << 10];
                while tcp.write_all(&chunk).await.is_ok() {
                    total.send_modify(|t| *t += chunk.len() as u64);
                }
            });
        }
    });
    (addr, written)
}

/// A TCP target on 127.0.0.1:0 that accepts each connection and holds it
/// without ever reading: a target that stops reading.
pub async fn black_hole() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind black hole");
    let addr = listener.local_addr().expect("black hole addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    addr
}

/// A credential for `role/name` of `relay` that dials the relay at `via`
/// (a [`chaos::ChaosProxy`], say) instead of its real address.
pub fn credential_via(relay: &TestRelay, role: Role, name: &str, via: SocketAddr) -> Loaded {
    let path = relay.issue(role, name);
    let mut credential = Credential::load(&path, None)
        .expect("credential")
        .credential;
    credential.relay = vec![via.to_string()];
    credential.save(&path).expect("save credential");
    Credential::load(&path, None).expect("credential")
}

/// A listener on 127.0.0.1:0 bound and then closed: connecting to it is
/// refused (loopback only; nothing leaves the machine).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// A loopback TCP target that never answers: a listener with a backlog of 0
/// that never accepts, its accept queue filled, so Linux drops further SYNs
/// and a dial neither succeeds nor is refused. Nothing leaves 127.0.0.1.
/// Keep the value alive while it is used.
pub struct SilentTarget {
    /// Its address.
    pub addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

/// Makes a [`SilentTarget`].
///
/// # Panics
/// If the kernel keeps completing connections to a full accept queue.
pub async fn silent_target() -> SilentTarget {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..8 {
        // A probe that does not complete within 200 ms means SYNs are dropped.
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => fillers.push(tcp),
            Ok(Err(e)) => panic!("filling the accept queue of {addr}: {e}"),
            Err(_) => {
                return SilentTarget {
                    addr,
                    _listener: listener,
                    _fillers: fillers,
                }
            }
        }
    }
    panic!("the kernel kept completing connections to a full accept queue");
}

/// Reads exactly `n` bytes.
pub async fn read_n(s: &mut (impl AsyncReadExt + Unpin), n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// `GET path` over HTTP/1.1 to `addr`; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr)
        .await
        .expect("connect to admin endpoint");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = String::new();
    guard("http response", tcp.read_to_string(&mut response))
        .await
        .expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Starts `relay-client forward`'s logic in this process on 127.0.0.1:0;
/// returns the local address.
pub async fn forward(
    client: std::sync::Arc<Client>,
    dest: &str,
) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind forward");
    let addr = listener.local_addr().expect("forward addr");
    let dest: Destination = dest.parse().expect("destination");
    let shutdown = CancellationToken::new();
    tokio::spawn(relay_client::cmd::forward::run(
        client,
        listener,
        dest,
        shutdown.clone(),
    ));
    (addr, shutdown)
}

/// Connects to a forward.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect to forward")
}

/// The audit events in the relay directory `dir` (of a running relay, a
/// stopped one or a relay process), parsed; none if there is no log yet.
///
/// # Panics
/// If a line is not JSON (the audit log is one JSON object per line).
pub fn audit_in(dir: &Path) -> Vec<serde_json::Value> {
    json_lines(&Paths::from(dir).audit())
}

/// The audit events of the streams the in-process agents of the relay
/// directory `dir` served on direct paths (their credentials are issued
/// there, and their log defaults to beside them), parsed.
///
/// # Panics
/// If a line is not JSON.
pub fn agent_audit_in(dir: &Path) -> Vec<serde_json::Value> {
    json_lines(&dir.join("agent-audit.jsonl"))
}

/// The JSON lines of `file`; none if there is no file.
fn json_lines(file: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: not a JSON line ({e}): {l}", file.display()))
        })
        .collect()
}

/// Opens a `Tcp` stream to `agent/target` on `conn` by hand (not through
/// a client, which checks first what it may send) and gives the answer.
///
/// # Errors
/// If the stream cannot be opened or written.
pub async fn open_by_hand(
    conn: &quinn::Connection,
    to: &str,
) -> anyhow::Result<Result<proto::Accepted, relay_net::answer::AnswerError>> {
    let dest = dest(to);
    let (mut send, recv) = conn.open_bi().await?;
    let open = proto::Open {
        agent: dest.agent,
        target: dest.target,
        kind: proto::StreamKind::Tcp,
    };
    relay_net::framed::write_frame(&mut send, open).await?;
    let mut reader = relay_net::framed::FrameReader::new(recv);
    Ok(guard("answer", relay_net::answer::read_answer(&mut reader, None)).await)
}

/// `agent/target` as a client destination.
///
/// # Panics
/// If `s` is not one (tests write them literally).
pub fn dest(s: &str) -> Destination {
    s.parse()
        .unwrap_or_else(|e| panic!("destination {s:?}: {e}"))
}
