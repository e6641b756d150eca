//! `relay-client shell AGENT [-- CMD ARGS…]`: an interactive terminal on
//! the agent. Our terminal goes to raw mode (every key, Ctrl-C included,
//! goes to the remote program) and is restored on every way out: normal
//! exit, relay or agent loss, SIGTERM/SIGHUP, and panics (a hook). The
//! window size is sent at start and on every SIGWINCH; `TERM` is passed
//! through; the remote exit status becomes ours.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use proto::{AgentName, Resize, StreamKind};
use rustix::termios::{self, OptionalActions, Termios};
use tokio::signal::unix::{signal, SignalKind};

use crate::program::{feed_stdin, ProgramOutcome};
use crate::{Client, OpenError, StreamError};

/// Keeps our terminal in raw mode while alive; restores the saved settings
/// when dropped, and from a panic hook should we panic in between.
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin's terminal in raw mode; `None` if stdin is not a terminal.
    ///
    /// # Errors
    /// If the terminal settings cannot be read or changed.
    pub fn enter() -> std::io::Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        let restore = saved.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &restore);
            previous(info);
        }));
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}

/// Our terminal's size (columns, rows), from stdout or stdin; 80×24 if
/// neither is a terminal.
pub fn window_size() -> (u16, u16) {
    let size = termios::tcgetwinsize(std::io::stdout().as_fd())
        .or_else(|_| termios::tcgetwinsize(std::io::stdin().as_fd()));
    match size {
        Ok(ws) if ws.ws_col > 0 && ws.ws_row > 0 => (ws.ws_col, ws.ws_row),
        _ => (80, 24),
    }
}

/// Our `TERM`, if it is one the protocol can carry.
fn term() -> String {
    let term = std::env::var("TERM").unwrap_or_default();
    let valid =
        term.len() <= StreamKind::MAX_TERM_LEN && term.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        term
    } else {
        String::new()
    }
}

/// Runs an interactive session on `agent` (its shell, or `argv` on a
/// terminal); returns how it ended. The terminal is restored before this
/// returns, whatever happened.
///
/// # Errors
/// If the session cannot be opened, or the terminal cannot be set up.
pub async fn run(
    client: &Client,
    agent: &AgentName,
    argv: Vec<String>,
) -> Result<ProgramOutcome, OpenError> {
    let (cols, rows) = window_size();
    let kind = StreamKind::Shell {
        term: term(),
        cols,
        rows,
        argv,
    };
    let mut program = client.open_program(agent, kind).await?;
    let local = |err: std::io::Error| OpenError::Local {
        what: "the terminal",
        err,
    };
    let mut winch = signal(SignalKind::window_change()).map_err(local)?;
    let mut term_sig = signal(SignalKind::terminate()).map_err(local)?;
    let mut hup = signal(SignalKind::hangup()).map_err(local)?;
    let mut int = signal(SignalKind::interrupt()).map_err(local)?;
    let raw = RawMode::enter().map_err(local)?;
    let stdin = tokio::spawn(feed_stdin(tokio::io::stdin(), program.tx.clone()));
    let resizes = {
        let tx = program.tx.clone();
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                let (cols, rows) = window_size();
                if tx.send(Resize { cols, rows }.into()).await.is_err() {
                    return;
                }
            }
        })
    };
    let interrupts = {
        // With the terminal raw, Ctrl-C is a byte; a SIGINT comes from
        // elsewhere (`kill -INT`) and is passed on like `run` does.
        let tx = program.tx.clone();
        tokio::spawn(async move {
            while int.recv().await.is_some() {
                let signal = proto::Signal {
                    signal: proto::Signal::INT,
                };
                if tx.send(signal.into()).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let outcome = tokio::select! {
        outcome = program.output(&mut stdout, &mut stderr) => outcome,
        _ = term_sig.recv() => ProgramOutcome::Lost(StreamError::hung_up("terminated (SIGTERM): session hung up")),
        _ = hup.recv() => ProgramOutcome::Lost(StreamError::hung_up("our terminal hung up (SIGHUP)")),
    };
    program.close(&outcome, &[stdin, resizes, interrupts]).await;
    drop(raw);
    Ok(outcome)
}
