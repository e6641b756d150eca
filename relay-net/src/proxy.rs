//! A TCP tunnel through an HTTP CONNECT proxy (`HTTPS_PROXY`, `--proxy`),
//! for the TLS-over-TCP carrier on networks that reach the internet only
//! through one (issue #15).
//!
//! [`Proxy::connect`] writes the `CONNECT` request itself and reads the
//! answer's header block straight off the socket, peeking first so that it
//! consumes exactly the header block and not one byte of the tunnel behind
//! it. We chose that over hyper's client `CONNECT` + upgrade because the
//! exchange is one request and one status line, and this way the caller
//! gets the proxy's own [`TcpStream`] back ([`ProxyStream`]): socket
//! options (`TCP_NODELAY`, keep-alive) and addresses stay reachable, there
//! is no boxed stream, no connection task to drive and no hyper `client`
//! feature to build.
//!
//! The setting comes from a `--proxy` flag or from the environment
//! ([`Proxy::from_env`]: `HTTPS_PROXY`, `https_proxy`, `ALL_PROXY`,
//! `all_proxy`, and `NO_PROXY`/`no_proxy` through [`no_proxy_matches`]).
//! Every error names the proxy, where its setting came from, and what to
//! do; none prints the proxy password.
//!
//! Only `http://` proxies: an `https://` proxy URL asks for TLS to the
//! proxy itself, which we do not speak (the tunnel inside carries TLS
//! already). An `http://` URL with no port means port 80, as in Go's
//! `net/http`; curl would assume 1080.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

mod head;
mod no_proxy;
mod url;

use head::{parse_status, read_head, HeadError};

pub use no_proxy::no_proxy_matches;

/// The longest answer header block we read from a proxy; a real one is a
/// few hundred bytes.
pub const MAX_HEAD: usize = 16 * 1024;

/// The environment variables naming a proxy, in the order they are read.
pub const PROXY_VARS: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

/// The environment variables listing hosts reached without a proxy.
pub const NO_PROXY_VARS: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// A tunnel through the proxy: after [`Proxy::connect`] the bytes on it are
/// the target's. It is the TCP connection to the proxy itself.
pub type ProxyStream = TcpStream;

/// An HTTP proxy for CONNECT tunnels (`http://[user:password@]host:port`).
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    host: String,
    port: u16,
    credentials: Option<Credentials>,
    origin: String,
}

/// Basic-auth credentials of a proxy (RFC 7617), percent-decoded.
#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Proxy");
        d.field("host", &self.host).field("port", &self.port);
        if let Some(c) = &self.credentials {
            d.field("user", &c.user).field("password", &"<redacted>");
        }
        d.field("origin", &self.origin).finish()
    }
}

/// Why no tunnel through the proxy could be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy setting is not a proxy URL we can use.
    #[error("the proxy setting {origin} ({url}) is not usable: {reason}")]
    BadUrl {
        /// Where the setting came from: an environment variable or `--proxy`.
        origin: String,
        /// The setting, its password replaced by `***`.
        url: String,
        /// What is wrong, and how to write it.
        reason: String,
    },
    /// The target is not `host:port` (a caller's mistake, not the proxy's).
    #[error("cannot ask a proxy to CONNECT to {target:?}: {reason}")]
    BadTarget {
        /// The target as given.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// No TCP connection to the proxy: it does not resolve, refuses, or is silent.
    #[error("cannot reach the HTTPS proxy {proxy} (from {origin}): {reason}")]
    Unreachable {
        /// The proxy's `host:port`.
        proxy: String,
        /// Where the setting came from.
        origin: String,
        /// What the connection attempt got.
        reason: String,
    },
    /// The proxy wants credentials (407, or 401) and the URL carries none.
    #[error(
        "the HTTPS proxy {proxy} (from {origin}) requires authentication ({status}): put the \
         user and password in the proxy URL, http://user:password@host:port"
    )]
    AuthRequired {
        /// The proxy's `host:port`.
        proxy: String,
        /// Where the setting came from.
        origin: String,
        /// The status line's code and reason.
        status: String,
    },
    /// The proxy did not accept the credentials the URL carries.
    #[error(
        "the HTTPS proxy {proxy} (from {origin}) rejected the credentials in the proxy URL for \
         user {user:?} ({status}): check the user and password in \
         http://user:password@host:port (percent-encode @ : / % in them)"
    )]
    AuthRejected {
        /// The proxy's `host:port`.
        proxy: String,
        /// Where the setting came from.
        origin: String,
        /// The user name that was sent.
        user: String,
        /// The status line's code and reason.
        status: String,
    },
    /// The proxy answered CONNECT with another non-2xx status.
    #[error("the HTTPS proxy {proxy} (from {origin}) refused CONNECT to {target}: {status}{hint}")]
    Refused {
        /// The proxy's `host:port`.
        proxy: String,
        /// Where the setting came from.
        origin: String,
        /// The `host:port` asked for.
        target: String,
        /// The status line's code and reason.
        status: String,
        /// What to do about it, starting with " — " (empty if we know nothing useful).
        hint: String,
    },
    /// The proxy accepted the connection but did not answer CONNECT in time.
    #[error(
        "the HTTPS proxy {proxy} (from {origin}) did not answer CONNECT to {target} within \
         {waited:?}"
    )]
    NoAnswer {
        /// The proxy's `host:port`.
        proxy: String,
        /// Where the setting came from.
        origin: String,
        /// The `host:port` asked for.
        target: String,
        /// The whole time allowed.
        waited: Duration,
    },
    /// The connection to the proxy failed or closed before its answer ended.
    #[error(
        "lost the connection to the HTTPS proxy {proxy} (from {origin}) while asking for \
         CONNECT to {target}: {reason}"
    )]
    Lost {
        /// The proxy's `host:port`.
        proxy: String,
        /// Where the setting came from.
        origin: String,
        /// The `host:port` asked for.
        target: String,
        /// What happened.
        reason: String,
    },
    /// The answer is not an HTTP response.
    #[error(
        "the HTTPS proxy {proxy} (from {origin}) answered CONNECT to {target} with something \
         that is not HTTP ({reason}): is {proxy} an http:// proxy?"
    )]
    Malformed {
        /// The proxy's `host:port`.
        proxy: String,
        /// Where the setting came from.
        origin: String,
        /// The `host:port` asked for.
        target: String,
        /// What is wrong with the answer.
        reason: String,
    },
}

