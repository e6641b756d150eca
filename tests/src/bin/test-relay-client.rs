//! `relay-client`, built for the test harness (cargo exposes only a package's
//! own binaries to its tests).

fn main() -> std::process::ExitCode {
    relay_client::cli::main()
}
