//! SIGINT and SIGTERM as a cancellation, for a clean shutdown of each
//! program; SIGHUP as "re-read the credential file" for an agent or client.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::renew::Reloading;

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

/// Re-reads `credential`'s file on every SIGHUP until `token` is
/// cancelled, logging what it found ([`crate::renew::log`]): a renewal, an
/// unchanged file, or why the file was not taken. Without this handler
/// SIGHUP's default action would end the program. Installed before this
/// returns, as [`cancel_on_signal`].
///
/// # Errors
/// If the handler cannot be installed (must be called inside a runtime).
pub fn reload_on_hangup(credential: Reloading, token: CancellationToken) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(()) = hup.recv() => {
                    tracing::info!(path = %credential.current().path.display(), "SIGHUP: re-reading the credential file");
                    crate::renew::log(&credential.reload());
                }
                () = token.cancelled() => return,
            }
        }
    });
    Ok(())
}
