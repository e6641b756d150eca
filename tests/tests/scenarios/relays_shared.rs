//! Shared state without hand-syncing: a renewed credential file taken by a
//! running agent (SIGHUP, or its own check) and client (at its next dial),
//! and several relay processes of one relay identity sharing one CA, one
//! policy and one revocation list from one directory.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use proto::{ErrorCode, Role};
use relay_client::{Client, OpenError};
use relay_net::credential::Credential;
use relay_tests::launch::{self, Process, Programs, RelayInstance, AGENT_REGISTERED};
use relay_tests::{dest, guard, read_n, tcp_echo, TestRelay, ALLOW_ALL};

/// What an agent or client logs after a SIGHUP (one of these, always).
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
        .context("the program must survive SIGHUP and say what it read")
}

/// The end of validity of the certificate in `path`, as a Unix time.
fn not_after(path: &Path) -> anyhow::Result<i64> {
    Ok(Credential::load(path, None)?
        .cert
        .not_after
        .unix_timestamp())
}

/// The address in the agent's `metrics on ... addr=HOST:PORT` line.
fn admin_addr(line: &str) -> anyhow::Result<SocketAddr> {
    let addr = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("addr="))
        .with_context(|| format!("no addr= in {line:?}"))?;
    addr.parse()
        .with_context(|| format!("admin address {addr:?}"))
}

/// `agent_certificate_expiry_seconds` from the agent's `/metrics`.
async fn expiry_metric(admin: SocketAddr) -> anyhow::Result<i64> {
    let (status, text) = relay_tests::http_get(admin, "/metrics").await;
    anyhow::ensure!(status == 200, "/metrics: {status}");
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("agent_certificate_expiry_seconds "))
        .with_context(|| format!("no expiry metric in {text}"))?;
    Ok(value.trim().parse()?)
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
    let mut args = agent_args(echo);
    args.push("--metrics=127.0.0.1:0".into());
    let mut agent = launch::spawn_agent(&programs, &cred, &args)?;
    let admin = admin_addr(&agent.line_with(&["metrics on"]).await?)?;
    agent.line_with(&[AGENT_REGISTERED]).await?;
    relay.wait_instances("edge", 1).await;
    assert_eq!(expiry_metric(admin).await?, not_after(&cred)?, "at start");

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
    assert_eq!(registrations(&relay, "edge"), [first, renewed]);
    let client = relay.client("ci");
    echo_once(&client, "edge/echo").await?;
    // Seconds after the renewal: the metric names the new certificate's end.
    assert_eq!(expiry_metric(admin).await?, not_after(&cred)?);

    client.close().await;
    let status = agent.terminate().await?;
    anyhow::ensure!(status.success(), "agent exit status {status}");
    relay.shutdown().await;
    Ok(())
}

