//! A session: one command's hold on the journal (as its only writer), the projection folded
//! from it, and the connections it uses; plus the write path every command shares.
//!
//! [`Session::record`] is the only way entries are appended: it stamps the entry with the
//! session's run, appends it (returning once durable) and folds it into the projection, so the
//! projection always agrees with the journal.
//!
//! A [`Lane`] is one part's path into one destination. Writes into a lane happen in seq order,
//! and a lane with a failed batch writes nothing newer until that batch is applied: the sink's
//! offset row would otherwise skip it for good. [`Session::deliver`] writes one batch into one
//! lane and journals `WriteApplied` or `WriteFailed` (plus `RetryScheduled` when the policy
//! allows another attempt); [`Session::apply_pending`] brings a lane up to date from the
//! journal, never from the source.

use std::sync::Arc;
use std::time::{Duration, Instant};

use caudal_config::{Mode, Pipeline, RetryPolicy, Stream};
use caudal_connector::{Batch, ErrorCode, PrepareTable, Schema, WriteOutcome, WriteRequest};
use caudal_journal::{
    EntryKind, Journal, JournalOptions, NewEntry, Payload, Reader, RunId, Timestamp,
};

use super::endpoint::{CallError, ConnectionPool, Endpoints};
use super::error::{EngineError, Result};
use super::plan::{part_label, staging_table, write_op};
use super::projection::{LaneKey, PartKey, Projection};
use super::shape::is_delete_schema;

/// The journal options a pipeline's `[journal]` section asks for.
pub fn journal_options(pipeline: &Pipeline) -> JournalOptions {
    use caudal_config::Durability as C;
    use caudal_journal::Durability as J;
    let settings = pipeline.journal();
    let durability = match settings.durability() {
        C::Always => J::Always,
        C::Interval(d) => J::Interval(d),
        C::Never => J::Never,
        // `Batch`, and any policy added to the config later, get the safe default.
        _ => J::Batch,
    };
    JournalOptions {
        durability,
        segment_bytes: settings.segment_size(),
        ..JournalOptions::default()
    }
}

/// One command's journal, projection and connections.
pub struct Session {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) journal: Journal,
    pub(crate) reader: Reader,
    pub(crate) projection: Projection,
    pub(crate) pool: ConnectionPool,
    pub(crate) run: RunId,
    pub(crate) started: Instant,
}

impl Session {
    /// Opens the pipeline's journal as its writer and folds the projection.
    pub fn open(pipeline: Arc<Pipeline>, endpoints: Arc<dyn Endpoints>) -> Result<Session> {
        Session::open_warming(pipeline, endpoints, &[])
    }

    /// [`Session::open`], opening the connections `warm` on another thread meanwhile: for a
    /// command that calls them as soon as it starts (verify), their start-up (a plugin's
    /// database open, a server's handshake) overlaps the journal's open.
    pub fn open_warming(
        pipeline: Arc<Pipeline>,
        endpoints: Arc<dyn Endpoints>,
        warm: &[&str],
    ) -> Result<Session> {
        let pool = ConnectionPool::new(Arc::clone(&pipeline), endpoints);
        let (journal, reader, projection) = std::thread::scope(|s| {
            if !warm.is_empty() {
                let pool = &pool;
                s.spawn(move || {
                    for name in warm {
                        pool.warm(name);
                    }
                });
            }
            Session::open_journal(&pipeline)
        })?;
        Ok(Session {
            pool,
            pipeline,
            journal,
            reader,
            projection,
            run: RunId::random(),
            started: Instant::now(),
        })
    }

