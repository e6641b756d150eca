//! The TCP carrier's framing (`proto::carrier`): the relay decodes it from
//! anyone who completes a TLS handshake on its TCP port. Whatever decodes
//! is non-empty, and every datagram taken re-encodes to the bytes it came from.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proto::carrier::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut offset = 0;
    while let Ok(Some(datagram)) = decode(&mut buf) {
        assert!(!datagram.is_empty());
        let mut again = BytesMut::new();
        assert!(encode(&datagram, &mut again).is_ok());
        assert_eq!(&again[..], &data[offset..offset + again.len()]);
        offset += again.len();
    }
    assert_eq!(offset + buf.len(), data.len());
});
