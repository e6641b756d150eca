//! Bounded measurements of hostile conditions against the real programs on
//! loopback (not tests: they print figures and a verdict, they assert no
//! timings). Run through `tests/scripts/flood.sh` and `tests/scripts/soak.sh`.
//!
//! ```text
//! relay-hostile flood --bins DIR [--samples N] [--idle N] [--seconds S]
//!     round-trip p50/p99 of a well-behaved client through a forward,
//!     unloaded and under each flood, with the relay's RSS and peak RSS
//! relay-hostile stall --bins DIR [--streams 64] [--samples 300] [--mib 64]
//!     another identity's open + echo and transfer while one identity
//!     stalls many streams, through the relay and on direct paths
//! relay-hostile scale --bins DIR [--agents 10000] [--clients 10000] [--idle-seconds 30]
//!     one relay holding N idle agents and M idle clients: RSS per peer,
//!     idle CPU, registration times, a client's round trip among them
//! relay-hostile soak --bins DIR --minutes M --csv FILE
//!     forwards, `connect`s and `run` sessions busy through loss and
//!     partitions; RSS, fds and live streams of relay and agent every 5 s;
//!     fails on growth or on any byte mismatch
//! relay-hostile worker open-reset|idle|junk|initials ...   (a flood, as a child process)
//! ```
//!
//! Every process it starts is its child, killed on drop; every flood is
//! bounded in time and count and aimed at 127.0.0.1 only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::{Rng, RngExt, SeedableRng};
use relay_client::Client;
use relay_net::credential::Credential;
use relay_tests::chaos::ChaosProxy;
use relay_tests::launch::{self, Process, Programs, RelayProcess};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

mod initials;
mod scale;
mod stall;
mod storm;

const POLICY: &str =
    "[[allow]]\nclient = \"*\"\nagent = \"*\"\ntargets = [\"*\"]\nshell = true\nrun = true\n";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("flood") => flood(&Args(args[1..].to_vec())).await,
        Some("soak") => soak(&Args(args[1..].to_vec())).await,
        Some("stall") => stall::stall(&Args(args[1..].to_vec())).await,
        Some("scale") => scale::scale(&Args(args[1..].to_vec())).await,
        Some("worker") if args.get(1).map(String::as_str) == Some("agents") => {
            scale::agents_worker(&Args(args[2..].to_vec())).await
        }
        Some("worker") => worker(&Args(args[1..].to_vec())).await,
        _ => Err(anyhow::anyhow!(
            "usage: relay-hostile flood|stall|soak|scale --bins DIR [options] (see the source's doc)"
        )),
    };
    if let Err(e) = result {
        eprintln!("relay-hostile: {e:#}");
        std::process::exit(1);
    }
}

/// `--name value` arguments.
struct Args(Vec<String>);

impl Args {
    fn get(&self, name: &str) -> Option<&str> {
        let flag = format!("--{name}");
        self.0
            .iter()
            .position(|a| *a == flag)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| anyhow::anyhow!("--{name}: not a number: {v}")),
        }
    }
    fn path(&self, name: &str) -> anyhow::Result<PathBuf> {
        self.get(name)
            .map(PathBuf::from)
            .with_context(|| format!("--{name} is required"))
    }
}

// ---------------------------------------------------------------------------
// A deployment of the real programs

/// `relay-server run --metrics 127.0.0.1:0` with [`POLICY`], as a child
/// process (killed on drop).
async fn start_relay(programs: &Programs) -> anyhow::Result<RelayProcess> {
    RelayProcess::start(programs, POLICY, &["--metrics", "127.0.0.1:0"]).await
}

/// The relay's metrics, as text.
async fn relay_metrics(relay: &RelayProcess) -> anyhow::Result<String> {
    scrape(relay.metrics.context("relay started without --metrics")?).await
}

/// `relay-agent` as a child process (killed on drop), registered. Its log
/// is drained and dropped: a soak runs for minutes.
async fn start_agent(
    programs: &Programs,
    credential: &Path,
    args: &[String],
) -> anyhow::Result<Process> {
    let mut agent = launch::agent(programs, credential, args).await?;
    agent.forget_lines();
    Ok(agent)
}

