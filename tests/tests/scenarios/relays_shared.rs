//! Shared state without hand-syncing: a renewed credential file taken by a
//! running agent (SIGHUP, or its own check) and client (at its next dial),
//! and several relay processes of one relay identity sharing one CA, one
//! policy and one revocation list from one directory.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use proto::Role;
use relay_client::Client;
use relay_net::credential::Credential;
use relay_tests::launch::{self, Process, AGENT_REGISTERED};
use relay_tests::{dest, guard, read_n, tcp_echo, TestRelay, ALLOW_ALL};

/// What the agent logs after a SIGHUP (one of these, always).
const RELOAD_LINES: [&str; 3] = [
    "credential renewed",
    "credential file unchanged",
    "credential not reloaded",
];

fn serial(path: &Path) -> anyhow::Result<String> {
    Ok(Credential::load(path, None)?.cert.serial)
}

/// One byte echoed through `agent/echo` by a fresh in-process client.
async fn echo_once(client: &Client, to: &str) -> anyhow::Result<()> {
    let mut opened = guard("open", client.open(&dest(to)))
        .await
        .with_context(|| format!("open {to}"))?;
    opened.send.write_all(b"x").await?;
    opened.send.finish()?;
    let mut echoed = opened.early.to_vec();
    if echoed.is_empty() {
        echoed = guard("echo", read_n(&mut opened.recv, 1)).await?;
    }
    anyhow::ensure!(echoed == b"x", "echo differs: {echoed:?}");
    Ok(())
}

/// SIGHUP, then the agent's line saying what it made of the file.
async fn reload(agent: &mut Process) -> anyhow::Result<String> {
    agent.sighup()?;
    agent
        .line_with(&RELOAD_LINES)
        .await
        .context("the agent must survive SIGHUP and say what it read")
}

fn agent_args(echo: SocketAddr) -> Vec<String> {
    vec![format!("--expose=echo={echo}")]
}

/// The agent starts with a certificate valid for seconds; the file is
/// renewed and the agent told (SIGHUP). It keeps running, keeps its live
/// registration, and when the relay ends that one at the old certificate's
/// expiry (`CERT_EXPIRED`) it registers again with the new certificate:
/// the relay's audit shows both serials, in that order. Before: SIGHUP
/// killed the agent, and the expired credential stopped it for good.
#[tokio::test]
async fn sighup_takes_a_renewed_credential_and_the_next_registration_uses_it() -> anyhow::Result<()>
{
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let cred = relay.issue_with(Role::Agent, "edge", Some(Duration::from_secs(8)));
    let first = serial(&cred)?;
    let mut agent = launch::agent(&programs, &cred, &agent_args(echo)).await?;
    relay.wait_instances("edge", 1).await;

    // Renewed in place, as `issue --out` or cert-manager writes it.
    anyhow::ensure!(
        relay.issue(Role::Agent, "edge") == cred,
        "not the same file"
    );
    let renewed = serial(&cred)?;
    let line = reload(&mut agent).await?;
    anyhow::ensure!(
        line.contains("credential renewed") && line.contains(&renewed),
        "expected the renewal with serial {renewed}: {line}"
    );

    // The old registration ends with its certificate; the next one is made
    // with the renewed certificate, by the same process.
    agent.line_with(&[AGENT_REGISTERED]).await?;
    relay.wait_instances("edge", 1).await;
    let registered: Vec<String> = relay
        .audit_events()
        .iter()
        .filter(|e| e["event"] == "register" && e["peer"] == "agent/edge")
        .map(|e| e["serial"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        registered,
        [first, renewed.clone()],
        "registrations by serial"
    );
    let client = relay.client("ci");
    echo_once(&client, "edge/echo").await?;

    client.close().await;
    let status = agent.terminate().await?;
    anyhow::ensure!(status.success(), "agent exit status {status}");
    relay.shutdown().await;
    Ok(())
}

/// SIGHUP with nothing new, with a broken file, and with another agent's
/// credential in the file: the agent says which, keeps the certificate it
/// has, and keeps serving.
#[tokio::test]
async fn sighup_with_an_unchanged_or_wrong_file_keeps_the_agent_running() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let cred = relay.issue(Role::Agent, "edge");
    let mut agent = launch::agent(&programs, &cred, &agent_args(echo)).await?;

    let line = reload(&mut agent).await?;
    anyhow::ensure!(line.contains("credential file unchanged"), "{line}");

    std::fs::write(&cred, "not a credential")?;
    let line = reload(&mut agent).await?;
    anyhow::ensure!(
        line.contains("credential not reloaded") && line.contains("is invalid"),
        "{line}"
    );

    std::fs::copy(relay.issue(Role::Agent, "other"), &cred)?;
    let line = reload(&mut agent).await?;
    anyhow::ensure!(line.contains("name is other, not edge"), "{line}");

    let client = relay.client("ci");
    echo_once(&client, "edge/echo").await?;
    relay.wait_instances("edge", 1).await;

    client.close().await;
    let status = agent.terminate().await?;
    anyhow::ensure!(status.success(), "agent exit status {status}");
    relay.shutdown().await;
    Ok(())
}

/// A long-running client (the `Client` that `forward` and `socks` keep)
/// re-dials with its renewed file once the relay ends the connection of
/// the old certificate. Before: the re-dial failed ("expired").
#[tokio::test]
async fn a_client_redials_with_its_renewed_credential() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let cred = relay.issue_with(Role::Client, "ci", Some(Duration::from_secs(3)));
    let client = Client::new(Credential::load(&cred, None)?);
    echo_once(&client, "edge/echo").await?;
    let conn = client.connection().await?;

    anyhow::ensure!(relay.issue(Role::Client, "ci") == cred, "not the same file");
    let renewed = serial(&cred)?;
    guard(
        "the relay ends the old certificate's connection",
        conn.closed(),
    )
    .await;
    echo_once(&client, "edge/echo")
        .await
        .context("the re-dial must use the renewed credential")?;
    assert_eq!(client.credential().cert.serial, renewed);

    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}
