//! `caudal run`: one run of a pipeline, as DESIGN.md's data flow.
//!
//! ```text
//! RunStarted
//!   per task (stream or partition), in parallel:
//!     StreamStarted
//!     pending batches of earlier runs -> each destination, from the journal
//!     source chunk -> BatchRead (durable) -> write to each destination -> WriteApplied | WriteFailed
//!     (merge: BatchRead of deleted keys; snapshot: swap the staging table in)
//!     StreamCompleted
//!   retries that fall due while the run waits (re-read from the journal, never the source)
//! RunCompleted | RunFailed
//! ```
//!
//! A task whose source cannot be read ends without `StreamCompleted` and the run ends with
//! `RunFailed` naming it; the other tasks carry on. A write that fails blocks only its lane
//! (that part into that destination); later batches are still journaled and reach that
//! destination, in order, once the failed one is applied.

use std::collections::HashSet;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use caudal_config::{Mode, Pipeline};
use caudal_connector::{Batch, ChunkLimits, ReadRequest, ReadTarget, TableDigest, Value};
use caudal_journal::{Digest, EntryKind, Payload};

use super::cursor::{self, CursorKind};
use super::endpoint::{ChunkReader, Endpoints};
use super::error::{EngineError, Result};
use super::plan::{self, Task};
use super::progress::Progress;
use super::projection::PartKey;
use super::rebuild::{self, RebuildOptions, RebuildReport};
use super::session::{Delivery, Lane, Session, until};
use super::shape::{self, Shape, is_delete_batch};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Only these streams (all when empty).
    pub streams: Vec<String>,
    /// Only these source connections of partitioned streams (all when empty).
    pub partitions: Vec<String>,
    /// Manual range: read cursor values from this one (inclusive).
    pub from: Option<String>,
    /// Manual range: read cursor values before this one (exclusive).
    pub to: Option<String>,
    /// Why the run happens: `manual`, `schedule`, ...
    pub trigger: String,
    /// Wait for retries that the policy schedules, and make them, before the run ends.
    pub wait_for_retries: bool,
    /// Tasks run at the same time.
    pub jobs: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            streams: Vec::new(),
            partitions: Vec::new(),
            from: None,
            to: None,
            trigger: "manual".into(),
            wait_for_retries: true,
            jobs: 4,
        }
    }
}

impl RunOptions {
    /// The arguments as journaled in `RunStarted`.
    fn args_text(&self) -> String {
        let mut args = Vec::new();
        for s in &self.streams {
            args.push(format!("--stream {s}"));
        }
        for p in &self.partitions {
            args.push(format!("--partition {p}"));
        }
        if let Some(f) = &self.from {
            args.push(format!("--from {f}"));
        }
        if let Some(t) = &self.to {
            args.push(format!("--to {t}"));
        }
        args.join(" ")
    }
}

/// How one task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PartOutcome {
    /// Read completely and applied to every destination.
    Ok,
    /// Read completely; some destinations still lack batches (listed by `caudal failures`).
    WritesPending {
        /// `(destination, first unapplied batch seq, error)` per failing lane.
        lanes: Vec<(String, u64, String)>,
    },
    /// The source could not be read to the end.
    ReadFailed(String),
}

/// One task's result.
#[derive(Debug, Clone, PartialEq)]
pub struct PartReport {
    /// `stream` or `stream/partition`.
    pub label: String,
    /// Rows read by this run.
    pub rows: u64,
    /// Batches journaled by this run.
    pub batches: u64,
    /// How it ended.
    pub outcome: PartOutcome,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The run's id.
    pub run: caudal_journal::RunId,
    /// Per task.
    pub parts: Vec<PartReport>,
    /// Rows read.
    pub rows: u64,
    /// Batches journaled.
    pub batches: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Earlier rebuilds that had not finished, made again before the run read anything.
    pub rebuilds: Vec<RepairedRebuild>,
}

impl RunReport {
    /// Whether every task read everything, every destination has every batch, and every
    /// unfinished rebuild was finished.
    pub fn succeeded(&self) -> bool {
        self.parts.iter().all(|p| p.outcome == PartOutcome::Ok)
            && self.rebuilds.iter().all(RepairedRebuild::succeeded)
    }
}

/// A rebuild that an earlier command started and did not finish (see [`rebuild::unfinished`]),
/// made again by a run before it read anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairedRebuild {
    /// Its connection, and table if it was one table's.
    pub scope: RebuildOptions,
    /// The rebuild, or why it could not be made (the next run tries again).
    pub result: std::result::Result<RebuildReport, String>,
}

impl RepairedRebuild {
    /// Whether every table of it was rebuilt.
    pub fn succeeded(&self) -> bool {
        self.result.as_ref().is_ok_and(RebuildReport::succeeded)
    }

