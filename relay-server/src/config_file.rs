//! `relay-server run`'s config file (TOML): one key per `run` flag, named as
//! the flag without its dashes (`max-open-rate = 2000`, `metrics =
//! "127.0.0.1:9090"`, durations as the flags write them: `idle-timeout =
//! "30s"`). A flag on the command line wins over its key. Read from
//! `--config FILE`, else from `DIR/relay.toml` when that exists (the relay
//! directory already holds everything else the relay reads, so one mounted
//! directory or ConfigMap configures it completely). `deploy/relay.toml` is
//! the annotated example; a test parses it, so it stays true.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The file's name in the relay directory, read when `--config` is not given.
pub const DEFAULT_NAME: &str = "relay.toml";

/// Why a config file was not used; each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// It could not be read (a `--config` that does not exist lands here).
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid TOML, has an unknown key or a bad value (the message
    /// names the key, line and column).
    #[error("invalid config {}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where.
        source: toml::de::Error,
    },
}

/// Reads `"10s"`, `"1m 30s"`: a duration as the flags take it.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        serde::de::Error::custom(format!("{text:?}: {e} (write e.g. \"10s\" or \"1m 30s\")"))
    })
}

/// Reads `"0.0.0.0:443"` or `"off"`.
fn listen_tcp<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<crate::config::ListenTcp>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// The keys of `relay-server run`'s config file; `None` is "not set here".
/// Unknown keys are refused: a typo must not silently leave a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunFile {
    /// The relay directory (relative to the file), for `--config` files
    /// kept elsewhere.
    pub dir: Option<PathBuf>,
    /// UDP address to listen on.
    pub listen: Option<SocketAddr>,
    /// TCP carrier address, or "off".
    #[serde(default, deserialize_with = "listen_tcp")]
    pub listen_tcp: Option<crate::config::ListenTcp>,
    /// Audit log (relative to the file).
    pub audit_log: Option<PathBuf>,
    /// Stateless-reset key, one per instance (relative to the file).
    pub reset_key: Option<PathBuf>,
    /// How often policy.toml and revoked.toml are checked.
    #[serde(default, deserialize_with = "duration")]
    pub reload_interval: Option<Duration>,
    /// How long live streams may take to finish on SIGTERM.
    #[serde(default, deserialize_with = "duration")]
    pub shutdown_grace: Option<Duration>,
    /// Idle timeout of peer connections.
    #[serde(default, deserialize_with = "duration")]
    pub idle_timeout: Option<Duration>,
    /// Stream opens per second per client identity.
    pub max_open_rate: Option<u32>,
    /// Streams one client identity may have open at once.
    pub max_streams_per_client: Option<u32>,
    /// Live end-to-end paths per client identity.
    pub max_direct_per_client: Option<usize>,
    /// Live end-to-end paths per agent.
    pub max_direct_per_agent: Option<usize>,
    /// Handshakes worked on at once.
    pub max_handshakes: Option<usize>,
    /// Handshakes worked on at once from one source address.
    pub max_handshakes_per_address: Option<usize>,
    /// Local address of the admin endpoint.
    pub metrics: Option<SocketAddr>,
    /// Single sign-on: providers and lifetimes (`[login]`, see
    /// [`crate::login::settings`]).
    pub login: Option<crate::login::settings::LoginFile>,
    /// The browser shell (`[web]`, see [`crate::web::settings`]).
    pub web: Option<crate::web::settings::WebFile>,
}

impl RunFile {
    /// Reads and parses `path`; relative paths in it are taken from its folder.
    ///
    /// # Errors
    /// [`ConfigFileError`], naming the file.
    pub fn load(path: &Path) -> Result<RunFile, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut file: RunFile = toml::from_str(&text).map_err(|source| ConfigFileError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        file.dir = file.dir.map(|p| base.join(p));
        file.reset_key = file.reset_key.map(|p| base.join(p));
        // `-` is standard output, not a file beside this one.
        file.audit_log = file
            .audit_log
            .map(|p| if p == Path::new("-") { p } else { base.join(p) });
        for provider in file.login.iter_mut().flat_map(|l| l.provider.iter_mut()) {
            provider.web_client_secret_file =
                provider.web_client_secret_file.take().map(|p| base.join(p));
        }
        Ok(file)
    }

    /// `DIR/relay.toml` if it exists, else nothing set.
    ///
    /// # Errors
    /// If it exists but cannot be read or parsed.
    pub fn load_default(dir: &Path) -> Result<Option<(PathBuf, RunFile)>, ConfigFileError> {
        let path = dir.join(DEFAULT_NAME);
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            _ => RunFile::load(&path).map(|file| Some((path, file))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use relay_net::endpoint::Transport;

    fn example() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/relay.toml")
    }

    /// The annotated example parses with the real parser, and the defaults
    /// its comments state are the program's.
    #[test]
    fn example_parses_and_states_the_defaults() {
        let file = RunFile::load(&example()).unwrap();
        let limits = Limits::default();
        assert_eq!(file.listen, Some("0.0.0.0:4433".parse().unwrap()));
        assert_eq!(file.reload_interval, Some(limits.reload_interval));
        assert_eq!(file.idle_timeout, Some(Transport::relay().idle_timeout));
        assert_eq!(file.shutdown_grace, Some(limits.shutdown_grace));
        assert_eq!(file.max_open_rate, Some(limits.open_rate));
        assert_eq!(file.max_streams_per_client, Some(limits.streams_per_client));
        assert_eq!(file.max_direct_per_client, Some(limits.direct_per_client));
        assert_eq!(file.max_direct_per_agent, Some(limits.direct_per_agent));
        assert_eq!(file.max_handshakes, Some(limits.handshakes));
        assert_eq!(
            file.max_handshakes_per_address,
            Some(limits.handshakes_per_address)
        );
        assert!(file.metrics.is_some());
        let base = example().parent().unwrap().to_owned();
        assert_eq!(file.audit_log, Some(base.join("audit.jsonl")));
        assert_eq!(file.reset_key, Some(base.join("reset.key")));
        assert_eq!(file.dir, Some(base.join(".")));
    }

    #[test]
    fn an_unknown_key_is_refused_naming_it_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:4433\"\nmetricz = \"127.0.0.1:9090\"\n",
        )
        .unwrap();
        let e = RunFile::load(&path).unwrap_err().to_string();
        assert!(e.contains("metricz"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it_but_no_default_file_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        let e = RunFile::load(&path).unwrap_err().to_string();
        assert!(e.contains("nope.toml"), "{e}");
        assert!(RunFile::load_default(dir.path()).unwrap().is_none());
    }

    #[test]
    fn a_bad_duration_names_the_key_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "idle-timeout = \"30 parsecs\"\n").unwrap();
        let e = RunFile::load_default(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("30 parsecs") && e.contains("idle-timeout"),
            "{e}"
        );
    }
}
