//! The check `with`, `forward` and `socks` make before they listen: is the
//! agent online and does it offer this credential the target (or SOCKS)?
//! Asked with `List`, which the relay answers from the same policy it
//! enforces on `Open`, so a command that could only reset every connection
//! fails at once with the reason instead. The path to the agent is set up
//! now too, so the command can say which it is and the first connection
//! does not wait for it; in strict end-to-end mode one that cannot be had
//! ends the command.

use proto::{AgentInfo, AgentName, Capabilities, TargetName};

use crate::{AgentTarget, Carrier, Client, OpenError};

/// Why a command will not start.
#[derive(Debug, thiserror::Error)]
pub enum NotReachable {
    /// The relay could not be asked.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The relay lists no such agent for this credential.
    #[error(
        "agent {0} is not online, or this credential may not reach it \
         (`relay-client list` shows what it can reach)"
    )]
    Agent(AgentName),
    /// The agent is listed, without the target.
    #[error(
        "agent {agent} does not offer target {target} to this credential (it offers: {offered})"
    )]
    Target {
        /// The agent.
        agent: AgentName,
        /// The target asked for.
        target: proto::TargetName,
        /// What it offers, comma-separated, or "nothing".
        offered: String,
    },
    /// The agent is listed, without SOCKS.
    #[error(
        "agent {0} does not offer socks to this credential: the relay policy must have \
         `socks = true` for it and the agent must run with --allow-socks"
    )]
    Socks(AgentName),
}

/// The listing of `agent` for this credential.
async fn listed(client: &Client, agent: &AgentName) -> Result<AgentInfo, NotReachable> {
    let agents = client.list().await?;
    agents
        .into_iter()
        .find(|a| a.agent == *agent)
        .ok_or_else(|| NotReachable::Agent(agent.clone()))
}

/// Checks that the relay lists `dest` for this credential; gives the path
/// its streams will take.
///
/// # Errors
/// [`NotReachable`], with what the agent offers instead.
pub async fn ensure_target(client: &Client, dest: &AgentTarget) -> Result<Carrier, NotReachable> {
    let agent = listed(client, &dest.agent).await?;
    if agent.targets.contains(&dest.target) {
        return Ok(client
            .connection_for(&dest.agent, Capabilities::TCP, &dest.target)
            .await?);
    }
    let offered: Vec<String> = agent.targets.iter().map(ToString::to_string).collect();
    Err(NotReachable::Target {
        agent: dest.agent.clone(),
        target: dest.target.clone(),
        offered: if offered.is_empty() {
            "nothing".to_owned()
        } else {
            offered.join(", ")
        },
    })
}

/// Checks that the relay lists SOCKS on `agent` for this credential.
///
/// # Errors
/// [`NotReachable`].
pub async fn ensure_socks(client: &Client, agent: &AgentName) -> Result<Carrier, NotReachable> {
    let listed = listed(client, agent).await?;
    if listed.sessions.contains(Capabilities::SOCKS) {
        // A SOCKS stream's target is its kind's name (proto `Open`).
        let target = TargetName::try_from("socks").map_err(OpenError::from)?;
        Ok(client
            .connection_for(agent, Capabilities::SOCKS, &target)
            .await?)
    } else {
        Err(NotReachable::Socks(agent.clone()))
    }
}
