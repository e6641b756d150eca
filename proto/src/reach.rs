//! What one client may open on one agent: the targets of its `Tcp` streams
//! and the other stream kinds. The relay works it out from its policy; a
//! [`Grant`](crate::Grant) hands it to the agent, which enforces it on a
//! direct path, and a [`Path`](crate::Path) tells the client, which sends
//! the rest on the relay path.
//!
//! ```text
//! | count: u16 | target: name × count | sessions: u32 |
//! ```

use bytes::BufMut;

use crate::capabilities::Capabilities;
use crate::codec::{list_len, name_len, put_list, put_name, Reader};
use crate::error::DecodeError;
use crate::name::TargetName;

/// The targets and session kinds a client may open on an agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// Targets it may open `Tcp` streams to.
    pub targets: Vec<TargetName>,
    /// The other stream kinds it may open (`SHELL`, `EXEC`, `SOCKS`).
    pub sessions: Capabilities,
}

impl Reach {
    /// Whether a stream of `kind` ([`StreamKind::capability`](crate::StreamKind::capability))
    /// to `target` is in reach: the target for `TCP`, the kind for the rest.
    pub fn covers(&self, kind: Capabilities, target: &TargetName) -> bool {
        if kind == Capabilities::TCP {
            self.targets.contains(target)
        } else {
            self.sessions.contains(kind)
        }
    }

    /// Whether it holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty() && self.sessions.is_empty()
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let targets = r.read_list(|r| r.read_name().map(TargetName::from))?;
        let sessions = Capabilities(r.read_u32()?);
        Ok(Self { targets, sessions })
    }

    pub(crate) fn write(&self, dst: &mut impl BufMut) {
        put_list(dst, &self.targets, |dst, t| put_name(dst, t.as_name()));
        dst.put_u32(self.sessions.bits());
    }

    pub(crate) fn encoded_len(&self) -> usize {
        list_len(&self.targets, |t| name_len(t.as_name())) + 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_is_by_target_the_rest_by_kind() {
        let reach = Reach {
            targets: vec!["kube".parse().unwrap()],
            sessions: Capabilities::EXEC,
        };
        let kube = "kube".parse().unwrap();
        let db = "db".parse().unwrap();
        assert!(reach.covers(Capabilities::TCP, &kube));
        assert!(!reach.covers(Capabilities::TCP, &db));
        assert!(reach.covers(Capabilities::EXEC, &db));
        assert!(!reach.covers(Capabilities::SHELL, &kube));
        assert!(!reach.is_empty() && Reach::default().is_empty());
    }
}
