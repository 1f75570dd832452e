//! `caudal status`: per pipeline, the last run, and per stream (and partition) how far it has
//! read, and per destination how far it has applied, what is pending and why. A projection of
//! the journal ([`crate::engine::Projection`]), loaded from its checkpoint and brought up to
//! date; the checkpoint is refreshed afterwards (best effort: the journal may be read-only).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use caudal_journal::{Reader, Timestamp};
use clap::Args;
use serde_json::json;

use super::location::JournalLocation;
use super::when;
use crate::engine::cursor;
use crate::engine::projection::{LaneKey, LaneRecord, PartKey, PartRecord, RunRecord, RunState};
use crate::engine::{Projection, plan};

/// `caudal status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    location: JournalLocation,
    /// Only this pipeline (a journal may hold several).
    #[arg(long)]
    pipeline: Option<String>,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Loads the projection of the journal at `location`, and refreshes its checkpoint.
pub fn load(location: &JournalLocation) -> anyhow::Result<(PathBuf, Projection)> {
    let dir = location.resolve()?;
    let reader = Reader::open(&dir)?;
    let projection =
        Projection::load(&dir).with_context(|| format!("reading the journal {}", dir.display()))?;
    if let Err(e) = projection.save(&reader) {
        tracing::debug!(error = %e, "projection checkpoint not refreshed");
    }
    Ok((dir, projection))
}

/// A cursor as people read it: the value without its type tag.
pub fn cursor_shown(text: &str) -> &str {
    match cursor::tag_of(text) {
        Some(tag) => &text[tag.len() + 1..],
        None => text,
    }
}

/// `1.2s`, `3m04s`, `2h05m`.
pub fn duration_shown(us: u64) -> String {
    let secs = us as f64 / 1e6;
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (secs / 3600.0) as u64,
            (secs % 3600.0 / 60.0) as u64
        )
    }
}

/// When something is due, relative to now: `in 12m00s` or `now`.
pub fn due_shown(due: Timestamp) -> String {
    let now = when::now();
    if due <= now {
        format!("{} (due now)", when::format(due))
    } else {
        format!(
            "{} (in {})",
            when::format(due),
            duration_shown((due - now) as u64)
        )
    }
}

/// How the latest instance of a part stands.
fn part_state(part: &PartRecord, runs: &[RunRecord]) -> &'static str {
    if part.completed {
        return "completed";
    }
    let run = runs.iter().find(|r| Some(&r.run) == part.run.as_ref());
    match run.map(|r| r.state) {
        Some(RunState::Running) => "running",
        Some(RunState::Interrupted) | None => "interrupted",
        Some(RunState::Completed | RunState::Failed) => "read failed",
    }
}

fn lane_json(projection: &Projection, key: &LaneKey, lane: &LaneRecord) -> serde_json::Value {
    let pending = projection.pending(key);
    json!({
        "destination": key.destination,
        "applied_through_seq": lane.applied_through,
        "applied_rows": lane.applied_rows,
        "last_applied_at": lane.last_applied_at.map(when::format),
        "pending_batches": pending.len(),
        "pending_rows": pending.iter().map(|b| b.rows).sum::<u64>(),
        "failure": lane.failure.as_ref().map(|f| json!({
            "batch_seq": f.batch_seq,
            "error": f.error,
            "attempts": f.attempts,
            "retryable": f.retryable,
            "failed_at": when::format(f.failed_at),
            "next_attempt": f.next_due.map(when::format),
        })),
    })
}

