//! `LIST` (type 0x20): client → relay, the only frame on a fresh stream; asks for reachable agents.
//!
//! ```text
//! (empty payload)
//! ```

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::codec::Reader;
use crate::error::DecodeError;

/// Asks the relay which agents the caller may reach. The relay answers with
/// one [`AgentInfo`](crate::AgentInfo) per agent, then finishes the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct List;

impl List {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        Reader::new(FrameType::List, payload).finish()?;
        Ok(Self)
    }

    pub(crate) fn encode(&self, _dst: &mut impl BufMut) {}

    pub(crate) fn encoded_len(&self) -> usize {
        0
    }
}

impl From<List> for Frame {
    fn from(frame: List) -> Self {
        Frame::List(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let wire = b"\x20\x00\x00\x00\x00";
        assert_eq!(&Frame::from(List).to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(Frame::List(List)))
        );
        assert!(List::decode(&[0]).is_err());
    }
}
