//! `FORWARDED` (type 0x11): relay → agent, first frame on a stream the relay opens to the agent.
//!
//! ```text
//! | caller role: u8 | caller name: name | agent: name | target: name | kind: u8 | kind fields… |
//! ```
//!
//! Role bytes: agent 1, client 2, relay 3. The fields after the caller are
//! exactly an [`Open`](crate::Open) payload.

use bytes::BufMut;

use super::{Frame, FrameType, Open};
use crate::codec::{name_len, put_name, Reader};
use crate::error::DecodeError;
use crate::identity::{Identity, Role};

/// An [`Open`] the relay has authorized, with the identity of the caller that
/// sent it (taken from the caller's certificate).
///
/// The agent must accept this frame **only** on a connection whose peer
/// certificate has the [`Role::Relay`] role; from anyone else the `caller`
/// field is a forgery (DESIGN, "Protocol").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// Who opened the stream.
    pub caller: Identity,
    /// What they asked for.
    pub open: Open,
}

impl Forwarded {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Forwarded, payload);
        let role = r.read_u8()?;
        let role = Role::from_u8(role).ok_or_else(|| r.malformed("unknown caller role"))?;
        let name = r.read_name()?;
        let open = Open::read(&mut r)?;
        r.finish()?;
        Ok(Self {
            caller: Identity { role, name },
            open,
        })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(self.caller.role.to_u8());
        put_name(dst, &self.caller.name);
        self.open.encode(dst);
    }

    pub(crate) fn encoded_len(&self) -> usize {
        1 + name_len(&self.caller.name) + self.open.encoded_len()
    }
}

impl From<Forwarded> for Frame {
    fn from(frame: Forwarded) -> Self {
        Frame::Forwarded(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::StreamKind;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(Forwarded {
            caller: Identity::new(Role::Client, "ci".parse().unwrap()),
            open: Open {
                agent: "edge".parse().unwrap(),
                target: "kube".parse().unwrap(),
                kind: StreamKind::Tcp,
            },
        });
        let wire = b"\x11\x00\x00\x00\x0f\x02\x02ci\x04edge\x04kube\x00";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
    }

    #[test]
    fn rejects_unknown_role() {
        assert_eq!(
            Forwarded::decode(b"\x04\x02ci\x04edge\x04kube\x00"),
            Err(DecodeError::Malformed {
                frame: FrameType::Forwarded,
                reason: "unknown caller role"
            })
        );
    }
}