/// The serials of `agent/NAME`'s registrations, in the relay's audit order.
fn registrations(relay: &TestRelay, name: &str) -> Vec<String> {
    let peer = format!("agent/{name}");
    relay
        .audit_events()
        .iter()
        .filter(|e| e["event"] == "register" && e["peer"] == peer.as_str())
        .map(|e| e["serial"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// No signal: the file is renewed while the agent runs, and when the relay
/// refuses the old certificate (here: revoked by serial, the relay closes
/// it with `REVOKED`) the agent checks the file before giving up and
/// registers with the renewed one. Before: the refusal stopped the agent.
#[tokio::test]
async fn a_refused_certificate_is_retried_with_the_renewed_file() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let cred = relay.issue(Role::Agent, "edge");
    let first = serial(&cred)?;
    let mut agent = launch::agent(&programs, &cred, &agent_args(echo)).await?;
    anyhow::ensure!(
        relay.issue(Role::Agent, "edge") == cred,
        "not the same file"
    );
    let renewed = serial(&cred)?;

    let mut reloads = relay.reloads();
    reloads.borrow_and_update();
    relay_server::cmd::revoke::revoke(
        &relay.paths(),
        relay_server::cmd::revoke::Target::Serial(first.clone()),
    )?;
    guard("revocation reload", reloads.changed()).await?;
    agent.line_with(&[AGENT_REGISTERED]).await?;
    assert_eq!(registrations(&relay, "edge"), [first, renewed]);
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

/// `relay-client forward` re-reads its credential on SIGHUP (and survives
/// it), then still forwards. Before: SIGHUP ended the forward.
#[tokio::test]
async fn sighup_to_a_forward_rereads_the_credential_and_keeps_forwarding() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let cred = relay.issue(Role::Client, "ci");
    let (mut forward, local) = launch::forward(&programs, &cred, "edge/echo").await?;

    let line = reload(&mut forward).await?;
    anyhow::ensure!(line.contains("credential file unchanged"), "{line}");
    anyhow::ensure!(relay.issue(Role::Client, "ci") == cred, "not the same file");
    let renewed = serial(&cred)?;
    let line = reload(&mut forward).await?;
    anyhow::ensure!(
        line.contains("credential renewed") && line.contains(&renewed),
        "{line}"
    );
    let mut s = tokio::net::TcpStream::connect(local).await?;
    tokio::io::AsyncWriteExt::write_all(&mut s, b"still here").await?;
    let echoed = guard("echo through the forward", read_n(&mut s, 10)).await?;
    anyhow::ensure!(echoed == b"still here", "echo differs: {echoed:?}");

    drop(s);
    let status = forward.terminate().await?;
    anyhow::ensure!(status.success(), "forward exit status {status}");
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// What a relay run with `--audit-log -` prints when it has applied a
/// changed revocation list to a live connection, and a changed policy.
const AUDIT_REVOKED: &str = r#""event":"revoked""#;
const AUDIT_POLICY_RELOAD: &str = r#""event":"policy_reload""#;

/// `relay-server ARGS... --dir DIR`, which must succeed.
async fn server(programs: &Programs, dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(&programs.server)
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "relay-server {args:?}: {status}");
    Ok(())
}

/// A `role/name` credential that dials `relays`, written to a file of its own.
async fn issue(
    programs: &Programs,
    dir: &Path,
    role: &str,
    name: &str,
    relays: &[SocketAddr],
) -> anyhow::Result<std::path::PathBuf> {
    let out = dir.join(format!("{role}-{name}-{}.cred", relays[0].port()));
    let mut args = vec!["issue".to_owned(), role.to_owned(), name.to_owned()];
    for relay in relays {
        args.extend(["--relay".to_owned(), relay.to_string()]);
    }
    args.extend(["--out".to_owned(), out.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    server(programs, dir, &args).await?;
    Ok(out)
}

/// An in-process client of `name` that dials only `relay`.
async fn client_of(
    programs: &Programs,
    dir: &Path,
    name: &str,
    relay: SocketAddr,
) -> anyhow::Result<Client> {
    let cred = issue(programs, dir, "client", name, &[relay]).await?;
    Ok(Client::new(Credential::load(&cred, None)?))
}

/// Three relay processes of one relay identity run from one shared
/// directory (one CA, relay certificate, policy and revocation list), each
/// with its own audit log (standard output) and stateless-reset key. An
/// agent registers with all three. One `relay-server revoke` closes the
/// revoked client's live connection on every relay and refuses it there
/// afterwards, within seconds; one policy edit is applied by every relay
/// likewise. Each wait is on that relay's own audit line.
#[tokio::test]
async fn three_relays_share_one_revocation_list_and_one_policy() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let dir = launch::relay_dir(&programs, ALLOW_ALL).await?;
    let mut relays = Vec::new();
    for n in 0..3 {
        let reset_key = dir.path().join(format!("reset-{n}.key"));
        let reset_key = reset_key.display().to_string();
        let args = ["--audit-log=-", "--reset-key", &reset_key];
        relays.push(RelayInstance::start(&programs, dir.path(), "127.0.0.1:0", &args).await?);
    }
    let addrs: Vec<SocketAddr> = relays.iter().map(|r| r.addr).collect();
    let keys: std::collections::BTreeSet<String> = (0..3)
        .map(|n| std::fs::read_to_string(dir.path().join(format!("reset-{n}.key"))))
        .collect::<Result<_, _>>()?;
    assert_eq!(keys.len(), 3, "each instance keeps a reset key of its own");

    let agent_cred = issue(&programs, dir.path(), "agent", "edge", &addrs).await?;
    let mut agent = launch::spawn_agent(&programs, &agent_cred, &agent_args(echo))?;
    for _ in &addrs {
        agent.line_with(&[AGENT_REGISTERED]).await?;
    }
    let mut alice = Vec::new();
    let mut carol = Vec::new();
    for &addr in &addrs {
        let client = client_of(&programs, dir.path(), "alice", addr).await?;
        echo_once(&client, "edge/echo").await?;
        alice.push(client);
        carol.push(client_of(&programs, dir.path(), "carol", addr).await?);
    }

    // One revocation, in the one shared file.
    let revoked_at = tokio::time::Instant::now();
    server(&programs, dir.path(), &["revoke", "client", "alice"]).await?;
    for (relay, client) in relays.iter_mut().zip(&alice) {
        let line = relay.process.line_with(&[AUDIT_REVOKED]).await?;
        anyhow::ensure!(line.contains("client/alice"), "{line}");
        let took = revoked_at.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{} revoked after {took:?}",
            relay.addr
        );
        eprintln!(
            "{} applied the revocation {took:?} after the write",
            relay.addr
        );
        let err = client
            .open(&dest("edge/echo"))
            .await
            .err()
            .with_context(|| format!("{} still admits the revoked alice", relay.addr))?;
        anyhow::ensure!(err.to_string().contains("revoked"), "{}: {err}", relay.addr);
    }
    for client in &carol {
        echo_once(client, "edge/echo").await?;
    }

    // One policy edit: from now on only bob, on every relay.
    let only_bob = "[[allow]]\nclient = \"bob\"\nagent = \"edge\"\ntargets = [\"echo\"]\n";
    let edited_at = tokio::time::Instant::now();
    relay_net::fsutil::write_public(&dir.path().join("policy.toml"), only_bob.as_bytes())?;
    for (relay, client) in relays.iter_mut().zip(&carol) {
        relay.process.line_with(&[AUDIT_POLICY_RELOAD]).await?;
        let took = edited_at.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{} reloaded after {took:?}",
            relay.addr
        );
        eprintln!("{} applied the policy {took:?} after the write", relay.addr);
        match client.open(&dest("edge/echo")).await {
            Err(OpenError::Refused(r)) => assert_eq!(r.code, ErrorCode::UNAUTHORIZED, "{r}"),
            other => anyhow::bail!("{}: carol not refused: {other:?}", relay.addr),
        }
        let bob = client_of(&programs, dir.path(), "bob", relay.addr).await?;
        echo_once(&bob, "edge/echo").await?;
        bob.close().await;
    }

    for client in alice.iter().chain(&carol) {
        client.close().await;
    }
    let status = agent.terminate().await?;
    anyhow::ensure!(status.success(), "agent exit status {status}");
    for relay in relays {
        let status = relay.process.terminate().await?;
        anyhow::ensure!(status.success(), "relay exit status {status}");
    }
    Ok(())
}

/// A renewed agent credential is also what the agent's end of a new direct
/// path (end-to-end mode) presents: the endpoint that accepts direct
/// connections takes the renewal, not only the next registration. Before,
/// it kept the certificate it started with until it expired.
#[tokio::test]
async fn a_direct_path_after_a_renewal_meets_the_renewed_certificate() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let cred = relay.issue(Role::Agent, "edge");
    let mut agent = launch::spawn_agent(&programs, &cred, &agent_args(echo))?;
    agent.line_with(&[AGENT_REGISTERED]).await?;
    relay.wait_instances("edge", 1).await;
    anyhow::ensure!(
        relay.issue(Role::Agent, "edge") == cred,
        "not the same file"
    );
    let renewed = serial(&cred)?;
    let line = reload(&mut agent).await?;
    anyhow::ensure!(line.contains("credential renewed"), "{line}");

    let client = relay.client("ci").end_to_end(true);
    let edge = proto::AgentName::try_from("edge")?;
    let carrier = guard("a direct path", client.connection_to(&edge)).await?;
    let peer = relay_net::cert::PeerCert::of_connection(&carrier.conn)?;
    assert_eq!(
        peer.serial, renewed,
        "the direct path met the old certificate"
    );
    echo_once(&client, "edge/echo").await?;

    client.close().await;
    let status = agent.terminate().await?;
    anyhow::ensure!(status.success(), "agent exit status {status}");
    relay.shutdown().await;
    Ok(())
}
