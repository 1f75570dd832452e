//! `caudal verify`: compares, for each destination table of a pipeline, the digest the journal
//! implies with the digest of what the destination holds, names the rows that differ, and
//! (`--repair`) writes back only those rows from the journal.
//!
//! **Expected state.** A fold over the journal's `BatchRead` payloads of the streams that write
//! the table, in seq order: for a keyed table, primary key -> row digest (upserts replace,
//! delete batches remove); for a keyless one, the multiset of rows. A snapshot stream
//! contributes only its last snapshot that finished reading (the one a run or a replay swaps
//! in), as in [`super::replay`]. The table digest is kept incrementally (LtHash: remove the
//! old row, add the new one), and the destination's digest is computed on another thread
//! while the journal is folded, so a verify that passes costs about one scan of each side.
//!
//! **Bisection.** On a mismatch, ranges over the sorted expected keys are halved: the sink
//! digests the left half (`Sink::table_digest` with a [`KeyRange`]), the right half is the
//! parent minus the left (the digest is homomorphic). Ranges whose digests agree are done; a
//! range the destination has no row in is all missing; a small range is read back through
//! the connector's source side and compared row by row: missing, extra and changed keys.
//! Ranges cover the whole key space (the first is unbounded below, the last above), so an
//! extra row anywhere falls in one of them. Keys are compared with an order-preserving
//! encoding of their logical values, which is the order of the databases' binary collations.
//! Bisection has a budget: once its range digests and reads have covered three times the
//! table's rows (many rows differ), the ranges still open are settled by one read of the whole
//! table, each row compared with the expected row of its key when its key falls in one of
//! them. A destination that keeps no key order (Redis,
//! [`caudal_connector::Capabilities::UNORDERED`]) would answer every key range with a read of
//! the whole table, so it is not bisected at all: it is read once that way.
//!
//! A row read back with a digest other than its expected row's is changed only if the sink
//! agrees: the source side may read a column in another logical class than the stream's. When
//! the read-back digests of a read add up to the sink's digest of what was read (a leaf's
//! range, or the whole table), every row of it was read back as the sink digests it, and its
//! changed rows are named at once; otherwise the sink digests each such key alone.
//!
//! **Repair.** The expected rows of missing and changed keys are upserted and extra keys
//! deleted, through `Sink::write` under the offset streams `_caudal_repair` and
//! `_caudal_repair_deletes`, with the seq of the mismatch's `VerifyResult` entry or, when a
//! larger repair went past it, the seqs after that repair's offset: the real lanes' offsets
//! do not move, and every repair write is newer than the last.
//!
//! Every table checked is journaled as a `VerifyResult` (after a repair: one for the mismatch,
//! one for the state after it).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::ops::Bound;
use std::sync::Arc;

use caudal_config::Mode;
use caudal_connector::{
    Batch, BatchBuilder, DigestRequest, ErrorCode, KeyRange, PrepareTable, ReadRequest, ReadTarget,
    RowDigest, Schema, TableDigest, Value, WriteOp, WriteRequest,
};
use caudal_journal::{Digest, EntryKind, Payload, Reader};

use super::instances::{self, Instance, Part};

use super::endpoint::{CallError, ConnectionPool, Endpoint};
use super::error::{EngineError, Result};
use super::run::Engine;
use super::session::Session;
use super::shape::{delete_schema, is_delete_schema};
use crate::host::HostError;

/// Offset stream of repair upserts.
pub const REPAIR_STREAM: &str = "_caudal_repair";
/// Offset stream of repair deletes.
pub const REPAIR_DELETES_STREAM: &str = "_caudal_repair_deletes";

/// Ranges with at most this many expected keys are compared row by row.
const LEAF_KEYS: usize = 64;
/// Bisection stops once its range digests and reads have covered this many times the table's
/// rows: the ranges still open are settled by one read of the whole table instead (many rows
/// differ, and bisecting them would cost more). A row read back through the source side costs
/// a few times a row digested inside the destination, hence more than one table's worth.
const WHOLE_READS: usize = 3;
/// A call to the destination, counted in rows for that budget.
const CALL_ROWS: usize = 100;
/// At most this many keys of each kind are kept in a `VerifyResult` entry.
const JOURNALED_KEYS: usize = 1000;
/// Batches at least this large are digested on two threads.
const PARALLEL_ROWS: usize = 4096;
/// Rows per repair write.
const REPAIR_CHUNK: usize = 10_000;

/// What to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Only this destination connection.
    pub connection: Option<String>,
    /// Only this destination table.
    pub table: Option<String>,
    /// Write the differing rows back from the journal.
    pub repair: bool,
}

/// The state of one side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSummary {
    /// SHA-256 of the LtHash state, hex.
    pub digest: String,
    /// Rows.
    pub rows: i64,
}

impl DigestSummary {
    fn of(d: &TableDigest) -> DigestSummary {
        DigestSummary {
            digest: d.hex(),
            rows: d.rows(),
        }
    }
}

/// One destination table checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCheck {
    /// Destination connection.
    pub connection: String,
    /// Table.
    pub table: String,
    /// What the journal implies.
    pub expected: DigestSummary,
    /// What the destination holds (before any repair); `None` when it could not be read
    /// (see `error`).
    pub actual: Option<DigestSummary>,
    /// Whether they were equal.
    pub ok: bool,
    /// Keys the destination lacks, as text (`v1,v2` for composite keys), sorted.
    pub missing: Vec<String>,
    /// Keys the destination has and the journal does not.
    pub extra: Vec<String>,
    /// Keys whose row differs.
    pub changed: Vec<String>,
    /// Rows in excess whose keys could not be listed (a destination without a source side).
    pub unlisted_extra: u64,
    /// After `--repair`: the destination's digest then, and whether it equals the expected.
    pub repaired: Option<(DigestSummary, bool)>,
    /// Why the table could not be checked or repaired.
    pub error: Option<String>,
}

impl TableCheck {
    /// Whether the table ends equal to the journal (after the repair, if one was made).
    pub fn passes(&self) -> bool {
        self.error.is_none()
            && match &self.repaired {
                Some((_, ok)) => *ok,
                None => self.ok,
            }
    }
}

/// The result of a verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// One per destination table, sorted by connection then table.
    pub tables: Vec<TableCheck>,
}

impl VerifyReport {
    /// Whether every table ends equal to the journal.
    pub fn passes(&self) -> bool {
        self.tables.iter().all(TableCheck::passes)
    }
}

/// A destination table and the streams that write it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    connection: String,
    table: String,
}

/// Where an expected row is in the journal, and its digest.
#[derive(Debug, Clone, Copy)]
struct ExpectedRow {
    digest: RowDigest,
    seq: u64,
    row: u32,
}

/// Encoded primary key -> `V`. The fold holds one entry per expected row, so the hasher is
/// foldhash (seeded at random per process) rather than SipHash, the largest single cost of a
/// fold before.
type KeyMap<V> = HashMap<Vec<u8>, V, foldhash::fast::RandomState>;

/// The fold of one table.
struct Expected {
    /// Whether the table has a primary key (true until a batch of rows says otherwise).
    keyed: bool,
    /// Key -> row, for a keyed table; empty while only the digest was loaded.
    rows: KeyMap<ExpectedRow>,
    /// Whether `rows` holds every expected row (false: only the digest is known).
    complete: bool,
    digest: TableDigest,
    /// Rows of a batch seen yet (the first one decides `keyed`).
    seen_rows: bool,
}

impl Expected {
    fn new() -> Expected {
        Expected {
            keyed: true,
            rows: KeyMap::default(),
            complete: true,
            digest: TableDigest::new(),
            seen_rows: false,
        }
    }
}

/// Rows read back from a destination: encoded key -> (row digest, key values).
type FoundRows = KeyMap<(RowDigest, Vec<Value>)>;

/// The journal's `BatchRead` seqs per part and stream instance, as folded up to `last_seq`
/// (whose chain hash is `chain`): saved next to the segments so that a verify reads only the
/// entries journaled since instead of every entry with its rows. A checkpoint whose entry is
/// no longer in the journal with that chain (another journal, a rewritten one) is ignored.
#[derive(serde::Serialize, serde::Deserialize)]
struct PartsCheckpoint {
    version: u32,
    last_seq: u64,
    chain: [u8; 32],
    parts: Vec<(Part, Vec<Instance>)>,
}

