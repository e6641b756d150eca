//! `relay-client run AGENT -- CMD ARGS…`: one command on the agent, no
//! terminal. stdin, stdout and stderr stay separate and byte-exact, so it
//! works in a pipeline; SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded;
//! the remote exit status becomes ours.

use proto::{AgentName, StreamKind};
use tokio::signal::unix::{signal, SignalKind};

use crate::program::{feed_stdin, ProgramOutcome};
use crate::{Client, OpenError};

/// After this many SIGINTs the client stops waiting for a program that
/// ignores them: it hangs up (the agent sends SIGHUP, then SIGKILL).
const GIVE_UP_AFTER: usize = 3;

/// Runs `argv` on `agent`; returns how its stream ended.
///
/// # Errors
/// If the session cannot be opened (refused, relay unreachable).
pub async fn run(
    client: &Client,
    agent: &AgentName,
    argv: Vec<String>,
) -> Result<ProgramOutcome, OpenError> {
    let mut program = client
        .open_program(agent, StreamKind::Exec { argv })
        .await?;
    let stdin = tokio::spawn(feed_stdin(tokio::io::stdin(), program.tx.clone()));
    let (signals, mut given_up) =
        forward_signals(program.tx.clone()).map_err(|err| OpenError::Local {
            what: "signal handling",
            err,
        })?;
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let outcome = tokio::select! {
        outcome = program.output(&mut stdout, &mut stderr) => outcome,
        _ = given_up.recv() => ProgramOutcome::Exit(proto::Exit::Signal(proto::Signal::INT)),
    };
    program.close(&outcome, &[stdin, signals]).await;
    Ok(outcome)
}

/// Forwards our signals as `Signal` frames. The receiver yields once the
/// user has pressed Ctrl-C [`GIVE_UP_AFTER`] times.
fn forward_signals(
    tx: tokio::sync::mpsc::Sender<proto::Frame>,
) -> std::io::Result<(tokio::task::JoinHandle<()>, tokio::sync::mpsc::Receiver<()>)> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut quit = signal(SignalKind::quit())?;
    let (give_up, given_up) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(async move {
        let mut ints = 0;
        loop {
            let number = tokio::select! {
                _ = int.recv() => {
                    ints += 1;
                    if ints >= GIVE_UP_AFTER {
                        eprintln!("relay-client: interrupted {ints} times; hanging up");
                        let _ = give_up.send(()).await;
                        return;
                    }
                    proto::Signal::INT
                }
                _ = term.recv() => proto::Signal::TERM,
                _ = hup.recv() => proto::Signal::HUP,
                _ = quit.recv() => proto::Signal::QUIT,
            };
            if tx
                .send(proto::Signal { signal: number }.into())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Ok((task, given_up))
}
