//! `GRANT` (type 0x14): relay → agent, the only frame on a stream the relay opens; a client may use a direct path.
//!
//! ```text
//! | caller role: u8 | caller name: name | serial: len u8 + bytes (1..=32) |
//! | reach: count u16 + target name × count + sessions u32 |
//! ```
//!
//! `serial` is the serial number of the certificate the caller presented to
//! the relay: the agent admits a direct connection only from that very
//! certificate, so one the relay revoked by serial (or any other of the
//! same identity) cannot ride on the grant.
//!
//! The agent answers [`Accepted`](crate::Accepted) and admits the caller's
//! direct connections, and on them only the opens the grant lists, for as
//! long as the relay keeps this stream open: the relay withdraws a grant
//! (revocation, policy change, the client leaving) by ending the stream.

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::codec::{name_len, put_name, Reader};
use crate::error::DecodeError;
use crate::identity::{Identity, Role};
use crate::reach::Reach;

/// The longest serial number accepted: RFC 5280 4.1.2.2 allows 20 octets;
/// the margin covers a DER sign byte and non-conforming CAs.
const MAX_SERIAL_LEN: usize = 32;

/// A certificate serial number as its raw big-endian bytes (1 to 32 of
/// them). Shown as lowercase hex, the way `relay_net::cert::PeerCert`
/// and the audit log write serials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CertSerial(Vec<u8>);

impl CertSerial {
    /// The serial of `bytes`; `None` if empty or longer than 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<CertSerial> {
        (1..=MAX_SERIAL_LEN)
            .contains(&bytes.len())
            .then(|| CertSerial(bytes.to_vec()))
    }

    /// The serial written as hex digits (either case, no separators);
    /// `None` if that is not 1 to 32 bytes of hex.
    pub fn from_hex(hex: &str) -> Option<CertSerial> {
        if hex.len() % 2 != 0 || !hex.is_ascii() {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect();
        CertSerial::from_bytes(&bytes?)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Display for CertSerial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for CertSerial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertSerial({self})")
    }
}

/// What the relay's policy lets `caller` open on this agent, for the agent
/// to enforce on a direct path. Accepted **only** from a peer with the
/// [`Role::Relay`] role, like [`Forwarded`](crate::Forwarded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The client the grant is for.
    pub caller: Identity,
    /// The serial of the certificate it presented to the relay: the only
    /// one the agent admits on the direct path.
    pub serial: CertSerial,
    /// What it may open on the direct path.
    pub reach: Reach,
}

impl Grant {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Grant, payload);
        let role = r.read_u8()?;
        let role = Role::from_u8(role).ok_or_else(|| r.malformed("unknown caller role"))?;
        let name = r.read_name()?;
        let len = r.read_u8()?;
        let serial = r.bytes(usize::from(len))?;
        let serial =
            CertSerial::from_bytes(serial).ok_or_else(|| r.malformed("serial not 1..=32 bytes"))?;
        let reach = Reach::read(&mut r)?;
        r.finish()?;
        Ok(Self {
            caller: Identity { role, name },
            serial,
            reach,
        })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(self.caller.role.to_u8());
        put_name(dst, &self.caller.name);
        // At most MAX_SERIAL_LEN (CertSerial's invariant): fits the u8.
        dst.put_u8(self.serial.0.len() as u8);
        dst.put_slice(&self.serial.0);
        self.reach.write(dst);
    }

    pub(crate) fn encoded_len(&self) -> usize {
        1 + name_len(&self.caller.name) + 1 + self.serial.0.len() + self.reach.encoded_len()
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
            serial: CertSerial::from_hex("0A1b").unwrap(),
            reach: Reach {
                targets: vec!["kube".parse().unwrap()],
                sessions: crate::Capabilities::EXEC,
            },
        });
        let wire = b"\x14\x00\x00\x00\x12\x02\x02ci\x02\x0a\x1b\x00\x01\x04kube\x00\x00\x00\x04";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
        assert!(Grant::decode(b"\x09\x02ci\x01\x01\x00\x00\x00\x00\x00\x00").is_err());
        // A grant names the one certificate it is for: no serial, no grant.
        assert!(Grant::decode(b"\x02\x02ci\x00\x00\x00\x00\x00\x00\x00").is_err());
        assert!(Grant::decode(&[&b"\x02\x02ci\x21"[..], &[1; 33], &[0; 6]].concat()).is_err());
    }

    #[test]
    fn serials_read_as_the_certificate_tools_write_them() {
        let s = CertSerial::from_hex("00FFa0").unwrap();
        assert_eq!(s.as_bytes(), &[0, 0xff, 0xa0]);
        assert_eq!(s.to_string(), "00ffa0");
        for bad in ["", "abc", "zz", "é1", &"00".repeat(33)] {
            assert_eq!(CertSerial::from_hex(bad), None, "{bad}");
        }
    }
}