impl Proxy {
    /// Parses a `--proxy` value: `http://user:password@host:port`,
    /// `host:port`, `http://host` (port 80); user and password
    /// percent-decoded, IPv6 hosts in brackets.
    ///
    /// # Errors
    /// [`ProxyError::BadUrl`] saying what is wrong, e.g. an `https://` or
    /// `socks5://` scheme, a missing host, a bad port, or a path.
    pub fn parse(url: &str) -> Result<Proxy, ProxyError> {
        Proxy::parse_from(url, "--proxy")
    }

    /// As [`Proxy::parse`], with `origin` (a variable's name, a config key)
    /// recorded for messages.
    ///
    /// # Errors
    /// As [`Proxy::parse`].
    pub fn parse_from(url: &str, origin: &str) -> Result<Proxy, ProxyError> {
        let parsed = url::parse(url).map_err(|reason| ProxyError::BadUrl {
            origin: origin.to_owned(),
            url: url::redact(url),
            reason,
        })?;
        Ok(Proxy {
            host: parsed.host,
            port: parsed.port,
            credentials: parsed
                .credentials
                .map(|(user, password)| Credentials { user, password }),
            origin: origin.to_owned(),
        })
    }

    /// The proxy for dialling `host`: `configured` (a `--proxy` URL) if
    /// given, else the environment's ([`Proxy::from_env`]).
    ///
    /// # Errors
    /// [`ProxyError::BadUrl`] if the URL chosen is not usable.
    pub fn choose(configured: Option<&str>, host: &str) -> Result<Option<Proxy>, ProxyError> {
        match configured {
            Some(url) => Proxy::parse(url).map(Some),
            None => Proxy::from_env(host),
        }
    }

    /// The proxy the environment asks for when dialling `host` (a name or
    /// an IP address, no port): the first non-empty of [`PROXY_VARS`]; none
    /// when they are all unset or empty, or when `NO_PROXY` (else
    /// `no_proxy`) matches `host`.
    ///
    /// # Errors
    /// [`ProxyError::BadUrl`], naming the variable, if its value is not usable.
    pub fn from_env(host: &str) -> Result<Option<Proxy>, ProxyError> {
        Proxy::from_vars(host, |name| std::env::var(name).ok())
    }

    /// As [`Proxy::from_env`], reading the variables through `var`.
    ///
    /// # Errors
    /// As [`Proxy::from_env`].
    pub fn from_vars(
        host: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Proxy>, ProxyError> {
        let first = |names: &[&'static str]| {
            names.iter().find_map(|&name| {
                var(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (name, v))
            })
        };
        let Some((name, url)) = first(&PROXY_VARS) else {
            return Ok(None);
        };
        if let Some((_, list)) = first(&NO_PROXY_VARS) {
            if no_proxy_matches(&list, host) {
                return Ok(None);
            }
        }
        Proxy::parse_from(&url, name).map(Some)
    }

    /// The same proxy, its setting said to come from `origin`.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Proxy {
        self.origin = origin.into();
        self
    }

