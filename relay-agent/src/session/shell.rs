//! `Shell` sessions: the agent's shell (or a given program) on a fresh PTY,
//! as the session leader of its own session with the PTY as its
//! controlling terminal, recorded in asciicast v2 when `--record-dir` is set.
//!
//! ```text
//! client frames ─▶ Data(stdin) → PTY (Ctrl-C is a byte: the line discipline
//!                  turns it into SIGINT for the foreground job),
//!                  Resize → PTY size (+ "r" event), Signal → the session
//! PTY output ─▶ "o" event, then Data(stdout) … program exit ─▶ output
//!               drained (up to DRAIN), the session's tree ended, Exit, finish
//! client gone ─▶ SIGHUP (a terminal hang-up), then SIGKILL, to the tree
//! recording fails ─▶ SIGKILL to the tree, a message, Exit(255)
//! ```
//!
//! Output is recorded **before** it is sent: with a required recording, a
//! chunk that cannot be recorded never reaches the client, and the session
//! ends at once with every process it started (`session::tree`), so no
//! keystroke reaches an unrecorded session.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use proto::{Accepted, Channel, ErrorCode, Frame, Identity, Refused};
use relay_net::framed::{refuse, send_data, send_frames, write_frame, FrameReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::session::record::{Header, RecordError, Recorder};
use crate::session::tree::{self, Tree};
use crate::session::{self, SessionSummary, Sessions};

/// `TERM` when the client sends none.
pub const DEFAULT_TERM: &str = "xterm-256color";

/// After the program exits, how long output still coming from the PTY
/// (written by the program just before it ended) is awaited; a background
/// job that keeps the terminal open does not hold the session (it is ended
/// with the session's tree).
const DRAIN: Duration = Duration::from_secs(1);

/// The exit status a session ended for a failed recording reports, as the
/// client's own failures do.
const RECORDING_FAILED: i32 = 255;

/// The terminal's end-of-input character (VEOF, Ctrl-D).
const CTRL_D: u8 = 0x04;

/// What the `Shell` open asked for.
#[derive(Debug)]
pub struct Request<'a> {
    /// `TERM`, empty for [`DEFAULT_TERM`].
    pub term: &'a str,
    /// Width.
    pub cols: u16,
    /// Height.
    pub rows: u16,
    /// A program instead of the shell; empty for a login shell.
    pub argv: &'a [String],
    /// The agent's name, for the recording's title.
    pub agent: &'a str,
}

type SharedRecorder = Arc<Mutex<Option<Recorder>>>;

