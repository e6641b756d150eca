//! The real programs as child processes, for tests that need a separate
//! process (one to SIGKILL or SIGTERM, one whose log a test reads, the
//! command line itself) and for `relay-hostile`.
//!
//! Every launcher waits for the line the program prints when it is ready
//! (`relay-server listening on ADDR`, the agent's `registered with relay`,
//! `forwarding ADDR -> DEST (PATH)`, `socks5 proxy on ADDR ...`) and hands back the
//! address in it; none of them sleeps. Every child is killed when its
//! handle drops, so a failing test leaves no process behind. A child's
//! other output goes to our stderr when `RUST_LOG` is set, else nowhere.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::GUARD;

/// What `relay-server run` prints once its UDP socket is bound.
pub const RELAY_LISTENING: &str = "relay-server listening on ";
/// What `relay-server run --metrics ADDR` prints once its admin endpoint is bound.
pub const RELAY_METRICS: &str = "relay-server metrics on http://";
/// What the agent logs (at `info`) each time a relay accepted its registration.
pub const AGENT_REGISTERED: &str = "registered with relay";
/// What `relay-client forward` prints once it listens: `forwarding LOCAL -> DEST (PATH)`,
/// PATH `end-to-end` or `relay path`.
pub const CLIENT_FORWARDING: &str = "forwarding ";
/// What `relay-client socks` prints once it listens: `socks5 proxy on ADDR ...`.
pub const CLIENT_SOCKS: &str = "socks5 proxy on ";

/// Where the three programs are.
#[derive(Clone, Debug)]
pub struct Programs {
    /// `relay-server`.
    pub server: PathBuf,
    /// `relay-agent`.
    pub agent: PathBuf,
    /// `relay-client`.
    pub client: PathBuf,
}

impl Programs {
    /// The programs under their product names in `dir`, as `cargo build`
    /// lays them out (`relay-hostile --bins target/release`).
    pub fn in_dir(dir: &Path) -> Programs {
        Programs {
            server: dir.join("relay-server"),
            agent: dir.join("relay-agent"),
            client: dir.join("relay-client"),
        }
    }
}

/// The programs built by cargo for this test package
/// (`test-relay-server`...). A macro, because cargo sets
/// `CARGO_BIN_EXE_*` only when compiling the integration tests.
#[macro_export]
macro_rules! programs {
    () => {
        $crate::launch::Programs {
            server: std::path::PathBuf::from(env!("CARGO_BIN_EXE_test-relay-server")),
            agent: std::path::PathBuf::from(env!("CARGO_BIN_EXE_test-relay-agent")),
            client: std::path::PathBuf::from(env!("CARGO_BIN_EXE_test-relay-client")),
        }
    };
}

/// Children's logs are shown only when the user asked for logs (`RUST_LOG`).
fn verbose() -> bool {
    std::env::var_os("RUST_LOG").is_some()
}

/// Where a child's output goes that no launcher reads.
fn unread() -> Stdio {
    if verbose() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// The lines a child prints on the pipe its launcher reads. A task reads
/// them as they come, so the child never blocks on a full pipe.
#[derive(Debug)]
struct Lines {
    /// `None` once the owner said it reads no more (the task then discards).
    rx: Option<mpsc::UnboundedReceiver<String>>,
}

impl Lines {
    fn read(pipe: impl AsyncRead + Unpin + Send + 'static, name: &'static str) -> Lines {
        let (tx, rx) = mpsc::unbounded_channel();
        Lines::forward(pipe, name, tx);
        Lines { rx: Some(rx) }
    }

    /// Sends the lines of `pipe` to `tx` as they come (two pipes may share one `tx`).
    fn forward(
        pipe: impl AsyncRead + Unpin + Send + 'static,
        name: &'static str,
        tx: mpsc::UnboundedSender<String>,
    ) {
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if verbose() {
                    eprintln!("[{name}] {line}");
                }
                // A send fails once nobody reads: keep draining the pipe.
                let _ = tx.send(line);
            }
        });
    }
}

/// A running program: killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Process {
    name: &'static str,
    child: Child,
    lines: Lines,
}

/// Which of a child's pipes carries the lines its launcher waits for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Read {
    Stdout,
    Stderr,
    /// Both, as one stream of lines.
    Both,
}

