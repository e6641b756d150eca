//! `Exec` sessions: one command, no PTY, stdin/stdout/stderr kept apart,
//! run in its own process group so a forwarded signal reaches everything
//! it started.
//!
//! ```text
//! client frames ─▶ Data(stdin) → child stdin, Eof(stdin) → close it,
//!                  Signal → the process group, Resize → ignored
//! child stdout/stderr ─▶ Data(stdout|stderr) … Eof(stdout|stderr)
//! child exit ─▶ output drained (up to OUTPUT_GRACE), what the program left
//!               behind ended (session::tree), Exit, finish
//! client gone (finish/reset before Exit) ─▶ SIGHUP, then SIGKILL, to the tree
//! ```
//!
//! A program that leaves a background process holding its stdout
//! (`sh -c 'daemon &'`) does not hold the session: the pipes get
//! [`OUTPUT_GRACE`] after the exit to end, then the session's tree is ended
//! (which closes them) and `Exit` carries the program's status. Only
//! waiting on the *pipes* is bounded: output already read is delivered
//! however slowly the client reads it, so nothing the program wrote before
//! it exited is lost to a slow link.
//!
//! Frames from the client are read in order, so a `Signal` queued behind
//! stdin data the program is not reading waits for that data: ordering is
//! what makes `Eof` after the last byte safe.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use proto::{Accepted, Channel, Eof, Frame, Identity};
use relay_net::framed::{send_data, send_frames, write_frame, FrameReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::session::tree::{self, Tree};
use crate::session::{self, SessionSummary, Sessions};

/// After the program exits, how long its pipes get to end before what it
/// left running is ended: output written just before the exit arrives
/// within milliseconds, and a background process that keeps a pipe open
/// must not hold the session forever.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// After the session's processes are ended, how long a pipe may stay
/// silent before it is cut off: it closes when its last holder dies, but
/// one that escaped the tree may hold it for good.
const PIPES_CLOSE: Duration = Duration::from_millis(200);

/// Runs `argv` for `caller` and serves the stream until the program has
/// ended and its output is delivered (or the client is gone).
pub async fn run(
    sessions: &Sessions,
    caller: &Identity,
    argv: &[String],
    mut send: quinn::SendStream,
    mut reader: FrameReader,
) -> SessionSummary {
    let started = Instant::now();
    let (program, args) = match argv.split_first() {
        Some(split) => split,
        // Decoding guarantees at least one element.
        None => (&String::new(), &[][..]),
    };
    let mut cmd = sessions.command(program, caller, None);
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let spawned = cmd.spawn();
    // From here on, every way out of this function ends the program's tree.
    let mut tree = Tree::new(spawned.as_ref().ok().and_then(tokio::process::Child::id));
    if write_frame(&mut send, Accepted).await.is_err() {
        return SessionSummary::client_gone();
    }
    let (tx, rx) = mpsc::channel::<Frame>(16);
    let writer = tokio::spawn(send_frames(send, rx));
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            // As a shell would: a message on stderr and 127 (not found) or
            // 126 (found but not runnable), so scripts can tell.
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            let msg = format!("relay-agent: cannot run {program}: {e}\n");
            send_data(&tx, Channel::Stderr, msg.into()).await;
            let _ = tx.send(proto::Exit::Code(code).into()).await;
            drop(tx);
            let bytes_out = writer.await.ok().and_then(Result::ok);
            return SessionSummary {
                exit: Some(proto::Exit::Code(code)),
                bytes_in: 0,
                bytes_out,
                client_gone: bytes_out.is_none(),
            };
        }
    };
    let pid = child.id();
    let (ended_tx, ended) = watch::channel(false);
    let mut pipes_done = Vec::new();
    let mut pumps = Vec::new();
    let outputs = [
        (child.stdout.take().map(Pipe::Out), Channel::Stdout),
        (child.stderr.take().map(Pipe::Err), Channel::Stderr),
    ];
    for (pipe, channel) in outputs {
        if let Some(pipe) = pipe {
            let (done, done_rx) = oneshot::channel();
            pipes_done.push(done_rx);
            pumps.push(tokio::spawn(pump(
                pipe,
                channel,
                tx.clone(),
                done,
                ended.clone(),
            )));
        }
    }
    let mut stdin = child.stdin.take();
    let mut bytes_in = 0u64;
    let input = async {
        loop {
            match reader.read().await {
                Ok(Some(Frame::Data(d))) if d.channel == Channel::Stdin => {
                    if let Some(pipe) = stdin.as_mut() {
                        if pipe.write_all(&d.bytes).await.is_err() {
                            // The program closed its stdin: the rest is discarded.
                            stdin = None;
                        } else {
                            bytes_in += d.bytes.len() as u64;
                        }
                    }
                }
                Ok(Some(Frame::Eof(e))) if e.channel == Channel::Stdin => stdin = None,
                Ok(Some(Frame::Signal(s))) => session::deliver(pid, &s),
                Ok(Some(Frame::Resize(_))) => {}
                Ok(Some(other)) => {
                    tracing::warn!(frame = %other.frame_type(), "unexpected frame in a session");
                    return;
                }
                // A finish before our Exit, a reset, or a lost connection:
                // nobody is listening any more.
                Ok(None) | Err(_) => return,
            }
        }
    };
    let client_gone = tokio::select! {
        () = tree::exited(&mut child) => false,
        () = input => {
            session::hang_up(&mut child, &mut tree).await;
            true
        }
    };
    // Output written just before the exit is still in the pipes: wait for
    // their end, for a bounded time (a slow client only delays this).
    let _ = tokio::time::timeout(OUTPUT_GRACE, async {
        for done in pipes_done {
            let _ = done.await;
        }
    })
    .await;
    tree.end(tree::TREE_GRACE).await;
    // The pipes close now that their holders are gone; one that stays
    // silent for PIPES_CLOSE (held by a process that escaped) is cut off.
    let _ = ended_tx.send(true);
    for pump in pumps {
        let _ = pump.await;
    }
    let status = child.wait().await.ok();
    let exit = status.map(session::exit_of);
    if let Some(exit) = exit {
        let _ = tx.send(exit.into()).await;
    }
    drop(tx);
    let bytes_out = writer.await.ok().and_then(Result::ok);
    tracing::debug!(elapsed = ?started.elapsed(), "exec ended");
    SessionSummary {
        exit,
        bytes_in,
        bytes_out,
        client_gone: client_gone || bytes_out.is_none(),
    }
}

