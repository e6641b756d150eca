//! A real OpenID provider for the tests: panva's `oidc-provider` (npm,
//! pinned by `tests/oidc/package-lock.json`), run by `tests/oidc/provider.mjs`
//! as the test's own node process on 127.0.0.1, issuer
//! `http://127.0.0.1:PORT`, killed when its handle drops.
//!
//! It knows two clients: the public native client [`CLI_CLIENT`]
//! (authorization code with PKCE S256 to a loopback redirect on any port,
//! and the device authorization grant) and the confidential CI client
//! [`CI_CLIENT`] (client credentials, a JWT access token whose audience is
//! the requested `resource`, with GitHub-Actions-like claims). Its users,
//! their passwords, the CI secret and the signing key are made at test
//! time; nothing here is committed.
//!
//! [`Provider::sign_in`] and [`Provider::enter_device_code`] drive the
//! provider's own pages over HTTP as a browser would (a cookie jar,
//! redirects followed by hand, HTML forms filled and posted), so the code
//! under test sees exactly what a person's browser would do.
//!
//! `npm ci --prefix tests/oidc` installs the provider ([`node_missing`]
//! says when it is not). [`Provider::start`] waits for the line the
//! script prints once it listens, never a clock.

// A harness failure is a test failure: panicking with a message is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rand::RngExt;
use reqwest::{redirect, StatusCode, Url};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::launch::{Process, Read};
use crate::GUARD;

/// What `provider.mjs` prints once it listens: this, then the issuer.
pub const LISTENING: &str = "oidc-provider listening on ";

/// The public native client: authorization code + PKCE, device flow.
pub const CLI_CLIENT: &str = "relay-cli";

/// The redirect URI [`CLI_CLIENT`] is registered with; any port of it
/// matches (RFC 8252 §7.3, oidc-provider does it for native clients).
pub const CLI_REDIRECT_URI: &str = "http://127.0.0.1/callback";

/// The confidential CI client: client credentials (`client_secret_basic`).
pub const CI_CLIENT: &str = "ci-runner";

/// The relay's web page: a public web client, authorization code + PKCE,
/// redirected to the relay ([`ProviderConfig::web_redirect_uris`]).
pub const WEB_CLIENT: &str = "relay-web";

/// The scopes whose claims the ID tokens carry.
pub const SCOPES: &str = "openid email profile groups";

/// The most redirects and pages one flow goes through before the harness
/// calls it a loop.
const MAX_STEPS: usize = 20;

/// Whether a test must skip because the provider cannot run here: it says
/// SKIPPED, except under CI (`CI` set), where it fails with the command
/// that installs the provider.
///
/// # Panics
/// Under CI, when the provider cannot run.
pub fn provider_missing() -> bool {
    let Some(why) = node_missing() else {
        return false;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "the OpenID provider cannot run: {why}; install it with \
         `npm ci --prefix tests/oidc --no-audit --no-fund` (.ci/run does)"
    );
    eprintln!("SKIPPED: the OpenID provider cannot run: {why}");
    true
}

/// Why the provider cannot run here, if it cannot: no `node` on PATH, or
/// `tests/oidc/node_modules/oidc-provider` not installed.
pub fn node_missing() -> Option<String> {
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match node {
        Err(e) => return Some(format!("node is not on PATH ({e})")),
        Ok(status) if !status.success() => {
            return Some(format!("`node --version` failed ({status})"))
        }
        Ok(_) => {}
    }
    let module = oidc_dir().join("node_modules").join("oidc-provider");
    if !module.join("package.json").is_file() {
        return Some(format!(
            "{} is missing: run `npm ci --prefix tests/oidc --no-audit --no-fund`",
            module.display()
        ));
    }
    None
}

/// `tests/oidc`.
fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// A user of the provider (account id = login).
#[derive(Clone, Debug)]
pub struct User {
    /// The login typed into the sign-in form, the `sub` and `preferred_username`.
    pub login: String,
    /// Random, made at test time.
    pub password: String,
    /// The `email` claim.
    pub email: String,
    /// The `groups` claim.
    pub groups: Vec<String>,
}

