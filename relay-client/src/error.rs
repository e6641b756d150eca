//! The client's errors: why a stream could not be opened ([`OpenError`]),
//! and, when a stream or its connection failed, which side ended it
//! ([`StreamError`]: the relay, the agent, or this client).

use std::fmt;

use proto::{ErrorCode, Refused};
use quinn::ConnectionError;
use relay_net::answer::AnswerError;
use relay_net::dial::DialError;
use relay_net::framed::FrameError;

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The relay could not be reached.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The relay or the agent refused the open.
    #[error("{0}")]
    Refused(Refused),
    /// End-to-end mode (strict) could not set up the direct path.
    #[error(transparent)]
    NoDirectPath(#[from] crate::direct::NoDirectPath),
    /// The stream or its connection failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A name this client built is invalid (a bug: stream kinds have
    /// valid names).
    #[error("invalid name: {0}")]
    Name(#[from] proto::NameError),
    /// Our own terminal or signal handling could not be set up.
    #[error("cannot set up {what}: {err}")]
    Local {
        /// What was being set up ("the terminal", "signal handling").
        what: &'static str,
        /// The system's error.
        err: std::io::Error,
    },
}

impl OpenError {
    /// Whether trying again cannot help: the credential itself is unusable
    /// (expired, unreadable). A forward stops on these instead of failing
    /// every connection the same way.
    pub fn is_permanent(&self) -> bool {
        matches!(self, OpenError::Dial(DialError::Credential(_)))
    }
}

/// A side of a stream: who ended it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The relay (on the relay path it also passes on the agent's resets).
    Relay,
    /// The agent, on a direct path (end-to-end mode).
    Agent,
    /// This client.
    Local,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Relay => "the relay",
            Side::Agent => "the agent",
            Side::Local => "this client",
        })
    }
}

/// What failed, as quinn (or the frame reader) reported it.
#[derive(Debug)]
pub enum Cause {
    /// The connection is gone.
    Connection(ConnectionError),
    /// A stream could not be opened or written.
    Write(quinn::WriteError),
    /// The stream's frames could not be read.
    Frame(FrameError),
    /// The answer to `Open` was neither `Accepted` nor `Refused`.
    Answer(AnswerError),
    /// The agent's program stream ended without an exit status.
    NoExit,
    /// The agent sent a frame that has no place there.
    Unexpected(proto::FrameType),
    /// We hung up ourselves, for the reason given (a signal).
    HungUp(&'static str),
}

/// A stream or its connection failed: which side ended it, and how.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct StreamError {
    /// Who ended it.
    pub side: Side,
    /// How.
    pub cause: Cause,
}

impl StreamError {
    /// A failure of a stream on a connection to `peer`. When the connection
    /// itself was closed, its close is the part a person can act on (revoked,
    /// relay shutting down), so that becomes the cause.
    pub fn on(conn: &quinn::Connection, peer: Side, cause: Cause) -> StreamError {
        match conn.close_reason() {
            Some(reason) => StreamError::connection(peer, reason),
            None => StreamError {
                side: side_of(peer, &cause),
                cause,
            },
        }
    }

    /// The connection to `peer` is gone for `reason`.
    pub fn connection(peer: Side, reason: ConnectionError) -> StreamError {
        let side = match reason {
            ConnectionError::LocallyClosed => Side::Local,
            _ => peer,
        };
        StreamError {
            side,
            cause: Cause::Connection(reason),
        }
    }

    /// This client hung up, for `why`.
    pub fn hung_up(why: &'static str) -> StreamError {
        StreamError {
            side: Side::Local,
            cause: Cause::HungUp(why),
        }
    }

    /// The wire code closest to it.
    pub fn code(&self) -> ErrorCode {
        match &self.cause {
            Cause::Connection(ConnectionError::ApplicationClosed(close)) => {
                u32::try_from(close.error_code.into_inner())
                    .map(ErrorCode)
                    .unwrap_or(ErrorCode::INTERNAL)
            }
            Cause::Frame(e) => e.code(),
            Cause::Answer(e) => e.code(),
            Cause::NoExit | Cause::Unexpected(_) => ErrorCode::PROTOCOL_VIOLATION,
            _ => ErrorCode::STREAM_ABORTED,
        }
    }

