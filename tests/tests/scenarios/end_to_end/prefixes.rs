//! Who may route which connection IDs through the relay, and how many
//! paths: a client cannot take an agent's or another client's prefix (a new
//! connection of the same certificate can: its owner dialled again), a
//! repeated `Direct` replaces the path it repeats, and each client and
//! agent has a cap of live paths.

use proto::{CidPrefix, Direct, ErrorCode, Frame};
use relay_net::framed::{write_frame, FrameReader};
use relay_tests::{guard, tcp_echo, TestRelay, ALLOW_ALL};

/// A `Direct` stream the relay has answered: the stream (its life is the
/// path's) and the answer.
struct Asked {
    send: quinn::SendStream,
    reader: FrameReader,
    answer: Frame,
}

impl Asked {
    fn prefix(&self) -> CidPrefix {
        match &self.answer {
            Frame::Path(p) => p.prefix,
            other => panic!("expected Path, got {other:?}"),
        }
    }

    fn refusal(&self) -> &proto::Refused {
        match &self.answer {
            Frame::Refused(r) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Ends the path and waits until the relay has removed it (it finishes
    /// its side once the routes are gone and the end is on record).
    async fn end(mut self) -> anyhow::Result<()> {
        self.send.finish()?;
        while guard("path end", self.reader.read()).await?.is_some() {}
        Ok(())
    }
}

async fn ask(conn: &quinn::Connection, agent: &str, prefix: CidPrefix) -> anyhow::Result<Asked> {
    let (mut send, recv) = conn.open_bi().await?;
    let direct = Direct {
        agent: agent.parse()?,
        prefix,
    };
    write_frame(&mut send, direct).await?;
    let mut reader = FrameReader::new(recv);
    let Some(answer) = guard("answer", reader.read()).await? else {
        anyhow::bail!("no answer to Direct for {agent}");
    };
    Ok(Asked {
        send,
        reader,
        answer,
    })
}

#[tokio::test]
async fn a_client_cannot_take_another_peers_prefix() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let edge = relay.agent("edge", &[("echo", echo)]).await;
    let core = relay.agent("core", &[("echo", echo)]).await;
    let alice = relay.client("alice");
    let alice_conn = guard("alice connects", alice.connection()).await?;
    let alice_prefix = relay_net::direct::random_prefix();
    // Alice learns edge's prefix from a path she then ends.
    let path = ask(&alice_conn, "edge", alice_prefix).await?;
    let edge_prefix = path.prefix();
    path.end().await?;
    // Mallory asks for paths with edge's prefix as her own: to another
    // agent, and to edge itself. Both would make the relay route datagrams
    // meant for edge to her.
    let mallory = relay.client("mallory");
    let conn = guard("mallory connects", mallory.connection()).await?;
    for agent in ["core", "edge"] {
        let squat = ask(&conn, agent, edge_prefix).await?;
        let r = squat.refusal();
        assert_eq!(r.code, ErrorCode::UNAUTHORIZED, "{agent}: {}", r.message);
        assert!(r.message.contains("taken"), "{}", r.message);
    }
    // Nor Alice's, while her path lives.
    let _alices = ask(&alice_conn, "edge", alice_prefix).await?;
    let squat = ask(&conn, "core", alice_prefix).await?;
    assert_eq!(squat.refusal().code, ErrorCode::UNAUTHORIZED);
    // Her own fresh prefix is fine.
    let fine = ask(&conn, "core", relay_net::direct::random_prefix()).await?;
    fine.prefix();
    mallory.close().await;
    alice.close().await;
    edge.shutdown().await;
    core.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_new_connection_of_the_same_certificate_takes_its_prefix_over() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let edge = relay.agent("edge", &[("echo", echo)]).await;
    // A client whose relay connection the relay still holds, while the
    // client has given it up (a partition) and dialled again.
    let alice = relay.credential(proto::Role::Client, "alice");
    let first = relay_client::Client::new(alice.clone()).end_to_end(false);
    let first_conn = guard("first connection", first.connection()).await?;
    let prefix = relay_net::direct::random_prefix();
    let mut old = ask(&first_conn, "edge", prefix).await?;
    old.prefix();
    // Another certificate of the same name may not take it...
    let other = relay.client("alice");
    let other_conn = guard("other certificate", other.connection()).await?;
    let squat = ask(&other_conn, "edge", prefix).await?;
    assert_eq!(squat.refusal().code, ErrorCode::UNAUTHORIZED);
    // ...the same certificate on a new connection does, and the old path
    // ends.
    let again = relay_client::Client::new(alice).end_to_end(false);
    let again_conn = guard("new connection", again.connection()).await?;
    let new = ask(&again_conn, "edge", prefix).await?;
    new.prefix();
    assert!(
        guard("the old path ends", old.reader.read())
            .await?
            .is_none(),
        "the old path's Direct stream ends"
    );
    let audit = relay.audit_events();
    assert!(
        audit
            .iter()
            .any(|e| e["event"] == "direct_close" && e["reason"] == "replaced by a newer Direct"),
        "{audit:?}"
    );
    first.close().await;
    other.close().await;
    again.close().await;
    edge.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn paths_are_capped_per_client_and_agent_and_a_repeat_replaces() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start_with(ALLOW_ALL, |c| {
        c.limits.direct_per_client = 2;
        c.limits.direct_per_agent = 2;
    })
    .await;
    let mut agents = Vec::new();
    for name in ["edge", "core", "far"] {
        agents.push(relay.agent(name, &[("echo", echo)]).await);
    }
    let ci = relay.client("ci");
    let conn = guard("ci connects", ci.connection()).await?;
    let prefix = relay_net::direct::random_prefix();
    // The same connection asks for edge again: the new path replaces the
    // old one, whose stream the relay ends.
    let mut first = ask(&conn, "edge", prefix).await?;
    first.prefix();
    let mut latest = None;
    for _ in 0..5 {
        let again = ask(&conn, "edge", prefix).await?;
        again.prefix();
        latest = Some(again);
    }
    assert!(
        guard("replaced path ends", first.reader.read())
            .await?
            .is_none(),
        "the replaced path's stream stayed open"
    );
    let _ = first.send.finish();
    let _core = ask(&conn, "core", prefix).await?;
    _core.prefix();
    let far = ask(&conn, "far", prefix).await?;
    let r = far.refusal();
    assert_eq!(r.code, ErrorCode::LIMIT_EXCEEDED);
    assert!(
        r.message.contains("client ci already holds 2 direct paths"),
        "{}",
        r.message
    );
    // edge serves ci's one path (the repeats replaced it) and bob's; a
    // third client is over edge's cap.
    let bob = relay.client("bob");
    let bob_conn = guard("bob connects", bob.connection()).await?;
    let _bobs = ask(&bob_conn, "edge", relay_net::direct::random_prefix()).await?;
    _bobs.prefix();
    let carol = relay.client("carol");
    let carol_conn = guard("carol connects", carol.connection()).await?;
    let over = ask(&carol_conn, "edge", relay_net::direct::random_prefix()).await?;
    let r = over.refusal();
    assert_eq!(r.code, ErrorCode::LIMIT_EXCEEDED);
    assert!(
        r.message
            .contains("agent edge already serves 2 direct paths"),
        "{}",
        r.message
    );
    drop(latest);
    for client in [ci, bob, carol] {
        client.close().await;
    }
    for agent in agents {
        agent.shutdown().await;
    }
    relay.shutdown().await;
    Ok(())
}
