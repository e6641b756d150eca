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
//!    unspecified, multicast, broadcast). A denied address passes only if a
//!    CIDR rule lies *inside* its denied range (`127.0.0.1/32:8080`,
//!    `169.254.169.254/32:80`), so a broad `0.0.0.0/0:*` or a name rule
//!    whose DNS answer points at the metadata service never reaches it.
//! 3. Exactly the checked addresses are dialled (no re-resolution, so DNS
//!    rebinding between check and dial is impossible).
//!
//! Rules: `HOST:PORT`, `CIDR:PORT`, `IP:PORT`, with `*` for any port; IPv6
//! in brackets (`[fd00::/8]:443`). A `HOST` rule matches the requested name
//! exactly (ASCII case-insensitive), not its subdomains.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use proto::{Destination, Domain, ErrorCode, Host, Refused};
use tokio::net::TcpStream;

/// An IP network: an address with its host bits zero and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    const fn v4(a: [u8; 4], prefix: u8) -> Net {
        Net {
            addr: IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Net {
        let [a, b, c, d, e, f, g, h] = segments;
        Net {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    fn bits(ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    }

    fn mask(prefix: u8, width: u8) -> u128 {
        let all = if width == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        if prefix == 0 {
            0
        } else {
            all & !((1u128 << (width - prefix)) - 1)
        }
    }

    /// Whether `ip` is in this network (an IPv4 network never contains an
    /// IPv6 address: callers unmap `::ffff:a.b.c.d` first).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, width) = Net::bits(self.addr);
        let (ip, ip_width) = Net::bits(ip);
        width == ip_width && ip & Net::mask(self.prefix, width) == net
    }

    /// Whether every address of `self` is in `outer`.
    pub fn within(&self, outer: &Net) -> bool {
        self.prefix >= outer.prefix && outer.contains(self.addr)
    }
}

impl std::str::FromStr for Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Net, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("invalid prefix length /{p}"))?,
        };
        let (bits, _) = Net::bits(addr);
        if bits & !Net::mask(prefix, width) != 0 {
            return Err(format!(
                "{s} has host bits set (the network of {addr}/{prefix} starts lower)"
            ));
        }
        Ok(Net { addr, prefix })
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What a rule matches: a host name or a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleHost {
    /// A host name, matched exactly against the requested name.
    Name(Domain),
    /// A network (a single address is a /32 or /128).
    Net(Net),
}

/// One `--allow-socks` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Which hosts.
    pub host: RuleHost,
    /// Which port; `None` for `*`.
    pub port: Option<u16>,
}

impl Rule {
    fn port_matches(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }
}

impl std::str::FromStr for Rule {
    type Err = String;
    fn from_str(s: &str) -> Result<Rule, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or("missing :PORT (or :* for any port)")?;
        let port = match port {
            "*" => None,
            p => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(format!("invalid port {p:?}")),
                Ok(p) => Some(p),
            },
        };
        let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            RuleHost::Net(v6.parse()?)
        } else if host.contains(':') {
            return Err("put an IPv6 address or network in brackets: [fd00::/8]:443".into());
        } else if host.contains('/') || host.parse::<IpAddr>().is_ok() {
            let net: Net = host.parse()?;
            if !net.addr.is_ipv4() {
                return Err("put an IPv6 address or network in brackets".into());
            }
            RuleHost::Net(net)
        } else {
            RuleHost::Name(Domain::try_from(host).map_err(|e| e.to_string())?)
        };
        Ok(Rule { host, port })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            RuleHost::Name(d) => write!(f, "{d}")?,
            RuleHost::Net(n) if n.addr.is_ipv6() => write!(f, "[{n}]")?,
            RuleHost::Net(n) => write!(f, "{n}")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => f.write_str(":*"),
        }
    }
}