/// One of the program's output pipes.
enum Pipe {
    Out(tokio::process::ChildStdout),
    Err(tokio::process::ChildStderr),
}

impl Pipe {
    /// # Cancel safety
    /// Cancel safe, as the pipes' `read_buf` is.
    async fn read(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Pipe::Out(out) => out.read_buf(buf).await,
            Pipe::Err(err) => err.read_buf(buf).await,
        }
    }
}

/// Sends one output pipe as `Data` frames, then `Eof`; says `done` when the
/// pipe has ended (before its last data is delivered). Once `ended` (the
/// session's processes are gone), a pipe silent for [`PIPES_CLOSE`] is cut
/// off. Time spent waiting for the client never counts.
async fn pump(
    mut pipe: Pipe,
    channel: Channel,
    tx: mpsc::Sender<Frame>,
    done: oneshot::Sender<()>,
    mut ended: watch::Receiver<bool>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        buf.reserve(64 * 1024);
        let read = tokio::select! {
            read = pipe.read(&mut buf) => read,
            () = silence_after(&mut ended) => {
                tracing::debug!(%channel, "output still open after the session's processes ended: cut off");
                return;
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if !send_data(&tx, channel, buf.split().freeze()).await {
                    return;
                }
            }
        }
    }
    let _ = done.send(());
    let _ = tx.send(Eof { channel }.into()).await;
}

/// Resolves [`PIPES_CLOSE`] after `ended` turns true (or its sender is gone).
async fn silence_after(ended: &mut watch::Receiver<bool>) {
    let _ = ended.wait_for(|ended| *ended).await;
    tokio::time::sleep(PIPES_CLOSE).await;
}