/// Starts the session and serves the stream until the program has ended
/// (or the client is gone). Refused before `Accepted` if the PTY or the
/// program cannot be started, or the recording cannot be created and
/// recording is required.
pub async fn run(
    sessions: &Sessions,
    caller: &Identity,
    req: Request<'_>,
    mut send: quinn::SendStream,
    mut reader: FrameReader,
) -> SessionSummary {
    let refused = |code, message: String| Refused::new(code, message);
    let term = if req.term.is_empty() {
        DEFAULT_TERM
    } else {
        req.term
    };
    let shell = sessions.shell.display().to_string();
    let program = req.argv.first().map_or(shell.as_str(), String::as_str);
    let gone = SessionSummary::client_gone();
    let recorder = match &sessions.record_dir {
        None => None,
        Some(dir) => {
            let header = Header {
                cols: req.cols,
                rows: req.rows,
                term,
                shell: program,
                title: format!("{caller} on {}", req.agent),
            };
            match Recorder::create(dir, &caller.to_string(), &header) {
                Ok(rec) => {
                    tracing::info!(file = %rec.path().display(), "recording session");
                    Some(rec)
                }
                Err(e) if sessions.record_fail_open => {
                    tracing::error!(err = %e, "session not recorded (--record-fail-open)");
                    None
                }
                Err(e) => {
                    tracing::error!(err = %e, "session refused: recording is required");
                    let r = refused(
                        ErrorCode::INTERNAL,
                        format!("agent cannot record the session, so it refuses it: {e}"),
                    );
                    refuse(&mut send, &mut reader.recv, r).await;
                    return gone;
                }
            }
        }
    };
    let started = match spawn(sessions, caller, term, &req, program) {
        Ok(started) => started,
        Err(e) => {
            let r = refused(
                ErrorCode::INTERNAL,
                format!("agent cannot start {program} on a terminal: {e}"),
            );
            refuse(&mut send, &mut reader.recv, r).await;
            return gone;
        }
    };
    let (pty, mut child) = started;
    let pid = child.id();
    // From here on, every way out of this function ends the session's tree.
    let mut tree = Tree::new(pid);
    if write_frame(&mut send, Accepted).await.is_err() {
        let _ = session::hang_up(&mut child, &mut tree).await;
        return gone;
    }
    let recorder: SharedRecorder = Arc::new(Mutex::new(recorder));
    let fail_open = sessions.record_fail_open;
    let (tx, rx) = mpsc::channel::<Frame>(16);
    let writer = tokio::spawn(send_frames(send, rx));
    let (pty_read, mut pty_write) = pty.into_split();
    let (failed_tx, mut failed) = tokio::sync::oneshot::channel();
    let output = tokio::spawn(pump(
        pty_read,
        tx.clone(),
        recorder.clone(),
        fail_open,
        failed_tx,
    ));
    let mut bytes_in = 0u64;
    // Ends with `Some` when recording a resize failed (and must not).
    let input = async {
        loop {
            match reader.read().await {
                Ok(Some(Frame::Data(d))) if d.channel == Channel::Stdin => {
                    if pty_write.write_all(&d.bytes).await.is_ok() {
                        bytes_in += d.bytes.len() as u64;
                    }
                }
                Ok(Some(Frame::Resize(r))) => {
                    let _ = pty_write.resize(pty_process::Size::new(r.rows, r.cols));
                    let failure = {
                        let mut rec = lock(&recorder);
                        let failure = rec
                            .as_mut()
                            .and_then(|rec| rec.resize(r.cols, r.rows).err());
                        if failure.is_some() && fail_open {
                            *rec = None;
                        }
                        failure
                    };
                    if let Some(e) = failure {
                        if !fail_open {
                            return Some(e);
                        }
                        tracing::error!(err = %e, "session recording failed (--record-fail-open)");
                    }
                }
                Ok(Some(Frame::Signal(s))) => session::deliver(pid, &s),
                // The client's stdin ended (piped input): what a person
                // types for that, Ctrl-D, so `cat` or a shell reading the
                // terminal sees end of input and the session can end.
                Ok(Some(Frame::Eof(e))) if e.channel == Channel::Stdin => {
                    let _ = pty_write.write_all(&[CTRL_D]).await;
                }
                Ok(Some(Frame::Eof(_))) => {}
                Ok(Some(other)) => {
                    tracing::warn!(frame = %other.frame_type(), "unexpected frame in a session");
                    return None;
                }
                Ok(None) | Err(_) => return None,
            }
        }
    };
    let mut record_failed = None;
    let client_gone = tokio::select! {
        () = tree::exited(&mut child) => false,
        Ok(e) = &mut failed => {
            record_failed = Some(e);
            false
        }
        gone = input => match gone {
            Some(e) => {
                record_failed = Some(e);
                false
            }
            None => {
                session::hang_up(&mut child, &mut tree).await;
                true
            }
        },
    };
    // The PTY reports EOF (EIO) once every process holding it is gone.
    let abort = output.abort_handle();
    if record_failed.is_none() {
        if tokio::time::timeout(DRAIN, output).await.is_err() {
            abort.abort();
        }
        // Output drained meanwhile may have failed to record.
        record_failed = failed.try_recv().ok();
    }
    match &record_failed {
        // Fail closed: nothing of the session may go on unrecorded.
        Some(_) => {
            abort.abort();
            tree.kill();
        }
        None => tree.end(tree::TREE_GRACE).await,
    }
    let status = child.wait().await.ok();
    if let Some(rec) = lock(&recorder).as_mut() {
        if let Err(e) = rec.finish() {
            tracing::error!(err = %e, "session recording incomplete");
        }
    }
    let exit = match record_failed {
        Some(e) => {
            tracing::error!(err = %e, "session recording failed: session ended");
            let msg = format!(
                "\r\nrelay-agent: {e}; the session is ended and its processes are killed \
                 (recording is required)\r\n"
            );
            send_data(&tx, Channel::Stdout, msg.into()).await;
            Some(proto::Exit::Code(RECORDING_FAILED))
        }
        None => status.map(session::exit_of),
    };
    if let Some(exit) = exit {
        let _ = tx.send(exit.into()).await;
    }
    drop(tx);
    let bytes_out = writer.await.ok().and_then(Result::ok);
    SessionSummary {
        exit,
        bytes_in,
        bytes_out,
        client_gone: client_gone || bytes_out.is_none(),
    }
}

fn lock(rec: &SharedRecorder) -> std::sync::MutexGuard<'_, Option<Recorder>> {
    rec.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn spawn(
    sessions: &Sessions,
    caller: &Identity,
    term: &str,
    req: &Request<'_>,
    program: &str,
) -> Result<(pty_process::Pty, tokio::process::Child), pty_process::Error> {
    let (pty, pts) = pty_process::open()?;
    pty.resize(pty_process::Size::new(req.rows, req.cols))?;
    let mut cmd = sessions.command(program, caller, Some(term));
    match req.argv.split_first() {
        Some((_, args)) => {
            cmd.args(args);
        }
        None => {
            // A login shell, as sshd starts it: argv[0] "-bash" reads the
            // profile files, so PATH and prompt are the user's usual ones.
            let name = sessions
                .shell
                .file_name()
                .map_or_else(|| "sh".into(), |n| n.to_string_lossy().into_owned());
            cmd.arg0(format!("-{name}"));
        }
    }
    let child = pty_process::Command::from(cmd).spawn(pts)?;
    Ok((pty, child))
}

/// Records the PTY's output, then sends it as `Data(stdout)` frames. When
/// a required recording fails, the chunk is not sent, the error goes to
/// `failed` and the pump stops (the session is ended by [`run`]).
async fn pump(
    mut pty: pty_process::OwnedReadPty,
    tx: mpsc::Sender<Frame>,
    recorder: SharedRecorder,
    fail_open: bool,
    failed: tokio::sync::oneshot::Sender<RecordError>,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        buf.reserve(16 * 1024);
        match pty.read_buf(&mut buf).await {
            // EIO: the last process holding the terminal is gone.
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let chunk = buf.split().freeze();
                let failure = {
                    let mut rec = lock(&recorder);
                    let failure = rec.as_mut().and_then(|r| r.output(&chunk).err());
                    if failure.is_some() && fail_open {
                        *rec = None;
                    }
                    failure
                };
                if let Some(e) = failure {
                    if !fail_open {
                        let _ = failed.send(e);
                        return;
                    }
                    tracing::error!(err = %e, "session recording failed (--record-fail-open)");
                }
                if !send_data(&tx, Channel::Stdout, chunk).await {
                    return;
                }
            }
        }
    }
}
