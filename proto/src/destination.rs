//! [`Destination`]: where a SOCKS stream goes, a host (IP address or domain
//! name) and a port. Not a [`TargetName`](crate::TargetName): a target is a
//! name the agent exposes; a destination is chosen by the caller and checked
//! against the agent's `--allow-socks` rules after the agent resolved it.
//!
//! ```text
//! destination = | host type: u8 | host | port: u16 |
//!   type 1: IPv4, 4 bytes   type 3: domain, len u8 (1..=253) + bytes   type 4: IPv6, 16 bytes
//! ```
//!
//! The type numbers are SOCKS5's `ATYP` values (RFC 1928 §4), so one table
//! serves both.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BufMut;

use crate::codec::Reader;
use crate::error::DecodeError;

/// A host: an IP address, or a domain name the agent resolves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IP address, dialled as is (after the rule check).
    Ip(IpAddr),
    /// A domain name, resolved by the agent inside the private network.
    Domain(Domain),
}

/// A domain name: 1 to 253 bytes, dot-separated labels of 1 to 63 ASCII
/// letters, digits, `-` and `_` (RFC 1123 host names, plus the underscore
/// found in real service names), not starting or ending with `-`; one
/// trailing dot allowed. Case is kept; compare with [`Domain::matches`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Domain(String);

/// Why a string is not a [`Domain`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host name {value:?}: {reason}")]
pub struct DomainError {
    /// The value given (cut to 80 characters).
    pub value: String,
    /// The rule it breaks.
    pub reason: &'static str,
}

impl Domain {
    /// The longest domain name, in bytes (RFC 1035 §2.3.4, without the root).
    pub const MAX_LEN: usize = 253;

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` names the same host: ASCII case-insensitive, a
    /// trailing dot ignored.
    pub fn matches(&self, other: &str) -> bool {
        let trim = |s: &str| s.strip_suffix('.').unwrap_or(s).to_owned();
        trim(&self.0).eq_ignore_ascii_case(&trim(other))
    }

    fn check(s: &str) -> Result<(), &'static str> {
        if s.is_empty() {
            return Err("empty");
        }
        if s.len() > Self::MAX_LEN {
            return Err("longer than 253 bytes");
        }
        let body = s.strip_suffix('.').unwrap_or(s);
        for label in body.split('.') {
            if label.is_empty() {
                return Err("empty label");
            }
            if label.len() > 63 {
                return Err("label longer than 63 bytes");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err("only letters, digits, '-', '_' and '.' are allowed");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err("a label starts or ends with '-'");
            }
        }
        Ok(())
    }
}

impl TryFrom<&str> for Domain {
    type Error = DomainError;
    fn try_from(s: &str) -> Result<Self, DomainError> {
        Domain::check(s).map_err(|reason| DomainError {
            value: s.chars().take(80).collect(),
            reason,
        })?;
        Ok(Domain(s.to_owned()))
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Host {
    /// An IP literal becomes [`Host::Ip`], anything else must be a valid
    /// [`Domain`]. Brackets around an IPv6 literal are accepted.
    ///
    /// # Errors
    /// If `s` is neither an IP address nor a valid domain name.
    pub fn parse(s: &str) -> Result<Host, DomainError> {
        let unbracketed = s
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        Domain::try_from(s).map(Host::Domain)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Domain(d) => write!(f, "{d}"),
        }
    }
}

/// A host and a port: what a SOCKS client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The host.
    pub host: Host,
    /// The TCP port.
    pub port: u16,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Destination {
    /// The SOCKS5 `ATYP` of an IPv4 address.
    pub const IPV4: u8 = 1;
    /// The SOCKS5 `ATYP` of a domain name.
    pub const DOMAIN: u8 = 3;
    /// The SOCKS5 `ATYP` of an IPv6 address.
    pub const IPV6: u8 = 4;

    /// Reads `| type | host | port |` (also used by the SOCKS5 codec).
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let host = match r.read_u8()? {
            Self::IPV4 => {
                let b = r.bytes(4)?;
                Host::Ip(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            }
            Self::IPV6 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(r.bytes(16)?);
                Host::Ip(IpAddr::V6(Ipv6Addr::from(octets)))
            }
            Self::DOMAIN => {
                let len = r.read_u8()?;
                let bytes = r.bytes(usize::from(len))?;
                // Rule: a domain is a valid host name, so it is safe to log
                // and to hand to the resolver as is.
                let domain = std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|s| Domain::try_from(s).ok())
                    .ok_or_else(|| r.malformed("invalid domain name"))?;
                Host::Domain(domain)
            }
            _ => return Err(r.malformed("unknown destination address type")),
        };
        let port = r.read_u16()?;
        Ok(Destination { host, port })
    }

    /// Writes `| type | host | port |`.
    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        match &self.host {
            Host::Ip(IpAddr::V4(ip)) => {
                dst.put_u8(Self::IPV4);
                dst.put_slice(&ip.octets());
            }
            Host::Ip(IpAddr::V6(ip)) => {
                dst.put_u8(Self::IPV6);
                dst.put_slice(&ip.octets());
            }
            Host::Domain(d) => {
                dst.put_u8(Self::DOMAIN);
                // A Domain is at most 253 bytes, so the length fits the u8.
                dst.put_u8(u8::try_from(d.0.len()).unwrap_or(u8::MAX));
                dst.put_slice(d.0.as_bytes());
            }
        }
        dst.put_u16(self.port);
    }

    /// The encoded length.
    pub(crate) fn encoded_len(&self) -> usize {
        1 + match &self.host {
            Host::Ip(IpAddr::V4(_)) => 4,
            Host::Ip(IpAddr::V6(_)) => 16,
            Host::Domain(d) => 1 + d.0.len(),
        } + 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_follow_the_host_name_rule() {
        for ok in ["kube.internal", "A-1.b_c.", "localhost", "x"] {
            assert!(Domain::try_from(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a-.b",
            "a b",
            "a/b",
            "é.x",
            &"a".repeat(64),
            &format!("{}.x", "a.".repeat(126)),
        ] {
            assert!(Domain::try_from(bad).is_err(), "{bad}");
        }
        let d = Domain::try_from("Kube.Internal.").unwrap();
        assert!(d.matches("kube.internal") && d.matches("KUBE.INTERNAL."));
        assert!(!d.matches("kube.internal.evil"));
    }

    #[test]
    fn hosts_parse_ip_literals_first() {
        assert_eq!(
            Host::parse("10.0.0.1"),
            Ok(Host::Ip("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(Host::parse("[::1]"), Ok(Host::Ip("::1".parse().unwrap())));
        assert!(matches!(Host::parse("kube.internal"), Ok(Host::Domain(_))));
        let d = Destination {
            host: Host::parse("::1").unwrap(),
            port: 443,
        };
        assert_eq!(d.to_string(), "[::1]:443");
    }
}
