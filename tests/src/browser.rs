//! A real headless Chromium for the web shell's end-to-end tests, driven
//! over WebDriver: Debian's `chromedriver` (package `chromium-driver`) runs
//! as the test's own child process on 127.0.0.1, and
//! [fantoccini](https://docs.rs/fantoccini) talks to it over plain HTTP on
//! loopback (so fantoccini is built without any TLS stack).
//!
//! [`Browser::start`] starts chromedriver on a port it picks itself
//! (`--port=0`, read back from the line it prints), waits for its
//! `/status` to say ready (polled, under [`GUARD`]), and opens a session
//! with headless Chromium. chromedriver runs in a process group of its
//! own, Chromium inside it: dropping the [`Browser`] kills the group, so
//! a failing test leaves no browser behind.
//!
//! Chromium sends nothing off the machine (the project's rule: tests talk
//! to loopback only). Its flags ([`chromium_args`]) turn off its
//! background services (updates, sync, safe browsing, translate, media
//! router, optimisation hints, ...), and, as a backstop, its host
//! resolver maps every name but `127.0.0.1` and `localhost` to "not
//! found", so no name ever reaches the machine's resolver and no
//! connection is made to a host by name: tests load `http(s)://127.0.0.1`
//! URLs only. Chromium writes a NetLog of every socket it opens;
//! [`Browser::quit`] reads it and fails if any connection, datagram or
//! DNS query went to an address off the machine ([`NetLog::off_machine`]).
//!
//! [`browser_missing`] says why no browser can run here;
//! [`skip_without_browser`] turns that into a skip, or a failure under CI
//! (`.ci/run` installs `chromium` and `chromium-driver`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::process::Command;

use crate::launch::{Process, Read};
use crate::GUARD;

pub use fantoccini::elements::Element;
/// WebDriver's special keys (`Key::Enter`, `Key::Tab`, `Key::Escape`,
/// ...): each derefs to the one-character string to put in
/// [`Browser::type_keys`]' `keys`.
pub use fantoccini::key::Key;

/// Debian's Chromium itself. `/usr/bin/chromium` is a shell wrapper that
/// first sources `/etc/chromium.d` (Google API keys, extensions to load,
/// GPU flags): the tests run the binary without it.
const DEBIAN_CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// What chromedriver prints once it listens, then the port and a period.
const DRIVER_LISTENING: &str = "ChromeDriver was started successfully on port ";

/// How often the wait helpers look again.
const POLL: Duration = Duration::from_millis(50);

/// The window size a [`Browser`] starts with.
pub const WINDOW: (u32, u32) = (1200, 800);

/// Why a browser test cannot run here, if it cannot: no `chromedriver` on
/// PATH, no Chromium (`/usr/lib/chromium/chromium`, or `chromium` on
/// PATH), one of them does not run, or their major versions differ
/// (chromedriver drives only its own Chromium).
pub fn browser_missing() -> Option<String> {
    let Some(driver) = on_path("chromedriver") else {
        return Some("chromedriver is not on PATH (Debian package chromium-driver)".to_owned());
    };
    let Some(chromium) = chromium_binary() else {
        return Some(format!(
            "no Chromium: neither {DEBIAN_CHROMIUM} nor chromium on PATH (Debian package chromium)"
        ));
    };
    let driver_version = match version_of(&driver) {
        Ok(v) => v,
        Err(e) => return Some(format!("{e:#}")),
    };
    let chromium_version = match version_of(&chromium) {
        Ok(v) => v,
        Err(e) => return Some(format!("{e:#}")),
    };
    if major(&driver_version) != major(&chromium_version) {
        return Some(format!(
            "{driver_version:?} cannot drive {chromium_version:?}: their major versions differ"
        ));
    }
    None
}

/// Whether a test must skip because no browser can run here: it says
/// SKIPPED, except under CI (`CI` set), where it fails with the reason.
///
/// # Panics
/// Under CI, when no browser can run.
pub fn skip_without_browser() -> bool {
    let Some(why) = browser_missing() else {
        return false;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "the browser tests cannot run: {why}; install Debian's chromium and \
         chromium-driver (.ci/run does)"
    );
    eprintln!("SKIPPED: the browser tests cannot run: {why}");
    true
}

