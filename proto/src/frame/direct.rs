//! `DIRECT` (type 0x22): client → relay, the only frame on a fresh stream; asks for a direct path to an agent.
//!
//! ```text
//! | agent: name | prefix: u32 |
//! ```
//!
//! `prefix` is the start of every connection ID the client's endpoint
//! issues (high bit set): the relay routes the agent's datagrams by it. The
//! relay answers [`Path`](crate::Path) and keeps the stream open while the
//! path may be used, or [`Refused`](crate::Refused).

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::cid_prefix::CidPrefix;
use crate::codec::{name_len, put_name, Reader};
use crate::error::DecodeError;
use crate::name::AgentName;

/// A client asks for a path to `agent` that the relay forwards without
/// decrypting (DESIGN "end-to-end mode").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Direct {
    /// The agent to reach.
    pub agent: AgentName,
    /// The prefix of the client's connection IDs.
    pub prefix: CidPrefix,
}

impl Direct {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Direct, payload);
        let agent = AgentName::from(r.read_name()?);
        let prefix = r.read_prefix()?;
        r.finish()?;
        Ok(Self { agent, prefix })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        put_name(dst, self.agent.as_name());
        dst.put_u32(self.prefix.to_u32());
    }

    pub(crate) fn encoded_len(&self) -> usize {
        name_len(self.agent.as_name()) + 4
    }
}

impl From<Direct> for Frame {
    fn from(frame: Direct) -> Self {
        Frame::Direct(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(Direct {
            agent: "prod".parse().unwrap(),
            prefix: CidPrefix::routable([0, 0, 0, 1]),
        });
        let wire = b"\x22\x00\x00\x00\x09\x04prod\x80\x00\x00\x01";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
        assert!(Direct::decode(b"\x04prod\x80").is_err());
    }
}
