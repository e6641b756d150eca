//! Serving one connection: each bidirectional stream its peer opens gets a
//! task of its own ([`crate::stream::serve`]), in a span that names the
//! stream, until the connection ends or its owner stops serving it. The
//! relay connection ([`crate::uplink`]) and each admitted direct connection
//! ([`crate::direct`]) are served here, the same way.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use relay_net::cert::PeerCert;
use relay_net::endpoint::{StreamAllowance, AGENT_INITIAL_STREAMS, AGENT_MAX_STREAMS};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::shared::Shared;

/// Why [`serve`] returned.
#[derive(Debug)]
pub enum ConnectionEnd<T> {
    /// The connection ended: closed by either side, or lost.
    Closed(quinn::ConnectionError),
    /// The owner's `until` completed first, with this value.
    Stopped(T),
}

/// The streams of a connection still being served. Dropping it aborts them;
/// [`Streams::drain`] lets them finish first.
#[derive(Debug)]
pub struct Streams(JoinSet<()>);

impl Streams {
    /// Waits until every stream has ended, for at most `grace`.
    pub async fn drain(mut self, grace: Duration) {
        let all = async { while self.0.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(grace, all).await;
    }
}

/// Serves the streams `peer` opens on `conn` until the connection ends or
/// `until` completes; hands back why, and the streams still running.
pub async fn serve<T>(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    peer: Arc<PeerCert>,
    until: impl Future<Output = T>,
) -> (ConnectionEnd<T>, Streams) {
    let mut streams = JoinSet::new();
    // The connection announced AGENT_INITIAL_STREAMS (its transport); more
    // as they are used, so an idle relay connection holds little.
    let mut allowance = StreamAllowance::new(AGENT_INITIAL_STREAMS, AGENT_MAX_STREAMS);
    let mut until = std::pin::pin!(until);
    let end = loop {
        tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    let span = crate::stream::span(shared, &recv);
                    let serving = crate::stream::serve(shared.clone(), peer.clone(), send, recv);
                    streams.spawn(serving.instrument(span));
                    allowance.used(conn, streams.len());
                }
                Err(e) => break ConnectionEnd::Closed(e),
            },
            stopped = &mut until => break ConnectionEnd::Stopped(stopped),
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    };
    (end, Streams(streams))
}
