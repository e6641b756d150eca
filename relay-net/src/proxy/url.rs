//! Proxy URLs (`http://[user:password@]host[:port][/]`) and CONNECT targets
//! (`host:port`), parsed by hand: the grammar is this small, and the
//! errors say what to write instead.

/// A parsed proxy URL.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Parsed {
    pub(super) host: String,
    pub(super) port: u16,
    /// User and password, percent-decoded.
    pub(super) credentials: Option<(String, String)>,
}

/// How to write a proxy URL, at the end of every parse error.
const FORM: &str = "write it as http://host:port or http://user:password@host:port";

/// Parses a proxy URL. A missing scheme means `http`, a missing port 80.
/// The user information ends at the *last* `@`, so a password with an
/// unencoded `@` or `/` still parses.
pub(super) fn parse(url: &str) -> Result<Parsed, String> {
    let url = url.trim();
    if url.is_empty() {
        return Err(format!("it is empty; {FORM}"));
    }
    let rest = match url.split_once("://") {
        None => url,
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "http" => rest,
            "https" => {
                return Err(
                    "only http:// proxies are supported, not https:// (TLS to the proxy \
                     itself); the tunnel through it is TLS already: write http://host:port"
                        .into(),
                )
            }
            other => {
                return Err(format!(
                    "{other}:// proxies are not supported, only http:// (HTTP CONNECT) ones"
                ))
            }
        },
    };
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, rest),
    };
    let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
    if hostport.contains(['/', '?', '#']) {
        return Err(format!("a proxy URL has no path or query; {FORM}"));
    }
    let (host, port) = split_host_port(hostport)?;
    let port = match port {
        None => 80,
        Some(p) => parse_port(p)?,
    };
    let credentials = match userinfo {
        None | Some("") => None,
        Some(userinfo) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let user = percent_decode(user).map_err(|e| format!("the user name {e}"))?;
            let password = percent_decode(password).map_err(|e| format!("the password {e}"))?;
            if user.contains(':') {
                // Basic credentials are `user:password`: the first ':' ends the user.
                return Err("the user name cannot contain ':' (Basic authentication)".into());
            }
            Some((user, password))
        }
    };
    Ok(Parsed {
        host: host.to_owned(),
        port,
        credentials,
    })
}

/// `host` and the optional port of `host[:port]` or `[v6][:port]`.
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'[' without ']' around an IPv6 address; {FORM}"))?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{v6:?} in brackets is not an IPv6 address"));
        }
        return match after {
            "" => Ok((v6, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((v6, Some(port))),
                None => Err(format!(
                    "unexpected {after:?} after the IPv6 address; {FORM}"
                )),
            },
        };
    }
    let (host, port) = match s.split_once(':') {
        Some((_, port)) if port.contains(':') => {
            return Err(format!(
                "an IPv6 address goes in brackets, http://[{s}]:port; {FORM}"
            ));
        }
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    if host.is_empty() {
        return Err(format!("there is no host; {FORM}"));
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        return Err(format!("{c:?} cannot appear in a host name; {FORM}"));
    }
    Ok((host, port))
}

/// A port: 1 to 65535, digits only.
fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) => Err("port 0 is not a port to connect to".into()),
        Ok(port) if p.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(format!("{p:?} is not a port (1 to 65535); {FORM}")),
    }
}

/// Decodes `%XX` escapes (RFC 3986 §2.1); the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("has a '%' not followed by two hex digits (write '%' as %25)")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once percent-decoded".into())
}

/// `url` with its password (between the user's ':' and the last '@')
/// replaced by `***`, for messages.
pub(super) fn redact(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let Some(at) = url[start..].rfind('@').map(|i| start + i) else {
        return url.to_owned();
    };
    match url[start..at].find(':').map(|i| start + i) {
        Some(colon) => format!("{}:***{}", &url[..colon], &url[at..]),
        None => url.to_owned(),
    }
}

/// `host:port`, with an IPv6 host in brackets.
pub(super) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The port of a CONNECT target `host:port` (`[v6]:port`), after checking
/// that it is one: it goes into the request line as it is.
pub(super) fn target_port(target: &str) -> Result<u16, String> {
    if let Some(c) = target
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#'))
    {
        return Err(format!("{c:?} cannot appear in host:port"));
    }
    let port = if target.starts_with('[') {
        match split_host_port(target)? {
            (_, Some(port)) => port,
            (_, None) => return Err("no port: write [address]:port".into()),
        }
    } else {
        match target.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && !host.contains(':') => port,
            Some((host, _)) if host.contains(':') => {
                return Err("an IPv6 address goes in brackets: [address]:port".into())
            }
            _ => return Err("not host:port".into()),
        }
    };
    parse_port(port)
}
