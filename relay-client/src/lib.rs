//! `relay-client`: the operator's and CI job's end of the tunnel.
//!
//! A [`Client`] holds one QUIC connection to the relay (re-dialled when it
//! is lost) and opens one stream per forwarded connection. Commands live in
//! [`cmd`]: `forward` (local port), `connect` (stdin/stdout, for ssh
//! ProxyCommand), `shell` (interactive terminal on the agent), `run` (a
//! remote command in a pipeline), `socks` (a local SOCKS5 proxy whose
//! connections leave from an agent), `with` (run a command with a forward
//! and a kubeconfig for it), `kubeconfig`, `list`, `demo`, `bench` (its
//! measurements: [`bench`]); [`session`] is the part `shell` and `run`
//! share, [`kube`] the kubeconfig rewriting, [`direct`] end-to-end mode.

use std::time::Duration;

use proto::{AgentInfo, AgentName, Frame, List, Open, Refused, StreamKind, TargetName};
use relay_net::credential::Loaded;
use relay_net::dial::{describe, dial, DialError, RelayConn};
use relay_net::endpoint::Transport;
use relay_net::framed::{write_frame, FrameReader};
use tokio::sync::Mutex;

pub mod bench;
pub mod cli;
pub mod cmd;
pub mod direct;
pub mod kube;
pub mod listen;
pub mod local;
pub mod session;
pub mod stream;

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The relay could not be reached.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The relay or the agent refused the open.
    #[error("{0}")]
    Refused(Refused),
    /// The stream failed (connection lost).
    #[error("{0}")]
    Stream(String),
}

/// `agent/target`, as the commands take it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The agent.
    pub agent: AgentName,
    /// The target it exposes.
    pub target: TargetName,
}

impl std::str::FromStr for Destination {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (agent, target) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not AGENT/TARGET (e.g. aks-prod/kube-api)"))?;
        Ok(Destination {
            agent: agent.parse().map_err(|e| format!("agent: {e}"))?,
            target: target.parse().map_err(|e| format!("target: {e}"))?,
        })
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.agent, self.target)
    }
}

impl Destination {
    /// The `Open` frame for a TCP stream to this destination.
    pub fn open(&self) -> Open {
        Open {
            agent: self.agent.clone(),
            target: self.target.clone(),
            kind: StreamKind::Tcp,
        }
    }
}

/// A client of the relay: one connection, shared by every stream; in
/// end-to-end mode also one direct path per agent ([`direct`]).
#[derive(Debug)]
pub struct Client {
    /// The credential it dials with.
    pub credential: Loaded,
    transport: Transport,
    connect_timeout: Duration,
    conn: Mutex<Option<RelayConn>>,
    /// `Some` in end-to-end mode: the direct paths, by agent.
    direct: Option<Mutex<direct::Paths>>,
}

impl Client {
    /// A client that dials lazily on first use.
    pub fn new(credential: Loaded) -> Client {
        Client {
            credential,
            transport: Transport::client(),
            connect_timeout: Duration::from_secs(10),
            conn: Mutex::new(None),
            direct: None,
        }
    }

    /// End-to-end mode: streams to an agent travel on a QUIC connection to
    /// the agent itself, which the relay forwards without decrypting; where
    /// the relay or agent cannot offer one, the relay path is used.
    pub fn end_to_end(mut self, on: bool) -> Client {
        self.direct = on.then(|| Mutex::new(direct::Paths::default()));
        self
    }

