//! HTTP/1.1 on a browser's connection: the routes (what each answers is
//! built in [`super::answer`], which adds the headers every answer carries).
//!
//! A request that changes something, or opens a WebSocket, must come from
//! the relay's own page: its `Origin` is this host's, and a change also
//! carries the session's CSRF token. Nothing secret is ever in a URL.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_tungstenite::tungstenite::protocol::WebSocketConfig;
use hyper_tungstenite::tungstenite::Message;
use serde_json::json;

use super::answer::{
    asset, empty, error_page, json_answer, not_found, redirect, secure, set_cookies, text, Answer,
};
use super::assets;
use super::session::{self, WebSession, COOKIE};
use super::{replay, shell, signin, Web};
use crate::Shared;

/// Time for a browser to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest WebSocket message taken from a page (a paste).
const MAX_MESSAGE: usize = 1 << 20;

/// Serves one connection until it closes.
pub(super) async fn serve(
    shared: Arc<Shared>,
    stream: relay_net::tcp::WebStream,
    remote: SocketAddr,
) {
    let Some(web) = shared.web.clone() else {
        return;
    };
    let service = hyper::service::service_fn(move |request| {
        let (shared, web) = (shared.clone(), web.clone());
        async move { Ok::<_, Infallible>(secure(route(&shared, &web, request, remote).await)) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 << 10)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(%remote, err = %e, "web connection ended");
    }
}

async fn route(
    shared: &Arc<Shared>,
    web: &Arc<Web>,
    mut request: Request<Incoming>,
    remote: SocketAddr,
) -> Answer {
    let Some(host) = host_of(&request) else {
        return text(StatusCode::BAD_REQUEST, "the request names no valid Host");
    };
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let session = session::cookie(request.headers(), COOKIE)
        .and_then(|cookie| web.sessions.get(cookie, &host))
        .filter(|s| still_valid(shared, s));
    let method = request.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/") => asset(&assets::PAGE),
        (Method::GET, p) if p.starts_with("/assets/") => {
            assets::find(&p["/assets/".len()..]).map_or_else(not_found, asset)
        }
        (Method::GET, "/login") => {
            if web.sign_in_rate.check_key(&remote.ip()).is_err() {
                return error_page("too many sign-ins from your address; wait a minute");
            }
            let provider = param(&query, "provider").unwrap_or_default();
            match signin::begin(shared, web, &provider, &host).await {
                Ok(to) => redirect(&to.location, &to.cookies),
                Err(e) => error_page(&e),
            }
        }
        (Method::GET, "/login/callback") => {
            if web.sign_in_rate.check_key(&remote.ip()).is_err() {
                return error_page("too many sign-ins from your address; wait a minute");
            }
            let (code, state, error) = (
                param(&query, "code"),
                param(&query, "state"),
                param(&query, "error_description").or_else(|| param(&query, "error")),
            );
            let back = signin::Callback {
                code: code.as_deref(),
                state: state.as_deref(),
                error: error.as_deref(),
                cookie: session::cookie(request.headers(), signin::STATE_COOKIE),
            };
            match signin::finish(shared, web, back, &host, remote).await {
                Ok(to) => redirect(&to.location, &to.cookies),
                Err(e) => {
                    tracing::warn!(%remote, reason = %e, "browser sign-in refused");
                    shared.metrics.login("refused");
                    // As a refused `relay-client login`: throttled per address.
                    let mut event = crate::audit::AuditEvent::new(crate::audit::Event::AuthFailed);
                    event.remote = Some(remote.to_string());
                    event.via = Some("browser");
                    let event = event.because(
                        Some(proto::ErrorCode::UNAUTHORIZED),
                        format!("sign-in refused: {e}"),
                    );
                    shared.audit.auth_failed(remote.ip(), event);
                    error_page(&e)
                }
            }
        }
        (Method::GET, "/api/session") => match session {
            Some(s) => json_answer(
                StatusCode::OK,
                &json!({
                    "name": s.peer.identity.name.as_str(),
                    "identity": s.peer.identity.to_string(),
                    "groups": s.peer.groups.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "expires": s.peer.not_after.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                    "csrf": s.csrf,
                }),
            ),
            None => signed_out(shared),
        },
        (Method::POST, "/logout") => {
            let Some(s) = session else {
                return signed_out(shared);
            };
            if !same_origin(&request, &host) || !csrf_ok(&request, &s) {
                return text(
                    StatusCode::FORBIDDEN,
                    "this request did not come from the relay's page",
                );
            }
            if let Some(cookie) = session::cookie(request.headers(), COOKIE) {
                web.sessions.remove(cookie);
            }
            let mut answer = empty(StatusCode::NO_CONTENT);
            set_cookies(
                &mut answer,
                &[session::set_cookie(COOKIE, "", Duration::ZERO)],
            );
            answer
        }
        (Method::GET, "/api/agents") => match session {
            Some(s) => json_answer(StatusCode::OK, &json!({ "agents": agents(shared, &s) })),
            None => signed_out(shared),
        },
        (Method::GET, "/api/terminals") => match session {
            Some(s) => {
                let list: Vec<_> = web
                    .terminals_for(&s)
                    .iter()
                    .map(|t| json!({"session": t.id, "agent": t.agent.as_str(), "attached": t.detached_for().is_none()}))
                    .collect();
                json_answer(StatusCode::OK, &json!({ "terminals": list }))
            }
            None => signed_out(shared),
        },
        (Method::GET, "/api/recordings") => {
            let Some(s) = session else {
                return signed_out(shared);
            };
            let agent = match agent_param(&query) {
                Ok(agent) => agent,
                Err(answer) => return *answer,
            };
            match replay::list(shared, &s, agent, remote).await {
                Ok(list) => json_answer(StatusCode::OK, &json!({ "recordings": list })),
                Err(e) => json_answer(StatusCode::FORBIDDEN, &json!({ "error": e })),
            }
        }
        (Method::GET, "/api/recordings/play") => {
            let Some(s) = session else {
                return signed_out(shared);
            };
            // A seek reads the recording up to that point: bounded CPU.
            let Ok(_replaying) = web.replays.try_acquire() else {
                shared.metrics.limit_hit("web_replays");
                return json_answer(
                    StatusCode::TOO_MANY_REQUESTS,
                    &json!({ "error": "the relay is replaying as many recordings as it may; try again in a moment" }),
                );
            };
            let agent = match agent_param(&query) {
                Ok(agent) => agent,
                Err(answer) => return *answer,
            };
            let name = param(&query, "name").unwrap_or_default();
            let from = param(&query, "from")
                .and_then(|f| f.parse::<f64>().ok())
                .filter(|f| f.is_finite() && *f >= 0.0)
                .unwrap_or(0.0);
            if name.is_empty() {
                return json_answer(
                    StatusCode::BAD_REQUEST,
                    &json!({ "error": "name a recording" }),
                );
            }
            match replay::window(shared, &s, agent, name, from, remote).await {
                Ok(window) => json_answer(StatusCode::OK, &window),
                Err(e) => json_answer(StatusCode::FORBIDDEN, &json!({ "error": e })),
            }
        }
        (Method::GET, "/api/live") => match session {
            Some(s) => {
                let list: Vec<_> = web
                    .watchable_by(shared, &s)
                    .iter()
                    .map(|t| json!({"session": t.id, "agent": t.agent.as_str(), "owner": t.session.peer.identity.to_string()}))
                    .collect();
                json_answer(StatusCode::OK, &json!({ "live": list }))
            }
            None => signed_out(shared),
        },
        (Method::GET, "/api/watch") => {
            let Some(s) = session else {
                return signed_out(shared);
            };
            if !same_origin(&request, &host) {
                return text(
                    StatusCode::FORBIDDEN,
                    "watching starts only from the relay's own page",
                );
            }
            let (answer, websocket) = match upgrade(&mut request) {
                Ok(upgrade) => upgrade,
                Err(answer) => return *answer,
            };
            let wanted = param(&query, "session").unwrap_or_default();
            let terminal = web
                .watchable_by(shared, &s)
                .into_iter()
                .find(|t| t.id == wanted);
            let shared = shared.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = websocket.await else {
                    return;
                };
                match terminal {
                    Some(terminal) => shell::watch(&shared, ws, terminal, &s, remote).await,
                    None => {
                        let gone = json!({"type": "refused", "message": "this shell has ended, or you may not watch it (the policy's watch = true)"});
                        let _ = ws.send(Message::text(gone.to_string())).await;
                        let _ = ws.close(None).await;
                    }
                }
            });
            answer
        }
        (Method::GET, "/api/shell") => {
            let Some(s) = session else {
                return signed_out(shared);
            };
            if !same_origin(&request, &host) {
                return text(
                    StatusCode::FORBIDDEN,
                    "a shell opens only from the relay's own page",
                );
            }
            let (answer, websocket) = match upgrade(&mut request) {
                Ok(upgrade) => upgrade,
                Err(answer) => return *answer,
            };
            let ask = ShellAsk::from_query(&query);
            let (shared, web) = (shared.clone(), web.clone());
            tokio::spawn(async move {
                let Ok(ws) = websocket.await else {
                    return;
                };
                run_shell(&shared, &web, &s, ws, ask, remote).await;
            });
            answer
        }
        _ => not_found(),
    }
}