    /// The journal (this process as its writer), a reader of it and its projection.
    fn open_journal(pipeline: &Pipeline) -> Result<(Journal, Reader, Projection)> {
        let dir = pipeline.journal_dir();
        let journal = Journal::open(&dir, journal_options(pipeline))?;
        let reader = Reader::open(&dir)?;
        let (projection, rebuilt) = Projection::load_reporting(&dir)?;
        if rebuilt && projection.through_seq() > 0 {
            // Worth knowing when a command was slow to start: the checkpoint was missing,
            // stale or from another journal, and the whole journal was folded again.
            let through_seq = projection.through_seq();
            let kind = EntryKind::ProjectionRebuilt {
                projection: "status".into(),
                through_seq,
            };
            let time = caudal_journal::now();
            let seq = journal
                .append_blocking(NewEntry::new(pipeline.name(), kind.clone()).at(time))?
                .seq;
            projection.apply(seq, time, None, pipeline.name(), &kind);
        }
        Ok((journal, reader, projection))
    }

    /// Appends an entry of this session's run and folds it into the projection.
    pub fn record(&self, kind: EntryKind, payload: Vec<u8>) -> Result<u64> {
        let time = caudal_journal::now();
        let entry = NewEntry::new(self.pipeline.name(), kind)
            .with_run(self.run)
            .at(time)
            .with_payload(payload);
        let kind = entry.kind.clone();
        let seq = self.journal.append_blocking(entry)?.seq;
        self.projection
            .apply(seq, time, Some(self.run), self.pipeline.name(), &kind);
        Ok(seq)
    }

    /// Microseconds since the session started.
    pub fn elapsed_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Writes the projection checkpoint and closes connections and the journal. A checkpoint
    /// that cannot be written only costs the next command a longer fold: it is reported, not
    /// fatal.
    pub fn close(self) -> Result<()> {
        if let Err(e) = self.projection.save(&self.reader) {
            tracing::warn!(error = %e, "projection checkpoint not written");
        }
        self.pool.close_all();
        self.journal.close()?;
        Ok(())
    }

    /// The key of a part of this pipeline.
    pub fn part_key(&self, stream: &str, partition: Option<&str>) -> PartKey {
        PartKey {
            pipeline: self.pipeline.name().to_owned(),
            stream: stream.to_owned(),
            partition: partition.map(str::to_owned),
        }
    }

    /// Journals a `Checkpoint` for a part whose every current destination has every batch
    /// journaled so far: its progress is safe up to that batch (and its cursor).
    pub fn checkpoint_if_applied(&self, part: &PartKey) -> Result<()> {
        let Some(record) = self.projection.part(part) else {
            return Ok(());
        };
        let mut through = u64::MAX;
        for destination in &record.destinations {
            let key = LaneKey {
                part: part.clone(),
                destination: destination.clone(),
            };
            if !self.projection.pending(&key).is_empty() {
                return Ok(());
            }
            let applied = self.projection.lane(&key).map_or(0, |l| l.applied_through);
            through = through.min(applied);
        }
        if through == 0 || through == u64::MAX {
            return Ok(());
        }
        self.record(
            EntryKind::Checkpoint {
                stream: part.stream.clone(),
                partition: part.partition.clone(),
                cursor: record.last_cursor,
                through_seq: through,
            },
            Vec::new(),
        )?;
        Ok(())
    }

    /// The encoded batch journaled at `seq`.
    pub fn batch_bytes(&self, seq: u64) -> Result<Vec<u8>> {
        batch_bytes(&self.reader, seq)
    }