impl PartsCheckpoint {
    /// 2: instances hold `(seq, rows)`.
    const VERSION: u32 = 2;

    fn path(reader: &Reader, pipeline: &str) -> std::path::PathBuf {
        reader
            .dir()
            .join(format!("verify-parts-{}.bin", hex::encode(pipeline)))
    }

    fn load(reader: &Reader, pipeline: &str) -> Option<PartsCheckpoint> {
        let bytes = std::fs::read(Self::path(reader, pipeline)).ok()?;
        let (c, _): (PartsCheckpoint, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).ok()?;
        if c.version != Self::VERSION {
            return None;
        }
        let stored = reader.get(c.last_seq).ok()??;
        (stored.chain.0 == c.chain).then_some(c)
    }

    fn parts(self) -> BTreeMap<Part, Vec<Instance>> {
        self.parts.into_iter().collect()
    }

    /// Saves the fold; a checkpoint that cannot be written only costs the next verify a
    /// longer read.
    fn save(
        reader: &Reader,
        pipeline: &str,
        last_seq: u64,
        chain: [u8; 32],
        parts: &BTreeMap<Part, Vec<Instance>>,
    ) {
        let c = PartsCheckpoint {
            version: Self::VERSION,
            last_seq,
            chain,
            parts: parts.iter().map(|(p, i)| (p.clone(), i.clone())).collect(),
        };
        let path = Self::path(reader, pipeline);
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let written = bincode::serde::encode_to_vec(&c, bincode::config::standard())
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(err) = written {
            tracing::warn!(error = %err, "verify checkpoint not written");
        }
    }
}

impl Engine {
    /// Verifies (and with `options.repair`, repairs) the pipeline's destination tables. See
    /// the module documentation.
    pub fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport> {
        let targets = self.verify_targets(options)?;
        // Every destination is digested at once: opened while the journal opens.
        let mut destinations: Vec<&str> = targets.keys().map(|t| t.connection.as_str()).collect();
        destinations.dedup();
        let session = Session::open_warming(
            Arc::clone(&self.pipeline),
            Arc::clone(&self.endpoints),
            &destinations,
        )?;
        let result = self.verify_targets_in(&session, &targets, options);
        let closed = session.close();
        let report = result?;
        closed?;
        Ok(report)
    }

    /// The destination tables to check, with the streams writing each.
    fn verify_targets(&self, options: &VerifyOptions) -> Result<BTreeMap<Target, Vec<String>>> {
        let path = self.pipeline.path().display();
        if let Some(c) = &options.connection
            && self.pipeline.connection(c).is_none()
        {
            return Err(EngineError::Usage(format!(
                "--connection {c}: no such connection in {path}"
            )));
        }
        let mut targets: BTreeMap<Target, Vec<String>> = BTreeMap::new();
        for stream in self.pipeline.streams() {
            if options.table.as_ref().is_some_and(|t| t != stream.table()) {
                continue;
            }
            for d in stream.destinations() {
                if options.connection.as_ref().is_some_and(|c| c != d) {
                    continue;
                }
                targets
                    .entry(Target {
                        connection: d.clone(),
                        table: stream.table().to_owned(),
                    })
                    .or_default()
                    .push(stream.name().to_owned());
            }
        }
        if targets.is_empty() {
            return Err(EngineError::Usage(format!(
                "no stream of {path} writes{}{}",
                options
                    .table
                    .as_ref()
                    .map(|t| format!(" table `{t}`"))
                    .unwrap_or_else(|| " any table".into()),
                options
                    .connection
                    .as_ref()
                    .map(|c| format!(" into connection `{c}`"))
                    .unwrap_or_default()
            )));
        }
        Ok(targets)
    }

    fn verify_targets_in(
        &self,
        session: &Session,
        targets: &BTreeMap<Target, Vec<String>>,
        options: &VerifyOptions,
    ) -> Result<VerifyReport> {
        let selected = self.expected_batches(&session.reader)?;
        let mut report = VerifyReport { tables: Vec::new() };
        for (target, streams) in targets {
            let mut held: Vec<(u64, u64)> = selected
                .iter()
                .filter(|((stream, _), _)| streams.contains(stream))
                .flat_map(|(_, s)| s.iter().copied())
                .collect();
            held.sort_unstable();
            let (seqs, rows): (Vec<u64>, Vec<u64>) = held.into_iter().unzip();
            let check = self.verify_table(session, target, &seqs, &rows, options.repair)?;
            report.tables.push(check);
        }
        Ok(report)
    }

    /// Per part (`(stream, partition)`), the seqs and row counts of the batches its
    /// destinations should hold: every batch, or for a snapshot stream those of its last
    /// finished snapshot.
    ///
    /// The fold of the journal's entries into parts is checkpointed next to the segments
    /// ([`PartsCheckpoint`]), so a later verify reads only the entries journaled since.
    fn expected_batches(&self, reader: &Reader) -> Result<BTreeMap<Part, Vec<(u64, u64)>>> {
        let pipeline = self.pipeline.name();
        let (mut parts, from) = match PartsCheckpoint::load(reader, pipeline) {
            Some(c) => {
                let from = c.last_seq + 1;
                (c.parts(), from)
            }
            None => (BTreeMap::new(), 1),
        };
        let mut last = None;
        for stored in reader.entries_from(from)? {
            let stored = stored?;
            last = Some((stored.entry.seq, stored.chain.0));
            if stored.entry.pipeline == pipeline {
                instances::fold(&mut parts, &stored.entry);
            }
        }
        if let Some((seq, chain)) = last {
            PartsCheckpoint::save(reader, pipeline, seq, chain, &parts);
        }
        let mut out = BTreeMap::new();
        for (part, found) in parts {
            let snapshot = self
                .pipeline
                .stream(&part.0)
                .is_some_and(|s| s.mode() == Mode::Snapshot);
            out.insert(part, instances::held(found, snapshot));
        }
        Ok(out)
    }

