//! What ends a page's terminal besides its program: the sign-in ending
//! (signed out, expired), the person revoked, or no page coming back
//! within the resume window; and what ends someone's watching (their own
//! sign-in ending). Each is noticed within a second.

use std::time::Duration;

use super::session::WebSession;
use super::terminal::Terminal;
use super::Web;
use crate::Shared;

/// How often a detached terminal's window is checked.
const TICK: Duration = Duration::from_secs(1);

/// Waits until `terminal` must end; returns why, for the page and the audit.
pub(crate) async fn until_over(shared: &Shared, web: &Web, terminal: &Terminal) -> String {
    let mut tick = tokio::time::interval(TICK);
    let not_back = async {
        loop {
            tick.tick().await;
            if terminal
                .detached_for()
                .is_some_and(|d| d >= web.settings.resume)
            {
                return format!(
                    "no page re-attached within {}",
                    humantime::format_duration(web.settings.resume)
                );
            }
        }
    };
    tokio::select! {
        why = until_signed_out(shared, &terminal.session) => why,
        why = not_back => why,
    }
}

/// Waits until `session` ends: signed out, expired, or its person
/// revoked (checked at each reload of the lists). Returns why.
pub(crate) async fn until_signed_out(shared: &Shared, session: &WebSession) -> String {
    let mut reloads = shared.reloads.subscribe();
    let left = session.peer.not_after - time::OffsetDateTime::now_utc();
    let expires = tokio::time::sleep(Duration::try_from(left).unwrap_or_default());
    tokio::pin!(expires);
    loop {
        tokio::select! {
            () = session.ended.cancelled() => return "the sign-in ended (signed out, or replaced)".into(),
            () = &mut expires => return "the sign-in expired: sign in again".into(),
            changed = reloads.changed() => {
                if changed.is_err() {
                    return "the relay is shutting down".into();
                }
                if let Some(why) = shared.revoked(&session.peer) {
                    session.ended.cancel();
                    return format!("revoked: {why}");
                }
            }
        }
    }
}
