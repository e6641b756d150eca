//! The browser shell (`[web]`): the relay's TCP port also serves a web page
//! over HTTPS, with the relay's certificate. People sign in with the
//! organisation's provider (the relay is its client), see the agents the
//! policy grants them, and open a terminal there; the terminal survives a
//! closed tab for the resume window.
//!
//! ```text
//! browser ─TLS (ALPN http/1.1)─▶ relay TCP port ─▶ hyper ─┬▶ /, /assets/…   the page (assets)
//!                                                          ├▶ /login, /login/callback  signin ─▶ session
//!                                                          ├▶ /api/session, /api/agents, /api/terminals, /logout
//!                                                          └▶ /api/shell (WebSocket) ─▶ shell ─▶ terminal ─▶ agent
//! ```
//!
//! Same rules as the CLI: the shell is an `Open` under the person's name,
//! through [`crate::authorize`], audited (`via: browser`), fail-closed.

mod answer;
mod assets;
mod http;
mod replay;
mod session;
pub mod settings;
mod shell;
mod signin;
mod terminal;
mod watch;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use session::{Sessions, WebSession};
use settings::WebSettings;
use signin::SignIns;
use terminal::Terminal;

use crate::Shared;

/// The web page's state.
#[derive(Debug)]
pub(crate) struct Web {
    pub(crate) settings: WebSettings,
    /// To the providers (discovery, token endpoint).
    pub(crate) http: reqwest::Client,
    /// Web client secrets, by provider name.
    pub(crate) secrets: HashMap<String, String>,
    pub(crate) sessions: Sessions,
    pub(crate) sign_ins: SignIns,
    /// Live terminals, by id.
    terminals: Mutex<HashMap<String, Arc<Terminal>>>,
    /// Sign-ins begun or finished per source address.
    sign_in_rate: governor::DefaultKeyedRateLimiter<IpAddr>,
    /// Recording windows being made at once ([`REPLAYS`]).
    replays: tokio::sync::Semaphore,
}

/// Recording windows the relay makes at once: each may read and emulate
/// a long recording up to the seek point (seconds of a core for 100 MB).
const REPLAYS: usize = 4;

/// Sign-in requests per minute one address may make (a person needs two).
const SIGN_INS_PER_MINUTE: u32 = 30;

impl Web {
    /// Sets up the page; reads the web clients' secrets.
    ///
    /// # Errors
    /// If a secret file cannot be read, or no provider signs people in.
    pub(crate) fn load(
        settings: WebSettings,
        login: Option<&crate::login::settings::LoginSettings>,
    ) -> Result<Web, String> {
        let login = login.ok_or(
            "[web] needs [login] with a provider of kind \"people\": the page signs people in with it",
        )?;
        let people: Vec<_> = login
            .providers
            .iter()
            .filter(|p| p.kind == proto::ProviderKind::People)
            .collect();
        if people.is_empty() {
            return Err(
                "[web] needs a [[login.provider]] of kind \"people\" to sign people in with".into(),
            );
        }
        let mut secrets = HashMap::new();
        for provider in people {
            if let Some(path) = &provider.web_client_secret_file {
                let secret = std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "[[login.provider]] {:?} web-client-secret-file {}: {e}",
                        provider.name.as_str(),
                        path.display()
                    )
                })?;
                secrets.insert(provider.name.to_string(), secret.trim().to_owned());
            }
        }
        let per_minute =
            std::num::NonZeroU32::new(SIGN_INS_PER_MINUTE).unwrap_or(std::num::NonZeroU32::MIN);
        Ok(Web {
            settings,
            http: relay_net::oidc::http_client()?,
            secrets,
            sessions: Sessions::default(),
            sign_ins: SignIns::default(),
            terminals: Mutex::default(),
            sign_in_rate: governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute)),
            replays: tokio::sync::Semaphore::new(REPLAYS),
        })
    }

    fn terminals(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Terminal>>> {
        self.terminals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn add_terminal(&self, terminal: Arc<Terminal>) {
        self.terminals().insert(terminal.id.clone(), terminal);
    }

    fn remove_terminal(&self, id: &str) {
        self.terminals().remove(id);
    }

    /// The live terminal `id`, if `session` opened it.
    fn terminal(&self, id: &str, session: &Arc<WebSession>) -> Option<Arc<Terminal>> {
        self.terminals()
            .get(id)
            .filter(|t| Arc::ptr_eq(&t.session, session))
            .cloned()
    }

    /// The live terminals `session` opened.
    fn terminals_for(&self, session: &Arc<WebSession>) -> Vec<Arc<Terminal>> {
        self.terminals()
            .values()
            .filter(|t| Arc::ptr_eq(&t.session, session))
            .cloned()
            .collect()
    }

    /// Other people's live terminals that `session`'s person may watch
    /// (the policy's `watch = true` for their agent).
    fn watchable_by(&self, shared: &Shared, session: &Arc<WebSession>) -> Vec<Arc<Terminal>> {
        let policy = shared.policy();
        let view = policy.on(crate::policy::Carrier::Relay);
        let caller = crate::policy::Caller::from(&session.peer);
        self.terminals()
            .values()
            .filter(|t| t.session.peer.identity != session.peer.identity)
            .filter(|t| view.allows_watch(caller, &t.agent))
            .cloned()
            .collect()
    }

    fn terminal_count(&self) -> usize {
        self.terminals().len()
    }

    fn terminals_of(&self, session: &Arc<WebSession>) -> usize {
        self.terminals_for(session).len()
    }
}

/// A random secret: 32 bytes, hex (a cookie, a CSRF token, an id).
pub(crate) fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Serves one browser connection (after TLS) until it closes.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: relay_net::tcp::WebStream,
    remote: SocketAddr,
) {
    http::serve(shared, stream, remote).await;
}
