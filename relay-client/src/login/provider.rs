//! Getting an ID token from the provider the relay named: in a browser
//! (authorization code with PKCE, RFC 7636, and a loopback redirect, RFC
//! 8252) or with a device code (RFC 8628: "open this page, enter this
//! code"). The relay's nonce goes in the request, so the token is good for
//! this login only. The OAuth mechanics are the `oauth2` crate's.

use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, DeviceAuthorizationUrl, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, RedirectUrl, Scope,
    StandardDeviceAuthorizationResponse, StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use proto::ProviderInfo;
use relay_net::oidc::Discovery;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The `id_token` of a token response (OpenID Connect Core §3.1.3.3).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct IdTokenField {
    /// The ID token, a JWT.
    pub id_token: String,
}

impl ExtraTokenFields for IdTokenField {}

type TokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

type OidcClient<Device> = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    Device,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// How long a person has to finish signing in.
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Where an error from the provider ends up: a message to act on.
fn failed(what: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{what}: {e}")
}

fn client(provider: &ProviderInfo, doc: &Discovery) -> anyhow::Result<OidcClient<EndpointNotSet>> {
    let endpoint = |e: &Option<String>, what: &str| {
        e.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "provider {} publishes no {what} endpoint: it cannot log people in this way",
                provider.issuer
            )
        })
    };
    Ok(
        oauth2::Client::new(ClientId::new(provider.client_id.clone()))
            .set_auth_uri(
                AuthUrl::new(endpoint(&doc.authorization_endpoint, "authorization")?)
                    .map_err(|e| failed("authorization endpoint", e))?,
            )
            .set_token_uri(
                TokenUrl::new(endpoint(&doc.token_endpoint, "token")?)
                    .map_err(|e| failed("token endpoint", e))?,
            ),
    )
}

/// Signs in through a browser: listens on a loopback port for the
/// provider's redirect, opens (or prints) the authorization URL, and
/// trades the code for tokens with the PKCE verifier.
///
/// # Errors
/// If the provider refuses, the person does not finish in time, or the
/// redirect does not carry this login's state.
pub async fn browser(
    http: &reqwest::Client,
    provider: &ProviderInfo,
    doc: &Discovery,
    nonce: &str,
    open: bool,
) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let redirect = format!(
        "http://127.0.0.1:{}/callback",
        listener.local_addr()?.port()
    );
    let client = client(provider, doc)?
        .set_redirect_uri(RedirectUrl::new(redirect).map_err(|e| failed("redirect", e))?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(scopes(provider))
        .add_extra_param("nonce", nonce)
        .set_pkce_challenge(challenge)
        .url();
    eprintln!("Log in at {} in your browser:\n  {url}", provider.issuer);
    if open && !open_browser(url.as_str()) {
        eprintln!("(no browser could be opened: open the page above yourself)");
    }
    let code = tokio::time::timeout(SIGN_IN_WINDOW, redirected(&listener, state.secret()))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no sign-in within {}: run login again (or use --device)",
                humantime::format_duration(SIGN_IN_WINDOW)
            )
        })??;
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(http)
        .await
        .map_err(|e| failed("the provider refused the code", describe(&e)))?;
    Ok(token.extra_fields().id_token.clone())
}

/// Signs in with a device code: the person opens a page anywhere and
/// enters the code; this polls until they have.
///
/// # Errors
/// If the provider has no device login, refuses, or the code expires.
pub async fn device(
    http: &reqwest::Client,
    provider: &ProviderInfo,
    doc: &Discovery,
    nonce: &str,
) -> anyhow::Result<String> {
    let device_url = doc.device_authorization_endpoint.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "provider {} has no device login (RFC 8628): log in in a browser instead (without --device)",
            provider.issuer
        )
    })?;
    let client = client(provider, doc)?.set_device_authorization_url(
        DeviceAuthorizationUrl::new(device_url).map_err(|e| failed("device endpoint", e))?,
    );
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scopes(scopes(provider))
        .add_extra_param("nonce", nonce)
        .request_async(http)
        .await
        .map_err(|e| failed("the provider refused the device login", describe(&e)))?;
    eprintln!(
        "To log in, open {} and enter the code {}",
        details.verification_uri().as_str(),
        details.user_code().secret()
    );
    if let Some(complete) = details.verification_uri_complete() {
        eprintln!("  (or open {})", complete.secret());
    }
    let token = client
        .exchange_device_access_token(&details)
        .request_async(http, tokio::time::sleep, Some(SIGN_IN_WINDOW))
        .await
        .map_err(|e| failed("the device login did not complete", describe(&e)))?;
    Ok(token.extra_fields().id_token.clone())
}

fn scopes(provider: &ProviderInfo) -> Vec<Scope> {
    provider
        .scopes
        .split_whitespace()
        .map(|s| Scope::new(s.to_owned()))
        .collect()
}

/// An oauth2 request error with the provider's own words when it sent some.
fn describe<RE: std::error::Error + 'static, T: oauth2::ErrorResponse + 'static>(
    e: &oauth2::RequestTokenError<RE, T>,
) -> String {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => {
            serde_json::to_string(r).unwrap_or_else(|_| r.to_string())
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

/// Waits for the provider's redirect to the loopback listener and answers
/// the browser; returns the code if `state` matches (a redirect from
/// another login, or from a page that is not the provider, is refused).
async fn redirected(listener: &tokio::net::TcpListener, state: &str) -> anyhow::Result<String> {
    loop {
        let (stream, _) = listener.accept().await?;
        let mut stream = BufReader::new(stream);
        let mut request_line = String::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_line(&mut request_line))
                .await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            continue;
        }
        // GET /callback?code=...&state=... HTTP/1.1
        let target = request_line.split_whitespace().nth(1).unwrap_or_default();
        let Ok(url) = reqwest::Url::parse(&format!("http://127.0.0.1{target}")) else {
            continue;
        };
        if url.path() != "/callback" {
            respond(stream.get_mut(), 404, "Not found.").await;
            continue;
        }
        let param = |key: &str| {
            url.query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        if param("state").as_deref() != Some(state) {
            respond(
                stream.get_mut(),
                400,
                "This sign-in is not the one relay-client started; run relay-client login again.",
            )
            .await;
            continue;
        }
        if let Some(error) = param("error") {
            let description = param("error_description").unwrap_or_default();
            respond(
                stream.get_mut(),
                400,
                &format!("The sign-in failed: {error} {description}"),
            )
            .await;
            anyhow::bail!("the provider refused the sign-in: {error} {description}");
        }
        let Some(code) = param("code") else {
            respond(stream.get_mut(), 400, "The provider sent no code.").await;
            continue;
        };
        respond(
            stream.get_mut(),
            200,
            "Signed in. You can close this tab and go back to the terminal.",
        )
        .await;
        return Ok(code);
    }
}

async fn respond(stream: &mut tokio::net::TcpStream, status: u16, text: &str) {
    let reason = if status == 200 { "OK" } else { "Error" };
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>relay-client login</title><p>{text}</p>\n"
    );
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Whether a browser is at hand: a desktop session with an opener.
pub fn browser_at_hand() -> bool {
    if cfg!(target_os = "macos") {
        return true;
    }
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    display && opener().is_some()
}

fn opener() -> Option<&'static str> {
    let candidates: &[&'static str] = if cfg!(target_os = "macos") {
        &["open"]
    } else {
        &["xdg-open"]
    };
    candidates.iter().copied().find(|c| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(c).is_file()))
    })
}

fn open_browser(url: &str) -> bool {
    let Some(opener) = opener() else {
        return false;
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}