/// A free loopback TCP port (bound, then released for a child to bind).
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut text))
        .await
        .context("metrics endpoint did not answer")??;
    Ok(text)
}

/// The sum of every sample of metric `name` (all label sets).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        + 0.0 // an empty sum is -0.0
}

/// `(VmRSS, VmHWM)` of a process in KiB.
fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

fn open_fds(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------
// Flood measurement

/// Round trips of 64 bytes on one connection through a forward, in µs, sorted.
async fn ping_pong(fwd: SocketAddr, samples: usize) -> anyhow::Result<Vec<u64>> {
    let mut tcp = TcpStream::connect(fwd).await?;
    tcp.set_nodelay(true)?;
    let ping = [0x5au8; 64];
    let mut pong = [0u8; 64];
    // Warm-up: the stream is opened and the path primed.
    for _ in 0..20 {
        tcp.write_all(&ping).await?;
        tcp.read_exact(&mut pong).await?;
    }
    let mut rtts = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        tcp.write_all(&ping).await?;
        tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut pong))
            .await
            .context("a round trip took over 10 s")??;
        rtts.push(t.elapsed().as_micros() as u64);
        anyhow::ensure!(pong == ping, "echo differs");
    }
    rtts.sort_unstable();
    Ok(rtts)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A flood worker: this program again, as a child process. Returns it, its
/// first line (printed once the flood is under way) and its last line.
async fn spawn_worker(
    kind: &str,
    args: &[String],
) -> anyhow::Result<(Child, String, tokio::task::JoinHandle<String>)> {
    spawn_worker_within(kind, args, Duration::from_secs(60)).await
}

/// [`spawn_worker`], waiting up to `within` for it to be ready.
async fn spawn_worker_within(
    kind: &str,
    args: &[String],
    within: Duration,
) -> anyhow::Result<(Child, String, tokio::task::JoinHandle<String>)> {
    let exe = std::env::current_exe()?;
    // At the lowest priority: a worker stands for other machines (flooders,
    // idle peers), whose CPU is not the relay's or the pinger's.
    let mut child = Command::new("nice")
        .args(["-n", "19"])
        .arg(exe)
        .args(["worker", kind])
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("worker stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(within, lines.next_line())
        .await
        .with_context(|| format!("{kind} worker not ready within {within:?}"))??
        .context("flood worker exited before it was ready")?;
    let summary = tokio::spawn(async move {
        let mut last = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            last = line;
        }
        last
    });
    Ok((child, ready, summary))
}

/// Waits for a worker to end by its own deadline (killing it if it
/// overruns by a minute); returns its summary line.
async fn finish_worker(
    mut child: Child,
    summary: tokio::task::JoinHandle<String>,
) -> anyhow::Result<String> {
    if tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .is_err()
    {
        child.start_kill()?;
    }
    Ok(summary.await.unwrap_or_default())
}

struct Row {
    phase: String,
    p50: u64,
    p99: u64,
    max: u64,
    rss: u64,
    hwm: u64,
    note: String,
}

