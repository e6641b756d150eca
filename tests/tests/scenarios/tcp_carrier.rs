//! The TCP carrier (issue #15): QUIC over TLS/TCP for networks that block
//! UDP. Every kind of stream over `--transport tcp`, with real processes;
//! then, inside a private network namespace (`unshare -rn`) where nftables
//! may drop UDP, `--transport auto` falling back to TCP within 1.5 s and
//! moving back to QUIC once UDP gets through again, without losing the
//! streams already open.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use proto::socks5::ReplyCode;
use relay_tests::launch::{self, Programs, RelayProcess};
use relay_tests::{guard, http_get, read_n, tcp_echo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::process::Command;

/// Any client may reach any target, open sessions and use SOCKS.
const ALLOW_EVERYTHING: &str = "[[allow]]\nclient = \"*\"\nagent = \"*\"\ntargets = [\"*\"]\nshell = true\nrun = true\nsocks = true\n";

/// `relay-client --credential CRED ARGS...` to completion, stdin from `input`.
async fn client(
    programs: &Programs,
    cred: &Path,
    args: &[&str],
    input: &[u8],
) -> anyhow::Result<std::process::Output> {
    let mut child = Command::new(&programs.client)
        .arg("--credential")
        .arg(cred)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).await?;
    }
    let out = guard("relay-client", child.wait_with_output()).await?;
    anyhow::ensure!(
        out.status.success(),
        "relay-client {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// Waits until the relay's `/metrics` has `line`.
async fn metric(relay: &RelayProcess, line: &str) -> anyhow::Result<()> {
    let admin = relay
        .metrics
        .ok_or_else(|| anyhow::anyhow!("relay without --metrics"))?;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let wait = async {
        loop {
            tick.tick().await;
            let (_, text) = http_get(admin, "/metrics").await;
            if text.contains(line) {
                return;
            }
        }
    };
    guard(&format!("relay metric `{line}`"), wait).await;
    Ok(())
}

/// A SOCKS5 CONNECT to `dest` through `proxy` (the SOCKS tests' client),
/// then 4 bytes echoed.
async fn socks_echo(proxy: SocketAddr, dest: SocketAddr) -> anyhow::Result<()> {
    let (reply, mut tcp) =
        crate::socks::connect(proxy, &dest.ip().to_string(), dest.port()).await?;
    anyhow::ensure!(reply.code == ReplyCode::SUCCEEDED, "socks reply {reply:?}");
    tcp.write_all(b"sock").await?;
    anyhow::ensure!(guard("socks echo", read_n(&mut tcp, 4)).await? == b"sock");
    Ok(())
}

/// Sends `bytes` on `tcp` and reads them back (an echo target behind it).
async fn echoes(tcp: &mut TcpStream, bytes: &[u8]) -> anyhow::Result<()> {
    tcp.write_all(bytes).await?;
    let back = guard("echo", read_n(tcp, bytes.len())).await?;
    anyhow::ensure!(back == bytes, "echo returned other bytes");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_stream_works_over_the_tcp_carrier() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let relay =
        RelayProcess::start(&programs, ALLOW_EVERYTHING, &["--metrics", "127.0.0.1:0"]).await?;
    let agent_cred = relay.issue("agent", "edge").await?;
    let client_cred = relay.issue("client", "ci").await?;
    let agent_args: Vec<String> = [
        "--transport",
        "tcp",
        "--expose",
        &format!("echo={echo}"),
        "--expose-bench",
        "--allow-shell",
        "--shell",
        "/bin/sh",
        "--allow-socks",
        &format!("127.0.0.1/32:{}", echo.port()),
    ]
    .map(str::to_owned)
    .to_vec();
    let _agent = launch::agent(&programs, &agent_cred, &agent_args).await?;
    metric(
        &relay,
        "relay_connections{role=\"agent\",transport=\"tcp\"} 1",
    )
    .await?;
    let tcp = ["--transport", "tcp"];

    // list names the transport.
    let listed = client(
        &programs,
        &client_cred,
        &[&tcp[..], &["list"]].concat(),
        b"",
    )
    .await?;
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("edge") && listed.contains("over tcp"),
        "{listed}"
    );

    // connect: stdin/stdout through a target.
    let connected = client(
        &programs,
        &client_cred,
        &[&tcp[..], &["connect", "edge/echo"]].concat(),
        b"hello over tcp",
    )
    .await?;
    assert_eq!(connected.stdout, b"hello over tcp");

    // run: a remote command and its exit status.
    let ran = client(
        &programs,
        &client_cred,
        &[&tcp[..], &["run", "edge", "--", "echo", "ran-over-tcp"]].concat(),
        b"",
    )
    .await?;
    assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "ran-over-tcp");

    // with: a local program given a forward (bash's /dev/tcp as its client).
    let script =
        r#"exec 3<>/dev/tcp/127.0.0.1/$RELAY_FORWARD_PORT; printf with-ok >&3; head -c 7 <&3"#;
    let with = client(
        &programs,
        &client_cred,
        &[
            &tcp[..],
            &[
                "with",
                "edge/echo",
                "--no-kubeconfig",
                "--",
                "bash",
                "-c",
                script,
            ],
        ]
        .concat(),
        b"",
    )
    .await?;
    assert_eq!(with.stdout, b"with-ok");

    // forward: a local port, two connections at once.
    let (_forward, local) = launch::client(
        &programs,
        &client_cred,
        &[&tcp[..], &["forward", "127.0.0.1:0", "edge/echo"]].concat(),
        launch::CLIENT_FORWARDING,
    )
    .await?;
    let local: SocketAddr = local
        .split_once(" -> ")
        .map(|(l, _)| l)
        .unwrap_or_default()
        .parse()?;
    let mut a = TcpStream::connect(local).await?;
    let mut b = TcpStream::connect(local).await?;
    echoes(&mut a, &[7u8; 300_000]).await?;
    echoes(&mut b, b"second").await?;

    // socks: through the agent's rules.
    let (_socks, rest) = launch::client(
        &programs,
        &client_cred,
        &[&tcp[..], &["socks", "127.0.0.1:0", "edge"]].concat(),
        launch::CLIENT_SOCKS,
    )
    .await?;
    let proxy: SocketAddr = rest.split_whitespace().next().unwrap_or_default().parse()?;
    socks_echo(proxy, echo).await?;

    // bench: the built-in service, briefly.
    let bench = client(
        &programs,
        &client_cred,
        &[
            &tcp[..],
            &[
                "bench",
                "--bytes",
                "4MiB",
                "--pings",
                "50",
                "--opens",
                "20",
                "--no-direct",
            ],
        ]
        .concat(),
        b"",
    )
    .await?;
    assert!(
        String::from_utf8_lossy(&bench.stdout).contains("ping-pong"),
        "{}",
        String::from_utf8_lossy(&bench.stdout)
    );
    metric(
        &relay,
        "relay_connections{role=\"client\",transport=\"tcp\"}",
    )
    .await?;

    // The audit log names the TCP peer, not the carrier's virtual address.
    let opens: Vec<_> = relay
        .audit_events()
        .into_iter()
        .filter(|e| e["event"] == "open")
        .collect();
    assert!(!opens.is_empty());
    for open in &opens {
        let remote = open["remote"].as_str().unwrap_or_default();
        assert!(remote.starts_with("127.0.0.1:"), "{open}");
    }
    Ok(())
}

