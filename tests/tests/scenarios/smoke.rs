//! The shortest path through everything: one stream, a few bytes, clean shutdown.

use relay_tests::{guard, read_n, tcp_echo, TestRelay, ALLOW_ALL};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn tcp_stream_round_trips_through_agent() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let client = std::sync::Arc::new(relay.client("ci"));
    let (fwd, _stop) = relay_tests::forward(client, "edge/echo").await;
    let mut s = relay_tests::connect(fwd).await;
    s.write_all(b"ping").await?;
    assert_eq!(guard("echo", read_n(&mut s, 4)).await?, b"ping");
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}
