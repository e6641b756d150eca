//! Where a login keeps its credential, so every later command finds it
//! without `--credential`: `$RELAY_CREDENTIAL` if set, else
//! `$XDG_CONFIG_HOME/relay/credential.toml`, else
//! `~/.config/relay/credential.toml` (mode 0600, as every credential).

use std::path::PathBuf;

/// The default credential file, if a home or config directory is known.
pub fn default_path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(config.join("relay").join("credential.toml"))
}
