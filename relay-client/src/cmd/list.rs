//! `relay-client list`: agents online, the targets this client may reach,
//! and the sessions (`shell`, `run`, `socks`) it may open there.

use proto::Capabilities;
use relay_net::endpoint::Via;

use crate::{Client, OpenError};

/// Prints the table; returns the number of agents.
///
/// # Errors
/// If the relay cannot be reached.
pub async fn run(client: &Client, out: &mut impl std::io::Write) -> Result<usize, OpenError> {
    let agents = client.list().await?;
    let relay = client.relay_in_use().await;
    client.close().await;
    let footer = |out: &mut dyn std::io::Write| {
        if let Some((relay, via)) = &relay {
            let _ = writeln!(out, "relay {relay} over {}", describe(*via));
        }
    };
    if agents.is_empty() {
        let _ = writeln!(out, "no agents online that this credential may reach");
        footer(out);
        return Ok(0);
    }
    let width = agents
        .iter()
        .map(|a| a.agent.as_str().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "{:width$}  {:9}  {:17}  TARGETS",
        "AGENT", "INSTANCES", "SESSIONS"
    );
    for a in &agents {
        let targets: Vec<&str> = a.targets.iter().map(|t| t.as_str()).collect();
        let targets = if targets.is_empty() {
            "(none allowed)".to_owned()
        } else {
            targets.join(", ")
        };
        let _ = writeln!(
            out,
            "{:width$}  {:9}  {:17}  {targets}",
            a.agent.as_str(),
            a.instances,
            sessions(a.sessions)
        );
    }
    footer(out);
    Ok(agents.len())
}

/// How the relay is reached, in words.
fn describe(via: Via) -> &'static str {
    match via {
        Via::Tcp => "tcp (TLS over TCP: QUIC over UDP did not get through, or --transport tcp)",
        _ => "quic",
    }
}

/// The commands the session kinds stand for, e.g. "shell, run".
fn sessions(kinds: Capabilities) -> String {
    let names: Vec<&str> = [
        (Capabilities::SHELL, "shell"),
        (Capabilities::EXEC, "run"),
        (Capabilities::SOCKS, "socks"),
    ]
    .into_iter()
    .filter(|(kind, _)| kinds.contains(*kind))
    .map(|(_, name)| name)
    .collect();
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(", ")
    }
}
