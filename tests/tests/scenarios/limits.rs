//! Limits, each proven with small values: open rate per identity (resets
//! count), first-frame timeout, an agent that never registers, dials in
//! flight per agent; floods that are cut off while others keep working;
//! clients that connect and never open a stream; and the handshake budget.

use std::time::Duration;

use proto::{ErrorCode, Role};
use relay_client::{Client, OpenError};
use relay_net::credential::Credential;
use relay_net::endpoint::Transport;
use relay_tests::{dest, guard, tcp_echo, TestRelay, ALLOW_ALL};

async fn echoes(client: &Client, to: &str) -> anyhow::Result<()> {
    let mut s = client.open(&dest(to)).await?;
    s.send.write_all(b"ok").await?;
    s.send.finish()?;
    let mut back = Vec::new();
    guard(
        "echo",
        tokio::io::AsyncReadExt::read_to_end(&mut s.recv, &mut back),
    )
    .await?;
    anyhow::ensure!(back == b"ok", "echo differs: {back:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_reset_flood_is_cut_off_and_others_keep_working() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start_with(ALLOW_ALL, |c| {
        c.limits.open_rate = 5;
        c.limits.open_burst = 5;
        c.metrics = "127.0.0.1:0".parse().ok();
    })
    .await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;

    // The flooder opens and resets streams in a loop (bounded: 50).
    let flooder = relay.client("flooder");
    let conn = flooder.connection().await?;
    let mut limited = 0;
    for _ in 0..50 {
        let (mut send, recv) = conn.open_bi().await?;
        let open = proto::Frame::from(dest("edge/echo").open());
        send.write_all(&open.to_bytes()).await?;
        let mut reader = relay_net::framed::FrameReader::new(recv);
        match guard("answer", reader.read()).await {
            Ok(Some(proto::Frame::Refused(r))) if r.code == ErrorCode::LIMIT_EXCEEDED => {
                assert!(r.message.contains("open rate"), "{r:?}");
                limited += 1;
            }
            _ => {}
        }
        let _ = send.reset(0u32.into());
    }
    assert!(
        limited >= 40,
        "at most the burst gets through: {limited} of 50 limited"
    );

    // A flooder that keeps pushing past the limit is dropped: bounded, 5,000
    // opens at most, each reset at once without waiting for an answer.
    for _ in 0..5_000 {
        let Ok((mut send, _recv)) = conn.open_bi().await else {
            break;
        };
        let open = proto::Frame::from(dest("edge/echo").open());
        if send.write_all(&open.to_bytes()).await.is_err() {
            break;
        }
        let _ = send.reset(0u32.into());
    }
    match guard("flooder dropped", conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                close.error_code.into_inner(),
                u64::from(ErrorCode::LIMIT_EXCEEDED.0)
            );
            assert!(
                String::from_utf8_lossy(&close.reason).contains("kept opening"),
                "{close:?}"
            );
        }
        other => anyhow::bail!("expected the relay to drop the flooder, got {other:?}"),
    }

    // Someone else is unaffected.
    echoes(&relay.client("bystander"), "edge/echo").await?;
    let admin = relay
        .admin
        .ok_or_else(|| anyhow::anyhow!("no admin endpoint"))?;
    let (_, metrics) = relay_tests::http_get(admin, "/metrics").await;
    assert!(
        metrics.contains("relay_limit_hits_total{reason=\"open_rate\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("relay_limit_hits_total{reason=\"open_rate_dropped\"} 1"),
        "{metrics}"
    );

    flooder.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_stream_without_a_complete_first_frame_is_reset() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start_with(ALLOW_ALL, |c| {
        c.limits.first_frame_timeout = Duration::from_millis(200)
    })
    .await;
    let client = relay.client("slowloris");
    let conn = client.connection().await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    // One byte of a header, then nothing: the relay must not wait forever.
    send.write_all(&[0x10]).await?;
    let mut buf = [0u8; 1];
    let read = guard("reset of a stalled stream", recv.read(&mut buf)).await;
    match read {
        Err(quinn::ReadError::Reset(code)) => {
            assert_eq!(code.into_inner(), u64::from(ErrorCode::LIMIT_EXCEEDED.0))
        }
        other => anyhow::bail!("expected a reset with LIMIT_EXCEEDED, got {other:?}"),
    }
    client.close().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_agent_that_never_registers_is_dropped() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start_with(ALLOW_ALL, |c| {
        c.limits.first_frame_timeout = Duration::from_millis(200)
    })
    .await;
    let cred = Credential::load(&relay.issue(Role::Agent, "mute"), None)?;
    let tls = relay_net::tls::client_config(
        &cred.credential.certificate,
        cred.key_pem(),
        &cred.credential.ca,
    )?;
    let endpoint =
        relay_net::endpoint::client(relay.addr, std::sync::Arc::new(tls), &Transport::agent())?;
    let conn = endpoint.connect(relay.addr, "127.0.0.1")?.await?;
    // Handshake done; no control stream, no frame.
    match guard("relay drops the mute agent", conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                close.error_code.into_inner(),
                u64::from(ErrorCode::LIMIT_EXCEEDED.0)
            );
            assert!(
                String::from_utf8_lossy(&close.reason).contains("control stream"),
                "{close:?}"
            );
        }
        other => anyhow::bail!("expected an application close, got {other:?}"),
    }
    assert_eq!(relay.registry.instances(&"mute".parse()?), 0);
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dials_in_flight_per_agent_are_bounded() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let silent = relay_tests::silent_target().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay
        .agent_with("edge", &[("silent", silent.addr)], |c| {
            c.max_dials = 1;
            c.dial_timeout = Duration::from_secs(20);
        })
        .await;
    let client = std::sync::Arc::new(relay.client("ci"));
    // Two opens at once to a target that never answers: one holds the only
    // dial permit, the other is refused at once.
    let first = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .open(&dest("edge/silent"))
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        }
    });
    let second = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .open(&dest("edge/silent"))
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        }
    });
    let (mut first, mut second) = (first, second);
    let done = guard("one open refused", async {
        tokio::select! {
            r = &mut first => r,
            r = &mut second => r,
        }
    })
    .await;
    let err = done?
        .err()
        .ok_or_else(|| anyhow::anyhow!("an open to a silent target cannot succeed"))?;
    match err.downcast_ref::<OpenError>() {
        Some(OpenError::Refused(r)) => {
            assert_eq!(r.code, ErrorCode::LIMIT_EXCEEDED, "{r:?}");
            assert!(r.message.contains("dials in flight"), "{r:?}");
        }
        other => anyhow::bail!("expected a refusal, got {other:?}"),
    }
    first.abort();
    second.abort();
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    drop(silent);
    Ok(())
}

