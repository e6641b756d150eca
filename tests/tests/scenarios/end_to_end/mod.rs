//! End-to-end mode: the client's streams travel on its own QUIC connection
//! to the agent, which the relay forwards by connection ID; the relay grants
//! the path, the agent enforces the grant, revocation withdraws it.
//! [`rules`]: what the relay's policy and the client's mode decide about
//! paths; [`prefixes`]: who may route which connection IDs, and how many.

mod prefixes;
mod rules;

use std::sync::Arc;

use proto::{ErrorCode, Role};
use relay_client::direct::NoPath;
use relay_client::OpenError;
use relay_net::answer::AnswerError;
use relay_tests::{dest, guard, read_n, tcp_echo, TestRelay, ALLOW_ALL};
use tokio::io::AsyncWriteExt;

pub(super) fn events(relay: &TestRelay, name: &str) -> usize {
    relay
        .audit_events()
        .iter()
        .filter(|e| e["event"] == name)
        .count()
}

/// A stream to `edge/echo` that has echoed one byte: the path is up.
async fn echoing(client: &relay_client::Client) -> anyhow::Result<relay_client::stream::Opened> {
    let dest = dest("edge/echo");
    let mut opened = guard("open", client.open(&dest)).await?;
    opened.send.write_all(b"x").await?;
    let mut one = [0u8; 1];
    guard("echo", opened.recv.read_exact(&mut one)).await?;
    Ok(opened)
}

