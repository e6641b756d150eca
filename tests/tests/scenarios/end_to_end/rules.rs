//! What decides whether a stream travels end to end: the relay policy's
//! `direct` field per entry, the client's mode (`--end-to-end` never falls
//! back, `--end-to-end=auto` may and says so), and a `Direct` that tells an
//! unauthorized client nothing about which agents exist.

use std::process::Stdio;

use proto::{Direct, ErrorCode, Frame, Refused, Role};
use relay_client::direct::EndToEnd;
use relay_client::{Client, OpenError};
use relay_net::framed::{write_frame, FrameReader};
use relay_tests::{dest, guard, tcp_echo, TestRelay};

/// Opens `dest` and echoes one byte through it.
async fn echo_one(client: &Client, to: &str) -> anyhow::Result<()> {
    let mut opened = guard("open", client.open(&dest(to))).await?;
    opened.send.write_all(b"x").await?;
    let mut one = [0u8; 1];
    guard("echo", opened.recv.read_exact(&mut one)).await?;
    Ok(())
}

/// The refusal of opening `to`, or a panic naming what happened instead.
async fn refusal(client: &Client, to: &str) -> Refused {
    match guard("open", client.open(&dest(to))).await {
        Err(OpenError::Refused(r)) => r,
        other => panic!("expected a refusal of {to}, got {other:?}"),
    }
}

#[tokio::test]
async fn the_policy_denies_or_requires_end_to_end_per_entry() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let policy = "\
[[allow]]\nclient = \"ci\"\nagent = \"edge\"\ntargets = [\"plain\"]\ndirect = \"deny\"\n\
[[allow]]\nclient = \"ci\"\nagent = \"edge\"\ntargets = [\"secret\"]\ndirect = \"require\"\n\
[[allow]]\nclient = \"ci\"\nagent = \"core\"\ntargets = [\"*\"]\ndirect = \"deny\"\n";
    let relay = TestRelay::start(policy).await;
    let edge = relay
        .agent("edge", &[("plain", echo), ("secret", echo)])
        .await;
    let core = relay.agent("core", &[("echo", echo)]).await;

    // On the relay path: "deny" entries work, "require" ones are refused
    // with what to do.
    let relayed = relay.client("ci");
    echo_one(&relayed, "edge/plain").await?;
    let r = refusal(&relayed, "edge/secret").await;
    assert_eq!(r.code, ErrorCode::UNAUTHORIZED);
    assert!(
        r.message.contains("direct = \"require\"") && r.message.contains("--end-to-end"),
        "{}",
        r.message
    );

    // End to end: the grant holds the "require" entry's target only.
    let direct = relay.client("ci").end_to_end(true);
    echo_one(&direct, "edge/secret").await?;
    let r = refusal(&direct, "edge/plain").await;
    assert_eq!(r.code, ErrorCode::UNAUTHORIZED);
    assert!(r.message.contains("grant"), "{}", r.message);
    // An agent only "deny" entries name: no path, and the relay says why.
    let r = refusal(&direct, "core/echo").await;
    assert_eq!(r.code, ErrorCode::UNAUTHORIZED);
    assert!(
        r.message.contains("direct = \"deny\"") && r.message.contains("--end-to-end"),
        "{}",
        r.message
    );
    let audit = relay.audit_events();
    let paths: Vec<_> = audit.iter().filter(|e| e["event"] == "direct").collect();
    assert_eq!(paths.len(), 1, "{audit:?}");
    assert_eq!(paths[0]["agent"], "edge", "{audit:?}");
    direct.close().await;
    relayed.close().await;
    edge.shutdown().await;
    core.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// The relay's answer to a `Direct` for `agent` on `conn`.
