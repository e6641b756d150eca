//! `proto::Frame::decode` on arbitrary bytes, fed in two pieces at an
//! arbitrary split (as a stream delivers them): it never panics, never
//! consumes bytes on `Ok(None)`, and every frame it accepts encodes back to
//! exactly the bytes it consumed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proto::Frame;

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(data.len());
    let mut buf = BytesMut::from(&data[..at]);
    let mut fed_rest = false;
    loop {
        let before = buf.clone();
        match Frame::decode(&mut buf) {
            Ok(Some(frame)) => {
                let consumed = before.len() - buf.len();
                let encoded = frame.to_bytes();
                assert_eq!(encoded.len(), frame.encoded_len(), "{frame:?}");
                assert_eq!(
                    &encoded[..],
                    &before[..consumed],
                    "{frame:?} re-encodes differently"
                );
            }
            Ok(None) => {
                assert_eq!(buf, before, "Ok(None) consumed bytes");
                if fed_rest {
                    return;
                }
                buf.extend_from_slice(&data[at..]);
                fed_rest = true;
            }
            // After an error the stream is out of sync: the caller resets it.
            Err(_) => return,
        }
    }
});
