//! Writing the cache: schema keys, transactional writes with the offset and the digest key,
//! snapshot swaps, offsets and digests.
//!
//! # A write
//!
//! 1. In one round trip: `WATCH` the offsets hash and the table's digest key, read the
//!    stream's offset and the digest key. At or past the batch's seq, `UNWATCH` and report
//!    `AlreadyApplied` (a replay changes nothing).
//! 2. With one `HMGET` of `{prefix}:{table}:rowdigests`, read the digests of the rows the batch
//!    replaces or deletes. The new digest is the old one minus those rows plus the batch's rows
//!    (the table digest is homomorphic), so no row value is read back.
//! 3. `MULTI`; per hash row a `RESTORE ... REPLACE` of the whole hash (see [`crate::dump`]),
//!    or where the server or the row does not allow that `DEL` + `HSET` (the `DEL` drops fields
//!    that became NULL); `MSET`s of the JSON rows; or `DEL`s for a delete; the new row digests; the digest key; the offset;
//!    `EXEC`. If a watched key changed meanwhile, `EXEC` does nothing and the write starts over.
//!
//! A table this connection created or emptied with `prepare_table` is *fresh* ([`Fresh`]):
//! while its digest key holds what this connection's last write left there, only keys this
//! connection wrote can hold rows, so step 2 asks only for those and rows of other keys get no
//! `DEL`. When the digest key shows another writer, the table stops being fresh here and
//! writes take the general path.
//!
//! An *insert* into a fresh table whose keys this connection never wrote (a cache rebuild's
//! final rows, a snapshot's staging table) is a bulk insert ([`Redis::bulk_insert`]): after
//! step 1, the row commands go in plain pipelines, several in flight, encoded on one thread
//! while others digest the rows; step 3's transaction then holds only the row digests, the
//! digest key and the offset. Nothing reads a fresh table's rows by its offset, and should the
//! write die before its `EXEC`, the rows it left are counted nowhere and written again, whole,
//! by the batch's replay.
//!
//! Otherwise insert and upsert are the same operation here: a key holds one row.
//!
//! # A rewrite
//!
//! A cache rebuild rewrites a table in place, so that readers of the cache never find it
//! empty: `begin_rewrite` installs the schema, resets the digest key and drops the row digests
//! in one transaction, and leaves every row key where it is. The table is then fresh, but with
//! its old rows still there (a `RESTORE` replaces the key, an `HSET` follows a `DEL` of it).
//! The final rows are written as inserts, each over its key. `end_rewrite` unlinks the row
//! keys listed (by a SCAN) when the rewrite began that no row was written to since: rows
//! deleted since, stale keys the journal never held. The connection knows which it wrote;
//! if another writer came by meanwhile, a key goes only if the row digests do not know it.
//! Meanwhile a reader finds each key's old row or its final one. A table with no row key
//! when its rewrite begins is written as a fresh one.
//!
//! # A snapshot swap
//!
//! The engine writes a snapshot into a staging table, then calls `replace_table`. Readers of
//! the cache address rows by key, so the swap must happen under the table's own key names:
//! one `MULTI`/`EXEC` deletes the table's old row keys, `RENAME`s every staging row key to the
//! table's key, and installs the schema, row digests and digest key (recomputed as rows of the
//! table: a row digest includes the table name). Readers see the old rows or the new ones,
//! never a mix. The transaction runs under `WATCH` of both digest keys and starts over if
//! another writer changed either.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use caudal_connector::{
    Batch, ChunkLimits, DigestRequest, Error, PrepareTable, Result, RowDigest, Schema, Sink,
    TableDigest, WriteOp, WriteOutcome, WriteRequest,
};
use redis::aio::MultiplexedConnection;

use crate::config::{Format, KeyTemplate};
use crate::dump::HashPayload;
use crate::keys::{self, glob_escape, is_row_suffix};
use crate::source::{self, RowScanner, TableDoc, load_doc};
use crate::types::{encode_json, encode_text};
use crate::{Redis, redis_error};

/// How often a transaction starts over when a watched key keeps changing.
const MAX_ATTEMPTS: usize = 50;
/// Keys or hash fields per command in long argument lists.
const ARGS_PER_COMMAND: usize = 4096;
/// Rows per pipeline of a bulk insert ([`Redis::bulk_insert`]): the server runs one while the
/// next is encoded.
const BULK_ROWS: usize = 2048;
/// Keys a SCAN step looks at: a pass over a large keyspace in few round trips.
const SCAN_COUNT: usize = 10_000;
/// Pipelines of a bulk insert in flight at once.
const BULK_DEPTH: usize = 4;
/// Bytes of an encoded table digest: row count (i64 LE) then the LtHash state.
const DIGEST_BYTES: usize = 8 + caudal_connector::digest::STATE_BYTES;

/// Queues the write's last two commands: the table's new digest and the stream's offset.
fn push_digest_and_offset(pipe: &mut redis::Pipeline, plan: &WritePlan<'_>, digest: &TableDigest) {
    pipe.cmd("SET")
        .arg(&plan.digest_key)
        .arg(encode_digest(digest))
        .ignore();
    pipe.cmd("HSET")
        .arg(&plan.offsets)
        .arg(&plan.field)
        .arg(plan.seq)
        .ignore();
}

/// The digest key's value for `digest`.
pub(crate) fn encode_digest(digest: &TableDigest) -> Vec<u8> {
    let mut out = Vec::with_capacity(DIGEST_BYTES);
    out.extend_from_slice(&digest.rows().to_le_bytes());
    out.extend_from_slice(&digest.state_bytes());
    out
}

/// A digest key's value as a digest.
pub(crate) fn decode_digest(bytes: &[u8]) -> Result<TableDigest> {
    if bytes.len() != DIGEST_BYTES {
        return Err(Error::Decode(format!(
            "digest key of {} bytes, expected {DIGEST_BYTES}",
            bytes.len()
        )));
    }
    let (rows, state) = bytes.split_at(8);
    let rows = i64::from_le_bytes(rows.try_into().unwrap_or_default());
    TableDigest::from_state_bytes(state, rows)
}

fn decode_row_digest(bytes: &[u8]) -> Result<RowDigest> {
    let d: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Error::Decode(format!("row digest of {} bytes, expected 32", bytes.len())))?;
    Ok(RowDigest(d))
}

