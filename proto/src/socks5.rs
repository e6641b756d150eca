//! A SOCKS5 codec for `relay-client socks`, sans-IO and CONNECT-only
//! (RFC 1928; no authentication methods, no BIND, no UDP ASSOCIATE).
//!
//! ```text
//! client ─ greeting  | VER=5 | NMETHODS | METHODS… |                       ─▶ us
//! client ◀ selection | VER=5 | METHOD (0x00 no auth, or 0xFF none acceptable) | ─ us
//! client ─ request   | VER=5 | CMD=1 CONNECT | RSV=0 | ATYP | ADDR | PORT | ─▶ us
//! client ◀ reply     | VER=5 | REP | RSV=0 | ATYP | BND.ADDR | BND.PORT |   ─ us
//! ```
//!
//! Decoders take the bytes read so far and return `Ok(None)` when more are
//! needed (nothing consumed), `Ok(Some((value, used)))` when complete.
//! Arbitrary bytes never panic them. Domain names in a request are passed
//! on unresolved: the agent resolves them inside the private network.
//!
//! Small enough to own: a crate such as `fast-socks5` brings a server with
//! its own resolver and dialler, which is exactly the part that must run on
//! the agent, not here.

use std::net::{IpAddr, SocketAddr};

use crate::code::ErrorCode;
use crate::codec::Reader;
use crate::destination::Destination;
use crate::frame::FrameType;

/// The protocol version byte.
pub const VERSION: u8 = 5;
/// Method "no authentication required".
pub const NO_AUTH: u8 = 0x00;
/// Method reply "no acceptable methods".
pub const NO_ACCEPTABLE_METHODS: u8 = 0xFF;
/// Command CONNECT, the only one served.
pub const CONNECT: u8 = 0x01;

/// Why bytes from a SOCKS client are not a valid greeting or request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Socks5Error {
    /// The first byte is not 5 (a SOCKS4 or HTTP client, say).
    #[error("not SOCKS5: version byte {0:#04x}")]
    Version(u8),
    /// The greeting offers no methods at all.
    #[error("the greeting offers no authentication methods")]
    NoMethods,
    /// A command other than CONNECT.
    #[error("SOCKS command {0:#04x} is not supported (only CONNECT)")]
    Command(u8),
    /// An address type other than IPv4, domain or IPv6.
    #[error("SOCKS address type {0:#04x} is not supported")]
    AddressType(u8),
    /// A field breaks a rule (e.g. an invalid domain name).
    #[error("malformed SOCKS5 request: {0}")]
    Malformed(&'static str),
}

impl Socks5Error {
    /// The reply code to answer a request that failed this way.
    pub fn reply(&self) -> ReplyCode {
        match self {
            Socks5Error::Command(_) => ReplyCode::COMMAND_NOT_SUPPORTED,
            Socks5Error::AddressType(_) => ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED,
            _ => ReplyCode::GENERAL_FAILURE,
        }
    }
}

/// The client's greeting: the authentication methods it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Method numbers, 1 to 255 of them.
    pub methods: Vec<u8>,
}

impl Greeting {
    /// Decodes a greeting from the front of `buf`.
    ///
    /// # Errors
    /// `Version` or `NoMethods`.
    pub fn decode(buf: &[u8]) -> Result<Option<(Greeting, usize)>, Socks5Error> {
        let Some(&version) = buf.first() else {
            return Ok(None);
        };
        if version != VERSION {
            return Err(Socks5Error::Version(version));
        }
        let Some(&n) = buf.get(1) else {
            return Ok(None);
        };
        if n == 0 {
            return Err(Socks5Error::NoMethods);
        }
        let used = 2 + usize::from(n);
        match buf.get(2..used) {
            Some(methods) => Ok(Some((
                Greeting {
                    methods: methods.to_vec(),
                },
                used,
            ))),
            None => Ok(None),
        }
    }

    /// The greeting's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION, u8::try_from(self.methods.len()).unwrap_or(u8::MAX)];
        out.extend_from_slice(&self.methods[..self.methods.len().min(255)]);
        out
    }

    /// The method we answer with: no authentication if offered (the local
    /// listener is the boundary, as with `ssh -D`), else "none acceptable".
    pub fn select(&self) -> [u8; 2] {
        let method = if self.methods.contains(&NO_AUTH) {
            NO_AUTH
        } else {
            NO_ACCEPTABLE_METHODS
        };
        [VERSION, method]
    }
}

/// A CONNECT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Where to connect.
    pub dest: Destination,
}