/// The Chromium binary chromedriver is to start.
fn chromium_binary() -> Option<PathBuf> {
    let debian = Path::new(DEBIAN_CHROMIUM);
    if is_executable(debian) {
        return Some(debian.to_owned());
    }
    on_path("chromium")
}

/// `name` as found on PATH, if it is an executable file there.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first line of `program --version`.
fn version_of(program: &Path) -> anyhow::Result<String> {
    let out = std::process::Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} --version", program.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "`{} --version` failed ({})",
        program.display(),
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// The major version in `ChromeDriver 156.0.8078.129 (...)` or `Chromium 156.0...`.
fn major(version: &str) -> Option<&str> {
    version
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .and_then(|w| w.split('.').next())
}

/// Chromium's command line: headless, no sandbox (CI runs as root), any
/// certificate accepted (the relay's comes from its own private CA), a
/// fresh profile in `profile`, its NetLog to `net_log`, and nothing that
/// sends a packet off the machine.
pub fn chromium_args(profile: &Path, net_log: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--ignore-certificate-errors",
        "--mute-audio",
        "--password-store=basic",
        "--no-first-run",
        "--no-default-browser-check",
        // Loopback only: no proxy (nor one from the environment), no
        // background services (component and extension updates, safe
        // browsing lists, sync, UMA, domain reliability reports, pings).
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-component-extensions-with-background-pages",
        "--disable-client-side-phishing-detection",
        "--safebrowsing-disable-auto-update",
        "--disable-domain-reliability",
        "--disable-breakpad",
        "--metrics-recording-only",
        "--no-pings",
        "--dns-prefetch-disable",
        // The services the switches above leave on.
        "--disable-features=Translate,OptimizationHints,OptimizationHintsFetching,\
         OptimizationGuideModelDownloading,MediaRouter,DialMediaRouteProvider,\
         GlobalMediaControls,InterestFeedContentSuggestions,\
         CertificateTransparencyComponentUpdater,AutofillServerCommunication,\
         NetworkTimeServiceQuerying,PrivacySandboxSettings4",
        // The backstop: no name is resolved, by the machine's resolver or
        // Chromium's own DNS client; a request to any host by name fails
        // with ERR_NAME_NOT_RESOLVED before a packet is sent.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push(format!("--window-size={},{}", WINDOW.0, WINDOW.1));
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push(format!("--log-net-log={}", net_log.display()));
    args
}

