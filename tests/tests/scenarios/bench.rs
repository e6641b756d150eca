//! `relay-client bench`: the measurements run end to end and their byte
//! counts add up. Sizes are tiny and nothing here asserts a time: speed is
//! measured by `bench/compare.sh`, not by tests.

use std::sync::Arc;

use bytes::Bytes;
use proto::ErrorCode;
use relay_client::bench::{measure, BenchPath, CpuMeter, Measurements, Options, Progress};
use relay_client::cmd::bench::Report;
use relay_client::stream::Answered;
use relay_net::splice::{ChunkRead, ChunkWrite};
use relay_tests::{guard, TestRelay, ALLOW_ALL};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn tiny() -> Options {
    Options {
        streams: 3,
        // Not a multiple of the stream count: the remainder must not get lost.
        bytes: (256 << 10) + 7,
        pings: 20,
        opens: 25,
    }
}

fn check(m: &Measurements, opts: &Options) {
    for bulk in [&m.up_1, &m.up_n, &m.down_1, &m.down_n] {
        assert_eq!(bulk.bytes, opts.bytes, "{m:?}");
        assert!(bulk.gbit_s > 0.0 && bulk.secs > 0.0, "{m:?}");
    }
    assert_eq!(m.up_1.streams, 1);
    assert_eq!(m.up_n.streams, opts.streams);
    assert_eq!(m.ping.count, opts.pings);
    assert!(
        m.ping.p50_us > 0.0 && m.ping.p50_us <= m.ping.p99_us,
        "{m:?}"
    );
    assert_eq!(m.opens.count, opts.opens);
    assert!(m.opens.per_s > 0.0);
}

/// An in-process `relay-agent bench-server` on 127.0.0.1:0.
#[allow(clippy::expect_used)] // helpers outside #[test] fns
async fn bench_server() -> (std::net::SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(relay_agent::bench::serve_tcp(listener, stop.clone()));
    (addr, stop)
}

