//! Lifecycle: peers that die, restart, get revoked or get a new policy, and
//! programs that are told to stop. Real QUIC on loopback; real processes
//! where a peer must die without a clean QUIC close (SIGKILL) or must
//! handle a signal (SIGTERM).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use proto::{ErrorCode, Role};
use relay_client::OpenError;
use relay_tests::launch::{self, Process, RelayProcess};
use relay_tests::{audit_in, dest, guard, read_n, tcp_echo, TestRelay, ALLOW_ALL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A payload that is not all one byte, so a reordering or a loss shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Writes `payload` and reads it back (concurrently, so a large payload
/// cannot deadlock on full windows); checks the echo is byte-exact.
async fn echo_check(s: &mut TcpStream, payload: &[u8]) -> anyhow::Result<()> {
    let (mut r, mut w) = s.split();
    let (written, echoed) = guard("echo", async {
        tokio::join!(w.write_all(payload), read_n(&mut r, payload.len()))
    })
    .await;
    written.context("write to the forward")?;
    let echoed = echoed.context("read the echo")?;
    anyhow::ensure!(echoed == payload, "echo differs from what was sent");
    Ok(())
}

/// A new connection through the forward at `fwd`, echoed byte-exact, then
/// closed cleanly (half-close, EOF back).
async fn echo_through(fwd: SocketAddr, payload: &[u8]) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(fwd)
        .await
        .context("connect to forward")?;
    echo_check(&mut s, payload).await?;
    close_cleanly(s).await
}

/// Half-closes and waits for the echo side's EOF, so no stream is left live.
async fn close_cleanly(mut s: TcpStream) -> anyhow::Result<()> {
    s.shutdown().await.context("half-close")?;
    let mut rest = Vec::new();
    guard("EOF after half-close", s.read_to_end(&mut rest))
        .await
        .context("clean EOF")?;
    anyhow::ensure!(rest.is_empty(), "unexpected bytes after the echo: {rest:?}");
    Ok(())
}

/// A connection through the forward that must fail: reset or closed
/// without a single byte of echo, never a hang.
async fn assert_fails_without_echo(fwd: SocketAddr) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(fwd)
        .await
        .context("the forward is no longer listening")?;
    // The write may already fail if the reset came first; either is fine.
    let _ = s.write_all(b"ping").await;
    let mut buf = [0u8; 16];
    let read = guard("failed forward connection", s.read(&mut buf)).await;
    anyhow::ensure!(
        matches!(read, Ok(0) | Err(_)),
        "expected reset or EOF, got {read:?} ({:?})",
        read.as_ref().map(|n| &buf[..*n])
    );
    Ok(())
}

/// SIGTERM, then the exit status, which must be success.
async fn terminate_cleanly(what: &str, process: Process) -> anyhow::Result<()> {
    let status = process.terminate().await.context(what.to_owned())?;
    anyhow::ensure!(status.success(), "{what}: exit status {status}");
    Ok(())
}

/// The refusal of an open that must be refused.
async fn refusal(client: &relay_client::Client, to: &str) -> anyhow::Result<proto::Refused> {
    match guard("open", client.open(&dest(to))).await {
        Err(OpenError::Refused(r)) => Ok(r),
        Err(e) => anyhow::bail!("open {to}: expected a refusal, got error {e}"),
        Ok(_) => anyhow::bail!("open {to}: expected a refusal, it was accepted"),
    }
}

fn events<'a>(
    audit: &'a [serde_json::Value],
    event: &'a str,
    peer: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    audit
        .iter()
        .filter(move |e| e["event"] == event && e["peer"] == peer)
}

