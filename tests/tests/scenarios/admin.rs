//! The relay's admin commands as an operator types them: the real
//! `relay-server` program on a relay directory, with a relay running on
//! 127.0.0.1 where the command's effect must show.

use std::path::Path;
use std::process::{Output, Stdio};

use anyhow::Context;
use proto::Role;
use relay_client::Client;
use relay_net::credential::Credential;
use relay_server::cmd::init::Init;
use relay_server::config::Paths;
use relay_tests::{guard, read_n, tcp_echo, Destination, TestRelay, ALLOW_ALL};
use tokio::process::Command;

/// Runs `relay-server ARGS --dir DIR`; returns its output whatever the status.
async fn server(dir: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let bins = relay_tests::programs!();
    let out = guard(
        "relay-server command",
        Command::new(&bins.server)
            .args(args)
            .arg("--dir")
            .arg(dir)
            .env_remove("RELAY_DIR")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await?;
    Ok(out)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Opens `edge/echo` and checks one echo.
async fn echoes(client: &Client) -> anyhow::Result<()> {
    let dest: Destination = "edge/echo".parse().map_err(anyhow::Error::msg)?;
    let mut opened = client.open(&dest).await?;
    opened.send.write_all(b"ping").await?;
    opened.send.finish()?;
    anyhow::ensure!(guard("echo", read_n(&mut opened.recv, 4)).await? == b"ping");
    Ok(())
}

#[tokio::test]
async fn issue_checks_the_relay_address() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    Init::new(Paths::from(dir.path()), vec!["127.0.0.1".into()]).run()?;
    let out_file = dir.path().join("bob.cred");
    let out_arg = out_file.display().to_string();
    for (relay, why) in [
        ("127.0.0.1", "the port is missing"),
        (
            "https://relay.example.com:4433",
            "drop the https:// (the relay speaks QUIC, not a URL scheme)",
        ),
        (
            "relay.example.com:4433/relay",
            "no path: only host and port",
        ),
    ] {
        let out = server(
            dir.path(),
            &[
                "issue", "client", "bob", "--relay", relay, "--out", &out_arg,
            ],
        )
        .await?;
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{relay}: {stderr}");
        assert!(
            stderr.contains(&format!("--relay {relay:?} is not HOST:PORT: {why}")),
            "{relay}: {stderr}"
        );
        assert!(!out_file.exists(), "{relay}: a credential was written");
    }
    let recorded = std::fs::read_to_string(Paths::from(dir.path()).issued()).unwrap_or_default();
    assert!(
        recorded.is_empty(),
        "refused issues were recorded: {recorded}"
    );
    Ok(())
}

#[tokio::test]
async fn revoking_a_name_never_issued_warns_and_still_revokes() -> anyhow::Result<()> {
    let relay = TestRelay::start(ALLOW_ALL).await;
    relay.issue(Role::Client, "alice");
    let out = server(relay.dir.path(), &["revoke", "client", "alcie"]).await?;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: client/alcie was never issued from this directory"),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).contains("revoked client/alcie"),
        "{out:?}"
    );
    let list = std::fs::read_to_string(relay.paths().revoked())?;
    assert!(list.contains("name = \"alcie\""), "{list}");

    // A name that was issued: no warning.
    let out = server(relay.dir.path(), &["revoke", "client", "alice"]).await?;
    assert!(out.status.success());
    assert!(!text(&out.stderr).contains("warning"), "{out:?}");
    relay.shutdown().await;
    Ok(())
}