impl Request {
    /// Decodes a request from the front of `buf`.
    ///
    /// # Errors
    /// `Version`, `Command` (not CONNECT), `AddressType`, or `Malformed`
    /// (e.g. an invalid domain name); [`Socks5Error::reply`] gives the code
    /// to answer with.
    pub fn decode(buf: &[u8]) -> Result<Option<(Request, usize)>, Socks5Error> {
        if buf.len() < 4 {
            if let Some(&v) = buf.first().filter(|&&v| v != VERSION) {
                return Err(Socks5Error::Version(v));
            }
            return Ok(None);
        }
        let (version, command, atyp) = (buf[0], buf[1], buf[3]);
        if version != VERSION {
            return Err(Socks5Error::Version(version));
        }
        // RFC 1928 §4: CONNECT, BIND, UDP ASSOCIATE; only CONNECT is served.
        if command != CONNECT {
            return Err(Socks5Error::Command(command));
        }
        if buf[2] != 0 {
            return Err(Socks5Error::Malformed("reserved byte is not zero"));
        }
        let used = match atyp {
            Destination::IPV4 => 4 + 4 + 2,
            Destination::IPV6 => 4 + 16 + 2,
            Destination::DOMAIN => match buf.get(4) {
                Some(&len) => 5 + usize::from(len) + 2,
                None => return Ok(None),
            },
            other => return Err(Socks5Error::AddressType(other)),
        };
        let Some(body) = buf.get(3..used) else {
            return Ok(None);
        };
        let mut r = Reader::new(FrameType::Open, body);
        let dest = Destination::read(&mut r).map_err(|e| match e {
            crate::DecodeError::Malformed { reason, .. } => Socks5Error::Malformed(reason),
            _ => Socks5Error::Malformed("bad address"),
        })?;
        Ok(Some((Request { dest }, used)))
    }

    /// The request's bytes (what a SOCKS client sends).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION, CONNECT, 0];
        self.dest.encode(&mut out);
        out
    }
}

/// A SOCKS5 reply code (`REP`).
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct ReplyCode(pub u8);

impl ReplyCode {
    /// 0x00 succeeded.
    pub const SUCCEEDED: ReplyCode = ReplyCode(0x00);
    /// 0x01 general SOCKS server failure.
    pub const GENERAL_FAILURE: ReplyCode = ReplyCode(0x01);
    /// 0x02 connection not allowed by ruleset.
    pub const NOT_ALLOWED: ReplyCode = ReplyCode(0x02);
    /// 0x03 network unreachable.
    pub const NETWORK_UNREACHABLE: ReplyCode = ReplyCode(0x03);
    /// 0x04 host unreachable.
    pub const HOST_UNREACHABLE: ReplyCode = ReplyCode(0x04);
    /// 0x05 connection refused.
    pub const CONNECTION_REFUSED: ReplyCode = ReplyCode(0x05);
    /// 0x06 TTL expired (we use it for a dial that timed out).
    pub const TTL_EXPIRED: ReplyCode = ReplyCode(0x06);
    /// 0x07 command not supported.
    pub const COMMAND_NOT_SUPPORTED: ReplyCode = ReplyCode(0x07);
    /// 0x08 address type not supported.
    pub const ADDRESS_TYPE_NOT_SUPPORTED: ReplyCode = ReplyCode(0x08);

    /// The reply for a refusal with `code` from the relay or the agent.
    pub fn from_error(code: ErrorCode) -> ReplyCode {
        match code {
            ErrorCode::NO_ERROR => ReplyCode::SUCCEEDED,
            ErrorCode::UNAUTHORIZED
            | ErrorCode::TARGET_NOT_EXPOSED
            | ErrorCode::UNSUPPORTED
            | ErrorCode::REVOKED
            | ErrorCode::CERT_EXPIRED => ReplyCode::NOT_ALLOWED,
            ErrorCode::UNKNOWN_AGENT | ErrorCode::AGENT_OFFLINE | ErrorCode::GOING_AWAY => {
                ReplyCode::NETWORK_UNREACHABLE
            }
            ErrorCode::TARGET_UNREACHABLE => ReplyCode::HOST_UNREACHABLE,
            ErrorCode::TARGET_REFUSED => ReplyCode::CONNECTION_REFUSED,
            ErrorCode::TARGET_TIMEOUT => ReplyCode::TTL_EXPIRED,
            _ => ReplyCode::GENERAL_FAILURE,
        }
    }
}

