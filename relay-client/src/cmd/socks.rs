//! `relay-client socks LISTEN AGENT`: a local SOCKS5 proxy (CONNECT, no
//! authentication) whose connections leave from AGENT, inside the private
//! network. Domain names are passed on unresolved, so the agent resolves
//! them there (`curl --socks5-hostname`, kubectl's `proxy-url: socks5://`).
//!
//! Per connection: greeting → method "no auth" → CONNECT request → a
//! `Socks` stream through the relay → wait for the agent's answer (a SOCKS
//! reply must say whether the connection exists, so unlike `forward` this
//! costs one round trip) → reply → splice. A refusal becomes the matching
//! SOCKS reply code ([`ReplyCode::from_error`]) and a log line with the
//! relay's or agent's message.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proto::socks5::{Greeting, Reply, ReplyCode, Request, Socks5Error, NO_AUTH};
use proto::{AgentName, Destination, ErrorCode, Open, StreamKind};
use relay_net::splice::{splice, tcp_halves};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{Client, OpenError};

/// How long a local SOCKS client may take for its greeting and request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Open` of a SOCKS stream to `dest` through `agent`; its target only
/// names the kind, as with sessions.
///
/// # Errors
/// None in practice: the kind's name is a valid target name.
pub fn open(agent: &AgentName, dest: Destination) -> Result<Open, OpenError> {
    let kind = StreamKind::Socks { dest };
    Ok(Open {
        agent: agent.clone(),
        target: crate::kind_target(&kind)?,
        kind,
    })
}

/// Accepts on `listener` until `shutdown`; every connection is one SOCKS
/// session through `agent`. As `forward`, it stops on an error that trying
/// again cannot heal (an expired credential), cancelling `shutdown`.
///
/// # Errors
/// The first permanent error ([`OpenError::is_permanent`]).
pub async fn run(
    client: Arc<Client>,
    listener: TcpListener,
    agent: AgentName,
    shutdown: CancellationToken,
) -> Result<(), OpenError> {
    let local = listener.local_addr().ok();
    tracing::info!(?local, %agent, "socks proxy");
    crate::listen::serve_until_permanent(listener, shutdown, |tcp, peer| {
        let span = tracing::debug_span!("socks", %peer, %agent);
        one(client.clone(), tcp, agent.clone()).instrument(span)
    })
    .await
}

/// Reads from `tcp` into `buf` until `decode` yields a value.
async fn read_until<T>(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    decode: impl Fn(&[u8]) -> Result<Option<(T, usize)>, Socks5Error>,
) -> Result<T, HandshakeError> {
    loop {
        if let Some((value, used)) = decode(buf)? {
            let _ = buf.split_to(used);
            return Ok(value);
        }
        if buf.len() > 1024 {
            return Err(Socks5Error::Malformed("handshake too long").into());
        }
        if tcp.read_buf(buf).await? == 0 {
            return Err(HandshakeError::Closed);
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error(transparent)]
    Socks(#[from] Socks5Error),
    #[error("local connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the local client closed the connection during the handshake")]
    Closed,
    #[error("the local client offers no method without authentication")]
    NoMethod,
}

/// The greeting and the CONNECT request; returns the destination and any
/// bytes the client sent behind the request.
async fn handshake(tcp: &mut TcpStream) -> Result<(Destination, BytesMut), HandshakeError> {
    let mut buf = BytesMut::with_capacity(512);
    let greeting = read_until(tcp, &mut buf, Greeting::decode).await?;
    let selection = greeting.select();
    tcp.write_all(&selection).await?;
    if selection[1] != NO_AUTH {
        return Err(HandshakeError::NoMethod);
    }
    match read_until(tcp, &mut buf, Request::decode).await {
        Ok(request) => Ok((request.dest, buf)),
        Err(HandshakeError::Socks(e)) => {
            let _ = tcp.write_all(&Reply::new(e.reply()).encode()).await;
            Err(e.into())
        }
        Err(e) => Err(e),
    }
}

/// Serves one local SOCKS connection.
///
/// # Errors
/// Only a permanent error (the local client gets its SOCKS reply all the
/// same); every other failure is logged here.
pub async fn one(
    client: Arc<Client>,
    mut tcp: TcpStream,
    agent: AgentName,
) -> Result<(), OpenError> {
    let (dest, pending) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut tcp)).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::info!(err = %e, "socks handshake failed");
            return Ok(());
        }
        Err(_) => {
            tracing::info!("socks handshake timed out");
            return Ok(());
        }
    };
    let opened = match open(&agent, dest.clone()) {
        Ok(open) => client.open_with(open).await,
        Err(e) => Err(e),
    };
    let opened = match opened {
        Ok(opened) => opened,
        Err(e) => {
            let code = match &e {
                OpenError::Refused(r) => r.code,
                OpenError::Dial(_) => ErrorCode::AGENT_OFFLINE,
                _ => ErrorCode::INTERNAL,
            };
            let reply = ReplyCode::from_error(code);
            let _ = tcp.write_all(&Reply::new(reply).encode()).await;
            let _ = tcp.shutdown().await;
            if e.is_permanent() {
                return Err(e);
            }
            tracing::warn!(%dest, %agent, code = %code, socks_reply = reply.0, err = %e, "socks connect refused");
            return Ok(());
        }
    };
    if tcp
        .write_all(&Reply::new(ReplyCode::SUCCEEDED).encode())
        .await
        .is_err()
    {
        let mut send = opened.send;
        let _ = send.reset(ErrorCode::STREAM_ABORTED.0.into());
        return Ok(());
    }
    tracing::debug!(%dest, "socks connected");
    let crate::stream::Opened {
        mut send,
        mut recv,
        early,
        in_use: _in_use,
    } = opened;
    let (mut tcp_read, mut tcp_write) = tcp_halves(tcp);
    let outcome = splice(
        &mut tcp_read,
        &mut tcp_write,
        &mut recv,
        &mut send,
        Bytes::from(pending),
        early,
    )
    .await;
    match outcome.failure() {
        Some(f) => tracing::info!(%dest, reason = %f, "socks connection failed"),
        None => tracing::debug!(
            up = outcome.forward.bytes,
            down = outcome.backward.bytes,
            "socks connection closed"
        ),
    }
    Ok(())
}
