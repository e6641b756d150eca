//! An agent's or client's side of the carrier: quinn's socket is one TLS
//! stream to the relay's TCP listener (directly or through an HTTP proxy).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::{write_link, FrameReader, Outbox, Read};

/// Why a carrier to the relay could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    /// The TCP connection failed.
    #[error("TCP {port}: {} — is the relay's TCP listener on (relay-server run --listen-tcp), and is TCP port {port} open from here?", plain(.reason))]
    Tcp {
        /// The port dialled.
        port: u16,
        /// What the connect got.
        reason: io::Error,
    },
    /// The TLS handshake on the TCP connection failed.
    #[error("TCP {port}: TLS handshake failed: {reason}{}", tls_hint(.reason))]
    Tls {
        /// The port dialled.
        port: u16,
        /// What rustls said.
        reason: io::Error,
    },
    /// The TLS peer does not speak the carrier protocol.
    #[error("TCP {port}: the server there does not speak the relay's carrier protocol (no ALPN relay-carrier/2): is it the relay's TCP port?")]
    NotCarrier {
        /// The port dialled.
        port: u16,
    },
    /// The HTTP proxy did not open a tunnel (unreachable, refused, auth).
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
    /// The name to check the certificate against is not a valid name.
    #[error("invalid TLS server name {0:?}")]
    Name(String),
    /// Nothing answered in time.
    #[error("TCP {port}: no answer within {timeout:?}")]
    Timeout {
        /// The port dialled.
        port: u16,
        /// How long we waited.
        timeout: Duration,
    },
}

impl CarrierError {
    /// What went wrong, without the port or what to check (for a message
    /// that tells both transports' failures together).
    pub fn reason(&self) -> String {
        match self {
            CarrierError::Tcp { reason, .. } => plain(reason),
            CarrierError::Tls { reason, .. } => {
                format!("TLS handshake failed: {reason}{}", tls_hint(reason))
            }
            CarrierError::NotCarrier { .. } => {
                "the server there does not speak the relay's carrier protocol".to_owned()
            }
            CarrierError::Proxy(e) => e.to_string(),
            CarrierError::Name(name) => format!("invalid TLS server name {name:?}"),
            CarrierError::Timeout { timeout, .. } => format!("no answer within {timeout:?}"),
        }
    }
}

/// A socket error in words, without the OS error number.
fn plain(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        _ => e.to_string(),
    }
}

fn tls_hint(reason: &io::Error) -> &'static str {
    if reason.to_string().contains("certificate") {
        " — the certificate on this port is not the relay's: is a TLS-inspecting proxy in the way?"
    } else {
        ""
    }
}

/// quinn's socket over one carrier stream. Every datagram goes to the
/// relay whatever its destination (a direct path leaves through the relay
/// too); every datagram received comes from `peer`, the relay's address as
/// dialled, so a connection over TCP reports the same remote address as
/// one over UDP. Datagrams are read on quinn's own task, straight from the
/// stream (no reader task, no wake-up in between).
pub struct StreamSocket {
    outbox: Arc<Outbox>,
    reader: Mutex<FrameReader>,
    peer: SocketAddr,
    local: SocketAddr,
    ended_tx: Arc<watch::Sender<Option<String>>>,
    ended: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for StreamSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSocket")
            .field("peer", &self.peer)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl StreamSocket {
    /// Runs the TLS handshake on `io` (a TCP stream to the relay,
    /// perhaps through a proxy) and carries datagrams over it from then on.
    ///
    /// # Errors
    /// If the handshake fails or the server is not a relay's carrier.
    pub async fn handshake<S>(
        io: S,
        local: SocketAddr,
        peer: SocketAddr,
        server_name: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<StreamSocket, CarrierError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let port = peer.port();
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| CarrierError::Name(server_name.to_owned()))?;
        let (stream, alpn) = super::handshake::connect(io, name, tls)
            .await
            .map_err(|reason| CarrierError::Tls { port, reason })?;
        if alpn.as_deref() != Some(proto::carrier::CARRIER_ALPN) {
            return Err(CarrierError::NotCarrier { port });
        }
        let (half, writer) = tokio::io::split(stream);
        let outbox = Arc::new(Outbox::default());
        let (ended_tx, ended) = watch::channel(None);
        let ended_tx = Arc::new(ended_tx);
        let (out, tx) = (outbox.clone(), ended_tx.clone());
        tokio::spawn(async move {
            let why = write_link(Box::new(writer), &out).await;
            first_reason(&tx, why.to_string());
        });
        Ok(StreamSocket {
            outbox,
            reader: Mutex::new(FrameReader::new(Box::new(half))),
            peer,
            local,
            ended_tx,
            ended,
        })
    }

    /// Resolves when the carrier stream has ended, with why.
    pub fn ended(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut ended = self.ended.clone();
        async move {
            match ended.wait_for(Option::is_some).await {
                Ok(why) => why.clone().unwrap_or_default(),
                Err(_) => "carrier closed".to_owned(),
            }
        }
    }

    /// The stream ended on the read side: says why, stops the writer.
    fn end(&self, why: String) {
        first_reason(&self.ended_tx, why);
        let _ = self.outbox.close();
    }
}

/// Says why the carrier ended, unless one side said it first.
fn first_reason(ended: &watch::Sender<Option<String>>, why: String) {
    ended.send_if_modified(|e| {
        let first = e.is_none();
        e.get_or_insert(why);
        first
    });
}

impl Drop for StreamSocket {
    fn drop(&mut self) {
        // The writer task shuts the stream down and ends.
        let _ = self.outbox.close();
    }
}

/// A TCP connection to `remote` within `timeout`, without Nagle's delay
/// (QUIC paces and batches its own datagrams).
///
/// # Errors
/// If it cannot be made in time.
pub async fn connect(
    remote: SocketAddr,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, CarrierError> {
    let port = remote.port();
    let tcp = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(remote)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(reason)) => return Err(CarrierError::Tcp { port, reason }),
        Err(_) => return Err(CarrierError::Timeout { port, timeout }),
    };
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Never blocks: a full outbox drops, as a full path would.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for StreamSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let segment = transmit.segment_size.unwrap_or(transmit.contents.len());
        self.outbox.push(transmit.contents, segment);
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        let (n, what) = reader.poll(cx, self.peer, bufs, meta);
        if let Read::Ended(why) = what {
            // An ended carrier reads as a silent path: the connection's
            // owner closes it (`ended`), or its idle timeout does.
            self.end(match why.kind() {
                io::ErrorKind::UnexpectedEof => "the relay closed the TCP carrier".to_owned(),
                io::ErrorKind::InvalidData => {
                    format!("the relay sent what is not a carrier frame: {why}")
                }
                _ => why.to_string(),
            });
        }
        if n == 0 {
            return Poll::Pending;
        }
        Poll::Ready(Ok(n))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn max_transmit_segments(&self) -> usize {
        // quinn batches up to this many datagrams per transmit, and the
        // outbox writes a batch in one vectored write (32 with 256 KiB
        // reads measured within noise of this, docs/PERFORMANCE.md).
        10
    }

    fn may_fragment(&self) -> bool {
        false
    }
}