#[tokio::test]
async fn bench_measures_tunnel_and_direct_and_counts_add_up() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay
        .agent_with("edge", &[], |c| c.allowlist.add_bench().unwrap())
        .await;
    let client = Arc::new(relay.client("ci"));
    let (direct, stop) = bench_server().await;
    let opts = tiny();
    let tunnel = BenchPath::Tunnel {
        client: client.clone(),
        dest: "edge/bench".parse().unwrap(),
    };
    let cpu = CpuMeter::new(&[]);
    let m = guard(
        "tunnel bench",
        measure(&tunnel, "tunnel", &opts, &cpu, &Progress::hidden()),
    )
    .await?;
    check(&m, &opts);
    let d = guard(
        "direct bench",
        measure(
            &BenchPath::Tcp(direct),
            "direct TCP",
            &opts,
            &cpu,
            &Progress::hidden(),
        ),
    )
    .await?;
    check(&d, &opts);

    let report = Report::new("test".into(), opts, m, Some(d));
    let names: Vec<&str> = report.figures.iter().map(|f| f.name).collect();
    for want in [
        "up_1", "up_n", "down_1", "down_n", "ping_p50", "ping_p99", "opens",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    // CPU figures may lack a ratio: a tiny run can cost 0 ticks of CPU.
    assert!(report
        .figures
        .iter()
        .filter(|f| !f.name.starts_with("cpu"))
        .all(|f| f.ratio.is_some()));
    let table = report.table();
    assert!(table.contains("direct TCP") && table.contains("ping-pong 64 B, p50"));
    let json = serde_json::to_value(&report)?;
    assert_eq!(json["measured"]["up_n"]["bytes"], (256 << 10) + 7);

    stop.cancel();
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn bench_target_is_off_by_default_and_refused() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[]).await;
    let client = Arc::new(relay.client("ci"));
    let path = BenchPath::Tunnel {
        client: client.clone(),
        dest: "edge/bench".parse().unwrap(),
    };
    let err = guard(
        "refused bench",
        relay_client::bench::ping_pong(&path, 1, &Progress::hidden(), "t"),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("does not expose target bench"),
        "{err}"
    );
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn open_rate_over_the_relay_limit_says_what_to_do() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start_with(ALLOW_ALL, |c| {
        c.limits.open_rate = 5;
        c.limits.open_burst = 10;
    })
    .await;
    let agent = relay
        .agent_with("edge", &[], |c| c.allowlist.add_bench().unwrap())
        .await;
    let client = Arc::new(relay.client("ci"));
    let path = BenchPath::Tunnel {
        client: client.clone(),
        dest: "edge/bench".parse().unwrap(),
    };
    let err = guard(
        "opens past the limit",
        relay_client::bench::open_rate(
            &path,
            25,
            relay_client::bench::OpenPattern::HalfClose,
            8,
            &Progress::hidden(),
            "t",
        ),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("exceeded its open rate") && text.contains("--opens"),
        "{text}"
    );
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn bench_target_rejects_a_bad_header() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay
        .agent_with("edge", &[], |c| c.allowlist.add_bench().unwrap())
        .await;
    let client = relay.client("ci");
    let dest = relay_tests::dest("edge/bench");
    let (mut send, recv) = client.open_raw(dest.open()).await?;
    // Mode 7 does not exist: the agent resets the stream (protocol
    // violation). The reset may overtake `Accepted`, so the relay may
    // report it as a failed open: either way an error, never a clean end.
    send.write_chunk(Bytes::from_static(b"\x07\0\0\0\0\0\0\0\0"))
        .await?;
    let mut recv = Answered::new(recv);
    let failure = guard("bad header answer", async {
        loop {
            match recv.read_chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("clean end after a bad header"),
                Err(f) => break f,
            }
        }
    })
    .await;
    assert_ne!(failure.code, ErrorCode::NO_ERROR, "{failure:?}");
    ChunkWrite::abort(&mut send, ErrorCode::STREAM_ABORTED);

    // A good header on the same connection still works.
    let path = BenchPath::Tunnel {
        client: Arc::new(client),
        dest,
    };
    let latency = guard(
        "ping after a bad header",
        relay_client::bench::ping_pong(&path, 3, &Progress::hidden(), "t"),
    )
    .await?;
    assert_eq!(latency.count, 3);
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn bench_local_binary_prints_json() -> anyhow::Result<()> {
    let programs = relay_tests::programs!();
    let mut cmd = tokio::process::Command::new(&programs.client);
    cmd.args([
        "bench",
        "--local",
        "--json",
        "--bytes",
        "1MiB",
        "--streams",
        "2",
        "--pings",
        "10",
        // Well past a default relay's burst (twice 2000 per second): `--local`
        // measures the tunnel, not the open-rate limit.
        "--opens",
        "10000",
    ])
    .env("RELAY_SERVER_BIN", &programs.server)
    .env("RELAY_AGENT_BIN", &programs.agent)
    .env_remove("RUST_LOG")
    .kill_on_drop(true);
    let out = guard("relay-client bench --local", cmd.output()).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench --local failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    for path in ["measured", "direct"] {
        for bulk in ["up_1", "up_n", "down_1", "down_n"] {
            assert_eq!(report[path][bulk]["bytes"], 1 << 20, "{path}.{bulk}");
        }
        assert_eq!(report[path]["ping"]["count"], 10);
        assert_eq!(report[path]["opens"]["count"], 10000);
    }
    let figures = report["figures"].as_array().unwrap();
    assert!(figures.len() >= 7, "{figures:?}");
    let procs = report["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 3);
    Ok(())
}

#[tokio::test]
async fn plain_quinn_baseline_measures_and_counts_add_up() -> anyhow::Result<()> {
    relay_tests::trace_init();
    // Only the relay's directory is used (its certificate and CA), as
    // `relay-client bench-quic-server --dir` does; no relay runs on this port.
    let relay = TestRelay::start(ALLOW_ALL).await;
    let paths = relay.paths();
    let tls = relay_net::tls::server_config(
        &std::fs::read_to_string(paths.relay_cert())?,
        &std::fs::read_to_string(paths.relay_key())?,
        &std::fs::read_to_string(paths.ca_cert())?,
    )?;
    let transport = relay_net::endpoint::Transport::relay();
    let endpoint = relay_net::endpoint::server(
        relay_net::endpoint::bind_udp("127.0.0.1:0".parse()?)?,
        tls,
        &transport,
        None,
        None,
    )?
    .endpoint;
    let addr = endpoint.local_addr()?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(relay_client::bench::serve_quic(endpoint, stop.clone()));
    let cred = relay.credential(proto::Role::Client, "ci");
    let conn = relay_net::dial::dial_addr(
        &cred,
        &addr.to_string(),
        &relay_net::endpoint::Transport::client(),
        relay_tests::GUARD,
    )
    .await?;
    let opts = tiny();
    let m = guard(
        "plain quinn bench",
        measure(
            &BenchPath::Quic(conn.conn.clone()),
            "quic",
            &opts,
            &CpuMeter::new(&[]),
            &Progress::hidden(),
        ),
    )
    .await?;
    check(&m, &opts);
    conn.conn.close(0u32.into(), b"done");
    stop.cancel();
    guard("quic server stop", server).await?;
    relay.shutdown().await;
    Ok(())
}
