//! The built-in benchmark target: a sink, source and echo service inside the
//! agent process, so `relay-client bench` measures the tunnel and not some
//! server behind it.
//!
//! Off by default; `relay-agent --expose-bench` exposes it as target
//! `bench` ([`crate::allowlist::Target::Bench`]). A stream to it goes through
//! exactly the checks of a real target (relay policy, agent allowlist) and
//! gets `Accepted` like one; only the dial is replaced by [`serve`] on the
//! QUIC stream itself (no TCP hop).
//!
//! The sub-protocol, carried in the stream's raw bytes after `Accepted`
//! (header codec in [`proto::BenchHeader`]):
//!
//! ```text
//! client → agent:  mode: u8 | len: u64 BE
//!   1 sink    client sends bytes and finishes; agent answers count: u64 BE, finishes
//!   2 source  agent sends `len` bytes and finishes; client sends only its finish
//!   3 echo    agent echoes until the client finishes, then finishes
//! ```
//!
//! `relay-agent bench-server --listen ADDR` ([`serve_tcp`]) serves the very
//! same sub-protocol on plain TCP, in a process of its own, as the direct-TCP
//! baseline that `relay-client bench` compares the tunnel with.

use bytes::Bytes;
use relay_net::splice::tcp_halves;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use relay_net::bench::{serve, Served};

/// Serves the benchmark sub-protocol on every TCP connection accepted on
/// `listener`, until `shutdown` (`relay-agent bench-server`).
pub async fn serve_tcp(listener: TcpListener, shutdown: CancellationToken) {
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(err = %e, "accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        tasks.spawn(async move {
            let (mut r, mut w) = tcp_halves(tcp);
            if let Err(f) = serve(
                &mut r,
                &mut w,
                Bytes::new(),
                std::time::Duration::from_secs(10),
            )
            .await
            {
                tracing::debug!(err = %f, "benchmark connection failed");
            }
        });
    }
    tasks.close();
}