impl User {
    /// A user with a random password.
    pub fn new(login: &str, email: &str, groups: &[&str]) -> User {
        User {
            login: login.to_owned(),
            password: random_token(18),
            email: email.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }
}

/// How a [`Provider`] is configured.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// Who can sign in.
    pub users: Vec<User>,
    /// [`CI_CLIENT`]'s client secret.
    pub ci_secret: String,
    /// Claims put in [`CI_CLIENT`]'s JWT access tokens (an object:
    /// `repository`, `ref`, `workflow`...); a string `sub` replaces the
    /// client id as the subject.
    pub ci_claims: Value,
    /// ID token lifetime, seconds.
    pub id_token_ttl: u64,
    /// Lifetime of [`CI_CLIENT`]'s JWT access tokens, seconds.
    pub access_token_ttl: u64,
    /// The `interval` of device authorization responses, seconds
    /// (oidc-provider itself sends none, which RFC 8628 reads as 5 s).
    pub device_interval: u64,
    /// Where [`WEB_CLIENT`] may be sent back to (the relay's
    /// `https://127.0.0.1:PORT/login/callback`, known once the relay runs:
    /// [`Provider::reconfigure`]); none: no web client.
    pub web_redirect_uris: Vec<String>,
}

impl Default for ProviderConfig {
    /// `alice` (alice@example.com, groups `sre`) and `bob`
    /// (bob@example.com, groups `dev`) with random passwords; a random CI
    /// secret; GitHub-Actions-like claims for `acme/relay` on `main`.
    fn default() -> ProviderConfig {
        ProviderConfig {
            users: vec![
                User::new("alice", "alice@example.com", &["sre"]),
                User::new("bob", "bob@example.com", &["dev"]),
            ],
            ci_secret: random_token(32),
            ci_claims: json!({
                "sub": "repo:acme/relay:ref:refs/heads/main",
                "repository": "acme/relay",
                "ref": "refs/heads/main",
                "workflow": "deploy",
            }),
            id_token_ttl: 600,
            access_token_ttl: 300,
            device_interval: 1,
            web_redirect_uris: Vec::new(),
        }
    }
}

impl ProviderConfig {
    /// `provider.mjs`'s config file.
    fn file(&self, dir: &Path, port: u16, rotate: bool) -> Value {
        let users: serde_json::Map<String, Value> = self
            .users
            .iter()
            .map(|u| {
                let user = json!({
                    "email": u.email,
                    "preferred_username": u.login,
                    "groups": u.groups,
                    "password": u.password,
                });
                (u.login.clone(), user)
            })
            .collect();
        let mut config = json!({
            "port": port,
            "keys_file": dir.join("oidc-keys.json"),
            "rotate": rotate,
            "users": users,
            "clients": [
                {
                    "client_id": CLI_CLIENT,
                    "application_type": "native",
                    "token_endpoint_auth_method": "none",
                    "redirect_uris": [CLI_REDIRECT_URI],
                    "grant_types": [
                        "authorization_code",
                        "urn:ietf:params:oauth:grant-type:device_code",
                    ],
                    "response_types": ["code"],
                },
                {
                    "client_id": CI_CLIENT,
                    "client_secret": self.ci_secret,
                    "token_endpoint_auth_method": "client_secret_basic",
                    "grant_types": ["client_credentials"],
                    "response_types": [],
                    "redirect_uris": [],
                    "claims": self.ci_claims,
                    // As GitHub Actions' tokens (oidc-provider's own: at+jwt).
                    "jwt_typ": "JWT",
                },
            ],
            "id_token_ttl": self.id_token_ttl,
            "access_token_ttl": self.access_token_ttl,
            "device_interval": self.device_interval,
        });
        // oidc-provider refuses a code client without a redirect URI.
        if let (false, Some(clients)) = (
            self.web_redirect_uris.is_empty(),
            config["clients"].as_array_mut(),
        ) {
            clients.push(json!({
                "client_id": WEB_CLIENT,
                "application_type": "web",
                "token_endpoint_auth_method": "none",
                "redirect_uris": self.web_redirect_uris,
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
            }));
        }
        config
    }
}