#[tokio::test]
async fn a_burst_of_junk_datagrams_leaves_the_relay_serving() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let client = relay.client("ci");
    echoes(&client, "edge/echo").await?;
    // A bounded burst: 20,000 datagrams of 1200 junk bytes, loopback only.
    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let mut payload = vec![0u8; 1200];
    for i in 0..20_000u32 {
        payload[..4].copy_from_slice(&i.to_be_bytes());
        payload[4] = 0xc3; // looks like a long-header packet
        let _ = junk.send_to(&payload, relay.addr).await;
    }
    echoes(&client, "edge/echo").await?;
    echoes(&relay.client("newcomer"), "edge/echo").await?;
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// Waits until the relay's count of live client connections satisfies `want`.
async fn wait_client_connections(
    relay: &TestRelay,
    want: impl Fn(usize) -> bool,
) -> anyhow::Result<()> {
    let mut clients = relay.clients.clone();
    guard("client connections", clients.wait_for(|n| want(*n))).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_open_a_stream_stay_idle_and_are_dropped_when_silent(
) -> anyhow::Result<()> {
    relay_tests::trace_init();
    const IDLE: u64 = 50;
    let idle_timeout = Duration::from_secs(1);
    let echo = tcp_echo().await;
    let relay = TestRelay::start_with(ALLOW_ALL, |c| {
        c.transport.idle_timeout = idle_timeout;
        // The relay's keep-alives keep every live peer's connection up.
        c.transport.keep_alive = Some(Duration::from_millis(250));
        c.metrics = "127.0.0.1:0".parse().ok();
    })
    .await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;

    // 50 clients complete the handshake, through a proxy that can silence
    // them, and never open a stream.
    let proxy = relay_tests::chaos::ChaosProxy::start(relay.addr, 3).await;
    let cred = relay_tests::credential_via(&relay, Role::Client, "idle", proxy.addr);
    let tls = std::sync::Arc::new(relay_net::tls::client_config(
        &cred.credential.certificate,
        cred.key_pem(),
        &cred.credential.ca,
    )?);
    let transport = Transport {
        keep_alive: None,
        ..Transport::client()
    };
    let endpoint = relay_net::endpoint::client(proxy.addr, tls, &transport)?;
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(
            guard(
                "idle client handshake",
                endpoint.connect(proxy.addr, "127.0.0.1")?,
            )
            .await?,
        );
    }
    wait_client_connections(&relay, |n| n == IDLE as usize).await?;

    // They cost the others nothing: a new client is served at once.
    echoes(&relay.client("bystander"), "edge/echo").await?;
    // An idle but live client is not dropped: it answers the relay's
    // keep-alives (an observation window of 3 idle timeouts, not a pacing).
    let still_open = tokio::time::timeout(3 * idle_timeout, idle[0].closed()).await;
    assert!(
        still_open.is_err(),
        "a live idle client was closed: {still_open:?}"
    );

    // Now they fall silent (as a crashed host would): the relay drops them
    // after its idle timeout and keeps serving.
    proxy.partition(true);
    let started = std::time::Instant::now();
    wait_client_connections(&relay, |n| n == 0).await?;
    let took = started.elapsed();
    println!(
        "{IDLE} silent clients dropped by the relay {took:?} after they fell silent \
         (idle timeout {idle_timeout:?})"
    );
    // Their last keep-alive answer may predate the cut by a keep-alive interval.
    assert!(
        took >= idle_timeout / 2,
        "dropped before the idle timeout: {took:?}"
    );
    echoes(&relay.client("after"), "edge/echo").await?;

    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// The relay works on `limits.handshakes` handshakes at once: one more peer
/// is refused at once, with an error that says the relay is busy (an agent
/// backs off with jitter on it), and is taken once the slot is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_at_its_handshake_budget_refuses_the_next_peer_until_a_slot_frees(
) -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start_with(ALLOW_ALL, |c| {
        c.limits.handshakes = 1;
        c.metrics = "127.0.0.1:0".parse().ok();
    })
    .await;
    // 250 ms each way keeps its handshake going for half a second once it
    // has begun.
    let (admin, _proxy, slow) = slow_handshake(&relay, Duration::from_millis(250)).await?;

    let fast = relay_tests::credential_via(&relay, Role::Client, "fast", relay.addr);
    match Client::new(fast).connection().await {
        Err(e @ relay_net::dial::DialError::Busy { .. }) => {
            assert!(e.to_string().contains("busy"), "{e}");
        }
        other => anyhow::bail!("expected a busy relay to refuse, got {other:?}"),
    }
    let metrics = wait_metrics(admin, |m| gauge(m, "relay_handshakes") == 0).await;
    assert!(
        metrics.contains("relay_limit_hits_total{reason=\"handshakes\"} 1"),
        "{metrics}"
    );
    guard("the slow peer's handshake", slow).await??;
    // The slot is free again: the refused peer is served.
    guard("a list after", relay.client("fast").list()).await?;
    relay.shutdown().await;
    Ok(())
}

