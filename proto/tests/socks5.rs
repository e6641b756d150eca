//! Properties of the SOCKS5 codec: requests round-trip, any prefix is
//! incomplete (never an error), and arbitrary bytes never panic it.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use relay_proto::socks5::{Greeting, Reply, ReplyCode, Request};
use relay_proto::{Destination, Domain, Host};

fn destination() -> impl Strategy<Value = Destination> {
    let host = prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(|ip| Host::Ip(ip.into())),
        any::<std::net::Ipv6Addr>().prop_map(|ip| Host::Ip(ip.into())),
        "[a-z0-9]{1,20}(\\.[a-z0-9]{1,20}){0,3}"
            .prop_filter_map("host name", |s| Domain::try_from(s.as_str()).ok())
            .prop_map(Host::Domain),
    ];
    (host, any::<u16>()).prop_map(|(host, port)| Destination { host, port })
}

proptest! {
    #[test]
    fn requests_round_trip(dest in destination(), tail in vec(any::<u8>(), 0..8), at in any::<Index>()) {
        let request = Request { dest };
        let mut wire = request.encode();
        let len = wire.len();
        let prefix = at.index(len);
        prop_assert_eq!(Request::decode(&wire[..prefix]), Ok(None));
        wire.extend_from_slice(&tail);
        prop_assert_eq!(Request::decode(&wire), Ok(Some((request, len))));
    }

    #[test]
    fn greetings_round_trip(methods in vec(any::<u8>(), 1..=255), at in any::<Index>()) {
        let greeting = Greeting { methods };
        let wire = greeting.encode();
        prop_assert_eq!(Greeting::decode(&wire[..at.index(wire.len())]), Ok(None));
        prop_assert_eq!(Greeting::decode(&wire), Ok(Some((greeting, wire.len()))));
    }

    #[test]
    fn replies_round_trip(code in any::<u8>(), ip in any::<std::net::IpAddr>(), port in any::<u16>()) {
        // SOCKS carries address and port only (no IPv6 scope or flow label).
        let reply = Reply { code: ReplyCode(code), bound: std::net::SocketAddr::new(ip, port) };
        let wire = reply.encode();
        prop_assert_eq!(Reply::decode(&wire), Ok(Some((reply, wire.len()))));
    }

    #[test]
    fn junk_never_panics(bytes in vec(any::<u8>(), 0..300)) {
        let _ = Greeting::decode(&bytes);
        let _ = Reply::decode(&bytes);
        if let Ok(Some((_, used))) = Request::decode(&bytes) {
            prop_assert!(used <= bytes.len());
        }
    }

    #[test]
    fn junk_requests_with_a_valid_head_never_panic(atyp in 0u8..6, body in vec(any::<u8>(), 0..300)) {
        let mut bytes = vec![5, 1, 0, atyp];
        bytes.extend_from_slice(&body);
        if let Ok(Some((_, used))) = Request::decode(&bytes) {
            prop_assert!(used <= bytes.len());
        }
    }
}
