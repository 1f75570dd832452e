//! `caudal replay --to CONNECTION`: writes journaled batches into a destination, fresh or
//! existing, from the journal alone.
//!
//! Batches are written with the same offset keys a run uses, so a destination that has some
//! of them skips those (its offset row says so) and a replay can be repeated or resumed. Per
//! stream (or partition) the batches are taken in seq order; for a snapshot stream only the
//! last snapshot that finished reading within the range is replayed (loaded into the staging
//! table and swapped in), since each snapshot replaces the one before.
//!
//! Which streams: `--stream`, else those whose `to` names the destination (rebuilding it),
//! else (a connection no stream writes: a fresh copy) every stream.

use std::collections::BTreeMap;
use std::sync::Arc;

use caudal_config::Mode;
use caudal_connector::Batch;
use caudal_journal::{EntryKind, Reader, RunId};

use super::instances::{self, Instance, Part};

use super::error::{EngineError, Result};
use super::plan::part_label;
use super::run::{Engine, pipeline_file};
use super::session::{Delivered, Delivery, Lane, Session};

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// The destination connection (a connection of the pipeline file).
    pub to: String,
    /// The journal's pipeline to take batches from (default: the file's pipeline).
    pub pipeline: Option<String>,
    /// Only this stream.
    pub stream: Option<String>,
    /// First seq considered.
    pub from_seq: Option<u64>,
    /// Last seq considered.
    pub to_seq: Option<u64>,
    /// Say what would be written, write nothing, journal nothing.
    pub dry_run: bool,
}

/// One part's replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPart {
    /// `stream` or `stream/partition`.
    pub label: String,
    /// Destination table.
    pub table: String,
    /// Batches selected.
    pub batches: u64,
    /// Rows in them.
    pub rows: u64,
    /// First and last seq selected.
    pub seqs: (u64, u64),
    /// Batches written (a dry run: that would be written).
    pub applied: u64,
    /// Batches the destination already had.
    pub skipped: u64,
    /// Why the part stopped early, if it did.
    pub error: Option<String>,
}

/// The result of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// The replay run (`None` for a dry run or when nothing was selected).
    pub run: Option<RunId>,
    /// Per part, sorted.
    pub parts: Vec<ReplayPart>,
}

impl ReplayReport {
    /// Whether every part was written completely.
    pub fn succeeded(&self) -> bool {
        self.parts.iter().all(|p| p.error.is_none())
    }
}

/// The batches selected for one part.
struct Selected {
    stream: String,
    partition: Option<String>,
    batches: Vec<(u64, u64)>,
}

impl Engine {
    /// Replays journaled batches into `options.to`. See the module documentation.
    pub fn replay(&self, options: &ReplayOptions) -> Result<ReplayReport> {
        if self.pipeline.connection(&options.to).is_none() {
            return Err(EngineError::Usage(format!(
                "--to {}: no such connection in {}",
                options.to,
                self.pipeline.path().display()
            )));
        }
        if let Some(s) = &options.stream
            && self.pipeline.stream(s).is_none()
        {
            return Err(EngineError::Usage(format!(
                "--stream {s}: no such stream in {}",
                self.pipeline.path().display()
            )));
        }
        let source = options
            .pipeline
            .clone()
            .unwrap_or_else(|| self.pipeline.name().to_owned());
        if source != self.pipeline.name() && !options.dry_run {
            return Err(EngineError::Usage(format!(
                "--pipeline {source}: writing batches of another pipeline needs that pipeline's \
                 file (its streams say which tables and modes); give it with --file"
            )));
        }
        if options.dry_run {
            let reader = Reader::open(&self.pipeline.journal_dir())?;
            let selected = self.select(&reader, &source, options)?;
            return Ok(self.dry_run(&source, options, selected));
        }
        let session = Session::open(Arc::clone(&self.pipeline), Arc::clone(&self.endpoints))?;
        let selected = self.select(&session.reader, &source, options)?;
        if selected.is_empty() {
            session.close()?;
            return Ok(ReplayReport {
                run: None,
                parts: Vec::new(),
            });
        }
        let result = self.write_replay(&session, options, selected);
        let closed = session.close();
        let report = result?;
        closed?;
        Ok(report)
    }

    /// The batches to replay, per part, from the journal.
    fn select(
        &self,
        reader: &Reader,
        source: &str,
        options: &ReplayOptions,
    ) -> Result<Vec<Selected>> {
        let mut parts: BTreeMap<Part, Vec<Instance>> = BTreeMap::new();
        let from = options.from_seq.unwrap_or(1);
        for stored in reader.entries_from(from)? {
            let e = stored?.entry;
            if options.to_seq.is_some_and(|to| e.seq > to) {
                break;
            }
            if e.pipeline != source {
                continue;
            }
            if let Some((stream, _)) = instances::part_of(&e.kind)
                && options.stream.as_ref().is_some_and(|s| s != stream)
            {
                continue;
            }
            instances::fold(&mut parts, &e);
        }
        // Streams that write into the destination are what rebuilding it means; a connection
        // no stream writes (a fresh copy) gets every stream.
        let writes_to = |stream: &str| {
            self.pipeline
                .stream(stream)
                .is_some_and(|s| s.destinations().iter().any(|d| d == &options.to))
        };
        let any_writes_to = parts.keys().any(|(stream, _)| writes_to(stream));
        let mut out = Vec::new();
        for ((stream, partition), instances) in parts {
            if any_writes_to && !writes_to(&stream) {
                continue;
            }
            let snapshot = self
                .pipeline
                .stream(&stream)
                .is_some_and(|s| s.mode() == Mode::Snapshot);
            let batches = instances::held(instances, snapshot);
            if !batches.is_empty() {
                out.push(Selected {
                    stream,
                    partition,
                    batches,
                });
            }
        }
        Ok(out)
    }

