//! Every way an open or a connection is refused, end to end on loopback:
//! the code the client gets, and a message that names the problem.
//!
//! Relay refusals (policy, presence), agent refusals (allowlist, dial),
//! credential failures (expired, revoked, wrong CA, no relay), and peers
//! that break the protocol with hand-built frames on a real connection.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proto::{
    Capabilities, ErrorCode, Forwarded, Frame, Identity, Name, Refused, Register, Role,
    PROTOCOL_VERSION,
};
use relay_client::{Client, OpenError};
use relay_net::cert::PeerCert;
use relay_net::credential::{Credential, Loaded};
use relay_net::dial::{describe, DialError};
use relay_net::endpoint::Transport;
use relay_net::framed::FrameReader;
use relay_net::pki::{Ca, Issued, KeySource};
use relay_tests::{audit_in, closed_port, dest, guard, read_n, tcp_echo, TestRelay, ALLOW_ALL};

/// Opens `to` and expects a `Refused` from the relay or the agent.
async fn refused(client: &Client, to: &str) -> anyhow::Result<Refused> {
    match guard("open", client.open(&dest(to))).await {
        Err(OpenError::Refused(r)) => Ok(r),
        Err(e) => panic!("open {to}: expected a refusal, got {e:?}"),
        Ok(_) => panic!("open {to}: expected a refusal, got a stream"),
    }
}

/// Opens `to`, sends a few bytes and checks they come back.
async fn echoes(client: &Client, to: &str) -> anyhow::Result<()> {
    let mut s = guard("open", client.open(&dest(to))).await?;
    s.send.write_all(b"ping").await?;
    assert_eq!(guard("echo", read_n(&mut s.recv, 4)).await?, b"ping");
    s.send.finish()?;
    Ok(())
}

/// The relay's CA (with its key) and the relay's own name.
fn relay_ca(relay: &TestRelay) -> anyhow::Result<(Ca, String, Name)> {
    let paths = relay.paths();
    let ca_pem = std::fs::read_to_string(paths.ca_cert())?;
    let ca = Ca::load(&ca_pem, &std::fs::read_to_string(paths.ca_key())?)?;
    let name = PeerCert::from_pem(&std::fs::read_to_string(paths.relay_cert())?)?.relay;
    Ok((ca, ca_pem, name))
}

/// A client certificate of `relay`'s CA that expired an hour ago; with the
/// CA certificate and the relay name.
fn expired_client(relay: &TestRelay, name: &str) -> anyhow::Result<(Issued, String, Name)> {
    let (ca, ca_pem, relay_name) = relay_ca(relay)?;
    let hour = Duration::from_secs(3600);
    let now = SystemTime::now();
    let identity = Identity::new(Role::Client, Name::try_from(name)?);
    let issued = ca.issue_identity_between(
        &relay_name,
        &identity,
        (now - 2 * hour).into(),
        (now - hour).into(),
        KeySource::Generate,
    )?;
    Ok((issued, ca_pem, relay_name))
}

/// Saves `credential` in the relay's directory as `file` and loads it back,
/// as a user would.
fn save_and_load(relay: &TestRelay, credential: &Credential, file: &str) -> anyhow::Result<Loaded> {
    let path = relay.dir.path().join(file);
    credential.save(&path)?;
    Ok(Credential::load(&path, None)?)
}

fn auth_failures(events: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    events
        .iter()
        .filter(|e| e["event"] == "auth_failed")
        .collect()
}