    /// Applies a lane's journaled-but-unapplied batches, in order, from the journal. Batches
    /// the destination already has (its offset row says so; a crash came between its commit
    /// and the journal's `WriteApplied`) are journaled as applied without writing them again.
    /// Stops at the first failure, which [`Session::deliver`] journals.
    pub fn apply_pending(&self, lane: &mut Lane<'_>, policy: Option<&RetryPolicy>) -> Result<()> {
        let pending = self.projection.pending(&lane.key);
        let Some(first) = pending.first() else {
            lane.blocked = false;
            return Ok(());
        };
        let pipeline = self.pipeline.name().to_owned();
        let offset_key = lane.offset_key();
        let applied = match self.pool.with(&lane.key.destination, |c| {
            c.last_applied_seq(&pipeline, &offset_key)
        }) {
            Ok(seq) => seq.unwrap_or(0),
            Err(e) => {
                let attempt = lane.attempt_for(self, first.seq);
                self.journal_failure(lane, first.seq, attempt, &e, policy)?;
                return Ok(());
            }
        };
        let part = self.projection.part(&lane.key.part);
        let last_pending = pending.last().map(|b| b.seq);
        for b in &pending {
            let attempt = lane.attempt_for(self, b.seq);
            let snapshot = lane.stream.mode() == Mode::Snapshot;
            let swap = snapshot
                && part.as_ref().is_some_and(|p| p.completed)
                && Some(b.seq) == last_pending;
            if applied >= b.seq && !swap {
                self.record(
                    EntryKind::WriteApplied {
                        stream: lane.stream.name().to_owned(),
                        partition: lane.key.part.partition.clone(),
                        destination: lane.key.destination.clone(),
                        batch_seq: b.seq,
                        rows: b.rows,
                        attempt,
                        elapsed_us: 0,
                    },
                    Vec::new(),
                )?;
                continue;
            }
            // A batch the journal can no longer give (compacted, undecodable) fails this lane
            // only; the other lanes and streams carry on.
            let loaded = self.batch_bytes(b.seq).and_then(|bytes| {
                let batch = Batch::decode(&bytes).map_err(|e| EngineError::Batch {
                    seq: b.seq,
                    message: e.to_string(),
                })?;
                Ok((bytes, batch))
            });
            let (bytes, batch) = match loaded {
                Ok(loaded) => loaded,
                Err(EngineError::Batch { seq, message }) => {
                    let e = CallError {
                        message: format!("journal seq {seq}: {message}"),
                        retryable: false,
                        code: None,
                    };
                    self.journal_failure(lane, b.seq, attempt, &e, None)?;
                    return Ok(());
                }
                Err(other) => return Err(other),
            };
            let first_of_instance =
                snapshot && part.as_ref().and_then(|p| p.instance_first_seq) == Some(b.seq);
            let delivery = Delivery {
                seq: b.seq,
                bytes: &bytes,
                schema: batch.schema(),
                rows: b.rows,
                first_of_instance,
                swap,
                attempt,
            };
            if self.deliver(lane, &delivery, policy)? == Delivered::Failed {
                return Ok(());
            }
        }
        lane.blocked = false;
        Ok(())
    }

    /// Writes one journaled batch into one lane; journals the outcome. `policy` is the retry
    /// policy to schedule another attempt by, `None` for a one-off attempt (`caudal retry`).
    pub fn deliver(
        &self,
        lane: &mut Lane<'_>,
        d: &Delivery<'_>,
        policy: Option<&RetryPolicy>,
    ) -> Result<Delivered> {
        let started = Instant::now();
        match self.write(lane, d) {
            Ok((rows, already)) => {
                lane.blocked = false;
                lane.attempts_this_run = 0;
                lane.retry_due = None;
                self.record(
                    EntryKind::WriteApplied {
                        stream: lane.stream.name().to_owned(),
                        partition: lane.key.part.partition.clone(),
                        destination: lane.key.destination.clone(),
                        batch_seq: d.seq,
                        rows,
                        attempt: d.attempt,
                        elapsed_us: u64::try_from(started.elapsed().as_micros())
                            .unwrap_or(u64::MAX),
                    },
                    Vec::new(),
                )?;
                Ok(if already {
                    Delivered::AlreadyThere
                } else {
                    Delivered::Applied
                })
            }
            Err(e) => {
                self.journal_failure(lane, d.seq, d.attempt, &e, policy)?;
                Ok(Delivered::Failed)
            }
        }
    }

