//! Who a browser is: a sign-in kept in relay memory, named by a cookie
//! the page's script cannot read (`HttpOnly`), sent only over HTTPS
//! (`Secure`), only to this host (`__Host-`), never with a request another
//! site starts in the background (`SameSite=Lax`), and bound to the host
//! name it was made for. A change of state also needs the session's CSRF
//! token in a header, which only the relay's own page can read.
//!
//! The signed-in person is a [`PeerCert`] as a certificate would give
//! (name, groups, issuer and subject; the session id as its serial), so
//! policy, revocation and audit read a browser like any client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use relay_net::cert::PeerCert;
use tokio_util::sync::CancellationToken;

/// The session cookie's name; `__Host-` makes the browser keep it to this
/// exact host, over HTTPS, for every path.
pub(crate) const COOKIE: &str = "__Host-relay-session";

/// Sign-ins kept at once: past it the oldest goes.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser.
#[derive(Debug)]
pub(crate) struct WebSession {
    /// The person, as the policy and audit see them.
    pub(crate) peer: PeerCert,
    /// What the page sends back in `X-CSRF-Token` with every change.
    pub(crate) csrf: String,
    /// The host name (`Host` header) the session was made for.
    pub(crate) host: String,
    /// Cancelled when the session ends (signed out, expired, revoked):
    /// its terminals end with it.
    pub(crate) ended: CancellationToken,
}

/// The live sessions, by cookie value.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_cookie: Mutex<HashMap<String, Arc<WebSession>>>,
}

impl Sessions {
    /// Keeps `session`; returns its cookie value.
    pub(crate) fn insert(&self, session: WebSession) -> String {
        let cookie = super::random_token();
        let mut all = self
            .by_cookie
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = time::OffsetDateTime::now_utc();
        all.retain(|_, s| s.peer.not_after > now && !s.ended.is_cancelled());
        if all.len() >= MAX_SESSIONS {
            if let Some(oldest) = all
                .iter()
                .min_by_key(|(_, s)| s.peer.not_before)
                .map(|(k, _)| k.clone())
            {
                if let Some(gone) = all.remove(&oldest) {
                    gone.ended.cancel();
                }
            }
        }
        all.insert(cookie.clone(), Arc::new(session));
        cookie
    }

    /// The live session named by `cookie` for a request to `host`.
    pub(crate) fn get(&self, cookie: &str, host: &str) -> Option<Arc<WebSession>> {
        let mut all = self
            .by_cookie
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let session = all.get(cookie)?.clone();
        if session.peer.not_after <= time::OffsetDateTime::now_utc() || session.ended.is_cancelled()
        {
            all.remove(cookie);
            session.ended.cancel();
            return None;
        }
        (session.host == host).then_some(session)
    }

    /// Ends the session named by `cookie`.
    pub(crate) fn remove(&self, cookie: &str) {
        let gone = self
            .by_cookie
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(cookie);
        if let Some(gone) = gone {
            gone.ended.cancel();
        }
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a hyper::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for `name`: HTTPS only, out of scripts' reach,
/// this host only; `max_age` 0 deletes it.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: std::time::Duration) -> String {
    format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        max_age.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_found_among_others_and_only_by_its_exact_name() {
        let mut headers = hyper::HeaderMap::new();
        headers.append(
            hyper::header::COOKIE,
            hyper::header::HeaderValue::from_static("a=1; __Host-relay-session=abc"),
        );
        headers.append(
            hyper::header::COOKIE,
            hyper::header::HeaderValue::from_static("b=2"),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "relay-session"), None);
    }
}
