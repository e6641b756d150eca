//! Faults on the path, with 0 bytes lost and 0 hangs: seeded loss and a
//! partition during a transfer, a partition longer than the idle timeout,
//! a relay restart and an agent death (SIGKILL) mid-transfer. The faults
//! come from an in-process UDP proxy (`relay_tests::chaos`) or a killed
//! process, so everything stays on loopback. The same loss and partition,
//! made by nftables in a private network namespace, are in `netns.rs`.

use std::sync::Arc;
use std::time::Duration;

use proto::Role;
use rand::{Rng, SeedableRng};
use relay_client::Client;
use relay_tests::chaos::ChaosProxy;
use relay_tests::launch;
use relay_tests::{credential_via, dest, guard, hashing_sink, tcp_echo, TestRelay, ALLOW_ALL};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_and_a_partition_during_64_mib_end_byte_exact() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let sink = hashing_sink().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("sink", sink)]).await;
    let proxy = Arc::new(ChaosProxy::start(relay.addr, 0x5eed).await);
    let client = Arc::new(Client::new(credential_via(
        &relay,
        Role::Client,
        "ci",
        proxy.addr,
    )));
    let (fwd, _stop) = relay_tests::forward(client, "edge/sink").await;

    let mut data = vec![0u8; 64 << 20];
    rand::rngs::StdRng::seed_from_u64(7).fill_bytes(&mut data);
    let expected = Sha256::digest(&data);
    let mut tcp = TcpStream::connect(fwd).await?;
    proxy.set_loss(0.05);
    let transfer = async {
        let (mut r, mut w) = tcp.split();
        let send = async {
            for (i, chunk) in data.chunks(1 << 20).enumerate() {
                w.write_all(chunk).await?;
                if i == 16 {
                    // A 2 s partition a quarter of the way in.
                    proxy.partition_for(Duration::from_secs(2));
                }
            }
            w.shutdown().await
        };
        let mut reply = Vec::new();
        let (sent, got) = tokio::join!(send, r.read_to_end(&mut reply));
        sent?;
        got?;
        anyhow::Ok(reply)
    };
    let reply = tokio::time::timeout(Duration::from_secs(120), transfer)
        .await
        .map_err(|_| anyhow::anyhow!("64 MiB under loss did not finish in 120 s"))??;
    assert_eq!(
        reply.as_slice(),
        expected.as_slice(),
        "sink saw different bytes"
    );
    let (dropped, passed) = proxy.counts();
    assert!(
        dropped > 0 && passed > 0,
        "the proxy injected loss: dropped {dropped}, passed {passed}"
    );

    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_longer_than_idle_timeout_errors_then_agent_comes_back() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let proxy = ChaosProxy::start(relay.addr, 42).await;
    let via_proxy = credential_via(&relay, Role::Agent, "edge", proxy.addr);
    let mut agent = relay
        .agent_with("edge", &[("echo", echo)], move |c| {
            c.credential = via_proxy;
            c.transport.idle_timeout = Duration::from_millis(1500);
            c.transport.keep_alive = Some(Duration::from_millis(300));
            c.connect_timeout = Duration::from_millis(500);
        })
        .await;
    let client = relay.client("ci");

    // A live stream through the agent.
    let mut live = client.open(&dest("edge/echo")).await?;
    live.send.write_all(b"before").await?;
    let mut buf = [0u8; 6];
    guard("echo before the partition", live.recv.read_exact(&mut buf)).await?;

    // Cut the agent off for longer than its idle timeout.
    proxy.partition(true);
    relay.wait_instances("edge", 0).await;
    // The live stream ends with an error, never a clean end of a truncated stream.
    let mut rest = Vec::new();
    let ended = guard(
        "live stream ends",
        AsyncReadExt::read_to_end(&mut live.recv, &mut rest),
    )
    .await;
    assert!(
        ended.is_err(),
        "a stream cut by a partition must end with an error, got {ended:?}"
    );
    // Meanwhile new opens are refused clearly.
    let refused = client
        .open(&dest("edge/echo"))
        .await
        .err()
        .map(|e| e.to_string());
    assert!(
        refused.as_deref().is_some_and(|m| m.contains("offline")),
        "expected an offline refusal, got {refused:?}"
    );

    // Heal: the agent re-registers by itself and streams work again.
    proxy.partition(false);
    agent.wait_registered().await;
    relay.wait_instances("edge", 1).await;
    let mut again = client.open(&dest("edge/echo")).await?;
    again.send.write_all(b"after").await?;
    again.send.finish()?;
    let mut echoed = Vec::new();
    guard(
        "echo after healing",
        AsyncReadExt::read_to_end(&mut again.recv, &mut echoed),
    )
    .await?;
    assert_eq!(echoed, b"after");

    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_restart_mid_transfer_is_an_error_not_a_truncation() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let sink = hashing_sink().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("sink", sink)]).await;
    let client = relay.client("ci");
    let mut opened = client.open(&dest("edge/sink")).await?;
    opened.send.write_all(&[7u8; 1 << 20]).await?;
    // The relay goes away mid-transfer (clean shutdown: grace, then close).
    let addr = relay.addr;
    let dir = relay.stop().await;
    // The client's stream must fail: a finish or more data cannot succeed
    // into a relay that is gone, and the reply never comes as a clean end.
    let mut reply = Vec::new();
    let read = guard(
        "stream after relay stop",
        AsyncReadExt::read_to_end(&mut opened.recv, &mut reply),
    )
    .await;
    assert!(
        read.is_err(),
        "expected an error, got a clean end with {} bytes",
        reply.len()
    );

    // A restarted relay on the same directory serves again.
    let relay = TestRelay::run_in(dir, addr, |_| {}).await;
    relay.wait_instances("edge", 1).await;
    client.open(&dest("edge/sink")).await?;
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_transfer_is_an_error_not_a_truncation() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let sink = hashing_sink().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let cred = relay.issue(Role::Agent, "edge");
    // A real process, so SIGKILL leaves no QUIC close behind: the relay
    // learns of the death from the idle timeout only.
    let args = vec![format!("--expose=sink={sink}"), "--idle-timeout=1s".into()];
    let mut agent = launch::agent(&programs, &cred, &args).await?;
    relay.wait_instances("edge", 1).await;
    let client = Arc::new(relay.client("ci"));
    let (fwd, stop_fwd) = relay_tests::forward(client.clone(), "edge/sink").await;

    let mut data = vec![0u8; 64 << 20];
    rand::rngs::StdRng::seed_from_u64(11).fill_bytes(&mut data);
    let mut tcp = TcpStream::connect(fwd).await?;
    let (mut r, mut w) = tcp.split();
    let mut sent = 0usize;
    let send = async {
        for (i, chunk) in data.chunks(1 << 20).enumerate() {
            if i == 8 {
                // 8 MiB in: the agent dies without a word.
                agent.kill()?;
            }
            if let Err(e) = w.write_all(chunk).await {
                return anyhow::Ok(Some(e));
            }
            sent += chunk.len();
        }
        let _ = w.shutdown().await;
        anyhow::Ok(None)
    };
    let mut reply = Vec::new();
    let (write_failed, read) = guard("transfer through a killed agent", async {
        tokio::join!(send, r.read_to_end(&mut reply))
    })
    .await;
    let write_failed = write_failed?;
    // The RST reaches whichever of our calls runs first (the kernel reports
    // a socket's error once; the other call then sees a plain end), so the
    // error may show on the write or on the read, but it must show.
    assert!(
        write_failed.is_some() || read.is_err(),
        "a transfer cut by a dead agent must end in an error, got a clean end \
         after {sent} bytes sent"
    );
    assert!(
        reply.is_empty(),
        "the sink saw a clean end of a truncated transfer ({sent} bytes sent)"
    );
    assert!(sent < data.len(), "all 64 MiB went into a dead agent");
    drop(tcp);
    let status = agent.wait().await?;
    assert!(!status.success(), "a killed agent cannot exit cleanly");
    relay.wait_instances("edge", 0).await;

    // The same program restarted: the same forward is byte-exact again.
    let _agent = launch::agent(&programs, &cred, &args).await?;
    relay.wait_instances("edge", 1).await;
    let mut tcp = TcpStream::connect(fwd).await?;
    let (mut r, mut w) = tcp.split();
    let part = &data[..8 << 20];
    let mut reply = Vec::new();
    let (sent, got) = guard("transfer after the restart", async {
        tokio::join!(
            async {
                w.write_all(part).await?;
                w.shutdown().await
            },
            r.read_to_end(&mut reply)
        )
    })
    .await;
    sent?;
    got?;
    assert_eq!(reply.as_slice(), Sha256::digest(part).as_slice());

    stop_fwd.cancel();
    client.close().await;
    relay.shutdown().await;
    Ok(())
}
