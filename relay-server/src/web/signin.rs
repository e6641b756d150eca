//! Signing a browser in: the relay is the provider's client, with the
//! authorization code flow and PKCE (RFC 7636), a `state` bound to the
//! browser by a cookie (no login CSRF), and a nonce in the ID token. The
//! token is checked as a `relay-client login`'s is ([`crate::login::token`]),
//! counts once, and the name it gives must not be revoked.
//!
//! ```text
//! GET /login?provider=P ─▶ 302 provider's authorize (state, nonce, PKCE challenge)
//! GET /login/callback?code&state ─▶ token endpoint (code, PKCE verifier) ─▶ ID token
//!   ─▶ checks ─▶ session cookie ─▶ 302 /
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use relay_net::cert::{Login, PeerCert};
use sha2::Digest;

use super::session::{set_cookie, WebSession};
use super::Web;
use crate::audit::{AuditEvent, Event};
use crate::login::token;
use crate::Shared;

/// The cookie that ties a sign-in's `state` to the browser that began it.
pub(crate) const STATE_COOKIE: &str = "__Host-relay-signin";

/// How long a person has at the provider.
const SIGN_IN_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Sign-ins under way at once (each is a few hundred bytes).
const MAX_PENDING: usize = 4096;

/// A sign-in under way, by its `state`.
#[derive(Debug)]
struct Pending {
    provider: String,
    nonce: String,
    verifier: String,
    host: String,
    began: Instant,
}

/// Sign-ins under way.
#[derive(Debug, Default)]
pub(crate) struct SignIns {
    pending: Mutex<HashMap<String, Pending>>,
}

impl SignIns {
    fn begin(&self, state: String, pending: Pending) -> bool {
        let mut all = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|_, p| p.began.elapsed() < SIGN_IN_WINDOW);
        if all.len() >= MAX_PENDING {
            return false;
        }
        all.insert(state, pending);
        true
    }

    fn finish(&self, state: &str) -> Option<Pending> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(state)?;
        (pending.began.elapsed() < SIGN_IN_WINDOW).then_some(pending)
    }
}

/// Where the browser goes, and the cookies it gets.
pub(crate) struct Redirect {
    pub(crate) location: String,
    pub(crate) cookies: Vec<String>,
}