/// Set in the environment of the re-run test binary inside the namespace.
const INNER: &str = "RELAY_TESTS_INSIDE_CARRIER_NETNS";

/// The relay's address inside the namespace (nothing else runs there).
const RELAY: &str = "127.0.0.1:4433";

/// How often a connection on the carrier tries QUIC again in this test.
const REPROBE: &str = "1s";

#[tokio::test]
async fn udp_blocked_falls_back_to_tcp_then_returns_to_quic() -> anyhow::Result<()> {
    crate::outer_namespace_test(
        module_path!(),
        INNER,
        "-rn",
        &format!("export RELAY_QUIC_REPROBE={REPROBE} && ip link set lo up"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs only inside the namespace the test above creates"]
async fn in_namespace() -> anyhow::Result<()> {
    anyhow::ensure!(
        std::env::var_os(INNER).is_some(),
        "run by the outer test only"
    );
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let dir = launch::relay_dir(&programs, relay_tests::ALLOW_ALL).await?;
    let relay =
        RelayProcess::run_in(&programs, dir, RELAY, &["--metrics", "127.0.0.1:9090"]).await?;
    let agent_cred = relay.issue("agent", "edge").await?;
    let client_cred = relay.issue("client", "ci").await?;

    block_udp().await?;

    let began = Instant::now();
    // Keep-alives every 2 s, so a relay fallen silent is noticed in 4 s.
    let mut agent = launch::spawn_agent(
        &programs,
        &agent_cred,
        &[
            "--expose".to_owned(),
            format!("echo={echo}"),
            "--idle-timeout=4s".to_owned(),
        ],
    )?;
    let registered = agent.line_with(&[launch::AGENT_REGISTERED]).await?;
    let agent_took = began.elapsed();
    assert!(registered.contains("transport=tcp"), "{registered}");

    let began = Instant::now();
    let listed = client(&programs, &client_cred, &["list"], b"").await?;
    let list_took = began.elapsed();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("edge") && listed.contains("over tcp"),
        "{listed}"
    );
    println!("UDP dropped: the agent registered over TCP after {agent_took:?} (process start included); relay-client list took {list_took:?}");
    assert!(agent_took < Duration::from_millis(1500), "{agent_took:?}");
    assert!(list_took < Duration::from_millis(1500), "{list_took:?}");

    let (_forward, local) = launch::client(
        &programs,
        &client_cred,
        &["forward", "127.0.0.1:0", "edge/echo"],
        launch::CLIENT_FORWARDING,
    )
    .await?;
    let local: SocketAddr = local
        .split_once(" -> ")
        .map(|(l, _)| l)
        .unwrap_or_default()
        .parse()?;
    let mut live = TcpStream::connect(local).await?;
    echoes(&mut live, b"before").await?;
    metric(
        &relay,
        "relay_connections{role=\"client\",transport=\"tcp\"} 1",
    )
    .await?;

    // UDP gets through again: both move back to QUIC within the probe
    // interval; the stream already open stays where it is, and works.
    crate::nft(&["delete", "table", "inet", "udp_blocked"]).await?;
    let healed = Instant::now();
    let moved = agent.line_with(&["again over QUIC"]).await?;
    let agent_moved = healed.elapsed();
    assert!(moved.contains("transport=quic"), "{moved}");
    metric(
        &relay,
        "relay_connections{role=\"agent\",transport=\"quic\"} 1",
    )
    .await?;
    // The client moves its new streams once its own probe gets through.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let client_moved = guard("the client moves to QUIC", async {
        loop {
            tick.tick().await;
            let mut fresh = TcpStream::connect(local).await?;
            echoes(&mut fresh, b"fresh").await?;
            let (_, text) = http_get("127.0.0.1:9090".parse()?, "/metrics").await;
            if text.contains("relay_connections{role=\"client\",transport=\"quic\"} 1") {
                return Ok::<_, anyhow::Error>(healed.elapsed());
            }
        }
    })
    .await?;
    echoes(&mut live, b"after the move").await?;
    println!("UDP restored: the agent moved to QUIC after {agent_moved:?}, the client after {client_moved:?} (probe every {REPROBE}); the stream opened over TCP still echoes");
    assert!(agent_moved < Duration::from_secs(5), "{agent_moved:?}");

    // UDP blocked under the agent's QUIC connection: the relay falls
    // silent, and the agent dials both transports again (not only the one
    // it lost), so it is back over TCP soon after its idle timeout.
    block_udp().await?;
    let blocked = Instant::now();
    let back = agent.line_with(&[launch::AGENT_REGISTERED]).await?;
    let agent_back = blocked.elapsed();
    assert!(back.contains("transport=tcp"), "{back}");
    println!(
        "UDP blocked again: the agent was back over TCP after {agent_back:?} (idle timeout 4 s)"
    );
    assert!(agent_back < Duration::from_secs(20), "{agent_back:?}");
    Ok(())
}

