//! Single sign-on end to end against a real OpenID provider (panva's
//! oidc-provider, `relay_tests::oidc`): the programs as a person and a CI
//! job run them. `relay-client login` in a browser (PKCE, driven through
//! the provider's own login and consent pages) and with a device code; a
//! CI job's workload token exchanged; the certificate's groups deciding
//! what the policy allows; the login in the audit log with the provider's
//! issuer and subject; and the refusals, each saying why: a token for
//! another audience, from another issuer, expired, used twice, a nonce
//! replayed, and a key the provider stopped publishing.

use std::path::Path;

use proto::{Frame, LoginHello, LoginToken};
use relay_net::endpoint::Transport;
use relay_net::framed::{write_frame, FrameReader};
use relay_tests::launch::{self, Programs, RelayProcess};
use relay_tests::oidc::{self, Provider, ProviderConfig};
use relay_tests::{guard, tcp_echo};

/// The policy: the `sre` group reaches `edge/db`, CI jobs (`deploy`) reach
/// `edge/kube`; nobody else anything.
const POLICY: &str = "[[allow]]\ngroup = \"sre\"\nagent = \"edge\"\ntargets = [\"db\"]\n\
                      [[allow]]\ngroup = \"deploy\"\nagent = \"edge\"\ntargets = [\"kube\"]\n";

/// The audience CI jobs ask their tokens for.
const AUDIENCE: &str = "relay://127.0.0.1";

/// A relay with `[login]` for `provider`, an agent `edge` exposing `db`
/// and `kube` (echo servers).
struct World {
    programs: Programs,
    relay: RelayProcess,
    _agent: launch::Process,
    home: tempfile::TempDir,
}

async fn world(provider: &Provider, skew: &str) -> anyhow::Result<World> {
    let programs = relay_tests::programs!();
    let dir = launch::relay_dir(&programs, POLICY).await?;
    let issuer = provider.issuer();
    std::fs::write(
        dir.path().join("relay.toml"),
        format!(
            "[login]\nclock-skew = \"{skew}\"\n\n\
             [[login.provider]]\nname = \"sso\"\nissuer = \"{issuer}\"\nclient-id = \"{cli}\"\n\
             scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\ngroups-claim = \"groups\"\n\
             name-domain = \"example.com\"\n\n\
             [[login.provider]]\nname = \"ci\"\nkind = \"workload\"\nissuer = \"{issuer}\"\n\
             audience = \"{AUDIENCE}\"\nname-claim = \"repository\"\nname-prefix = \"ci-\"\n\
             require = {{ ref = \"refs/heads/main\" }}\ngroups = [\"deploy\"]\n",
            cli = oidc::CLI_CLIENT,
        ),
    )?;
    let relay = RelayProcess::run_in(&programs, dir, "127.0.0.1:0", &[]).await?;
    let echo = tcp_echo().await;
    let agent_cred = relay.issue("agent", "edge").await?;
    let agent = launch::agent(
        &programs,
        &agent_cred,
        &[
            format!("--expose=db={echo}"),
            format!("--expose=kube={echo}"),
        ],
    )
    .await?;
    Ok(World {
        programs,
        relay,
        _agent: agent,
        home: tempfile::tempdir()?,
    })
}

impl World {
    fn credential(&self) -> std::path::PathBuf {
        self.home.path().join("credential.toml")
    }

    /// `relay-client --credential HOME/credential.toml ARGS...`, running.
    fn client(&self, args: &[&str]) -> anyhow::Result<launch::Process> {
        let mut all: Vec<std::ffi::OsString> =
            vec!["--credential".into(), self.credential().into()];
        all.extend(args.iter().map(Into::into));
        launch::spawn_client(&self.programs, &all)
    }

    /// `login` ARGS with this relay's address and CA.
    fn login(&self, args: &[&str]) -> anyhow::Result<launch::Process> {
        let relay = self.relay.addr.to_string();
        let ca = self.relay.dir.path().join("ca.crt");
        let ca = ca.to_string_lossy().into_owned();
        let mut all = vec!["login", "--relay", &relay, "--ca", &ca];
        all.extend_from_slice(args);
        self.client(&all)
    }