    /// Where the setting came from: an environment variable or `--proxy`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The proxy's host (a name or an IP address, IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name sent to the proxy, if the URL carries credentials.
    pub fn user(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.user.as_str())
    }

    /// `host:port` of the proxy (IPv6 in brackets), for messages and logs.
    pub fn addr(&self) -> String {
        url::join_host_port(&self.host, self.port)
    }

    /// A TCP connection to the proxy on which `CONNECT target` succeeded:
    /// from then on its bytes are the target's. `target` is `host:port`
    /// (IPv6 as `[::1]:443`); `timeout` bounds everything (resolving the
    /// proxy, connecting, the answer). The stream is as the proxy left it:
    /// set `TCP_NODELAY` and the like on it as for a direct connection.
    ///
    /// # Errors
    /// [`ProxyError::BadTarget`] if `target` is not `host:port`;
    /// [`ProxyError::Unreachable`] if the proxy does not resolve, refuses
    /// or is silent; [`ProxyError::AuthRequired`] / [`ProxyError::AuthRejected`]
    /// on 407 (or 401); [`ProxyError::Refused`] on any other non-2xx;
    /// [`ProxyError::NoAnswer`], [`ProxyError::Lost`] and
    /// [`ProxyError::Malformed`] when the answer does not come, stops, or is
    /// not HTTP.
    ///
    /// # Cancel safety
    /// Dropping the future drops the connection; nothing is left behind.
    pub async fn connect(
        &self,
        target: &str,
        timeout: Duration,
    ) -> Result<ProxyStream, ProxyError> {
        let target_port = url::target_port(target).map_err(|reason| ProxyError::BadTarget {
            target: target.to_owned(),
            reason,
        })?;
        let deadline = Instant::now() + timeout;
        let mut tcp = self.open(deadline, timeout).await?;
        let request = self.request(target);
        let status = tokio::time::timeout_at(deadline, async {
            tcp.write_all(request.as_bytes()).await?;
            read_head(&mut tcp).await
        })
        .await
        .map_err(|_| ProxyError::NoAnswer {
            proxy: self.addr(),
            origin: self.origin.clone(),
            target: target.to_owned(),
            waited: timeout,
        })?
        .map_err(|e| self.head_error(target, e))
        .and_then(|head| parse_status(&head).map_err(|e| self.head_error(target, e)))?;
        match status.code {
            200..=299 => Ok(tcp),
            401 | 407 => Err(match &self.credentials {
                None => ProxyError::AuthRequired {
                    proxy: self.addr(),
                    origin: self.origin.clone(),
                    status: status.to_string(),
                },
                Some(c) => ProxyError::AuthRejected {
                    proxy: self.addr(),
                    origin: self.origin.clone(),
                    user: c.user.clone(),
                    status: status.to_string(),
                },
            }),
            code => Err(ProxyError::Refused {
                proxy: self.addr(),
                origin: self.origin.clone(),
                target: target.to_owned(),
                status: status.to_string(),
                hint: refusal_hint(code, target, target_port),
            }),
        }
    }

    /// A TCP connection to the proxy: every address its host resolves to,
    /// in turn, until one answers or `deadline` passes.
    async fn open(&self, deadline: Instant, timeout: Duration) -> Result<TcpStream, ProxyError> {
        let unreachable = |reason: String| ProxyError::Unreachable {
            proxy: self.addr(),
            origin: self.origin.clone(),
            reason,
        };
        let attempt = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
                .collect();
            let mut last = format!("{} resolves to no address", self.host);
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(tcp) => return Ok(tcp),
                    Err(e) => last = io_reason(&e),
                }
            }
            Err(last)
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(tcp)) => Ok(tcp),
            Ok(Err(reason)) => Err(unreachable(reason)),
            Err(_) => Err(unreachable(format!("no answer within {timeout:?}"))),
        }
    }

    /// The CONNECT request (RFC 9110 §9.3.6): the authority form, the same
    /// `Host`, and the credentials if any.
    fn request(&self, target: &str) -> String {
        let mut request = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: relay/{}\r\n",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(c) = &self.credentials {
            let token = base64(format!("{}:{}", c.user, c.password).as_bytes());
            request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        request.push_str("\r\n");
        request
    }

    fn head_error(&self, target: &str, e: HeadError) -> ProxyError {
        let (proxy, origin, target) = (self.addr(), self.origin.clone(), target.to_owned());
        match e {
            HeadError::Closed => ProxyError::Lost {
                proxy,
                origin,
                target,
                reason: "the proxy closed it before answering".into(),
            },
            HeadError::Io(e) => ProxyError::Lost {
                proxy,
                origin,
                target,
                reason: io_reason(&e),
            },
            HeadError::Malformed(reason) => ProxyError::Malformed {
                proxy,
                origin,
                target,
                reason,
            },
        }
    }
}

/// What to do about a refused CONNECT, from its status code.
fn refusal_hint(code: u16, target: &str, port: u16) -> String {
    match code {
        403 | 405 if port != 443 => " — proxies often allow CONNECT only to port 443; run the \
             relay's TCP listener on 443 (relay-server run --listen-tcp 0.0.0.0:443) or ask the \
             proxy's admins to allow this port"
            .to_owned(),
        403 | 405 => " — the proxy's rules do not allow this destination; ask the proxy's admins \
             to allow it"
            .to_owned(),
        500 | 502..=504 => format!(
            " — the proxy could not reach {target}: check that the relay's TCP listener is on \
             and reachable from the proxy"
        ),
        _ => String::new(),
    }
}

/// An I/O error as a short lowercase reason ("connection refused").
fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::ConnectionReset => "connection reset".into(),
        ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

/// Standard base64 with padding (RFC 4648 §4), for the Basic credentials.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
