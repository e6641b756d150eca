//! `LOGIN_HELLO` (type 0x40): client → relay, the first frame of a single sign-on, on a connection without a client certificate.
//!
//! ```text
//! (empty payload)
//! ```

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::codec::Reader;
use crate::error::DecodeError;

/// Asks the relay how to log in: it answers with a
/// [`LoginOffer`](crate::LoginOffer) (its providers and a nonce).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginHello;

impl LoginHello {
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        Reader::new(FrameType::LoginHello, payload).finish()?;
        Ok(Self)
    }

    pub(crate) fn encode(&self, _dst: &mut impl BufMut) {}

    pub(crate) fn encoded_len(&self) -> usize {
        0
    }
}

impl From<LoginHello> for Frame {
    fn from(frame: LoginHello) -> Self {
        Frame::LoginHello(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn wire_example() {
        let wire = b"\x40\x00\x00\x00\x00";
        assert_eq!(&Frame::from(LoginHello).to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(Frame::LoginHello(LoginHello)))
        );
        assert!(LoginHello::decode(&[0]).is_err());
    }
}
