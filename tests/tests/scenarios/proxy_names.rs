//! A relay name that resolves only at the HTTP proxy, as on corporate
//! networks that resolve outside names nowhere else: agents and clients
//! hand the name to the proxy and reach the relay over the TCP carrier,
//! in `--transport auto` too. Inside a private namespace (`unshare -rnm`):
//! tinyproxy alone sees a hosts file that names the relay; the agent and
//! the client see none, and no resolver answers there.

use std::process::Stdio;

use relay_tests::launch::{self, RelayInstance};
use relay_tests::{guard, tcp_echo, TinyProxy, TinyProxyConfig};
use tokio::process::Command;

/// Set in the environment of the re-run test binary inside the namespace.
const INNER: &str = "RELAY_TESTS_INSIDE_PROXY_NAMES_NETNS";

/// The relay's name, known to the proxy only.
const NAME: &str = "relay.corp.test";

const PORT: u16 = 4433;

#[tokio::test]
async fn a_relay_name_only_the_proxy_resolves_is_reached_through_it() -> anyhow::Result<()> {
    if TinyProxy::missing() {
        return Ok(());
    }
    crate::outer_namespace_test(module_path!(), INNER, "-rnm", "ip link set lo up").await
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
    let entry = [format!("{NAME}:{PORT}")];
    anyhow::ensure!(
        tokio::net::lookup_host(&entry[0]).await.is_err(),
        "{NAME} resolves here: the test needs a name only the proxy knows"
    );
    let dir = tempfile::tempdir()?;
    let status = Command::new(&programs.server)
        .args(["init", "--name", NAME, "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "relay-server init: {status}");
    std::fs::write(dir.path().join("policy.toml"), relay_tests::ALLOW_ALL)?;
    let _relay =
        RelayInstance::start(&programs, dir.path(), &format!("127.0.0.1:{PORT}"), &[]).await?;
    let proxy = TinyProxy::start(TinyProxyConfig {
        connect_ports: vec![PORT],
        basic_auth: None,
        hosts: Some(format!("127.0.0.1 localhost\n127.0.0.1 {NAME}\n")),
    })
    .await?;
    let agent_cred = launch::issue_for(&programs, dir.path(), "agent", "edge", &entry).await?;
    let client_cred = launch::issue_for(&programs, dir.path(), "client", "ci", &entry).await?;
    let echo = tcp_echo().await;

    // Without a proxy the name does not resolve, and the error says so.
    let alone = guard(
        "relay-client list without a proxy",
        Command::new(&programs.client)
            .arg("--credential")
            .arg(&client_cred)
            .arg("list")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .stdin(Stdio::null())
            .output(),
    )
    .await?;
    let err = String::from_utf8_lossy(&alone.stderr);
    assert!(!alone.status.success(), "{err}");
    assert!(err.contains("cannot resolve relay address"), "{err}");

    // The agent through --proxy, transport auto: over the carrier.
    let mut agent = launch::spawn_agent(
        &programs,
        &agent_cred,
        &[
            "--proxy".to_owned(),
            proxy.url(),
            "--expose".to_owned(),
            format!("echo={echo}"),
        ],
    )?;
    let registered = agent.line_with(&["registered with relay"]).await?;
    assert!(registered.contains("transport=tcp"), "{registered}");

    // The client through HTTPS_PROXY, transport auto.
    let connected = crate::tcp_carrier::client_via_proxy(
        &programs,
        &client_cred,
        &proxy.url(),
        &["connect", "edge/echo"],
        b"named by the proxy",
    )
    .await?;
    assert!(
        connected.status.success(),
        "{}",
        String::from_utf8_lossy(&connected.stderr)
    );
    assert_eq!(connected.stdout, b"named by the proxy");
    let listed =
        crate::tcp_carrier::client_via_proxy(&programs, &client_cred, &proxy.url(), &["list"], b"")
            .await?;
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("edge") && listed.contains("over tcp"),
        "{listed}"
    );
    Ok(())
}