fn agent_args(echo: SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut args = vec![format!("--expose=echo={echo}")];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

#[tokio::test]
async fn agent_killed_and_restarted_same_forward_works_again() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let cred = relay.issue(Role::Agent, "edge");
    let args = agent_args(echo, &["--idle-timeout=1s"]);
    let mut agent = launch::agent(&programs, &cred, &args).await?;
    relay.wait_instances("edge", 1).await;
    let client = Arc::new(relay.client("ci"));
    let (fwd, stop_fwd) = relay_tests::forward(client.clone(), "edge/echo").await;
    echo_through(fwd, &pattern(32 * 1024)).await?;

    // SIGKILL: no QUIC close; the relay must notice through the idle timeout.
    agent.kill()?;
    let status = agent.wait().await?;
    assert!(!status.success(), "a killed agent cannot exit cleanly");
    relay.wait_instances("edge", 0).await;

    // Meanwhile: a clear refusal, never a hang, and the forward stays up.
    let r = refusal(&client, "edge/echo").await?;
    assert_eq!(r.code, ErrorCode::AGENT_OFFLINE, "{r}");
    assert!(r.message.contains("offline"), "{r}");
    assert_fails_without_echo(fwd).await?;
    let offline = relay
        .audit_events()
        .into_iter()
        .filter(|e| e["event"] == "refused" && e["code"] == "AGENT_OFFLINE")
        .count();
    assert_eq!(offline, 2, "one audited AGENT_OFFLINE refusal per open");

    // Same program, same arguments: the same forward and client work again.
    let agent = launch::agent(&programs, &cred, &args).await?;
    relay.wait_instances("edge", 1).await;
    echo_through(fwd, &pattern(32 * 1024 + 7)).await?;

    stop_fwd.cancel();
    client.close().await;
    terminate_cleanly("relay-agent after SIGTERM", agent).await?;
    relay.wait_instances("edge", 0).await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn relay_restarted_agent_reregisters_by_itself() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay
        .agent_with("edge", &[("echo", echo)], |c| {
            c.backoff.initial = Duration::from_millis(50);
            c.backoff.max = Duration::from_millis(200);
        })
        .await;
    let client = Arc::new(relay.client("ci"));
    let (fwd, stop_fwd) = relay_tests::forward(client.clone(), "edge/echo").await;
    echo_through(fwd, b"before the restart").await?;
    stop_fwd.cancel();
    client.close().await;

    let addr = relay.addr;
    let dir = relay.stop().await;
    let audit = audit_in(dir.path());
    assert!(
        events(&audit, "unregister", "agent/edge").any(|e| e["reason"] == "relay shutting down"),
        "the clean shutdown did not GoAway the agent: {audit:?}"
    );

    // Same directory, same port: the agent comes back with no manual step.
    let relay2 = TestRelay::run_in(dir, addr, |_| {}).await;
    assert_eq!(relay2.addr, addr, "the restarted relay is on another port");
    relay2.wait_instances("edge", 1).await;
    let registers = events(&relay2.audit_events(), "register", "agent/edge").count();
    assert_eq!(registers, 2, "expected one registration per relay run");

    let client2 = Arc::new(relay2.client("ci2"));
    let (fwd2, stop_fwd2) = relay_tests::forward(client2.clone(), "edge/echo").await;
    echo_through(fwd2, &pattern(50_000)).await?;

    stop_fwd2.cancel();
    client2.close().await;
    agent.shutdown().await;
    relay2.wait_instances("edge", 0).await;
    relay2.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn relay_restarted_agent_process_reregisters_by_itself() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let cred = relay.issue(Role::Agent, "edge");
    let agent = launch::agent(&programs, &cred, &agent_args(echo, &[])).await?;
    relay.wait_instances("edge", 1).await;

    let addr = relay.addr;
    let dir = relay.stop().await;
    let relay2 = TestRelay::run_in(dir, addr, |_| {}).await;
    assert_eq!(relay2.addr, addr, "the restarted relay is on another port");
    relay2.wait_instances("edge", 1).await;

    let client = Arc::new(relay2.client("ci"));
    let (fwd, stop_fwd) = relay_tests::forward(client.clone(), "edge/echo").await;
    echo_through(fwd, &pattern(50_000)).await?;

    stop_fwd.cancel();
    client.close().await;
    terminate_cleanly("relay-agent after SIGTERM", agent).await?;
    relay2.wait_instances("edge", 0).await;
    relay2.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn relay_shutdown_sends_goaway_to_agents() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let cred = relay.issue(Role::Agent, "edge");
    let mut agent = launch::agent(&programs, &cred, &agent_args(echo, &[])).await?;
    relay.wait_instances("edge", 1).await;

    let addr = relay.addr;
    let dir = relay.stop().await;
    // A clean relay shutdown is a GoAway ("come back in 1 s"), not a lost connection.
    let line = agent
        .line_with(&["relay is going away", "lost the relay"])
        .await?;
    let relay2 = TestRelay::run_in(dir, addr, |_| {}).await;
    relay2.wait_instances("edge", 1).await;
    terminate_cleanly("relay-agent after SIGTERM", agent).await?;
    relay2.shutdown().await;
    assert!(
        line.contains("relay is going away"),
        "the agent did not get GoAway: {line}"
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_while_dialling_exits_promptly() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    // A "relay" that never answers: a loopback UDP socket nobody serves.
    let hole = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let (credential, _) = relay_server::cmd::issue::Issue {
        paths: relay.paths(),
        role: Role::Agent,
        name: proto::Name::try_from("edge")?,
        relay: vec![hole.local_addr()?.to_string()],
        ttl: None,
        csr: None,
        groups: Vec::new(),
    }
    .run()?;
    let cred = relay.dir.path().join("agent-edge-unanswered.cred");
    credential.save(&cred)?;
    let mut agent = launch::spawn_agent(&programs, &cred, &agent_args(echo, &[]))?;
    // Two Initial packets: the dial is under way (and, a retransmission
    // later, the signal handler is surely installed).
    let mut buf = [0u8; 2048];
    for _ in 0..2 {
        guard("agent's Initial packet", hole.recv_from(&mut buf)).await?;
    }
    agent.sigterm()?;
    // Far below the 10 s handshake deadline the dial would otherwise run out.
    let exited = tokio::time::timeout(Duration::from_secs(5), agent.wait()).await;
    relay.shutdown().await;
    let status = exited
        .context("relay-agent still dialling 5 s after SIGTERM")?
        .context("wait for relay-agent")?;
    assert!(status.success(), "relay-agent exit status {status}");
    Ok(())
}

#[tokio::test]
async fn revoking_a_live_client_closes_it_and_refuses_new_streams() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let mut relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let alice = Arc::new(relay.client("alice"));
    let bob = Arc::new(relay.client("bob"));
    let (fwd_alice, stop_alice) = relay_tests::forward(alice.clone(), "edge/echo").await;
    let (fwd_bob, stop_bob) = relay_tests::forward(bob.clone(), "edge/echo").await;

    let mut live_alice = relay_tests::connect(fwd_alice).await;
    echo_check(&mut live_alice, b"alice before").await?;
    let mut live_bob = relay_tests::connect(fwd_bob).await;
    echo_check(&mut live_bob, b"bob before").await?;
    let mut open_stream = alice.open(&dest("edge/echo")).await?;

    relay.revoke(Role::Client, "alice").await;

    // A stream that was open fails with the reason's code, not a generic one.
    let failed = guard(
        "open stream ends",
        relay_net::splice::ChunkRead::read_chunk(&mut open_stream.recv),
    )
    .await;
    match failed {
        Err(f) => assert_eq!(f.code, proto::ErrorCode::REVOKED, "{f}"),
        Ok(chunk) => panic!("a revoked client's stream still delivers: {chunk:?}"),
    }

    // Alice's live connection ends: reset or EOF, never a hang.
    let mut buf = [0u8; 16];
    let read = guard("revoked connection ends", live_alice.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "revoked connection still delivers: {read:?}"
    );
    // And she cannot open anything, with a message that says why.
    let err = match guard("open after revocation", alice.open(&dest("edge/echo"))).await {
        Ok(_) => panic!("a revoked client opened a stream"),
        Err(e) => e,
    };
    assert!(
        err.to_string().contains("revoked"),
        "unhelpful error: {err}"
    );
    assert_fails_without_echo(fwd_alice).await?;

    let audit = relay.audit_events();
    assert!(
        events(&audit, "revoked", "client/alice").next().is_some(),
        "no revoked event for client/alice: {audit:?}"
    );
    assert!(
        events(&audit, "revoked", "client/bob").next().is_none(),
        "bob was revoked too: {audit:?}"
    );

    // Bob is unaffected: his live connection and new ones work.
    echo_check(&mut live_bob, b"bob after").await?;
    close_cleanly(live_bob).await?;
    echo_through(fwd_bob, &pattern(20_000)).await?;

    stop_alice.cancel();
    stop_bob.cancel();
    alice.close().await;
    bob.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn policy_reload_applies_without_restart() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let allow_echo = "[[allow]]\nclient = \"alice\"\nagent = \"edge\"\ntargets = [\"echo\"]\n";
    let allow_other = "[[allow]]\nclient = \"alice\"\nagent = \"edge\"\ntargets = [\"other\"]\n";
    let broken = "[[allow]]\nclient = \"alice\"\nagent = \"edge\"\ntargets = [\"echo\"\n";
    let mut relay = TestRelay::start(allow_echo).await;
    let agent = relay
        .agent("edge", &[("echo", echo), ("other", echo)])
        .await;
    let alice = Arc::new(relay.client("alice"));
    let (fwd_echo, stop_echo) = relay_tests::forward(alice.clone(), "edge/echo").await;
    let (fwd_other, stop_other) = relay_tests::forward(alice.clone(), "edge/other").await;

    let mut long_lived = relay_tests::connect(fwd_echo).await;
    echo_check(&mut long_lived, b"first").await?;
    let r = refusal(&alice, "edge/other").await?;
    assert_eq!(r.code, ErrorCode::UNAUTHORIZED, "{r}");

    // New policy: edge/echo is refused from now on, edge/other allowed;
    // the stream opened under the old policy lives on.
    relay.set_policy(allow_other).await;
    let r = refusal(&alice, "edge/echo").await?;
    assert_eq!(r.code, ErrorCode::UNAUTHORIZED, "{r}");
    assert_fails_without_echo(fwd_echo).await?;
    echo_through(fwd_other, b"other is allowed now").await?;
    echo_check(&mut long_lived, b"still open").await?;

    // A policy that does not parse is ignored: the previous one stays.
    relay.set_policy(broken).await;
    let r = refusal(&alice, "edge/echo").await?;
    assert_eq!(r.code, ErrorCode::UNAUTHORIZED, "{r}");
    echo_through(fwd_other, b"other is still allowed").await?;
    echo_check(&mut long_lived, b"still open after the bad file").await?;
    let audit = relay.audit_events();
    let reloads: Vec<_> = audit
        .iter()
        .filter(|e| e["event"] == "policy_reload" || e["event"] == "policy_rejected")
        .collect();
    assert_eq!(reloads.len(), 2, "one audit event per reload: {reloads:?}");
    assert_eq!(reloads[0]["reason"], "1 allow rules", "{reloads:?}");
    assert!(reloads[0].get("code").is_none(), "{reloads:?}");
    let failed = reloads[1];
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("invalid policy") && reason.contains("line"),
        "the reason does not name the parse error: {failed}"
    );
    // An operator's broken file is not a peer's protocol violation.
    assert_eq!(failed["event"], "policy_rejected", "{failed}");
    assert!(failed.get("code").is_none(), "{failed}");

    // Back to allow-all: edge/echo works again.
    relay.set_policy(ALLOW_ALL).await;
    echo_through(fwd_echo, &pattern(10_000)).await?;
    echo_through(fwd_other, b"and other").await?;
    echo_check(&mut long_lived, b"last").await?;
    close_cleanly(long_lived).await?;

    stop_echo.cancel();
    stop_other.cancel();
    alice.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn sigterm_shuts_programs_down_cleanly() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let server = RelayProcess::start(&programs, ALLOW_ALL, &[]).await?;
    let agent_cred = server.issue("agent", "edge").await?;
    let client_cred = server.issue("client", "ci").await?;
    let agent = launch::agent(&programs, &agent_cred, &agent_args(echo, &[])).await?;

    // Everything works end to end before the signals.
    let loaded = relay_net::credential::Credential::load(&client_cred, None)?;
    let client = Arc::new(relay_client::Client::new(loaded));
    let (fwd, stop_fwd) = relay_tests::forward(client.clone(), "edge/echo").await;
    echo_through(fwd, &pattern(20_000)).await?;
    stop_fwd.cancel();
    client.close().await;

    terminate_cleanly("relay-agent after SIGTERM", agent).await?;
    let (status, dir) = server.terminate().await?;
    anyhow::ensure!(
        status.success(),
        "relay-server after SIGTERM: exit status {status}"
    );

    // The relay saw the agent come and go.
    let audit = audit_in(dir.path());
    assert!(
        events(&audit, "register", "agent/edge").next().is_some(),
        "{audit:?}"
    );
    assert!(
        events(&audit, "unregister", "agent/edge").next().is_some(),
        "{audit:?}"
    );
    Ok(())
}

