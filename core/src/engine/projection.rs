//! The projection: what the journal says about runs, streams and destinations, as one fold.
//!
//! [`Projection::apply`] folds one entry's metadata in (payloads are never needed). Everything
//! `caudal status`, `history` and `failures` show, and everything the engine decides from the
//! past (where an incremental read resumes, which journaled batches a destination still lacks,
//! which writes failed and when they are due again), is read from here, so it can always be
//! rebuilt from the journal alone.
//!
//! - A *part* is a stream, or one partition of it: [`PartKey`].
//! - A *lane* is a part's path into one destination: [`LaneKey`]. Each lane has its own
//!   offset row in its destination, so lanes advance (and fail) independently.
//!
//! Invariants: `PartRecord::pending` holds every journaled batch of the part that some current
//! lane has not applied yet (a snapshot's new instance drops the batches of the one it
//! supersedes); a lane's `applied_through` only grows; a lane's failure is cleared by a
//! `WriteApplied` at or after the failed batch.
//!
//! Concurrency: the maps are [`DashMap`]s, so partition workers fold their own entries while
//! others read. No code path holds a reference into one map while taking one in another, so
//! shard locks can never be taken in opposite orders.
//!
//! Checkpoint: [`Projection::save`] writes the folded state to `projection.json` in the
//! journal directory, with the seq and chain hash it covers; [`Projection::load`] starts from
//! it when that entry still has that hash (otherwise the journal was replaced: rebuild), and
//! folds only the entries after it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use caudal_config::Mode;
use caudal_journal::{Digest, EntryKind, Reader, RunId, Timestamp};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use super::cursor;
use super::error::{EngineError, Result};

/// The checkpoint file, inside the journal directory.
pub const CHECKPOINT_FILE: &str = "projection.json";
/// Bumped whenever the checkpoint's shape changes; an older checkpoint is rebuilt.
const CHECKPOINT_VERSION: u32 = 2;
/// Attempts kept per run for `history` (the journal has them all).
const MAX_ATTEMPTS_PER_RUN: usize = 200;
/// Error text kept per failure (the journal has it all).
const MAX_ERROR_CHARS: usize = 2000;

/// A stream, or one partition of it, in one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartKey {
    /// Pipeline name.
    pub pipeline: String,
    /// Stream name.
    pub stream: String,
    /// Source connection of a partitioned stream.
    pub partition: Option<String>,
}

/// A part's path into one destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LaneKey {
    /// The part.
    pub part: PartKey,
    /// Destination connection.
    pub destination: String,
}

/// How a run ended, as far as the journal knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// No end entry yet, and no later run of the pipeline: running, or killed.
    Running,
    /// `RunCompleted`.
    Completed,
    /// `RunFailed`.
    Failed,
    /// A later run of the same pipeline started before this one ended: it was killed.
    Interrupted,
}

/// One write attempt after the first failure, for `history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Seq of the entry.
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// `failed`, `applied` (an attempt after a failure) or `scheduled`.
    pub outcome: String,
    /// Stream name.
    pub stream: String,
    /// Partition.
    pub partition: Option<String>,
    /// Destination connection.
    pub destination: String,
    /// The batch.
    pub batch_seq: u64,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The destination's error, for a failed attempt.
    pub error: Option<String>,
    /// When a scheduled attempt is due.
    pub due: Option<Timestamp>,
}

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id, 16 hex digits.
    pub run: String,
    /// Pipeline name.
    pub pipeline: String,
    /// The pipeline file.
    pub pipeline_file: String,
    /// manual, schedule, retry or replay.
    pub trigger: String,
    /// The run's arguments.
    pub args: String,
    /// Streams covered.
    pub streams: Vec<String>,
    /// Seq of `RunStarted`.
    pub started_seq: u64,
    /// Start time.
    pub started_at: Timestamp,
    /// End time, once ended.
    pub ended_at: Option<Timestamp>,
    /// How it ended.
    pub state: RunState,
    /// The error of a failed run.
    pub error: Option<String>,
    /// Rows read.
    pub rows: u64,
    /// Batches read.
    pub batches: u64,
    /// Bytes of batches read.
    pub bytes: u64,
    /// Writes applied.
    pub writes_applied: u64,
    /// Writes failed.
    pub writes_failed: u64,
    /// Retries scheduled.
    pub retries_scheduled: u64,
    /// Parts completed without failures (from `RunCompleted`).
    pub streams_ok: u32,
    /// Parts with failures (from `RunCompleted`).
    pub streams_failed: u32,
    /// Wall time, once ended.
    pub elapsed_us: Option<u64>,
    /// Failed writes, scheduled retries and writes that succeeded after a failure.
    pub attempts: Vec<AttemptRecord>,
    /// Each stream or partition the run started, in the order it first started.
    #[serde(default)]
    pub parts: Vec<RunPart>,
}