    fn verify_table(
        &self,
        session: &Session,
        target: &Target,
        seqs: &[u64],
        rows: &[u64],
        repair: bool,
    ) -> Result<TableCheck> {
        let mut batches = BatchCache::new(&session.reader);
        let schema = destination_schema(&mut batches, seqs)?;
        let request = schema.as_ref().map(|schema| DigestRequest {
            table: target.table.clone(),
            schema: (**schema).clone(),
            range: KeyRange::all(),
        });
        // The destination digests its table while the journal is folded.
        let pool = &session.pool;
        let (expected, actual) = std::thread::scope(|s| {
            let actual = request.as_ref().map(|request| {
                s.spawn(|| pool.with(&target.connection, |c| c.table_digest(request)))
            });
            let expected = expected_state(&session.reader, target, (seqs, rows), &batches, false);
            let actual = actual.map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(CallError {
                        message: "the digest thread panicked".into(),
                        retryable: false,
                        code: None,
                    })
                })
            });
            (expected, actual)
        });
        let mut expected = expected?;
        let mut check = TableCheck {
            connection: target.connection.clone(),
            table: target.table.clone(),
            expected: DigestSummary::of(&expected.digest),
            actual: None,
            ok: false,
            missing: Vec::new(),
            extra: Vec::new(),
            changed: Vec::new(),
            unlisted_extra: 0,
            repaired: None,
            error: None,
        };
        let Some(schema) = schema else {
            // Nothing journaled for this table: there is no schema to read it in.
            check.actual = Some(DigestSummary::of(&TableDigest::new()));
            check.ok = true;
            check.error = None;
            self.journal_result(session, &check, &expected.digest, &TableDigest::new())?;
            return Ok(check);
        };
        let mut table_missing = false;
        let actual = match actual {
            Some(Ok(d)) => d,
            Some(Err(e)) if e.code == Some(ErrorCode::NotFound) => {
                table_missing = true;
                TableDigest::new()
            }
            Some(Err(e)) => {
                check.error = Some(format!(
                    "digest of `{}` in `{}`: {}",
                    target.table, target.connection, e.message
                ));
                return Ok(check);
            }
            None => TableDigest::new(),
        };
        check.actual = Some(DigestSummary::of(&actual));
        check.ok = actual == expected.digest;
        if !check.ok && expected.keyed && !expected.complete {
            expected = expected_state(&session.reader, target, (seqs, rows), &batches, true)?;
        }
        let mut diff = Diff::default();
        if !check.ok {
            if expected.keyed {
                let unordered = pool
                    .with(&target.connection, |c| Ok(c.unordered()))
                    .unwrap_or(false);
                let mut b = Bisect {
                    pool,
                    target,
                    schema: &schema,
                    expected: &expected,
                    sorted: sorted_keys(&expected.rows),
                    batches: &mut batches,
                    diff: &mut diff,
                    actual: &actual,
                };
                // A failed whole read leaves the diff untouched: bisection (with point digests
                // where reads fail) is the way left.
                let compared = if unordered {
                    b.compare_all().or_else(|_| b.run())
                } else {
                    b.run()
                };
                if let Err(e) = compared {
                    check.error = Some(e);
                }
            } else {
                check.error = Some(
                    "the table has no primary key: the rows that differ cannot be named".into(),
                );
            }
            check.missing = diff.missing.iter().map(|(_, t)| t.clone()).collect();
            check.extra = diff.extra.iter().map(|(_, t)| t.clone()).collect();
            check.changed = diff.changed.iter().map(|(_, t)| t.clone()).collect();
            check.unlisted_extra = diff.unlisted_extra;
        }
        let verify_seq = self.journal_result(session, &check, &expected.digest, &actual)?;
        if repair && !check.ok && expected.keyed && check.error.is_none() {
            let written = repair_rows(
                session,
                target,
                &schema,
                &expected,
                &diff,
                &mut batches,
                verify_seq,
                table_missing,
            );
            if let Err(e) = written {
                check.error = Some(format!("repair: {e}"));
                return Ok(check);
            }
            let request = DigestRequest {
                table: target.table.clone(),
                schema: (*schema).clone(),
                range: KeyRange::all(),
            };
            match pool.with(&target.connection, |c| c.table_digest(&request)) {
                Ok(after) => {
                    let ok = after == expected.digest;
                    let mut again = check.clone();
                    again.actual = Some(DigestSummary::of(&after));
                    again.ok = ok;
                    again.missing.clear();
                    again.extra.clear();
                    again.changed.clear();
                    again.unlisted_extra = 0;
                    self.journal_result(session, &again, &expected.digest, &after)?;
                    check.repaired = Some((DigestSummary::of(&after), ok));
                }
                Err(e) => check.error = Some(format!("digest after the repair: {}", e.message)),
            }
        }
        drop_aside(expected);
        Ok(check)
    }

    fn journal_result(
        &self,
        session: &Session,
        check: &TableCheck,
        expected: &TableDigest,
        actual: &TableDigest,
    ) -> Result<u64> {
        let keys: Vec<String> = [
            ("missing", &check.missing),
            ("extra", &check.extra),
            ("changed", &check.changed),
        ]
        .into_iter()
        .flat_map(|(kind, keys)| {
            keys.iter()
                .take(JOURNALED_KEYS)
                .map(move |k| format!("{kind} {k}"))
        })
        .map(|k| self.pipeline.scrub(&k).into_owned())
        .collect();
        session.record(
            EntryKind::VerifyResult {
                connection: check.connection.clone(),
                table: check.table.clone(),
                expected: state_digest(expected),
                actual: state_digest(actual),
                ok: check.ok,
                missing: check.missing.len() as u64,
                extra: check.extra.len() as u64 + check.unlisted_extra,
                changed: check.changed.len() as u64,
                keys,
            },
            Vec::new(),
        )
    }
}

/// What users see of a table digest, as the journal stores it.
fn state_digest(d: &TableDigest) -> Digest {
    Digest::of(&d.state_bytes())
}

/// Decoded journal batches, by seq, kept while a table is verified.
struct BatchCache<'r> {
    reader: &'r Reader,
    batches: HashMap<u64, Arc<Batch>>,
}

impl<'r> BatchCache<'r> {
    fn new(reader: &'r Reader) -> BatchCache<'r> {
        BatchCache {
            reader,
            batches: HashMap::new(),
        }
    }

    /// Reads and decodes the batch at `seq` (not kept).
    fn load(&self, seq: u64) -> Result<Batch> {
        let stored = self.reader.get(seq)?.ok_or_else(|| EngineError::Batch {
            seq,
            message: "no such entry in the journal".into(),
        })?;
        decode_payload(seq, stored.entry.payload)
    }

    /// Decodes the batches at `seqs` (ascending) in one pass over the journal, handing each
    /// to `f` in order: one sequential read, where a lookup per batch would open and search
    /// the segment each time.
    fn for_each(&self, seqs: &[u64], mut f: impl FnMut(u64, Batch) -> Result<()>) -> Result<()> {
        let Some(&first) = seqs.first() else {
            return Ok(());
        };
        let mut want = seqs.iter().copied().peekable();
        for stored in self.reader.entries_from(first)? {
            let e = stored?.entry;
            let Some(&next) = want.peek() else {
                break;
            };
            if e.seq < next {
                continue;
            }
            if e.seq > next {
                break;
            }
            want.next();
            f(e.seq, decode_payload(e.seq, e.payload)?)?;
        }
        match want.next() {
            None => Ok(()),
            Some(seq) => Err(EngineError::Batch {
                seq,
                message: "no such entry in the journal".into(),
            }),
        }
    }

    /// The batch at `seq`, decoded once.
    fn get(&mut self, seq: u64) -> Result<Arc<Batch>> {
        if let Some(b) = self.batches.get(&seq) {
            return Ok(Arc::clone(b));
        }
        let b = Arc::new(self.load(seq)?);
        self.batches.insert(seq, Arc::clone(&b));
        Ok(b)
    }
}

/// The batch an entry's payload holds.
fn decode_payload(seq: u64, payload: Payload) -> Result<Batch> {
    match payload {
        Payload::Inline(bytes) => Batch::decode(&bytes).map_err(|e| EngineError::Batch {
            seq,
            message: e.to_string(),
        }),
        Payload::Compacted { .. } => Err(EngineError::Batch {
            seq,
            message: "its rows were dropped by `journal compact`: the expected state of its \
                      table cannot be computed from this journal"
                .into(),
        }),
    }
}

/// The schema the destination table has: that of the last batch of rows (not of deleted keys).
fn destination_schema(batches: &mut BatchCache<'_>, seqs: &[u64]) -> Result<Option<Arc<Schema>>> {
    for &seq in seqs.iter().rev() {
        let b = batches.load(seq)?;
        if !is_delete_schema(b.schema()) {
            return Ok(Some(Arc::clone(b.schema())));
        }
    }
    Ok(None)
}

/// Drops `e` on a thread of its own. A fold of a million keys is a million allocations to
/// free, about a tenth of a first verify's time; the command need not wait for that, and a
/// process that exits first leaves it to the system.
fn drop_aside(e: Expected) {
    if e.rows.len() < 100_000 {
        return;
    }
    // Should the thread not start, the closure (and `e` in it) is dropped here.
    let _ = std::thread::Builder::new()
        .name("caudal-drop".into())
        .spawn(move || drop(e));
}

/// Folds the batches at `seqs` (in order, of `rows` rows in all) into the expected state `e`
/// of `table`. The key map grows once, to hold every row, rather than doubling as it fills.
fn fold_into(
    e: &mut Expected,
    table: &str,
    (seqs, rows): (&[u64], &[u64]),
    batches: &BatchCache<'_>,
) -> Result<()> {
    let mut room = usize::try_from(rows.iter().sum::<u64>()).unwrap_or(0);
    batches.for_each(seqs, |seq, batch| {
        fold_batch(e, table, seq, &batch, &mut room);
        Ok(())
    })
}

/// Folds one batch (journaled at `seq`) into `e`. The first batch of rows of a keyed table
/// makes `room` more entries in its key map (then `room` is 0).
fn fold_batch(e: &mut Expected, table: &str, seq: u64, batch: &Batch, room: &mut usize) {
    if is_delete_schema(batch.schema()) {
        for row in 0..batch.num_rows() {
            let key = key_bytes(batch, batch.schema().primary_key(), row);
            if let Some(old) = e.rows.remove(&key) {
                e.digest.remove_row(&old.digest);
            }
        }
        return;
    }
    if !e.seen_rows {
        e.keyed = !batch.schema().primary_key().is_empty();
        e.seen_rows = true;
    }
    if !e.keyed {
        e.digest.add_batch(table, batch);
        return;
    }
    e.rows.reserve(std::mem::take(room));
    let (rows, added) = digest_keyed(table, batch);
    e.digest.combine(&added);
    for (row, (key, digest)) in rows.into_iter().enumerate() {
        let new = ExpectedRow {
            digest,
            seq,
            row: u32::try_from(row).unwrap_or(u32::MAX),
        };
        if let Some(old) = e.rows.insert(key, new) {
            e.digest.remove_row(&old.digest);
        }
    }
}

/// The expected state of `target` from the batches at `seqs` (of `rows` rows each): from the
/// fold's checkpoint when the journal still begins with the batches it folded (then only
/// newer batches are folded, and with `need_rows` false and nothing newer, only the digest is
/// read), else from the whole journal. The checkpoint is written again whenever batches were
/// folded.
fn expected_state(
    reader: &Reader,
    target: &Target,
    (seqs, rows): (&[u64], &[u64]),
    batches: &BatchCache<'_>,
    need_rows: bool,
) -> Result<Expected> {
    let paths = FoldCheckpoint::paths(reader.dir(), target);
    let head = FoldCheckpoint::load_head(&paths.0, reader, seqs);
    if let Some(h) = &head {
        let fresh = (&seqs[h.count..], &rows[h.count..]);
        if fresh.0.is_empty() && !need_rows {
            return Ok(Expected {
                keyed: h.keyed,
                rows: KeyMap::default(),
                complete: false,
                digest: TableDigest::from_state_bytes(&h.state, h.rows).map_err(|e| {
                    EngineError::Checkpoint {
                        path: paths.0.clone(),
                        message: e.to_string(),
                    }
                })?,
                seen_rows: h.seen_rows,
            });
        }
        // A keyless table's rows are not in the map: no room to make.
        let room = if h.keyed {
            usize::try_from(fresh.1.iter().sum::<u64>()).unwrap_or(0)
        } else {
            0
        };
        if let Some(mut e) = FoldCheckpoint::load_rows(&paths.1, h, room) {
            if !fresh.0.is_empty() {
                fold_into(&mut e, &target.table, fresh, batches)?;
                FoldCheckpoint::save(&paths, reader, seqs, &e);
            }
            return Ok(e);
        }
    }
    let mut e = Expected::new();
    fold_into(&mut e, &target.table, (seqs, rows), batches)?;
    FoldCheckpoint::save(&paths, reader, seqs, &e);
    Ok(e)
}

/// The fold of one destination table, saved next to the journal's segments: a small head
/// (digest, what was folded) and the rows (key -> row digest and place), so that a verify
/// folds only the batches journaled since the last one, and one that passes reads 2 KiB.
#[derive(serde::Serialize, serde::Deserialize)]
struct FoldCheckpoint {
    version: u32,
    /// Batches folded: the first `count` of the table's selected seqs, whose hash is
    /// `seqs_hash`; the last of them is the entry whose chain is `chain`.
    count: usize,
    seqs_hash: [u8; 32],
    last_seq: u64,
    chain: [u8; 32],
    keyed: bool,
    seen_rows: bool,
    state: Vec<u8>,
    rows: i64,
}

// The rows file is the head's `seqs_hash`, then the number of rows and the key, row digest,
// seq and row of each, laid out as bincode's serde encoding lays out
// `([u8; 32], Vec<(Vec<u8>, [u8; 32], u64, u32)>)` (how it was written before).

/// The rows file, encoded straight from the fold's map.
struct RowsOut<'a> {
    seqs_hash: &'a [u8; 32],
    rows: &'a KeyMap<ExpectedRow>,
}

