//! `relay-client`: the operator's and CI job's end of the tunnel.
//!
//! A [`Client`] holds one QUIC connection to the relay (re-dialled when it
//! is lost) and opens one stream per forwarded connection, to an
//! [`AgentTarget`] (`agent/target`). Commands live in [`cmd`]: `forward`
//! (local port), `connect` (stdin/stdout, for ssh ProxyCommand), `shell`
//! (interactive terminal on the agent), `run` (a remote command in a
//! pipeline), `socks` (a local SOCKS5 proxy whose connections leave from an
//! agent), `with` (run a command with a forward and a kubeconfig for it),
//! `kubeconfig`, `list`, `demo`, `bench` (its measurements: [`bench`]).
//!
//! Around them: [`program`] is the frame pump `shell` and `run` share,
//! [`stream`] a stream whose answer is read in front of its data, [`error`]
//! what failed and on which side, [`kube`] the kubeconfig rewriting,
//! [`direct`] end-to-end mode ([`direct::DirectPaths`], one per client),
//! [`listen`] the accept loop of `forward` and `socks`, [`local`] the
//! programs run on loopback by `demo` and `bench --local`.

use std::sync::Arc;
use std::time::Duration;

use proto::{AgentInfo, AgentName, Frame, List, Open, Role, StreamKind, TargetName};
use relay_net::answer::{read_answer, AnswerError};
use relay_net::credential::Loaded;
use relay_net::dial::DialError;
use relay_net::endpoint::{Transport, Via};
use relay_net::framed::{write_frame, FrameReader};
use relay_net::renew::Reloading;

pub mod bench;
pub mod cli;
pub mod cmd;
pub mod direct;
pub mod error;
pub mod kube;
pub mod listen;
pub mod local;
pub mod login;
pub mod program;
mod relay;
pub mod stream;

pub use error::{Cause, OpenError, Side, StreamError};

/// `agent/target`, as the commands take it: a target an agent exposes by
/// name (not [`proto::Destination`], the host and port a SOCKS stream asks
/// an agent to dial).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentTarget {
    /// The agent.
    pub agent: AgentName,
    /// The target it exposes.
    pub target: TargetName,
}

impl std::str::FromStr for AgentTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (agent, target) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not AGENT/TARGET (e.g. aks-prod/kube-api)"))?;
        Ok(AgentTarget {
            agent: agent.parse().map_err(|e| format!("agent: {e}"))?,
            target: target.parse().map_err(|e| format!("target: {e}"))?,
        })
    }
}

impl std::fmt::Display for AgentTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.agent, self.target)
    }
}

impl AgentTarget {
    /// The `Open` frame for a TCP stream to this target.
    pub fn open(&self) -> Open {
        Open {
            agent: self.agent.clone(),
            target: self.target.clone(),
            kind: StreamKind::Tcp,
        }
    }
}

/// A credential of the wrong role for this program.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path}: this is {role} credential ({identity}); relay-client needs a client credential: \
     relay-server issue client {name}",
    path = .path.display(),
    role = match .identity.role { Role::Agent => "an agent", _ => "a relay" },
    name = .identity.name
)]
pub struct WrongRole {
    /// The file.
    pub path: std::path::PathBuf,
    /// Whose it is.
    pub identity: proto::Identity,
}

/// Checks that `loaded` is a client credential: an agent's would reach the
/// relay and then fail with a protocol error nobody can act on.
///
/// # Errors
/// [`WrongRole`], naming the command that issues the right one.
pub fn check_role(loaded: &Loaded) -> Result<(), WrongRole> {
    if loaded.cert.identity.role == Role::Client {
        return Ok(());
    }
    Err(WrongRole {
        path: loaded.path.clone(),
        identity: loaded.cert.identity.clone(),
    })
}

/// The connection a stream to an agent travels on, and who is at its
/// other end (so a failure names the right side).
#[derive(Clone, Debug)]
pub struct Carrier {
    /// The QUIC connection.
    pub conn: quinn::Connection,
    /// [`Side::Relay`], or [`Side::Agent`] for a direct path.
    pub peer: Side,
    /// On a direct path, what its grant holds (`None`: not said, by a
    /// relay older than `Path::reach`).
    reach: Option<Arc<proto::Reach>>,
    /// On a direct path, the hold that keeps it up for the stream.
    in_use: direct::InUse,
}