    /// Runs a client command to its end: its exit success and its output
    /// (every line, until both pipes close).
    async fn finish(mut process: launch::Process) -> anyhow::Result<(bool, String)> {
        let mut out = String::new();
        while let Ok(line) = process.line_with(&[""]).await {
            out.push_str(&line);
            out.push('\n');
        }
        let status = process.wait().await?;
        Ok((status.success(), out))
    }
}

/// A person logs in in a browser: the printed page is signed in at the
/// provider as alice; the credential names her (`alice`, from her e-mail
/// in the provider's `name-domain`), her
/// group `sre`, and the provider; `list` then works without more, `db`
/// (her group's) opens, end to end and on the relay path, and `kube` (not
/// hers) is refused; the audit log has the login with the provider's
/// issuer and subject.
#[tokio::test]
async fn a_person_logs_in_in_a_browser_and_gets_what_their_group_may() -> anyhow::Result<()> {
    relay_tests::trace_init();
    if oidc::provider_missing() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let provider = Provider::start(dir.path(), ProviderConfig::default()).await?;
    let world = world(&provider, "60s").await?;
    let mut login = world.login(&["--no-browser"])?;
    let _ = login.line_with(&["Log in at"]).await?;
    let url = login.line_with(&["http://"]).await?;
    let alice = provider.user("alice");
    let signed_in = guard(
        "sign in",
        provider.sign_in(url.trim(), "alice", &alice.password),
    )
    .await?;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    assert!(signed_in.body.contains("Signed in"), "{}", signed_in.body);
    let done = login.line_with(&["logged in as", "relay-client:"]).await?;
    assert!(
        done.contains("logged in as client/alice in groups"),
        "{done}"
    );
    assert!(
        done.contains("in groups sre") && done.contains("provider sso"),
        "{done}"
    );
    assert!(login.wait().await?.success());

    let (ok, out) = World::finish(world.client(&["list"])?).await?;
    assert!(ok, "{out}");
    assert!(out.contains("edge") && out.contains("db"), "{out}");
    assert!(!out.contains("kube"), "{out}");
    let (ok, out) = World::finish(world.client(&["connect", "edge/kube"])?).await?;
    assert!(!ok && out.contains("may not open"), "{out}");
    // On both paths: the agent accepts the signer's chain end to end too.
    for args in [&["--end-to-end"][..], &["--end-to-end=off"][..]] {
        let (_forward, local, path) =
            launch::forward_with(&world.programs, &world.credential(), args, "edge/db").await?;
        let mut tcp = tokio::net::TcpStream::connect(local).await?;
        tokio::io::AsyncWriteExt::write_all(&mut tcp, b"hello sso").await?;
        let echoed = guard("echo", relay_tests::read_n(&mut tcp, 9)).await?;
        assert_eq!(echoed, b"hello sso", "{path}");
    }

    let audit = world.relay.audit_events();
    let login_event = audit
        .iter()
        .find(|e| e["event"] == "login")
        .unwrap_or_else(|| panic!("no login in {audit:?}"));
    assert_eq!(login_event["issuer"], provider.issuer());
    assert_eq!(login_event["subject"], "alice");
    assert_eq!(login_event["groups"], serde_json::json!(["sre"]));
    Ok(())
}