/// The rows file, decoded straight into a key map.
struct RowsIn {
    seqs_hash: [u8; 32],
    rows: KeyMap<ExpectedRow>,
}

/// The context of decoding [`RowsIn`].
#[derive(Clone, Copy)]
struct RowsContext {
    /// Room to make in the map for rows folded after.
    room: usize,
    /// The file's length: a row takes 35 bytes or more, so a count beyond `file_bytes / 35` is
    /// damage, not a reason to allocate.
    file_bytes: usize,
}

impl bincode::Decode<RowsContext> for RowsIn {
    fn decode<D: bincode::de::Decoder<Context = RowsContext>>(
        decoder: &mut D,
    ) -> std::result::Result<Self, bincode::error::DecodeError> {
        use bincode::de::read::Reader as _;
        let seqs_hash = <[u8; 32]>::decode(decoder)?;
        let len = usize::decode(decoder)?;
        let RowsContext { room, file_bytes } = *decoder.context();
        if len > file_bytes / 35 {
            return Err(bincode::error::DecodeError::Other(
                "more rows than the file can hold",
            ));
        }
        // Decoded in order first, then put in the map in a loop of inserts alone: the map's
        // cache misses then overlap (inserting while decoding took a third longer).
        let mut decoded = Vec::with_capacity(len);
        for _ in 0..len {
            // The key's bytes are copied from the file as they are (`Vec<u8>`'s own decode
            // zeroes a buffer first, a `calloc` per key). A length past the file's end is
            // damage: nothing is allocated for it.
            let n = usize::decode(decoder)?;
            let reader = decoder.reader();
            let key = reader
                .peek_read(n)
                .map(<[u8]>::to_vec)
                .ok_or(bincode::error::DecodeError::UnexpectedEnd { additional: n })?;
            reader.consume(n);
            let row = ExpectedRow {
                digest: RowDigest(<[u8; 32]>::decode(decoder)?),
                seq: u64::decode(decoder)?,
                row: u32::decode(decoder)?,
            };
            decoded.push((key, row));
        }
        let mut rows =
            KeyMap::with_capacity_and_hasher(len.saturating_add(room), Default::default());
        rows.extend(decoded);
        Ok(RowsIn { seqs_hash, rows })
    }
}

impl bincode::Encode for RowsOut<'_> {
    // A slice's length then its items; `[u8]` and `[u8; 32]` are written whole, where the
    // serde path writes the same bytes one at a time.
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> std::result::Result<(), bincode::error::EncodeError> {
        self.seqs_hash.encode(encoder)?;
        self.rows.len().encode(encoder)?;
        for (key, row) in self.rows {
            key.as_slice().encode(encoder)?;
            row.digest.0.encode(encoder)?;
            row.seq.encode(encoder)?;
            row.row.encode(encoder)?;
        }
        Ok(())
    }
}

impl FoldCheckpoint {
    /// 2: row and table digests of format 2 (block-aligned row prefix, AES-256-CTR
    /// expansion); a checkpoint of version 1 holds digests of the old format and is refolded.
    const VERSION: u32 = 2;

    fn paths(dir: &std::path::Path, target: &Target) -> (std::path::PathBuf, std::path::PathBuf) {
        let id = hex::encode(format!("{}\0{}", target.connection, target.table));
        (
            dir.join(format!("verify-{id}.head")),
            dir.join(format!("verify-{id}.rows")),
        )
    }

