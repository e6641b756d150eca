//! Every end-to-end scenario, built as one test binary: each file under
//! `tests/tests` used to be its own binary linking the whole workspace, so
//! a change anywhere relinked sixteen of them. Run one file's tests with
//! `cargo test -p relay-tests --test scenarios MODULE::` (say `lifecycle::`).
//!
//! The scenarios share this process, so none changes process-wide state
//! (the environment, the working directory, signal handlers): the lint
//! configuration in `tests/clippy.toml` bans `std::env::set_var` and the
//! sleeps. Those that need a private network namespace (`netns`, one test
//! of `socks`) re-run this binary inside one, asking for their own test by
//! its full path ([`inner_test`]).

mod admin;
mod advisories;
mod agent_errors;
mod authorize;
mod bench;
mod client_cli;
mod client_paths;
mod clients;
mod crash;
mod credentials;
mod data;
mod dial_messages;
mod direct_agent;
mod discovery;
mod end_to_end;
mod fairness;
mod faults;
mod lifecycle;
mod limits;
mod login;
mod netns;
mod observability;
mod oidc_provider;
mod proxy;
mod proxy_names;
mod refusals;
mod relays_shared;
mod sessions;
mod several_relays;
mod smoke;
mod socks;
mod tcp_carrier;
mod web_shell;

/// Runs this binary's test `name` of `module` (the caller's
/// `module_path!()`) again inside new namespaces: `unshare FLAGS sh -c
/// 'SETUP && exec THIS_BINARY --exact TEST ...'`, with the variable `inner`
/// set so the test knows it is inside. `args` reach `SETUP` as `$2`, `$3`,
/// .... Its output is printed (the harness shows it on failure, or with
/// `--nocapture`). Everything the inner test creates vanishes with the
/// namespaces.
///
/// # Errors
/// If the inner test fails, does not run, or takes over 240 s.
async fn rerun_in_namespace(
    module: &str,
    name: &str,
    inner: &str,
    flags: &str,
    setup: &str,
    args: &[&std::ffi::OsStr],
) -> anyhow::Result<()> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("test binary path")?;
    let script =
        format!(r#"{setup} && exec "$0" --exact "$1" --ignored --nocapture --test-threads=1"#);
    let run = tokio::process::Command::new("unshare")
        .args([flags, "sh", "-c", &script])
        .arg(&exe)
        .arg(inner_test(module, name))
        .args(args)
        .env(inner, "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(240), run)
        .await
        .context("the namespace test did not finish within 240 s")?
        .context("run the test binary under unshare")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- inside the namespace ---\n{stdout}\n{stderr}");
    anyhow::ensure!(out.status.success(), "the namespace test failed");
    anyhow::ensure!(
        stdout.contains("test result: ok. 1 passed"),
        "the inner test did not run"
    );
    Ok(())
}

/// The outer half of a namespace test: nothing when already inside (the
/// inner test does the work), SKIPPED where no private network namespace
/// with nftables can be made here, else [`rerun_in_namespace`].
///
/// # Errors
/// As [`rerun_in_namespace`].
async fn outer_namespace_test(
    module: &str,
    inner: &str,
    flags: &str,
    setup: &str,
) -> anyhow::Result<()> {
    if std::env::var_os(inner).is_some() {
        return Ok(());
    }
    if let Some(why) = netns_unusable().await {
        println!("SKIPPED: no private network namespace with nftables here: {why}");
        return Ok(());
    }
    rerun_in_namespace(module, "in_namespace", inner, flags, setup, &[]).await
}

/// Runs `nft ARGS` (inside a test's own namespace); returns its output.
///
/// # Errors
/// If nft fails.
async fn nft(args: &[&str]) -> anyhow::Result<String> {
    use anyhow::Context;
    let out = tokio::process::Command::new("nft")
        .args(args)
        .output()
        .await
        .context("run nft")?;
    anyhow::ensure!(
        out.status.success(),
        "nft {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Why a private network namespace with nftables cannot be made here, if
/// it cannot (`unshare -rn`, `ip`, `nft`).
async fn netns_unusable() -> Option<String> {
    let probe = tokio::process::Command::new("unshare")
        .args([
            "-rn",
            "sh",
            "-c",
            "ip link set lo up && nft add table inet relay_probe",
        ])
        .output()
        .await;
    match probe {
        Err(e) => Some(format!("cannot run unshare: {e}")),
        Ok(out) if !out.status.success() => Some(format!(
            "`unshare -rn` + `ip` + `nft` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// The name libtest knows the test `name` of module `module` by (its path
/// without the crate), for re-running this binary with `--exact`.
///
/// `module` is the caller's `module_path!()`.
fn inner_test(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    }
}
