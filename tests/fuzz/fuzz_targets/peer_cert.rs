//! Identity extraction from a peer certificate (`PeerCert::from_der`): the
//! relay and the agent run it on every certificate rustls has verified.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_net::cert::PeerCert;

fuzz_target!(|data: &[u8]| {
    let _ = PeerCert::from_der(data);
});