#[tokio::test]
async fn unknown_agent() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_ALL).await;
    let client = relay.client("ci");
    let r = refused(&client, "ghost/ssh").await?;
    assert_eq!(r.code, ErrorCode::UNKNOWN_AGENT, "{r:?}");
    assert!(r.message.contains("ghost"), "{r:?}");
    client.close().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn agent_offline() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    agent.shutdown().await;
    relay.wait_instances("edge", 0).await;
    let client = relay.client("ci");
    let r = refused(&client, "edge/echo").await?;
    assert_eq!(r.code, ErrorCode::AGENT_OFFLINE, "{r:?}");
    assert!(r.message.contains("edge"), "{r:?}");
    assert!(r.message.contains("offline"), "{r:?}");
    client.close().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn target_not_exposed_is_refused_by_the_agent() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("db", echo)]).await;
    let client = relay.client("ci");
    // The relay lets everything through; the agent's allowlist is the last gate.
    let r = refused(&client, "edge/ssh").await?;
    assert_eq!(r.code, ErrorCode::TARGET_NOT_EXPOSED, "{r:?}");
    assert!(r.message.contains("ssh"), "{r:?}");
    echoes(&client, "edge/db").await?;
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn not_authorized_by_policy() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let policy = "[[allow]]\nclient = \"alice\"\nagent = \"edge\"\ntargets = [\"db\"]\n";
    let relay = TestRelay::start(policy).await;
    let agent = relay.agent("edge", &[("db", echo), ("ssh", echo)]).await;

    let bob = relay.client("bob");
    let r = refused(&bob, "edge/db").await?;
    assert_eq!(r.code, ErrorCode::UNAUTHORIZED, "{r:?}");
    assert!(r.message.contains("bob"), "{r:?}");
    assert!(r.message.contains("edge/db"), "{r:?}");

    let alice = relay.client("alice");
    let r = refused(&alice, "edge/ssh").await?;
    assert_eq!(r.code, ErrorCode::UNAUTHORIZED, "{r:?}");
    assert!(r.message.contains("alice"), "{r:?}");
    assert!(r.message.contains("edge/ssh"), "{r:?}");
    // What the policy does grant still works.
    echoes(&alice, "edge/db").await?;

    bob.close().await;
    alice.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn target_refused_the_connection() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let down = closed_port().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("down", down)]).await;
    let client = relay.client("ci");
    let r = refused(&client, "edge/down").await?;
    assert_eq!(r.code, ErrorCode::TARGET_REFUSED, "{r:?}");
    assert!(r.message.contains("refused"), "{r:?}");
    assert!(r.message.contains("down"), "{r:?}");
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn target_dial_timeout_on_loopback() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let silent_target = relay_tests::silent_target().await;
    let silent = silent_target.addr;

    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay
        .agent_with("edge", &[("silent", silent)], |c| {
            c.dial_timeout = Duration::from_millis(300);
        })
        .await;
    let client = relay.client("ci");
    let r = refused(&client, "edge/silent").await?;
    assert_eq!(r.code, ErrorCode::TARGET_TIMEOUT, "{r:?}");
    assert!(r.message.contains("did not answer"), "{r:?}");
    assert!(r.message.contains("silent"), "{r:?}");
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    drop(silent_target);
    Ok(())
}

#[tokio::test]
async fn expired_credential_is_refused_before_dialing() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_ALL).await;
    let (issued, ca_pem, relay_name) = expired_client(&relay, "late")?;
    let identity = Identity::new(Role::Client, Name::try_from("late")?);
    let credential = Credential {
        relay: vec![relay.addr.to_string()],
        identity: identity.to_uri(&relay_name),
        certificate: issued.cert_pem.clone(),
        private_key: issued.key_pem.clone(),
        ca: ca_pem,
    };
    let loaded = save_and_load(&relay, &credential, "client-late-expired.cred")?;
    let client = Client::new(loaded);
    match guard("open", client.open(&dest("edge/echo"))).await {
        Err(OpenError::Dial(DialError::Credential(msg))) => {
            assert!(msg.contains("expired"), "{msg}");
            assert!(msg.contains("client/late"), "{msg}");
        }
        Err(e) => panic!("expected a credential error, got {e:?}"),
        Ok(_) => panic!("an expired credential opened a stream"),
    }
    let dir = relay.stop().await;
    // Refused before dialing: the relay never saw a handshake.
    let events = audit_in(dir.path());
    assert!(auth_failures(&events).is_empty(), "{events:?}");
    Ok(())
}

