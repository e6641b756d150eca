//! [`ErrorCode`]: the one table of codes for refusals, stream resets and connection closes.

use std::fmt;

/// A stable wire error code, with a human description.
///
/// The same numbers serve [`Refused`](crate::Refused) frames, QUIC stream
/// resets and QUIC connection closes (DESIGN: "one table of error codes").
/// Unknown numbers from a newer peer are kept as they are, not rejected; they
/// display as `ErrorCode(77)`.
///
/// ```
/// # use relay_proto::ErrorCode;
/// assert_eq!(ErrorCode::UNAUTHORIZED.to_string(), "UNAUTHORIZED");
/// assert_eq!(ErrorCode::UNAUTHORIZED.description(), "not authorized");
/// assert_eq!(ErrorCode::from(77).to_string(), "ErrorCode(77)");
/// ```
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ErrorCode(pub u32);

/// Defines the named constants, [`ErrorCode::ALL`] and the name and
/// description lookups from one table, so they cannot drift apart.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $desc:literal;)*) => {
        impl ErrorCode {
            $(
                $(#[$doc])*
                pub const $name: ErrorCode = ErrorCode($value);
            )*

            /// Every named code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];

            /// The constant's name (`"UNAUTHORIZED"`), or `None` for a number
            /// this version does not know.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// A short lowercase human description (`"not authorized"`), or
            /// `"unknown error code"` for a number this version does not know.
            pub const fn description(self) -> &'static str {
                match self.0 {
                    $($value => $desc,)*
                    _ => "unknown error code",
                }
            }
        }
    };
}

error_codes! {
    /// Not an error: a clean close.
    NO_ERROR = 0, "no error";
    /// The peer broke the protocol (bad frame, wrong frame for the state).
    PROTOCOL_VIOLATION = 1, "protocol violation";
    /// The caller is not allowed to do this.
    UNAUTHORIZED = 2, "not authorized";
    /// No agent of that name has ever been configured or allowed.
    UNKNOWN_AGENT = 3, "unknown agent";
    /// The agent is known but has no live connection to the relay.
    AGENT_OFFLINE = 4, "agent offline";
    /// The agent's allowlist does not expose that target.
    TARGET_NOT_EXPOSED = 5, "target not exposed by the agent";
    /// The target refused the agent's connection.
    TARGET_REFUSED = 6, "target refused the connection";
    /// The agent's dial to the target timed out.
    TARGET_TIMEOUT = 7, "target dial timed out";
    /// The agent could not reach the target (no route, DNS failure, …).
    TARGET_UNREACHABLE = 8, "target unreachable";
    /// The peer's credential has been revoked.
    REVOKED = 9, "credential revoked";
    /// The peer is shutting down; try again later (see `GoAway`).
    GOING_AWAY = 10, "peer is shutting down";
    /// A fault on the side that sends this code, not the caller's.
    INTERNAL = 11, "internal error";
    /// A limit (streams, connections, rate, size) has been reached.
    LIMIT_EXCEEDED = 12, "limit exceeded";
    /// The peer lacks the capability or version needed (e.g. a stream kind).
    UNSUPPORTED = 13, "not supported by the peer";
    /// The stream was aborted (e.g. the other end of a splice reset).
    STREAM_ABORTED = 14, "stream aborted";
    /// The peer's certificate has expired.
    CERT_EXPIRED = 15, "certificate expired";
    /// The audit log cannot be written, so new opens are refused (fail closed).
    AUDIT_UNAVAILABLE = 16, "audit log unavailable";
    /// The relay ended a direct path (end-to-end mode): revocation, a
    /// policy change, or the relay or agent going away; ask again.
    PATH_WITHDRAWN = 17, "direct path withdrawn by the relay";
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ErrorCode({})", self.0),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl From<ErrorCode> for u32 {
    fn from(code: ErrorCode) -> Self {
        code.0
    }
}

impl From<u32> for ErrorCode {
    fn from(value: u32) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_dense_and_named() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.0 as usize, i);
            assert!(code.name().is_some());
            assert_ne!(code.description(), "unknown error code");
        }
        assert_eq!(ErrorCode::ALL.len(), 18);
    }

    #[test]
    fn unknown_codes_display_their_number() {
        let code = ErrorCode::from(77);
        assert_eq!(format!("{code} {code:?}"), "ErrorCode(77) ErrorCode(77)");
        assert_eq!(code.description(), "unknown error code");
        assert_eq!(u32::from(ErrorCode::AUDIT_UNAVAILABLE), 16);
        assert_eq!(format!("{:?}", ErrorCode::TARGET_REFUSED), "TARGET_REFUSED");
    }
}
