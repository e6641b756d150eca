//! The relay's revocation list (`revoked.toml`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_fuzz::revocation::Revocations;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Revocations::parse(text, "revoked.toml");
    }
});
