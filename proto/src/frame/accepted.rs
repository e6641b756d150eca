//! `ACCEPTED` (type 0x12): agent → relay → client, the stream is open.
//!
//! ```text
//! (empty payload)
//! ```

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::codec::Reader;
use crate::error::DecodeError;

/// The agent reached the target (or started the shell or command). What
/// follows on the stream belongs to the stream's kind: raw bytes for `Tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accepted;

impl Accepted {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        Reader::new(FrameType::Accepted, payload).finish()?;
        Ok(Self)
    }

    pub(crate) fn encode(&self, _dst: &mut impl BufMut) {}

    pub(crate) fn encoded_len(&self) -> usize {
        0
    }
}

impl From<Accepted> for Frame {
    fn from(frame: Accepted) -> Self {
        Frame::Accepted(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let wire = b"\x12\x00\x00\x00\x00";
        assert_eq!(&Frame::from(Accepted).to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(Frame::Accepted(Accepted)))
        );
        assert!(Accepted::decode(&[0]).is_err());
    }
}
