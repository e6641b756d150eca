//! Command line of `relay-client` (in the library so the test harness runs
//! the very same program as a separate process).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use relay_net::credential::Credential;
use relay_net::endpoint::Via;

use crate::direct::EndToEnd;
use crate::program::ProgramOutcome;
use crate::{AgentTarget, Client};

const EXAMPLES: &str = "\
Examples:
  relay-client --credential alice.cred forward 127.0.0.1:16443 aks-prod/kube-api
  relay-client --credential alice.cred forward 16443 aks-prod/kube-api 15432 aks-prod/db
  relay-client --credential alice.cred --end-to-end forward 16443 aks-prod/kube-api   # end to end or not at all
  relay-client --credential alice.cred --end-to-end=off forward 16443 aks-prod/kube-api   # relay path only
  relay-client --credential alice.cred connect aks-prod/db
  ssh -o ProxyCommand='relay-client --credential alice.cred connect aks-prod/ssh' admin@node
  relay-client --credential alice.cred list
  HTTPS_PROXY=http://proxy:3128 relay-client --credential alice.cred list   # UDP blocked: TLS over TCP
  relay-client --credential alice.cred --transport tcp --tcp-port 443 list  # force the TCP carrier
  relay-client --credential alice.cred shell aks-prod            # interactive shell on the agent
  relay-client --credential alice.cred shell aks-prod -- htop
  relay-client --credential ci.cred run aks-prod -- kubectl get pods -A
  relay-client --credential alice.cred socks 127.0.0.1:1080 aks-prod   # SOCKS5, names resolved by the agent
  relay-client --credential ci.cred with aks-prod/kube-api -- kubectl apply -f deploy.yaml
  relay-client --credential alice.cred kubeconfig aks-prod/kube-api --out ~/.kube/config
  relay-client login --relay relay.example.com:4433 --ca relay-ca.crt   # single sign-on, then no --credential
  relay-client login --device             # on a machine without a browser
  relay-client login --oidc-token-file $TOKEN_FILE   # a CI job's workload identity
  relay-client demo                       # a whole relay + agent + forward on loopback
  relay-client bench --local              # how fast is it? (relay + agent on loopback)

Logs go to stderr; RUST_LOG chooses what is logged (default: info), e.g.
  RUST_LOG=debug relay-client ...   or   RUST_LOG=relay_client=debug,quinn=warn relay-client ...
--log-format json makes them one JSON object per line.";

/// The help of `keygen`, written out: the global flags (credential,
/// relay, end-to-end mode) do not apply to it, and clap would list them.
const KEYGEN_HELP: &str = "\
{about-with-newline}
{usage-heading} {usage}

Options:
      --out <OUT>                Where to write the private key (mode 0600)
      --log-format <LOG_FORMAT>  Log format on stderr [default: text] [possible values: text, json]
  -h, --help                     Print help{after-help}";

/// The help of `demo`, written out: it makes its own credentials, so only
/// `--end-to-end` of the global flags applies.
const DEMO_HELP: &str = "\
{about-with-newline}
{usage-heading} {usage}

Options:
      --check                    Exit after checking that bytes go through, instead of waiting for Ctrl-C
      --end-to-end[=<MODE>]      The demo forward's path: auto (the default: end to end, the relay forwards packets it cannot decrypt), on, or off (the relay path)
      --log-format <LOG_FORMAT>  Log format on stderr [default: text] [possible values: text, json]
  -h, --help                     Print help{after-help}";