    /// Rows written, and why it failed (each table's error, or why it could not start).
    pub fn outcome(&self) -> (u64, Option<String>) {
        match &self.result {
            Ok(report) => {
                let errors: Vec<String> = report
                    .tables
                    .iter()
                    .filter_map(|t| {
                        t.error
                            .as_ref()
                            .map(|e| format!("table `{}`: {e}", t.table))
                    })
                    .collect();
                let rows = report.tables.iter().map(|t| t.rows).sum();
                (rows, (!errors.is_empty()).then(|| errors.join("; ")))
            }
            Err(e) => (0, Some(e.clone())),
        }
    }
}

/// Runs pipelines.
pub struct Engine {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) endpoints: Arc<dyn Endpoints>,
    pub(crate) progress: Arc<dyn Progress>,
}

impl Engine {
    /// An engine for `pipeline`, opening connections through `endpoints`.
    pub fn new(
        pipeline: Arc<Pipeline>,
        endpoints: Arc<dyn Endpoints>,
        progress: Arc<dyn Progress>,
    ) -> Engine {
        Engine {
            pipeline,
            endpoints,
            progress,
        }
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Checks a run's options against the pipeline without running anything: unknown streams
    /// or partitions, a manual range on a stream without a cursor.
    pub fn check(&self, options: &RunOptions) -> Result<()> {
        self.plan(options).map(drop)
    }

    fn plan(&self, options: &RunOptions) -> Result<Vec<Task<'_>>> {
        let tasks = plan::tasks(&self.pipeline, &options.streams, &options.partitions)?;
        plan::waves(tasks.clone())?;
        if options.from.is_some() || options.to.is_some() {
            for t in &tasks {
                if t.stream.cursor().is_none() {
                    return Err(EngineError::Usage(format!(
                        "--from/--to need a cursor column, and stream `{}` has none",
                        t.stream.name()
                    )));
                }
            }
        }
        Ok(tasks)
    }

    /// One run. Usage errors come before anything is journaled.
    pub fn run(&self, options: &RunOptions) -> Result<RunReport> {
        let tasks = self.plan(options)?;
        let session = Session::open(Arc::clone(&self.pipeline), Arc::clone(&self.endpoints))?;
        let (session, rebuilds) = self.finish_rebuilds(session)?;
        let labels: Vec<String> = tasks.iter().map(Task::label).collect();
        session.record(
            EntryKind::RunStarted {
                pipeline_file: pipeline_file(&self.pipeline),
                trigger: options.trigger.clone(),
                streams: labels,
                args: options.args_text(),
            },
            Vec::new(),
        )?;
        let runner = Runner {
            session: &session,
            options,
            progress: &*self.progress,
        };
        let result = runner.run_all(&tasks);
        let finished = match result {
            Ok(parts) => runner.finish(parts),
            Err(e) => {
                let error = self.pipeline.scrub(&e.to_string()).into_owned();
                let _ = session.record(
                    EntryKind::RunFailed {
                        error,
                        elapsed_us: session.elapsed_us(),
                    },
                    Vec::new(),
                );
                Err(e)
            }
        };
        let closed = session.close();
        let mut report = finished?;
        closed?;
        report.rebuilds = rebuilds;
        Ok(report)
    }

    /// Makes again, before a run, each rebuild of this pipeline's connections that did not
    /// finish ([`rebuild::unfinished`]): such a rebuild left a table partly written under
    /// offsets that may say it is whole, and the run would only add to it. `session` is
    /// closed for them (each rebuild is a run of its own) and opened again.
    fn finish_rebuilds(&self, session: Session) -> Result<(Session, Vec<RepairedRebuild>)> {
        let scopes = self.unfinished_rebuilds(&session, None);
        if scopes.is_empty() {
            return Ok((session, Vec::new()));
        }
        session.close()?;
        let done = self.rebuild_again(scopes);
        let session = Session::open(Arc::clone(&self.pipeline), Arc::clone(&self.endpoints))?;
        Ok((session, done))
    }

    /// [`Engine::run`]'s first step for one connection alone: makes again each rebuild into
    /// `connection` that did not finish (`caudal project redis` before it replays).
    pub fn finish_rebuilds_of(&self, connection: &str) -> Result<Vec<RepairedRebuild>> {
        let session = Session::open(Arc::clone(&self.pipeline), Arc::clone(&self.endpoints))?;
        let scopes = self.unfinished_rebuilds(&session, Some(connection));
        session.close()?;
        Ok(self.rebuild_again(scopes))
    }

    /// The unfinished rebuilds of this pipeline (into `connection` only, if given) that some
    /// stream still writes into.
    fn unfinished_rebuilds(
        &self,
        session: &Session,
        connection: Option<&str>,
    ) -> Vec<RebuildOptions> {
        let runs: Vec<_> = session
            .projection
            .runs()
            .into_iter()
            .filter(|r| r.pipeline == self.pipeline.name())
            .collect();
        rebuild::unfinished(&runs)
            .into_iter()
            .filter(|o| connection.is_none_or(|c| c == o.connection))
            .filter(|o| !self.rebuild_targets(o).is_empty())
            .collect()
    }

