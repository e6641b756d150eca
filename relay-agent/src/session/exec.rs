//! `Exec` sessions: one command, no PTY, stdin/stdout/stderr kept apart,
//! run in its own process group so a forwarded signal reaches everything
//! it started.
//!
//! ```text
//! client frames ─▶ Data(stdin) → child stdin, Eof(stdin) → close it,
//!                  Signal → the process group, Resize → ignored
//! child stdout/stderr ─▶ Data(stdout|stderr) … Eof(stdout|stderr)
//! child exit (after both pipes end) ─▶ Exit, finish
//! client gone (finish/reset before Exit) ─▶ SIGHUP, then SIGKILL
//! ```
//!
//! Frames from the client are read in order, so a `Signal` queued behind
//! stdin data the program is not reading waits for that data: ordering is
//! what makes `Eof` after the last byte safe.

use std::time::Instant;

use bytes::BytesMut;
use proto::{Accepted, Channel, Eof, Frame, Identity};
use relay_net::framed::{send_data, send_frames, write_frame, FrameReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::session::{self, SessionSummary, Sessions};

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
    let stdout = child
        .stdout
        .take()
        .map(|out| tokio::spawn(pump(out, Channel::Stdout, tx.clone())));
    let stderr = child
        .stderr
        .take()
        .map(|err| tokio::spawn(pump(err, Channel::Stderr, tx.clone())));
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
    let (status, client_gone) = tokio::select! {
        status = child.wait() => (status.ok(), false),
        () = input => (session::hang_up(&mut child).await, true),
    };
    for pump in [stdout, stderr].into_iter().flatten() {
        let _ = pump.await;
    }
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

/// Sends one output pipe as `Data` frames, then `Eof`.
async fn pump(mut pipe: impl AsyncRead + Unpin, channel: Channel, tx: mpsc::Sender<Frame>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        buf.reserve(64 * 1024);
        match pipe.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if !send_data(&tx, channel, buf.split().freeze()).await {
                    return;
                }
            }
        }
    }
    let _ = tx.send(Eof { channel }.into()).await;
}