/// A headless Chromium under chromedriver, with a WebDriver session open.
/// Dropping it kills chromedriver and the browser (SIGKILL to their
/// process group); [`Browser::quit`] ends the session cleanly first and
/// checks the NetLog.
pub struct Browser {
    client: Client,
    /// Killed first (on drop), then chromedriver's own handle.
    _group: Group,
    driver: Process,
    screenshots: PathBuf,
    shots: AtomicUsize,
    net_log: PathBuf,
    /// The profile and the NetLog; removed last.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("driver", &self.driver)
            .field("screenshots", &self.screenshots)
            .field("profile", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile;
    /// [`Browser::screenshot`] writes into `screenshots` (created if
    /// need be).
    ///
    /// # Errors
    /// If [`browser_missing`] says no browser can run here, or
    /// chromedriver or the session does not come up within [`GUARD`].
    pub async fn start(screenshots: &Path) -> anyhow::Result<Browser> {
        if let Some(why) = browser_missing() {
            bail!("no browser: {why}");
        }
        let driver_bin = on_path("chromedriver").context("chromedriver is not on PATH")?;
        let chromium = chromium_binary().context("no Chromium")?;
        std::fs::create_dir_all(screenshots)
            .with_context(|| format!("create {}", screenshots.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("relay-browser-")
            .tempdir()
            .context("browser temporary directory")?;
        let profile = dir.path().join("profile");
        let net_log = dir.path().join("netlog.json");

        // Its own process group, so that Chromium and its helpers (which
        // chromedriver starts) die with it.
        let mut driver = Process::spawn(
            "chromedriver",
            Command::new(&driver_bin)
                .arg("--port=0")
                .env_remove("http_proxy")
                .env_remove("https_proxy")
                .env_remove("HTTP_PROXY")
                .env_remove("HTTPS_PROXY")
                .env_remove("all_proxy")
                .env_remove("ALL_PROXY")
                .process_group(0),
            Read::Stdout,
        )?;
        // From here on, a failure kills Chromium too, not just chromedriver.
        let group = Group(
            driver
                .pid()
                .ok()
                .and_then(|pid| i32::try_from(pid).ok())
                .and_then(rustix::process::Pid::from_raw),
        );
        let port = driver.after(DRIVER_LISTENING).await?;
        // chromedriver says little more on stdout; drain it unread.
        driver.forget_lines();
        let port: u16 = port
            .trim()
            .trim_end_matches('.')
            .parse()
            .with_context(|| format!("chromedriver's port in {port:?}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_ready(addr).await?;

        let mut caps = Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": chromium_args(&profile, &net_log),
            }),
        );
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.enforce_http(true);
        let webdriver = format!("http://{addr}");
        let client = tokio::time::timeout(
            GUARD,
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&webdriver),
        )
        .await
        .with_context(|| format!("no WebDriver session from {webdriver} within {GUARD:?}"))?
        .with_context(|| format!("WebDriver session with headless Chromium at {webdriver}"))?;

        Ok(Browser {
            client,
            _group: group,
            driver,
            screenshots: screenshots.to_owned(),
            shots: AtomicUsize::new(0),
            net_log,
            dir,
        })
    }

    /// The WebDriver client, for what the helpers here do not do.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Where Chromium writes its NetLog (complete once it has quit).
    pub fn net_log(&self) -> &Path {
        &self.net_log
    }

    /// Loads `url` (`http(s)://127.0.0.1:PORT/...`: names do not resolve)
    /// and waits for the page's load event.
    ///
    /// # Errors
    /// If the navigation fails or takes longer than [`GUARD`].
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        within(GUARD, || format!("load {url}"), self.client.goto(url)).await
    }

    /// The URL of the current page.
    ///
    /// # Errors
    /// If chromedriver fails or does not answer within [`GUARD`].
    pub async fn current_url(&self) -> anyhow::Result<String> {
        let url = within(GUARD, || "current URL".into(), self.client.current_url()).await?;
        Ok(url.to_string())
    }

    /// The element `css` now (no waiting).
    ///
    /// # Errors
    /// If there is none.
    pub async fn find(&self, css: &str) -> anyhow::Result<Element> {
        within(
            GUARD,
            || format!("find {css}"),
            self.client.find(Locator::Css(css)),
        )
        .await
    }

