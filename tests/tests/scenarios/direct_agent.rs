//! The agent's side of end-to-end mode under the relay's rules: a grant
//! admits only the certificate it was issued for (a revoked one of the same
//! identity is refused), every direct stream is on the agent's own audit log
//! (fail closed), and one identity's direct connections are capped.
//!
//! These drive the direct path by hand (ask the relay for a `Path`, then
//! handshake with the agent through it) so a test can choose the
//! certificate the agent sees.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proto::{Direct, ErrorCode, Frame, Open, Role, StreamKind};
use relay_net::answer::{read_answer, AnswerError};
use relay_net::credential::Loaded;
use relay_net::dial::RelayConn;
use relay_net::endpoint::Transport;
use relay_net::framed::{write_frame, FrameReader};
use relay_tests::{dest, guard, tcp_echo, TestRelay, ALLOW_ALL};

/// Dials the relay with `cred` and asks for a path to `agent`: the relay
/// connection (its `Direct` stream kept open: the grant's lease) and the
/// agent's connection-ID prefix.
async fn path_to(
    cred: &Loaded,
    agent: &str,
) -> anyhow::Result<(RelayConn, quinn::SendStream, proto::CidPrefix)> {
    let rc = guard(
        "dial the relay",
        relay_net::dial::dial(cred, &Transport::client(), Duration::from_secs(10)),
    )
    .await?;
    let (mut send, recv) = rc.conn.open_bi().await?;
    let ask = Direct {
        agent: agent.parse()?,
        prefix: rc.prefix,
    };
    write_frame(&mut send, ask).await?;
    let mut reader = FrameReader::new(recv);
    let prefix = match guard("path", reader.read()).await? {
        Some(Frame::Path(p)) => p.prefix,
        other => anyhow::bail!("expected Path, got {other:?}"),
    };
    Ok((rc, send, prefix))
}

/// A direct handshake with the agent behind `prefix`, from `rc`'s socket,
/// presenting `cred`'s certificate.
async fn handshake(
    rc: &RelayConn,
    prefix: proto::CidPrefix,
    cred: &Loaded,
) -> anyhow::Result<quinn::Connection> {
    let tls = Arc::new(relay_net::tls::direct_client_config(
        &cred.credential.certificate,
        cred.key_pem(),
        &cred.credential.ca,
    )?);
    let config = relay_net::endpoint::direct_client(tls, &Transport::client(), prefix);
    let connecting = rc
        .endpoint
        .connect_with(config, rc.conn.remote_address(), "relay-agent")?;
    Ok(guard("direct handshake", connecting).await?)
}

/// Opens `edge/echo` on a direct connection and echoes one byte.
async fn echo_once(conn: &quinn::Connection) -> anyhow::Result<()> {
    let (mut send, recv) = conn.open_bi().await?;
    let open = Open {
        agent: "edge".parse()?,
        target: "echo".parse()?,
        kind: StreamKind::Tcp,
    };
    write_frame(&mut send, open).await?;
    let mut reader = FrameReader::new(recv);
    match guard("answer", read_answer(&mut reader, None)).await {
        Ok(_) => {}
        Err(AnswerError::Refused(r)) => anyhow::bail!("refused: {} {}", r.code, r.message),
        Err(e) => anyhow::bail!("no answer: {e}"),
    }
    send.write_all(b"x").await?;
    let (mut recv, early) = reader.into_parts();
    if early.is_empty() {
        let mut one = [0u8; 1];
        guard("echo", recv.read_exact(&mut one)).await?;
    }
    Ok(())
}

/// The application close code `conn` ended with, once it has.
async fn close_code(conn: &quinn::Connection) -> Option<ErrorCode> {
    match guard("direct connection closed", conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            u32::try_from(c.error_code.into_inner()).ok().map(ErrorCode)
        }
        _ => None,
    }
}

/// Revokes one certificate by serial and waits until the relay applied it.
async fn revoke_serial(relay: &TestRelay, serial: &str) -> anyhow::Result<()> {
    let mut reloads = relay.reloads();
    reloads.borrow_and_update();
    let target = relay_server::cmd::revoke::Target::Serial(serial.to_owned());
    relay_server::cmd::revoke::revoke(&relay.paths(), target)?;
    guard("revocation reload", reloads.changed()).await?;
    Ok(())
}

/// The agent's audit lines, parsed (a line that is not JSON is kept as a
/// string, which no test's predicate takes for a record).
fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| l.into()))
        .collect()
}

