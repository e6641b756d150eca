//! One connection to one relay: register on the control stream, then serve
//! the streams the relay opens until the connection ends.

use std::sync::Arc;
use std::time::Duration;

use proto::{Capabilities, Frame, Register, PROTOCOL_VERSION};
use relay_net::dial::{describe, dial_addr, DialError, RelayConn};
use relay_net::framed::{write_frame, FrameReader};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::stream::StreamContext;
use crate::Config;

/// How a session ended.
#[derive(Debug)]
pub enum Ended {
    /// The relay asked us to come back after this long (`GoAway`).
    GoAway(Duration),
    /// The connection was lost after a successful registration.
    Lost(String),
    /// We are shutting down.
    Shutdown,
}

/// Why a session could not be established.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Dial failure.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// Registration failed or was refused.
    #[error("registration failed: {0}")]
    Register(String),
}

/// Dials `addr`, registers, and serves until the connection ends. `on_up`
/// runs once registered.
///
/// # Errors
/// If the relay cannot be reached or refuses the registration.
pub async fn run(
    config: &Config,
    ctx: &Arc<StreamContext>,
    addr: &str,
    shutdown: &CancellationToken,
    on_up: impl FnOnce(),
) -> Result<Ended, SessionError> {
    let dialing = dial_addr(
        &config.credential,
        addr,
        &config.transport,
        config.connect_timeout,
    );
    let RelayConn {
        conn,
        endpoint,
        relay,
        prefix,
        ..
    } = tokio::select! {
        dialed = dialing => dialed?,
        () = shutdown.cancelled() => return Ok(Ended::Shutdown),
    };
    let fail = |e: String| SessionError::Register(e);
    let (mut send, recv) = conn.open_bi().await.map_err(|e| fail(describe(&e)))?;
    let register = Register {
        version: PROTOCOL_VERSION,
        capabilities: {
            let mut caps = Capabilities::TCP;
            if config.sessions.allow {
                caps |= Capabilities::SHELL | Capabilities::EXEC;
            }
            if config.socks.enabled() {
                caps |= Capabilities::SOCKS;
            }
            caps
        },
        targets: config.allowlist.names(),
        prefix: Some(prefix),
    };
    // Clients the relay grants a direct path reach this endpoint through
    // the relay's address (module `direct`).
    let cred = &config.credential;
    let tls = relay_net::tls::server_config(
        &cred.credential.certificate,
        cred.key_pem(),
        &cred.credential.ca,
    )
    .map_err(|e| fail(format!("direct-path TLS: {e}")))?;
    relay_net::endpoint::accept_direct(&endpoint, tls, &config.transport);
    let relay_addr = conn.remote_address();
    write_frame(&mut send, register)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut control = FrameReader::new(recv);
    let answer = tokio::select! {
        answer = control.expect(config.connect_timeout) => answer,
        () = shutdown.cancelled() => return Ok(Ended::Shutdown),
    };
    match answer {
        Ok(Frame::Registered(_)) => {}
        Ok(Frame::Refused(r)) => return Err(fail(r.to_string())),
        Ok(other) => return Err(fail(format!("relay answered {}", other.frame_type()))),
        Err(e) => {
            let reason = conn
                .close_reason()
                .map_or_else(|| e.to_string(), |c| describe(&c));
            return Err(fail(reason));
        }
    }
    tracing::info!(relay = %relay.identity.name, %addr, "registered with relay");
    on_up();
    let relay = Arc::new(relay);
    let mut streams = JoinSet::new();
    let ended = loop {
        tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    streams.spawn(crate::stream::serve(ctx.clone(), relay.clone(), send, recv));
                }
                Err(e) => break Ended::Lost(describe(&e)),
            },
            frame = control.read() => match frame {
                Ok(Some(Frame::GoAway(g))) => {
                    tracing::info!(reconnect_in = ?g.reconnect_in(), "relay is going away");
                    break Ended::GoAway(g.reconnect_in());
                }
                Ok(Some(other)) => break Ended::Lost(format!("unexpected {} on the control stream", other.frame_type())),
                Ok(None) => break Ended::Lost("relay closed the control stream".into()),
                Err(e) => break Ended::Lost(conn.close_reason().map_or_else(|| e.to_string(), |c| describe(&c))),
            },
            Some(incoming) = endpoint.accept() => {
                streams.spawn(crate::direct::serve(ctx.clone(), relay_addr, relay.relay.clone(), incoming));
            }
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            () = shutdown.cancelled() => break Ended::Shutdown,
        }
    };
    if matches!(ended, Ended::Shutdown | Ended::GoAway(_)) {
        // Let live streams finish before closing: a GoAway'ing relay drains them too.
        let drain = async { while streams.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(config.shutdown_grace, drain).await;
        conn.close(
            proto::ErrorCode::GOING_AWAY.0.into(),
            b"agent shutting down",
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    }
    Ok(ended)
}
