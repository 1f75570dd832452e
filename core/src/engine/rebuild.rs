//! `caudal project redis --rebuild`: makes a destination table equal to the state the journal
//! implies, writing each row once and reading nothing back.
//!
//! For each table the connection gets from the pipeline's streams, from the batches of the
//! streams that write it (for a snapshot stream, its last finished snapshot, as in
//! [`super::replay`]):
//!
//! 1. **Begin the rewrite.** `begin_rewrite` (`RewriteStep::Begin`) resets the table's digest
//!    and row digests. The Redis connector keeps the old rows readable meanwhile, and each
//!    final row overwrites its key in place: readers of the cache never find it empty. (A
//!    sink that keeps no such promise empties the table here, as `prepare_table` with
//!    `replace`.)
//! 2. **Fold and write.** Meanwhile a thread reads the batches newest first. Read that way,
//!    the journal says at once which rows are final: a row is, unless a newer batch or a later
//!    row of its own batch has its key (a delete included), so each key is looked at once and
//!    no row is kept in memory, only the keys seen. The final rows of each batch are written
//!    as inserts under the offset stream [`REBUILD_STREAM`] while the thread reads on: a batch
//!    all of whose rows are final as the journal holds it, bytes unchanged; another cut down
//!    to them. Into a table whose rewrite its connection began, the Redis connector
//!    pipelines such inserts outside their transactions (its bulk insert); row digests and
//!    the table's digest key are computed as on any write, so `caudal verify` compares them
//!    as after a run.
//! 3. **End the rewrite.** `end_rewrite` (`RewriteStep::End`) removes every row key no final
//!    row was written to: rows the journal deleted since, and stale keys it never implied.
//! 4. **Offsets, last.** Each stream's offset is set to the seq of its last journaled batch
//!    (an empty write with that seq), so a later `caudal run` goes on right after it.
//!
//! A rebuild that dies midway leaves the table partly rewritten (final rows beside old ones
//! not yet overwritten, or not yet removed), under offsets that are either still those from
//! before it (the stream offsets are set last) or absent (a flushed cache).
//! Its run has `RunStarted` (trigger `rebuild`) and no end in the journal, so the next
//! `caudal run` of the pipeline (or `caudal project redis`) finds it ([`unfinished`]) and
//! rebuilds the same connection (or table) again before it reads anything; so does a rebuild
//! that ended with a table it could not rebuild. A later `--rebuild` of the same scope
//! repairs it too. Meanwhile `caudal verify` reports the rows that differ (and `--repair`
//! writes them again).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::mpsc;

use caudal_config::Mode;
use caudal_connector::{
    Batch, BatchBuilder, PrepareTable, RewriteStep, Schema, Value, WriteOp, WriteRequest,
};
use caudal_journal::{EntryKind, Reader, RunId};

use super::endpoint::CallError;
use super::error::{EngineError, Result};
use super::instances::{self, Instance, Part};
use super::plan::part_label;
use super::projection::{RunRecord, RunState};
use super::run::{Engine, pipeline_file};
use super::session::{Session, batch_bytes};
use super::shape::is_delete_schema;
use super::verify::key_bytes_into;

/// The offset stream of a rebuild's writes. Its offset only grows: each rebuild writes after
/// the last one's.
pub const REBUILD_STREAM: &str = "_caudal_rebuild";

/// The trigger journaled in a rebuild's `RunStarted`.
pub const REBUILD_TRIGGER: &str = "rebuild";

/// Journaled batches read ahead of the writes.
const READ_AHEAD: usize = 2;

/// What to rebuild.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildOptions {
    /// The destination connection.
    pub connection: String,
    /// Only this table (and every stream that writes it).
    pub table: Option<String>,
}

impl RebuildOptions {
    /// The arguments as journaled in the rebuild's `RunStarted`; [`RebuildOptions::from_args`]
    /// reads them back.
    fn args_text(&self) -> String {
        match &self.table {
            Some(t) => format!("--connection {} --table {t}", self.connection),
            None => format!("--connection {}", self.connection),
        }
    }