/// A person on a machine without a browser: `login --device` prints a page
/// and a code, entered at the provider; the login completes.
#[tokio::test]
async fn a_person_logs_in_with_a_device_code() -> anyhow::Result<()> {
    relay_tests::trace_init();
    if oidc::provider_missing() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let provider = Provider::start(dir.path(), ProviderConfig::default()).await?;
    let world = world(&provider, "60s").await?;
    // No --credential: the login goes where every command then looks.
    let config_home = world.home.path().join("config");
    let env = [("XDG_CONFIG_HOME", config_home.as_path())];
    let relay_addr = world.relay.addr.to_string();
    let ca = world.relay.dir.path().join("ca.crt");
    let ca = ca.to_string_lossy().into_owned();
    let mut login = launch::spawn_client_with(
        &world.programs,
        &["login", "--relay", &relay_addr, "--ca", &ca, "--device"],
        &env,
    )?;
    let line = login.line_with(&["To log in, open"]).await?;
    let rest = line.trim().trim_start_matches("To log in, open ");
    let (uri, code) = rest
        .split_once(" and enter the code ")
        .unwrap_or_else(|| panic!("{line}"));
    let bob = provider.user("bob");
    guard(
        "device code",
        provider.enter_device_code(uri, code, "bob", &bob.password),
    )
    .await?;
    let done = login.line_with(&["logged in as", "relay-client:"]).await?;
    assert!(
        done.contains("logged in as client/bob in groups") && done.contains("in groups dev"),
        "{done}"
    );
    assert!(done.contains("config/relay/credential.toml"), "{done}");
    assert!(login.wait().await?.success());
    // Bob's group is granted nothing; the credential is found by itself.
    let connect = launch::spawn_client_with(&world.programs, &["connect", "edge/db"], &env)?;
    let (ok, out) = World::finish(connect).await?;
    assert!(!ok && out.contains("may not open"), "{out}");
    let logout = launch::spawn_client_with(&world.programs, &["logout"], &env)?;
    let (ok, out) = World::finish(logout).await?;
    assert!(ok && out.contains("removed"), "{out}");
    let list = launch::spawn_client_with(&world.programs, &["list"], &env)?;
    let (ok, out) = World::finish(list).await?;
    assert!(!ok && out.contains("relay-client login"), "{out}");
    Ok(())
}

/// A CI job exchanges its workload token: two lines, then it reaches what
/// `deploy` may; the same token a second time, a token for another
/// audience, one from another provider, and an expired one (and a
/// person's expired ID token) are refused with what was wrong.
#[tokio::test]
async fn a_ci_job_exchanges_its_workload_token_and_bad_tokens_are_refused() -> anyhow::Result<()> {
    relay_tests::trace_init();
    if oidc::provider_missing() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let config = ProviderConfig {
        access_token_ttl: 2,
        id_token_ttl: 2,
        ..ProviderConfig::default()
    };
    let provider = Provider::start(dir.path(), config).await?;
    let other_dir = tempfile::tempdir()?;
    let other = Provider::start(other_dir.path(), ProviderConfig::default()).await?;
    let world = world(&provider, "0s").await?;
    let token_file = world.home.path().join("token");
    let login_with = |token: String| {
        std::fs::write(&token_file, token)?;
        world.login(&["--oidc-token-file", &token_file.to_string_lossy()])
    };

    let token = provider.workload_token(AUDIENCE).await?;
    let (ok, out) = World::finish(login_with(token.clone())?).await?;
    assert!(ok, "{out}");
    assert!(
        out.contains("logged in as client/ci-acme-relay-") && out.contains("in groups deploy"),
        "{out}"
    );
    let (ok, out) = World::finish(world.client(&["list"])?).await?;
    assert!(ok && out.contains("kube") && !out.contains("db"), "{out}");
    // The pipeline's second line.
    let with = world.client(&[
        "with",
        "--no-kubeconfig",
        "edge/kube",
        "--",
        "sh",
        "-c",
        "test -n \"$RELAY_FORWARD_PORT\" && echo forwarded",
    ])?;
    let (ok, out) = World::finish(with).await?;
    assert!(ok && out.contains("forwarded"), "{out}");

    let refused = |out: &str, says: &str| {
        assert!(
            out.contains("the relay refused the login") && out.contains(says),
            "expected {says:?}: {out}"
        );
    };
    let (ok, out) = World::finish(login_with(token)?).await?;
    assert!(!ok);
    refused(&out, "used for a login before");
    let (ok, out) =
        World::finish(login_with(provider.workload_token("relay://other").await?)?).await?;
    assert!(!ok);
    refused(&out, "is for audience \"relay://other\"");
    let (ok, out) = World::finish(login_with(other.workload_token(AUDIENCE).await?)?).await?;
    assert!(!ok);
    refused(
        &out,
        &format!(
            "issued by \"{}\", not by provider ci's issuer",
            other.issuer()
        ),
    );

    let stale = provider.workload_token(AUDIENCE).await?;
    // A person's ID token that expires too, sent on a login connection of its own.
    let ca = std::fs::read_to_string(world.relay.dir.path().join("ca.crt"))?;
    let relay = vec![world.relay.addr.to_string()];
    let conn = relay_net::dial::dial_login(&ca, &relay, &Transport::client(), relay_tests::GUARD)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .conn;
    let nonce = offer_nonce(&conn).await?;
    let stale_id_token = id_token_for(&provider, "alice", &nonce).await?;
    let exp_of = |jwt: &str| -> anyhow::Result<u64> {
        Ok(oidc::jwt_claims(jwt)?["exp"].as_u64().unwrap_or_default())
    };
    let exp = exp_of(&stale)?.max(exp_of(&stale_id_token)?);
    // The fault is the tokens' age: no event says a token has expired but
    // the clock, so the wait is the injected fault, not a synchronisation.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let age = std::time::Duration::from_secs(exp.saturating_sub(now) + 1);
    #[allow(clippy::disallowed_methods)]
    tokio::time::sleep(age).await; // sleep-ok: ages the tokens past their exp (the fault under test)
    let (ok, out) = World::finish(login_with(stale)?).await?;
    assert!(!ok);
    refused(&out, "the token expired");
    let (_, csr) = relay_net::pki::keygen("test")?;
    let expired = Frame::from(LoginToken {
        provider: "sso".parse()?,
        token: stale_id_token,
        csr,
        lifetime_s: 0,
    });
    match ask(&conn, expired).await? {
        Frame::Refused(r) => assert!(r.message.contains("the token expired"), "{}", r.message),
        other => panic!("an expired ID token was accepted: {other:?}"),
    }
    Ok(())
}

