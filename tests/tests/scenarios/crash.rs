//! A relay that crashes (SIGKILL: no CONNECTION_CLOSE, no GoAway) and comes
//! back on the same address: thanks to the stateless-reset key it keeps in
//! its directory, agents learn at once that their connection is gone and
//! re-register, instead of waiting out their idle timeout; and one whose
//! restart cannot reset them is noticed by its silence.

use std::time::Duration;

use relay_agent::allowlist::Allowlist;
use relay_net::credential::Credential;
use relay_tests::launch::RelayProcess;
use relay_tests::{guard, tcp_echo, ALLOW_ALL};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// An agent of `relay` with an idle timeout far beyond the hang guard and
/// keep-alives every 300 ms, registered: only what the test is about can
/// tell it in time that the relay lost its connection. Stops on the token.
async fn registered_agent(
    relay: &RelayProcess,
    tune: impl FnOnce(&mut relay_agent::Config),
) -> anyhow::Result<(
    watch::Receiver<usize>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
)> {
    let cred_path = relay.issue("agent", "edge").await?;
    let mut allowlist = Allowlist::default();
    allowlist
        .add("echo", &tcp_echo().await.to_string())
        .map_err(anyhow::Error::msg)?;
    let mut config = relay_agent::Config::new(Credential::load(&cred_path, None)?, allowlist);
    config.transport.idle_timeout = Duration::from_secs(120);
    config.transport.keep_alive = Some(Duration::from_millis(300));
    tune(&mut config);
    let agent = relay_agent::Agent::new(config);
    let mut registered = agent.registered();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(agent.run(shutdown.clone()));
    guard("first registration", registered.wait_for(|n| *n == 1)).await?;
    Ok((registered, shutdown, task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_learns_of_a_relay_crash_by_stateless_reset() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let relay = RelayProcess::start(&programs, ALLOW_ALL, &[]).await?;
    assert!(
        relay.dir.path().join("reset.key").exists(),
        "run keeps a stateless-reset key"
    );
    let (mut registered, shutdown, task) = registered_agent(&relay, |config| {
        config.backoff.initial = Duration::from_millis(50);
        config.backoff.max = Duration::from_millis(200);
    })
    .await?;

    // Crash: no close, no GoAway. Then the same relay comes back.
    let addr = relay.addr.to_string();
    let dir = relay.crash().await?;
    let relay = RelayProcess::run_in(&programs, dir, &addr, &[]).await?;
    guard("agent notices the crash", registered.wait_for(|n| *n == 0)).await?;
    guard("agent re-registers", registered.wait_for(|n| *n == 1)).await?;

    shutdown.cancel();
    guard("agent stops", task).await?;
    relay.crash().await?;
    Ok(())
}

/// A relay replaced by one that cannot reset the old connections (a fresh
/// stateless-reset key: a new machine at the old address): the agent
/// notices its keep-alives going unanswered and dials anew, long before its
/// idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_dials_anew_when_a_relay_falls_silent() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let relay = RelayProcess::start(&programs, ALLOW_ALL, &[]).await?;
    let (mut registered, shutdown, task) = registered_agent(&relay, |_| {}).await?;

    let addr = relay.addr.to_string();
    let dir = relay.crash().await?;
    std::fs::remove_file(dir.path().join("reset.key"))?;
    let relay = RelayProcess::run_in(&programs, dir, &addr, &[]).await?;
    guard(
        "agent notices the silence",
        registered.wait_for(|n| *n == 0),
    )
    .await?;
    guard("agent re-registers", registered.wait_for(|n| *n == 1)).await?;

    shutdown.cancel();
    guard("agent stops", task).await?;
    relay.crash().await?;
    Ok(())
}
