//! `caudal gaps --date-column fecha`: per partition (store) of a stream, its last loaded day,
//! how many days that is behind today, and the days missing inside its range (between its
//! first and last loaded day), as a table or one JSON object. A projection of the journal:
//! the days of the rows each destination applied ([`crate::engine::gaps`]); the destination
//! is never queried.
//!
//! A day that shows as missing is filled by a manual range run, e.g.
//! `caudal run FILE --partition tienda_02 --from 2025-01-07 --to 2025-01-08`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use caudal_config::{Mode, Pipeline};
use caudal_journal::Reader;
use clap::Args;
use serde_json::json;

use super::location::JournalLocation;
use super::run::EXIT_USAGE;
use super::status::print_table;
use crate::engine::Projection;
use crate::engine::gaps::{self, Day, DaysQuery, LoadedDays, PartGaps};

/// `caudal gaps`
#[derive(Debug, Args)]
pub struct GapsArgs {
    #[command(flatten)]
    location: JournalLocation,
    /// The pipeline [default: the file's, or the only one in the journal].
    #[arg(long)]
    pipeline: Option<String>,
    /// The stream [default: the pipeline's only stream that is not a snapshot, preferring
    /// partitioned ones].
    #[arg(long)]
    stream: Option<String>,
    /// The column holding each row's day [default: the stream's cursor, with --file].
    #[arg(long, value_name = "COLUMN")]
    date_column: Option<String>,
    /// Group by this column's value instead of by partition, for a stream that reads several
    /// stores from one table (e.g. `--by tienda`).
    #[arg(long, value_name = "COLUMN")]
    by: Option<String>,
    /// The destination whose days to show [default: the stream's first].
    #[arg(long = "to", value_name = "CONNECTION")]
    destination: Option<String>,
    /// The day to count `behind` from, e.g. 2025-10-22 [default: today, UTC].
    #[arg(long, value_name = "DATE")]
    today: Option<String>,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// What `caudal gaps` shows: which stream, column and destination, and the day it counts from.
struct Target {
    pipeline: String,
    stream: String,
    column: String,
    destination: String,
    today: Day,
    /// Partitions the pipeline file names that may never have run.
    sources: Vec<String>,
    column_is_cursor: bool,
    /// `--by`.
    by: Option<String>,
}

/// A usage problem: printed, exit 2.
struct Usage(String);

/// Runs `caudal gaps`.
pub fn run(args: GapsArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.location.file {
        Some(path) => Some(read_pipeline(path)?),
        None => None,
    };
    let dir = match (&args.location.journal, &file) {
        (Some(dir), _) => dir.clone(),
        (None, Some(f)) => f.journal_dir(),
        (None, None) => PathBuf::from("journal"),
    };
    let reader = Reader::open(&dir)?;
    let projection =
        Projection::load(&dir).with_context(|| format!("reading the journal {}", dir.display()))?;
    if let Err(e) = projection.save(&reader) {
        tracing::debug!(error = %e, "projection checkpoint not refreshed");
    }
    let target = match target(&args, file.as_ref(), &projection) {
        Ok(t) => t,
        Err(Usage(message)) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let query = DaysQuery {
        pipeline: target.pipeline.clone(),
        stream: target.stream.clone(),
        column: target.column.clone(),
        column_is_cursor: target.column_is_cursor,
        by: target.by.clone(),
    };
    let days = LoadedDays::load(&dir, &query)
        .with_context(|| format!("reading the journal {}", dir.display()))?;
    if days.is_snapshot() {
        eprintln!(
            "error: stream `{}` is a snapshot stream: each run replaces its table, so it has no \
             gaps to fill",
            target.stream
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let parts = days.gaps(
        &target.destination,
        target.today,
        &target.sources,
        target.by.is_some(),
    );
    if args.json {
        outln!("{}", report_json(&target, &parts));
    } else {
        print_report(&target, &parts);
    }
    Ok(ExitCode::SUCCESS)
}

/// The pipeline file, for its names and journal directory only: nothing connects, so a
/// `${VAR}` secret that is not set in this shell is no error here.
fn read_pipeline(path: &Path) -> anyhow::Result<Pipeline> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the pipeline file {}", path.display()))?;
    let lenient = |var: &str| std::env::var_os(var).or_else(|| Some(OsString::from("unset")));
    Pipeline::from_str_with_env(&text, path, lenient).map_err(|e| {
        let problems: Vec<String> = e.problems().iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", problems.join("\n"))
    })
}

/// Resolves what to show from the arguments, the pipeline file and the journal.
fn target(
    args: &GapsArgs,
    file: Option<&Pipeline>,
    projection: &Projection,
) -> Result<Target, Usage> {
    let parts = projection.parts();
    let pipeline = match (&args.pipeline, file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => f.name().to_owned(),
        (None, None) => {
            let mut names: Vec<&str> = parts.keys().map(|k| k.pipeline.as_str()).collect();
            names.dedup();
            match names.as_slice() {
                [one] => (*one).to_owned(),
                [] => return Err(Usage("the journal has no streams yet".into())),
                many => {
                    return Err(Usage(format!(
                        "the journal holds several pipelines ({}); name one with --pipeline",
                        many.join(", ")
                    )));
                }
            }
        }
    };
    let config = file.filter(|f| f.name() == pipeline);
    // Streams known to the journal: (name, partitioned, snapshot, destinations).
    let mut known: Vec<(String, bool, bool, Vec<String>)> = Vec::new();
    for (key, part) in parts.iter().filter(|(k, _)| k.pipeline == pipeline) {
        if !known.iter().any(|(s, ..)| *s == key.stream) {
            known.push((
                key.stream.clone(),
                key.partition.is_some(),
                part.mode == "snapshot",
                part.destinations.clone(),
            ));
        }
    }
    if let Some(c) = config {
        for s in c.streams() {
            if !known.iter().any(|(n, ..)| n == s.name()) {
                known.push((
                    s.name().to_owned(),
                    s.is_partitioned(),
                    s.mode() == Mode::Snapshot,
                    s.destinations().to_vec(),
                ));
            }
        }
    }
    if known.is_empty() {
        return Err(Usage(format!(
            "the journal has no stream of pipeline `{pipeline}`"
        )));
    }
    let names = || {
        known
            .iter()
            .map(|(s, ..)| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let stream = match &args.stream {
        Some(s) if known.iter().any(|(n, ..)| n == s) => s.clone(),
        Some(s) => {
            return Err(Usage(format!(
                "pipeline `{pipeline}` has no stream `{s}`; streams: {}",
                names()
            )));
        }
        None => {
            let candidates: Vec<&str> = known
                .iter()
                .filter(|(_, _, snapshot, _)| !snapshot)
                .map(|(n, ..)| n.as_str())
                .collect();
            let partitioned: Vec<&str> = known
                .iter()
                .filter(|(_, partitioned, snapshot, _)| *partitioned && !snapshot)
                .map(|(n, ..)| n.as_str())
                .collect();
            match (partitioned.as_slice(), candidates.as_slice()) {
                ([one], _) | ([], [one]) => (*one).to_owned(),
                _ => {
                    return Err(Usage(format!(
                        "pipeline `{pipeline}` has several streams ({}); name one with --stream",
                        names()
                    )));
                }
            }
        }
    };
    let stream_config = config.and_then(|c| c.stream(&stream));
    let cursor = stream_config.and_then(|s| s.cursor());
    let column = match (&args.date_column, cursor) {
        (Some(c), _) => c.clone(),
        (None, Some(c)) => c.to_owned(),
        (None, None) => {
            return Err(Usage(
                "name the column holding each row's day with --date-column (e.g. fecha)".into(),
            ));
        }
    };
    let destinations = known
        .iter()
        .find(|(n, ..)| *n == stream)
        .map(|(.., d)| d.clone())
        .unwrap_or_default();
    let destination = match &args.destination {
        Some(d) if destinations.is_empty() || destinations.contains(d) => d.clone(),
        Some(d) => {
            return Err(Usage(format!(
                "stream `{stream}` does not write `{d}`; it writes {}",
                destinations.join(", ")
            )));
        }
        None => destinations
            .first()
            .cloned()
            .ok_or_else(|| Usage(format!("stream `{stream}` has no destination")))?,
    };
    let today = match &args.today {
        Some(t) => gaps::parse_day(t).map_err(|e| Usage(format!("--today: {e}")))?,
        None => today_utc(),
    };
    let sources = stream_config
        .filter(|s| s.is_partitioned())
        .map(|s| s.sources().to_vec())
        .unwrap_or_default();
    Ok(Target {
        column_is_cursor: cursor == Some(column.as_str()),
        pipeline,
        stream,
        column,
        destination,
        today,
        sources,
        by: args.by.clone(),
    })
}

fn today_utc() -> Day {
    let days = time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .div_euclid(86_400);
    Day::try_from(days).unwrap_or(Day::MAX)
}

fn day_or_dash(day: Option<Day>) -> String {
    day.map_or_else(|| "-".into(), gaps::day_text)
}

/// `2025-01-07, 2025-01-12..2025-01-14`.
fn missing_shown(missing: &[Day]) -> String {
    gaps::ranges(missing)
        .into_iter()
        .map(|(a, b)| match a == b {
            true => gaps::day_text(a),
            false => format!("{}..{}", gaps::day_text(a), gaps::day_text(b)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_report(t: &Target, parts: &[PartGaps]) {
    outln!(
        "pipeline {}, stream {}: days by `{}` loaded into {}, today {}",
        t.pipeline,
        t.stream,
        t.column,
        t.destination,
        gaps::day_text(t.today)
    );
    let group = t.by.as_deref().unwrap_or("partition").to_uppercase();
    let rows: Vec<[String; 7]> = parts
        .iter()
        .map(|p| {
            [
                p.partition.clone().unwrap_or_else(|| t.stream.clone()),
                day_or_dash(p.last_day),
                p.days_behind.map_or_else(|| "-".into(), |d| d.to_string()),
                day_or_dash(p.first_day),
                p.days_loaded.to_string(),
                p.missing.len().to_string(),
                match p.last_day {
                    None => "nothing loaded".into(),
                    Some(_) if p.missing.is_empty() => "-".into(),
                    Some(_) => missing_shown(&p.missing),
                },
            ]
        })
        .collect();
    print_table(
        &[
            group.as_str(),
            "LAST DAY",
            "BEHIND",
            "FIRST DAY",
            "DAYS",
            "MISSING",
            "MISSING DAYS",
        ],
        &rows,
    );
    let behind = parts
        .iter()
        .filter(|p| p.days_behind.is_none_or(|d| d > 1))
        .count();
    let with_gaps = parts.iter().filter(|p| !p.missing.is_empty()).count();
    outln!();
    outln!(
        "{} {}: {behind} more than a day behind or never loaded, {with_gaps} with missing days",
        parts.len(),
        match &t.by {
            Some(by) => format!("values of `{by}`"),
            None => "partitions".to_owned(),
        }
    );
}

fn report_json(t: &Target, parts: &[PartGaps]) -> serde_json::Value {
    let parts: Vec<serde_json::Value> = parts
        .iter()
        .map(|p| {
            json!({
                "partition": p.partition,
                "last_day": p.last_day.map(gaps::day_text),
                "days_behind": p.days_behind,
                "first_day": p.first_day.map(gaps::day_text),
                "days_loaded": p.days_loaded,
                "missing_days": p.missing.iter().map(|d| gaps::day_text(*d)).collect::<Vec<_>>(),
                "missing_ranges": gaps::ranges(&p.missing)
                    .into_iter()
                    .map(|(a, b)| json!({"from": gaps::day_text(a), "to": gaps::day_text(b)}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "pipeline": t.pipeline,
        "stream": t.stream,
        "date_column": t.column,
        "by": t.by,
        "destination": t.destination,
        "today": gaps::day_text(t.today),
        "partitions": parts,
    })
}