/// Runs `work` over `0..n` split in parts, on up to 8 threads when `n` is large (each row
/// costs a SHA-256 and a 2 KiB XOF expansion, a few microseconds).
fn in_parts<T: Send>(n: usize, work: impl Fn(std::ops::Range<usize>) -> T + Sync) -> Vec<T> {
    let threads = if n >= caudal_connector::digest::PARALLEL_ROWS {
        std::thread::available_parallelism().map_or(1, |t| t.get().min(8))
    } else {
        1
    };
    if threads <= 1 {
        return vec![work(0..n)];
    }
    let per = n.div_ceil(threads);
    std::thread::scope(|scope| {
        let work = &work;
        let parts: Vec<_> = (0..threads)
            .map(|t| scope.spawn(move || work((t * per).min(n)..((t + 1) * per).min(n))))
            .collect();
        parts
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// The digest of every row of `batch` as a row of `table`, and their sum.
fn row_digests(table: &str, batch: &Batch) -> (Vec<RowDigest>, TableDigest) {
    let parts = in_parts(batch.num_rows(), |rows| {
        let mut sum = TableDigest::new();
        let digests = RowDigest::of_rows(table, batch, rows);
        sum.add_rows(&digests);
        (digests, sum)
    });
    let mut all = Vec::with_capacity(batch.num_rows());
    let mut total = TableDigest::new();
    for (digests, sum) in parts {
        all.extend(digests);
        total.combine(&sum);
    }
    (all, total)
}

/// The sum of `digests` as a table digest.
fn sum_of(digests: &[RowDigest]) -> TableDigest {
    let mut total = TableDigest::new();
    for part in in_parts(digests.len(), |rows| {
        let mut sum = TableDigest::new();
        sum.add_rows(&digests[rows]);
        sum
    }) {
        total.combine(&part);
    }
    total
}

/// Checks a batch against the table's stored schema: the same primary key, and (unless a
/// delete, which carries keys only) no column the table does not have.
fn check_batch(table: &str, stored: &Schema, batch: &Batch, op: WriteOp) -> Result<()> {
    let names = |s: &Schema| -> Vec<String> {
        s.primary_key()
            .iter()
            .map(|&k| s.fields()[k].name.clone())
            .collect()
    };
    let (want, got) = (names(stored), names(batch.schema()));
    if got.is_empty() {
        return Err(Error::Schema(format!(
            "table `{table}`: the batch has no primary key, and Redis keys are named by it; set \
             `primary_key` on the stream"
        )));
    }
    if want != got {
        return Err(Error::Schema(format!(
            "table `{table}` is keyed by ({}) but the batch by ({})",
            want.join(", "),
            got.join(", ")
        )));
    }
    if op != WriteOp::Delete {
        let missing: Vec<&str> = batch
            .schema()
            .fields()
            .iter()
            .filter(|f| stored.index_of(&f.name).is_none())
            .map(|f| f.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(Error::Schema(format!(
                "table `{table}` has no column(s) {}; prepare it again with `replace` or write \
                 to a new table",
                missing.join(", ")
            )));
        }
    }
    Ok(())
}

/// What this connection knows of a table it created or emptied itself (`prepare_table` with
/// no table there, or with `replace`): the digest its last write left in the digest key, and
/// a hash of every key it wrote since. While the digest key still holds that digest (checked
/// under WATCH by each write), no other writer changed the table, so a key never written here
/// holds no row: a write reads no row digest for it and sends no `DEL` before its `HSET`.
/// Keys that were written here take the general path (their row digests are read back).
///
/// A table whose rewrite this connection began ([`Sink::begin_rewrite`]) is fresh with
/// `overwrite`: its digest and row digests count only the rows written since, but keys not
/// written yet may still hold old rows, so an `HSET` goes after a `DEL` of its key.
#[derive(Debug, Default)]
pub(crate) struct Fresh {
    digest: TableDigest,
    written: KeyHashes,
    overwrite: bool,
}

/// A set of [`key_hash`] values. They are hashes already, so the set uses them as they are
/// instead of hashing them again (a cache rebuild checks and adds one per row).
type KeyHashes = HashSet<u64, std::hash::BuildHasherDefault<KeyHashHasher>>;

/// The [`std::hash::Hasher`] of [`KeyHashes`]: the `u64` it is given.
#[derive(Debug, Default)]
struct KeyHashHasher(u64);

impl std::hash::Hasher for KeyHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else still hashes, by folding the bytes in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The row keys a rewrite has not seen written yet (suffixes after the row prefix), by
/// [`key_hash`]; exact: the bytes are compared, and of two keys with one hash the second is
/// kept in `more`. The keys' bytes are kept end to end in `bytes`, not one allocation each.
#[derive(Debug, Default)]
pub(crate) struct PendingKeys {
    bytes: Vec<u8>,
    by_hash: HashMap<u64, std::ops::Range<usize>, std::hash::BuildHasherDefault<KeyHashHasher>>,
    more: Vec<std::ops::Range<usize>>,
}

impl PendingKeys {
    fn insert(&mut self, suffix: &[u8]) {
        let h = key_hash(suffix);
        if let Some(kept) = self.by_hash.get(&h) {
            if self.bytes[kept.clone()] != *suffix
                && !self.more.iter().any(|r| self.bytes[r.clone()] == *suffix)
            {
                let at = self.push(suffix);
                self.more.push(at);
            }
            return;
        }
        let at = self.push(suffix);
        self.by_hash.insert(h, at);
    }

    fn push(&mut self, suffix: &[u8]) -> std::ops::Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(suffix);
        start..self.bytes.len()
    }

    fn remove(&mut self, suffix: &[u8]) {
        let h = key_hash(suffix);
        if self
            .by_hash
            .get(&h)
            .is_some_and(|r| self.bytes[r.clone()] == *suffix)
        {
            self.by_hash.remove(&h);
        } else if !self.more.is_empty() {
            let bytes = &self.bytes;
            self.more.retain(|r| bytes[r.clone()] != *suffix);
        }
    }

    fn is_empty(&self) -> bool {
        self.by_hash.is_empty() && self.more.is_empty()
    }

    /// Each key left, as `prefix` followed by its suffix.
    fn keys_under(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.by_hash
            .values()
            .chain(&self.more)
            .map(|r| [prefix, &self.bytes[r.clone()]].concat())
            .collect()
    }
}

/// Keys a [`Fresh`] table remembers at most (8 bytes each); past that its writes take the
/// general path, so memory stays bounded on very large tables.
const FRESH_KEYS: usize = 4_000_000;

/// The hash of an encoded key in [`Fresh::written`]: FNV-1a, then murmur3's final mix so that
/// every bit of the result depends on every byte (the set uses it as it is). A collision only
/// sends a key down the general path, which is always correct; SipHash here cost a rebuild
/// more than its row digests.
fn key_hash(pk: &[u8]) -> u64 {
    let mut h = pk.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The row commands of a write for the batch's rows in `rows`: per row HSET (after a DEL
/// where `may_exist`, indexed by row, says a row may be there), SET pairs of JSON rows in
/// MSETs, or the keys to delete in DELs (one reply each, counting the rows removed).
fn row_commands(
    pipe: &mut redis::Pipeline,
    plan: &WritePlan<'_>,
    rows: std::ops::Range<usize>,
    may_exist: &[bool],
) {
    let batch = plan.batch;
    let schema = batch.schema();
    let row_prefix = plan.row_prefix.as_bytes();
    let mut key = Vec::with_capacity(row_prefix.len() + 32);
    let mut text = Vec::with_capacity(64);
    let first = rows.start;
    let pks = &plan.pks[rows];
    match (plan.op, plan.format) {
        (WriteOp::Delete, _) => {
            for chunk in pks.chunks(ARGS_PER_COMMAND) {
                let mut del = redis::cmd("DEL");
                for pk in chunk {
                    key.clear();
                    key.extend_from_slice(row_prefix);
                    key.extend_from_slice(pk);
                    del.arg(&key[..]);
                }
                pipe.add_command(del);
            }
        }
        (_, Format::Hash) => {
            let mut payload = HashPayload::default();
            for (i, pk) in pks.iter().enumerate() {
                let row = first + i;
                key.clear();
                key.extend_from_slice(row_prefix);
                key.extend_from_slice(pk);
                if plan.restore && hash_payload(batch, row, &mut payload, &mut text) {
                    // REPLACE drops whatever the key held: no DEL needed.
                    let payload = payload.finish();
                    // Sized up front: a command grows its buffers otherwise, a few
                    // reallocations a row.
                    let mut restore = redis::Cmd::with_capacity(5, key.len() + payload.len() + 16);
                    restore
                        .arg("RESTORE")
                        .arg(&key[..])
                        .arg(0)
                        .arg(payload)
                        .arg("REPLACE");
                    pipe.add_command(restore).ignore();
                    continue;
                }
                if may_exist[row] {
                    // Fields that became NULL must go: the row is written whole.
                    pipe.cmd("DEL").arg(&key[..]).ignore();
                }
                let mut hset = redis::cmd("HSET");
                hset.arg(&key[..]);
                for (col, f) in schema.fields().iter().enumerate() {
                    let column = &batch.columns()[col];
                    if !column.is_null(row) {
                        text.clear();
                        encode_text(column, &f.logical_type, row, &mut text);
                        hset.arg(f.name.as_str()).arg(&text[..]);
                    }
                }
                // Never an HSET without fields: the key columns are never NULL.
                pipe.add_command(hset).ignore();
            }
        }
        (_, Format::Json) => {
            // MSET sets its pairs in order: of a key given twice, the last value stays.
            for (chunk_no, chunk) in pks.chunks(ARGS_PER_COMMAND / 2).enumerate() {
                let mut mset = redis::cmd("MSET");
                for (i, pk) in chunk.iter().enumerate() {
                    let row = first + chunk_no * (ARGS_PER_COMMAND / 2) + i;
                    key.clear();
                    key.extend_from_slice(row_prefix);
                    key.extend_from_slice(pk);
                    text.clear();
                    text.push(b'{');
                    for (col, f) in schema.fields().iter().enumerate() {
                        if col > 0 {
                            text.push(b',');
                        }
                        // Serializing a &str into a Vec cannot fail.
                        let _ = serde_json::to_writer(&mut text, f.name.as_str());
                        text.push(b':');
                        encode_json(&batch.columns()[col], &f.logical_type, row, &mut text);
                    }
                    text.push(b'}');
                    mset.arg(&key[..]).arg(&text[..]);
                }
                pipe.add_command(mset).ignore();
            }
        }
    }
}

/// Puts the non-NULL fields of `row` into `payload`; `false` when the row is too large for one
/// (see [`crate::dump`]).
fn hash_payload(batch: &Batch, row: usize, payload: &mut HashPayload, text: &mut Vec<u8>) -> bool {
    payload.start();
    for (col, f) in batch.schema().fields().iter().enumerate() {
        let column = &batch.columns()[col];
        if !column.is_null(row) {
            text.clear();
            encode_text(column, &f.logical_type, row, text);
            if !payload.push(f.name.as_bytes()) || !payload.push(text) {
                return false;
            }
        }
    }
    true
}

/// What one write transaction needs besides the connection.
struct WritePlan<'a> {
    offsets: String,
    field: String,
    digest_key: String,
    row_digests_key: String,
    seq: u64,
    pks: &'a [Vec<u8>],
    /// The new rows' digests; empty for a delete.
    new_digests: &'a [RowDigest],
    /// The sum of `new_digests`.
    added: &'a TableDigest,
    batch: &'a Batch,
    op: WriteOp,
    format: Format,
    row_prefix: String,
    delete: bool,
    /// Hash rows go as `RESTORE` payloads where they fit (see [`crate::dump`]).
    restore: bool,
}

/// How one attempt of a write ended.
enum Attempt {
    /// EXEC ran: the outcome and the table's digest now.
    Applied(u64, TableDigest),
    /// The stream's offset is at or past the seq: nothing to do.
    AlreadyApplied(u64),
    /// A watched key changed before EXEC, which did nothing: start over.
    Changed,
    /// The digest key is not what this connection last wrote to its fresh table: another
    /// writer came by; start over on the general path.
    NotFresh,
}

/// One attempt under WATCH of the offsets hash and the digest key. With `known`, the table
/// is one this connection created (see [`Fresh`]).
async fn try_write(
    conn: &mut MultiplexedConnection,
    plan: &WritePlan<'_>,
    known: Option<&Fresh>,
) -> Result<Attempt> {
    let result = transact(conn, plan, known).await;
    if !matches!(result, Ok(Attempt::Applied(..) | Attempt::Changed)) {
        // After EXEC the watch is gone; on every other path drop it so that it cannot abort
        // a later transaction on this connection. Best effort: the error that matters is the
        // first one.
        let _ = redis::cmd("UNWATCH").exec_async(conn).await;
    }
    result
}

/// In one round trip: `WATCH` the offsets hash and the digest key, read the stream's offset
/// and the digest key. The table's digest now, or how the attempt ends already: the offset is
/// at or past the seq, or (with `known`) the digest key is not what this connection left.
async fn watch_and_read(
    conn: &mut MultiplexedConnection,
    plan: &WritePlan<'_>,
    known: Option<&Fresh>,
) -> Result<std::result::Result<TableDigest, Attempt>> {
    let (last, state): (Option<u64>, Option<Vec<u8>>) = redis::pipe()
        .cmd("WATCH")
        .arg(&plan.offsets)
        .arg(&plan.digest_key)
        .ignore()
        .cmd("HGET")
        .arg(&plan.offsets)
        .arg(&plan.field)
        .cmd("GET")
        .arg(&plan.digest_key)
        .query_async(conn)
        .await
        .map_err(|e| {
            redis_error(
                format!(
                    "WATCH and reading the offset in `{}` and `{}`",
                    plan.offsets, plan.digest_key
                ),
                e,
            )
        })?;
    if let Some(last_seq) = last
        && last_seq >= plan.seq
    {
        return Ok(Err(Attempt::AlreadyApplied(last_seq)));
    }
    let digest = match &state {
        Some(bytes) => decode_digest(bytes)
            .map_err(|e| e.context(format!("digest key `{}`", plan.digest_key)))?,
        None => TableDigest::new(),
    };
    if let Some(fresh) = known
        && (state.is_none() || digest != fresh.digest)
    {
        return Ok(Err(Attempt::NotFresh));
    }
    Ok(Ok(digest))
}

async fn transact(
    conn: &mut MultiplexedConnection,
    plan: &WritePlan<'_>,
    known: Option<&Fresh>,
) -> Result<Attempt> {
    let mut digest = match watch_and_read(conn, plan, known).await? {
        Ok(digest) => digest,
        Err(attempt) => return Ok(attempt),
    };
    // On a fresh table only keys written before may hold a row.
    let ask: Vec<bool> = plan
        .pks
        .iter()
        .map(|pk| known.is_none_or(|f| f.written.contains(&key_hash(pk))))
        .collect();
    let asked: Vec<&[u8]> = plan
        .pks
        .iter()
        .zip(&ask)
        .filter(|(_, a)| **a)
        .map(|(pk, _)| pk.as_slice())
        .collect();
    let old: Vec<Option<Vec<u8>>> = if asked.is_empty() {
        Vec::new()
    } else {
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(&plan.row_digests_key).arg(&asked[..]);
        hmget
            .query_async(conn)
            .await
            .map_err(|e| redis_error(format!("reading `{}`", plan.row_digests_key), e))?
    };
    let mut old = old.into_iter();
    // Apply the rows in order; a key may appear twice in one batch. Every row a row of the
    // batch replaces or deletes leaves the digest, every row of the batch enters it.
    let mut current: HashMap<&[u8], Option<RowDigest>> = HashMap::with_capacity(plan.pks.len());
    let mut removed = Vec::new();
    let mut may_exist = Vec::with_capacity(plan.pks.len());
    for (i, pk) in plan.pks.iter().enumerate() {
        let stored = if ask[i] { old.next().flatten() } else { None };
        let before = match current.get(pk.as_slice()) {
            Some(d) => *d,
            None => stored
                .as_deref()
                .map(decode_row_digest)
                .transpose()
                .map_err(|e| e.context(format!("`{}`", plan.row_digests_key)))?,
        };
        // A key the row digests do not know may still hold something not written by caudal,
        // unless the table is fresh (and not being rewritten over its old rows).
        may_exist.push(known.is_none_or(|f| f.overwrite) || before.is_some());
        removed.extend(before);
        current.insert(pk, plan.new_digests.get(i).copied());
    }
    digest.combine(plan.added);
    digest.subtract(&sum_of(&removed));
    // The row commands are built here rather than once per write: a clone of them for each
    // attempt would cost more than building them again on the rare retry.
    let mut pipe = redis::pipe();
    pipe.atomic();
    row_commands(&mut pipe, plan, 0..plan.pks.len(), &may_exist);
    let (set, gone): (Vec<_>, Vec<_>) = current.iter().partition(|(_, d)| d.is_some());
    for chunk in set.chunks(ARGS_PER_COMMAND) {
        let mut hset = redis::cmd("HSET");
        hset.arg(&plan.row_digests_key);
        for (pk, d) in chunk {
            hset.arg(*pk)
                .arg(d.map(|d| d.0).unwrap_or_default().as_slice());
        }
        pipe.add_command(hset).ignore();
    }
    for chunk in gone.chunks(ARGS_PER_COMMAND) {
        let mut hdel = redis::cmd("HDEL");
        hdel.arg(&plan.row_digests_key);
        for (pk, _) in chunk {
            hdel.arg(*pk);
        }
        pipe.add_command(hdel).ignore();
    }
    push_digest_and_offset(&mut pipe, plan, &digest);
    let replies: Option<Vec<i64>> = pipe
        .query_async(conn)
        .await
        .map_err(|e| redis_error("MULTI/EXEC", e))?;
    Ok(match replies {
        None => Attempt::Changed,
        Some(deleted) => Attempt::Applied(
            if plan.delete {
                deleted.iter().map(|&n| n.max(0) as u64).sum()
            } else {
                plan.pks.len() as u64
            },
            digest,
        ),
    })
}

/// One attempt of [`Redis::bulk_insert`].
fn bulk_attempt(
    runtime: &tokio::runtime::Runtime,
    conn: &mut MultiplexedConnection,
    plan: &WritePlan<'_>,
    known: Option<&Fresh>,
    table: &str,
) -> Result<Attempt> {
    let mut digest = match runtime.block_on(watch_and_read(conn, plan, known))? {
        Ok(digest) => digest,
        Err(attempt) => return Ok(attempt),
    };
    // A fresh table holds none of these rows: no DEL before an HSET, unless old rows are
    // being overwritten.
    let overwrite = known.is_some_and(|f| f.overwrite);
    let (new_digests, added) = std::thread::scope(|s| {
        let digests = s.spawn(|| row_digests(table, plan.batch));
        let (tx, rx) = tokio::sync::mpsc::channel(BULK_DEPTH);
        s.spawn(move || {
            let may_exist = vec![overwrite; plan.pks.len()];
            for start in (0..plan.pks.len()).step_by(BULK_ROWS) {
                let mut pipe = redis::Pipeline::with_capacity(BULK_ROWS);
                row_commands(
                    &mut pipe,
                    plan,
                    start..(start + BULK_ROWS).min(plan.pks.len()),
                    &may_exist,
                );
                if tx.blocking_send(pipe).is_err() {
                    // The sender stopped on an error, which it reports.
                    return;
                }
            }
        });
        let sent = runtime.block_on(send_rows(conn, rx));
        let digests = digests
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        sent.map(|()| digests)
    })?;
    digest.combine(&added);
    let mut pipe = redis::pipe();
    pipe.atomic();
    let pairs: Vec<(&Vec<u8>, &RowDigest)> = plan.pks.iter().zip(&new_digests).collect();
    for chunk in pairs.chunks(ARGS_PER_COMMAND) {
        let mut hset = redis::cmd("HSET");
        hset.arg(&plan.row_digests_key);
        for (pk, d) in chunk {
            hset.arg(&pk[..]).arg(&d.0[..]);
        }
        pipe.add_command(hset).ignore();
    }
    push_digest_and_offset(&mut pipe, plan, &digest);
    let done: Option<redis::Value> = runtime
        .block_on(pipe.query_async(conn))
        .map_err(|e| redis_error("MULTI/EXEC of the row digests, digest key and offset", e))?;
    Ok(match done {
        None => Attempt::Changed,
        Some(_) => Attempt::Applied(plan.pks.len() as u64, digest),
    })
}

/// Sends the pipelines `rows` yields, up to [`BULK_DEPTH`] in flight, and waits for all of
/// them; the first command the server refused is the error.
async fn send_rows(
    conn: &MultiplexedConnection,
    mut rows: tokio::sync::mpsc::Receiver<redis::Pipeline>,
) -> Result<()> {
    let mut in_flight = std::collections::VecDeque::new();
    let wait = |sent: tokio::task::JoinHandle<redis::RedisResult<()>>| async move {
        sent.await
            .map_err(|e| Error::Other(format!("sending rows: {e}")))?
            .map_err(|e| redis_error("writing rows", e))
    };
    while let Some(pipe) = rows.recv().await {
        let mut conn = conn.clone();
        in_flight.push_back(tokio::spawn(async move {
            pipe.query_async::<()>(&mut conn).await
        }));
        if in_flight.len() > BULK_DEPTH
            && let Some(oldest) = in_flight.pop_front()
        {
            wait(oldest).await?;
        }
    }
    while let Some(oldest) = in_flight.pop_front() {
        wait(oldest).await?;
    }
    Ok(())
}

impl Redis {
    /// Whether the server takes hash rows as `RESTORE` payloads (probed once).
    fn restores(&mut self) -> Result<bool> {
        if let Some(known) = self.restore {
            return Ok(known);
        }
        let key = format!("{}:_caudal_restore_probe", self.config.prefix);
        let known = self
            .runtime
            .block_on(crate::dump::probe(&mut self.conn, &key))
            .map_err(|e| redis_error(format!("probing RESTORE on `{key}`"), e))?;
        self.restore = Some(known);
        Ok(known)
    }

    /// Every row key of `table` (as `template` names them), found by SCAN.
    fn row_keys(&mut self, table: &str, template: &KeyTemplate) -> Result<Vec<Vec<u8>>> {
        let row_prefix = template.row_prefix(&self.config.prefix, table);
        let mut seen = HashSet::new();
        self.scan_rows(table, &row_prefix, |_, found| {
            seen.extend(found);
            Ok(())
        })?;
        Ok(seen.into_iter().collect())
    }

    /// A SCAN of the row keys under `row_prefix` (keys of the table's metadata left out):
    /// `step` gets the keys of each step (a key may come twice).
    fn scan_rows(
        &mut self,
        table: &str,
        row_prefix: &str,
        mut step: impl FnMut(&mut Redis, Vec<Vec<u8>>) -> Result<()>,
    ) -> Result<()> {
        let pattern = format!("{}*", glob_escape(row_prefix));
        let mut cursor = 0u64;
        loop {
            let (next, mut found): (u64, Vec<Vec<u8>>) = self
                .runtime
                .block_on(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(&mut self.conn),
                )
                .map_err(|e| redis_error(format!("scanning the keys of `{table}`"), e))?;
            found.retain(|k| is_row_suffix(&k[row_prefix.len().min(k.len())..]));
            step(self, found)?;
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    fn exec(&mut self, pipe: &redis::Pipeline, what: &str) -> Result<Option<()>> {
        let done: Option<redis::Value> = self
            .runtime
            .block_on(pipe.query_async(&mut self.conn))
            .map_err(|e| redis_error(what, e))?;
        Ok(done.map(|_| ()))
    }

    fn doc_for(&self, request: &PrepareTable) -> TableDoc {
        TableDoc {
            format: self.config.format,
            key: self.template.as_str().to_owned(),
            schema: request.schema.clone(),
        }
    }

    fn prepare(&mut self, request: &PrepareTable) -> Result<()> {
        let table = request.table.as_str();
        check_prepare(request)?;
        let prefix = self.config.prefix.clone();
        let doc = self.doc_for(request);
        let text = serde_json::to_vec(&doc)
            .map_err(|e| Error::Encode(format!("the schema document: {e}")))?;
        let existing = load_doc(self, table)?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(old) = &existing
            && !request.replace
        {
            return check_existing(table, old, &doc);
        }
        if request.replace {
            // Every row key under the table's name goes: those the stored schema names, and
            // those this connection's template names, which may be left without a schema key
            // (stale keys of a cache whose metadata was flushed).
            let mut rows = self.row_keys(table, &self.template.clone())?;
            if let Some(old) = &existing {
                let template = old.template()?;
                if template.row_prefix(&prefix, table) != self.template.row_prefix(&prefix, table) {
                    rows.extend(self.row_keys(table, &template)?);
                }
            }
            for chunk in rows.chunks(ARGS_PER_COMMAND) {
                pipe.cmd("UNLINK").arg(chunk).ignore();
            }
            // UNLINK: a large hash is freed off the server's main thread.
            pipe.cmd("UNLINK")
                .arg(keys::row_digests_key(&prefix, table))
                .ignore();
        }
        pipe.cmd("SET")
            .arg(keys::schema_key(&prefix, table))
            .arg(text)
            .ignore();
        pipe.cmd("SET")
            .arg(keys::digest_key(&prefix, table))
            .arg(encode_digest(&TableDigest::new()))
            .ignore();
        self.fresh.remove(table);
        self.exec(&pipe, "creating the table's keys")?;
        // Created or emptied by this transaction: no row is there but those written next.
        self.fresh.insert(table.to_owned(), Fresh::default());
        Ok(())
    }

    /// Starts a rewrite of the table in place (see [`Sink::begin_rewrite`]): one transaction
    /// installs the schema, resets the digest key and drops the row digests, and leaves every
    /// row key as it is, readable until a final row overwrites it or [`Redis::finish_rewrite`]
    /// removes it. A SCAN then lists the row keys there, for the end to check. Rows kept under
    /// another key template would be overwritten by no write: that table is emptied at once
    /// instead, as `prepare_table` with `replace` does.
    fn start_rewrite(&mut self, request: &PrepareTable) -> Result<()> {
        let table = request.table.as_str();
        check_prepare(request)?;
        let prefix = self.config.prefix.clone();
        self.rewrites.remove(table);
        if let Some(old) = load_doc(self, table)?
            && old.template()?.row_prefix(&prefix, table)
                != self.template.row_prefix(&prefix, table)
        {
            self.prepare(&PrepareTable {
                replace: true,
                ..request.clone()
            })?;
            self.rewrites
                .insert(table.to_owned(), PendingKeys::default());
            return Ok(());
        }
        let text = serde_json::to_vec(&self.doc_for(request))
            .map_err(|e| Error::Encode(format!("the schema document: {e}")))?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("UNLINK")
            .arg(keys::row_digests_key(&prefix, table))
            .ignore()
            .cmd("SET")
            .arg(keys::schema_key(&prefix, table))
            .arg(text)
            .ignore()
            .cmd("SET")
            .arg(keys::digest_key(&prefix, table))
            .arg(encode_digest(&TableDigest::new()))
            .ignore();
        self.fresh.remove(table);
        self.exec(&pipe, "starting the rewrite of the table's keys")?;
        // Listed after the reset: every key there then is either written again or removed.
        let row_prefix = self.template.row_prefix(&prefix, table);
        let mut old = PendingKeys::default();
        self.scan_rows(table, &row_prefix, |_, found| {
            for key in &found {
                old.insert(&key[row_prefix.len()..]);
            }
            Ok(())
        })?;
        // With no row key there, the table is as fresh as one just created.
        self.fresh.insert(
            table.to_owned(),
            Fresh {
                overwrite: !old.is_empty(),
                ..Fresh::default()
            },
        );
        self.rewrites.insert(table.to_owned(), old);
        Ok(())
    }

    /// Ends a rewrite (see [`Sink::end_rewrite`]): the row keys listed when the rewrite began
    /// that this connection did not write since are removed. If no other writer came by (the
    /// digest key, under `WATCH`, is what this connection's last write left), they all go in
    /// one transaction; otherwise only those the row digests do not know
    /// ([`Redis::remove_unwritten`]). If this connection did not begin the rewrite (it was
    /// opened again since), a SCAN lists every row key of the table, each checked that way.
    fn finish_rewrite(&mut self, table: &str) -> Result<()> {
        keys::check_table_name(table)?;
        let prefix = self.config.prefix.clone();
        let doc = load_doc(self, table)?.ok_or_else(|| {
            Error::NotFound(format!(
                "table `{table}` has no schema key `{}`: its rewrite was never begun",
                keys::schema_key(&prefix, table)
            ))
        })?;
        let row_prefix = doc.template()?.row_prefix(&prefix, table);
        // Whether this connection knew the table whole to the end (no other writer came by).
        let mut alone = false;
        if let Some(old) = self.rewrites.remove(table) {
            let old = old.keys_under(row_prefix.as_bytes());
            alone = self.remove_if_alone(table, &old)?;
            if !alone {
                for chunk in old.chunks(SCAN_COUNT) {
                    let suffixes: Vec<&[u8]> =
                        chunk.iter().map(|k| &k[row_prefix.len()..]).collect();
                    self.remove_unwritten(table, &row_prefix, &suffixes)?;
                }
            }
        } else {
            self.scan_rows(table, &row_prefix, |redis, found| {
                let suffixes: Vec<&[u8]> = found.iter().map(|k| &k[row_prefix.len()..]).collect();
                redis.remove_unwritten(table, &row_prefix, &suffixes)
            })?;
        }
        match self.fresh.get_mut(table) {
            Some(fresh) if alone => fresh.overwrite = false,
            _ => {
                self.fresh.remove(table);
            }
        }
        Ok(())
    }

    /// Unlinks `keys` in one transaction, under `WATCH` of the digest key, if this connection
    /// still knows the table whole (it is fresh here, and the digest key is what its last
    /// write left): then no other writer wrote any of them. `false` if it did nothing.
    fn remove_if_alone(&mut self, table: &str, keys: &[Vec<u8>]) -> Result<bool> {
        let Some(known) = self.fresh.get(table).map(|f| f.digest.clone()) else {
            return Ok(false);
        };
        let digest_key = keys::digest_key(&self.config.prefix, table);
        let read: redis::RedisResult<(Option<Vec<u8>>,)> = self.runtime.block_on(
            redis::pipe()
                .cmd("WATCH")
                .arg(&digest_key)
                .ignore()
                .cmd("GET")
                .arg(&digest_key)
                .query_async(&mut self.conn),
        );
        let alone = match &read {
            Ok((Some(bytes),)) => decode_digest(bytes).is_ok_and(|d| d == known),
            _ => false,
        };
        if !alone {
            self.unwatch();
            read.map_err(|e| redis_error(format!("reading `{digest_key}`"), e))?;
            return Ok(false);
        }
        self.unlink_watched(keys)
    }

    /// Unlinks `keys` in one transaction, under the watch the caller set: `false` if a watched
    /// key changed and nothing was done.
    fn unlink_watched(&mut self, keys: &[Vec<u8>]) -> Result<bool> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for chunk in keys.chunks(ARGS_PER_COMMAND) {
            pipe.cmd("UNLINK").arg(chunk).ignore();
        }
        // With no key, the empty transaction still tells whether a watched key changed.
        Ok(self
            .exec(&pipe, "removing the rows not written again")?
            .is_some())
    }

    /// Drops this connection's watch, best effort: on every path where no `EXEC` follows a
    /// `WATCH`, so that it cannot abort a later transaction here (the error that matters is
    /// the one already being returned).
    fn unwatch(&mut self) {
        let _ = self
            .runtime
            .block_on(redis::cmd("UNWATCH").exec_async(&mut self.conn));
    }

    /// Of the row keys `row_prefix` + `suffixes`, unlinks those the row digests do not know:
    /// under `WATCH` of the digest key, one `HMGET` of their row digests, then a transaction
    /// of `UNLINK`s, which starts over if another writer changed the table in between.
    fn remove_unwritten(
        &mut self,
        table: &str,
        row_prefix: &str,
        suffixes: &[&[u8]],
    ) -> Result<()> {
        if suffixes.is_empty() {
            return Ok(());
        }
        let prefix = self.config.prefix.clone();
        let row_digests_key = keys::row_digests_key(&prefix, table);
        let digest_key = keys::digest_key(&prefix, table);
        for _ in 0..MAX_ATTEMPTS {
            let read: redis::RedisResult<(Vec<Option<Vec<u8>>>,)> = self.runtime.block_on(
                redis::pipe()
                    .cmd("WATCH")
                    .arg(&digest_key)
                    .ignore()
                    .cmd("HMGET")
                    .arg(&row_digests_key)
                    .arg(suffixes)
                    .query_async(&mut self.conn),
            );
            let digests = match read {
                Ok((digests,)) => digests,
                Err(e) => {
                    self.unwatch();
                    return Err(redis_error(format!("reading `{row_digests_key}`"), e));
                }
            };
            let stale: Vec<Vec<u8>> = suffixes
                .iter()
                .zip(&digests)
                .filter(|(_, d)| d.is_none())
                .map(|(suffix, _)| [row_prefix.as_bytes(), suffix].concat())
                .collect();
            if stale.is_empty() {
                self.runtime
                    .block_on(redis::cmd("UNWATCH").exec_async(&mut self.conn))
                    .map_err(|e| redis_error("UNWATCH", e))?;
                return Ok(());
            }
            if self.unlink_watched(&stale)? {
                return Ok(());
            }
            // Another writer changed the table between the read and the removal: again.
        }
        Err(Error::retryable_database(format!(
            "the table's digest key changed under {MAX_ATTEMPTS} attempts in a row (another \
             writer is busy on `{table}`); try again"
        )))
    }

    /// What this connection keeps of a table after a write of the keys `pks` (with these
    /// [`key_hash`] values) applied: they are written, as far as a rewrite goes, and a fresh
    /// table's digest key now holds `digest`.
    fn applied(
        &mut self,
        table: &str,
        pks: &[Vec<u8>],
        hashes: impl IntoIterator<Item = u64>,
        digest: TableDigest,
    ) {
        if let Some(old) = self.rewrites.get_mut(table) {
            for pk in pks {
                old.remove(pk);
            }
        }
        if let Some(fresh) = self.fresh.get_mut(table) {
            fresh.digest = digest;
            fresh.written.extend(hashes);
            if fresh.written.len() > FRESH_KEYS {
                self.fresh.remove(table);
            }
        }
    }

    fn write_batch(&mut self, request: &WriteRequest, batch: &Batch) -> Result<WriteOutcome> {
        let table = request.table.as_str();
        keys::check_table_name(table)?;
        let prefix = self.config.prefix.clone();
        let doc = load_doc(self, table)?.ok_or_else(|| {
            Error::NotFound(format!(
                "table `{table}` has no schema key `{}`: prepare the table first",
                keys::schema_key(&prefix, table)
            ))
        })?;
        check_batch(table, &doc.schema, batch, request.op)?;
        let pks = keys::encoded_keys(batch)?;
        let delete = request.op == WriteOp::Delete;
        let row_prefix = doc.template()?.row_prefix(&prefix, table);
        let restore = !delete && doc.format == Format::Hash && self.restores()?;
        if request.op == WriteOp::Insert
            && let Some(hashes) = self.new_keys(table, &pks)
        {
            let plan = WritePlan {
                offsets: keys::offsets_key(&prefix),
                field: keys::offset_field(&request.pipeline, &request.stream),
                digest_key: keys::digest_key(&prefix, table),
                row_digests_key: keys::row_digests_key(&prefix, table),
                seq: request.seq,
                pks: &pks,
                new_digests: &[],
                added: &TableDigest::new(),
                batch,
                op: request.op,
                format: doc.format,
                row_prefix: row_prefix.clone(),
                delete,
                restore,
            };
            match self.bulk_insert(table, &plan) {
                Ok(Attempt::Applied(rows, digest)) => {
                    self.applied(table, &pks, hashes, digest);
                    return Ok(WriteOutcome::Applied { rows });
                }
                Ok(Attempt::AlreadyApplied(last_seq)) => {
                    return Ok(WriteOutcome::AlreadyApplied { last_seq });
                }
                // Another writer came by: the rows sent are written again, in a transaction,
                // by the general path below.
                Ok(Attempt::Changed | Attempt::NotFresh) => {
                    self.fresh.remove(table);
                }
                Err(e) => {
                    self.fresh.remove(table);
                    return Err(e);
                }
            }
        }
        let (new_digests, added) = if delete {
            (Vec::new(), TableDigest::new())
        } else {
            row_digests(table, batch)
        };
        let plan = WritePlan {
            offsets: keys::offsets_key(&prefix),
            field: keys::offset_field(&request.pipeline, &request.stream),
            digest_key: keys::digest_key(&prefix, table),
            row_digests_key: keys::row_digests_key(&prefix, table),
            seq: request.seq,
            pks: &pks,
            new_digests: &new_digests,
            added: &added,
            batch,
            op: request.op,
            format: doc.format,
            row_prefix,
            delete,
            restore,
        };
        for _ in 0..MAX_ATTEMPTS {
            let known = self.fresh.get(table);
            let attempt = self
                .runtime
                .block_on(try_write(&mut self.conn, &plan, known));
            match attempt {
                Ok(Attempt::Applied(rows, digest)) => {
                    self.applied(table, &pks, pks.iter().map(|pk| key_hash(pk)), digest);
                    return Ok(WriteOutcome::Applied { rows });
                }
                Ok(Attempt::AlreadyApplied(last_seq)) => {
                    return Ok(WriteOutcome::AlreadyApplied { last_seq });
                }
                Ok(Attempt::Changed) => {
                    // Another writer: this connection no longer knows the whole table.
                    self.fresh.remove(table);
                }
                Ok(Attempt::NotFresh) => {
                    self.fresh.remove(table);
                }
                Err(e) => {
                    // After an error the table's state is not known here (EXEC may or may not
                    // have run); the next write reads it back.
                    self.fresh.remove(table);
                    return Err(e);
                }
            }
        }
        self.fresh.remove(table);
        Err(Error::retryable_database(format!(
            "the table's digest key changed under {MAX_ATTEMPTS} attempts in a row (another \
             writer is busy on `{table}`); try again"
        )))
    }

    /// The hashes of `pks` when they are all new rows of a fresh table: none written by this
    /// connection since it emptied the table, none twice in the batch. `None` otherwise (the
    /// write takes the general path).
    fn new_keys(&self, table: &str, pks: &[Vec<u8>]) -> Option<KeyHashes> {
        let fresh = self.fresh.get(table)?;
        if fresh.written.len() + pks.len() > FRESH_KEYS {
            return None;
        }
        let mut hashes = KeyHashes::with_capacity_and_hasher(pks.len(), Default::default());
        for pk in pks {
            let h = key_hash(pk);
            if fresh.written.contains(&h) || !hashes.insert(h) {
                return None;
            }
        }
        Some(hashes)
    }

    /// An insert of new rows into a fresh table (see the module documentation): under WATCH
    /// of the offset and the digest key, the rows go in plain pipelines while other threads
    /// digest them and encode the next rows; then one `MULTI`/`EXEC` sets their row digests,
    /// the digest key and the offset.
    fn bulk_insert(&mut self, table: &str, plan: &WritePlan<'_>) -> Result<Attempt> {
        let runtime = Arc::clone(&self.runtime);
        let known = self.fresh.get(table);
        let conn = &mut self.conn;
        let result = bulk_attempt(&runtime, conn, plan, known, table);
        if !matches!(result, Ok(Attempt::Applied(..) | Attempt::Changed)) {
            // As in `try_write`: no watch may outlive the attempt.
            let _ = runtime.block_on(redis::cmd("UNWATCH").exec_async(conn));
        }
        result
    }

    fn swap(&mut self, staging: &str, table: &str) -> Result<()> {
        keys::check_table_name(staging)?;
        keys::check_table_name(table)?;
        if staging == table {
            return Err(Error::Schema(format!(
                "cannot replace table `{table}` by itself"
            )));
        }
        let prefix = self.config.prefix.clone();
        // The staging table goes and the table gets rows this connection did not write.
        self.fresh.remove(staging);
        self.fresh.remove(table);
        for _ in 0..MAX_ATTEMPTS {
            let watch = [
                keys::digest_key(&prefix, staging),
                keys::digest_key(&prefix, table),
            ];
            self.runtime
                .block_on(
                    redis::cmd("WATCH")
                        .arg(&watch[..])
                        .exec_async(&mut self.conn),
                )
                .map_err(|e| redis_error("WATCH", e))?;
            let result = self.try_swap(staging, table);
            if !matches!(result, Ok(true)) {
                self.unwatch();
            }
            if result? {
                return Ok(());
            }
        }
        Err(Error::retryable_database(format!(
            "`{staging}` or `{table}` changed under {MAX_ATTEMPTS} attempts in a row; try again"
        )))
    }

    /// One attempt of the swap, under WATCH; `false` when a watched key changed.
    fn try_swap(&mut self, staging: &str, table: &str) -> Result<bool> {
        let prefix = self.config.prefix.clone();
        let doc = load_doc(self, staging)?.ok_or_else(|| {
            Error::NotFound(format!(
                "staging table `{staging}` does not exist (no key `{}`)",
                keys::schema_key(&prefix, staging)
            ))
        })?;
        let template = doc.template()?;
        let (from, to) = (
            template.row_prefix(&prefix, staging),
            template.row_prefix(&prefix, table),
        );
        // Read the staging rows: their keys, and their digests as rows of `table`.
        let mut scanner = RowScanner::new(self, staging, &doc, Arc::new(doc.schema.clone()))?;
        let mut suffixes: Vec<Vec<u8>> = Vec::new();
        let mut digests: Vec<RowDigest> = Vec::new();
        let mut total = TableDigest::new();
        let mut batch_keys = Vec::new();
        while let Some(batch) =
            scanner.next_batch_with_keys(&ChunkLimits::default(), &mut batch_keys)?
        {
            let (part, sum) = row_digests(table, &batch);
            total.combine(&sum);
            digests.extend(part);
            suffixes.extend(batch_keys.drain(..).map(|k| k[from.len()..].to_vec()));
        }
        let old_rows = match load_doc(self, table)? {
            Some(old) => self.row_keys(table, &old.template()?)?,
            None => Vec::new(),
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        for chunk in old_rows.chunks(ARGS_PER_COMMAND) {
            pipe.cmd("UNLINK").arg(chunk).ignore();
        }
        let mut target = Vec::new();
        for suffix in &suffixes {
            target.clear();
            target.extend_from_slice(to.as_bytes());
            target.extend_from_slice(suffix);
            let source: Vec<u8> = [from.as_bytes(), suffix].concat();
            pipe.cmd("RENAME").arg(source).arg(&target[..]).ignore();
        }
        let row_digests_key = keys::row_digests_key(&prefix, table);
        pipe.cmd("DEL").arg(&row_digests_key).ignore();
        let pairs: Vec<(&Vec<u8>, &RowDigest)> = suffixes.iter().zip(&digests).collect();
        for chunk in pairs.chunks(ARGS_PER_COMMAND) {
            let mut hset = redis::cmd("HSET");
            hset.arg(&row_digests_key);
            for (suffix, d) in chunk {
                hset.arg(&suffix[..]).arg(&d.0[..]);
            }
            pipe.add_command(hset).ignore();
        }
        let text = serde_json::to_vec(&doc)
            .map_err(|e| Error::Encode(format!("the schema document: {e}")))?;
        pipe.cmd("SET")
            .arg(keys::schema_key(&prefix, table))
            .arg(text)
            .ignore();
        pipe.cmd("SET")
            .arg(keys::digest_key(&prefix, table))
            .arg(encode_digest(&total))
            .ignore();
        pipe.cmd("DEL")
            .arg(keys::schema_key(&prefix, staging))
            .arg(keys::digest_key(&prefix, staging))
            .arg(keys::row_digests_key(&prefix, staging))
            .ignore();
        Ok(self.exec(&pipe, "swapping the tables")?.is_some())
    }
}

/// What every table needs here: a valid name and a primary key to name its row keys by.
fn check_prepare(request: &PrepareTable) -> Result<()> {
    keys::check_table_name(&request.table)?;
    if request.schema.primary_key().is_empty() {
        return Err(Error::Schema(
            "the stream's schema has no primary key, and Redis keys are named by it; set \
             `primary_key` on the stream"
                .into(),
        ));
    }
    Ok(())
}

/// An existing table is kept as it is, if it can take the stream's rows.
fn check_existing(table: &str, old: &TableDoc, new: &TableDoc) -> Result<()> {
    if old.format != new.format || old.key != new.key {
        return Err(Error::Config(format!(
            "table `{table}` is stored with format {:?} and key \"{}\", but this connection says \
             format {:?} and key \"{}\"; change the connection back, or rebuild the table \
             (snapshot mode replaces it)",
            old.format, old.key, new.format, new.key
        )));
    }
    let missing: Vec<&str> = new
        .schema
        .fields()
        .iter()
        .filter(|f| old.schema.index_of(&f.name).is_none())
        .map(|f| f.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Schema(format!(
            "the existing table `{table}` has no column(s) {}; rebuild it (snapshot mode \
             replaces it) or write to a new table",
            missing.join(", ")
        )));
    }
    let pk = |s: &Schema| -> Vec<String> {
        s.primary_key()
            .iter()
            .map(|&k| s.fields()[k].name.clone())
            .collect()
    };
    if pk(&old.schema) != pk(&new.schema) {
        return Err(Error::Schema(format!(
            "the existing table `{table}` is keyed by ({}), the stream by ({})",
            pk(&old.schema).join(", "),
            pk(&new.schema).join(", ")
        )));
    }
    Ok(())
}

impl Sink for Redis {
    fn prepare_table(&mut self, request: &PrepareTable) -> Result<()> {
        let ctx = format!("{}: preparing table `{}`", self.describe(), request.table);
        self.prepare(request).map_err(|e| e.context(ctx))
    }

    fn write(&mut self, request: &WriteRequest, batch: &Batch) -> Result<WriteOutcome> {
        let ctx = format!(
            "{}: writing seq {} of stream `{}` of pipeline `{}` to table `{}`",
            self.describe(),
            request.seq,
            request.stream,
            request.pipeline,
            request.table
        );
        self.write_batch(request, batch).map_err(|e| e.context(ctx))
    }

    fn last_applied_seq(&mut self, pipeline: &str, stream: &str) -> Result<Option<u64>> {
        let key = keys::offsets_key(&self.config.prefix);
        let ctx = format!(
            "{}: reading the offset of stream `{stream}` of pipeline `{pipeline}` in `{key}`",
            self.describe()
        );
        self.runtime
            .block_on(
                redis::cmd("HGET")
                    .arg(&key)
                    .arg(keys::offset_field(pipeline, stream))
                    .query_async(&mut self.conn),
            )
            .map_err(|e| redis_error(ctx, e))
    }

    fn table_digest(&mut self, request: &DigestRequest) -> Result<TableDigest> {
        let ctx = format!("{}: digest of table `{}`", self.describe(), request.table);
        source::table_digest(self, request).map_err(|e| e.context(ctx))
    }

    fn replace_table(&mut self, staging: &str, table: &str) -> Result<()> {
        let ctx = format!(
            "{}: replacing table `{table}` by `{staging}`",
            self.describe()
        );
        self.swap(staging, table).map_err(|e| e.context(ctx))
    }

    fn begin_rewrite(&mut self, request: &PrepareTable) -> Result<()> {
        let ctx = format!(
            "{}: starting the rewrite of table `{}`",
            self.describe(),
            request.table
        );
        self.start_rewrite(request).map_err(|e| e.context(ctx))
    }

    fn end_rewrite(&mut self, table: &str) -> Result<()> {
        let ctx = format!("{}: ending the rewrite of table `{table}`", self.describe());
        self.finish_rewrite(table).map_err(|e| e.context(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_keys_are_exact_when_two_keys_share_a_hash() {
        let mut keys = PendingKeys::default();
        keys.insert(b"1");
        keys.insert(b"1");
        keys.insert(b"2");
        // A key "x" whose hash is that of "3": "3" then goes beside it.
        let x = keys.push(b"x");
        keys.by_hash.insert(key_hash(b"3"), x);
        keys.insert(b"3");
        keys.insert(b"3");
        assert_eq!(keys.more.len(), 1);
        keys.remove(b"3");
        keys.remove(b"1");
        keys.remove(b"never there");
        let mut left = keys.keys_under(b"p:");
        left.sort();
        assert_eq!(left, vec![b"p:2".to_vec(), b"p:x".to_vec()]);
        let mut keys = PendingKeys::default();
        assert!(keys.is_empty());
        keys.insert(b"1");
        keys.remove(b"1");
        assert!(keys.is_empty());
    }

    #[test]
    fn digest_values_round_trip_and_bad_lengths_are_named() {
        let mut d = TableDigest::new();
        d.add_row(&RowDigest([7; 32]));
        d.add_row(&RowDigest([9; 32]));
        assert_eq!(decode_digest(&encode_digest(&d)).unwrap(), d);
        let err = decode_digest(&[0; 10]).unwrap_err();
        assert!(err.to_string().contains("10 bytes"), "{err}");
        assert!(decode_row_digest(&[1; 31]).is_err());
    }
}