impl Process {
    /// Spawns `command`, reading the pipe `read`; the other goes to [`unread`].
    pub(crate) fn spawn(
        name: &'static str,
        command: &mut Command,
        read: Read,
    ) -> anyhow::Result<Process> {
        let (stdout, stderr) = match read {
            Read::Stdout => (Stdio::piped(), unread()),
            Read::Stderr => (unread(), Stdio::piped()),
            Read::Both => (Stdio::piped(), Stdio::piped()),
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {name} ({command:?})"))?;
        let lines = match read {
            Read::Stdout => Lines::read(child.stdout.take().context("child stdout")?, name),
            Read::Stderr => Lines::read(child.stderr.take().context("child stderr")?, name),
            Read::Both => {
                let (tx, rx) = mpsc::unbounded_channel();
                Lines::forward(
                    child.stdout.take().context("child stdout")?,
                    name,
                    tx.clone(),
                );
                Lines::forward(child.stderr.take().context("child stderr")?, name, tx);
                Lines { rx: Some(rx) }
            }
        };
        Ok(Process { name, child, lines })
    }

    /// The next line that contains one of `any`; earlier lines are skipped.
    ///
    /// # Errors
    /// If the program exits first, or prints no such line within [`GUARD`].
    pub async fn line_with(&mut self, any: &[&str]) -> anyhow::Result<String> {
        let name = self.name;
        let rx = self
            .lines
            .rx
            .as_mut()
            .with_context(|| format!("{name}'s lines are no longer read"))?;
        let found = tokio::time::timeout(GUARD, async {
            while let Some(line) = rx.recv().await {
                if any.iter().any(|s| line.contains(s)) {
                    return Some(line);
                }
            }
            None
        })
        .await
        .with_context(|| format!("{name} printed none of {any:?} within {GUARD:?}"))?;
        found.with_context(|| format!("{name} exited before printing any of {any:?}"))
    }

    /// What follows `prefix` on the next line that starts with it.
    ///
    /// # Errors
    /// As [`Process::line_with`].
    pub async fn after(&mut self, prefix: &str) -> anyhow::Result<String> {
        loop {
            let line = self.line_with(&[prefix]).await?;
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.to_owned());
            }
        }
    }

    /// Stops keeping lines for [`Process::line_with`] (a long run would
    /// pile them up); the pipe is still drained.
    pub fn forget_lines(&mut self) {
        self.lines.rx = None;
    }

    /// The process id, while it runs.
    ///
    /// # Errors
    /// If it has been reaped.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .with_context(|| format!("{} has already exited", self.name))
    }

    /// Sends SIGKILL (no clean QUIC close, no GoAway) without waiting.
    ///
    /// # Errors
    /// If the signal cannot be sent.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child
            .start_kill()
            .with_context(|| format!("SIGKILL {}", self.name))
    }

    /// Sends SIGTERM without waiting.
    ///
    /// # Errors
    /// If the process has exited or the signal cannot be sent.
    pub fn sigterm(&self) -> anyhow::Result<()> {
        self.signal(rustix::process::Signal::TERM)
    }

    /// Sends SIGHUP (reload) without waiting.
    ///
    /// # Errors
    /// If the process has exited or the signal cannot be sent.
    pub fn sighup(&self) -> anyhow::Result<()> {
        self.signal(rustix::process::Signal::HUP)
    }

    fn signal(&self, signal: rustix::process::Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid()?).context("pid out of range")?;
        let pid = rustix::process::Pid::from_raw(pid).context("pid 0")?;
        rustix::process::kill_process(pid, signal)
            .with_context(|| format!("{signal:?} {}", self.name))
    }

    /// Waits for the exit, under the hang guard.
    ///
    /// # Errors
    /// If it does not exit within [`GUARD`].
    pub async fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        let name = self.name;
        tokio::time::timeout(GUARD, self.child.wait())
            .await
            .with_context(|| format!("{name} still running after {GUARD:?}"))?
            .with_context(|| format!("wait for {name}"))
    }

    /// SIGTERM, then the exit status (the test decides what it must be).
    ///
    /// # Errors
    /// As [`Process::sigterm`] and [`Process::wait`].
    pub async fn terminate(mut self) -> anyhow::Result<ExitStatus> {
        self.sigterm()?;
        self.wait().await
    }
}

