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
use std::time::{Duration, Instant};

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
    println!("ready");
    let per_ms = (pps / 1000).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    while Instant::now() < deadline {
        tick.tick().await;
        for _ in 0..per_ms {
            let now = Instant::now();
            let (handle, mut conn) = endpoint.connect(now, config.clone(), relay, "127.0.0.1")?;
            packet.clear();
            if let Some(t) = conn.poll_transmit(now, 1, &mut packet) {
                let _ = socket.send_to(&packet[..t.size], t.destination).await;
                sent += 1;
            }
            // Forgotten at once: the endpoint keeps nothing of it.
            endpoint.handle_event(handle, EndpointEvent::drained());
        }
    }
    Ok(sent)
}
