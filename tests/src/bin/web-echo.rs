//! Keystroke-to-echo latency of the browser shell against a local
//! terminal, on loopback: a benchmark that prints figures (issue #17:
//! "≤ 5 ms p50 over a local terminal"), not a test; it asserts no timings.
//!
//! ```text
//! cargo build --release -p relay-tests --bins && target/release/web-echo [--samples 300] [--warmup 20]
//! cargo build -p relay-tests --bins && target/debug/web-echo              # a debug build, to try it
//! ```
//!
//! It runs the relay and the agents as `test-relay-server` and
//! `test-relay-agent` from its own directory (the same build, the same
//! profile), or the product programs of `--bins DIR` (`relay-server`,
//! `relay-agent`, `relay-client`). It needs what the `web_shell` scenarios
//! need: `node` with `tests/oidc` installed, Chromium and chromedriver.
//!
//! Both sides type the same way: a printable key (a..z in turn), timed
//! from just before it is sent until the first output that holds it (the
//! terminal's echo) has arrived; then a backspace, whose echo (`\b \b`)
//! is awaited but not counted, so the line never grows. `--warmup` keys
//! go first, uncounted.
//!
//! - **browser → relay → agent**: the web world of the `web_shell`
//!   scenarios (`relay_tests::web::world`: a real OpenID provider, the
//!   relay with `[login]` and `[web]`, agent `edge` running `/bin/sh` with
//!   its sessions recorded, headless Chromium). Signed in as `alice`, a
//!   script in the page opens its own WebSocket to
//!   `/api/shell?agent=edge&cols=80&rows=24` (same origin: the session
//!   cookie goes with it) and times each key with `performance.now()`:
//!   `ws.send` of one binary message to the `message` event that brings
//!   the echo. The path: Chromium's WebSocket and TLS, TCP on 127.0.0.1,
//!   the relay's HTTPS and WebSocket, its terminal, QUIC to the agent, the
//!   agent's PTY, the kernel's echo, and all the way back. xterm.js's own
//!   rendering is not in it (the page's terminal is not used).
//! - **Rust WebSocket → relay → agent**: the same path without the
//!   browser, to tell its share from the relay's: a WebSocket of this
//!   process (tokio-tungstenite over rustls, trusting the relay's CA) to
//!   the same `/api/shell`, with the page's session cookie and origin,
//!   timed with `Instant`.
//! - **local PTY**: in this process, a PTY of its own running `/bin/sh`
//!   (`pty-process`, spawned as the agent spawns a shell), timed with
//!   `Instant` from the write of the key to the read that holds its echo.
//!
//! It prints samples, p50, p90, p99, max and mean of each path in ms, the
//! machine (CPUs, load average, build profile, Chromium, the page timer's
//! granularity), and the added p50: browser p50 − local PTY p50.
//!
//! Everything runs on 127.0.0.1; the browser is kept off the network by
//! `relay_tests::browser`, and its NetLog is checked when it quits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use relay_server::config::Paths;
use relay_tests::launch::Programs;
use relay_tests::{browser, oidc, web};
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The shell both sides run.
const SHELL: &str = "/bin/sh";

/// The agent the page opens its shell on (the world's `edge`).
const AGENT: &str = "edge";

/// How long any one wait (an echo, the shell's start) may take.
const WAIT: Duration = Duration::from_secs(10);

/// The line each side types first, and what its output shows once the
/// shell has read it and run it (the echo of the line itself shows
/// `$((6*7))`, not `42`).
const READY_LINE: &str = "echo ready-$((6*7))\r";
const READY: &str = "ready-42";

/// How long the output stays quiet after [`READY`] before the keys start
/// (the prompt comes after it).
const QUIET: Duration = Duration::from_millis(300);

/// The key erasing each measured one; the terminal echoes it as `\b \b`.
const BACKSPACE: u8 = 0x7f;
const BACKSPACE_ECHO: u8 = 0x08;

