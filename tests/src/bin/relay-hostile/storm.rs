//! The reconnect storm (issue #19): the relay under the `scale` crowd is
//! killed (`crash`: SIGKILL, no `GoAway`) or shut down (`drain`: SIGTERM,
//! `GoAway` to every agent at once) and started again at its address with
//! its directory (CA, policy, stateless-reset key); every agent dials it
//! again by itself, with its own backoff.
//!
//! ```text
//! relay-hostile scale --bins DIR --agents 10000 --clients 0 --storm crash|drain
//! ```
//!
//! Reports how long after the new process listened 50, 90, 99 and 100 % of
//! the agents were registered again, the new relay's CPU and peak RSS
//! meanwhile, and the round trips of a client whose agent is back, taken
//! while the rest of the herd comes in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_tests::launch::{Programs, RelayProcess};

use crate::scale::cpu_seconds;
use crate::{memory_kib, metric_sum, mib, percentile, ping_pong, relay_metrics};

/// How long the herd may take before the run gives up on it.
const WITHIN: Duration = Duration::from_secs(180);

/// How often the report prints a line of the herd's progress.
const TIMELINE_EVERY: Duration = Duration::from_secs(5);

/// Restarts `relay` the way `how` says under `agents` registered agents
/// (plus the pinger's), and reports the storm; gives the new relay,
/// started with `relay_args` as the first one was.
pub(crate) async fn storm(
    how: &str,
    relay: RelayProcess,
    relay_args: &[&str],
    programs: &Programs,
    agents: usize,
    fwd: SocketAddr,
    unloaded: &[u64],
) -> anyhow::Result<RelayProcess> {
    let addr = relay.addr;
    let began = Instant::now();
    let dir = match how {
        "crash" => relay.crash().await?,
        "drain" => relay.terminate().await?.1,
        other => anyhow::bail!("--storm {other}: give crash or drain"),
    };
    let stopped = began.elapsed();
    let relay = RelayProcess::run_in(programs, dir, &addr.to_string(), relay_args).await?;
    let listening = Instant::now();
    let pid = relay.process.pid()?;
    println!(
        "storm ({how}): the relay stopped in {:.1} s and listens again at {addr}",
        stopped.as_secs_f64()
    );

    // The pinger's client dials again by itself; its round trips are taken
    // from the first that works until the herd is in.
    let done = Arc::new(AtomicBool::new(false));
    let pinger = tokio::spawn(ping_while(fwd, done.clone()));

    let all = agents + 1;
    let marks = [0.5, 0.9, 0.99, 1.0];
    let mut reached: Vec<Option<Duration>> = vec![None; marks.len()];
    let mut peak_cpu = 0.0f64;
    let mut last = (Instant::now(), 0.0);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut registered = 0usize;
    let mut last_text = String::new();
    // A line every TIMELINE_EVERY shows how the herd comes in (or why not).
    let mut next_line = Duration::ZERO;
    let mut line_cpu = 0.0;
    while listening.elapsed() < WITHIN && reached.iter().any(Option::is_none) {
        tick.tick().await;
        let Ok(text) = relay_metrics(&relay).await else {
            continue;
        };
        registered = metric_sum(&text, "relay_agents_registered") as usize;
        last_text.clone_from(&text);
        if listening.elapsed() >= next_line {
            let cpu = cpu_seconds(pid)?;
            println!(
                "  {:5.1} s: {registered} registered of {} agents connected, {} handshakes under way, {} refused as busy, {} failed; relay CPU {:.0} % since the last line",
                listening.elapsed().as_secs_f64(),
                metric_sum(&text, "relay_connections{role=\"agent\",transport=\"quic\"}")
                    + metric_sum(&text, "relay_connections{role=\"agent\",transport=\"tcp\"}"),
                metric_sum(&text, "relay_handshakes"),
                metric_sum(&text, "relay_limit_hits_total{reason=\"handshakes\"}"),
                metric_sum(&text, "relay_handshake_failures_total"),
                (cpu - line_cpu) * 100.0 / TIMELINE_EVERY.as_secs_f64(),
            );
            line_cpu = cpu;
            next_line += TIMELINE_EVERY;
        }
        for (mark, at) in marks.iter().zip(reached.iter_mut()) {
            if at.is_none() && registered as f64 >= mark * all as f64 {
                *at = Some(listening.elapsed());
            }
        }
        let cpu = cpu_seconds(pid)?;
        let span = last.0.elapsed().as_secs_f64();
        if span >= 1.0 {
            peak_cpu = peak_cpu.max((cpu - last.1) / span);
            last = (Instant::now(), cpu);
        }
    }
    done.store(true, Ordering::Relaxed);
    let cpu = cpu_seconds(pid)?;
    let (rss, hwm) = memory_kib(pid)?;
    let (rtts, first, failed) = pinger.await??;
    let at = |i: usize| {
        reached[i].map_or_else(
            || format!("not within {} s", WITHIN.as_secs()),
            |d| format!("{:.1} s", d.as_secs_f64()),
        )
    };
    println!(
        "{registered} of {all} agents registered again after the relay listened: 50 % in {}, 90 % in {}, 99 % in {}, all in {}",
        at(0),
        at(1),
        at(2),
        at(3)
    );
    println!(
        "relay meanwhile: CPU {cpu:.1} s (peak {:.0} % of one core over a second); RSS {:.1} MiB, peak {:.1} MiB",
        peak_cpu * 100.0,
        mib(rss),
        mib(hwm)
    );
    let failures: Vec<&str> = last_text
        .lines()
        .filter(|l| l.starts_with("relay_handshake_failures_total{"))
        .collect();
    if !failures.is_empty() {
        println!("handshakes the relay gave up on: {}", failures.join(", "));
    }
    match first {
        Some(first) => println!(
            "the pinger's agent back {:.2} s after the relay listened; {} round trips while the herd came in: p50 {} µs, p99 {} µs ({:.2}× and {:.2}× unloaded); {failed} tries failed before",
            first.as_secs_f64(),
            rtts.len(),
            percentile(&rtts, 0.5),
            percentile(&rtts, 0.99),
            percentile(&rtts, 0.5) as f64 / percentile(unloaded, 0.5).max(1) as f64,
            percentile(&rtts, 0.99) as f64 / percentile(unloaded, 0.99).max(1) as f64,
        ),
        None => println!("the pinger's agent was not back while the herd came in ({failed} tries failed)"),
    }
    Ok(relay)
}

/// Round trips through `fwd` in batches until `done`: the sorted round
/// trips, how long after the call the first batch worked, and how many
/// tries failed.
async fn ping_while(
    fwd: SocketAddr,
    done: Arc<AtomicBool>,
) -> anyhow::Result<(Vec<u64>, Option<Duration>, usize)> {
    let began = Instant::now();
    let mut rtts = Vec::new();
    let mut first = None;
    let mut failed = 0;
    // A try that fails (the agent not back yet) is made again at this pace.
    let mut again = tokio::time::interval(Duration::from_millis(50));
    while !done.load(Ordering::Relaxed) {
        match ping_pong(fwd, 100).await {
            Ok(batch) => {
                first.get_or_insert_with(|| began.elapsed());
                rtts.extend(batch);
            }
            Err(_) => {
                failed += 1;
                again.tick().await;
            }
        }
    }
    rtts.sort_unstable();
    Ok((rtts, first, failed))
}