/// Where [`Provider::sign_in`] ended: the loopback redirect it followed.
#[derive(Clone, Debug)]
pub struct SignedIn {
    /// The redirect URI with its query (`code`, `state`, `iss`, or `error`...).
    pub redirect: String,
    /// The status the loopback listener answered.
    pub status: u16,
    /// The body the loopback listener answered.
    pub body: String,
}

/// An oidc-provider process on 127.0.0.1, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Provider {
    dir: PathBuf,
    port: u16,
    issuer: String,
    config: ProviderConfig,
    process: Process,
}

impl Provider {
    /// Starts the provider with `config`, its files (config, private
    /// JWKS) in `dir`, on a free port; waits until it listens.
    ///
    /// # Errors
    /// If node or the provider is missing ([`node_missing`]), or it exits
    /// or stays silent for [`GUARD`].
    pub async fn start(dir: &Path, config: ProviderConfig) -> anyhow::Result<Provider> {
        let (process, issuer) = Provider::spawn(dir, &config, 0, false).await?;
        let port = Url::parse(&issuer)
            .ok()
            .and_then(|u| u.port())
            .with_context(|| format!("no port in the issuer {issuer}"))?;
        Ok(Provider {
            dir: dir.to_owned(),
            port,
            issuer,
            config,
            process,
        })
    }

    async fn spawn(
        dir: &Path,
        config: &ProviderConfig,
        port: u16,
        rotate: bool,
    ) -> anyhow::Result<(Process, String)> {
        let file = dir.join("oidc-provider.json");
        let text = serde_json::to_vec_pretty(&config.file(dir, port, rotate))?;
        std::fs::write(&file, text).with_context(|| format!("write {}", file.display()))?;
        let mut command = Command::new("node");
        command.arg(oidc_dir().join("provider.mjs")).arg(&file);
        let mut process = Process::spawn("oidc-provider", &mut command, Read::Stdout)
            .context("is node installed? (apt-get install nodejs npm)")?;
        let issuer = process
            .after(LISTENING)
            .await
            .context("oidc-provider did not start (`npm ci --prefix tests/oidc`?)")?;
        process.forget_lines();
        Ok((process, issuer.trim().to_owned()))
    }

    /// `http://127.0.0.1:PORT`, no path, no trailing slash.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its configuration (users with their passwords, the CI secret).
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The user `login`.
    ///
    /// # Panics
    /// If there is no such user.
    pub fn user(&self, login: &str) -> &User {
        self.config
            .users
            .iter()
            .find(|u| u.login == login)
            .unwrap_or_else(|| panic!("the provider has no user {login}"))
    }

    /// Replaces the signing key: stops the process, starts it again on the
    /// same port (same issuer) with a fresh key of a new `kid`; the old key
    /// leaves the JWKS. Sessions, codes and grants (in memory) are gone.
    ///
    /// # Errors
    /// If it does not stop or come back with the same issuer.
    pub async fn rotate_keys(&mut self) -> anyhow::Result<()> {
        self.process.kill()?;
        self.process.wait().await?;
        let (process, issuer) = Provider::spawn(&self.dir, &self.config, self.port, true).await?;
        self.process = process;
        anyhow::ensure!(
            issuer == self.issuer,
            "the provider came back as {issuer}, not {}",
            self.issuer
        );
        Ok(())
    }

    /// Starts it again on the same port (same issuer, same keys) with
    /// `config`: e.g. the relay's web redirect URI, known once the relay
    /// (configured with this issuer) runs. Sessions and codes are gone.
    ///
    /// # Errors
    /// If it does not stop or come back with the same issuer.
    pub async fn reconfigure(&mut self, config: ProviderConfig) -> anyhow::Result<()> {
        self.process.kill()?;
        self.process.wait().await?;
        let (process, issuer) = Provider::spawn(&self.dir, &config, self.port, false).await?;
        self.process = process;
        self.config = config;
        anyhow::ensure!(
            issuer == self.issuer,
            "the provider came back as {issuer}, not {}",
            self.issuer
        );
        Ok(())
    }

