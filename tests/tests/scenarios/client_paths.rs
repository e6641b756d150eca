//! End-to-end mode in the client: setting up the direct path to one agent
//! holds up only opens to that agent, never opens to another.

use std::sync::Arc;

use proto::Role;
use relay_client::{AgentTarget, Side};
use relay_tests::chaos::ChaosProxy;
use relay_tests::{credential_via, guard, tcp_echo, TestRelay, ALLOW_ALL};

/// Two agents, `fast` and `slow`, on one relay. `slow` reaches the relay
/// through a [`ChaosProxy`] that is then cut: the relay still counts `slow`
/// as registered (it has not yet missed enough to time it out), so it grants
/// the client's `Direct` request by sending a `Grant` that never arrives,
/// and the client waits out its direct handshake deadline
/// ([`relay_client::direct::HANDSHAKE_TIMEOUT`], 3 s) before it falls back
/// to the relay path. Nothing sleeps: the path to `slow` is slow because its
/// grant is never answered.
///
/// The assertion is on order: while the client is still setting up the path
/// to `slow`, an open to `fast` (direct path set up, stream opened, one byte
/// echoed) completes. Before the per-agent lock, the open to `fast` waited
/// for the whole set-up to `slow` to give up first.
#[tokio::test]
async fn a_slow_direct_path_to_one_agent_does_not_hold_up_another() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let fast = relay.agent("fast", &[("echo", echo)]).await;
    let proxy = ChaosProxy::start(relay.addr, 12).await;
    let slow_credential = credential_via(&relay, Role::Agent, "slow", proxy.addr);
    let slow = relay
        .agent_with("slow", &[("echo", echo)], |c| {
            c.credential = slow_credential
        })
        .await;
    // Auto mode: the failing path settles on the relay path (strict mode
    // would fail it) once the handshake deadline has passed.
    let client = Arc::new(
        relay
            .client("ci")
            .end_to_end(relay_client::direct::EndToEnd::Auto),
    );
    guard("relay connection", client.connection()).await?;
    proxy.partition(true);

    let slow_agent: proto::AgentName = "slow".parse()?;
    let to_slow = client.connection_to(&slow_agent);
    tokio::pin!(to_slow);
    let to_fast = async {
        let dest: AgentTarget = "fast/echo".parse().map_err(anyhow::Error::msg)?;
        let mut opened = client.open(&dest).await?;
        opened.send.write_all(b"x").await?;
        let mut one = [0u8; 1];
        opened.recv.read_exact(&mut one).await?;
        anyhow::Ok(one)
    };
    // `biased`: the set-up to `slow` is polled first, so it has begun (and,
    // before the fix, held the lock of every path) when `fast` is asked.
    let echoed = guard("open to fast", async {
        tokio::select! {
            biased;
            settled = &mut to_slow => panic!(
                "the path to slow was settled ({:?}) before the open to fast completed: \
                 the open to fast waited behind it",
                settled.map(|c| c.peer)
            ),
            echoed = to_fast => echoed,
        }
    })
    .await?;
    assert_eq!(&echoed, b"x");

    // The premise: the path to `slow` really was failing; it ends on the
    // relay path once the handshake deadline has passed.
    let settled = guard("path to slow", to_slow).await?;
    assert_eq!(settled.peer, Side::Relay, "slow got a direct path");

    client.close().await;
    drop(slow);
    fast.shutdown().await;
    relay.shutdown().await;
    Ok(())
}
