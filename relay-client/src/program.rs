//! The client's half of a program on the agent (a `Shell` or `Exec`
//! stream), shared by [`cmd::shell`](crate::cmd::shell) and
//! [`cmd::run`](crate::cmd::run): one writer task fed by a bounded queue
//! (stdin, signals, resizes), and a reader of the agent's frames (output,
//! end of output, exit status).

use bytes::{Bytes, BytesMut};
use proto::{Channel, Eof, Exit, Frame};
use relay_net::framed::{send_data, send_frames, FrameReader, SendError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Cause, Side, StreamError};

/// An accepted `Shell` or `Exec` stream: the remote program's input and output.
#[derive(Debug)]
pub struct RemoteProgram {
    /// Frames toward the agent.
    pub tx: mpsc::Sender<Frame>,
    /// The agent's frames.
    pub reader: FrameReader,
    writer: JoinHandle<Result<u64, SendError>>,
    /// The stream's other end: the relay, or the agent on a direct path.
    peer: Side,
    /// Keeps a direct path up while the program runs.
    _in_use: crate::direct::InUse,
}

/// How the remote program's stream ended for us.
#[derive(Debug)]
pub enum ProgramOutcome {
    /// The program ended with this status.
    Exit(Exit),
    /// The stream failed (relay or agent lost, stream reset) or we hung up.
    Lost(StreamError),
    /// Our own stdout is closed (`| head`): nobody reads the output any more.
    OutputClosed,
}

impl ProgramOutcome {
    /// The process exit status for the client: the remote's status (128 + N
    /// for a signal, as a shell reports it), 141 (SIGPIPE) when our output
    /// was closed, 255 for a lost stream (as ssh does).
    pub fn status(&self) -> u8 {
        match self {
            ProgramOutcome::Exit(exit) => (exit.shell_status() & 0xff) as u8,
            ProgramOutcome::OutputClosed => 141,
            ProgramOutcome::Lost(_) => 255,
        }
    }
}

impl RemoteProgram {
    /// Starts the writer of an accepted stream whose other end is `peer`
    /// (on a direct path, `in_use` keeps the path up for it).
    pub fn new(
        send: quinn::SendStream,
        reader: FrameReader,
        peer: Side,
        in_use: crate::direct::InUse,
    ) -> RemoteProgram {
        let (tx, rx) = mpsc::channel(16);
        let writer = tokio::spawn(send_frames(send, rx));
        RemoteProgram {
            tx,
            reader,
            writer,
            peer,
            _in_use: in_use,
        }
    }

    /// Copies the agent's output to `stdout` and `stderr` until `Exit`.
    ///
    /// # Cancel safety
    /// Not cancel safe: output read but not yet written would be lost. Race
    /// it only against events that end the program's stream.
    pub async fn output(
        &mut self,
        stdout: &mut (impl AsyncWrite + Unpin),
        stderr: &mut (impl AsyncWrite + Unpin),
    ) -> ProgramOutcome {
        let peer = self.peer;
        let lost = |cause| ProgramOutcome::Lost(StreamError { side: peer, cause });
        loop {
            let frame = match self.reader.read().await {
                Ok(Some(frame)) => frame,
                Ok(None) => return lost(Cause::NoExit),
                Err(e) => return lost(Cause::Frame(e)),
            };
            let written = match frame {
                Frame::Data(d) if d.channel == Channel::Stdout => write(stdout, &d.bytes).await,
                Frame::Data(d) if d.channel == Channel::Stderr => {
                    // A closed stderr is no reason to stop the program.
                    let _ = write(stderr, &d.bytes).await;
                    Ok(())
                }
                Frame::Eof(_) => Ok(()),
                Frame::Exit(exit) => {
                    let _ = stdout.flush().await;
                    let _ = stderr.flush().await;
                    return ProgramOutcome::Exit(exit);
                }
                other => return lost(Cause::Unexpected(other.frame_type())),
            };
            if written.is_err() {
                return ProgramOutcome::OutputClosed;
            }
        }
    }

    /// Ends the stream from our side. After `Exit`, the stream is finished
    /// cleanly (once the writer's queue is empty); otherwise it is reset, so
    /// the agent hangs up the program.
    pub async fn close(self, outcome: &ProgramOutcome, feeders: &[JoinHandle<()>]) {
        for feeder in feeders {
            feeder.abort();
        }
        drop(self.tx);
        match outcome {
            ProgramOutcome::Exit(_) => {
                let _ = self.writer.await;
            }
            _ => {
                self.writer.abort();
                let mut recv = self.reader.recv;
                let _ = recv.stop(proto::ErrorCode::STREAM_ABORTED.0.into());
            }
        }
    }
}

async fn write(out: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(bytes).await?;
    out.flush().await
}

/// Sends everything read from `input` as `Data(stdin)`, then `Eof(stdin)`.
pub async fn feed_stdin(mut input: impl AsyncRead + Unpin, tx: mpsc::Sender<Frame>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        buf.reserve(64 * 1024);
        match input.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let chunk: Bytes = buf.split().freeze();
                if !send_data(&tx, Channel::Stdin, chunk).await {
                    return;
                }
            }
        }
    }
    let _ = tx
        .send(
            Eof {
                channel: Channel::Stdin,
            }
            .into(),
        )
        .await;
}