/// Address ranges refused unless a rule inside the range lists them, with
/// what they are (for the refusal message). Nested ranges are listed
/// smallest first: the metadata address needs its own rule even when
/// link-local is allowed.
const DENIED: &[(Net, &str)] = &[
    (
        Net::v4([169, 254, 169, 254], 32),
        "the cloud metadata address",
    ),
    (
        Net::v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128),
        "the cloud metadata address",
    ),
    (Net::v4([127, 0, 0, 0], 8), "a loopback address"),
    (Net::v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "a loopback address"),
    (Net::v4([169, 254, 0, 0], 16), "a link-local address"),
    (
        Net::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "a link-local address",
    ),
    (Net::v4([0, 0, 0, 0], 8), "an unspecified address"),
    (
        Net::v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
        "an unspecified address",
    ),
    (Net::v4([224, 0, 0, 0], 4), "a multicast address"),
    (
        Net::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        "a multicast address",
    ),
    (Net::v4([255, 255, 255, 255], 32), "the broadcast address"),
];

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
            RuleHost::Net(n) => n.contains(ip),
        });
        if !covered {
            return Err(format!("no --allow-socks rule covers {ip} port {port}"));
        }
        let Some((range, what)) = DENIED.iter().find(|(net, _)| net.contains(ip)) else {
            return Ok(());
        };
        // Only a network rule inside the denied range lists it explicitly.
        let listed = rules().any(|r| match &r.host {
            RuleHost::Net(n) => n.contains(ip) && n.within(range),
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

    /// Resolves `dest` (once) and returns the addresses that pass
    /// [`Socks::check`], in resolver order.
    ///
    /// # Errors
    /// `TARGET_NOT_EXPOSED` when no address may be dialled (the message
    /// says why), `TARGET_UNREACHABLE` when the name does not resolve,
    /// `TARGET_TIMEOUT` when resolving takes longer than `timeout`.
    pub async fn resolve(
        &self,
        agent: &str,
        dest: &Destination,
        timeout: Duration,
    ) -> Result<Vec<SocketAddr>, Refused> {
        let not_allowed = |why: String| {
            Refused::new(
                ErrorCode::TARGET_NOT_EXPOSED,
                format!("agent {agent} does not allow SOCKS to {dest}: {why}"),
            )
        };
        let (name, ips) = match &dest.host {
            Host::Ip(ip) => (None, vec![*ip]),
            Host::Domain(d) => {
                if !self.may_cover(d, dest.port) {
                    return Err(not_allowed(format!(
                        "no --allow-socks rule covers {d} port {}",
                        dest.port
                    )));
                }
                let ips = match self.hosts.get(&key(d.as_str())) {
                    Some(ips) => ips.clone(),
                    None => lookup(agent, d, dest.port, timeout).await?,
                };
                (Some(d), ips)
            }
        };
        let mut allowed = Vec::new();
        let mut first_denial = None;
        for ip in ips {
            match self.check(name, ip, dest.port) {
                Ok(()) => allowed.push(SocketAddr::new(unmap(ip), dest.port)),
                Err(why) => {
                    first_denial.get_or_insert(why);
                }
            }
        }
        if allowed.is_empty() {
            let why = first_denial.unwrap_or_else(|| "it resolves to no address".into());
            return Err(not_allowed(why));
        }
        Ok(allowed)
    }
}

/// The host map's key: lowercase, no trailing dot.
fn key(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

async fn lookup(
    agent: &str,
    domain: &Domain,
    port: u16,
    timeout: Duration,
) -> Result<Vec<IpAddr>, Refused> {
    match tokio::time::timeout(timeout, tokio::net::lookup_host((domain.as_str(), port))).await {
        Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip()).collect()),
        Ok(Err(e)) => Err(Refused::new(
            ErrorCode::TARGET_UNREACHABLE,
            format!("agent {agent} cannot resolve {domain}: {e}"),
        )),
        Err(_) => Err(Refused::new(
            ErrorCode::TARGET_TIMEOUT,
            format!("agent {agent} could not resolve {domain} within {timeout:?}"),
        )),
    }
}

/// Dials the checked addresses in order until one answers, all within
/// `timeout`.
///
/// # Errors
/// `TARGET_TIMEOUT`, `TARGET_REFUSED` or `TARGET_UNREACHABLE` of the last
/// address tried, naming the destination.
pub async fn dial(
    dest: &Destination,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<TcpStream, Refused> {
    let attempt = async {
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(tcp) => return Ok(tcp),
                Err(e) => last = Some((*addr, e)),
            }
        }
        Err(last)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(tcp)) => Ok(tcp),
        Err(_) => Err(Refused::new(
            ErrorCode::TARGET_TIMEOUT,
            format!("{dest} did not answer within {timeout:?}"),
        )),
        Ok(Err(Some((addr, e)))) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(Refused::new(
                ErrorCode::TARGET_REFUSED,
                format!("{dest} ({addr}) refused the connection"),
            ))
        }
        Ok(Err(Some((addr, e)))) => Err(Refused::new(
            ErrorCode::TARGET_UNREACHABLE,
            format!("{dest} ({addr}) unreachable: {e}"),
        )),
        Ok(Err(None)) => Err(Refused::new(
            ErrorCode::TARGET_UNREACHABLE,
            format!("{dest} has no address to dial"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
            let rule = Net { addr: IpAddr::V4(base), prefix: len };
            let denied = DENIED.iter().find(|(n, _)| n.contains(probe_ip));
            let expect = inside && denied.is_none_or(|(range, _)| rule.within(range));
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
