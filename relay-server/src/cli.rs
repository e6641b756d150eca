//! Command line of `relay-server` (kept in the library so the test harness
//! can run the very same program as a separate process).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use proto::{Name, Role};

use crate::cmd::{init::Init, issue::Issue, issued, revoke};
use crate::config::{Config, Paths};
use crate::config_file::RunFile;

const EXAMPLES: &str = "\
Examples:
  relay-server init   --dir /etc/relay --name relay.example.com --name 203.0.113.7
  relay-server issue  agent aks-prod --dir /etc/relay --relay relay.example.com:4433 --out agent.cred
  relay-server issue  client alice   --dir /etc/relay --relay relay.example.com:4433 --ttl 8h --out alice.cred
  relay-server issue  client ci      --dir /etc/relay --relay relay.example.com:4433 --group deploy --out ci.cred
  relay-server run    --dir /etc/relay --listen 0.0.0.0:4433
  relay-server run    --config /etc/relay/relay.toml
  relay-server issued --dir /etc/relay
  relay-server check-oidc --dir /etc/relay
  relay-server revoke client alice --dir /etc/relay
  relay-server unrevoke client alice --dir /etc/relay

Environment:
  RELAY_DIR      the relay directory, instead of --dir
  RUST_LOG       log filter on stderr [default: info], e.g. RUST_LOG=debug or
                 RUST_LOG=info,relay_server=debug (tracing EnvFilter syntax)
  RELAY_RUNTIME  auto|current|multi (run only) [default: auto]";