/// The measurement in the page. Arguments: samples, warm-up keys, the
/// `/api/shell` query, ready line, ready text, quiet ms, wait ms, and the
/// WebDriver callback. Gives `{samples: [ms...], isolated, resolution}` or
/// `{error}`.
const PAGE_SCRIPT: &str = r#"
const [samples, warmup, query, readyLine, readyText, quietMs, waitMs, done] = arguments;
(async () => {
  const ws = new WebSocket(`wss://${location.host}/api/shell?${query}`);
  ws.binaryType = 'arraybuffer';
  const decoder = new TextDecoder();
  let output = '';
  let control = [];
  let waiter = null;
  let closed = false;
  ws.addEventListener('message', (event) => {
    const at = performance.now();
    if (typeof event.data === 'string') {
      control.push(event.data);
    } else {
      const bytes = new Uint8Array(event.data);
      output = (output + decoder.decode(bytes, { stream: true })).slice(-4096);
      if (waiter && waiter.bytes && waiter.bytes(bytes)) {
        const w = waiter;
        waiter = null;
        w.resolve(at);
        return;
      }
    }
    if (waiter && waiter.any) waiter.any();
  });
  ws.addEventListener('close', () => { closed = true; if (waiter && waiter.any) waiter.any(); });
  // Resolves with the time of the first binary message `test` accepts.
  const echo = (test, what) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      waiter = null;
      reject(new Error(`no ${what} within ${waitMs} ms; output so far: ${JSON.stringify(output.slice(-300))}; control: ${JSON.stringify(control)}`));
    }, waitMs);
    waiter = { bytes: test, resolve: (at) => { clearTimeout(timer); resolve(at); } };
  });
  // Resolves once `check()` holds, looked at on each message.
  const until = (check, what) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      waiter = null;
      reject(new Error(`no ${what} within ${waitMs} ms; output so far: ${JSON.stringify(output.slice(-300))}; control: ${JSON.stringify(control)}`));
    }, waitMs);
    const look = () => {
      if (check()) { clearTimeout(timer); waiter = null; resolve(); return true; }
      if (closed) { clearTimeout(timer); waiter = null; reject(new Error(`the WebSocket closed waiting for ${what}; control: ${JSON.stringify(control)}`)); return true; }
      return false;
    };
    if (!look()) waiter = { any: look };
  });
  const quiet = () => new Promise((resolve) => {
    let timer = setTimeout(() => { waiter = null; resolve(); }, quietMs);
    waiter = { any: () => { clearTimeout(timer); timer = setTimeout(() => { waiter = null; resolve(); }, quietMs); } };
  });
  const send = (bytes) => ws.send(bytes);

  await until(() => control.some((c) => JSON.parse(c).type === 'opened'), '"opened" message');
  const refused = control.map((c) => JSON.parse(c)).find((c) => c.type !== 'opened');
  if (refused) throw new Error(`the relay said ${JSON.stringify(refused)}`);
  send(new TextEncoder().encode(readyLine));
  await until(() => output.includes(readyText), `${readyText} from the shell`);
  await quiet();

  const key = (i) => 'a'.charCodeAt(0) + (i % 26);
  const type = async (i) => {
    const k = key(i);
    const sent = performance.now();
    send(Uint8Array.of(k));
    const echoed = await echo((b) => b.includes(k), `echo of ${String.fromCharCode(k)}`);
    send(Uint8Array.of(0x7f));
    await echo((b) => b.includes(0x08), 'echo of the backspace');
    return echoed - sent;
  };
  for (let i = 0; i < warmup; i++) await type(i);
  const measured = [];
  for (let i = 0; i < samples; i++) measured.push(await type(i));

  // The timer's granularity here: Chromium coarsens performance.now()
  // unless the page is cross-origin isolated.
  let resolution = Infinity;
  let last = performance.now();
  for (let i = 0; i < 200000 && resolution === Infinity; i++) {
    const now = performance.now();
    if (now !== last) { resolution = now - last; }
    last = now;
  }
  // End the shell (the relay would keep it for the resume window).
  send(new TextEncoder().encode('exit\r'));
  await until(() => closed || control.some((c) => JSON.parse(c).type === 'exit'), 'the shell\'s exit').catch(() => {});
  ws.close();
  return { samples: measured, isolated: self.crossOriginIsolated === true, resolution };
})().then(done, (e) => done({ error: String(e && e.stack || e) }));
"#;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("web-echo: {e:#}");
        std::process::exit(1);
    }
}