    /// Stops it now (SIGKILL) rather than when dropped.
    ///
    /// # Errors
    /// If it cannot be signalled or does not exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.process.kill()?;
        self.process.wait().await.map(|_| ())
    }

    /// Its discovery document (`/.well-known/openid-configuration`).
    ///
    /// # Errors
    /// If it cannot be fetched.
    pub async fn discovery(&self) -> anyhow::Result<Value> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let response = http_client(false)?
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        anyhow::ensure!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        response.json().await.with_context(|| format!("GET {url}"))
    }

    /// The authorization code flow as a browser: GET `authorization_url`,
    /// follow the provider's redirects with a fresh cookie jar, fill the
    /// login form with `login` and `password`, post the consent form, then
    /// GET the redirect to the client's loopback `redirect_uri` (any
    /// 127.0.0.1 port) and return what it answered.
    ///
    /// # Errors
    /// If the provider refuses the sign-in (a wrong login or password: the
    /// message says "refused"), shows an error page, or the flow does not
    /// end within [`GUARD`].
    pub async fn sign_in(
        &self,
        authorization_url: &str,
        login: &str,
        password: &str,
    ) -> anyhow::Result<SignedIn> {
        let flow = async {
            let browser = Browser::new(&self.issuer)?;
            let mut next = browser.get(authorization_url).await?;
            let mut logged_in = false;
            for _ in 0..MAX_STEPS {
                let (url, status, body) = match browser.settle(next).await? {
                    Landing::Away(url) => return follow_away(&url).await,
                    Landing::Page { url, status, body } => (url, status, body),
                };
                let Some(mut form) = Form::first(&body, &url)? else {
                    bail!(
                        "the provider answered {status} at {url}: {}",
                        message(&body)
                    );
                };
                if form.has("password") {
                    if logged_in {
                        bail!(
                            "the provider refused the sign-in of {login}: {}",
                            message(&body)
                        );
                    }
                    form.set("login", login);
                    form.set("password", password);
                    logged_in = true;
                }
                next = browser.submit(&form).await?;
            }
            bail!("the sign-in took over {MAX_STEPS} pages")
        };
        tokio::time::timeout(GUARD, flow)
            .await
            .with_context(|| format!("the sign-in did not end within {GUARD:?}"))?
    }

    /// The device flow's browser side: GET `verification_uri` (or the
    /// `verification_uri_complete`), enter `user_code`, confirm it, sign
    /// in as `login` and consent, up to the provider's success page.
    ///
    /// # Errors
    /// If the provider refuses the code ("refused the user code") or the
    /// sign-in ("refused the sign-in"), shows an error page, or the flow
    /// does not end within [`GUARD`].
    pub async fn enter_device_code(
        &self,
        verification_uri: &str,
        user_code: &str,
        login: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        let flow = async {
            let browser = Browser::new(&self.issuer)?;
            let mut next = browser.get(verification_uri).await?;
            let mut code_entered = false;
            let mut logged_in = false;
            for _ in 0..MAX_STEPS {
                let (url, status, body) = match browser.settle(next).await? {
                    Landing::Away(url) => bail!("the device flow left the provider for {url}"),
                    Landing::Page { url, status, body } => (url, status, body),
                };
                let Some(mut form) = Form::first(&body, &url)? else {
                    if status == StatusCode::OK && body.contains("Sign-in Success") {
                        return Ok(());
                    }
                    bail!(
                        "the provider answered {status} at {url}: {}",
                        message(&body)
                    );
                };
                if form.has_visible("user_code") {
                    if code_entered {
                        bail!(
                            "the provider refused the user code {user_code}: {}",
                            message(&body)
                        );
                    }
                    form.set("user_code", user_code);
                    code_entered = true;
                } else if form.has("password") {
                    if logged_in {
                        bail!(
                            "the provider refused the sign-in of {login}: {}",
                            message(&body)
                        );
                    }
                    form.set("login", login);
                    form.set("password", password);
                    logged_in = true;
                }
                // Else the code's confirmation or the consent: post as is.
                next = browser.submit(&form).await?;
            }
            bail!("the device flow took over {MAX_STEPS} pages")
        };
        tokio::time::timeout(GUARD, flow)
            .await
            .with_context(|| format!("the device flow did not end within {GUARD:?}"))?
    }

    /// A workload identity token: client credentials as [`CI_CLIENT`] with
    /// `resource=audience`; the JWT access token (RS256, header typ `JWT`,
    /// claims iss, aud = `audience`, sub, exp, iat, jti, client_id and
    /// [`ProviderConfig::ci_claims`]).
    ///
    /// # Errors
    /// If the token endpoint refuses (its `error` and `error_description`).
    pub async fn workload_token(&self, audience: &str) -> anyhow::Result<String> {
        let token_endpoint = self.endpoint("token_endpoint").await?;
        let response = http_client(false)?
            .post(&token_endpoint)
            .basic_auth(CI_CLIENT, Some(&self.config.ci_secret))
            .form(&[("grant_type", "client_credentials"), ("resource", audience)])
            .send()
            .await
            .with_context(|| format!("POST {token_endpoint}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("POST {token_endpoint}: {status}, not JSON"))?;
        anyhow::ensure!(
            status.is_success(),
            "client credentials refused ({status}): {} {}",
            body["error"],
            body["error_description"]
        );
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no access_token in {body}"))
    }

    /// A URL of the discovery document (`token_endpoint`...).
    async fn endpoint(&self, name: &str) -> anyhow::Result<String> {
        let discovery = self.discovery().await?;
        discovery[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no {name} in the discovery document"))
    }
}

/// A PKCE pair (S256).
#[derive(Clone, Debug)]
pub struct Pkce {
    /// `code_verifier`: 43 characters of base64url.
    pub verifier: String,
    /// `code_challenge`: base64url(SHA-256(verifier)).
    pub challenge: String,
}

impl Pkce {
    /// A fresh pair.
    pub fn new() -> Pkce {
        let verifier = random_token(32);
        let challenge = base64url(&Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Pkce {
        Pkce::new()
    }
}

/// `n` random bytes as base64url (a state, a nonce, a password).
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill(&mut bytes[..]);
    base64url(&bytes)
}

/// The claims of a JWS compact token, unverified (the payload's JSON).
///
/// # Errors
/// If it is not three dot-separated parts with a base64url JSON payload.
pub fn jwt_claims(jwt: &str) -> anyhow::Result<Value> {
    jwt_part(jwt, 1)
}

/// The protected header of a JWS compact token (`alg`, `kid`, `typ`).
///
/// # Errors
/// As [`jwt_claims`].
pub fn jwt_header(jwt: &str) -> anyhow::Result<Value> {
    jwt_part(jwt, 0)
}

fn jwt_part(jwt: &str, index: usize) -> anyhow::Result<Value> {
    let parts: Vec<&str> = jwt.split('.').collect();
    anyhow::ensure!(
        parts.len() == 3,
        "not a JWS compact token: {} parts",
        parts.len()
    );
    let bytes = unbase64url(parts[index]).context("a JWT part is not base64url")?;
    serde_json::from_slice(&bytes).context("a JWT part is not JSON")
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding.
pub fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(BASE64URL[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Decodes base64url, padded or not.
///
/// # Errors
/// On a character outside the alphabet or an impossible length.
pub fn unbase64url(text: &str) -> anyhow::Result<Vec<u8>> {
    let text = text.trim_end_matches('=');
    anyhow::ensure!(
        text.len() % 4 != 1,
        "impossible base64 length {}",
        text.len()
    );
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = BASE64URL
            .iter()
            .position(|&a| a == c)
            .with_context(|| format!("{:?} is not base64url", char::from(c)))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// A reqwest client that follows no redirect, with a cookie jar or without.
fn http_client(cookies: bool) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .cookie_store(cookies)
        // The provider restarts on the same port (key rotation): no
        // connection of the old process may be reused.
        .pool_max_idle_per_host(0)
        .timeout(GUARD)
        .build()
        .context("build an HTTP client")
}

/// GETs the loopback redirect URI the provider sent the browser to.
async fn follow_away(url: &Url) -> anyhow::Result<SignedIn> {
    let response = http_client(false)?
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("GET the redirect {url}"))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .with_context(|| format!("read the answer of {url}"))?;
    Ok(SignedIn {
        redirect: url.to_string(),
        status,
        body,
    })
}

/// Where a run of redirects ended.
enum Landing {
    /// A page of the provider.
    Page {
        url: Url,
        status: StatusCode,
        body: String,
    },
    /// A redirect off the provider (the client's redirect URI).
    Away(Url),
}

/// A browser on the provider: one cookie jar, redirects followed by hand.
struct Browser {
    client: reqwest::Client,
    origin: reqwest::Url,
}

impl Browser {
    fn new(issuer: &str) -> anyhow::Result<Browser> {
        Ok(Browser {
            client: http_client(true)?,
            origin: Url::parse(issuer).with_context(|| format!("issuer {issuer}"))?,
        })
    }

    async fn get(&self, url: &str) -> anyhow::Result<reqwest::Response> {
        tracing::debug!("browser: GET {url}");
        self.client
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))
    }

    /// Posts (or gets) `form` with its fields.
    async fn submit(&self, form: &Form) -> anyhow::Result<reqwest::Response> {
        let request = if form.method.eq_ignore_ascii_case("post") {
            self.client.post(form.action.clone()).form(&form.fields)
        } else {
            self.client.get(form.action.clone()).query(&form.fields)
        };
        let fields: Vec<&str> = form.fields.iter().map(|(n, _)| n.as_str()).collect();
        tracing::debug!("browser: {} {} {fields:?}", form.method, form.action);
        request
            .send()
            .await
            .with_context(|| format!("{} {}", form.method, form.action))
    }

    /// Follows redirects within the provider, up to a page of it or a
    /// redirect elsewhere.
    async fn settle(&self, mut response: reqwest::Response) -> anyhow::Result<Landing> {
        for _ in 0..MAX_STEPS {
            let url = response.url().clone();
            let status = response.status();
            tracing::debug!("browser: {status} at {url}");
            if !status.is_redirection() {
                let body = response
                    .text()
                    .await
                    .with_context(|| format!("read {url}"))?;
                return Ok(Landing::Page { url, status, body });
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .with_context(|| format!("{status} without Location at {url}"))?
                .to_str()
                .with_context(|| format!("a Location that is not text at {url}"))?;
            let next = url
                .join(location)
                .with_context(|| format!("Location {location:?} at {url}"))?;
            if next.origin() != self.origin.origin() {
                return Ok(Landing::Away(next));
            }
            tracing::debug!("browser: GET {next}");
            response = self
                .client
                .get(next.clone())
                .send()
                .await
                .with_context(|| format!("GET {next}"))?;
        }
        bail!("over {MAX_STEPS} redirects")
    }
}

/// An HTML form of the provider's pages: where it goes, its fields.
#[derive(Debug)]
struct Form {
    action: Url,
    method: String,
    /// Name, value.
    fields: Vec<(String, String)>,
    /// The names of fields that are not hidden (typed in by a person).
    visible: Vec<String>,
}

impl Form {
    /// The first `<form>` of `html` (at `base`), if any.
    fn first(html: &str, base: &Url) -> anyhow::Result<Option<Form>> {
        let lower = html.to_ascii_lowercase();
        let Some(start) = lower.find("<form") else {
            return Ok(None);
        };
        let open_end = lower[start..]
            .find('>')
            .map(|i| start + i)
            .context("an unterminated <form> tag")?;
        let attrs = attributes(&html[start + "<form".len()..open_end]);
        let end = lower[open_end..]
            .find("</form")
            .map_or(html.len(), |i| open_end + i);
        let action = attr(&attrs, "action").unwrap_or_default();
        let action = base
            .join(&action)
            .with_context(|| format!("form action {action:?} at {base}"))?;
        let method = attr(&attrs, "method").unwrap_or_else(|| "get".to_owned());
        let mut form = Form {
            action,
            method,
            fields: Vec::new(),
            visible: Vec::new(),
        };
        let mut at = open_end;
        while let Some(i) = lower[at..end].find("<input") {
            let tag_start = at + i + "<input".len();
            let tag_end = lower[tag_start..end]
                .find('>')
                .map_or(end, |j| tag_start + j);
            let attrs = attributes(html[tag_start..tag_end].trim_end_matches('/'));
            at = tag_end;
            let Some(name) = attr(&attrs, "name").filter(|n| !n.is_empty()) else {
                continue;
            };
            let kind = attr(&attrs, "type").unwrap_or_else(|| "text".to_owned());
            if kind.eq_ignore_ascii_case("submit") || kind.eq_ignore_ascii_case("button") {
                continue;
            }
            if !kind.eq_ignore_ascii_case("hidden") {
                form.visible.push(name.clone());
            }
            form.fields
                .push((name, attr(&attrs, "value").unwrap_or_default()));
        }
        Ok(Some(form))
    }

    fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|(n, _)| n == name)
    }

    fn has_visible(&self, name: &str) -> bool {
        self.visible.iter().any(|n| n == name)
    }

    /// Sets field `name` (adds it if the form has none).
    fn set(&mut self, name: &str, value: &str) {
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some(field) => value.clone_into(&mut field.1),
            None => self.fields.push((name.to_owned(), value.to_owned())),
        }
    }
}

/// The attributes of a tag's inside (`name="value"`, `name='value'`,
/// `name=value`, `name`), names lowercased, values unescaped.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = tag;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if rest.is_empty() {
            return out;
        }
        let name_end = rest
            .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let value = if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let (value, next) = match after.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let inner = &after[1..];
                    let close = inner.find(q).unwrap_or(inner.len());
                    (&inner[..close], inner.get(close + 1..).unwrap_or(""))
                }
                _ => {
                    let stop = after
                        .find(|c: char| c.is_ascii_whitespace())
                        .unwrap_or(after.len());
                    (&after[..stop], &after[stop..])
                }
            };
            rest = next;
            unescape(value)
        } else {
            String::new()
        };
        if name.is_empty() {
            // A stray character: skip it.
            rest = rest.get(1..).unwrap_or("");
            continue;
        }
        out.push((name, value));
    }
}

fn attr(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// HTML character references as the provider's pages write them.
fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// What a page says: its error paragraph if it has one, else its text.
fn message(html: &str) -> String {
    for marker in ["id=\"error\">", "class=\"red\">"] {
        if let Some(i) = html.find(marker) {
            let rest = &html[i + marker.len()..];
            let text = &rest[..rest.find('<').unwrap_or(rest.len())];
            return unescape(text.trim());
        }
    }
    let mut text = String::new();
    let mut in_tag = false;
    let mut in_style = false;
    let lower = html.to_ascii_lowercase();
    for (i, c) in html.char_indices() {
        match c {
            '<' => {
                in_tag = true;
                if lower[i..].starts_with("<style") || lower[i..].starts_with("<script") {
                    in_style = true;
                } else if lower[i..].starts_with("</style") || lower[i..].starts_with("</script") {
                    in_style = false;
                }
            }
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag && !in_style => text.push(c),
            _ => {}
        }
    }
    let text = unescape(&text.split_whitespace().collect::<Vec<_>>().join(" "));
    text.chars().take(500).collect()
}