/// The public rendezvous of the QUIC reverse tunnel: agents dial out to it,
/// clients reach their targets through it, everything over mutual TLS.
/// `init` makes the CA, `issue` hands out credentials, `run` serves,
/// `revoke`/`unrevoke`/`issued` manage what was handed out.
#[derive(Debug, Parser)]
#[command(name = "relay-server", version, after_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr (the filter is RUST_LOG's).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the relay's CA, its server certificate and an empty policy in DIR.
    #[command(
        after_help = "Examples:\n  relay-server init --dir ./relay --name relay.example.com --name 127.0.0.1\n  relay-server init --dir /etc/relay --name relay.example.com --ttl 730d\n\nAgents and clients must dial one of the --name values: the relay's\ncertificate is issued for exactly those names."
    )]
    Init {
        /// The relay directory.
        #[arg(long, env = "RELAY_DIR")]
        dir: PathBuf,
        /// DNS name or IP address that agents and clients dial (repeatable);
        /// the first one is also the relay's name in identities.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Lifetime of the relay's server certificate.
        #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Replace an existing CA (invalidates every credential issued so far).
        #[arg(long)]
        force: bool,
    },
    /// Issue a credential file for an agent or a client (needs the CA key).
    #[command(
        after_help = "Examples:\n  relay-server issue agent aks-prod --dir ./relay --relay 127.0.0.1:4433 --out agent.cred\n  relay-server issue client ci --dir ./relay --relay relay.example.com:4433 --ttl 1h --out ci.cred\n  relay-agent keygen --out agent.key > agent.csr   # on the agent host\n  relay-server issue agent aks-prod --dir ./relay --relay relay.example.com:4433 --csr agent.csr --out agent.cred\n\nEach certificate is recorded in DIR/issued.jsonl (see `relay-server issued`).\nA warning is printed when the name is revoked in DIR/revoked.toml."
    )]
    Issue {
        /// `agent` or `client`.
        role: Role,
        /// The agent's or client's name (a-z, 0-9, '-', '.'; at most 63 bytes).
        name: Name,
        /// The relay directory.
        #[arg(long, env = "RELAY_DIR")]
        dir: PathBuf,
        /// Relay address HOST:PORT written into the credential (repeatable):
        /// a name given to `init --name`, no scheme, no path.
        #[arg(long = "relay", value_name = "HOST:PORT", required = true)]
        relay: Vec<String>,
        /// Lifetime [default: 12h for clients, 90d for agents].
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        /// Sign this certificate signing request (from `keygen`) instead of
        /// generating a key: the private key never leaves its host.
        #[arg(long)]
        csr: Option<PathBuf>,
        /// A group the client is in, for the policy's `group = "..."` (repeatable).
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<Name>,
        /// Where to write the credential (mode 0600) [default: NAME.cred].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make a new online signer for single sign-on (needs the CA key; `init` makes the first).
    #[command(
        after_help = "Example:\n  relay-server signer --dir ./relay --ttl 90d\n\nWrites DIR/signer.crt and DIR/signer.key: copy both to the relay host\n(which then needs no ca.key) and restart the relay. Certificates the old\nsigner minted stay valid until they expire; revoke its serial to end them now."
    )]
    Signer {
        /// The relay directory (with the CA key).
        #[arg(long, env = "RELAY_DIR")]
        dir: PathBuf,
        /// Lifetime of the signer.
        #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Fetch each single sign-on provider's discovery document and keys, and say what was found.
    #[command(
        name = "check-oidc",
        after_help = "Examples:\n  relay-server check-oidc --dir /etc/relay\n  relay-server check-oidc --config /etc/relay/relay.toml\n\nReads [login] from the config file (DIR/relay.toml or --config) and exits\nnon-zero if a provider cannot be used."
    )]
    CheckOidc {
        /// The relay directory (its relay.toml is read).
        #[arg(long, env = "RELAY_DIR")]
        dir: Option<PathBuf>,
        /// The config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List the certificates `issue` recorded in DIR/issued.jsonl, with their state.
    #[command(
        after_help = "Example:\n  relay-server issued --dir ./relay\n\nSTATE is valid, expired, revoked (by name) or revoked (by serial).\nCertificates issued before DIR/issued.jsonl existed are not listed."
    )]
    Issued {
        /// The relay directory.
        #[arg(long, env = "RELAY_DIR")]
        dir: PathBuf,
    },
    /// Run the relay (reads the CA certificate, never the CA key).
    #[command(
        after_help = "Examples:\n  relay-server run --dir ./relay --listen 0.0.0.0:4433\n  relay-server run --dir ./relay --listen 0.0.0.0:4433 --listen-tcp 0.0.0.0:443\n  RUST_LOG=debug relay-server run --dir ./relay --metrics 127.0.0.1:9090\n  relay-server run --config /etc/relay/relay.toml\n\nConfig file (TOML, see deploy/relay.toml): each flag below has a key of the\nsame name (`max-open-rate = 2000`, `idle-timeout = \"30s\"`, `dir = \"/etc/relay\"`).\nRead from --config FILE, else from DIR/relay.toml when it exists. A flag\n(or RELAY_DIR) overrides its key; an unknown key is an error.\n\nEnvironment:\n  RUST_LOG=info (default)           log filter, e.g. debug or info,relay_server=debug\n  RELAY_RUNTIME=auto|current|multi  auto (default): one thread on machines with up to\n                                    two cores, one per core on bigger ones\n\nSIGHUP reloads policy.toml and revoked.toml at once and reopens the audit\nlog (logrotate); SIGTERM or SIGINT shuts down gracefully."
    )]
    Run(Box<RunArgs>),
    /// Revoke an identity (`revoke client alice`) or one certificate (`revoke --serial HEX`).
    #[command(
        after_help = "Examples:\n  relay-server revoke client alice --dir ./relay\n  relay-server revoke --serial 4f1c0e… --dir ./relay\n\nA running relay applies it within --reload-interval (or at SIGHUP): new\nstreams are refused and live connections closed. Undo with `unrevoke`."
    )]
    Revoke {
        #[command(flatten)]
        target: TargetArgs,
        /// The relay directory.
        #[arg(long, env = "RELAY_DIR")]
        dir: PathBuf,
    },
    /// Take back a revocation (`unrevoke client alice` or `unrevoke --serial HEX`).
    #[command(
        after_help = "Examples:\n  relay-server unrevoke client alice --dir ./relay\n  relay-server unrevoke --serial 4f1c0e… --dir ./relay\n\nRemoves exactly the entry `revoke` wrote with the same arguments; a\nrunning relay accepts the credential again within --reload-interval."
    )]
    Unrevoke {
        #[command(flatten)]
        target: TargetArgs,
        /// The relay directory.
        #[arg(long, env = "RELAY_DIR")]
        dir: PathBuf,
    },
}

