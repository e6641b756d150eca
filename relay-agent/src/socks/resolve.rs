//! Resolving a SOCKS destination once, inside the private network (or from
//! `--socks-host`), checking every address, and dialling exactly the
//! checked addresses (no re-resolution, so DNS rebinding between check and
//! dial is impossible).
//!
//! What a refusal tells the caller: for a destination it named by address,
//! why that address is refused (it knows the address already). For one it
//! named by host, never the addresses the host resolved to, why they were
//! refused, nor the resolver's error text: that would make the agent an
//! oracle of the private network's DNS (#13 item 7). The agent's log keeps
//! the detail.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use proto::{Destination, Domain, ErrorCode, Host, Refused};
use tokio::net::TcpStream;

use super::{key, unmap, Socks};

impl Socks {
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
        for ip in &ips {
            match self.check(name, *ip, dest.port) {
                Ok(()) => allowed.push(SocketAddr::new(unmap(*ip), dest.port)),
                Err(why) => {
                    first_denial.get_or_insert(why);
                }
            }
        }
        if allowed.is_empty() {
            let why = first_denial.unwrap_or_else(|| "it resolves to no address".into());
            if name.is_none() {
                return Err(not_allowed(why));
            }
            tracing::warn!(%dest, addresses = ?ips, reason = %why, "socks host resolves only to refused addresses");
            return Err(Refused::new(
                ErrorCode::TARGET_NOT_EXPOSED,
                format!(
                    "destination {dest} is not allowed by agent {agent}'s SOCKS rules \
                     (the agent's log says why)"
                ),
            ));
        }
        Ok(allowed)
    }
}

async fn lookup(
    agent: &str,
    domain: &Domain,
    port: u16,
    timeout: Duration,
) -> Result<Vec<IpAddr>, Refused> {
    match tokio::time::timeout(timeout, tokio::net::lookup_host((domain.as_str(), port))).await {
        Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip()).collect()),
        Ok(Err(e)) => {
            tracing::info!(%domain, err = %e, "socks host does not resolve");
            Err(Refused::new(
                ErrorCode::TARGET_UNREACHABLE,
                format!("agent {agent} could not resolve {domain}"),
            ))
        }
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
/// address tried, naming the destination (and the address and error only
/// when the caller named an address; see the module doc).
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
                Err(e) => {
                    tracing::debug!(%addr, err = %e, "socks address did not connect");
                    last = Some((*addr, e));
                }
            }
        }
        Err(last)
    };
    let by_address = matches!(dest.host, Host::Ip(_));
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(tcp)) => Ok(tcp),
        Err(_) => Err(Refused::new(
            ErrorCode::TARGET_TIMEOUT,
            format!("{dest} did not answer within {timeout:?}"),
        )),
        Ok(Err(Some((addr, e)))) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            let shown = if by_address {
                format!("{dest} ({addr})")
            } else {
                dest.to_string()
            };
            Err(Refused::new(
                ErrorCode::TARGET_REFUSED,
                format!("{shown} refused the connection"),
            ))
        }
        Ok(Err(Some((addr, e)))) if by_address => Err(Refused::new(
            ErrorCode::TARGET_UNREACHABLE,
            format!("{dest} ({addr}) unreachable: {e}"),
        )),
        Ok(Err(Some((addr, e)))) => {
            tracing::info!(%dest, %addr, err = %e, "socks host unreachable");
            Err(Refused::new(
                ErrorCode::TARGET_UNREACHABLE,
                format!("{dest} is unreachable (the agent's log says why)"),
            ))
        }
        Ok(Err(None)) => Err(Refused::new(
            ErrorCode::TARGET_UNREACHABLE,
            format!("{dest} has no address to dial"),
        )),
    }
}