    fn seqs_hash(seqs: &[u64]) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for s in seqs {
            h.update(s.to_le_bytes());
        }
        h.finalize().into()
    }

    /// The head, if it exists and still describes a prefix of `seqs` in this journal.
    fn load_head(path: &std::path::Path, reader: &Reader, seqs: &[u64]) -> Option<FoldCheckpoint> {
        let bytes = std::fs::read(path).ok()?;
        let (h, _): (FoldCheckpoint, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).ok()?;
        if h.version != Self::VERSION || h.count == 0 || h.count > seqs.len() {
            return None;
        }
        if seqs[h.count - 1] != h.last_seq || Self::seqs_hash(&seqs[..h.count]) != h.seqs_hash {
            return None;
        }
        let stored = reader.get(h.last_seq).ok()??;
        (stored.chain.0 == h.chain).then_some(h)
    }

    /// The rows the head describes, in a key map with room for `room` more.
    fn load_rows(path: &std::path::Path, head: &FoldCheckpoint, room: usize) -> Option<Expected> {
        let bytes = std::fs::read(path).ok()?;
        let context = RowsContext {
            room,
            file_bytes: bytes.len(),
        };
        let (rows, _): (RowsIn, usize) =
            bincode::decode_from_slice_with_context(&bytes, bincode::config::standard(), context)
                .ok()?;
        if rows.seqs_hash != head.seqs_hash {
            return None;
        }
        Some(Expected {
            keyed: head.keyed,
            rows: rows.rows,
            complete: true,
            digest: TableDigest::from_state_bytes(&head.state, head.rows).ok()?,
            seen_rows: head.seen_rows,
        })
    }

    /// Saves the fold of all of `seqs`; a checkpoint that cannot be written only costs the
    /// next verify a longer fold.
    fn save(
        paths: &(std::path::PathBuf, std::path::PathBuf),
        reader: &Reader,
        seqs: &[u64],
        e: &Expected,
    ) {
        let Some(&last_seq) = seqs.last() else {
            return;
        };
        let Ok(Some(stored)) = reader.get(last_seq) else {
            return;
        };
        let head = FoldCheckpoint {
            version: Self::VERSION,
            count: seqs.len(),
            seqs_hash: Self::seqs_hash(seqs),
            last_seq,
            chain: stored.chain.0,
            keyed: e.keyed,
            seen_rows: e.seen_rows,
            state: e.digest.state_bytes(),
            rows: e.digest.rows(),
        };
        let config = bincode::config::standard();
        // A temporary file renamed into place, removed if anything fails.
        let write =
            |path: &std::path::Path,
             encode: &dyn Fn(&mut BufWriter<File>) -> std::io::Result<()>| {
                let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
                let written = File::create(&tmp).and_then(|file| {
                    let mut out = BufWriter::with_capacity(1 << 20, file);
                    encode(&mut out)?;
                    out.into_inner()
                        .map_err(std::io::IntoInnerError::into_error)?;
                    std::fs::rename(&tmp, path)
                });
                if written.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                written
            };
        // Rows first: a head is only ever next to the rows it describes (or newer ones,
        // which its hash then refuses). They are encoded from the map as they are, without a
        // copy of a million keys.
        let rows = RowsOut {
            seqs_hash: &head.seqs_hash,
            rows: &e.rows,
        };
        let written = write(&paths.1, &|out| {
            bincode::encode_into_std_write(&rows, out, config)
                .map(drop)
                .map_err(std::io::Error::other)
        })
        .and_then(|()| {
            write(&paths.0, &|out| {
                bincode::serde::encode_into_std_write(&head, out, config)
                    .map(drop)
                    .map_err(std::io::Error::other)
            })
        });
        if let Err(err) = written {
            tracing::warn!(error = %err, "verify checkpoint not written");
        }
    }
}

/// Key and row digest of every row of a keyed batch, and the digest of all of them; large
/// batches on two threads.
fn digest_keyed(table: &str, batch: &Batch) -> (Vec<(Vec<u8>, RowDigest)>, TableDigest) {
    let part = |range: std::ops::Range<usize>| {
        let digests = RowDigest::of_rows(table, batch, range.clone());
        let mut d = TableDigest::new();
        d.add_rows(&digests);
        let rows: Vec<(Vec<u8>, RowDigest)> = range
            .zip(digests)
            .map(|(row, digest)| (key_bytes(batch, batch.schema().primary_key(), row), digest))
            .collect();
        (rows, d)
    };
    let n = batch.num_rows();
    if n < PARALLEL_ROWS {
        return part(0..n);
    }
    let mid = n / 2;
    let (left, right) = std::thread::scope(|s| {
        let right = s.spawn(|| part(mid..n));
        let left = part(0..mid);
        (left, right.join())
    });
    let Ok((right_rows, right_digest)) = right else {
        // Digesting is plain computation; should it panic, do it again on this thread.
        return part(0..n);
    };
    let (mut rows, mut digest) = left;
    rows.extend(right_rows);
    digest.combine(&right_digest);
    (rows, digest)
}

/// The expected keys in order.
fn sorted_keys(rows: &KeyMap<ExpectedRow>) -> Vec<(&[u8], ExpectedRow)> {
    let mut v: Vec<(&[u8], ExpectedRow)> = rows.iter().map(|(k, r)| (k.as_slice(), *r)).collect();
    v.sort_unstable_by(|a, b| a.0.cmp(b.0));
    v
}

/// A range of bisection: keys `i..j` of the sorted expected keys, their expected digest and
/// the destination's.
type Node = (usize, usize, TableDigest, TableDigest);

/// Keys found to differ: (encoded key, text), and where an expected row is.
#[derive(Default)]
struct Diff {
    missing: BTreeSet<(Vec<u8>, String)>,
    changed: BTreeSet<(Vec<u8>, String)>,
    extra: BTreeSet<(Vec<u8>, String)>,
    /// Key values of the extra rows, for the deletes of a repair.
    extra_values: BTreeMap<Vec<u8>, Vec<Value>>,
    unlisted_extra: u64,
}

impl Diff {
    /// A row the destination has and the journal does not: its encoded key and key values.
    fn add_extra(&mut self, key: Vec<u8>, values: Vec<Value>) {
        self.extra.insert((key.clone(), key_text(&values)));
        self.extra_values.insert(key, values);
    }
}

struct Bisect<'a, 'r> {
    pool: &'a ConnectionPool,
    target: &'a Target,
    schema: &'a Arc<Schema>,
    expected: &'a Expected,
    sorted: Vec<(&'a [u8], ExpectedRow)>,
    batches: &'a mut BatchCache<'r>,
    diff: &'a mut Diff,
    /// The sink's digest of the whole table.
    actual: &'a TableDigest,
}

impl Bisect<'_, '_> {
    fn run(&mut self) -> std::result::Result<(), String> {
        let n = self.sorted.len();
        let root = (0, n, self.expected.digest.clone(), self.actual.clone());
        let deferred = self.bisect(vec![root], Some(WHOLE_READS * n))?;
        if deferred.is_empty() {
            return Ok(());
        }
        // Many rows differ: one read of the table settles the ranges still open.
        let mut ranges: Vec<(usize, usize)> = deferred.iter().map(|d| (d.0, d.1)).collect();
        ranges.sort_unstable();
        if self.compare_ranges(&ranges).is_err() {
            // The read failed before anything was noted: bisect them to the end instead.
            self.bisect(deferred, None)?;
        }
        Ok(())
    }

    /// Bisects the ranges of `stack` (keys `i..j`, expected and actual digest). With a
    /// `budget` (rows' worth of range digests and reads, a call counted as [`CALL_ROWS`]),
    /// the ranges still open once it is spent are returned instead of bisected.
    fn bisect(
        &mut self,
        mut stack: Vec<Node>,
        budget: Option<usize>,
    ) -> std::result::Result<Vec<Node>, String> {
        let mut spent = 0usize;
        let mut deferred = Vec::new();
        while let Some((i, j, expected, actual)) = stack.pop() {
            if expected == actual {
                continue;
            }
            if actual.rows() == 0 {
                for k in i..j {
                    self.missing(k)?;
                }
                continue;
            }
            if budget.is_some_and(|b| spent > b) {
                deferred.push((i, j, expected, actual));
                continue;
            }
            if j - i <= LEAF_KEYS {
                spent += j - i + CALL_ROWS;
                self.leaf(i, j, &actual)?;
                continue;
            }
            let mid = i + (j - i) / 2;
            spent += mid - i + CALL_ROWS;
            let mut left = TableDigest::new();
            for (_, r) in &self.sorted[i..mid] {
                left.add_row(&r.digest);
            }
            let range = self.range(i, mid)?;
            let actual_left = self.digest(range)?;
            let mut right = expected;
            right.subtract(&left);
            let mut actual_right = actual;
            actual_right.subtract(&actual_left);
            stack.push((mid, j, right, actual_right));
            stack.push((i, mid, left, actual_left));
        }
        Ok(deferred)
    }

    fn digest(&self, range: KeyRange) -> std::result::Result<TableDigest, String> {
        let request = DigestRequest {
            table: self.target.table.clone(),
            schema: (**self.schema).clone(),
            range,
        };
        self.pool
            .with(&self.target.connection, |c| c.table_digest(&request))
            .map_err(|e| format!("digest of a key range of `{}`: {e}", self.target.table))
    }

    /// The key values of expected key `k`.
    fn key_values(&mut self, k: usize) -> std::result::Result<Vec<Value>, String> {
        let r = self.sorted[k].1;
        let batch = self.batches.get(r.seq).map_err(|e| e.to_string())?;
        Ok(key_values(
            &batch,
            batch.schema().primary_key(),
            r.row as usize,
        ))
    }

