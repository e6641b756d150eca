//! `REGISTERED` (type 0x02): relay → agent, the registration is accepted.
//!
//! ```text
//! | version: u16 | capabilities: u32 | [instance: u64] |
//! ```
//!
//! `instance` (added in version 1, optional) tells apart the relay
//! processes behind one name or address: an agent that reaches the same
//! instance through two addresses keeps one connection (DESIGN "Scale-out").

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::capabilities::Capabilities;
use crate::codec::Reader;
use crate::error::DecodeError;

/// The relay accepts a [`Register`](crate::Register) and states its own
/// version and capabilities; the agent now serves forwarded streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The relay's [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
    pub version: u16,
    /// The stream kinds the relay will forward.
    pub capabilities: Capabilities,
    /// The relay process's instance id, random at its start; `None` from
    /// relays that predate it.
    pub instance: Option<u64>,
}

impl Registered {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Registered, payload);
        let version = r.read_u16()?;
        let capabilities = Capabilities(r.read_u32()?);
        let instance = if r.remaining() == 0 {
            None
        } else {
            Some(r.read_u64()?)
        };
        r.finish()?;
        Ok(Self {
            version,
            capabilities,
            instance,
        })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u16(self.version);
        dst.put_u32(self.capabilities.bits());
        if let Some(instance) = self.instance {
            dst.put_u64(instance);
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        2 + 4 + self.instance.map_or(0, |_| 8)
    }
}

impl From<Registered> for Frame {
    fn from(frame: Registered) -> Self {
        Frame::Registered(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(Registered {
            version: 1,
            capabilities: Capabilities::ALL,
            instance: None,
        });
        let wire = b"\x02\x00\x00\x00\x06\x00\x01\x00\x00\x00\x1f";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
    }

    #[test]
    fn wire_example_with_instance() {
        let frame = Frame::from(Registered {
            version: 1,
            capabilities: Capabilities::ALL,
            instance: Some(0x0102_0304_0506_0708),
        });
        let wire = b"\x02\x00\x00\x00\x0e\x00\x01\x00\x00\x00\x1f\x01\x02\x03\x04\x05\x06\x07\x08";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
    }

    #[test]
    fn rejects_short_and_long_payloads() {
        assert!(Registered::decode(&[0, 1, 0, 0, 0]).is_err());
        assert!(Registered::decode(&[0, 1, 0, 0, 0, 7, 0]).is_err());
    }
}