/// The `agent` of a query, checked.
fn agent_param(query: &str) -> Result<proto::AgentName, Box<Answer>> {
    let agent = param(query, "agent").unwrap_or_default();
    proto::AgentName::try_from(agent.as_str()).map_err(|e| {
        Box::new(json_answer(
            StatusCode::BAD_REQUEST,
            &json!({ "error": format!("{agent:?} is not an agent name: {e}") }),
        ))
    })
}

/// Turns `request` into a WebSocket: the answer to send, and the socket
/// once it is sent; or the refusal.
fn upgrade(
    request: &mut Request<Incoming>,
) -> Result<(Answer, hyper_tungstenite::HyperWebsocket), Box<Answer>> {
    if !hyper_tungstenite::is_upgrade_request(request) {
        return Err(Box::new(text(
            StatusCode::BAD_REQUEST,
            "a WebSocket is expected here",
        )));
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    hyper_tungstenite::upgrade(request, Some(config)).map_err(|e| {
        Box::new(text(
            StatusCode::BAD_REQUEST,
            &format!("not a WebSocket: {e}"),
        ))
    })
}

/// What `/api/shell` asks for: a new shell on an agent, or a terminal to
/// re-attach to from an output offset.
struct ShellAsk {
    agent: Option<String>,
    terminal: Option<String>,
    from: u64,
    size: (u16, u16),
}

impl ShellAsk {
    fn from_query(query: &str) -> ShellAsk {
        let number = |key: &str, default: u64| {
            param(query, key)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default)
        };
        let dim = |key: &str, default: u64| {
            u16::try_from(number(key, default).clamp(1, 1000)).unwrap_or(80)
        };
        ShellAsk {
            agent: param(query, "agent"),
            terminal: param(query, "session"),
            from: number("from", 0),
            size: (dim("cols", 80), dim("rows", 24)),
        }
    }
}

