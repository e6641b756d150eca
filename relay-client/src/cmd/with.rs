//! `relay-client with AGENT/TARGET -- CMD ARGS…`: for CI jobs. Opens a
//! forward to AGENT/TARGET on a free port of 127.0.0.1, runs CMD with
//! `RELAY_FORWARD_ADDR` (`127.0.0.1:PORT`) and `RELAY_FORWARD_PORT` in its
//! environment and, when a kubeconfig is in play, `KUBECONFIG` pointing to
//! a temporary copy of the current context whose server is the forward and
//! whose TLS still verifies the API server's real name (`tls-server-name`).
//! CMD's exit status becomes ours; the forward and the temporary files go
//! away when CMD ends, also on SIGINT/SIGTERM/SIGHUP (passed on to CMD).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use rustix::process::{kill_process, Pid, Signal};
use tokio::signal::unix::{signal, SignalKind};

use crate::kube::{self, Route};
use crate::{AgentTarget, Client};

/// What `with` was asked to do.
#[derive(Debug)]
pub struct With {
    /// The target to forward to.
    pub dest: AgentTarget,
    /// The kubeconfig to rewrite (default: `KUBECONFIG`, `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current one).
    pub context: Option<String>,
    /// Leave `KUBECONFIG` alone.
    pub no_kubeconfig: bool,
    /// The program and its arguments.
    pub command: Vec<String>,
}

/// Runs it; returns CMD's exit status (128+N if killed by signal N), 127
/// if CMD cannot be started, 255 if the forward or kubeconfig fails.
pub async fn run(client: Arc<Client>, with: With) -> u8 {
    match run_inner(client.clone(), with).await {
        Ok(status) => status,
        Err(e) => {
            eprintln!("relay-client: {e:#}");
            client.close().await;
            255
        }
    }
}

async fn run_inner(client: Arc<Client>, with: With) -> anyhow::Result<u8> {
    let (program, args) = with
        .command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("give a command after --"))?;
    // Reach the relay and check the target first: a bad credential, an
    // agent offline or a target not granted fails here with the reason,
    // not as a connection reset inside CMD.
    super::reach::ensure_target(&client, &with.dest).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let forward = tokio::spawn(super::forward::run(
        client.clone(),
        listener,
        with.dest.clone(),
        shutdown.clone(),
    ));
    let temp = tempfile::Builder::new().prefix("relay-with-").tempdir()?;
    let mut env: Vec<(&str, OsString)> = vec![
        ("RELAY_FORWARD_ADDR", addr.to_string().into()),
        ("RELAY_FORWARD_PORT", addr.port().to_string().into()),
    ];
    let source = (!with.no_kubeconfig)
        .then(|| kube::source(with.kubeconfig.as_deref()))
        .flatten();
    if let Some(source) = source {
        let view = kube::view(&source, with.context.as_deref()).await?;
        let name = format!("relay-{}", with.dest.agent);
        let config = kube::rewrite(view, &Route::Forward(addr), &name)?;
        let path = temp.path().join("kubeconfig");
        kube::write(&path, &config)?;
        tracing::info!(kubeconfig = %path.display(), "temporary kubeconfig through the forward");
        env.push(("KUBECONFIG", path.into_os_string()));
    }
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        .envs(env)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("relay-client: cannot run {program}: {e}");
            shutdown.cancel();
            let _ = forward.await;
            client.close().await;
            return Ok(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let pid = child.id().and_then(|id| Pid::from_raw(id as i32));
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    // Ctrl-C on a terminal already reaches CMD (same foreground process
    // group); passing it on again would make it a double interrupt.
    let pass_int = !std::io::stdin().is_terminal();
    let status = loop {
        let sig = tokio::select! {
            status = child.wait() => break status?,
            _ = int.recv() => if pass_int { Some(Signal::INT) } else { None },
            _ = term.recv() => Some(Signal::TERM),
            _ = hup.recv() => Some(Signal::HUP),
        };
        if let (Some(sig), Some(pid)) = (sig, pid) {
            let _ = kill_process(pid, sig);
        }
    };
    shutdown.cancel();
    if let Ok(Err(e)) = forward.await {
        // CMD saw its connections refused from then on; this is why.
        eprintln!("relay-client: the forward stopped while {program} ran: {e}");
    }
    client.close().await;
    drop(temp);
    Ok(exit_status(status))
}

/// The shell convention: the exit code, or 128+N for a signal N.
fn exit_status(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(255),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
        (None, None) => 255,
    }
}
