//! Names and identities from strings: the URI SAN of a peer certificate
//! (`Identity::from_uri`), names (`Name`, `AgentName`, `TargetName`: the
//! halves of the client's `AGENT/TARGET`), and hosts (`Host`, the SOCKS and
//! `--allow-socks` form). Names that parse print back to the same text.
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
    if let Ok(agent) = proto::AgentName::try_from(text) {
        assert_eq!(agent.to_string(), text);
    }
    if let Ok(target) = proto::TargetName::try_from(text) {
        assert_eq!(target.to_string(), text);
    }
    // Hosts may normalise (IPv6 brackets, case), so only "never panics".
    let _ = proto::Host::parse(text);
});
