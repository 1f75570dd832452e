//! Command-line surface: argument types and dispatch. Each command lives in its own module
//! and returns an [`ExitCode`]; errors are printed once, here, with their causes.

mod plugins;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Moves rows between databases and keeps a durable, hash-chained journal of everything it does.
#[derive(Debug, Parser)]
#[command(name = "caudal", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the connector plugins found on the search path.
    Plugins(plugins::PluginsArgs),
}

/// Runs one parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Plugins(args) => plugins::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
