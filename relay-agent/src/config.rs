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
//! Every flag has a key of the same name (`max-dials = 256`, `metrics =
//! "127.0.0.1:9091"`, durations as the flags write them: `dial-timeout =
//! "10s"`); a flag given on the command line wins over its key. Repeatable
//! flags (`shell-env`, `allow-socks`, `socks-host`) are lists, and add to
//! the file's. `deploy/agent.toml` is the annotated example, every key with
//! its default; a test parses it, so it stays true.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use relay_net::credential::Loaded;
use relay_net::endpoint::Transport;
use serde::{Deserialize, Deserializer};

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
    /// How often the credential file is checked for a renewal (besides
    /// SIGHUP): two `stat`s unless it changed ([`crate::renewal`]).
    pub credential_check: Duration,
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
            credential_check: relay_net::renew::CHECK_EVERY,
            credential,
        }
    }
}

/// Log format on stderr (`--log-format`, `log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

/// Reads `"10s"`, `"1m 30s"`: a duration as the flags take it.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        serde::de::Error::custom(format!("{text:?}: {e} (write e.g. \"10s\" or \"1m 30s\")"))
    })
}

/// Reads `"auto"`, `"quic"` or `"tcp"`.
fn via<'de, D: Deserializer<'de>>(d: D) -> Result<Option<relay_net::endpoint::Via>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// The agent's config file. Unknown keys are refused (a typo would
/// otherwise silently leave a default in place).
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
    /// `expose-bench = true`: also expose the built-in benchmark service.
    #[serde(default, rename = "expose-bench")]
    pub expose_bench: bool,
    /// `dial-timeout = "10s"`.
    #[serde(default, rename = "dial-timeout", deserialize_with = "duration")]
    pub dial_timeout: Option<Duration>,
    /// `max-dials = 256`.
    #[serde(rename = "max-dials")]
    pub max_dials: Option<usize>,
    /// `max-dials-per-caller = 32`.
    #[serde(rename = "max-dials-per-caller")]
    pub max_dials_per_caller: Option<usize>,
    /// `max-streams-per-caller = 1024`.
    #[serde(rename = "max-streams-per-caller")]
    pub max_streams_per_caller: Option<usize>,
    /// `max-backoff = "30s"`.
    #[serde(default, rename = "max-backoff", deserialize_with = "duration")]
    pub max_backoff: Option<Duration>,
    /// `idle-timeout = "10s"`.
    #[serde(default, rename = "idle-timeout", deserialize_with = "duration")]
    pub idle_timeout: Option<Duration>,
    /// `transport = "tcp"`: how relays are reached (auto, quic, tcp).
    #[serde(default, deserialize_with = "via")]
    pub transport: Option<relay_net::endpoint::Via>,
    /// `tcp-port = 443`: the relays' TCP carrier port.
    #[serde(rename = "tcp-port")]
    pub tcp_port: Option<u16>,
    /// `proxy = "http://proxy:3128"`: HTTP proxy for the TCP carrier.
    pub proxy: Option<String>,
    /// `metrics = "127.0.0.1:9091"`: serve /metrics, /healthz, /readyz.
    pub metrics: Option<std::net::SocketAddr>,
    /// `log-format = "json"`.
    #[serde(rename = "log-format")]
    pub log_format: Option<LogFormat>,
    /// `audit-log = "agent-audit.jsonl"` (relative to the config file).
    #[serde(rename = "audit-log")]
    pub audit_log: Option<PathBuf>,
    /// `max-direct-connections = 8`.
    #[serde(rename = "max-direct-connections")]
    pub max_direct_connections: Option<usize>,
    /// `max-direct-open-rate = 2000`.
    #[serde(rename = "max-direct-open-rate")]
    pub max_direct_open_rate: Option<u32>,
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
        file.audit_log = file.audit_log.map(|p| base.join(p));
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.toml")
    }

    /// The annotated example parses with the real parser, and the defaults
    /// its comments state are the program's.
    #[test]
    fn example_parses_and_states_the_defaults() {
        let file = File::load(&example()).unwrap();
        let base = example().parent().unwrap().to_owned();
        assert_eq!(file.credential, Some(base.join("agent.cred")));
        assert!(!file.expose.is_empty());
        let backoff = Backoff::default();
        let direct = crate::grants::DirectLimits::default();
        assert_eq!(file.dial_timeout, Some(Duration::from_secs(10)));
        assert_eq!(file.max_dials, Some(256));
        assert_eq!(file.max_dials_per_caller, Some(32));
        assert_eq!(file.max_streams_per_caller, Some(1024));
        assert_eq!(file.max_backoff, Some(backoff.max));
        assert_eq!(file.idle_timeout, Some(Transport::agent().idle_timeout));
        assert_eq!(file.max_direct_connections, Some(direct.max_connections));
        assert_eq!(file.max_direct_open_rate, Some(direct.open_rate));
        assert_eq!(direct.open_burst, 2 * direct.open_rate);
        assert_eq!(file.log_format, Some(LogFormat::Text));
        assert_eq!(file.audit_log, Some(base.join("agent-audit.jsonl")));
        assert!(file.metrics.is_some());
        assert!(!file.allow_shell && !file.record_fail_open && !file.expose_bench);
    }

    #[test]
    fn an_unknown_key_is_refused_naming_it_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "credential = \"a.cred\"\nmetricz = \"127.0.0.1:9091\"\n",
        )
        .unwrap();
        let e = format!("{:#}", File::load(&path).unwrap_err());
        assert!(e.contains("metricz"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
    }

    #[test]
    fn a_bad_duration_names_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "dial-timeout = \"10 parsecs\"\n").unwrap();
        let e = format!("{:#}", File::load(&path).unwrap_err());
        assert!(
            e.contains("10 parsecs") && e.contains("dial-timeout"),
            "{e}"
        );
    }

    #[test]
    fn metrics_is_a_key() {
        let file: File = toml::from_str("metrics = \"127.0.0.1:9091\"").unwrap();
        assert_eq!(file.metrics, Some("127.0.0.1:9091".parse().unwrap()));
    }
}
