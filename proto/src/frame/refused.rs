//! `REFUSED` (type 0x13): an open or a registration is refused, with a code and a reason.
//!
//! ```text
//! | code: u32 | message: string16 (≤ 1024 bytes) |
//! ```

use std::fmt;

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::code::ErrorCode;
use crate::codec::{put_string16, string16_len, Reader};
use crate::error::DecodeError;

/// A refusal: the agent or the relay will not open the stream (or the relay
/// will not register the agent). The client gets a code and a human message,
/// never a bare EOF (DESIGN, "Protocol").
///
/// Also an error type, so a client can return it as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why, as a stable code.
    pub code: ErrorCode,
    /// Why, for a human: at most [`Refused::MAX_MESSAGE_LEN`] bytes; may be
    /// empty, in which case the code's description stands in.
    pub message: String,
}

impl Refused {
    /// The longest message, in bytes. A refusal is a line in a terminal or a
    /// log, not a report; the limit also keeps the frame small.
    pub const MAX_MESSAGE_LEN: usize = 1024;

    /// A refusal with `message` cut to at most [`Refused::MAX_MESSAGE_LEN`]
    /// bytes, on a character boundary.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > Self::MAX_MESSAGE_LEN {
            let mut end = Self::MAX_MESSAGE_LEN;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self { code, message }
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Refused, payload);
        let code = ErrorCode(r.read_u32()?);
        let message = r.read_string16()?;
        if message.len() > Self::MAX_MESSAGE_LEN {
            return Err(r.malformed("message longer than 1024 bytes"));
        }
        r.finish()?;
        Ok(Self { code, message })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        debug_assert!(
            self.message.len() <= Self::MAX_MESSAGE_LEN,
            "refusal message of {} bytes",
            self.message.len()
        );
        dst.put_u32(self.code.0);
        put_string16(dst, &self.message);
    }

    pub(crate) fn encoded_len(&self) -> usize {
        4 + string16_len(&self.message)
    }
}

impl fmt::Display for Refused {
    /// `target refused the connection (TARGET_REFUSED)`, with the message in
    /// place of the code's description when there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = if self.message.is_empty() {
            self.code.description()
        } else {
            &self.message
        };
        write!(f, "{text} ({})", self.code)
    }
}

impl std::error::Error for Refused {}

impl From<Refused> for Frame {
    fn from(frame: Refused) -> Self {
        Frame::Refused(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(Refused::new(ErrorCode::TARGET_REFUSED, "no"));
        let wire = b"\x13\x00\x00\x00\x08\x00\x00\x00\x06\x00\x02no";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
    }

    #[test]
    fn new_truncates_on_a_char_boundary() {
        let refused = Refused::new(ErrorCode::INTERNAL, "é".repeat(600));
        assert_eq!(refused.message.len(), 1024);
        let refused = Refused::new(ErrorCode::INTERNAL, format!("x{}", "é".repeat(600)));
        assert_eq!(refused.message.len(), 1023);
    }

    #[test]
    fn rejects_long_message_and_bad_utf8() {
        let mut long = vec![0, 0, 0, 1, 0x04, 0x01];
        long.extend([b'x'; 1025]);
        assert_eq!(
            Refused::decode(&long),
            Err(DecodeError::Malformed {
                frame: FrameType::Refused,
                reason: "message longer than 1024 bytes"
            })
        );
        assert!(Refused::decode(&[0, 0, 0, 1, 0, 1, 0xc3]).is_err());
    }

    #[test]
    fn displays_message_and_code() {
        let refused = Refused::new(ErrorCode::AGENT_OFFLINE, "");
        assert_eq!(refused.to_string(), "agent offline (AGENT_OFFLINE)");
        let refused = Refused::new(ErrorCode::UNAUTHORIZED, "client/ci may not open edge/kube");
        assert_eq!(
            refused.to_string(),
            "client/ci may not open edge/kube (UNAUTHORIZED)"
        );
    }
}
