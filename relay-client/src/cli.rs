//! Command line of `relay-client` (in the library so the test harness runs
//! the very same program as a separate process).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use relay_net::credential::Credential;

use crate::{Client, Destination};

const EXAMPLES: &str = "\
Examples:
  relay-client --credential alice.cred forward 127.0.0.1:16443 aks-prod/kube-api
  relay-client --credential alice.cred forward 16443 aks-prod/kube-api 15432 aks-prod/db
  relay-client --credential alice.cred --end-to-end forward 16443 aks-prod/kube-api   # relay cannot decrypt
  relay-client --credential alice.cred connect aks-prod/db
  ssh -o ProxyCommand='relay-client --credential alice.cred connect aks-prod/ssh' admin@node
  relay-client --credential alice.cred list
  relay-client --credential alice.cred shell aks-prod            # interactive shell on the agent
  relay-client --credential alice.cred shell aks-prod -- htop
  relay-client --credential ci.cred run aks-prod -- kubectl get pods -A
  relay-client --credential alice.cred socks 127.0.0.1:1080 aks-prod   # SOCKS5, names resolved by the agent
  relay-client --credential ci.cred with aks-prod/kube-api -- kubectl apply -f deploy.yaml
  relay-client --credential alice.cred kubeconfig aks-prod/kube-api --kubeconfig ~/.kube/config
  relay-client demo                       # a whole relay + agent + forward on loopback
  relay-client bench --local              # how fast is it? (relay + agent on loopback)";

