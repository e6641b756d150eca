//! Direct paths (end-to-end mode): clients connect to this agent's own QUIC
//! endpoint through the relay, which forwards their datagrams without
//! decrypting them. The relay decides who may, with the grants it holds
//! open ([`crate::grants`]). Here each direct connection is only
//! *admitted*: it must come through the address of a relay that holds this
//! agent, from a client of
//! our relay that holds a live grant issued for the very certificate it
//! presents (by serial: another certificate of the same identity, one the
//! relay revoked say, is refused), and within the identity's cap of direct
//! connections. An admitted connection is served like the relay's
//! ([`crate::connection`]; each open is checked against the grant and
//! audited in [`crate::stream::direct`]) until the certificate's last grant
//! is withdrawn.

use std::sync::Arc;
use std::time::Duration;

use proto::{ErrorCode, Name, Role};
use relay_net::cert::PeerCert;

use crate::connection::{self, ConnectionEnd};
use crate::shared::Shared;
use crate::uplink::Instances;

/// How long a direct handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Admits one incoming direct connection and serves it until it ends or
/// the relay withdraws the client's last grant. Runs in a `direct` span
/// whose `caller` it records.
pub async fn admit(
    shared: Arc<Shared>,
    relays: Instances,
    relay_name: Name,
    incoming: quinn::Incoming,
) {
    if !relays.holds_addr(incoming.remote_address()) {
        tracing::debug!(remote = %incoming.remote_address(), "direct handshake not through the relay: ignored");
        return incoming.ignore();
    }
    let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return tracing::debug!(err = %e, "direct handshake failed"),
        Err(_) => return tracing::debug!("direct handshake timed out"),
    };
    let refuse_with = |code: ErrorCode, reason: String| {
        tracing::warn!(%code, %reason, "direct connection refused");
        conn.close(code.0.into(), reason.as_bytes());
    };
    let refuse = |reason: String| refuse_with(ErrorCode::UNAUTHORIZED, reason);
    let peer = match PeerCert::of_connection(&conn) {
        Ok(peer) => peer,
        Err(e) => return refuse(e.to_string()),
    };
    tracing::Span::current().record("caller", tracing::field::display(&peer.identity));
    if peer.identity.role != Role::Client || peer.relay != relay_name {
        return refuse(format!("{} may not connect directly", peer.identity));
    }
    // Subscribed before the check, so a withdrawal right after it is seen.
    let mut changes = shared.grants.subscribe();
    if !shared.grants.holds(&peer) {
        return refuse(format!(
            "no grant from the relay for {} with certificate {}",
            peer.identity, peer.serial
        ));
    }
    let _slot = match shared.grants.connect(&peer.identity) {
        Ok(slot) => slot,
        Err(r) => return refuse_with(r.code, r.message),
    };
    tracing::info!(caller = %peer.identity, serial = %peer.serial, "direct connection");
    let withdrawn =
        async { while changes.changed().await.is_ok() && shared.grants.holds(&peer) {} };
    // The streams of a closed connection end with it: nothing to drain.
    let (end, _streams) =
        connection::serve(&shared, &conn, Arc::new(peer.clone()), withdrawn).await;
    match end {
        ConnectionEnd::Closed(e) => {
            // The peer here is the client (in the span), not the relay:
            // quinn's own words do not blame the relay.
            tracing::info!(reason = %e, "direct connection ended");
        }
        ConnectionEnd::Stopped(()) => {
            conn.close(
                ErrorCode::PATH_WITHDRAWN.0.into(),
                b"the relay withdrew the grant",
            );
        }
    }
}
