//! The browser shell end to end, in a real headless Chromium
//! (`relay_tests::browser`) against the real programs and a real OpenID
//! provider (`relay_tests::oidc`): a person signs in at the provider from
//! the relay's page, sees the agents the policy grants, opens a shell,
//! types, resizes, ends it and sees its exit status; a shell survives the
//! page going away and is shown again, output included, when the page
//! comes back; an agent the policy does not grant is refused. Screenshots
//! of each step land in `target/web-shell-screenshots/` (not committed).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use relay_tests::browser::{self, Browser};
use relay_tests::launch::{self, RelayProcess};
use relay_tests::oidc::{self, Provider, ProviderConfig};
use serde_json::Value;

/// The policy: `sre` may open shells on `edge`; nobody may on `other`.
const POLICY: &str = "[[allow]]\ngroup = \"sre\"\nagent = \"edge\"\nshell = true\n\
                      [[allow]]\ngroup = \"sre\"\nagent = \"other\"\ntargets = [\"db\"]\n";

/// How long the page may take for anything (a shell's start, a redraw).
const WAIT: Duration = Duration::from_secs(20);

/// A relay with `[login]` and `[web]`, its provider knowing the page's
/// redirect URI, agents `edge` (shells, recorded) and `other`, a browser.
struct World {
    relay: RelayProcess,
    provider: Provider,
    browser: Browser,
    /// `https://127.0.0.1:PORT`, the page.
    page: String,
    records: tempfile::TempDir,
    _agents: Vec<launch::Process>,
    _provider_dir: tempfile::TempDir,
}

async fn world(test: &str) -> anyhow::Result<World> {
    let programs = relay_tests::programs!();
    let provider_dir = tempfile::tempdir()?;
    let mut provider = Provider::start(provider_dir.path(), ProviderConfig::default()).await?;
    let dir = launch::relay_dir(&programs, POLICY).await?;
    std::fs::write(
        dir.path().join("relay.toml"),
        format!(
            "[login]\n[[login.provider]]\nname = \"sso\"\nissuer = \"{issuer}\"\n\
             client-id = \"{cli}\"\nweb-client-id = \"{web}\"\n\
             scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n\
             groups-claim = \"groups\"\nname-domain = \"example.com\"\n\n[web]\nresume = \"2m\"\n",
            issuer = provider.issuer(),
            cli = oidc::CLI_CLIENT,
            web = oidc::WEB_CLIENT,
        ),
    )?;
    let relay = RelayProcess::run_in(&programs, dir, "127.0.0.1:0", &[]).await?;
    let page = format!("https://127.0.0.1:{}", relay.addr.port());
    let config = ProviderConfig {
        web_redirect_uris: vec![format!("{page}/login/callback")],
        ..provider.config().clone()
    };
    provider.reconfigure(config).await?;
    let records = tempfile::tempdir()?;
    let edge = relay.issue("agent", "edge").await?;
    let other = relay.issue("agent", "other").await?;
    let shell_args = |record: bool| {
        let mut args = vec!["--allow-shell".to_owned(), "--shell=/bin/sh".to_owned()];
        if record {
            args.push(format!("--record-dir={}", records.path().display()));
        }
        args
    };
    let agents = vec![
        launch::agent(&programs, &edge, &shell_args(true)).await?,
        launch::agent(&programs, &other, &shell_args(false)).await?,
    ];
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/web-shell-screenshots")
        .join(test);
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots)?;
    let browser = Browser::start(&shots).await?;
    Ok(World {
        relay,
        provider,
        browser,
        page,
        records,
        _agents: agents,
        _provider_dir: provider_dir,
    })
}

impl World {
    /// Opens the page and signs in as `login` at the provider's own pages.
    async fn sign_in(&self, login: &str) -> anyhow::Result<()> {
        let b = &self.browser;
        b.goto(&self.page).await?;
        b.wait_for("a.provider[data-provider=\"sso\"]", WAIT)
            .await?;
        b.screenshot("signed-out").await?;
        b.click("a.provider[data-provider=\"sso\"]").await?;
        b.wait_for("input[name=\"login\"]", WAIT).await?;
        b.fill("input[name=\"login\"]", login).await?;
        let password = self.provider.user(login).password.clone();
        b.fill("input[name=\"password\"]", &password).await?;
        b.click("form#login button[type=\"submit\"]").await?;
        // The provider asks for consent the first time.
        let consent_or_page = wait_any(b, &["form#consent button", "#who .identity"]).await?;
        if consent_or_page == 0 {
            b.click("form#consent button").await?;
        }
        b.wait_for_text("#who", &format!("client/{login}"), WAIT)
            .await?;
        Ok(())
    }