#[tokio::test]
async fn expired_certificate_is_rejected_by_the_relay() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_ALL).await;
    let (issued, ca_pem, _) = expired_client(&relay, "late")?;
    // Our own TLS, to get past the client's expiry check: the relay must
    // reject the certificate by itself.
    let key = issued.key_pem.as_deref().expect("generated key");
    let tls = relay_net::tls::client_config(&issued.cert_pem, key, &ca_pem)?;
    let endpoint = relay_net::endpoint::client(relay.addr, Arc::new(tls), &Transport::client())?;
    let err = guard("rejection of the expired certificate", async {
        match endpoint.connect(relay.addr, "127.0.0.1")?.await {
            // The client's half of the handshake may complete before the
            // relay has looked at our certificate; the close follows.
            Ok(conn) => Ok::<_, anyhow::Error>(conn.closed().await),
            Err(e) => Ok(e),
        }
    })
    .await?;
    let text = describe(&err);
    assert!(text.contains("expired"), "{text} ({err:?})");
    match &err {
        // CRYPTO_ERROR with TLS alert certificate_expired (45).
        quinn::ConnectionError::ConnectionClosed(close) => {
            assert_eq!(u64::from(close.error_code), 0x100 + 45, "{err:?}");
        }
        other => panic!("expected the relay to close the connection, got {other:?}"),
    }
    endpoint.close(0u32.into(), b"");
    let dir = relay.stop().await;
    let events = audit_in(dir.path());
    let failed = auth_failures(&events);
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(failed[0]["code"], "UNAUTHORIZED", "{events:?}");
    let reason = failed[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("handshake failed"), "{reason}");
    assert!(reason.to_lowercase().contains("expired"), "{reason}");
    Ok(())
}

#[tokio::test]
async fn revoked_client_is_refused_at_connect() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let mut relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let mallory = relay.client("mallory");
    relay.revoke(Role::Client, "mallory").await;
    let err = match guard("open", mallory.open(&dest("edge/echo"))).await {
        Err(e @ (OpenError::Dial(_) | OpenError::Stream(_))) => e,
        Err(e) => panic!("expected the connection to be refused, got {e:?}"),
        Ok(_) => panic!("a revoked client opened a stream"),
    };
    let text = err.to_string();
    assert!(text.contains("revoked"), "{text} ({err:?})");
    assert!(text.contains("mallory"), "{text} ({err:?})");
    // Others are unaffected.
    let ci = relay.client("ci");
    echoes(&ci, "edge/echo").await?;
    ci.close().await;
    mallory.close().await;
    agent.shutdown().await;
    let dir = relay.stop().await;
    let events = audit_in(dir.path());
    assert!(
        auth_failures(&events)
            .iter()
            .any(|e| e["code"] == "REVOKED" && e["peer"] == "client/mallory"),
        "{events:?}"
    );
    Ok(())
}

/// A client credential of relay `b`, pointed at relay `a`.
fn foreign_credential(a: &TestRelay, b: &TestRelay) -> anyhow::Result<Credential> {
    let mut from_b = Credential::load(&b.issue(Role::Client, "alice"), None)?.credential;
    from_b.relay = vec![a.addr.to_string()];
    Ok(from_b)
}

/// Opens through relay `a` presenting `b`'s certificate while trusting
/// `a`'s CA: `a` must reject the certificate. Returns the client's error.
async fn open_with_foreign_certificate(a: &TestRelay, b: &TestRelay) -> anyhow::Result<OpenError> {
    let mixed = Credential {
        ca: std::fs::read_to_string(a.paths().ca_cert())?,
        ..foreign_credential(a, b)?
    };
    let client = Client::new(save_and_load(a, &mixed, "client-alice-mixed.cred")?);
    let err = match guard("open", client.open(&dest("edge/echo"))).await {
        Err(e @ (OpenError::Dial(_) | OpenError::Stream(_))) => e,
        Err(e) => panic!("expected the connection to be refused, got {e:?}"),
        Ok(_) => panic!("a certificate of another CA opened a stream"),
    };
    client.close().await;
    Ok(err)
}

#[tokio::test]
async fn credential_from_another_ca_is_refused() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let a = TestRelay::start(ALLOW_ALL).await;
    let b = TestRelay::start(ALLOW_ALL).await;

    // B's credential pointed at A: the client does not trust A's certificate.
    let client = Client::new(save_and_load(
        &b,
        &foreign_credential(&a, &b)?,
        "client-alice-to-a.cred",
    )?);
    match guard("open", client.open(&dest("edge/echo"))).await {
        Err(OpenError::Dial(e)) => {
            let text = e.to_string();
            assert!(text.contains("not trusted"), "{text} ({e:?})");
        }
        Err(e) => panic!("expected a dial error, got {e:?}"),
        Ok(_) => panic!("a credential of another CA opened a stream"),
    }
    client.close().await;

    // Trusting A's CA but presenting B's certificate: A rejects it.
    let err = open_with_foreign_certificate(&a, &b).await?;
    let text = err.to_string();
    assert!(
        text.contains("trust") || text.contains("certificate"),
        "{text} ({err:?})"
    );

    b.shutdown().await;
    let dir = a.stop().await;
    let events = audit_in(dir.path());
    let failed = auth_failures(&events);
    // One handshake aborted by our client, one rejected by the relay.
    assert_eq!(failed.len(), 2, "{events:?}");
    assert!(
        failed.iter().all(|e| e["code"] == "UNAUTHORIZED"),
        "{events:?}"
    );
    assert!(
        failed.iter().any(|e| {
            let reason = e["reason"].as_str().unwrap_or_default();
            reason.contains("invalid peer certificate") && !reason.contains("aborted by peer")
        }),
        "{events:?}"
    );
    Ok(())
}