impl Carrier {
    fn relay(conn: quinn::Connection) -> Carrier {
        Carrier {
            conn,
            peer: Side::Relay,
            reach: None,
            in_use: direct::InUse::default(),
        }
    }

    fn direct((conn, reach, in_use): direct::Live) -> Carrier {
        Carrier {
            conn,
            peer: Side::Agent,
            reach,
            in_use,
        }
    }

    /// Whether a stream of `kind` to `target` belongs on this connection:
    /// always on the relay path; on a direct path if its grant holds it.
    pub fn carries(&self, kind: proto::Capabilities, target: &TargetName) -> bool {
        self.reach.as_ref().is_none_or(|r| r.covers(kind, target))
    }

    /// Which path this is, as the commands print it: `end-to-end` or
    /// `relay path`.
    pub fn path_name(&self) -> &'static str {
        match self.peer {
            Side::Agent => "end-to-end",
            Side::Relay | Side::Local => "relay path",
        }
    }

    /// A failure of a stream on this connection, as a [`StreamError`].
    pub fn failed(&self, cause: Cause) -> StreamError {
        StreamError::on(&self.conn, self.peer, cause)
    }
}

/// A client of the relay: one connection, shared by every stream; in
/// end-to-end mode also one direct path per agent ([`direct`]).
#[derive(Debug)]
pub struct Client {
    /// The credential it dials with, following its file: a re-dial after
    /// the file was renewed uses the new certificate ([`Client::credential`]).
    credential: Reloading,
    transport: Transport,
    connect_timeout: Duration,
    relay: std::sync::Arc<relay::RelayLink>,
    /// `Some` in end-to-end mode: the direct paths, by agent.
    direct: Option<direct::DirectPaths>,
    /// Whether a failed direct path falls back to the relay path.
    mode: direct::EndToEnd,
}

impl Client {
    /// A client that dials lazily on first use, in the default end-to-end
    /// mode ([`direct::EndToEnd::Auto`]).
    pub fn new(credential: Loaded) -> Client {
        Client {
            credential: Reloading::new(credential),
            transport: Transport::client(),
            connect_timeout: Duration::from_secs(10),
            relay: std::sync::Arc::default(),
            direct: None,
            mode: direct::EndToEnd::Off,
        }
        .end_to_end(direct::EndToEnd::default())
    }

    /// End-to-end mode: streams to an agent travel on a QUIC connection to
    /// the agent itself, which the relay forwards without decrypting. Where
    /// the relay or agent cannot offer one, [`direct::EndToEnd::Strict`]
    /// (also `true`) fails the open, [`direct::EndToEnd::Auto`] (the
    /// default) uses the relay path and says so once per agent;
    /// [`direct::EndToEnd::Off`] (`false`) always uses the relay path.
    pub fn end_to_end(mut self, mode: impl Into<direct::EndToEnd>) -> Client {
        self.mode = mode.into();
        self.direct = self.mode.is_on().then(direct::DirectPaths::default);
        self
    }

    /// The end-to-end mode ([`Client::end_to_end`]).
    pub fn end_to_end_mode(&self) -> direct::EndToEnd {
        self.mode
    }

    /// How the relay is reached (`--transport`), and the relay's TCP
    /// carrier port where it is not the QUIC port.
    pub fn via(mut self, via: Via, tcp_port: Option<u16>) -> Client {
        self.transport.via = via;
        self.transport.tcp_port = tcp_port;
        self
    }

    /// The HTTP proxy the TCP carrier goes through; `None` takes
    /// `HTTPS_PROXY`/`NO_PROXY` from the environment.
    pub fn through_proxy(mut self, proxy: Option<String>) -> Client {
        self.transport.proxy = proxy;
        self
    }

