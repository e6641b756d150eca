//! The OpenID provider harness itself (`relay_tests::oidc`): panva's
//! oidc-provider run by the test on 127.0.0.1, driven as a browser and as
//! the clients the relay will meet. The authorization code flow with PKCE
//! to a loopback redirect on an unregistered port gives an ID token with
//! the user's email and groups and the nonce; a wrong password is refused
//! on the provider's page; the CI client gets a JWT with the requested
//! audience and the workload claims; a key rotation keeps the issuer and
//! changes the `kid`; the device flow gives an ID token too.
//!
//! Without node or `tests/oidc/node_modules` the tests say SKIPPED, except
//! under CI (`CI` set), where they fail with the install command.

use std::time::Duration;

use anyhow::Context;
use relay_tests::guard;
use relay_tests::oidc::{self, jwt_claims, jwt_header, Pkce, Provider, ProviderConfig};
use reqwest::Url;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A one-shot loopback redirect listener, as `relay-client login` runs:
/// its port, and the request target of the one request it answers (200).
async fn callback_listener() -> anyhow::Result<(u16, JoinHandle<anyhow::Result<String>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "the browser closed before its request ended");
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8(head)?;
        let target = head
            .split_whitespace()
            .nth(1)
            .context("no request target")?
            .to_owned();
        let body = "signed in";
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await?;
        Ok(target)
    });
    Ok((port, task))
}

/// The authorization request of `relay-client login` for a loopback
/// listener on `port` at `path`.
fn authorization_url(
    discovery: &Value,
    port: u16,
    path: &str,
    pkce: &Pkce,
    state: &str,
    nonce: &str,
) -> anyhow::Result<Url> {
    let endpoint = discovery["authorization_endpoint"]
        .as_str()
        .context("no authorization_endpoint")?;
    let mut url = Url::parse(endpoint)?;
    url.query_pairs_mut()
        .append_pair("client_id", oidc::CLI_CLIENT)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &format!("http://127.0.0.1:{port}{path}"))
        .append_pair("scope", oidc::SCOPES)
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", state)
        .append_pair("nonce", nonce);
    Ok(url)
}

/// POSTs `form` to `url`: the status and the JSON body.
async fn post_form(url: &str, form: &[(&str, &str)]) -> anyhow::Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .post(url)
        .form(form)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status().as_u16();
    let body = response
        .json()
        .await
        .with_context(|| format!("POST {url}"))?;
    Ok((status, body))
}

async fn get_json(url: &str) -> anyhow::Result<Value> {
    let response = reqwest::get(url)
        .await
        .with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    Ok(response.json().await?)
}

fn str_of<'a>(value: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    value[key]
        .as_str()
        .with_context(|| format!("no string {key} in {value}"))
}

/// The one `kid` of the provider's JWKS (which holds public keys only).
async fn only_kid(provider: &Provider) -> anyhow::Result<String> {
    let discovery = provider.discovery().await?;
    let jwks = get_json(str_of(&discovery, "jwks_uri")?).await?;
    let keys = jwks["keys"].as_array().context("no keys in the JWKS")?;
    assert_eq!(keys.len(), 1, "{jwks}");
    assert!(keys[0].get("d").is_none(), "the JWKS shows a private key");
    assert_eq!(keys[0]["alg"], "RS256", "{jwks}");
    Ok(str_of(&keys[0], "kid")?.to_owned())
}