async fn run_shell(
    shared: &Arc<Shared>,
    web: &Arc<Web>,
    session: &Arc<WebSession>,
    mut ws: hyper_tungstenite::HyperWebsocketStream,
    ask: ShellAsk,
    remote: SocketAddr,
) {
    let refuse = |message: String| json!({"type": "refused", "message": message}).to_string();
    let terminal = match (ask.terminal, ask.agent) {
        (Some(id), _) => web.terminal(&id, session).ok_or_else(|| {
            json!({"type": "ended", "message": "this shell has ended (or is not yours)"})
                .to_string()
        }),
        (None, Some(agent)) => match proto::AgentName::try_from(agent.as_str()) {
            Ok(agent) => shell::open(shared, web, session, agent, ask.size, remote)
                .await
                .map_err(|r| refuse(r.message)),
            Err(e) => Err(refuse(format!("{agent:?} is not an agent name: {e}"))),
        },
        (None, None) => Err(refuse(
            "name an agent (?agent=NAME) or a shell (?session=ID)".into(),
        )),
    };
    match terminal {
        Ok(terminal) => shell::attach(ws, terminal, ask.from).await,
        Err(message) => {
            let _ = ws.send(Message::text(message)).await;
            let _ = ws.close(None).await;
        }
    }
}

/// The agents `session` may use, as the page lists them.
fn agents(shared: &Shared, session: &WebSession) -> Vec<serde_json::Value> {
    crate::authorize::listing(shared, &session.peer)
        .into_iter()
        .map(|info| {
            let kinds = [
                (proto::Capabilities::SHELL, "shell"),
                (proto::Capabilities::EXEC, "run"),
                (proto::Capabilities::SOCKS, "socks"),
                (proto::Capabilities::RECORDINGS, "recordings"),
            ];
            let sessions: Vec<&str> = kinds
                .iter()
                .filter(|(cap, _)| info.sessions.contains(*cap))
                .map(|(_, name)| *name)
                .collect();
            json!({
                "agent": info.agent.as_str(),
                "online": info.instances > 0,
                "targets": info.targets.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                "sessions": sessions,
            })
        })
        .collect()
}