/// Two CAs minted for the same relay name (two test relays on 127.0.0.1, or
/// `init --force` in production) have the same subject: the relay's verifier
/// fails with BadSignature, not UnknownIssuer, and rustls sends the alert
/// decrypt_error (51), which `describe` does not translate.
#[tokio::test]
async fn certificate_of_a_same_named_ca_is_reported_as_untrusted() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let a = TestRelay::start(ALLOW_ALL).await;
    let b = TestRelay::start(ALLOW_ALL).await;
    let err = open_with_foreign_certificate(&a, &b).await?;
    let text = err.to_string();
    assert!(
        text.contains("does not trust our certificate"),
        "{text} ({err:?})"
    );
    b.shutdown().await;
    a.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn relay_unreachable() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_ALL).await;
    // A loopback UDP socket nobody reads: the handshake gets no answer.
    let mute = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let mut credential = relay.credential(Role::Client, "ci").credential;
    credential.relay = vec![mute.local_addr()?.to_string()];
    let loaded = save_and_load(&relay, &credential, "client-ci-mute.cred")?;
    let client = Client::new(loaded).with_connect_timeout(Duration::from_millis(500));
    match guard("open", client.open(&dest("edge/echo"))).await {
        Err(OpenError::Dial(e @ DialError::Unreachable { .. })) => {
            let text = e.to_string();
            assert!(text.contains("no answer"), "{text}");
            assert!(text.contains(&mute.local_addr()?.to_string()), "{text}");
        }
        Err(e) => panic!("expected an unreachable relay, got {e:?}"),
        Ok(_) => panic!("opened a stream through a socket that never answers"),
    }
    client.close().await;
    drop(mute);
    relay.shutdown().await;
    Ok(())
}

