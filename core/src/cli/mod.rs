//! Command-line surface: argument types and dispatch. Each command lives in its own module and
//! returns an [`ExitCode`]; errors are printed once, here, with their causes.
//!
//! Exit status: 0 success, 1 a failure or a check that did not pass (damage, mismatch, failed
//! run), 2 a usage or configuration error.

mod bench;
mod journal;
mod location;
mod plugins;
mod when;

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
    /// Read a journal: inspect, tail, stats, verify.
    Journal(journal::JournalArgs),
    /// List the connector plugins found on the search path.
    Plugins(plugins::PluginsArgs),
    /// Measure throughput on this machine against its limits.
    Bench(bench::BenchArgs),
}

/// Runs one parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Journal(args) => journal::run(args),
        Command::Plugins(args) => plugins::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
