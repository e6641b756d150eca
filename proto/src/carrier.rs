//! The TCP carrier's framing: QUIC datagrams carried over one TLS stream
//! where UDP is blocked (issue #15), the way DERP carries WireGuard packets
//! over HTTPS. Each datagram is prefixed with its length; nothing else is on
//! the stream (the QUIC connection inside does its own handshake, mutual
//! TLS and loss recovery).
//!
//! ```text
//! TCP ─▶ TLS 1.3, ALPN "relay-carrier/1" ─▶ | len: u16 big-endian | QUIC datagram[len] | …
//! ```
//!
//! A zero length is invalid: QUIC never sends an empty datagram, and a
//! stream of zeros must not read as an endless run of them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The ALPN of the carrier's outer TLS, apart from QUIC's `relay/1`.
pub const CARRIER_ALPN: &[u8] = b"relay-carrier/1";

/// The largest datagram a frame carries (the length field's range).
pub const MAX_CARRIED: usize = u16::MAX as usize;

/// Bytes on a carrier stream that are not a frame.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CarrierError {
    /// A frame announced an empty datagram.
    #[error("carrier frame with length 0")]
    Empty,
    /// A datagram too long to frame was given to [`encode`].
    #[error("datagram of {0} bytes is too long for a carrier frame (at most 65535)")]
    TooLong(usize),
}

/// Appends the frame of `datagram` to `out`.
///
/// # Errors
/// If `datagram` is empty or longer than [`MAX_CARRIED`].
pub fn encode(datagram: &[u8], out: &mut BytesMut) -> Result<(), CarrierError> {
    let len = u16::try_from(datagram.len()).map_err(|_| CarrierError::TooLong(datagram.len()))?;
    if len == 0 {
        return Err(CarrierError::Empty);
    }
    out.reserve(2 + datagram.len());
    out.put_u16(len);
    out.put_slice(datagram);
    Ok(())
}

/// Takes the next whole datagram off the front of `buf`, if one is there;
/// `Ok(None)` asks for more bytes.
///
/// # Errors
/// If the next frame is invalid: the stream cannot be read on.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Bytes>, CarrierError> {
    let Some(len) = buf
        .get(..2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    else {
        return Ok(None);
    };
    if len == 0 {
        return Err(CarrierError::Empty);
    }
    if buf.len() < 2 + len {
        buf.reserve(2 + len - buf.len());
        return Ok(None);
    }
    buf.advance(2);
    Ok(Some(buf.split_to(len).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frames_round_trip_in_any_split(
            datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..3000), 0..8),
            cut in any::<usize>(),
        ) {
            let mut wire = BytesMut::new();
            for d in &datagrams {
                prop_assert!(encode(d, &mut wire).is_ok());
            }
            // Arrives in two pieces, cut anywhere.
            let cut = if wire.is_empty() { 0 } else { cut % wire.len() };
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Ok(Some(d)) = decode(&mut buf) {
                got.push(d.to_vec());
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Ok(Some(d)) = decode(&mut buf) {
                got.push(d.to_vec());
            }
            prop_assert_eq!(got, datagrams);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut taken = 0;
            while let Ok(Some(d)) = decode(&mut buf) {
                prop_assert!(!d.is_empty());
                taken += 2 + d.len();
            }
            prop_assert!(taken + buf.len() == bytes.len());
        }
    }

    #[test]
    fn empty_and_oversized_datagrams_are_refused() {
        let mut out = BytesMut::new();
        assert_eq!(encode(&[], &mut out), Err(CarrierError::Empty));
        assert_eq!(
            encode(&vec![0; MAX_CARRIED + 1], &mut out),
            Err(CarrierError::TooLong(MAX_CARRIED + 1))
        );
        assert!(encode(&vec![7; MAX_CARRIED], &mut out).is_ok());
        assert_eq!(
            decode(&mut BytesMut::from(&[0u8, 0, 1][..])),
            Err(CarrierError::Empty)
        );
    }
}
