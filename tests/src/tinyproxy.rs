//! A real HTTP CONNECT proxy for the tests: Debian's `tinyproxy`, run as
//! the test's own process on 127.0.0.1 with its own config file in a
//! temporary directory, killed when its handle drops.
//!
//! tinyproxy cannot listen on port 0, so [`TinyProxy::start`] picks a free
//! port (binds 127.0.0.1:0 and lets it go) and tries another if something
//! took it in between. It waits for the line tinyproxy prints once it
//! listens (`Starting main loop. Accepting connections.`), not a clock.
//! Run as root without a `User` line it only warns and keeps root; as any
//! other user it runs as that user: the config names neither.

use std::fmt::Write as _;
use std::net::SocketAddr;

use anyhow::Context;
use tokio::process::Command;

use crate::launch::{Process, Read};

/// What tinyproxy prints once its socket listens.
const READY: &str = "Accepting connections";

/// How a [`TinyProxy`] is configured.
#[derive(Clone, Debug, Default)]
pub struct TinyProxyConfig {
    /// The ports CONNECT may reach (`ConnectPort`); empty: every port.
    pub connect_ports: Vec<u16>,
    /// `BasicAuth user password`: the credentials it demands, if any
    /// (keep them to letters and digits: its config has no quoting).
    pub basic_auth: Option<(String, String)>,
    /// `/etc/hosts` as tinyproxy alone sees it (names only the proxy
    /// resolves): it then runs under `unshare -m` with these lines
    /// bind-mounted, which works only inside a test's own user namespace.
    pub hosts: Option<String>,
}

impl TinyProxyConfig {
    /// tinyproxy's config file for `port`.
    fn file(&self, port: u16) -> String {
        // Allow: only this machine. Timeout: an idle tunnel's life.
        let mut text = format!(
            "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 60\nMaxClients 64\n\
             LogLevel Info\n"
        );
        for p in &self.connect_ports {
            let _ = writeln!(text, "ConnectPort {p}");
        }
        if let Some((user, password)) = &self.basic_auth {
            let _ = writeln!(text, "BasicAuth {user} {password}");
        }
        text
    }
}

/// A tinyproxy process on 127.0.0.1, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct TinyProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// 127.0.0.1 and its port.
    pub addr: SocketAddr,
    process: Process,
    _dir: tempfile::TempDir,
}

impl TinyProxy {
    /// Whether tinyproxy can be run here; a test that needs it says
    /// SKIPPED without it (`.ci/run` installs it).
    pub fn missing() -> bool {
        let found = std::process::Command::new("tinyproxy")
            .arg("-v")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if found.is_err() {
            println!("SKIPPED: tinyproxy is not installed (apt-get install tinyproxy)");
        }
        found.is_err()
    }

    /// Starts tinyproxy with `config` and waits until it listens.
    ///
    /// # Errors
    /// If tinyproxy is not installed (`apt-get install tinyproxy`), or it
    /// exits or stays silent three times in a row.
    pub async fn start(config: TinyProxyConfig) -> anyhow::Result<TinyProxy> {
        let mut last = None;
        for _ in 0..3 {
            match TinyProxy::try_start(&config).await {
                Ok(proxy) => return Ok(proxy),
                // Usually the port was taken between our probe and its bind.
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("tinyproxy did not start")))
    }

    async fn try_start(config: &TinyProxyConfig) -> anyhow::Result<TinyProxy> {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").context("bind a probe")?;
            probe.local_addr().context("probe address")?.port()
        };
        let dir = tempfile::tempdir().context("tinyproxy's directory")?;
        let file = dir.path().join("tinyproxy.conf");
        std::fs::write(&file, config.file(port))
            .with_context(|| format!("write {}", file.display()))?;
        let mut command = match &config.hosts {
            None => {
                let mut command = Command::new("tinyproxy");
                command.arg("-d").arg("-c").arg(&file);
                command
            }
            Some(lines) => {
                let hosts = dir.path().join("hosts");
                std::fs::write(&hosts, lines)
                    .with_context(|| format!("write {}", hosts.display()))?;
                let mut command = Command::new("unshare");
                command
                    .args([
                        "-m",
                        "sh",
                        "-c",
                        r#"mount --bind "$0" /etc/hosts && exec tinyproxy -d -c "$1""#,
                    ])
                    .arg(&hosts)
                    .arg(&file);
                command
            }
        };
        let mut process = Process::spawn("tinyproxy", &mut command, Read::Both)
            .context("is tinyproxy installed? (apt-get install tinyproxy)")?;
        process
            .line_with(&[READY])
            .await
            .with_context(|| format!("tinyproxy on 127.0.0.1:{port} did not start"))?;
        // It logs every connection: drain the pipe, keep nothing.
        process.forget_lines();
        Ok(TinyProxy {
            port,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            process,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://user:password@127.0.0.1:PORT` (no percent-encoding).
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.addr)
    }

    /// Stops it now (SIGKILL) rather than when dropped.
    ///
    /// # Errors
    /// If it cannot be signalled or does not exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.process.kill()?;
        self.process.wait().await.map(|_| ())
    }
}