async fn flood(args: &Args) -> anyhow::Result<()> {
    let programs = Programs::in_dir(&args.path("bins")?);
    let samples: usize = args.num("samples", 3000)?;
    let idle: usize = args.num("idle", 500)?;
    let seconds: u64 = args.num("seconds", 8)?;

    let relay = start_relay(&programs).await?;
    let echo = relay_tests::tcp_echo().await;
    let agent_cred = relay.issue("agent", "edge").await?;
    let _agent = start_agent(&programs, &agent_cred, &[format!("--expose=echo={echo}")]).await?;
    let client_cred = relay.issue("client", "pinger").await?;
    let client = Arc::new(Client::new(Credential::load(&client_cred, None)?));
    let (fwd, _stop) = relay_tests::forward(client.clone(), "edge/echo").await;
    let flooder = relay.issue("client", "flooder").await?;
    let pid = relay.process.pid()?;

    let mut rows = Vec::new();
    let mut record = |phase: &str, rtts: &[u64], note: String| -> anyhow::Result<()> {
        let (rss, hwm) = memory_kib(pid)?;
        rows.push(Row {
            phase: phase.to_owned(),
            p50: percentile(rtts, 0.50),
            p99: percentile(rtts, 0.99),
            max: rtts.last().copied().unwrap_or(0),
            rss,
            hwm,
            note,
        });
        Ok(())
    };

    let (rss0, _) = memory_kib(pid)?;
    let rtts = ping_pong(fwd, samples).await?;
    record("unloaded", &rtts, String::new())?;

    let common = |extra: &[String]| {
        let mut a = vec![
            "--relay".to_owned(),
            relay.addr.to_string(),
            "--credential".to_owned(),
            flooder.display().to_string(),
            "--seconds".to_owned(),
            seconds.to_string(),
        ];
        a.extend_from_slice(extra);
        a
    };

    // 1. Open/reset flood (Rapid Reset): as fast as one client can.
    let before = relay_metrics(&relay).await?;
    let (child, _, summary) = spawn_worker("open-reset", &common(&[])).await?;
    let rtts = ping_pong(fwd, samples).await?;
    let sent = finish_worker(child, summary).await?;
    let after = relay_metrics(&relay).await?;
    let limited = metric_sum(&after, "relay_limit_hits_total")
        - metric_sum(&before, "relay_limit_hits_total");
    let opened =
        metric_sum(&after, "relay_streams_total") - metric_sum(&before, "relay_streams_total");
    record(
        "open/reset flood",
        &rtts,
        format!("flooder: {sent}; relay: {opened} forwarded to the agent, {limited} refused by the open-rate limit"),
    )?;

    // 2. Idle peers: complete the handshake, never send a frame.
    let (rss_before_idle, _) = memory_kib(pid)?;
    let (child, ready, summary) =
        spawn_worker("idle", &common(&["--count".into(), idle.to_string()])).await?;
    let (rss_idle, _) = memory_kib(pid)?;
    let conns = metric_sum(&relay_metrics(&relay).await?, "relay_connections");
    let rtts = ping_pong(fwd, samples).await?;
    let per_conn = (rss_idle.saturating_sub(rss_before_idle)) as f64 / idle.max(1) as f64;
    record(
        &format!("{idle} idle peers"),
        &rtts,
        format!(
            "{ready}; relay sees {conns} connections; ~{per_conn:.1} KiB RSS per idle connection"
        ),
    )?;
    finish_worker(child, summary).await?;

    // 3. Junk UDP, and 4. well-formed Initials that never finish (module
    // `initials`), each at a bounded rate, with the relay's CPU for it.
    for (phase, kind, flag, default) in [
        ("junk UDP", "junk", "junk-pps", 50_000),
        ("QUIC Initials", "initials", "initials-pps", 5_000),
    ] {
        let rate: u64 = args.num(flag, default)?;
        let (cpu, began) = (scale::cpu_seconds(pid)?, Instant::now());
        let (child, _, summary) =
            spawn_worker(kind, &common(&["--pps".into(), rate.to_string()])).await?;
        let rtts = ping_pong(fwd, samples).await?;
        let sent = finish_worker(child, summary).await?;
        let busy = (scale::cpu_seconds(pid)? - cpu) / began.elapsed().as_secs_f64();
        record(
            phase,
            &rtts,
            format!(
                "{sent} in {seconds} s (target {rate}/s); relay CPU {:.0} % of a core",
                busy * 100.0
            ),
        )?;
    }

    println!();
    println!(
        "relay round trips, 64-byte ping-pong through a forward ({samples} samples per phase); \
         relay RSS at start {:.1} MiB",
        mib(rss0)
    );
    println!(
        "| phase | p50 µs | p99 µs | max µs | p99 vs unloaded | relay RSS MiB | relay peak RSS MiB | notes |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let base = rows.first().map(|r| r.p99.max(1)).unwrap_or(1);
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.2}× | {:.1} | {:.1} | {} |",
            r.phase,
            r.p50,
            r.p99,
            r.max,
            r.p99 as f64 / base as f64,
            mib(r.rss),
            mib(r.hwm),
            r.note
        );
    }
    client.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Flood workers (child processes)

