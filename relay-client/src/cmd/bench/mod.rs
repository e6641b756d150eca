//! `relay-client bench`: how fast is the tunnel? Bulk throughput both ways
//! (1 and N streams), 64-byte ping-pong p50/p99 and stream opens per second,
//! each beside the same measurement over direct TCP on this machine in the
//! same run, with the ratio. A progress bar while it runs, a table at the
//! end, `--json` for machines.
//!
//! - against a real relay: `--credential` of a client, and an agent started
//!   with `--expose-bench` (the first such agent, or `--agent NAME`);
//! - `--local`: a throwaway CA, `relay-server` and `relay-agent
//!   --expose-bench` as separate processes on 127.0.0.1, removed afterwards;
//! - `--tcp ADDR`: only plain TCP to a bench server at ADDR (for example
//!   behind `ssh -L`, as `bench/compare.sh` does).
//!
//! The direct baseline is `relay-agent bench-server` in a process of its own
//! (so, like the tunnel's agent, its CPU is not ours), serving the same
//! sub-protocol on TCP; measurements live in [`crate::bench`].

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use proto::{AgentName, TargetName};
use relay_net::credential::Credential;

use crate::bench::{measure, peak_rss_kib, BenchPath, CpuMeter, Options, Progress};
use crate::local::{locate, start_bench_server, Binaries, LocalRelay};
use crate::{AgentTarget, Client};

mod report;
pub use report::{Figure, Process, Report};

/// `relay-client bench` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    relay-client bench --local                       # relay + agent on loopback, no set-up\n  \
    relay-client bench --local --json --bytes 256MiB\n  \
    relay-client --credential ci.cred bench --agent aks-prod   # an agent run with --expose-bench")]
pub struct BenchArgs {
    /// Start a relay and an agent on 127.0.0.1 (separate processes, throwaway CA).
    #[arg(long, conflicts_with_all = ["agent", "tcp"])]
    pub local: bool,
    /// The agent to measure (default: the first that exposes `bench`).
    #[arg(long)]
    pub agent: Option<AgentName>,
    /// Streams of the multi-stream tests, and concurrent openers.
    #[arg(long, default_value_t = 8)]
    pub streams: usize,
    /// Bytes per bulk test (e.g. 1GiB, 256MiB, 1000000).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub bytes: u64,
    /// Measured 64-byte round trips.
    #[arg(long, default_value_t = 5000)]
    pub pings: u32,
    /// Streams opened (1-byte echo) for each open-rate pattern: N at a time
    /// half-closed, then one at a time (a relay's default limits allow
    /// bursts of 4000 per client).
    #[arg(long, default_value_t = 1500)]
    pub opens: u32,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Direct-TCP baseline: an existing `relay-agent bench-server` at ADDR
    /// (default: start one on 127.0.0.1).
    #[arg(long, value_name = "ADDR", conflicts_with = "no_direct")]
    pub direct: Option<SocketAddr>,
    /// Skip the direct-TCP baseline.
    #[arg(long)]
    pub no_direct: bool,
    /// Measure only plain TCP to a bench server at ADDR (no relay).
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["direct", "no_direct", "quic"])]
    pub tcp: Option<SocketAddr>,
    /// Measure only plain quinn to a `bench-quic-server` at ADDR (one QUIC
    /// hop, no relay; needs --credential of the server's relay directory).
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["direct", "no_direct"], hide = true)]
    pub quic: Option<SocketAddr>,
    /// Add this process's CPU time to the CPU-per-GiB figures of the
    /// measured path (repeatable; e.g. the relay and agent of a real set-up
    /// on this machine, as `bench/compare.sh` passes them).
    #[arg(long, value_name = "PID")]
    pub cpu_pid: Vec<u32>,
}

