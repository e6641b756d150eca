//! Credential files (TOML with PEM certificate, key and CA inside).
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_net::credential::Credential;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Credential::parse(text, std::path::Path::new("fuzz.cred"), None);
    }
});
