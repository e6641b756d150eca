//! The carrier's TLS handshake, after which the stream is handed back raw
//! ([`proto::carrier`]: the QUIC packets that follow are sealed already).
//!
//! A TLS library reads as much as the socket gives it; a read that ran
//! past the handshake's last record would leave the first frames inside it.
//! So the handshake is driven here one record at a time, and neither side
//! sends anything through TLS afterwards (no session tickets): the socket
//! holds every byte that follows.

use std::io;
use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Runs the relay's side of the handshake on `io`.
///
/// # Errors
/// If the handshake fails or the peer is not speaking TLS.
#[cfg(test)]
pub(super) async fn accept<S>(mut io: S, tls: Arc<rustls::ServerConfig>) -> io::Result<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = super::hello::read(&mut io).await?;
    accept_hello(io, hello.accepted, tls).await
}

/// Runs the rest of the relay's side of the handshake on `io`, whose
/// ClientHello was read already ([`super::hello`]).
///
/// # Errors
/// If the handshake fails.
pub(super) async fn accept_hello<S>(
    mut io: S,
    hello: rustls::server::Accepted,
    tls: Arc<rustls::ServerConfig>,
) -> io::Result<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = match hello.into_connection(tls) {
        Ok(conn) => rustls::Connection::from(conn),
        Err((e, mut alert)) => {
            let mut out = Vec::new();
            if alert.write_all(&mut out).is_ok() {
                let _ = io.write_all(&out).await;
            }
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    };
    drive(&mut io, &mut conn).await?;
    Ok(io)
}

/// Runs an agent's or client's side of the handshake on `io`; returns the
/// raw stream and the protocol the relay chose (ALPN).
///
/// # Errors
/// If the handshake fails (the relay's certificate included).
pub(super) async fn connect<S>(
    mut io: S,
    name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
) -> io::Result<(S, Option<Vec<u8>>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = rustls::ClientConnection::new(tls, name)
        .map_err(io::Error::other)?
        .into();
    drive(&mut io, &mut conn).await?;
    Ok((io, conn.alpn_protocol().map(<[u8]>::to_vec)))
}

/// Bytes in a TLS record's header: type, version, length.
const RECORD_HEADER: usize = 5;

/// Exchanges records until the handshake is over and all of it is sent;
/// reads exactly the records it needs, never a byte past them.
async fn drive<S>(io: &mut S, conn: &mut rustls::Connection) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut record = Vec::new();
    loop {
        send(io, conn).await?;
        if !conn.is_handshaking() {
            return io.flush().await;
        }
        record.resize(RECORD_HEADER, 0);
        io.read_exact(&mut record).await?;
        let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
        record.resize(RECORD_HEADER + len, 0);
        io.read_exact(&mut record[RECORD_HEADER..]).await?;
        let mut unread = &record[..];
        while !unread.is_empty() {
            conn.read_tls(&mut unread)?;
        }
        if let Err(e) = conn.process_new_packets() {
            // Tell the peer why (an alert), then fail.
            let _ = send(io, conn).await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

async fn send<S>(io: &mut S, conn: &mut rustls::Connection) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out)?;
    }
    io.write_all(&out).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn after_the_handshake_every_byte_sent_is_in_the_stream() {
        let relay = proto::Name::try_from("relay.test").unwrap_or_else(|e| panic!("{e}"));
        let (ca, _) = crate::pki::Ca::generate(&relay).unwrap_or_else(|e| panic!("{e}"));
        let issued = ca
            .issue_relay(&relay, &["relay.test".to_owned()], Duration::from_secs(600))
            .unwrap_or_else(|e| panic!("{e}"));
        let server = crate::tls::carrier_server_config(
            &issued.cert_pem,
            issued.key_pem.as_deref().unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let client =
            crate::tls::carrier_client_config(ca.cert_pem()).unwrap_or_else(|e| panic!("{e}"));
        let (near, far) = tokio::io::duplex(1 << 16);
        let name = ServerName::try_from("relay.test").unwrap_or_else(|e| panic!("{e}"));
        let dialled = async {
            let (mut io, alpn) = connect(near, name, client).await?;
            // At once, before the relay has read the last record.
            io.write_all(b"first frame").await?;
            Ok::<_, io::Error>((io, alpn))
        };
        let (dialled, accepted) = tokio::join!(dialled, accept(far, server));
        let (_near, alpn) = dialled.unwrap_or_else(|e| panic!("{e}"));
        let mut far = accepted.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(alpn.as_deref(), Some(proto::carrier::CARRIER_ALPN));
        let mut got = [0u8; 11];
        far.read_exact(&mut got)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&got, b"first frame");
    }
}
