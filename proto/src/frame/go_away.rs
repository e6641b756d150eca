//! `GO_AWAY` (type 0x03): relay → agent on the control stream, the relay is shutting down.
//!
//! ```text
//! | reconnect_in_ms: u32 |
//! ```

use std::time::Duration;

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::codec::Reader;
use crate::error::DecodeError;

/// The relay will close the connection soon (after draining streams); the
/// agent should redial after `reconnect_in_ms`, not at once, so that restarts
/// do not cause a thundering herd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    /// How long the agent should wait before redialling, in milliseconds.
    pub reconnect_in_ms: u32,
}

impl GoAway {
    /// [`reconnect_in_ms`](Self::reconnect_in_ms) as a [`Duration`].
    pub fn reconnect_in(&self) -> Duration {
        Duration::from_millis(u64::from(self.reconnect_in_ms))
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::GoAway, payload);
        let reconnect_in_ms = r.read_u32()?;
        r.finish()?;
        Ok(Self { reconnect_in_ms })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u32(self.reconnect_in_ms);
    }

    pub(crate) fn encoded_len(&self) -> usize {
        4
    }
}

impl From<GoAway> for Frame {
    fn from(frame: GoAway) -> Self {
        Frame::GoAway(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(GoAway {
            reconnect_in_ms: 1500,
        });
        let wire = b"\x03\x00\x00\x00\x04\x00\x00\x05\xdc";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
        assert_eq!(
            GoAway {
                reconnect_in_ms: 1500
            }
            .reconnect_in(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn rejects_wrong_length() {
        assert!(GoAway::decode(&[0, 0, 5]).is_err());
        assert!(GoAway::decode(&[0, 0, 5, 0xdc, 0]).is_err());
    }
}
