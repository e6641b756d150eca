//! `relay-client socks` end to end: a SOCKS5 client speaking to the
//! client's proxy, through a real relay and agent on loopback. Connections
//! the agent's `--allow-socks` rules allow go through; every refusal gives
//! a SOCKS reply code and a `refused` line in the relay's audit log.
//!
//! Tests that name a non-loopback address (the metadata service, a private
//! range) run inside a private network namespace (`unshare -rn`) where
//! such addresses lead nowhere, so even a bug could not send a packet off
//! the machine. (The agent checks before it dials, so it never tries.)

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use proto::socks5::{Greeting, Reply, ReplyCode, Request, NO_AUTH};
use proto::{Destination, Host};
use relay_tests::{audit_in, closed_port, guard, tcp_echo, TestRelay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Any client may use SOCKS through any agent.
const ALLOW_SOCKS: &str = "[[allow]]\nclient = \"*\"\nagent = \"*\"\nsocks = true\n";

/// Starts the client's SOCKS proxy (the `socks` command's logic) for
/// `agent` on 127.0.0.1:0.
async fn proxy(relay: &TestRelay, agent: &str) -> anyhow::Result<(SocketAddr, CancellationToken)> {
    let client = Arc::new(relay.client("alice"));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(relay_client::cmd::socks::run(
        client,
        listener,
        agent.parse()?,
        shutdown.clone(),
    ));
    Ok((addr, shutdown))
}

/// A SOCKS5 CONNECT to `host:port` through `proxy`; returns the reply and
/// the connection.
pub(crate) async fn connect(
    proxy: SocketAddr,
    host: &str,
    port: u16,
) -> anyhow::Result<(Reply, TcpStream)> {
    let mut tcp = TcpStream::connect(proxy).await?;
    tcp.write_all(
        &Greeting {
            methods: vec![NO_AUTH],
        }
        .encode(),
    )
    .await?;
    let mut selection = [0u8; 2];
    tcp.read_exact(&mut selection).await?;
    assert_eq!(selection, [5, NO_AUTH]);
    let dest = Destination {
        host: Host::parse(host)?,
        port,
    };
    tcp.write_all(&Request { dest }.encode()).await?;
    let mut buf = BytesMut::new();
    let reply = guard("socks reply", async {
        loop {
            if let Some((reply, _)) = Reply::decode(&buf)? {
                return Ok::<_, anyhow::Error>(reply);
            }
            anyhow::ensure!(
                tcp.read_buf(&mut buf).await? > 0,
                "proxy closed before replying"
            );
        }
    })
    .await?;
    Ok((reply, tcp))
}

/// Expects the reply `code` for `host:port`.
async fn refused_with(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    code: ReplyCode,
) -> anyhow::Result<()> {
    let (reply, mut tcp) = connect(proxy, host, port).await?;
    assert_eq!(reply.code, code, "CONNECT {host}:{port}");
    // After a refusal the proxy closes the connection.
    let mut rest = Vec::new();
    guard("close after refusal", tcp.read_to_end(&mut rest)).await?;
    assert!(rest.is_empty());
    Ok(())
}

/// The relay's `refused` audit event for `destination`.
fn refusal(events: &[serde_json::Value], destination: &str) -> serde_json::Value {
    events
        .iter()
        .find(|e| e["event"] == "refused" && e["destination"] == destination)
        .cloned()
        .unwrap_or_else(|| panic!("no refused event for {destination}: {events:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks_connects_to_allowed_destinations_by_address_and_by_name() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_SOCKS).await;
    let agent = relay
        .agent_with("edge", &[], |c| {
            // Loopback is refused unless listed explicitly: this rule does.
            c.socks
                .add_rules(&format!("127.0.0.1/32:{p},localhost:{p}", p = echo.port()))
                .expect("rules");
        })
        .await;
    let (proxy, stop) = proxy(&relay, "edge").await?;

    let (reply, mut tcp) = connect(proxy, "127.0.0.1", echo.port()).await?;
    assert_eq!(reply.code, ReplyCode::SUCCEEDED);
    tcp.write_all(b"ping").await?;
    assert_eq!(
        guard("echo", relay_tests::read_n(&mut tcp, 4)).await?,
        b"ping"
    );
    tcp.shutdown().await?;
    let mut rest = Vec::new();
    guard("echo end", tcp.read_to_end(&mut rest)).await?;

    // A name is resolved by the agent (localhost: 127.0.0.1, maybe ::1,
    // which no rule lists and is skipped).
    let (reply, mut tcp) = connect(proxy, "localhost", echo.port()).await?;
    assert_eq!(reply.code, ReplyCode::SUCCEEDED);
    tcp.write_all(b"pong").await?;
    assert_eq!(
        guard("echo", relay_tests::read_n(&mut tcp, 4)).await?,
        b"pong"
    );
    drop(tcp);

    stop.cancel();
    agent.shutdown().await;
    let dir = relay.stop().await;
    let events = audit_in(dir.path());
    let open = events
        .iter()
        .find(|e| e["event"] == "open" && e["kind"] == "socks")
        .ok_or_else(|| anyhow::anyhow!("no socks open: {events:?}"))?;
    assert_eq!(open["destination"], format!("127.0.0.1:{}", echo.port()));
    assert_eq!(open["target"], "socks");
    assert_eq!(open["peer"], "client/alice");
    assert!(events
        .iter()
        .any(|e| e["event"] == "open" && e["destination"] == format!("localhost:{}", echo.port())));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks_refusals_give_socks_codes_and_audit_events() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let closed = closed_port().await;
    let mut relay = TestRelay::start(ALLOW_SOCKS).await;
    let agent = relay
        .agent_with("edge", &[], |c| {
            let p = echo.port();
            let q = closed.port();
            c.socks
                .add_rules(&format!(
                    "127.0.0.1/32:{p},127.0.0.1/32:{q},0.0.0.0/0:{p},kube.internal:{p}"
                ))
                .expect("rules");
            c.socks.add_host("kube.internal=127.0.0.2").expect("host");
        })
        .await;
    let plain = relay.agent("plain", &[("echo", echo)]).await;
    let (proxy_edge, stop_edge) = proxy(&relay, "edge").await?;
    let (proxy_plain, stop_plain) = proxy(&relay, "plain").await?;
    let p = echo.port();

    // No rule covers this port.
    refused_with(proxy_edge, "127.0.0.1", p + 1, ReplyCode::NOT_ALLOWED).await?;
    // Loopback not listed: 0.0.0.0/0 does not count, 127.0.0.3 has no rule of its own.
    refused_with(proxy_edge, "127.0.0.3", p, ReplyCode::NOT_ALLOWED).await?;
    // A name rule whose answer is loopback does not list loopback.
    refused_with(proxy_edge, "kube.internal", p, ReplyCode::NOT_ALLOWED).await?;
    // Allowed, but nothing listens: connection refused.
    refused_with(
        proxy_edge,
        "127.0.0.1",
        closed.port(),
        ReplyCode::CONNECTION_REFUSED,
    )
    .await?;
    // The refusal of a host the caller named does not say what it resolved
    // to (#13 item 7: no DNS oracle); the agent's log keeps the detail.
    let named = relay_client::cmd::socks::open(
        &"edge".parse()?,
        Destination {
            host: Host::parse("kube.internal")?,
            port: p,
        },
    )?;
    match relay.client("alice").open_with(named).await {
        Err(relay_client::OpenError::Refused(r)) => {
            assert_eq!(r.code, proto::ErrorCode::TARGET_NOT_EXPOSED, "{r:?}");
            assert!(!r.message.contains("127.0.0.2"), "{r:?}");
            assert!(!r.message.contains("loopback"), "{r:?}");
            assert!(r.message.contains("kube.internal"), "{r:?}");
        }
        Ok(_) => anyhow::bail!("kube.internal resolves to loopback and was allowed"),
        Err(other) => anyhow::bail!("expected a refusal, got {other:?}"),
    }
    // An agent without --allow-socks.
    refused_with(proxy_plain, "127.0.0.1", p, ReplyCode::NOT_ALLOWED).await?;
    // A policy without socks = true (tcp targets allowed).
    relay
        .set_policy("[[allow]]\nclient = \"*\"\nagent = \"*\"\ntargets = [\"*\"]\n")
        .await;
    refused_with(proxy_edge, "127.0.0.1", p - 1, ReplyCode::NOT_ALLOWED).await?;

    stop_edge.cancel();
    stop_plain.cancel();
    agent.shutdown().await;
    plain.shutdown().await;
    let dir = relay.stop().await;
    let events = audit_in(dir.path());
    let e = refusal(&events, &format!("127.0.0.1:{}", p + 1));
    assert_eq!(e["code"], "TARGET_NOT_EXPOSED");
    assert!(
        e["reason"]
            .as_str()
            .unwrap_or("")
            .contains("no --allow-socks rule"),
        "{e}"
    );
    let e = refusal(&events, &format!("127.0.0.3:{p}"));
    assert!(
        e["reason"].as_str().unwrap_or("").contains("loopback"),
        "{e}"
    );
    let e = refusal(&events, &format!("kube.internal:{p}"));
    let reason = e["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("is not allowed by agent edge's SOCKS rules"),
        "{e}"
    );
    assert!(!reason.contains("127.0.0.2"), "{e}");
    let e = refusal(&events, &format!("127.0.0.1:{}", closed.port()));
    assert_eq!(e["code"], "TARGET_REFUSED");
    let e = events
        .iter()
        .find(|e| e["event"] == "refused" && e["agent"] == "plain")
        .ok_or_else(|| anyhow::anyhow!("no refusal from plain: {events:#?}"))?;
    assert_eq!(e["code"], "UNSUPPORTED");
    assert!(
        e["reason"].as_str().unwrap_or("").contains("--allow-socks"),
        "{e}"
    );
    let e = refusal(&events, &format!("127.0.0.1:{}", p - 1));
    assert_eq!(e["code"], "UNAUTHORIZED");
    assert!(
        e["reason"].as_str().unwrap_or("").contains("socks = true"),
        "{e}"
    );
    assert_eq!(e["peer"], "client/alice");
    Ok(())
}

/// The environment variable that tells the re-executed test it runs
/// inside the private network namespace.
const INSIDE: &str = "RELAY_TEST_INSIDE_NETNS";

#[test]
fn metadata_and_private_ranges_are_refused_in_a_private_netns() {
    // `unshare -rn`: a new user and network namespace with only `lo`, so a
    // packet to 169.254.169.254 or 10.0.0.0/8 cannot leave the machine.
    let probe = std::process::Command::new("unshare")
        .args(["-rn", "true"])
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        println!("SKIPPED: `unshare -rn` is not available here, so the netns test cannot run");
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let status = std::process::Command::new("unshare")
        .args(["-rn", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .arg(exe)
        .args(["--exact", &crate::inner_test(module_path!(), "netns_body")])
        .args(["--ignored", "--nocapture"])
        .env(INSIDE, "1")
        .status()
        .expect("run unshare");
    assert!(
        status.success(),
        "the test inside the netns failed: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs only inside the private netns, started by metadata_and_private_ranges_are_refused_in_a_private_netns"]
async fn netns_body() -> anyhow::Result<()> {
    if std::env::var_os(INSIDE).is_none() {
        return Ok(());
    }
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_SOCKS).await;
    let agent = relay
        .agent_with("edge", &[], |c| {
            c.socks
                .add_rules("10.0.0.0/8:5432,169.254.0.0/16:80,metadata.internal:80")
                .expect("rules");
            c.socks
                .add_host("metadata.internal=169.254.169.254")
                .expect("host");
        })
        .await;
    let (proxy, stop) = proxy(&relay, "edge").await?;
    // The metadata address: not even a link-local rule lists it.
    refused_with(proxy, "169.254.169.254", 80, ReplyCode::NOT_ALLOWED).await?;
    refused_with(proxy, "metadata.internal", 80, ReplyCode::NOT_ALLOWED).await?;
    refused_with(proxy, "::ffff:169.254.169.254", 80, ReplyCode::NOT_ALLOWED).await?;
    // Private ranges no rule covers, or not on that port.
    refused_with(proxy, "192.168.1.1", 5432, ReplyCode::NOT_ALLOWED).await?;
    refused_with(proxy, "10.1.2.3", 22, ReplyCode::NOT_ALLOWED).await?;
    refused_with(proxy, "fd00::1", 5432, ReplyCode::NOT_ALLOWED).await?;
    // Allowed by its rule: dialled in the empty netns, unreachable.
    refused_with(proxy, "10.1.2.3", 5432, ReplyCode::HOST_UNREACHABLE).await?;
    stop.cancel();
    agent.shutdown().await;
    let dir = relay.stop().await;
    let events = audit_in(dir.path());
    let e = refusal(&events, "169.254.169.254:80");
    assert_eq!(e["code"], "TARGET_NOT_EXPOSED");
    assert!(
        e["reason"].as_str().unwrap_or("").contains("metadata"),
        "{e}"
    );
    // Named by host: refused without saying what it resolved to.
    let e = refusal(&events, "metadata.internal:80");
    let reason = e["reason"].as_str().unwrap_or("");
    assert!(reason.contains("not allowed"), "{e}");
    assert!(!reason.contains("169.254"), "{e}");
    let e = refusal(&events, "192.168.1.1:5432");
    assert!(
        e["reason"]
            .as_str()
            .unwrap_or("")
            .contains("no --allow-socks rule"),
        "{e}"
    );
    let e = refusal(&events, "10.1.2.3:22");
    assert!(
        e["reason"]
            .as_str()
            .unwrap_or("")
            .contains("no --allow-socks rule"),
        "{e}"
    );
    let e = refusal(&events, "[fd00::1]:5432");
    assert!(
        e["reason"]
            .as_str()
            .unwrap_or("")
            .contains("no --allow-socks rule"),
        "{e}"
    );
    let e = refusal(&events, "10.1.2.3:5432");
    assert_eq!(e["code"], "TARGET_UNREACHABLE");
    Ok(())
}