    /// Clicks the element `css` (found without waiting: [`Browser::wait_for`]
    /// it first if it comes later).
    ///
    /// # Errors
    /// If there is no such element or it cannot be clicked (hidden, covered).
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        within(GUARD, || format!("click {css}"), element.click()).await
    }

    /// Clears the input `css` and types `text` into it.
    ///
    /// # Errors
    /// If there is no such element or it takes no input.
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        within(GUARD, || format!("clear {css}"), element.clear()).await?;
        within(
            GUARD,
            || format!("type into {css}"),
            element.send_keys(text),
        )
        .await
    }

    /// Sends `keys` to the element `css` as key presses (it gets the
    /// focus first), e.g. to xterm.js' hidden `.xterm-helper-textarea`.
    /// A `\n` in `keys` is the Enter key; other special keys are
    /// [`Key`]s: `&Key::Tab`, or `&(Key::Control + "c")` for Ctrl-C (a
    /// modifier stays down until the end of `keys`).
    ///
    /// # Errors
    /// If there is no such element or it cannot take the focus.
    pub async fn type_keys(&self, css: &str, keys: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        let keys = keys.replace('\n', &Key::Enter);
        within(
            GUARD,
            || format!("send keys to {css}"),
            element.send_keys(&keys),
        )
        .await
    }

    /// Waits until an element `css` exists (polled every 50 ms), and gives it.
    ///
    /// # Errors
    /// If none appears within `timeout`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> anyhow::Result<Element> {
        within(
            timeout + GUARD,
            || format!("no element {css} within {timeout:?}"),
            self.client
                .wait()
                .at_most(timeout)
                .every(POLL)
                .for_element(Locator::Css(css)),
        )
        .await
    }

    /// The text of the element `css` as rendered (`innerText`).
    ///
    /// # Errors
    /// If there is no such element.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let element = self.find(css).await?;
        within(GUARD, || format!("text of {css}"), element.text()).await
    }

    /// Waits until the text of the element `css` contains `needle`
    /// (looked at every 50 ms; the element may come and go meanwhile), and
    /// gives that text.
    ///
    /// # Errors
    /// If it does not within `timeout`; the error tells the last text seen
    /// (or why there was none).
    pub async fn wait_for_text(
        &self,
        css: &str,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let last = match self.text(css).await {
                Ok(text) if text.contains(needle) => return Ok(text),
                Ok(text) => format!("{text:?}"),
                Err(e) => format!("(none: {e:#})"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "the text of {css} did not contain {needle:?} within {timeout:?}; \
                     last seen: {last}"
                );
            }
        }
    }

    /// Runs `js` in the page as a function body (`return ...` gives the
    /// value; `arguments[0]`... are `args`), and gives its value.
    ///
    /// # Errors
    /// If the script throws, or does not end within [`GUARD`].
    pub async fn execute(&self, js: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        within(
            GUARD,
            || format!("run script {js:?}"),
            self.client.execute(js, args),
        )
        .await
    }

    /// Resizes the window: its outer size, as `--window-size`. Headless
    /// Chromium draws no browser UI but keeps room for one: the page's
    /// viewport is smaller (800x600 gives an 800x457 viewport with
    /// Chromium 156); [`Browser::set_viewport_size`] sizes the viewport.
    ///
    /// # Errors
    /// If chromedriver fails.
    pub async fn set_window_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        within(
            GUARD,
            || format!("resize the window to {width}x{height}"),
            self.client.set_window_size(width, height),
        )
        .await
    }

    /// Resizes the window so that the page's viewport (`innerWidth` x
    /// `innerHeight`) is `width` x `height`.
    ///
    /// # Errors
    /// If chromedriver fails, or the viewport does not come out at that size.
    pub async fn set_viewport_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        let script = "return [outerWidth - innerWidth, outerHeight - innerHeight];";
        let frame = self.execute(script, Vec::new()).await?;
        let extra = |i: usize| {
            frame[i]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .with_context(|| format!("window frame {frame}"))
        };
        self.set_window_size(width + extra(0)?, height + extra(1)?)
            .await?;
        let viewport = self
            .execute("return [innerWidth, innerHeight];", Vec::new())
            .await?;
        anyhow::ensure!(
            viewport == json!([width, height]),
            "asked for a {width}x{height} viewport, got {viewport}"
        );
        Ok(())
    }

    /// Saves a PNG of the viewport as `NN-name.png` in the screenshots
    /// directory (NN counts this browser's screenshots from 01, so they
    /// list in the order taken); gives its path. Characters of `name`
    /// other than letters, digits, `-` and `_` become `-`.
    ///
    /// # Errors
    /// If the screenshot cannot be taken or written.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = within(
            GUARD,
            || format!("screenshot {name}"),
            self.client.screenshot(),
        )
        .await?;
        let n = self.shots.fetch_add(1, Ordering::Relaxed) + 1;
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let path = self.screenshots.join(format!("{n:02}-{name}.png"));
        tokio::fs::write(&path, png)
            .await
            .with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// Opens a new tab and switches to it.
    ///
    /// # Errors
    /// If chromedriver fails.
    pub async fn new_tab(&self) -> anyhow::Result<()> {
        let tab = within(GUARD, || "open a tab".into(), self.client.new_window(true)).await?;
        within(
            GUARD,
            || "switch to the new tab".into(),
            self.client.switch_to_window(tab.handle),
        )
        .await
    }

    /// Closes the current tab or window and switches to the last one
    /// left, if any.
    ///
    /// # Errors
    /// If chromedriver fails.
    pub async fn close_window(&self) -> anyhow::Result<()> {
        within(
            GUARD,
            || "close the window".into(),
            self.client.close_window(),
        )
        .await?;
        let windows = within(GUARD, || "list windows".into(), self.client.windows()).await?;
        if let Some(last) = windows.last() {
            within(
                GUARD,
                || "switch to the last window".into(),
                self.client.switch_to_window(last.clone()),
            )
            .await?;
        }
        Ok(())
    }

    /// Ends the session (chromedriver closes Chromium, which completes its
    /// NetLog), then checks the NetLog: the browser must have sent nothing
    /// off the machine.
    ///
    /// # Errors
    /// If the session does not end cleanly within [`GUARD`], the NetLog
    /// cannot be read, or it shows traffic to an address off the machine
    /// (the error lists it; the NetLog is then kept in the screenshots
    /// directory as `netlog.json`). On success, the NetLog, read.
    pub async fn quit(self) -> anyhow::Result<NetLog> {
        within(
            GUARD,
            || "end the WebDriver session".into(),
            self.client.clone().close(),
        )
        .await?;
        let log = NetLog::read(&self.net_log)?;
        let off = log.off_machine();
        if !off.is_empty() {
            let kept = self.screenshots.join("netlog.json");
            let _ = std::fs::copy(&self.net_log, &kept);
            bail!(
                "Chromium sent traffic off the machine: {}; its NetLog: {}",
                off.join(", "),
                kept.display()
            );
        }
        Ok(log)
    }
}

