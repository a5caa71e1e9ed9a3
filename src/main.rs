//! The `dualstack-webhook` binary: installs the TLS crypto provider, parses the command line, runs it.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // One provider for the whole process, before any TLS type is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    dualstack_webhook::commands::main(dualstack_webhook::config::Cli::parse())
}