    fn dry_run(
        &self,
        source: &str,
        options: &ReplayOptions,
        selected: Vec<Selected>,
    ) -> ReplayReport {
        let pool = super::endpoint::ConnectionPool::new(
            Arc::clone(&self.pipeline),
            Arc::clone(&self.endpoints),
        );
        let parts = selected
            .into_iter()
            .map(|sel| {
                let label = part_label(&sel.stream, sel.partition.as_deref());
                let offset = pool.with(&options.to, |c| c.last_applied_seq(source, &label));
                let mut part = summary(&self.pipeline, &sel, label);
                match offset {
                    Ok(last) => {
                        let last = last.unwrap_or(0);
                        part.skipped =
                            sel.batches.iter().filter(|(s, _)| *s <= last).count() as u64;
                        part.applied = part.batches - part.skipped;
                    }
                    Err(e) => {
                        part.applied = part.batches;
                        part.error = Some(format!(
                            "cannot read the offset of `{}`: {}",
                            options.to, e.message
                        ));
                    }
                }
                part
            })
            .collect();
        pool.close_all();
        ReplayReport { run: None, parts }
    }

    fn write_replay(
        &self,
        session: &Session,
        options: &ReplayOptions,
        selected: Vec<Selected>,
    ) -> Result<ReplayReport> {
        session.record(
            EntryKind::RunStarted {
                pipeline_file: pipeline_file(&self.pipeline),
                trigger: "replay".into(),
                streams: selected
                    .iter()
                    .map(|s| part_label(&s.stream, s.partition.as_deref()))
                    .collect(),
                args: replay_args(options),
            },
            Vec::new(),
        )?;
        let mut report = ReplayReport {
            run: Some(session.run),
            parts: Vec::new(),
        };
        let (mut rows, mut batches) = (0, 0);
        for sel in selected {
            let label = part_label(&sel.stream, sel.partition.as_deref());
            let mut part = summary(&self.pipeline, &sel, label);
            let Some(stream) = self.pipeline.stream(&sel.stream) else {
                part.error = Some(format!(
                    "stream `{}` is not in {}: its table and mode are unknown",
                    sel.stream,
                    self.pipeline.path().display()
                ));
                report.parts.push(part);
                continue;
            };
            let mut lane = Lane::new(session, stream, sel.partition.as_deref(), &options.to);
            lane.blocked = false;
            let snapshot = stream.mode() == Mode::Snapshot;
            let count = sel.batches.len();
            for (i, &(seq, batch_rows)) in sel.batches.iter().enumerate() {
                let loaded = session.batch_bytes(seq).and_then(|bytes| {
                    let batch = Batch::decode(&bytes).map_err(|e| EngineError::Batch {
                        seq,
                        message: e.to_string(),
                    })?;
                    Ok((bytes, batch))
                });
                let (bytes, batch) = match loaded {
                    Ok(loaded) => loaded,
                    // This part cannot be replayed past here; the others still can.
                    Err(e @ EngineError::Batch { .. }) => {
                        part.error = Some(e.to_string());
                        break;
                    }
                    Err(other) => return Err(other),
                };
                let d = Delivery {
                    seq,
                    bytes: &bytes,
                    schema: batch.schema(),
                    rows: batch_rows,
                    first_of_instance: snapshot && i == 0,
                    swap: snapshot && i + 1 == count,
                    attempt: 1,
                };
                match session.deliver(&mut lane, &d, None)? {
                    Delivered::Applied => {
                        part.applied += 1;
                        rows += batch_rows;
                        batches += 1;
                    }
                    Delivered::AlreadyThere => part.skipped += 1,
                    Delivered::Failed => {
                        part.error = session
                            .projection
                            .lane(&lane.key)
                            .and_then(|l| l.failure)
                            .map(|f| f.error);
                        break;
                    }
                }
            }
            report.parts.push(part);
        }
        let ok = report.parts.iter().filter(|p| p.error.is_none()).count();
        session.record(
            EntryKind::RunCompleted {
                rows,
                batches,
                streams_ok: u32::try_from(ok).unwrap_or(u32::MAX),
                streams_failed: u32::try_from(report.parts.len() - ok).unwrap_or(u32::MAX),
                elapsed_us: session.elapsed_us(),
            },
            Vec::new(),
        )?;
        Ok(report)
    }
}

fn summary(pipeline: &caudal_config::Pipeline, sel: &Selected, label: String) -> ReplayPart {
    ReplayPart {
        label,
        table: pipeline
            .stream(&sel.stream)
            .map(|s| s.table().to_owned())
            .unwrap_or_default(),
        batches: sel.batches.len() as u64,
        rows: sel.batches.iter().map(|(_, r)| r).sum(),
        seqs: (
            sel.batches.first().map_or(0, |b| b.0),
            sel.batches.last().map_or(0, |b| b.0),
        ),
        applied: 0,
        skipped: 0,
        error: None,
    }
}

fn replay_args(o: &ReplayOptions) -> String {
    let mut args = vec![format!("--to {}", o.to)];
    if let Some(p) = &o.pipeline {
        args.push(format!("--pipeline {p}"));
    }
    if let Some(s) = &o.stream {
        args.push(format!("--stream {s}"));
    }
    if let Some(n) = o.from_seq {
        args.push(format!("--from-seq {n}"));
    }
    if let Some(n) = o.to_seq {
        args.push(format!("--to-seq {n}"));
    }
    args.join(" ")
}
