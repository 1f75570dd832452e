//! `caudal replay --to CONNECTION [--pipeline P] [--stream S] [--from-seq N] [--to-seq M]
//! [--dry-run]`: writes journaled batches into a destination, fresh or existing; offsets make
//! it idempotent (see [`crate::engine::replay`]). The pipeline file (for the connection and
//! the streams' tables and modes) comes from `--file`, or else from the journal's last run.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use serde_json::json;

use super::location::JournalLocation;
use super::retry::pipeline_for;
use super::run::{OutputArgs, engine_error};
use crate::engine::{Engine, PluginEndpoints, ReplayOptions};

/// `caudal replay`
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    location: JournalLocation,
    /// The destination: a connection of the pipeline file.
    #[arg(long, value_name = "CONNECTION")]
    to: String,
    /// The journal's pipeline to replay (default: the pipeline file's).
    #[arg(long)]
    pipeline: Option<String>,
    /// Only this stream.
    #[arg(long)]
    stream: Option<String>,
    /// First journal seq considered.
    #[arg(long, value_name = "N")]
    from_seq: Option<u64>,
    /// Last journal seq considered.
    #[arg(long, value_name = "M")]
    to_seq: Option<u64>,
    /// Show what would be written; write and journal nothing.
    #[arg(long)]
    dry_run: bool,
    /// A JSON summary instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `caudal replay`.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let pipeline = match pipeline_for(&args.location, args.pipeline.as_deref())? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let progress = args.output.init();
    let endpoints = Arc::new(PluginEndpoints::for_pipeline(&pipeline));
    let engine = Engine::new(Arc::clone(&pipeline), endpoints, progress);
    let options = ReplayOptions {
        to: args.to.clone(),
        pipeline: args.pipeline,
        stream: args.stream,
        from_seq: args.from_seq,
        to_seq: args.to_seq,
        dry_run: args.dry_run,
    };
    let report = match engine.replay(&options) {
        Ok(r) => r,
        Err(e) => return Ok(engine_error(&pipeline, &e)),
    };
    if args.json {
        let parts: Vec<_> = report
            .parts
            .iter()
            .map(|p| {
                json!({
                    "stream": p.label,
                    "table": p.table,
                    "batches": p.batches,
                    "rows": p.rows,
                    "first_seq": p.seqs.0,
                    "last_seq": p.seqs.1,
                    "applied": p.applied,
                    "skipped": p.skipped,
                    "error": p.error,
                })
            })
            .collect();
        outln!(
            "{}",
            json!({
                "run": report.run.map(|r| r.to_string()),
                "to": args.to,
                "dry_run": args.dry_run,
                "ok": report.succeeded(),
                "streams": parts,
            })
        );
    } else if report.parts.is_empty() {
        outln!("nothing to replay: no journaled batches match");
    } else {
        let verb = if args.dry_run { "would write" } else { "wrote" };
        for p in &report.parts {
            outln!(
                "{} -> {}.{}: seqs {}..{}, {} batches ({} rows): {verb} {}, {} already there{}",
                p.label,
                args.to,
                p.table,
                p.seqs.0,
                p.seqs.1,
                p.batches,
                p.rows,
                p.applied,
                p.skipped,
                p.error
                    .as_ref()
                    .map(|e| format!("; FAILED: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
