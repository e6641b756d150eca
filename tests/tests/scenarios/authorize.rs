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