/// Reach what a relay-agent exposes: local port forwards, stdin/stdout
/// streams, a SOCKS5 proxy, interactive shells and remote commands.
#[derive(Debug, Parser)]
#[command(name = "relay-client", version, after_help = EXAMPLES)]
pub struct Args {
    /// Credential file from `relay-server issue client` [default: the one
    /// `relay-client login` wrote, ~/.config/relay/credential.toml].
    #[arg(long, global = true, env = "RELAY_CREDENTIAL")]
    credential: Option<PathBuf>,
    /// Private key, for a credential issued from a CSR (`keygen`).
    #[arg(long, global = true, env = "RELAY_KEY")]
    key: Option<PathBuf>,
    /// Deadline for reaching the relay.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// End-to-end paths: each agent is reached on a QUIC connection of its
    /// own, which the relay forwards without decrypting (fewer copies and
    /// no crypto on the relay); the relay still authorizes it. MODE: auto
    /// (the default) uses one where the relay policy and the agent allow
    /// it, else the relay path, and says so; on (the bare flag, and
    /// RELAY_END_TO_END=1) fails instead of using the relay path; off uses
    /// the relay path only.
    #[arg(long, global = true, env = "RELAY_END_TO_END", value_name = "MODE",
          num_args = 0..=1, require_equals = true, default_missing_value = "on",
          default_value = "auto")]
    end_to_end: EndToEnd,
    /// How to reach the relay: auto (QUIC, and the TCP carrier too if QUIC
    /// has not answered within 250 ms; back to QUIC when it works), quic
    /// (UDP only), tcp (TLS over TCP only, e.g. through an HTTPS proxy).
    #[arg(
        long,
        global = true,
        env = "RELAY_TRANSPORT",
        value_name = "auto|quic|tcp",
        default_value = "auto"
    )]
    transport: Via,
    /// The relay's TCP carrier port, where it is not the QUIC port.
    #[arg(long, global = true, env = "RELAY_TCP_PORT", value_name = "PORT")]
    tcp_port: Option<u16>,
    /// HTTP proxy for the TCP carrier (CONNECT), e.g.
    /// http://user:password@proxy:3128 [default: HTTPS_PROXY, unless NO_PROXY
    /// names the relay].
    #[arg(long, global = true, value_name = "URL")]
    proxy: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Listen locally; each connection is forwarded to AGENT/TARGET.
    #[command(
        after_help = "Examples:\n  relay-client --credential alice.cred forward 127.0.0.1:16443 aks-prod/kube-api\n  relay-client --credential alice.cred forward 16443 aks-prod/kube-api 15432 aks-prod/db\n\nBefore listening it checks that each AGENT/TARGET is online and allowed\nfor this credential (as `list` shows) and exits with the reason if not.\nWhile running, a connection that cannot be forwarded is reset and the\nreason logged. The credential file is re-read when it changed at each\nre-dial (and on SIGHUP), so renewing it in place needs no restart. Once\nthe credential has expired with no renewed file (or cannot be used any\nmore) forward says so once and exits with status 1."
    )]
    Forward {
        /// Pairs of LOCAL AGENT/TARGET; LOCAL is ADDR:PORT or a port on 127.0.0.1.
        #[arg(required = true, num_args = 2.., value_names = ["LOCAL", "AGENT/TARGET"])]
        pairs: Vec<String>,
    },
    /// Pipe stdin/stdout to AGENT/TARGET (e.g. as an ssh ProxyCommand).
    #[command(
        after_help = "Examples:\n  relay-client --credential alice.cred connect aks-prod/db < query.bin\n  ssh -o ProxyCommand='relay-client --credential alice.cred connect aks-prod/ssh' admin@node\n\nExits 0 when both directions ended cleanly; with the relay's or agent's\nreason and status 1 when the stream was refused or failed."
    )]
    Connect {
        /// AGENT/TARGET.
        dest: AgentTarget,
    },
    /// Interactive shell (or a program on a terminal) on AGENT's host.
    #[command(
        after_help = "Examples:\n  relay-client --credential alice.cred shell aks-prod\n  relay-client --credential alice.cred shell aks-prod -- htop\n\nThe agent must run with --allow-shell and the relay policy must have\n`shell = true` for you. Exits with the remote shell's status."
    )]
    Shell {
        /// The agent.
        agent: proto::AgentName,
        /// A program and its arguments instead of the agent's shell (after `--`).
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Run one command on AGENT's host: no terminal, stdin/stdout/stderr
    /// kept apart, the remote exit status becomes ours.
    #[command(
        after_help = "Examples:\n  relay-client --credential ci.cred run aks-prod -- kubectl get pods -A\n  relay-client --credential ci.cred run aks-prod -- cat < big.file | sha256sum\n\nThe agent must run with --allow-shell and the relay policy must have\n`run = true` for you. Ctrl-C is passed on (three times: hang up).\nExits with the remote status (128+N if killed by signal N), 255 if the\nsession failed."
    )]
    Run {
        /// The agent.
        agent: proto::AgentName,
        /// The program and its arguments (no shell: use `sh -c '...'` for one).
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
    },
    /// A local SOCKS5 proxy (CONNECT, no auth) whose connections leave
    /// from AGENT; domain names are resolved by the agent.
    #[command(
        after_help = "Examples:\n  relay-client --credential alice.cred socks 127.0.0.1:1080 aks-prod\n  curl --socks5-hostname 127.0.0.1:1080 https://kube.internal/version\n\nThe agent must run with --allow-socks RULES and the relay policy must have\n`socks = true` for you; socks checks that at start (as `list` shows) and\nexits with the reason if not, and exits with status 1 once its credential\nhas expired (a file renewed in place before that is used at the next\nre-dial, or on SIGHUP). Refusals get SOCKS reply codes (0x02 not\nallowed, 0x03 agent offline, 0x04 unreachable, 0x05 refused, 0x06 timeout)."
    )]
    Socks {
        /// Local address: ADDR:PORT or a port on 127.0.0.1.
        listen: String,
        /// The agent the connections leave from.
        agent: proto::AgentName,
    },
    /// Run CMD with a forward to AGENT/TARGET on a free local port
    /// (RELAY_FORWARD_ADDR, RELAY_FORWARD_PORT) and, if a kubeconfig is in
    /// play, KUBECONFIG set to a temporary one through the forward.
    #[command(
        after_help = "Examples:\n  relay-client --credential ci.cred with aks-prod/kube-api -- kubectl apply -f deploy.yaml\n  relay-client with aks-prod/db -- sh -c 'psql -h 127.0.0.1 -p $RELAY_FORWARD_PORT'\n\nThe temporary kubeconfig copies the current context (or --context) with\nserver https://RELAY_FORWARD_ADDR and tls-server-name set to the real API\nhost, so certificate checks stay on. --kubeconfig and --context mean what\nthey mean to kubectl (and to `relay-client kubeconfig`): the file and the\ncontext to read. Exits with CMD's status (128+N if\nkilled by signal N); 255 if the forward cannot be set up."
    )]
    With {
        /// AGENT/TARGET.
        dest: AgentTarget,
        /// Kubeconfig to read [default: KUBECONFIG, else ~/.kube/config if present].
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Kubeconfig context to copy [default: the current one].
        #[arg(long, value_name = "NAME")]
        context: Option<String>,
        /// Do not touch KUBECONFIG (for targets that are not a Kubernetes API).
        #[arg(long)]
        no_kubeconfig: bool,
        /// The program and its arguments (after --).
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Write (or print) a kubeconfig context that reaches the current
    /// context's cluster through the relay.
    #[command(
        after_help = "Examples:\n  relay-client kubeconfig aks-prod/kube-api                       # print, via socks 127.0.0.1:1080\n  relay-client kubeconfig aks-prod/kube-api --out ~/.kube/config --name aks-prod-relay\n  relay-client kubeconfig aks-prod/kube-api --context aks-prod --forward 127.0.0.1:16443\n\n--kubeconfig and --context mean what they mean to kubectl (and to\n`relay-client with`): the file and the context to read. (Earlier versions\nused --kubeconfig for the output, now --out, and --context for the new\ncontext's name, now --name; --from-context still works as --context.)\n\nRoute socks: keep `relay-client socks 127.0.0.1:1080 AGENT` running; the\ncluster keeps its server URL and gets proxy-url: socks5://.... Route\nforward: keep `relay-client forward 127.0.0.1:16443 AGENT/TARGET` running;\nthe server becomes https://127.0.0.1:16443 with tls-server-name set."
    )]
    Kubeconfig {
        /// AGENT/TARGET of the API server.
        dest: AgentTarget,
        /// Kubeconfig to read [default: KUBECONFIG, else ~/.kube/config if present].
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Kubeconfig context to copy [default: the current one].
        #[arg(long, value_name = "NAME", alias = "from-context")]
        context: Option<String>,
        /// Merge the new context into FILE (created if missing) instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Name of the new context [default: relay-AGENT].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Route through `relay-client socks` on ADDR [default: 127.0.0.1:1080].
        #[arg(long, value_name = "ADDR", conflicts_with = "forward")]
        socks: Option<String>,
        /// Route through `relay-client forward` on ADDR (ADDR:PORT or a port).
        #[arg(long, value_name = "ADDR")]
        forward: Option<String>,
    },
    /// List the agents online, the targets this credential may reach and the sessions (shell, run, socks) it may open.
    #[command(
        after_help = "Examples:\n  relay-client --credential alice.cred list\n\n  AGENT     INSTANCES  SESSIONS           TARGETS\n  aks-prod  2          shell, run, socks  db, kube-api\n\nAn agent the policy lets you reach but that is offline shows 0 instances."
    )]
    List,
    /// Make a private key and print a CSR for it (the key never leaves this host).
    #[command(
        help_template = KEYGEN_HELP,
        after_help = "Examples:\n  relay-client keygen --out alice.key > alice.csr\n  # the relay operator: relay-server issue client alice --csr alice.csr --out alice.cred\n  relay-client --credential alice.cred --key alice.key list"
    )]
    Keygen {
        /// Where to write the private key (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Log in with your organisation's account (or a CI job's identity
    /// token) and keep the short-lived credential the relay gives, where
    /// every other command finds it.
    #[command(after_help = crate::cmd::login::AFTER_HELP)]
    Login(crate::cmd::login::LoginArgs),
    /// Remove the credential `login` wrote.
    #[command(after_help = "Example:\n  relay-client logout")]
    Logout,
    /// Measure throughput, latency and stream-open rate through the tunnel
    /// against direct TCP (`--local`: no set-up needed).
    Bench(crate::cmd::bench::BenchArgs),
    /// The plain-quinn baseline of `bench/compare.sh`: the bench service on
    /// raw QUIC streams, with the relay's certificate and transport settings.
    #[command(hide = true)]
    BenchQuicServer(crate::cmd::bench::QuicServerArgs),
    /// Run a whole relay, agent and forward on loopback with a throwaway CA.
    #[command(
        help_template = DEMO_HELP,
        after_help = "Examples:\n  relay-client demo\n  relay-client --end-to-end=off demo --check   # the relay path\n\nrelay-server and relay-agent are taken from RELAY_SERVER_BIN and\nRELAY_AGENT_BIN if set, else from beside this program, else from PATH."
    )]
    Demo {
        /// Exit after checking that bytes go through, instead of waiting for Ctrl-C.
        #[arg(long)]
        check: bool,
    },
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let args = Args::parse();
    relay_net::logging::init("info", matches!(args.log_format, LogFormat::Json));
    let runtime = match relay_net::runtime::build(relay_net::runtime::Flavor::Current) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("relay-client: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    // Do not wait for tokio's blocking stdin reader: with `connect` as an
    // ssh ProxyCommand, stdin stays open and the wait would never end.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("relay-client: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_local(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| {
        anyhow::anyhow!(
            "{s:?} is not a local address: give ADDR:PORT (e.g. 127.0.0.1:16443) or a port"
        )
    })
}

