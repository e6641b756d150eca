//! A relay that crashes (SIGKILL: no CONNECTION_CLOSE, no GoAway) and comes
//! back on the same address: thanks to the stateless-reset key it keeps in
//! its directory, agents learn at once that their connection is gone and
//! re-register, instead of waiting out their idle timeout.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use relay_agent::allowlist::Allowlist;
use relay_net::credential::Credential;
use relay_tests::{guard, tcp_echo, ALLOW_ALL};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts `relay-server run` on `listen` and returns it with its address.
async fn relay_process(
    bin: &std::path::Path,
    dir: &std::path::Path,
    listen: &str,
) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(bin)
        .args(["run", "--listen", listen, "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = guard("relay listening", async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("relay-server listening on ") {
                return anyhow::Ok(addr.to_owned());
            }
        }
        anyhow::bail!("relay-server exited before listening")
    })
    .await?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_learns_of_a_relay_crash_by_stateless_reset() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let bins = relay_tests::bins!();
    let dir = tempfile::tempdir()?;
    let status = Command::new(&bins.server)
        .args(["init", "--name", "127.0.0.1", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "init failed");
    std::fs::write(dir.path().join("policy.toml"), ALLOW_ALL)?;
    let (mut relay, addr) = relay_process(&bins.server, dir.path(), "127.0.0.1:0").await?;
    assert!(
        dir.path().join("reset.key").exists(),
        "run keeps a stateless-reset key"
    );

    let cred_path = dir.path().join("edge.cred");
    let status = Command::new(&bins.server)
        .args(["issue", "agent", "edge", "--relay", &addr, "--out"])
        .arg(&cred_path)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "issue failed");
    let mut allowlist = Allowlist::default();
    allowlist
        .add("echo", &tcp_echo().await.to_string())
        .map_err(anyhow::Error::msg)?;
    let mut config = relay_agent::Config::new(Credential::load(&cred_path, None)?, allowlist);
    // An idle timeout far beyond the hang guard: only a stateless reset can
    // tell the agent in time that the relay lost its connection.
    config.transport.idle_timeout = Duration::from_secs(120);
    config.transport.keep_alive = Some(Duration::from_millis(300));
    config.backoff.initial = Duration::from_millis(50);
    config.backoff.max = Duration::from_millis(200);
    let agent = relay_agent::Agent::new(config);
    let mut registered = agent.registered();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(agent.run(shutdown.clone()));
    guard("first registration", registered.wait_for(|n| *n == 1)).await?;

    // Crash: no close, no GoAway. Then the same relay comes back.
    relay.start_kill()?;
    relay.wait().await?;
    let (mut relay, _) = relay_process(&bins.server, dir.path(), &addr).await?;
    guard("agent notices the crash", registered.wait_for(|n| *n == 0)).await?;
    guard("agent re-registers", registered.wait_for(|n| *n == 1)).await?;

    shutdown.cancel();
    guard("agent stops", task).await?;
    relay.start_kill()?;
    relay.wait().await?;
    Ok(())
}
