//! Proxy URLs, `NO_PROXY` rules, and CONNECT against a scripted proxy on
//! 127.0.0.1 (the real proxy, tinyproxy, is in the scenarios: `proxy::`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const SECOND: Duration = Duration::from_secs(5);

/// Every byte but the unreserved ones as `%XX` (RFC 3986 §2.1).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A user and a password.
type Pair<'a> = Option<(&'a str, &'a str)>;

fn creds(p: &Proxy) -> Pair<'_> {
    p.credentials
        .as_ref()
        .map(|c| (c.user.as_str(), c.password.as_str()))
}

#[test]
fn base64_rfc4648_vectors() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
        ("user:pass", "dXNlcjpwYXNz"),
    ] {
        assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
    }
}

#[test]
fn parses_the_usual_forms() {
    let cases: [(&str, &str, u16, Pair); 9] = [
        ("http://proxy.corp:3128", "proxy.corp", 3128, None),
        ("proxy.corp:3128", "proxy.corp", 3128, None),
        ("http://proxy.corp", "proxy.corp", 80, None),
        ("HTTP://proxy.corp:8080/", "proxy.corp", 8080, None),
        ("  http://10.1.2.3:8888  ", "10.1.2.3", 8888, None),
        ("http://[::1]:3128", "::1", 3128, None),
        ("http://[fe80::1]", "fe80::1", 80, None),
        (
            "http://alice:s%40cret%3A1@proxy:3128",
            "proxy",
            3128,
            Some(("alice", "s@cret:1")),
        ),
        // An unencoded '@' or '/' in the password: the last '@' ends it.
        (
            "http://bob:p@ss/w@proxy:1",
            "proxy",
            1,
            Some(("bob", "p@ss/w")),
        ),
    ];
    for (url, host, port, credentials) in cases {
        let p = Proxy::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            (p.host(), p.port(), creds(&p)),
            (host, port, credentials),
            "{url}"
        );
        assert_eq!(p.origin(), "--proxy");
    }
    let p = Proxy::parse("http://carol@proxy:3128").unwrap();
    assert_eq!(creds(&p), Some(("carol", "")));
    assert_eq!(p.user(), Some("carol"));
    assert_eq!(
        Proxy::parse("http://[::1]:3128").unwrap().addr(),
        "[::1]:3128"
    );
    assert_eq!(Proxy::parse("proxy:3128").unwrap().addr(), "proxy:3128");
}

#[test]
fn bad_urls_say_what_to_write() {
    let cases = [
        ("", "it is empty"),
        (
            "https://proxy:3128",
            "only http:// proxies are supported, not https://",
        ),
        ("socks5://proxy:1080", "socks5:// proxies are not supported"),
        ("http://proxy:3128/path", "no path"),
        ("http://::1:3128", "an IPv6 address goes in brackets"),
        ("http://[::1", "without ']'"),
        ("http://[nope]:1", "is not an IPv6 address"),
        ("http://proxy:0", "port 0"),
        ("http://proxy:70000", "is not a port"),
        ("http://proxy:+80", "is not a port"),
        ("http://proxy:", "is not a port"),
        ("http://:3128", "there is no host"),
        ("http://pro xy:3128", "cannot appear in a host name"),
        ("http://u:%zz@proxy:1", "the password has a '%'"),
        ("http://u%3Ax:p@proxy:1", "cannot contain ':'"),
    ];
    for (url, want) in cases {
        let err = Proxy::parse(url).expect_err(url).to_string();
        assert!(err.contains(want), "{url}: {err}");
        assert!(
            err.starts_with("the proxy setting --proxy ("),
            "{url}: {err}"
        );
    }
    let err = Proxy::parse("https://u:hunter2@proxy:3128")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "the proxy setting --proxy (https://u:***@proxy:3128) is not usable: only http:// \
         proxies are supported, not https:// (TLS to the proxy itself); the tunnel through it \
         is TLS already: write http://host:port"
    );
}

#[test]
fn the_password_is_never_shown() {
    let p = Proxy::parse("http://alice:hunter2@proxy:3128").unwrap();
    let debug = format!("{p:?}");
    assert!(
        !debug.contains("hunter2") && debug.contains("alice"),
        "{debug}"
    );
    let err = Proxy::parse("http://alice:hunter2@proxy:3128/x").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    assert_eq!(url::redact("alice:p@w@host:1"), "alice:***@host:1");
    assert_eq!(url::redact("http://host:1"), "http://host:1");
    assert_eq!(url::redact("http://alice@host:1"), "http://alice@host:1");
}

