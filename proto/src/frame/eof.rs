//! `EOF` (type 0x31): one standard stream of a session has ended.
//!
//! ```text
//! | channel: u8 (0 stdin, 1 stdout, 2 stderr) |
//! ```
//!
//! End of stdin is a frame, not a stream finish, so the client can still
//! send [`Signal`](crate::Signal)s after it (DESIGN "Protocol"). The agent
//! sends `Eof` for stdout and stderr when the program closes them, before
//! [`Exit`](crate::Exit). No [`Data`](crate::Data) on a channel follows its
//! `Eof`.

use bytes::BufMut;

use super::data::Channel;
use super::{Frame, FrameType};
use crate::codec::Reader;
use crate::error::DecodeError;

/// The end of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eof {
    /// The channel that ended.
    pub channel: Channel,
}

impl Eof {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Eof, payload);
        let channel = Channel::read(&mut r)?;
        r.finish()?;
        Ok(Self { channel })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(self.channel.to_u8());
    }

    pub(crate) fn encoded_len(&self) -> usize {
        1
    }
}

impl From<Eof> for Frame {
    fn from(frame: Eof) -> Self {
        Frame::Eof(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(Eof {
            channel: Channel::Stdin,
        });
        let wire = b"\x31\x00\x00\x00\x01\x00";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
        assert!(Eof::decode(&[3]).is_err());
        assert!(Eof::decode(&[0, 0]).is_err());
    }
}
