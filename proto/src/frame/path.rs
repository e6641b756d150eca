//! `PATH` (type 0x23): relay → client, the answer to `Direct`: the path is granted.
//!
//! ```text
//! | prefix: u32 | [reach: count u16 + target name × count + sessions u32] |
//! ```
//!
//! `prefix` starts the agent's connection IDs: the client's first packets
//! toward the agent carry it, so the relay forwards them. `reach` (added
//! later in version 1, optional: an older relay sends none) is what the
//! path's grant holds, so a client sends only those streams on it and the
//! rest on the relay path.

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::cid_prefix::CidPrefix;
use crate::codec::Reader;
use crate::error::DecodeError;
use crate::reach::Reach;

/// A direct path to the agent is granted; connect to the relay's address
/// with destination IDs that start with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The prefix of the agent instance's connection IDs.
    pub prefix: CidPrefix,
    /// What the path's grant lets the client open; `None` from a relay
    /// that does not say (the agent still refuses what it does not hold).
    pub reach: Option<Reach>,
}

impl Path {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Path, payload);
        let prefix = r.read_prefix()?;
        // One encoding per value: "not said" is the field left out.
        let reach = if r.remaining() == 0 {
            None
        } else {
            Some(Reach::read(&mut r)?)
        };
        r.finish()?;
        Ok(Self { prefix, reach })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u32(self.prefix.to_u32());
        if let Some(reach) = &self.reach {
            reach.write(dst);
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        4 + self.reach.as_ref().map_or(0, Reach::encoded_len)
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
            reach: None,
        });
        let wire = b"\x23\x00\x00\x00\x04\x81\x23\x45\x67";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
        let frame = Frame::from(Path {
            prefix: CidPrefix::routable([0x01, 0x23, 0x45, 0x67]),
            reach: Some(Reach {
                targets: vec!["kube".parse().unwrap()],
                sessions: crate::Capabilities::EXEC,
            }),
        });
        let wire = b"\x23\x00\x00\x00\x0f\x81\x23\x45\x67\x00\x01\x04kube\x00\x00\x00\x04";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
        // A reach cut short is malformed, not "none".
        assert!(Path::decode(b"\x81\x23\x45\x67\x00").is_err());
    }

    #[test]
    fn rejects_an_unroutable_prefix() {
        assert!(Path::decode(b"\x01\x23\x45\x67").is_err());
    }
}
