//! Command line of `relay-agent` (in the library so the test harness can run
//! the very same program as a separate process).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use relay_net::credential::Credential;

use crate::allowlist::Allowlist;
use crate::config::{Config, File, LogFormat};

const EXAMPLES: &str = "\
Examples:
  relay-agent --credential agent.cred --expose kube-api=10.0.0.1:6443 --expose db=db.internal:5432
  relay-agent --config /etc/relay/agent.toml
  relay-agent --credential agent.cred --allow-socks 'kube.internal:443,10.0.0.0/8:5432'
  relay-agent --credential agent.cred --allow-socks kube.internal:443 --socks-host kube.internal=10.0.0.1
  relay-agent --credential agent.cred --allow-shell --record-dir /var/log/relay-sessions
  relay-agent --credential agent.cred --allow-shell --shell /bin/bash --shell-user ops --shell-env KUBECONFIG
  relay-agent --credential agent.cred --expose kube-api=10.0.0.1:6443 --proxy http://proxy.internal:3128
  relay-agent keygen --out agent.key > agent.csr     # then: relay-server issue agent NAME --csr agent.csr

Environment:
  RELAY_CREDENTIAL, RELAY_KEY  instead of --credential, --key
  RELAY_TRANSPORT, RELAY_TCP_PORT  instead of --transport, --tcp-port
  HTTPS_PROXY, NO_PROXY  the HTTP proxy of the TCP carrier (--proxy overrides)
  RUST_LOG       log filter on stderr [default: info], e.g. RUST_LOG=debug or
                 RUST_LOG=info,relay_agent=debug (tracing EnvFilter syntax)
  RELAY_RUNTIME  auto|current|multi [default: current]

Signals:
  SIGHUP re-reads the credential file (and its --key): a renewed certificate
  for the same agent is used by the next registrations, no restart needed.
  The file is also checked every minute. SIGTERM or SIGINT shuts down.";

