//! The tokio runtime of each program.
//!
//! `RELAY_RUNTIME=current` runs a process on one thread (a current-thread
//! runtime), `multi` on one thread per core, `auto` as below. The agent and
//! the client default to `current`: each drives one QUIC connection, whose
//! endpoint is a single task anyway (quinn-rs/quinn#1576), so a second
//! thread only adds cross-thread wake-ups. The relay defaults to `auto`:
//! `current` on machines with one or two cores (the second core is busy
//! with the kernel's UDP work), `multi` on bigger ones, where many
//! connections decrypt in parallel. The measurements behind both choices
//! are in docs/PERFORMANCE.md ("runtime per process", "relay runtime").

/// Which runtime a program uses unless `RELAY_RUNTIME` says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// One thread.
    Current,
    /// One thread per core.
    Multi,
    /// `Current` on a machine with at most two cores, else `Multi`.
    Auto,
}

/// Builds the runtime chosen by `RELAY_RUNTIME` (`current`, `multi` or
/// `auto`), else `default`.
///
/// # Errors
/// If `RELAY_RUNTIME` names no runtime (a typo must not silently fall back),
/// or the runtime cannot be created (out of threads or file descriptors).
pub fn build(default: Flavor) -> std::io::Result<tokio::runtime::Runtime> {
    let flavor = match std::env::var("RELAY_RUNTIME") {
        Err(_) => default,
        Ok(v) => match v.as_str() {
            "current" => Flavor::Current,
            "multi" => Flavor::Multi,
            "auto" => Flavor::Auto,
            other => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("RELAY_RUNTIME={other:?}: use current, multi or auto"),
                ))
            }
        },
    };
    let multi = match flavor {
        Flavor::Current => false,
        Flavor::Multi => true,
        Flavor::Auto => std::thread::available_parallelism().is_ok_and(|n| n.get() > 2),
    };
    if multi {
        tokio::runtime::Runtime::new()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
}
