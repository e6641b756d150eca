//! The SOCKS5 decoders (`proto::socks5`): `relay-client socks` runs them on
//! whatever a local program sends. The first byte picks greeting, request or
//! reply; every message accepted decodes again, identically, from its own
//! encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::socks5::{Greeting, Reply, Request};

fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(Some((greeting, used))) = Greeting::decode(data) {
                assert!(used <= data.len());
                let again = Greeting::decode(&greeting.encode());
                assert_eq!(again.ok().flatten().map(|(g, _)| g), Some(greeting));
            }
        }
        1 => {
            if let Ok(Some((request, used))) = Request::decode(data) {
                assert!(used <= data.len());
                let again = Request::decode(&request.encode());
                assert_eq!(again.ok().flatten().map(|(r, _)| r), Some(request));
            }
        }
        _ => {
            if let Ok(Some((reply, used))) = Reply::decode(data) {
                assert!(used <= data.len());
                let again = Reply::decode(&reply.encode());
                assert_eq!(again.ok().flatten().map(|(r, _)| r), Some(reply));
            }
        }
    }
});