/// The protocol itself, as a client that cheats would use it: junk (an
/// unknown provider, a token that is no JWT, a bad CSR, an `Open` without a
/// certificate) is refused with what is wrong; an ID token
/// whose nonce was spent is refused on the same connection and on another;
/// after the provider rotates its key, a token of the new key is accepted
/// (the relay fetches the keys again by itself) and one of the retired key
/// is refused.
#[tokio::test]
async fn a_replayed_nonce_and_a_retired_key_are_refused() -> anyhow::Result<()> {
    relay_tests::trace_init();
    if oidc::provider_missing() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mut provider = Provider::start(dir.path(), ProviderConfig::default()).await?;
    let world = world(&provider, "60s").await?;
    let ca = std::fs::read_to_string(world.relay.dir.path().join("ca.crt"))?;
    let relay = vec![world.relay.addr.to_string()];
    let transport = Transport::client();
    let dial = || relay_net::dial::dial_login(&ca, &relay, &transport, relay_tests::GUARD);

    let conn = dial().await.map_err(|e| anyhow::anyhow!("{e}"))?.conn;
    // Bad input first: each refusal says what is wrong.
    let refused = |frame: Frame, says: &'static str| {
        let conn = conn.clone();
        async move {
            match ask(&conn, frame).await? {
                Frame::Refused(r) => {
                    anyhow::ensure!(r.message.contains(says), "{says:?}: {}", r.message)
                }
                other => anyhow::bail!("{says:?}: answered {other:?}"),
            }
            anyhow::Ok(())
        }
    };
    let (_, good_csr) = relay_net::pki::keygen("test")?;
    let token = |provider: &str, token: &str, csr: &str| {
        Frame::from(LoginToken {
            provider: provider.parse().expect("name"),
            token: token.into(),
            csr: csr.into(),
            lifetime_s: 0,
        })
    };
    refused(token("nope", "x", &good_csr), "no login provider \"nope\"").await?;
    refused(token("sso", "not a jwt", &good_csr), "not a signed token").await?;
    let open = proto::Open {
        agent: "edge".parse()?,
        target: "db".parse()?,
        kind: proto::StreamKind::Tcp,
    };
    refused(open.into(), "may only log in").await?;
    let nonce = offer_nonce(&conn).await?;
    let id_token = id_token_for(&provider, "alice", &nonce).await?;
    refused(
        token("sso", &id_token, "junk csr"),
        "certificate signing request",
    )
    .await?;
    let nonce = offer_nonce(&conn).await?;
    let id_token = id_token_for(&provider, "alice", &nonce).await?;
    let exchange = |token: String| {
        let (_, csr) = relay_net::pki::keygen("test").expect("keygen");
        Frame::from(LoginToken {
            provider: "sso".parse().expect("name"),
            token,
            csr,
            lifetime_s: 0,
        })
    };
    assert!(matches!(
        ask(&conn, exchange(id_token.clone())).await?,
        Frame::LoginCert(_)
    ));
    for conn in [
        conn.clone(),
        dial().await.map_err(|e| anyhow::anyhow!("{e}"))?.conn,
    ] {
        let _ = ask(&conn, LoginHello.into()).await?;
        match ask(&conn, exchange(id_token.clone())).await? {
            Frame::Refused(r) => assert!(
                r.message.contains("nonce is not one this relay gave"),
                "{}",
                r.message
            ),
            other => panic!("a replayed nonce was accepted: {other:?}"),
        }
    }

    // A token signed with the key about to be retired, then a rotation.
    let nonce = offer_nonce(&conn).await?;
    let old_key_token = id_token_for(&provider, "alice", &nonce).await?;
    provider.rotate_keys().await?;
    // A token of the new key: the relay fetches the keys again (no restart).
    let nonce = offer_nonce(&conn).await?;
    let new_key_token = id_token_for(&provider, "alice", &nonce).await?;
    match ask(&conn, exchange(new_key_token)).await? {
        Frame::LoginCert(_) => {}
        other => panic!("a token of the new key was refused: {other:?}"),
    }
    // The retired key is gone from what it fetched.
    match ask(&conn, exchange(old_key_token)).await? {
        Frame::Refused(r) => assert!(
            r.message.contains("which the provider") && r.message.contains("does not publish"),
            "{}",
            r.message
        ),
        other => panic!("a token of a retired key was accepted: {other:?}"),
    }
    Ok(())
}

