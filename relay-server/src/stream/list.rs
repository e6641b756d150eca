//! `List`: one `AgentInfo` per registered agent the client has a grant for,
//! listing only the targets and session kinds it may open
//! ([`crate::authorize::listing`]).

use relay_net::cert::PeerCert;
use relay_net::framed::write_frame;

use crate::Shared;

/// Answers `List` and finishes the stream.
pub(super) async fn serve(shared: &Shared, peer: &PeerCert, mut send: quinn::SendStream) {
    for info in crate::authorize::listing(shared, peer) {
        if write_frame(&mut send, info).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}