#[test]
fn environment_order_and_no_proxy() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let pick = |pairs: &'static [(&'static str, &'static str)], host: &str| {
        Proxy::from_vars(host, vars(pairs))
            .unwrap()
            .map(|p| (p.addr(), p.origin().to_owned()))
    };
    let at = |addr: &str, var: &str| Some((addr.to_owned(), var.to_owned()));
    assert_eq!(pick(&[], "relay"), None);
    assert_eq!(pick(&[("HTTPS_PROXY", " ")], "relay"), None);
    assert_eq!(
        pick(&[("https_proxy", "b:2"), ("HTTPS_PROXY", "a:1")], "relay"),
        at("a:1", "HTTPS_PROXY")
    );
    assert_eq!(
        pick(&[("HTTPS_PROXY", ""), ("https_proxy", "b:2")], "relay"),
        at("b:2", "https_proxy")
    );
    assert_eq!(
        pick(&[("all_proxy", "d:4"), ("ALL_PROXY", "c:3")], "relay"),
        at("c:3", "ALL_PROXY")
    );
    assert_eq!(
        pick(&[("all_proxy", "d:4")], "relay"),
        at("d:4", "all_proxy")
    );
    // HTTP_PROXY is for plain http:// requests, not for our TLS carrier.
    assert_eq!(pick(&[("HTTP_PROXY", "e:5")], "relay"), None);
    let no = &[
        ("HTTPS_PROXY", "a:1"),
        ("NO_PROXY", "corp.example,10.0.0.0/8"),
    ];
    assert_eq!(pick(no, "relay.corp.example"), None);
    assert_eq!(pick(no, "10.9.8.7"), None);
    assert_eq!(pick(no, "relay.example.net"), at("a:1", "HTTPS_PROXY"));
    let lower = &[("HTTPS_PROXY", "a:1"), ("no_proxy", "relay")];
    assert_eq!(pick(lower, "relay"), None);
    let err = Proxy::from_vars("relay", vars(&[("HTTPS_PROXY", "https://p:1")])).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the proxy setting HTTPS_PROXY (https://p:1) is not usable"),
        "{err}"
    );
    // A NO_PROXY match wins over a bad setting: the proxy is not used at all.
    let skip = &[("HTTPS_PROXY", "https://p:1"), ("NO_PROXY", "*")];
    assert_eq!(pick(skip, "relay"), None);
}

#[test]
fn no_proxy_rules() {
    let cases: &[(&str, &str, bool)] = &[
        ("", "relay.example.com", false),
        ("*", "relay.example.com", true),
        ("*", "10.0.0.1", true),
        ("example.com", "example.com", true),
        ("example.com", "a.example.com", true),
        (".example.com", "a.example.com", true),
        ("*.example.com", "a.b.example.com", true),
        (".example.com", "example.com", true),
        ("example.com", "notexample.com", false),
        ("example.com", "example.com.evil", false),
        ("EXAMPLE.com", "Relay.Example.COM", true),
        ("example.com.", "a.example.com.", true),
        ("example.com:443", "a.example.com", true),
        ("other.org, example.com", "a.example.com", true),
        ("other.org example.com", "a.example.com", true),
        ("other.org,,", "a.example.com", false),
        (".", "a.example.com", false),
        ("10.1.2.3", "10.1.2.3", true),
        ("10.1.2.3", "10.1.2.4", false),
        ("10.1.2.3:8080", "10.1.2.3", true),
        ("0.1.2.3", "10.1.2.3", false),
        ("10.0.0.0/8", "10.200.3.4", true),
        ("10.0.0.0/8", "11.0.0.1", false),
        ("10.0.0.0/8", "ten.example.com", false),
        ("10.1.2.3", "host10.1.2.3", false),
        ("::1", "::1", true),
        ("::1", "[::1]", true),
        ("[::1]:443", "::1", true),
        ("::1/128", "::1", true),
        ("fd00::/8", "fd12::5", true),
        ("fd00::/8", "fe80::1", false),
        ("fd00::/8", "10.0.0.1", false),
        ("10.0.0.0/99", "10.0.0.1", false),
        ("localhost", "localhost", true),
        ("localhost", "127.0.0.1", false),
        ("127.0.0.0/8", "127.0.0.1", true),
    ];
    for &(list, host, want) in cases {
        assert_eq!(
            no_proxy_matches(list, host),
            want,
            "NO_PROXY={list:?} host={host:?}"
        );
    }
}

