//! End-to-end mode: a QUIC connection to the agent itself, which the relay
//! forwards by connection ID without decrypting (DESIGN "end-to-end mode").
//!
//! ```text
//! relay connection:  Direct { agent, prefix } ─▶ relay ─ Grant ─▶ agent
//!                    ◀─ Path { agent's prefix }   (both streams held: the lease)
//! same UDP socket:   QUIC + mTLS to the relay's address, destination IDs with
//!                    the agent's prefix ─▶ relay forwards ─▶ agent
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proto::CidPrefix;
use proto::{AgentName, Direct, Frame, Role};
use relay_net::cert::PeerCert;
use relay_net::credential::Loaded;
use relay_net::endpoint::Transport;
use relay_net::framed::{write_frame, FrameReader};

/// How long a direct handshake may take before the relay path is used.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the relay path is used without asking again after a direct
/// path could not be had: an open must not pay a failed attempt each time.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// What a new direct path is set up with.
pub struct Via<'a> {
    /// The connection to the relay, which grants the path.
    pub relay: &'a quinn::Connection,
    /// The endpoint of that connection: the path must leave from its socket.
    pub endpoint: &'a quinn::Endpoint,
    /// The prefix of that endpoint's connection IDs.
    pub prefix: CidPrefix,
    /// Our credential (the agent checks the same certificate).
    pub credential: &'a Loaded,
    /// Transport settings.
    pub transport: &'a Transport,
}

/// A direct path: the connection, and the watch on the `Direct` stream
/// whose life is the grant's (it ends when this is dropped).
#[derive(Debug)]
struct DirectPath {
    conn: quinn::Connection,
    _lease: tokio::sync::oneshot::Sender<()>,
}

/// Holds the `Direct` stream until the relay ends it (withdrawal,
/// revocation, relay lost) or the path is dropped, then closes the direct
/// connection: the agent's own close cannot reach us once the relay has
/// dropped the route.
async fn hold_lease(
    send: quinn::SendStream,
    mut reader: FrameReader,
    conn: quinn::Connection,
    dropped: tokio::sync::oneshot::Receiver<()>,
) {
    tokio::select! {
        _ = reader.read() => conn.close(
            proto::ErrorCode::PATH_WITHDRAWN.0.into(),
            b"the relay ended the direct path",
        ),
        _ = dropped => conn.close(0u32.into(), b"client done"),
    }
    drop(send);
}

/// The direct paths of one client, by agent.
#[derive(Debug, Default)]
pub struct Paths {
    by_agent: HashMap<AgentName, DirectPath>,
    /// When a path to an agent last could not be had.
    failed: HashMap<AgentName, std::time::Instant>,
}

impl Paths {
    /// Closes every direct path.
    pub fn close(&mut self) {
        self.by_agent.clear();
    }

    /// Whether a path to `agent` failed so recently that the relay path
    /// should be used without asking.
    pub fn resting(&self, agent: &AgentName) -> bool {
        self.failed
            .get(agent)
            .is_some_and(|t| t.elapsed() < RETRY_AFTER)
    }

    /// The live direct connection to `agent`, if there is one.
    pub fn live(&mut self, agent: &AgentName) -> Option<quinn::Connection> {
        match self.by_agent.get(agent) {
            Some(path) if path.conn.close_reason().is_none() => Some(path.conn.clone()),
            Some(_) => {
                self.by_agent.remove(agent);
                None
            }
            None => None,
        }
    }

    /// Asks the relay for a path to `agent` and connects through it.
    ///
    /// # Errors
    /// Why there is no path (refused, agent too old, handshake failed), in
    /// words for a log line; the caller falls back to the relay path.
    pub async fn open(
        &mut self,
        agent: &AgentName,
        via: Via<'_>,
    ) -> Result<quinn::Connection, String> {
        let opened = self.connect(agent, via).await;
        match &opened {
            Ok(_) => self.failed.remove(agent),
            Err(_) => self.failed.insert(agent.clone(), std::time::Instant::now()),
        };
        opened
    }

    async fn connect(
        &mut self,
        agent: &AgentName,
        via: Via<'_>,
    ) -> Result<quinn::Connection, String> {
        let (mut send, recv) = via.relay.open_bi().await.map_err(|e| e.to_string())?;
        let ask = Direct {
            agent: agent.clone(),
            prefix: via.prefix,
        };
        write_frame(&mut send, ask)
            .await
            .map_err(|e| e.to_string())?;
        let mut reader = FrameReader::new(recv);
        let agent_prefix = match reader.expect(HANDSHAKE_TIMEOUT).await {
            Ok(Frame::Path(path)) => path.prefix,
            Ok(Frame::Refused(r)) => return Err(r.to_string()),
            Ok(other) => return Err(format!("the relay answered {}", other.frame_type())),
            Err(e) => return Err(e.to_string()),
        };
        let cred = via.credential;
        let tls = relay_net::tls::direct_client_config(
            &cred.credential.certificate,
            cred.key_pem(),
            &cred.credential.ca,
        )
        .map_err(|e| e.to_string())?;
        let config = relay_net::endpoint::direct_client(Arc::new(tls), via.transport, agent_prefix);
        let connecting = via
            .endpoint
            .connect_with(config, via.relay.remote_address(), "relay-agent")
            .map_err(|e| e.to_string())?;
        let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(format!("direct handshake: {e}")),
            Err(_) => return Err(format!("no direct handshake within {HANDSHAKE_TIMEOUT:?}")),
        };
        let peer = PeerCert::of_connection(&conn).map_err(|e| e.to_string())?;
        if peer.identity.role != Role::Agent
            || peer.identity.name != *agent.as_name()
            || peer.relay != cred.cert.relay
        {
            conn.close(
                proto::ErrorCode::UNAUTHORIZED.0.into(),
                b"not the agent asked for",
            );
            return Err(format!(
                "the direct path answered as {}, not agent {agent}",
                peer.identity
            ));
        }
        tracing::info!(%agent, "direct path up");
        let (lease, dropped) = tokio::sync::oneshot::channel();
        tokio::spawn(hold_lease(send, reader, conn.clone(), dropped));
        self.by_agent.insert(
            agent.clone(),
            DirectPath {
                conn: conn.clone(),
                _lease: lease,
            },
        );
        Ok(conn)
    }
}
