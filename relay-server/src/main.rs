//! `relay-server`: see `relay_server::cli`.

fn main() -> std::process::ExitCode {
    relay_server::cli::main()
}
