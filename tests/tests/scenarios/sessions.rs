//! Remote commands (`relay-client run`) and interactive shells
//! (`relay-client shell`) end to end: the real client program against a
//! relay and an agent on loopback.

use std::path::Path;
use std::process::{ExitStatus, Stdio};

use proto::{ErrorCode, Refused, Role, StreamKind};
use relay_client::OpenError;
use relay_tests::{allow_sessions, audit_in, guard, TestRelay, ALLOW_ALL, ALLOW_SESSIONS};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod ends;

/// Output of one `relay-client run`.
struct Ran {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

/// A `relay-client` command with a credential, its output piped.
fn client_command(credential: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(relay_tests::programs!().client);
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
    piped("run", credential, agent, argv, stdin).await
}

/// Runs `relay-client SUBCOMMAND AGENT -- argv…` with `stdin` written and
/// closed.
async fn piped(
    subcommand: &str,
    credential: &Path,
    agent: &str,
    argv: &[&str],
    stdin: Vec<u8>,
) -> anyhow::Result<Ran> {
    let mut args = vec![subcommand, agent, "--"];
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
    rand::RngExt::fill(&mut rand::rng(), &mut data[..]);
    let ran = run(&cred, "edge", &["cat"], data.clone()).await?;
    assert!(ran.status.success(), "{:?} {}", ran.status, ran.stderr);
    assert_eq!(ran.stdout.len(), data.len());
    assert_eq!(Sha256::digest(&ran.stdout), Sha256::digest(&data));
    assert!(ran.stderr.is_empty(), "{}", ran.stderr);
    agent.shutdown().await;
    let dir = relay.stop().await;
    // End to end (the default), the agent audits the session.
    let events = relay_tests::agent_audit_in(dir.path());
    let close = events
        .iter()
        .find(|e| e["event"] == "close" && e["kind"] == "exec")
        .ok_or_else(|| anyhow::anyhow!("no close event: {events:?}"))?;
    assert_eq!(close["command"], "cat");
    assert_eq!(close["peer"], "client/ci");
    assert!(
        close["bytes_up"].as_u64().unwrap_or(0) >= 32 << 20,
        "{close}"
    );
    assert!(
        close["bytes_down"].as_u64().unwrap_or(0) >= 32 << 20,
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
    let events = audit_in(dir.path());
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

// ---- interactive: the real `relay-client shell` on a PTY made by the test ----

/// A terminal the test holds the master side of, with an expect-style
/// reader: waits for output, never for time.
struct Term {
    pty: pty_process::Pty,
    seen: Vec<u8>,
}

/// The settings that raw mode changes, to compare before and after.
fn modes(t: &rustix::termios::Termios) -> String {
    format!(
        "{:?} {:?} {:?} {:?}",
        t.input_modes, t.output_modes, t.control_modes, t.local_modes
    )
}

impl Term {
    /// Starts `relay-client --credential CRED shell AGENT args…` on a new
    /// 80×24 terminal with `TERM=xterm`.
    fn spawn(
        credential: &Path,
        agent: &str,
        args: &[&str],
    ) -> anyhow::Result<(Term, tokio::process::Child)> {
        let (pty, pts) = pty_process::open()?;
        pty.resize(pty_process::Size::new(24, 80))?;
        let mut cmd = tokio::process::Command::new(relay_tests::programs!().client);
        cmd.arg("--credential")
            .arg(credential)
            .args(["shell", agent])
            .args(args)
            .env("TERM", "xterm")
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        let child = pty_process::Command::from(cmd).spawn(pts)?;
        Ok((
            Term {
                pty,
                seen: Vec::new(),
            },
            child,
        ))
    }

    /// The terminal's current settings (Linux: master and slave share them).
    fn settings(&self) -> anyhow::Result<rustix::termios::Termios> {
        Ok(rustix::termios::tcgetattr(&self.pty)?)
    }

    /// Types `keys`.
    async fn send(&mut self, keys: &str) -> anyhow::Result<()> {
        self.pty.write_all(keys.as_bytes()).await?;
        Ok(())
    }

    /// The rest of the line behind `marker`.
    async fn line_after(&mut self, marker: &str) -> anyhow::Result<String> {
        self.expect(marker).await?;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = self.seen.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&self.seen[..end]).into_owned();
                self.seen.drain(..=end);
                return Ok(line);
            }
            let n = guard("end of line", self.pty.read(&mut buf)).await?;
            anyhow::ensure!(n > 0, "terminal closed");
            self.seen.extend_from_slice(&buf[..n]);
        }
    }

