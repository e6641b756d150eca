//! `relay-client login`: its flags, and the line it prints. The login
//! itself is [`crate::login`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::login::{Flow, Login};

/// The examples and notes under `login --help`.
pub const AFTER_HELP: &str = "Examples:
  relay-client login --relay relay.example.com:4433 --ca relay-ca.crt
  relay-client login                      # again: relay and CA from the last login
  relay-client login --device             # no browser here: a code to enter elsewhere
  relay-client login --oidc-token-file \"$TOKEN_FILE\" && relay-client with aks-prod/kube-api -- kubectl apply -f app.yaml

The credential goes to --credential FILE if given (or RELAY_CREDENTIAL),
else to $XDG_CONFIG_HOME/relay/credential.toml (~/.config/relay/...), where
every command looks when --credential is not given. The private key is
made here and never leaves this machine. Without --device, a browser opens
(with --no-browser, the page to open is printed) and the provider sends it
back to a port on 127.0.0.1; with no browser at hand, the device login is
used. `relay-client logout` removes the credential.";

/// `login`'s flags.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The relay's address HOST:PORT (repeatable) [default: the last login's].
    #[arg(long = "relay", value_name = "HOST:PORT")]
    relay: Vec<String>,
    /// The relay's CA certificate (public: `ca.crt` from the operator) [default: the last login's].
    #[arg(long, env = "RELAY_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The login provider, by the relay's name for it [default: the relay's first of the kind].
    #[arg(long, value_name = "NAME")]
    provider: Option<String>,
    /// Log in with a device code (open a page anywhere, enter the code).
    #[arg(long, conflicts_with = "no_browser")]
    device: bool,
    /// Print the sign-in page's address instead of opening a browser.
    #[arg(long)]
    no_browser: bool,
    /// A workload identity token (GitHub Actions, GitLab CI, Azure) to exchange, from FILE.
    #[arg(long, env = "RELAY_OIDC_TOKEN_FILE", value_name = "FILE", conflicts_with_all = ["device", "no_browser"])]
    oidc_token_file: Option<PathBuf>,
    /// Lifetime to ask for (the relay gives at most its maximum) [default: the provider's].
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
}

/// Logs in and writes the credential to `out`.
///
/// # Errors
/// What failed, in words to act on.
pub async fn run(
    args: &LoginArgs,
    out: PathBuf,
    transport: relay_net::endpoint::Transport,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let read = |path: &PathBuf, what: &str| {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))
    };
    let flow = match (&args.oidc_token_file, args.device) {
        (Some(file), _) => Flow::Token(read(file, "the token file")?),
        (None, true) => Flow::Device,
        (None, false) if args.no_browser => Flow::Browser { open: false },
        (None, false) if crate::login::provider::browser_at_hand() => Flow::Browser { open: true },
        (None, false) => Flow::Device,
    };
    let login = Login {
        relay: args.relay.clone(),
        ca: args
            .ca
            .as_ref()
            .map(|f| read(f, "the CA certificate"))
            .transpose()?,
        provider: args.provider.clone(),
        flow,
        lifetime: args.ttl,
        out,
        transport,
        timeout,
    };
    let done = login.run().await?;
    let cert = &done.credential.cert;
    let groups = if cert.groups.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = cert.groups.iter().map(ToString::to_string).collect();
        format!(" in groups {}", names.join(", "))
    };
    println!(
        "logged in as {}{groups} (provider {}) until {}; credential in {}",
        cert.identity,
        done.provider,
        relay_net::cert::rfc3339(cert.not_after),
        done.credential.path.display()
    );
    Ok(ExitCode::SUCCESS)
}
