//! `AGENT_INFO` (type 0x21): relay → client, one agent the caller may reach (answer to `List`).
//!
//! ```text
//! | agent: name | instances: u16 | count: u16 | target: name × count | sessions: u32 |
//! ```

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::capabilities::Capabilities;
use crate::codec::{list_len, name_len, put_list, put_name, Reader};
use crate::error::DecodeError;
use crate::name::{AgentName, TargetName};

/// One agent (pool) the caller may reach, sent once per agent in answer to a
/// [`List`](crate::List).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// The agent's name.
    pub agent: AgentName,
    /// How many instances of it are connected now (0: known but offline).
    pub instances: u16,
    /// The targets it exposes that the caller may open.
    pub targets: Vec<TargetName>,
    /// The other stream kinds the caller may open there: `SHELL`, `EXEC`,
    /// `SOCKS`, each only if the policy grants it and the agent offers it.
    pub sessions: Capabilities,
}

impl AgentInfo {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::AgentInfo, payload);
        let agent = AgentName::from(r.read_name()?);
        let instances = r.read_u16()?;
        let targets = r.read_list(|r| r.read_name().map(TargetName::from))?;
        let sessions = Capabilities(r.read_u32()?);
        r.finish()?;
        Ok(Self {
            agent,
            instances,
            targets,
            sessions,
        })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        put_name(dst, self.agent.as_name());
        dst.put_u16(self.instances);
        put_list(dst, &self.targets, |dst, t| put_name(dst, t.as_name()));
        dst.put_u32(self.sessions.bits());
    }

    pub(crate) fn encoded_len(&self) -> usize {
        name_len(self.agent.as_name()) + 2 + list_len(&self.targets, |t| name_len(t.as_name())) + 4
    }
}

impl From<AgentInfo> for Frame {
    fn from(frame: AgentInfo) -> Self {
        Frame::AgentInfo(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(AgentInfo {
            agent: "edge".parse().unwrap(),
            instances: 2,
            targets: vec!["kube".parse().unwrap()],
            sessions: Capabilities::EXEC,
        });
        let wire = b"\x21\x00\x00\x00\x12\x04edge\x00\x02\x00\x01\x04kube\x00\x00\x00\x04";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
    }

    #[test]
    fn rejects_a_count_larger_than_the_payload() {
        assert!(AgentInfo::decode(b"\x04edge\x00\x02\xff\xff\x04kube\x00\x00\x00\x00").is_err());
    }
}