    /// Runs each rebuild in `scopes`, each in a session of its own; a failure is reported, not
    /// fatal: the next run tries again.
    fn rebuild_again(&self, scopes: Vec<RebuildOptions>) -> Vec<RepairedRebuild> {
        let mut done = Vec::with_capacity(scopes.len());
        for scope in scopes {
            let table = scope.table.as_deref().unwrap_or("(every table)");
            tracing::warn!(
                connection = %scope.connection,
                table,
                "an earlier rebuild did not finish: rebuilding it first"
            );
            let result = self
                .rebuild(&scope)
                .map_err(|e| self.pipeline.scrub(&e.to_string()).into_owned());
            match &result {
                Ok(r) if r.succeeded() => tracing::info!(
                    connection = %scope.connection,
                    table,
                    rows = r.tables.iter().map(|t| t.rows).sum::<u64>(),
                    "rebuilt"
                ),
                Ok(r) => {
                    for t in r.tables.iter().filter(|t| t.error.is_some()) {
                        tracing::warn!(
                            connection = %scope.connection,
                            table = %t.table,
                            error = t.error.as_deref().unwrap_or_default(),
                            "rebuild failed; the next run tries again"
                        );
                    }
                }
                Err(e) => tracing::warn!(
                    connection = %scope.connection,
                    table,
                    error = %e,
                    "rebuild failed; the next run tries again"
                ),
            }
            done.push(RepairedRebuild { scope, result });
        }
        done
    }
}

/// The pipeline file as journaled: absolute, so `caudal retry` finds it from anywhere.
pub(crate) fn pipeline_file(pipeline: &Pipeline) -> String {
    std::path::absolute(pipeline.path())
        .unwrap_or_else(|_| pipeline.path().to_path_buf())
        .display()
        .to_string()
}

struct Runner<'a> {
    session: &'a Session,
    options: &'a RunOptions,
    progress: &'a dyn Progress,
}

/// What a task leaves for the retry phase.
struct TaskResult<'p> {
    report: PartReport,
    lanes: Vec<Lane<'p>>,
    /// Times the source was read by this run.
    read_attempts: u32,
    /// When the source is to be read again, after it failed.
    read_due: Option<i64>,
}

