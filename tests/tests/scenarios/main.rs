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
mod netns;
mod observability;
mod refusals;
mod relays_shared;
mod sessions;
mod several_relays;
mod smoke;
mod socks;

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
