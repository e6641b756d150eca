//! `relay-client`: see `relay_client::cli`.

fn main() -> std::process::ExitCode {
    relay_client::cli::main()
}