/// How one stream or partition fared in one run: the source of the run's summary
/// ([`RunRecord::summaries`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPart {
    /// Stream name.
    pub stream: String,
    /// Source connection of a partitioned stream.
    pub partition: Option<String>,
    /// Times the run started reading it (`StreamStarted`): 1, more when a failed read was
    /// tried again.
    pub reads: u32,
    /// Rows read by the run.
    pub rows: u64,
    /// How it stands; final once the run has ended.
    pub outcome: RunPartOutcome,
}

/// Where a stream or partition of a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPartOutcome {
    /// Being read (or the run was killed while it was).
    Reading,
    /// Read to the end (`StreamCompleted`); the run has not ended yet.
    Read,
    /// Read to the end, and every destination had every batch when the run ended.
    Succeeded,
    /// Read to the end, but some destination still lacked batches when the run ended.
    WritesPending,
    /// The run ended without reading it to the end.
    ReadFailed,
}

impl RunPartOutcome {
    /// Whether the part counts as failed in a summary.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            RunPartOutcome::WritesPending | RunPartOutcome::ReadFailed
        )
    }
}

/// A run's summary of one stream: for a partitioned stream, per store (partition) of the
/// nightly job, how many there were, how many succeeded and failed, and the rows read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSummary {
    /// Stream name.
    pub stream: String,
    /// Whether the stream is partitioned (one part per source connection).
    pub partitioned: bool,
    /// Parts the run started.
    pub total: u32,
    /// Parts read to the end and applied to every destination.
    pub succeeded: u32,
    /// Parts whose read failed, or whose writes were still pending when the run ended.
    pub failed: u32,
    /// Parts still being read (a run that has not ended, or was killed).
    pub unfinished: u32,
    /// Rows read by the run.
    pub rows: u64,
    /// The failed partitions (or the stream's name when it is not partitioned).
    pub failed_parts: Vec<String>,
}

impl RunRecord {
    /// The run's summary per stream, in the order the streams first started.
    pub fn summaries(&self) -> Vec<StreamSummary> {
        let mut out: Vec<StreamSummary> = Vec::new();
        for p in &self.parts {
            let i = match out.iter().position(|s| s.stream == p.stream) {
                Some(i) => i,
                None => {
                    out.push(StreamSummary {
                        stream: p.stream.clone(),
                        partitioned: p.partition.is_some(),
                        total: 0,
                        succeeded: 0,
                        failed: 0,
                        unfinished: 0,
                        rows: 0,
                        failed_parts: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            let s = &mut out[i];
            s.total += 1;
            s.rows += p.rows;
            match p.outcome {
                RunPartOutcome::Succeeded => s.succeeded += 1,
                o if o.is_failure() => {
                    s.failed += 1;
                    s.failed_parts
                        .push(p.partition.clone().unwrap_or_else(|| p.stream.clone()));
                }
                _ => s.unfinished += 1,
            }
        }
        out
    }

    fn part_mut(&mut self, stream: &str, partition: Option<&String>) -> Option<&mut RunPart> {
        self.parts
            .iter_mut()
            .find(|p| p.stream == stream && p.partition.as_ref() == partition)
    }

    /// Settles every part's outcome when the run ends; `writes_pending` says which parts
    /// have a destination lacking batches.
    fn settle_parts(&mut self, writes_pending: &[(String, Option<String>)]) {
        for p in &mut self.parts {
            p.outcome = match p.outcome {
                RunPartOutcome::Reading => RunPartOutcome::ReadFailed,
                RunPartOutcome::Read
                    if writes_pending
                        .iter()
                        .any(|(s, q)| *s == p.stream && *q == p.partition) =>
                {
                    RunPartOutcome::WritesPending
                }
                RunPartOutcome::Read => RunPartOutcome::Succeeded,
                settled => settled,
            };
        }
    }
}

/// A journaled batch some lane still lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    /// Seq of its `BatchRead`.
    pub seq: u64,
    /// Rows.
    pub rows: u64,
    /// Encoded bytes.
    pub bytes: u64,
}

/// One stream or partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartRecord {
    /// Mode of the latest instance.
    pub mode: String,
    /// Source connection.
    pub source: String,
    /// Destinations of the latest instance.
    pub destinations: Vec<String>,
    /// Seq of the latest `StreamStarted`.
    pub started_seq: u64,
    /// Its time.
    pub started_at: Timestamp,
    /// The run it belongs to.
    pub run: Option<String>,
    /// Whether the latest instance finished reading (`StreamCompleted`).
    pub completed: bool,
    /// When it did.
    pub completed_at: Option<Timestamp>,
    /// Seq of the `StreamStarted` of the latest instance that finished reading.
    pub last_complete_start: Option<u64>,
    /// Cursor of the last batch journaled (tagged text, see `cursor.rs`).
    pub last_cursor: Option<String>,
    /// Rows read, all runs.
    pub rows: u64,
    /// Batches read, all runs.
    pub batches: u64,
    /// Rows read by the latest instance.
    pub instance_rows: u64,
    /// Seq of the latest instance's first batch.
    pub instance_first_seq: Option<u64>,
    /// Journaled batches not yet applied to every current destination, by seq.
    pub pending: Vec<BatchMeta>,
}

/// A failed write that is not applied yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneFailure {
    /// The batch that failed (the first of the lane's pending batches).
    pub batch_seq: u64,
    /// The destination's error (scrubbed of secrets).
    pub error: String,
    /// Attempts made for this batch.
    pub attempts: u32,
    /// Whether the destination said a retry may succeed.
    pub retryable: bool,
    /// When the last attempt failed.
    pub failed_at: Timestamp,
    /// When the next attempt is due, if one is scheduled.
    pub next_due: Option<Timestamp>,
}

/// One part's progress into one destination.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LaneRecord {
    /// The highest batch seq applied.
    pub applied_through: u64,
    /// Rows applied, all runs.
    pub applied_rows: u64,
    /// Batches applied, all runs.
    pub applied_batches: u64,
    /// When the last write was applied.
    pub last_applied_at: Option<Timestamp>,
    /// The outstanding failure, if any.
    pub failure: Option<LaneFailure>,
}

