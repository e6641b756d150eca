//! A flood of well-formed QUIC Initials that never finish a handshake
//! (issue #19): each a new connection's first packet, a real TLS
//! ClientHello from a real client credential, sent and forgotten; the
//! relay's Retry is never answered, as a spoofed source could not.
//!
//! ```text
//! relay-hostile worker initials --relay ADDR --credential FILE --pps N --seconds S
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use quinn_proto::{ClientConfig, Endpoint, EndpointConfig, EndpointEvent};
use relay_net::credential::Loaded;

/// Sends `pps` Initials a second to `relay` until `deadline`; how many.
pub(crate) async fn flood(
    relay: SocketAddr,
    cred: &Loaded,
    pps: u64,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let tls = relay_net::tls::client_config(
        &cred.credential.certificate,
        cred.key_pem(),
        &cred.credential.ca,
    )?;
    let config = ClientConfig::new(Arc::new(tls));
    let mut endpoint = Endpoint::new(Arc::new(EndpointConfig::default()), None, false, None);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let mut packet = Vec::with_capacity(1500);
    let sent = crate::at_rate(pps, deadline, || {
        let now = Instant::now();
        let Ok((handle, mut conn)) = endpoint.connect(now, config.clone(), relay, "127.0.0.1")
        else {
            return false;
        };
        packet.clear();
        let sent = conn
            .poll_transmit(now, 1, &mut packet)
            .is_some_and(|t| socket.try_send_to(&packet[..t.size], t.destination).is_ok());
        // Forgotten at once: the endpoint keeps nothing of it.
        endpoint.handle_event(handle, EndpointEvent::drained());
        sent
    })
    .await;
    Ok(sent)
}