/// chromedriver's process group (its pid, as it was started with
/// `process_group(0)`): Chromium and its helpers run in it too. Dropping
/// it kills them all.
#[derive(Debug)]
struct Group(Option<rustix::process::Pid>);

impl Drop for Group {
    fn drop(&mut self) {
        // Nothing to do if they are all gone already (ESRCH).
        if let Some(group) = self.0 {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

/// Awaits `f` (a chromedriver command) for at most `limit`.
async fn within<T, E>(
    limit: Duration,
    what: impl Fn() -> String,
    f: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(limit, f).await {
        Ok(result) => result.with_context(what),
        Err(_) => bail!("{}: no answer from chromedriver within {limit:?}", what()),
    }
}

/// Polls chromedriver's `/status` until it says ready, for at most [`GUARD`].
async fn wait_ready(addr: SocketAddr) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .context("HTTP client")?;
    let url = format!("http://{addr}/status");
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = String::from("no answer yet");
    let ready = tokio::time::timeout(GUARD, async {
        loop {
            tick.tick().await;
            match http.get(&url).send().await {
                Ok(response) => match response.json::<Value>().await {
                    Ok(status) if status["value"]["ready"] == json!(true) => return,
                    Ok(status) => last = status.to_string(),
                    Err(e) => last = format!("{e:#}"),
                },
                Err(e) => last = format!("{e:#}"),
            }
        }
    })
    .await;
    ready.map_err(|_| anyhow::anyhow!("chromedriver at {url} not ready within {GUARD:?}: {last}"))
}

/// Chromium's NetLog (`--log-net-log`): one JSON event a line, so a log
/// cut short by a killed browser still reads up to its last whole line.
#[derive(Debug)]
pub struct NetLog {
    /// Event type names by number (the log's `constants.logEventTypes`).
    types: std::collections::HashMap<u64, String>,
    events: Vec<Value>,
}

impl NetLog {
    /// Reads the NetLog at `path`.
    ///
    /// # Errors
    /// If it cannot be read or has no constants line.
    pub fn read(path: &Path) -> anyhow::Result<NetLog> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the NetLog {}", path.display()))?;
        let mut lines = text.lines();
        let first = lines.next().unwrap_or_default();
        let constants: Value = first
            .strip_prefix("{\"constants\":")
            .map(|c| c.trim_end().trim_end_matches(','))
            .and_then(|c| serde_json::from_str(c).ok())
            .with_context(|| format!("{}: no constants line", path.display()))?;
        let types = constants["logEventTypes"]
            .as_object()
            .with_context(|| format!("{}: no logEventTypes", path.display()))?
            .iter()
            .filter_map(|(name, n)| Some((n.as_u64()?, name.clone())))
            .collect();
        let events = lines
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str(l.trim_end().trim_end_matches(',')).ok())
            .collect();
        Ok(NetLog { types, events })
    }

