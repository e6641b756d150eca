//! The audit record shared by the relay and the agent: one JSON object per
//! line, with the same field names wherever it is written (README "Audit
//! log"). The relay audits everything it routes; an agent audits the
//! streams it serves on direct paths, which the relay cannot see. Each
//! writes its own file; here is only what a line holds.

use std::net::SocketAddr;

use proto::{ErrorCode, Open, Refused, StreamKind};
use serde::{Serialize, Serializer};

use crate::cert::PeerCert;

/// What an audit line records. The names are stable (documented in the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A stream was authorized and sent on to the agent.
    Open,
    /// A stream, path or connection was refused.
    Refused,
    /// A stream ended (bytes each way, and why if it failed).
    Close,
    /// An agent registered.
    Register,
    /// An agent's registration ended.
    Unregister,
    /// A peer failed the handshake or the identity checks.
    AuthFailed,
    /// `count` more `auth_failed` events in the window that just ended
    /// were not written (throttled), only counted.
    AuthFailedSuppressed,
    /// A live connection was closed because its certificate was revoked.
    Revoked,
    /// The policy file was reloaded.
    PolicyReload,
    /// A changed policy file did not parse: the previous policy stays in
    /// force. The operator's mistake, not a peer's, so it carries no code.
    PolicyRejected,
    /// A direct path (end-to-end mode) was set up: the relay sees the
    /// path, not its streams.
    Direct,
    /// A direct path ended.
    DirectClose,
    /// A single sign-on gave a client a certificate.
    Login,
    /// A person watched another's browser shell (read-only); `close`
    /// follows when they stop.
    Watch,
}

/// One audit event: built from the peer it concerns, with what happened
/// filled in by the helpers below. Field names are stable (README).
#[derive(Clone, Debug, Serialize)]
pub struct AuditEvent {
    /// RFC 3339 UTC time; filled in by [`Audit::record`].
    pub time: String,
    /// What happened.
    pub event: Event,
    /// The peer's identity (`client/alice`), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The peer's certificate serial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The peer's UDP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The OpenID provider that vouched for the peer (a single sign-on's
    /// certificate), its `iss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The peer's subject at that provider, its `sub`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The peer's groups, as its certificate names them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The agent of an open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The target of an open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `tcp`, `shell`, `exec`, `socks`, or `direct` for a refused path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// The command of an `exec` (or of a `shell` started with one), its
    /// arguments quoted as a shell would need them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The `host:port` a `socks` stream asked for (as the client named it;
    /// the agent resolves and checks it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Error code of a refusal or failure, by name.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "code_name")]
    pub code: Option<ErrorCode>,
    /// Human reason of a refusal or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bytes from client to agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_up: Option<u64>,
    /// Bytes from agent to client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_down: Option<u64>,
    /// Duration of a stream, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// How many events an `auth_failed_suppressed` line stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Whose shell a `watch` event is about (`client/alice`), and its id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watched: Option<String>,
    /// How the peer came, when not with its own QUIC connection:
    /// `"browser"` for the relay's web shell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'static str>,
}

/// Writes a code by its name (`UNAUTHORIZED`), as the README documents it.
fn code_name<S: Serializer>(code: &Option<ErrorCode>, s: S) -> Result<S::Ok, S::Error> {
    match code {
        Some(code) => s.collect_str(code),
        None => s.serialize_none(),
    }
}

impl AuditEvent {
    /// An event that concerns no peer in particular (a policy reload).
    pub fn new(event: Event) -> AuditEvent {
        AuditEvent {
            time: String::new(),
            event,
            peer: None,
            serial: None,
            remote: None,
            issuer: None,
            subject: None,
            groups: Vec::new(),
            agent: None,
            target: None,
            kind: None,
            command: None,
            destination: None,
            code: None,
            reason: None,
            bytes_up: None,
            bytes_down: None,
            duration_ms: None,
            count: None,
            watched: None,
            via: None,
        }
    }

    /// An event about `peer` (its identity and serial), seen from `remote`
    /// if the connection is known.
    pub fn of_peer(event: Event, peer: &PeerCert, remote: Option<SocketAddr>) -> AuditEvent {
        AuditEvent {
            peer: Some(peer.identity.to_string()),
            serial: Some(peer.serial.clone()),
            remote: remote.map(|r| r.to_string()),
            issuer: peer.login.as_ref().map(|l| l.issuer.clone()),
            subject: peer.login.as_ref().map(|l| l.subject.clone()),
            groups: peer.groups.iter().map(ToString::to_string).collect(),
            ..AuditEvent::new(event)
        }
    }

    /// Adds what `open` asked for: agent, target, kind, command, destination.
    pub fn with_open(mut self, open: &Open) -> AuditEvent {
        self.agent = Some(open.agent.to_string());
        self.target = Some(open.target.to_string());
        self.kind = Some(open.kind.as_str());
        self.command = Some(open.kind.command_line()).filter(|c| !c.is_empty());
        self.destination = match &open.kind {
            StreamKind::Socks { dest } => Some(dest.to_string()),
            _ => None,
        };
        self
    }

    /// The same event as a refusal with `refused`'s code and message.
    pub fn refused(mut self, refused: &Refused) -> AuditEvent {
        self.event = Event::Refused;
        self.code = Some(refused.code);
        self.reason = Some(refused.message.clone());
        self
    }

    /// Adds why something failed or ended.
    pub fn because(mut self, code: Option<ErrorCode>, reason: impl Into<String>) -> AuditEvent {
        self.code = code;
        self.reason = Some(reason.into());
        self
    }
}

/// Current UTC time in RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_millisecond(now.millisecond()).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}
