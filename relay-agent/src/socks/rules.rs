//! `--allow-socks` rules: `HOST:PORT`, `CIDR:PORT`, `IP:PORT`, with `*` for
//! any port; IPv6 in brackets (`[fd00::/8]:443`). A `HOST` rule matches
//! the requested name exactly (ASCII case-insensitive), not its
//! subdomains. Networks are [`IpNet`]s; only the syntax and its messages
//! are ours.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use proto::Domain;

/// Parses `ADDR` or `ADDR/LEN` into a network with its host bits zero; a
/// single address is a /32 or /128.
///
/// # Errors
/// Why, for a person: not an address, a bad prefix length, host bits set.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
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
    let net = IpNet::new(addr, prefix).map_err(|_| format!("invalid prefix length /{prefix}"))?;
    if net.trunc() != net {
        return Err(format!(
            "{s} has host bits set (the network of {addr}/{prefix} starts lower)"
        ));
    }
    Ok(net)
}

/// What a rule matches: a host name or a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleHost {
    /// A host name, matched exactly against the requested name.
    Name(Domain),
    /// A network (a single address is a /32 or /128).
    Net(IpNet),
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
    /// Whether the rule is for `port`.
    pub fn port_matches(&self, port: u16) -> bool {
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
            RuleHost::Net(parse_net(v6)?)
        } else if host.contains(':') {
            return Err("put an IPv6 address or network in brackets: [fd00::/8]:443".into());
        } else if host.contains('/') || host.parse::<IpAddr>().is_ok() {
            let net = parse_net(host)?;
            if !net.addr().is_ipv4() {
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
            RuleHost::Net(n) if n.addr().is_ipv6() => write!(f, "[{n}]")?,
            RuleHost::Net(n) => write!(f, "{n}")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => f.write_str(":*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_keep_their_messages() {
        assert_eq!(parse_net("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(parse_net("fd00::").unwrap().to_string(), "fd00::/128");
        assert_eq!(
            parse_net("10.0.0.1/8").unwrap_err(),
            "10.0.0.1/8 has host bits set (the network of 10.0.0.1/8 starts lower)"
        );
        assert_eq!(
            parse_net("10.0.0.0/33").unwrap_err(),
            "invalid prefix length /33"
        );
        assert_eq!(
            parse_net("fd00::/129").unwrap_err(),
            "invalid prefix length /129"
        );
        assert_eq!(
            parse_net("ten/8").unwrap_err(),
            "\"ten\" is not an IP address"
        );
    }
}
