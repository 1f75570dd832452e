//! The `caudal` command line: a thin layer that parses arguments and calls into the library.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc for the whole process, the plugins' C and C++ included. Its `malloc` family is
/// defined unprefixed in the executable, and the linker exports what the shared libraries of
/// the link (libc) refer to: every library, and every plugin loaded later, binds to it
/// (`tests/allocator.rs`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = caudal::cli::Cli::parse();
    caudal::cli::run(cli)
}