/// One source address gets its share of the handshake budget, not all of
/// it: while a slow peer holds its address's one slot, a second peer from
/// that address is refused and one from another address is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_the_whole_handshake_budget() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start_with(ALLOW_ALL, |c| {
        c.limits.handshakes_per_address = 1;
        c.metrics = "127.0.0.1:0".parse().ok();
    })
    .await;
    // From 127.0.0.1, so slow (a second each way) that its handshake holds
    // the address's slot until the relay lets it go (2 s).
    let (admin, _proxy, slow) = slow_handshake(&relay, Duration::from_secs(1)).await?;

    let same = relay_tests::credential_via(&relay, Role::Client, "same", relay.addr);
    match Client::new(same).connection().await {
        Err(relay_net::dial::DialError::Busy { .. }) => {}
        other => anyhow::bail!("expected the address's share to be taken, got {other:?}"),
    }
    // Another machine, as the relay sees it, is served meanwhile.
    let elsewhere = relay_tests::chaos::ChaosProxy::start(relay.addr, 24).await;
    elsewhere.set_source(std::net::Ipv4Addr::new(127, 0, 0, 2).into());
    let other = relay_tests::credential_via(&relay, Role::Client, "other", elsewhere.addr);
    guard("a list from another address", Client::new(other).list()).await?;
    let metrics = wait_metrics(admin, |m| gauge(m, "relay_handshakes") <= 1).await;
    assert!(
        metrics.contains("relay_limit_hits_total{reason=\"handshakes_per_address\"} 1"),
        "{metrics}"
    );
    guard("the slow peer's handshake", slow).await??;
    relay.shutdown().await;
    Ok(())
}

