//! The TCP carrier's framing: QUIC datagrams carried over one TCP stream
//! where UDP is blocked (issue #15), the way DERP carries WireGuard packets
//! over HTTPS.
//!
//! The stream opens with a TLS 1.3 handshake (ALPN `relay-carrier/2`, the
//! relay's certificate): it authenticates the relay, and to the firewalls
//! and proxies on the way it is HTTPS. After the handshake each datagram
//! is sent as the payload of one TLS application-data record, without a
//! second encryption: a QUIC packet is already sealed with the keys of the
//! mutual TLS inside, so sealing it again would cost half of the carrier's
//! crypto and protect nothing that QUIC over UDP does not (what that leaves
//! visible is in docs/ARCHITECTURE.md, "The TCP carrier as built").
//!
//! ```text
//! TCP ─▶ TLS 1.3 handshake ─▶ | 23 | 3 | 3 | len: u16 big-endian | QUIC datagram[len] | …
//! ```
//!
//! A zero length is invalid: QUIC never sends an empty datagram, and a
//! stream of zeros must not read as an endless run of them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The ALPN of the carrier's TLS handshake, apart from QUIC's `relay/1`.
/// (`relay-carrier/1` sealed every record again; not spoken any more.)
pub const CARRIER_ALPN: &[u8] = b"relay-carrier/2";

/// The largest datagram a frame carries: the largest TLS 1.3 record
/// payload (2^14 + 256 bytes, RFC 8446 §5.2), so every frame is a
/// well-formed record.
pub const MAX_CARRIED: usize = (1 << 14) + 256;

/// A frame's header: a TLS application-data record, legacy version 1.2.
const RECORD: [u8; 3] = [23, 3, 3];

/// Bytes in a frame's header.
pub const HEADER: usize = 5;

/// Bytes on a carrier stream that are not a frame.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CarrierError {
    /// A frame announced an empty datagram.
    #[error("carrier frame with length 0")]
    Empty,
    /// A datagram longer than a record holds ([`encode`]), or a frame that
    /// announced one ([`decode`]).
    #[error("datagram of {0} bytes is too long for a carrier frame (at most 16640)")]
    TooLong(usize),
    /// A frame that does not start as a TLS application-data record.
    #[error("carrier frame is not a TLS application-data record (starts {0:02x?})")]
    NotRecord([u8; 3]),
}

/// Appends the frame of `datagram` to `out`.
///
/// # Errors
/// If `datagram` is empty or longer than [`MAX_CARRIED`].
pub fn encode(datagram: &[u8], out: &mut BytesMut) -> Result<(), CarrierError> {
    out.reserve(HEADER + datagram.len());
    out.put_slice(&header(datagram.len())?);
    out.put_slice(datagram);
    Ok(())
}

/// The header of a frame that carries `len` bytes.
///
/// # Errors
/// If `len` is 0 or more than [`MAX_CARRIED`].
pub fn header(len: usize) -> Result<[u8; HEADER], CarrierError> {
    if len == 0 {
        return Err(CarrierError::Empty);
    }
    let Some(n) = u16::try_from(len).ok().filter(|_| len <= MAX_CARRIED) else {
        return Err(CarrierError::TooLong(len));
    };
    let [hi, lo] = n.to_be_bytes();
    Ok([RECORD[0], RECORD[1], RECORD[2], hi, lo])
}

/// Takes the next whole datagram off the front of `buf`, if one is there;
/// `Ok(None)` asks for more bytes.
///
/// # Errors
/// If the next frame is invalid: the stream cannot be read on.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Bytes>, CarrierError> {
    let Some(h) = buf.get(..HEADER) else {
        return Ok(None);
    };
    if h[..3] != RECORD {
        return Err(CarrierError::NotRecord([h[0], h[1], h[2]]));
    }
    let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
    if len == 0 {
        return Err(CarrierError::Empty);
    }
    if len > MAX_CARRIED {
        return Err(CarrierError::TooLong(len));
    }
    if buf.len() < HEADER + len {
        buf.reserve(HEADER + len - buf.len());
        return Ok(None);
    }
    buf.advance(HEADER);
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
                taken += HEADER + d.len();
            }
            prop_assert!(taken + buf.len() == bytes.len());
        }

        #[test]
        fn record_headers_with_any_length_never_panic(
            frames in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..8),
        ) {
            // Well-formed headers announcing any length, over short bodies.
            let mut wire = BytesMut::new();
            for (len, body) in &frames {
                wire.put_slice(&RECORD);
                wire.put_u16(*len);
                wire.put_slice(body);
            }
            let total = wire.len();
            let mut taken = 0;
            while let Ok(Some(d)) = decode(&mut wire) {
                prop_assert!(!d.is_empty() && d.len() <= MAX_CARRIED);
                taken += HEADER + d.len();
            }
            prop_assert!(taken + wire.len() == total);
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
            decode(&mut BytesMut::from(&[23u8, 3, 3, 0, 0][..])),
            Err(CarrierError::Empty)
        );
        assert_eq!(
            decode(&mut BytesMut::from(&[23u8, 3, 3, 0x41, 1][..])),
            Err(CarrierError::TooLong(0x4101))
        );
        // A handshake record, or anything else, is not a frame.
        assert_eq!(
            decode(&mut BytesMut::from(&[22u8, 3, 3, 0, 1, 0][..])),
            Err(CarrierError::NotRecord([22, 3, 3]))
        );
    }
}