    /// Clicks "Open shell" on `agent` and waits until it is connected.
    async fn open_shell(&self, agent: &str) -> anyhow::Result<()> {
        let button = format!("button.open-shell[data-agent=\"{agent}\"]");
        self.browser.wait_for(&button, WAIT).await?;
        self.browser.click(&button).await?;
        self.browser
            .wait_for_text("#status", &format!("connected to {agent}"), WAIT)
            .await?;
        Ok(())
    }

    /// Types into the terminal (`\n` is Enter).
    async fn type_line(&self, keys: &str) -> anyhow::Result<()> {
        self.browser.type_keys(".xterm-helper-textarea", keys).await
    }

    /// Waits until the terminal's text (every line of its buffer) holds
    /// `needle`; gives that text.
    async fn terminal_shows(&self, needle: &str) -> anyhow::Result<String> {
        let shown = eventually(|| async {
            let text = terminal_text(&self.browser).await?;
            Ok(text.contains(needle).then_some(text))
        })
        .await;
        match shown {
            Ok(text) => Ok(text),
            Err(e) => {
                let text = terminal_text(&self.browser).await?;
                anyhow::bail!("{e}: the terminal did not show {needle:?}; it shows:\n{text}")
            }
        }
    }
}

/// Asks `check` every 50 ms until it gives something, for at most [`WAIT`].
async fn eventually<T, F, Fut>(mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + WAIT;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if let Some(found) = check().await? {
            return Ok(found);
        }
        anyhow::ensure!(Instant::now() < deadline, "not within {WAIT:?}");
    }
}

