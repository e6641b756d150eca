//! A `Shell` or `Exec` stream (only with `--allow-shell`): start the
//! session ([`crate::session`]) and log how it ended, the agent's half of
//! the audit (the relay records who, when and bytes; only the agent sees
//! the exit status).

use proto::{ErrorCode, Identity, Refused, StreamKind};
use relay_net::framed::FrameReader;

use crate::session::{exec, shell};
use crate::shared::Shared;

/// Serves a `Shell` or `Exec` open from `caller`.
pub async fn serve(
    shared: &Shared,
    caller: &Identity,
    kind: &StreamKind,
    mut send: quinn::SendStream,
    mut reader: FrameReader,
) {
    if !shared.sessions.allow {
        let r = Refused::new(
            ErrorCode::UNSUPPORTED,
            format!(
                "agent {} does not offer {kind} sessions (it runs without --allow-shell)",
                shared.me.name
            ),
        );
        return shared.refuse(&mut send, &mut reader.recv, r).await;
    }
    let started = std::time::Instant::now();
    let command = match kind.command_line() {
        c if c.is_empty() => "(login shell)".to_owned(),
        c => c,
    };
    // The two audit lines carry caller and kind themselves (not only in the
    // span), so each is a whole record in the JSON log too.
    tracing::info!(%caller, %kind, %command, "session started");
    let summary = match kind {
        StreamKind::Exec { argv } => exec::run(&shared.sessions, caller, argv, send, reader).await,
        StreamKind::Shell {
            term,
            cols,
            rows,
            argv,
        } => {
            let req = shell::Request {
                term,
                cols: *cols,
                rows: *rows,
                argv,
                agent: shared.me.name.as_str(),
            };
            shell::run(&shared.sessions, caller, req, send, reader).await
        }
        // Dispatched elsewhere by `stream::serve`.
        StreamKind::Tcp | StreamKind::Socks { .. } | StreamKind::Recording { .. } => return,
    };
    crate::audit::count(summary.bytes_in, summary.bytes_out.unwrap_or(0));
    let exit = summary
        .exit
        .map_or_else(|| "none".to_owned(), |e| e.to_string());
    tracing::info!(
        %caller,
        %kind,
        %command,
        %exit,
        bytes_in = summary.bytes_in,
        bytes_out = summary.bytes_out.unwrap_or(0),
        client_gone = summary.client_gone,
        duration_ms = started.elapsed().as_millis() as u64,
        "session ended"
    );
}
