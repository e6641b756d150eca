//! The tokio runtime of each program.
//!
//! `RELAY_RUNTIME=current` runs a process on one thread (a current-thread
//! runtime), `RELAY_RUNTIME=multi` on one thread per core. The agent and the
//! client default to `current`: each drives one QUIC connection, whose
//! endpoint is a single task anyway (quinn-rs/quinn#1576), and on a quiet
//! 2-core machine `bench --local` gave 15–35 % more throughput, 15–25 % less
//! CPU per GiB and a third less ping-pong latency than `multi` (no
//! cross-thread wake-ups, notes/quinn.md row 8; docs/PERFORMANCE.md). The
//! relay defaults to `multi`: it serves many connections and splices.

/// Which runtime a program uses unless `RELAY_RUNTIME` says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// One thread.
    Current,
    /// One thread per core.
    Multi,
}

/// Builds the runtime chosen by `RELAY_RUNTIME` (`current` or `multi`),
/// else `default`.
///
/// # Errors
/// If the runtime cannot be created (out of threads or file descriptors).
pub fn build(default: Flavor) -> std::io::Result<tokio::runtime::Runtime> {
    let flavor = match std::env::var("RELAY_RUNTIME").as_deref() {
        Ok("current") => Flavor::Current,
        Ok("multi") => Flavor::Multi,
        _ => default,
    };
    match flavor {
        Flavor::Current => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Flavor::Multi => tokio::runtime::Runtime::new(),
    }
}