    /// Sets the handshake deadline.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Client {
        self.connect_timeout = timeout;
        self
    }

    /// The credential to dial with now: the file's, if it changed since it
    /// was last read (two `stat`s) and still holds this client's identity;
    /// else the one in use (a refused file is logged, once per change).
    pub fn credential(&self) -> Arc<Loaded> {
        self.credential.latest()
    }

    /// The credential file this client follows, for a SIGHUP handler
    /// ([`relay_net::signals::reload_on_hangup`]).
    pub fn credential_file(&self) -> Reloading {
        self.credential.clone()
    }

    /// The live connection to a relay, dialling (again) if there is none
    /// or it went away or stopped answering (module `relay`).
    ///
    /// # Errors
    /// If no relay can be reached.
    pub async fn connection(&self) -> Result<quinn::Connection, DialError> {
        self.relay
            .connection(&self.credential, &self.transport, self.connect_timeout)
            .await
    }

    /// The connection that carries streams to `agent`: in end-to-end mode
    /// its direct path (set up on first use, again once lost); else the
    /// relay connection, also in [`direct::EndToEnd::Auto`] mode where no
    /// path can be had. Setting up the path to one agent holds up only
    /// opens to that agent.
    ///
    /// # Errors
    /// If the relay cannot be reached; in strict end-to-end mode, also why
    /// there is no direct path ([`direct::NoDirectPath`]).
    pub async fn connection_to(&self, agent: &AgentName) -> Result<Carrier, OpenError> {
        let Some(paths) = &self.direct else {
            return Ok(Carrier::relay(self.connection().await?));
        };
        let strict = self.mode == direct::EndToEnd::Strict;
        let entry = paths.entry(agent);
        let mut path = entry.lock().await;
        if let Some(live) = path.live() {
            return Ok(Carrier::direct(live));
        }
        let (relay, departure) = self
            .relay
            .connection_watched(&self.credential, &self.transport, self.connect_timeout)
            .await?;
        // Strict mode asks again at every open: nothing else may carry it.
        if path.resting() && !strict {
            return Ok(Carrier::relay(relay));
        }
        let Some((endpoint, prefix)) = self.relay.endpoint().await else {
            // This client closed meanwhile.
            let closed = quinn::ConnectionError::LocallyClosed;
            return Err(StreamError::connection(Side::Relay, closed).into());
        };
        let credential = self.credential.current();
        let via = direct::Via {
            relay: &relay,
            departure,
            entry: Arc::downgrade(&entry),
            endpoint: &endpoint,
            prefix,
            credential: &credential,
            transport: &self.transport,
            regrant: direct::Regrant {
                link: self.relay.clone(),
                credential: self.credential.clone(),
                transport: self.transport.clone(),
                timeout: self.connect_timeout,
            },
        };
        match path.open(agent, via).await {
            Ok(live) => Ok(Carrier::direct(live)),
            Err(reason) if strict => Err(direct::NoDirectPath {
                agent: agent.clone(),
                reason,
            }
            .into_open_error()),
            // The relay path would hear the same from the same relay: one
            // refusal (and one audit line), not two.
            Err(direct::NoPath::Refused(r)) if direct::is_final(&r) => Err(OpenError::Refused(r)),
            Err(reason) => {
                if !paths.first_fallback(agent) {
                    tracing::debug!(%agent, %reason, "no end-to-end path; using the relay path");
                } else if let direct::NoPath::Refused(_) = reason {
                    // The relay's policy or the agent's version: as configured.
                    tracing::info!(%agent, %reason, "no end-to-end path; using the relay path, which the relay can read (said once)");
                } else {
                    tracing::warn!(%agent, %reason, "no end-to-end path; using the relay path, which the relay can read (asking again every 30 s; said once)");
                }
                Ok(Carrier::relay(relay))
            }
        }
    }

    /// The connection that carries a stream of `kind` to `target` on
    /// `agent`: the agent's path ([`Client::connection_to`]) where its grant
    /// holds the stream; else, in auto mode, the relay path (the policy
    /// allows that stream only there: `direct = "deny"`).
    ///
    /// # Errors
    /// As [`Client::connection_to`]; in strict mode also a stream the
    /// path's grant does not hold ([`direct::NoPath::OutsideGrant`]).
    pub async fn connection_for(
        &self,
        agent: &AgentName,
        kind: proto::Capabilities,
        target: &TargetName,
    ) -> Result<Carrier, OpenError> {
        let carrier = self.connection_to(agent).await?;
        if carrier.carries(kind, target) {
            return Ok(carrier);
        }
        if self.mode == direct::EndToEnd::Strict {
            let what = if kind == proto::Capabilities::TCP {
                format!("tcp {target}")
            } else {
                format!("{target} sessions")
            };
            let reason = direct::NoPath::OutsideGrant(what);
            return Err(direct::NoDirectPath {
                agent: agent.clone(),
                reason,
            }
            .into_open_error());
        }
        tracing::debug!(%agent, %target, "not in the end-to-end path's grant: using the relay path");
        Ok(Carrier::relay(self.connection().await?))
    }

    /// Opens a stream and writes `Open`; the answer is read by the caller
    /// (see [`stream::Answered`]) so data can follow without a round trip.
    /// The raw stream does not keep up a direct path whose relay the client
    /// leaves ([`direct::InUse`]); [`Client::open_early`] does.
    ///
    /// # Errors
    /// If the relay cannot be reached or the connection fails.
    pub async fn open_raw(
        &self,
        open: Open,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), OpenError> {
        let (send, recv, _) = self.open_carried(open).await?;
        Ok((send, recv))
    }

    /// Opens a stream and writes `Open`; the answer is read in front of the
    /// first byte from the agent ([`stream::Answered`]), so data can follow
    /// at once.
    ///
    /// # Errors
    /// If the relay cannot be reached or the connection fails.
    pub async fn open_early(
        &self,
        open: Open,
    ) -> Result<(quinn::SendStream, stream::Answered), OpenError> {
        let (send, recv, carrier) = self.open_carried(open).await?;
        Ok((
            send,
            stream::Answered::on(recv, carrier.peer, carrier.in_use),
        ))
    }

    /// As [`Client::open_raw`], also naming the connection it went on.
    async fn open_carried(
        &self,
        open: Open,
    ) -> Result<(quinn::SendStream, quinn::RecvStream, Carrier), OpenError> {
        let carrier = self
            .connection_for(&open.agent, open.kind.capability(), &open.target)
            .await?;
        let (mut send, recv) = carrier
            .conn
            .open_bi()
            .await
            .map_err(|e| StreamError::connection(carrier.peer, e))?;
        if let Err(e) = write_frame(&mut send, open).await {
            return Err(carrier.failed(Cause::Write(e)).into());
        }
        Ok((send, recv, carrier))
    }

    /// Opens a stream to `dest` and waits for the agent's answer.
    ///
    /// # Errors
    /// A refusal (with the relay's or agent's message) or a failure.
    pub async fn open(&self, dest: &AgentTarget) -> Result<stream::Opened, OpenError> {
        self.open_with(dest.open()).await
    }

    /// Sends `open` (of a kind that carries raw bytes: `Tcp`, `Socks`) and
    /// waits for the agent's answer.
    ///
    /// # Errors
    /// A refusal (with the relay's or agent's message) or a failure.
    pub async fn open_with(&self, open: Open) -> Result<stream::Opened, OpenError> {
        let (send, reader, carrier) = self.open_answered(open).await?;
        let (recv, early) = reader.into_parts();
        Ok(stream::Opened {
            send,
            recv,
            early,
            in_use: carrier.in_use,
        })
    }

    /// Sends `open` and reads the answer: the stream, with what came behind
    /// `Accepted` still in the reader.
    ///
    /// A `Tcp` or `Socks` open whose direct path closed before the answer
    /// (withdrawn, or the agent gone, as the open raced the news) is sent
    /// once more, on a new path or the relay path: nothing was served on it.
    /// A session is not, as its program may have started.
    async fn open_answered(
        &self,
        open: Open,
    ) -> Result<(quinn::SendStream, FrameReader, Carrier), OpenError> {
        let mut again =
            matches!(open.kind, StreamKind::Tcp | StreamKind::Socks { .. }).then(|| open.clone());
        let mut open = open;
        loop {
            let (send, recv, carrier) = self.open_carried(open).await?;
            let mut reader = FrameReader::new(recv);
            let e = match read_answer(&mut reader, None).await {
                Ok(_) => return Ok((send, reader, carrier)),
                Err(AnswerError::Refused(r)) => return Err(OpenError::Refused(r)),
                Err(e) => e,
            };
            let path_closed = carrier.peer == Side::Agent && carrier.conn.close_reason().is_some();
            match again.take() {
                Some(retry) if path_closed => {
                    tracing::debug!(agent = %retry.agent, err = %e, "the direct path closed under an open: sending it again");
                    open = retry;
                }
                _ => return Err(carrier.failed(Cause::Answer(e)).into()),
            }
        }
    }

    /// Opens a `Shell` or `Exec` session on `agent` and waits until the
    /// agent has started its program. Returns the stream, with the agent's
    /// frames that arrived behind `Accepted` still buffered in the reader.
    /// It does not keep up a direct path whose relay the client leaves
    /// ([`direct::InUse`]); [`Client::open_program`] does.
    ///
    /// # Errors
    /// A refusal (policy, agent without `--allow-shell`, …) or a failure.
    pub async fn open_session(
        &self,
        agent: &AgentName,
        kind: StreamKind,
    ) -> Result<(quinn::SendStream, FrameReader), OpenError> {
        let (send, reader, _) = self.open_answered(session_open(agent, kind)?).await?;
        Ok((send, reader))
    }

    /// As [`Client::open_session`], with the frame pump started.
    ///
    /// # Errors
    /// A refusal or a failure.
    pub async fn open_program(
        &self,
        agent: &AgentName,
        kind: StreamKind,
    ) -> Result<program::RemoteProgram, OpenError> {
        let (send, reader, carrier) = self.open_answered(session_open(agent, kind)?).await?;
        Ok(program::RemoteProgram::new(
            send,
            reader,
            carrier.peer,
            carrier.in_use,
        ))
    }

    /// Agents this client may reach, with their targets.
    ///
    /// # Errors
    /// If the relay cannot be reached or the answer is malformed.
    pub async fn list(&self) -> Result<Vec<AgentInfo>, OpenError> {
        let relay = Carrier::relay(self.connection().await?);
        let (mut send, recv) = relay
            .conn
            .open_bi()
            .await
            .map_err(|e| StreamError::connection(Side::Relay, e))?;
        write_frame(&mut send, List)
            .await
            .map_err(|e| relay.failed(Cause::Write(e)))?;
        let _ = send.finish();
        let mut reader = FrameReader::new(recv);
        let mut agents = Vec::new();
        loop {
            match reader.read().await {
                Ok(Some(Frame::AgentInfo(info))) => agents.push(info),
                Ok(Some(Frame::Refused(r))) => return Err(OpenError::Refused(r)),
                Ok(Some(other)) => {
                    return Err(relay.failed(Cause::Unexpected(other.frame_type())).into())
                }
                Ok(None) => return Ok(agents),
                Err(e) => return Err(relay.failed(Cause::Frame(e)).into()),
            }
        }
    }

    /// The relay this client's connection goes to and how (QUIC, or the
    /// TCP carrier), if it is connected.
    pub async fn relay_in_use(&self) -> Option<(String, Via)> {
        self.relay.in_use().await
    }

    /// Why the relay connection is gone, if it is: the part of a stream's
    /// failure a person can act on (revoked, relay shutting down).
    pub async fn relay_lost(&self) -> Option<StreamError> {
        self.relay.lost().await
    }

    /// Closes the connection cleanly (after streams are done).
    pub async fn close(&self) {
        if let Some(paths) = &self.direct {
            paths.close();
        }
        self.relay.close().await;
    }
}

/// The `Open` of a shell or exec session on `agent`.
fn session_open(agent: &AgentName, kind: StreamKind) -> Result<Open, proto::NameError> {
    Ok(Open {
        agent: agent.clone(),
        target: kind_target(&kind)?,
        kind,
    })
}

/// The target of a stream kind that dials nothing by target name (`Shell`,
/// `Exec`, `Socks`): the kind's own name (proto `Open`).
///
/// # Errors
/// None for the kinds proto defines (their names are valid names).
pub fn kind_target(kind: &StreamKind) -> Result<TargetName, proto::NameError> {
    TargetName::try_from(kind.as_str())
}
