//! `caudal journal inspect | tail | stats | verify`: read-only views of a journal directory.
//!
//! These commands never take the writer's lock, so they run alongside a pipeline that is
//! appending. Every entry is CRC-checked as it is read; damage stops the listing with an error
//! naming segment, byte offset and seq (exit status 1), never a silent skip.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use caudal_journal::{Entry, EntryKind, Payload, Reader, RunId, StoredEntry, Timestamp};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::location::JournalLocation;
use super::when;

/// `caudal journal ...`
#[derive(Debug, Args)]
pub struct JournalArgs {
    #[command(subcommand)]
    command: JournalCommand,
}

#[derive(Debug, Subcommand)]
enum JournalCommand {
    /// List entries, filtered.
    Inspect(InspectArgs),
    /// Show the last entries; with -f, keep following new ones.
    Tail(TailArgs),
    /// Entries, bytes, segments, first and last time, counts per kind.
    Stats(StatsArgs),
    /// Check every CRC, every payload hash and the whole chain; non-zero exit on any damage.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct InspectArgs {
    #[command(flatten)]
    location: JournalLocation,
    #[command(flatten)]
    filter: Filter,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct TailArgs {
    #[command(flatten)]
    location: JournalLocation,
    #[command(flatten)]
    filter: Filter,
    /// How many of the last matching entries to show first.
    #[arg(short = 'n', long, default_value_t = 10)]
    lines: usize,
    /// Keep running and print new entries as they are appended.
    #[arg(short = 'f', long)]
    follow: bool,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct StatsArgs {
    #[command(flatten)]
    location: JournalLocation,
    /// A JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    location: JournalLocation,
    /// A JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Entry filters shared by `inspect` and `tail`. All given filters must match.
#[derive(Debug, Default, Args)]
struct Filter {
    /// Only the entry with this seq.
    #[arg(long, conflicts_with_all = ["from_seq", "to_seq"])]
    seq: Option<u64>,
    /// Entries with seq >= N.
    #[arg(long, value_name = "N")]
    from_seq: Option<u64>,
    /// Entries with seq <= M.
    #[arg(long, value_name = "M")]
    to_seq: Option<u64>,
    /// Entries at or after this time (RFC 3339, a date, or a duration before now such as 2h).
    #[arg(long, value_parser = when::parse_instant, value_name = "TIME")]
    since: Option<Timestamp>,
    /// Entries before this time (same forms as --since).
    #[arg(long, value_parser = when::parse_instant, value_name = "TIME")]
    until: Option<Timestamp>,
    /// Entry kinds, comma separated or repeated (e.g. BatchRead,WriteFailed).
    #[arg(long, value_delimiter = ',', value_parser = parse_kind, value_name = "KIND")]
    kind: Vec<&'static str>,
    /// Entries of this pipeline.
    #[arg(long)]
    pipeline: Option<String>,
    /// Entries of this run (16 hex digits, as shown by inspect).
    #[arg(long, value_parser = parse_run, value_name = "RUN")]
    run: Option<RunId>,
}

fn parse_kind(text: &str) -> anyhow::Result<&'static str> {
    EntryKind::NAMES
        .iter()
        .copied()
        .find(|name| name.eq_ignore_ascii_case(text))
        .with_context(|| {
            format!(
                "unknown entry kind `{text}`; kinds are: {}",
                EntryKind::NAMES.join(", ")
            )
        })
}

fn parse_run(text: &str) -> anyhow::Result<RunId> {
    text.parse::<RunId>().map_err(|_| {
        anyhow::anyhow!(
            "`{text}` is not a run id (16 hex digits, as shown by `caudal journal inspect`)"
        )
    })
}

impl Filter {
    fn first_seq(&self) -> u64 {
        self.seq.or(self.from_seq).unwrap_or(1).max(1)
    }

    fn last_seq(&self) -> u64 {
        self.seq.or(self.to_seq).unwrap_or(u64::MAX)
    }

    /// Whether only seq bounds are set, so "the last N" can be found by seq arithmetic.
    fn by_seq_only(&self) -> bool {
        self.since.is_none()
            && self.until.is_none()
            && self.kind.is_empty()
            && self.pipeline.is_none()
            && self.run.is_none()
    }

    fn matches(&self, e: &Entry) -> bool {
        e.seq >= self.first_seq()
            && e.seq <= self.last_seq()
            && self.since.is_none_or(|t| e.time >= t)
            && self.until.is_none_or(|t| e.time < t)
            && (self.kind.is_empty() || self.kind.contains(&e.kind.name()))
            && self.pipeline.as_deref().is_none_or(|p| e.pipeline == p)
            && self.run.is_none_or(|r| e.run == Some(r))
    }
}

pub fn run(args: JournalArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        JournalCommand::Inspect(a) => inspect(a),
        JournalCommand::Tail(a) => tail(a),
        JournalCommand::Stats(a) => stats(a),
        JournalCommand::Verify(a) => verify(a),
    }
}

fn open_reader(dir: &Path) -> anyhow::Result<Reader> {
    Reader::open(dir).with_context(|| format!("cannot read journal {}", dir.display()))
}

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let dir = args.location.resolve()?;
    let reader = open_reader(&dir)?;
    let mut out = Printer::new(args.json);
    let last = args.filter.last_seq();
    for stored in reader.entries_from(args.filter.first_seq())? {
        let stored = stored?;
        if stored.entry.seq > last {
            break;
        }
        if args.filter.matches(&stored.entry) {
            out.entry(&stored)?;
        }
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

fn tail(args: TailArgs) -> anyhow::Result<ExitCode> {
    let dir = args.location.resolve()?;
    let reader = open_reader(&dir)?;
    let mut out = Printer::new(args.json);
    let head = reader.last_seq()?;
    let filter = &args.filter;
    let mut next = filter.first_seq();
    if filter.by_seq_only() {
        let end = head.min(filter.last_seq());
        next = next.max(end.saturating_sub(args.lines as u64) + 1);
    }
    // Keep the last `lines` matches; with only seq bounds this window is exactly those entries.
    let mut window = std::collections::VecDeque::with_capacity(args.lines);
    for stored in reader.entries_from(next)? {
        let stored = stored?;
        next = stored.entry.seq + 1;
        if stored.entry.seq > filter.last_seq() {
            break;
        }
        if filter.matches(&stored.entry) {
            if window.len() == args.lines {
                window.pop_front();
            }
            if args.lines > 0 {
                window.push_back(stored);
            }
        }
    }
    for stored in &window {
        out.entry(stored)?;
    }
    out.flush()?;
    if !args.follow {
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    for stored in reader.follow_from(next, Duration::from_millis(200))? {
        let stored = stored?;
        if stored.entry.seq > filter.last_seq() {
            break;
        }
        if filter.matches(&stored.entry) {
            out.entry(&stored)?;
            out.flush()?;
        }
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let dir = args.location.resolve()?;
    let reader = open_reader(&dir)?;
    let segments = reader.segments()?;
    let bytes: u64 = segments.iter().map(|s| s.bytes).sum();
    let mut per_kind: BTreeMap<&'static str, u64> =
        EntryKind::NAMES.iter().map(|n| (*n, 0)).collect();
    let (mut entries, mut payload_bytes) = (0u64, 0u64);
    let mut first: Option<(u64, Timestamp)> = None;
    let mut last: Option<(u64, Timestamp)> = None;
    for stored in reader.entries_from(1)? {
        let e = stored?.entry;
        entries += 1;
        payload_bytes += payload_len(&e.payload);
        *per_kind.entry(e.kind.name()).or_default() += 1;
        first.get_or_insert((e.seq, e.time));
        last = Some((e.seq, e.time));
    }
    if args.json {
        let kinds: Map<String, Value> = per_kind
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let report = json!({
            "journal": dir.display().to_string(),
            "entries": entries,
            "bytes": bytes,
            "payload_bytes": payload_bytes,
            "segments": segments.len(),
            "first_seq": first.map(|f| f.0),
            "last_seq": last.map(|l| l.0),
            "first_time": first.map(|f| when::format(f.1)),
            "last_time": last.map(|l| when::format(l.1)),
            "kinds": kinds,
        });
        outln!("{report}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = io::stdout().lock();
    writeln!(out, "journal        {}", dir.display())?;
    writeln!(out, "entries        {entries}")?;
    writeln!(
        out,
        "bytes          {} ({} of payload)",
        human_bytes(bytes),
        human_bytes(payload_bytes)
    )?;
    writeln!(out, "segments       {}", segments.len())?;
    match (first, last) {
        (Some(f), Some(l)) => {
            writeln!(out, "seqs           {} .. {}", f.0, l.0)?;
            writeln!(out, "first          {}", when::format(f.1))?;
            writeln!(out, "last           {}", when::format(l.1))?;
        }
        _ => writeln!(out, "seqs           (empty)")?,
    }
    writeln!(out, "by kind")?;
    for (kind, count) in per_kind.iter().filter(|(_, c)| **c > 0) {
        writeln!(out, "  {kind:<18} {count:>12}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let dir = args.location.resolve()?;
    let started = Instant::now();
    match caudal_journal::verify(&dir) {
        Ok(report) => {
            let secs = started.elapsed().as_secs_f64();
            let mbps = report.bytes as f64 / 1e6 / secs.max(1e-9);
            if args.json {
                let out = json!({
                    "ok": true, "journal": dir.display().to_string(), "entries": report.entries,
                    "bytes": report.bytes, "segments": report.segments, "first_seq": report.first_seq,
                    "last_seq": report.last_seq, "seconds": secs, "mb_per_s": mbps,
                });
                outln!("{out}");
            } else {
                outln!(
                    "ok: {} entries (seq {} .. {}) in {} segments, {} verified in {:.3} s ({:.0} MB/s): every CRC, payload hash and chain link holds",
                    report.entries,
                    report.first_seq,
                    report.last_seq,
                    report.segments,
                    human_bytes(report.bytes),
                    secs,
                    mbps
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            if args.json {
                let mut out = json!({ "ok": false, "journal": dir.display().to_string(), "error": err.to_string() });
                if let caudal_journal::Error::Damaged {
                    segment,
                    offset,
                    seq,
                    reason,
                } = &err
                {
                    out["segment"] = json!(segment);
                    out["offset"] = json!(offset);
                    out["seq"] = json!(seq);
                    out["reason"] = json!(reason);
                }
                outln!("{out}");
            } else {
                eprintln!("error: {err}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn payload_len(p: &Payload) -> u64 {
    match p {
        Payload::Inline(bytes) => bytes.len() as u64,
        Payload::Compacted { len, .. } => *len,
    }
}

/// The kind's fields as a JSON object (the kind's name is carried separately).
fn kind_fields(kind: &EntryKind) -> Value {
    match serde_json::to_value(kind) {
        Ok(Value::Object(mut outer)) if outer.len() == 1 => outer
            .values_mut()
            .next()
            .map(std::mem::take)
            .unwrap_or(Value::Null),
        Ok(other) => other,
        Err(e) => json!({ "unprintable": e.to_string() }),
    }
}

/// One entry as the JSON object `--json` prints.
pub fn entry_json(stored: &StoredEntry) -> Value {
    let e = &stored.entry;
    let mut obj = json!({
        "seq": e.seq,
        "time": when::format(e.time),
        "time_us": e.time,
        "run": e.run.map(|r| r.to_string()),
        "pipeline": e.pipeline,
        "kind": e.kind.name(),
        "fields": kind_fields(&e.kind),
        "payload_bytes": payload_len(&e.payload),
        "segment": stored.segment,
        "offset": stored.offset,
        "chain": stored.chain.to_string(),
    });
    if matches!(e.payload, Payload::Compacted { .. }) {
        obj["compacted"] = json!(true);
    }
    obj
}

/// `key=value` pairs of the kind's fields, for the table's last column.
fn details(e: &Entry) -> String {
    let mut parts = Vec::new();
    if let Value::Object(fields) = kind_fields(&e.kind) {
        for (k, v) in fields {
            let v = match v {
                Value::Null => continue,
                Value::String(s) => truncate(&s, 80),
                Value::Array(a) if a.is_empty() => continue,
                other => truncate(&other.to_string(), 80),
            };
            parts.push(format!("{k}={v}"));
        }
    }
    let n = payload_len(&e.payload);
    if n > 0 {
        parts.push(format!("payload={}", human_bytes(n)));
    }
    parts.join(" ")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max - 1).collect();
    format!("{cut}…")
}

/// Bytes with a binary unit, e.g. `64.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Prints entries as a table (header once) or as JSON lines.
struct Printer {
    json: bool,
    header_done: bool,
    out: io::BufWriter<io::Stdout>,
}

impl Printer {
    fn new(json: bool) -> Self {
        Self {
            json,
            header_done: false,
            out: io::BufWriter::new(io::stdout()),
        }
    }

    fn entry(&mut self, stored: &StoredEntry) -> io::Result<()> {
        if self.json {
            return writeln!(self.out, "{}", entry_json(stored));
        }
        if !self.header_done {
            writeln!(
                self.out,
                "{:>8}  {:<24}  {:<17}  {:<14}  {:<16}  DETAILS",
                "SEQ", "TIME", "KIND", "PIPELINE", "RUN"
            )?;
            self.header_done = true;
        }
        let e = &stored.entry;
        let run = e.run.map(|r| r.to_string()).unwrap_or_else(|| "-".into());
        let pipeline = if e.pipeline.is_empty() {
            "-".to_owned()
        } else {
            truncate(&e.pipeline, 14)
        };
        writeln!(
            self.out,
            "{:>8}  {:<24}  {:<17}  {:<14}  {:<16}  {}",
            e.seq,
            when::format(e.time),
            e.kind.name(),
            pipeline,
            run,
            details(e)
        )
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(mut self) -> io::Result<()> {
        if !self.json && !self.header_done {
            writeln!(self.out, "(no matching entries)")?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_case_insensitively_and_unknown_ones_are_named() {
        assert_eq!(parse_kind("batchread").unwrap(), "BatchRead");
        let err = parse_kind("BatchReed").unwrap_err().to_string();
        assert!(
            err.contains("BatchReed") && err.contains("WriteFailed"),
            "{err}"
        );
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(64 * 1024 * 1024), "64.0 MiB");
    }

    #[test]
    fn seq_bounds_and_filters_combine() {
        let f = Filter {
            from_seq: Some(3),
            to_seq: Some(5),
            ..Filter::default()
        };
        assert_eq!((f.first_seq(), f.last_seq()), (3, 5));
        assert!(f.by_seq_only());
        let f = Filter {
            kind: vec!["BatchRead"],
            ..Filter::default()
        };
        assert!(!f.by_seq_only());
    }
}
