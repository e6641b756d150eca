//! The file formats relay-net parses: credentials and certificates. Valid
//! ones round-trip; arbitrary input never panics.

// Test helpers may panic: a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use proto::{Identity, Name, Role};
use relay_net::cert::PeerCert;
use relay_net::credential::Credential;
use relay_net::pki::{Ca, KeySource};

fn issued_credential(role: Role, name: &str) -> Credential {
    let relay = Name::try_from("relay.example.com").unwrap();
    let (ca, _key) = Ca::generate(&relay).unwrap();
    let identity = Identity::new(role, Name::try_from(name).unwrap());
    let issued = ca
        .issue_identity(
            &relay,
            &identity,
            Duration::from_secs(3600),
            KeySource::Generate,
        )
        .unwrap();
    Credential {
        relay: vec!["relay.example.com:4433".into()],
        identity: identity.to_uri(&relay),
        certificate: issued.cert_pem,
        private_key: issued.key_pem,
        ca: ca.cert_pem().to_owned(),
    }
}

#[test]
fn credential_round_trips_and_names_its_identity() {
    let credential = issued_credential(Role::Agent, "aks-prod");
    let loaded = Credential::parse(&credential.to_toml(), Path::new("a.cred"), None).unwrap();
    assert_eq!(loaded.cert.identity.to_string(), "agent/aks-prod");
    assert_eq!(loaded.cert.relay.as_str(), "relay.example.com");
    assert_eq!(loaded.credential.relay, credential.relay);
    assert!(loaded.cert.not_before < loaded.cert.renew_after());
    assert!(loaded.cert.renew_after() < loaded.cert.not_after);
    assert!(
        !format!("{:?}", loaded.credential).contains("PRIVATE KEY"),
        "Debug redacts the key"
    );
}

#[test]
fn serial_and_role_come_from_the_certificate() {
    let relay = Name::try_from("r").unwrap();
    let (ca, _) = Ca::generate(&relay).unwrap();
    let client = ca
        .issue_identity(
            &relay,
            &Identity::new(Role::Client, Name::try_from("c").unwrap()),
            Duration::from_secs(60),
            KeySource::Generate,
        )
        .unwrap();
    let peer = PeerCert::from_pem(&client.cert_pem).unwrap();
    assert_eq!(peer.identity.role, Role::Client);
    assert_eq!(peer.serial, client.serial);
}

proptest! {
    #[test]
    fn arbitrary_credential_text_never_panics(text in ".{0,600}") {
        let _ = Credential::parse(&text, Path::new("x.cred"), None);
    }

    #[test]
    fn arbitrary_pem_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let b64: String = body.iter().map(|b| char::from(b'A' + (b % 26))).collect();
        let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
        let _ = PeerCert::from_pem(&pem);
        let _ = PeerCert::from_der(&body);
    }

    #[test]
    fn mangled_credentials_are_errors_not_panics(cut in 0usize..4000, flip in any::<u8>()) {
        let mut text = issued_credential(Role::Client, "alice").to_toml().into_bytes();
        if !text.is_empty() {
            let at = cut % text.len();
            text[at] ^= flip;
            text.truncate(cut.max(at + 1));
        }
        let _ = Credential::parse(&String::from_utf8_lossy(&text), Path::new("x.cred"), None);
    }
}
