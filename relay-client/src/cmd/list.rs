//! `relay-client list`: agents online and the targets this client may reach.

use crate::{Client, OpenError};

/// Prints the table; returns the number of agents.
///
/// # Errors
/// If the relay cannot be reached.
pub async fn run(client: &Client, out: &mut impl std::io::Write) -> Result<usize, OpenError> {
    let agents = client.list().await?;
    client.close().await;
    if agents.is_empty() {
        let _ = writeln!(out, "no agents online that this credential may reach");
        return Ok(0);
    }
    let width = agents
        .iter()
        .map(|a| a.agent.as_str().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(out, "{:width$}  {:9}  TARGETS", "AGENT", "INSTANCES");
    for a in &agents {
        let targets: Vec<&str> = a.targets.iter().map(|t| t.as_str()).collect();
        let targets = if targets.is_empty() {
            "(none allowed)".to_owned()
        } else {
            targets.join(", ")
        };
        let _ = writeln!(
            out,
            "{:width$}  {:9}  {targets}",
            a.agent.as_str(),
            a.instances
        );
    }
    Ok(agents.len())
}