/// How the relay is reached, as the global flags say.
fn transport(args: &Args) -> relay_net::endpoint::Transport {
    let mut transport = relay_net::endpoint::Transport::client();
    transport.via = args.transport;
    transport.tcp_port = args.tcp_port;
    transport.proxy = args.proxy.clone();
    transport
}

/// Where the credential is: `--credential`, else where `login` writes.
fn credential_path(args: &Args) -> Option<PathBuf> {
    args.credential
        .clone()
        .or_else(crate::login::store::default_path)
}

fn client(args: &Args) -> anyhow::Result<Client> {
    let path = credential_path(args)
        .filter(|p| args.credential.is_some() || p.exists())
        .ok_or_else(|| {
            anyhow::anyhow!("give --credential FILE (from `relay-server issue client NAME`), or log in with `relay-client login`")
        })?;
    let path = &path;
    let loaded = Credential::load(path, args.key.as_deref())?;
    crate::check_role(&loaded)?;
    Ok(Client::new(loaded)
        .with_connect_timeout(args.connect_timeout)
        .via(args.transport, args.tcp_port)
        .through_proxy(args.proxy.clone())
        .end_to_end(args.end_to_end))
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Command::Login(login) => {
            let out = credential_path(&args).ok_or_else(|| {
                anyhow::anyhow!(
                    "no home directory to keep the credential in: give --credential FILE"
                )
            })?;
            crate::cmd::login::run(login, out, transport(&args), args.connect_timeout).await
        }
        Command::Logout => {
            let path = credential_path(&args).ok_or_else(|| {
                anyhow::anyhow!("no credential to remove: give --credential FILE")
            })?;
            if crate::login::logout(&path)? {
                println!("removed {}", path.display());
            } else {
                println!("{} does not exist: not logged in", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Forward { pairs } => {
            if pairs.len() % 2 != 0 {
                anyhow::bail!("forward takes pairs: LOCAL AGENT/TARGET [LOCAL AGENT/TARGET ...]");
            }
            let client = Arc::new(client(&args)?);
            let mut dests = Vec::new();
            for pair in pairs.chunks(2) {
                let local = parse_local(&pair[0])?;
                let dest: AgentTarget = pair[1].parse().map_err(|e: String| anyhow::anyhow!(e))?;
                // Reach the relay and check the target up front (as `with`
                // does) so a bad credential, an unreachable relay or a target
                // the policy does not allow is reported now, not as a reset
                // of every connection.
                let path = crate::cmd::reach::ensure_target(&client, &dest).await?;
                dests.push((local, dest, path.path_name()));
            }
            let shutdown = tokio_util::sync::CancellationToken::new();
            relay_net::signals::cancel_on_signal(shutdown.clone())?;
            relay_net::signals::reload_on_hangup(client.credential_file(), shutdown.clone())?;
            let mut forwards = tokio::task::JoinSet::new();
            for (local, dest, path) in dests {
                let listener = tokio::net::TcpListener::bind(local)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {local}: {e}"))?;
                eprintln!("forwarding {} -> {dest} ({path})", listener.local_addr()?);
                forwards.spawn(crate::cmd::forward::run(
                    client.clone(),
                    listener,
                    dest,
                    shutdown.clone(),
                ));
            }
            let mut stopped = None;
            while let Some(done) = forwards.join_next().await {
                if let Ok(Err(e)) = done {
                    stopped.get_or_insert(e);
                }
            }
            client.close().await;
            match stopped {
                None => Ok(ExitCode::SUCCESS),
                Some(e) => {
                    eprintln!("relay-client: forward stopped: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Connect { dest } => {
            let client = client(&args)?;
            crate::cmd::connect::run(&client, dest).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Shell { agent, command } => {
            let client = client(&args)?;
            let result = crate::cmd::shell::run(&client, agent, command.clone()).await;
            Ok(session_exit(&client, result).await)
        }
        Command::Run { agent, command } => {
            let client = client(&args)?;
            let result = crate::cmd::run::run(&client, agent, command.clone()).await;
            Ok(session_exit(&client, result).await)
        }
        Command::Socks { listen, agent } => {
            let client = Arc::new(client(&args)?);
            let path = crate::cmd::reach::ensure_socks(&client, agent).await?;
            let local = parse_local(listen)?;
            let listener = tokio::net::TcpListener::bind(local)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {local}: {e}"))?;
            eprintln!(
                "socks5 proxy on {} -> {agent} ({})",
                listener.local_addr()?,
                path.path_name()
            );
            let shutdown = tokio_util::sync::CancellationToken::new();
            relay_net::signals::cancel_on_signal(shutdown.clone())?;
            relay_net::signals::reload_on_hangup(client.credential_file(), shutdown.clone())?;
            let stopped =
                crate::cmd::socks::run(client.clone(), listener, agent.clone(), shutdown).await;
            client.close().await;
            match stopped {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("relay-client: socks stopped: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::With {
            dest,
            kubeconfig,
            context,
            no_kubeconfig,
            command,
        } => {
            let client = Arc::new(client(&args)?);
            let with = crate::cmd::with::With {
                dest: dest.clone(),
                kubeconfig: kubeconfig.clone(),
                context: context.clone(),
                no_kubeconfig: *no_kubeconfig,
                command: command.clone(),
            };
            Ok(ExitCode::from(crate::cmd::with::run(client, with).await))
        }
        Command::Kubeconfig {
            dest,
            kubeconfig,
            context,
            out,
            name,
            socks,
            forward,
        } => {
            let route = match (socks, forward) {
                (_, Some(f)) => crate::kube::Route::Forward(parse_local(f)?),
                (Some(s), None) => crate::kube::Route::Socks(parse_local(s)?),
                (None, None) => crate::kube::Route::Socks(crate::cmd::kubeconfig::default_socks()),
            };
            let k = crate::cmd::kubeconfig::Kubeconfig {
                dest: dest.clone(),
                kubeconfig: kubeconfig.clone(),
                context: context.clone(),
                out: out.clone(),
                name: name.clone(),
                route,
            };
            crate::cmd::kubeconfig::run(k, &mut std::io::stdout()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::List => {
            let client = client(&args)?;
            crate::cmd::list::run(&client, &mut std::io::stdout()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { out } => {
            // The key stays here; the CSR goes to the relay's operator.
            let csr = relay_net::pki::new_key_file(out, proto::Role::Client)?;
            print!("{csr}");
            eprintln!(
                "wrote {}; send the CSR above to the relay's operator for `relay-server issue client NAME --csr FILE`, then use the credential with `--key {}`",
                out.display(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { check } => crate::cmd::demo::run(*check, args.end_to_end).await,
        Command::Bench(bench) => {
            crate::cmd::bench::run(bench, args.end_to_end, || client(&args)).await
        }
        Command::BenchQuicServer(a) => crate::cmd::bench::quic_server(a).await,
    }
}

/// The exit status of `shell` and `run`: the remote program's, or 255 (as
/// ssh) with a message when the session could not be opened or was lost.
async fn session_exit(
    client: &Client,
    result: Result<ProgramOutcome, crate::OpenError>,
) -> ExitCode {
    let status = match result {
        Ok(outcome) => {
            if let ProgramOutcome::Lost(lost) = &outcome {
                // The relay connection's close, if it closed, is the part a
                // person can act on (revoked); our own hang-up is ours.
                let relay = match lost.cause {
                    crate::Cause::HungUp(_) => None,
                    _ => client.relay_lost().await,
                };
                match relay {
                    Some(relay) => eprintln!("relay-client: session lost: {relay}"),
                    None => eprintln!("relay-client: session lost: {lost}"),
                }
            }
            outcome.status()
        }
        Err(e) => {
            eprintln!("relay-client: {e}");
            255
        }
    };
    client.close().await;
    ExitCode::from(status)
}
