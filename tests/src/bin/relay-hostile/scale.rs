//! How one relay holds a crowd (issue #19): N registered, idle agents and
//! M idle clients from this process and one child, all on 127.0.0.1, with
//! the relay's RSS per peer, its CPU while they idle, how long the agents
//! took to register, and a well-behaved client's round trip (a real
//! `relay-agent` and `relay-client` forward) before and among them.
//!
//! ```text
//! relay-hostile scale --bins DIR [--agents 10000] [--clients 10000]
//!                     [--idle-seconds 30] [--samples 2000] [--agent-transport auto|quic|tcp]
//!                     [--agent-keep-alive 3s] [--max-handshakes N] [--storm crash|drain]
//! ```
//!
//! The agents are the real agent (`relay_agent::Agent`, its own endpoint,
//! keep-alives and backoff), one credential each, 2,500 to a worker process
//! (each agent holds a socket or two; a process may open 20,000 files
//! here), all started at once, at nice 19: they stand for machines of
//! their own, so the relay and the pinger's processes come first on the
//! cores they share here; the clients are idle QUIC connections with
//! a client credential (handshake done, keep-alives, no stream), from the
//! `idle` worker. `--storm` then restarts the relay under them (module
//! `storm`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use proto::{Name, Role};
use relay_agent::allowlist::Allowlist;
use relay_client::Client;
use relay_net::credential::{Credential, Loaded};
use relay_net::endpoint::Transport;
use relay_server::cmd::issue::Issue;
use relay_server::config::Paths;
use relay_tests::launch::{Programs, RelayProcess};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::{memory_kib, mib, percentile, ping_pong, spawn_worker_within, Args};

/// The relay's user + system CPU time so far, in seconds (`/proc/PID/stat`).
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').context("/proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("/proc stat field")?.parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12
    // here (the state is field 3, index 0), in USER_HZ ticks, which Linux
    // fixes at 100 for user space.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Agents per worker process: each agent owns a UDP socket (and a TCP one
/// while it races the carrier), and a process may hold 20,000 files here.
const AGENTS_PER_WORKER: usize = 2_500;

/// `n` agent credentials named `scale-0` …, issued into `dir` (the relay's
/// directory) and saved in `dir/scale/`.
fn issue_agents(dir: &Path, relay: std::net::SocketAddr, n: usize) -> anyhow::Result<PathBuf> {
    let out = dir.join("scale");
    std::fs::create_dir_all(&out)?;
    for i in 0..n {
        let name = format!("scale-{i}");
        let (credential, _) = Issue {
            paths: Paths::from(dir),
            role: Role::Agent,
            name: Name::try_from(name.as_str())?,
            relay: vec![relay.to_string()],
            ttl: None,
            csr: None,
            groups: Vec::new(),
        }
        .run()?;
        credential.save(&out.join(format!("{name}.cred")))?;
    }
    Ok(out)
}

/// The agent transport a run asks for: `--agent-transport`, and the
/// `--agent-keep-alive` what-if (idle timeout at least 3× it).
fn agent_transport(args: &Args) -> anyhow::Result<Transport> {
    let mut transport = Transport::agent();
    // As across an MTU-1500 network: on loopback MTU discovery would grow
    // packets (and every buffer sized by them, here and on the relay) to
    // 6000 bytes, and each agent endpoint's receive buffer to 12 MiB.
    transport.mtu_upper_bound = relay_net::endpoint::ETHERNET_MTU_BOUND;
    transport.via = args
        .get("agent-transport")
        .unwrap_or("auto")
        .parse()
        .map_err(anyhow::Error::msg)?;
    if let Some(every) = args.get("agent-keep-alive") {
        let every = humantime::parse_duration(every)?;
        transport.keep_alive = Some(every);
        transport.idle_timeout = transport.idle_timeout.max(every * 3);
    }
    Ok(transport)
}

