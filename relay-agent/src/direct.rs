//! Direct paths (end-to-end mode): clients connect to this agent's own QUIC
//! endpoint through the relay, which forwards their datagrams without
//! decrypting them. The relay decides who may, with a [`Grant`] it holds
//! open on a stream; here each direct connection is admitted, and each of
//! its opens checked, against the grants of the client's identity.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::{Accepted, ErrorCode, Grant, Identity, Name, Open, Role, StreamKind};
use relay_net::cert::PeerCert;
use relay_net::framed::{write_frame, FrameReader};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::stream::StreamContext;

/// The grants the relay holds open, by client identity.
#[derive(Debug)]
pub struct Grants {
    live: Mutex<HashMap<Identity, Vec<(u64, Grant)>>>,
    next: AtomicU64,
    /// Bumped whenever a grant comes or goes.
    changes: watch::Sender<u64>,
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            live: Mutex::default(),
            next: AtomicU64::new(0),
            changes: watch::channel(0).0,
        }
    }
}

impl Grants {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Identity, Vec<(u64, Grant)>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether any grant for `caller` is live.
    pub fn holds(&self, caller: &Identity) -> bool {
        self.lock().get(caller).is_some_and(|g| !g.is_empty())
    }

    /// Whether a live grant lets `caller` make `open`.
    pub fn allows(&self, caller: &Identity, open: &Open) -> bool {
        let live = self.lock();
        let Some(grants) = live.get(caller) else {
            return false;
        };
        grants.iter().any(|(_, g)| match &open.kind {
            StreamKind::Tcp => g.targets.contains(&open.target),
            kind => g.sessions.contains(kind.capability()),
        })
    }

    fn insert(&self, grant: Grant) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(grant.caller.clone())
            .or_default()
            .push((id, grant));
        self.changes.send_modify(|v| *v += 1);
        id
    }

    fn remove(&self, caller: &Identity, id: u64) {
        let mut live = self.lock();
        if let Some(list) = live.get_mut(caller) {
            list.retain(|(i, _)| *i != id);
            if list.is_empty() {
                live.remove(caller);
            }
        }
        drop(live);
        self.changes.send_modify(|v| *v += 1);
    }
}

/// Holds a `Grant` from the relay until the relay ends its stream.
pub async fn hold(
    ctx: &StreamContext,
    grant: Grant,
    mut send: quinn::SendStream,
    mut reader: FrameReader,
) {
    let caller = grant.caller.clone();
    let id = ctx.grants.insert(grant);
    tracing::info!(%caller, "direct path granted");
    if write_frame(&mut send, Accepted).await.is_ok() {
        // Nothing more is sent on a grant stream: its end is the withdrawal.
        let _ = reader.read().await;
    }
    ctx.grants.remove(&caller, id);
    tracing::info!(%caller, "direct path withdrawn");
}

/// Serves one direct connection: only from the relay's address (every
/// direct datagram comes through it), only a client of our relay with a
/// live grant; its streams are served like the relay's, checked against the
/// grant; it is closed once the client's last grant is withdrawn.
pub async fn serve(
    ctx: Arc<StreamContext>,
    relay: SocketAddr,
    relay_name: Name,
    incoming: quinn::Incoming,
) {
    if incoming.remote_address() != relay {
        tracing::debug!(remote = %incoming.remote_address(), "direct handshake not through the relay: ignored");
        return incoming.ignore();
    }
    let conn = match tokio::time::timeout(Duration::from_secs(10), incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return tracing::debug!(err = %e, "direct handshake failed"),
        Err(_) => return tracing::debug!("direct handshake timed out"),
    };
    let refuse = |reason: String| {
        tracing::warn!(%reason, "direct connection refused");
        conn.close(ErrorCode::UNAUTHORIZED.0.into(), reason.as_bytes());
    };
    let peer = match PeerCert::of_connection(&conn) {
        Ok(peer) => peer,
        Err(e) => return refuse(e.to_string()),
    };
    if peer.identity.role != Role::Client || peer.relay != relay_name {
        return refuse(format!("{} may not connect directly", peer.identity));
    }
    let mut changes = ctx.grants.changes.subscribe();
    if !ctx.grants.holds(&peer.identity) {
        return refuse(format!("no grant from the relay for {}", peer.identity));
    }
    tracing::info!(caller = %peer.identity, "direct connection");
    let peer = Arc::new(peer);
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    streams.spawn(crate::stream::serve(ctx.clone(), peer.clone(), send, recv));
                }
                Err(e) => {
                    tracing::info!(caller = %peer.identity, reason = %relay_net::dial::describe(&e), "direct connection ended");
                    break;
                }
            },
            changed = changes.changed() => {
                if changed.is_err() || !ctx.grants.holds(&peer.identity) {
                    conn.close(ErrorCode::PATH_WITHDRAWN.0.into(), b"the relay withdrew the grant");
                    break;
                }
            }
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
}
