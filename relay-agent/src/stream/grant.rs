//! A `Grant` stream from the relay (end-to-end mode): the grant is live in
//! [`crate::grants`] for exactly as long as the relay keeps the stream.

use proto::{Accepted, Grant};
use relay_net::framed::{write_frame, FrameReader};

use crate::shared::Shared;

/// Holds `grant` until the relay ends its stream.
pub async fn hold(
    shared: &Shared,
    grant: Grant,
    mut send: quinn::SendStream,
    mut reader: FrameReader,
) {
    let caller = grant.caller.clone();
    tracing::info!(serial = %grant.serial, "direct path granted");
    let id = shared.grants.insert(grant);
    if write_frame(&mut send, Accepted).await.is_ok() {
        // Nothing more is sent on a grant stream: its end is the withdrawal.
        let _ = reader.read().await;
    }
    shared.grants.withdraw(&caller, id);
    tracing::info!("direct path withdrawn");
}
