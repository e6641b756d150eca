//! `SIGNAL` (type 0x33): client → agent, deliver a signal to the session's program.
//!
//! ```text
//! | signal: u8 |     1 HUP, 2 INT, 3 QUIT, 9 KILL, 15 TERM (POSIX numbers)
//! ```
//!
//! The numbers are the POSIX ones that are the same on every Unix, not the
//! sender's own numbering. The agent delivers only the signals it knows
//! ([`Signal::KNOWN`]) and ignores others (a newer client may send more).

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::codec::Reader;
use crate::error::DecodeError;

/// A signal for the session's program (its whole process group for `Exec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    /// The signal number, see the constants.
    pub signal: u8,
}

impl Signal {
    /// Hang-up (the terminal went away).
    pub const HUP: u8 = 1;
    /// Interrupt (Ctrl-C).
    pub const INT: u8 = 2;
    /// Quit (Ctrl-\).
    pub const QUIT: u8 = 3;
    /// Kill (cannot be caught).
    pub const KILL: u8 = 9;
    /// Terminate.
    pub const TERM: u8 = 15;
    /// Every signal an agent of this version delivers.
    pub const KNOWN: [u8; 5] = [Self::HUP, Self::INT, Self::QUIT, Self::KILL, Self::TERM];

    /// The signal's name without `SIG` (`"INT"`), or `None` if unknown.
    pub const fn name(self) -> Option<&'static str> {
        match self.signal {
            Self::HUP => Some("HUP"),
            Self::INT => Some("INT"),
            Self::QUIT => Some("QUIT"),
            Self::KILL => Some("KILL"),
            Self::TERM => Some("TERM"),
            _ => None,
        }
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Signal, payload);
        let signal = r.read_u8()?;
        r.finish()?;
        Ok(Self { signal })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(self.signal);
    }

    pub(crate) fn encoded_len(&self) -> usize {
        1
    }
}

impl From<Signal> for Frame {
    fn from(frame: Signal) -> Self {
        Frame::Signal(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(Signal {
            signal: Signal::INT,
        });
        let wire = b"\x33\x00\x00\x00\x01\x02";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
        assert!(Signal::decode(&[]).is_err());
    }

    #[test]
    fn names() {
        for n in Signal::KNOWN {
            assert!(Signal { signal: n }.name().is_some());
        }
        assert_eq!(Signal { signal: 77 }.name(), None);
    }
}
