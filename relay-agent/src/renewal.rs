//! Following the credential file while the agent runs: a renewed
//! certificate is taken without a restart (on SIGHUP, see
//! [`relay_net::signals::reload_on_hangup`], or when the periodic check
//! sees the file change), and everything that depends on the certificate
//! follows it: new registrations dial with it ([`crate::uplink`] reads
//! [`Reloading::current`] at each dial), `relay_agent_certificate_expiry_seconds`
//! and the expiry warning name its end of validity, and a relay's refusal
//! of the old certificate (`CERT_EXPIRED`, `REVOKED`) is retried once with
//! the new one instead of stopping the uplink ([`retry_with_renewed`]).
//!
//! Registered connections keep the certificate they were made with (TLS
//! cannot swap it) and keep serving; the relay closes each at that
//! certificate's end of validity (`CERT_EXPIRED`), and the agent re-dials
//! at once with the renewed one. Streams still open on it at that moment
//! end with it.

use std::sync::Arc;
use std::time::Duration;

use relay_net::cert::{rfc3339, PeerCert};
use relay_net::credential::Loaded;
use relay_net::renew::Reloading;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::uplink::RegisterError;

/// How often the expiry warning repeats once due.
const REPEAT: Duration = Duration::from_secs(6 * 3600);

/// Until `shutdown`: checks the file every `every` (two `stat`s unless it
/// changed), keeps the certificate-expiry metric on the current
/// certificate, and logs a warning from two thirds of its lifetime on (an
/// error once it has expired), every few hours, until a renewal.
pub async fn follow(
    credential: Reloading,
    metrics: Arc<Metrics>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut renewed = credential.subscribe();
    let mut check = tokio::time::interval(every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.reset();
    let mut cert = renewed.borrow_and_update().cert.clone();
    let mut warn_at = tokio::time::Instant::now() + until_warning(&cert);
    loop {
        metrics
            .certificate_expiry
            .set(cert.not_after.unix_timestamp());
        tokio::select! {
            () = tokio::time::sleep_until(warn_at) => {
                warn(&cert);
                warn_at = tokio::time::Instant::now() + REPEAT;
            }
            _ = check.tick() => {
                if let Some(outcome) = credential.reload_if_changed() {
                    relay_net::renew::log(&outcome);
                }
            }
            changed = renewed.changed() => {
                if changed.is_err() {
                    return;
                }
                cert = renewed.borrow_and_update().cert.clone();
                warn_at = tokio::time::Instant::now() + until_warning(&cert);
            }
            () = shutdown.cancelled() => return,
        }
    }
}

/// How long until the next warning: the start of the last third of the
/// lifetime, or [`REPEAT`] once warnings are due.
fn until_warning(cert: &PeerCert) -> Duration {
    let now = time::OffsetDateTime::now_utc();
    if now < cert.renew_after() {
        Duration::try_from(cert.renew_after() - now).unwrap_or(REPEAT)
    } else {
        Duration::ZERO
    }
}

/// The warning (or error) for a certificate in the last third of its life.
fn warn(cert: &PeerCert) {
    let not_after = rfc3339(cert.not_after);
    if time::OffsetDateTime::now_utc() >= cert.not_after {
        tracing::error!(%not_after, serial = %cert.serial, "agent credential has expired: the relay will refuse this agent; renew the credential file (taken on SIGHUP or within a minute, no restart needed)");
    } else {
        tracing::warn!(%not_after, serial = %cert.serial, "agent credential expires soon: renew the credential file (taken on SIGHUP or within a minute, no restart needed)");
    }
}

/// Whether a registration that failed for good (`err` does not
/// [heal](RegisterError::heals)) is worth one more try because the
/// credential file holds a newer credential than `used`, the one it
/// dialled with: an expired or revoked certificate renewed meanwhile.
/// Checks the file first, so a renewal not yet seen by the periodic check
/// counts too.
pub fn retry_with_renewed(credential: &Reloading, used: &Arc<Loaded>, err: &RegisterError) -> bool {
    let renewed = credential.renewed_since(used);
    if renewed {
        tracing::info!(%err, "the relay refused the previous certificate; retrying with the renewed one");
    }
    renewed
}
