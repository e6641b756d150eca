//! Relay instances found by name (issue #14): one name, three addresses
//! (as a Kubernetes headless Service answers), three relay processes. The
//! agent holds every instance and says so in `/metrics`; a client given the
//! name gets through quickly with the first address black-holed by
//! nftables.
//!
//! The name must resolve without the machine's resolver, and nftables may
//! touch only a namespace of our own: the outer test re-runs this test
//! binary under `unshare -rnm` (user, network and mount namespaces), which
//! bind-mounts a hosts file naming `relays.test` over `/etc/hosts` and
//! brings `lo` up. Where that cannot be done, the test says so and passes
//! (skipped).

use std::process::Stdio;
use std::time::{Duration, Instant};

use relay_tests::launch;
use relay_tests::{guard, http_get, tcp_echo, ALLOW_ALL};
use tokio::process::Command;

/// Set in the environment of the re-run test binary inside the namespace.
const INNER: &str = "RELAY_TESTS_INSIDE_DISCOVERY_NETNS";

/// The name, and what it resolves to inside the namespace.
const NAME: &str = "relays.test";
const ADDRESSES: [&str; 3] = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
const PORT: u16 = 4433;

/// The agent's admin endpoint inside the namespace (nothing else runs there).
const AGENT_ADMIN: &str = "127.0.0.1:9091";

/// Why the namespace cannot be made here, if it cannot.
async fn namespace_unusable(hosts: &std::path::Path) -> Option<String> {
    let probe = Command::new("unshare")
        .args([
            "-rnm",
            "sh",
            "-c",
            r#"mount --bind "$0" /etc/hosts && ip link set lo up && nft add table inet relay_probe && getent hosts relays.test"#,
        ])
        .arg(hosts)
        .output()
        .await;
    match probe {
        Err(e) => Some(format!("cannot run unshare: {e}")),
        Ok(out) if !out.status.success() => Some(format!(
            "`unshare -rnm` + `mount --bind` + `ip` + `nft` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

#[tokio::test]
async fn an_agent_holds_every_instance_a_name_resolves_to() -> anyhow::Result<()> {
    if std::env::var_os(INNER).is_some() {
        return Ok(()); // already inside: the inner test does the work
    }
    let hosts = tempfile::NamedTempFile::new()?;
    let lines: String = ADDRESSES.iter().map(|a| format!("{a} {NAME}\n")).collect();
    std::fs::write(hosts.path(), format!("127.0.0.1 localhost\n{lines}"))?;
    if let Some(why) = namespace_unusable(hosts.path()).await {
        println!("SKIPPED: no private namespace with a hosts file and nftables here: {why}");
        return Ok(());
    }
    crate::rerun_in_namespace(
        module_path!(),
        "in_namespace",
        INNER,
        "-rnm",
        r#"mount --bind "$2" /etc/hosts && ip link set lo up"#,
        &[hosts.path().as_os_str()],
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
    let links = Command::new("ip").args(["-o", "link"]).output().await?;
    let links = String::from_utf8_lossy(&links.stdout);
    anyhow::ensure!(
        links.lines().count() == 1 && links.contains(": lo:"),
        "not in a private network namespace: {links}"
    );
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let dir = tempfile::tempdir()?;
    let status = Command::new(&programs.server)
        .args(["init", "--name", NAME, "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "relay-server init: {status}");
    std::fs::write(dir.path().join("policy.toml"), ALLOW_ALL)?;
    let mut relays = Vec::new();
    let mut addrs = Vec::new();
    for (i, ip) in ADDRESSES.iter().enumerate() {
        let audit = dir.path().join(format!("audit-{i}.jsonl"));
        let audit = audit.to_string_lossy().into_owned();
        let listen = format!("{ip}:{PORT}");
        let relay =
            launch::RelayInstance::start(&programs, dir.path(), &listen, &["--audit-log", &audit])
                .await?;
        addrs.push(relay.addr.to_string());
        relays.push(relay);
    }
    let name = [format!("{NAME}:{PORT}")];
    let agent_cred = launch::issue_for(&programs, dir.path(), "agent", "edge", &name).await?;
    let client_cred = launch::issue_for(&programs, dir.path(), "client", "ci", &name).await?;
    let echo = tcp_echo().await;
    let args = [
        "--expose".to_owned(),
        format!("echo={echo}"),
        "--metrics".to_owned(),
        AGENT_ADMIN.to_owned(),
    ];
    let mut agent = launch::spawn_agent(&programs, &agent_cred, &args)?;
    guard(
        "the agent registers with every address of the name",
        launch::registered_with_all(&mut agent, &addrs),
    )
    .await?;
    let admin = AGENT_ADMIN.parse()?;
    let (status, metrics) = http_get(admin, "/metrics").await;
    anyhow::ensure!(status == 200, "/metrics: {status}");
    for addr in &addrs {
        let line = format!("agent_relay_registered{{relay=\"{addr}\"}} 1");
        anyhow::ensure!(metrics.contains(&line), "no `{line}` in:\n{metrics}");
    }
    anyhow::ensure!(metrics.contains("agent_relays_registered 3"), "{metrics}");
    let (ready, _) = http_get(admin, "/readyz").await;
    anyhow::ensure!(ready == 200, "/readyz: {ready}");

    // The first address a client tries now swallows every packet.
    let rules = format!(
        "table inet relay_discovery {{
  chain input {{ type filter hook input priority -20; policy accept;
    ip daddr {} udp dport {PORT} drop
  }}
}}",
        ADDRESSES[0]
    );
    let file = dir.path().join("rules.nft");
    std::fs::write(&file, rules)?;
    crate::nft(&["-f", &file.to_string_lossy()]).await?;

    let began = Instant::now();
    let listed = Command::new(&programs.client)
        .arg("--credential")
        .arg(&client_cred)
        .arg("list")
        .output();
    let listed = guard("list", listed).await?;
    let took = began.elapsed();
    anyhow::ensure!(
        listed.status.success() && String::from_utf8_lossy(&listed.stdout).contains("edge"),
        "list: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    println!("{NAME} names three relays, the first black-holed by nftables: relay-client list took {took:?}");
    assert!(took < Duration::from_secs(5), "list took {took:?}");
    drop(relays);
    Ok(())
}