/// Waits (under the guard) until the agent's audit log at `path` holds a
/// line for which `pred` holds. The log is written by the agent's task in
/// this process, so this polls the file, yielding in between.
async fn wait_audit(path: &Path, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    guard("agent audit line", async {
        loop {
            if let Some(line) = audit_lines(path).into_iter().find(|l| pred(l)) {
                return line;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

#[tokio::test]
async fn a_revoked_certificate_cannot_ride_on_a_grant_for_another() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    // Bob has two certificates; the relay revokes the first by serial.
    let good = relay.credential(Role::Client, "bob");
    let revoked = relay.credential(Role::Client, "bob");
    assert_ne!(good.cert.serial, revoked.cert.serial);
    revoke_serial(&relay, &revoked.cert.serial).await?;
    // Bob opens a direct path with the good one: it is served.
    let (rc, _lease, prefix) = path_to(&good, "edge").await?;
    let direct = handshake(&rc, prefix, &good).await?;
    echo_once(&direct).await?;
    // The revoked certificate, on that same path (same socket, same
    // identity), must not be admitted as bob.
    let stolen = handshake(&rc, prefix, &revoked).await?;
    let served = echo_once(&stolen).await;
    assert!(
        served.is_err(),
        "the agent served the revoked certificate {} on bob's grant",
        revoked.cert.serial
    );
    assert_eq!(close_code(&stolen).await, Some(ErrorCode::UNAUTHORIZED));
    // The good certificate's connection is untouched.
    echo_once(&direct).await?;
    direct.close(0u32.into(), b"");
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn direct_streams_are_on_the_agents_audit_log() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("agent-audit.jsonl");
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay
        .agent_with("edge", &[("echo", echo)], |c| c.audit_log = log.clone())
        .await;
    let client = relay.client("ci").end_to_end(true);
    let serial = client.credential().cert.serial.clone();
    let mut opened = guard("open", client.open(&dest("edge/echo"))).await?;
    opened.send.write_all(b"hello").await?;
    let mut buf = [0u8; 5];
    guard("echo", opened.recv.read_exact(&mut buf)).await?;
    opened.send.finish()?;
    guard("stream end", opened.recv.read_to_end(1 << 20)).await?;
    // The relay saw only the path; the agent has the stream, with the
    // relay's fields.
    let open = wait_audit(&log, |l| l["event"] == "open").await;
    assert_eq!(open["peer"], "client/ci", "{open}");
    assert_eq!(open["serial"], serial.as_str(), "{open}");
    assert_eq!(open["agent"], "edge", "{open}");
    assert_eq!(open["target"], "echo", "{open}");
    assert_eq!(open["kind"], "tcp", "{open}");
    let close = wait_audit(&log, |l| l["event"] == "close").await;
    assert_eq!(close["peer"], "client/ci", "{close}");
    assert_eq!(close["target"], "echo", "{close}");
    assert_eq!(close["bytes_up"], 5, "{close}");
    assert_eq!(close["bytes_down"], 5, "{close}");
    assert!(close["duration_ms"].is_u64(), "{close}");
    // A refusal by the grant is on record too (sent by hand: the client
    // itself sends nothing outside the grant the relay told it).
    let path = guard("the path", client.connection_to(&"edge".parse()?)).await?;
    let refused = relay_tests::open_by_hand(&path.conn, "edge/other").await?;
    assert!(
        matches!(refused, Err(AnswerError::Refused(_))),
        "{refused:?}"
    );
    let line = wait_audit(&log, |l| l["event"] == "refused").await;
    assert_eq!(line["target"], "other", "{line}");
    assert_eq!(line["code"], "UNAUTHORIZED", "{line}");
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_unwritable_audit_log_refuses_direct_streams() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    // Every write to /dev/full fails (ENOSPC): a full disk.
    let agent = relay
        .agent_with("edge", &[("echo", echo)], |c| {
            c.audit_log = "/dev/full".into();
        })
        .await;
    let cred = relay.credential(Role::Client, "ci");
    let (rc, _lease, prefix) = path_to(&cred, "edge").await?;
    let direct = handshake(&rc, prefix, &cred).await?;
    let err = echo_once(&direct)
        .await
        .expect_err("a direct stream was served without its audit record");
    assert!(
        err.to_string().contains("AUDIT_UNAVAILABLE"),
        "expected AUDIT_UNAVAILABLE, got {err}"
    );
    direct.close(0u32.into(), b"");
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn one_identity_holds_at_most_its_cap_of_direct_connections() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay
        .agent_with("edge", &[("echo", echo)], |c| c.direct.max_connections = 2)
        .await;
    let cred = relay.credential(Role::Client, "ci");
    let (rc, _lease, prefix) = path_to(&cred, "edge").await?;
    let first = handshake(&rc, prefix, &cred).await?;
    echo_once(&first).await?;
    let second = handshake(&rc, prefix, &cred).await?;
    echo_once(&second).await?;
    // The third is over the cap.
    let third = handshake(&rc, prefix, &cred).await?;
    assert!(echo_once(&third).await.is_err());
    assert_eq!(close_code(&third).await, Some(ErrorCode::LIMIT_EXCEEDED));
    let reason = match third.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            String::from_utf8_lossy(&c.reason).into_owned()
        }
        other => panic!("{other:?}"),
    };
    assert!(reason.contains("direct connections"), "{reason}");
    // Closing one frees its slot.
    first.close(0u32.into(), b"");
    let fourth = guard("a freed slot", async {
        loop {
            let conn = handshake(&rc, prefix, &cred).await?;
            if echo_once(&conn).await.is_ok() {
                return anyhow::Ok(conn);
            }
        }
    })
    .await?;
    echo_once(&second).await?;
    fourth.close(0u32.into(), b"");
    second.close(0u32.into(), b"");
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}