/// `relay-client bench-quic-server`: the one-hop QUIC baseline.
#[derive(Debug, clap::Args)]
pub struct QuicServerArgs {
    /// A relay directory (`relay-server init`): its relay.crt, relay.key and ca.crt are used.
    #[arg(long)]
    pub dir: std::path::PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

/// Runs `bench-quic-server` until Ctrl-C or SIGTERM; prints
/// `bench-quic-server listening on ADDR`.
///
/// # Errors
/// If the files cannot be read or the address bound.
pub async fn quic_server(args: &QuicServerArgs) -> anyhow::Result<ExitCode> {
    let read = |name: &str| {
        let path = args.dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let tls =
        relay_net::tls::server_config(&read("relay.crt")?, &read("relay.key")?, &read("ca.crt")?)?;
    let udp = relay_net::endpoint::bind_udp(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let endpoint = relay_net::endpoint::server(
        udp,
        tls,
        &relay_net::endpoint::Transport::relay(),
        None,
        None,
    )?
    .endpoint;
    let shutdown = tokio_util::sync::CancellationToken::new();
    relay_net::signals::cancel_on_signal(shutdown.clone())?;
    println!("bench-quic-server listening on {}", endpoint.local_addr()?);
    crate::bench::serve_quic(endpoint, shutdown).await;
    Ok(ExitCode::SUCCESS)
}

/// Parses `1GiB`, `256MiB`, `64KiB`, `1G`, `1000000`.
///
/// # Errors
/// On anything else.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 1GiB, 256MiB, 1000000)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use KiB, MiB, GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

/// The policy of a `--local` run.
const LOCAL_POLICY: &str =
    "[[allow]]\nclient = \"bench\"\nagent = \"bench-agent\"\ntargets = [\"bench\"]\n";

/// Runs the command; `client` builds the client from the global flags.
///
/// # Errors
/// If a part cannot be started or a measurement fails.
pub async fn run(
    args: &BenchArgs,
    end_to_end: crate::direct::EndToEnd,
    client: impl FnOnce() -> anyhow::Result<Client>,
) -> anyhow::Result<ExitCode> {
    let report = tokio::select! {
        r = measure_all(args, end_to_end, client) => r?,
        // Return (and drop the child processes and temp dir) on Ctrl-C.
        Ok(()) = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}\n\n{}", report.path, report.table());
    }
    Ok(ExitCode::SUCCESS)
}

fn options(args: &BenchArgs) -> Options {
    Options {
        streams: args.streams.max(1),
        bytes: args.bytes,
        pings: args.pings.max(1),
        opens: args.opens.max(1),
    }
}

async fn measure_all(
    args: &BenchArgs,
    end_to_end: crate::direct::EndToEnd,
    client: impl FnOnce() -> anyhow::Result<Client>,
) -> anyhow::Result<Report> {
    let opts = options(args);
    let progress = Progress::stderr();
    if let Some(addr) = args.tcp {
        let label = "tcp";
        let m = measure(
            &BenchPath::Tcp(addr),
            label,
            &opts,
            &CpuMeter::new(&[]),
            &progress,
        )
        .await?;
        return Ok(Report::new(format!("plain TCP to {addr}"), opts, m, None));
    }
    if let Some(addr) = args.quic {
        let client = client()?;
        let conn = relay_net::dial::dial_addr(
            &client.credential(),
            &addr.to_string(),
            &relay_net::endpoint::Transport::client(),
            std::time::Duration::from_secs(10),
        )
        .await?;
        let path = BenchPath::Quic(conn.conn.clone());
        let m = measure(
            &path,
            "quic",
            &opts,
            &CpuMeter::new(&args.cpu_pid),
            &progress,
        )
        .await?;
        conn.conn.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), conn.endpoint.wait_idle())
            .await;
        return Ok(Report::new(format!("plain quinn to {addr}"), opts, m, None));
    }
    if args.local {
        return local(&opts, end_to_end, &progress).await;
    }
    let client = Arc::new(client()?);
    let agent = match &args.agent {
        Some(a) => a.clone(),
        None => {
            let bench = TargetName::try_from(BENCH_TARGET).map_err(|e| anyhow::anyhow!("{e}"))?;
            client
                .list()
                .await?
                .into_iter()
                .find(|a| a.targets.contains(&bench))
                .map(|a| a.agent)
                .context("no agent online exposes `bench` to this credential: start one with `relay-agent --expose-bench` and allow target `bench` in the relay policy, or pass --agent NAME")?
        }
    };
    let dest = AgentTarget {
        agent,
        target: TargetName::try_from(BENCH_TARGET).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    // The path the streams will take, set up before anything is timed.
    let path_name = client.connection_to(&dest.agent).await?.path_name();
    let path = BenchPath::Tunnel {
        client: client.clone(),
        dest: dest.clone(),
    };
    let measured = measure(
        &path,
        "tunnel",
        &opts,
        &CpuMeter::new(&args.cpu_pid),
        &progress,
    )
    .await?;
    let mut notes = Vec::new();
    if args.cpu_pid.is_empty() {
        notes.push(
            "CPU figures count only this process (add the relay's and agent's with --cpu-pid)"
                .to_owned(),
        );
    }
    let direct = if args.no_direct {
        None
    } else if let Some(addr) = args.direct {
        Some(
            measure(
                &BenchPath::Tcp(addr),
                "direct TCP",
                &opts,
                &CpuMeter::new(&[]),
                &progress,
            )
            .await?,
        )
    } else {
        let agent_bin = locate("RELAY_AGENT_BIN", "relay-agent")?;
        if agent_bin.exists() {
            let (server, addr) = start_bench_server(&agent_bin).await?;
            let cpu = CpuMeter::new(&server.id().into_iter().collect::<Vec<_>>());
            Some(measure(&BenchPath::Tcp(addr), "direct TCP", &opts, &cpu, &progress).await?)
        } else {
            notes.push(format!(
                "direct-TCP baseline skipped: {} not found (give --direct ADDR)",
                agent_bin.display()
            ));
            None
        }
    };
    client.close().await;
    let mut report = Report::new(
        format!(
            "tunnel: this client -> relay -> agent {} ({path_name})",
            dest.agent,
        ),
        opts,
        measured,
        direct,
    );
    report.notes = notes;
    Ok(report)
}

/// The name under which `relay-agent --expose-bench` exposes its benchmark
/// service (relay-agent's `allowlist::BENCH_TARGET`).
const BENCH_TARGET: &str = "bench";

async fn local(
    opts: &Options,
    end_to_end: crate::direct::EndToEnd,
    progress: &Progress,
) -> anyhow::Result<Report> {
    let bins = Binaries::find()?;
    eprintln!("bench: starting relay-server and relay-agent --expose-bench on 127.0.0.1 ...");
    // No open-rate limit in the way: the open test measures the tunnel, and
    // any `--opens` must work on a throwaway relay.
    let relay = LocalRelay::start(&bins, LOCAL_POLICY, &["--max-open-rate", "1000000"]).await?;
    let agent_cred = relay.issue("agent", "bench-agent").await?;
    let client_cred = relay.issue("client", "bench").await?;
    let agent = relay
        .start_agent(
            &agent_cred,
            &[
                "--expose-bench".into(),
                "--max-direct-open-rate=1000000".into(),
            ],
        )
        .await?;
    let (server, direct_addr) = start_bench_server(&bins.agent).await?;
    let client =
        Arc::new(Client::new(Credential::load(&client_cred, None)?).end_to_end(end_to_end));
    let dest: AgentTarget = "bench-agent/bench"
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let path_name = client.connection_to(&dest.agent).await?.path_name();
    let path = BenchPath::Tunnel {
        client: client.clone(),
        dest,
    };
    let tunnel_pids: Vec<u32> = [relay.pid(), agent.id()].into_iter().flatten().collect();
    let measured = measure(
        &path,
        "tunnel",
        opts,
        &CpuMeter::new(&tunnel_pids),
        progress,
    )
    .await?;
    let direct_pids: Vec<u32> = server.id().into_iter().collect();
    let direct = measure(
        &BenchPath::Tcp(direct_addr),
        "direct TCP",
        opts,
        &CpuMeter::new(&direct_pids),
        progress,
    )
    .await?;
    client.close().await;
    let mut report = Report::new(
        format!(
            "tunnel: relay-client -> relay-server {} -> relay-agent (3 processes, loopback, {path_name}); direct TCP: relay-client -> bench-server",
            relay.addr,
        ),
        opts.clone(),
        measured,
        Some(direct),
    );
    report.processes = vec![
        Process {
            name: "relay-server",
            peak_rss_kib: relay.pid().and_then(peak_rss_kib),
        },
        Process {
            name: "relay-agent",
            peak_rss_kib: agent.id().and_then(peak_rss_kib),
        },
        Process {
            name: "relay-client",
            peak_rss_kib: peak_rss_kib(std::process::id()),
        },
    ];
    report.notes.push(
        "CPU-s per GiB adds up every process on the path (tunnel: client, relay, agent; direct: client, bench-server)"
            .into(),
    );
    drop(server);
    drop(agent);
    drop(relay);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        for bad in ["", "GiB", "1TB", "0", "-1", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
