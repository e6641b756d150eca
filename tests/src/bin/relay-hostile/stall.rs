//! `relay-hostile stall`: what another identity sees while one identity
//! stalls many streams (issue #13 item 1), through the relay and on direct
//! paths.
//!
//! For each path the bystander measures, unloaded and under each stall,
//! open + 1-byte echo (a new stream per sample; p50, p99) and a transfer
//! of `--mib` MiB to a hashing sink (verified byte for byte). The stalls:
//! a hog client opens `--streams` streams to a target that writes without
//! end and never reads them; then `--streams` streams to a target that
//! never reads while the hog writes without end. Each stall is pushed a
//! stream window's worth per stream (2 MiB) before measuring. Through the
//! relay, last, the hog asks for 16,000 direct paths and holds them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use relay_client::{AgentTarget, Client};
use relay_net::credential::Credential;
use relay_tests::launch::Programs;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::{memory_kib, mib, percentile, start_agent, start_relay, Args};

/// A chunk of filler data.
const CHUNK: usize = 64 << 10;

/// One line of the table.
struct Row {
    path: &'static str,
    phase: String,
    p50: u64,
    p99: u64,
    transfer: Duration,
    relay_rss: u64,
    agent_rss: u64,
}

/// Runs the measurement and prints the table.
pub(crate) async fn stall(args: &Args) -> anyhow::Result<()> {
    let programs = Programs::in_dir(&args.path("bins")?);
    let streams: usize = args.num("streams", 64)?;
    let samples: usize = args.num("samples", 300)?;
    let size: usize = args.num("mib", 64)?;
    let mut rows = Vec::new();
    for direct in [false, true] {
        rows.extend(one_path(&programs, direct, streams, samples, size << 20).await?);
    }
    println!();
    println!(
        "another identity under {streams} stalled streams: open + 1-byte echo ({samples} samples), \
         {size} MiB transfer; ratios against the same path unloaded"
    );
    println!(
        "| path | phase | open+echo p50 µs | p99 µs | p50 vs unloaded | {size} MiB s | vs unloaded | relay RSS MiB | agent RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for path in ["relay", "direct"] {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.path == path).collect();
        let Some(base) = mine.first() else { continue };
        for r in &mine {
            println!(
                "| {} | {} | {} | {} | {:.2}× | {:.3} | {:.2}× | {:.1} | {:.1} |",
                r.path,
                r.phase,
                r.p50,
                r.p99,
                r.p50 as f64 / base.p50.max(1) as f64,
                r.transfer.as_secs_f64(),
                r.transfer.as_secs_f64() / base.transfer.as_secs_f64().max(1e-9),
                mib(r.relay_rss),
                mib(r.agent_rss),
            );
        }
    }
    Ok(())
}

