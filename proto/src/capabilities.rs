//! [`Capabilities`]: the stream kinds a peer supports, as bit flags.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};

/// A set of capabilities, sent in [`Register`](crate::Register) and
/// [`Registered`](crate::Registered) so each side knows what the other can do.
///
/// Bits this version does not know are kept as they are (a newer peer may
/// set them) and show as hex in `Debug`.
///
/// ```
/// # use relay_proto::Capabilities;
/// let caps = Capabilities::TCP | Capabilities::EXEC;
/// assert!(caps.contains(Capabilities::TCP));
/// assert!(!caps.contains(Capabilities::SHELL));
/// assert_eq!(format!("{caps:?}"), "Capabilities(TCP | EXEC)");
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(pub u32);

impl Capabilities {
    /// No capabilities.
    pub const EMPTY: Capabilities = Capabilities(0);
    /// `Tcp` streams: raw bytes to a target.
    pub const TCP: Capabilities = Capabilities(1);
    /// `Shell` streams: an interactive terminal.
    pub const SHELL: Capabilities = Capabilities(2);
    /// `Exec` streams: run one command.
    pub const EXEC: Capabilities = Capabilities(4);
    /// `Socks` streams: a destination chosen by the caller, checked by
    /// the agent's `--allow-socks` rules.
    pub const SOCKS: Capabilities = Capabilities(8);
    /// `Recording` streams: the agent's session recordings, read only.
    pub const RECORDINGS: Capabilities = Capabilities(16);
    /// Every capability this version knows.
    pub const ALL: Capabilities = Capabilities(1 | 2 | 4 | 8 | 16);

    const NAMES: [(Capabilities, &'static str); 5] = [
        (Self::TCP, "TCP"),
        (Self::SHELL, "SHELL"),
        (Self::EXEC, "EXEC"),
        (Self::SOCKS, "SOCKS"),
        (Self::RECORDINGS, "RECORDINGS"),
    ];

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The bits set in either.
    pub const fn union(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }

    /// The bits set in both (what two peers can do together).
    pub const fn intersection(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 & other.0)
    }
}

impl BitOr for Capabilities {
    type Output = Capabilities;

    fn bitor(self, rhs: Capabilities) -> Capabilities {
        self.union(rhs)
    }
}

impl BitOrAssign for Capabilities {
    fn bitor_assign(&mut self, rhs: Capabilities) {
        *self = self.union(rhs);
    }
}

impl BitAnd for Capabilities {
    type Output = Capabilities;

    fn bitand(self, rhs: Capabilities) -> Capabilities {
        self.intersection(rhs)
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Capabilities(")?;
        let mut rest = self.0;
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { " | " };
            first = false;
            f.write_str(s)
        };
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                sep(f)?;
                f.write_str(name)?;
                rest &= !flag.0;
            }
        }
        if rest != 0 {
            sep(f)?;
            write!(f, "{rest:#x}")?;
        }
        if self.is_empty() {
            f.write_str("empty")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_lists_names_and_unknown_bits() {
        assert_eq!(format!("{:?}", Capabilities::EMPTY), "Capabilities(empty)");
        assert_eq!(
            format!("{:?}", Capabilities::ALL),
            "Capabilities(TCP | SHELL | EXEC | SOCKS | RECORDINGS)"
        );
        assert_eq!(
            format!("{:?}", Capabilities(0x22)),
            "Capabilities(SHELL | 0x20)"
        );
    }

    #[test]
    fn set_operations() {
        let mut caps = Capabilities::TCP;
        caps |= Capabilities::SHELL;
        assert!(caps.contains(Capabilities::TCP | Capabilities::SHELL));
        assert!(!caps.contains(Capabilities::ALL));
        assert_eq!(caps & Capabilities::SHELL, Capabilities::SHELL);
        assert!(caps.contains(Capabilities::EMPTY));
    }
}
