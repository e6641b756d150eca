//! The client's half of a `Shell` or `Exec` session, shared by
//! [`cmd::shell`](crate::cmd::shell) and [`cmd::run`](crate::cmd::run):
//! one writer task fed by a bounded queue (stdin, signals, resizes), and a
//! reader of the agent's frames (output, end of output, exit status).

use bytes::{Bytes, BytesMut};
use proto::{Channel, Eof, Exit, Frame};
use relay_net::framed::{send_data, send_frames, FrameReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// An accepted session stream.
#[derive(Debug)]
pub struct Session {
    /// Frames toward the agent.
    pub tx: mpsc::Sender<Frame>,
    /// The agent's frames.
    pub reader: FrameReader,
    writer: JoinHandle<Result<u64, String>>,
}

/// How a session ended.
#[derive(Debug)]
pub enum Ending {
    /// The program ended with this status.
    Exit(Exit),
    /// The session failed (relay or agent lost, stream reset): a description.
    Lost(String),
    /// Our own stdout is closed (`| head`): nobody reads the output any more.
    OutputClosed,
}

impl Ending {
    /// The process exit status for the client: the remote's status (128 + N
    /// for a signal, as a shell reports it), 141 (SIGPIPE) when our output
    /// was closed, 255 for a lost session (as ssh does).
    pub fn status(&self) -> u8 {
        match self {
            Ending::Exit(exit) => (exit.shell_status() & 0xff) as u8,
            Ending::OutputClosed => 141,
            Ending::Lost(_) => 255,
        }
    }
}

impl Session {
    /// Starts the writer of an accepted stream.
    pub fn new(send: quinn::SendStream, reader: FrameReader) -> Session {
        let (tx, rx) = mpsc::channel(16);
        let writer = tokio::spawn(send_frames(send, rx));
        Session { tx, reader, writer }
    }

    /// Copies the agent's output to `stdout` and `stderr` until `Exit`.
    ///
    /// # Cancel safety
    /// Not cancel safe: output read but not yet written would be lost. Race
    /// it only against events that end the session.
    pub async fn output(
        &mut self,
        stdout: &mut (impl AsyncWrite + Unpin),
        stderr: &mut (impl AsyncWrite + Unpin),
    ) -> Ending {
        loop {
            let frame = match self.reader.read().await {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    return Ending::Lost(
                        "the agent ended the session without an exit status".into(),
                    )
                }
                Err(e) => return Ending::Lost(e.to_string()),
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
                    return Ending::Exit(exit);
                }
                other => {
                    return Ending::Lost(format!(
                        "unexpected {} from the agent",
                        other.frame_type()
                    ))
                }
            };
            if written.is_err() {
                return Ending::OutputClosed;
            }
        }
    }

    /// Ends the session from our side. After `Exit`, the stream is finished
    /// cleanly (once the writer's queue is empty); otherwise it is reset, so
    /// the agent hangs up the program.
    pub async fn close(self, ending: &Ending, feeders: &[JoinHandle<()>]) {
        for feeder in feeders {
            feeder.abort();
        }
        drop(self.tx);
        match ending {
            Ending::Exit(_) => {
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
