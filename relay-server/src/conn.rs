//! One peer connection: handshake with a deadline, identity from the verified
//! certificate, checks (our relay, not revoked), then the role's service.
//!
//! ```text
//! accept ─▶ handshake (timeout) ─▶ identity from mTLS ─▶ revoked? ─▶ agent: control::serve
//!                                                                 └▶ client: client::serve
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use proto::{ErrorCode, Role};
use relay_net::cert::PeerCert;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::audit::{AuditEvent, Event};
use crate::Shared;

/// Live connections, so a revocation can close them.
#[derive(Debug, Default)]
pub(crate) struct ConnTable {
    next: AtomicU64,
    live: Mutex<HashMap<u64, (PeerCert, quinn::Connection)>>,
}

/// Removes its connection from the table when dropped.
pub(crate) struct ConnEntry<'a> {
    table: &'a ConnTable,
    id: u64,
}

impl Drop for ConnEntry<'_> {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

impl ConnTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (PeerCert, quinn::Connection)>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, peer: &PeerCert, conn: &quinn::Connection) -> ConnEntry<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, (peer.clone(), conn.clone()));
        ConnEntry { table: self, id }
    }

    /// Closes the live connection from `remote` (a TCP carrier that ended).
    pub(crate) fn close_remote(&self, remote: std::net::SocketAddr) {
        for (_, conn) in self.lock().values() {
            if conn.remote_address() == remote {
                conn.close(ErrorCode::GOING_AWAY.0.into(), b"tcp carrier closed");
            }
        }
    }

    /// Closes every live connection for which `revoked` gives a reason.
    pub(crate) fn close_where(
        &self,
        revoked: impl Fn(&PeerCert) -> Option<String>,
    ) -> Vec<(PeerCert, String)> {
        let mut closed = Vec::new();
        for (peer, conn) in self.lock().values() {
            if let Some(reason) = revoked(peer) {
                conn.close(ErrorCode::REVOKED.0.into(), reason.as_bytes());
                closed.push((peer.clone(), reason));
            }
        }
        closed
    }
}

/// How long a handshake holds its slot in the relay's budget at most.
const SLOT_HELD: std::time::Duration = std::time::Duration::from_secs(2);

/// A handshake's slot in the relay's budget ([`crate::config::Limits::handshakes`])
/// and in its source address's share of it, counted in `relay_handshakes`;
/// given back when dropped.
pub(crate) struct HandshakeSlot {
    _held: relay_net::quota::Held<()>,
    _from: relay_net::quota::Held<std::net::IpAddr>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl HandshakeSlot {
    /// A slot for a peer at `from`, or the limit (as counted in
    /// `relay_limit_hits_total`) that has none.
    pub(crate) fn take(
        shared: &Shared,
        from: std::net::IpAddr,
    ) -> Result<HandshakeSlot, &'static str> {
        let from = shared
            .handshakes_per_address
            .try_hold(&address_key(from))
            .ok_or("handshakes_per_address")?;
        let held = shared.handshakes.try_hold(&()).ok_or("handshakes")?;
        shared.metrics.handshakes.inc();
        Ok(HandshakeSlot {
            _held: held,
            _from: from,
            metrics: shared.metrics.clone(),
        })
    }
}

/// What a source address counts as for its share of the handshake budget:
/// an IPv4 address itself (an IPv4-mapped IPv6 one too), an IPv6 address
/// its /64, the least one holder is given.
pub(crate) fn address_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.into(),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                std::net::IpAddr::V6(prefix.into())
            }
        },
        v4 => v4,
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.metrics.handshakes.dec();
    }
}

