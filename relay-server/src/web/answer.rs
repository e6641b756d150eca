//! What the page's routes answer: JSON, text, redirects, the built-in
//! files, and the headers every answer carries (a strict Content Security
//! Policy, no framing, no sniffing, no referrer, HSTS).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::assets::Asset;

/// An answer to a request.
pub(super) type Answer = Response<Full<Bytes>>;

/// The page's Content Security Policy: its own scripts and styles only
/// (WebAssembly for the recording player), connections to itself only.
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; connect-src 'self'; img-src 'self' data:; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub(super) fn asset(asset: &Asset) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from_static(asset.bytes)));
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    answer
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    answer
}

pub(super) fn json_answer(status: StatusCode, value: &serde_json::Value) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(value.to_string())));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    answer
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer
}

pub(super) fn text(status: StatusCode, message: &str) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

pub(super) fn empty(status: StatusCode) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::new()));
    *answer.status_mut() = status;
    answer
}

pub(super) fn not_found() -> Answer {
    text(StatusCode::NOT_FOUND, "not found")
}

/// Back to the page, which shows `message` (not a secret: the reason a
/// sign-in failed).
pub(super) fn error_page(message: &str) -> Answer {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let short: String = message.chars().take(300).collect();
    let location = format!("/?error={}", utf8_percent_encode(&short, NON_ALPHANUMERIC));
    redirect(&location, &[])
}

pub(super) fn redirect(location: &str, cookies: &[String]) -> Answer {
    let mut answer = empty(StatusCode::FOUND);
    if let Ok(to) = HeaderValue::from_str(location) {
        answer.headers_mut().insert(header::LOCATION, to);
    }
    answer
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    set_cookies(&mut answer, cookies);
    answer
}

pub(super) fn set_cookies(answer: &mut Answer, cookies: &[String]) {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            answer.headers_mut().append(header::SET_COOKIE, value);
        }
    }
}

/// Adds the headers every answer carries.
pub(super) fn secure(mut answer: Answer) -> Answer {
    let headers = answer.headers_mut();
    let fixed = [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("strict-transport-security", "max-age=31536000"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    answer
}