/// Runs inside the private network: dials out to the relay and serves the
/// targets it exposes. It never listens on a port.
#[derive(Debug, Parser)]
#[command(name = "relay-agent", version, after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Credential file from `relay-server issue agent`.
    #[arg(long, env = "RELAY_CREDENTIAL")]
    credential: Option<PathBuf>,
    /// Private key, for a credential issued from a CSR (`keygen`).
    #[arg(long, env = "RELAY_KEY")]
    key: Option<PathBuf>,
    /// Expose a target: NAME=HOST:PORT (repeatable). Nothing else is ever dialled.
    #[arg(long = "expose", value_name = "NAME=HOST:PORT")]
    expose: Vec<String>,
    /// Also expose the built-in benchmark service as target `bench` (a
    /// sink/source/echo inside this process, for `relay-client bench`).
    #[arg(long)]
    expose_bench: bool,
    /// Config file (TOML): every flag has a key of the same name
    /// (`max-dials = 256`, `[expose]` for --expose; see deploy/agent.toml).
    /// A flag given here overrides its key; repeatable flags add to the
    /// file's lists. Unknown keys are an error.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Deadline for connecting to a target [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    dial_timeout: Option<Duration>,
    /// Target dials in flight at once; more opens are refused until one ends
    /// [default: 256].
    #[arg(long)]
    max_dials: Option<usize>,
    /// Target dials in flight at once per caller (client identity), within
    /// --max-dials: more wait, within --dial-timeout, for that caller's own
    /// dials to end, so one caller's unreachable targets cannot take every
    /// dial from the others [default: 32].
    #[arg(long)]
    max_dials_per_caller: Option<usize>,
    /// Streams (TCP, SOCKS, sessions) open at once per caller; more are
    /// refused until one ends. A port-forward of hundreds of connections
    /// fits [default: 1024].
    #[arg(long)]
    max_streams_per_caller: Option<usize>,
    /// Longest wait between attempts to reach the relay. A relay that
    /// refuses this agent for good (revoked, not authorized) is not retried;
    /// once every relay has, the agent exits non-zero and says what to do
    /// [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    max_backoff: Option<Duration>,
    /// How to reach relays: auto (QUIC, and the TCP carrier too if QUIC has
    /// not answered within 250 ms; back to QUIC when it works), quic (UDP
    /// only), tcp (TLS over TCP only, e.g. through an HTTPS proxy) [default: auto].
    #[arg(long, env = "RELAY_TRANSPORT", value_name = "auto|quic|tcp")]
    transport: Option<relay_net::endpoint::Via>,
    /// The relays' TCP carrier port, where it is not their QUIC port.
    #[arg(long, env = "RELAY_TCP_PORT", value_name = "PORT")]
    tcp_port: Option<u16>,
    /// HTTP proxy for the TCP carrier (CONNECT), e.g.
    /// http://user:password@proxy:3128 [default: HTTPS_PROXY, unless NO_PROXY
    /// names the relay].
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Idle timeout of the relay connection: a relay that is silently gone
    /// is noticed after it (a restarted one at the next keep-alive, sent
    /// every half of it; the relay's own, 30 s, caps it) [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Serve /metrics, /healthz and /readyz (ready = registered with a
    /// relay) on this local TCP address, e.g. 127.0.0.1:9091.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Log format on stderr [default: text].
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Serve interactive shells and remote commands (`relay-client shell`,
    /// `run`), if the relay's policy also grants them. Off by default: a
    /// session can do anything this agent's OS user can.
    #[arg(long)]
    allow_shell: bool,
    /// Shell of interactive sessions [default: /bin/bash if present, else /bin/sh].
    #[arg(long, value_name = "PATH")]
    shell: Option<PathBuf>,
    /// Run sessions as this OS user (the agent must run as root to switch).
    #[arg(long, value_name = "USER")]
    shell_user: Option<String>,
    /// Pass NAME from the agent's environment to sessions, or set NAME=VALUE
    /// (repeatable). Sessions otherwise get a clean environment.
    #[arg(long, value_name = "NAME[=VALUE]")]
    shell_env: Vec<String>,
    /// Record interactive sessions here, one asciicast v2 file each. A
    /// session that cannot be recorded is refused (see --record-fail-open).
    /// The relay's web page lists and plays them for those the policy
    /// grants `recordings = true`.
    #[arg(long, value_name = "DIR")]
    record_dir: Option<PathBuf>,
    /// Run sessions even when their recording cannot be written.
    #[arg(long)]
    record_fail_open: bool,
    /// Serve SOCKS streams (`relay-client socks`) to these destinations only,
    /// if the relay's policy also grants `socks = true`: comma-separated
    /// HOST:PORT, CIDR:PORT or CIDR:* ([v6]/len in brackets); repeatable.
    /// Names are resolved here and every address is checked; loopback,
    /// link-local and the metadata address need a rule inside their range.
    #[arg(long, value_name = "RULES")]
    allow_socks: Vec<String>,
    /// Resolve NAME to these addresses for SOCKS, without DNS (split
    /// horizon); the addresses are still checked against the rules.
    #[arg(long, value_name = "NAME=IP[,IP]")]
    socks_host: Vec<String>,
    /// Audit log (JSON lines) of the streams served on direct paths
    /// (end-to-end mode), which the relay cannot see; a direct stream whose
    /// record cannot be written is refused. Default: agent-audit.jsonl
    /// beside the credential file.
    #[arg(long, value_name = "PATH")]
    audit_log: Option<PathBuf>,
    /// Direct connections (end-to-end mode) one client identity may hold
    /// to this agent at once [default: 8].
    #[arg(long, value_name = "N")]
    max_direct_connections: Option<usize>,
    /// Stream opens per second one client identity may make on its direct
    /// connections to this agent, bursts of twice that [default: 2000, as
    /// the relay's --max-open-rate on the relay path].
    #[arg(long, value_name = "N")]
    max_direct_open_rate: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a private key and print a certificate signing request for it, so
    /// the key never leaves this host.
    Keygen {
        /// Where to write the private key (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// The benchmark service on plain TCP, as the direct baseline of
    /// `relay-client bench --direct ADDR`; prints `bench-server listening on ADDR`.
    BenchServer {
        /// Address to listen on (loopback by default).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let args = Args::parse();
    // The file is read before logging starts: it may set the log format.
    let file = match args.config.as_deref().map(File::load).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(e) => {
            eprintln!("relay-agent: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let format = args.log_format.or(file.log_format);
    relay_net::logging::init("info", format == Some(LogFormat::Json));
    match run(args, file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args, file: File) -> anyhow::Result<()> {
    match args.command {
        Some(Command::Keygen { out }) => return keygen(&out),
        Some(Command::BenchServer { listen }) => return bench_server(listen),
        None => {}
    }
    let credential = args.credential.or(file.credential).ok_or_else(|| {
        anyhow::anyhow!(
            "give --credential FILE (from `relay-server issue agent NAME`), or --config FILE"
        )
    })?;
    let key = args.key.or(file.key);
    let loaded = Credential::load(&credential, key.as_deref())?;
    // Before anything else: the relay would refuse every registration.
    crate::error::check_role(&loaded)?;
    let mut allowlist = Allowlist::default();
    for (name, addr) in &file.expose {
        allowlist
            .add(name, addr)
            .map_err(|e| anyhow::anyhow!("config: expose {name} = {addr:?}: {e}"))?;
    }
    for spec in &args.expose {
        allowlist.add_spec(spec)?;
    }
    if args.expose_bench || file.expose_bench {
        allowlist.add_bench().map_err(|e| anyhow::anyhow!(e))?;
    }
    let mut socks = crate::socks::Socks::default();
    for spec in file.allow_socks.iter().chain(&args.allow_socks) {
        socks.add_rules(spec)?;
    }
    for spec in file.socks_host.iter().chain(&args.socks_host) {
        socks.add_host(spec)?;
    }
    if allowlist.is_empty() && !(args.allow_shell || file.allow_shell) && !socks.enabled() {
        tracing::warn!("nothing exposed: every open will be refused (add --expose NAME=HOST:PORT)");
    }
    let mut config = Config::new(loaded, allowlist);
    if socks.enabled() {
        let rules: Vec<String> = socks.rules().iter().map(ToString::to_string).collect();
        tracing::warn!(rules = %rules.join(","), "SOCKS is allowed to these destinations (where the relay policy grants it)");
    }
    config.socks = socks;
    // A flag wins over its key; what neither sets keeps Config::new's default.
    if let Some(timeout) = args.dial_timeout.or(file.dial_timeout) {
        config.dial_timeout = timeout;
    }
    if let Some(n) = args.max_dials.or(file.max_dials) {
        config.max_dials = n.max(1);
    }
    if let Some(n) = args.max_dials_per_caller.or(file.max_dials_per_caller) {
        config.max_dials_per_caller = n.max(1);
    }
    if let Some(n) = args.max_streams_per_caller.or(file.max_streams_per_caller) {
        config.max_streams_per_caller = n.max(1);
    }
    if let Some(path) = args.audit_log.or(file.audit_log) {
        config.audit_log = path;
    }
    if let Some(n) = args.max_direct_connections.or(file.max_direct_connections) {
        config.direct.max_connections = n.max(1);
    }
    if let Some(n) = args.max_direct_open_rate.or(file.max_direct_open_rate) {
        config.direct.open_rate = n.max(1);
        config.direct.open_burst = n.max(1).saturating_mul(2);
    }
    if let Some(max) = args.max_backoff.or(file.max_backoff) {
        config.backoff.max = max;
    }
    if let Some(idle) = args.idle_timeout.or(file.idle_timeout) {
        config.transport.idle_timeout = idle;
        config.transport.keep_alive = Some(idle / 2);
    }
    if let Some(via) = args.transport.or(file.transport) {
        config.transport.via = via;
    }
    config.transport.tcp_port = args.tcp_port.or(file.tcp_port);
    config.transport.proxy = args.proxy.or(file.proxy);
    if let Some(addr) = args.metrics.or(file.metrics) {
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
        tracing::info!(addr = %listener.local_addr()?, "metrics on /metrics, /healthz, /readyz");
        config.metrics = Some(std::sync::Arc::new(listener));
    }
    let sessions = &mut config.sessions;
    sessions.allow = args.allow_shell || file.allow_shell;
    if let Some(shell) = args.shell.or(file.shell) {
        sessions.shell = shell;
    }
    if let Some(user) = args.shell_user.or(file.shell_user) {
        sessions.user = crate::session::RunAs::lookup(&user)?;
    }
    sessions.env = file.shell_env.into_iter().chain(args.shell_env).collect();
    sessions.record_dir = args.record_dir.or(file.record_dir);
    sessions.record_fail_open = args.record_fail_open || file.record_fail_open;
    if sessions.allow {
        if let Some(dir) = &sessions.record_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create record dir {}: {e}", dir.display()))?;
        }
        tracing::warn!(
            user = %sessions.user.name,
            shell = %sessions.shell.display(),
            recorded = sessions.record_dir.is_some(),
            "shell and command sessions are allowed (where the relay policy grants them)"
        );
    }
    let runtime = relay_net::runtime::build(relay_net::runtime::Flavor::Current)?;
    runtime.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        relay_net::signals::cancel_on_signal(shutdown.clone())?;
        tracing::info!(identity = %config.credential.cert.identity, "agent starting");
        let agent = crate::Agent::new(config);
        // SIGHUP re-reads the credential file (and no longer ends the agent).
        relay_net::signals::reload_on_hangup(agent.credential(), shutdown.clone())?;
        agent.try_run(shutdown).await?;
        Ok(())
    })
}

fn bench_server(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let runtime = relay_net::runtime::build(relay_net::runtime::Flavor::Current)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        relay_net::signals::cancel_on_signal(shutdown.clone())?;
        // One machine-readable line, as `relay-server run` prints.
        println!("bench-server listening on {}", listener.local_addr()?);
        crate::bench::serve_tcp(listener, shutdown).await;
        Ok(())
    })
}

/// `relay-agent keygen`: the key stays here, the CSR goes to the relay's operator.
fn keygen(out: &std::path::Path) -> anyhow::Result<()> {
    let csr = relay_net::pki::new_key_file(out, proto::Role::Agent)?;
    print!("{csr}");
    eprintln!(
        "wrote {}; send the CSR above to the relay's operator for `relay-server issue agent NAME --csr FILE`, then start the agent with `--key {}`",
        out.display(),
        out.display()
    );
    Ok(())
}