    fn describe(&self) -> String {
        let side = self.side;
        match &self.cause {
            Cause::Connection(reason) => connection_text(side, reason),
            Cause::Write(e) => write_text(side, e),
            Cause::Frame(e) | Cause::Answer(AnswerError::Read(e)) => frame_text(side, e),
            Cause::Answer(e) => format!("{side} {e}"),
            Cause::NoExit => format!("{side} ended the session without an exit status"),
            Cause::Unexpected(t) => format!("unexpected {t} from {side}"),
            Cause::HungUp(why) => (*why).to_owned(),
        }
    }
}

/// Which side a failure of a stream on a connection to `peer` points to.
fn side_of(peer: Side, cause: &Cause) -> Side {
    match cause {
        Cause::Connection(ConnectionError::LocallyClosed)
        | Cause::Write(quinn::WriteError::ClosedStream | quinn::WriteError::ZeroRttRejected)
        | Cause::HungUp(_) => Side::Local,
        _ => peer,
    }
}

/// A failed write in words.
fn write_text(side: Side, e: &quinn::WriteError) -> String {
    match e {
        quinn::WriteError::Stopped(code) => {
            format!(
                "{side} stopped the stream ({})",
                code_text(code.into_inner())
            )
        }
        quinn::WriteError::ConnectionLost(reason) => connection_text(side, reason),
        other => format!("{side}: {other}"),
    }
}

/// A failed frame read in words.
fn frame_text(side: Side, e: &FrameError) -> String {
    match e {
        FrameError::Read(quinn::ReadError::Reset(code)) => {
            format!("{side} reset the stream ({})", code_text(code.into_inner()))
        }
        FrameError::Read(quinn::ReadError::ConnectionLost(reason)) => connection_text(side, reason),
        FrameError::Timeout(t) => format!("{side} did not answer within {t:?}"),
        other => format!("{side} sent what this client cannot read: {other}"),
    }
}

/// A wire code in words, e.g. "revoked" or "code 0x1f".
fn code_text(code: u64) -> String {
    match u32::try_from(code) {
        Ok(c) => ErrorCode(c).description().to_owned(),
        Err(_) => format!("code {code:#x}"),
    }
}

/// A lost connection in words, naming the side that ended it.
fn connection_text(side: Side, reason: &ConnectionError) -> String {
    match reason {
        ConnectionError::ApplicationClosed(close) => {
            let code = code_text(close.error_code.into_inner());
            let why = String::from_utf8_lossy(&close.reason);
            if why.is_empty() {
                format!("closed by {side}: {code}")
            } else {
                format!("closed by {side}: {code}: {why}")
            }
        }
        // The relay's TLS alerts (it does not trust our certificate, it was
        // revoked or expired) have words in `dial`.
        ConnectionError::ConnectionClosed(_) | ConnectionError::TransportError(_)
            if side == Side::Relay =>
        {
            relay_net::dial::describe(reason)
        }
        ConnectionError::ConnectionClosed(close) => {
            format!("{side} aborted the connection: {close}")
        }
        ConnectionError::TimedOut => format!("{side} stopped answering (connection timed out)"),
        ConnectionError::Reset => format!("{side} forgot this connection (it restarted?)"),
        ConnectionError::LocallyClosed => "this client closed the connection".to_owned(),
        other => format!("connection to {side} failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_names_the_side_and_the_reason() {
        let close = quinn::ApplicationClose {
            error_code: ErrorCode::REVOKED.0.into(),
            reason: "client/mallory is revoked".into(),
        };
        let relay = StreamError::connection(
            Side::Relay,
            ConnectionError::ApplicationClosed(close.clone()),
        );
        let text = relay.to_string();
        assert!(text.starts_with("closed by the relay: "), "{text}");
        assert!(text.ends_with(": client/mallory is revoked"), "{text}");
        assert_eq!(relay.code(), ErrorCode::REVOKED);
        let agent = StreamError::connection(Side::Agent, ConnectionError::ApplicationClosed(close));
        assert!(
            agent.to_string().starts_with("closed by the agent: "),
            "{agent}"
        );
    }

    #[test]
    fn our_own_close_is_ours_whoever_the_peer() {
        let e = StreamError::connection(Side::Agent, ConnectionError::LocallyClosed);
        assert_eq!(e.side, Side::Local);
        assert_eq!(e.to_string(), "this client closed the connection");
        let reset = StreamError {
            side: Side::Relay,
            cause: Cause::Frame(FrameError::Read(quinn::ReadError::Reset(
                ErrorCode::TARGET_REFUSED.0.into(),
            ))),
        };
        assert!(
            reset
                .to_string()
                .starts_with("the relay reset the stream ("),
            "{reset}"
        );
    }
}
