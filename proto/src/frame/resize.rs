//! `RESIZE` (type 0x32): client → agent, the terminal of a `Shell` session changed size.
//!
//! ```text
//! | cols: u16 | rows: u16 |
//! ```

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::codec::Reader;
use crate::error::DecodeError;

/// The client's terminal is now `cols` × `rows` (sent at every SIGWINCH).
/// The agent resizes the session's PTY; an `Exec` session ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resize {
    /// Width in columns.
    pub cols: u16,
    /// Height in rows.
    pub rows: u16,
}

impl Resize {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Resize, payload);
        let cols = r.read_u16()?;
        let rows = r.read_u16()?;
        r.finish()?;
        Ok(Self { cols, rows })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u16(self.cols);
        dst.put_u16(self.rows);
    }

    pub(crate) fn encoded_len(&self) -> usize {
        4
    }
}

impl From<Resize> for Frame {
    fn from(frame: Resize) -> Self {
        Frame::Resize(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(Resize {
            cols: 132,
            rows: 43,
        });
        let wire = b"\x32\x00\x00\x00\x04\x00\x84\x00\x2b";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
        assert!(Resize::decode(&[0, 80, 0]).is_err());
    }
}
