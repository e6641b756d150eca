//! End-to-end mode: a QUIC connection to the agent itself, which the relay
//! forwards by connection ID without decrypting (DESIGN "end-to-end mode").
//!
//! ```text
//! relay connection:  Direct { agent, prefix } ─▶ relay ─ Grant ─▶ agent
//!                    ◀─ Path { agent's prefix }   (both streams held: the lease)
//! same UDP socket:   QUIC + mTLS to the relay's address, destination IDs with
//!                    the agent's prefix ─▶ relay forwards ─▶ agent
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use proto::{AgentName, CidPrefix, Direct, Frame, Identity, Reach, Role};
use relay_net::cert::{CertError, PeerCert};
use relay_net::credential::Loaded;
use relay_net::endpoint::Transport;
use relay_net::framed::{write_frame, FrameError, FrameReader};
use relay_net::tls::TlsError;

use crate::relay::Departure;

/// How long a direct handshake may take before the relay path is used.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the relay path is used without asking again after a direct
/// path could not be had: an open must not pay a failed attempt each time.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Whether, and how strictly, a client uses end-to-end paths
/// (`--end-to-end[=MODE]`, `RELAY_END_TO_END`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EndToEnd {
    /// Every stream goes through the relay path.
    Off,
    /// Direct paths where they can be had, else the relay path (which the
    /// relay can read); the first fallback to each agent is logged. The
    /// default: the relay path stays for policies that want the relay to
    /// see each stream (`direct = "deny"`) and for agents that offer none.
    #[default]
    Auto,
    /// Direct paths only: one that cannot be had is an error, never a
    /// silent downgrade to a path the relay can read.
    Strict,
}

impl EndToEnd {
    /// Whether direct paths are tried at all.
    pub fn is_on(self) -> bool {
        self != EndToEnd::Off
    }
}

impl From<bool> for EndToEnd {
    /// `true` is [`EndToEnd::Strict`]: asking for end-to-end means it.
    fn from(on: bool) -> EndToEnd {
        if on {
            EndToEnd::Strict
        } else {
            EndToEnd::Off
        }
    }
}

impl std::str::FromStr for EndToEnd {
    type Err = String;
    fn from_str(s: &str) -> Result<EndToEnd, String> {
        match s.to_ascii_lowercase().as_str() {
            "" | "1" | "true" | "yes" | "on" | "strict" => Ok(EndToEnd::Strict),
            "auto" => Ok(EndToEnd::Auto),
            "0" | "false" | "no" | "off" => Ok(EndToEnd::Off),
            other => Err(format!(
                "{other:?} is not an end-to-end mode: give auto (the default: a direct path where one can be had, else the relay path), on (a direct path or an error) or off (the relay path only)"
            )),
        }
    }
}

/// A direct path could not be had in strict mode: the stream is not sent
/// on the relay path instead.
#[derive(Debug, thiserror::Error)]
#[error(
    "no end-to-end path to agent {agent}: {reason}; --end-to-end=on does not fall back to the \
     relay path (which the relay can read): give --end-to-end=auto (the default) to allow that"
)]
pub struct NoDirectPath {
    /// The agent asked for.
    pub agent: AgentName,
    /// Why there is no path.
    pub reason: NoPath,
}

impl NoDirectPath {
    /// The error for a stream that needed a path to `agent`. A relay's
    /// refusal stays a refusal (same code, so callers and exit statuses
    /// treat it as one); where the relay path could help, its message says
    /// how to allow it.
    pub fn into_open_error(self) -> crate::OpenError {
        let NoDirectPath { agent, reason } = self;
        match reason {
            NoPath::Refused(r) => {
                // The relay path would be refused as well (or already says
                // so): the relay's words are the whole story.
                if is_final(&r) || r.code == proto::ErrorCode::UNAUTHORIZED {
                    return crate::OpenError::Refused(r);
                }
                crate::OpenError::Refused(proto::Refused::new(
                    r.code,
                    NoDirectPath {
                        agent,
                        reason: NoPath::Refused(r),
                    }
                    .to_string(),
                ))
            }
            reason => crate::OpenError::NoDirectPath(NoDirectPath { agent, reason }),
        }
    }
}

/// Whether the relay's refusal of a path holds for the relay path too:
/// the agent is not there, or the caller is revoked. (`UNAUTHORIZED` may
/// be the policy's `direct = "deny"`, which the relay path is for.)
pub fn is_final(r: &proto::Refused) -> bool {
    [
        proto::ErrorCode::REVOKED,
        proto::ErrorCode::UNKNOWN_AGENT,
        proto::ErrorCode::AGENT_OFFLINE,
    ]
    .contains(&r.code)
}

