//! SOCKS destinations: the agent's `--allow-socks` rules, its static host
//! map (`--socks-host`), name resolution and the check of every resolved
//! address before anything is dialled.
//!
//! A SOCKS stream lets the caller name a destination, so the agent is the
//! last gate against using it as an SSRF pivot (reliability notes, threat 6):
//!
//! 1. A domain is resolved **once**, here, inside the private network (or
//!    from `--socks-host`), never by the client.
//! 2. Every resolved address is checked against the rules *and* a built-in
//!    deny list (loopback, link-local with the cloud metadata addresses,
//!    the metadata addresses of Azure, Alibaba and Oracle Cloud, NAT64,
//!    unspecified, multicast, broadcast). A denied address passes only if a
//!    CIDR rule lies *inside* its denied range (`127.0.0.1/32:8080`,
//!    `169.254.169.254/32:80`), so a broad `0.0.0.0/0:*` or a name rule
//!    whose DNS answer points at the metadata service never reaches it.
//! 3. Exactly the checked addresses are dialled (no re-resolution, so DNS
//!    rebinding between check and dial is impossible).
//!
//! The rule syntax is in [`rules`]; resolving and dialling in [`resolve`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use proto::Domain;

pub mod resolve;
pub mod rules;

pub use resolve::dial;
pub use rules::{Rule, RuleHost};

/// Address ranges refused unless a rule inside the range lists them, with
/// what they are (for the refusal message). Nested ranges are listed
/// smallest first: the metadata address needs its own rule even when
/// link-local is allowed.
const DENIED: &[(IpNet, &str)] = &[
    (
        v4(Ipv4Addr::new(169, 254, 169, 254), 32),
        "the cloud metadata address",
    ),
    (
        v6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), 128),
        "the cloud metadata address",
    ),
    (
        v4(Ipv4Addr::new(168, 63, 129, 16), 32),
        "Azure's platform address (WireServer)",
    ),
    (
        v4(Ipv4Addr::new(100, 100, 100, 200), 32),
        "Alibaba Cloud's metadata address",
    ),
    (
        v4(Ipv4Addr::new(192, 0, 0, 192), 32),
        "Oracle Cloud's metadata address",
    ),
    // An IPv4 address behind a NAT64 translator (RFC 6052, RFC 8215): it
    // would reach, say, the metadata address without looking like it.
    (
        v6(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96),
        "a NAT64 address (an IPv4 address behind a translator)",
    ),
    (
        v6(Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48),
        "a NAT64 address (an IPv4 address behind a translator)",
    ),
    (v4(Ipv4Addr::new(127, 0, 0, 0), 8), "a loopback address"),
    (
        v6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1), 128),
        "a loopback address",
    ),
    (
        v4(Ipv4Addr::new(169, 254, 0, 0), 16),
        "a link-local address",
    ),
    (
        v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
        "a link-local address",
    ),
    (v4(Ipv4Addr::new(0, 0, 0, 0), 8), "an unspecified address"),
    (
        v6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128),
        "an unspecified address",
    ),
    (v4(Ipv4Addr::new(224, 0, 0, 0), 4), "a multicast address"),
    (
        v6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
        "a multicast address",
    ),
    (
        v4(Ipv4Addr::new(255, 255, 255, 255), 32),
        "the broadcast address",
    ),
];

const fn v4(addr: Ipv4Addr, prefix: u8) -> IpNet {
    IpNet::new_assert(IpAddr::V4(addr), prefix)
}

const fn v6(addr: Ipv6Addr, prefix: u8) -> IpNet {
    IpNet::new_assert(IpAddr::V6(addr), prefix)
}

/// `::ffff:a.b.c.d` is `a.b.c.d`: checked and dialled as IPv4, so a mapped
/// address cannot slip past an IPv4 rule or deny entry.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The agent's SOCKS settings: off unless at least one rule is given.
#[derive(Clone, Debug, Default)]
pub struct Socks {
    rules: Vec<Rule>,
    hosts: BTreeMap<String, Vec<IpAddr>>,
}

/// A bad `--allow-socks` or `--socks-host` value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {flag} {spec:?}: {reason}")]
pub struct SocksSpecError {
    /// The flag.
    pub flag: &'static str,
    /// The value given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Socks {
    /// Whether SOCKS streams are served at all.
    pub fn enabled(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The rules, in the order given.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Adds comma-separated rules (`--allow-socks 'kube.internal:443,10.0.0.0/8:5432'`).
    ///
    /// # Errors
    /// On a malformed rule, naming it.
    pub fn add_rules(&mut self, spec: &str) -> Result<(), SocksSpecError> {
        for rule in spec.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let parsed = rule.parse().map_err(|reason| SocksSpecError {
                flag: "--allow-socks rule",
                spec: rule.to_owned(),
                reason,
            })?;
            self.rules.push(parsed);
        }
        Ok(())
    }

