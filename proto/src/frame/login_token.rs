//! `LOGIN_TOKEN` (type 0x42): client → relay, an identity token to exchange for a client certificate.
//!
//! ```text
//! | provider: name | token: string16 | csr: string16 | lifetime_s: u32 |
//! ```
//!
//! `lifetime_s` 0 asks for the provider's default lifetime.

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::codec::{name_len, put_name, put_string16, string16_len, Reader};
use crate::error::DecodeError;
use crate::name::Name;

/// An ID token (or a workload's identity token) from `provider`, and the
/// certificate signing request of a key made on the client: the relay
/// answers with a [`LoginCert`](crate::LoginCert) or a
/// [`Refused`](crate::Refused) that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginToken {
    /// The provider, by its name in the relay's config.
    pub provider: Name,
    /// The token (a compact JWT).
    pub token: String,
    /// The PEM certificate signing request.
    pub csr: String,
    /// The lifetime asked for, in seconds; 0 for the provider's default.
    pub lifetime_s: u32,
}

impl LoginToken {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::LoginToken, payload);
        let frame = Self {
            provider: r.read_name()?,
            token: r.read_string16()?,
            csr: r.read_string16()?,
            lifetime_s: r.read_u32()?,
        };
        r.finish()?;
        Ok(frame)
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        put_name(dst, &self.provider);
        put_string16(dst, &self.token);
        put_string16(dst, &self.csr);
        dst.put_u32(self.lifetime_s);
    }

    pub(crate) fn encoded_len(&self) -> usize {
        name_len(&self.provider) + string16_len(&self.token) + string16_len(&self.csr) + 4
    }
}

impl From<LoginToken> for Frame {
    fn from(frame: LoginToken) -> Self {
        Frame::LoginToken(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(LoginToken {
            provider: "ci".parse().unwrap(),
            token: "a.b.c".into(),
            csr: "R".into(),
            lifetime_s: 900,
        });
        let wire = b"\x42\x00\x00\x00\x11\x02ci\x00\x05a.b.c\x00\x01R\x00\x00\x03\x84";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
    }
}