#[test]
fn status_lines() {
    let ok = |head: &str| parse_status(head.as_bytes()).unwrap();
    assert_eq!(ok("HTTP/1.1 200 Connection established\r\n\r\n").code, 200);
    assert_eq!(
        ok("HTTP/1.0 407 Proxy Authentication Required\r\n").to_string(),
        "407 Proxy Authentication Required"
    );
    assert_eq!(ok("HTTP/1.1 200\r\n\r\n").to_string(), "200");
    assert_eq!(ok("HTTP/1.1 403 \u{1b}[31mred\r\n").reason, "?[31mred");
    for bad in [
        "",
        "\r\n",
        "SSH-2.0-OpenSSH_9.2\r\n",
        "HTTP/2 200\r\n",
        "HTTP/1.1 20\r\n",
        "HTTP/1.1 2000 x\r\n",
        "HTTP/1.1  200\r\n",
    ] {
        assert!(parse_status(bad.as_bytes()).is_err(), "{bad:?}");
    }
}

proptest! {
    #[test]
    fn parse_never_panics(s in ".*") {
        let _ = Proxy::parse(&s);
        let _ = url::target_port(&s);
    }

    #[test]
    fn parse_never_panics_on_url_like_text(s in "(https?://)?[a-z:@%/\\[\\]0-9.]{0,40}") {
        let _ = Proxy::parse(&s);
    }

    #[test]
    fn parse_round_trips(
        user in "[^:]{0,12}",
        password in ".{0,16}",
        host in prop_oneof![
            "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z0-9]{1,8}){0,3}",
            any::<std::net::Ipv4Addr>().prop_map(|a| a.to_string()),
            any::<std::net::Ipv6Addr>().prop_map(|a| a.to_string()),
        ],
        port in 1u16..,
        with_credentials in any::<bool>(),
    ) {
        let hostport = url::join_host_port(&host, port);
        let url = if with_credentials {
            format!("http://{}:{}@{hostport}", percent_encode(&user), percent_encode(&password))
        } else {
            format!("http://{hostport}")
        };
        let p = Proxy::parse(&url).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(p.host(), host.as_str());
        prop_assert_eq!(p.port(), port);
        prop_assert_eq!(p.addr(), hostport);
        let want = with_credentials.then_some((user.as_str(), password.as_str()));
        prop_assert_eq!(creds(&p), want);
    }

    #[test]
    fn no_proxy_never_panics(list in ".{0,60}", host in ".{0,30}") {
        let _ = no_proxy_matches(&list, &host);
    }

    #[test]
    fn status_line_never_panics(head in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_status(&head);
    }
}

/// Reads `n` bytes under a hang guard (bytes swallowed by `connect` would
/// otherwise hang the test).
async fn read_n(tcp: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(SECOND, tcp.read_exact(&mut buf))
        .await
        .expect("hang guard: the tunnel bytes did not come")
        .unwrap();
    buf
}

/// A proxy on 127.0.0.1 that reads one request head, hands it to the test,
/// writes `answer` in the given pieces, then echoes whatever follows.
async fn scripted(answer: Vec<&'static [u8]>) -> (Proxy, oneshot::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let head = read_head(&mut tcp).await.unwrap();
        let _ = tx.send(String::from_utf8(head).unwrap());
        for piece in answer {
            tcp.write_all(piece).await.unwrap();
            tcp.flush().await.unwrap();
        }
        let (mut r, mut w) = tcp.into_split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    (Proxy::parse(&url).unwrap(), rx)
}

#[tokio::test]
async fn connect_keeps_the_tunnel_bytes_after_the_answer() {
    let (proxy, request) = scripted(vec![
        b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\nhello",
    ])
    .await;
    let proxy = proxy.with_origin("HTTPS_PROXY");
    let mut tcp = proxy
        .connect("relay.example.com:443", SECOND)
        .await
        .unwrap();
    assert_eq!(read_n(&mut tcp, 5).await, b"hello");
    tcp.write_all(b"ping").await.unwrap();
    assert_eq!(read_n(&mut tcp, 4).await, b"ping");
    let request = request.await.unwrap();
    assert!(
        request.starts_with(
            "CONNECT relay.example.com:443 HTTP/1.1\r\nHost: relay.example.com:443\r\n"
        ),
        "{request}"
    );
    assert!(!request.contains("Proxy-Authorization"), "{request}");
}

