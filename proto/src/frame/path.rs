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
use crate::cid_prefix::CidPrefix;
use crate::codec::Reader;
use crate::error::DecodeError;

/// A direct path to the agent is granted; connect to the relay's address
/// with destination IDs that start with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The prefix of the agent instance's connection IDs.
    pub prefix: CidPrefix,
}

impl Path {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Path, payload);
        let prefix = r.read_prefix()?;
        r.finish()?;
        Ok(Self { prefix })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u32(self.prefix.to_u32());
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
            prefix: CidPrefix::routable([0x01, 0x23, 0x45, 0x67]),
        });
        let wire = b"\x23\x00\x00\x00\x04\x81\x23\x45\x67";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
    }

    #[test]
    fn rejects_an_unroutable_prefix() {
        assert!(Path::decode(b"\x01\x23\x45\x67").is_err());
    }
}