#[tokio::test]
async fn forward_binary_end_to_end() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let cred = relay.issue(Role::Client, "ci");
    let programs = relay_tests::programs!();
    // The default: end to end, which the relay grants once and cannot read.
    let (child, fwd, path) = launch::forward_with(&programs, &cred, &[], "edge/echo").await?;
    assert!(fwd.ip().is_loopback(), "forward not on loopback: {fwd}");
    assert_ne!(fwd.port(), 0, "forward port not reported");
    assert_eq!(path, "end-to-end");
    echo_through(fwd, &pattern(100_000)).await?;
    echo_through(fwd, b"a second connection").await?;
    let audit = relay.audit_events();
    assert_eq!(
        events(&audit, "direct", "client/ci").count(),
        1,
        "{audit:?}"
    );
    assert_eq!(events(&audit, "open", "client/ci").count(), 0, "{audit:?}");
    terminate_cleanly("relay-client forward after SIGTERM", child).await?;

    // The relay path, asked for: the relay audits every connection.
    let off = ["--end-to-end=off"];
    let (child, fwd, path) = launch::forward_with(&programs, &cred, &off, "edge/echo").await?;
    assert_eq!(path, "relay path");
    echo_through(fwd, &pattern(100_000)).await?;
    echo_through(fwd, b"a second connection").await?;
    let opens = events(&relay.audit_events(), "open", "client/ci").count();
    assert_eq!(opens, 2, "one audited open per connection");
    terminate_cleanly("relay-client forward after SIGTERM", child).await?;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_misspelt_runtime_stops_the_program_with_the_choices() -> anyhow::Result<()> {
    let programs = relay_tests::programs!();
    let dir = tempfile::tempdir()?;
    let out = guard(
        "relay-server with RELAY_RUNTIME=muti",
        tokio::process::Command::new(&programs.server)
            .args(["run", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path())
            .env("RELAY_RUNTIME", "muti")
            .kill_on_drop(true)
            .output(),
    )
    .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {stderr}");
    assert!(
        stderr.contains("RELAY_RUNTIME") && stderr.contains("current, multi or auto"),
        "{stderr}"
    );
    Ok(())
}

/// `relay-server run 2>&1 | head -2`, then SIGTERM: the reader of the log
/// is gone, so every log line fails to write. The relay must still shut
/// down (a failed log write used to panic the signal task before it could
/// cancel, and only SIGKILL ended the process).
#[tokio::test]
async fn sigterm_with_a_closed_log_pipe_still_shuts_down() -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let programs = relay_tests::programs!();
    let dir = launch::relay_dir(&programs, ALLOW_ALL).await?;
    let mut relay = tokio::process::Command::new(&programs.server)
        .args(["run", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stderr = relay.stderr.take().context("stderr")?;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    // Read until the relay says it listens, then close our end, as `head` does.
    loop {
        let line = guard("log line", lines.next_line()).await?;
        let line = line.context("relay exited before listening")?;
        if line.contains("relay listening") {
            break;
        }
    }
    drop(lines);
    let pid = relay.id().context("relay pid")?;
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid)?).context("pid 0")?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    let status = guard("relay exits after SIGTERM", relay.wait()).await?;
    assert!(status.success(), "{status}");
    Ok(())
}
