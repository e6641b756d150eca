//! `EXIT` (type 0x34): agent → client, the session's program has ended; the last frame.
//!
//! ```text
//! | how: u8 | value |     how 0: exited, value = code: i32
//!                         how 1: killed by a signal, value = signal: u8
//! ```
//!
//! The agent finishes the stream right after it.

use std::fmt;

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::codec::Reader;
use crate::error::DecodeError;

/// How the session's program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status code.
    Code(i32),
    /// It was killed by this signal (POSIX number, see [`Signal`](crate::Signal)).
    Signal(u8),
}

impl Exit {
    const CODE: u8 = 0;
    const SIGNAL: u8 = 1;

    /// The status a shell would report: the code, or 128 + the signal.
    ///
    /// ```
    /// # use relay_proto::Exit;
    /// assert_eq!(Exit::Code(3).shell_status(), 3);
    /// assert_eq!(Exit::Signal(2).shell_status(), 130);
    /// ```
    pub const fn shell_status(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal(signal) => 128 + signal as i32,
        }
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Exit, payload);
        let exit = match r.read_u8()? {
            Self::CODE => Exit::Code(i32::from_be_bytes(r.read_u32()?.to_be_bytes())),
            Self::SIGNAL => Exit::Signal(r.read_u8()?),
            _ => return Err(r.malformed("unknown exit kind")),
        };
        r.finish()?;
        Ok(exit)
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        match *self {
            Exit::Code(code) => {
                dst.put_u8(Self::CODE);
                dst.put_i32(code);
            }
            Exit::Signal(signal) => {
                dst.put_u8(Self::SIGNAL);
                dst.put_u8(signal);
            }
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Exit::Code(_) => 5,
            Exit::Signal(_) => 2,
        }
    }
}

impl fmt::Display for Exit {
    /// `exit code 3` or `killed by signal 9`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

impl From<Exit> for Frame {
    fn from(frame: Exit) -> Self {
        Frame::Exit(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_examples() {
        let cases: [(Exit, &[u8]); 3] = [
            (Exit::Code(7), b"\x34\x00\x00\x00\x05\x00\x00\x00\x00\x07"),
            (Exit::Code(-1), b"\x34\x00\x00\x00\x05\x00\xff\xff\xff\xff"),
            (Exit::Signal(9), b"\x34\x00\x00\x00\x02\x01\x09"),
        ];
        for (exit, wire) in cases {
            let frame = Frame::from(exit);
            assert_eq!(&frame.to_bytes()[..], wire);
            assert_eq!(Frame::decode(&mut BytesMut::from(wire)), Ok(Some(frame)));
        }
    }

    #[test]
    fn rejects_bad_kind_and_length() {
        assert!(Exit::decode(&[2, 0]).is_err());
        assert!(Exit::decode(&[1]).is_err());
        assert!(Exit::decode(&[1, 9, 0]).is_err());
        assert_eq!(Exit::Signal(15).to_string(), "killed by signal 15");
    }
}
