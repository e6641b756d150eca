//! Sessions end with their rules (#13 item 6): nothing a session started
//! outlives it, whether the program exits, the client goes, its
//! certificate is revoked or expires, or the recording fails; and `run`
//! ends soon after the program even when a background child holds its
//! output open.
//!
//! Each test starts a background process on the agent, learns its pid and
//! waits (under the hang guard) for a pidfd of it to turn readable, which
//! it does when the process has exited: no polling, no sleep.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use proto::Role;
use relay_tests::{allow_sessions, guard, TestRelay, ALLOW_SESSIONS};
use rustix::process::{Pid, PidfdFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, Interest};

use super::{client_command, run, Term};

/// Waits until process `pid` has exited (a zombie counts: it runs nothing).
async fn ended(pid: i32) -> anyhow::Result<()> {
    let p = Pid::from_raw(pid).ok_or_else(|| anyhow::anyhow!("pid {pid}"))?;
    let fd = match rustix::process::pidfd_open(p, PidfdFlags::NONBLOCK) {
        Ok(fd) => fd,
        // Already gone and reaped.
        Err(rustix::io::Errno::SRCH) => return Ok(()),
        Err(e) => anyhow::bail!("pidfd_open({pid}): {e}"),
    };
    // Deprecated for fds not owned by the AsyncFd; this OwnedFd is.
    #[allow(deprecated)]
    let fd = AsyncFd::with_interest(fd, Interest::READABLE)?;
    let _ = guard(&format!("session's process {pid} ended"), fd.readable()).await?;
    Ok(())
}