    /// The scope of a journaled rebuild, from its `RunStarted` arguments. Connection names
    /// hold no spaces (the pipeline file's rule), so the first ` --table ` ends the name and
    /// the rest is the table, whatever it holds.
    fn from_args(args: &str) -> Option<RebuildOptions> {
        let rest = args.strip_prefix("--connection ")?;
        let (connection, table) = match rest.split_once(" --table ") {
            Some((c, t)) => (c, Some(t.to_owned())),
            None => (rest, None),
        };
        (!connection.is_empty() && !connection.contains(' ')).then(|| RebuildOptions {
            connection: connection.to_owned(),
            table,
        })
    }

    /// Whether a rebuild of `self` also rebuilds everything `other` does.
    fn covers(&self, other: &RebuildOptions) -> bool {
        self.connection == other.connection && (self.table.is_none() || self.table == other.table)
    }
}

/// The rebuilds among `runs` (one pipeline's, in journal order) that did not finish and that
/// no later rebuild of the same or a wider scope finished, oldest first, each scope once. A
/// rebuild did not finish when its run has no end (the process died), ended in `RunFailed`,
/// or completed with a table it could not rebuild: each leaves a table partly written under
/// offsets that may say it is whole.
pub fn unfinished(runs: &[RunRecord]) -> Vec<RebuildOptions> {
    let mut open: Vec<RebuildOptions> = Vec::new();
    for run in runs.iter().filter(|r| r.trigger == REBUILD_TRIGGER) {
        let Some(scope) = RebuildOptions::from_args(&run.args) else {
            continue;
        };
        if run.state == RunState::Completed && run.streams_failed == 0 {
            open.retain(|o| !scope.covers(o));
        } else if !open.iter().any(|o| o.covers(&scope)) {
            open.retain(|o| !scope.covers(o));
            open.push(scope);
        }
    }
    open
}

/// One table rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRebuild {
    /// Destination table.
    pub table: String,
    /// Journaled batches read.
    pub batches: u64,
    /// Rows written: the table's rows.
    pub rows: u64,
    /// Per part (`stream` or `stream/partition`), the seq its offset was set to.
    pub offsets: Vec<(String, u64)>,
    /// Why the table could not be rebuilt.
    pub error: Option<String>,
}

/// The result of a rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// The rebuild's run.
    pub run: RunId,
    /// One per table, sorted.
    pub tables: Vec<TableRebuild>,
}

impl RebuildReport {
    /// Whether every table was rebuilt.
    pub fn succeeded(&self) -> bool {
        self.tables.iter().all(|t| t.error.is_none())
    }
}

/// The hash of the keys a rebuild has seen: each 8-byte word is mixed in by a multiply and an
/// xor-shift (a multiply alone carries a word's high bits nowhere lower, and sequential keys
/// then collide), and murmur3's final mix. The keys come from this machine's own journal, so
/// there is nothing to defend against chosen collisions, and SipHash (the default) took a
/// fifth of a rebuild's time.
#[derive(Default)]
struct KeyHasher(u64);