    /// Adds `NAME=IP[,IP…]` (`--socks-host`): NAME resolves to these
    /// addresses, without DNS. For split-horizon names the agent's resolver
    /// does not know, and for tests. The addresses are still checked.
    ///
    /// # Errors
    /// On a bad name or address.
    pub fn add_host(&mut self, spec: &str) -> Result<(), SocksSpecError> {
        let err = |reason: String| SocksSpecError {
            flag: "--socks-host",
            spec: spec.to_owned(),
            reason,
        };
        let (name, ips) = spec
            .split_once('=')
            .ok_or_else(|| err("expected NAME=IP[,IP...]".into()))?;
        let name = Domain::try_from(name).map_err(|e| err(e.to_string()))?;
        let mut list = Vec::new();
        for ip in ips.split(',').map(str::trim) {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            list.push(
                ip.parse::<IpAddr>()
                    .map_err(|_| err(format!("{ip:?} is not an IP address")))?,
            );
        }
        self.hosts.insert(key(name.as_str()), list);
        Ok(())
    }

    /// Whether a rule could cover a request for `dest` before resolving
    /// (so a name nothing could allow is refused without a DNS query).
    fn may_cover(&self, domain: &Domain, port: u16) -> bool {
        self.rules.iter().any(|r| {
            r.port_matches(port)
                && match &r.host {
                    RuleHost::Name(n) => n.matches(domain.as_str()),
                    RuleHost::Net(_) => true,
                }
        })
    }

    /// Checks one resolved address of a request for `name` (if it was a
    /// name) and `port`.
    ///
    /// # Errors
    /// Why it is refused, for a human.
    pub fn check(&self, name: Option<&Domain>, ip: IpAddr, port: u16) -> Result<(), String> {
        let ip = unmap(ip);
        let rules = || self.rules.iter().filter(|r| r.port_matches(port));
        let covered = rules().any(|r| match &r.host {
            RuleHost::Name(n) => name.is_some_and(|d| n.matches(d.as_str())),
            RuleHost::Net(n) => n.contains(&ip),
        });
        if !covered {
            return Err(format!("no --allow-socks rule covers {ip} port {port}"));
        }
        let Some((range, what)) = DENIED.iter().find(|(net, _)| net.contains(&ip)) else {
            return Ok(());
        };
        // Only a network rule inside the denied range lists it explicitly.
        let listed = rules().any(|r| match &r.host {
            RuleHost::Net(n) => n.contains(&ip) && range.contains(n),
            RuleHost::Name(_) => false,
        });
        if listed {
            return Ok(());
        }
        let example = if ip.is_ipv4() {
            format!("{ip}/32:{port}")
        } else {
            format!("[{ip}/128]:{port}")
        };
        Err(format!(
            "{ip} is {what}, refused unless a rule lists it explicitly (e.g. {example})"
        ))
    }
}

