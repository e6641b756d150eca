//! Where benchmark streams go ([`BenchPath`]) and one stream on it
//! ([`BenchStream`]): the tunnel, plain TCP or plain quinn, behind the same
//! splice traits so the figures differ only by the path.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use proto::{BenchHeader, ErrorCode};
use relay_net::splice::{tcp_halves, ChunkRead, ChunkWrite, Failure, TcpRead, TcpWrite};

use super::meter::Progress;
use super::BenchError;
use crate::stream::Answered;
use crate::{AgentTarget, Client};

/// Where the benchmark streams go.
#[derive(Clone, Debug)]
pub enum BenchPath {
    /// Through the relay to an agent that exposes `bench`.
    Tunnel {
        /// The client (one QUIC connection for every stream).
        client: Arc<Client>,
        /// `agent/bench`.
        dest: AgentTarget,
    },
    /// Plain TCP to a `relay-agent bench-server` (or a forward to one).
    Tcp(SocketAddr),
    /// Plain quinn streams on one connection to `relay-client
    /// bench-quic-server`: one QUIC hop, the yardstick for CPU per GiB.
    Quic(quinn::Connection),
}

impl BenchPath {
    /// Opens a stream and sends `header`; for the tunnel, the header rides
    /// right behind `Open`, as a forward's first bytes do.
    ///
    /// # Errors
    /// If the stream or connection cannot be opened.
    pub async fn open(&self, header: BenchHeader) -> Result<BenchStream, BenchError> {
        let mut stream = match self {
            BenchPath::Tunnel { client, dest } => {
                let (send, recv) = client.open_early(dest.open()).await?;
                BenchStream {
                    read: Reader::Quic(Box::new(recv)),
                    write: Writer::Quic(send),
                    buf: BytesMut::new(),
                }
            }
            BenchPath::Quic(conn) => {
                let (send, recv) = conn
                    .open_bi()
                    .await
                    .map_err(|e| BenchError::Quic(relay_net::dial::describe(&e)))?;
                BenchStream {
                    read: Reader::Raw(recv),
                    write: Writer::Quic(send),
                    buf: BytesMut::new(),
                }
            }
            BenchPath::Tcp(addr) => {
                let tcp = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|err| BenchError::Connect { addr: *addr, err })?;
                let (read, write) = tcp_halves(tcp);
                BenchStream {
                    read: Reader::Tcp(read),
                    write: Writer::Tcp(write),
                    buf: BytesMut::new(),
                }
            }
        };
        stream.write.write_chunk(header.to_bytes()).await?;
        Ok(stream)
    }
}

/// The receiving half of a benchmark stream.
pub(super) enum Reader {
    Quic(Box<Answered>),
    Raw(quinn::RecvStream),
    Tcp(TcpRead),
}

impl ChunkRead for Reader {
    async fn read_chunk(&mut self) -> Result<Option<Bytes>, Failure> {
        match self {
            Reader::Quic(r) => r.read_chunk().await,
            Reader::Raw(r) => ChunkRead::read_chunk(r).await,
            Reader::Tcp(r) => r.read_chunk().await,
        }
    }

    fn abort(&mut self, code: ErrorCode) {
        match self {
            Reader::Quic(r) => ChunkRead::abort(r.as_mut(), code),
            Reader::Raw(r) => ChunkRead::abort(r, code),
            Reader::Tcp(r) => ChunkRead::abort(r, code),
        }
    }
}

/// The sending half of a benchmark stream.
pub(super) enum Writer {
    Quic(quinn::SendStream),
    Tcp(TcpWrite),
}

impl ChunkWrite for Writer {
    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), Failure> {
        match self {
            Writer::Quic(w) => ChunkWrite::write_chunk(w, chunk).await,
            Writer::Tcp(w) => w.write_chunk(chunk).await,
        }
    }

    async fn finish(&mut self) -> Result<(), Failure> {
        match self {
            Writer::Quic(w) => ChunkWrite::finish(w).await,
            Writer::Tcp(w) => w.finish().await,
        }
    }

    fn abort(&mut self, code: ErrorCode) {
        match self {
            Writer::Quic(w) => ChunkWrite::abort(w, code),
            Writer::Tcp(w) => ChunkWrite::abort(w, code),
        }
    }
}

/// One benchmark stream, after its header was sent.
pub struct BenchStream {
    pub(super) read: Reader,
    pub(super) write: Writer,
    buf: BytesMut,
}

impl std::fmt::Debug for BenchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchStream").finish_non_exhaustive()
    }
}

impl BenchStream {
    /// Reads exactly `n` bytes.
    pub(super) async fn read_exact(
        &mut self,
        n: usize,
        what: &'static str,
    ) -> Result<Bytes, BenchError> {
        while self.buf.len() < n {
            match self.read.read_chunk().await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => {
                    return Err(BenchError::Mismatch {
                        what,
                        expected: n as u64,
                        got: self.buf.len() as u64,
                    })
                }
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// Reads to the end; returns the byte count (buffered bytes included).
    pub(super) async fn drain(&mut self, progress: Option<&Progress>) -> Result<u64, BenchError> {
        let mut n = self.buf.len() as u64;
        self.buf.clear();
        while let Some(chunk) = self.read.read_chunk().await? {
            n += chunk.len() as u64;
            if let Some(p) = progress {
                p.inc(chunk.len() as u64);
            }
        }
        Ok(n)
    }
}