/// Code flow + PKCE to a loopback port, a refused password, a workload
/// token, a key rotation.
#[tokio::test]
async fn oidc_provider_code_flow_workload_token_and_rotation() -> anyhow::Result<()> {
    if oidc::provider_missing() {
        return Ok(());
    }
    relay_tests::trace_init();
    let dir = tempfile::tempdir()?;
    let mut provider = guard(
        "start oidc-provider",
        Provider::start(dir.path(), ProviderConfig::default()),
    )
    .await?;
    let issuer = provider.issuer().to_owned();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
    let discovery = provider.discovery().await?;
    assert_eq!(discovery["issuer"], issuer.as_str());
    let token_endpoint = str_of(&discovery, "token_endpoint")?.to_owned();

    // The code flow, redirected to a port the client was not registered with.
    let (port, callback) = callback_listener().await?;
    let pkce = Pkce::new();
    let state = oidc::random_token(16);
    let nonce = oidc::random_token(16);
    let url = authorization_url(&discovery, port, "/callback", &pkce, &state, &nonce)?;
    let alice = provider.user("alice").clone();
    let signed_in = provider
        .sign_in(url.as_str(), &alice.login, &alice.password)
        .await?;
    assert_eq!(signed_in.status, 200, "{signed_in:?}");
    assert_eq!(signed_in.body, "signed in");
    let target = guard("the loopback redirect", callback).await??;
    let redirect = Url::parse(&format!("http://127.0.0.1:{port}"))?.join(&target)?;
    assert_eq!(redirect.path(), "/callback");
    assert_eq!(redirect.as_str(), signed_in.redirect);
    let query = |name: &str| {
        redirect
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(query("state").as_deref(), Some(state.as_str()));
    // RFC 9207: the issuer comes with the code.
    assert_eq!(query("iss").as_deref(), Some(issuer.as_str()));
    let code = query("code").context("no code in the redirect")?;

    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("client_id", oidc::CLI_CLIENT),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    let (status, tokens) = post_form(&token_endpoint, &exchange).await?;
    assert_eq!(status, 200, "{tokens}");
    let id_token = str_of(&tokens, "id_token")?;
    let claims = jwt_claims(id_token)?;
    println!("ID token claims: {claims}");
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["aud"], oidc::CLI_CLIENT);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["nonce"], nonce.as_str());
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["groups"], json!(["sre"]));
    assert_eq!(
        claims["exp"]
            .as_u64()
            .zip(claims["iat"].as_u64())
            .map(|(e, i)| e - i),
        Some(600)
    );
    assert_eq!(jwt_header(id_token)?["alg"], "RS256");
    // A code is good once.
    let (status, again) = post_form(&token_endpoint, &exchange).await?;
    assert_eq!(
        (status, &again["error"]),
        (400, &json!("invalid_grant")),
        "{again}"
    );

    // A wrong password is refused on the provider's login page.
    let (port, _unused) = callback_listener().await?;
    let url = authorization_url(&discovery, port, "/callback", &Pkce::new(), &state, &nonce)?;
    let err = provider
        .sign_in(url.as_str(), "alice", "not-her-password")
        .await
        .expect_err("a wrong password signed in");
    assert!(
        err.to_string().contains("refused the sign-in of alice"),
        "{err:#}"
    );
    assert!(
        err.to_string().contains("Invalid login or password"),
        "{err:#}"
    );

    // Any port, but not any path: the provider's error page says why.
    let url = authorization_url(&discovery, port, "/elsewhere", &Pkce::new(), &state, &nonce)?;
    let err = provider
        .sign_in(url.as_str(), &alice.login, &alice.password)
        .await
        .expect_err("an unregistered redirect path was accepted");
    assert!(err.to_string().contains("invalid_redirect_uri"), "{err:#}");

    // The CI client's workload identity token.
    let kid = only_kid(&provider).await?;
    let jwt = provider.workload_token("relay://relay.test").await?;
    let header = jwt_header(&jwt)?;
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], kid.as_str());
    let claims = jwt_claims(&jwt)?;
    println!("workload token claims: {claims}");
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["aud"], "relay://relay.test");
    assert_eq!(claims["sub"], "repo:acme/relay:ref:refs/heads/main");
    assert_eq!(claims["repository"], "acme/relay");
    assert_eq!(claims["ref"], "refs/heads/main");
    assert_eq!(claims["workflow"], "deploy");
    assert!(claims["jti"].is_string(), "{claims}");
    assert_eq!(
        claims["exp"]
            .as_u64()
            .zip(claims["iat"].as_u64())
            .map(|(e, i)| e - i),
        Some(300)
    );
    // A wrong secret is refused.
    let (status, refused) = post_form(
        &token_endpoint,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", oidc::CI_CLIENT),
            ("client_secret", "guess"),
            ("resource", "relay://relay.test"),
        ],
    )
    .await?;
    assert_eq!(
        (status, &refused["error"]),
        (401, &json!("invalid_client")),
        "{refused}"
    );

    // Key rotation: same issuer, another kid, the old one gone.
    guard("rotate the provider's key", provider.rotate_keys()).await?;
    assert_eq!(provider.issuer(), issuer);
    assert_eq!(provider.discovery().await?["issuer"], issuer.as_str());
    let rotated = only_kid(&provider).await?;
    assert_ne!(rotated, kid);
    let jwt = provider.workload_token("relay://relay.test").await?;
    assert_eq!(jwt_header(&jwt)?["kid"], rotated.as_str());

    guard("stop oidc-provider", provider.stop()).await
}

