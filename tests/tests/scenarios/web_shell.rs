//! The browser shell end to end, in a real headless Chromium
//! (`relay_tests::browser`) against the real programs and a real OpenID
//! provider (`relay_tests::oidc`): a person signs in at the provider from
//! the relay's page, sees the agents the policy grants, opens a shell,
//! types, resizes, ends it and sees its exit status; a shell survives the
//! page going away and is shown again, output included, when the page
//! comes back; an agent the policy does not grant is refused. Screenshots
//! of each step land in `target/web-shell-screenshots/` (not committed).

use relay_tests::web::{eventually, terminal_shows, world, WAIT};
use relay_tests::{browser, oidc};
use serde_json::Value;

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
    let w = world(&relay_tests::programs!(), "shell").await?;
    w.sign_in("alice").await?;
    w.browser.screenshot("signed-in").await?;
    w.open_shell("edge").await?;
    w.type_line("echo hello-$((6*7))\n").await?;
    w.terminal_shows("\nhello-42").await?;
    w.browser.screenshot("hello-42").await?;
    // UTF-8 both ways: typed, echoed, printed.
    w.type_line("echo \"gr\u{fc}\u{df}e \u{2713} \u{65e5}\u{672c}\"-$((1+1))\n")
        .await?;
    w.terminal_shows("\ngr\u{fc}\u{df}e \u{2713} \u{65e5}\u{672c}-2")
        .await?;

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
    let w = world(&relay_tests::programs!(), "reattach").await?;
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
    let w = world(&relay_tests::programs!(), "refused").await?;
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

/// Bob (group `dev`, `watch = true` on `edge`) sees alice's live shell
/// listed and watches it: he gets what it showed before he came and what
/// follows; alice's page says he watches; his keys reach nothing; the
/// audit log says who watched whose shell; revoking him ends his watching.
#[tokio::test]
async fn a_second_person_watches_a_shell_read_only_and_the_audit_says_who() -> anyhow::Result<()> {
    relay_tests::trace_init();
    if oidc::provider_missing() || browser::skip_without_browser() {
        return Ok(());
    }
    let w = world(&relay_tests::programs!(), "watch").await?;
    w.sign_in("alice").await?;
    w.open_shell("edge").await?;
    w.type_line("echo before-$((1+1))\n").await?;
    w.terminal_shows("\nbefore-2\n").await?;

    let bob = w.another_browser("bob").await?;
    w.sign_in_with(&bob, "bob").await?;
    bob.wait_for("button.watch", WAIT).await?;
    bob.click("button.watch").await?;
    bob.wait_for_text("#status", "watching client/alice on edge (read-only)", WAIT)
        .await?;
    terminal_shows(&bob, "\nbefore-2\n").await?;
    w.browser
        .wait_for_text("#status", "watched by client/bob", WAIT)
        .await?;

    w.type_line("echo live-$((6*7))\n").await?;
    terminal_shows(&bob, "\nlive-42\n").await?;
    bob.screenshot("watching").await?;
    w.browser.screenshot("watched").await?;

    // Bob's keys go nowhere: alice's next line shows, his never does.
    bob.type_keys(".xterm-helper-textarea", "echo intruder\n")
        .await?;
    w.type_line("echo marker-$((3*3))\n").await?;
    let alice_sees = w.terminal_shows("\nmarker-9\n").await?;
    assert!(!alice_sees.contains("intruder"), "{alice_sees}");
    terminal_shows(&bob, "\nmarker-9\n").await?;

    let events = w.relay.audit_events();
    let watched = events.iter().any(|e| {
        e["event"] == "watch"
            && e["peer"] == "client/bob"
            && e["agent"] == "edge"
            && e["watched"]
                .as_str()
                .is_some_and(|w| w.starts_with("client/alice "))
    });
    assert!(watched, "no watch event in {events:#?}");

    // Revoking the watcher ends the watching, though he asks for nothing more.
    w.server(&["revoke", "client", "bob"]).await?;
    w.relay.process.sighup()?;
    bob.wait_for_text("#status", "revoked", WAIT).await?;
    bob.quit().await?;
    Ok(())
}

