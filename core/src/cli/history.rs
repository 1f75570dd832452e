//! `caudal history [--last N]`: the runs in the journal, newest first, with their trigger,
//! outcome, rows, the summary of each partitioned stream (the nightly job's daily summary:
//! stores total, succeeded, failed, rows), and every write attempt after a failure (failed,
//! scheduled, applied). A projection of the journal, as `status` is: the summary is folded
//! from the run's `StreamStarted`, `StreamCompleted` and write entries, settled by its
//! `RunCompleted` or `RunFailed`.

use std::process::ExitCode;

use clap::Args;

use super::location::JournalLocation;
use super::status::{duration_shown, first_line, load, print_table, state_shown};
use super::when;
use crate::engine::plan::part_label;
use crate::engine::projection::{RunRecord, StreamSummary};

/// `caudal history`
#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    location: JournalLocation,
    /// How many runs, newest first.
    #[arg(long, default_value_t = 20, value_name = "N")]
    last: usize,
    /// Only this pipeline.
    #[arg(long)]
    pipeline: Option<String>,
    /// One JSON object per run (per line) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `caudal history`.
pub fn run(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let (dir, projection) = load(&args.location)?;
    let mut runs = projection.runs();
    if let Some(p) = &args.pipeline {
        runs.retain(|r| &r.pipeline == p);
    }
    runs.reverse();
    runs.truncate(args.last);
    if args.json {
        for r in &runs {
            let mut value = serde_json::to_value(r)?;
            if let Some(object) = value.as_object_mut() {
                object.insert("summary".into(), serde_json::to_value(r.summaries())?);
            }
            outln!("{value}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        outln!("journal {}: no runs yet", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 9]> = runs
        .iter()
        .map(|r| {
            [
                r.run.clone(),
                r.pipeline.clone(),
                r.trigger.clone(),
                when::format(r.started_at),
                r.elapsed_us
                    .map(duration_shown)
                    .unwrap_or_else(|| "-".into()),
                state_shown(r.state).to_owned(),
                r.rows.to_string(),
                parts_shown(r),
                format!(
                    "{} applied, {} failed, {} retries",
                    r.writes_applied, r.writes_failed, r.retries_scheduled
                ),
            ]
        })
        .collect();
    print_table(
        &[
            "RUN", "PIPELINE", "TRIGGER", "STARTED", "TOOK", "STATE", "ROWS", "PARTS", "WRITES",
        ],
        &rows,
    );
    // Then each run's partitioned streams, and what went wrong, run by run.
    for r in runs.iter().filter(|r| {
        r.error.is_some() || !r.attempts.is_empty() || r.summaries().iter().any(|s| s.partitioned)
    }) {
        outln!();
        outln!("run {} ({}):", r.run, when::format(r.started_at));
        for s in r.summaries().iter().filter(|s| s.partitioned) {
            outln!("  {}", summary_shown(s));
        }
        if let Some(e) = &r.error {
            outln!("  error: {}", first_line(e));
        }
        for a in &r.attempts {
            let what = match a.outcome.as_str() {
                "failed" => format!(
                    "failed: {}",
                    a.error.as_deref().map(first_line).unwrap_or_default()
                ),
                "scheduled" => format!(
                    "scheduled for {}",
                    a.due.map(when::format).unwrap_or_default()
                ),
                other => other.to_owned(),
            };
            outln!(
                "  {} attempt {} {} -> {} batch {}: {what}",
                when::format(a.at),
                a.attempt,
                part_label(&a.stream, a.partition.as_deref()),
                a.destination,
                a.batch_seq
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The PARTS cell: streams and partitions that succeeded, of those the run started.
fn parts_shown(r: &RunRecord) -> String {
    let summaries = r.summaries();
    let total: u32 = summaries.iter().map(|s| s.total).sum();
    if total == 0 {
        return "-".into();
    }
    let ok: u32 = summaries.iter().map(|s| s.succeeded).sum();
    let failed: u32 = summaries.iter().map(|s| s.failed).sum();
    match failed {
        0 => format!("{ok}/{total} ok"),
        n => format!("{ok}/{total} ok, {n} failed"),
    }
}

/// `ventas: 16 partitions, 15 succeeded, 1 failed (tienda_13), 0 unfinished; 345600 rows`.
fn summary_shown(s: &StreamSummary) -> String {
    let mut text = format!(
        "{}: {} partitions, {} succeeded, {} failed",
        s.stream, s.total, s.succeeded, s.failed
    );
    if !s.failed_parts.is_empty() {
        text.push_str(&format!(" ({})", s.failed_parts.join(", ")));
    }
    if s.unfinished > 0 {
        text.push_str(&format!(", {} unfinished", s.unfinished));
    }
    text.push_str(&format!("; {} rows", s.rows));
    text
}
