//! `caudal bench ...`: throughput figures measured on this machine, each printed next to the
//! limit it is bounded by (measured in the same run), so a figure reads as a ratio.

mod journal;
mod mysql;
mod redis;
mod verify;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use caudal_connector::OpenContext;
use clap::{Args, Subcommand};

use crate::engine::PluginEndpoints;
use crate::host::Connection;

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
    /// MySQL -> DuckDB and DuckDB -> MySQL through the engine, against a bare driver read,
    /// DuckDB's own write and `LOAD DATA LOCAL INFILE`, with CPU times and peak RSS.
    Mysql(mysql::MySqlBenchArgs),
    /// `caudal project redis --rebuild` of 1M keys against `redis-benchmark -P 64 -t set`.
    Redis(redis::RedisBenchArgs),
    /// `caudal verify` of a 1M-row DuckDB table against a plain full scan of it.
    Verify(verify::VerifyBenchArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BenchCommand::Journal(a) => journal::run(a),
        BenchCommand::Mysql(a) => mysql::run(a),
        BenchCommand::Redis(a) => redis::run(a),
        BenchCommand::Verify(a) => verify::run(a),
    }
}

/// A scratch directory named `{prefix}...` inside `dir` (created if missing), removed when
/// dropped.
fn scratch_dir(dir: &Path, prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a scratch directory in {}", dir.display()))
}

/// A connection of the DuckDB plugin `endpoints` load to the database file `path` (created if
/// missing), in this process.
fn open_duckdb(endpoints: &PluginEndpoints, path: &Path) -> anyhow::Result<Connection> {
    let plugin = endpoints.registry().get("duckdb")?;
    let config = serde_json::json!({ "path": path.display().to_string() }).to_string();
    Ok(plugin.open(
        &OpenContext {
            connection: "bench".into(),
            base_dir: None,
        },
        &config,
    )?)
}