/// `relay-server run`'s flags: each overrides the config file's key of the
/// same name (see [`crate::config_file`]); their defaults are
/// [`Config::new`]'s, so `None` here means "the file's, else the default".
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The relay directory [or `dir` in --config].
    #[arg(long, env = "RELAY_DIR")]
    dir: Option<PathBuf>,
    /// Config file (TOML; keys named as these flags) [default: DIR/relay.toml if it exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// UDP address to listen on [default: 0.0.0.0:4433].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// TCP address of the carrier for networks that block UDP (TLS over
    /// TCP, through HTTPS proxies too), or `off` [default: the --listen
    /// address, TCP: UDP 4433 and TCP 4433, as HTTP/3 and HTTP/2 share 443].
    #[arg(long, value_name = "ADDR|off")]
    listen_tcp: Option<crate::config::ListenTcp>,
    /// Audit log (JSON lines; `-` for standard output, for container log
    /// collection; reopened on SIGHUP, for logrotate) [default: DIR/audit.jsonl].
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Stateless-reset key, one per relay process: several instances on one
    /// shared directory each need their own (the file is locked while in
    /// use) [default: DIR/reset.key].
    #[arg(long, value_name = "FILE")]
    reset_key: Option<PathBuf>,
    /// How often policy.toml and revoked.toml are checked for changes [default: 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    reload_interval: Option<Duration>,
    /// On SIGTERM, how long live streams may take to finish while clients
    /// move to other relays (a rolling restart waits this long at most)
    /// [default: 5s].
    #[arg(long, value_parser = humantime::parse_duration)]
    shutdown_grace: Option<Duration>,
    /// Idle timeout of peer connections (a dead peer is dropped after it) [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Stream opens per second allowed per client identity (resets count) [default: 2000].
    #[arg(long)]
    max_open_rate: Option<u32>,
    /// Streams one client identity may have open at once (over all its
    /// connections); each holds at most 2 MiB per direction on the relay
    /// [default: 1024].
    #[arg(long)]
    max_streams_per_client: Option<u32>,
    /// Live end-to-end paths allowed per client identity (all its
    /// connections) [default: 64].
    #[arg(long)]
    max_direct_per_client: Option<usize>,
    /// Live end-to-end paths allowed per agent (all its instances and
    /// clients) [default: 1024].
    #[arg(long)]
    max_direct_per_agent: Option<usize>,
    /// Handshakes worked on at once; past it new peers are refused and back
    /// off with jitter (a reconnect storm is spread, not slowed) [default: 256].
    #[arg(long)]
    max_handshakes: Option<usize>,
    /// Of those, how many one source address (an IPv6 /64) may have under
    /// way, so a flood from one place cannot take them all [default: 64].
    #[arg(long)]
    max_handshakes_per_address: Option<usize>,
    /// Serve /metrics, /healthz and /readyz on this local TCP address
    /// (e.g. 127.0.0.1:9090; no authentication: keep it private) [default: off].
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

