//! `PATH` (type 0x23): relay → client, the answer to `Direct`: the path is granted.
//!
//! ```text
//! | prefix: u32 |
//! ```
//!
//! `prefix` starts the agent's connection IDs: the client's first packets
//! toward the agent carry it, so the relay forwards them.

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::codec::Reader;
use crate::error::DecodeError;

/// A direct path to the agent is granted; connect to the relay's address
/// with destination IDs that start with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The prefix of the agent instance's connection IDs.
    pub prefix: u32,
}

impl Path {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Path, payload);
        let prefix = r.read_u32()?;
        r.finish()?;
        Ok(Self { prefix })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u32(self.prefix);
    }

    pub(crate) fn encoded_len(&self) -> usize {
        4
    }
}

impl From<Path> for Frame {
    fn from(frame: Path) -> Self {
        Frame::Path(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(Path {
            prefix: 0x8123_4567,
        });
        let wire = b"\x23\x00\x00\x00\x04\x81\x23\x45\x67";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
    }
}