/// `GET /login?provider=P`: the redirect to the provider.
///
/// # Errors
/// A message for the page (unknown provider, provider unreachable).
pub(crate) async fn begin(
    shared: &Shared,
    web: &Web,
    provider: &str,
    host: &str,
) -> Result<Redirect, String> {
    let logins = shared.login.as_ref().ok_or("single sign-on is off")?;
    let (provider, _) = logins
        .provider(provider)
        .filter(|(p, _)| p.kind == proto::ProviderKind::People)
        .ok_or_else(|| format!("this relay has no sign-in provider {provider:?}"))?;
    let discovery = relay_net::oidc::discover(&web.http, &provider.issuer).await?;
    let authorize = discovery
        .authorization_endpoint
        .ok_or("the provider publishes no authorization endpoint")?;
    let state = super::random_token();
    let nonce = super::random_token();
    let verifier = super::random_token();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let location = url_with(
        &authorize,
        &[
            ("response_type", "code"),
            ("client_id", &provider.web_client_id),
            ("redirect_uri", &redirect_uri(host)),
            ("scope", &provider.scopes),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let pending = Pending {
        provider: provider.name.to_string(),
        nonce,
        verifier,
        host: host.to_owned(),
        began: Instant::now(),
    };
    if !web.sign_ins.begin(state.clone(), pending) {
        return Err("too many sign-ins are under way; try again in a minute".into());
    }
    Ok(Redirect {
        location,
        cookies: vec![set_cookie(STATE_COOKIE, &state, SIGN_IN_WINDOW)],
    })
}

/// What the provider sent back to `/login/callback`.
pub(crate) struct Callback<'a> {
    pub(crate) code: Option<&'a str>,
    pub(crate) state: Option<&'a str>,
    pub(crate) error: Option<&'a str>,
    /// The state cookie the browser holds.
    pub(crate) cookie: Option<&'a str>,
}

/// `GET /login/callback`: exchanges the code, checks the ID token, and
/// starts the session.
///
/// # Errors
/// A message for the page: what went wrong, in words a person can act on.
pub(crate) async fn finish(
    shared: &Shared,
    web: &Web,
    back: Callback<'_>,
    host: &str,
    remote: std::net::SocketAddr,
) -> Result<Redirect, String> {
    if let Some(error) = back.error {
        return Err(format!("the provider did not sign you in: {error}"));
    }
    let (Some(code), Some(state)) = (back.code, back.state) else {
        return Err("the provider's answer has no code: sign in again".into());
    };
    if back.cookie != Some(state) {
        return Err("this sign-in was not started in this browser: sign in again".into());
    }
    let pending = web
        .sign_ins
        .finish(state)
        .ok_or("this sign-in is unknown or took longer than 10 minutes: sign in again")?;
    if pending.host != host {
        return Err("this sign-in began at another address: sign in again".into());
    }
    let logins = shared.login.as_ref().ok_or("single sign-on is off")?;
    let (provider, keys) = logins
        .provider(&pending.provider)
        .ok_or("the provider is no longer configured")?;
    let id_token = redeem(web, provider, code, &pending.verifier, host).await?;
    // The web client's tokens are for the web client.
    let mut checked = provider.clone();
    checked.audience.clone_from(&provider.web_client_id);
    let verified = token::verify(
        &checked,
        keys,
        &id_token,
        Some(&pending.nonce),
        None,
        logins.skew(),
    )
    .await?;
    crate::login::not_revoked(shared, &verified.name).map_err(|r| r.message)?;
    if !logins.first_use(&verified.token_id, verified.expires) {
        return Err("this token was used before: sign in again".into());
    }
    let now = time::OffsetDateTime::now_utc();
    let lifetime = web.settings.session.min(provider.lifetime);
    let serial = super::random_token();
    let peer = PeerCert {
        relay: shared.relay_name.clone(),
        identity: proto::Identity::new(proto::Role::Client, verified.name.clone()),
        serial: serial.clone(),
        not_before: now,
        not_after: now + lifetime,
        groups: verified.groups.clone(),
        login: Some(Login {
            issuer: verified.issuer.clone(),
            subject: verified.subject.clone(),
        }),
        signer: None,
    };
    let mut event = AuditEvent::of_peer(Event::Login, &peer, Some(remote));
    event.via = Some("browser");
    shared
        .audit
        .record(event)
        .await
        .map_err(|e| format!("the relay cannot audit, so it signs no one in: {e}"))?;
    tracing::info!(client = %peer.identity.name, provider = %provider.name, %remote, "browser sign-in");
    shared.metrics.login("browser");
    let cookie = web.sessions.insert(WebSession {
        peer,
        csrf: super::random_token(),
        host: host.to_owned(),
        ended: tokio_util::sync::CancellationToken::new(),
    });
    Ok(Redirect {
        location: "/".into(),
        cookies: vec![
            set_cookie(super::session::COOKIE, &cookie, lifetime),
            set_cookie(STATE_COOKIE, "", Duration::ZERO),
        ],
    })
}

/// The ID token for `code`, from the provider's token endpoint.
async fn redeem(
    web: &Web,
    provider: &crate::login::settings::Provider,
    code: &str,
    verifier: &str,
    host: &str,
) -> Result<String, String> {
    let discovery = relay_net::oidc::discover(&web.http, &provider.issuer).await?;
    let endpoint = discovery
        .token_endpoint
        .ok_or("the provider publishes no token endpoint")?;
    let redirect = redirect_uri(host);
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", &redirect),
        ("code_verifier", verifier),
    ];
    let mut request = web.http.post(&endpoint);
    let secret = web.secrets.get(provider.name.as_str());
    match secret {
        Some(secret) => request = request.basic_auth(&provider.web_client_id, Some(secret)),
        None => form.push(("client_id", &provider.web_client_id)),
    }
    let response = request.form(&form).send().await.map_err(|e| {
        format!(
            "the provider's token endpoint: {}",
            relay_net::oidc::describe(&e)
        )
    })?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("the provider's token endpoint answered no JSON: {e}"))?;
    if !status.is_success() {
        let error = body
            .get("error_description")
            .or_else(|| body.get("error"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("no reason given");
        return Err(format!("the provider refused the code ({status}): {error}"));
    }
    body.get("id_token")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "the provider's answer has no ID token (is \"openid\" in scopes?)".into())
}

/// The page's redirect URI at `host`: what the provider must have registered.
pub(crate) fn redirect_uri(host: &str) -> String {
    format!("https://{host}/login/callback")
}

/// `base` with `params` added to its query, percent-encoded.
fn url_with(base: &str, params: &[(&str, &str)]) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let mut url = base.to_owned();
    let mut sep = if base.contains('?') { '&' } else { '?' };
    for (key, value) in params {
        url.push(sep);
        url.push_str(key);
        url.push('=');
        url.extend(utf8_percent_encode(value, NON_ALPHANUMERIC).map(str::to_owned));
        sep = '&';
    }
    url
}
