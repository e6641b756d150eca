//! Applying policy and revocation changes to a running relay, without restart.
//!
//! The files are re-read every `reload_interval` and on SIGHUP. Reading two
//! small files once a second is cheaper than it sounds and, unlike inotify,
//! sees every way a file can be replaced (editors' rename-over, Kubernetes
//! ConfigMap symlink swaps, network filesystems). A file that fails to parse
//! is logged, audited as `policy_rejected` and ignored: the previous policy
//! stays in force. A revocation list that fails to parse, or vanishes or is
//! emptied while revocations are in force, is ignored the same way.

use std::sync::Arc;

use crate::audit::{AuditEvent, Event};
use crate::config::Paths;
use crate::metrics::ReasonLabel;
use crate::policy::Policy;
use crate::revocation::{RevocationError, Revocations};
use crate::Shared;

/// The policy and revocation files' text as last seen.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    policy: Option<String>,
    revoked: Option<String>,
}

impl Seen {
    /// The files as they are now. Taken before the relay loads them, so a
    /// change made while it starts is reloaded, never taken as seen.
    pub(crate) fn now(paths: &Paths) -> Seen {
        Seen {
            policy: std::fs::read_to_string(paths.policy()).ok(),
            revoked: std::fs::read_to_string(paths.revoked()).ok(),
        }
    }
}

/// Watches the files until `shutdown`, from what the relay loaded (`seen`).
pub(crate) async fn run(
    shared: Arc<Shared>,
    paths: Paths,
    seen: Seen,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let Seen {
        policy: mut policy_text,
        revoked: mut revoked_text,
    } = seen;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(shared.limits.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                tracing::info!("SIGHUP: reloading policy and revocations, reopening the audit log");
                shared.audit.reopen();
            }
            () = shutdown.cancelled() => return,
        }
        let mut changed = false;
        let text = std::fs::read_to_string(paths.policy()).ok();
        if text != policy_text {
            policy_text = text;
            reload_policy(&shared, &paths).await;
            changed = true;
        }
        let text = std::fs::read_to_string(paths.revoked()).ok();
        if text != revoked_text {
            revoked_text = text;
            reload_revocations(&shared, &paths).await;
            changed = true;
        }
        if changed {
            shared.reloads.send_modify(|n| *n += 1);
        }
    }
}

/// Applies a changed policy file. A file that does not parse is the
/// operator's mistake, not a peer's: it is audited as its own event,
/// `policy_rejected`, with the parse error as reason and no error code.
async fn reload_policy(shared: &Shared, paths: &Paths) {
    let (event, reason) = match Policy::load(&paths.policy()) {
        Ok(policy) => {
            let rules = policy.allow.len();
            shared.set_policy(policy);
            shared
                .metrics
                .reloads
                .get_or_create(&ReasonLabel { reason: "policy" })
                .inc();
            tracing::info!(rules, "policy reloaded");
            (Event::PolicyReload, format!("{rules} allow rules"))
        }
        Err(err) => {
            shared
                .metrics
                .reloads
                .get_or_create(&ReasonLabel {
                    reason: "policy_invalid",
                })
                .inc();
            tracing::warn!(%err, "policy not reloaded; the previous policy stays in force");
            (Event::PolicyRejected, err.to_string())
        }
    };
    shared
        .audit
        .record_or_log(AuditEvent::new(event).because(None, reason))
        .await;
}

/// Fails closed on a revocation list that vanished or was emptied while
/// revocations are in force: a deleted, truncated-to-nothing or half-copied
/// file must not quietly readmit every revoked certificate. Clearing the
/// list takes an explicit `revoked = []` (or `relay-server unrevoke`).
fn not_emptied(
    shared: &Shared,
    paths: &Paths,
    list: Revocations,
) -> Result<Revocations, RevocationError> {
    let in_force = shared.revocations().revoked.len();
    if !list.revoked.is_empty() || in_force == 0 {
        return Ok(list);
    }
    let path = paths.revoked();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let explicit = text
        .parse::<toml::Table>()
        .is_ok_and(|table| table.contains_key("revoked"));
    if explicit {
        return Ok(list);
    }
    Err(RevocationError {
        path: path.display().to_string(),
        reason: format!(
            "the file is missing or empty while {in_force} revocations are in force; write `revoked = []` to clear them"
        ),
    })
}

async fn reload_revocations(shared: &Shared, paths: &Paths) {
    match Revocations::load(&paths.revoked()).and_then(|list| not_emptied(shared, paths, list)) {
        Ok(list) => {
            let list = Arc::new(list);
            shared.set_revocations(list.clone());
            shared
                .metrics
                .reloads
                .get_or_create(&ReasonLabel {
                    reason: "revocations",
                })
                .inc();
            let closed = shared
                .conns
                .close_where(|peer| list.check(peer).map(|revoked| revoked.to_string()));
            tracing::info!(
                entries = list.revoked.len(),
                closed = closed.len(),
                "revocations reloaded"
            );
            for (peer, reason) in closed {
                shared
                    .audit
                    .record_or_log(
                        AuditEvent::of_peer(Event::Revoked, &peer, None).because(None, reason),
                    )
                    .await;
            }
        }
        Err(err) => {
            shared
                .metrics
                .reloads
                .get_or_create(&ReasonLabel {
                    reason: "revocations_invalid",
                })
                .inc();
            tracing::warn!(%err, "revocation list not reloaded; the previous one stays in force");
        }
    }
}