async fn worker(args: &Args) -> anyhow::Result<()> {
    let kind = args.0.first().cloned().unwrap_or_default();
    let relay: SocketAddr = args
        .get("relay")
        .context("--relay")?
        .parse()
        .context("--relay")?;
    let seconds: u64 = args.num("seconds", 8)?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let cred = Credential::load(&args.path("credential")?, None)?;
    match kind.as_str() {
        "open-reset" => {
            let client = Client::new(cred);
            let conn = client.connection().await?;
            let open = proto::Frame::from(
                "edge/echo"
                    .parse::<relay_client::AgentTarget>()
                    .map_err(anyhow::Error::msg)?
                    .open(),
            )
            .to_bytes();
            println!("ready");
            let mut n = 0u64;
            while Instant::now() < deadline {
                let Ok(Ok((mut send, mut recv))) =
                    tokio::time::timeout(Duration::from_secs(1), conn.open_bi()).await
                else {
                    continue;
                };
                let _ = send.write_all(&open).await;
                let _ = send.reset(0u32.into());
                let _ = recv.stop(0u32.into());
                n += 1;
            }
            println!("{n} opens+resets in {seconds} s");
            client.close().await;
        }
        "idle" => {
            let count: usize = args.num("count", 500)?;
            let tls = Arc::new(relay_net::tls::client_config(
                &cred.credential.certificate,
                cred.key_pem(),
                &cred.credential.ca,
            )?);
            let endpoint =
                relay_net::endpoint::client(relay, tls, &relay_net::endpoint::Transport::client())?;
            let started = Instant::now();
            let mut conns = Vec::with_capacity(count);
            let mut failed = 0usize;
            for _ in 0..count {
                // A handshake that fails (a busy relay) is counted, not fatal.
                match endpoint.connect(relay, "127.0.0.1")?.await {
                    Ok(conn) => conns.push(conn),
                    Err(_) => failed += 1,
                }
            }
            println!(
                "{} idle peers connected in {:.1} s ({failed} handshakes failed)",
                conns.len(),
                started.elapsed().as_secs_f64()
            );
            #[allow(clippy::disallowed_methods)] // the flood's length: idle until its deadline
            tokio::time::sleep_until(deadline.into()).await; // sleep-ok: the flood's length, idle until its deadline
            drop(conns);
            endpoint.close(0u32.into(), b"done");
        }
        "initials" => {
            let pps: u64 = args.num("pps", 5_000)?;
            let sent = initials::flood(relay, &cred, pps, deadline).await?;
            println!("{sent} Initials");
        }
        "junk" => {
            let pps: u64 = args.num("pps", 50_000)?;
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            let mut payload = vec![0u8; 1200];
            let mut rng = rand::rngs::StdRng::seed_from_u64(1);
            let sent = at_rate(pps, deadline, || {
                rng.fill_bytes(&mut payload);
                payload[0] = 0xc3; // looks like a long-header packet
                socket.try_send_to(&payload, relay).is_ok()
            })
            .await;
            println!("{sent} junk datagrams of 1200 bytes");
        }
        other => bail!("unknown worker {other:?}"),
    }
    Ok(())
}

/// Says "ready", then calls `send` `pps` times a second (in 1 ms batches)
/// until `deadline`; how many times it sent (`send` says whether it did).
async fn at_rate(pps: u64, deadline: Instant, mut send: impl FnMut() -> bool) -> u64 {
    println!("ready");
    let per_ms = (pps / 1000).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    while Instant::now() < deadline {
        tick.tick().await;
        for _ in 0..per_ms {
            sent += u64::from(send());
        }
    }
    sent
}

// ---------------------------------------------------------------------------
// Soak

/// Relay RSS KiB, relay fds, agent RSS KiB, agent fds.
type Sample = (u64, usize, u64, usize);

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errored: AtomicU64,
    mismatched: AtomicU64,
    bytes: AtomicU64,
}

