//! What the agent says, and whether it stops, when it cannot work: a
//! credential of the wrong role is caught at start; a relay that refuses
//! this agent for good (revoked) ends it with what to do, instead of a
//! retry loop; and the log lines of a stream name who asked for what.
//! The real `relay-agent` program against a real relay on loopback.

use std::path::Path;
use std::process::{Output, Stdio};

use anyhow::Context;
use proto::{ErrorCode, Role};
use relay_tests::{closed_port, guard, Destination, TestRelay, ALLOW_ALL};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Runs `relay-agent` with `credential` until it exits on its own.
async fn run_agent_to_exit(credential: &Path) -> anyhow::Result<Output> {
    let bins = relay_tests::programs!();
    let run = Command::new(&bins.agent)
        .arg("--credential")
        .arg(credential)
        .args(["--expose", "echo=127.0.0.1:9"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    Ok(guard("relay-agent exits on its own", run).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_credential_is_caught_at_start() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_ALL).await;
    let client_credential = relay.issue(Role::Client, "ci");

    let out = run_agent_to_exit(&client_credential).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "exit status {}: {stderr}",
        out.status
    );
    assert!(
        stderr.contains(
            "this is a client credential (client/ci); relay-agent needs an agent credential: relay-server issue agent ci"
        ),
        "{stderr}"
    );
    // Caught before any dial: the relay never saw a registration.
    let audit = relay.audit_events();
    assert!(!audit.iter().any(|e| e["event"] == "register"), "{audit:?}");
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_stops_and_says_what_to_do() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let mut relay = TestRelay::start(ALLOW_ALL).await;
    let credential = relay.issue(Role::Agent, "edge");
    relay.revoke(Role::Agent, "edge").await;

    let out = run_agent_to_exit(&credential).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "exit status {}: {stderr}",
        out.status
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "relay-agent: relay {} will not take this agent (",
            relay.addr
        )),
        "{stderr}"
    );
    assert!(last.contains("credential revoked"), "{stderr}");
    assert!(
        last.ends_with(
            "its credential is revoked: issue a new one (relay-server issue agent edge) and restart the agent"
        ),
        "{stderr}"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_run_hands_back_the_relays_code() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let mut relay = TestRelay::start(ALLOW_ALL).await;
    let credential = relay.credential(Role::Agent, "edge");
    relay.revoke(Role::Agent, "edge").await;
    let mut config = relay_agent::Config::new(credential, Default::default());
    config.backoff.initial = std::time::Duration::from_millis(20);
    let agent = relay_agent::Agent::new(config);
    let shutdown = tokio_util::sync::CancellationToken::new();

    let stopped = guard("agent stops on its own", agent.try_run(shutdown)).await;
    match stopped {
        Err(e @ relay_agent::AgentError::Refused { .. }) => {
            assert_eq!(e.code(), Some(ErrorCode::REVOKED), "{e}");
        }
        other => anyhow::bail!("expected a refusal, got {other:?}"),
    }

    // A client credential given to the library is caught before any dial too.
    let config = relay_agent::Config::new(relay.credential(Role::Client, "ci"), Default::default());
    let stopped = relay_agent::Agent::new(config)
        .try_run(tokio_util::sync::CancellationToken::new())
        .await;
    assert!(
        matches!(stopped, Err(relay_agent::AgentError::NotAnAgent { .. })),
        "{stopped:?}"
    );
    relay.shutdown().await;
    Ok(())
}

/// The next line of `lines` that contains `text`.
async fn line_with(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    text: &str,
) -> anyhow::Result<String> {
    guard("relay-agent log line", async {
        while let Some(line) = lines.next_line().await? {
            if line.contains(text) {
                return Ok(line);
            }
        }
        anyhow::bail!("relay-agent exited before logging {text:?}")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streams_log_lines_name_caller_agent_target_and_stream() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let closed = closed_port().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let credential = relay.issue(Role::Agent, "edge");
    let bins = relay_tests::programs!();
    let mut agent = Command::new(&bins.agent)
        .arg("--credential")
        .arg(&credential)
        .arg("--expose")
        .arg(format!("closed={closed}"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn relay-agent")?;
    let mut lines = BufReader::new(agent.stderr.take().context("stderr")?).lines();
    let registered = line_with(&mut lines, "registered with relay").await?;
    assert!(
        registered.contains(&format!("uplink{{relay={}}}", relay.addr)),
        "{registered}"
    );

    // A target that refuses the agent's dial: the agent logs the failure.
    let client = relay.client("ci");
    let dest: Destination = "edge/closed".parse().map_err(anyhow::Error::msg)?;
    let refused = client.open(&dest).await;
    assert!(refused.is_err(), "an open of a closed port succeeded");
    let line = line_with(&mut lines, "dial failed").await?;
    for field in [
        "stream{id=",
        "agent=edge",
        "caller=client/ci",
        "target=closed",
        "kind=tcp",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    agent.start_kill()?;
    agent.wait().await?;
    relay.shutdown().await;
    Ok(())
}

/// `relay-agent --help` ends with examples and the environment it reads,
/// `RUST_LOG` among them, and shows its defaults.
#[tokio::test]
async fn help_shows_examples_environment_and_defaults() -> anyhow::Result<()> {
    let out = guard(
        "relay-agent --help",
        Command::new(relay_tests::programs!().agent)
            .arg("--help")
            .output(),
    )
    .await?;
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["Examples:", "RUST_LOG", "RELAY_RUNTIME", "[default: 10s]"] {
        assert!(help.contains(needle), "no {needle:?} in: {help}");
    }
    Ok(())
}