/// The host map's key: lowercase, no trailing dot.
fn key(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proto::{Destination, ErrorCode, Host};
    use std::net::SocketAddr;
    use std::time::Duration;

    fn socks(rules: &str) -> Socks {
        let mut s = Socks::default();
        s.add_rules(rules).unwrap();
        s
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn d(s: &str) -> Domain {
        Domain::try_from(s).unwrap()
    }

    #[test]
    fn issue_form_parses() {
        let s = socks("kube.internal:443,10.0.0.0/8:5432, [fd00::/8]:*,192.0.2.7:22");
        let shown: Vec<String> = s.rules().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "kube.internal:443",
                "10.0.0.0/8:5432",
                "[fd00::/8]:*",
                "192.0.2.7/32:22"
            ]
        );
        for bad in [
            "kube.internal",
            "10.0.0.1/8:1",
            "10.0.0.0/33:1",
            "fd00::/8:443",
            "[::1]:0",
            "h:x",
            "bad host:1",
            ":80",
        ] {
            assert!(Socks::default().add_rules(bad).is_err(), "{bad}");
        }
        assert!(!Socks::default().enabled());
    }

    #[test]
    fn names_and_networks() {
        let s = socks("kube.internal:443,10.0.0.0/8:5432");
        let kube = d("KUBE.internal");
        assert!(s.check(Some(&kube), ip("10.9.9.9"), 443).is_ok());
        assert!(s.check(Some(&kube), ip("192.0.2.1"), 443).is_ok());
        assert!(s.check(Some(&kube), ip("192.0.2.1"), 444).is_err());
        assert!(s
            .check(Some(&d("db.internal")), ip("10.1.1.1"), 5432)
            .is_ok());
        assert!(s.check(None, ip("10.1.1.1"), 5432).is_ok());
        assert!(s.check(None, ip("10.1.1.1"), 5433).is_err());
        assert!(s.check(None, ip("11.1.1.1"), 5432).is_err());
        assert!(s.check(None, ip("::ffff:10.1.1.1"), 5432).is_ok());
    }

    #[test]
    fn denied_ranges_need_a_rule_inside_them() {
        let broad = socks("0.0.0.0/0:*,[::/0]:*,kube.internal:*");
        for addr in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "169.254.169.254",
            "169.254.1.1",
            "fe80::1",
            "fd00:ec2::254",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            "168.63.129.16",
            "100.100.100.200",
            "192.0.0.192",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
        ] {
            let why = broad
                .check(Some(&d("kube.internal")), ip(addr), 80)
                .unwrap_err();
            assert!(why.contains("explicitly"), "{addr}: {why}");
        }
        let explicit = socks("127.0.0.1/32:8080,169.254.0.0/16:80");
        assert!(explicit.check(None, ip("127.0.0.1"), 8080).is_ok());
        assert!(explicit.check(None, ip("127.0.0.2"), 8080).is_err());
        assert!(explicit.check(None, ip("127.0.0.1"), 8081).is_err());
        assert!(explicit.check(None, ip("169.254.1.1"), 80).is_ok());
        let why = explicit.check(None, ip("169.254.169.254"), 80).unwrap_err();
        assert!(why.contains("metadata"), "{why}");
        assert!(socks("169.254.169.254/32:80")
            .check(None, ip("169.254.169.254"), 80)
            .is_ok());
    }

    #[tokio::test]
    async fn resolve_uses_the_host_map_and_checks_every_address() {
        let mut s = socks("kube.internal:443,127.0.0.1/32:443");
        s.add_host("kube.internal=127.0.0.1,169.254.169.254")
            .unwrap();
        let dest = Destination {
            host: Host::parse("Kube.Internal").unwrap(),
            port: 443,
        };
        let addrs = s.resolve("edge", &dest, Duration::from_secs(5)).await;
        assert_eq!(addrs.unwrap(), [SocketAddr::from(([127, 0, 0, 1], 443))]);
        let other = Destination {
            host: Host::parse("other.internal").unwrap(),
            port: 80,
        };
        // Refused before any DNS query: no rule could cover it.
        let r = s
            .resolve("edge", &other, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(r.code, ErrorCode::TARGET_NOT_EXPOSED);
        assert!(r.message.contains("no --allow-socks rule"), "{}", r.message);
        assert!(s.add_host("x=not-an-ip").is_err());
    }

    /// #13 item 7: a refusal of a host the caller named never says what
    /// it resolved to, nor why that address is refused.
    #[tokio::test]
    async fn refusals_of_a_named_host_do_not_echo_its_addresses() {
        let mut s = socks("metadata.internal:80");
        s.add_host("metadata.internal=169.254.169.254").unwrap();
        let dest = Destination {
            host: Host::parse("metadata.internal").unwrap(),
            port: 80,
        };
        let r = s
            .resolve("edge", &dest, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(r.code, ErrorCode::TARGET_NOT_EXPOSED);
        assert!(!r.message.contains("169.254"), "{}", r.message);
        assert!(!r.message.contains("metadata address"), "{}", r.message);
        assert!(r.message.contains("not allowed"), "{}", r.message);
        // Named by address, the reason stays: the caller knows the address.
        let dest = Destination {
            host: Host::parse("169.254.169.254").unwrap(),
            port: 80,
        };
        let s = socks("0.0.0.0/0:80");
        let r = s
            .resolve("edge", &dest, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(r.message.contains("metadata"), "{}", r.message);
    }

    proptest! {
        /// A request matches only rules that cover it: an exact-address
        /// rule allows that address and port and nothing else.
        #[test]
        fn exact_rules_cover_only_themselves(
            a in any::<[u8; 4]>(), p in 1u16.., b in any::<[u8; 4]>(), q in 1u16..,
        ) {
            let a_ip = IpAddr::from(a);
            let b_ip = IpAddr::from(b);
            let s = socks(&format!("{a_ip}/32:{p}"));
            prop_assert_eq!(s.check(None, b_ip, q).is_ok(), a_ip == b_ip && p == q);
        }

        /// A network rule covers exactly the addresses under its prefix,
        /// and never a denied one that lies outside the rule's own range.
        #[test]
        fn network_rules_match_their_prefix(net in any::<u32>(), len in 0u8..=32, probe in any::<u32>()) {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let base = Ipv4Addr::from(net & mask);
            let s = socks(&format!("{base}/{len}:*"));
            let probe_ip = IpAddr::V4(Ipv4Addr::from(probe));
            let inside = probe & mask == net & mask;
            let rule = IpNet::new_assert(IpAddr::V4(base), len);
            let denied = DENIED.iter().find(|(n, _)| n.contains(&probe_ip));
            let expect = inside && denied.is_none_or(|(range, _)| range.contains(&rule));
            prop_assert_eq!(s.check(None, probe_ip, 1).is_ok(), expect);
        }

        #[test]
        fn arbitrary_specs_never_panic(spec in ".{0,80}") {
            let mut s = Socks::default();
            let _ = s.add_rules(&spec);
            let _ = s.add_host(&spec);
        }
    }
}