/// Serves one incoming connection until it ends or the relay shuts down.
/// `handshake` is its slot in the handshake budget, given back once the
/// handshake is over or has waited [`SLOT_HELD`].
pub(crate) async fn serve(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
    handshake: HandshakeSlot,
    shutdown: CancellationToken,
) {
    // A carrier's TCP peer, not its virtual address.
    let remote = shared.remote(incoming.remote_address());
    let carried = relay_net::tcp::is_virtual(incoming.remote_address());
    let transport = if carried { "tcp" } else { "quic" };
    let auth_failed =
        |why: &'static str, reason: String, peer: Option<&PeerCert>, code: ErrorCode| {
            tracing::warn!(%remote, %reason, "peer rejected");
            shared.metrics.handshake_failed(why);
            let event = match peer {
                Some(peer) => AuditEvent::of_peer(Event::AuthFailed, peer, Some(remote)),
                None => AuditEvent {
                    remote: Some(remote.to_string()),
                    ..AuditEvent::new(Event::AuthFailed)
                },
            };
            // Throttled: bad handshakes cost the peer nothing (audit module doc).
            shared
                .audit
                .auth_failed(remote.ip(), event.because(Some(code), reason));
        };
    // A carrier's connection gets larger packets (TCP carries any size).
    let connecting = if carried {
        incoming.accept_with(shared.carrier_config.clone())
    } else {
        incoming.accept()
    };
    // The budget bounds fresh handshakes: one that has waited on its peer
    // for SLOT_HELD (a stalling peer, a slow network) goes on without its
    // slot, so stalled handshakes cannot keep the door shut for 10 s each.
    let mut slot = Some(handshake);
    let handshaken =
        tokio::time::timeout(shared.limits.handshake_timeout, async { connecting?.await });
    let mut handshaken = std::pin::pin!(handshaken);
    let mut release = std::pin::pin!(tokio::time::sleep(SLOT_HELD));
    let handshaken = loop {
        tokio::select! {
            done = &mut handshaken => break done,
            () = &mut release, if slot.is_some() => slot = None,
        }
    };
    drop(slot);
    let conn = match handshaken {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            return auth_failed(
                "tls",
                format!("handshake failed: {e}"),
                None,
                ErrorCode::UNAUTHORIZED,
            );
        }
        Err(_) => {
            return auth_failed(
                "timeout",
                "handshake timed out".into(),
                None,
                ErrorCode::LIMIT_EXCEEDED,
            );
        }
    };
    let reject = |why: &'static str, code: ErrorCode, reason: String, peer: Option<&PeerCert>| {
        conn.close(code.0.into(), reason.as_bytes());
        auth_failed(why, reason, peer, code);
    };
    if conn.peer_identity().is_none() {
        // Only a relay with single sign-on lets a peer in without a
        // certificate (relay_net::tls::relay_server_config), to log in.
        return match &shared.login {
            Some(logins) => crate::login::serve(&shared, &conn, logins).await,
            None => reject(
                "identity",
                ErrorCode::UNAUTHORIZED,
                "peer presented no certificate".into(),
                None,
            ),
        };
    }
    let peer = match PeerCert::of_connection(&conn) {
        Ok(peer) => peer,
        Err(e) => return reject("identity", ErrorCode::UNAUTHORIZED, e.to_string(), None),
    };
    if let Some(reason) = signed_online_beyond_its_rights(&shared, &peer) {
        return reject("signer", ErrorCode::UNAUTHORIZED, reason, Some(&peer));
    }
    if peer.relay != shared.relay_name {
        let reason = format!(
            "certificate is for relay {}, this is {}",
            peer.relay, shared.relay_name
        );
        return reject("wrong_relay", ErrorCode::UNAUTHORIZED, reason, Some(&peer));
    }
    if let Some(reason) = shared.revoked(&peer) {
        return reject("revoked", ErrorCode::REVOKED, reason, Some(&peer));
    }
    let _entry = shared.conns.insert(&peer, &conn);
    let _live = relay_net::admin::GaugeGuard::new(&shared.metrics.connections.get_or_create(
        &crate::metrics::RoleLabel {
            role: peer.identity.role.as_str().to_owned(),
            transport,
        },
    ));
    let _client = (peer.identity.role == Role::Client).then(|| ClientCount::new(&shared.clients));
    let span = tracing::info_span!("conn", role = %peer.identity.role, peer = %peer.identity.name, %remote, transport);
    let service = async {
        tracing::info!(serial = %peer.serial, "connected");
        match peer.identity.role {
            Role::Agent => crate::control::serve(&shared, &conn, &peer, &shutdown).await,
            Role::Client => crate::client::serve(&shared, &conn, &peer, &shutdown).await,
            Role::Relay => reject(
                "role",
                ErrorCode::UNAUTHORIZED,
                "a relay certificate cannot be used to connect to a relay".into(),
                Some(&peer),
            ),
        }
    };
    // The certificate's end of validity ends the connection too.
    let expiry = until(peer.not_after);
    tokio::select! {
        () = service.instrument(span.clone()) => {}
        () = tokio::time::sleep(expiry) => {
            conn.close(ErrorCode::CERT_EXPIRED.0.into(), b"certificate expired");
            span.in_scope(|| tracing::info!("certificate expired: connection closed"));
        }
    }
}

/// Why a certificate from the online signer claims more than the signer
/// may give: the signer mints client certificates of a login's lifetime
/// only, so anything else was not minted by this relay's code (a stolen
/// signer key, say), and is refused.
fn signed_online_beyond_its_rights(shared: &Shared, peer: &PeerCert) -> Option<String> {
    peer.signer.as_ref()?;
    if peer.identity.role != Role::Client {
        return Some(format!(
            "certificate of {} comes from the online signer, which may issue client certificates only",
            peer.identity
        ));
    }
    let max = shared
        .login
        .as_ref()
        .map_or(crate::login::settings::PEOPLE_LIFETIME, |l| {
            l.max_lifetime()
        });
    // Certificates start a little in the past (relay_net::pki CLOCK_SKEW).
    let allowed = max + std::time::Duration::from_secs(10 * 60);
    let lifetime =
        std::time::Duration::try_from(peer.not_after - peer.not_before).unwrap_or_default();
    (lifetime > allowed).then(|| {
        format!(
            "certificate of {} from the online signer is valid for {}, longer than a login gives",
            peer.identity,
            humantime::format_duration(lifetime)
        )
    })
}

/// Counts a live client connection in `Shared::clients` while alive.
struct ClientCount<'a>(&'a tokio::sync::watch::Sender<usize>);

impl<'a> ClientCount<'a> {
    fn new(count: &'a tokio::sync::watch::Sender<usize>) -> Self {
        count.send_modify(|n| *n += 1);
        ClientCount(count)
    }
}

impl Drop for ClientCount<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

fn until(t: time::OffsetDateTime) -> std::time::Duration {
    let left = t - time::OffsetDateTime::now_utc();
    std::time::Duration::try_from(left).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::address_key;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn an_address_counts_as_itself_and_an_ipv6_one_as_its_64() {
        assert_eq!(address_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(address_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            address_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            address_key(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
    }
}
