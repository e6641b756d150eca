//! How one relay holds a crowd (issue #19): N registered, idle agents and
//! M idle clients from this process and one child, all on 127.0.0.1, with
//! the relay's RSS per peer, its CPU while they idle, how long the agents
//! took to register, and a well-behaved client's round trip (a real
//! `relay-agent` and `relay-client` forward) before and among them.
//!
//! ```text
//! relay-hostile scale --bins DIR [--agents 10000] [--clients 10000]
//!                     [--idle-seconds 30] [--samples 2000] [--agent-transport auto|quic|tcp]
//!                     [--agent-keep-alive 3s]
//! ```
//!
//! The agents are the real agent (`relay_agent::Agent`, its own endpoint,
//! keep-alives and backoff), one credential each, run in this process; the
//! clients are idle QUIC connections with a client credential (handshake
//! done, keep-alives, no stream), from the `idle` worker.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use proto::{Name, Role};
use relay_agent::allowlist::Allowlist;
use relay_client::Client;
use relay_net::credential::{Credential, Loaded};
use relay_server::cmd::issue::Issue;
use relay_server::config::Paths;
use relay_tests::launch::Programs;
use tokio_util::sync::CancellationToken;

use crate::{memory_kib, mib, percentile, ping_pong, spawn_worker, Args};

/// The relay's user + system CPU time so far, in seconds (`/proc/PID/stat`).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
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

/// `n` agent credentials named `scale-0` …, issued into `dir` (the
/// relay's directory) and loaded.
fn issue_agents(dir: &Path, relay: std::net::SocketAddr, n: usize) -> anyhow::Result<Vec<Loaded>> {
    let out = dir.join("scale");
    std::fs::create_dir_all(&out)?;
    (0..n)
        .map(|i| {
            let name = format!("scale-{i}");
            let (credential, _) = Issue {
                paths: Paths::from(dir),
                role: Role::Agent,
                name: Name::try_from(name.as_str())?,
                relay: vec![relay.to_string()],
                ttl: None,
                csr: None,
            }
            .run()?;
            let path = out.join(format!("{name}.cred"));
            credential.save(&path)?;
            Ok(Credential::load(&path, None)?)
        })
        .collect()
}

/// Starts one in-process agent per credential; gives their shutdown token
/// and each one's registration time, in order of registration (`None` for
/// one not registered within `within`).
async fn register_all(
    credentials: Vec<Loaded>,
    target: std::net::SocketAddr,
    transport: &relay_net::endpoint::Transport,
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

pub(crate) async fn scale(args: &Args) -> anyhow::Result<()> {
    let programs = Programs::in_dir(&args.path("bins")?);
    let agents: usize = args.num("agents", 10_000)?;
    let clients: usize = args.num("clients", 10_000)?;
    let idle_seconds: u64 = args.num("idle-seconds", 30)?;
    let samples: usize = args.num("samples", 2000)?;
    let mut transport = relay_net::endpoint::Transport::agent();
    transport.via = args
        .get("agent-transport")
        .unwrap_or("auto")
        .parse()
        .map_err(anyhow::Error::msg)?;
    if let Some(every) = args.get("agent-keep-alive") {
        // A what-if: the agent's keep-alive interval (idle timeout 3×).
        let every = humantime::parse_duration(every)?;
        transport.keep_alive = Some(every);
        transport.idle_timeout = transport.idle_timeout.max(every * 3);
    }

    let relay = crate::start_relay(&programs).await?;
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
    let credentials =
        tokio::task::spawn_blocking(move || issue_agents(&dir, addr, agents)).await??;
    println!(
        "{agents} agent credentials issued in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let cpu0 = cpu_seconds(pid)?;
    let t = Instant::now();
    let (stop_agents, times) =
        register_all(credentials, echo, &transport, Duration::from_secs(120)).await?;
    let cpu_register = cpu_seconds(pid)? - cpu0;
    let mut registered: Vec<u64> = times
        .iter()
        .flatten()
        .map(|d| d.as_millis() as u64)
        .collect();
    registered.sort_unstable();
    let (rss_agents, hwm_agents) = memory_kib(pid)?;
    let metrics = crate::relay_metrics(&relay).await?;
    let on = |transport: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("relay_connections{")
                    && l.contains("role=\"agent\"")
                    && l.contains(&format!("transport=\"{transport}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    println!(
        "agents on QUIC: {}, on the TCP carrier: {}",
        on("quic"),
        on("tcp")
    );
    println!(
        "{} of {agents} agents registered in {:.1} s (each: p50 {} ms, p99 {} ms, max {} ms); relay CPU {:.1} s; RSS {:.1} MiB (peak {:.1}), {:.1} KiB per agent",
        registered.len(),
        t.elapsed().as_secs_f64(),
        percentile(&registered, 0.5),
        percentile(&registered, 0.99),
        registered.last().copied().unwrap_or(0),
        cpu_register,
        mib(rss_agents),
        mib(hwm_agents),
        rss_agents.saturating_sub(rss0) as f64 / agents.max(1) as f64,
    );

    let flooder = relay.issue("client", "idler").await?;
    let worker_args = [
        "--relay".to_owned(),
        relay.addr.to_string(),
        "--credential".to_owned(),
        flooder.display().to_string(),
        "--seconds".to_owned(),
        (idle_seconds + 300).to_string(),
        "--count".to_owned(),
        clients.to_string(),
    ];
    let (worker, ready, summary) = spawn_worker("idle", &worker_args).await?;
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
    stop_agents.cancel();
    drop(worker);
    let _ = finish_worker_quietly(summary).await;
    client.close().await;
    Ok(())
}

/// The worker was dropped (killed): its summary task ends with its pipe.
async fn finish_worker_quietly(summary: tokio::task::JoinHandle<String>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(5), summary)
        .await
        .ok()?
        .ok()
}
