//! `caudal project redis [--file PIPELINE | --pipeline P] [--connection C] [--stream S]
//! [--rebuild] [--json]`: builds a Redis cache from the journal alone; the sources are never
//! contacted.
//!
//! Without `--rebuild`, the journaled batches the cache lacks are written, in seq order, with
//! the offsets a run uses (a replay, [`crate::engine::replay`]). With `--rebuild`, each table
//! is made equal to the state the journal implies ([`crate::engine::rebuild`]): the journal is
//! folded into the final row of each key, the table's keys are removed (stale keys included),
//! the final rows are written once, and the streams' offsets are set to their last journaled
//! batches. Exit status 0 when every batch or table was written, 1 otherwise, 2 for usage
//! errors.

use std::process::ExitCode;
use std::sync::Arc;

use caudal_config::Pipeline;
use clap::{Args, Subcommand};
use serde_json::json;

use super::location::JournalLocation;
use super::retry::pipeline_for;
use super::run::{EXIT_USAGE, OutputArgs, engine_error};
use crate::engine::{
    Engine, PluginEndpoints, RebuildOptions, RebuildReport, RepairedRebuild, ReplayOptions,
};

/// `caudal project`
#[derive(Debug, Args)]
pub struct ProjectArgs {
    #[command(subcommand)]
    target: ProjectTarget,
}

#[derive(Debug, Subcommand)]
enum ProjectTarget {
    /// Build the Redis cache of a pipeline from its journal.
    Redis(RedisArgs),
}

/// `caudal project redis`
#[derive(Debug, Args)]
pub struct RedisArgs {
    #[command(flatten)]
    location: JournalLocation,
    /// The pipeline, when the journal holds several (its file is the one its last run was
    /// started from; or give the file with --file).
    #[arg(long)]
    pipeline: Option<String>,
    /// The Redis connection [default: the one the pipeline's streams write to].
    #[arg(long, value_name = "CONNECTION")]
    connection: Option<String>,
    /// Only this stream.
    #[arg(long)]
    stream: Option<String>,
    /// Make the cache equal to the journal: write every row it implies, delete stale keys.
    #[arg(long)]
    rebuild: bool,
    /// A JSON summary instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `caudal project`.
pub fn run(args: ProjectArgs) -> anyhow::Result<ExitCode> {
    match args.target {
        ProjectTarget::Redis(args) => redis(args),
    }
}

/// The Redis connection to build: `--connection`, else the only `redis` connection a stream
/// writes to.
fn redis_connection(pipeline: &Pipeline, asked: Option<&str>) -> Result<String, String> {
    let path = pipeline.path().display();
    if let Some(name) = asked {
        return match pipeline.connection(name) {
            Some(c) if c.connector() == "redis" => Ok(name.to_owned()),
            Some(c) => Err(format!(
                "--connection {name}: a `{}` connection, not a Redis one",
                c.connector()
            )),
            None => Err(format!("--connection {name}: no such connection in {path}")),
        };
    }
    let mut written: Vec<&str> = pipeline
        .streams()
        .iter()
        .flat_map(|s| s.destinations())
        .map(String::as_str)
        .filter(|d| {
            pipeline
                .connection(d)
                .is_some_and(|c| c.connector() == "redis")
        })
        .collect();
    written.sort_unstable();
    written.dedup();
    match written.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(format!(
            "no stream of {path} writes into a Redis connection"
        )),
        many => Err(format!(
            "streams of {path} write into several Redis connections ({}): choose one with \
             --connection",
            many.join(", ")
        )),
    }
}

fn redis(args: RedisArgs) -> anyhow::Result<ExitCode> {
    // A journal without runs of the pipeline, or a file that names another journal: the
    // command line does not say which pipeline file to use.
    let pipeline = match pipeline_for(&args.location, args.pipeline.as_deref()) {
        Ok(Ok(p)) => p,
        Ok(Err(code)) => return Ok(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let connection = match redis_connection(&pipeline, args.connection.as_deref()) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let table = match &args.stream {
        Some(s) => match pipeline.stream(s) {
            Some(stream) => Some(stream.table().to_owned()),
            None => {
                eprintln!(
                    "error: --stream {s}: no such stream in {}",
                    pipeline.path().display()
                );
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        },
        None => None,
    };
    let progress = args.output.init();
    let endpoints = Arc::new(PluginEndpoints::for_pipeline(&pipeline));
    let engine = Engine::new(Arc::clone(&pipeline), endpoints, progress);
    if args.rebuild {
        return match engine.rebuild(&RebuildOptions {
            connection: connection.clone(),
            table,
        }) {
            Ok(report) => Ok(print_rebuild(&connection, &report, args.json)),
            Err(e) => Ok(engine_error(&pipeline, &e)),
        };
    }
    // A rebuild into this connection that did not finish left tables partly written under
    // offsets that say they are whole: the replay below would write nothing into them.
    let rebuilds = match engine.finish_rebuilds_of(&connection) {
        Ok(r) => r,
        Err(e) => return Ok(engine_error(&pipeline, &e)),
    };
    let replay = match engine.replay(&ReplayOptions {
        to: connection.clone(),
        pipeline: None,
        stream: args.stream.clone(),
        from_seq: None,
        to_seq: None,
        dry_run: false,
    }) {
        Ok(r) => r,
        Err(e) => return Ok(engine_error(&pipeline, &e)),
    };
    let ok = replay.succeeded() && rebuilds.iter().all(RepairedRebuild::succeeded);
    if args.json {
        let streams: Vec<_> = replay
            .parts
            .iter()
            .map(|p| {
                json!({
                    "stream": p.label,
                    "table": p.table,
                    "batches": p.batches,
                    "applied": p.applied,
                    "skipped": p.skipped,
                    "error": p.error,
                })
            })
            .collect();
        outln!(
            "{}",
            json!({
                "connection": connection,
                "ok": ok,
                "streams": streams,
                "rebuilds": rebuilds.iter().map(super::run::rebuild_json).collect::<Vec<_>>(),
            })
        );
    } else {
        super::run::print_rebuilds(&rebuilds);
        for p in &replay.parts {
            outln!(
                "{} -> {connection}.{}: {} batches written, {} already there{}",
                p.label,
                p.table,
                p.applied,
                p.skipped,
                p.error
                    .as_ref()
                    .map(|e| format!("; FAILED: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints a rebuild's report; the exit status.
fn print_rebuild(connection: &str, report: &RebuildReport, as_json: bool) -> ExitCode {
    if as_json {
        let tables: Vec<_> = report
            .tables
            .iter()
            .map(|t| {
                json!({
                    "table": t.table,
                    "batches": t.batches,
                    "rows": t.rows,
                    "offsets": t.offsets.iter().map(|(s, seq)| json!({ "stream": s, "seq": seq })).collect::<Vec<_>>(),
                    "ok": t.error.is_none(),
                    "error": t.error,
                })
            })
            .collect();
        outln!(
            "{}",
            json!({ "connection": connection, "ok": report.succeeded(), "rebuilt": tables })
        );
    } else {
        for t in &report.tables {
            match &t.error {
                None => outln!(
                    "{connection}.{}: rewritten, {} rows written from {} journaled batches; offsets \
                     at {}",
                    t.table,
                    t.rows,
                    t.batches,
                    t.offsets
                        .iter()
                        .map(|(s, seq)| format!("{s} = {seq}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Some(e) => outln!("{connection}.{}: FAILED: {e}", t.table),
            }
        }
    }
    if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
