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
//! - **local PTY**: in this process, a PTY of its own running `/bin/sh`
//!   (`pty-process`, spawned as the agent spawns a shell), timed with
//!   `Instant` from the write of the key to the read that holds its echo.
//!
//! Everything runs on 127.0.0.1; the browser is kept off the network by
//! `relay_tests::browser`, and its NetLog is checked when it quits.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use relay_tests::launch::Programs;
use relay_tests::{browser, oidc, web};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

    let world = web::world(&programs, "web-echo")
        .await
        .context("start the web world")?;
    world.sign_in("alice").await.context("sign in as alice")?;
    let browser_ms = in_the_browser(&world.browser, &options)
        .await
        .context("measure in the browser")?;
    let local_ms = local_pty(&options).await.context("measure a local PTY")?;

    println!(
        "web-echo: keystroke to echo, {} samples per path after {} warm-up keys, {}",
        options.samples,
        options.warmup,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    println!("machine: {}", machine());
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
        "{:<28} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "path (ms)", "samples", "p50", "p90", "p99", "max"
    );
    let local = Summary::of(&local_ms);
    let relayed = Summary::of(&browser_ms.samples);
    local.print(&format!("local PTY ({SHELL})"));
    relayed.print("browser → relay → agent");
    println!();
    println!(
        "added p50: {:.3} ms (target ≤ 5 ms)",
        relayed.p50 - local.p50
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
    let mut terminal = Terminal {
        pty: &mut pty,
        seen: Vec::new(),
    };
    terminal.write(READY_LINE.as_bytes()).await?;
    terminal.until(READY.as_bytes()).await?;
    terminal.quiet().await?;

    let mut samples = Vec::with_capacity(options.samples);
    for i in 0..options.warmup + options.samples {
        let key = b'a' + u8::try_from(i % 26)?;
        let sent = Instant::now();
        terminal.write(&[key]).await?;
        terminal.until(&[key]).await?;
        let took = sent.elapsed();
        terminal.write(&[BACKSPACE]).await?;
        terminal.until(&[BACKSPACE_ECHO]).await?;
        if i >= options.warmup {
            samples.push(took.as_secs_f64() * 1000.0);
        }
    }
    terminal.write(b"exit\r").await?;
    let _ = tokio::time::timeout(WAIT, child.wait()).await;
    Ok(samples)
}

/// The local PTY's end, as a person's terminal would hold it.
struct Terminal<'a> {
    pty: &'a mut pty_process::Pty,
    /// The output since the last match.
    seen: Vec<u8>,
}

impl Terminal<'_> {
    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.pty.write_all(bytes).await.context("write to the PTY")
    }

    /// Reads until the output holds `needle` (one read's worth or more).
    async fn until(&mut self, needle: &[u8]) -> anyhow::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            if self.seen.windows(needle.len()).any(|w| w == needle) {
                self.seen.clear();
                return Ok(());
            }
            let n = tokio::time::timeout(WAIT, self.pty.read(&mut buf))
                .await
                .with_context(|| {
                    format!(
                        "no {:?} from the local shell within {WAIT:?}; it showed {:?}",
                        String::from_utf8_lossy(needle),
                        String::from_utf8_lossy(&self.seen)
                    )
                })?
                .context("read the PTY")?;
            anyhow::ensure!(n > 0, "the local shell ended");
            self.seen.extend_from_slice(&buf[..n]);
        }
    }

    /// Reads until nothing comes for [`QUIET`].
    async fn quiet(&mut self) -> anyhow::Result<()> {
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + WAIT;
        while let Ok(read) = tokio::time::timeout(QUIET, self.pty.read(&mut buf)).await {
            let n = read.context("read the PTY")?;
            anyhow::ensure!(n > 0, "the local shell ended");
            anyhow::ensure!(
                Instant::now() < deadline,
                "the local shell did not go quiet"
            );
        }
        self.seen.clear();
        Ok(())
    }
}

/// Percentiles of one path, in ms.
struct Summary {
    samples: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
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
        }
    }

    fn print(&self, path: &str) {
        println!(
            "{path:<28} {:>7} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            self.samples, self.p50, self.p90, self.p99, self.max
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