/// Whether the session's person is still allowed in (not revoked).
fn still_valid(shared: &Shared, session: &WebSession) -> bool {
    if shared.revoked(&session.peer).is_some() {
        session.ended.cancel();
        return false;
    }
    true
}

/// The `Host` the browser asked for, if it is a plausible host name.
fn host_of(request: &Request<Incoming>) -> Option<String> {
    let host = request.headers().get(header::HOST)?.to_str().ok()?;
    let fine = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    fine.then(|| host.to_ascii_lowercase())
}

/// Whether the request came from a page of this relay (its `Origin`).
fn same_origin(request: &Request<Incoming>, host: &str) -> bool {
    request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|origin| origin.eq_ignore_ascii_case(&format!("https://{host}")))
}

/// Whether the request carries the session's CSRF token.
fn csrf_ok(request: &Request<Incoming>, session: &WebSession) -> bool {
    let given = request
        .headers()
        .get("x-csrf-token")
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    // Compared as digests: the time taken says nothing about the token.
    use sha2::Digest;
    sha2::Sha256::digest(given) == sha2::Sha256::digest(session.csrf.as_bytes())
}

/// The decoded value of `key` in a query string.
fn param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
}

fn signed_out(shared: &Shared) -> Answer {
    let providers: Vec<_> = shared
        .login
        .as_ref()
        .map(|l| {
            l.people()
                .map(|p| json!({"name": p.name.as_str()}))
                .collect()
        })
        .unwrap_or_default();
    json_answer(
        StatusCode::UNAUTHORIZED,
        &json!({"error": "not signed in", "providers": providers}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded_and_found_by_exact_key() {
        let q = "provider=sso&agent=edge%2Dproxy&x=a+b&code=";
        assert_eq!(param(q, "provider").as_deref(), Some("sso"));
        assert_eq!(param(q, "agent").as_deref(), Some("edge-proxy"));
        assert_eq!(param(q, "x").as_deref(), Some("a b"));
        assert_eq!(param(q, "code").as_deref(), Some(""));
        assert_eq!(param(q, "prov"), None);
    }

    #[test]
    fn a_shell_request_has_sane_sizes_whatever_it_says() {
        let ask = ShellAsk::from_query("agent=edge&cols=0&rows=99999&from=abc");
        assert_eq!(ask.size, (1, 1000));
        assert_eq!(ask.from, 0);
        assert_eq!(ask.agent.as_deref(), Some("edge"));
        let ask = ShellAsk::from_query("session=abc&from=42");
        assert_eq!(
            (ask.terminal.as_deref(), ask.from, ask.size),
            (Some("abc"), 42, (80, 24))
        );
    }
}
