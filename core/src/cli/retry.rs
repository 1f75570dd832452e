//! `caudal retry [--seq N]`: writes that failed are tried again now, from the journal (see
//! [`crate::engine::retry`]). The pipeline file comes from `--file`, or else from the
//! journal's last run (its `RunStarted` names the file). Exit status 0 when every retried
//! write is applied, 1 otherwise, 2 for usage errors.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use caudal_config::Pipeline;
use clap::Args;
use serde_json::json;

use super::location::JournalLocation;
use super::run::{OutputArgs, engine_error, load_pipeline};
use crate::engine::{Engine, PluginEndpoints, Projection, RetryOptions};

/// `caudal retry`
#[derive(Debug, Args)]
pub struct RetryArgs {
    #[command(flatten)]
    location: JournalLocation,
    /// Only the writes waiting for this batch (its journal seq, as `caudal failures` shows).
    #[arg(long, value_name = "N")]
    seq: Option<u64>,
    /// The pipeline whose failures to retry, when the journal holds several.
    #[arg(long)]
    pipeline: Option<String>,
    /// A JSON summary instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// The pipeline file an engine command works with: `--file`, else the file the journal's
/// last run (of `pipeline`, if given) was started from.
pub fn pipeline_for(
    location: &JournalLocation,
    pipeline: Option<&str>,
) -> anyhow::Result<Result<Arc<Pipeline>, ExitCode>> {
    if let Some(file) = &location.file {
        return Ok(load_pipeline(file));
    }
    let dir = location.resolve()?;
    let projection =
        Projection::load(&dir).with_context(|| format!("reading the journal {}", dir.display()))?;
    let Some(run) = projection
        .runs()
        .into_iter()
        .rev()
        .find(|r| pipeline.is_none_or(|p| r.pipeline == p))
    else {
        bail!(
            "the journal {} has no runs{}; name the pipeline file with --file",
            dir.display(),
            pipeline
                .map(|p| format!(" of pipeline `{p}`"))
                .unwrap_or_default()
        );
    };
    let loaded = load_pipeline(Path::new(&run.pipeline_file));
    if let Ok(p) = &loaded
        && std::path::absolute(p.journal_dir()).ok() != std::path::absolute(&dir).ok()
    {
        bail!(
            "{} (the file of the journal's last run) now names the journal {}, not {}; name \
             the pipeline file with --file",
            run.pipeline_file,
            p.journal_dir().display(),
            dir.display()
        );
    }
    Ok(loaded)
}

/// Runs `caudal retry`.
pub fn run(args: RetryArgs) -> anyhow::Result<ExitCode> {
    let pipeline = match pipeline_for(&args.location, args.pipeline.as_deref())? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let progress = args.output.init();
    let endpoints = Arc::new(PluginEndpoints::for_pipeline(&pipeline));
    let engine = Engine::new(Arc::clone(&pipeline), endpoints, progress);
    let options = RetryOptions {
        seq: args.seq,
        only_due: false,
    };
    let report = match engine.retry(&options) {
        Ok(r) => r,
        Err(e) => return Ok(engine_error(&pipeline, &e)),
    };
    if args.json {
        let lanes: Vec<_> = report
            .lanes
            .iter()
            .map(|l| {
                json!({
                    "stream": l.label,
                    "destination": l.destination,
                    "first_seq": l.first_seq,
                    "batches": l.batches,
                    "ok": l.error.is_none(),
                    "error": l.error,
                })
            })
            .collect();
        outln!(
            "{}",
            json!({"run": report.run.map(|r| r.to_string()), "ok": report.succeeded(), "retried": lanes})
        );
    } else if report.lanes.is_empty() {
        outln!(
            "nothing to retry: no failed writes of `{}` are pending",
            pipeline.name()
        );
    } else {
        for l in &report.lanes {
            match &l.error {
                None => outln!(
                    "{} -> {}: {} batches from seq {} applied",
                    l.label,
                    l.destination,
                    l.batches,
                    l.first_seq
                ),
                Some(e) => outln!(
                    "{} -> {}: still failing at seq {}: {e}",
                    l.label,
                    l.destination,
                    l.first_seq
                ),
            }
        }
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
