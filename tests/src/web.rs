//! The browser shell's test world: a relay with `[login]` and `[web]`, a
//! real OpenID provider that knows the page's redirect URI, agents, and a
//! headless Chromium on the page, with the steps a person takes there
//! (sign in, open a shell, type, read the terminal). Used by the
//! `web_shell` scenarios and by the `web-echo` benchmark.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::browser::Browser;
use crate::launch::{self, Programs, RelayProcess};
use crate::oidc::{self, Provider, ProviderConfig};

/// The policy: `sre` may open shells on `edge` and play its recordings,
/// `dev` may watch its shells;
/// nobody may open one on `other`.
pub const POLICY: &str =
    "[[allow]]\ngroup = \"sre\"\nagent = \"edge\"\nshell = true\nrecordings = true\n\
                      [[allow]]\ngroup = \"dev\"\nagent = \"edge\"\nwatch = true\n\
                      [[allow]]\ngroup = \"sre\"\nagent = \"other\"\ntargets = [\"db\"]\n";

/// How long the page may take for anything (a shell's start, a redraw).
pub const WAIT: Duration = Duration::from_secs(30);

/// A relay with `[login]` and `[web]`, its provider knowing the page's
/// redirect URI, agents `edge` (shells, recorded) and `other`, a browser.
pub struct World {
    /// The relay (its audit log, its directory).
    pub relay: RelayProcess,
    /// The OpenID provider (users `alice`, group `sre`, and `bob`).
    pub provider: Provider,
    /// The browser.
    pub browser: Browser,
    /// `https://127.0.0.1:PORT`, the page.
    pub page: String,
    /// `edge`'s recordings folder.
    pub records: tempfile::TempDir,
    /// Where screenshots go.
    screenshots: PathBuf,
    programs: Programs,
    _agents: Vec<launch::Process>,
    _provider_dir: tempfile::TempDir,
}

/// Starts the world; screenshots go to
/// `target/web-shell-screenshots/TEST/`.
///
/// # Errors
/// If a program or the browser does not start.
pub async fn world(programs: &Programs, test: &str) -> anyhow::Result<World> {
    let provider_dir = tempfile::tempdir()?;
    let mut provider = Provider::start(provider_dir.path(), ProviderConfig::default()).await?;
    let dir = launch::relay_dir(programs, POLICY).await?;
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
    let relay = RelayProcess::run_in(programs, dir, "127.0.0.1:0", &[]).await?;
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
        launch::agent(programs, &edge, &shell_args(true)).await?,
        launch::agent(programs, &other, &shell_args(false)).await?,
    ];
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/web-shell-screenshots")
        .join(test);
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots)?;
    let browser = Browser::start(&shots).await?;
    let screenshots = shots;
    Ok(World {
        relay,
        provider,
        browser,
        page,
        records,
        screenshots,
        programs: programs.clone(),
        _agents: agents,
        _provider_dir: provider_dir,
    })
}

impl World {
    /// Opens the page and signs in as `login` at the provider's own pages.
    pub async fn sign_in(&self, login: &str) -> anyhow::Result<()> {
        self.sign_in_with(&self.browser, login).await
    }

    /// As [`World::sign_in`], in browser `b` (another person's, say).
    pub async fn sign_in_with(&self, b: &Browser, login: &str) -> anyhow::Result<()> {
        b.goto(&self.page).await?;
        b.wait_for("a.provider[data-provider=\"sso\"]", WAIT)
            .await?;
        b.screenshot("signed-out").await?;
        b.click("a.provider[data-provider=\"sso\"]").await?;
        // The provider asks for the password (unless this browser is
        // signed in there already), then for consent the first time.
        let steps = [
            "input[name=\"login\"]",
            "form#consent button",
            "#who .identity",
        ];
        if wait_any(b, &steps).await? == 0 {
            b.fill("input[name=\"login\"]", login).await?;
            let password = self.provider.user(login).password.clone();
            b.fill("input[name=\"password\"]", &password).await?;
            b.click("form#login button[type=\"submit\"]").await?;
        }
        if wait_any(b, &steps[1..]).await? == 0 {
            b.click("form#consent button").await?;
        }
        b.wait_for_text("#who", &format!("client/{login}"), WAIT)
            .await?;
        Ok(())
    }

    /// Clicks "Open shell" on `agent` and waits until it is connected.
    pub async fn open_shell(&self, agent: &str) -> anyhow::Result<()> {
        let button = format!("button.open-shell[data-agent=\"{agent}\"]");
        self.browser.wait_for(&button, WAIT).await?;
        self.browser.click(&button).await?;
        self.browser
            .wait_for_text("#status", &format!("connected to {agent}"), WAIT)
            .await?;
        Ok(())
    }

    /// Types into the terminal (`\n` is Enter).
    pub async fn type_line(&self, keys: &str) -> anyhow::Result<()> {
        self.browser.type_keys(".xterm-helper-textarea", keys).await
    }

    /// Waits until the terminal's text (every line of its buffer) holds
    /// `needle`; gives that text.
    pub async fn terminal_shows(&self, needle: &str) -> anyhow::Result<String> {
        terminal_shows(&self.browser, needle).await
    }

    /// `relay-server ARGS... --dir DIR` on the relay's directory (say a
    /// revocation), to its end.
    ///
    /// # Errors
    /// If it fails.
    pub async fn server(&self, args: &[&str]) -> anyhow::Result<()> {
        let status = tokio::process::Command::new(&self.programs.server)
            .args(args)
            .arg("--dir")
            .arg(self.relay.dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "relay-server {args:?}: {status}");
        Ok(())
    }

    /// Another browser on the page (another person's), its screenshots
    /// beside this one's, in `name/`.
    ///
    /// # Errors
    /// If it does not start.
    pub async fn another_browser(&self, name: &str) -> anyhow::Result<Browser> {
        let shots = self.screenshots.join(name);
        std::fs::create_dir_all(&shots)?;
        Browser::start(&shots).await
    }
}

/// Waits until the terminal's text in `b` holds `needle`; gives that text.
///
/// # Errors
/// If it does not within [`WAIT`]; the error shows the terminal.
pub async fn terminal_shows(b: &Browser, needle: &str) -> anyhow::Result<String> {
    let shown = eventually(|| async {
        let text = terminal_text(b).await?;
        Ok(text.contains(needle).then_some(text))
    })
    .await;
    match shown {
        Ok(text) => Ok(text),
        Err(e) => {
            let text = terminal_text(b).await?;
            anyhow::bail!("{e}: the terminal did not show {needle:?}; it shows:\n{text}")
        }
    }
}

/// Asks `check` every 50 ms until it gives something, for at most [`WAIT`].
pub async fn eventually<T, F, Fut>(mut check: F) -> anyhow::Result<T>
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
pub async fn terminal_text(b: &Browser) -> anyhow::Result<String> {
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
pub async fn wait_any(b: &Browser, selectors: &[&str]) -> anyhow::Result<usize> {
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