    /// The events, each with its type's name.
    fn named(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.events.iter().map(|e| {
            let name = e["type"]
                .as_u64()
                .and_then(|t| self.types.get(&t))
                .map_or("", String::as_str);
            (name, e)
        })
    }

    /// What went, or was sent, to an address off the machine: TCP connection
    /// attempts, UDP datagrams and DNS lookups (by Chromium's own DNS client
    /// or the system's resolver); each as `TCP 192.0.2.1:443`, `UDP ...`,
    /// `DNS name`. A UDP socket that is only connected sends nothing
    /// (Chromium connects one to a public IPv6 address to learn whether
    /// IPv6 is routable): it is not counted.
    pub fn off_machine(&self) -> Vec<String> {
        let mut off = Vec::new();
        let mut udp_peer = std::collections::HashMap::new();
        let mut udp_sent = std::collections::HashSet::new();
        for (name, e) in self.named() {
            let params = &e["params"];
            let source = e["source"]["id"].as_u64();
            match name {
                "TCP_CONNECT_ATTEMPT" | "TCP_CONNECT" => {
                    let list = params["address_list"].as_array();
                    let addresses = list
                        .into_iter()
                        .flatten()
                        .chain([&params["address"], &params["remote_address"]])
                        .filter_map(Value::as_str);
                    for a in addresses {
                        if !is_loopback(a) {
                            off.push(format!("TCP {a}"));
                        }
                    }
                }
                "UDP_CONNECT" => {
                    if let (Some(a), Some(s)) = (params["address"].as_str(), source) {
                        udp_peer.insert(s, a.to_owned());
                    }
                }
                "UDP_BYTES_SENT" => match params["address"].as_str() {
                    Some(a) if !is_loopback(a) => off.push(format!("UDP {a}")),
                    Some(_) => {}
                    None => {
                        udp_sent.extend(source);
                    }
                },
                _ if name.starts_with("DNS_TRANSACTION")
                    || name.starts_with("HOST_RESOLVER_SYSTEM_TASK")
                    || name.starts_with("HOST_RESOLVER_DNS_TASK") =>
                {
                    let host = params["hostname"]
                        .as_str()
                        .or(params["host"].as_str())
                        .unwrap_or("?");
                    off.push(format!("DNS {host}"));
                }
                _ => {}
            }
        }
        for (s, a) in &udp_peer {
            if udp_sent.contains(s) && !is_loopback(a) {
                off.push(format!("UDP {a}"));
            }
        }
        off.sort();
        off.dedup();
        off
    }

