//! Command-line surface: argument types and dispatch. Each command lives in its own module and
//! returns an [`ExitCode`]; errors are printed once, here, with their causes.
//!
//! Exit status: 0 success, 1 a failure or a check that did not pass (damage, mismatch, failed
//! run), 2 a usage or configuration error.

/// `println!` that never panics: once standard output is closed (`caudal run p.toml | head`),
/// lines go nowhere and the command still finishes its work and exits with its own status.
/// Another failure to write (a full disk under a redirect) is said once on stderr.
macro_rules! outln {
    () => {
        $crate::cli::print_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::print_line(format_args!($($arg)*))
    };
}

mod bench;
mod check;
mod failures;
mod gaps;
mod history;
mod journal;
mod location;
mod plugins;
mod project;
mod replay;
mod retry;
mod run;
mod status;
mod validate;
mod verify;
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
    /// Run a pipeline: read each stream, journal every batch, write it to every destination.
    Run(run::RunArgs),
    /// Check a pipeline file, and that each connector exists as a plugin.
    Validate(validate::ValidateArgs),
    /// Connect to every connection of a pipeline and list its tables.
    Check(check::CheckArgs),
    /// Where each stream and destination stands, from the journal.
    Status(status::StatusArgs),
    /// Past runs, newest first, with failed and retried writes.
    History(history::HistoryArgs),
    /// Writes that failed and are not applied yet.
    Failures(failures::FailuresArgs),
    /// Write failed batches again now, from the journal.
    Retry(retry::RetryArgs),
    /// Per partition of a stream: last loaded day, days behind, missing days inside its range.
    Gaps(gaps::GapsArgs),
    /// Write journaled batches into a destination (fresh or existing).
    Replay(replay::ReplayArgs),
    /// Read a journal: inspect, tail, stats, verify.
    Journal(journal::JournalArgs),
    /// List the connector plugins found on the search path.
    Plugins(plugins::PluginsArgs),
    /// Measure throughput on this machine against its limits.
    Bench(bench::BenchArgs),
    /// Compare destination tables with the journal; name (and repair) the rows that differ.
    Verify(verify::VerifyArgs),
    /// Build a destination from the journal alone (`project redis`: the cache).
    Project(project::ProjectArgs),
}

impl Command {
    /// Whether the command only reads local files (the pipeline file, the journal, the plugin
    /// folder) and prints: it talks to no server, and writes nothing but the projections'
    /// checkpoints, each whole or not at all (a temporary file, then a rename).
    fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Validate(_)
                | Command::Status(_)
                | Command::History(_)
                | Command::Failures(_)
                | Command::Gaps(_)
                | Command::Journal(_)
                | Command::Plugins(_)
        )
    }
}

/// Lets a closed standard output end the process, as it ends `cat`: `caudal journal inspect |
/// head` stops when `head` has its lines, with no error and no panic. Rust starts with SIGPIPE
/// ignored; this puts back its default action. Only for commands that just print: a command
/// that writes anywhere keeps SIGPIPE ignored, so that a closed pipe is an error it handles
/// and never a kill in the middle of a write.
fn end_quietly_when_stdout_closes() {
    // SAFETY: called on the main thread before any other thread starts; `signal` with
    // SIG_DFL installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The body of [`outln!`].
pub(crate) fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    static SAID: AtomicBool = AtomicBool::new(false);
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
        && !SAID.swap(true, Ordering::Relaxed)
    {
        eprintln!("warning: could not write to standard output: {e}");
    }
}

/// Runs one parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    if cli.command.only_prints() {
        end_quietly_when_stdout_closes();
    }
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Check(args) => check::run(args),
        Command::Status(args) => status::run(args),
        Command::History(args) => history::run(args),
        Command::Failures(args) => failures::run(args),
        Command::Retry(args) => retry::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Gaps(args) => gaps::run(args),
        Command::Journal(args) => journal::run(args),
        Command::Plugins(args) => plugins::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Project(args) => project::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