/// The first line of `text` parsed as a pid.
fn pid_in(text: &str) -> anyhow::Result<i32> {
    let line = text.lines().next().unwrap_or_default().trim();
    line.parse()
        .map_err(|e| anyhow::anyhow!("no pid in {line:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ends_after_the_program_and_takes_its_children_along() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_SESSIONS).await;
    let agent = relay.agent_with("edge", &[], allow_sessions).await;
    let cred = relay.issue(Role::Client, "ci");

    // A background child holding stdout: the session used to wait for it
    // forever. Now it ends within the output grace, with the exit status.
    let started = Instant::now();
    let ran = run(
        &cred,
        "edge",
        &["sh", "-c", "sleep 1000 & echo $!; exit 7"],
        Vec::new(),
    )
    .await?;
    let took = started.elapsed();
    assert_eq!(ran.status.code(), Some(7), "{}", ran.stderr);
    assert!(took < Duration::from_secs(10), "run took {took:?}");
    ended(pid_in(&String::from_utf8_lossy(&ran.stdout))?).await?;

    // One that let go of the output: the session ended at once and the
    // child lived on.
    let ran = run(
        &cred,
        "edge",
        &["sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"],
        Vec::new(),
    )
    .await?;
    assert!(ran.status.success(), "{}", ran.stderr);
    ended(pid_in(&String::from_utf8_lossy(&ran.stdout))?).await?;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_takes_its_background_jobs_along() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_SESSIONS).await;
    let agent = relay.agent_with("edge", &[], allow_sessions).await;
    let cred = relay.issue(Role::Client, "alice");

    // An interactive shell puts a job in a process group of its own: only
    // its session holds it. `exit` leaves it running.
    let (mut term, mut child) = Term::spawn(&cred, "edge", &[])?;
    term.send("sleep 1000 & echo bg-$((1+1))=$!\r").await?;
    let pid = pid_in(&term.line_after("bg-2=").await?)?;
    term.send("exit 4\r").await?;
    let status = guard("client exit", child.wait()).await?;
    assert_eq!(status.code(), Some(4), "{status:?}");
    ended(pid).await?;

    // The client goes away (SIGTERM: it resets the stream): a job that
    // ignores SIGHUP goes too.
    let (mut term, mut child) = Term::spawn(&cred, "edge", &[])?;
    term.send("sh -c 'trap \"\" HUP; exec sleep 1000' & echo bg-$((2+2))=$!\r")
        .await?;
    let pid = pid_in(&term.line_after("bg-4=").await?)?;
    let client = child
        .id()
        .and_then(|p| Pid::from_raw(i32::try_from(p).ok()?))
        .ok_or_else(|| anyhow::anyhow!("client pid"))?;
    rustix::process::kill_process(client, rustix::process::Signal::TERM)?;
    let _ = guard("client gone", child.wait()).await?;
    ended(pid).await?;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_expiry_take_the_sessions_processes_along() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let mut relay = TestRelay::start(ALLOW_SESSIONS).await;
    let agent = relay.agent_with("edge", &[], allow_sessions).await;

    // Revoked during a shell with a job that ignores SIGHUP.
    let cred = relay.issue(Role::Client, "mallory");
    let (mut term, mut child) = Term::spawn(&cred, "edge", &[])?;
    term.send("sh -c 'trap \"\" HUP; exec sleep 1000' & echo bg-$((3+3))=$!\r")
        .await?;
    let pid = pid_in(&term.line_after("bg-6=").await?)?;
    relay.revoke(Role::Client, "mallory").await;
    let status = guard("client exit after revocation", child.wait()).await?;
    assert_eq!(status.code(), Some(255), "{status:?}");
    ended(pid).await?;

    // A credential that expires during a command whose program dies of
    // the hang-up while its child ignores it.
    let cred = relay.issue_with(Role::Client, "brief", Some(Duration::from_secs(3)));
    let mut child = client_command(
        &cred,
        &[
            "run",
            "edge",
            "--",
            "sh",
            "-c",
            "(trap '' HUP; exec sleep 1000) & echo $!; exec sleep 300",
        ],
    )
    .stdin(Stdio::null())
    .spawn()?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        let n = guard("background pid", out.read(&mut byte)).await?;
        anyhow::ensure!(n == 1, "no pid before the end of output");
        line.push(byte[0]);
    }
    let pid = pid_in(&String::from_utf8_lossy(&line))?;
    let status = guard("client exit at expiry", child.wait()).await?;
    assert_eq!(status.code(), Some(255), "{status:?}");
    ended(pid).await?;
    agent.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

/// `relay-agent` under `sh` with SIGXFSZ ignored and files limited to
/// `blocks` of 512 bytes: a recording that grows past it fails with EFBIG,
/// as on a full disk, while the agent lives on.
fn agent_with_small_files(
    relay: &TestRelay,
    blocks: u32,
    record_dir: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let cred = relay.issue(Role::Agent, "edge");
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\""
        ))
        .arg(relay_tests::programs!().agent)
        .arg("--credential")
        .arg(cred)
        .args(["--allow-shell", "--shell", "/bin/sh", "--record-dir"])
        .arg(record_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    Ok(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_that_fails_ends_the_session_and_its_processes() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let relay = TestRelay::start(ALLOW_SESSIONS).await;
    let records = tempfile::tempdir()?;
    // 4 KiB: the header, prompts and a few commands fit; a flood does not.
    let mut agent = agent_with_small_files(&relay, 8, records.path())?;
    relay.wait_instances("edge", 1).await;
    let cred = relay.issue(Role::Client, "alice");
    let (mut term, mut child) = Term::spawn(&cred, "edge", &[])?;
    term.send("sleep 1000 & echo bg-$((4+4))=$!\r").await?;
    let pid = pid_in(&term.line_after("bg-8=").await?)?;
    term.send("echo flood-$((5+5)); head -c 20000 /dev/zero | tr '\\0' x\r")
        .await?;
    term.expect("flood-10").await?;
    let shown = term.expect("the session is ended").await?;
    let status = guard("client exit", child.wait()).await?;
    assert_eq!(status.code(), Some(255), "{status:?}");
    assert!(shown.contains("recording"), "{shown}");
    assert!(shown.contains("File too large"), "{shown}");
    // What the client saw was recorded first: no more of the flood than
    // the recording holds.
    let casts: Vec<_> = std::fs::read_dir(records.path())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert_eq!(casts.len(), 1, "{casts:?}");
    let recorded = std::fs::read_to_string(&casts[0])?;
    let flood = |s: &str| s.matches('x').count();
    // The message names the recording's path, which may hold an x.
    let shown = shown.split("relay-agent:").next().unwrap_or_default();
    let after = recorded.split_once("flood-10").map_or("", |(_, rest)| rest);
    assert!(
        flood(shown) <= flood(after),
        "client saw {} x, recording holds {}",
        flood(shown),
        flood(after)
    );
    ended(pid).await?;
    // The agent itself lives on and serves the next session.
    assert!(agent.try_wait()?.is_none(), "agent died");
    let ci = relay.issue(Role::Client, "ci");
    let ran = run(&ci, "edge", &["echo", "still-here"], Vec::new()).await?;
    assert!(ran.status.success(), "{}", ran.stderr);
    let _ = agent.start_kill();
    relay.shutdown().await;
    Ok(())
}
