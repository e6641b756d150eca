//! A provider's signing keys (its JWKS), fetched through discovery on first
//! use and again when a token names a key the relay has not seen: that is
//! how a provider's key rotation reaches the relay without a restart (and
//! every [`MAX_AGE`], so a withdrawn key stops working here too). A
//! fetch happens at most once per [`REFETCH_AFTER`], so tokens with made-up
//! key ids cannot make the relay hammer the provider; a login that needs a
//! fetch sooner waits for it (without holding up the others).

use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::Header;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The least time between two fetches of one provider's keys.
pub(crate) const REFETCH_AFTER: Duration = Duration::from_secs(1);
/// Keys older than this are fetched again before use, so a key the
/// provider withdrew stops working here too.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// One provider's keys.
#[derive(Debug)]
pub(crate) struct ProviderKeys {
    issuer: String,
    http: reqwest::Client,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    jwks_uri: Option<String>,
    keys: Vec<Jwk>,
    fetched: Option<Instant>,
}

impl ProviderKeys {
    /// Keys of `issuer`, none fetched yet.
    pub(crate) fn new(issuer: &str, http: reqwest::Client) -> ProviderKeys {
        ProviderKeys {
            issuer: issuer.to_owned(),
            http,
            state: Mutex::default(),
        }
    }

    /// The key that signed a token with `header`.
    ///
    /// # Errors
    /// If the provider cannot be reached, or has no such key even after a
    /// fresh fetch.
    pub(crate) async fn key_for(&self, header: &Header) -> Result<Jwk, String> {
        let mut waited = false;
        loop {
            let mut state = self.state.lock().await;
            let fresh = state.fetched.is_some_and(|t| t.elapsed() < MAX_AGE);
            if let Some(key) = state.find(header).filter(|_| fresh) {
                return Ok(key);
            }
            let since = state.fetched.map(|t| t.elapsed());
            match since {
                // Fetched a moment ago: wait for the next fetch, once, and
                // without the lock, so logins with known keys go on.
                Some(since) if since < REFETCH_AFTER && !waited => {
                    drop(state);
                    tokio::time::sleep(REFETCH_AFTER - since).await;
                    waited = true;
                    continue;
                }
                Some(since) if since < REFETCH_AFTER => {}
                _ => self.fetch(&mut state).await?,
            }
            return state.find(header).ok_or_else(|| match &header.kid {
                Some(kid) => format!(
                    "the token is signed with key {kid:?}, which the provider {} does not publish (at {})",
                    self.issuer,
                    state.jwks_uri.as_deref().unwrap_or("its jwks_uri")
                ),
                None => format!(
                    "the token names no key and none of {}'s keys is for {:?}",
                    self.issuer, header.alg
                ),
            });
        }
    }

    async fn fetch(&self, state: &mut State) -> Result<(), String> {
        state.fetched = Some(Instant::now());
        let jwks_uri = match &state.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let doc = relay_net::oidc::discover(&self.http, &self.issuer).await?;
                state.jwks_uri = Some(doc.jwks_uri.clone());
                doc.jwks_uri
            }
        };
        let set: KeySet = relay_net::oidc::get_json(&self.http, &jwks_uri).await?;
        state.keys = set.usable();
        tracing::info!(issuer = %self.issuer, keys = state.keys.len(), "provider keys fetched");
        Ok(())
    }
}

impl State {
    fn find(&self, header: &Header) -> Option<Jwk> {
        match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.common.key_id.as_deref() == Some(kid.as_str())),
            // No key id: only a provider with a single key can be meant.
            None => match &self.keys[..] {
                [only] => Some(only),
                _ => None,
            },
        }
        .cloned()
    }
}

/// A JWKS as published: keys of types this build cannot use (an
/// encryption key, a new algorithm) are skipped, not fatal.
#[derive(serde::Deserialize)]
struct KeySet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    fn usable(self) -> Vec<Jwk> {
        self.keys
            .into_iter()
            .filter(|k| k.get("use").and_then(|u| u.as_str()).unwrap_or("sig") == "sig")
            .filter_map(|k| serde_json::from_value(k).ok())
            .collect()
    }
}
