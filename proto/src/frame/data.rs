//! `DATA` (type 0x30): bytes of one standard stream of a shell or exec session.
//!
//! ```text
//! | channel: u8 (0 stdin, 1 stdout, 2 stderr) | bytes: the rest of the payload |
//! ```
//!
//! Sent after [`Accepted`](crate::Accepted) on `Shell` and `Exec` streams
//! only: client → agent on `Stdin`, agent → client on `Stdout` and `Stderr`
//! (a `Shell` has one terminal, so its output is all `Stdout`). At most
//! [`Data::MAX_LEN`] bytes per frame: larger writes are cut into several.

use std::fmt;

use bytes::{BufMut, Bytes};

use super::{Frame, FrameType};
use crate::codec::Reader;
use crate::error::DecodeError;

/// One of the three standard streams of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Standard input (wire 0), client → agent.
    Stdin,
    /// Standard output (wire 1), agent → client; also a terminal's output.
    Stdout,
    /// Standard error (wire 2), agent → client.
    Stderr,
}

impl Channel {
    /// Every channel, in wire order.
    pub const ALL: [Channel; 3] = [Channel::Stdin, Channel::Stdout, Channel::Stderr];

    /// The wire byte.
    pub const fn to_u8(self) -> u8 {
        match self {
            Channel::Stdin => 0,
            Channel::Stdout => 1,
            Channel::Stderr => 2,
        }
    }

    /// `stdin`, `stdout` or `stderr`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Stdin => "stdin",
            Channel::Stdout => "stdout",
            Channel::Stderr => "stderr",
        }
    }

    /// Reads a channel byte; anything but 0, 1 or 2 is malformed.
    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.read_u8()? {
            0 => Ok(Channel::Stdin),
            1 => Ok(Channel::Stdout),
            2 => Ok(Channel::Stderr),
            _ => Err(r.malformed("unknown channel")),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bytes on one channel of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    /// Which stream the bytes belong to.
    pub channel: Channel,
    /// The bytes: at most [`Data::MAX_LEN`]; may be empty (a no-op).
    pub bytes: Bytes,
}

impl Data {
    /// The most bytes one frame carries: the frame limit less the channel byte.
    pub const MAX_LEN: usize = super::MAX_FRAME_LEN - 1;

    /// Cuts `bytes` into frames of at most [`Data::MAX_LEN`] bytes each,
    /// without copying.
    pub fn chunks(channel: Channel, mut bytes: Bytes) -> impl Iterator<Item = Data> {
        std::iter::from_fn(move || {
            if bytes.is_empty() {
                return None;
            }
            let n = bytes.len().min(Self::MAX_LEN);
            Some(Data {
                channel,
                bytes: bytes.split_to(n),
            })
        })
    }

    /// Decodes a payload without copying the bytes.
    pub(crate) fn decode(payload: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Data, &payload);
        let channel = Channel::read(&mut r)?;
        Ok(Self {
            channel,
            bytes: payload.slice(1..),
        })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        debug_assert!(
            self.bytes.len() <= Self::MAX_LEN,
            "data frame of {} bytes",
            self.bytes.len()
        );
        dst.put_u8(self.channel.to_u8());
        dst.put_slice(&self.bytes);
    }

    pub(crate) fn encoded_len(&self) -> usize {
        1 + self.bytes.len()
    }
}

impl From<Data> for Frame {
    fn from(frame: Data) -> Self {
        Frame::Data(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(Data {
            channel: Channel::Stderr,
            bytes: Bytes::from_static(b"oops"),
        });
        let wire = b"\x30\x00\x00\x00\x05\x02oops";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
    }

    #[test]
    fn rejects_unknown_or_missing_channel() {
        let malformed = |reason| {
            Err(DecodeError::Malformed {
                frame: FrameType::Data,
                reason,
            })
        };
        assert_eq!(
            Data::decode(Bytes::from_static(b"\x03x")),
            malformed("unknown channel")
        );
        assert_eq!(
            Data::decode(Bytes::new()),
            malformed("payload ends inside a field")
        );
    }

    #[test]
    fn chunks_cover_everything_within_the_limit() {
        let big = Bytes::from(vec![7u8; 2 * Data::MAX_LEN + 5]);
        let frames: Vec<Data> = Data::chunks(Channel::Stdin, big.clone()).collect();
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|d| d.bytes.len() <= Data::MAX_LEN));
        let joined: Vec<u8> = frames.iter().flat_map(|d| d.bytes.to_vec()).collect();
        assert_eq!(joined, big);
        assert!(frames
            .iter()
            .all(|d| Frame::from(d.clone()).payload_len() <= crate::MAX_FRAME_LEN));
        assert_eq!(Data::chunks(Channel::Stdout, Bytes::new()).count(), 0);
    }
}
