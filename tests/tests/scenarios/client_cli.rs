//! What a person sees from `relay-client`: the messages and the behaviour
//! of the program itself (run as a separate process) where review-2
//! ("Product") found them poor, and its `--help`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use proto::Role;
use relay_client::{AgentTarget, Client, OpenError};
use relay_net::credential::Credential;
use relay_tests::{guard, tcp_echo, TestRelay, ALLOW_ALL};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Runs `relay-client ARGS` to its end; returns its output.
async fn client(args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = Command::new(relay_tests::programs!().client);
    cmd.args(args).kill_on_drop(true);
    Ok(guard("relay-client", cmd.output()).await?)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn an_agent_credential_is_named_as_such() -> anyhow::Result<()> {
    let relay = TestRelay::start(ALLOW_ALL).await;
    let cred = relay.issue(Role::Agent, "edge");
    let out = client(&["--credential", &cred.to_string_lossy(), "list"]).await?;
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains(
            "this is an agent credential (agent/edge); relay-client needs a client credential: \
             relay-server issue client edge"
        ),
        "{text}"
    );
    assert!(!text.contains("protocol violation"), "{text}");
    Ok(())
}

/// `ci` may reach `edge/echo` only; `edge` also exposes `secret` and no SOCKS.
async fn narrow_relay() -> (TestRelay, relay_tests::TestAgent, PathBuf) {
    let echo = tcp_echo().await;
    let policy = "[[allow]]\nclient = \"ci\"\nagent = \"edge\"\ntargets = [\"echo\"]\n";
    let relay = TestRelay::start(policy).await;
    let agent = relay
        .agent("edge", &[("echo", echo), ("secret", echo)])
        .await;
    let cred = relay.issue(Role::Client, "ci");
    (relay, agent, cred)
}

#[tokio::test]
async fn forward_to_a_target_not_allowed_fails_at_start() -> anyhow::Result<()> {
    let (relay, agent, cred) = narrow_relay().await;
    let cred = cred.to_string_lossy().into_owned();
    let out = client(&["--credential", &cred, "forward", "0", "edge/secret"]).await?;
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains(
            "agent edge does not offer target secret to this credential (it offers: echo)"
        ),
        "{text}"
    );
    assert!(!text.contains("forwarding"), "it started listening: {text}");
    let out = client(&["--credential", &cred, "forward", "0", "other/echo"]).await?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("agent other is not online, or this credential may not reach it"),
        "{}",
        stderr(&out)
    );
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn socks_to_an_agent_without_socks_fails_at_start() -> anyhow::Result<()> {
    let (relay, agent, cred) = narrow_relay().await;
    let cred = cred.to_string_lossy().into_owned();
    let out = client(&["--credential", &cred, "socks", "0", "edge"]).await?;
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("agent edge does not offer socks to this credential"),
        "{text}"
    );
    assert!(
        !text.contains("socks5 proxy on"),
        "it started listening: {text}"
    );
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// A running forward whose credential has expired stops, with the reason,
/// instead of resetting every connection from then on. The expiry is the
/// client's own clock check (`Loaded::check_expiry` before each dial), so
/// the test moves the certificate's end to its start rather than waiting.
#[tokio::test]
async fn a_forward_stops_once_its_credential_has_expired() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let agent = relay.agent("edge", &[("echo", echo)]).await;
    let mut loaded = Credential::load(&relay.issue(Role::Client, "ci"), None)?;
    loaded.cert.not_after = loaded.cert.not_before;
    let client = Arc::new(Client::new(loaded));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let dest: AgentTarget = "edge/echo".parse().map_err(anyhow::Error::msg)?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let forward = tokio::spawn(relay_client::cmd::forward::run(
        client,
        listener,
        dest,
        shutdown.clone(),
    ));
    let _tcp = tokio::net::TcpStream::connect(addr).await?;
    let stopped = guard("forward stops", forward).await?;
    match stopped {
        Err(e @ OpenError::Dial(_)) => {
            assert!(e.is_permanent());
            assert!(e.to_string().contains("expired"), "{e}");
        }
        other => panic!("expected the forward to stop on the expired credential, got {other:?}"),
    }
    assert!(
        shutdown.is_cancelled(),
        "the other forwards were not stopped"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the forward still listens"
    );
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// The same for `socks`: the local client gets a SOCKS failure reply, then
/// the proxy stops with the reason.
#[tokio::test]
async fn a_socks_proxy_stops_once_its_credential_has_expired() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_ALL).await;
    let mut loaded = Credential::load(&relay.issue(Role::Client, "ci"), None)?;
    loaded.cert.not_after = loaded.cert.not_before;
    let client = Arc::new(Client::new(loaded));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let socks = tokio::spawn(relay_client::cmd::socks::run(
        client,
        listener,
        "edge".parse()?,
        shutdown.clone(),
    ));
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(&[5, 1, 0]).await?;
    let mut method = [0u8; 2];
    guard("method", tcp.read_exact(&mut method)).await?;
    assert_eq!(method, [5, 0]);
    tcp.write_all(&[5, 1, 0, 1, 127, 0, 0, 1, 0, 80]).await?;
    let mut reply = [0u8; 10];
    guard("reply", tcp.read_exact(&mut reply)).await?;
    assert_ne!(reply[1], 0, "the connect succeeded: {reply:?}");
    match guard("socks stops", socks).await? {
        Err(e) => assert!(e.is_permanent() && e.to_string().contains("expired"), "{e}"),
        Ok(()) => panic!("the proxy ended without the reason"),
    }
    assert!(shutdown.is_cancelled());
    relay.shutdown().await;
    Ok(())
}