impl RunArgs {
    /// The configuration: each flag, else the file's key, else the default.
    fn config(self) -> anyhow::Result<Config> {
        let file = match (&self.config, &self.dir) {
            (Some(path), _) => Some((path.clone(), RunFile::load(path)?)),
            (None, Some(dir)) => RunFile::load_default(dir)?,
            (None, None) => None,
        };
        let (source, file) = match file {
            Some((path, file)) => (Some(path), file),
            None => (None, RunFile::default()),
        };
        let dir = self.dir.or(file.dir).ok_or_else(|| {
            anyhow::anyhow!("give --dir DIR (or RELAY_DIR), or `dir = ...` in --config FILE")
        })?;
        let listen = self.listen.or(file.listen);
        let mut config = Config::new(&dir, listen.unwrap_or(DEFAULT_LISTEN));
        config.metrics = self.metrics.or(file.metrics);
        if let Some(tcp) = self.listen_tcp.or(file.listen_tcp) {
            config.listen_tcp = tcp;
        }
        if let Some(rate) = self.max_open_rate.or(file.max_open_rate) {
            config.limits.open_rate = rate;
            config.limits.open_burst = rate.saturating_mul(2);
        }
        let limits = &mut config.limits;
        if let Some(n) = self.max_streams_per_client.or(file.max_streams_per_client) {
            limits.streams_per_client = n;
        }
        if let Some(n) = self.max_direct_per_client.or(file.max_direct_per_client) {
            limits.direct_per_client = n;
        }
        if let Some(n) = self.max_direct_per_agent.or(file.max_direct_per_agent) {
            limits.direct_per_agent = n;
        }
        if let Some(n) = self.max_handshakes.or(file.max_handshakes) {
            limits.handshakes = n.max(1);
        }
        if let Some(n) = self
            .max_handshakes_per_address
            .or(file.max_handshakes_per_address)
        {
            limits.handshakes_per_address = n.max(1);
        }
        if let Some(interval) = self.reload_interval.or(file.reload_interval) {
            limits.reload_interval = interval;
        }
        if let Some(grace) = self.shutdown_grace.or(file.shutdown_grace) {
            limits.shutdown_grace = grace;
        }
        if let Some(audit_log) = self.audit_log.or(file.audit_log) {
            config.audit_log = audit_log;
        }
        if let Some(path) = self.reset_key.or(file.reset_key) {
            config.reset_key = path;
        }
        if let Some(idle) = self.idle_timeout.or(file.idle_timeout) {
            config.transport.idle_timeout = idle;
        }
        if let Some(login) = &file.login {
            let shown = source
                .as_deref()
                .map_or_else(|| "the config file".to_owned(), |p| p.display().to_string());
            config.login = Some(
                login
                    .check()
                    .map_err(|e| anyhow::anyhow!("invalid config {shown}: {e}"))?,
            );
        }
        if let Some(web) = &file.web {
            let shown = source
                .as_deref()
                .map_or_else(|| "the config file".to_owned(), |p| p.display().to_string());
            config.web = Some(
                web.check()
                    .map_err(|e| anyhow::anyhow!("invalid config {shown}: {e}"))?,
            );
        }
        if let Some(path) = source {
            tracing::info!(config = %path.display(), "config file read (flags override it)");
        }
        Ok(config)
    }
}

/// `--listen`'s default.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    4433,
));

/// `ROLE NAME` or `--serial HEX`, as `revoke` and `unrevoke` take them.
#[derive(Debug, clap::Args)]
struct TargetArgs {
    /// `agent` or `client`.
    #[arg(required_unless_present = "serial", requires = "name")]
    role: Option<Role>,
    /// The agent's or client's name.
    name: Option<Name>,
    /// One certificate, by the serial `issue` printed (colons and upper case accepted).
    #[arg(long, value_name = "HEX", conflicts_with_all = ["role", "name"])]
    serial: Option<String>,
}

impl TargetArgs {
    fn target(self) -> anyhow::Result<revoke::Target> {
        Ok(match (self.role, self.name, self.serial) {
            (_, _, Some(serial)) => revoke::Target::Serial(serial),
            (Some(role), Some(name), None) => revoke::Target::Identity(role, name),
            _ => anyhow::bail!("give ROLE NAME (e.g. `client alice`) or --serial HEX"),
        })
    }
}