#[tokio::test]
async fn connect_reads_an_answer_in_pieces_and_sends_credentials() {
    let (proxy, request) = scripted(vec![b"HTTP/1.0 200 OK\r", b"\n", b"\r", b"\ntunnel"]).await;
    let proxy = Proxy::parse(&format!("http://user:pass@{}", proxy.addr())).unwrap();
    let mut tcp = proxy.connect("[::1]:4433", SECOND).await.unwrap();
    assert_eq!(read_n(&mut tcp, 6).await, b"tunnel");
    let request = request.await.unwrap();
    assert!(
        request.starts_with("CONNECT [::1]:4433 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains("\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n"),
        "{request}"
    );
}

#[tokio::test]
async fn refusals_say_what_to_do() {
    let (proxy, _r) = scripted(vec![b"HTTP/1.1 403 Forbidden\r\n\r\n"]).await;
    let err = proxy
        .connect("relay.example.com:4433", SECOND)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the HTTPS proxy {} (from --proxy) refused CONNECT to relay.example.com:4433: 403 \
             Forbidden — proxies often allow CONNECT only to port 443; run the relay's TCP \
             listener on 443 (relay-server run --listen-tcp 0.0.0.0:443) or ask the proxy's \
             admins to allow this port",
            proxy.addr()
        )
    );
    let (proxy, _r) = scripted(vec![b"HTTP/1.1 502 Bad Gateway\r\n\r\n"]).await;
    let err = proxy
        .connect("relay.example.com:443", SECOND)
        .await
        .unwrap_err();
    assert!(err.to_string().ends_with("502 Bad Gateway — the proxy could not reach relay.example.com:443: check that the relay's TCP listener is on and reachable from the proxy"), "{err}");

    let (proxy, _r) = scripted(vec![b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"]).await;
    let err = proxy.connect("r:443", SECOND).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the HTTPS proxy {} (from --proxy) requires authentication (407 Proxy \
             Authentication Required): put the user and password in the proxy URL, \
             http://user:password@host:port",
            proxy.addr()
        )
    );
    let (proxy, _r) = scripted(vec![b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"]).await;
    let proxy = Proxy::parse(&format!("http://al:pw@{}", proxy.addr())).unwrap();
    let err = proxy.connect("r:443", SECOND).await.unwrap_err();
    assert!(matches!(err, ProxyError::AuthRejected { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("rejected the credentials in the proxy URL for user \"al\" (407"),
        "{err}"
    );
}

#[tokio::test]
async fn broken_answers_are_errors_not_hangs() {
    let (proxy, _r) = scripted(vec![b"SSH-2.0-OpenSSH_9.2\r\n\r\n"]).await;
    let err = proxy.connect("r:443", SECOND).await.unwrap_err();
    assert!(matches!(err, ProxyError::Malformed { .. }), "{err:?}");
    assert!(
        err.to_string().contains(
            "with something that is not HTTP (no HTTP/1.x status line: \"SSH-2.0-OpenSSH_9.2\")"
        ),
        "{err}"
    );

    let huge: &'static [u8] = Box::leak(
        format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(MAX_HEAD))
            .into_bytes()
            .into_boxed_slice(),
    );
    let (proxy, _r) = scripted(vec![huge]).await;
    let err = proxy.connect("r:443", SECOND).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("no end of its header block in 16384 bytes"),
        "{err}"
    );

    // Answers half a line, then closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::parse(&listener.local_addr().unwrap().to_string()).unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        // Read the request first: closing with it unread would send a reset.
        let _ = read_head(&mut tcp).await;
        let _ = tcp.write_all(b"HTTP/1.1 2").await;
    });
    let err = proxy.connect("r:443", SECOND).await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("while asking for CONNECT to r:443: the proxy closed it before answering"),
        "{err}"
    );

    // Accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::parse(&listener.local_addr().unwrap().to_string()).unwrap();
    let held = tokio::spawn(async move { listener.accept().await });
    let err = proxy
        .connect("r:443", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the HTTPS proxy {} (from --proxy) did not answer CONNECT to r:443 within 200ms",
            proxy.addr()
        )
    );
    held.abort();
}

#[tokio::test]
async fn an_absent_proxy_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let proxy = Proxy::parse(&format!("http://{addr}"))
        .unwrap()
        .with_origin("HTTPS_PROXY");
    let err = proxy.connect("r:443", SECOND).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot reach the HTTPS proxy {addr} (from HTTPS_PROXY): connection refused")
    );
}

#[tokio::test]
async fn bad_targets_are_refused_before_dialling() {
    let proxy = Proxy::parse("http://127.0.0.1:9").unwrap();
    for target in [
        "relay",
        "relay:",
        "::1:443",
        "[::1]",
        "a b:443",
        "r:443\r\nX: y",
        "r:0",
    ] {
        let err = proxy.connect(target, SECOND).await.unwrap_err();
        assert!(
            matches!(err, ProxyError::BadTarget { .. }),
            "{target:?}: {err:?}"
        );
    }
}
