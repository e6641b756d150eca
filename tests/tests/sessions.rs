//! Remote commands (`relay-client run`) and interactive shells
//! (`relay-client shell`) end to end: the real client program against a
//! relay and an agent on loopback.

use std::path::Path;
use std::process::{ExitStatus, Stdio};

use proto::{ErrorCode, Refused, Role, StreamKind};
use relay_client::OpenError;
use relay_tests::{allow_sessions, guard, TestRelay, ALLOW_ALL, ALLOW_SESSIONS};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Output of one `relay-client run`.
struct Ran {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

/// A `relay-client` command with a credential, its output piped.
fn client_command(credential: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(relay_tests::client_bin!());
    cmd.arg("--credential")
        .arg(credential)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `relay-client run AGENT -- argv…` with `stdin` written and closed.
async fn run(credential: &Path, agent: &str, argv: &[&str], stdin: Vec<u8>) -> anyhow::Result<Ran> {
    let mut args = vec!["run", agent, "--"];
    args.extend_from_slice(argv);
    let mut child = client_command(credential, &args).spawn()?;
    let mut child_in = child.stdin.take().ok_or_else(|| anyhow::anyhow!("stdin"))?;
    let mut child_out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?;
    let mut child_err = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("stderr"))?;
    let (_, stdout, stderr) = guard("relay-client run", async {
        tokio::try_join!(
            async {
                // A refused session stops reading stdin: a broken pipe is fine.
                let _ = child_in.write_all(&stdin).await;
                drop(child_in);
                Ok::<_, std::io::Error>(())
            },
            async {
                let mut out = Vec::new();
                child_out.read_to_end(&mut out).await?;
                Ok(out)
            },
            async {
                let mut err = String::new();
                child_err.read_to_string(&mut err).await?;
                Ok(err)
            },
        )
    })
    .await?;
    let status = guard("relay-client exit", child.wait()).await?;
    Ok(Ran {
        status,
        stdout,
        stderr,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_is_byte_exact_with_large_stdin_and_stdout() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_SESSIONS).await;
    let agent = relay.agent_with("edge", &[], allow_sessions).await;
    let cred = relay.issue(Role::Client, "ci");
    let mut data = vec![0u8; 32 << 20];
    rand::Rng::fill(&mut rand::rng(), &mut data[..]);
    let ran = run(&cred, "edge", &["cat"], data.clone()).await?;
    assert!(ran.status.success(), "{:?} {}", ran.status, ran.stderr);
    assert_eq!(ran.stdout.len(), data.len());
    assert_eq!(Sha256::digest(&ran.stdout), Sha256::digest(&data));
    assert!(ran.stderr.is_empty(), "{}", ran.stderr);
    agent.shutdown().await;
    let dir = relay.stop().await;
    let events = audit_of(dir.path())?;
    let close = events
        .iter()
        .find(|e| e["event"] == "close" && e["kind"] == "exec")
        .ok_or_else(|| anyhow::anyhow!("no close event: {events:?}"))?;
    assert_eq!(close["command"], "cat");
    assert_eq!(close["peer"], "client/ci");
    assert!(
        close["bytes_up"].as_u64().unwrap_or(0) > 32 << 20,
        "{close}"
    );
    assert!(
        close["bytes_down"].as_u64().unwrap_or(0) > 32 << 20,
        "{close}"
    );
    assert!(close.get("code").is_none(), "clean close: {close}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_keeps_stderr_apart_and_returns_the_exit_code() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_SESSIONS).await;
    let agent = relay.agent_with("edge", &[], allow_sessions).await;
    let cred = relay.issue(Role::Client, "ci");
    let ran = run(
        &cred,
        "edge",
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
        Vec::new(),
    )
    .await?;
    assert_eq!(ran.status.code(), Some(7), "{}", ran.stderr);
    assert_eq!(ran.stdout, b"out\n");
    assert_eq!(ran.stderr, "err\n");

    // Arguments arrive as they are, with no shell in between.
    let ran = run(
        &cred,
        "edge",
        &["printf", "%s|", "a b", "$HOME", "*"],
        Vec::new(),
    )
    .await?;
    assert!(ran.status.success(), "{}", ran.stderr);
    assert_eq!(ran.stdout, b"a b|$HOME|*|");

    // A clean environment: none of the agent's variables.
    std::env::var("CARGO").ok();
    let ran = run(&cred, "edge", &["env"], Vec::new()).await?;
    let env = String::from_utf8_lossy(&ran.stdout);
    assert!(env.contains("RELAY_CALLER=client/ci"), "{env}");
    assert!(!env.contains("CARGO"), "agent environment leaked: {env}");

    // A program that does not exist: 127 and a message, as a shell does.
    let ran = run(&cred, "edge", &["no-such-program-xyz"], Vec::new()).await?;
    assert_eq!(ran.status.code(), Some(127));
    assert!(ran.stderr.contains("no-such-program-xyz"), "{}", ran.stderr);
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_forwards_ctrl_c() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_SESSIONS).await;
    let agent = relay.agent_with("edge", &[], allow_sessions).await;
    let cred = relay.issue(Role::Client, "ci");
    let mut child = client_command(
        &cred,
        &["run", "edge", "--", "sh", "-c", "echo ready; exec sleep 30"],
    )
    .spawn()?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?;
    let mut ready = [0u8; 6];
    guard("remote program ready", out.read_exact(&mut ready)).await?;
    assert_eq!(&ready, b"ready\n");
    let pid = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32));
    let pid = pid.ok_or_else(|| anyhow::anyhow!("client pid"))?;
    rustix::process::kill_process(pid, rustix::process::Signal::INT)?;
    let status = guard("client exit after SIGINT", child.wait()).await?;
    assert_eq!(status.code(), Some(130), "{status:?}");
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_runs_at_once_and_a_stalled_one_blocks_nobody() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_SESSIONS).await;
    let agent = relay.agent_with("edge", &[], allow_sessions).await;
    // A session whose client never reads: `yes` fills every window and stalls.
    let stalled_client = relay.client("slow");
    let (_stalled_send, _stalled_recv) = guard(
        "stalled session",
        stalled_client.open_session(
            &"edge".parse()?,
            StreamKind::Exec {
                argv: vec!["yes".into()],
            },
        ),
    )
    .await?;
    let cred = relay.issue(Role::Client, "ci");
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..8 {
        let cred = cred.clone();
        runs.spawn(async move {
            let n = i.to_string();
            let ran = run(&cred, "edge", &["echo", &n], Vec::new()).await?;
            anyhow::ensure!(ran.status.success(), "{}", ran.stderr);
            anyhow::ensure!(ran.stdout == format!("{n}\n").as_bytes());
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = guard("concurrent runs", runs.join_next()).await {
        done??;
    }
    stalled_client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// Opens a session with the library client and expects a refusal.
async fn session_refused(
    relay: &TestRelay,
    client: &str,
    kind: StreamKind,
) -> anyhow::Result<Refused> {
    let client = relay.client(client);
    let result = guard("open session", client.open_session(&"edge".parse()?, kind)).await;
    client.close().await;
    match result {
        Err(OpenError::Refused(r)) => Ok(r),
        Err(e) => anyhow::bail!("expected a refusal, got {e:?}"),
        Ok(_) => anyhow::bail!("expected a refusal, got a session"),
    }
}

fn shell_kind() -> StreamKind {
    StreamKind::Shell {
        term: "xterm".into(),
        cols: 80,
        rows: 24,
        argv: vec![],
    }
}

fn exec_kind() -> StreamKind {
    StreamKind::Exec {
        argv: vec!["true".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_refused_unless_both_sides_allow_them() -> anyhow::Result<()> {
    relay_tests::trace_init();
    // The policy grants tcp to everyone, run to ci, shell to alice.
    let policy = format!(
        "{ALLOW_ALL}[[allow]]\nclient = \"ci\"\nagent = \"edge\"\nrun = true\n\
         [[allow]]\nclient = \"alice\"\nagent = \"edge\"\nshell = true\n"
    );
    let relay = TestRelay::start(&policy).await;

    // An agent without --allow-shell refuses both kinds, whatever the policy.
    let agent = relay.agent("edge", &[]).await;
    let r = session_refused(&relay, "ci", exec_kind()).await?;
    assert_eq!(r.code, ErrorCode::UNSUPPORTED, "{r}");
    assert!(r.message.contains("--allow-shell"), "{r}");
    let r = session_refused(&relay, "alice", shell_kind()).await?;
    assert_eq!(r.code, ErrorCode::UNSUPPORTED, "{r}");
    agent.shutdown().await;
    relay.wait_instances("edge", 0).await;

    // An agent with it: the policy decides, per kind.
    let agent = relay.agent_with("edge", &[], allow_sessions).await;
    let r = session_refused(&relay, "ci", shell_kind()).await?;
    assert_eq!(r.code, ErrorCode::UNAUTHORIZED, "{r}");
    assert!(r.message.contains("may not open a shell on edge"), "{r}");
    assert!(r.message.contains("shell = true"), "{r}");
    let r = session_refused(&relay, "alice", exec_kind()).await?;
    assert_eq!(r.code, ErrorCode::UNAUTHORIZED, "{r}");
    assert!(r.message.contains("may not run commands on edge"), "{r}");
    let r = session_refused(&relay, "bob", exec_kind()).await?;
    assert_eq!(
        r.code,
        ErrorCode::UNAUTHORIZED,
        "targets = * is no run grant: {r}"
    );

    // The program says so and exits 255.
    let bob = relay.issue(Role::Client, "bob");
    let ran = run(&bob, "edge", &["true"], Vec::new()).await?;
    assert_eq!(ran.status.code(), Some(255));
    assert!(
        ran.stderr.contains("may not run commands on edge"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("UNAUTHORIZED"), "{}", ran.stderr);

    // And what is granted works.
    let ci = relay.issue(Role::Client, "ci");
    let ran = run(&ci, "edge", &["true"], Vec::new()).await?;
    assert!(ran.status.success(), "{}", ran.stderr);
    agent.shutdown().await;
    let dir = relay.stop().await;
    let events = audit_of(dir.path())?;
    assert!(
        events.iter().any(|e| e["event"] == "refused"
            && e["kind"] == "exec"
            && e["peer"] == "client/bob"
            && e["code"] == "UNAUTHORIZED"
            && e["command"] == "true"),
        "{events:?}"
    );
    Ok(())
}

/// The relay's audit events in `dir`.
fn audit_of(dir: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(dir.join("audit.jsonl"))?;
    text.lines()
        .map(|l| serde_json::from_str(l).map_err(Into::into))
        .collect()
}
