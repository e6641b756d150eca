//! The fault test of `faults.rs` again, with the faults made by the kernel
//! instead of an in-process proxy: 5 % random loss and a 2 s partition,
//! installed with nftables on `lo` of a private network namespace, during a
//! 64 MiB byte-exact transfer through a real relay, agent and client.
//!
//! The outer test re-runs this test binary under `unshare -rn` (a new user
//! and network namespace, which needs no privilege beyond user namespaces);
//! inside, the inner test brings `lo` up and installs the rules. Everything
//! it creates disappears with the namespace when the process exits, so a
//! crash can never leave a rule behind on the host. Where `unshare`, `ip`
//! or `nft` cannot be used, the test says so and passes (skipped).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::{Rng, SeedableRng};
use relay_tests::{hashing_sink, TestRelay, ALLOW_ALL};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

/// Set in the environment of the re-run test binary inside the namespace.
const INNER: &str = "RELAY_TESTS_INSIDE_NETNS";

/// The nftables table the inner test owns (inside its namespace only).
const TABLE: &str = "relay_chaos";

#[tokio::test]
async fn nftables_loss_and_partition_in_a_private_namespace_end_byte_exact() -> anyhow::Result<()> {
    crate::outer_namespace_test(module_path!(), INNER, "-rn", "ip link set lo up").await
}

/// The sum of `counter packets N` of a chain's rules whose text contains `tag`.
async fn counted(chain: &str, tag: &str) -> anyhow::Result<u64> {
    let listing = crate::nft(&["list", "chain", "inet", TABLE, chain]).await?;
    Ok(listing
        .lines()
        .filter(|l| l.contains(tag))
        .filter_map(|l| {
            let rest = l.split("counter packets ").nth(1)?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs only inside the namespace the test above creates"]
async fn in_namespace() -> anyhow::Result<()> {
    // Only ever touch nftables inside a namespace of our own: the outer test
    // sets INNER, and a fresh namespace has nothing but `lo`.
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

    let sink = hashing_sink().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("sink", sink)]).await;
    let client = Arc::new(relay.client("ci"));
    let (fwd, _stop) = relay_tests::forward(client.clone(), "edge/sink").await;
    let port = relay.addr.port().to_string();

    // Loss: 5 % of the datagrams to and from the relay's port, on input
    // (a drop on output would make sendto fail, which is not a loss).
    // Partition: every such datagram, in a chain that is empty until cut.
    let rules = format!(
        "table inet {TABLE} {{
  chain partition {{ type filter hook input priority -20; policy accept; }}
  chain loss {{
    type filter hook input priority -10; policy accept;
    udp dport {port} counter comment \"seen\"
    udp sport {port} counter comment \"seen\"
    udp dport {port} numgen random mod 100 < 5 counter drop comment \"lost\"
    udp sport {port} numgen random mod 100 < 5 counter drop comment \"lost\"
  }}
}}
"
    );
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), rules)?;
    crate::nft(&["-f", &file.path().display().to_string()]).await?;

    let mut data = vec![0u8; 64 << 20];
    rand::rngs::StdRng::seed_from_u64(7).fill_bytes(&mut data);
    let expected = Sha256::digest(&data);
    let mut tcp = TcpStream::connect(fwd).await?;
    let started = std::time::Instant::now();
    let transfer = async {
        let (mut r, mut w) = tcp.split();
        let send = async {
            for (i, chunk) in data.chunks(1 << 20).enumerate() {
                w.write_all(chunk).await?;
                if i == 16 {
                    // A 2 s partition a quarter of the way in (the fault's
                    // length, not a synchronisation).
                    for dir in ["dport", "sport"] {
                        crate::nft(&[
                            "add",
                            "rule",
                            "inet",
                            TABLE,
                            "partition",
                            "udp",
                            dir,
                            &port,
                            "counter",
                            "drop",
                            "comment",
                            "\"cut\"",
                        ])
                        .await?;
                    }
                    tokio::spawn(async {
                        #[allow(clippy::disallowed_methods)]
                        // the fault itself: a partition this long
                        tokio::time::sleep(Duration::from_secs(2)).await; // sleep-ok: the injected partition's length
                        crate::nft(&["flush", "chain", "inet", TABLE, "partition"]).await
                    });
                }
            }
            w.shutdown().await?;
            anyhow::Ok(())
        };
        let mut reply = Vec::new();
        let (sent, got) = tokio::join!(send, r.read_to_end(&mut reply));
        sent?;
        got?;
        anyhow::Ok(reply)
    };
    let reply = tokio::time::timeout(Duration::from_secs(180), transfer)
        .await
        .context("64 MiB under nftables loss did not finish in 180 s")??;
    let took = started.elapsed();
    assert_eq!(
        reply.as_slice(),
        expected.as_slice(),
        "sink saw different bytes"
    );
    let seen = counted("loss", "\"seen\"").await?;
    let lost = counted("loss", "\"lost\"").await?;
    println!(
        "64 MiB byte-exact in {took:.1?} through nftables loss: {lost} of {seen} datagrams \
         dropped ({:.1} %), plus a 2 s partition",
        100.0 * lost as f64 / seen.max(1) as f64
    );
    assert!(
        lost > 0 && seen > lost,
        "nftables injected loss: {lost} of {seen}"
    );

    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}