/// The folded state of a journal. See the module documentation.
#[derive(Debug, Default)]
pub struct Projection {
    through_seq: AtomicU64,
    runs: DashMap<u64, RunRecord>,
    parts: DashMap<PartKey, PartRecord>,
    lanes: DashMap<LaneKey, LaneRecord>,
}

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    version: u32,
    through_seq: u64,
    chain: Option<Digest>,
    runs: Vec<RunRecord>,
    parts: Vec<(PartKey, PartRecord)>,
    lanes: Vec<(LaneKey, LaneRecord)>,
}

fn clip(error: &str) -> String {
    match error.char_indices().nth(MAX_ERROR_CHARS) {
        Some((at, _)) => format!("{}…", &error[..at]),
        None => error.to_owned(),
    }
}

impl Projection {
    /// An empty projection (an empty journal).
    pub fn new() -> Projection {
        Projection::default()
    }

    /// The last seq folded in.
    pub fn through_seq(&self) -> u64 {
        self.through_seq.load(Ordering::Acquire)
    }

    /// Folds one entry in. Entries of one part must come in seq order; parts may interleave.
    pub fn apply(
        &self,
        seq: u64,
        time: Timestamp,
        run: Option<RunId>,
        pipeline: &str,
        kind: &EntryKind,
    ) {
        self.through_seq.fetch_max(seq, Ordering::AcqRel);
        let part = |stream: &str, partition: &Option<String>| PartKey {
            pipeline: pipeline.to_owned(),
            stream: stream.to_owned(),
            partition: partition.clone(),
        };
        match kind {
            EntryKind::RunStarted {
                pipeline_file,
                trigger,
                streams,
                args,
            } => {
                let Some(run) = run else { return };
                for mut r in self.runs.iter_mut() {
                    if r.pipeline == pipeline && r.state == RunState::Running {
                        r.state = RunState::Interrupted;
                    }
                }
                self.runs.insert(
                    run.0,
                    RunRecord {
                        run: run.to_string(),
                        pipeline: pipeline.to_owned(),
                        pipeline_file: pipeline_file.clone(),
                        trigger: trigger.clone(),
                        args: args.clone(),
                        streams: streams.clone(),
                        started_seq: seq,
                        started_at: time,
                        ended_at: None,
                        state: RunState::Running,
                        error: None,
                        rows: 0,
                        batches: 0,
                        bytes: 0,
                        writes_applied: 0,
                        writes_failed: 0,
                        retries_scheduled: 0,
                        streams_ok: 0,
                        streams_failed: 0,
                        elapsed_us: None,
                        attempts: Vec::new(),
                        parts: Vec::new(),
                    },
                );
            }
            EntryKind::StreamStarted {
                stream,
                partition,
                source,
                destinations,
                mode,
                ..
            } => {
                let key = part(stream, partition);
                let snapshot = mode == Mode::Snapshot.as_str();
                {
                    let mut p = self.parts.entry(key.clone()).or_insert_with(|| PartRecord {
                        mode: mode.clone(),
                        source: source.clone(),
                        destinations: Vec::new(),
                        started_seq: seq,
                        started_at: time,
                        run: None,
                        completed: false,
                        completed_at: None,
                        last_complete_start: None,
                        last_cursor: None,
                        rows: 0,
                        batches: 0,
                        instance_rows: 0,
                        instance_first_seq: None,
                        pending: Vec::new(),
                    });
                    p.mode = mode.clone();
                    p.source = source.clone();
                    p.destinations = destinations.clone();
                    p.started_seq = seq;
                    p.started_at = time;
                    p.run = run.map(|r| r.to_string());
                    p.completed = false;
                    p.instance_rows = 0;
                    p.instance_first_seq = None;
                    if snapshot {
                        // A new snapshot supersedes whatever the previous one left unapplied.
                        p.pending.clear();
                    }
                }
                if snapshot {
                    for mut lane in self.lanes.iter_mut() {
                        if lane.key().part == key {
                            lane.failure = None;
                        }
                    }
                }
                for d in destinations {
                    self.lanes
                        .entry(LaneKey {
                            part: key.clone(),
                            destination: d.clone(),
                        })
                        .or_default();
                }
                self.with_run(run, |r| match r.part_mut(stream, partition.as_ref()) {
                    Some(p) => {
                        p.reads += 1;
                        p.outcome = RunPartOutcome::Reading;
                    }
                    None => r.parts.push(RunPart {
                        stream: stream.clone(),
                        partition: partition.clone(),
                        reads: 1,
                        rows: 0,
                        outcome: RunPartOutcome::Reading,
                    }),
                });
            }
            EntryKind::BatchRead {
                stream,
                partition,
                rows,
                bytes,
                cursor_high,
                ..
            } => {
                if let Some(mut p) = self.parts.get_mut(&part(stream, partition)) {
                    p.pending.push(BatchMeta {
                        seq,
                        rows: *rows,
                        bytes: *bytes,
                    });
                    p.rows += rows;
                    p.batches += 1;
                    p.instance_rows += rows;
                    // The high-water mark: a manual range over older rows must not move it back.
                    if let Some(high) = cursor_high {
                        let newer = p.last_cursor.as_deref().is_none_or(|old| {
                            cursor::compare(high, old) != Some(std::cmp::Ordering::Less)
                        });
                        if newer {
                            p.last_cursor = Some(high.clone());
                        }
                    }
                    if p.instance_first_seq.is_none() {
                        p.instance_first_seq = Some(seq);
                    }
                }
                self.with_run(run, |r| {
                    r.rows += rows;
                    r.batches += 1;
                    r.bytes += bytes;
                    if let Some(p) = r.part_mut(stream, partition.as_ref()) {
                        p.rows += rows;
                    }
                });
            }
            EntryKind::WriteApplied {
                stream,
                partition,
                destination,
                batch_seq,
                rows,
                attempt,
                ..
            } => {
                let key = part(stream, partition);
                {
                    let mut lane = self
                        .lanes
                        .entry(LaneKey {
                            part: key.clone(),
                            destination: destination.clone(),
                        })
                        .or_default();
                    lane.applied_through = lane.applied_through.max(*batch_seq);
                    lane.applied_rows += rows;
                    lane.applied_batches += 1;
                    lane.last_applied_at = Some(time);
                    if lane
                        .failure
                        .as_ref()
                        .is_some_and(|f| f.batch_seq <= *batch_seq)
                    {
                        lane.failure = None;
                    }
                }
                self.prune(&key);
                let after_failure = *attempt > 1;
                self.with_run(run, |r| {
                    r.writes_applied += 1;
                    if after_failure {
                        push_attempt(r, attempt_record(seq, time, "applied", kind));
                    }
                });
            }
            EntryKind::WriteFailed {
                stream,
                partition,
                destination,
                batch_seq,
                error,
                attempt,
                retryable,
            } => {
                let mut lane = self
                    .lanes
                    .entry(LaneKey {
                        part: part(stream, partition),
                        destination: destination.clone(),
                    })
                    .or_default();
                lane.failure = Some(LaneFailure {
                    batch_seq: *batch_seq,
                    error: clip(error),
                    attempts: *attempt,
                    retryable: *retryable,
                    failed_at: time,
                    next_due: None,
                });
                drop(lane);
                self.with_run(run, |r| {
                    r.writes_failed += 1;
                    push_attempt(r, attempt_record(seq, time, "failed", kind));
                });
            }
            EntryKind::RetryScheduled {
                stream,
                partition,
                destination,
                batch_seq,
                due,
                ..
            } => {
                let key = LaneKey {
                    part: part(stream, partition),
                    destination: destination.clone(),
                };
                if let Some(mut lane) = self.lanes.get_mut(&key)
                    && let Some(f) = lane.failure.as_mut()
                    && f.batch_seq == *batch_seq
                {
                    f.next_due = Some(*due);
                }
                self.with_run(run, |r| {
                    r.retries_scheduled += 1;
                    push_attempt(r, attempt_record(seq, time, "scheduled", kind));
                });
            }
            EntryKind::StreamCompleted {
                stream, partition, ..
            } => {
                if let Some(mut p) = self.parts.get_mut(&part(stream, partition)) {
                    p.completed = true;
                    p.completed_at = Some(time);
                    p.last_complete_start = Some(p.started_seq);
                }
                self.with_run(run, |r| {
                    if let Some(p) = r.part_mut(stream, partition.as_ref()) {
                        p.outcome = RunPartOutcome::Read;
                    }
                });
            }
            EntryKind::RunCompleted {
                streams_ok,
                streams_failed,
                elapsed_us,
                ..
            } => {
                let pending = self.parts_with_failing_lanes(pipeline);
                self.with_run(run, |r| {
                    r.state = RunState::Completed;
                    r.ended_at = Some(time);
                    r.elapsed_us = Some(*elapsed_us);
                    r.streams_ok = *streams_ok;
                    r.streams_failed = *streams_failed;
                    r.settle_parts(&pending);
                });
            }
            EntryKind::RunFailed { error, elapsed_us } => {
                let pending = self.parts_with_failing_lanes(pipeline);
                self.with_run(run, |r| {
                    r.state = RunState::Failed;
                    r.ended_at = Some(time);
                    r.elapsed_us = Some(*elapsed_us);
                    r.error = Some(clip(error));
                    r.settle_parts(&pending);
                });
            }
            _ => {}
        }
    }

