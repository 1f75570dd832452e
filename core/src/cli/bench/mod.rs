//! `caudal bench ...`: throughput figures measured on this machine, each printed next to the
//! limit it is bounded by (measured in the same run), so a figure reads as a ratio.

mod journal;

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// `caudal bench ...`
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Journal appends under each durability policy, verify speed, and this machine's limits.
    Journal(journal::JournalBenchArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BenchCommand::Journal(a) => journal::run(a),
    }
}
