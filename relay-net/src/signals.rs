//! SIGINT and SIGTERM as a cancellation, for a clean shutdown of each program.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGINT or SIGTERM. The handlers are
/// installed before this returns (not when a spawned task first runs), so a
/// signal sent right after the program reports it is ready is never lost to
/// the default action.
///
/// # Errors
/// If the handlers cannot be installed (must be called inside a runtime).
pub fn cancel_on_signal(token: CancellationToken) -> std::io::Result<()> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            () = token.cancelled() => return,
        }
        token.cancel();
    });
    Ok(())
}
