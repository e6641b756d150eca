//! What a person reads when reaching the relay fails, through the real
//! dial against a real relay on 127.0.0.1: each message says what is wrong
//! and what to do, and blames the right thing.

use std::time::Duration;

use anyhow::Context;
use proto::{Name, Role};
use relay_net::credential::{Credential, CredentialError};
use relay_net::dial::{dial, DialError};
use relay_net::endpoint::Transport;
use relay_server::cmd::init::Init;
use relay_server::cmd::issue::Issue;
use relay_server::config::Paths;
use relay_tests::{guard, TestRelay, ALLOW_ALL};
use tokio::process::Command;

/// A relay initialised with `--name relay.test` only, dialed as 127.0.0.1:
/// its certificate is fine (our CA signed it), the name is not. The message
/// says exactly that, not that the CA does not trust it.
#[tokio::test]
async fn relay_dialed_by_a_name_missing_from_its_certificate() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let dir = tempfile::tempdir()?;
    let paths = Paths::from(dir.path());
    Init::new(paths.clone(), vec!["relay.test".into()]).run()?;
    std::fs::write(paths.policy(), ALLOW_ALL)?;
    let relay = TestRelay::run_in(dir, "127.0.0.1:0".parse()?, |_| {}).await;
    let credential = relay.credential(Role::Client, "alice");

    let err = guard(
        "dial",
        dial(&credential, &Transport::client(), Duration::from_secs(5)),
    )
    .await
    .err()
    .context("a certificate for relay.test accepted for 127.0.0.1")?;
    assert!(matches!(err, DialError::WrongName { .. }), "{err:?}");
    let text = err.to_string();
    assert_eq!(
        text,
        format!(
            "relay {}: the relay's certificate is valid (signed by this credential's CA) but is \
             not issued for 127.0.0.1: it names relay.test; connect with a name the relay was \
             initialised with (relay-server init --name ...)",
            relay.addr
        )
    );
    relay.shutdown().await;
    Ok(())
}

/// Nothing answers on the relay's UDP port: the message says what to check.
#[tokio::test]
async fn relay_not_answering_says_to_check_it_and_udp() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_ALL).await;
    // A loopback UDP socket nobody reads: the handshake gets no answer.
    let mute = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let mute_addr = mute.local_addr()?;
    let path = relay.issue(Role::Client, "ci");
    let mut credential = Credential::load(&path, None)?.credential;
    credential.relay = vec![mute_addr.to_string()];
    credential.save(&path)?;
    let loaded = Credential::load(&path, None)?;

    let err = guard(
        "dial",
        dial(&loaded, &Transport::client(), Duration::from_millis(300)),
    )
    .await
    .err()
    .context("a socket that never answers completed a handshake")?;
    assert!(matches!(err, DialError::Unreachable { .. }), "{err:?}");
    let port = mute_addr.port();
    assert_eq!(
        err.to_string(),
        format!(
            "relay {mute_addr} unreachable: UDP {port} (QUIC): no answer within 300ms; TCP \
             {port}: connection refused — check that the relay is running at \
             {mute_addr}, and that UDP port {port} is reachable from here (QUIC runs over UDP; \
             some networks block it) or its TCP listener is on (relay-server run --listen-tcp) \
             and TCP port {port} is reachable"
        )
    );
    // Forced onto QUIC, the message is about UDP alone.
    let quic = Transport {
        via: relay_net::endpoint::Via::Quic,
        ..Transport::client()
    };
    let err = guard("dial", dial(&loaded, &quic, Duration::from_millis(300)))
        .await
        .err()
        .context("a socket that never answers completed a handshake")?;
    assert_eq!(
        err.to_string(),
        format!(
            "relay {mute_addr} unreachable: no answer within 300ms: check that the relay is \
             running at {mute_addr} and that UDP port {} is reachable from here (QUIC runs over \
             UDP; some networks block it)",
            mute_addr.port()
        )
    );
    drop(mute);
    relay.shutdown().await;
    Ok(())
}

/// A credential issued from one host's CSR, run with another key: the
/// real agent program stops at once with a message naming the key file,
/// instead of retrying a handshake that can never work.
#[tokio::test]
async fn key_of_another_csr_stops_the_agent_at_start() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let bins = relay_tests::programs!();
    let relay = TestRelay::start(ALLOW_ALL).await;
    let host = tempfile::tempdir()?;
    let (right_key, csr) = relay_net::pki::keygen("relay agent")?;
    let (wrong_key, _) = relay_net::pki::keygen("relay agent")?;
    let csr_path = host.path().join("agent.csr");
    let right = host.path().join("agent.key");
    let wrong = host.path().join("old.key");
    std::fs::write(&csr_path, csr)?;
    std::fs::write(&right, right_key)?;
    std::fs::write(&wrong, wrong_key)?;
    let (credential, _) = Issue {
        paths: relay.paths(),
        role: Role::Agent,
        name: Name::try_from("edge")?,
        relay: vec![relay.addr.to_string()],
        ttl: None,
        csr: Some(csr_path),
        groups: Vec::new(),
    }
    .run()?;
    let cred = host.path().join("agent.cred");
    credential.save(&cred)?;

    Credential::load(&cred, Some(&right)).context("the right key loads")?;
    let err = Credential::load(&cred, Some(&wrong))
        .err()
        .context("a key of another CSR loaded")?;
    assert!(
        matches!(err, CredentialError::KeyMismatch { .. }),
        "{err:?}"
    );
    let expected = format!(
        "the private key in {} does not belong to its certificate in {}",
        wrong.display(),
        cred.display()
    );
    assert!(err.to_string().starts_with(&expected), "{err}");

    let out = guard(
        "agent exit",
        Command::new(&bins.agent)
            .arg("--credential")
            .arg(&cred)
            .arg("--key")
            .arg(&wrong)
            .arg("--expose=echo=127.0.0.1:9")
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        stderr.contains("was the certificate issued for another key/CSR?"),
        "{stderr}"
    );
    assert!(!stderr.contains("KeyMismatch"), "{stderr}");
    relay.shutdown().await;
    Ok(())
}