impl KeyHasher {
    fn mix(&mut self, word: u64) {
        let h = (self.0 ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// The keys a rebuild has seen, in one buffer: a table of spans of `bytes`, hashed by
/// [`KeyHasher`]. An integer key takes 9 bytes there plus a 16-byte slot, where a `Vec` per
/// key took about 50 bytes more (its header and the allocator's) and a malloc and a free.
struct KeySet {
    bytes: Vec<u8>,
    /// (start, length) in `bytes`.
    spans: hashbrown::HashTable<(u64, u32)>,
}

impl KeySet {
    fn with_capacity(keys: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(keys.saturating_mul(10)),
            spans: hashbrown::HashTable::with_capacity(keys),
        }
    }

    fn hash(key: &[u8]) -> u64 {
        BuildHasherDefault::<KeyHasher>::default().hash_one(key)
    }

    /// Adds `key`; whether it was not there yet.
    fn insert(&mut self, key: &[u8]) -> bool {
        let Self { bytes, spans } = self;
        let span = |&(start, len): &(u64, u32)| {
            let start = start as usize;
            &bytes[start..start + len as usize]
        };
        match spans.entry(Self::hash(key), |s| span(s) == key, |s| Self::hash(span(s))) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(slot) => {
                // A key is never near 4 GiB: a row of it could not be journaled.
                let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
                slot.insert((bytes.len() as u64, len));
                bytes.extend_from_slice(key);
                true
            }
        }
    }
}

/// A batch to write: its seq, its rows, and its encoding.
struct Ready {
    seq: u64,
    rows: u64,
    bytes: Vec<u8>,
}

impl Engine {
    /// Rebuilds the tables `options.connection` gets from the pipeline's streams. See the
    /// module documentation.
    pub fn rebuild(&self, options: &RebuildOptions) -> Result<RebuildReport> {
        let path = self.pipeline.path().display();
        if self.pipeline.connection(&options.connection).is_none() {
            return Err(EngineError::Usage(format!(
                "connection `{}`: no such connection in {path}",
                options.connection
            )));
        }
        let targets = self.rebuild_targets(options);
        if targets.is_empty() {
            return Err(EngineError::Usage(format!(
                "no stream of {path} writes{} into connection `{}`",
                options
                    .table
                    .as_ref()
                    .map(|t| format!(" table `{t}`"))
                    .unwrap_or_default(),
                options.connection
            )));
        }
        let session = Session::open(Arc::clone(&self.pipeline), Arc::clone(&self.endpoints))?;
        let result = self.rebuild_in(&session, options, &targets);
        let closed = session.close();
        let report = result?;
        closed?;
        Ok(report)
    }

    /// The tables a rebuild of `options` writes, each with the streams that write it.
    pub(crate) fn rebuild_targets(
        &self,
        options: &RebuildOptions,
    ) -> BTreeMap<String, Vec<String>> {
        let mut targets: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for stream in self.pipeline.streams() {
            if options.table.as_ref().is_some_and(|t| t != stream.table())
                || !stream.destinations().contains(&options.connection)
            {
                continue;
            }
            targets
                .entry(stream.table().to_owned())
                .or_default()
                .push(stream.name().to_owned());
        }
        targets
    }

    fn rebuild_in(
        &self,
        session: &Session,
        options: &RebuildOptions,
        targets: &BTreeMap<String, Vec<String>>,
    ) -> Result<RebuildReport> {
        let parts = select(&session.reader, self)?;
        let labels: Vec<String> = parts
            .keys()
            .filter(|(s, _)| targets.values().flatten().any(|t| t == s))
            .map(|(s, p)| part_label(s, p.as_deref()))
            .collect();
        session.record(
            EntryKind::RunStarted {
                pipeline_file: pipeline_file(&self.pipeline),
                trigger: REBUILD_TRIGGER.into(),
                streams: labels,
                args: options.args_text(),
            },
            Vec::new(),
        )?;
        let mut report = RebuildReport {
            run: session.run,
            tables: Vec::new(),
        };
        let mut next_seq = None;
        let (mut rows, mut batches) = (0, 0);
        for (table, streams) in targets {
            let table_parts: Vec<(&Part, &Vec<(u64, u64)>)> = parts
                .iter()
                .filter(|((s, _), b)| streams.contains(s) && !b.is_empty())
                .collect();
            let mut done = TableRebuild {
                table: table.clone(),
                batches: table_parts.iter().map(|(_, b)| b.len() as u64).sum(),
                rows: 0,
                offsets: Vec::new(),
                error: None,
            };
            let written = self.rebuild_table(
                session,
                &options.connection,
                table,
                &table_parts,
                &mut next_seq,
            )?;
            match written {
                Ok(n) => {
                    done.rows = n;
                    rows += n;
                    batches += done.batches;
                    for ((stream, partition), b) in &table_parts {
                        let Some(&(last, _)) = b.last() else { continue };
                        done.offsets
                            .push((part_label(stream, partition.as_deref()), last));
                        // The lane is up to date: its status says so, and a failure journaled
                        // for it is cleared.
                        session.record(
                            EntryKind::WriteApplied {
                                stream: stream.clone(),
                                partition: partition.clone(),
                                destination: options.connection.clone(),
                                batch_seq: last,
                                rows: b.iter().map(|(_, r)| r).sum(),
                                attempt: 1,
                                elapsed_us: session.elapsed_us(),
                            },
                            Vec::new(),
                        )?;
                    }
                }
                Err(e) => done.error = Some(e),
            }
            report.tables.push(done);
        }
        let ok = report.tables.iter().filter(|t| t.error.is_none()).count();
        session.record(
            EntryKind::RunCompleted {
                rows,
                batches,
                streams_ok: u32::try_from(ok).unwrap_or(u32::MAX),
                streams_failed: u32::try_from(report.tables.len() - ok).unwrap_or(u32::MAX),
                elapsed_us: session.elapsed_us(),
            },
            Vec::new(),
        )?;
        Ok(report)
    }

