//! The `[web]` section of the relay's config file: the browser shell, on
//! the TCP port (`listen-tcp`), for people who sign in with a
//! `[[login.provider]]` of kind `people`.
//!
//! ```toml
//! [web]
//! resume = "5m"     # a closed tab may come back to its shell this long
//! session = "12h"   # a sign-in lasts this long (at most the provider's lifetime)
//! ```

use std::time::Duration;

use serde::Deserialize;

/// How long a detached shell waits for its page by default.
pub const RESUME: Duration = Duration::from_secs(5 * 60);
/// How long a sign-in lasts by default.
pub const SESSION: Duration = Duration::from_secs(12 * 3600);

/// `[web]` as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebFile {
    /// How long a shell whose page left waits for it (default 5 min).
    #[serde(default, deserialize_with = "crate::config_file::duration")]
    pub resume: Option<Duration>,
    /// How long a sign-in lasts (default 12 h).
    #[serde(default, deserialize_with = "crate::config_file::duration")]
    pub session: Option<Duration>,
}

/// `[web]`, checked.
#[derive(Clone, Debug)]
pub struct WebSettings {
    /// How long a detached shell waits.
    pub resume: Duration,
    /// How long a sign-in lasts.
    pub session: Duration,
}

impl WebFile {
    /// Checks the values.
    ///
    /// # Errors
    /// A message naming the key.
    pub fn check(&self) -> Result<WebSettings, String> {
        let resume = self.resume.unwrap_or(RESUME);
        let session = self.session.unwrap_or(SESSION);
        if session.is_zero() {
            return Err("[web] session must be more than 0".into());
        }
        Ok(WebSettings { resume, session })
    }
}