    /// Keys `i..j` of the sorted expected keys, as a range of the key space: from key `i`
    /// (or the start) up to key `j` excluded (or the end).
    fn range(&mut self, i: usize, j: usize) -> std::result::Result<KeyRange, String> {
        Ok(KeyRange {
            lower: if i == 0 {
                Bound::Unbounded
            } else {
                Bound::Included(self.key_values(i)?)
            },
            upper: if j >= self.sorted.len() {
                Bound::Unbounded
            } else {
                Bound::Excluded(self.key_values(j)?)
            },
        })
    }

    fn missing(&mut self, k: usize) -> std::result::Result<(), String> {
        let text = key_text(&self.key_values(k)?);
        self.diff.missing.insert((self.sorted[k].0.to_vec(), text));
        Ok(())
    }

    /// Compares keys `i..j` row by row, reading the destination's rows back through its
    /// source side; point digests where it has none.
    fn leaf(
        &mut self,
        i: usize,
        j: usize,
        actual: &TableDigest,
    ) -> std::result::Result<(), String> {
        match self.read_range(i, j) {
            Ok(found) => self.compare_rows(i, j, found, actual),
            Err(_) => self.point_digests(i, j, actual),
        }
    }

    /// The destination's rows in the range of keys `i..j`: encoded key -> (row digest, key
    /// values).
    fn read_range(&mut self, i: usize, j: usize) -> std::result::Result<FoundRows, String> {
        let range = self.range(i, j)?;
        let key: Vec<usize> = self.schema.primary_key().to_vec();
        let first = self.schema.fields()[key[0]].name.clone();
        let single = key.len() == 1;
        let first_of = |b: &Bound<Vec<Value>>, upper: bool| match b {
            Bound::Unbounded => Bound::Unbounded,
            Bound::Included(v) => Bound::Included(v[0].clone()),
            // A composite key's range is read by its first column, then cut by the tuple.
            Bound::Excluded(v) if single || !upper => Bound::Excluded(v[0].clone()),
            Bound::Excluded(v) => Bound::Included(v[0].clone()),
        };
        let request = ReadRequest {
            target: ReadTarget::Table(self.target.table.clone()),
            cursor_column: Some(first),
            from: first_of(&range.lower, false),
            to: first_of(&range.upper, true),
            limits: caudal_connector::ChunkLimits::default(),
        };
        let lower = (i > 0).then(|| self.sorted[i].0.to_vec());
        let upper = (j < self.sorted.len()).then(|| self.sorted[j].0.to_vec());
        let mut found = FoundRows::default();
        self.read_rows(&request, |k, d, batch, row| {
            let below = lower.as_ref().is_some_and(|l| k.as_slice() < l.as_slice());
            let above = upper.as_ref().is_some_and(|u| k.as_slice() >= u.as_slice());
            if !below && !above {
                let values = key_values(batch, batch.schema().primary_key(), row);
                found.insert(k, (d, values));
            }
        })?;
        Ok(found)
    }

    /// Reads the destination's rows through its source side, in the stream's schema, and
    /// hands each row's encoded key and digest to `each`, with its batch and row.
    fn read_rows(
        &self,
        request: &ReadRequest,
        mut each: impl FnMut(Vec<u8>, RowDigest, &Batch, usize),
    ) -> std::result::Result<(), String> {
        let table = self.target.table.clone();
        let schema = Arc::clone(self.schema);
        self.pool
            .with(&self.target.connection, |c| {
                let mut reader = c.read(request)?;
                while let Some(chunk) = reader.next_chunk()? {
                    let batch = Batch::decode(&chunk.bytes).map_err(|e| HostError::Exchange {
                        plugin: String::new(),
                        function: "read",
                        source: e,
                    })?;
                    let Some(batch) = in_schema(&batch, &schema) else {
                        return Err(HostError::Exchange {
                            plugin: String::new(),
                            function: "read",
                            source: caudal_connector::Error::Decode(
                                "the table's columns differ from the stream's".into(),
                            ),
                        });
                    };
                    for row in 0..batch.num_rows() {
                        let k = key_bytes(&batch, batch.schema().primary_key(), row);
                        if let Some(d) = RowDigest::of_row(&table, &batch, row) {
                            each(k, d, &batch, row);
                        }
                    }
                }
                Ok(())
            })
            .map_err(|e| e.message)
    }

    /// For a destination that keeps no key order ([`caudal_connector::Capabilities::UNORDERED`],
    /// where every key range would be a read of the whole table): every row is read once, in
    /// the destination's order, and compared with the expected row of its key.
    fn compare_all(&mut self) -> std::result::Result<(), String> {
        self.compare_ranges(&[(0, self.sorted.len())])
    }

    /// One read of the whole table settles the ranges of keys `ranges` (sorted, disjoint): the
    /// rows whose keys fall in one of them are compared with the expected rows of their keys.
    /// Nothing is noted unless the read succeeds.
    fn compare_ranges(&mut self, ranges: &[(usize, usize)]) -> std::result::Result<(), String> {
        let request = ReadRequest {
            target: ReadTarget::Table(self.target.table.clone()),
            cursor_column: None,
            from: Bound::Unbounded,
            to: Bound::Unbounded,
            limits: caudal_connector::ChunkLimits::default(),
        };
        let sorted = &self.sorted;
        // Whether expected key `k` is in one of the ranges; whether a key not expected, which
        // sorts just before expected key `p`, is (a range spans from key `i`, or the start,
        // to key `j` excluded, or the end).
        let holds_key = |k: usize| {
            let r = ranges.partition_point(|r| r.0 <= k);
            r.checked_sub(1).is_some_and(|r| k < ranges[r].1)
        };
        let holds_gap = |p: usize| {
            let r = ranges.partition_point(|r| r.0 < p.max(1));
            r.checked_sub(1).is_some_and(|r| p <= ranges[r].1)
        };
        let mut seen = vec![false; sorted.len()];
        let mut differ = Vec::new();
        let mut extra = Vec::new();
        let mut read_back = TableDigest::new();
        self.read_rows(&request, |k, d, batch, row| {
            read_back.add_row(&d);
            match sorted.binary_search_by(|(key, _)| (*key).cmp(k.as_slice())) {
                Ok(i) if holds_key(i) => {
                    if !std::mem::replace(&mut seen[i], true) && sorted[i].1.digest != d {
                        differ.push(i);
                    }
                }
                Ok(_) => {}
                Err(p) if holds_gap(p) => {
                    extra.push((k, key_values(batch, batch.schema().primary_key(), row)));
                }
                Err(_) => {}
            }
        })?;
        for &(i, j) in ranges {
            for (k, _) in seen[i..j].iter().enumerate().filter(|(_, s)| !**s) {
                self.missing(i + k)?;
            }
        }
        let faithful = read_back == *self.actual;
        for k in differ {
            self.changed(k, faithful)?;
        }
        for (key, values) in extra {
            self.diff.add_extra(key, values);
        }
        Ok(())
    }

    /// Compares keys `i..j` with `found`, the rows read back from their range, whose digest
    /// in the sink is `actual`.
    fn compare_rows(
        &mut self,
        i: usize,
        j: usize,
        mut found: FoundRows,
        actual: &TableDigest,
    ) -> std::result::Result<(), String> {
        let mut read_back = TableDigest::new();
        for (d, _) in found.values() {
            read_back.add_row(d);
        }
        let faithful = read_back == *actual;
        for k in i..j {
            let (key, row) = (self.sorted[k].0, self.sorted[k].1);
            match found.remove(key) {
                None => self.missing(k)?,
                Some((d, _)) if d == row.digest => {}
                Some(_) => self.changed(k, faithful)?,
            }
        }
        for (key, (_, values)) in found {
            self.diff.add_extra(key, values);
        }
        Ok(())
    }

    /// Expected key `k`, read back with another digest: changed. When the read it came from
    /// was `faithful` (its read-back digests add up to the sink's digest of what it read),
    /// that is certain; otherwise the sink's digest of that one key decides.
    fn changed(&mut self, k: usize, faithful: bool) -> std::result::Result<(), String> {
        if faithful {
            let values = self.key_values(k)?;
            self.note_changed(k, &values);
            Ok(())
        } else {
            self.confirm_changed(k)
        }
    }

