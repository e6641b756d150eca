//! Logging set-up shared by the three programs: `RUST_LOG` filters, human
//! lines on stderr by default, JSON lines with `--log-format json`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `default` is the filter used when
/// `RUST_LOG` is unset (e.g. `"info"`). Calling it twice is harmless.
///
/// A log line that cannot be written (stderr piped into `head`, which has
/// exited) is dropped: tracing-subscriber would report it with `eprintln!`,
/// which panics on that same closed stderr, in whichever task was logging
/// (the signal task, say, so SIGTERM no longer ended the program).
pub fn init(default: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