/// The nonce of a new `LoginOffer` on `conn`.
async fn offer_nonce(conn: &quinn::Connection) -> anyhow::Result<String> {
    match ask(conn, LoginHello.into()).await? {
        Frame::LoginOffer(offer) => Ok(offer.nonce),
        other => anyhow::bail!("offer expected, got {other:?}"),
    }
}

/// One request on a new stream of `conn`, and its answer.
async fn ask(conn: &quinn::Connection, frame: Frame) -> anyhow::Result<Frame> {
    let (mut send, recv) = conn.open_bi().await?;
    write_frame(&mut send, frame).await?;
    send.finish()?;
    Ok(FrameReader::new(recv).expect(relay_tests::GUARD).await?)
}

/// An ID token for `login` with `nonce`, through the provider's pages and
/// token endpoint, as `relay-client login` gets one.
async fn id_token_for(provider: &Provider, login: &str, nonce: &str) -> anyhow::Result<String> {
    let discovery = provider.discovery().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let redirect = format!(
        "http://127.0.0.1:{}/callback",
        listener.local_addr()?.port()
    );
    let pkce = oidc::Pkce::new();
    let mut url = reqwest::Url::parse(
        discovery["authorization_endpoint"]
            .as_str()
            .unwrap_or_default(),
    )?;
    url.query_pairs_mut()
        .append_pair("client_id", oidc::CLI_CLIENT)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", oidc::SCOPES)
        .append_pair("state", "s")
        .append_pair("nonce", nonce)
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256");
    let answer = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await?;
        let mut buf = vec![0u8; 4096];
        let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await?;
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        tokio::io::AsyncWriteExt::write_all(
            &mut tcp,
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        )
        .await?;
        anyhow::Ok(head)
    });
    let user = provider.user(login);
    guard(
        "sign in",
        provider.sign_in(url.as_str(), login, &user.password),
    )
    .await?;
    let head = guard("redirect", answer).await??;
    let target = head.split_whitespace().nth(1).unwrap_or_default();
    let back = reqwest::Url::parse(&format!("http://127.0.0.1{target}"))?;
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| anyhow::anyhow!("no code in {target}"))?;
    let response: serde_json::Value = reqwest::Client::new()
        .post(discovery["token_endpoint"].as_str().unwrap_or_default())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect),
            ("client_id", oidc::CLI_CLIENT),
            ("code_verifier", &pkce.verifier),
        ])
        .send()
        .await?
        .json()
        .await?;
    response["id_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no id_token in {response}"))
}

