//! What decides whether a stream travels end to end: the relay policy's
//! `direct` field per entry, the client's mode (`--end-to-end` never falls
//! back, the default `--end-to-end=auto` may and says so), and a `Direct`
//! that tells an unauthorized client nothing about which agents exist.

use std::process::Stdio;

use proto::{Direct, ErrorCode, Frame, Refused, Role};
use relay_client::direct::{EndToEnd, NoPath};
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
    let relayed = relay.client("ci").end_to_end(EndToEnd::Off);
    echo_one(&relayed, "edge/plain").await?;
    let r = refusal(&relayed, "edge/secret").await;
    assert_eq!(r.code, ErrorCode::UNAUTHORIZED);
    assert!(
        r.message.contains("direct = \"require\"") && r.message.contains("--end-to-end=off"),
        "{}",
        r.message
    );
    // The default (auto) takes each where the policy allows it: "secret"
    // end to end, "plain" on the relay path, which audits that stream.
    let auto = relay.client("ci").end_to_end(EndToEnd::Auto);
    echo_one(&auto, "edge/secret").await?;
    echo_one(&auto, "edge/plain").await?;
    let relayed_opens: Vec<_> = relay
        .audit_events()
        .into_iter()
        .filter(|e| e["event"] == "open")
        .map(|e| e["target"].clone())
        .collect();
    assert_eq!(relayed_opens, ["plain", "plain"], "relay-path opens");

    // End to end: the grant holds the "require" entry's target only, and
    // the path says so; a strict client does not send the rest.
    let direct = relay.client("ci").end_to_end(true);
    echo_one(&direct, "edge/secret").await?;
    match guard("open", direct.open(&dest("edge/plain"))).await {
        Err(OpenError::NoDirectPath(e)) => assert!(
            matches!(&e.reason, NoPath::OutsideGrant(what) if what == "tcp plain"),
            "{e}"
        ),
        other => panic!("expected no path for edge/plain, got {other:?}"),
    }
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
    assert_eq!(paths.len(), 2, "{audit:?}");
    assert!(paths.iter().all(|p| p["agent"] == "edge"), "{audit:?}");
    direct.close().await;
    auto.close().await;
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

/// Runs `relay-client ARGS connect edge/echo` with `env` in
/// RELAY_END_TO_END (if any) and stdin closed.
async fn connect_with(
    cred: &std::path::Path,
    args: &[&str],
    env: Option<&str>,
) -> anyhow::Result<std::process::Output> {
    let mut cmd = tokio::process::Command::new(relay_tests::programs!().client);
    cmd.arg("--credential").arg(cred).args(args);
    match env {
        Some(mode) => cmd.env("RELAY_END_TO_END", mode),
        None => cmd.env_remove("RELAY_END_TO_END"),
    };
    cmd.args(["connect", "edge/echo"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    Ok(guard("relay-client connect", cmd.output()).await?)
}

#[tokio::test]
async fn the_command_line_falls_back_by_default_and_fails_only_when_strict() -> anyhow::Result<()> {
    let echo = tcp_echo().await;
    let policy =
        "[[allow]]\nclient = \"ci\"\nagent = \"edge\"\ntargets = [\"echo\"]\ndirect = \"deny\"\n";
    let relay = TestRelay::start(policy).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let cred = relay.issue(Role::Client, "ci");
    for (args, env) in [(&["--end-to-end"][..], None), (&[][..], Some("1"))] {
        let out = connect_with(&cred, args, env).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains("direct = \"deny\"") && stderr.contains("--end-to-end=auto"),
            "{args:?} {env:?}: {stderr}"
        );
    }
    for (args, env) in [
        (&[][..], None),
        (&["--end-to-end=auto"][..], None),
        (&[][..], Some("auto")),
    ] {
        let out = connect_with(&cred, args, env).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?} {env:?}: {stderr}");
        assert_eq!(
            stderr.matches("no end-to-end path").count(),
            1,
            "the fallback is said once: {stderr}"
        );
    }
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}
