//! One identity's stalled streams do not stall anyone else (issue #13 item 1).
//!
//! A client that opens many streams and never reads them (or targets that
//! never read what a client sends) once filled the connection-wide window of
//! the agent's one relay connection, and every other client's `Open` then
//! timed out. Here a hog stalls 64 streams, each pushed past its window,
//! and a bystander's opens and echoes must still go through; an identity's
//! open streams are capped, and the cap says how to raise it.
//!
//! Figures (open + echo latency and a 64 MiB transfer under the same
//! load) come from `tests/scripts/flood.sh`, not from timed assertions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::ErrorCode;
use relay_client::{Client, OpenError};
use relay_tests::{black_hole, dest, firehose, guard, tcp_echo, TestRelay, ALLOW_ALL};
use tokio::sync::watch;

/// Streams the hog stalls: the figure.
const STALLED: usize = 64;

/// Bytes pushed into stalled streams before the bystander goes: twice the
/// connection window that used to stall everyone (32 MiB).
const PUSHED: u64 = 64 << 20;

/// A chunk of filler data.
const CHUNK: usize = 64 << 10;

/// Opens a stream to `to`, echoes a byte through it, and closes it.
async fn open_and_echo(client: &Client, to: &str) -> anyhow::Result<()> {
    let mut s = client.open(&dest(to)).await?;
    s.send.write_all(b"x").await?;
    let mut back = [0u8; 1];
    s.recv.read_exact(&mut back).await?;
    anyhow::ensure!(&back == b"x", "echo differs: {back:?}");
    s.send.finish()?;
    Ok(())
}

/// A relay whose agents must answer within 3 s, so a stalled agent
/// connection shows as a refusal quickly; an agent `edge` exposing `echo`
/// and `stall` (the target under test).
async fn relay_with(stall: SocketAddr) -> (TestRelay, relay_tests::TestAgent) {
    let echo = tcp_echo().await;
    let relay = TestRelay::start_with(ALLOW_ALL, |c| {
        c.limits.answer_timeout = Duration::from_secs(3);
    })
    .await;
    let agent = relay
        .agent("edge", &[("echo", echo), ("stall", stall)])
        .await;
    (relay, agent)
}

/// The bystander's opens and echoes all succeed while the hog's streams stall.
async fn bystander_gets_through(relay: &TestRelay) -> anyhow::Result<()> {
    let bystander = relay.client("bystander");
    for round in 0..20 {
        guard(
            "bystander's open and echo",
            open_and_echo(&bystander, "edge/echo"),
        )
        .await
        .map_err(|e| anyhow::anyhow!("round {round}: {e}"))?;
    }
    bystander.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_a_client_never_reads_do_not_stall_other_clients() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let (fire, mut written) = firehose().await;
    let (relay, agent) = relay_with(fire).await;

    let hog = relay.client("hog");
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        stalled.push(guard("hog's open", hog.open(&dest("edge/stall"))).await?);
    }
    guard(
        "the firehose pushing into streams no one reads",
        written.wait_for(|w| *w >= PUSHED),
    )
    .await?;

    bystander_gets_through(&relay).await?;

    drop(stalled);
    hog.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_that_never_read_do_not_stall_other_clients() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let hole = black_hole().await;
    let (relay, agent) = relay_with(hole).await;

    let hog = relay.client("hog");
    let (total, mut pushed) = watch::channel(0u64);
    let total = Arc::new(total);
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..STALLED {
        let mut s = guard("hog's open", hog.open(&dest("edge/stall"))).await?;
        let total = total.clone();
        writers.spawn(async move {
            let chunk = bytes::Bytes::from(vec![7u8; CHUNK]);
            while s.send.write_chunk(chunk.clone()).await.is_ok() {
                total.send_modify(|t| *t += CHUNK as u64);
            }
        });
    }
    guard(
        "the hog pushing into targets that never read",
        pushed.wait_for(|p| *p >= PUSHED),
    )
    .await?;

    bystander_gets_through(&relay).await?;

    writers.abort_all();
    hog.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_identity_past_its_stream_cap_is_refused_and_told_how_to_raise_it() -> anyhow::Result<()>
{
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start_with(ALLOW_ALL, |c| c.limits.streams_per_client = 4).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;

    // Two connections of one identity share its cap.
    let first = relay.client("ci");
    let second = relay.client("ci");
    let mut held = Vec::new();
    for client in [&first, &first, &second, &second] {
        held.push(guard("open under the cap", client.open(&dest("edge/echo"))).await?);
    }
    match guard("open past the cap", second.open(&dest("edge/echo"))).await {
        Err(OpenError::Refused(r)) => {
            assert_eq!(r.code, ErrorCode::LIMIT_EXCEEDED, "{r:?}");
            assert!(
                r.message.contains("4 streams open")
                    && r.message.contains("--max-streams-per-client"),
                "{}",
                r.message
            );
        }
        other => anyhow::bail!("expected a refusal past the cap, got {other:?}"),
    }
    // Another identity has its own cap.
    open_and_echo(&relay.client("other"), "edge/echo").await?;

    // A stream that ends gives its slot back.
    let mut done = held
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no stream held"))?;
    done.send.finish()?;
    guard("the echo's end", done.recv.read_to_end(usize::MAX)).await?;
    guard("a slot given back", wait_until_open(&second, "edge/echo")).await?;

    drop(held);
    first.close().await;
    second.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// Opens and echoes once the relay has seen the end of a stream: the slot
/// comes back when the relay's side of the stream ends, a moment after the
/// client's, so a refusal until then is expected and retried.
async fn wait_until_open(client: &Client, to: &str) -> anyhow::Result<()> {
    loop {
        match open_and_echo(client, to).await {
            Ok(()) => return Ok(()),
            Err(e) if e.to_string().contains("--max-streams-per-client") => {
                tokio::task::yield_now().await;
            }
            Err(e) => return Err(e),
        }
    }
}