/// `relay-server check-oidc` reads `[login]` and says what each provider publishes.
#[tokio::test]
async fn check_oidc_says_what_the_providers_publish() -> anyhow::Result<()> {
    if oidc::provider_missing() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let provider = Provider::start(dir.path(), ProviderConfig::default()).await?;
    let world = world(&provider, "60s").await?;
    let out = tokio::process::Command::new(&world.programs.server)
        .arg("check-oidc")
        .arg("--dir")
        .arg(world.relay.dir.path())
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("provider sso (people)") && text.contains("provider ci (workload)"),
        "{text}"
    );
    assert!(text.contains("device endpoint: http://"), "{text}");
    assert!(text.contains("kid "), "{text}");
    let _: &Path = world.home.path();
    Ok(())
}

/// What the online signer mints, the relay holds to a login's rights:
/// a client certificate from it for an hour is served (its chain through
/// the signer verifies); an agent certificate from it, or a client one
/// longer-lived than any login gives, is refused with the reason; and
/// a name is revoked as any client's; revoking the signer's serial ends
/// every certificate it minted.
#[tokio::test]
async fn the_online_signer_mints_short_client_certificates_only() -> anyhow::Result<()> {
    use proto::{Identity, Role};
    use relay_net::credential::Credential;
    use relay_net::pki::{Ca, KeySource};
    relay_tests::trace_init();
    let mut relay = relay_tests::TestRelay::start("").await;
    let paths = relay.paths();
    let signer_pem = std::fs::read_to_string(paths.signer_cert())?;
    let signer = Ca::load(&signer_pem, &std::fs::read_to_string(paths.signer_key())?)?;
    let relay_name = "127.0.0.1".parse()?;
    let ca = std::fs::read_to_string(paths.ca_cert())?;
    let hour = std::time::Duration::from_secs(3600);
    let addr = relay.addr.to_string();
    let signed = |role: Role,
                  name: &str,
                  ttl: std::time::Duration|
     -> anyhow::Result<relay_client::Client> {
        let identity = Identity::new(role, name.parse()?);
        let issued = signer.issue_identity_with(
            &relay_name,
            &identity,
            &["sre".parse()?],
            None,
            ttl,
            KeySource::Generate,
        )?;
        let credential = Credential {
            relay: vec![addr.clone()],
            identity: identity.to_uri(&relay_name),
            certificate: format!("{}{signer_pem}", issued.cert_pem),
            private_key: issued.key_pem,
            ca: ca.clone(),
        };
        let loaded = Credential::parse(&credential.to_toml(), Path::new("signed.cred"), None)?;
        Ok(relay_client::Client::new(loaded).end_to_end(relay_client::direct::EndToEnd::Off))
    };

    let carol = signed(Role::Client, "carol", hour)?;
    assert!(
        guard("list", carol.list()).await.is_ok(),
        "a client certificate of the signer is served"
    );
    let agent = signed(Role::Agent, "edge", hour)?;
    let err = guard("list", agent.list())
        .await
        .expect_err("an agent certificate of the signer");
    assert!(
        err.to_string()
            .contains("may issue client certificates only"),
        "{err}"
    );
    let long = signed(Role::Client, "dave", 48 * hour)?;
    let err = guard("list", long.list())
        .await
        .expect_err("a two-day certificate of the signer");
    assert!(
        err.to_string().contains("longer than a login gives"),
        "{err}"
    );

    relay
        .revoke_serial(&relay_net::cert::serial_of_pem(&signer_pem)?)
        .await;
    // A logged-in person is revoked by name like anyone.
    relay.revoke(Role::Client, "carol").await;
    let err = guard("list", carol.list())
        .await
        .expect_err("a revoked name");
    assert!(err.to_string().contains("client/carol is revoked"), "{err}");
    let erin = signed(Role::Client, "erin", hour)?;
    let err = guard("list", erin.list())
        .await
        .expect_err("a certificate of a revoked signer");
    assert!(
        err.to_string().contains("online signer") && err.to_string().contains("is revoked"),
        "{err}"
    );
    relay.shutdown().await;
    Ok(())
}
