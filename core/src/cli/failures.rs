//! `caudal failures`: writes that failed and are not applied yet — per stream (or partition)
//! and destination: the pending seq range, batches and rows, the destination's error, the
//! attempts made and when the next one is due. A projection of the journal; an entry leaves
//! the list once its batches are applied (by a later run, `caudal retry`, or `caudal serve`).
//! Batches waiting with no failed write (the command writing them was killed, or is still
//! writing) are named after the list: `caudal retry` writes them too. Exit status 0 either
//! way: listing is what it is for.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::location::JournalLocation;
use super::status::{due_shown, first_line, load, print_table};
use super::when;
use crate::engine::plan::part_label;
use crate::engine::projection::{BatchMeta, LaneFailure, LaneKey};

/// `caudal failures`
#[derive(Debug, Args)]
pub struct FailuresArgs {
    #[command(flatten)]
    location: JournalLocation,
    /// Only this pipeline.
    #[arg(long)]
    pipeline: Option<String>,
    /// One JSON object per failure (per line) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `caudal failures`.
pub fn run(args: FailuresArgs) -> anyhow::Result<ExitCode> {
    let (dir, projection) = load(&args.location)?;
    let failing: Vec<_> = projection
        .lanes()
        .into_iter()
        .filter(|(k, l)| {
            l.failure.is_some() && args.pipeline.as_ref().is_none_or(|p| &k.part.pipeline == p)
        })
        .collect();
    let mut rows = Vec::new();
    for (key, lane) in &failing {
        let Some(f) = &lane.failure else { continue };
        let pending = projection.pending(key);
        let last = pending.last().map_or(f.batch_seq, |b| b.seq);
        let pending_rows: u64 = pending.iter().map(|b| b.rows).sum();
        let label = part_label(&key.part.stream, key.part.partition.as_deref());
        let next = match f.next_due {
            Some(due) => due_shown(due),
            None => "none scheduled (caudal retry)".to_owned(),
        };
        if args.json {
            outln!("{}", lane_json(key, &pending, f.batch_seq, Some(f)));
            continue;
        }
        rows.push([
            format!("{}/{label}", key.part.pipeline),
            key.destination.clone(),
            format!("{}..{last}", f.batch_seq),
            pending.len().to_string(),
            pending_rows.to_string(),
            f.attempts.to_string(),
            next,
            first_line(&f.error).to_owned(),
        ]);
    }
    let pipelines: std::collections::BTreeSet<String> = projection
        .lanes()
        .into_keys()
        .map(|k| k.part.pipeline)
        .filter(|p| args.pipeline.as_ref().is_none_or(|only| only == p))
        .collect();
    let mut waiting = Vec::new();
    for key in pipelines
        .iter()
        .flat_map(|p| projection.interrupted_lanes(p))
    {
        let pending = projection.pending(&key);
        let (Some(first), Some(last)) = (pending.first(), pending.last()) else {
            continue;
        };
        let rows: u64 = pending.iter().map(|b| b.rows).sum();
        let label = part_label(&key.part.stream, key.part.partition.as_deref());
        if args.json {
            outln!("{}", lane_json(&key, &pending, first.seq, None));
        } else {
            waiting.push(format!(
                "  {}/{label} -> {}: seqs {}..{}, {} batches, {rows} rows",
                key.part.pipeline,
                key.destination,
                first.seq,
                last.seq,
                pending.len()
            ));
        }
    }
    if !args.json {
        if rows.is_empty() {
            outln!("journal {}: no failed writes pending", dir.display());
        } else {
            print_table(
                &[
                    "STREAM",
                    "DESTINATION",
                    "SEQS",
                    "BATCHES",
                    "ROWS",
                    "ATTEMPTS",
                    "NEXT ATTEMPT",
                    "ERROR",
                ],
                &rows,
            );
        }
        if !waiting.is_empty() {
            outln!(
                "journaled and not yet written, with no failed write (the command writing them \
                 was stopped, or is still writing; `caudal retry` writes them):"
            );
            for line in waiting {
                outln!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One lane's JSON line: its failure's fields, or, for a lane interrupted with no failure,
/// none (`"interrupted": true`).
fn lane_json(
    key: &LaneKey,
    pending: &[BatchMeta],
    first_seq: u64,
    f: Option<&LaneFailure>,
) -> serde_json::Value {
    json!({
        "pipeline": key.part.pipeline,
        "stream": key.part.stream,
        "partition": key.part.partition,
        "destination": key.destination,
        "first_seq": first_seq,
        "last_seq": pending.last().map_or(first_seq, |b| b.seq),
        "batches": pending.len(),
        "rows": pending.iter().map(|b| b.rows).sum::<u64>(),
        "error": f.map(|f| &f.error),
        "attempts": f.map_or(0, |f| f.attempts),
        "retryable": f.is_none_or(|f| f.retryable),
        "failed_at": f.map(|f| when::format(f.failed_at)),
        "next_attempt": f.and_then(|f| f.next_due).map(when::format),
        "interrupted": f.is_none(),
    })
}