/// `worker agents --creds DIR --from I --count N --echo ADDR --seconds S
/// [--agent-transport T] [--agent-keep-alive D]`: agents `scale-I` … in
/// this process. Its first line is each one's registration time in ms
/// (`-` for one not registered within 120 s); then they idle until S.
pub(crate) async fn agents_worker(args: &Args) -> anyhow::Result<()> {
    let dir = args.path("creds")?;
    let from: usize = args.num("from", 0)?;
    let count: usize = args.num("count", 0)?;
    let seconds: u64 = args.num("seconds", 60)?;
    let echo: std::net::SocketAddr = args.get("echo").context("--echo")?.parse()?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let credentials = (from..from + count)
        .map(|i| {
            Ok(Credential::load(
                &dir.join(format!("scale-{i}.cred")),
                None,
            )?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let transport = agent_transport(args)?;
    let (stop, times) =
        register_all(credentials, echo, &transport, Duration::from_secs(120)).await?;
    let line: Vec<String> = times
        .iter()
        .map(|t| t.map_or("-".to_owned(), |d| d.as_millis().to_string()))
        .collect();
    println!("registered {}", line.join(" "));
    #[allow(clippy::disallowed_methods)] // the run's length: idle until its deadline
    tokio::time::sleep_until(deadline.into()).await; // sleep-ok: idle until the run's deadline
    stop.cancel();
    Ok(())
}

/// Starts the agent workers for `agents` credentials in `creds` at once
/// (a herd, as after a relay restart); gives them, the registration times
/// (ms, sorted) and how many did not register.
async fn start_agents(
    creds: &Path,
    agents: usize,
    echo: std::net::SocketAddr,
    args: &Args,
    seconds: u64,
) -> anyhow::Result<(Vec<Child>, Vec<u64>, usize)> {
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    let mut firsts = Vec::new();
    for from in (0..agents).step_by(AGENTS_PER_WORKER) {
        let count = AGENTS_PER_WORKER.min(agents - from);
        // At the lowest priority: the agents stand for machines of their
        // own, so the relay and the pinger's processes come first on the
        // cores they share with them here.
        let mut command = Command::new("nice");
        command
            .args(["-n", "19"])
            .arg(&exe)
            .args(["worker", "agents", "--creds"])
            .arg(creds)
            .args(["--from", &from.to_string(), "--count", &count.to_string()])
            .args([
                "--echo",
                &echo.to_string(),
                "--seconds",
                &seconds.to_string(),
            ]);
        for flag in ["agent-transport", "agent-keep-alive"] {
            if let Some(v) = args.get(flag) {
                command.args([format!("--{flag}"), v.to_owned()]);
            }
        }
        let mut child = command.stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
        let stdout = child.stdout.take().context("worker stdout")?;
        firsts.push(tokio::spawn(async move {
            BufReader::new(stdout).lines().next_line().await
        }));
        children.push(child);
    }
    let mut times = Vec::new();
    let mut missing = 0;
    for first in firsts {
        let line = tokio::time::timeout(Duration::from_secs(300), first)
            .await
            .context("agents not registered within 300 s")???
            .context("an agents worker exited before its agents registered")?;
        for t in line.trim_start_matches("registered").split_whitespace() {
            match t.parse::<u64>() {
                Ok(ms) => times.push(ms),
                Err(_) => missing += 1,
            }
        }
    }
    times.sort_unstable();
    Ok((children, times, missing))
}

/// How many agent connections the relay counts on `transport`.
fn agents_on(metrics: &str, transport: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("relay_connections{")
                && l.contains("role=\"agent\"")
                && l.contains(&format!("transport=\"{transport}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

pub(crate) async fn scale(args: &Args) -> anyhow::Result<()> {
    let programs = Programs::in_dir(&args.path("bins")?);
    let agents: usize = args.num("agents", 10_000)?;
    let clients: usize = args.num("clients", 10_000)?;
    let idle_seconds: u64 = args.num("idle-seconds", 30)?;
    let samples: usize = args.num("samples", 2000)?;
    // Long enough for every phase; the workers are killed when this ends.
    let run_seconds = idle_seconds + 900;

    // `relay-server run` flags of the relay (and of its restart). Every
    // agent here comes from 127.0.0.1, where each stands for a machine of
    // its own: no share of the handshake budget per address.
    let mut relay_args = vec![
        "--metrics",
        "127.0.0.1:0",
        "--max-handshakes-per-address",
        "1000000",
    ];
    if let Some(n) = args.get("max-handshakes") {
        relay_args.extend(["--max-handshakes", n]);
    }
    let relay = RelayProcess::start(&programs, crate::POLICY, &relay_args).await?;
    let pid = relay.process.pid()?;
    let echo = relay_tests::tcp_echo().await;
    let pinger_agent = relay.issue("agent", "edge").await?;
    let _pinger_agent =
        crate::start_agent(&programs, &pinger_agent, &[format!("--expose=echo={echo}")]).await?;
    let client_cred = relay.issue("client", "pinger").await?;
    let client = Arc::new(Client::new(Credential::load(&client_cred, None)?));
    let (fwd, _stop) = relay_tests::forward(client.clone(), "edge/echo").await;
    let unloaded = ping_pong(fwd, samples).await?;
    let (rss0, _) = memory_kib(pid)?;
    println!(
        "relay {} (pid {pid}): {:.1} MiB with one agent and one client; round trip p50 {} µs, p99 {} µs (the default path)",
        relay.addr,
        mib(rss0),
        percentile(&unloaded, 0.5),
        percentile(&unloaded, 0.99)
    );

    let t = Instant::now();
    let dir = relay.dir.path().to_owned();
    let addr = relay.addr;
    let creds = tokio::task::spawn_blocking(move || issue_agents(&dir, addr, agents)).await??;
    println!(
        "{agents} agent credentials issued in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let cpu0 = cpu_seconds(pid)?;
    let t = Instant::now();
    let (agent_workers, registered, missing) =
        start_agents(&creds, agents, echo, args, run_seconds).await?;
    let cpu_register = cpu_seconds(pid)? - cpu0;
    let (rss_agents, hwm_agents) = memory_kib(pid)?;
    let metrics = crate::relay_metrics(&relay).await?;
    println!(
        "{} of {agents} agents registered ({missing} not within 120 s) in {:.1} s (each: p50 {} ms, p99 {} ms, max {} ms); {} on QUIC, {} on the TCP carrier; relay CPU {:.1} s; RSS {:.1} MiB (peak {:.1}), {:.1} KiB per agent",
        registered.len(),
        t.elapsed().as_secs_f64(),
        percentile(&registered, 0.5),
        percentile(&registered, 0.99),
        registered.last().copied().unwrap_or(0),
        agents_on(&metrics, "quic"),
        agents_on(&metrics, "tcp"),
        cpu_register,
        mib(rss_agents),
        mib(hwm_agents),
        rss_agents.saturating_sub(rss0) as f64 / agents.max(1) as f64,
    );

    let idler = relay.issue("client", "idler").await?;
    let worker_args = [
        "--relay".to_owned(),
        relay.addr.to_string(),
        "--credential".to_owned(),
        idler.display().to_string(),
        "--seconds".to_owned(),
        run_seconds.to_string(),
        "--count".to_owned(),
        clients.to_string(),
    ];
    let (worker, ready, _summary) =
        spawn_worker_within("idle", &worker_args, Duration::from_secs(600)).await?;
    let (rss_clients, hwm_clients) = memory_kib(pid)?;
    println!(
        "{ready}; relay RSS {:.1} MiB (peak {:.1}), {:.1} KiB per client",
        mib(rss_clients),
        mib(hwm_clients),
        rss_clients.saturating_sub(rss_agents) as f64 / clients.max(1) as f64,
    );

    let cpu0 = cpu_seconds(pid)?;
    let t = Instant::now();
    #[allow(clippy::disallowed_methods)] // the measured idle window
    tokio::time::sleep(Duration::from_secs(idle_seconds)).await; // sleep-ok: the measured idle window
    let idle_cpu = (cpu_seconds(pid)? - cpu0) / t.elapsed().as_secs_f64();
    let loaded = ping_pong(fwd, samples).await?;
    let (rss_end, hwm_end) = memory_kib(pid)?;
    println!(
        "idle {idle_seconds} s with {agents} agents and {clients} clients: relay CPU {:.2} % of one core; RSS {:.1} MiB (peak {:.1}), {:.1} KiB per idle peer",
        idle_cpu * 100.0,
        mib(rss_end),
        mib(hwm_end),
        rss_end.saturating_sub(rss0) as f64 / (agents + clients).max(1) as f64,
    );
    println!(
        "round trip among them: p50 {} µs, p99 {} µs ({:.2}× and {:.2}× unloaded)",
        percentile(&loaded, 0.5),
        percentile(&loaded, 0.99),
        percentile(&loaded, 0.5) as f64 / percentile(&unloaded, 0.5).max(1) as f64,
        percentile(&loaded, 0.99) as f64 / percentile(&unloaded, 0.99).max(1) as f64,
    );
    let relay = match args.get("storm") {
        Some(how) => {
            crate::storm::storm(how, relay, &relay_args, &programs, agents, fwd, &unloaded).await?
        }
        None => relay,
    };
    drop(agent_workers);
    drop(worker);
    drop(relay);
    client.close().await;
    Ok(())
}
/// Starts one in-process agent per credential; gives their shutdown token
/// and each one's registration time, in order of registration (`None` for
/// one not registered within `within`).
async fn register_all(
    credentials: Vec<Loaded>,
    target: std::net::SocketAddr,
    transport: &Transport,
    within: Duration,
) -> anyhow::Result<(CancellationToken, Vec<Option<Duration>>)> {
    let shutdown = CancellationToken::new();
    let mut waits = tokio::task::JoinSet::new();
    for credential in credentials {
        let mut allowlist = Allowlist::default();
        allowlist
            .add("echo", &target.to_string())
            .map_err(anyhow::Error::msg)?;
        let mut config = relay_agent::Config::new(credential, allowlist);
        config.transport = transport.clone();
        let agent = relay_agent::Agent::new(config);
        let mut registered = agent.registered();
        tokio::spawn(agent.run(shutdown.clone()));
        let started = Instant::now();
        waits.spawn(async move {
            let done = tokio::time::timeout(within, registered.wait_for(|n| *n > 0)).await;
            matches!(done, Ok(Ok(_))).then(|| started.elapsed())
        });
    }
    let mut times = Vec::new();
    while let Some(t) = waits.join_next().await {
        times.push(t?);
    }
    Ok((shutdown, times))
}