/// Revoking the person ends their shell and their sign-in at the relay's
/// next look at the revocation list: the page says so and shows the
/// sign-in again. Signing out ends a shell too (as the audit says).
#[tokio::test]
async fn revocation_and_sign_out_end_the_shell_in_the_page() -> anyhow::Result<()> {
    relay_tests::trace_init();
    if oidc::provider_missing() || browser::skip_without_browser() {
        return Ok(());
    }
    let w = world(&relay_tests::programs!(), "revoked").await?;
    w.sign_in("alice").await?;
    w.open_shell("edge").await?;
    w.browser.click("#logout").await?;
    w.browser
        .wait_for("a.provider[data-provider=\"sso\"]", WAIT)
        .await?;
    let ended = eventually(|| async {
        Ok(w.relay
            .audit_events()
            .into_iter()
            .find(|e| e["event"] == "close" && e["via"] == "browser" && e["kind"] == "shell"))
    })
    .await?;
    assert!(
        ended["reason"]
            .as_str()
            .is_some_and(|r| r.contains("sign-in ended")),
        "{ended}"
    );

    w.sign_in("alice").await?;
    w.open_shell("edge").await?;
    w.server(&["revoke", "client", "alice"]).await?;
    w.relay.process.sighup()?;
    let status = w.browser.wait_for_text("#status", "revoked", WAIT).await?;
    assert!(status.contains("session ended"), "{status}");
    w.browser.screenshot("revoked").await?;
    w.browser.goto(&w.page).await?;
    w.browser
        .wait_for("a.provider[data-provider=\"sso\"]", WAIT)
        .await?;
    Ok(())
}

/// The protocol under a page that loses its connection: a WebSocket takes
/// a shell's output up to `tick-50` and drops; a second one re-attaches
/// with the byte offset the first had (`?session=ID&from=N`), while the
/// shell went on printing. Together they hold every line exactly once.
#[tokio::test]
async fn a_dropped_connection_re_attaches_from_its_offset_without_loss_or_repeat(
) -> anyhow::Result<()> {
    relay_tests::trace_init();
    if oidc::provider_missing() || browser::skip_without_browser() {
        return Ok(());
    }
    let w = world(&relay_tests::programs!(), "offset").await?;
    w.sign_in("alice").await?;
    // Two WebSockets of the page's own origin (its cookie goes with them).
    let script = r#"
        const done = arguments[arguments.length - 1];
        const url = (query) => `wss://${location.host}/api/shell?${query}`;
        const decoder = new TextDecoder();
        function take(query, onOpened, until) {
          return new Promise((resolve, reject) => {
            const ws = new WebSocket(url(query));
            ws.binaryType = 'arraybuffer';
            const got = { text: '', bytes: 0, id: null, from: null };
            ws.onerror = () => reject(new Error('websocket failed'));
            ws.onmessage = (event) => {
              if (typeof event.data === 'string') {
                const m = JSON.parse(event.data);
                if (m.type === 'opened') { got.id = m.session; got.from = m.from; onOpened(ws); }
                return;
              }
              got.bytes += event.data.byteLength;
              got.text += decoder.decode(event.data, { stream: true });
              if (got.text.includes(until)) { ws.close(); resolve(got); }
            };
          });
        }
        (async () => {
          const loop = 'i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo tick-$i; sleep 0.02; done\r';
          const first = await take('agent=edge&cols=80&rows=24',
            (ws) => ws.send(new TextEncoder().encode(loop)), 'tick-50\r\n');
          const second = await take(`session=${first.id}&from=${first.bytes}`, () => {}, 'tick-200\r\n');
          done({ first: first.text, second: second.text, bytes: first.bytes, from: second.from });
        })().catch((e) => done({ error: String(e) }));
    "#;
    let got = w
        .browser
        .client()
        .execute_async(script, vec![])
        .await
        .map_err(|e| anyhow::anyhow!("the page's script: {e}"))?;
    anyhow::ensure!(got.get("error").is_none(), "{got}");
    assert_eq!(got["from"], got["bytes"], "re-attached elsewhere: {got}");
    let text = format!(
        "{}{}",
        got["first"].as_str().unwrap_or_default(),
        got["second"].as_str().unwrap_or_default()
    );
    for n in 1..=200 {
        let line = format!("tick-{n}\r\n");
        assert_eq!(text.matches(&line).count(), 1, "tick-{n}:\n{text}");
    }
    Ok(())
}