/// A relay directory made by `relay-server init` for the name 127.0.0.1,
/// with `policy`.
///
/// # Errors
/// If `init` fails or the policy cannot be written.
pub async fn relay_dir(programs: &Programs, policy: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let status = Command::new(&programs.server)
        .args(["init", "--name", "127.0.0.1", "--dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .await
        .with_context(|| format!("cannot run {} init", programs.server.display()))?;
    anyhow::ensure!(status.success(), "relay-server init: {status}");
    relay_net::fsutil::write_public(&dir.path().join("policy.toml"), policy.as_bytes())?;
    Ok(dir)
}

/// `relay-server run` as a child process, with its directory and addresses.
#[derive(Debug)]
pub struct RelayProcess {
    /// Its directory (CA, certificates, policy, audit log, reset key).
    pub dir: tempfile::TempDir,
    /// Its UDP address.
    pub addr: SocketAddr,
    /// Its admin endpoint, when started with `--metrics`.
    pub metrics: Option<SocketAddr>,
    /// The process.
    pub process: Process,
    programs: Programs,
}

impl RelayProcess {
    /// [`relay_dir`], then `run --listen 127.0.0.1:0 RUN_ARGS...`.
    ///
    /// # Errors
    /// If a step fails or the relay does not come up within [`GUARD`].
    pub async fn start(
        programs: &Programs,
        policy: &str,
        run_args: &[&str],
    ) -> anyhow::Result<RelayProcess> {
        let dir = relay_dir(programs, policy).await?;
        RelayProcess::run_in(programs, dir, "127.0.0.1:0", run_args).await
    }

    /// `run --listen LISTEN --dir DIR RUN_ARGS...` on an existing directory
    /// (a restart); waits for the bound address, and for the admin
    /// endpoint's when `RUN_ARGS` has `--metrics`.
    ///
    /// # Errors
    /// If it cannot be started or does not come up within [`GUARD`].
    pub async fn run_in(
        programs: &Programs,
        dir: tempfile::TempDir,
        listen: &str,
        run_args: &[&str],
    ) -> anyhow::Result<RelayProcess> {
        let mut process = Process::spawn(
            "relay-server",
            Command::new(&programs.server)
                .args(["run", "--listen", listen, "--dir"])
                .arg(dir.path())
                .args(run_args),
            Read::Stdout,
        )?;
        let addr = process.after(RELAY_LISTENING).await?;
        let addr = addr
            .parse()
            .with_context(|| format!("relay address {addr:?}"))?;
        let metrics = if run_args.contains(&"--metrics") {
            let url = process.after(RELAY_METRICS).await?;
            let admin = url.trim_end_matches("/metrics");
            Some(
                admin
                    .parse()
                    .with_context(|| format!("metrics address {url:?}"))?,
            )
        } else {
            None
        };
        Ok(RelayProcess {
            dir,
            addr,
            metrics,
            process,
            programs: programs.clone(),
        })
    }

    /// `relay-server issue ROLE NAME` into the relay directory, for this relay.
    ///
    /// # Errors
    /// If `issue` fails.
    pub async fn issue(&self, role: &str, name: &str) -> anyhow::Result<PathBuf> {
        self.issue_via(role, name, self.addr).await
    }

    /// As [`RelayProcess::issue`] (same file: a renewal replaces it), with
    /// more `issue` flags (`--ttl 8s`).
    ///
    /// # Errors
    /// If `issue` fails.
    pub async fn issue_with(
        &self,
        role: &str,
        name: &str,
        extra: &[&str],
    ) -> anyhow::Result<PathBuf> {
        self.issue_args(role, name, self.addr, extra).await
    }

    /// As [`RelayProcess::issue`], with `--relay VIA` (a chaos proxy, say).
    ///
    /// # Errors
    /// If `issue` fails.
    pub async fn issue_via(
        &self,
        role: &str,
        name: &str,
        via: SocketAddr,
    ) -> anyhow::Result<PathBuf> {
        self.issue_args(role, name, via, &[]).await
    }

    async fn issue_args(
        &self,
        role: &str,
        name: &str,
        via: SocketAddr,
        extra: &[&str],
    ) -> anyhow::Result<PathBuf> {
        let out = self.dir.path().join(format!("{role}-{name}.cred"));
        let status = Command::new(&self.programs.server)
            .args(["issue", role, name, "--relay", &via.to_string(), "--dir"])
            .arg(self.dir.path())
            .arg("--out")
            .arg(&out)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .await
            .with_context(|| format!("cannot run {} issue", self.programs.server.display()))?;
        anyhow::ensure!(
            status.success(),
            "relay-server issue {role} {name}: {status}"
        );
        Ok(out)
    }

    /// The audit log's events, parsed.
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        crate::audit_in(self.dir.path())
    }

    /// SIGKILL (no close, no GoAway), waits for the exit and keeps the
    /// directory, for a restart with [`RelayProcess::run_in`].
    ///
    /// # Errors
    /// If the process does not exit.
    pub async fn crash(mut self) -> anyhow::Result<tempfile::TempDir> {
        self.process.kill()?;
        self.process.wait().await?;
        Ok(self.dir)
    }

    /// SIGTERM; the exit status and the directory.
    ///
    /// # Errors
    /// As [`Process::terminate`].
    pub async fn terminate(self) -> anyhow::Result<(ExitStatus, tempfile::TempDir)> {
        let status = self.process.terminate().await?;
        Ok((status, self.dir))
    }
}

/// One more `relay-server run` process on the directory of another (one
/// relay identity, several instances): what it shares and what it must
/// not is in deploy/README.md "Several relays".
#[derive(Debug)]
pub struct RelayInstance {
    /// The process; [`Process::line_with`] reads both its standard output
    /// (audit lines, with `--audit-log -`) and its log.
    pub process: Process,
    /// Its UDP address.
    pub addr: SocketAddr,
}

impl RelayInstance {
    /// `run --listen LISTEN --dir DIR RUN_ARGS...`; waits for the bound
    /// address (on standard error when the audit log is standard output).
    ///
    /// # Errors
    /// If it cannot be started or does not come up within [`GUARD`].
    pub async fn start(
        programs: &Programs,
        dir: &Path,
        listen: &str,
        run_args: &[&str],
    ) -> anyhow::Result<RelayInstance> {
        let mut process = Process::spawn(
            "relay-server",
            Command::new(&programs.server)
                .args(["run", "--listen", listen, "--dir"])
                .arg(dir)
                .args(run_args)
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                ),
            Read::Both,
        )?;
        let addr = process.after(RELAY_LISTENING).await?;
        let addr = addr
            .parse()
            .with_context(|| format!("relay address {addr:?}"))?;
        Ok(RelayInstance { process, addr })
    }
}