    /// The hosts Chromium asked for other than loopback (URL requests of
    /// its own, refused by the host resolver rules before any packet):
    /// for reports, not a failure.
    pub fn refused_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .named()
            .filter(|(name, _)| *name == "URL_REQUEST_START_JOB")
            .filter_map(|(_, e)| e["params"]["url"].as_str())
            .filter_map(|url| {
                let rest = url.split_once("://")?.1;
                let host = rest.split(['/', '?', '#']).next()?;
                let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
                let name = match host.rsplit_once(':') {
                    Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
                    _ => host,
                };
                (name != "127.0.0.1" && name != "localhost" && name != "[::1]")
                    .then(|| name.to_owned())
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

/// Whether `addr` (`IP:port`, `[IPv6]:port` or a bare IP) is on loopback.
/// Anything unreadable counts as off the machine.
fn is_loopback(addr: &str) -> bool {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return a.ip().is_loopback();
    }
    addr.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// The page: a button whose script, from the same server, changes a text.
    const PAGE: &str = "<!doctype html><html><head><title>smoke</title></head><body>\
        <p id=\"status\">waiting</p><input id=\"name\" value=\"old\">\
        <button id=\"go\">go</button><p id=\"keys\"></p>\
        <script src=\"/app.js\"></script></body></html>";
    const SCRIPT: &str = "document.getElementById('go').addEventListener('click', () => {\
        document.getElementById('status').textContent = \
        'clicked by ' + document.getElementById('name').value; });\
        document.getElementById('name').addEventListener('keydown', (e) => {\
        document.getElementById('keys').textContent += (e.ctrlKey ? 'ctrl+' : '') + e.key + ' '; });";

    /// A plain HTTP/1.1 server on 127.0.0.1:0 serving [`PAGE`] at `/` and
    /// [`SCRIPT`] at `/app.js` (404 otherwise), one request a connection.
    async fn page_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let request = String::from_utf8_lossy(&request);
                    let path = request.split_whitespace().nth(1).unwrap_or("/");
                    let (status, kind, body) = match path {
                        "/" => ("200 OK", "text/html; charset=utf-8", PAGE),
                        "/app.js" => ("200 OK", "text/javascript", SCRIPT),
                        _ => ("404 Not Found", "text/plain", "not found"),
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tcp.write_all(response.as_bytes()).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn browser_drives_a_page() {
        if skip_without_browser() {
            return;
        }
        let addr = page_server().await;
        let shots = tempfile::tempdir().expect("screenshots dir");

        let started = Instant::now();
        let browser = Browser::start(shots.path()).await.expect("browser");
        eprintln!("browser started in {:?}", started.elapsed());

        let url = format!("http://{addr}/");
        browser.goto(&url).await.expect("goto");
        assert_eq!(browser.current_url().await.expect("url"), url);
        browser
            .wait_for("#go", Duration::from_secs(5))
            .await
            .expect("button");
        browser.fill("#name", "the test").await.expect("fill");
        browser.click("#go").await.expect("click");
        let text = browser
            .wait_for_text("#status", "clicked by the test", Duration::from_secs(5))
            .await
            .expect("text");
        assert_eq!(text, "clicked by the test");

        // A wait that fails says what it saw last.
        let err = browser
            .wait_for_text("#status", "never", Duration::from_millis(200))
            .await
            .expect_err("no such text");
        assert!(
            format!("{err:#}").contains("clicked by the test"),
            "{err:#}"
        );

        let title = browser
            .execute("return document.title + arguments[0];", vec![json!("!")])
            .await
            .expect("script");
        assert_eq!(title, json!("smoke!"));

        browser.type_keys("#name", "x\n").await.expect("keys");
        browser
            .type_keys("#name", &(Key::Control + "c"))
            .await
            .expect("ctrl-c");
        let keys = browser.text("#keys").await.expect("keys seen");
        assert!(keys.contains(" x Enter "), "{keys}");
        assert!(keys.contains(" ctrl+c"), "{keys}");
        let size = browser
            .execute("return [outerWidth, outerHeight];", vec![])
            .await
            .expect("size");
        assert_eq!(size, json!([WINDOW.0, WINDOW.1]));
        browser.set_window_size(900, 700).await.expect("resize");
        let size = browser
            .execute("return [outerWidth, outerHeight];", vec![])
            .await
            .expect("size");
        assert_eq!(size, json!([900, 700]));
        browser.set_viewport_size(800, 600).await.expect("viewport");

        browser.new_tab().await.expect("new tab");
        browser.goto(&url).await.expect("goto in the tab");
        browser.close_window().await.expect("close the tab");
        assert_eq!(browser.current_url().await.expect("url"), url);

        let first = browser.screenshot("clicked").await.expect("screenshot");
        let second = browser.screenshot("a/b").await.expect("screenshot");
        assert_eq!(first, shots.path().join("01-clicked.png"));
        assert_eq!(second, shots.path().join("02-a-b.png"));
        let png = std::fs::read(&first).expect("read screenshot");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");

        let quitting = Instant::now();
        // quit() fails if the NetLog shows traffic off the machine.
        let log = browser.quit().await.expect("quit");
        eprintln!("browser quit in {:?}", quitting.elapsed());
        assert_eq!(log.off_machine(), Vec::<String>::new());
        eprintln!(
            "hosts Chromium asked for, refused by its resolver rules: {:?}",
            log.refused_hosts()
        );
    }

    /// The pids of the live processes whose command line mentions `needle`.
    fn processes_with(needle: &str) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
            })
            .collect()
    }