    /// Expected key `k`, read back with another digest: changed, unless the sink's digest of
    /// that one key in the stream's schema agrees. (The source side may read a column in
    /// another logical class than the stream's, a flag as a tiny integer: the sink decides.)
    fn confirm_changed(&mut self, k: usize) -> std::result::Result<(), String> {
        let (point, values) = self.point(k)?;
        self.changed_unless_equal(k, &point, &values);
        Ok(())
    }

    /// The destination's digest of expected key `k` alone, and the key's values.
    fn point(&mut self, k: usize) -> std::result::Result<(TableDigest, Vec<Value>), String> {
        let values = self.key_values(k)?;
        let point = self.digest(KeyRange {
            lower: Bound::Included(values.clone()),
            upper: Bound::Included(values.clone()),
        })?;
        Ok((point, values))
    }

    /// Notes expected key `k` as changed unless `point` is the digest of its expected row.
    fn changed_unless_equal(&mut self, k: usize, point: &TableDigest, values: &[Value]) {
        let mut want = TableDigest::new();
        want.add_row(&self.sorted[k].1.digest);
        if *point != want {
            self.note_changed(k, values);
        }
    }

    /// Notes expected key `k`, of key values `values`, as changed.
    fn note_changed(&mut self, k: usize, values: &[Value]) {
        self.diff
            .changed
            .insert((self.sorted[k].0.to_vec(), key_text(values)));
    }

    /// Without a source side: each expected key's own digest says missing or changed; rows in
    /// excess are only counted.
    fn point_digests(
        &mut self,
        i: usize,
        j: usize,
        actual: &TableDigest,
    ) -> std::result::Result<(), String> {
        let mut present = 0i64;
        for k in i..j {
            let (point, values) = self.point(k)?;
            if point.rows() == 0 {
                self.missing(k)?;
                continue;
            }
            present += point.rows();
            self.changed_unless_equal(k, &point, &values);
        }
        self.diff.unlisted_extra += u64::try_from(actual.rows() - present).unwrap_or(0);
        Ok(())
    }
}

/// `batch` (read from a destination) with its columns in the order of `schema` and its
/// primary key, keeping the logical types it was read in. `None` when a column is missing.
fn in_schema(batch: &Batch, schema: &Schema) -> Option<Batch> {
    let mut fields = Vec::with_capacity(schema.len());
    let mut columns = Vec::with_capacity(schema.len());
    for f in schema.fields() {
        let i = batch.schema().index_of(&f.name)?;
        fields.push(batch.schema().fields()[i].clone());
        columns.push(batch.columns()[i].clone());
    }
    let read = Schema::from_parts(fields, schema.primary_key().to_vec()).ok()?;
    Batch::try_new(Arc::new(read), columns).ok()
}

/// Writes the expected rows of missing and changed keys and deletes the extra ones.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one repair, each used once"
)]
fn repair_rows(
    session: &Session,
    target: &Target,
    schema: &Arc<Schema>,
    expected: &Expected,
    diff: &Diff,
    batches: &mut BatchCache<'_>,
    seq: u64,
    table_missing: bool,
) -> std::result::Result<(), String> {
    let pipeline = session.pipeline.name().to_owned();
    let call = |f: &dyn Fn(&mut dyn Endpoint) -> std::result::Result<(), HostError>| {
        session
            .pool
            .with(&target.connection, |c| f(c))
            .map_err(|e| e.message)
    };
    if table_missing {
        call(&|c| {
            c.prepare_table(&PrepareTable {
                table: target.table.clone(),
                schema: (**schema).clone(),
                replace: false,
            })
        })?;
    }
    let keys: Vec<&Vec<u8>> = diff
        .missing
        .iter()
        .chain(diff.changed.iter())
        .map(|(k, _)| k)
        .collect();
    let next_seq = |stream: &str| {
        session
            .pool
            .with(&target.connection, |c| {
                c.last_applied_seq(&pipeline, stream)
            })
            .map(|last| seq.max(last.map_or(0, |l| l + 1)))
            .map_err(|e| e.message)
    };
    let mut write_seq = next_seq(REPAIR_STREAM)?;
    for chunk in keys.chunks(REPAIR_CHUNK) {
        let mut b = BatchBuilder::with_capacity(Arc::clone(schema), chunk.len());
        for key in chunk {
            let Some(r) = expected.rows.get(*key) else {
                continue;
            };
            let batch = batches.get(r.seq).map_err(|e| e.to_string())?;
            let row: Vec<Value> = (0..batch.num_columns())
                .map(|c| batch.value(r.row as usize, c).unwrap_or(Value::Null))
                .collect();
            b.push_row(&row).map_err(|e| e.to_string())?;
        }
        let rows = b.finish().map_err(|e| e.to_string())?;
        let bytes = rows.encode().map_err(|e| e.to_string())?;
        let request = WriteRequest {
            pipeline: pipeline.clone(),
            stream: REPAIR_STREAM.into(),
            table: target.table.clone(),
            seq: write_seq,
            op: WriteOp::Upsert,
        };
        call(&|c| c.write(&request, &bytes).map(|_| ()))?;
        write_seq += 1;
    }
    if diff.extra_values.is_empty() {
        return Ok(());
    }
    let deletes = Arc::new(delete_schema(schema)?);
    let marker = deletes.len() - 1;
    let values: Vec<&Vec<Value>> = diff.extra_values.values().collect();
    let first_delete_seq = next_seq(REPAIR_DELETES_STREAM)?;
    for (delete_seq, chunk) in (first_delete_seq..).zip(values.chunks(REPAIR_CHUNK)) {
        let mut b = BatchBuilder::with_capacity(Arc::clone(&deletes), chunk.len());
        for key in chunk {
            for (c, v) in key.iter().enumerate() {
                b.push_value(c, v).map_err(|e| e.to_string())?;
            }
            b.push(marker, true).map_err(|e| e.to_string())?;
        }
        let bytes = b
            .finish()
            .and_then(|b| b.encode())
            .map_err(|e| e.to_string())?;
        let request = WriteRequest {
            pipeline: pipeline.clone(),
            stream: REPAIR_DELETES_STREAM.into(),
            table: target.table.clone(),
            seq: delete_seq,
            op: WriteOp::Delete,
        };
        call(&|c| c.write(&request, &bytes).map(|_| ()))?;
    }
    Ok(())
}

/// The values of the key columns of `row`.
fn key_values(batch: &Batch, key: &[usize], row: usize) -> Vec<Value> {
    key.iter()
        .map(|&c| batch.value(row, c).unwrap_or(Value::Null))
        .collect()
}

/// An order-preserving encoding of the key of `row`: byte order of encodings is the order
/// of the key tuples (numbers by value, text and bytes by their bytes, NULL first), and
/// values of one logical class encode alike whatever their storage width, so a key read back
/// from a destination in another integer width encodes as the journal's.
pub(crate) fn key_bytes(batch: &Batch, key: &[usize], row: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() * 17);
    key_bytes_into(batch, key, row, &mut out);
    out
}

/// [`key_bytes`], appended to `out`.
pub(crate) fn key_bytes_into(batch: &Batch, key: &[usize], row: usize, out: &mut Vec<u8>) {
    for &c in key {
        encode_value(&batch.value(row, c).unwrap_or(Value::Null), out);
    }
}

fn flip128(v: i128) -> [u8; 16] {
    (v.cast_unsigned() ^ (1u128 << 127)).to_be_bytes()
}

fn flip64(v: i64) -> [u8; 8] {
    (v.cast_unsigned() ^ (1u64 << 63)).to_be_bytes()
}

