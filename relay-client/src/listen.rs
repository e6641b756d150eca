//! The accept loop of every local listener (`forward`, `socks`): one task
//! per connection, accept errors survived, a bounded drain on shutdown, and
//! a stop on the first error no retry can heal (an expired credential).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::OpenError;

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

/// As [`serve_each`], for a service that returns the errors trying again
/// cannot heal ([`OpenError::is_permanent`]): the first one cancels
/// `shutdown` (so the listeners that share it stop too) and is returned,
/// instead of every later connection failing the same way.
///
/// # Errors
/// The first permanent error.
pub async fn serve_until_permanent<F, Fut>(
    listener: TcpListener,
    shutdown: CancellationToken,
    serve: F,
) -> Result<(), OpenError>
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = Result<(), OpenError>> + Send + 'static,
{
    let fatal: Arc<Mutex<Option<OpenError>>> = Arc::default();
    serve_each(listener, shutdown.clone(), |tcp, peer| {
        let served = serve(tcp, peer);
        let (fatal, shutdown) = (fatal.clone(), shutdown.clone());
        async move {
            if let Err(e) = served.await {
                let mut slot = fatal.lock().unwrap_or_else(PoisonError::into_inner);
                slot.get_or_insert(e);
                shutdown.cancel();
            }
        }
    })
    .await;
    let fatal = fatal.lock().unwrap_or_else(PoisonError::into_inner).take();
    match fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