/// A copy of `relay-client` alone in a folder, and a folder for PATH.
struct Lone {
    _dir: tempfile::TempDir,
    program: PathBuf,
    path_dir: PathBuf,
}

fn lone_client() -> anyhow::Result<Lone> {
    let dir = tempfile::tempdir()?;
    let alone = dir.path().join("alone");
    let path_dir = dir.path().join("bin");
    std::fs::create_dir(&alone)?;
    std::fs::create_dir(&path_dir)?;
    let program = alone.join("relay-client");
    std::fs::copy(relay_tests::programs!().client, &program)?;
    Ok(Lone {
        _dir: dir,
        program,
        path_dir,
    })
}

fn demo_command(program: &Path, path: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg("demo")
        .env("PATH", path)
        .env_remove("RELAY_SERVER_BIN")
        .env_remove("RELAY_AGENT_BIN")
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn demo_alone_in_a_folder_says_where_it_looked() -> anyhow::Result<()> {
    let lone = lone_client()?;
    let mut cmd = demo_command(&lone.program, &lone.path_dir);
    let out = guard("demo", cmd.output()).await?;
    assert!(!out.status.success());
    let text = stderr(&out);
    let beside = lone.program.parent().map(Path::display);
    let expected = format!(
        "relay-server not found: looked beside this program (in {}) and on PATH ({})",
        beside.map(|d| d.to_string()).unwrap_or_default(),
        lone.path_dir.display()
    );
    assert!(text.contains(&expected), "{text}\nexpected: {expected}");
    assert!(text.contains("RELAY_SERVER_BIN"), "{text}");
    Ok(())
}

#[tokio::test]
async fn demo_finds_its_programs_on_path_and_prints_its_own() -> anyhow::Result<()> {
    let lone = lone_client()?;
    let bins = relay_tests::programs!();
    std::os::unix::fs::symlink(&bins.server, lone.path_dir.join("relay-server"))?;
    std::os::unix::fs::symlink(&bins.agent, lone.path_dir.join("relay-agent"))?;
    let mut cmd = demo_command(&lone.program, &lone.path_dir);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut demo = cmd.spawn()?;
    let out = demo
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?;
    let mut lines = BufReader::new(out).lines();
    let me = lone.program.display().to_string();
    let line = guard("demo's hints", async {
        while let Some(line) = lines.next_line().await? {
            if line.contains("--credential") {
                return anyhow::Ok(line);
            }
        }
        anyhow::bail!("the demo ended without printing a command")
    })
    .await?;
    assert!(
        line.trim_start().starts_with(&format!("{me} --credential")),
        "{line} (expected it to start with {me})"
    );
    assert!(!line.contains("target/release"), "{line}");
    // SIGTERM: the demo stops its relay and agent on the way out.
    if let Some(pid) = demo
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    {
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    }
    let status = guard("demo exit", demo.wait()).await?;
    assert!(status.success(), "{status}");
    Ok(())
}

#[tokio::test]
async fn help_says_what_applies() -> anyhow::Result<()> {
    let top = stdout(&client(&["--help"]).await?);
    let headline = top.lines().next().unwrap_or_default();
    assert!(
        headline.contains("SOCKS5") && headline.contains("shell"),
        "{headline}"
    );
    assert!(top.contains("RUST_LOG"), "{top}");
    for sub in ["connect", "list", "forward", "socks", "keygen", "demo"] {
        let help = stdout(&client(&[sub, "--help"]).await?);
        assert!(help.contains("Examples:"), "{sub}: {help}");
    }
    // The flags listed (the examples after them may well use others).
    let options = |help: &str| {
        help.split("Examples:")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let keygen = options(&stdout(&client(&["keygen", "--help"]).await?));
    for flag in ["--credential", "--key", "--connect-timeout", "--end-to-end"] {
        assert!(!keygen.contains(flag), "keygen shows {flag}: {keygen}");
    }
    assert!(keygen.contains("--out"), "{keygen}");
    let demo = options(&stdout(&client(&["demo", "--help"]).await?));
    for flag in ["--credential", "--key", "--connect-timeout"] {
        assert!(!demo.contains(flag), "demo shows {flag}: {demo}");
    }
    assert!(
        demo.contains("--end-to-end") && demo.contains("--check"),
        "{demo}"
    );
    // One meaning per flag: --kubeconfig and --context name what is read.
    let kube = stdout(&client(&["kubeconfig", "--help"]).await?);
    assert!(
        kube.contains("--kubeconfig <FILE>\n          Kubeconfig to read"),
        "{kube}"
    );
    assert!(
        kube.contains("--context <NAME>\n          Kubeconfig context to copy"),
        "{kube}"
    );
    assert!(
        kube.contains("--out <FILE>") && kube.contains("--name <NAME>"),
        "{kube}"
    );
    let with = stdout(&client(&["with", "--help"]).await?);
    assert!(
        with.contains("--kubeconfig <FILE>\n          Kubeconfig to read"),
        "{with}"
    );
    assert!(
        with.contains("--context <NAME>\n          Kubeconfig context to copy"),
        "{with}"
    );
    // The old spelling of the source context still parses.
    let old = client(&["kubeconfig", "a/b", "--from-context", "x", "--help"]).await?;
    assert!(old.status.success(), "{}", stderr(&old));
    Ok(())
}

/// `keygen` keeps the key on this host (0600), prints the CSR for the
/// relay's operator, and says which command takes it and how to use the
/// key after; the CSR becomes a credential that works with that key.
#[tokio::test]
async fn keygen_writes_a_private_key_and_says_what_to_do_with_the_csr() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("alice.key");
    let out = client(&["keygen", "--out", &key.to_string_lossy()]).await?;
    assert!(out.status.success(), "{out:?}");
    let csr = stdout(&out);
    assert!(
        csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{csr}"
    );
    let mode = std::fs::metadata(&key)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let hint = stderr(&out);
    assert!(
        hint.contains("relay-server issue client NAME --csr FILE")
            && hint.contains(&format!("--key {}", key.display())),
        "{hint}"
    );
    // The operator issues from the CSR; the credential loads with the key.
    let relay = TestRelay::start(ALLOW_ALL).await;
    let csr_file = dir.path().join("alice.csr");
    std::fs::write(&csr_file, &csr)?;
    let cred = dir.path().join("alice.cred");
    let paths = relay.paths();
    let issue = Command::new(relay_tests::programs!().server)
        .args(["issue", "client", "alice", "--csr"])
        .arg(&csr_file)
        .arg("--out")
        .arg(&cred)
        .arg("--dir")
        .arg(&paths.dir)
        .args(["--relay", "127.0.0.1:4433"])
        .output();
    let issued = guard("issue", issue).await?;
    assert!(issued.status.success(), "{issued:?}");
    let loaded = Credential::load(&cred, Some(&key))?;
    assert_eq!(loaded.cert.identity.to_string(), "client/alice");
    relay.shutdown().await;
    Ok(())
}

/// A credential file other users can read (mode 0644) holds a private key:
/// the client still uses it, and says once how to close the hole.
#[tokio::test]
async fn a_credential_readable_by_others_is_named_with_the_fix() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let relay = TestRelay::start(ALLOW_ALL).await;
    let cred = relay.issue(Role::Client, "alice");
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o644))?;
    let out = client(&["--credential", &cred.to_string_lossy(), "list"]).await?;
    assert!(out.status.success(), "{out:?}");
    let text = stderr(&out);
    assert!(
        text.contains("can be read by other users (mode 644)")
            && text.contains(&format!("chmod 600 {}", cred.display())),
        "{text}"
    );
    // A private file says nothing of the kind.
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600))?;
    let quiet = client(&["--credential", &cred.to_string_lossy(), "list"]).await?;
    assert!(!stderr(&quiet).contains("other users"), "{quiet:?}");
    relay.shutdown().await;
    Ok(())
}