/// Starts `relay-agent --credential FILE ARGS...` without waiting; its log
/// (at `info`, or as `RUST_LOG` says) is read by [`Process::line_with`].
///
/// # Errors
/// If it cannot be started.
pub fn spawn_agent(
    programs: &Programs,
    credential: &Path,
    args: &[String],
) -> anyhow::Result<Process> {
    Process::spawn(
        "relay-agent",
        Command::new(&programs.agent)
            .arg("--credential")
            .arg(credential)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            ),
        Read::Stderr,
    )
}

/// [`spawn_agent`], then waits until the agent has registered.
///
/// # Errors
/// If it cannot be started, exits, or does not register within [`GUARD`].
pub async fn agent(
    programs: &Programs,
    credential: &Path,
    args: &[String],
) -> anyhow::Result<Process> {
    let mut agent = spawn_agent(programs, credential, args)?;
    agent.line_with(&[AGENT_REGISTERED]).await?;
    Ok(agent)
}

/// `relay-client ARGS...` without waiting, its standard output and error
/// read as one stream of lines ([`Process::line_with`]).
///
/// # Errors
/// If it cannot be started.
pub fn spawn_client<S: AsRef<std::ffi::OsStr>>(
    programs: &Programs,
    args: &[S],
) -> anyhow::Result<Process> {
    spawn_client_with(programs, args, &[])
}

/// [`spawn_client`] with these environment variables set for it.
///
/// # Errors
/// If it cannot be started.
pub fn spawn_client_with<S: AsRef<std::ffi::OsStr>>(
    programs: &Programs,
    args: &[S],
    env: &[(&str, &Path)],
) -> anyhow::Result<Process> {
    let mut command = Command::new(&programs.client);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    Process::spawn("relay-client", &mut command, Read::Both)
}