/// A reply to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The outcome.
    pub code: ReplyCode,
    /// `BND.ADDR`/`BND.PORT`. The agent's local address is none of the
    /// client's business, so we always send `0.0.0.0:0` (clients ignore it
    /// for CONNECT).
    pub bound: SocketAddr,
}

impl Reply {
    /// A reply with `code` and an unspecified bound address.
    pub fn new(code: ReplyCode) -> Reply {
        Reply {
            code,
            bound: SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }

    /// The reply's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION, self.code.0, 0];
        match self.bound.ip() {
            IpAddr::V4(ip) => {
                out.push(Destination::IPV4);
                out.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.push(Destination::IPV6);
                out.extend_from_slice(&ip.octets());
            }
        }
        out.extend_from_slice(&self.bound.port().to_be_bytes());
        out
    }

    /// Decodes a reply (what a SOCKS client reads); domain-typed bound
    /// addresses are not produced by us and are rejected.
    ///
    /// # Errors
    /// `Version`, `AddressType` or `Malformed`.
    pub fn decode(buf: &[u8]) -> Result<Option<(Reply, usize)>, Socks5Error> {
        if buf.len() < 4 {
            return Ok(None);
        }
        if buf[0] != VERSION {
            return Err(Socks5Error::Version(buf[0]));
        }
        let code = ReplyCode(buf[1]);
        let used = match buf[3] {
            Destination::IPV4 => 10,
            Destination::IPV6 => 22,
            other => return Err(Socks5Error::AddressType(other)),
        };
        let Some(body) = buf.get(3..used) else {
            return Ok(None);
        };
        let mut r = Reader::new(FrameType::Open, body);
        let dest =
            Destination::read(&mut r).map_err(|_| Socks5Error::Malformed("bad bound address"))?;
        let ip = match dest.host {
            crate::Host::Ip(ip) => ip,
            crate::Host::Domain(_) => return Err(Socks5Error::AddressType(Destination::DOMAIN)),
        };
        Ok(Some((
            Reply {
                code,
                bound: SocketAddr::new(ip, dest.port),
            },
            used,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Domain, Host};

    #[test]
    fn curl_style_exchange() {
        // curl --socks5-hostname sends: 05 02 00 01, then a domain CONNECT.
        let greeting = [5, 2, 0, 1];
        let (g, used) = Greeting::decode(&greeting).unwrap().unwrap();
        assert_eq!(used, 4);
        assert_eq!(g.select(), [5, 0]);
        let mut req = vec![5, 1, 0, 3, 13];
        req.extend_from_slice(b"kube.internal");
        req.extend_from_slice(&443u16.to_be_bytes());
        req.extend_from_slice(b"GET");
        let (r, used) = Request::decode(&req).unwrap().unwrap();
        assert_eq!(used, req.len() - 3);
        assert_eq!(
            r.dest,
            Destination {
                host: Host::Domain(Domain::try_from("kube.internal").unwrap()),
                port: 443
            }
        );
        for n in 0..used {
            assert_eq!(Request::decode(&req[..n]), Ok(None), "prefix {n}");
        }
    }

    #[test]
    fn refusals_have_codes() {
        assert_eq!(Greeting::decode(&[4, 1, 0]), Err(Socks5Error::Version(4)));
        assert_eq!(Greeting::decode(&[5, 0]), Err(Socks5Error::NoMethods));
        assert_eq!(
            Greeting::decode(&[5, 1, 2]).unwrap().unwrap().0.select(),
            [5, 0xff]
        );
        let bind = Request::decode(&[5, 2, 0, 1, 1, 2, 3, 4, 0, 80]).unwrap_err();
        assert_eq!(bind.reply(), ReplyCode::COMMAND_NOT_SUPPORTED);
        let atyp = Request::decode(&[5, 1, 0, 9]).unwrap_err();
        assert_eq!(atyp.reply(), ReplyCode::ADDRESS_TYPE_NOT_SUPPORTED);
        let bad = Request::decode(&[5, 1, 0, 3, 3, b'a', b' ', b'b', 0, 80]).unwrap_err();
        assert_eq!(bad, Socks5Error::Malformed("invalid domain name"));
        assert_eq!(
            ReplyCode::from_error(ErrorCode::TARGET_TIMEOUT),
            ReplyCode::TTL_EXPIRED
        );
    }

    #[test]
    fn replies_round_trip() {
        let reply = Reply::new(ReplyCode::NOT_ALLOWED);
        let bytes = reply.encode();
        assert_eq!(bytes, [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Reply::decode(&bytes), Ok(Some((reply, 10))));
    }
}