async fn ask_direct(conn: &quinn::Connection, agent: &str) -> anyhow::Result<Frame> {
    let (mut send, recv) = conn.open_bi().await?;
    let ask = Direct {
        agent: agent.parse()?,
        prefix: relay_net::direct::random_prefix(),
    };
    write_frame(&mut send, ask).await?;
    let mut reader = FrameReader::new(recv);
    match guard("answer", reader.read()).await? {
        Some(frame) => Ok(frame),
        None => anyhow::bail!("no answer to Direct for {agent}"),
    }
}

#[tokio::test]
async fn unauthorized_clients_learn_nothing_about_which_agents_exist() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let policy = "[[allow]]\nclient = \"alice\"\nagent = \"edge\"\ntargets = [\"echo\"]\n";
    let relay = TestRelay::start(policy).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let mallory = relay.client("mallory");
    let conn = guard("mallory connects", mallory.connection()).await?;
    // The same refusal for an agent that is online and one that never was,
    // but for the name asked for.
    let mut answers = Vec::new();
    for name in ["edge", "ghost"] {
        match ask_direct(&conn, name).await? {
            Frame::Refused(r) => answers.push((r.code, r.message.replace(name, "NAME"))),
            other => panic!("expected a refusal for {name}, got {other:?}"),
        }
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, ErrorCode::UNAUTHORIZED);
    // Open and List tell nothing either.
    let mut opens = Vec::new();
    for name in ["edge", "ghost"] {
        let r = refusal(&mallory, &format!("{name}/echo")).await;
        opens.push((r.code, r.message.replace(name, "NAME")));
    }
    assert_eq!(opens[0], opens[1]);
    assert!(guard("list", mallory.list()).await?.is_empty());
    mallory.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn strict_end_to_end_never_uses_the_relay_path() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    // Nothing for ci on edge: a client that fell back would send its Open
    // to the relay, which would log a refused tcp stream.
    let policy = "[[allow]]\nclient = \"someone-else\"\nagent = \"edge\"\ntargets = [\"echo\"]\n";
    let relay = TestRelay::start(policy).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let client = relay.client("ci").end_to_end(EndToEnd::Strict);
    for _ in 0..2 {
        let r = refusal(&client, "edge/echo").await;
        assert_eq!(r.code, ErrorCode::UNAUTHORIZED);
    }
    let audit = relay.audit_events();
    let refused: Vec<_> = audit.iter().filter(|e| e["event"] == "refused").collect();
    assert!(!refused.is_empty(), "{audit:?}");
    assert!(
        refused.iter().all(|e| e["kind"] == "direct"),
        "an open went to the relay path: {audit:?}"
    );
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// Runs `relay-client connect edge/echo` with `mode` in RELAY_END_TO_END
/// (or the bare `--end-to-end` flag when `None`) and stdin closed.
async fn connect_with(
    cred: &std::path::Path,
    mode: Option<&str>,
) -> anyhow::Result<std::process::Output> {
    let mut cmd = tokio::process::Command::new(relay_tests::programs!().client);
    cmd.arg("--credential").arg(cred);
    match mode {
        Some(mode) => cmd.env("RELAY_END_TO_END", mode),
        None => cmd.arg("--end-to-end"),
    };
    cmd.args(["connect", "edge/echo"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    Ok(guard("relay-client connect", cmd.output()).await?)
}

#[tokio::test]
async fn the_command_line_fails_without_a_path_unless_auto_is_asked_for() -> anyhow::Result<()> {
    let echo = tcp_echo().await;
    let policy =
        "[[allow]]\nclient = \"ci\"\nagent = \"edge\"\ntargets = [\"echo\"]\ndirect = \"deny\"\n";
    let relay = TestRelay::start(policy).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let cred = relay.issue(Role::Client, "ci");
    for strict in [None, Some("1")] {
        let out = connect_with(&cred, strict).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{strict:?}: {stderr}");
        assert!(
            stderr.contains("direct = \"deny\"") && stderr.contains("--end-to-end=auto"),
            "{strict:?}: {stderr}"
        );
    }
    let out = connect_with(&cred, Some("auto")).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("no end-to-end path").count(),
        1,
        "the fallback is said once: {stderr}"
    );
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}