/// The device authorization grant (RFC 8628): the code entered on the
/// provider's page while the client polls at the interval it was given.
#[tokio::test]
async fn oidc_provider_device_flow() -> anyhow::Result<()> {
    if oidc::provider_missing() {
        return Ok(());
    }
    relay_tests::trace_init();
    let dir = tempfile::tempdir()?;
    let provider = guard(
        "start oidc-provider",
        Provider::start(dir.path(), ProviderConfig::default()),
    )
    .await?;
    let discovery = provider.discovery().await?;
    let token_endpoint = str_of(&discovery, "token_endpoint")?.to_owned();
    let device_endpoint = str_of(&discovery, "device_authorization_endpoint")?.to_owned();

    let nonce = oidc::random_token(16);
    let (status, device) = post_form(
        &device_endpoint,
        &[
            ("client_id", oidc::CLI_CLIENT),
            ("scope", oidc::SCOPES),
            ("nonce", nonce.as_str()),
        ],
    )
    .await?;
    assert_eq!(status, 200, "{device}");
    println!("device authorization: {device}");
    let device_code = str_of(&device, "device_code")?;
    let user_code = str_of(&device, "user_code")?;
    let verification_uri = str_of(&device, "verification_uri")?;
    let interval = device["interval"].as_u64().unwrap_or(5);
    assert_eq!(interval, 1);

    let poll = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device_code),
        ("client_id", oidc::CLI_CLIENT),
    ];
    // Before the user: pending.
    let (status, pending) = post_form(&token_endpoint, &poll).await?;
    assert_eq!(
        (status, &pending["error"]),
        (400, &json!("authorization_pending")),
        "{pending}"
    );

    // The user enters the code while the client polls at the interval.
    let alice = provider.user("alice").clone();
    let user =
        provider.enter_device_code(verification_uri, user_code, &alice.login, &alice.password);
    let client = async {
        let mut every = tokio::time::interval(Duration::from_secs(interval));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await; // the first tick is now: we just polled
        loop {
            every.tick().await;
            let (status, body) = post_form(&token_endpoint, &poll).await?;
            if status == 200 {
                return anyhow::Ok(body);
            }
            anyhow::ensure!(body["error"] == "authorization_pending", "{status} {body}");
        }
    };
    let (entered, tokens) = guard("the device flow", async { tokio::join!(user, client) }).await;
    entered?;
    let tokens = tokens?;
    let claims = jwt_claims(str_of(&tokens, "id_token")?)?;
    println!("device flow ID token claims: {claims}");
    assert_eq!(claims["iss"], provider.issuer());
    assert_eq!(claims["aud"], oidc::CLI_CLIENT);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], json!(["sre"]));
    // oidc-provider 9 keeps the device authorization request's nonce with
    // the device code's parameters but does not put it in the ID token:
    // the relay cannot require a nonce of device-flow ID tokens.
    assert!(claims.get("nonce").is_none(), "{claims}");

    // The device code is spent.
    let (status, spent) = post_form(&token_endpoint, &poll).await?;
    assert_eq!(
        (status, &spent["error"]),
        (400, &json!("invalid_grant")),
        "{spent}"
    );

    // A code nobody was given is refused on the provider's page.
    let err = provider
        .enter_device_code(verification_uri, "WXZB-WXZB", &alice.login, &alice.password)
        .await
        .expect_err("an unknown user code was accepted");
    assert!(err.to_string().contains("refused the user code"), "{err:#}");

    // verification_uri_complete: the code comes in the link.
    let (status, device) = post_form(
        &device_endpoint,
        &[("client_id", oidc::CLI_CLIENT), ("scope", oidc::SCOPES)],
    )
    .await?;
    assert_eq!(status, 200, "{device}");
    let bob = provider.user("bob").clone();
    guard(
        "the device flow's link",
        provider.enter_device_code(
            str_of(&device, "verification_uri_complete")?,
            str_of(&device, "user_code")?,
            &bob.login,
            &bob.password,
        ),
    )
    .await?;
    let poll = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", str_of(&device, "device_code")?),
        ("client_id", oidc::CLI_CLIENT),
    ];
    let (status, tokens) = post_form(&token_endpoint, &poll).await?;
    assert_eq!(status, 200, "{tokens}");
    let claims = jwt_claims(str_of(&tokens, "id_token")?)?;
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["groups"], json!(["dev"]));
    guard("stop oidc-provider", provider.stop()).await
}