impl Tally {
    fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.errored.load(Ordering::Relaxed),
            self.mismatched.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// Random bytes of a random size in 256 KiB..4 MiB, and their SHA-256.
fn payload(rng: &mut rand::rngs::StdRng) -> (Vec<u8>, Vec<u8>) {
    let mut data = vec![0u8; rng.random_range(256 << 10..4 << 20)];
    rng.fill_bytes(&mut data);
    let hash = Sha256::digest(&data).to_vec();
    (data, hash)
}

/// One forwarded TCP connection to the hashing sink: send, half-close,
/// compare the hash. `Ok(false)` is a mismatch; `Err` an error (allowed).
async fn forward_once(fwd: SocketAddr, data: &[u8], hash: &[u8]) -> anyhow::Result<bool> {
    let mut tcp = TcpStream::connect(fwd).await?;
    let (mut r, mut w) = tcp.split();
    let mut reply = Vec::new();
    let (sent, got) = tokio::join!(
        async {
            w.write_all(data).await?;
            w.shutdown().await
        },
        r.read_to_end(&mut reply)
    );
    sent?;
    got?;
    Ok(reply == hash)
}

/// A `relay-client` process (`connect` or `run`) fed `data` on stdin;
/// `Ok(stdout)` only if it exited successfully.
async fn client_process(
    bin: &Path,
    credential: &Path,
    args: &[&str],
    data: Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    let mut child = Command::new(bin)
        .arg("--credential")
        .arg(credential)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&data).await;
        drop(stdin);
    });
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .context("relay-client ran over 120 s")??;
    let _ = feed.await;
    anyhow::ensure!(out.status.success(), "relay-client: {}", out.status);
    Ok(out.stdout)
}

