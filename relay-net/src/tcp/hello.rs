//! The first thing on the relay's TCP port: a TLS ClientHello, read whole
//! before anything is answered, so its ALPN decides who is calling. An
//! agent or client offers the carrier's protocol; a browser offers HTTP,
//! and its connection goes to the web page ([`super::Web`]), on the same
//! port and certificate, as HTTP/2 and HTTP/3 share 443.
//!
//! Records are read one at a time, never a byte past the hello: the
//! carrier's handshake then goes on reading the stream exactly
//! ([`super::handshake`]).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes a ClientHello may take: a post-quantum key share and a long list
/// of extensions fit in a few kilobytes; this bounds a peer that sends
/// records without end.
const MAX_HELLO: usize = 64 << 10;

/// Bytes in a TLS record's header: type, version, length.
const RECORD_HEADER: usize = 5;

/// A ClientHello read from the stream.
pub(super) struct Hello {
    /// The hello, parsed: what goes on with the carrier's configuration.
    pub(super) accepted: rustls::server::Accepted,
    /// Every byte read for it: what a handshake elsewhere reads again.
    pub(super) bytes: Vec<u8>,
}

impl Hello {
    /// Whether the peer offers `protocol` among its ALPN protocols.
    pub(super) fn offers(&self, protocol: &[u8]) -> bool {
        self.accepted
            .client_hello()
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == protocol))
    }
}

/// Reads the ClientHello from `io`, one record at a time.
///
/// # Errors
/// If the stream ends or fails first, or what arrives is not a valid
/// ClientHello (the peer then gets an alert).
pub(super) async fn read<S>(io: &mut S) -> io::Result<Hello>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut acceptor = rustls::server::Acceptor::default();
    let mut bytes = Vec::new();
    loop {
        let start = bytes.len();
        bytes.resize(start + RECORD_HEADER, 0);
        io.read_exact(&mut bytes[start..]).await?;
        let len = usize::from(u16::from_be_bytes([bytes[start + 3], bytes[start + 4]]));
        if bytes.len() + len > MAX_HELLO {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the TLS ClientHello is larger than 64 KiB",
            ));
        }
        bytes.resize(start + RECORD_HEADER + len, 0);
        io.read_exact(&mut bytes[start + RECORD_HEADER..]).await?;
        let mut unread = &bytes[start..];
        while !unread.is_empty() {
            acceptor.read_tls(&mut unread)?;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => return Ok(Hello { accepted, bytes }),
            Ok(None) => {}
            Err((e, mut alert)) => {
                let mut out = Vec::new();
                if alert.write_all(&mut out).is_ok() {
                    let _ = io.write_all(&out).await;
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}
