//! The `certdock` binary: installs the one crypto provider, then hands over to the CLI.

use std::process::ExitCode;

fn main() -> ExitCode {
    // ring only: two enabled providers make rustls panic at runtime.
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("certdock: a rustls crypto provider was already installed");
        return ExitCode::FAILURE;
    }
    certdock::cli::main()
}