/// A client whose packets to `relay` take `delay` each way, connecting:
/// its handshake holds a slot of the relay's budget, which the relay's
/// metrics (at the returned address) show before this returns.
async fn slow_handshake(
    relay: &TestRelay,
    delay: Duration,
) -> anyhow::Result<(
    std::net::SocketAddr,
    relay_tests::chaos::ChaosProxy,
    tokio::task::JoinHandle<Result<quinn::Connection, relay_net::dial::DialError>>,
)> {
    let admin = relay
        .admin
        .ok_or_else(|| anyhow::anyhow!("no admin endpoint"))?;
    let proxy = relay_tests::chaos::ChaosProxy::start(relay.addr, 19).await;
    proxy.set_delay(delay);
    let slow = relay_tests::credential_via(relay, Role::Client, "slow", proxy.addr);
    let slow = Client::new(slow);
    let slow = tokio::spawn(async move { slow.connection().await });
    wait_metrics(admin, |m| gauge(m, "relay_handshakes") == 1).await;
    Ok((admin, proxy, slow))
}

/// The value of the agent's gauge `name` in a `/metrics` text (0 if absent).
fn gauge(metrics: &str, name: &str) -> i64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// Polls the agent's `/metrics` at `admin` until `want` holds.
async fn wait_metrics(admin: std::net::SocketAddr, want: impl Fn(&str) -> bool) -> String {
    guard("agent metrics", async {
        loop {
            let (_, metrics) = relay_tests::http_get(admin, "/metrics").await;
            if want(&metrics) {
                return metrics;
            }
            #[allow(clippy::disallowed_methods)]
            tokio::time::sleep(Duration::from_millis(10)).await; // sleep-ok: a poll of the agent's gauges, under the guard
        }
    })
    .await
}

/// A bound listener for an in-process agent's admin endpoint.
fn admin_listener() -> anyhow::Result<(std::sync::Arc<std::net::TcpListener>, std::net::SocketAddr)>
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    Ok((std::sync::Arc::new(listener), addr))
}

/// #13 item 5: one caller dialling a target that never answers (SYNs to a
/// full accept queue are dropped) used to hold every dial permit of the
/// agent for the whole dial timeout, so every other caller was refused.
/// Now it holds at most its own `--max-dials-per-caller`; its other dials
/// wait for its own, and another caller dials at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_callers_black_holed_dials_leave_others_dialling() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let silent = relay_tests::silent_target().await;
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let (listener, admin) = admin_listener()?;
    let agent = relay
        .agent_with("edge", &[("silent", silent.addr), ("echo", echo)], |c| {
            c.max_dials = 4;
            c.max_dials_per_caller = 2;
            c.dial_timeout = Duration::from_secs(30);
            c.metrics = Some(listener);
        })
        .await;
    // The hog asks for twice the agent's dials, all at once.
    let hog = std::sync::Arc::new(relay.client("hog"));
    let mut stuck = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let hog = hog.clone();
        stuck.spawn(async move { hog.open(&dest("edge/silent")).await.map(|_| ()) });
    }
    // All eight reached the agent: two dialling, six waiting for those.
    wait_metrics(admin, |m| {
        gauge(m, "agent_dials_in_flight") == 2 && gauge(m, "agent_dials_waiting") == 6
    })
    .await;
    assert!(stuck.try_join_next().is_none(), "a hog's dial was answered");

    // Another caller is served at once.
    let started = std::time::Instant::now();
    echoes(&relay.client("bystander"), "edge/echo").await?;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "bystander took {took:?}");

    stuck.abort_all();
    hog.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    drop(silent);
    Ok(())
}

