//! The agent's configuration: from flags, or a TOML file with the same
//! content. Building it never touches the network.
//!
//! ```toml
//! credential = "/etc/relay/agent.cred"
//! [expose]
//! kube-api = "10.0.0.1:6443"
//! db = "db.internal:5432"
//! ```
//!
//! Sessions (see [`crate::session`]) take the same keys as the flags:
//! `allow-shell`, `shell`, `shell-user`, `shell-env`, `record-dir`,
//! `record-fail-open`. SOCKS (see [`crate::socks`]): `allow-socks` and
//! `socks-host`, lists of the flags' values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use relay_net::credential::Loaded;
use relay_net::endpoint::Transport;
use serde::Deserialize;

use crate::allowlist::Allowlist;
use crate::session::Sessions;

/// Exponential backoff between re-dials, with full jitter.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Cap.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

/// Everything the agent needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Its credential.
    pub credential: Loaded,
    /// What it exposes.
    pub allowlist: Allowlist,
    /// QUIC transport (short idle timeout: a dead relay is noticed in seconds).
    pub transport: Transport,
    /// Deadline for the QUIC handshake with the relay.
    pub connect_timeout: Duration,
    /// Deadline for dialling a target.
    pub dial_timeout: Duration,
    /// Re-dial backoff.
    pub backoff: Backoff,
    /// Target dials in flight at once; more are refused (a relay, or a
    /// client through it, cannot make the agent flood the private network).
    pub max_dials: usize,
    /// Target dials in flight at once per caller, within `max_dials`; more
    /// wait for the caller's own dials (so one caller's black-holed
    /// targets cannot take every dial permit).
    pub max_dials_per_caller: usize,
    /// Streams open at once per caller (TCP, SOCKS, sessions); more are
    /// refused.
    pub max_streams_per_caller: usize,
    /// How long shutdown waits for live streams.
    pub shutdown_grace: Duration,
    /// The admin endpoint's listener (`/metrics`, `/healthz`, `/readyz`),
    /// bound when the configuration was built so its errors come early.
    pub metrics: Option<std::sync::Arc<std::net::TcpListener>>,
    /// Shell and command sessions (off by default).
    pub sessions: Sessions,
    /// SOCKS destinations (off unless rules are given).
    pub socks: crate::socks::Socks,
    /// The audit log of streams served on direct paths (end-to-end mode);
    /// by default `agent-audit.jsonl` beside the credential file.
    pub audit_log: PathBuf,
    /// Caps on direct paths, per client identity.
    pub direct: crate::grants::DirectLimits,
}

/// The default audit log of direct streams: beside the credential.
pub fn default_audit_log(credential: &Path) -> PathBuf {
    credential.with_file_name("agent-audit.jsonl")
}

impl Config {
    /// Defaults around a credential and an allowlist.
    pub fn new(credential: Loaded, allowlist: Allowlist) -> Config {
        Config {
            allowlist,
            transport: Transport::agent(),
            connect_timeout: Duration::from_secs(10),
            dial_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            max_dials: 256,
            max_dials_per_caller: 32,
            max_streams_per_caller: 1024,
            shutdown_grace: Duration::from_secs(5),
            metrics: None,
            sessions: Sessions::default(),
            socks: crate::socks::Socks::default(),
            audit_log: default_audit_log(&credential.path),
            direct: crate::grants::DirectLimits::default(),
            credential,
        }
    }
}

/// The agent's config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Path of the credential file (relative to the config file).
    pub credential: Option<PathBuf>,
    /// Path of the private key, for a credential issued from a CSR.
    pub key: Option<PathBuf>,
    /// Exposed targets: name = "host:port".
    #[serde(default)]
    pub expose: BTreeMap<String, String>,
    /// `allow-shell = true`: serve shell and command sessions.
    #[serde(default, rename = "allow-shell")]
    pub allow_shell: bool,
    /// `shell = "/bin/bash"`.
    pub shell: Option<PathBuf>,
    /// `shell-user = "ops"`.
    #[serde(rename = "shell-user")]
    pub shell_user: Option<String>,
    /// `shell-env = ["KUBECONFIG", "EDITOR=vi"]`.
    #[serde(default, rename = "shell-env")]
    pub shell_env: Vec<String>,
    /// `record-dir = "/var/log/relay/sessions"` (relative to the config file).
    #[serde(rename = "record-dir")]
    pub record_dir: Option<PathBuf>,
    /// `record-fail-open = true`: run sessions even if they cannot be recorded.
    #[serde(default, rename = "record-fail-open")]
    pub record_fail_open: bool,
    /// `allow-socks = ["kube.internal:443", "10.0.0.0/8:5432"]`.
    #[serde(default, rename = "allow-socks")]
    pub allow_socks: Vec<String>,
    /// `socks-host = ["kube.internal=10.0.0.1"]`.
    #[serde(default, rename = "socks-host")]
    pub socks_host: Vec<String>,
}

impl File {
    /// Reads a config file; relative paths in it are taken from its folder.
    ///
    /// # Errors
    /// If it cannot be read or parsed (the message names line and column).
    pub fn load(path: &Path) -> anyhow::Result<File> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        let mut file: File = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        file.credential = file.credential.map(|p| base.join(p));
        file.key = file.key.map(|p| base.join(p));
        file.record_dir = file.record_dir.map(|p| base.join(p));
        Ok(file)
    }
}