/// What a new direct path is set up with.
pub struct Via<'a> {
    /// The connection to the relay, which grants the path.
    pub relay: &'a quinn::Connection,
    /// Whether the client has left that relay (the path then takes no
    /// new streams).
    pub(crate) departure: Departure,
    /// The agent's entry the path will live in, which forgets it then.
    pub(crate) entry: Weak<tokio::sync::Mutex<PathState>>,
    /// The endpoint of that connection: the path must leave from its socket.
    pub endpoint: &'a quinn::Endpoint,
    /// The prefix of that endpoint's connection IDs.
    pub prefix: CidPrefix,
    /// Our credential (the agent checks the same certificate).
    pub credential: &'a Loaded,
    /// Transport settings.
    pub transport: &'a Transport,
    /// How the path is granted again through another relay if the one that
    /// granted it is lost.
    pub regrant: Regrant,
}

/// What a direct path needs to be granted again through another relay when
/// the one that granted it is lost (issue #14): the client's relay link,
/// whose every connection leaves from the one endpoint the path uses, so
/// the new relay routes the path's datagrams as the old one did; the agent
/// sees its peer address change (a QUIC migration it validates) and keeps
/// the connection while any relay grants it.
#[derive(Clone, Debug)]
pub struct Regrant {
    pub(crate) link: Arc<crate::relay::RelayLink>,
    pub(crate) credential: relay_net::renew::Reloading,
    pub(crate) transport: Transport,
    pub(crate) timeout: Duration,
}

/// A grant held open: the `Direct` stream and the relay connection it is on.
struct Lease {
    /// Kept open: finishing it gives the grant back.
    _send: quinn::SendStream,
    reader: FrameReader,
    relay: quinn::Connection,
}

impl Regrant {
    /// Asks a relay (the current link, re-dialled if it is gone) for the
    /// path to `agent` again, from the same prefix; the agent must answer
    /// with the prefix the path already uses.
    async fn ask(
        &self,
        agent: &AgentName,
        prefix: CidPrefix,
        agent_prefix: CidPrefix,
    ) -> Result<Lease, NoPath> {
        let relay = self
            .link
            .connection(&self.credential, &self.transport, self.timeout)
            .await
            .map_err(NoPath::Relay)?;
        let (mut send, recv) = relay.open_bi().await?;
        let ask = Direct {
            agent: agent.clone(),
            prefix,
        };
        write_frame(&mut send, ask).await?;
        let mut reader = FrameReader::new(recv);
        match reader.expect(HANDSHAKE_TIMEOUT).await? {
            Frame::Path(path) if path.prefix == agent_prefix => Ok(Lease {
                _send: send,
                reader,
                relay,
            }),
            Frame::Path(_) => Err(NoPath::Moved),
            Frame::Refused(r) => Err(NoPath::Refused(r)),
            other => Err(NoPath::Unexpected(other.frame_type())),
        }
    }
}