impl<'a> Runner<'a> {
    fn run_all<'p>(&self, tasks: &[Task<'p>]) -> Result<Vec<PartReport>> {
        let mut ordered: Vec<Task<'p>> = Vec::with_capacity(tasks.len());
        let mut results = Vec::with_capacity(tasks.len());
        for wave in plan::waves(tasks.to_vec())? {
            results.extend(self.run_parallel(&wave, |t| self.run_task(t, 1))?);
            ordered.extend(wave);
        }
        if self.options.wait_for_retries {
            self.retry_phase(&ordered, &mut results)?;
        }
        Ok(results.into_iter().map(|r| r.report).collect())
    }

    /// Runs `f` over every task on up to `jobs` threads; results in task order. An engine
    /// error (the journal failing) stops the run.
    fn run_parallel<'p, F>(&self, tasks: &[Task<'p>], f: F) -> Result<Vec<TaskResult<'p>>>
    where
        F: Fn(&Task<'p>) -> Result<TaskResult<'p>> + Sync,
    {
        let next = AtomicUsize::new(0);
        let workers = self.options.jobs.clamp(1, tasks.len().max(1));
        let mut slots: Vec<Option<Result<TaskResult<'p>>>> =
            (0..tasks.len()).map(|_| None).collect();
        let done: Vec<Vec<(usize, Result<TaskResult<'p>>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(task) = tasks.get(i) else { break };
                            mine.push((i, f(task)));
                        }
                        mine
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (i, r) in done.into_iter().flatten() {
            slots[i] = Some(r);
        }
        slots
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| {
                    Err(EngineError::Stream {
                        stream: tasks[i].label(),
                        message: "the task's thread ended without a result".into(),
                    })
                })
            })
            .collect()
    }

    /// One task: see the module documentation. Engine errors (the journal) propagate; a source
    /// that fails ends the task with [`PartOutcome::ReadFailed`].
    fn run_task<'p>(&self, task: &Task<'p>, read_attempt: u32) -> Result<TaskResult<'p>> {
        let s = self.session;
        let stream = task.stream;
        let label = task.label();
        let part_key = s.part_key(stream.name(), task.partition.as_deref());
        let prior = s.projection.part(&part_key);
        let manual = self.options.from.is_some() || self.options.to.is_some();
        let resume = match stream.mode() {
            Mode::Snapshot => None,
            _ if manual => None,
            _ => stream
                .cursor()
                .and(prior.as_ref().and_then(|p| p.last_cursor.clone())),
        };
        let merge_keys_from = match (stream.mode(), stream.cursor()) {
            (Mode::Merge, None) => Some(prior.as_ref().and_then(|p| p.last_complete_start)),
            _ => None,
        };
        let started_seq = s.record(
            EntryKind::StreamStarted {
                stream: stream.name().to_owned(),
                partition: task.partition.clone(),
                source: task.source.clone(),
                destinations: stream.destinations().to_vec(),
                mode: stream.mode().as_str().to_owned(),
                resume_cursor: resume.clone(),
            },
            Vec::new(),
        )?;
        tracing::info!(
            stream = %label,
            source = %task.source,
            resume_after = resume.as_deref().unwrap_or("-"),
            "stream started"
        );
        let mut lanes: Vec<Lane<'p>> = stream
            .destinations()
            .iter()
            .map(|d| Lane::new(s, stream, task.partition.as_deref(), d))
            .collect();
        if stream.mode() != Mode::Snapshot {
            for lane in &mut lanes {
                s.apply_pending(lane, Some(stream.retry()))?;
            }
        }
        let mut read = ReadState {
            task,
            label: label.clone(),
            rows: 0,
            batches: 0,
        };
        let mut retry_read = false;
        let outcome = match self.read(
            &mut read,
            &mut lanes,
            resume.as_deref(),
            merge_keys_from,
            started_seq,
        ) {
            Ok(()) => {
                let failed_batches = lanes
                    .iter()
                    .map(|l| s.projection.pending(&l.key).len() as u64)
                    .max()
                    .unwrap_or(0);
                s.record(
                    EntryKind::StreamCompleted {
                        stream: stream.name().to_owned(),
                        partition: task.partition.clone(),
                        rows: read.rows,
                        batches: read.batches,
                        failed_batches,
                    },
                    Vec::new(),
                )?;
                if failed_batches == 0 && read.batches > 0 {
                    s.checkpoint_if_applied(&part_key)?;
                }
                self.lanes_outcome(&lanes)
            }
            Err(ReadError::Engine(e)) => return Err(e),
            Err(ReadError::Source(message)) => {
                tracing::warn!(stream = %label, error = %message, "stream failed");
                PartOutcome::ReadFailed(message)
            }
            Err(ReadError::Unavailable(message)) => {
                tracing::warn!(stream = %label, error = %message, "stream failed; source unavailable");
                retry_read = true;
                PartOutcome::ReadFailed(message)
            }
        };
        let policy = stream.retry();
        let read_due = match &outcome {
            PartOutcome::ReadFailed(_)
                if retry_read
                    && self.options.wait_for_retries
                    && policy.may_retry(read_attempt) =>
            {
                let wait = policy.delay_after(read_attempt, 0.5);
                Some(
                    caudal_journal::now()
                        .saturating_add(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX)),
                )
            }
            _ => None,
        };
        if let PartOutcome::ReadFailed(message) = &outcome {
            s.record(
                EntryKind::ReadFailed {
                    stream: stream.name().to_owned(),
                    partition: task.partition.clone(),
                    error: message.clone(),
                    attempt: read_attempt,
                    retryable: retry_read,
                    retry_due: read_due,
                },
                Vec::new(),
            )?;
        }
        Ok(TaskResult {
            report: PartReport {
                label,
                rows: read.rows,
                batches: read.batches,
                outcome,
            },
            lanes,
            read_attempts: read_attempt,
            read_due,
        })
    }

    fn lanes_outcome(&self, lanes: &[Lane<'_>]) -> PartOutcome {
        let failing: Vec<(String, u64, String)> = lanes
            .iter()
            .filter_map(|l| {
                let f = self.session.projection.lane(&l.key)?.failure?;
                Some((l.key.destination.clone(), f.batch_seq, f.error))
            })
            .collect();
        if failing.is_empty() {
            PartOutcome::Ok
        } else {
            PartOutcome::WritesPending { lanes: failing }
        }
    }

    /// Reads the task's source to the end, journaling and delivering every chunk.
    fn read<'p>(
        &self,
        st: &mut ReadState<'_, 'p>,
        lanes: &mut [Lane<'p>],
        resume: Option<&str>,
        merge_keys_from: Option<Option<u64>>,
        started_seq: u64,
    ) -> Result<(), ReadError> {
        let s = self.session;
        let stream = st.task.stream;
        let OpenRead {
            reader,
            shape,
            estimate,
        } = self.open_read(st, resume)?;
        let mut progress = self.progress.start(&st.label, estimate);
        let previous_keys = match merge_keys_from {
            Some(start) => {
                let part = s.part_key(stream.name(), st.task.partition.as_deref());
                Some(self.merge_keys(&part, start, started_seq)?)
            }
            None => None,
        };
        let snapshot = stream.mode() == Mode::Snapshot;
        // Three stages, so that each overlaps the others: a thread reads, shapes and digests
        // the next chunk; this thread journals it; a third writes the batch journaled before
        // into the destinations, in journal order. A batch is written only after it is
        // durable in the journal, as before; the channels hold one batch each.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Prepared, (String, bool)>>(1);
        let (to_deliver, journaled_rx) = std::sync::mpsc::sync_channel::<Journaled>(1);
        let collect_keys = previous_keys.is_some();
        let (keys_now, held) = std::thread::scope(|scope| {
            let producer = {
                let shape = &shape;
                let pipeline = &*s.pipeline;
                let (label, source) = (st.label.clone(), st.task.source.clone());
                scope.spawn(move || {
                    prepare_chunks(
                        reader,
                        shape,
                        stream,
                        pipeline,
                        &label,
                        &source,
                        collect_keys,
                        tx,
                    )
                })
            };
            let deliverer = {
                let lanes = &mut *lanes;
                scope.spawn(move || {
                    // Snapshot: the newest batch is held back until the next one (or the end)
                    // shows whether it is the last, which is written together with the swap.
                    let mut held: Option<Journaled> = None;
                    for journaled in journaled_rx.iter() {
                        let delivered = if snapshot {
                            match held.replace(journaled) {
                                Some(prev) => self.deliver_all(lanes, &prev, false),
                                None => Ok(()),
                            }
                        } else {
                            self.deliver_all(lanes, &journaled, false)
                        };
                        if let Err(e) = delivered {
                            return (held, Err(e));
                        }
                    }
                    (held, Ok(()))
                })
            };
            let consumed = (|| {
                for item in rx.iter() {
                    let prepared = match item {
                        Ok(p) => p,
                        Err((message, retryable)) => {
                            progress.finish(&format!("failed: {message}"));
                            return Err(ReadError::source(message, retryable));
                        }
                    };
                    let journaled = self.journal_batch(st, prepared)?;
                    progress.advance(journaled.rows, journaled.bytes.len() as u64);
                    // A closed channel means the deliverer stopped on an error: below.
                    if to_deliver.send(journaled).is_err() {
                        break;
                    }
                }
                Ok(())
            })();
            // Stops the producer if this side stopped first (its next send fails); the
            // deliverer writes what was journaled, then ends.
            drop(rx);
            drop(to_deliver);
            let (held, delivered) = match deliverer.join() {
                Ok(done) => done,
                Err(payload) => std::panic::resume_unwind(payload),
            };
            let keys = producer.join().unwrap_or_default();
            (delivered.and(consumed).map(|()| keys), held)
        });
        let keys_now = keys_now?;
        if let Some(before) = previous_keys {
            self.journal_deletes(st, lanes, &shape, &before, &keys_now)?;
        }
        if snapshot {
            self.finish_snapshot(st, lanes, &shape, held)?;
        } else if st.batches == 0 {
            self.create_missing_tables(lanes, &shape);
        }
        progress.finish(&match lanes.iter().filter(|l| l.blocked).count() {
            0 => "done".to_owned(),
            n => format!("{n} destination(s) failing"),
        });
        Ok(())
    }

    /// Starts the read: its request (bounds from a manual range or the resume cursor), the
    /// reader, the shape of what the destinations get, and the source's row estimate.
    fn open_read(
        &self,
        st: &ReadState<'_, '_>,
        resume: Option<&str>,
    ) -> Result<OpenRead, ReadError> {
        let task = st.task;
        let stream = task.stream;
        let target = match stream.query() {
            Some(q) => ReadTarget::Query(q.to_owned()),
            None => ReadTarget::Table(stream.table().to_owned()),
        };
        let (from, to) = self.bounds(task, &target, resume)?;
        let request = ReadRequest {
            target: target.clone(),
            cursor_column: stream.cursor().map(str::to_owned),
            from,
            to,
            limits: ChunkLimits {
                max_rows: usize::try_from(stream.chunk_rows()).unwrap_or(usize::MAX),
                max_bytes: usize::try_from(stream.chunk_bytes()).unwrap_or(usize::MAX),
            },
        };
        let reader = self
            .session
            .pool
            .with(&task.source, |c| c.read(&request))
            .map_err(|e| {
                ReadError::source(
                    format!("reading from `{}`: {}", task.source, e.message),
                    e.retryable,
                )
            })?;
        let shape = Shape::new(stream, &task.source, Arc::clone(reader.schema()))
            .map_err(|m| ReadError::Source(format!("stream `{}`: {m}", st.label)))?;
        let estimate = self.estimate(task, &target);
        Ok(OpenRead {
            reader,
            shape,
            estimate,
        })
    }

    /// Merge: journals and delivers the keys that were in the destinations before this read
    /// and are no longer in the source.
    fn journal_deletes(
        &self,
        st: &mut ReadState<'_, '_>,
        lanes: &mut [Lane<'_>],
        shape: &Shape,
        before: &HashSet<Vec<u8>>,
        now: &HashSet<Vec<u8>>,
    ) -> Result<(), ReadError> {
        let label = st.label.clone();
        let fail = |m: String| ReadError::Source(format!("stream `{label}`: deleted keys: {m}"));
        let chunk = usize::try_from(st.task.stream.chunk_rows()).unwrap_or(usize::MAX);
        for batch in shape::delete_batches(&shape.schema, before, now, chunk).map_err(fail)? {
            let bytes = batch.encode().map_err(|e| fail(e.to_string()))?;
            let prepared = Prepared::new(st.task.stream.table(), batch, bytes, None, None);
            let journaled = self.journal_batch(st, prepared)?;
            self.deliver_all(lanes, &journaled, false)?;
        }
        Ok(())
    }

    /// Snapshot: delivers the last batch, which swaps the staging table in. An empty source
    /// still replaces the table, by an empty one.
    fn finish_snapshot(
        &self,
        st: &mut ReadState<'_, '_>,
        lanes: &mut [Lane<'_>],
        shape: &Shape,
        held: Option<Journaled>,
    ) -> Result<(), ReadError> {
        let last = match held {
            Some(last) => last,
            None => {
                let empty = Batch::empty(Arc::clone(&shape.schema));
                let bytes = empty
                    .encode()
                    .map_err(|e| ReadError::Source(format!("stream `{}`: {e}", st.label)))?;
                let prepared = Prepared::new(st.task.stream.table(), empty, bytes, None, None);
                self.journal_batch(st, prepared)?
            }
        };
        self.deliver_all(lanes, &last, true)
    }

    /// Nothing new was read: still create missing tables, so that an empty source gives an
    /// empty destination rather than none. A failure here shows at the first write.
    fn create_missing_tables(&self, lanes: &[Lane<'_>], shape: &Shape) {
        for lane in lanes.iter().filter(|l| !l.blocked) {
            let created = self.session.pool.with(&lane.key.destination, |c| {
                c.prepare_table(&caudal_connector::PrepareTable {
                    table: lane.stream.table().to_owned(),
                    schema: (*shape.schema).clone(),
                    replace: false,
                })
            });
            if let Err(e) = created {
                tracing::warn!(destination = %lane.key.destination, error = %e, "table not created");
            }
        }
    }

    /// Journals one batch as `BatchRead`, durable before anything is written.
    fn journal_batch(
        &self,
        st: &mut ReadState<'_, '_>,
        p: Prepared,
    ) -> Result<Journaled, ReadError> {
        let rows = p.batch.num_rows() as u64;
        let seq = self
            .session
            .record(
                EntryKind::BatchRead {
                    stream: st.task.stream.name().to_owned(),
                    partition: st.task.partition.clone(),
                    schema_id: p.batch.schema_id().0,
                    rows,
                    bytes: p.bytes.len() as u64,
                    cursor_low: p.low,
                    cursor_high: p.high,
                    digest: p.digest,
                },
                p.bytes.clone(),
            )
            .map_err(ReadError::Engine)?;
        st.rows += rows;
        st.batches += 1;
        Ok(Journaled {
            seq,
            rows,
            first_of_instance: st.batches == 1,
            bytes: p.bytes,
            batch: p.batch,
        })
    }

    /// Writes a journaled batch into every lane that is not blocked.
    fn deliver_all(
        &self,
        lanes: &mut [Lane<'_>],
        j: &Journaled,
        last: bool,
    ) -> Result<(), ReadError> {
        for lane in lanes.iter_mut().filter(|l| !l.blocked) {
            let is_snapshot = lane.stream.mode() == Mode::Snapshot;
            let d = Delivery {
                seq: j.seq,
                bytes: &j.bytes,
                schema: j.batch.schema(),
                rows: j.rows,
                first_of_instance: is_snapshot && j.first_of_instance,
                swap: is_snapshot && last,
                attempt: 1,
            };
            self.session
                .deliver(lane, &d, Some(lane.stream.retry()))
                .map_err(ReadError::Engine)?;
        }
        Ok(())
    }

    /// The read's cursor bounds: a manual range, or after the last cursor journaled.
    fn bounds(
        &self,
        task: &Task<'_>,
        target: &ReadTarget,
        resume: Option<&str>,
    ) -> Result<(Bound<Value>, Bound<Value>), ReadError> {
        let o = self.options;
        if o.from.is_none() && o.to.is_none() {
            let from = match resume {
                Some(text) => Bound::Excluded(cursor::from_text(text).map_err(|m| {
                    ReadError::Engine(EngineError::Stream {
                        stream: task.label(),
                        message: format!("the journaled cursor cannot be resumed from: {m}"),
                    })
                })?),
                None => Bound::Unbounded,
            };
            return Ok((from, Bound::Unbounded));
        }
        let kind = self.cursor_kind(task, target);
        let parse = |text: &String| {
            cursor::parse_user(text, kind).map_err(|m| {
                ReadError::Engine(EngineError::Usage(format!(
                    "stream `{}`, cursor `{}`: {m}",
                    task.label(),
                    task.stream.cursor().unwrap_or_default()
                )))
            })
        };
        let from = match &o.from {
            Some(t) => Bound::Included(parse(t)?),
            None => Bound::Unbounded,
        };
        let to = match &o.to {
            Some(t) => Bound::Excluded(parse(t)?),
            None => Bound::Unbounded,
        };
        Ok((from, to))
    }

    /// What the cursor column holds: from a journaled cursor, else the source's table schema.
    fn cursor_kind(&self, task: &Task<'_>, target: &ReadTarget) -> Option<CursorKind> {
        let s = self.session;
        let key = s.part_key(task.stream.name(), task.partition.as_deref());
        if let Some(kind) = s
            .projection
            .part(&key)
            .and_then(|p| p.last_cursor)
            .and_then(|c| CursorKind::of_text(&c))
        {
            return Some(kind);
        }
        let (ReadTarget::Table(table), Some(column)) = (target, task.stream.cursor()) else {
            return None;
        };
        let tables = s.pool.with(&task.source, |c| c.discover()).ok()?;
        let info = tables.iter().find(|t| &t.name == table)?;
        let field = info.schema.fields().iter().find(|f| f.name == column)?;
        CursorKind::of_type(&field.logical_type)
    }

    fn estimate(&self, task: &Task<'_>, target: &ReadTarget) -> Option<u64> {
        if !self.progress.wants_estimates() {
            return None;
        }
        let ReadTarget::Table(table) = target else {
            return None;
        };
        let tables = self
            .session
            .pool
            .with(&task.source, |c| c.discover())
            .ok()?;
        tables.iter().find(|t| &t.name == table)?.estimated_rows
    }

    /// The keys a merge stream's destinations hold before this run: those of the batches since
    /// the start of the last instance that read the whole source (it upserted every key that
    /// existed then), with later deletes removed.
    fn merge_keys(
        &self,
        part: &PartKey,
        start: Option<u64>,
        until_seq: u64,
    ) -> Result<HashSet<Vec<u8>>, ReadError> {
        let mut keys = HashSet::new();
        let Some(start) = start else {
            return Ok(keys);
        };
        let entries = self
            .session
            .reader
            .entries_from(start)
            .map_err(|e| ReadError::Engine(e.into()))?;
        for stored in entries {
            let e = stored.map_err(|e| ReadError::Engine(e.into()))?.entry;
            if e.seq >= until_seq {
                break;
            }
            let EntryKind::BatchRead {
                stream, partition, ..
            } = &e.kind
            else {
                continue;
            };
            if e.pipeline != part.pipeline || *stream != part.stream || *partition != part.partition
            {
                continue;
            }
            let Payload::Inline(bytes) = &e.payload else {
                return Err(ReadError::Source(format!(
                    "stream `{}`: cannot tell which rows were deleted: the rows of journal seq {} \
                     were compacted away",
                    plan::part_label(&part.stream, part.partition.as_deref()),
                    e.seq
                )));
            };
            let batch = Batch::decode(bytes).map_err(|err| {
                ReadError::Engine(EngineError::Batch {
                    seq: e.seq,
                    message: err.to_string(),
                })
            })?;
            if is_delete_batch(&batch) {
                for k in shape::keys_of(&batch) {
                    keys.remove(&k);
                }
            } else {
                keys.extend(shape::keys_of(&batch));
            }
        }
        Ok(keys)
    }

    /// After every task: waits for scheduled retries (lanes) and re-runs tasks whose source
    /// failed, as the retry policy allows.
    fn retry_phase<'p>(&self, tasks: &[Task<'p>], results: &mut [TaskResult<'p>]) -> Result<()> {
        loop {
            // The earliest due lane retry, and the earliest due read retry.
            let mut next: Option<(i64, usize, Option<usize>)> = None;
            for (i, r) in results.iter().enumerate() {
                match &r.report.outcome {
                    PartOutcome::ReadFailed(_) => {
                        if let Some(due) = r.read_due
                            && next.is_none_or(|(d, _, _)| due < d)
                        {
                            next = Some((due, i, None));
                        }
                    }
                    _ => {
                        for (j, lane) in r.lanes.iter().enumerate() {
                            if let (true, Some(due)) = (lane.blocked, lane.retry_due)
                                && next.is_none_or(|(d, _, _)| due < d)
                            {
                                next = Some((due, i, Some(j)));
                            }
                        }
                    }
                }
            }
            let Some((due, i, lane)) = next else {
                return Ok(());
            };
            std::thread::sleep(until(due));
            match lane {
                Some(j) => {
                    let r = &mut results[i];
                    let lane = &mut r.lanes[j];
                    lane.retry_due = None;
                    let policy = *lane.stream.retry();
                    self.session.apply_pending(lane, Some(&policy))?;
                    let part = lane.key.part.clone();
                    r.report.outcome = self.lanes_outcome(&r.lanes);
                    if r.report.outcome == PartOutcome::Ok {
                        self.session.checkpoint_if_applied(&part)?;
                    }
                }
                None => {
                    let attempt = results[i].read_attempts + 1;
                    tracing::info!(stream = %tasks[i].label(), attempt, "reading again");
                    let mut again = self.run_task(&tasks[i], attempt)?;
                    again.report.rows += results[i].report.rows;
                    again.report.batches += results[i].report.batches;
                    results[i] = again;
                }
            }
        }
    }

    /// Journals the end of the run and builds its report.
    fn finish(&self, parts: Vec<PartReport>) -> Result<RunReport> {
        let s = self.session;
        let rows = parts.iter().map(|p| p.rows).sum();
        let batches = parts.iter().map(|p| p.batches).sum();
        let read_failures: Vec<String> = parts
            .iter()
            .filter_map(|p| match &p.outcome {
                PartOutcome::ReadFailed(e) => Some(format!("{}: {e}", p.label)),
                _ => None,
            })
            .collect();
        if read_failures.is_empty() {
            let ok = parts
                .iter()
                .filter(|p| p.outcome == PartOutcome::Ok)
                .count();
            s.record(
                EntryKind::RunCompleted {
                    rows,
                    batches,
                    streams_ok: u32::try_from(ok).unwrap_or(u32::MAX),
                    streams_failed: u32::try_from(parts.len() - ok).unwrap_or(u32::MAX),
                    elapsed_us: s.elapsed_us(),
                },
                Vec::new(),
            )?;
        } else {
            s.record(
                EntryKind::RunFailed {
                    error: format!(
                        "{} of {} streams could not be read: {}",
                        read_failures.len(),
                        parts.len(),
                        read_failures.join("; ")
                    ),
                    elapsed_us: s.elapsed_us(),
                },
                Vec::new(),
            )?;
        }
        Ok(RunReport {
            run: s.run,
            parts,
            rows,
            batches,
            elapsed: s.started.elapsed(),
            rebuilds: Vec::new(),
        })
    }
}

struct ReadState<'t, 'p> {
    task: &'t Task<'p>,
    label: String,
    rows: u64,
    batches: u64,
}

/// A chunk ready to journal: in the destination shape, with its cursor range and digest.
struct Prepared {
    batch: Batch,
    bytes: Vec<u8>,
    low: Option<String>,
    high: Option<String>,
    digest: Digest,
}

impl Prepared {
    /// Computes the digest of `batch` as rows of `table`.
    fn new(
        table: &str,
        batch: Batch,
        bytes: Vec<u8>,
        low: Option<String>,
        high: Option<String>,
    ) -> Prepared {
        Prepared {
            digest: batch_digest(table, &batch),
            batch,
            bytes,
            low,
            high,
        }
    }
}

/// The first stage of a read: pulls chunks from the source, brings them into the destination
/// shape, computes cursors and digests, and sends them on in order. A source error is sent
/// as its (scrubbed) text and ends the stage, as does a receiver that went away. Returns the
/// keys read, when asked (merge's delete detection).
#[allow(clippy::too_many_arguments)]
fn prepare_chunks(
    mut reader: Box<dyn ChunkReader>,
    shape: &Shape,
    stream: &caudal_config::Stream,
    pipeline: &Pipeline,
    label: &str,
    source: &str,
    collect_keys: bool,
    tx: std::sync::mpsc::SyncSender<Result<Prepared, (String, bool)>>,
) -> HashSet<Vec<u8>> {
    let mut keys = HashSet::new();
    loop {
        let chunk = match reader.next_chunk() {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return keys,
            Err(e) => {
                let message = pipeline.scrub(&e.to_string()).into_owned();
                let _ = tx.send(Err((
                    format!("reading from `{source}`: {message}"),
                    e.is_retryable(),
                )));
                return keys;
            }
        };
        let (batch, bytes) = match shape.shape(chunk.bytes) {
            Ok(shaped) => shaped,
            Err(m) => {
                let _ = tx.send(Err((format!("stream `{label}`: {m}"), false)));
                return keys;
            }
        };
        if batch.num_rows() == 0 {
            continue;
        }
        let low = shape.first_cursor(&batch).map(|v| cursor::to_text(&v));
        // Sources may report a position even without a cursor column; only a cursor
        // column's value means something to resume from.
        let high = match stream.cursor() {
            Some(_) => chunk.cursor.as_ref().map(cursor::to_text),
            None => None,
        };
        if collect_keys {
            keys.extend(shape::keys_of(&batch));
        }
        let prepared = Prepared::new(stream.table(), batch, bytes, low, high);
        if tx.send(Ok(prepared)).is_err() {
            return keys;
        }
    }
}

/// A started read.
struct OpenRead {
    reader: Box<dyn ChunkReader>,
    shape: Shape,
    /// The source's row estimate, when progress shows one.
    estimate: Option<u64>,
}

/// A batch as journaled, ready to deliver.
struct Journaled {
    seq: u64,
    rows: u64,
    first_of_instance: bool,
    bytes: Vec<u8>,
    batch: Batch,
}

enum ReadError {
    /// The journal failed: the run stops.
    Engine(EngineError),
    /// The source failed in a way that will not go away by itself (a missing table, a
    /// column the stream needs): this task stops.
    Source(String),
    /// The source could not be reached or went away (a retryable connector error): this task
    /// stops, and is read again later as `[retry]` allows.
    Unavailable(String),
}

impl ReadError {
    /// A source failure, retryable or not as the connector said.
    fn source(message: String, retryable: bool) -> ReadError {
        if retryable {
            ReadError::Unavailable(message)
        } else {
            ReadError::Source(message)
        }
    }
}

impl From<EngineError> for ReadError {
    fn from(e: EngineError) -> Self {
        ReadError::Engine(e)
    }
}

/// The digest journaled with a batch: the SHA-256 of its rows' table digest state (as
/// `TableDigest::hex` shows it), in the destination table's name.
pub fn batch_digest(table: &str, batch: &Batch) -> Digest {
    let d = TableDigest::of_batch(table, batch);
    d.hex().parse().unwrap_or_default()
}