/// Unloaded, then each stall, on one path.
async fn one_path(
    programs: &Programs,
    direct: bool,
    streams: usize,
    samples: usize,
    size: usize,
) -> anyhow::Result<Vec<Row>> {
    let path = if direct { "direct" } else { "relay" };
    let relay = start_relay(programs).await?;
    let echo = relay_tests::tcp_echo().await;
    let sink = relay_tests::hashing_sink().await;
    let (fire, mut fired) = relay_tests::firehose().await;
    let hole = relay_tests::black_hole().await;
    let agent_cred = relay.issue("agent", "edge").await?;
    let agent = start_agent(
        programs,
        &agent_cred,
        &[
            format!("--expose=echo={echo}"),
            format!("--expose=sink={sink}"),
            format!("--expose=fire={fire}"),
            format!("--expose=hole={hole}"),
        ],
    )
    .await?;
    let client = |name: &'static str| {
        let relay = &relay;
        async move {
            let cred = relay.issue("client", name).await?;
            anyhow::Ok(Client::new(Credential::load(&cred, None)?).end_to_end(direct))
        }
    };
    let bystander = client("bystander").await?;
    let relay_pid = relay.process.pid()?;
    let agent_pid = agent.pid()?;
    let mut rows = Vec::new();
    let mut measure = async |phase: String| -> anyhow::Result<()> {
        let mut latencies = open_and_echo(&bystander, samples).await?;
        latencies.sort_unstable();
        let transfer = transfer(&bystander, size).await?;
        rows.push(Row {
            path,
            phase,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            transfer,
            relay_rss: memory_kib(relay_pid)?.0,
            agent_rss: memory_kib(agent_pid)?.0,
        });
        Ok(())
    };
    measure("unloaded".into()).await?;

    // Streams the hog never reads, each pushed a stream window's worth
    // (2 MiB) on average: past what a connection-wide window used to hold.
    let hog = client("hog").await?;
    let mut held = Vec::new();
    for _ in 0..streams {
        held.push(hog.open(&target("edge/fire")?).await?);
    }
    let enough = (streams * (2 << 20)) as u64;
    tokio::time::timeout(Duration::from_secs(60), fired.wait_for(|w| *w >= enough))
        .await
        .context("the firehose did not push its bytes within 60 s")??;
    measure(format!("{streams} streams the hog never reads")).await?;
    drop(held);
    hog.close().await;

    // Targets that never read while the hog writes without end.
    let hog = client("hog").await?;
    let (total, mut pushed) = watch::channel(0u64);
    let total = Arc::new(total);
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let mut s = hog.open(&target("edge/hole")?).await?;
        let total = total.clone();
        writers.spawn(async move {
            let chunk = bytes::Bytes::from(vec![7u8; CHUNK]);
            while s.send.write_chunk(chunk.clone()).await.is_ok() {
                total.send_modify(|t| *t += CHUNK as u64);
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(60), pushed.wait_for(|p| *p >= enough))
        .await
        .context("the hog did not push its bytes within 60 s")??;
    measure(format!("{streams} targets that never read")).await?;
    writers.abort_all();
    hog.close().await;

    if !direct {
        // Paths asked for without end (#13 item 2): once ~16,000 `Direct`s
        // each held a route and a `Grant` stream on the agent's connection.
        let hog = client("hog").await?;
        let note = direct_flood(&hog, DIRECT_FLOOD).await?;
        measure(format!("{DIRECT_FLOOD} Directs held open ({note})")).await?;
        hog.close().await;
    }
    bystander.close().await;
    Ok(rows)
}

/// `Direct`s the flood asks for.
const DIRECT_FLOOD: usize = 16_000;

/// Asks for `count` paths to `edge` on one connection, each with a prefix
/// of its own, and holds every stream open (bounded: 60 s). Returns how
/// the relay answered.
async fn direct_flood(hog: &Client, count: usize) -> anyhow::Result<String> {
    use relay_net::framed::{write_frame, FrameReader};
    let conn = hog.connection().await?;
    let agent: proto::AgentName = "edge".parse().map_err(anyhow::Error::msg)?;
    let mut held = Vec::with_capacity(count);
    let (mut paths, mut refused, mut unanswered) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..count {
        if Instant::now() > deadline {
            break;
        }
        let Ok(Ok((mut send, recv))) =
            tokio::time::timeout(Duration::from_secs(5), conn.open_bi()).await
        else {
            unanswered += 1;
            break;
        };
        let direct = proto::Direct {
            agent: agent.clone(),
            prefix: relay_net::direct::random_prefix(),
        };
        if write_frame(&mut send, direct).await.is_err() {
            unanswered += 1;
            break;
        }
        let mut reader = FrameReader::new(recv);
        match tokio::time::timeout(Duration::from_secs(5), reader.read()).await {
            Ok(Ok(Some(proto::Frame::Path(_)))) => paths += 1,
            Ok(Ok(Some(proto::Frame::Refused(_)))) => refused += 1,
            _ => unanswered += 1,
        }
        held.push((send, reader));
    }
    let open = held.len();
    Ok(format!(
        "{open} asked: {paths} paths, {refused} refused, {unanswered} unanswered"
    ))
}

fn target(s: &str) -> anyhow::Result<AgentTarget> {
    s.parse::<AgentTarget>().map_err(anyhow::Error::msg)
}

/// `samples` opens of a new stream, each echoing one byte, in µs.
async fn open_and_echo(client: &Client, samples: usize) -> anyhow::Result<Vec<u64>> {
    let to = target("edge/echo")?;
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let mut s = tokio::time::timeout(Duration::from_secs(20), client.open(&to))
            .await
            .context("an open took over 20 s")??;
        s.send.write_all(b"x").await?;
        let mut back = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(20), s.recv.read_exact(&mut back))
            .await
            .context("an echo took over 20 s")??;
        latencies.push(t.elapsed().as_micros() as u64);
        s.send.finish()?;
    }
    Ok(latencies)
}

/// Sends `size` bytes to the hashing sink; the time until its hash is back.
async fn transfer(client: &Client, size: usize) -> anyhow::Result<Duration> {
    let data = bytes::Bytes::from(vec![0x5au8; CHUNK]);
    let mut hash = Sha256::new();
    let started = Instant::now();
    let mut s = client.open(&target("edge/sink")?).await?;
    let mut sent = 0;
    while sent < size {
        s.send.write_chunk(data.clone()).await?;
        hash.update(&data);
        sent += CHUNK;
    }
    s.send.finish()?;
    let back = tokio::time::timeout(Duration::from_secs(120), s.recv.read_to_end(64))
        .await
        .context("the transfer took over 120 s")??;
    anyhow::ensure!(
        back == hash.finalize().as_slice(),
        "the sink's hash differs"
    );
    Ok(started.elapsed())
}