    /// Reads until `what` appears; consumes the output up to its end and
    /// returns it.
    async fn expect(&mut self, what: &str) -> anyhow::Result<String> {
        let found = tokio::time::timeout(relay_tests::GUARD, async {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(at) = self
                    .seen
                    .windows(what.len())
                    .position(|w| w == what.as_bytes())
                {
                    let upto: Vec<u8> = self.seen.drain(..at + what.len()).collect();
                    return Ok(String::from_utf8_lossy(&upto).into_owned());
                }
                let n = self.pty.read(&mut buf).await?;
                anyhow::ensure!(n > 0, "terminal closed");
                self.seen.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        match found {
            Ok(result) => result.map_err(|e| {
                anyhow::anyhow!(
                    "waiting for {what:?}: {e}; seen {:?}",
                    String::from_utf8_lossy(&self.seen)
                )
            }),
            Err(_) => anyhow::bail!(
                "hang guard: {what:?} not seen within {:?}; seen {:?}",
                relay_tests::GUARD,
                String::from_utf8_lossy(&self.seen)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_shell_in_a_real_terminal() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_SESSIONS).await;
    let records = tempfile::tempdir()?;
    let record_dir = records.path().to_owned();
    let agent = relay
        .agent_with("edge", &[], |c| {
            allow_sessions(c);
            c.sessions.record_dir = Some(record_dir);
        })
        .await;
    let cred = relay.issue(Role::Client, "alice");
    let (mut term, mut child) = Term::spawn(&cred, "edge", &[])?;
    let before = term.settings()?;

    // A command and its output.
    term.send("echo hello-$((6*7))\r").await?;
    term.expect("hello-42").await?;
    // Our terminal is raw meanwhile: keys go to the remote side as they are.
    let during = term.settings()?;
    use rustix::termios::LocalModes;
    assert!(!during.local_modes.contains(LocalModes::ECHO));
    assert!(!during.local_modes.contains(LocalModes::ICANON));
    assert!(before
        .local_modes
        .contains(LocalModes::ECHO | LocalModes::ICANON));

    // TERM passed through, a clean environment.
    term.send("echo term-is-$TERM\r").await?;
    term.expect("term-is-xterm").await?;

    // The size at start, then after a resize (SIGWINCH → Resize frame).
    term.send("stty size\r").await?;
    term.expect("24 80").await?;
    term.pty.resize(pty_process::Size::new(40, 100))?;
    // The resize and the keys travel separately until the client's queue:
    // ask again until the new size shows (each try waits for its answer).
    // `$((N))` keeps the echoed command from matching the answer.
    let mut resized = false;
    for i in 1000..1020 {
        term.send(&format!("echo s$(({i}))-$(stty size | tr ' ' x)\r"))
            .await?;
        let size = term.line_after(&format!("s{i}-")).await?;
        if size.trim() == "40x100" {
            resized = true;
            break;
        }
        assert_eq!(size.trim(), "24x80");
    }
    assert!(resized, "stty size never showed 40 100");

    // Ctrl-C reaches the remote foreground program, not the client.
    term.send("sh -c 'echo sleeping-$((3*3)); exec sleep 300'\r")
        .await?;
    term.expect("sleeping-9").await?;
    term.send("\x03").await?;
    term.send("echo back-$((2+3))\r").await?;
    term.expect("back-5").await?;

    // What is typed with echo off never reaches the recording.
    term.send("stty -echo; echo quiet-$((4+4)); read s; stty echo; echo got-${#s}\r")
        .await?;
    term.expect("quiet-8").await?;
    term.send("hunter2xyz\r").await?;
    term.expect("got-10").await?;

    // The remote exit status is ours, and our terminal is as it was.
    term.send("exit 3\r").await?;
    let status = guard("client exit", child.wait()).await?;
    assert_eq!(status.code(), Some(3), "{status:?}");
    assert_eq!(modes(&term.settings()?), modes(&before));

    // One asciicast v2 recording with the output, without the typed secret.
    agent.shutdown().await;
    let casts: Vec<_> = std::fs::read_dir(records.path())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert_eq!(casts.len(), 1, "{casts:?}");
    assert!(casts[0].extension().is_some_and(|e| e == "cast"));
    let text = std::fs::read_to_string(&casts[0])?;
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap_or_default())?;
    assert_eq!(header["version"], 2, "{header}");
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(80), Some(24))
    );
    assert_eq!(header["env"]["TERM"], "xterm");
    let mut output = String::new();
    let mut resizes = Vec::new();
    let mut last = 0.0;
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(line)?;
        let t = event[0].as_f64().unwrap_or(-1.0);
        assert!(t >= last, "time goes forward: {line}");
        last = t;
        match event[1].as_str() {
            Some("o") => output.push_str(event[2].as_str().unwrap_or_default()),
            Some("r") => resizes.push(event[2].as_str().unwrap_or_default().to_owned()),
            other => panic!("unexpected event type {other:?}"),
        }
    }
    assert!(output.contains("hello-42"), "{output}");
    assert!(output.contains("got-10"), "{output}");
    assert!(
        !output.contains("hunter2xyz"),
        "stdin was recorded: {output}"
    );
    assert!(resizes.contains(&"100x40".to_owned()), "{resizes:?}");
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_agent_ends_the_shell_and_restores_the_terminal() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_SESSIONS).await;
    let agent = relay.agent_with("edge", &[], allow_sessions).await;
    let cred = relay.issue(Role::Client, "alice");
    let (mut term, mut child) = Term::spawn(&cred, "edge", &[])?;
    let before = term.settings()?;
    term.send("echo up-$((1+1))\r").await?;
    term.expect("up-2").await?;
    agent.shutdown().await;
    let status = guard("client exit", child.wait()).await?;
    assert_eq!(status.code(), Some(255), "{status:?}");
    term.expect("session lost").await?;
    assert_eq!(modes(&term.settings()?), modes(&before));
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_with_a_command_runs_it_on_a_terminal() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_SESSIONS).await;
    let agent = relay.agent_with("edge", &[], allow_sessions).await;
    let cred = relay.issue(Role::Client, "alice");
    let (mut term, mut child) = Term::spawn(
        &cred,
        "edge",
        &[
            "--",
            "sh",
            "-c",
            "test -t 0 && echo on-a-tty-$((2*4)); exit 5",
        ],
    )?;
    term.expect("on-a-tty-8").await?;
    let status = guard("client exit", child.wait()).await?;
    assert_eq!(status.code(), Some(5), "{status:?}");
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_with_piped_input_ends_when_the_input_does() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_SESSIONS).await;
    let agent = relay.agent_with("edge", &[], allow_sessions).await;
    let cred = relay.issue(Role::Client, "alice");
    // `cat` on the agent's terminal reads until end of input: the end of
    // our stdin must reach it (as Ctrl-D), or the session never ends.
    let ran = piped("shell", &cred, "edge", &["cat"], b"piped line\n".to_vec()).await?;
    assert_eq!(ran.status.code(), Some(0), "{}", ran.stderr);
    let out = String::from_utf8_lossy(&ran.stdout);
    assert!(out.contains("piped line"), "{out:?}");
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrecordable_shell_is_refused_unless_fail_open() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_SESSIONS).await;
    // A file where the folder should be: no recording can be created.
    let not_a_dir = tempfile::NamedTempFile::new()?;
    let path = not_a_dir.path().to_owned();
    let agent = relay
        .agent_with("edge", &[], |c| {
            allow_sessions(c);
            c.sessions.record_dir = Some(path.clone());
        })
        .await;
    let r = session_refused(&relay, "alice", shell_kind()).await?;
    assert_eq!(r.code, ErrorCode::INTERNAL, "{r}");
    assert!(r.message.contains("cannot record the session"), "{r}");
    // Commands are not recorded, so they still run.
    let cred = relay.issue(Role::Client, "ci");
    let ran = run(&cred, "edge", &["true"], Vec::new()).await?;
    assert!(ran.status.success(), "{}", ran.stderr);
    agent.shutdown().await;
    relay.wait_instances("edge", 0).await;

    let path = not_a_dir.path().to_owned();
    let agent = relay
        .agent_with("edge", &[], |c| {
            allow_sessions(c);
            c.sessions.record_dir = Some(path);
            c.sessions.record_fail_open = true;
        })
        .await;
    let client = relay.client("alice");
    let opened = guard(
        "open session",
        client.open_session(&"edge".parse()?, shell_kind()),
    )
    .await;
    assert!(opened.is_ok(), "fail-open session refused: {opened:?}");
    drop(opened);
    client.close().await;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_expiry_end_a_session() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let mut relay = TestRelay::start(ALLOW_SESSIONS).await;
    let agent = relay.agent_with("edge", &[], allow_sessions).await;

    // Revoked while a command runs: the relay drops the connection.
    let cred = relay.issue(Role::Client, "mallory");
    let mut child = client_command(
        &cred,
        &[
            "run",
            "edge",
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 300",
        ],
    )
    .spawn()?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?;
    let mut ready = [0u8; 6];
    guard("remote program ready", out.read_exact(&mut ready)).await?;
    relay.revoke(Role::Client, "mallory").await;
    let status = guard("client exit after revocation", child.wait()).await?;
    assert_eq!(status.code(), Some(255), "{status:?}");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).await?;
    }
    assert!(err.contains("revoked"), "{err}");

    // A short-lived credential: the session ends when it expires.
    let cred = relay.issue_with(
        Role::Client,
        "brief",
        Some(std::time::Duration::from_secs(3)),
    );
    let mut child = client_command(
        &cred,
        &[
            "run",
            "edge",
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 300",
        ],
    )
    .spawn()?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?;
    guard("remote program ready", out.read_exact(&mut ready)).await?;
    let status = guard("client exit at expiry", child.wait()).await?;
    assert_eq!(status.code(), Some(255), "{status:?}");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).await?;
    }
    assert!(err.contains("expired"), "{err}");
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_run_as_the_configured_user() -> anyhow::Result<()> {
    relay_tests::trace_init();
    if rustix::process::getuid().as_raw() != 0 {
        // Switching users needs root; CI runs as root.
        return Ok(());
    }
    let nobody = relay_agent::session::RunAs::lookup("nobody")?;
    assert!(nobody.switch);
    let uid = nobody.uid;
    let relay = TestRelay::start(ALLOW_SESSIONS).await;
    let agent = relay
        .agent_with("edge", &[], |c| {
            allow_sessions(c);
            c.sessions.user = nobody;
        })
        .await;
    let cred = relay.issue(Role::Client, "ci");
    let ran = run(
        &cred,
        "edge",
        &["sh", "-c", "id -u; echo $USER; pwd"],
        Vec::new(),
    )
    .await?;
    assert!(ran.status.success(), "{}", ran.stderr);
    let out = String::from_utf8_lossy(&ran.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(uid.to_string().as_str()),
        "{out}"
    );
    assert_eq!(lines.get(1).copied(), Some("nobody"), "{out}");
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}
