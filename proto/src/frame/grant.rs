//! `GRANT` (type 0x14): relay → agent, the only frame on a stream the relay opens; a client may use a direct path.
//!
//! ```text
//! | caller role: u8 | caller name: name | count: u16 | target: name × count | sessions: u32 |
//! ```
//!
//! The agent answers [`Accepted`](crate::Accepted) and admits the caller's
//! direct connections, and on them only the opens the grant lists, for as
//! long as the relay keeps this stream open: the relay withdraws a grant
//! (revocation, policy change, the client leaving) by ending the stream.

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::capabilities::Capabilities;
use crate::codec::{list_len, name_len, put_list, put_name, Reader};
use crate::error::DecodeError;
use crate::identity::{Identity, Role};
use crate::name::TargetName;

/// What the relay's policy lets `caller` open on this agent, for the agent
/// to enforce on a direct path. Accepted **only** from a peer with the
/// [`Role::Relay`] role, like [`Forwarded`](crate::Forwarded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The client the grant is for.
    pub caller: Identity,
    /// Targets it may open `Tcp` streams to.
    pub targets: Vec<TargetName>,
    /// The other stream kinds it may open (`SHELL`, `EXEC`, `SOCKS`).
    pub sessions: Capabilities,
}

impl Grant {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Grant, payload);
        let role = r.read_u8()?;
        let role = Role::from_u8(role).ok_or_else(|| r.malformed("unknown caller role"))?;
        let name = r.read_name()?;
        let targets = r.read_list(|r| r.read_name().map(TargetName::from))?;
        let sessions = Capabilities(r.read_u32()?);
        r.finish()?;
        Ok(Self {
            caller: Identity { role, name },
            targets,
            sessions,
        })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(self.caller.role.to_u8());
        put_name(dst, &self.caller.name);
        put_list(dst, &self.targets, |dst, t| put_name(dst, t.as_name()));
        dst.put_u32(self.sessions.bits());
    }

    pub(crate) fn encoded_len(&self) -> usize {
        1 + name_len(&self.caller.name) + list_len(&self.targets, |t| name_len(t.as_name())) + 4
    }
}

impl From<Grant> for Frame {
    fn from(frame: Grant) -> Self {
        Frame::Grant(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(Grant {
            caller: Identity {
                role: Role::Client,
                name: "ci".parse().unwrap(),
            },
            targets: vec!["kube".parse().unwrap()],
            sessions: Capabilities::EXEC,
        });
        let wire = b"\x14\x00\x00\x00\x0f\x02\x02ci\x00\x01\x04kube\x00\x00\x00\x04";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
        assert!(Grant::decode(b"\x09\x02ci\x00\x00\x00\x00\x00\x00").is_err());
    }
}