/// The command line.
struct Options {
    samples: usize,
    warmup: usize,
    bins: Option<PathBuf>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        samples: 300,
        warmup: 20,
        bins: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--samples" => {
                options.samples = value()?.parse().context("--samples: not a number")?;
            }
            "--warmup" => options.warmup = value()?.parse().context("--warmup: not a number")?,
            "--bins" => options.bins = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!(
                    "usage: web-echo [--samples 300] [--warmup 20] [--bins DIR]\n\
                     keystroke-to-echo latency: local PTY against browser -> relay -> agent"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    anyhow::ensure!(options.samples > 0, "--samples must be at least 1");
    Ok(options)
}

async fn run() -> anyhow::Result<()> {
    let options = options()?;
    if let Some(why) = oidc::node_missing() {
        bail!(
            "the OpenID provider cannot run: {why}; install it with \
             `npm ci --prefix tests/oidc --no-audit --no-fund`"
        );
    }
    if let Some(why) = browser::browser_missing() {
        bail!("no browser: {why}; install Debian's chromium and chromium-driver");
    }
    let (programs, profile) = programs(options.bins.as_deref())?;

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let world = web::world(&programs, "web-echo")
        .await
        .context("start the web world")?;
    world.sign_in("alice").await.context("sign in as alice")?;
    let browser_ms = in_the_browser(&world.browser, &options)
        .await
        .context("measure in the browser")?;
    let client_ms = websocket_client(&world, &options)
        .await
        .context("measure with a WebSocket of this process")?;
    let local_ms = local_pty(&options).await.context("measure a local PTY")?;

    println!(
        "web-echo: keystroke to echo, {} samples per path after {} warm-up keys, {}",
        options.samples,
        options.warmup,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    println!(
        "machine: {}; load average before: {}",
        machine(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "relay and agent: {} ({profile}); web-echo itself: {}",
        programs.server.display(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "browser: {}; page timer: cross-origin isolated {}, granularity {:.3} ms",
        chromium_version(),
        browser_ms.isolated,
        browser_ms.resolution
    );
    println!();
    println!(
        "{:<32} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "path (ms)", "samples", "p50", "p90", "p99", "max", "mean"
    );
    let local = Summary::of(&local_ms);
    let client = Summary::of(&client_ms);
    let relayed = Summary::of(&browser_ms.samples);
    local.print(&format!("local PTY ({SHELL})"));
    relayed.print("browser → relay → agent");
    client.print("Rust WebSocket → relay → agent");
    println!();
    println!(
        "added p50: {:.3} ms (target ≤ 5 ms); without the browser: {:.3} ms",
        relayed.p50 - local.p50,
        client.p50 - local.p50
    );

    let web::World { browser, .. } = world;
    let log = browser.quit().await.context("quit the browser")?;
    anyhow::ensure!(log.off_machine().is_empty(), "traffic off the machine");
    Ok(())
}

/// The relay, agent and client programs and the profile they were built
/// with: `--bins DIR`'s product programs, or this build's `test-relay-*`.
fn programs(bins: Option<&Path>) -> anyhow::Result<(Programs, String)> {
    let (programs, dir) = match bins {
        Some(dir) => (Programs::in_dir(dir), dir.to_owned()),
        None => {
            let exe = std::env::current_exe().context("where web-echo is")?;
            let dir = exe.parent().context("web-echo's directory")?.to_owned();
            let programs = Programs {
                server: dir.join("test-relay-server"),
                agent: dir.join("test-relay-agent"),
                client: dir.join("test-relay-client"),
            };
            (programs, dir)
        }
    };
    for program in [&programs.server, &programs.agent, &programs.client] {
        anyhow::ensure!(
            program.is_file(),
            "{} is missing: build it first (`cargo build --release -p relay-tests --bins`)",
            program.display()
        );
    }
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some(name @ ("release" | "debug" | "profiling")) => format!("cargo profile {name}"),
        _ => "profile unknown".to_owned(),
    };
    Ok((programs, profile))
}

/// What the page measured.
struct PageFigures {
    samples: Vec<f64>,
    isolated: bool,
    resolution: f64,
}

/// Runs [`PAGE_SCRIPT`] in the signed-in page.
async fn in_the_browser(
    browser: &browser::Browser,
    options: &Options,
) -> anyhow::Result<PageFigures> {
    let keys = u64::try_from(options.samples + options.warmup)?;
    // Generous: a key and its backspace take a few ms each.
    let budget = Duration::from_secs(60) + Duration::from_millis(100) * u32::try_from(keys)?;
    let client = browser.client();
    let mut timeouts = client.get_timeouts().await.context("WebDriver timeouts")?;
    timeouts.set_script(Some(budget));
    client
        .update_timeouts(timeouts)
        .await
        .context("set the script timeout")?;
    let query = format!("agent={AGENT}&cols=80&rows=24");
    let args = vec![
        json!(options.samples),
        json!(options.warmup),
        json!(query),
        json!(READY_LINE),
        json!(READY),
        json!(u64::try_from(QUIET.as_millis())?),
        json!(u64::try_from(WAIT.as_millis())?),
    ];
    let answer = tokio::time::timeout(
        budget + Duration::from_secs(10),
        client.execute_async(PAGE_SCRIPT, args),
    )
    .await
    .context("the page's measurement did not end")?
    .context("run the page's measurement")?;
    if let Some(error) = answer.get("error") {
        bail!(
            "the page's measurement failed: {}",
            error.as_str().unwrap_or_default()
        );
    }
    let samples = answer["samples"]
        .as_array()
        .context("no samples from the page")?
        .iter()
        .map(|v| v.as_f64().context("a sample is not a number"))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    anyhow::ensure!(
        samples.len() == options.samples,
        "the page gave {} samples, not {}",
        samples.len(),
        options.samples
    );
    Ok(PageFigures {
        samples,
        isolated: answer["isolated"].as_bool().unwrap_or(false),
        resolution: answer["resolution"].as_f64().unwrap_or(f64::NAN),
    })
}

/// Types into a PTY of this process running [`SHELL`], as the agent runs
/// it (a login shell on an 80x24 terminal, a small environment); gives
/// each key's round trip in ms.
async fn local_pty(options: &Options) -> anyhow::Result<Vec<f64>> {
    let (mut pty, pts) = pty_process::open().context("open a PTY")?;
    pty.resize(pty_process::Size::new(24, 80))
        .context("size the PTY")?;
    let home = std::env::var("HOME").unwrap_or_else(|_| "/".to_owned());
    let mut child = pty_process::Command::new(SHELL)
        .arg0("-sh")
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned()),
        )
        .env("HOME", &home)
        .env("TERM", "xterm-256color")
        .current_dir(&home)
        .kill_on_drop(true)
        .spawn(pts)
        .with_context(|| format!("start {SHELL} on the PTY"))?;
    let samples = type_keys(&mut pty, options).await?;
    let _ = tokio::time::timeout(WAIT, child.wait()).await;
    Ok(samples)
}

