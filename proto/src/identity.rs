//! Who a peer is: [`Role`] and [`Identity`], and their certificate URI form.
//!
//! Each certificate carries exactly one URI SAN `relay://<relay>/<role>/<name>`
//! (DESIGN, "Identity and trust"). The identity is read from the verified
//! certificate, never from a frame; the one frame that carries an identity,
//! [`Forwarded`](crate::Forwarded), is trusted only from a peer whose own
//! certificate has the [`Role::Relay`] role.

use std::fmt;
use std::str::FromStr;

use crate::name::{Name, NameError};

/// Why a string is not a valid role or identity URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The URI does not start with exactly `relay://`.
    #[error("identity uri {uri:?} does not start with \"relay://\"")]
    Scheme {
        /// The rejected URI.
        uri: String,
    },
    /// The URI does not have exactly three non-empty path parts.
    #[error("identity uri {uri:?} is not of the form relay://<relay>/<role>/<name>")]
    Shape {
        /// The rejected URI.
        uri: String,
    },
    /// The role part of the URI is not `agent`, `client` or `relay`.
    #[error("identity uri {uri:?} has unknown role {role:?}; roles are agent, client and relay")]
    UriRole {
        /// The rejected URI.
        uri: String,
        /// Its role part.
        role: String,
    },
    /// The relay or name part of the URI is not a valid [`Name`].
    #[error("identity uri {uri:?} has a bad name: {source}")]
    UriName {
        /// The rejected URI.
        uri: String,
        /// Why the part is not a name.
        #[source]
        source: NameError,
    },
    /// A string given as a role is not `agent`, `client` or `relay`.
    #[error("unknown role {role:?}; roles are agent, client and relay")]
    Role {
        /// The rejected string.
        role: String,
    },
}

/// The role of a certificate holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Dials out from a private network and exposes targets.
    Agent,
    /// An operator's or CI job's CLI that opens streams to targets.
    Client,
    /// The relay server itself.
    Relay,
}

impl Role {
    /// Every role, in wire order.
    pub const ALL: [Role; 3] = [Role::Agent, Role::Client, Role::Relay];

    /// The role's name in URIs, logs and policy files: `agent`, `client`, `relay`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Client => "client",
            Role::Relay => "relay",
        }
    }

    /// The role's wire byte: agent 1, client 2, relay 3.
    pub const fn to_u8(self) -> u8 {
        match self {
            Role::Agent => 1,
            Role::Client => 2,
            Role::Relay => 3,
        }
    }

    /// The role with wire byte `byte`, or `None` for an unassigned byte.
    pub const fn from_u8(byte: u8) -> Option<Role> {
        match byte {
            1 => Some(Role::Agent),
            2 => Some(Role::Client),
            3 => Some(Role::Relay),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    /// Parses `agent`, `client` or `relay` (exact, lowercase).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| IdentityError::Role { role: s.to_owned() })
    }
}

/// A peer's role and name, as its certificate states them. Displays as
/// `client/alice`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    /// What the peer is.
    pub role: Role,
    /// Its name, unique per role (agents with the same name form a pool).
    pub name: Name,
}

impl Identity {
    /// The URI scheme and separator every identity URI starts with.
    const SCHEME: &'static str = "relay://";

    /// Builds an identity from its parts.
    pub fn new(role: Role, name: Name) -> Self {
        Self { role, name }
    }

    /// The certificate URI SAN for this identity issued by `relay`:
    /// `relay://<relay>/<role>/<name>`.
    pub fn to_uri(&self, relay: &Name) -> String {
        format!("{}{relay}/{}/{}", Self::SCHEME, self.role, self.name)
    }

    /// Parses a certificate URI SAN `relay://<relay>/<role>/<name>` into the
    /// relay's name and the identity.
    ///
    /// Strict: the scheme is exactly `relay://`, there are exactly three
    /// `/`-separated parts, and each is a valid [`Name`] or [`Role`]. There is
    /// no port, query, fragment, percent-encoding or trailing slash.
    ///
    /// # Errors
    ///
    /// An [`IdentityError`] naming `uri` and the part that breaks the rule.
    pub fn from_uri(uri: &str) -> Result<(Name, Identity), IdentityError> {
        let rest = uri
            .strip_prefix(Self::SCHEME)
            .ok_or_else(|| IdentityError::Scheme {
                uri: uri.to_owned(),
            })?;
        let mut parts = rest.split('/');
        let (Some(relay), Some(role), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(IdentityError::Shape {
                uri: uri.to_owned(),
            });
        };
        if relay.is_empty() || role.is_empty() || name.is_empty() {
            return Err(IdentityError::Shape {
                uri: uri.to_owned(),
            });
        }
        let bad_name = |source| IdentityError::UriName {
            uri: uri.to_owned(),
            source,
        };
        let relay = Name::try_from(relay).map_err(bad_name)?;
        let role = role.parse::<Role>().map_err(|_| IdentityError::UriRole {
            uri: uri.to_owned(),
            role: role.to_owned(),
        })?;
        let name = Name::try_from(name).map_err(bad_name)?;
        Ok((relay, Identity { role, name }))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.role, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::try_from(s).unwrap()
    }

    #[test]
    fn uri_round_trips() {
        let id = Identity::new(Role::Client, name("alice"));
        let uri = id.to_uri(&name("relay.example.com"));
        assert_eq!(uri, "relay://relay.example.com/client/alice");
        assert_eq!(id.to_string(), "client/alice");
        assert_eq!(
            Identity::from_uri(&uri),
            Ok((name("relay.example.com"), id))
        );
    }

    #[test]
    fn from_uri_is_strict() {
        for uri in [
            "",
            "relay:/r/agent/a",
            "RELAY://r/agent/a",
            "https://r/agent/a",
            "relay://r/agent",
            "relay://r/agent/a/",
            "relay://r/agent/a/b",
            "relay:///agent/a",
            "relay://r//a",
            "relay://r/agent/",
            "relay://r:443/agent/a",
            "relay://r/Agent/a",
            "relay://r/agent/a?x",
            "relay://r/agent/a%20",
        ] {
            let err = Identity::from_uri(uri).unwrap_err();
            assert!(err.to_string().contains(&format!("{uri:?}")), "{err}");
        }
    }

    #[test]
    fn roles_have_stable_names_and_bytes() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(Role::from_u8(role.to_u8()), Some(role));
        }
        assert_eq!(Role::from_u8(0), None);
        assert_eq!(
            "admin".parse::<Role>().unwrap_err().to_string(),
            "unknown role \"admin\"; roles are agent, client and relay"
        );
    }
}