    /// `(stream, partition)` of every part of `pipeline` with a destination that has an
    /// outstanding failure.
    fn parts_with_failing_lanes(&self, pipeline: &str) -> Vec<(String, Option<String>)> {
        let mut out: Vec<(String, Option<String>)> = self
            .lanes
            .iter()
            .filter(|l| l.key().part.pipeline == pipeline && l.failure.is_some())
            .map(|l| (l.key().part.stream.clone(), l.key().part.partition.clone()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn with_run(&self, run: Option<RunId>, f: impl FnOnce(&mut RunRecord)) {
        if let Some(run) = run
            && let Some(mut r) = self.runs.get_mut(&run.0)
        {
            f(&mut r);
        }
    }

    /// Drops the part's pending batches that every current lane has applied.
    fn prune(&self, key: &PartKey) {
        let destinations = match self.parts.get(key) {
            Some(p) => p.destinations.clone(),
            None => return,
        };
        let low = destinations
            .into_iter()
            .map(|destination| {
                self.lanes
                    .get(&LaneKey {
                        part: key.clone(),
                        destination,
                    })
                    .map_or(0, |l| l.applied_through)
            })
            .min()
            .unwrap_or(0);
        if let Some(mut p) = self.parts.get_mut(key) {
            p.pending.retain(|b| b.seq > low);
        }
    }

    /// A part's record.
    pub fn part(&self, key: &PartKey) -> Option<PartRecord> {
        self.parts.get(key).map(|p| p.clone())
    }

    /// A lane's record.
    pub fn lane(&self, key: &LaneKey) -> Option<LaneRecord> {
        self.lanes.get(key).map(|l| l.clone())
    }

    /// Lanes of `pipeline` with journaled batches to apply and no failed write: the command
    /// that was writing them stopped (killed) before it applied them, or is still writing. A
    /// snapshot that did not finish reading is left out: the next run reads it anew.
    pub fn interrupted_lanes(&self, pipeline: &str) -> Vec<LaneKey> {
        let mut out: Vec<LaneKey> = self
            .lanes
            .iter()
            .filter(|l| l.key().part.pipeline == pipeline && l.failure.is_none())
            .map(|l| l.key().clone())
            .filter(|k| {
                self.parts.get(&k.part).is_some_and(|p| {
                    p.destinations.contains(&k.destination)
                        && (p.mode != Mode::Snapshot.as_str() || p.completed)
                }) && !self.pending(k).is_empty()
            })
            .collect();
        out.sort();
        out
    }

    /// The journaled batches a lane has not applied yet, in seq order.
    pub fn pending(&self, key: &LaneKey) -> Vec<BatchMeta> {
        let applied = self.lanes.get(key).map_or(0, |l| l.applied_through);
        self.parts.get(&key.part).map_or_else(Vec::new, |p| {
            p.pending
                .iter()
                .filter(|b| b.seq > applied)
                .copied()
                .collect()
        })
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Vec<RunRecord> {
        let mut runs: Vec<RunRecord> = self.runs.iter().map(|r| r.clone()).collect();
        runs.sort_by_key(|r| r.started_seq);
        runs
    }

    /// One run.
    pub fn run(&self, run: RunId) -> Option<RunRecord> {
        self.runs.get(&run.0).map(|r| r.clone())
    }

    /// Every part, sorted by key.
    pub fn parts(&self) -> BTreeMap<PartKey, PartRecord> {
        self.parts
            .iter()
            .map(|p| (p.key().clone(), p.value().clone()))
            .collect()
    }

    /// Every lane, sorted by key.
    pub fn lanes(&self) -> BTreeMap<LaneKey, LaneRecord> {
        self.lanes
            .iter()
            .map(|l| (l.key().clone(), l.value().clone()))
            .collect()
    }

    /// Folds every entry of the journal after [`Projection::through_seq`].
    pub fn catch_up(&self, reader: &Reader) -> Result<()> {
        for stored in reader.entries_from(self.through_seq() + 1)? {
            let e = stored?.entry;
            self.apply(e.seq, e.time, e.run, &e.pipeline, &e.kind);
        }
        Ok(())
    }

    /// The projection of the journal in `dir`: from the checkpoint when it is still valid,
    /// then every later entry.
    pub fn load(dir: &Path) -> Result<Projection> {
        Projection::load_reporting(dir).map(|(p, _)| p)
    }

    /// [`Projection::load`], also saying whether the checkpoint could not be used and every
    /// entry was folded again.
    pub fn load_reporting(dir: &Path) -> Result<(Projection, bool)> {
        let reader = Reader::open(dir)?;
        let checkpoint = Projection::from_checkpoint(&reader);
        let rebuilt = checkpoint.is_none();
        let projection = checkpoint.unwrap_or_default();
        projection.catch_up(&reader)?;
        Ok((projection, rebuilt))
    }

    /// The checkpoint's state if the file exists, parses, and still matches the journal.
    fn from_checkpoint(reader: &Reader) -> Option<Projection> {
        let bytes = std::fs::read(checkpoint_path(reader.dir())).ok()?;
        let c: Checkpoint = serde_json::from_slice(&bytes).ok()?;
        if c.version != CHECKPOINT_VERSION {
            return None;
        }
        if c.through_seq > 0 {
            // The entry the checkpoint ends at must still be the same entry: a journal that
            // was replaced or truncated gets a rebuild.
            let stored = reader.get(c.through_seq).ok()??;
            if Some(stored.chain) != c.chain {
                return None;
            }
        }
        Some(Projection {
            through_seq: AtomicU64::new(c.through_seq),
            runs: c
                .runs
                .into_iter()
                .filter_map(|r| r.run.parse::<RunId>().ok().map(|id| (id.0, r)))
                .collect(),
            parts: c.parts.into_iter().collect(),
            lanes: c.lanes.into_iter().collect(),
        })
    }

    /// Writes the checkpoint next to the journal's segments (atomically: a temporary file,
    /// then a rename). Entries folded in must all be in the journal.
    pub fn save(&self, reader: &Reader) -> Result<()> {
        let path = checkpoint_path(reader.dir());
        let fail = |message: String| EngineError::Checkpoint {
            path: path.clone(),
            message,
        };
        let through_seq = self.through_seq();
        let chain = match through_seq {
            0 => None,
            seq => Some(
                reader
                    .get(seq)?
                    .ok_or_else(|| fail(format!("the journal has no entry {seq} yet")))?
                    .chain,
            ),
        };
        let checkpoint = Checkpoint {
            version: CHECKPOINT_VERSION,
            through_seq,
            chain,
            runs: self.runs(),
            parts: self.parts().into_iter().collect(),
            lanes: self.lanes().into_iter().collect(),
        };
        let bytes = serde_json::to_vec(&checkpoint).map_err(|e| fail(e.to_string()))?;
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|e| fail(format!("writing {}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(format!("renaming {} into place: {e}", tmp.display()))
        })
    }
}

/// Where the checkpoint of the journal in `dir` lives.
pub fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_FILE)
}

fn push_attempt(run: &mut RunRecord, attempt: AttemptRecord) {
    if run.attempts.len() < MAX_ATTEMPTS_PER_RUN {
        run.attempts.push(attempt);
    }
}

fn attempt_record(seq: u64, at: Timestamp, outcome: &str, kind: &EntryKind) -> AttemptRecord {
    let mut a = AttemptRecord {
        seq,
        at,
        outcome: outcome.to_owned(),
        stream: String::new(),
        partition: None,
        destination: String::new(),
        batch_seq: 0,
        attempt: 0,
        error: None,
        due: None,
    };
    match kind {
        EntryKind::WriteApplied {
            stream,
            partition,
            destination,
            batch_seq,
            attempt,
            ..
        } => {
            (a.stream, a.partition, a.destination) =
                (stream.clone(), partition.clone(), destination.clone());
            (a.batch_seq, a.attempt) = (*batch_seq, *attempt);
        }
        EntryKind::WriteFailed {
            stream,
            partition,
            destination,
            batch_seq,
            attempt,
            error,
            ..
        } => {
            (a.stream, a.partition, a.destination) =
                (stream.clone(), partition.clone(), destination.clone());
            (a.batch_seq, a.attempt) = (*batch_seq, *attempt);
            a.error = Some(clip(error));
        }
        EntryKind::RetryScheduled {
            stream,
            partition,
            destination,
            batch_seq,
            attempt,
            due,
        } => {
            (a.stream, a.partition, a.destination) =
                (stream.clone(), partition.clone(), destination.clone());
            (a.batch_seq, a.attempt) = (*batch_seq, *attempt);
            a.due = Some(*due);
        }
        _ => {}
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(p: &Projection, seq: u64, run: u64, pipeline: &str) {
        p.apply(
            seq,
            seq as i64,
            Some(RunId(run)),
            pipeline,
            &EntryKind::RunStarted {
                pipeline_file: "p.toml".into(),
                trigger: "manual".into(),
                streams: vec!["s".into()],
                args: String::new(),
            },
        );
    }

    #[test]
    fn a_run_that_never_ended_is_interrupted_by_the_next_one_of_its_pipeline() {
        let p = Projection::new();
        started(&p, 1, 1, "a");
        started(&p, 2, 2, "b");
        assert_eq!(p.run(RunId(1)).unwrap().state, RunState::Running);
        started(&p, 3, 3, "a");
        assert_eq!(p.run(RunId(1)).unwrap().state, RunState::Interrupted);
        assert_eq!(
            p.run(RunId(2)).unwrap().state,
            RunState::Running,
            "other pipeline"
        );
        p.apply(
            4,
            4,
            Some(RunId(3)),
            "a",
            &EntryKind::RunFailed {
                error: "x".repeat(MAX_ERROR_CHARS + 10),
                elapsed_us: 7,
            },
        );
        let r = p.run(RunId(3)).unwrap();
        assert_eq!(r.state, RunState::Failed);
        assert_eq!(r.elapsed_us, Some(7));
        assert!(r.error.unwrap().ends_with('…'), "long errors are clipped");
        assert_eq!(p.through_seq(), 4);
        let order: Vec<String> = p.runs().into_iter().map(|r| r.run).collect();
        assert_eq!(order, [RunId(1), RunId(2), RunId(3)].map(|r| r.to_string()));
    }

    #[test]
    fn a_run_summary_counts_partitions_by_how_they_ended() {
        let p = Projection::new();
        started(&p, 1, 7, "ventas");
        let run = Some(RunId(7));
        let seq = std::cell::Cell::new(1u64);
        let next = |kind: EntryKind| {
            seq.set(seq.get() + 1);
            p.apply(seq.get(), seq.get() as i64, run, "ventas", &kind);
        };
        let start = |store: &str| EntryKind::StreamStarted {
            stream: "ventas".into(),
            partition: Some(store.into()),
            source: store.into(),
            destinations: vec!["wh".into()],
            mode: "incremental".into(),
            resume_cursor: None,
        };
        let batch = |store: &str, rows: u64| EntryKind::BatchRead {
            stream: "ventas".into(),
            partition: Some(store.into()),
            schema_id: 0,
            rows,
            bytes: 1,
            cursor_low: None,
            cursor_high: None,
            digest: Digest::default(),
        };
        let done = |store: &str| EntryKind::StreamCompleted {
            stream: "ventas".into(),
            partition: Some(store.into()),
            rows: 0,
            batches: 0,
            failed_batches: 0,
        };
        // t1 reads and applies; t2 fails twice, then reads; t3 never reads; t4's write fails.
        for store in ["t1", "t2", "t3", "t4"] {
            next(start(store));
        }
        next(batch("t1", 10));
        next(done("t1"));
        next(start("t2"));
        next(start("t2"));
        next(batch("t2", 5));
        next(done("t2"));
        next(batch("t4", 3));
        next(EntryKind::WriteFailed {
            stream: "ventas".into(),
            partition: Some("t4".into()),
            destination: "wh".into(),
            batch_seq: seq.get(),
            error: "down".into(),
            attempt: 1,
            retryable: true,
        });
        next(done("t4"));
        let running = p.run(RunId(7)).unwrap().summaries();
        assert_eq!((running[0].unfinished, running[0].succeeded), (4, 0));
        next(EntryKind::RunFailed {
            error: "t3 could not be read".into(),
            elapsed_us: 1,
        });
        let r = p.run(RunId(7)).unwrap();
        let s = &r.summaries()[0];
        assert_eq!(
            (s.total, s.succeeded, s.failed, s.unfinished, s.rows),
            (4, 2, 2, 0, 18)
        );
        assert!(s.partitioned);
        assert_eq!(s.failed_parts, ["t3", "t4"]);
        let t2 = r
            .parts
            .iter()
            .find(|p| p.partition.as_deref() == Some("t2"));
        assert_eq!(
            t2.map(|p| (p.reads, p.outcome)),
            Some((3, RunPartOutcome::Succeeded))
        );
        let t4 = r
            .parts
            .iter()
            .find(|p| p.partition.as_deref() == Some("t4"));
        assert_eq!(t4.map(|p| p.outcome), Some(RunPartOutcome::WritesPending));
    }

    #[test]
    fn pending_batches_leave_once_every_lane_has_them() {
        let p = Projection::new();
        let kind_started = EntryKind::StreamStarted {
            stream: "s".into(),
            partition: None,
            source: "src".into(),
            destinations: vec!["a".into(), "b".into()],
            mode: "incremental".into(),
            resume_cursor: None,
        };
        p.apply(1, 1, None, "p", &kind_started);
        for seq in [2, 3] {
            p.apply(
                seq,
                seq as i64,
                None,
                "p",
                &EntryKind::BatchRead {
                    stream: "s".into(),
                    partition: None,
                    schema_id: 0,
                    rows: 10,
                    bytes: 100,
                    cursor_low: None,
                    cursor_high: Some(format!("int:{}", 10 - seq)),
                    digest: Digest::default(),
                },
            );
        }
        let lane = |d: &str| LaneKey {
            part: PartKey {
                pipeline: "p".into(),
                stream: "s".into(),
                partition: None,
            },
            destination: d.into(),
        };
        let applied = |seq: u64, batch_seq: u64, d: &str| {
            p.apply(
                seq,
                seq as i64,
                None,
                "p",
                &EntryKind::WriteApplied {
                    stream: "s".into(),
                    partition: None,
                    destination: d.into(),
                    batch_seq,
                    rows: 10,
                    attempt: 1,
                    elapsed_us: 1,
                },
            )
        };
        applied(4, 2, "a");
        applied(5, 3, "a");
        assert!(p.pending(&lane("a")).is_empty());
        assert_eq!(p.pending(&lane("b")).len(), 2);
        applied(6, 2, "b");
        let part = p.part(&lane("b").part).unwrap();
        assert_eq!(part.pending.iter().map(|b| b.seq).collect::<Vec<_>>(), [3]);
        // The cursor is the highest journaled, not the latest.
        assert_eq!(part.last_cursor.as_deref(), Some("int:8"));
    }
}