/// A recording of 300 s and 6 MB (written into the agent's recordings
/// folder as the agent writes them) is listed and plays in the page; a
/// seek to 250 s shows the screen as it was then, and what the relay sends
/// for it is a small window, not the file.
#[tokio::test]
async fn a_long_recording_plays_and_seeks_in_the_page_a_window_at_a_time() -> anyhow::Result<()> {
    relay_tests::trace_init();
    if oidc::provider_missing() || browser::skip_without_browser() {
        return Ok(());
    }
    let w = world(&relay_tests::programs!(), "replay").await?;
    // One event every 0.1 s; each also sets the window title to 2 KiB of
    // text, which shows nowhere but makes the file large.
    let mut cast = String::from(
        "{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":1767225600,\"title\":\"synthetic\"}\n",
    );
    let filler = "x".repeat(2048);
    for n in 0..3000 {
        let at = f64::from(n) / 10.0;
        let line = serde_json::json!([at, "o", format!("\u{1b}]0;{filler}\u{7}mark-{n}\r\n")]);
        cast.push_str(&line.to_string());
        cast.push('\n');
    }
    assert!(cast.len() > 6_000_000);
    std::fs::write(
        w.records.path().join("20260101T000000Z-synthetic.cast"),
        &cast,
    )?;

    w.sign_in("alice").await?;
    let b = &w.browser;
    b.wait_for("button.recordings[data-agent=\"edge\"]", WAIT)
        .await?;
    b.click("button.recordings[data-agent=\"edge\"]").await?;
    b.wait_for_text("#recordings", "synthetic", WAIT).await?;
    b.click("button.play[data-name=\"20260101T000000Z-synthetic.cast\"]")
        .await?;
    b.wait_for_text("#player", "mark-3", WAIT).await?;
    b.screenshot("playing").await?;

    b.fill("#seek", "250").await?;
    b.click("#seek-go").await?;
    b.wait_for_text("#player", "mark-2499", WAIT).await?;
    b.screenshot("seeked").await?;
    // The seek's first frame is the screen as it was then, rebuilt by the
    // relay: the lines before, nothing after.
    let first = b
        .execute(
            "const t0 = performance.now();\
             return fetch('/api/recordings/play?agent=edge&name=20260101T000000Z-synthetic.cast&from=249.95')\
               .then(r => r.json()).then(w => ({ screen: JSON.parse(w.cast.split('\\n')[1])[2], ms: performance.now() - t0 }));",
            vec![],
        )
        .await?;
    eprintln!(
        "a seek to 250 s of a {} byte recording answered in {} ms",
        cast.len(),
        first["ms"]
    );
    let first = first["screen"].as_str().unwrap_or_default();
    assert!(
        first.contains("mark-2499") && first.contains("mark-2480"),
        "{first:?}"
    );
    assert!(
        !first.contains("mark-2500") && !first.contains("mark-2470"),
        "{first:?}"
    );

    // What the relay answers for a seek: the screen, then a minute at most.
    let window = b
        .execute(
            "return fetch('/api/recordings/play?agent=edge&name=20260101T000000Z-synthetic.cast&from=100')\
               .then(r => r.json()).then(w => ({ bytes: w.cast.length, next: w.next }));",
            vec![],
        )
        .await?;
    let bytes = window["bytes"].as_u64().unwrap_or(u64::MAX);
    assert!(bytes < (2 << 20) + 64 * 1024, "a window of {bytes} bytes");
    assert_eq!(window["next"].as_f64(), Some(160.1), "{window}");
    Ok(())
}