    /// Rebuilds one table from the batches of `parts`; the rows written, or why the
    /// destination refused.
    fn rebuild_table(
        &self,
        session: &Session,
        connection: &str,
        table: &str,
        parts: &[(&Part, &Vec<(u64, u64)>)],
        next_seq: &mut Option<u64>,
    ) -> Result<std::result::Result<u64, String>> {
        let mut seqs: Vec<(u64, u64)> = parts.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        seqs.sort_unstable();
        let started = std::time::Instant::now();
        let Some(schema) = table_schema(&session.reader, &seqs)? else {
            // Nothing but deletes journaled: no schema to create the table with, and no row.
            return Ok(Ok(0));
        };
        if schema.primary_key().is_empty() {
            return Ok(Err(format!(
                "table `{table}` has no primary key: a rebuild writes one final row per key"
            )));
        }
        let pool = &session.pool;
        let pipeline = self.pipeline.name();
        let call = |what: &str, e: CallError| {
            format!("{what} of `{table}` in `{connection}`: {}", e.message)
        };
        let mut written = 0;
        let mut seq = 0;
        let outcome = std::thread::scope(|s| -> Result<std::result::Result<(), String>> {
            // The journal is read, newest batch first, while the destination empties the
            // table and then writes the rows found final.
            let (tx, rx) = mpsc::sync_channel::<Result<Ready>>(READ_AHEAD);
            let reader = session.reader.clone();
            let seqs = &seqs;
            s.spawn(move || {
                let sent = final_rows(&reader, seqs, |ready| tx.send(Ok(ready)).is_ok());
                if let Err(e) = sent {
                    let _ = tx.send(Err(e));
                }
            });
            let begun = pool.with(connection, |c| {
                c.rewrite_table(&RewriteStep::Begin(PrepareTable {
                    table: table.to_owned(),
                    schema: (*schema).clone(),
                    replace: true,
                }))
            });
            if let Err(e) = begun {
                return Ok(Err(call("starting the rewrite", e)));
            }
            tracing::debug!(
                table,
                elapsed_ms = started.elapsed().as_millis(),
                "rebuild: rewrite started"
            );
            seq = match *next_seq {
                Some(s) => s,
                None => {
                    match pool.with(connection, |c| c.last_applied_seq(pipeline, REBUILD_STREAM)) {
                        Ok(last) => last.unwrap_or(0) + 1,
                        Err(e) => return Ok(Err(call("reading the rebuild offset", e))),
                    }
                }
            };
            *next_seq = Some(seq);
            for ready in rx {
                let ready = ready?;
                let request = WriteRequest {
                    pipeline: pipeline.to_owned(),
                    stream: REBUILD_STREAM.to_owned(),
                    table: table.to_owned(),
                    seq,
                    op: WriteOp::Insert,
                };
                if let Err(e) = pool.with(connection, |c| c.write(&request, &ready.bytes)) {
                    // Dropping the receiver stops the reader.
                    return Ok(Err(call(
                        &format!("writing the final rows of journal seq {}", ready.seq),
                        e,
                    )));
                }
                seq += 1;
                *next_seq = Some(seq);
                written += ready.rows;
            }
            Ok(Ok(()))
        })?;
        if let Err(e) = outcome {
            return Ok(Err(e));
        }
        tracing::debug!(
            table,
            rows = written,
            elapsed_ms = started.elapsed().as_millis(),
            "rebuild: final rows written"
        );
        // The rows no final row overwrote go (stale keys included), before the offsets.
        if let Err(e) = pool.with(connection, |c| {
            c.rewrite_table(&RewriteStep::End(table.to_owned()))
        }) {
            return Ok(Err(call("ending the rewrite", e)));
        }
        // The offsets last: a run goes on after the last journaled batch of each part.
        let empty = Batch::empty(Arc::clone(&schema))
            .encode()
            .map_err(|e| EngineError::Batch {
                seq: 0,
                message: format!("an empty batch of `{table}`: {e}"),
            })?;
        for ((stream, partition), b) in parts {
            let Some(&(last, _)) = b.last() else { continue };
            let request = WriteRequest {
                pipeline: pipeline.to_owned(),
                stream: part_label(stream, partition.as_deref()),
                table: table.to_owned(),
                seq: last,
                op: WriteOp::Upsert,
            };
            if let Err(e) = pool.with(connection, |c| c.write(&request, &empty)) {
                return Ok(Err(call(
                    &format!("setting the offset of `{}` to {last}", request.stream),
                    e,
                )));
            }
        }
        Ok(Ok(written))
    }
}

/// Per part, the batches (seq, rows) its destinations hold after a replay: every batch, or
/// for a snapshot stream those of its last finished snapshot.
fn select(reader: &Reader, engine: &Engine) -> Result<BTreeMap<Part, Vec<(u64, u64)>>> {
    let pipeline = &engine.pipeline;
    let mut parts: BTreeMap<Part, Vec<Instance>> = BTreeMap::new();
    for stored in reader.entries_from(1)? {
        let e = stored?.entry;
        if e.pipeline == pipeline.name() {
            instances::fold(&mut parts, &e);
        }
    }
    Ok(parts
        .into_iter()
        .map(|(part, found)| {
            let snapshot = pipeline
                .stream(&part.0)
                .is_some_and(|s| s.mode() == Mode::Snapshot);
            (part, instances::held(found, snapshot))
        })
        .collect())
}

fn decode(seq: u64, bytes: &[u8]) -> Result<Batch> {
    Batch::decode(bytes).map_err(|e| EngineError::Batch {
        seq,
        message: e.to_string(),
    })
}

/// The table's schema: that of the last batch of rows at `seqs` (not of deleted keys).
fn table_schema(reader: &Reader, seqs: &[(u64, u64)]) -> Result<Option<Arc<Schema>>> {
    for &(seq, _) in seqs.iter().rev() {
        let batch = decode(seq, &batch_bytes(reader, seq)?)?;
        if !is_delete_schema(batch.schema()) {
            return Ok(Some(Arc::clone(batch.schema())));
        }
    }
    Ok(None)
}

/// Hands `ready` the final rows of the batches at `seqs`, newest batch first, each batch
/// encoded: as the journal holds it when all its rows are final, else cut down to them. Read
/// backwards, the journal says at once which rows are final: a row is unless a newer batch,
/// or a later row of its own, has its key (a delete included). Stops when `ready` returns
/// false.
fn final_rows(
    reader: &Reader,
    seqs: &[(u64, u64)],
    mut ready: impl FnMut(Ready) -> bool,
) -> Result<()> {
    // Sized for every journaled row at once: growing it rehashed every key seen, a tenth of
    // a rebuild's time.
    let journaled: u64 = seqs.iter().map(|(_, rows)| rows).sum();
    let mut seen = KeySet::with_capacity(usize::try_from(journaled).unwrap_or(usize::MAX));
    let mut scratch = Vec::new();
    let mut seen_now = |batch: &Batch, key: &[usize], row: usize| {
        scratch.clear();
        key_bytes_into(batch, key, row, &mut scratch);
        seen.insert(&scratch)
    };
    for &(seq, _) in seqs.iter().rev() {
        let bytes = batch_bytes(reader, seq)?;
        let batch = decode(seq, &bytes)?;
        let key = batch.schema().primary_key();
        let rows = batch.num_rows();
        if is_delete_schema(batch.schema()) {
            for row in 0..rows {
                seen_now(&batch, key, row);
            }
            continue;
        }
        let mut keep: Vec<u32> = (0..rows)
            .rev()
            .filter(|&row| seen_now(&batch, key, row))
            .map(|row| u32::try_from(row).unwrap_or(u32::MAX))
            .collect();
        keep.reverse();
        let bytes = if keep.len() == rows {
            bytes
        } else if keep.is_empty() {
            continue;
        } else {
            select_rows(&batch, &keep).map_err(|e| EngineError::Batch {
                seq,
                message: format!("taking its final rows: {e}"),
            })?
        };
        let rows = keep.len() as u64;
        if !ready(Ready { seq, rows, bytes }) {
            return Ok(());
        }
    }
    Ok(())
}

/// The rows `keep` of `batch`, encoded.
fn select_rows(batch: &Batch, keep: &[u32]) -> caudal_connector::Result<Vec<u8>> {
    let mut b = BatchBuilder::with_capacity(Arc::clone(batch.schema()), keep.len());
    for &row in keep {
        for col in 0..batch.num_columns() {
            let value = batch.value(row as usize, col).unwrap_or(Value::Null);
            b.push_value(col, &value)?;
        }
    }
    b.finish()?.encode()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use caudal_connector::{Field, LogicalType};

    use super::super::verify::key_bytes;
    use super::*;

    /// The scopes [`unfinished`] finds in a journal of rebuild runs, each
    /// `(trigger, args, end)` with `end` `None` (no end entry), `Some(0)` (completed) or
    /// `Some(n)` (completed with `n` tables failed; `u32::MAX` for `RunFailed`).
    fn open_scopes(runs: &[(&str, &str, Option<u32>)]) -> Vec<(String, Option<String>)> {
        let p = super::super::Projection::new();
        let mut seq = 0;
        for (i, (trigger, args, end)) in runs.iter().enumerate() {
            let run = Some(RunId(i as u64 + 1));
            seq += 1;
            let started = EntryKind::RunStarted {
                pipeline_file: "p.toml".into(),
                trigger: (*trigger).into(),
                streams: vec!["s".into()],
                args: (*args).into(),
            };
            p.apply(seq, seq as i64, run, "p", &started);
            let ended = match *end {
                None => continue,
                Some(u32::MAX) => EntryKind::RunFailed {
                    error: "journal".into(),
                    elapsed_us: 1,
                },
                Some(failed) => EntryKind::RunCompleted {
                    rows: 1,
                    batches: 1,
                    streams_ok: 1,
                    streams_failed: failed,
                    elapsed_us: 1,
                },
            };
            seq += 1;
            p.apply(seq, seq as i64, run, "p", &ended);
        }
        unfinished(&p.runs())
            .into_iter()
            .map(|o| (o.connection, o.table))
            .collect()
    }

    #[test]
    fn a_rebuild_is_unfinished_until_one_of_its_scope_or_wider_completes_whole() {
        let scope = |c: &str, t: Option<&str>| (c.to_owned(), t.map(str::to_owned));
        // Killed (no end), failed, or a table it could not rebuild: unfinished.
        assert_eq!(
            open_scopes(&[("rebuild", "--connection cache", None)]),
            [scope("cache", None)]
        );
        assert_eq!(
            open_scopes(&[("rebuild", "--connection cache", Some(u32::MAX))]),
            [scope("cache", None)]
        );
        assert_eq!(
            open_scopes(&[("rebuild", "--connection cache --table a b", Some(1))]),
            [scope("cache", Some("a b"))],
            "the table name is the rest of the arguments, spaces included"
        );
        // Finished whole, or other runs only: nothing.
        assert!(open_scopes(&[("rebuild", "--connection cache", Some(0))]).is_empty());
        assert!(open_scopes(&[("manual", "--connection cache", None)]).is_empty());
        assert!(open_scopes(&[("rebuild", "--stream x", None)]).is_empty());
        // A later rebuild of the same scope, or of the whole connection, finishes it; one of
        // a single table does not finish the whole connection's, nor another connection's.
        assert!(
            open_scopes(&[
                ("rebuild", "--connection cache --table t", None),
                ("manual", "", Some(0)),
                ("rebuild", "--connection cache", Some(0)),
            ])
            .is_empty()
        );
        assert_eq!(
            open_scopes(&[
                ("rebuild", "--connection cache", None),
                ("rebuild", "--connection cache --table t", Some(0)),
                ("rebuild", "--connection other", Some(0)),
            ]),
            [scope("cache", None)]
        );
        // Each scope once; a wider one takes the place of the narrower ones it covers.
        assert_eq!(
            open_scopes(&[
                ("rebuild", "--connection cache --table t", None),
                ("rebuild", "--connection cache --table t", Some(2)),
                ("rebuild", "--connection other --table u", None),
            ]),
            [scope("cache", Some("t")), scope("other", Some("u"))]
        );
        assert_eq!(
            open_scopes(&[
                ("rebuild", "--connection cache --table t", None),
                ("rebuild", "--connection cache", None),
                ("rebuild", "--connection cache --table u", None),
            ]),
            [scope("cache", None)]
        );
    }

    #[test]
    fn sequential_keys_spread_over_the_hash_space() {
        use std::hash::BuildHasher;
        let schema = Arc::new(
            Schema::new(vec![Field::new("id", LogicalType::Int64, false)], &["id"]).unwrap(),
        );
        let mut b = BatchBuilder::new(Arc::clone(&schema));
        for id in 0..100_000i64 {
            b.push(0, id).unwrap();
        }
        let batch = b.finish().unwrap();
        let build = BuildHasherDefault::<KeyHasher>::default();
        let hashes: Vec<u64> = (0..batch.num_rows())
            .map(|row| build.hash_one(key_bytes(&batch, &[0], row)))
            .collect();
        let distinct =
            |f: &dyn Fn(u64) -> u64| hashes.iter().map(|&h| f(h)).collect::<HashSet<u64>>().len();
        assert_eq!(distinct(&|h| h), 100_000);
        // 100,000 random values fill about 51,000 of 65,536 buckets.
        assert!(distinct(&|h| h & 0xffff) > 48_000);
        assert_eq!(distinct(&|h| h >> 57), 128);
    }

    #[test]
    fn the_key_set_says_new_once_per_key_even_when_it_grows() {
        // Sized for 10 keys, given 20,000: the table grows and rehashes from its buffer.
        let mut set = KeySet::with_capacity(10);
        let mut reference = HashSet::new();
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Keys of 0 to 20 bytes, many of them prefixes of others, some repeated.
            let len = (x % 21) as usize;
            let key = (x % 3_000).to_le_bytes().repeat(3)[..len].to_vec();
            assert_eq!(set.insert(&key), reference.insert(key.clone()), "{key:?}");
        }
        assert!(reference.len() > 1_000);
        for key in &reference {
            assert!(!set.insert(key), "{key:?}");
        }
    }

    #[test]
    fn selected_rows_keep_their_values_and_nulls() {
        let schema = Arc::new(
            Schema::new(
                vec![
                    Field::new("id", LogicalType::Int64, false),
                    Field::new("name", LogicalType::Text { max_bytes: None }, true),
                ],
                &["id"],
            )
            .unwrap(),
        );
        let mut b = BatchBuilder::new(Arc::clone(&schema));
        for (id, name) in [(1i64, Some("a")), (2, None), (3, Some("c"))] {
            b.push(0, id).unwrap();
            match name {
                Some(n) => b.push(1, n).unwrap(),
                None => b.push_null(1).unwrap(),
            }
        }
        let batch = b.finish().unwrap();
        let cut = Batch::decode(&select_rows(&batch, &[1, 2]).unwrap()).unwrap();
        assert_eq!(cut.num_rows(), 2);
        assert_eq!(cut.value(0, 0), Some(Value::Int(2)));
        assert_eq!(cut.value(0, 1), Some(Value::Null));
        assert_eq!(cut.value(1, 1), batch.value(2, 1));
    }
}