/// Types into a shell on `edge` through a WebSocket of this process to the
/// relay's `/api/shell`, with the page's session cookie (the page signed
/// in): the browser's path without the browser. Gives each key's round
/// trip in ms.
async fn websocket_client(world: &web::World, options: &Options) -> anyhow::Result<Vec<f64>> {
    let cookie = world
        .browser
        .client()
        .get_all_cookies()
        .await
        .context("the page's cookies")?
        .iter()
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect::<Vec<_>>()
        .join("; ");
    let ca = Paths::from(world.relay.dir.path()).ca_cert();
    let ca = std::fs::read_to_string(&ca).with_context(|| format!("read {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in relay_net::pem::certs(&ca)? {
        roots.add(cert)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(relay_net::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let addr = world.relay.addr;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    // As Chromium's sockets.
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .context("TLS to the relay's page")?;
    let mut request =
        format!("wss://{addr}/api/shell?agent={AGENT}&cols=80&rows=24").into_client_request()?;
    let headers = request.headers_mut();
    headers.insert("origin", world.page.parse()?);
    headers.insert("cookie", cookie.parse()?);
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls)
        .await
        .context("the WebSocket handshake")?;
    // The relay says `opened` first.
    let first = tokio::time::timeout(WAIT, ws.next())
        .await
        .context("no first message")?
        .context("the WebSocket closed")??;
    anyhow::ensure!(
        matches!(&first, Message::Text(t) if t.contains("\"opened\"")),
        "the relay's first message: {first:?}"
    );
    type_keys(&mut ws, options).await
}

/// One side's terminal, as a person's terminal program holds it: keys in,
/// output out.
trait Keyboard {
    /// Sends `bytes` as typed.
    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()>;
    /// The next output there is (waits for it).
    async fn read_some(&mut self) -> anyhow::Result<Vec<u8>>;
}

impl Keyboard for pty_process::Pty {
    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.write_all(bytes).await.context("write to the PTY")
    }

    async fn read_some(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        let n = self.read(&mut buf).await.context("read the PTY")?;
        anyhow::ensure!(n > 0, "the local shell ended");
        buf.truncate(n);
        Ok(buf)
    }
}

impl<S> Keyboard for tokio_tungstenite::WebSocketStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.send(Message::Binary(bytes.to_vec().into()))
            .await
            .context("send on the WebSocket")
    }

    async fn read_some(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            match self.next().await.context("the WebSocket closed")?? {
                Message::Binary(b) => return Ok(b.to_vec()),
                Message::Text(t) => bail!("the relay said {t}"),
                Message::Close(c) => bail!("the relay closed the WebSocket: {c:?}"),
                _ => {}
            }
        }
    }
}

