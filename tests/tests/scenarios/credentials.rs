//! Credentials as a new user handles them: a key made on the agent host with
//! `keygen` and signed from a CSR (the private key never leaves its host),
//! and revocation of one certificate by serial.

use std::process::Stdio;

use anyhow::Context;
use proto::{Name, Role};
use relay_client::{Client, OpenError};
use relay_net::credential::{Credential, CredentialError};
use relay_server::cmd::issue::Issue;
use relay_server::cmd::revoke::{revoke, Target};
use relay_tests::{dest, guard, launch, read_n, tcp_echo, TestRelay, ALLOW_ALL};
use tokio::process::Command;

async fn run_ok(cmd: &mut Command) -> anyhow::Result<std::process::Output> {
    let out = guard("command", cmd.stdin(Stdio::null()).output()).await?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_csr_issue_and_run_keep_the_key_on_its_host() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let programs = relay_tests::programs!();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let host = tempfile::tempdir()?;
    let key = host.path().join("agent.key");
    let csr = host.path().join("agent.csr");
    let cred = host.path().join("agent.cred");

    // On the agent host: a key (0600) and a CSR on stdout.
    let out = run_ok(
        Command::new(&programs.agent)
            .arg("keygen")
            .arg("--out")
            .arg(&key),
    )
    .await?;
    std::fs::write(&csr, &out.stdout)?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key)?.permissions());
    assert_eq!(mode & 0o777, 0o600, "private key must be written 0600");
    assert!(String::from_utf8(out.stdout)?.contains("BEGIN CERTIFICATE REQUEST"));

    // On the admin machine: sign the CSR.
    run_ok(
        Command::new(&programs.server)
            .args([
                "issue",
                "agent",
                "edge",
                "--relay",
                &relay.addr.to_string(),
                "--dir",
            ])
            .arg(relay.dir.path())
            .arg("--csr")
            .arg(&csr)
            .arg("--out")
            .arg(&cred),
    )
    .await?;
    let text = std::fs::read_to_string(&cred)?;
    assert!(
        !text.contains("PRIVATE KEY"),
        "a CSR credential carries no key"
    );

    // Without the key the credential is refused with a message saying what to do.
    match Credential::load(&cred, None) {
        Err(e @ CredentialError::NoKey { .. }) => assert!(e.to_string().contains("--key"), "{e}"),
        other => anyhow::bail!("expected NoKey, got {other:?}"),
    }

    // Back on the agent host: run with --key; a client reaches the target.
    let args = vec![
        format!("--key={}", key.display()),
        format!("--expose=echo={echo}"),
    ];
    let mut agent = launch::agent(&programs, &cred, &args).await?;
    let client = relay.client("ci");
    let mut opened = client.open(&dest("edge/echo")).await?;
    opened.send.write_all(b"signed from a csr").await?;
    opened.send.finish()?;
    let echoed = guard("echo", read_n(&mut opened.recv, 17)).await?;
    assert_eq!(echoed, b"signed from a csr");

    agent.kill()?;
    agent.wait().await?;
    client.close().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn revoking_one_serial_leaves_other_certificates_of_the_name() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let issue = |file: &str| -> anyhow::Result<(std::path::PathBuf, String)> {
        let (credential, issued) = Issue {
            paths: relay.paths(),
            role: Role::Client,
            name: Name::try_from("alice")?,
            relay: vec![relay.addr.to_string()],
            ttl: None,
            csr: None,
            groups: Vec::new(),
        }
        .run()?;
        let path = relay.dir.path().join(file);
        credential.save(&path)?;
        Ok((path, issued.serial))
    };
    let (laptop, laptop_serial) = issue("laptop.cred")?;
    let (ci, _) = issue("ci.cred")?;

    // Revoke the laptop's certificate only (as an operator would paste it,
    // upper case with colons).
    let pasted = laptop_serial
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    let mut reloads = relay.reloads();
    reloads.borrow_and_update();
    assert!(revoke(&relay.paths(), Target::Serial(pasted))?);
    guard("revocation reload", reloads.changed()).await?;

    let dest = dest("edge/echo");
    let revoked = Client::new(Credential::load(&laptop, None)?);
    let err = revoked
        .open(&dest)
        .await
        .err()
        .context("revoked serial must be refused")?;
    assert!(
        matches!(err, OpenError::Stream(_) | OpenError::Dial(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("revoked"), "{err}");

    let fine = Client::new(Credential::load(&ci, None)?);
    fine.open(&dest)
        .await
        .context("another certificate of alice still works")?;

    fine.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}