/// Every line of the terminal's buffer (scrollback included), trimmed.
async fn terminal_text(b: &Browser) -> anyhow::Result<String> {
    let script = "const buf = window.relayShell.term.buffer.active; const lines = [];\
                  for (let i = 0; i < buf.length; i++) { lines.push(buf.getLine(i).translateToString(true)); }\
                  return lines.join('\\n');";
    Ok(b.execute(script, vec![])
        .await?
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Waits until one of `selectors` matches; gives its index.
async fn wait_any(b: &Browser, selectors: &[&str]) -> anyhow::Result<usize> {
    eventually(|| async {
        for (i, css) in selectors.iter().enumerate() {
            if b.find(css).await.is_ok() {
                return Ok(Some(i));
            }
        }
        Ok(None)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: none of {selectors:?} appeared"))
}

/// A person signs in at the provider from the page, sees `edge`, opens a
/// shell, types `echo hello-$((6*7))` and reads `hello-42`, makes the
/// window smaller and `stty size` says the new size, ends the shell with
/// `exit 3` and the page says so; the relay's audit has the sign-in and
/// the shell `via: browser` under her name, and the agent recorded it.
#[tokio::test]
async fn a_person_signs_in_and_works_in_a_shell_in_the_browser() -> anyhow::Result<()> {
    relay_tests::trace_init();
    if oidc::provider_missing() || browser::skip_without_browser() {
        return Ok(());
    }
    let w = world("shell").await?;
    w.sign_in("alice").await?;
    w.browser.screenshot("signed-in").await?;
    w.open_shell("edge").await?;
    w.type_line("echo hello-$((6*7))\n").await?;
    w.terminal_shows("\nhello-42").await?;
    w.browser.screenshot("hello-42").await?;

    let size = "const t = window.relayShell.term; return `${t.rows} ${t.cols}`;";
    let wide = w.browser.execute(size, vec![]).await?;
    w.browser.set_window_size(900, 600).await?;
    // The page refits on the next frame: wait until xterm has the new size.
    let shown = eventually(|| async {
        let now = w.browser.execute(size, vec![]).await?;
        Ok((now != wide).then(|| now.as_str().unwrap_or_default().to_owned()))
    })
    .await?;
    w.type_line("stty size\n").await?;
    w.terminal_shows(&format!("\n{shown}")).await?;
    w.browser.screenshot("resized").await?;

    w.type_line("exit 3\n").await?;
    w.browser
        .wait_for_text("#status", "session ended: exited with status 3", WAIT)
        .await?;
    w.browser.screenshot("exited").await?;

    let events = w.relay.audit_events();
    let by_browser = |event: &str| {
        events
            .iter()
            .any(|e| e["event"] == event && e["via"] == "browser" && e["peer"] == "client/alice")
    };
    assert!(by_browser("login"), "no browser login in {events:#?}");
    assert!(by_browser("open"), "no browser open in {events:#?}");
    let close = events
        .iter()
        .find(|e| e["event"] == "close" && e["via"] == "browser")
        .unwrap_or(&Value::Null);
    assert_eq!(close["reason"], "exit code 3", "{events:#?}");
    let recorded = std::fs::read_dir(w.records.path())?.count();
    assert_eq!(recorded, 1, "the agent recorded the shell");
    Ok(())
}

/// A counter runs in a shell; the page goes away (another address is
/// loaded, its WebSocket closes) while the counter goes on; the page comes
/// back and re-attaches to the same shell: the counter kept counting, and
/// every line it printed is shown exactly once.
#[tokio::test]
async fn a_shell_keeps_running_while_the_page_is_away_and_comes_back_whole() -> anyhow::Result<()> {
    relay_tests::trace_init();
    if oidc::provider_missing() || browser::skip_without_browser() {
        return Ok(());
    }
    let w = world("reattach").await?;
    w.sign_in("alice").await?;
    w.open_shell("edge").await?;
    let count = w.records.path().join("count");
    w.type_line(&format!(
        "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo tick-$i; echo $i > {}; sleep 0.1; done\n",
        count.display()
    ))
    .await?;
    w.terminal_shows("\ntick-3\n").await?;
    w.browser.goto("about:blank").await?;
    let left_at = read_count(&count);
    // While the page is away, the counter goes on: 20 more ticks.
    eventually(|| async { Ok((read_count(&count) >= left_at + 20).then_some(())) })
        .await
        .map_err(|e| anyhow::anyhow!("{e}: the counter stopped while the page was away"))?;
    w.browser.goto(&w.page).await?;
    w.browser
        .wait_for_text("#status", "connected to edge", WAIT)
        .await?;
    let target = left_at + 25;
    let text = w.terminal_shows(&format!("\ntick-{target}\n")).await?;
    w.browser.screenshot("re-attached").await?;
    for n in 1..=target {
        let line = format!("\ntick-{n}\n");
        assert_eq!(
            text.matches(&line).count(),
            1,
            "tick-{n} is not shown exactly once:\n{text}"
        );
    }
    Ok(())
}

fn read_count(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// `other` is listed (alice may reach its `db`) but the policy grants no
/// shell there: it has no "Open shell" button, and a link that asks for
/// one anyway (`#shell=other`) shows the relay's refusal, naming why.
#[tokio::test]
async fn a_shell_the_policy_does_not_grant_is_refused_in_the_page() -> anyhow::Result<()> {
    relay_tests::trace_init();
    if oidc::provider_missing() || browser::skip_without_browser() {
        return Ok(());
    }
    let w = world("refused").await?;
    w.sign_in("alice").await?;
    w.browser
        .wait_for("li.agent[data-agent=\"other\"]", WAIT)
        .await?;
    assert!(
        w.browser
            .find("button.open-shell[data-agent=\"other\"]")
            .await
            .is_err(),
        "other offers a shell the policy does not grant"
    );
    w.browser.goto(&format!("{}/#shell=other", w.page)).await?;
    let status = w.browser.wait_for_text("#status", "refused", WAIT).await?;
    assert!(status.contains("may not open a shell on other"), "{status}");
    w.browser.screenshot("refused").await?;
    let refused = w
        .relay
        .audit_events()
        .into_iter()
        .any(|e| e["event"] == "refused" && e["via"] == "browser" && e["agent"] == "other");
    assert!(refused, "the refusal is not in the audit log");
    Ok(())
}