/// Types [`READY_LINE`] and waits for the shell, then the warm-up keys and
/// the measured ones, each followed by a backspace; gives each measured
/// key's round trip in ms. Ends the shell.
async fn type_keys(k: &mut impl Keyboard, options: &Options) -> anyhow::Result<Vec<f64>> {
    let mut seen = Vec::new();
    k.write(READY_LINE.as_bytes()).await?;
    until(k, &mut seen, READY.as_bytes()).await?;
    quiet(k).await?;
    seen.clear();
    let mut samples = Vec::with_capacity(options.samples);
    for i in 0..options.warmup + options.samples {
        let key = b'a' + u8::try_from(i % 26)?;
        let sent = Instant::now();
        k.write(&[key]).await?;
        until(k, &mut seen, &[key]).await?;
        let took = sent.elapsed();
        k.write(&[BACKSPACE]).await?;
        until(k, &mut seen, &[BACKSPACE_ECHO]).await?;
        if i >= options.warmup {
            samples.push(took.as_secs_f64() * 1000.0);
        }
    }
    k.write(b"exit\r").await?;
    Ok(samples)
}

/// Reads until the output since the last match holds `needle`.
async fn until(k: &mut impl Keyboard, seen: &mut Vec<u8>, needle: &[u8]) -> anyhow::Result<()> {
    loop {
        if seen.windows(needle.len()).any(|w| w == needle) {
            seen.clear();
            return Ok(());
        }
        let more = tokio::time::timeout(WAIT, k.read_some())
            .await
            .with_context(|| {
                format!(
                    "no {:?} from the shell within {WAIT:?}; it showed {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(seen)
                )
            })??;
        seen.extend_from_slice(&more);
    }
}

/// Reads until nothing comes for [`QUIET`].
async fn quiet(k: &mut impl Keyboard) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while let Ok(read) = tokio::time::timeout(QUIET, k.read_some()).await {
        read?;
        anyhow::ensure!(Instant::now() < deadline, "the shell did not go quiet");
    }
    Ok(())
}

/// Percentiles of one path, in ms.
struct Summary {
    samples: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Summary {
    fn of(samples: &[f64]) -> Summary {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        // Nearest rank: the smallest sample with at least p % at or below it.
        let rank = |p: f64| {
            let n = sorted.len();
            let i = ((p / 100.0) * n as f64).ceil() as usize;
            sorted
                .get(i.clamp(1, n.max(1)) - 1)
                .copied()
                .unwrap_or(f64::NAN)
        };
        Summary {
            samples: sorted.len(),
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        }
    }

    fn print(&self, path: &str) {
        println!(
            "{path:<32} {:>7} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            self.samples, self.p50, self.p90, self.p99, self.max, self.mean
        );
    }
}

/// CPUs, kernel and CPU model.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cpus} CPUs (nproc), {model}, Linux {}", kernel.trim())
}

/// `chromium --version` of the browser the harness drives.
fn chromium_version() -> String {
    let binary = ["/usr/lib/chromium/chromium", "chromium"];
    binary
        .iter()
        .find_map(|b| {
            let out = std::process::Command::new(b)
                .arg("--version")
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (out.status.success() && !text.is_empty()).then_some(text)
        })
        .unwrap_or_else(|| "Chromium (version unknown)".to_owned())
}