    fn journal_failure(
        &self,
        lane: &mut Lane<'_>,
        batch_seq: u64,
        attempt: u32,
        e: &CallError,
        policy: Option<&RetryPolicy>,
    ) -> Result<()> {
        lane.blocked = true;
        lane.attempts_this_run += 1;
        tracing::warn!(
            stream = %lane.label(),
            destination = %lane.key.destination,
            batch_seq,
            attempt,
            error = %e.message,
            "write failed"
        );
        self.record(
            EntryKind::WriteFailed {
                stream: lane.stream.name().to_owned(),
                partition: lane.key.part.partition.clone(),
                destination: lane.key.destination.clone(),
                batch_seq,
                error: e.message.clone(),
                attempt,
                retryable: e.retryable,
            },
            Vec::new(),
        )?;
        lane.retry_due = None;
        if let Some(policy) = policy
            && policy.may_retry(lane.attempts_this_run)
        {
            let wait = policy.delay_after(lane.attempts_this_run, unit_random());
            let due = caudal_journal::now()
                .saturating_add(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX));
            self.record(
                EntryKind::RetryScheduled {
                    stream: lane.stream.name().to_owned(),
                    partition: lane.key.part.partition.clone(),
                    destination: lane.key.destination.clone(),
                    batch_seq,
                    attempt: attempt + 1,
                    due,
                },
                Vec::new(),
            )?;
            lane.retry_due = Some(due);
        }
        Ok(())
    }

    /// Prepares the table if this lane has not yet, writes the batch, and swaps a finished
    /// snapshot in. Returns the rows applied and whether the destination had them already.
    fn write(&self, lane: &mut Lane<'_>, d: &Delivery<'_>) -> Result<(u64, bool), CallError> {
        let mode = lane.stream.mode();
        let table = lane.stream.table();
        let target = match mode {
            Mode::Snapshot => staging_table(table),
            _ => table.to_owned(),
        };
        let keyed = !d.schema.primary_key().is_empty();
        let delete = is_delete_schema(d.schema);
        let request = WriteRequest {
            pipeline: self.pipeline.name().to_owned(),
            stream: lane.offset_key(),
            table: target.clone(),
            seq: d.seq,
            op: write_op(mode, keyed, delete),
        };
        let snapshot = mode == Mode::Snapshot;
        let outcome = self.pool.with(&lane.key.destination, |c| {
            if snapshot {
                // Preparing a staging table creates it empty (or empties it): not when the
                // destination has this batch already, whose snapshot may be loaded in staging
                // waiting for its swap, or swapped in already (then staging is gone and must
                // stay gone).
                let offset = match lane.offset {
                    Some(o) => o,
                    None => c
                        .last_applied_seq(&request.pipeline, &request.stream)?
                        .unwrap_or(0),
                };
                lane.offset = Some(offset);
                if offset >= d.seq {
                    return Ok(WriteOutcome::AlreadyApplied { last_seq: offset });
                }
            }
            // A delete batch has only key columns: the table was created by the upserts.
            if !delete && (!lane.prepared || d.first_of_instance) {
                c.prepare_table(&PrepareTable {
                    table: target.clone(),
                    schema: (**d.schema).clone(),
                    replace: d.first_of_instance,
                })?;
                lane.prepared = true;
            }
            let outcome = c.write(&request, d.bytes)?;
            if snapshot {
                lane.offset = Some(d.seq);
            }
            Ok(outcome)
        })?;
        let (rows, already) = match outcome {
            WriteOutcome::Applied { rows } => (rows, false),
            WriteOutcome::AlreadyApplied { .. } => (d.rows, true),
        };
        if d.swap {
            let swapped = self
                .pool
                .with(&lane.key.destination, |c| c.replace_table(&target, table));
            match swapped {
                Ok(()) => {}
                // The swap happened before a crash cut the journal short: the staging table
                // is gone because it *is* the table now.
                Err(e) if already && e.code == Some(ErrorCode::NotFound) => {}
                Err(e) => {
                    return Err(CallError {
                        message: format!(
                            "replacing table `{table}` by the loaded snapshot `{target}`: {}",
                            e.message
                        ),
                        ..e
                    });
                }
            }
        }
        Ok((rows, already))
    }
}

