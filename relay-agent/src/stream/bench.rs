//! A stream to the built-in `bench` target: it passes the checks of a real
//! target and gets `Accepted` like one, then the benchmark sub-protocol
//! ([`crate::bench`]) is served on the stream itself instead of a dial.

use proto::Accepted;
use relay_net::framed::{write_frame, FrameReader};

use crate::shared::Shared;

/// Answers `Accepted` and serves the benchmark on the stream.
pub async fn serve(shared: &Shared, mut send: quinn::SendStream, reader: FrameReader) {
    if write_frame(&mut send, Accepted).await.is_err() {
        return;
    }
    let (mut recv, early) = reader.into_parts();
    match crate::bench::serve(&mut recv, &mut send, early, shared.first_frame_timeout).await {
        Ok(s) => {
            tracing::debug!(mode = ?s.mode, up = s.read, down = s.written, "bench stream closed")
        }
        Err(f) => tracing::debug!(err = %f, "bench stream failed"),
    }
}
