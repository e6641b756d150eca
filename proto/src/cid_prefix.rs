//! The connection-ID prefix of a direct path (DESIGN "end-to-end mode").
//!
//! Every agent and client endpoint issues QUIC connection IDs that start
//! with its own 4-byte prefix, high bit set; the relay's own IDs have the
//! high bit clear. A prefix therefore says, from a datagram's first bytes,
//! whether the relay routes it on or reads it itself. `Register`, `Direct`
//! and `Path` carry one; parsing checks the high bit once, here, so no one
//! downstream checks it again.

use std::fmt;

/// A routable connection-ID prefix: four bytes, the first with its high bit set.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CidPrefix([u8; 4]);

impl CidPrefix {
    /// The bit that marks a routable prefix; the relay's own IDs lack it.
    pub const ROUTABLE: u8 = 0x80;

    /// The prefix that starts with `bytes` once the routable bit is set:
    /// how a random prefix is drawn.
    pub fn routable(mut bytes: [u8; 4]) -> CidPrefix {
        bytes[0] |= Self::ROUTABLE;
        CidPrefix(bytes)
    }

    /// The prefix of these bytes, if they are routable (high bit set).
    pub fn from_bytes(bytes: [u8; 4]) -> Option<CidPrefix> {
        (bytes[0] & Self::ROUTABLE != 0).then_some(CidPrefix(bytes))
    }

    /// The prefix a frame's `u32` field carries, if it is routable.
    pub fn from_u32(v: u32) -> Option<CidPrefix> {
        Self::from_bytes(v.to_be_bytes())
    }

    /// The prefix as a frame carries it.
    pub fn to_u32(self) -> u32 {
        u32::from_be_bytes(self.0)
    }

    /// The four bytes a connection ID starts with.
    pub fn bytes(self) -> [u8; 4] {
        self.0
    }
}

impl fmt::Debug for CidPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CidPrefix({:08x})", self.to_u32())
    }
}

impl fmt::Display for CidPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.to_u32())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_high_bit_makes_a_prefix_routable() {
        assert_eq!(CidPrefix::from_u32(0x7fff_ffff), None);
        assert_eq!(CidPrefix::from_u32(0), None);
        let p = CidPrefix::from_u32(0x8000_0001);
        assert_eq!(p.map(CidPrefix::to_u32), Some(0x8000_0001));
        assert_eq!(CidPrefix::routable([0, 1, 2, 3]).bytes(), [0x80, 1, 2, 3]);
    }
}
