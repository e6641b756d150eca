//! The accept loop of every local listener (`forward`, `socks`): one task
//! per connection, accept errors survived, and a bounded drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long live connections may finish after shutdown; then we exit
/// anyway, which resets their streams (never a silent truncation).
const DRAIN: Duration = Duration::from_secs(2);

/// Accepts on `listener` until `shutdown`, serving each connection with `serve`.
pub async fn serve_each<F, Fut>(listener: TcpListener, shutdown: CancellationToken, serve: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: the listener itself is fine.
                    tracing::warn!(err = %e, "accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        tasks.spawn(serve(tcp, peer));
    }
    tasks.close();
    let _ = tokio::time::timeout(DRAIN, tasks.wait()).await;
}