/// Reach targets behind a relay-agent: local port forwards, stdio streams.
#[derive(Debug, Parser)]
#[command(name = "relay-client", version, after_help = EXAMPLES)]
pub struct Args {
    /// Credential file from `relay-server issue client`.
    #[arg(long, global = true, env = "RELAY_CREDENTIAL")]
    credential: Option<PathBuf>,
    /// Private key, for a credential issued from a CSR (`keygen`).
    #[arg(long, global = true, env = "RELAY_KEY")]
    key: Option<PathBuf>,
    /// Deadline for reaching the relay.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// End-to-end mode: each agent is reached on a QUIC connection of its
    /// own, which the relay forwards without decrypting (fewer copies and
    /// no crypto on the relay); the relay still authorizes it. Falls back to
    /// the relay path where the relay or agent cannot offer one.
    #[arg(long, global = true, env = "RELAY_END_TO_END",
          value_parser = clap::builder::BoolishValueParser::new())]
    end_to_end: bool,
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
        after_help = "Examples:\n  relay-client --credential alice.cred forward 127.0.0.1:16443 aks-prod/kube-api\n  relay-client --credential alice.cred forward 16443 aks-prod/kube-api 15432 aks-prod/db"
    )]
    Forward {
        /// Pairs of LOCAL AGENT/TARGET; LOCAL is ADDR:PORT or a port on 127.0.0.1.
        #[arg(required = true, num_args = 2.., value_names = ["LOCAL", "AGENT/TARGET"])]
        pairs: Vec<String>,
    },
    /// Pipe stdin/stdout to AGENT/TARGET (e.g. as an ssh ProxyCommand).
    Connect {
        /// AGENT/TARGET.
        dest: Destination,
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
        after_help = "Examples:\n  relay-client --credential alice.cred socks 127.0.0.1:1080 aks-prod\n  curl --socks5-hostname 127.0.0.1:1080 https://kube.internal/version\n\nThe agent must run with --allow-socks RULES and the relay policy must have\n`socks = true` for you. Refusals get SOCKS reply codes (0x02 not allowed,\n0x03 agent offline, 0x04 unreachable, 0x05 refused, 0x06 timeout)."
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
        after_help = "Examples:\n  relay-client --credential ci.cred with aks-prod/kube-api -- kubectl apply -f deploy.yaml\n  relay-client with aks-prod/db -- sh -c 'psql -h 127.0.0.1 -p $RELAY_FORWARD_PORT'\n\nThe temporary kubeconfig copies the current context (or --context) with\nserver https://RELAY_FORWARD_ADDR and tls-server-name set to the real API\nhost, so certificate checks stay on. Exits with CMD's status (128+N if\nkilled by signal N); 255 if the forward cannot be set up."
    )]
    With {
        /// AGENT/TARGET.
        dest: Destination,
        /// Kubeconfig to rewrite [default: KUBECONFIG, else ~/.kube/config if present].
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Kubeconfig context to use [default: the current one].
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
        after_help = "Examples:\n  relay-client kubeconfig aks-prod/kube-api                       # print, via socks 127.0.0.1:1080\n  relay-client kubeconfig aks-prod/kube-api --kubeconfig ~/.kube/config --context aks-prod-relay\n  relay-client kubeconfig aks-prod/kube-api --forward 127.0.0.1:16443\n\nRoute socks: keep `relay-client socks 127.0.0.1:1080 AGENT` running; the\ncluster keeps its server URL and gets proxy-url: socks5://.... Route\nforward: keep `relay-client forward 127.0.0.1:16443 AGENT/TARGET` running;\nthe server becomes https://127.0.0.1:16443 with tls-server-name set."
    )]
    Kubeconfig {
        /// AGENT/TARGET of the API server.
        dest: Destination,
        /// Merge the context into FILE (created if missing) instead of printing.
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Name of the new context [default: relay-AGENT].
        #[arg(long, value_name = "NAME")]
        context: Option<String>,
        /// Copy the cluster of this context [default: the current one].
        #[arg(long, value_name = "NAME")]
        from_context: Option<String>,
        /// Route through `relay-client socks` on ADDR [default: 127.0.0.1:1080].
        #[arg(long, value_name = "ADDR", conflicts_with = "forward")]
        socks: Option<String>,
        /// Route through `relay-client forward` on ADDR (ADDR:PORT or a port).
        #[arg(long, value_name = "ADDR")]
        forward: Option<String>,
    },
    /// List the agents online, the targets this credential may reach and the sessions (shell, run, socks) it may open.
    List,
    /// Make a private key and print a CSR for it (the key never leaves this host).
    Keygen {
        /// Where to write the private key (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Measure throughput, latency and stream-open rate through the tunnel
    /// against direct TCP (`--local`: no set-up needed).
    Bench(crate::cmd::bench::BenchArgs),
    /// The plain-quinn baseline of `bench/compare.sh`: the bench service on
    /// raw QUIC streams, with the relay's certificate and transport settings.
    #[command(hide = true)]
    BenchQuicServer(crate::cmd::bench::QuicServerArgs),
    /// Run a whole relay, agent and forward on loopback with a throwaway CA.
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

fn client(args: &Args) -> anyhow::Result<Client> {
    let path = args.credential.as_ref().ok_or_else(|| {
        anyhow::anyhow!("give --credential FILE (from `relay-server issue client NAME`)")
    })?;
    let loaded = Credential::load(path, args.key.as_deref())?;
    Ok(Client::new(loaded)
        .with_connect_timeout(args.connect_timeout)
        .end_to_end(args.end_to_end))
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Command::Forward { pairs } => {
            if pairs.len() % 2 != 0 {
                anyhow::bail!("forward takes pairs: LOCAL AGENT/TARGET [LOCAL AGENT/TARGET ...]");
            }
            let client = Arc::new(client(&args)?);
            // Reach the relay once up front so a bad credential or an
            // unreachable relay is reported now, not at the first connection.
            client.connection().await?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            relay_net::signals::cancel_on_signal(shutdown.clone())?;
            let mut forwards = tokio::task::JoinSet::new();
            for pair in pairs.chunks(2) {
                let local = parse_local(&pair[0])?;
                let dest: Destination = pair[1].parse().map_err(|e: String| anyhow::anyhow!(e))?;
                let listener = tokio::net::TcpListener::bind(local)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {local}: {e}"))?;
                eprintln!("forwarding {} -> {dest}", listener.local_addr()?);
                forwards.spawn(crate::cmd::forward::run(
                    client.clone(),
                    listener,
                    dest,
                    shutdown.clone(),
                ));
            }
            while forwards.join_next().await.is_some() {}
            client.close().await;
            Ok(ExitCode::SUCCESS)
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
            client.connection().await?;
            let local = parse_local(listen)?;
            let listener = tokio::net::TcpListener::bind(local)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {local}: {e}"))?;
            eprintln!("socks5 proxy on {} -> {agent}", listener.local_addr()?);
            let shutdown = tokio_util::sync::CancellationToken::new();
            relay_net::signals::cancel_on_signal(shutdown.clone())?;
            crate::cmd::socks::run(client.clone(), listener, agent.clone(), shutdown).await;
            client.close().await;
            Ok(ExitCode::SUCCESS)
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
            from_context,
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
                from_context: from_context.clone(),
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
            relay_net::pki::keygen_command(out, proto::Role::Client)
                .map_err(|e| anyhow::anyhow!(e))?;
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
    result: Result<crate::session::Ending, crate::OpenError>,
) -> ExitCode {
    let status = match result {
        Ok(ending) => {
            if let crate::session::Ending::Lost(reason) = &ending {
                eprintln!(
                    "relay-client: session lost: {}",
                    client.explain(reason.clone()).await
                );
            }
            ending.status()
        }
        Err(e) => {
            eprintln!("relay-client: {e}");
            255
        }
    };
    client.close().await;
    ExitCode::from(status)
}
