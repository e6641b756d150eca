//! Validated names: [`Name`], and the [`AgentName`] and [`TargetName`] newtypes.
//!
//! One rule serves agents, targets, clients and the relay itself (DESIGN,
//! "Identity and trust"): 1 to 63 bytes of `a-z`, `0-9`, `-` and `.`, starting
//! with a letter or a digit. That fits a DNS label, a URI path segment and a
//! log field without quoting, and one byte of length on the wire.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The string is empty.
    #[error("name is empty; names are 1 to 63 bytes")]
    Empty,
    /// The string is longer than [`Name::MAX_LEN`] bytes.
    #[error("name {} is {len} bytes long; names are at most 63 bytes", abbreviate(.name))]
    TooLong {
        /// The rejected string.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The string holds a character outside `a-z`, `0-9`, `-` and `.`.
    #[error("name {name:?} has character {ch:?} at {at}; names use a-z, 0-9, '-' and '.'")]
    BadChar {
        /// The rejected string.
        name: String,
        /// The first offending character.
        ch: char,
        /// Its byte offset in `name`.
        at: usize,
    },
    /// The string starts with `-` or `.`.
    #[error("name {name:?} starts with {ch:?}; names start with a letter or a digit")]
    BadStart {
        /// The rejected string.
        name: String,
        /// Its first character.
        ch: char,
    },
}

/// Quotes `name` for an error message, cutting it short so that a huge input
/// does not make a huge message.
fn abbreviate(name: &str) -> String {
    const KEEP: usize = 64;
    if name.len() <= KEEP {
        return format!("{name:?}");
    }
    let mut end = KEEP;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}…", &name[..end])
}

/// A validated name: 1 to [`Name::MAX_LEN`] bytes of `a-z`, `0-9`, `-` and
/// `.`, starting with a letter or a digit.
///
/// Built only through [`TryFrom`] or [`FromStr`], so holding a `Name` proves
/// the string follows the rule ("parse, don't validate").
///
/// ```
/// # use relay_proto::Name;
/// let name: Name = "edge-1.prod".parse()?;
/// assert_eq!(name.as_str(), "edge-1.prod");
/// assert!(Name::try_from("Alice").is_err());
/// # Ok::<(), relay_proto::NameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// The longest name, in bytes (a DNS label; the wire length is one byte).
    pub const MAX_LEN: usize = 63;

    /// Returns the name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the name as an owned `String`.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Checks `s` against the naming rule.
    fn validate(s: &str) -> Result<(), NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(NameError::TooLong {
                name: s.to_owned(),
                len: s.len(),
            });
        }
        // Rule: only a-z, 0-9, '-' and '.'.
        if let Some((at, ch)) = s
            .char_indices()
            .find(|&(_, c)| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '.'))
        {
            return Err(NameError::BadChar {
                name: s.to_owned(),
                ch,
                at,
            });
        }
        // Rule: the first character is a letter or a digit, so a name is never
        // mistaken for a flag (`-x`) or a relative path (`.`, `..`).
        match s.chars().next() {
            Some(ch @ ('-' | '.')) => Err(NameError::BadStart {
                name: s.to_owned(),
                ch,
            }),
            _ => Ok(()),
        }
    }
}

impl TryFrom<String> for Name {
    type Error = NameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::validate(&s)?;
        Ok(Self(s))
    }
}

impl TryFrom<&str> for Name {
    type Error = NameError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::validate(s)?;
        Ok(Self(s.to_owned()))
    }
}

impl FromStr for Name {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<Name> for String {
    fn from(name: Name) -> Self {
        name.0
    }
}

/// Defines a newtype over [`Name`] with the same rule and traits, so an agent
/// name and a target name cannot be swapped by mistake.
macro_rules! name_newtype {
    ($(#[$meta:meta])* $ty:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(Name);

        impl $ty {
            /// Returns the name as a string slice.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// Returns the underlying [`Name`].
            pub fn as_name(&self) -> &Name {
                &self.0
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($ty)).field(&self.0.as_str()).finish()
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0.as_str())
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.0.as_str()
            }
        }

        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                self.0.as_str()
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0.as_str() == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0.as_str() == *other
            }
        }

        impl From<Name> for $ty {
            fn from(name: Name) -> Self {
                Self(name)
            }
        }

        impl From<$ty> for Name {
            fn from(name: $ty) -> Self {
                name.0
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;

            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Name::try_from(s).map(Self)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                Name::try_from(s).map(Self)
            }
        }

        impl FromStr for $ty {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::try_from(s)
            }
        }
    };
}

name_newtype! {
    /// The name of an agent, taken from its certificate. Several agent
    /// instances with the same name form a pool.
    AgentName
}

name_newtype! {
    /// The name of a target an agent exposes from its allowlist (e.g. `kube-api`).
    TargetName
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_that_follow_the_rule() {
        for s in ["a", "0", "edge-1.prod", "a-", "9.9", &"x".repeat(63)] {
            assert_eq!(Name::try_from(s).map(|n| n.into_string()), Ok(s.to_owned()));
        }
    }

    #[test]
    fn messages_name_the_value_and_the_rule() {
        let err = Name::try_from("Alice").unwrap_err();
        assert_eq!(
            err.to_string(),
            "name \"Alice\" has character 'A' at 0; names use a-z, 0-9, '-' and '.'"
        );
        assert_eq!(
            Name::try_from("-x").unwrap_err().to_string(),
            "name \"-x\" starts with '-'; names start with a letter or a digit"
        );
        assert_eq!(Name::try_from("").unwrap_err(), NameError::Empty);
        let long = "y".repeat(1000);
        let msg = Name::try_from(long.as_str()).unwrap_err().to_string();
        assert!(msg.contains("1000 bytes"), "{msg}");
        assert!(msg.len() < 200, "{msg}");
    }

    #[test]
    fn bad_char_reports_the_byte_offset() {
        assert_eq!(
            Name::try_from("ab_é").unwrap_err(),
            NameError::BadChar {
                name: "ab_é".into(),
                ch: '_',
                at: 2
            }
        );
        assert_eq!(
            Name::try_from("abé").unwrap_err(),
            NameError::BadChar {
                name: "abé".into(),
                ch: 'é',
                at: 2
            }
        );
    }

    #[test]
    fn newtypes_share_the_rule_and_traits() {
        let agent: AgentName = "edge".parse().unwrap();
        assert_eq!(agent.as_str(), "edge");
        assert_eq!(agent, "edge");
        assert_eq!(format!("{agent} {agent:?}"), "edge AgentName(\"edge\")");
        assert!(TargetName::try_from("Kube").is_err());
        let name: Name = agent.into();
        assert_eq!(TargetName::from(name).as_str(), "edge");
    }
}