/// What [`Session::deliver`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The rows were written.
    Applied,
    /// The destination's offset showed it had the batch already.
    AlreadyThere,
    /// The write failed (journaled).
    Failed,
}

/// One batch to write into one lane.
pub struct Delivery<'a> {
    /// Seq of its `BatchRead`.
    pub seq: u64,
    /// The encoded batch, as journaled.
    pub bytes: &'a [u8],
    /// Its schema (the destination table's, or the key columns of deletes).
    pub schema: &'a Arc<Schema>,
    /// Its rows.
    pub rows: u64,
    /// The first batch of a snapshot: the staging table is created anew.
    pub first_of_instance: bool,
    /// The last batch of a finished snapshot: swap the staging table in after writing it.
    pub swap: bool,
    /// The attempt number to journal.
    pub attempt: u32,
}

/// One part's path into one destination, for the duration of a command.
#[derive(Debug)]
pub struct Lane<'p> {
    /// Which part and destination.
    pub key: LaneKey,
    /// The stream's configuration.
    pub stream: &'p Stream,
    /// Whether the destination table was prepared by this command.
    pub prepared: bool,
    /// A failure is outstanding: nothing newer may be written.
    pub blocked: bool,
    /// Failed attempts made by this command since the last success.
    pub attempts_this_run: u32,
    /// When the next attempt is due, if one was scheduled.
    pub retry_due: Option<Timestamp>,
    /// The destination's offset for this lane, once asked (snapshot lanes).
    pub offset: Option<u64>,
}

impl<'p> Lane<'p> {
    /// A lane of `stream` (partition `partition`) into `destination`, in `session`'s pipeline;
    /// blocked if the journal has an outstanding failure for it.
    pub fn new(
        session: &Session,
        stream: &'p Stream,
        partition: Option<&str>,
        destination: &str,
    ) -> Lane<'p> {
        let key = LaneKey {
            part: session.part_key(stream.name(), partition),
            destination: destination.to_owned(),
        };
        let blocked = session
            .projection
            .lane(&key)
            .is_some_and(|l| l.failure.is_some());
        Lane {
            key,
            stream,
            prepared: false,
            blocked,
            attempts_this_run: 0,
            retry_due: None,
            offset: None,
        }
    }

    /// `stream` or `stream/partition`.
    pub fn label(&self) -> String {
        part_label(&self.key.part.stream, self.key.part.partition.as_deref())
    }

    /// The second half of the offset row's key in the destination.
    pub fn offset_key(&self) -> String {
        self.label()
    }

    /// The attempt number of the next write of `seq`: one more than the failures journaled for
    /// it.
    fn attempt_for(&self, session: &Session, seq: u64) -> u32 {
        session
            .projection
            .lane(&self.key)
            .and_then(|l| l.failure)
            .filter(|f| f.batch_seq == seq)
            .map_or(1, |f| f.attempts.saturating_add(1))
    }
}

/// A number in `[0, 1)` for retry jitter; unpredictable enough to spread retries, not for
/// security.
fn unit_random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(caudal_journal::now());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// How long until `due`, from now (zero when it is past).
pub fn until(due: Timestamp) -> Duration {
    let now = caudal_journal::now();
    Duration::from_micros(u64::try_from(due.saturating_sub(now)).unwrap_or(0))
}

/// The encoded batch journaled at `seq` in `reader`'s journal.
pub(crate) fn batch_bytes(reader: &Reader, seq: u64) -> Result<Vec<u8>> {
    let stored = reader.get(seq)?.ok_or_else(|| EngineError::Batch {
        seq,
        message: "no such entry in the journal".into(),
    })?;
    match stored.entry.payload {
        Payload::Inline(bytes) => Ok(bytes),
        Payload::Compacted { .. } => Err(EngineError::Batch {
            seq,
            message: "its rows were dropped by `journal compact`; the batch can no longer \
                      be written (replay from a journal that still has them)"
                .into(),
        }),
    }
}