/// Drops UDP to the relay's port (4433) in this namespace; TCP still passes.
async fn block_udp() -> anyhow::Result<()> {
    crate::nft(&["add", "table", "inet", "udp_blocked"]).await?;
    crate::nft(&[
        "add",
        "chain",
        "inet",
        "udp_blocked",
        "out",
        "{ type filter hook output priority 0; policy accept; }",
    ])
    .await?;
    crate::nft(&[
        "add",
        "rule",
        "inet",
        "udp_blocked",
        "out",
        "udp",
        "dport",
        "4433",
        "drop",
    ])
    .await?;
    Ok(())
}

/// `relay-client` with `HTTPS_PROXY` set (and nothing in `NO_PROXY`).
pub(crate) async fn client_via_proxy(
    programs: &Programs,
    cred: &Path,
    proxy: &str,
    args: &[&str],
    input: &[u8],
) -> anyhow::Result<std::process::Output> {
    let mut child = Command::new(&programs.client)
        .arg("--credential")
        .arg(cred)
        .args(args)
        .env("HTTPS_PROXY", proxy)
        .env("NO_PROXY", "")
        .env_remove("no_proxy")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).await?;
    }
    Ok(guard("relay-client through the proxy", child.wait_with_output()).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_carrier_goes_through_an_https_proxy_with_basic_auth() -> anyhow::Result<()> {
    if relay_tests::TinyProxy::missing() {
        return Ok(());
    }
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let relay = RelayProcess::start(&programs, relay_tests::ALLOW_ALL, &[]).await?;
    let proxy = relay_tests::TinyProxy::start(relay_tests::TinyProxyConfig {
        connect_ports: vec![relay.addr.port()],
        basic_auth: Some(("corp".to_owned(), "s3cret-pw".to_owned())),
        hosts: None,
    })
    .await?;
    let with_auth = proxy.url_with("corp", "s3cret-pw");
    let agent_cred = relay.issue("agent", "edge").await?;
    let client_cred = relay.issue("client", "ci").await?;
    // The agent through --proxy, the client through HTTPS_PROXY.
    let _agent = launch::agent(
        &programs,
        &agent_cred,
        &[
            "--transport".to_owned(),
            "tcp".to_owned(),
            "--proxy".to_owned(),
            with_auth.clone(),
            "--expose".to_owned(),
            format!("echo={echo}"),
        ],
    )
    .await?;
    let out = client_via_proxy(
        &programs,
        &client_cred,
        &with_auth,
        &["--transport", "tcp", "connect", "edge/echo"],
        b"through the proxy",
    )
    .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"through the proxy");

    // Without credentials: the proxy's 407, said plainly. The same client
    // in auto mode reaches the relay over QUIC instead (UDP is open here).
    let bare = client_via_proxy(
        &programs,
        &client_cred,
        &proxy.url(),
        &["--transport", "tcp", "list"],
        b"",
    )
    .await?;
    let err = String::from_utf8_lossy(&bare.stderr);
    println!("through a proxy without credentials: {err}");
    assert!(!bare.status.success());
    assert!(
        err.contains("requires authentication (407")
            && err.contains("http://user:password@host:port"),
        "{err}"
    );
    let auto = client_via_proxy(&programs, &client_cred, &proxy.url(), &["list"], b"").await?;
    assert!(
        String::from_utf8_lossy(&auto.stdout).contains("over quic"),
        "{auto:?}"
    );
    proxy.stop().await?;

    // A proxy that allows CONNECT to 443 only: its 403, and what to do.
    let strict = relay_tests::TinyProxy::start(relay_tests::TinyProxyConfig {
        connect_ports: vec![443],
        basic_auth: None,
        hosts: None,
    })
    .await?;
    let refused = client_via_proxy(
        &programs,
        &client_cred,
        &strict.url(),
        &["--transport", "tcp", "list"],
        b"",
    )
    .await?;
    let err = String::from_utf8_lossy(&refused.stderr);
    println!("through a proxy that allows only 443: {err}");
    assert!(!refused.status.success());
    assert!(
        err.contains("403") && err.contains("--listen-tcp 0.0.0.0:443"),
        "{err}"
    );
    strict.stop().await
}