/// Why there is no direct path to an agent.
#[derive(Debug, thiserror::Error)]
pub enum NoPath {
    /// The `Direct` stream to the relay could not be opened.
    #[error("cannot ask the relay: {0}")]
    Ask(#[from] quinn::ConnectionError),
    /// The `Direct` frame could not be sent.
    #[error("cannot ask the relay: {0}")]
    Send(#[from] quinn::WriteError),
    /// The relay (or the agent behind it) refused the path.
    #[error("{0}")]
    Refused(proto::Refused),
    /// The relay's answer did not arrive or could not be read.
    #[error("no answer from the relay: {0}")]
    Answer(#[from] FrameError),
    /// No relay could be reached to grant the path again.
    #[error("no relay to grant the path again: {0}")]
    Relay(relay_net::dial::DialError),
    /// The agent answers another relay from another endpoint (an agent
    /// that predates keeping one): the path cannot move there.
    #[error("the agent answers the other relay from another address; the path cannot move")]
    Moved,
    /// The path's grant does not hold this stream: the relay policy allows
    /// it only on the relay path.
    #[error("its grant does not hold {0} (the relay policy allows that only on the relay path: direct = \"deny\")")]
    OutsideGrant(String),
    /// The relay answered something else than `Path` or `Refused`.
    #[error("the relay answered {0}")]
    Unexpected(proto::FrameType),
    /// Our credential does not make a TLS configuration.
    #[error("credential: {0}")]
    Tls(#[from] TlsError),
    /// quinn would not start the handshake.
    #[error("cannot start the direct handshake: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The handshake with the agent failed.
    #[error("direct handshake: {0}")]
    Handshake(quinn::ConnectionError),
    /// The handshake with the agent did not complete in time.
    #[error("no direct handshake within {0:?}")]
    Timeout(Duration),
    /// The peer's certificate could not be read.
    #[error("the direct path's certificate: {0}")]
    Certificate(#[from] CertError),
    /// Someone else than the agent asked for answered.
    #[error("the direct path answered as {found}, not agent {asked}")]
    WrongPeer {
        /// The agent asked for.
        asked: AgentName,
        /// Who answered.
        found: Identity,
    },
}

/// A direct path: the connection, and the watch on the `Direct` stream
/// whose life is the grant's (it ends when this is dropped).
#[derive(Debug)]
pub struct DirectPath {
    conn: quinn::Connection,
    /// What the grant holds, as the relay said in `Path`.
    reach: Option<Arc<Reach>>,
    /// Whether the client has left the relay that granted it, and whether
    /// that relay was lost: then new streams take a new path through the
    /// relay the client uses now, and this one serves its own until they
    /// end (a draining relay exits at the end of its grace period; a grant
    /// held through another relay may not last).
    departure: Departure,
    retired: Arc<AtomicBool>,
    _lease: tokio::sync::oneshot::Sender<()>,
}

impl DirectPath {
    /// Whether new streams may start on this path.
    fn serves_new(&self) -> bool {
        self.conn.close_reason().is_none()
            && !self.retired.load(Ordering::Relaxed)
            && !self.departure.left()
    }
}

/// Retires a path from new streams: sets its flag and takes it out of its
/// agent's entry, so an idle client lets go of a draining relay at once
/// (the path closes, and its lease ends, when the last stream on it does).
struct Retire {
    retired: Arc<AtomicBool>,
    departure: Departure,
    entry: Weak<tokio::sync::Mutex<PathState>>,
    /// The path's connection, by `stable_id`.
    id: usize,
}

impl Retire {
    fn now(&self) {
        if self.retired.swap(true, Ordering::Relaxed) {
            return;
        }
        let (entry, id) = (self.entry.clone(), self.id);
        // Not awaited: the entry is locked while a path to the agent is set
        // up, and the lease's holder must not wait for that.
        tokio::spawn(async move {
            if let Some(entry) = entry.upgrade() {
                let mut state = entry.lock().await;
                if matches!(&*state, PathState::Live(p) if p.conn.stable_id() == id) {
                    *state = PathState::Unknown;
                }
            }
        });
    }
}

/// A stream's hold on the direct path it travels on: a path retired from
/// new streams ([`PathState::live`]) stays up until the last stream on it
/// ends. Empty for a stream on the relay path.
#[derive(Clone, Debug, Default)]
pub struct InUse {
    _path: Option<Arc<DirectPath>>,
}

/// A live path: its connection, what its grant holds, and the hold a
/// stream on it keeps.
pub type Live = (quinn::Connection, Option<Arc<Reach>>, InUse);

/// How often a path checks that its datagrams are answered: the relay
/// connection beside it carries no streams, so this is what notices a dead
/// relay (a check costs a timer wake; a false alarm one ping).
const STALL_CHECK: Duration = Duration::from_millis(100);

/// Holds the grant until the relay ends it (withdrawal, revocation) or the
/// path is dropped, then closes the direct connection: the agent's own
/// close cannot reach us once the relay has dropped the route. When the
/// relay that granted it is lost instead (its connection closed, or it
/// stopped answering while the path's datagrams went unanswered), the grant
/// is asked for again through another relay and the connection lives on
/// for the streams on it. A path whose relay is lost, or which the client
/// has left, is retired from new streams ([`Retire`]).
async fn hold_lease(
    mut lease: Lease,
    conn: quinn::Connection,
    dropped: tokio::sync::oneshot::Receiver<()>,
    held: Held,
) {
    let Held {
        agent,
        prefix,
        agent_prefix,
        regrant,
        retire,
    } = held;
    let mut dropped = std::pin::pin!(dropped);
    let mut look = tokio::time::interval(STALL_CHECK);
    let counts = |c: &quinn::Connection| {
        let stats = c.stats();
        (stats.udp_tx.datagrams, stats.udp_rx.datagrams)
    };
    let mut last = counts(&conn);
    loop {
        tokio::select! {
            _ = lease.reader.read() => {
                if lease.relay.close_reason().is_none() {
                    conn.close(
                        proto::ErrorCode::PATH_WITHDRAWN.0.into(),
                        b"the relay ended the direct path",
                    );
                    return;
                }
                retire.now();
                match regrant.ask(&agent, prefix, agent_prefix).await {
                    Ok(again) if again.relay.remote_address() != conn.remote_address() => {
                        // Our datagrams go to the lost relay's address, and
                        // quinn takes the agent's only from there: the path
                        // cannot follow. Fail its streams now, not at the
                        // idle timeout; the next open sets up a new path.
                        tracing::warn!(%agent, relay = %again.relay.remote_address(), "the relay of the direct path was lost; another relay at another address cannot carry it: closing it");
                        conn.close(
                            proto::ErrorCode::PATH_WITHDRAWN.0.into(),
                            b"the relay of the direct path was lost",
                        );
                        return;
                    }
                    Ok(again) => {
                        tracing::info!(%agent, relay = %again.relay.remote_address(), "the relay of the direct path was lost; the path was granted again");
                        lease = again;
                    }
                    Err(e) => {
                        tracing::warn!(%agent, err = %e, "the relay of the direct path was lost and no other grants it");
                        conn.close(
                            proto::ErrorCode::PATH_WITHDRAWN.0.into(),
                            b"the relay of the direct path was lost",
                        );
                        return;
                    }
                }
            }
            _ = &mut dropped => {
                conn.close(0u32.into(), b"client done");
                return;
            }
            _ = conn.closed() => return,
            _ = look.tick() => {
                if retire.departure.left() {
                    retire.now();
                }
                // Sent something, heard nothing: is the relay still there?
                let now = counts(&conn);
                let stalled = now.0 != last.0 && now.1 == last.1;
                last = now;
                if stalled && !crate::relay::answers(&lease.relay).await {
                    tracing::warn!(%agent, relay = %lease.relay.remote_address(), "the relay of the direct path stopped answering");
                    lease.relay.close(
                        proto::ErrorCode::GOING_AWAY.0.into(),
                        b"relay stopped answering",
                    );
                }
            }
        }
    }
}

/// What holding a path's lease needs besides the lease: whom it reaches,
/// how to ask for it again, and how to retire it.
struct Held {
    agent: AgentName,
    prefix: CidPrefix,
    agent_prefix: CidPrefix,
    regrant: Regrant,
    retire: Retire,
}

/// The state of the path to one agent.
#[derive(Debug, Default)]
pub enum PathState {
    /// None yet, or the last one was lost: ask on the next open.
    #[default]
    Unknown,
    /// Up; shared with the streams on it.
    Live(Arc<DirectPath>),
    /// Could not be had at this instant: in auto mode, use the relay path
    /// for a while.
    Failed(Instant),
}

impl PathState {
    /// The live direct connection, if there is one that takes new streams.
    /// A lost one is forgotten, and so is one whose relay the client has
    /// left: the next open sets up a path through the relay in use, while
    /// the streams on the old one finish there.
    pub fn live(&mut self) -> Option<Live> {
        match self {
            PathState::Live(path) if path.serves_new() => Some((
                path.conn.clone(),
                path.reach.clone(),
                InUse {
                    _path: Some(path.clone()),
                },
            )),
            PathState::Live(_) => {
                tracing::debug!(
                    "the direct path's relay is gone or going away: new streams take a new path"
                );
                *self = PathState::Unknown;
                None
            }
            _ => None,
        }
    }

    /// Whether the path failed so recently that the relay path should be
    /// used without asking.
    pub fn resting(&self) -> bool {
        matches!(self, PathState::Failed(at) if at.elapsed() < RETRY_AFTER)
    }

    /// Asks the relay for a path to `agent` and connects through it; the
    /// outcome is kept (the path, or when it failed).
    ///
    /// # Errors
    /// Why there is no path (refused, agent too old, handshake failed).
    pub async fn open(&mut self, agent: &AgentName, via: Via<'_>) -> Result<Live, NoPath> {
        match connect(agent, via).await {
            Ok(path) => {
                let path = Arc::new(path);
                let live = (
                    path.conn.clone(),
                    path.reach.clone(),
                    InUse {
                        _path: Some(path.clone()),
                    },
                );
                *self = PathState::Live(path);
                Ok(live)
            }
            Err(e) => {
                // A refusal the relay path would repeat (the agent is not
                // there now) may not hold at the next open: only a path
                // refused or broken rests.
                let absent = matches!(&e, NoPath::Refused(r) if is_final(r));
                *self = if absent {
                    PathState::Unknown
                } else {
                    PathState::Failed(Instant::now())
                };
                Err(e)
            }
        }
    }
}

/// One agent's entry: its own lock, so setting up the path to one agent
/// (up to twice [`HANDSHAKE_TIMEOUT`]) holds up only opens to that agent.
pub type AgentPath = Arc<tokio::sync::Mutex<PathState>>;

/// The direct paths of one client, by agent. The map's own lock is held
/// only to find or add an entry, never across an await.
#[derive(Debug, Default)]
pub struct DirectPaths {
    by_agent: Mutex<HashMap<AgentName, AgentPath>>,
    /// The agents whose fallback to the relay path has been logged (auto
    /// mode says so once per agent, not at every open).
    fell_back: Mutex<HashSet<AgentName>>,
}

impl DirectPaths {
    /// Whether this is the first fallback to the relay path for `agent`.
    pub fn first_fallback(&self, agent: &AgentName) -> bool {
        let mut seen = self
            .fell_back
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        seen.insert(agent.clone())
    }

    /// The entry of `agent` (created empty on first use). Lock it to use or
    /// set up its path.
    pub fn entry(&self, agent: &AgentName) -> AgentPath {
        // A panic elsewhere while the map was held leaves it consistent:
        // it holds only finished inserts.
        let mut map = self.by_agent.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(agent.clone()).or_default().clone()
    }

    /// Closes every direct path (those being set up close when their
    /// set-up ends, as nothing keeps them).
    pub fn close(&self) {
        let drained: Vec<AgentPath> = {
            let mut map = self.by_agent.lock().unwrap_or_else(PoisonError::into_inner);
            map.drain().map(|(_, path)| path).collect()
        };
        for path in drained {
            if let Ok(mut state) = path.try_lock() {
                *state = PathState::Unknown;
            }
        }
    }
}

async fn connect(agent: &AgentName, via: Via<'_>) -> Result<DirectPath, NoPath> {
    let (mut send, recv) = via.relay.open_bi().await?;
    let ask = Direct {
        agent: agent.clone(),
        prefix: via.prefix,
    };
    write_frame(&mut send, ask).await?;
    let mut reader = FrameReader::new(recv);
    let (agent_prefix, reach) = match reader.expect(HANDSHAKE_TIMEOUT).await? {
        Frame::Path(path) => (path.prefix, path.reach.map(Arc::new)),
        Frame::Refused(r) => return Err(NoPath::Refused(r)),
        other => return Err(NoPath::Unexpected(other.frame_type())),
    };
    let cred = via.credential;
    let tls = relay_net::tls::direct_client_config(
        &cred.credential.certificate,
        cred.key_pem(),
        &cred.credential.ca,
    )?;
    let config = relay_net::endpoint::direct_client(Arc::new(tls), via.transport, agent_prefix);
    let connecting =
        via.endpoint
            .connect_with(config, via.relay.remote_address(), "relay-agent")?;
    let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(NoPath::Handshake(e)),
        Err(_) => return Err(NoPath::Timeout(HANDSHAKE_TIMEOUT)),
    };
    let peer = PeerCert::of_connection(&conn)?;
    if peer.identity.role != Role::Agent
        || peer.identity.name != *agent.as_name()
        || peer.relay != cred.cert.relay
    {
        conn.close(
            proto::ErrorCode::UNAUTHORIZED.0.into(),
            b"not the agent asked for",
        );
        return Err(NoPath::WrongPeer {
            asked: agent.clone(),
            found: peer.identity,
        });
    }
    tracing::debug!(%agent, "direct path up");
    let (lease, dropped) = tokio::sync::oneshot::channel();
    let retired = Arc::new(AtomicBool::new(false));
    let lease_held = Lease {
        _send: send,
        reader,
        relay: via.relay.clone(),
    };
    let held = Held {
        agent: agent.clone(),
        prefix: via.prefix,
        agent_prefix,
        regrant: via.regrant,
        retire: Retire {
            retired: retired.clone(),
            departure: via.departure.clone(),
            entry: via.entry,
            id: conn.stable_id(),
        },
    };
    tokio::spawn(hold_lease(lease_held, conn.clone(), dropped, held));
    Ok(DirectPath {
        conn,
        reach,
        departure: via.departure,
        retired,
        _lease: lease,
    })
}