fn escaped(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0x00),
        Value::Bool(b) => out.extend_from_slice(&[0x01, u8::from(*b)]),
        Value::Int(i) => {
            out.push(0x02);
            out.extend_from_slice(&flip128(i128::from(*i)));
        }
        Value::UInt(u) => {
            out.push(0x02);
            out.extend_from_slice(&flip128(i128::from(*u)));
        }
        Value::Int128(i) => {
            out.push(0x02);
            out.extend_from_slice(&flip128(*i));
        }
        Value::Decimal { unscaled, scale } => {
            // At a common scale of 18 digits; beyond i128 it saturates (no such keys in
            // practice).
            let s = u32::from(*scale);
            let at18 = if s <= 18 {
                unscaled.saturating_mul(10i128.pow(18 - s))
            } else {
                unscaled / 10i128.pow((s - 18).min(38))
            };
            out.push(0x03);
            out.extend_from_slice(&flip128(at18));
        }
        Value::Float(f) => {
            let bits = f.to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits | (1 << 63)
            };
            out.push(0x04);
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Value::Date(d) => {
            out.push(0x05);
            out.extend_from_slice(&(d.cast_unsigned() ^ 0x8000_0000).to_be_bytes());
        }
        Value::Time(t) => {
            out.push(0x06);
            out.extend_from_slice(&flip64(*t));
        }
        Value::DateTime(t) | Value::Timestamp(t) => {
            out.push(0x07);
            out.extend_from_slice(&flip64(*t));
        }
        Value::Text(s) => {
            out.push(0x08);
            escaped(s.as_bytes(), out);
        }
        Value::Bytes(b) => {
            out.push(0x09);
            escaped(b, out);
        }
        Value::Uuid(u) => {
            out.push(0x0A);
            out.extend_from_slice(u);
        }
        other => {
            // Intervals and instants with offsets: equal values encode alike; their order is
            // not the database's (no table is keyed by them in practice).
            out.push(0xFE);
            let bytes = bincode::serde::encode_to_vec(other, bincode::config::standard())
                .unwrap_or_default();
            escaped(&bytes, out);
        }
    }
}

/// A key as users read it: its values, comma-separated.
pub fn key_text(values: &[Value]) -> String {
    values.iter().map(value_text).collect::<Vec<_>>().join(",")
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Int128(i) => i.to_string(),
        Value::Decimal { unscaled, scale } => decimal_text(*unscaled, *scale),
        Value::Float(f) => f.to_string(),
        Value::Text(s) => s.clone(),
        Value::Bytes(b) => format!("0x{}", hex::encode(b)),
        Value::Uuid(u) => hex::encode(u),
        other => format!("{other:?}"),
    }
}

fn decimal_text(unscaled: i128, scale: u8) -> String {
    if scale == 0 {
        return unscaled.to_string();
    }
    let digits = unscaled.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if unscaled < 0 { "-" } else { "" };
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod tests {
    use caudal_connector::{Field, LogicalType};

    use super::*;

    fn batch(rows: &[(i64, &str)]) -> Batch {
        let schema = Arc::new(
            Schema::new(
                vec![
                    Field::new("id", LogicalType::Int64, false),
                    Field::new(
                        "name",
                        LogicalType::Varchar {
                            max_length: Some(20),
                        },
                        true,
                    ),
                ],
                &["id", "name"],
            )
            .unwrap(),
        );
        let mut b = BatchBuilder::new(schema);
        for (id, name) in rows {
            b.push(0, *id).unwrap();
            b.push(1, *name).unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn the_fold_checkpoint_reads_back_the_rows_and_digest_it_saved() {
        let dir = tempfile::tempdir().unwrap();
        let journal =
            caudal_journal::Journal::open(dir.path(), caudal_journal::JournalOptions::default())
                .unwrap();
        let seqs: Vec<u64> = (0..3)
            .map(|_| {
                let kind = EntryKind::RunStarted {
                    pipeline_file: "p.toml".into(),
                    trigger: "manual".into(),
                    streams: Vec::new(),
                    args: String::new(),
                };
                journal
                    .append_blocking(caudal_journal::NewEntry::new("p", kind))
                    .unwrap()
                    .seq
            })
            .collect();
        drop(journal);
        let reader = Reader::open(dir.path()).unwrap();
        let target = Target {
            connection: "c".into(),
            table: "t".into(),
        };
        let mut e = Expected::new();
        let mut room = 5;
        let names = [
            "",
            "a",
            "b\0c",
            "dd",
            "long text of forty-one bytes, or so......",
        ];
        let rows: Vec<(i64, &str)> = (0..5)
            .map(|i| (i64::try_from(i).unwrap() * 1000 - 2, names[i]))
            .collect();
        fold_batch(&mut e, "t", seqs[0], &batch(&rows[..3]), &mut room);
        assert_eq!((room, e.rows.capacity() >= 5), (0, true));
        fold_batch(&mut e, "t", seqs[2], &batch(&rows[2..]), &mut room);
        let paths = FoldCheckpoint::paths(dir.path(), &target);
        FoldCheckpoint::save(&paths, &reader, &seqs, &e);

        let head = FoldCheckpoint::load_head(&paths.0, &reader, &seqs).expect("the head loads");
        let back = FoldCheckpoint::load_rows(&paths.1, &head, 7).expect("the rows load");
        assert!(back.rows.capacity() >= 12);
        // The rows file is laid out as checkpoints written before were.
        type RowsFile = ([u8; 32], Vec<(Vec<u8>, [u8; 32], u64, u32)>);
        let bytes = std::fs::read(&paths.1).unwrap();
        let ((hash, file), _): (RowsFile, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(hash, head.seqs_hash);
        assert_eq!(file.len(), 5);
        for (key, digest, seq, row) in file {
            let want = &e.rows[&key];
            assert_eq!((digest, seq, row), (want.digest.0, want.seq, want.row));
        }
        // A damaged rows file is not used (the fold is made again), without a panic or a
        // huge allocation: a count of 2^40 rows, the file cut short, the first key's length
        // made 2^40.
        assert_eq!(bytes[32], 5, "the count follows the hash");
        // The one-byte varint at `at` made 2^40 (bincode's marker 253, then 8 bytes).
        let huge_at = |at: usize| {
            let mut b = bytes[..at].to_vec();
            b.push(253);
            b.extend_from_slice(&(1u64 << 40).to_le_bytes());
            b.extend_from_slice(&bytes[at + 1..]);
            b
        };
        for damaged in [huge_at(32), bytes[..bytes.len() - 3].to_vec(), huge_at(33)] {
            std::fs::write(&paths.1, &damaged).unwrap();
            assert!(FoldCheckpoint::load_rows(&paths.1, &head, 0).is_none());
        }
        assert_eq!(back.digest, e.digest);
        assert_eq!(back.rows.len(), 5);
        for (key, row) in &e.rows {
            let got = back.rows.get(key).expect("every key is read back");
            assert_eq!(
                (got.digest, got.seq, got.row),
                (row.digest, row.seq, row.row)
            );
        }
        // The row folded twice keeps its later place.
        let again = key_bytes(&batch(&rows[2..3]), &[0, 1], 0);
        let again = &back.rows[again.as_slice()];
        assert_eq!((again.seq, again.row), (seqs[2], 0));
        // No temporary file is left next to the checkpoint.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("verify-"))
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn key_encoding_orders_like_the_values() {
        let rows = [
            (-5, "b"),
            (-5, "a\0z"),
            (3, ""),
            (-1_000_000_000_000, "x"),
            (3, "a"),
            (i64::MAX, "a"),
            (-5, "a"),
        ];
        let b = batch(&rows);
        let mut encoded: Vec<(Vec<u8>, (i64, &str))> = (0..rows.len())
            .map(|r| (key_bytes(&b, &[0, 1], r), rows[r]))
            .collect();
        encoded.sort_by(|x, y| x.0.cmp(&y.0));
        let mut want = rows.to_vec();
        want.sort();
        let got: Vec<(i64, &str)> = encoded.into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn integer_widths_and_decimal_scales_encode_alike() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        encode_value(&Value::Int(7), &mut a);
        encode_value(&Value::UInt(7), &mut b);
        assert_eq!(a, b);
        let (mut c, mut d) = (Vec::new(), Vec::new());
        encode_value(
            &Value::Decimal {
                unscaled: 150,
                scale: 2,
            },
            &mut c,
        );
        encode_value(
            &Value::Decimal {
                unscaled: 15,
                scale: 1,
            },
            &mut d,
        );
        assert_eq!(c, d);
        let mut e = Vec::new();
        encode_value(
            &Value::Decimal {
                unscaled: 151,
                scale: 2,
            },
            &mut e,
        );
        assert!(e > c);
    }

    #[test]
    fn keys_read_as_users_write_them() {
        assert_eq!(key_text(&[Value::Int(5), Value::Text("t1".into())]), "5,t1");
        assert_eq!(decimal_text(-5, 2), "-0.05");
        assert_eq!(decimal_text(12345, 2), "123.45");
    }
}
