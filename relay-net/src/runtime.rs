//! The tokio runtime of each program.
//!
//! Multi-threaded by default. `RELAY_RUNTIME=current` runs the process on
//! one thread (a current-thread runtime): less CPU per byte where processes
//! share few cores (no cross-thread wake-ups, notes/quinn.md row 8), at the
//! price of one core per process. docs/PERFORMANCE.md says what it gave.

/// Builds the runtime chosen by `RELAY_RUNTIME` (`multi`, the default, or `current`).
///
/// # Errors
/// If the runtime cannot be created (out of threads or file descriptors).
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    match std::env::var("RELAY_RUNTIME").as_deref() {
        Ok("current") => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Runtime::new(),
    }
}