/// `revoke client bob`, then `issue client bob`: a warning says the new file
/// is dead on arrival and how to revive it; `unrevoke` does, on the running
/// relay; `issued` lists bob's certificates with their state.
#[tokio::test]
async fn issue_warns_of_a_revoked_name_and_unrevoke_revives_it() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let dir = relay.dir.path();
    let addr = relay.addr.to_string();
    let mut reloads = relay.reloads();

    reloads.borrow_and_update();
    let out = server(dir, &["revoke", "client", "bob"]).await?;
    assert!(out.status.success(), "{out:?}");
    guard("revocation reload", reloads.changed()).await?;

    let cred = dir.join("bob.cred");
    let cred_arg = cred.display().to_string();
    let out = server(
        dir,
        &[
            "issue", "client", "bob", "--relay", &addr, "--out", &cred_arg,
        ],
    )
    .await?;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: client/bob is revoked since "),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "this credential will be refused until you run `relay-server unrevoke client bob --dir {}`",
            dir.display()
        )),
        "{stderr}"
    );
    let bob = Client::new(Credential::load(&cred, None)?);
    let err = echoes(&bob)
        .await
        .err()
        .context("a revoked name got through")?;
    assert!(err.to_string().contains("revoked"), "{err:#}");
    bob.close().await;

    let out = server(dir, &["issued"]).await?;
    let listing = text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let bob_lines: Vec<&str> = listing.lines().filter(|l| l.contains(" bob ")).collect();
    assert_eq!(bob_lines.len(), 1, "{listing}");
    assert!(bob_lines[0].ends_with("revoked (by name)"), "{listing}");

    reloads.borrow_and_update();
    let out = server(dir, &["unrevoke", "client", "bob"]).await?;
    assert!(out.status.success(), "{out:?}");
    assert!(
        text(&out.stdout).contains("unrevoked client/bob"),
        "{out:?}"
    );
    guard("revocation reload", reloads.changed()).await?;
    let bob = Client::new(Credential::load(&cred, None)?);
    echoes(&bob).await.context("bob is back after unrevoke")?;
    bob.close().await;

    let out = server(dir, &["issued"]).await?;
    let listing = text(&out.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.contains(" bob ") && l.ends_with("valid")),
        "{listing}"
    );
    let out = server(dir, &["unrevoke", "client", "bob"]).await?;
    assert!(out.status.success(), "{out:?}");
    assert!(
        text(&out.stdout).contains("client/bob was not revoked"),
        "{out:?}"
    );

    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// A policy that does not parse stops `run` with the parse error, printed
/// once (it used to be repeated by the error chain).
#[tokio::test]
async fn a_broken_policy_at_start_is_reported_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::from(dir.path());
    Init::new(paths.clone(), vec!["127.0.0.1".into()]).run()?;
    std::fs::write(
        paths.policy(),
        "[[allow]]\nclient = \"alice\"\ntargets = [\"db\"\n",
    )?;
    let out = server(dir.path(), &["run", "--listen", "127.0.0.1:0"]).await?;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("invalid policy").count(), 1, "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    Ok(())
}

/// `--help` of every subcommand has a headline and examples, and the
/// top-level help documents RUST_LOG.
#[tokio::test]
async fn every_subcommand_has_a_headline_and_examples() -> anyhow::Result<()> {
    let bins = relay_tests::programs!();
    let help = |args: Vec<&'static str>| {
        let bin = bins.server.clone();
        async move {
            let out = Command::new(bin).args(args).output().await?;
            anyhow::ensure!(out.status.success(), "{out:?}");
            Ok::<_, anyhow::Error>(text(&out.stdout))
        }
    };
    let top = help(vec!["--help"]).await?;
    assert!(top.contains("RUST_LOG"), "{top}");
    for sub in ["init", "issue", "issued", "run", "revoke", "unrevoke"] {
        let line = top
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{sub} ")))
            .with_context(|| format!("{sub} has no headline: {top}"))?;
        assert!(line.split_whitespace().count() > 2, "{line}");
        let text = help(vec![sub, "--help"]).await?;
        assert!(text.contains("Example"), "{sub}: {text}");
        assert!(
            text.contains(&format!("relay-server {sub} ")),
            "{sub}: {text}"
        );
    }
    let run = help(vec!["run", "--help"]).await?;
    assert!(
        run.contains("[default: 30s]"),
        "idle timeout default: {run}"
    );
    Ok(())
}
