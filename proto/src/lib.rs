//! The wire protocol of the relay, sans-IO.
//!
//! This crate contains no networking code, spawns no tasks and never reads a
//! clock: it turns bytes into [`Frame`]s and back, and defines the names,
//! identities and [`ErrorCode`]s the relay, the agent and the client share.
//! The QUIC connections, TLS certificates and streams all live in the crates
//! that depend on it (`relay-net`, `relay-server`, `relay-agent`,
//! `relay-client`); its only dependencies are `bytes` and `thiserror`.
//!
//! Every frame is `type: u8 | len: u32 big-endian | payload[len]`, with `len`
//! at most [`MAX_FRAME_LEN`]. Each frame type has its own module whose doc
//! shows its payload layout; [`Frame::decode`] and [`Frame::encode`] are the
//! entry points.
//!
//! # Protocol flow
//!
//! ```text
//! agent ──QUIC, ALPN "relay/1", mTLS──▶ relay      identity = URI SAN of the agent's certificate
//!   control stream (the agent's first bidi stream):
//!   agent ─ Register { version, capabilities, targets } ─▶ relay
//!   agent ◀─ Registered { version, capabilities, instance } relay   or Refused { code, message }
//!   …
//!   agent ◀─ GoAway { reconnect_in_ms } ─────────────────── relay   before the relay shuts down
//!
//! client ──QUIC, ALPN "relay/1", mTLS──▶ relay     one bidi stream per session:
//!   client ─ Open { agent, target, kind } [early bytes…] ─▶ relay
//!            (the client may send raw data right behind Open without waiting)
//!   relay: authorizes the caller identity taken from the client's TLS
//!          certificate (never from a frame), picks a registered instance of
//!          `agent` and opens a bidi stream on that agent's connection:
//!   relay ─ Forwarded { caller, open } [early bytes…] ──▶ agent
//!   relay ◀─ Accepted | Refused { code, message } ─────── agent
//!   client ◀─ the same Accepted | Refused frame ───────── relay
//!            (on Refused the early bytes are discarded and the stream ends)
//!   after Accepted, a Tcp stream carries raw bytes both ways (splice):
//!     half-close = stream finish, error = stream reset with an ErrorCode
//!   after Accepted, a Shell or Exec stream carries session frames (the
//!   relay splices them as bytes; only the two ends read them):
//!     client ─ Data { stdin, bytes } … ─▶ agent   (≤ 64 KiB each, chunked)
//!     client ─ Eof { stdin } ─▶ agent             end of input, a frame, so
//!     client ─ Signal { signal } ─▶ agent          signals can still follow
//!     client ─ Resize { cols, rows } ─▶ agent      Shell: on every SIGWINCH
//!     agent ─ Data { stdout | stderr, bytes } … ─▶ client   (Shell: stdout only)
//!     agent ─ Eof { stdout | stderr } ─▶ client    when the program closes them
//!     agent ─ Exit { code | signal } ─▶ client, then finish   the last frame
//!   a stream finish or reset from the client before Exit ends the session:
//!   the agent hangs up (SIGHUP) and then kills the program
//!
//!   a Socks open (`relay-client socks`) names a Destination instead of a
//!   target; the agent resolves it, checks its rules, dials the checked
//!   address and answers like a Tcp open; raw bytes follow Accepted
//!
//! client ─ List ─▶ relay                       on a fresh bidi stream
//! client ◀─ AgentInfo { agent, instances, targets } × N ─ relay, then finish
//!            (one frame per agent the caller may reach)
//!
//! direct paths (end-to-end mode; the agent registered with a `prefix`):
//! client ─ Direct { agent, prefix } ─▶ relay          on a fresh bidi stream
//!   relay: authorizes as for List, opens a bidi stream to one instance:
//!   relay ─ Grant { caller, serial, reach } ─▶ agent
//!   relay ◀─ Accepted | Refused ─ agent
//! client ◀─ Path { prefix, reach } | Refused ─ relay  both streams stay open:
//!            ending either withdraws the grant; the client sends what
//!            `reach` holds on the path, the rest on the relay path
//! client ──QUIC, mTLS──▶ (relay's UDP address) ──▶ agent
//!            the relay forwards datagrams by connection-ID prefix without
//!            decrypting them; streams on it start with Open, answered by
//!            the agent, which checks each against the grant
//! ```
//!
//! After `Accepted`, a stream to an agent's built-in `bench` target carries
//! the benchmark sub-protocol of [`BenchHeader`] inside its raw bytes.
//!
//! A decode error on any stream is a protocol violation: the receiver resets
//! the stream or closes the connection with [`DecodeError::code`].
//!
//! # Version history
//!
//! The version is carried twice: in the ALPN ([`ALPN`]) and in the first
//! control frame ([`Register::version`], [`Registered::version`]), next to the
//! peer's [`Capabilities`].
//!
//! - **1** (`relay/1`): `Register`, `Registered`, `GoAway`, `Open` (kinds
//!   `Tcp`, `Shell`, `Exec`), `Forwarded`, `Accepted`, `Refused`, `List`,
//!   `AgentInfo`, session frames `Data`, `Eof`, `Resize`, `Signal`, `Exit`
//!   (a `Shell` open carries an optional command); error codes 0 to 16.
//!   Kind `Socks { dest }` (wire 3, capability `SOCKS`) added later in
//!   version 1: an old agent refuses it as malformed and never advertises
//!   the capability, so no version bump was needed. Direct paths (`Direct`,
//!   `Path`, `Grant`, the optional `prefix` ending `Register`, error code
//!   17 `PATH_WITHDRAWN`) added later
//!   in version 1: an old agent sends no prefix and is never offered one.
//!   `Grant` gained the caller's certificate `serial` before any release
//!   shipped it (a grant is bound to one certificate, not an identity).
//!   `Path` gained an optional `reach` (what its grant holds) when clients
//!   took end-to-end paths by default: an older relay sends none, and its
//!   clients send every stream to that agent on the path, as before.

mod bench;
mod capabilities;
pub mod carrier;
mod cid_prefix;
mod code;
mod codec;
mod datagram;
mod destination;
mod error;
mod frame;
mod identity;
mod name;
mod reach;
pub mod socks5;

pub use bench::{BenchError, BenchHeader, BenchMode, BENCH_COUNT_LEN, BENCH_HEADER_LEN};
pub use capabilities::Capabilities;
pub use cid_prefix::CidPrefix;
pub use code::ErrorCode;
pub use datagram::{Datagram, DatagramError, DATAGRAM_LEN};
pub use destination::{Destination, Domain, DomainError, Host};
pub use error::DecodeError;
pub use frame::{
    Accepted, AgentInfo, CertSerial, Channel, Data, Direct, Eof, Exit, Forwarded, Frame, FrameType,
    GoAway, Grant, List, LoginCert, LoginHello, LoginOffer, LoginToken, Open, Path, ProviderInfo,
    ProviderKind, Refused, Register, Registered, Resize, Signal, StreamKind, HEADER_LEN,
    MAX_FRAME_LEN,
};
pub use identity::{Identity, IdentityError, Role};
pub use name::{AgentName, Name, NameError, TargetName};
pub use reach::Reach;

/// The protocol version this crate speaks, sent in [`Register`] and
/// [`Registered`]. See the version history in the crate docs.
pub const PROTOCOL_VERSION: u16 = 1;

/// The TLS ALPN protocol name for [`PROTOCOL_VERSION`]; a peer that offers
/// anything else fails the handshake instead of misreading frames.
pub const ALPN: &[u8] = b"relay/1";