/// Writes `junk` on a fresh stream of `conn` and returns the code the relay
/// reset the stream with.
async fn reset_code_for(conn: &quinn::Connection, junk: &[u8]) -> anyhow::Result<u64> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(junk).await?;
    let mut buf = [0u8; 64];
    match guard("stream reset", recv.read(&mut buf)).await {
        Err(quinn::ReadError::Reset(code)) => Ok(code.into_inner()),
        other => panic!("expected a stream reset, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_first_frame_resets_only_that_stream() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let client = relay.client("ci");
    let conn = guard("connect", client.connection()).await?;
    let violation = u64::from(ErrorCode::PROTOCOL_VIOLATION.0);

    // An unknown frame type.
    let code = reset_code_for(&conn, &[0xEE, 0, 0, 0, 1, 0]).await?;
    assert_eq!(code, violation, "{:?}", ErrorCode(code as u32));
    assert!(conn.close_reason().is_none());
    echoes(&client, "edge/echo").await?;

    // An Open header announcing 4 GiB.
    let code = reset_code_for(&conn, &[0x10, 0xff, 0xff, 0xff, 0xff]).await?;
    assert_eq!(code, violation, "{:?}", ErrorCode(code as u32));
    assert!(conn.close_reason().is_none());
    echoes(&client, "edge/echo").await?;

    // Still the same connection all along.
    let now = guard("connection", client.connection()).await?;
    assert_eq!(now.stable_id(), conn.stable_id());
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn client_may_not_send_forwarded() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let client = relay.client("ci");
    let conn = guard("connect", client.connection()).await?;
    let (mut send, recv) = conn.open_bi().await?;
    let forged = Frame::from(Forwarded {
        caller: Identity::new(Role::Client, Name::try_from("admin")?),
        open: dest("edge/echo").open(),
    });
    send.write_all(&forged.to_bytes()).await?;
    let mut reader = FrameReader::new(recv);
    match guard("answer", reader.read()).await? {
        Some(Frame::Refused(r)) => {
            assert_eq!(r.code, ErrorCode::UNAUTHORIZED, "{r:?}");
            assert!(
                r.message.contains("only the relay may name a caller"),
                "{r:?}"
            );
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    // The connection survives a refused stream.
    echoes(&client, "edge/echo").await?;
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn client_certificate_cannot_register_as_agent() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_ALL).await;
    let client = relay.client("alice");
    let conn = guard("connect", client.connection()).await?;
    let (mut send, recv) = conn.open_bi().await?;
    let register = Frame::from(Register {
        version: PROTOCOL_VERSION,
        capabilities: Capabilities::TCP,
        targets: vec!["db".parse()?],
        prefix: None,
    });
    send.write_all(&register.to_bytes()).await?;
    let mut reader = FrameReader::new(recv);
    match guard("answer", reader.read()).await? {
        Some(Frame::Refused(r)) => {
            assert_eq!(r.code, ErrorCode::PROTOCOL_VIOLATION, "{r:?}");
            assert!(
                r.message.contains("must start with Open, List or Direct"),
                "{r:?}"
            );
            assert!(r.message.contains("Register"), "{r:?}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(relay.registry.instances(&"alice".parse()?), 0);
    let r = refused(&client, "alice/db").await?;
    assert_eq!(r.code, ErrorCode::UNKNOWN_AGENT, "{r:?}");
    client.close().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn agent_certificate_cannot_act_as_client() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    // The agent's credential in a client's hands.
    let impostor = Client::new(relay.credential(Role::Agent, "edge"));
    let conn = guard("connect", impostor.connection()).await?;
    let err = match guard("open", impostor.open(&dest("edge/echo"))).await {
        Err(e) => e,
        Ok(_) => panic!("an agent certificate opened a client stream"),
    };
    let text = err.to_string();
    assert!(
        text.contains("Register") || text.contains("protocol"),
        "{text} ({err:?})"
    );
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(
                close.error_code.into_inner(),
                u64::from(ErrorCode::PROTOCOL_VIOLATION.0),
                "{close:?}"
            );
        }
        other => panic!("expected the relay to close the connection, got {other:?}"),
    }
    // The impostor registered nothing; the real agent is still there.
    assert_eq!(relay.registry.instances(&"edge".parse()?), 1);
    let ci = relay.client("ci");
    echoes(&ci, "edge/echo").await?;
    ci.close().await;
    impostor.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// A revocation list that vanishes or is emptied while revocations are in
/// force (deleted, truncated to nothing, half copied) does not readmit the
/// revoked: the relay keeps the list in force until one says
/// `revoked = []` (what `unrevoke` of the last entry writes).
#[tokio::test]
async fn a_vanished_or_emptied_revocation_list_fails_closed() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let mut relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("db", echo)]).await;
    relay.revoke(Role::Client, "bob").await;
    let mut reloads = relay.reloads();
    let path = relay.paths().revoked();
    let bob_is_refused = || async {
        let bob = relay.client("bob");
        let refused = bob
            .open(&dest("edge/db"))
            .await
            .is_err_and(|e| e.to_string().contains("revoked"));
        bob.close().await;
        anyhow::Ok(refused)
    };
    assert!(bob_is_refused().await?);
    for (what, text) in [
        ("deleted", None),
        ("emptied", Some("")),
        ("comment only", Some("# revoked\n")),
    ] {
        reloads.borrow_and_update();
        match text {
            None => std::fs::remove_file(&path)?,
            Some(text) => std::fs::write(&path, text)?,
        }
        guard("reload", reloads.changed()).await?;
        assert!(bob_is_refused().await?, "{what}: bob was readmitted");
    }
    reloads.borrow_and_update();
    let target = relay_server::cmd::revoke::Target::Identity(Role::Client, Name::try_from("bob")?);
    std::fs::write(&path, "")?;
    relay_server::cmd::revoke::revoke(&relay.paths(), target.clone())?;
    relay_server::cmd::revoke::unrevoke(&relay.paths(), &target)?;
    assert!(std::fs::read_to_string(&path)?.contains("revoked = []"));
    guard("reload", reloads.changed()).await?;
    echoes(&relay.client("bob"), "edge/db").await?;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}
