//! `REGISTER` (type 0x01): agent → relay, the first frame on the control stream.
//!
//! ```text
//! | version: u16 | capabilities: u32 | count: u16 | target: name × count | [prefix: u32] |
//! ```
//!
//! The agent's name is not in the frame: the relay takes it from the agent's
//! certificate (DESIGN: identity never comes from a frame field).
//!
//! `prefix` (added in version 1, optional: absent when the agent serves no
//! direct paths; when present, routable, high bit set) starts the
//! connection IDs the agent's endpoint issues, so the relay can route
//! direct paths to it (see [`Direct`](crate::Direct)).

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::capabilities::Capabilities;
use crate::cid_prefix::CidPrefix;
use crate::codec::{list_len, name_len, put_list, put_name, Reader};
use crate::error::DecodeError;
use crate::name::TargetName;

/// An agent announces its protocol version, what it can do and which targets
/// its allowlist exposes. The relay answers [`Registered`](crate::Registered)
/// or [`Refused`](crate::Refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The agent's [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
    pub version: u16,
    /// The stream kinds the agent serves.
    pub capabilities: Capabilities,
    /// The targets the agent exposes, in the agent's order.
    pub targets: Vec<TargetName>,
    /// The prefix of the agent's connection IDs for direct paths, if it
    /// serves them.
    pub prefix: Option<CidPrefix>,
}

impl Register {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Register, payload);
        let version = r.read_u16()?;
        let capabilities = Capabilities(r.read_u32()?);
        let targets = r.read_list(|r| r.read_name().map(TargetName::from))?;
        // One encoding per value: "no prefix" is the field left out, and
        // a present one must be routable.
        let prefix = if r.remaining() == 0 {
            None
        } else {
            Some(r.read_prefix()?)
        };
        r.finish()?;
        Ok(Self {
            version,
            capabilities,
            targets,
            prefix,
        })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u16(self.version);
        dst.put_u32(self.capabilities.bits());
        put_list(dst, &self.targets, |dst, t| put_name(dst, t.as_name()));
        if let Some(prefix) = self.prefix {
            dst.put_u32(prefix.to_u32());
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        2 + 4
            + list_len(&self.targets, |t| name_len(t.as_name()))
            + if self.prefix.is_some() { 4 } else { 0 }
    }
}

impl From<Register> for Frame {
    fn from(frame: Register) -> Self {
        Frame::Register(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(Register {
            version: 1,
            capabilities: Capabilities::TCP | Capabilities::EXEC,
            targets: vec!["kube".parse().unwrap(), "db".parse().unwrap()],
            prefix: None,
        });
        let wire = b"\x01\x00\x00\x00\x10\
                     \x00\x01\x00\x00\x00\x05\x00\x02\x04kube\x02db";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
    }

    #[test]
    fn prefix_is_optional_and_trails() {
        let frame = Register {
            version: 1,
            capabilities: Capabilities::TCP,
            targets: vec![],
            prefix: CidPrefix::from_u32(0x8000_0002),
        };
        let wire = b"\x00\x01\x00\x00\x00\x01\x00\x00\x80\x00\x00\x02";
        let mut buf = BytesMut::new();
        frame.encode(&mut buf);
        assert_eq!(&buf[..], wire);
        assert_eq!(Register::decode(wire), Ok(frame));
        assert!(Register::decode(&wire[..10]).is_err());
        // Found by the fuzzer: an explicit 0 would re-encode without it.
        let explicit_zero = b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00";
        assert!(Register::decode(explicit_zero).is_err());
        let unroutable = b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x02";
        assert!(Register::decode(unroutable).is_err());
    }

    #[test]
    fn rejects_bad_target_and_short_list() {
        let bad_name = b"\x00\x01\x00\x00\x00\x01\x00\x01\x04Kube";
        assert_eq!(
            Register::decode(bad_name),
            Err(DecodeError::Malformed {
                frame: FrameType::Register,
                reason: "invalid name"
            })
        );
        let short = b"\x00\x01\x00\x00\x00\x01\x00\x02\x04kube";
        assert!(Register::decode(short).is_err());
    }
}