/// #13 item 5: one caller may hold `--max-streams-per-caller` streams on
/// the agent; one more is refused with a message naming the flag, others
/// are not affected, and a stream that ends gives its slot back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_caller_are_capped_and_given_back() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay
        .agent_with("edge", &[("echo", echo)], |c| c.max_streams_per_caller = 3)
        .await;
    let hog = relay.client("hog");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = hog.open(&dest("edge/echo")).await?;
        s.send.write_all(b"x").await?;
        guard("echo", relay_tests::read_n(&mut s.recv, 1)).await?;
        held.push(s);
    }
    match hog.open(&dest("edge/echo")).await {
        Err(OpenError::Refused(r)) => {
            assert_eq!(r.code, ErrorCode::LIMIT_EXCEEDED, "{r:?}");
            assert!(r.message.contains("--max-streams-per-caller"), "{r:?}");
            assert!(r.message.contains("client/hog"), "{r:?}");
        }
        Ok(_) => anyhow::bail!("a 4th stream of the same caller was accepted"),
        Err(other) => anyhow::bail!("expected a refusal, got {other:?}"),
    }
    echoes(&relay.client("bystander"), "edge/echo").await?;

    // Ending one stream gives its slot back (the agent may still be
    // finishing it when the echo ends here: retry, bounded).
    let mut done = held.pop().ok_or_else(|| anyhow::anyhow!("no stream"))?;
    done.send.finish()?;
    let mut rest = Vec::new();
    guard(
        "stream end",
        tokio::io::AsyncReadExt::read_to_end(&mut done.recv, &mut rest),
    )
    .await?;
    guard("slot given back", async {
        loop {
            match echoes(&hog, "edge/echo").await {
                Ok(()) => return,
                Err(e) if e.to_string().contains("--max-streams-per-caller") => {
                    tokio::task::yield_now().await
                }
                Err(e) => panic!("reopen failed: {e:#}"),
            }
        }
    })
    .await;

    drop(held);
    hog.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// #13 item 7: every failed handshake used to write an `auth_failed` line,
/// so a loop of bad handshakes could fill the disk (and fail-closed audit
/// then refuses everyone). Now a window writes at most 10 per source
/// address, and one `auth_failed_suppressed` line counts the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshakes_write_a_bounded_number_of_audit_lines() -> anyhow::Result<()> {
    relay_tests::trace_init();
    const TRIES: u64 = 200;
    let relay = TestRelay::start_with(ALLOW_ALL, |c| {
        c.limits.auth_failed_window = Duration::from_secs(2);
    })
    .await;
    // A client certificate of another relay's CA, aimed at this relay.
    let other = TestRelay::start(ALLOW_ALL).await;
    let cred = relay_tests::credential_via(&other, Role::Client, "mallory", relay.addr);
    let tls = std::sync::Arc::new(relay_net::tls::client_config(
        &cred.credential.certificate,
        cred.key_pem(),
        &cred.credential.ca,
    )?);
    let endpoint = relay_net::endpoint::client(relay.addr, tls, &Transport::client())?;
    for _ in 0..TRIES {
        let attempt = guard("bad handshake", endpoint.connect(relay.addr, "127.0.0.1")?).await;
        anyhow::ensure!(attempt.is_err(), "a foreign certificate was accepted");
    }
    // Every failure is accounted for: written, or counted once its window ends.
    let audit = guard("every failure accounted for", async {
        loop {
            let events = relay.audit_events();
            let written = events
                .iter()
                .filter(|e| e["event"] == "auth_failed")
                .count() as u64;
            let counted: u64 = events
                .iter()
                .filter(|e| e["event"] == "auth_failed_suppressed")
                .filter_map(|e| e["count"].as_u64())
                .sum();
            if written + counted >= TRIES {
                return events;
            }
            #[allow(clippy::disallowed_methods)]
            tokio::time::sleep(Duration::from_millis(50)).await; // sleep-ok: a poll of the audit file until the window ends, under the guard
        }
    })
    .await;
    let written = audit.iter().filter(|e| e["event"] == "auth_failed").count();
    let summaries: Vec<_> = audit
        .iter()
        .filter(|e| e["event"] == "auth_failed_suppressed")
        .collect();
    assert!(!summaries.is_empty(), "no auth_failed_suppressed line");
    // One source address: at most 10 lines per window, and every window
    // that wrote 10 and suppressed more has its summary line.
    assert!(
        written <= 10 * (summaries.len() + 1),
        "{written} auth_failed lines for {} windows",
        summaries.len()
    );
    println!(
        "{TRIES} failed handshakes: {written} auth_failed lines, {} auth_failed_suppressed lines",
        summaries.len()
    );
    other.shutdown().await;
    relay.shutdown().await;
    Ok(())
}