    /// Sets the handshake deadline.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Client {
        self.connect_timeout = timeout;
        self
    }

    /// The live connection to the relay, dialling (again) if there is none.
    ///
    /// # Errors
    /// If the relay cannot be reached.
    pub async fn connection(&self) -> Result<quinn::Connection, DialError> {
        let mut slot = self.conn.lock().await;
        if let Some(rc) = slot.as_ref() {
            match rc.conn.close_reason() {
                None => return Ok(rc.conn.clone()),
                Some(reason) => {
                    tracing::info!(reason = %describe(&reason), "relay connection lost; re-dialling")
                }
            }
        }
        let rc = dial(&self.credential, &self.transport, self.connect_timeout).await?;
        let conn = rc.conn.clone();
        *slot = Some(rc);
        Ok(conn)
    }

    /// The connection that carries streams to `agent`: in end-to-end mode
    /// its direct path (set up on first use, again once lost), else (or if
    /// there can be none) the relay connection.
    ///
    /// # Errors
    /// If the relay cannot be reached.
    pub async fn connection_to(&self, agent: &AgentName) -> Result<quinn::Connection, DialError> {
        let Some(paths) = &self.direct else {
            return self.connection().await;
        };
        let mut paths = paths.lock().await;
        if let Some(conn) = paths.live(agent) {
            return Ok(conn);
        }
        if paths.resting(agent) {
            return self.connection().await;
        }
        let relay = self.connection().await?;
        let (endpoint, prefix) = {
            let slot = self.conn.lock().await;
            match slot.as_ref() {
                Some(rc) => (rc.endpoint.clone(), rc.prefix),
                None => return Ok(relay),
            }
        };
        let via = direct::Via {
            relay: &relay,
            endpoint: &endpoint,
            prefix,
            credential: &self.credential,
            transport: &self.transport,
        };
        match paths.open(agent, via).await {
            Ok(conn) => Ok(conn),
            Err(reason) => {
                tracing::warn!(%agent, %reason, "no direct path; using the relay path (asking again in 30 s)");
                Ok(relay)
            }
        }
    }

    /// Opens a stream and writes `Open`; the answer is read by the caller
    /// (see [`stream::Answered`]) so data can follow without a round trip.
    ///
    /// # Errors
    /// If the relay cannot be reached or the connection fails.
    pub async fn open_raw(
        &self,
        open: Open,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), OpenError> {
        let conn = self.connection_to(&open.agent).await?;
        let (mut send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| OpenError::Stream(describe(&e)))?;
        if let Err(e) = write_frame(&mut send, open).await {
            return Err(OpenError::Stream(self.explain(e.to_string()).await));
        }
        Ok((send, recv))
    }

    /// Opens a stream to `dest` and waits for the agent's answer.
    ///
    /// # Errors
    /// A refusal (with the relay's or agent's message) or a failure.
    pub async fn open(&self, dest: &Destination) -> Result<stream::Opened, OpenError> {
        self.open_with(dest.open()).await
    }

    /// Sends `open` (of a kind that carries raw bytes: `Tcp`, `Socks`) and
    /// waits for the agent's answer.
    ///
    /// # Errors
    /// A refusal (with the relay's or agent's message) or a failure.
    pub async fn open_with(&self, open: Open) -> Result<stream::Opened, OpenError> {
        let (send, recv) = self.open_raw(open).await?;
        let mut reader = FrameReader::new(recv);
        match reader.read().await {
            Ok(Some(Frame::Accepted(_))) => {
                let (recv, early) = reader.into_parts();
                Ok(stream::Opened { send, recv, early })
            }
            Ok(Some(Frame::Refused(r))) => Err(OpenError::Refused(r)),
            Ok(Some(other)) => Err(OpenError::Stream(format!(
                "unexpected {} from the relay",
                other.frame_type()
            ))),
            Ok(None) => Err(OpenError::Stream(
                "the relay closed the stream without an answer".into(),
            )),
            Err(e) => Err(OpenError::Stream(self.explain(e.to_string()).await)),
        }
    }

    /// Opens a `Shell` or `Exec` session on `agent` and waits until the
    /// agent has started it. Returns the stream, with the agent's frames
    /// that arrived behind `Accepted` still buffered in the reader.
    ///
    /// # Errors
    /// A refusal (policy, agent without `--allow-shell`, …) or a failure.
    pub async fn open_session(
        &self,
        agent: &AgentName,
        kind: StreamKind,
    ) -> Result<(quinn::SendStream, FrameReader), OpenError> {
        // Sessions dial nothing: the target only names the kind (proto `Open`).
        let target = TargetName::try_from(kind.as_str())
            .map_err(|e| OpenError::Stream(format!("target name: {e}")))?;
        let open = Open {
            agent: agent.clone(),
            target,
            kind,
        };
        let (send, recv) = self.open_raw(open).await?;
        let mut reader = FrameReader::new(recv);
        match reader.read().await {
            Ok(Some(Frame::Accepted(_))) => Ok((send, reader)),
            Ok(Some(Frame::Refused(r))) => Err(OpenError::Refused(r)),
            Ok(Some(other)) => Err(OpenError::Stream(format!(
                "unexpected {} from the relay",
                other.frame_type()
            ))),
            Ok(None) => Err(OpenError::Stream(
                "the relay closed the stream without an answer".into(),
            )),
            Err(e) => Err(OpenError::Stream(self.explain(e.to_string()).await)),
        }
    }

    /// Agents this client may reach, with their targets.
    ///
    /// # Errors
    /// If the relay cannot be reached or the answer is malformed.
    pub async fn list(&self) -> Result<Vec<AgentInfo>, OpenError> {
        let (mut send, recv) = {
            let conn = self.connection().await?;
            conn.open_bi()
                .await
                .map_err(|e| OpenError::Stream(describe(&e)))?
        };
        write_frame(&mut send, List)
            .await
            .map_err(|e| OpenError::Stream(e.to_string()))?;
        let _ = send.finish();
        let mut reader = FrameReader::new(recv);
        let mut agents = Vec::new();
        loop {
            match reader.read().await {
                Ok(Some(Frame::AgentInfo(info))) => agents.push(info),
                Ok(Some(Frame::Refused(r))) => return Err(OpenError::Refused(r)),
                Ok(Some(other)) => {
                    return Err(OpenError::Stream(format!(
                        "unexpected {}",
                        other.frame_type()
                    )))
                }
                Ok(None) => return Ok(agents),
                Err(e) => return Err(OpenError::Stream(self.explain(e.to_string()).await)),
            }
        }
    }

    /// A stream error, with the connection's close reason if it was closed
    /// (e.g. revoked): that is the part a person can act on.
    pub async fn explain(&self, err: String) -> String {
        let slot = self.conn.lock().await;
        match slot.as_ref().and_then(|rc| rc.conn.close_reason()) {
            Some(reason) => describe(&reason),
            None => err,
        }
    }

    /// Closes the connection cleanly (after streams are done).
    pub async fn close(&self) {
        if let Some(paths) = &self.direct {
            paths.lock().await.close();
        }
        if let Some(rc) = self.conn.lock().await.take() {
            rc.conn.close(0u32.into(), b"client done");
            let _ = tokio::time::timeout(Duration::from_secs(1), rc.endpoint.wait_idle()).await;
        }
    }
}
