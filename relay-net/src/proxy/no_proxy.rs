//! `NO_PROXY`: the hosts reached without the proxy, with the rules curl and
//! Go's `httpproxy` share.

use std::net::IpAddr;

use ipnet::IpNet;

/// Whether the `NO_PROXY` list `list` exempts `host` (a name or an IP
/// address, IPv6 with or without brackets, no port) from the proxy.
///
/// Entries are separated by commas or spaces. `*` matches every host. An
/// IP address matches the same address, a CIDR block (`10.0.0.0/8`,
/// `::1/128`) every address in it; neither matches a host name. Any other
/// entry is a domain: it matches the host itself and its subdomains,
/// case-insensitively, with or without a leading `.` or `*.`
/// (`example.com` and `.example.com` both match `a.example.com`). An
/// entry's `:port` is ignored. Entries that are none of these match nothing.
pub fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    list.split([',', ' ', '\t', '\n'])
        .filter(|e| !e.is_empty())
        .any(|entry| entry_matches(entry, &host, ip))
}

/// One entry against a lowercase `host` (and its address, if it is one).
fn entry_matches(entry: &str, host: &str, ip: Option<IpAddr>) -> bool {
    if entry == "*" {
        return true;
    }
    if entry.contains('/') {
        return match (entry.parse::<IpNet>(), ip) {
            (Ok(net), Some(ip)) => net.contains(&ip),
            _ => false,
        };
    }
    let entry = without_port(entry);
    if let Ok(addr) = entry.parse::<IpAddr>() {
        return ip == Some(addr);
    }
    if ip.is_some() || host.is_empty() {
        return false;
    }
    let domain = entry
        .strip_prefix("*.")
        .or_else(|| entry.strip_prefix('.'))
        .unwrap_or(entry);
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() {
        return false;
    }
    let domain = domain.to_ascii_lowercase();
    host == domain
        || host
            .strip_suffix(domain.as_str())
            .is_some_and(|head| head.ends_with('.'))
}

/// `entry` without a `:port`: `[v6]:port` → `v6`, `name:port` → `name`; a
/// bare IPv6 address (two colons or more) is left whole.
fn without_port(entry: &str) -> &str {
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(v6, _)| v6);
    }
    match entry.split_once(':') {
        Some((name, port)) if !port.contains(':') => name,
        _ => entry,
    }
}
