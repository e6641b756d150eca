//! OpenID Connect discovery, read the same way by the relay (for its
//! providers' keys, and `relay-server check-oidc`) and by the client (for
//! the endpoints of its login).
//!
//! HTTP goes through one [`http_client`]: rustls on ring with the system's
//! roots (a company's own CA included) and the `HTTPS_PROXY` of the
//! environment, as every other tool on a corporate laptop.

use std::time::Duration;

use serde::Deserialize;

/// How long any one request to a provider may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The parts of a provider's discovery document the relay and the client use.
#[derive(Clone, Debug, Deserialize)]
pub struct Discovery {
    /// The issuer; must equal the URL it was fetched for.
    pub issuer: String,
    /// Where its signing keys are.
    pub jwks_uri: String,
    /// Where a browser signs in.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Where codes become tokens.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Where a device login starts (RFC 8628), if the provider has one.
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    /// PKCE methods; a provider that lists some must list `S256`.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// Signature algorithms of its ID tokens.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// The HTTP client for providers.
///
/// # Errors
/// If TLS cannot be set up (no usable root certificates).
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(HTTP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("relay/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up HTTPS to the provider: {e}"))
}

/// The discovery document URL of `issuer`.
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Fetches and checks `issuer`'s discovery document.
///
/// # Errors
/// A message naming the URL and what went wrong: unreachable, not JSON,
/// or an `issuer` that is not the one asked for (a document for another
/// provider must not be trusted for this one).
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Discovery, String> {
    let url = discovery_url(issuer);
    let doc: Discovery = get_json(http, &url).await?;
    if doc.issuer != issuer {
        return Err(format!(
            "{url} names issuer {:?}, not {issuer:?}: the issuer in the config must be exactly the provider's (mind a trailing slash)",
            doc.issuer
        ));
    }
    Ok(doc)
}

/// GETs `url` and parses its JSON body.
///
/// # Errors
/// A message naming the URL: unreachable, an HTTP error status, not JSON.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("cannot fetch {url}: {}", describe(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url} answered HTTP {status}"));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("cannot read {url}: {}", describe(&e)))?;
    serde_json::from_slice(&body).map_err(|e| format!("{url} is not the JSON expected: {e}"))
}

/// reqwest's error with its causes, which say what actually failed
/// (refused, timed out, a certificate not trusted).
pub fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
