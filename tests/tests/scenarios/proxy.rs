//! `relay_net::proxy` against a real HTTP CONNECT proxy, Debian's
//! tinyproxy, started by each test on 127.0.0.1 with its own config: a
//! tunnel carries bytes both ways, and each refusal (407 or 401, 403, 500)
//! and an absent proxy give the message a person can act on. Every target
//! is on 127.0.0.1.

use std::time::Duration;

use anyhow::Context;
use relay_net::proxy::{Proxy, ProxyError};
use relay_tests::{closed_port, guard, read_n, tcp_echo, TinyProxy, TinyProxyConfig};
use tokio::io::AsyncWriteExt;

/// The whole CONNECT's time limit: generous, it is loopback.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A tinyproxy that allows CONNECT only to `port`, with `basic_auth`.
async fn tinyproxy(port: u16, basic_auth: Option<(&str, &str)>) -> anyhow::Result<TinyProxy> {
    TinyProxy::start(TinyProxyConfig {
        connect_ports: vec![port],
        basic_auth: basic_auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
        hosts: None,
    })
    .await
}

/// Through tinyproxy to an echo server: 1 MiB goes out and comes back intact.
#[tokio::test]
async fn tunnel_through_tinyproxy_moves_bytes_both_ways() -> anyhow::Result<()> {
    if TinyProxy::missing() {
        return Ok(());
    }
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let tinyproxy = tinyproxy(echo.port(), None).await?;
    let proxy = Proxy::parse(&tinyproxy.url())?.with_origin("HTTPS_PROXY");

    let tcp = guard("connect", proxy.connect(&echo.to_string(), TIMEOUT)).await?;
    let (mut r, mut w) = tcp.into_split();
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + i / 251) as u8).collect();
    let sent = data.clone();
    // No half-close before the echo is back: tinyproxy ends the whole
    // tunnel when one side finishes.
    let writer = tokio::spawn(async move { w.write_all(&sent).await.map(|()| w) });
    let back = guard("echo through the proxy", read_n(&mut r, data.len())).await?;
    assert!(back == data, "the echo differs from what was sent");
    writer.await??.shutdown().await?;
    tinyproxy.stop().await
}

/// A proxy that demands Basic credentials: none, wrong ones, right ones.
#[tokio::test]
async fn tinyproxy_basic_auth() -> anyhow::Result<()> {
    if TinyProxy::missing() {
        return Ok(());
    }
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    let tinyproxy = tinyproxy(echo.port(), Some(("relay", "s3cret"))).await?;
    let target = echo.to_string();

    let bare = Proxy::parse(&tinyproxy.url())?.with_origin("HTTPS_PROXY");
    let err = guard("connect", bare.connect(&target, TIMEOUT))
        .await
        .err()
        .context("CONNECT without credentials succeeded")?;
    assert!(matches!(err, ProxyError::AuthRequired { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the HTTPS proxy {} (from HTTPS_PROXY) requires authentication (407 Proxy \
             Authentication Required): put the user and password in the proxy URL, \
             http://user:password@host:port",
            tinyproxy.addr
        )
    );

    // tinyproxy answers wrong credentials with 401, not 407.
    let wrong = Proxy::parse(&tinyproxy.url_with("relay", "guess"))?;
    let err = guard("connect", wrong.connect(&target, TIMEOUT))
        .await
        .err()
        .context("CONNECT with wrong credentials succeeded")?;
    assert!(matches!(err, ProxyError::AuthRejected { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the HTTPS proxy {} (from --proxy) rejected the credentials in the proxy URL for \
             user \"relay\" (401 Unauthorized): check the user and password in \
             http://user:password@host:port (percent-encode @ : / % in them)",
            tinyproxy.addr
        )
    );
    assert!(!err.to_string().contains("guess") && !format!("{err:?}").contains("guess"));

    let right = Proxy::parse(&tinyproxy.url_with("relay", "s3cret"))?;
    let mut tcp = guard("connect", right.connect(&target, TIMEOUT)).await?;
    tcp.write_all(b"ping").await?;
    assert_eq!(guard("echo", read_n(&mut tcp, 4)).await?, b"ping");
    tinyproxy.stop().await
}

/// CONNECT to a port the proxy does not allow: 403, and the hint about 443.
#[tokio::test]
async fn tinyproxy_refuses_a_port_it_does_not_allow() -> anyhow::Result<()> {
    if TinyProxy::missing() {
        return Ok(());
    }
    relay_tests::trace_init();
    let echo = tcp_echo().await;
    // ConnectPort 443 only, as many corporate proxies; the echo port is ephemeral.
    let tinyproxy = tinyproxy(443, None).await?;
    let proxy = Proxy::parse(&tinyproxy.url())?;

    let err = guard("connect", proxy.connect(&echo.to_string(), TIMEOUT))
        .await
        .err()
        .context("CONNECT to a port outside ConnectPort succeeded")?;
    assert!(matches!(err, ProxyError::Refused { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the HTTPS proxy {} (from --proxy) refused CONNECT to {echo}: 403 Access violation \
             — proxies often allow CONNECT only to port 443; run the relay's TCP listener on \
             443 (relay-server run --listen-tcp 0.0.0.0:443) or ask the proxy's admins to allow \
             this port",
            tinyproxy.addr
        )
    );
    tinyproxy.stop().await
}

/// CONNECT to an allowed port where nothing listens: the proxy says it
/// could not connect, and the message says where to look.
#[tokio::test]
async fn tinyproxy_cannot_reach_the_target() -> anyhow::Result<()> {
    if TinyProxy::missing() {
        return Ok(());
    }
    relay_tests::trace_init();
    let closed = closed_port().await;
    let tinyproxy = tinyproxy(closed.port(), None).await?;
    let proxy = Proxy::parse(&tinyproxy.url())?;

    let err = guard("connect", proxy.connect(&closed.to_string(), TIMEOUT))
        .await
        .err()
        .context("CONNECT to a closed port succeeded")?;
    assert_eq!(
        err.to_string(),
        format!(
            "the HTTPS proxy {} (from --proxy) refused CONNECT to {closed}: 500 Unable to \
             connect — the proxy could not reach {closed}: check that the relay's TCP listener \
             is on and reachable from the proxy",
            tinyproxy.addr
        )
    );
    tinyproxy.stop().await
}

/// Nothing listens where the proxy should be.
#[tokio::test]
async fn an_absent_proxy_cannot_be_reached() -> anyhow::Result<()> {
    relay_tests::trace_init();
    let nowhere = closed_port().await;
    let echo = tcp_echo().await;
    let proxy = Proxy::parse(&format!("http://{nowhere}"))?.with_origin("HTTPS_PROXY");
    let err = guard("connect", proxy.connect(&echo.to_string(), TIMEOUT))
        .await
        .err()
        .context("CONNECT through a closed port succeeded")?;
    assert_eq!(
        err.to_string(),
        format!("cannot reach the HTTPS proxy {nowhere} (from HTTPS_PROXY): connection refused")
    );
    Ok(())
}
