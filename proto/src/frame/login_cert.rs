//! `LOGIN_CERT` (type 0x43): relay → client, the certificate a login earned (answer to `LoginToken`).
//!
//! ```text
//! | chain: string16 |
//! ```

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::codec::{put_string16, string16_len, Reader};
use crate::error::DecodeError;

/// The client certificate and the online signer's certificate that issued
/// it, PEM, leaf first: what the client presents from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginCert {
    /// The chain, PEM.
    pub chain: String,
}

impl LoginCert {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::LoginCert, payload);
        let chain = r.read_string16()?;
        r.finish()?;
        Ok(Self { chain })
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        put_string16(dst, &self.chain);
    }

    pub(crate) fn encoded_len(&self) -> usize {
        string16_len(&self.chain)
    }
}

impl From<LoginCert> for Frame {
    fn from(frame: LoginCert) -> Self {
        Frame::LoginCert(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let frame = Frame::from(LoginCert {
            chain: "PEM".into(),
        });
        let wire = b"\x43\x00\x00\x00\x05\x00\x03PEM";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
    }
}