#[tokio::test]
async fn streams_take_the_direct_path() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let client = Arc::new(relay.client("ci").end_to_end(true));
    let (fwd, _stop) = relay_tests::forward(client.clone(), "edge/echo").await;
    // Enough to cross many datagrams both ways, in several connections.
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..3 {
        let mut s = relay_tests::connect(fwd).await;
        let (mut r, mut w) = s.split();
        let (sent, echoed) = tokio::join!(
            async {
                w.write_all(&data).await?;
                w.shutdown().await
            },
            guard("echo", read_n(&mut r, data.len()))
        );
        sent?;
        assert!(echoed? == data, "bytes came back changed");
    }
    // One path was granted; the relay saw no stream (it cannot read them).
    assert_eq!(events(&relay, "direct"), 1, "{:?}", relay.audit_events());
    assert_eq!(events(&relay, "open"), 0, "{:?}", relay.audit_events());
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_agent_holds_the_client_to_the_grant() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let policy = "[[allow]]\nclient = \"ci\"\nagent = \"edge\"\ntargets = [\"echo\"]\n";
    let relay = TestRelay::start(policy).await;
    let agent = relay
        .agent("edge", &[("echo", echo), ("secret", echo)])
        .await;
    let client = relay.client("ci").end_to_end(true);
    let allowed = dest("edge/echo");
    let mut opened = guard("open echo", client.open(&allowed)).await?;
    opened.send.write_all(b"hi").await?;
    let mut buf = [0u8; 2];
    guard("echo", opened.recv.read_exact(&mut buf)).await?;
    assert_eq!(&buf, b"hi");
    // The client knows the grant (the relay's `Path` says it) and does not
    // send a target outside it...
    let other = dest("edge/secret");
    match guard("open secret", client.open(&other)).await {
        Err(OpenError::NoDirectPath(e)) => assert!(
            matches!(&e.reason, NoPath::OutsideGrant(what) if what == "tcp secret"),
            "{e}"
        ),
        other => panic!("expected no path for edge/secret, got {other:?}"),
    }
    // ...and one that does, on the same direct connection, is refused by
    // the agent itself.
    let path = guard("the path", client.connection_to(&"edge".parse()?)).await?;
    match relay_tests::open_by_hand(&path.conn, "edge/secret").await? {
        Err(AnswerError::Refused(r)) => {
            assert_eq!(r.code, ErrorCode::UNAUTHORIZED);
            assert!(r.message.contains("grant"), "{}", r.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(events(&relay, "direct"), 1);
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn revocation_cuts_the_direct_path() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let mut relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let client = relay.client("ci").end_to_end(true);
    let mut opened = echoing(&client).await?;
    relay.revoke(Role::Client, "ci").await;
    // The relay closes the client's connection; the path's lease ends with
    // it, so the direct connection closes too: the open stream fails.
    let ended = guard("stream end", opened.recv.read_to_end(1 << 20)).await;
    assert!(
        ended.is_err(),
        "the stream outlived the revocation: {ended:?}"
    );
    let dest = dest("edge/echo");
    assert!(guard("reopen", client.open(&dest)).await.is_err());
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_relay_forwards_only_for_the_granted_client() -> anyhow::Result<()> {
    use proto::{Direct, Frame};
    use relay_net::endpoint::Transport;
    use relay_net::framed::{write_frame, FrameReader};

    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let policy = "[[allow]]\nclient = \"alice\"\nagent = \"edge\"\ntargets = [\"echo\"]\n";
    let relay = TestRelay::start(policy).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    // Alice is granted a path; asking by hand shows the agent's prefix.
    let alice = relay.client("alice");
    let conn = guard("alice connects", alice.connection()).await?;
    let (mut send, recv) = conn.open_bi().await?;
    let ask = Direct {
        agent: "edge".parse()?,
        prefix: relay_net::direct::random_prefix(),
    };
    write_frame(&mut send, ask).await?;
    let mut reader = FrameReader::new(recv);
    let agent_prefix = match guard("path", reader.read()).await? {
        Some(Frame::Path(p)) => p.prefix,
        other => panic!("expected Path, got {other:?}"),
    };
    // Mallory, another client of the relay, aims a handshake at that prefix
    // from her own address: the relay does not forward it, so whatever
    // answers is the relay itself, never the agent.
    let cred = relay.credential(Role::Client, "mallory");
    let tls = Arc::new(relay_net::tls::direct_client_config(
        &cred.credential.certificate,
        cred.key_pem(),
        &cred.credential.ca,
    )?);
    let endpoint = relay_net::endpoint::client(relay.addr, tls.clone(), &Transport::client())?;
    let config = relay_net::endpoint::direct_client(tls, &Transport::client(), agent_prefix);
    let answered = guard(
        "mallory's handshake",
        endpoint.connect_with(config, relay.addr, "relay-agent")?,
    )
    .await?;
    let peer = relay_net::cert::PeerCert::of_connection(&answered)?;
    assert_eq!(peer.identity.role, Role::Relay, "{}", peer.identity);
    answered.close(0u32.into(), b"");
    drop(send);
    alice.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn in_auto_mode_without_a_path_the_client_uses_the_relay_path_and_does_not_keep_asking(
) -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    // Nothing for ci on edge: the relay refuses the path, then the open.
    let policy = "[[allow]]\nclient = \"someone-else\"\nagent = \"edge\"\ntargets = [\"echo\"]\n";
    let relay = TestRelay::start(policy).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let client = relay
        .client("ci")
        .end_to_end(relay_client::direct::EndToEnd::Auto);
    let dest = dest("edge/echo");
    for _ in 0..2 {
        match guard("open", client.open(&dest)).await {
            Err(OpenError::Refused(r)) => {
                assert_eq!(r.code, ErrorCode::UNAUTHORIZED);
                assert!(r.message.contains("[[allow]]"), "{}", r.message);
            }
            other => panic!("expected the relay's refusal, got {other:?}"),
        }
    }
    let asked = relay
        .audit_events()
        .iter()
        .filter(|e| e["event"] == "refused" && e["kind"] == "direct")
        .count();
    assert_eq!(asked, 1, "{:?}", relay.audit_events());
    assert_eq!(events(&relay, "refused"), 3, "{:?}", relay.audit_events());
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_demo_runs_end_to_end_across_processes() -> anyhow::Result<()> {
    let programs = relay_tests::programs!();
    let mut cmd = tokio::process::Command::new(&programs.client);
    cmd.args(["--end-to-end", "demo", "--check"])
        .env("RELAY_SERVER_BIN", &programs.server)
        .env("RELAY_AGENT_BIN", &programs.agent)
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    let out = guard("relay-client --end-to-end demo --check", cmd.output()).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    assert!(stdout.contains("The tunnel works"), "{stdout}");
    assert!(stdout.contains("end-to-end"), "{stdout}");
    // The client's own log says the path was direct, not a fallback.
    assert!(stderr.contains("direct path up"), "{stderr}");
    assert!(!stderr.contains("no direct path"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn a_policy_change_withdraws_the_path() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let mut relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let client = relay.client("ci").end_to_end(true);
    let mut opened = echoing(&client).await?;
    // ci loses echo: the grant no longer matches, the relay ends the path
    // and the direct connection goes with it.
    relay
        .set_policy("[[allow]]\nclient = \"ci\"\nagent = \"edge\"\ntargets = [\"other\"]\n")
        .await;
    let ended = guard("stream end", opened.recv.read_to_end(1 << 20)).await;
    assert!(ended.is_err(), "the stream outlived the policy: {ended:?}");
    let closes: Vec<_> = relay
        .audit_events()
        .into_iter()
        .filter(|e| e["event"] == "direct_close")
        .collect();
    assert_eq!(closes.len(), 1, "{:?}", relay.audit_events());
    assert!(
        closes[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("policy changed")),
        "{closes:?}"
    );
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}