/// Prints a warning on stderr, where it is seen but not parsed by scripts.
fn warn(text: &str) {
    eprintln!("relay-server: warning: {text}");
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let args = Args::parse();
    relay_net::logging::init("info", matches!(args.log_format, LogFormat::Json));
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Init {
            dir,
            names,
            ttl,
            force,
        } => init(Init {
            paths: Paths::from(dir.as_path()),
            names,
            ttl,
            force,
        }),
        Command::Issue {
            role,
            name,
            dir,
            relay,
            ttl,
            csr,
            groups,
            out,
        } => {
            let issue = Issue {
                paths: Paths::from(dir.as_path()),
                role,
                name,
                relay,
                ttl,
                csr,
                groups,
            };
            self::issue(&issue, out)
        }
        Command::Issued { dir } => {
            let paths = Paths::from(dir.as_path());
            let Some(list) = issued::load(&paths.issued())? else {
                println!(
                    "{} does not exist yet: nothing was issued from {} since it is kept",
                    paths.issued().display(),
                    dir.display()
                );
                return Ok(());
            };
            let revocations = crate::revocation::Revocations::load(&paths.revoked())?;
            print!(
                "{}",
                issued::table(&list, &revocations, time::OffsetDateTime::now_utc())
            );
            Ok(())
        }
        Command::Run(run) => serve(run.config()?),
        Command::Signer { dir, ttl } => {
            let paths = Paths::from(dir.as_path());
            let issued = crate::cmd::signer::make(&paths, ttl)?;
            println!(
                "wrote {} and {}: serial {}, valid until {}; copy both to the relay host and restart the relay",
                paths.signer_cert().display(),
                paths.signer_key().display(),
                issued.serial,
                relay_net::cert::rfc3339(issued.not_after)
            );
            Ok(())
        }
        Command::CheckOidc { dir, config } => check_oidc(dir, config),
        Command::Revoke { target, dir } => {
            let paths = Paths::from(dir.as_path());
            let target = target.target()?;
            if let Some(warning) = revoke::never_issued(&paths, &target) {
                warn(&warning);
            }
            if revoke::revoke(&paths, target.clone())? {
                println!("revoked {target}; a running relay applies it within seconds");
            } else {
                println!("{target} was already revoked");
            }
            Ok(())
        }
        Command::Unrevoke { target, dir } => {
            let paths = Paths::from(dir.as_path());
            let target = target.target()?;
            if !revoke::unrevoke(&paths, &target)? {
                println!(
                    "{target} was not revoked in {}: nothing to undo",
                    paths.revoked().display()
                );
                return Ok(());
            }
            println!("unrevoked {target}; a running relay accepts it again within seconds");
            if let revoke::Target::Identity(role, name) = &target {
                for serial in revoke::still_revoked_by_serial(&paths, *role, name) {
                    warn(&format!(
                        "certificate {serial} of {target} stays revoked by serial (`relay-server unrevoke --serial {serial} --dir {}` to undo)",
                        dir.display()
                    ));
                }
            }
            Ok(())
        }
    }
}

fn check_oidc(dir: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<()> {
    let (path, file) = match (config, dir) {
        (Some(path), _) => (path.clone(), RunFile::load(&path)?),
        (None, Some(dir)) => RunFile::load_default(&dir)?.ok_or_else(|| {
            anyhow::anyhow!(
                "{} does not exist: give --config FILE",
                dir.join(crate::config_file::DEFAULT_NAME).display()
            )
        })?,
        (None, None) => anyhow::bail!("give --dir DIR or --config FILE"),
    };
    let login = file
        .login
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no [login] section: single sign-on is off",
                path.display()
            )
        })?
        .check()
        .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
    let runtime = relay_net::runtime::build(relay_net::runtime::Flavor::Auto)?;
    let (report, ok) = runtime.block_on(crate::cmd::check_oidc::report(&login));
    print!("{report}");
    if !ok {
        anyhow::bail!("a provider has a problem (above)");
    }
    Ok(())
}