/// Runs `caudal status`.
pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (dir, projection) = load(&args.location)?;
    let runs = projection.runs();
    let parts = projection.parts();
    let lanes = projection.lanes();
    let mut pipelines: Vec<String> = parts.keys().map(|k| k.pipeline.clone()).collect();
    pipelines.extend(runs.iter().map(|r| r.pipeline.clone()));
    pipelines.sort();
    pipelines.dedup();
    if let Some(p) = &args.pipeline {
        pipelines.retain(|name| name == p);
    }
    let lanes_of = |key: &PartKey| -> Vec<(&LaneKey, &LaneRecord)> {
        lanes.iter().filter(|(k, _)| &k.part == key).collect()
    };
    if args.json {
        let list: Vec<serde_json::Value> = pipelines
            .iter()
            .map(|name| {
                let last = runs.iter().rev().find(|r| &r.pipeline == name);
                let streams: Vec<serde_json::Value> = parts
                    .iter()
                    .filter(|(k, _)| &k.pipeline == name)
                    .map(|(k, p)| {
                        json!({
                            "stream": k.stream,
                            "partition": k.partition,
                            "mode": p.mode,
                            "source": p.source,
                            "state": part_state(p, &runs),
                            "rows": p.rows,
                            "batches": p.batches,
                            "last_cursor": p.last_cursor.as_deref().map(cursor_shown),
                            "started_at": when::format(p.started_at),
                            "completed_at": p.completed_at.map(when::format),
                            "destinations": lanes_of(k)
                                .into_iter()
                                .map(|(lk, l)| lane_json(&projection, lk, l))
                                .collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({"pipeline": name, "last_run": last, "streams": streams})
            })
            .collect();
        outln!(
            "{}",
            json!({"journal": dir.display().to_string(), "through_seq": projection.through_seq(), "pipelines": list})
        );
        return Ok(ExitCode::SUCCESS);
    }
    if pipelines.is_empty() {
        outln!("journal {}: no runs yet", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    for name in &pipelines {
        match runs.iter().rev().find(|r| &r.pipeline == name) {
            Some(r) => outln!(
                "pipeline {name}: last run {} ({}) {} at {}{}, {} rows",
                r.run,
                r.trigger,
                state_shown(r.state),
                when::format(r.started_at),
                r.elapsed_us
                    .map(|us| format!(" in {}", duration_shown(us)))
                    .unwrap_or_default(),
                r.rows
            ),
            None => outln!("pipeline {name}: no runs"),
        }
        let rows: Vec<[String; 6]> = parts
            .iter()
            .filter(|(k, _)| &k.pipeline == name)
            .map(|(k, p)| {
                let dests: Vec<String> = lanes_of(k)
                    .into_iter()
                    .map(|(lk, l)| {
                        let pending = projection.pending(lk);
                        match (&l.failure, pending.len()) {
                            (Some(f), n) => format!(
                                "{}: FAILING, {n} pending from seq {} ({} attempts): {}",
                                lk.destination,
                                f.batch_seq,
                                f.attempts,
                                first_line(&f.error)
                            ),
                            (None, 0) => format!("{}: ok", lk.destination),
                            (None, n) => format!("{}: {n} pending", lk.destination),
                        }
                    })
                    .collect();
                [
                    plan::part_label(&k.stream, k.partition.as_deref()),
                    p.mode.clone(),
                    part_state(p, &runs).to_owned(),
                    p.rows.to_string(),
                    p.last_cursor
                        .as_deref()
                        .map(cursor_shown)
                        .unwrap_or("-")
                        .to_owned(),
                    dests.join("; "),
                ]
            })
            .collect();
        print_table(
            &["STREAM", "MODE", "STATE", "ROWS", "CURSOR", "DESTINATIONS"],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// How a run's state reads in a sentence.
pub fn state_shown(state: RunState) -> &'static str {
    match state {
        RunState::Running => "running (or killed)",
        RunState::Completed => "completed",
        RunState::Failed => "failed",
        RunState::Interrupted => "interrupted",
    }
}

/// The first line of an error, for one-line listings.
pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Prints rows under a header, columns padded to their widest cell; the last column is not
/// padded.
pub fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::from(" ");
        for (i, cell) in cells.iter().enumerate() {
            out.push(' ');
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}", width = widths[i]));
                out.push(' ');
            }
        }
        outln!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_and_durations_read_plainly() {
        assert_eq!(cursor_shown("date:2025-01-10"), "2025-01-10");
        assert_eq!(cursor_shown("text:a:b"), "a:b");
        assert_eq!(duration_shown(1_250_000), "1.2s");
        assert_eq!(duration_shown(184_000_000), "3m04s");
        assert_eq!(duration_shown(7_500_000_000), "2h05m");
    }
}
