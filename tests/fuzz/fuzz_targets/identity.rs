//! Names and identities from strings: the URI SAN of a peer certificate
//! (`Identity::from_uri`), names (`Name`), and the client's `AGENT/TARGET`
//! argument (`Destination`). Whatever parses prints back to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((relay, identity)) = proto::Identity::from_uri(text) {
        assert_eq!(identity.to_uri(&relay), text);
    }
    if let Ok(name) = proto::Name::try_from(text) {
        assert_eq!(name.as_str(), text);
    }
    #[cfg(feature = "full")]
    if let Ok(dest) = text.parse::<relay_client::Destination>() {
        assert_eq!(dest.to_string(), text);
    }
});
