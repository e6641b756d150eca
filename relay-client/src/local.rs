//! A whole deployment on loopback, as separate processes exactly as in
//! production: a throwaway relay directory, `relay-server run`, agents.
//! What `relay-client demo` and `bench --local` need of it; the tests have
//! their own launcher (`tests/src/launch.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// Where the program binaries are.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `relay-server`.
    pub server: PathBuf,
    /// `relay-agent`.
    pub agent: PathBuf,
}

impl Binaries {
    /// `relay-server` and `relay-agent`, each from its environment variable
    /// (`RELAY_SERVER_BIN`, `RELAY_AGENT_BIN`: the test harness builds them
    /// under other names), else beside the running executable (as `cargo
    /// build` and most installs lay them out), else on `PATH`.
    ///
    /// # Errors
    /// [`NotFound`], naming where it looked.
    pub fn find() -> Result<Binaries, NotFound> {
        Ok(Binaries {
            server: locate("RELAY_SERVER_BIN", "relay-server")?,
            agent: locate("RELAY_AGENT_BIN", "relay-agent")?,
        })
    }
}

/// A program that `relay-client` starts is nowhere it looked.
#[derive(Debug, thiserror::Error)]
#[error(
    "{name} not found: looked {looked}; build or install all three programs \
     (`cargo build --release` puts them side by side), or set {env} to its path"
)]
pub struct NotFound {
    /// The program.
    pub name: &'static str,
    /// The variable that would name it.
    pub env: &'static str,
    /// Where it looked, in words.
    pub looked: String,
}

/// `$env` if set, else `name` beside the running executable, else `name`
/// on `PATH`.
///
/// # Errors
/// [`NotFound`], naming the folder beside us and the `PATH` searched.
pub fn locate(env: &'static str, name: &'static str) -> Result<PathBuf, NotFound> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    if let Some(found) = beside
        .as_ref()
        .map(|dir| dir.join(name))
        .filter(|p| p.is_file())
    {
        return Ok(found);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
    {
        return Ok(found);
    }
    let beside = match beside {
        Some(dir) => format!("beside this program (in {})", dir.display()),
        None => "beside this program (its folder is unknown)".to_owned(),
    };
    let path = path.to_string_lossy();
    let on_path = if path.is_empty() {
        "on PATH (empty)".to_owned()
    } else {
        format!("on PATH ({path})")
    };
    Err(NotFound {
        name,
        env,
        looked: format!("{beside} and {on_path}"),
    })
}

/// How this program was started, for commands it prints: its own path.
pub fn current_program() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "relay-client".to_owned())
}

/// Starts `relay-agent bench-server --listen 127.0.0.1:0` (the direct-TCP
/// baseline of `relay-client bench`) and waits for its address.
///
/// # Errors
/// If it cannot be started or does not report an address in time.
pub async fn start_bench_server(agent_bin: &Path) -> anyhow::Result<(Child, SocketAddr)> {
    let mut child = Command::new(agent_bin)
        .args(["bench-server", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(child_stderr())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {} bench-server", agent_bin.display()))?;
    let stdout = child.stdout.take().context("bench-server stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(STARTUP, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("bench-server listening on ") {
                return Ok(addr.parse::<SocketAddr>()?);
            }
        }
        anyhow::bail!("bench-server exited before listening")
    })
    .await
    .context("bench-server did not start in time")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addr))
}

/// A running relay in a temporary directory.
#[derive(Debug)]
pub struct LocalRelay {
    /// The relay directory (CA, certificates, policy, audit log).
    pub dir: tempfile::TempDir,
    /// The relay's UDP address.
    pub addr: SocketAddr,
    bins: Binaries,
    relay: Child,
}

/// How long a child may take to report that it is up.
const STARTUP: Duration = Duration::from_secs(20);

impl LocalRelay {
    /// `init` + `run --listen 127.0.0.1:0 RUN_ARGS...`, waiting for the
    /// bound address.
    ///
    /// # Errors
    /// If a step fails or the relay does not come up in time.
    pub async fn start(
        bins: &Binaries,
        policy: &str,
        run_args: &[&str],
    ) -> anyhow::Result<LocalRelay> {
        let dir = tempfile::tempdir()?;
        let status = Command::new(&bins.server)
            .args(["init", "--name", "127.0.0.1", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .status()
            .await
            .with_context(|| format!("running {}", bins.server.display()))?;
        anyhow::ensure!(status.success(), "relay-server init failed");
        relay_net::fsutil::write_public(&dir.path().join("policy.toml"), policy.as_bytes())?;
        let mut relay = Command::new(&bins.server)
            .args(["run", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path())
            .args(run_args)
            .stdout(Stdio::piped())
            .stderr(child_stderr())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = relay.stdout.take().context("relay stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(STARTUP, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("relay-server listening on ") {
                    return Ok(addr.parse::<SocketAddr>()?);
                }
            }
            anyhow::bail!("relay-server exited before listening")
        })
        .await
        .context("relay-server did not start in time")??;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(LocalRelay {
            dir,
            addr,
            bins: bins.clone(),
            relay,
        })
    }

    /// Issues a credential into the relay directory; returns its path.
    ///
    /// # Errors
    /// If `relay-server issue` fails.
    pub async fn issue(&self, role: &str, name: &str) -> anyhow::Result<PathBuf> {
        let out = self.dir.path().join(format!("{role}-{name}.cred"));
        let status = Command::new(&self.bins.server)
            .args([
                "issue",
                role,
                name,
                "--relay",
                &self.addr.to_string(),
                "--dir",
            ])
            .arg(self.dir.path())
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "relay-server issue {role} {name} failed");
        Ok(out)
    }

    /// The relay process's id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.relay.id()
    }

    /// The relay directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `relay-agent` with `args` and waits until it has registered.
    ///
    /// # Errors
    /// If it exits or does not register in time.
    pub async fn start_agent(&self, credential: &Path, args: &[String]) -> anyhow::Result<Child> {
        start_agent(&self.bins.agent, credential, args).await
    }
}

/// Starts `relay-agent --credential FILE ARGS…` and waits for its
/// "registered with relay" log line; its log goes on to our stderr.
///
/// # Errors
/// If it exits or does not register in time.
async fn start_agent(bin: &Path, credential: &Path, args: &[String]) -> anyhow::Result<Child> {
    let mut child = Command::new(bin)
        .arg("--credential")
        .arg(credential)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    let stderr = child.stderr.take().context("agent stderr")?;
    let (up_tx, up_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut up = Some(up_tx);
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if verbose() {
                eprintln!("[agent] {line}");
            }
            if line.contains("registered with relay") {
                if let Some(tx) = up.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    tokio::time::timeout(STARTUP, up_rx)
        .await
        .context("relay-agent did not register in time")?
        .context("relay-agent exited before registering")?;
    Ok(child)
}

/// Children's logs are shown only when the user asked for logs (`RUST_LOG`).
fn verbose() -> bool {
    std::env::var_os("RUST_LOG").is_some()
}

fn child_stderr() -> Stdio {
    if verbose() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

impl Drop for LocalRelay {
    fn drop(&mut self) {
        let _ = self.relay.start_kill();
    }
}
