//! `LOGIN_OFFER` (type 0x41): relay → client, how to log in (answer to `LoginHello`).
//!
//! ```text
//! | nonce: string16 | count: u16 | provider × count |
//! provider = | name: name | kind: u8 | issuer: string16 | client_id: string16 | scopes: string16 |
//! ```
//!
//! `kind` is 1 for people (a browser or device-code login), 2 for
//! workloads (a CI job's identity token).

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::codec::{list_len, name_len, put_list, put_name, put_string16, string16_len, Reader};
use crate::error::DecodeError;
use crate::name::Name;

/// Who logs in through a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// People, in a browser or with a device code; their ID token must
    /// carry the offer's nonce.
    People,
    /// Workloads (CI jobs) with an identity token their platform issued.
    Workload,
}

impl ProviderKind {
    const fn to_u8(self) -> u8 {
        match self {
            ProviderKind::People => 1,
            ProviderKind::Workload => 2,
        }
    }
}

/// One OpenID provider the relay accepts logins from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// Its name in the relay's config (`relay-client login --provider`).
    pub name: Name,
    /// People or workloads.
    pub kind: ProviderKind,
    /// The issuer URL, whose discovery document the client reads.
    pub issuer: String,
    /// The client id to log in with (empty for workload providers).
    pub client_id: String,
    /// The scopes to ask for, space-separated.
    pub scopes: String,
}

/// The relay's providers and a nonce for this login: an ID token is
/// accepted only if it carries a nonce the relay gave on the same
/// connection, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOffer {
    /// The nonce to send to the provider.
    pub nonce: String,
    /// The providers, the default first.
    pub providers: Vec<ProviderInfo>,
}

impl LoginOffer {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::LoginOffer, payload);
        let nonce = r.read_string16()?;
        let providers = r.read_list(|r| {
            let name = r.read_name()?;
            let kind = match r.read_u8()? {
                1 => ProviderKind::People,
                2 => ProviderKind::Workload,
                _ => return Err(r.malformed("unknown provider kind")),
            };
            Ok(ProviderInfo {
                name,
                kind,
                issuer: r.read_string16()?,
                client_id: r.read_string16()?,
                scopes: r.read_string16()?,
            })
        })?;
        r.finish()?;
        Ok(Self { nonce, providers })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        put_string16(dst, &self.nonce);
        put_list(dst, &self.providers, |dst, p| {
            put_name(dst, &p.name);
            dst.put_u8(p.kind.to_u8());
            put_string16(dst, &p.issuer);
            put_string16(dst, &p.client_id);
            put_string16(dst, &p.scopes);
        });
    }

    pub(crate) fn encoded_len(&self) -> usize {
        string16_len(&self.nonce)
            + list_len(&self.providers, |p| {
                name_len(&p.name)
                    + 1
                    + string16_len(&p.issuer)
                    + string16_len(&p.client_id)
                    + string16_len(&p.scopes)
            })
    }
}

impl From<LoginOffer> for Frame {
    fn from(frame: LoginOffer) -> Self {
        Frame::LoginOffer(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(LoginOffer {
            nonce: "n1".into(),
            providers: vec![ProviderInfo {
                name: "sso".parse().unwrap(),
                kind: ProviderKind::People,
                issuer: "https://i".into(),
                client_id: "c".into(),
                scopes: "openid".into(),
            }],
        });
        let wire = b"\x41\x00\x00\x00\x21\x00\x02n1\x00\x01\x03sso\x01\x00\x09https://i\x00\x01c\x00\x06openid";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
    }

    #[test]
    fn an_unknown_kind_is_malformed() {
        assert!(
            LoginOffer::decode(b"\x00\x00\x00\x01\x03sso\x07\x00\x00\x00\x00\x00\x00").is_err()
        );
    }
}