fn init(init: Init) -> anyhow::Result<()> {
    let relay = init.run()?;
    let dir = init.paths.dir.display();
    println!("created relay {relay} in {dir}");
    println!("  ca.crt ca.key      the relay's CA (keep ca.key off the relay host: see README)");
    println!(
        "  relay.crt relay.key the relay's server certificate for: {}",
        init.names.join(", ")
    );
    println!(
        "  signer.crt signer.key the online signer of single sign-on (client certificates only)"
    );
    println!("  policy.toml        allows nothing until you add [[allow]] entries");
    println!("next: relay-server issue agent NAME --dir {dir} --relay HOST:PORT");
    Ok(())
}

fn issue(issue: &Issue, out: Option<PathBuf>) -> anyhow::Result<()> {
    for warning in issue.warnings() {
        warn(&warning);
    }
    let (credential, issued) = issue.run()?;
    let (role, name) = (issue.role, &issue.name);
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.cred")));
    credential.save(&out)?;
    println!(
        "wrote {} for {role}/{name}: serial {}, valid until {}",
        out.display(),
        issued.serial,
        relay_net::cert::rfc3339(issued.not_after)
    );
    Ok(())
}

fn serve(config: Config) -> anyhow::Result<()> {
    let audit_on_stdout = config.audit_log == std::path::Path::new("-");
    let runtime = relay_net::runtime::build(relay_net::runtime::Flavor::Auto)?;
    runtime.block_on(async {
        let relay = crate::Relay::bind(config)?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        relay_net::signals::cancel_on_signal(shutdown.clone())?;
        // One machine-readable line, so scripts (and `relay-client
        // demo`) can use `--listen 127.0.0.1:0`; on stderr when standard
        // output carries the audit log, which must stay pure JSON lines.
        let mut lines = vec![format!("relay-server listening on {}", relay.local_addr()?)];
        if let Some(addr) = relay.tcp_addr() {
            lines.push(format!("relay-server tcp carrier on {addr}"));
            if relay.serves_web() {
                lines.push(format!("relay-server web shell on https://{addr}/"));
            }
        }
        if let Some(addr) = relay.admin_addr() {
            lines.push(format!("relay-server metrics on http://{addr}/metrics"));
        }
        for line in lines {
            if audit_on_stdout {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
        relay.run(shutdown).await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let args = Args::try_parse_from(["relay-server", "run"].iter().chain(args)).unwrap();
        match args.command {
            Command::Run(run) => *run,
            other => panic!("not run: {other:?}"),
        }
    }

    /// A flag wins over its key; a key wins over the default; `dir` and
    /// `audit-log` in a --config file are taken from the file's folder.
    #[test]
    fn flags_override_the_file_and_the_file_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("elsewhere.toml");
        std::fs::write(
            &path,
            "dir = \"relay\"\nlisten = \"192.0.2.1:4433\"\nmetrics = \"127.0.0.1:9\"\nmax-open-rate = 7\nidle-timeout = \"1m\"\n",
        )
        .unwrap();
        let config = run_args(&[
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .config()
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.metrics, Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(config.limits.open_rate, 7);
        assert_eq!(config.transport.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.paths.dir, dir.path().join("relay"));
        assert_eq!(
            config.audit_log,
            dir.path().join("relay").join("audit.jsonl")
        );
        assert_eq!(config.limits.streams_per_client, 1024);
    }

    /// Without --config, DIR/relay.toml is read when present.
    #[test]
    fn the_default_file_is_read_from_the_relay_directory() {
        let dir = tempfile::tempdir().unwrap();
        let config = run_args(&["--dir", dir.path().to_str().unwrap()])
            .config()
            .unwrap();
        assert_eq!(config.listen, DEFAULT_LISTEN);
        assert_eq!(config.metrics, None);
        std::fs::write(dir.path().join("relay.toml"), "max-direct-per-agent = 3\n").unwrap();
        let config = run_args(&["--dir", dir.path().to_str().unwrap()])
            .config()
            .unwrap();
        assert_eq!(config.limits.direct_per_agent, 3);
    }

    #[test]
    fn no_dir_anywhere_says_what_to_give() {
        let e = run_args(&[]).config().unwrap_err().to_string();
        assert!(e.contains("--dir"), "{e}");
    }
}