/// `relay-client --credential FILE ARGS...`, waiting for the line that
/// starts with `ready`; returns the process and what follows `ready`.
pub async fn client(
    programs: &Programs,
    credential: &Path,
    args: &[&str],
    ready: &str,
) -> anyhow::Result<(Process, String)> {
    let mut process = Process::spawn(
        "relay-client",
        Command::new(&programs.client)
            .arg("--credential")
            .arg(credential)
            .args(args),
        Read::Stderr,
    )?;
    let rest = process.after(ready).await?;
    Ok((process, rest))
}

/// `relay-client forward 127.0.0.1:0 DEST`; returns it with its local
/// address, once it listens.
///
/// # Errors
/// If it cannot be started, exits, or announces another destination.
pub async fn forward(
    programs: &Programs,
    credential: &Path,
    dest: &str,
) -> anyhow::Result<(Process, SocketAddr)> {
    let (process, local, _path) = forward_with(programs, credential, &[], dest).await?;
    Ok((process, local))
}

/// `relay-client ARGS forward 127.0.0.1:0 DEST`; returns it with its local
/// address and the path it says its streams take (`end-to-end` or
/// `relay path`), once it listens.
///
/// # Errors
/// If it cannot be started, exits, or announces another destination.
pub async fn forward_with(
    programs: &Programs,
    credential: &Path,
    args: &[&str],
    dest: &str,
) -> anyhow::Result<(Process, SocketAddr, String)> {
    let args: Vec<&str> = args
        .iter()
        .copied()
        .chain(["forward", "127.0.0.1:0", dest])
        .collect();
    let (process, rest) = client(programs, credential, &args, CLIENT_FORWARDING).await?;
    let (local, to) = rest
        .split_once(" -> ")
        .with_context(|| format!("expected `LOCAL -> DEST (PATH)`, got {rest:?}"))?;
    let (to, path) = to
        .split_once(" (")
        .with_context(|| format!("expected `LOCAL -> DEST (PATH)`, got {rest:?}"))?;
    anyhow::ensure!(to == dest, "forwarding to {to}, not {dest}");
    let local = local
        .parse()
        .with_context(|| format!("forward address {local:?}"))?;
    Ok((process, local, path.trim_end_matches(')').to_owned()))
}

/// `relay-client socks 127.0.0.1:0 AGENT`; returns it with its address,
/// once it listens.
///
/// # Errors
/// If it cannot be started or exits first.
pub async fn socks(
    programs: &Programs,
    credential: &Path,
    agent: &str,
) -> anyhow::Result<(Process, SocketAddr)> {
    let (process, rest) = client(
        programs,
        credential,
        &["socks", "127.0.0.1:0", agent],
        CLIENT_SOCKS,
    )
    .await?;
    let addr = rest.split_whitespace().next().unwrap_or_default();
    let addr = addr
        .parse()
        .with_context(|| format!("socks address {addr:?}"))?;
    Ok((process, addr))
}

/// Waits until `agent` has logged a registration through each of `addrs`
/// (its line ends `addr=IP:PORT`), in any order.
///
/// # Errors
/// If the agent exits or one does not come within [`GUARD`].
pub async fn registered_with_all(agent: &mut Process, addrs: &[String]) -> anyhow::Result<()> {
    let mut waiting: Vec<String> = addrs.iter().map(|a| format!("addr={a}")).collect();
    while !waiting.is_empty() {
        let line = agent.line_with(&[AGENT_REGISTERED]).await?;
        waiting.retain(|tail| !line.trim_end().ends_with(tail.as_str()));
    }
    Ok(())
}

/// `relay-server issue ROLE NAME --relay R...` into `dir`: a credential
/// that names every relay address in `relays`.
///
/// # Errors
/// If `issue` fails.
pub async fn issue_for(
    programs: &Programs,
    dir: &Path,
    role: &str,
    name: &str,
    relays: &[String],
) -> anyhow::Result<PathBuf> {
    let out = dir.join(format!("{role}-{name}.cred"));
    let mut command = Command::new(&programs.server);
    command.args(["issue", role, name, "--dir"]).arg(dir);
    for relay in relays {
        command.args(["--relay", relay]);
    }
    let status = command
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .await
        .with_context(|| format!("cannot run {} issue", programs.server.display()))?;
    anyhow::ensure!(
        status.success(),
        "relay-server issue {role} {name}: {status}"
    );
    Ok(out)
}