    #[tokio::test]
    async fn dropping_the_browser_kills_it() {
        if skip_without_browser() {
            return;
        }
        let shots = tempfile::tempdir().expect("screenshots dir");
        let browser = Browser::start(shots.path()).await.expect("browser");
        let profile = browser.dir.path().join("profile");
        let profile = profile.to_str().expect("utf-8 path").to_owned();
        let running = processes_with(&profile);
        assert!(!running.is_empty(), "no process runs with {profile}");
        drop(browser);
        // SIGKILL is delivered at once, but the processes take a moment to go.
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        crate::guard("the browser's processes to exit", async {
            while !processes_with(&profile).is_empty() {
                tick.tick().await;
            }
        })
        .await;
    }

    /// A NetLog as Chromium writes it, made up: nothing was sent.
    #[test]
    fn net_log_off_machine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("netlog.json");
        let types = json!({
            "TCP_CONNECT_ATTEMPT": 1, "TCP_CONNECT": 2, "UDP_CONNECT": 3,
            "UDP_BYTES_SENT": 4, "DNS_TRANSACTION": 5, "URL_REQUEST_START_JOB": 6,
        });
        let events = [
            json!({"type": 1, "source": {"id": 1}, "params": {"address": "127.0.0.1:8080"}}),
            json!({"type": 2, "source": {"id": 1}, "params": {"address_list": ["[::1]:8080"]}}),
            json!({"type": 1, "source": {"id": 2}, "params": {"address": "192.0.2.7:443"}}),
            // Connected only: the IPv6 reachability probe.
            json!({"type": 3, "source": {"id": 3}, "params": {"address": "[2001:db8::1]:443"}}),
            json!({"type": 3, "source": {"id": 4}, "params": {"address": "198.51.100.9:443"}}),
            json!({"type": 4, "source": {"id": 4}, "params": {"byte_count": 1200}}),
            json!({"type": 5, "source": {"id": 5}, "params": {"hostname": "example.com"}}),
            json!({"type": 6, "source": {"id": 6}, "params": {"url": "https://example.org:8443/x?y"}}),
            json!({"type": 6, "source": {"id": 7}, "params": {"url": "http://127.0.0.1:9/"}}),
        ];
        let mut text = format!(
            "{{\"constants\":{},\n\"events\": [\n",
            json!({"logEventTypes": types})
        );
        for e in events {
            text.push_str(&format!("{e},\n"));
        }
        // Cut short, as by a killed browser.
        text.push_str("{\"type\": 1, \"source\": {\"id\": 9}, \"params\": {\"addr");
        std::fs::write(&path, text).expect("write");

        let log = NetLog::read(&path).expect("read");
        assert_eq!(
            log.off_machine(),
            [
                "DNS example.com",
                "TCP 192.0.2.7:443",
                "UDP 198.51.100.9:443"
            ]
        );
        assert_eq!(log.refused_hosts(), ["example.org"]);
    }

    #[test]
    fn loopback_addresses() {
        assert!(is_loopback("127.0.0.1:80"));
        assert!(is_loopback("[::1]:443"));
        assert!(is_loopback("127.3.4.5"));
        assert!(!is_loopback("[2001:4860:4860::8888]:443"));
        assert!(!is_loopback("10.255.255.53:53"));
        assert!(!is_loopback("example.com:443"));
    }
}
