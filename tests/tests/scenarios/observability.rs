//! What an operator sees: Prometheus metrics, health and readiness of the
//! relay and the agent, and exactly one audit event per open, refusal and
//! close of a scripted scenario.

use relay_tests::{audit_in, dest, guard, http_get, read_n, tcp_echo, TestRelay};

const POLICY: &str = "[[allow]]\nclient = \"alice\"\nagent = \"edge\"\ntargets = [\"echo\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_readiness_and_audit_for_a_scripted_scenario() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start_with(POLICY, |c| c.metrics = "127.0.0.1:0".parse().ok()).await;
    let relay_admin = relay
        .admin
        .ok_or_else(|| anyhow::anyhow!("relay admin endpoint not bound"))?;
    let agent_admin = std::net::TcpListener::bind("127.0.0.1:0")?;
    agent_admin.set_nonblocking(true)?;
    let agent_admin_addr = agent_admin.local_addr()?;
    let agent_listener = std::sync::Arc::new(agent_admin);
    let mut agent = relay
        .agent_with("edge", &[("echo", echo)], move |c| {
            c.metrics = Some(agent_listener)
        })
        .await;

    // Scenario: one stream that works, one refused by policy.
    let alice = relay.client("alice");
    let mut ok = alice.open(&dest("edge/echo")).await?;
    ok.send.write_all(b"hello").await?;
    ok.send.finish()?;
    assert_eq!(guard("echo", read_n(&mut ok.recv, 5)).await?, b"hello");
    // Bytes right behind `Open`, in the same write (as a forward sends
    // them), are counted too: they travel to the agent with the `Open`.
    let conn = alice.connection().await?;
    let (mut send, recv) = conn.open_bi().await?;
    let mut head = proto::Frame::from(dest("edge/echo").open())
        .to_bytes()
        .to_vec();
    head.extend_from_slice(b"early bytes");
    send.write_all(&head).await?;
    send.finish()?;
    let mut reader = relay_net::framed::FrameReader::new(recv);
    let answer = guard("answer", reader.read()).await?;
    assert!(
        matches!(answer, Some(proto::Frame::Accepted(_))),
        "{answer:?}"
    );
    let (mut recv, leftover) = reader.into_parts();
    let mut echoed = leftover.to_vec();
    guard(
        "early echo",
        tokio::io::AsyncReadExt::read_to_end(&mut recv, &mut echoed),
    )
    .await?;
    assert_eq!(echoed, b"early bytes");
    let bob = relay.client("bob");
    let refused = bob
        .open(&dest("edge/echo"))
        .await
        .err()
        .map(|e| e.to_string());
    assert!(refused.is_some_and(|m| m.contains("may not open")));

    assert_eq!(http_get(relay_admin, "/healthz").await.0, 200);
    assert_eq!(http_get(relay_admin, "/readyz").await.0, 200);
    assert_eq!(
        http_get(agent_admin_addr, "/readyz").await.0,
        200,
        "registered agent is ready"
    );
    let (status, agent_metrics) = http_get(agent_admin_addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        agent_metrics.contains("agent_relays_registered 1"),
        "{agent_metrics}"
    );
    assert!(
        agent_metrics.contains("agent_streams_total{kind=\"tcp\"} 2"),
        "{agent_metrics}"
    );
    assert!(
        agent_metrics.contains("agent_certificate_expiry_seconds"),
        "{agent_metrics}"
    );

    alice.close().await;
    bob.close().await;
    let (status, metrics) = http_get(relay_admin, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "relay_agents_registered 1",
        "relay_connections{role=\"agent\",transport=\"quic\"} 1",
        "relay_streams_total{kind=\"tcp\"} 2",
        "relay_refusals_total{code=\"UNAUTHORIZED\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }

    // The relay goes away: the agent is no longer ready.
    let dir = relay.stop().await;
    guard("agent notices", agent.registered.wait_for(|n| *n == 0)).await?;
    assert_eq!(http_get(agent_admin_addr, "/readyz").await.0, 503);

    // Exactly one event per open, refusal and close (the relay has stopped,
    // so every event is written).
    let events = audit_in(dir.path());
    let count = |e: &str| events.iter().filter(|v| v["event"] == e).count();
    assert_eq!(count("open"), 2, "{events:?}");
    assert_eq!(count("close"), 2, "{events:?}");
    assert_eq!(count("refused"), 1, "{events:?}");
    assert_eq!(count("register"), 1, "{events:?}");
    assert_eq!(count("unregister"), 1, "{events:?}");
    let closes: Vec<_> = events.iter().filter(|v| v["event"] == "close").collect();
    assert!(
        closes.iter().all(|c| c["peer"] == "client/alice"),
        "{events:?}"
    );
    let mut sizes: Vec<_> = closes
        .iter()
        .map(|c| (c["bytes_up"].as_u64(), c["bytes_down"].as_u64()))
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [(Some(5), Some(5)), (Some(11), Some(11))],
        "{events:?}"
    );
    let refusal = events
        .iter()
        .find(|v| v["event"] == "refused")
        .ok_or_else(|| anyhow::anyhow!("no refusal"))?;
    assert_eq!(refusal["peer"], "client/bob");
    assert_eq!(refusal["code"], "UNAUTHORIZED");
    agent.shutdown().await;
    Ok(())
}

/// `--audit-log -`: audit lines on standard output for a container's log
/// collector, and nothing else there (the startup lines move to stderr).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_on_standard_output_is_json_lines_only() -> anyhow::Result<()> {
    use anyhow::Context;
    use relay_tests::launch;
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let dir = launch::relay_dir(&programs, relay_tests::ALLOW_ALL).await?;
    let mut relay = tokio::process::Command::new(&programs.server)
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--audit-log",
            "-",
            "--dir",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut errors = BufReader::new(relay.stderr.take().context("stderr")?).lines();
    let addr = guard("the listening line on stderr", async {
        loop {
            let line = errors.next_line().await?.context("relay exited")?;
            if let Some(addr) = line.strip_prefix(launch::RELAY_LISTENING) {
                break anyhow::Ok(addr.to_owned());
            }
        }
    })
    .await?;
    tokio::spawn(async move { while let Ok(Some(_)) = errors.next_line().await {} });

    let credential = dir.path().join("agent-edge.cred");
    let issued = tokio::process::Command::new(&programs.server)
        .args(["issue", "agent", "edge", "--relay", &addr, "--dir"])
        .arg(dir.path())
        .arg("--out")
        .arg(&credential)
        .stdout(Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(issued.success(), "relay-server issue: {issued}");
    let echo = tcp_echo().await;
    let _agent = launch::agent(&programs, &credential, &[format!("--expose=echo={echo}")]).await?;

    let mut out = BufReader::new(relay.stdout.take().context("stdout")?).lines();
    let register = guard("the agent's register line on stdout", async {
        loop {
            let line = out.next_line().await?.context("relay exited")?;
            let event: serde_json::Value =
                serde_json::from_str(&line).with_context(|| format!("not a JSON line: {line}"))?;
            if event["event"] == "register" {
                break anyhow::Ok(event);
            }
        }
    })
    .await?;
    assert_eq!(register["peer"], "agent/edge", "{register}");
    assert!(
        !dir.path().join("audit.jsonl").exists(),
        "the default audit file was written too"
    );
    Ok(())
}
