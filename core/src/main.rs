//! The `caudal` command line: a thin layer that parses arguments and calls into the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = caudal::cli::Cli::parse();
    caudal::cli::run(cli)
}
