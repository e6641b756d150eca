//! What the relay's authorization says to a person: an agent the policy
//! does not name for the caller (a typo, or one it may not use) is
//! described the same whether or not it exists, with the way to find the
//! agents the caller may use; the audit line carries the typed code.

use proto::ErrorCode;
use relay_client::OpenError;
use relay_tests::{guard, tcp_echo, TestRelay};

const POLICY: &str = r#"
[[allow]]
client = "alice"
agent = "edge"
targets = ["echo"]
"#;

#[tokio::test]
async fn an_agent_the_policy_does_not_name_is_unknown_or_not_allowed() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(POLICY).await;
    let echo = tcp_echo().await;
    let mut agent = relay.agent("edge", &[("echo", echo)]).await;
    agent.wait_registered().await;
    let alice = relay.client("alice");
    let mut messages = Vec::new();
    // A typo'd agent (never connected) and a real one alice is not granted
    // read the same, so the refusal does not reveal which agents exist.
    for to in ["egde/echo", "edge/other"] {
        match guard("open", alice.open(&to.parse().map_err(anyhow::Error::msg)?)).await {
            Err(OpenError::Refused(r)) => {
                assert_eq!(r.code, ErrorCode::UNAUTHORIZED, "{to}: {r}");
                messages.push(r.message);
            }
            other => panic!("open {to}: expected a refusal, got {other:?}"),
        }
    }
    assert!(
        messages[0].contains("no agent named egde is known to this relay")
            && messages[0].contains("relay-client list"),
        "{}",
        messages[0]
    );
    // An agent the policy names, with a target it does not grant: the
    // message names the target instead.
    assert!(
        messages[1].contains("may not open tcp to edge/other"),
        "{}",
        messages[1]
    );
    let codes: Vec<_> = relay
        .audit_events()
        .into_iter()
        .filter(|e| e["event"] == "refused")
        .map(|e| e["code"].clone())
        .collect();
    assert_eq!(codes, ["UNAUTHORIZED", "UNAUTHORIZED"]);
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// Two agents with one name form a pool; when they expose different
/// targets, each open goes to an instance that exposes its target (it used
/// to alternate between the two and fail every other time).
#[tokio::test]
async fn a_pool_routes_each_target_to_an_instance_that_exposes_it() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(relay_tests::ALLOW_ALL).await;
    let db = relay.agent("pool", &[("db", echo)]).await;
    let web = relay.agent("pool", &[("web", echo)]).await;
    relay.wait_instances("pool", 2).await;
    let client = relay.client("ci");
    // Each target twice in a row: the pool's round robin moves on at every
    // open, so an open that ignored the target would fail one of the two.
    for round in 0..4 {
        for to in ["pool/db", "pool/db", "pool/web", "pool/web"] {
            let mut s = guard("open", client.open(&relay_tests::dest(to))).await?;
            s.send.write_all(b"x").await?;
            s.send.finish()?;
            let back = guard("echo", s.recv.read_to_end(64)).await?;
            assert_eq!(back, b"x", "{to}, round {round}");
        }
    }
    match guard("open", client.open(&relay_tests::dest("pool/ssh"))).await {
        Err(OpenError::Refused(r)) => {
            assert_eq!(r.code, ErrorCode::TARGET_NOT_EXPOSED, "{r}");
            assert!(r.message.contains("does not expose target ssh"), "{r}");
        }
        other => panic!("pool/ssh: expected a refusal, got {other:?}"),
    }
    client.close().await;
    db.shutdown().await;
    web.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// A group the operator writes into a credential (`issue --group`) grants
/// what the policy gives the group, and nothing to a client outside it.
#[tokio::test]
async fn a_group_in_an_issued_credential_grants_what_the_policy_gives_it() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay =
        TestRelay::start("[[allow]]\ngroup = \"deploy\"\nagent = \"edge\"\ntargets = [\"echo\"]\n")
            .await;
    let echo = tcp_echo().await;
    let mut agent = relay.agent("edge", &[("echo", echo)]).await;
    agent.wait_registered().await;
    let (credential, _) = relay_server::cmd::issue::Issue {
        paths: relay.paths(),
        role: proto::Role::Client,
        name: "ci".parse()?,
        relay: vec![relay.addr.to_string()],
        ttl: None,
        csr: None,
        groups: vec!["deploy".parse()?],
    }
    .run()?;
    let path = relay.dir.path().join("ci.cred");
    credential.save(&path)?;
    let ci = relay_client::Client::new(relay_net::credential::Credential::load(&path, None)?)
        .end_to_end(relay_client::direct::EndToEnd::Off);
    assert!(guard(
        "open",
        ci.open(&"edge/echo".parse().map_err(anyhow::Error::msg)?)
    )
    .await
    .is_ok());
    let outsider = relay.client("other");
    match guard(
        "open",
        outsider.open(&"edge/echo".parse().map_err(anyhow::Error::msg)?),
    )
    .await
    {
        Err(OpenError::Refused(r)) => assert_eq!(r.code, ErrorCode::UNAUTHORIZED, "{r}"),
        other => panic!("a client outside the group opened: {other:?}"),
    }
    Ok(())
}