async fn soak(args: &Args) -> anyhow::Result<()> {
    let programs = Programs::in_dir(&args.path("bins")?);
    let minutes: f64 = args.num("minutes", 10.0)?;
    let csv_path = args.path("csv")?;
    let total = Duration::from_secs_f64(minutes * 60.0);
    let loss: f64 = args.num("loss", 0.02)?;

    let relay = start_relay(&programs).await?;
    let proxy = Arc::new(ChaosProxy::start(relay.addr, 0x50a4).await);
    let sink = relay_tests::hashing_sink().await;
    let agent_cred = relay.issue_via("agent", "edge", proxy.addr).await?;
    let agent_metrics = free_port()?;
    let agent = start_agent(
        &programs,
        &agent_cred,
        &[
            format!("--expose=sink={sink}"),
            "--idle-timeout=3s".into(),
            "--max-backoff=1s".into(),
            "--allow-shell".into(),
            "--shell=/bin/sh".into(),
            format!("--metrics={agent_metrics}"),
        ],
    )
    .await?;
    let agent_pid = agent.pid()?;
    let relay_pid = relay.process.pid()?;
    let client_cred = relay.issue_via("client", "soak", proxy.addr).await?;
    let client = Arc::new(Client::new(Credential::load(&client_cred, None)?));
    let (fwd, stop_fwd) = relay_tests::forward(client.clone(), "edge/sink").await;
    let client_bin = programs.client.clone();

    let forwards = Arc::new(Tally::default());
    let connects = Arc::new(Tally::default());
    let runs = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    let count = |t: &Tally, r: anyhow::Result<bool>, n: usize| match r {
        Ok(true) => {
            t.ok.fetch_add(1, Ordering::Relaxed);
            t.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(false) => {
            t.mismatched.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            t.errored.fetch_add(1, Ordering::Relaxed);
        }
    };
    // Four forwarded connections at a time, in-process client.
    for seed in 0..4u64 {
        let (tally, stop) = (forwards.clone(), stop.clone());
        tasks.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            while !stop.load(Ordering::Relaxed) {
                let (data, hash) = payload(&mut rng);
                count(&tally, forward_once(fwd, &data, &hash).await, data.len());
            }
        });
    }
    // One `relay-client connect` process at a time.
    {
        let (tally, stop) = (connects.clone(), stop.clone());
        let (bin, cred) = (client_bin.clone(), client_cred.clone());
        tasks.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(100);
            while !stop.load(Ordering::Relaxed) {
                let (data, hash) = payload(&mut rng);
                let n = data.len();
                let r = client_process(&bin, &cred, &["connect", "edge/sink"], data)
                    .await
                    .map(|out| out == hash);
                count(&tally, r, n);
            }
        });
    }
    // One `relay-client run edge -- sha256sum` session at a time.
    {
        let (tally, stop) = (runs.clone(), stop.clone());
        let (bin, cred) = (client_bin.clone(), client_cred.clone());
        tasks.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(200);
            while !stop.load(Ordering::Relaxed) {
                let (data, hash) = payload(&mut rng);
                let n = data.len();
                let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
                let r = client_process(&bin, &cred, &["run", "edge", "--", "sha256sum"], data)
                    .await
                    .map(|out| String::from_utf8_lossy(&out).starts_with(&hex));
                count(&tally, r, n);
            }
        });
    }

    // Faults: constant loss; a 2 s partition (shorter than the agent's 3 s
    // idle timeout: connections survive) at 30 s of every minute, and every
    // third minute a 5 s one instead (longer: the agent reconnects, streams
    // in flight end with errors).
    proxy.set_loss(loss);
    let chaos = {
        let proxy = proxy.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut minute = 0u64;
            let mut partitions = Vec::new();
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let at = start + Duration::from_secs(minute * 60 + 30);
                #[allow(clippy::disallowed_methods)] // the fault schedule: 30 s into each minute
                tokio::time::sleep_until(at.into()).await; // sleep-ok: the fault schedule, 30 s into each minute
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let length = if minute % 3 == 1 { 5 } else { 2 };
                proxy.partition(true);
                #[allow(clippy::disallowed_methods)] // the fault itself: a partition this long
                tokio::time::sleep(Duration::from_secs(length)).await; // sleep-ok: the injected partition's length
                proxy.partition(false);
                partitions.push((minute * 60 + 30, length));
                minute += 1;
            }
            partitions
        })
    };

    // Sampling every 5 s.
    let mut csv = String::from(
        "seconds,relay_rss_kib,relay_fds,relay_streams_open,agent_rss_kib,agent_fds,agent_streams_open,\
         forwards_ok,forwards_err,connects_ok,connects_err,runs_ok,runs_err,mismatches,mib_moved\n",
    );
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let sample = || -> anyhow::Result<Sample> {
        Ok((
            memory_kib(relay_pid)?.0,
            open_fds(relay_pid)?,
            memory_kib(agent_pid)?.0,
            open_fds(agent_pid)?,
        ))
    };
    let line = |csv: &mut String, s: Sample, relay_streams: f64, agent_streams: f64| {
        let (f, c, r) = (forwards.snapshot(), connects.snapshot(), runs.snapshot());
        let mismatches = f.2 + c.2 + r.2;
        let moved = (f.3 + c.3 + r.3) as f64 / (1u64 << 20) as f64;
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.0}\n",
            start.elapsed().as_secs(),
            s.0,
            s.1,
            relay_streams,
            s.2,
            s.3,
            agent_streams,
            f.0,
            f.1,
            c.0,
            c.1,
            r.0,
            r.1,
            mismatches,
            moved
        ));
        mismatches
    };
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    while start.elapsed() < total {
        tick.tick().await;
        let s = sample()?;
        let relay_streams = metric_sum(&relay_metrics(&relay).await?, "relay_streams_open");
        let agent_streams = match scrape(agent_metrics).await {
            Ok(text) => metric_sum(&text, "agent_streams_open"),
            Err(_) => f64::NAN,
        };
        let mismatches = line(&mut csv, s, relay_streams, agent_streams);
        samples.push(s);
        std::fs::write(&csv_path, &csv)?;
        if mismatches > 0 {
            bail!("byte mismatch: a transfer ended cleanly with different bytes");
        }
    }

    // Drain: stop the load, heal the path, let every stream finish.
    stop.store(true, Ordering::Relaxed);
    proxy.partition(false);
    proxy.set_loss(0.0);
    let partitions = chaos.await.unwrap_or_default();
    tokio::time::timeout(Duration::from_secs(180), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .context("the load did not stop within 180 s")?;
    stop_fwd.cancel();
    client.close().await;
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let text = relay_metrics(&relay).await?;
            if metric_sum(&text, "relay_streams_open") == 0.0 {
                return anyhow::Ok(());
            }
            // The relay is another process: its metrics endpoint can only be polled.
            #[allow(clippy::disallowed_methods)]
            tokio::time::sleep(Duration::from_millis(200)).await; // sleep-ok: poll interval of another process's /metrics, under a 30 s timeout
        }
    })
    .await;
    let s = sample()?;
    let relay_streams = metric_sum(&relay_metrics(&relay).await?, "relay_streams_open");
    let agent_streams = metric_sum(&scrape(agent_metrics).await?, "agent_streams_open");
    line(&mut csv, s, relay_streams, agent_streams);
    std::fs::write(&csv_path, &csv)?;

    // Verdict.
    let (f, c, r) = (forwards.snapshot(), connects.snapshot(), runs.snapshot());
    let warm = samples.len() / 5;
    let steady = &samples[warm.min(samples.len())..];
    let (first, last) = steady.split_at(steady.len() / 2);
    let avg = |xs: &[Sample], pick: fn(&Sample) -> f64| {
        xs.iter().map(pick).sum::<f64>() / xs.len().max(1) as f64
    };
    let relay_growth = avg(last, |s| s.0 as f64) - avg(first, |s| s.0 as f64);
    let agent_growth = avg(last, |s| s.2 as f64) - avg(first, |s| s.2 as f64);
    let max = |pick: fn(&Sample) -> u64| samples.iter().map(pick).max().unwrap_or(0);
    let min = |pick: fn(&Sample) -> u64| samples.iter().map(pick).min().unwrap_or(0);
    println!(
        "soak: {:.1} min, loss {:.0} %, partitions (s, length) {partitions:?}",
        minutes,
        loss * 100.0
    );
    println!(
        "  forwards: {} ok, {} errors, {} mismatches ({:.0} MiB)",
        f.0,
        f.1,
        f.2,
        f.3 as f64 / 1048576.0
    );
    println!(
        "  connect:  {} ok, {} errors, {} mismatches ({:.0} MiB)",
        c.0,
        c.1,
        c.2,
        c.3 as f64 / 1048576.0
    );
    println!(
        "  run:      {} ok, {} errors, {} mismatches ({:.0} MiB)",
        r.0,
        r.1,
        r.2,
        r.3 as f64 / 1048576.0
    );
    println!(
        "  relay RSS {:.1}..{:.1} MiB (second half minus first half of steady state: {:+.1} MiB), fds {}..{}, after drain {} fds, {} streams open",
        mib(min(|s| s.0)),
        mib(max(|s| s.0)),
        relay_growth / 1024.0,
        min(|s| s.1 as u64),
        max(|s| s.1 as u64),
        s.1,
        relay_streams
    );
    println!(
        "  agent RSS {:.1}..{:.1} MiB (second half minus first half: {:+.1} MiB), fds {}..{}, after drain {} fds, {} streams open",
        mib(min(|s| s.2)),
        mib(max(|s| s.2)),
        agent_growth / 1024.0,
        min(|s| s.3 as u64),
        max(|s| s.3 as u64),
        s.3,
        agent_streams
    );
    println!("  samples every 5 s in {}", csv_path.display());

    let mut failures = Vec::new();
    if f.2 + c.2 + r.2 > 0 {
        failures.push("byte mismatch".to_owned());
    }
    if f.0 == 0 || c.0 == 0 || r.0 == 0 {
        failures.push("a kind of load never completed".to_owned());
    }
    // Growth: more than 16 MiB and 25 % between the halves of steady state.
    for (who, growth, base) in [
        ("relay", relay_growth, avg(first, |s| s.0 as f64)),
        ("agent", agent_growth, avg(first, |s| s.2 as f64)),
    ] {
        if growth > 16.0 * 1024.0 && growth > 0.25 * base {
            failures.push(format!("{who} RSS grew by {:.1} MiB", growth / 1024.0));
        }
    }
    let fd_floor = |pick: fn(&Sample) -> u64| {
        samples
            .iter()
            .take(warm.max(1))
            .map(pick)
            .min()
            .unwrap_or(0)
    };
    if s.1 as u64 > fd_floor(|s| s.1 as u64) + 16 {
        failures.push(format!("relay fds did not come back: {}", s.1));
    }
    if s.3 as u64 > fd_floor(|s| s.3 as u64) + 16 {
        failures.push(format!("agent fds did not come back: {}", s.3));
    }
    if drained.is_err() || relay_streams != 0.0 || agent_streams != 0.0 {
        failures.push(format!(
            "streams left open after the load stopped: relay {relay_streams}, agent {agent_streams}"
        ));
    }
    if failures.is_empty() {
        println!("soak: PASS");
        Ok(())
    } else {
        bail!("soak: FAIL: {}", failures.join("; "))
    }
}
