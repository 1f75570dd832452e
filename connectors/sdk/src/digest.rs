//! Row digests and the homomorphic table digest: the one implementation every plugin and the
//! core use, so a digest computed from the journal and one computed from a destination agree.
//!
//! **Row digest** ([`RowDigest`]): SHA-256 over a canonical encoding of
//! `(table, key values, column values)`:
//!
//! ```text
//! "caudal.row.v2" 0x00 | u64 len | table UTF-8 | 0x00 to a multiple of 64 bytes
//! u32 key count   | key cells, in primary-key order
//! u32 column count| every cell, in schema order
//! cell = 0x00                                   NULL (distinct from every value, "" included)
//!      | 0x01 u8                                bool
//!      | 0x02 i128 LE                           every integer type, Year, Bit (widened)
//!      | 0x03 i128 LE, u8 scale                 decimal and money, normalised: trailing
//!                                               zeros stripped, zero has scale 0
//!      | 0x04 u64 LE                            float/double as f64 bits, NaN canonical
//!      | 0x05 i32 LE                            date (days since 1970-01-01)
//!      | 0x06 i64 LE                            time (microseconds)
//!      | 0x07 i64 LE                            datetime, timestamp, datetimeoffset as
//!                                               UTC microseconds (the offset is not hashed)
//!      | 0x08 u64 len, bytes                    text of every string type, JSON, enum, set
//!      | 0x09 u64 len, bytes                    binary of every byte-string type
//!      | 0x0A 16 bytes                          UUID
//!      | 0x0B i32 months, i32 days, i64 micros  interval
//! ```
//!
//! Lengths and counts make the encoding prefix-free, so no two different rows share an
//! encoding. The table prefix fills whole SHA-256 blocks, so it is hashed once per table and
//! each row costs only the blocks of its own cells. Two connectors agree on a digest whenever they agree on the logical values, not on
//! storage widths: an `Int32` 7 and an `Int64` 7 hash alike; `decimal(10,2)` 1.50 and
//! `decimal(12,4)` 1.5000 hash alike.
//!
//! **Table digest** ([`TableDigest`]): LtHash16 (Lewi et al., "Securing Update Propagation with
//! Homomorphic Hashing", 2019): a state of 1024 `u16` lanes (2 KiB); a row is added by
//! expanding its row digest to 2 KiB with an XOF (AES-256-CTR keyed by the row digest, see
//! [`crate::expand`]) and adding lane-wise with wrapping arithmetic, removed by subtracting. Order does not matter, partial states add up,
//! an upsert is `remove(old) + add(new)`. Users see the SHA-256 of the state, in hex.
//! Digesting a batch allocates nothing per row.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::batch::{Batch, Interval, OffsetTimestamp};
use crate::error::{Error, Result};
use crate::rows::{ColumnRef, DigestRows, Values, check_column};
use crate::types::LogicalType;

/// Number of 16-bit lanes of the table digest state.
pub const LANES: usize = 1024;
/// Bytes of the table digest state.
pub const STATE_BYTES: usize = LANES * 2;

/// Domain of the row encoding. Changing it, the prefix padding or the expansion changes every
/// digest: they are part of the format (version 2: block-aligned prefix, AES-256-CTR
/// expansion).
const ROW_DOMAIN: &[u8] = b"caudal.row.v2\0";

/// SHA-256 of one row's canonical encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RowDigest(pub [u8; 32]);

impl RowDigest {
    /// The digest of row `row` of `batch`, as a row of table `table`. `None` past the end.
    pub fn of_row(table: &str, batch: &Batch, row: usize) -> Option<RowDigest> {
        (row < batch.num_rows()).then(|| RowHasher::new(table, batch).digest(row))
    }

    /// The digests of rows `rows` of `batch` (cut to the batch's rows), in order, as rows of
    /// table `table`: for many rows, faster than [`RowDigest::of_row`] on each.
    pub fn of_rows(table: &str, batch: &Batch, rows: std::ops::Range<usize>) -> Vec<RowDigest> {
        let end = rows.end.min(batch.num_rows());
        RowHasher::new(table, batch).digests(rows.start.min(end)..end)
    }

    /// The digest as lower-case hex.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

/// Variable-length values: value `i` is `data[offsets[i]..offsets[i + 1]]` (checked when a
/// batch is built or decoded, or by [`crate::rows::check_column`] for rows read in place).
#[derive(Clone, Copy)]
struct Var<'a> {
    offsets: &'a [i32],
    data: &'a [u8],
}

impl<'a> Var<'a> {
    #[inline]
    fn get(&self, i: usize) -> &'a [u8] {
        &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// Which cells are non-NULL: bit `offset + i` of `bits`, or all of them.
#[derive(Clone, Copy)]
struct Validity<'a> {
    bits: Option<&'a [u8]>,
    offset: usize,
}

impl Validity<'_> {
    #[inline]
    fn get(&self, i: usize) -> bool {
        match self.bits {
            None => true,
            Some(bits) => {
                let j = self.offset + i;
                bits[j / 8] & (1 << (j % 8)) != 0
            }
        }
    }
}

/// A column prepared for canonical encoding: the value class is decided once per column.
enum Cells<'a> {
    Bool(&'a [bool]),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    I128(&'a [i128]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    Decimal(&'a [i128], u8),
    F32(&'a [f32]),
    F64(&'a [f64]),
    Date(&'a [i32]),
    Time(&'a [i64]),
    Instant(&'a [i64]),
    Offset(&'a [OffsetTimestamp]),
    Text(Var<'a>),
    Binary(Var<'a>),
    Uuid(&'a [[u8; 16]]),
    Interval(&'a [Interval]),
}

impl<'a> Cells<'a> {
    fn new(values: Values<'a>, t: &LogicalType) -> Cells<'a> {
        use LogicalType as L;
        match values {
            Values::Bool(v) => Cells::Bool(v),
            Values::I8(v) => Cells::I8(v),
            Values::I16(v) => Cells::I16(v),
            Values::I32(v) if *t == L::Date => Cells::Date(v),
            Values::I32(v) => Cells::I32(v),
            Values::I64(v) => match t {
                L::Time { .. } => Cells::Time(v),
                L::DateTime { .. } | L::Timestamp { .. } => Cells::Instant(v),
                _ => Cells::I64(v),
            },
            Values::I128(v) => match t.decimal_scale() {
                Some(scale) => Cells::Decimal(v, scale),
                None => Cells::I128(v),
            },
            Values::U8(v) => Cells::U8(v),
            Values::U16(v) => Cells::U16(v),
            Values::U32(v) => Cells::U32(v),
            Values::U64(v) => Cells::U64(v),
            Values::F32(v) => Cells::F32(v),
            Values::F64(v) => Cells::F64(v),
            Values::Utf8 { offsets, data } => Cells::Text(Var { offsets, data }),
            Values::Binary { offsets, data } => Cells::Binary(Var { offsets, data }),
            Values::Uuid(v) => Cells::Uuid(v),
            Values::OffsetTimestamp(v) => Cells::Offset(v),
            Values::Interval(v) => Cells::Interval(v),
        }
    }

    /// Bytes of the canonical encoding of non-NULL cell `i`: what [`Cells::feed`] writes.
    #[inline]
    fn size(&self, i: usize) -> usize {
        match self {
            Cells::Bool(_) => 2,
            Cells::I8(_)
            | Cells::I16(_)
            | Cells::I32(_)
            | Cells::I64(_)
            | Cells::I128(_)
            | Cells::U8(_)
            | Cells::U16(_)
            | Cells::U32(_)
            | Cells::U64(_)
            | Cells::Uuid(_)
            | Cells::Interval(_) => 17,
            Cells::Decimal(..) => 18,
            Cells::F32(_)
            | Cells::F64(_)
            | Cells::Time(_)
            | Cells::Instant(_)
            | Cells::Offset(_) => 9,
            Cells::Date(_) => 5,
            Cells::Text(v) | Cells::Binary(v) => 9 + v.get(i).len(),
        }
    }

    /// Feeds the canonical encoding of non-NULL cell `i` (in range: checked by the caller).
    #[inline]
    fn feed(&self, h: &mut Out<'_>, i: usize) {
        #[inline]
        fn int(h: &mut Out<'_>, v: i128) {
            h.extend_from_slice(&[0x02]);
            h.extend_from_slice(&v.to_le_bytes());
        }
        match self {
            Cells::Bool(v) => h.extend_from_slice(&[0x01, u8::from(v[i])]),
            Cells::I8(v) => int(h, i128::from(v[i])),
            Cells::I16(v) => int(h, i128::from(v[i])),
            Cells::I32(v) => int(h, i128::from(v[i])),
            Cells::I64(v) => int(h, i128::from(v[i])),
            Cells::I128(v) => int(h, v[i]),
            Cells::U8(v) => int(h, i128::from(v[i])),
            Cells::U16(v) => int(h, i128::from(v[i])),
            Cells::U32(v) => int(h, i128::from(v[i])),
            Cells::U64(v) => int(h, i128::from(v[i])),
            Cells::Decimal(v, scale) => {
                let (unscaled, scale) = normalize_decimal(v[i], *scale);
                h.extend_from_slice(&[0x03]);
                h.extend_from_slice(&unscaled.to_le_bytes());
                h.extend_from_slice(&[scale]);
            }
            Cells::F32(v) => float(h, f64::from(v[i])),
            Cells::F64(v) => float(h, v[i]),
            Cells::Date(v) => {
                h.extend_from_slice(&[0x05]);
                h.extend_from_slice(&v[i].to_le_bytes());
            }
            Cells::Time(v) => {
                h.extend_from_slice(&[0x06]);
                h.extend_from_slice(&v[i].to_le_bytes());
            }
            Cells::Instant(v) => instant(h, v[i]),
            Cells::Offset(v) => instant(h, v[i].utc_micros),
            // The bytes as stored: a batch holds only valid UTF-8 (checked on decode).
            Cells::Text(v) => bytes(h, 0x08, v.get(i)),
            Cells::Binary(v) => bytes(h, 0x09, v.get(i)),
            Cells::Uuid(v) => {
                h.extend_from_slice(&[0x0A]);
                h.extend_from_slice(&v[i]);
            }
            Cells::Interval(v) => {
                let x = v[i];
                h.extend_from_slice(&[0x0B]);
                h.extend_from_slice(&x.months.to_le_bytes());
                h.extend_from_slice(&x.days.to_le_bytes());
                h.extend_from_slice(&x.micros.to_le_bytes());
            }
        }
    }
}

/// Writes a row's encoding into a buffer sized beforehand ([`Cells::size`]), from `pos` on.
struct Out<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Out<'_> {
    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
}

#[inline]
fn float(h: &mut Out<'_>, v: f64) {
    // Databases do not keep NaN payloads; every NaN is the same value.
    let bits = if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    };
    h.extend_from_slice(&[0x04]);
    h.extend_from_slice(&bits.to_le_bytes());
}

#[inline]
fn instant(h: &mut Out<'_>, micros: i64) {
    h.extend_from_slice(&[0x07]);
    h.extend_from_slice(&micros.to_le_bytes());
}

#[inline]
fn bytes(h: &mut Out<'_>, tag: u8, b: &[u8]) {
    h.extend_from_slice(&[tag]);
    h.extend_from_slice(&(b.len() as u64).to_le_bytes());
    h.extend_from_slice(b);
}

/// `(unscaled, scale)` with trailing zeros removed; zero is `(0, 0)`.
pub fn normalize_decimal(mut unscaled: i128, mut scale: u8) -> (i128, u8) {
    if unscaled == 0 {
        return (0, 0);
    }
    // Most decimals fit in 64 bits, where division is one instruction, not a library call.
    if let Ok(mut small) = i64::try_from(unscaled) {
        while scale > 0 && small % 10 == 0 {
            small /= 10;
            scale -= 1;
        }
        return (i128::from(small), scale);
    }
    while scale > 0 && unscaled % 10 == 0 {
        unscaled /= 10;
        scale -= 1;
    }
    (unscaled, scale)
}

/// A column ready for encoding: its cells by value class and its validity.
fn prepare<'a>(c: ColumnRef<'a>, t: &LogicalType) -> (Cells<'a>, Validity<'a>) {
    let validity = match c.validity {
        Some((bits, offset)) => Validity {
            bits: Some(bits),
            offset,
        },
        None => Validity {
            bits: None,
            offset: 0,
        },
    };
    (Cells::new(c.values, t), validity)
}

/// Computes row digests of one batch; the per-table prefix is hashed once.
struct RowHasher<'a> {
    /// The SHA-256 state after the table prefix.
    midstate: [u32; 8],
    /// Bytes of the table prefix (whole blocks).
    prefix_len: u64,
    columns: Vec<(Cells<'a>, Validity<'a>)>,
    key: &'a [usize],
}

/// Scratch space of [`RowHasher::digest_group`], reused across groups: a group's encodings,
/// padded, and where each one is.
#[derive(Default)]
struct GroupScratch {
    blocks: Vec<u8>,
    spans: Vec<(usize, usize)>,
    digests: [[u8; 32]; GROUP_ROWS],
}

/// Rows whose digests are computed together (the SHA-256 of up to this many messages runs at
/// once, see [`crate::sha256x16`]).
const GROUP_ROWS: usize = crate::sha256x16::LANES;

impl<'a> RowHasher<'a> {
    /// The hasher of a batch's rows (checked when the batch was built or decoded).
    fn new(table: &str, batch: &'a Batch) -> RowHasher<'a> {
        let columns = batch
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| prepare(DigestRows::column(batch, i), &f.logical_type))
            .collect();
        RowHasher::with_columns(table, columns, batch.schema().primary_key())
    }

    /// The hasher of rows held elsewhere; every column is checked first.
    fn of(table: &str, rows: &'a dyn DigestRows) -> Result<RowHasher<'a>> {
        let schema = rows.schema();
        let mut columns = Vec::with_capacity(schema.len());
        for (i, f) in schema.fields().iter().enumerate() {
            let c = rows.column(i);
            check_column(&f.name, f.logical_type.storage(), &c, rows.num_rows())?;
            columns.push(prepare(c, &f.logical_type));
        }
        Ok(RowHasher::with_columns(
            table,
            columns,
            schema.primary_key(),
        ))
    }

    fn with_columns(
        table: &str,
        columns: Vec<(Cells<'a>, Validity<'a>)>,
        key: &'a [usize],
    ) -> RowHasher<'a> {
        let mut prefix = Vec::with_capacity(64 + table.len());
        prefix.extend_from_slice(ROW_DOMAIN);
        prefix.extend_from_slice(&(table.len() as u64).to_le_bytes());
        prefix.extend_from_slice(table.as_bytes());
        prefix.resize(prefix.len().div_ceil(64) * 64, 0);
        RowHasher {
            midstate: crate::sha256x16::midstate(&prefix),
            prefix_len: prefix.len() as u64,
            columns,
            key,
        }
    }

    /// Adds the encoded size of column `col`'s cells in `rows` to `lens`.
    #[inline]
    fn add_sizes(&self, col: usize, rows: std::ops::Range<usize>, lens: &mut [usize]) {
        let (cells, validity) = &self.columns[col];
        for (row, len) in rows.zip(lens) {
            *len += if validity.get(row) {
                cells.size(row)
            } else {
                1
            };
        }
    }

    /// Writes column `col`'s cells in `rows` at each row's position, advancing it.
    #[inline]
    fn write_cells(
        &self,
        col: usize,
        rows: std::ops::Range<usize>,
        out: &mut [u8],
        at: &mut [usize],
    ) {
        let (cells, validity) = &self.columns[col];
        for (row, pos) in rows.zip(at) {
            let mut h = Out {
                buf: out,
                pos: *pos,
            };
            if validity.get(row) {
                cells.feed(&mut h, row);
            } else {
                h.extend_from_slice(&[0x00]);
            }
            *pos = h.pos;
        }
    }

    /// Writes `count` as the next field of every row.
    #[inline]
    fn write_count(count: usize, out: &mut [u8], at: &mut [usize]) {
        for pos in at {
            let mut h = Out {
                buf: out,
                pos: *pos,
            };
            h.extend_from_slice(&(count as u32).to_le_bytes());
            *pos = h.pos;
        }
    }

    /// The digests of `rows` (at most [`GROUP_ROWS`]): their canonical encodings (after the
    /// table prefix) are sized, laid out padded and written column by column, then all are
    /// hashed in one call.
    fn digest_group<'s>(
        &self,
        rows: std::ops::Range<usize>,
        scratch: &'s mut GroupScratch,
    ) -> &'s [[u8; 32]] {
        let n = rows.len();
        debug_assert!(n <= GROUP_ROWS);
        let GroupScratch {
            blocks,
            spans,
            digests,
        } = scratch;
        // Two u32 counts, then the cells.
        let mut lens = [8usize; GROUP_ROWS];
        let lens = &mut lens[..n];
        for &k in self.key {
            self.add_sizes(k, rows.clone(), lens);
        }
        for col in 0..self.columns.len() {
            self.add_sizes(col, rows.clone(), lens);
        }
        spans.clear();
        let mut at = [0usize; GROUP_ROWS];
        let at = &mut at[..n];
        let mut total = 0;
        for (len, pos) in lens.iter().zip(at.iter_mut()) {
            let count = crate::sha256x16::padded_blocks(*len);
            spans.push((total, count));
            *pos = total * 64;
            total += count;
        }
        blocks.clear();
        blocks.resize(total * 64, 0);
        Self::write_count(self.key.len(), blocks, at);
        for &k in self.key {
            self.write_cells(k, rows.clone(), blocks, at);
        }
        Self::write_count(self.columns.len(), blocks, at);
        for col in 0..self.columns.len() {
            self.write_cells(col, rows.clone(), blocks, at);
        }
        for (&(first, count), len) in spans.iter().zip(lens.iter()) {
            let span = &mut blocks[first * 64..(first + count) * 64];
            crate::sha256x16::pad(span, *len, self.prefix_len);
        }
        debug_assert!(
            spans
                .iter()
                .zip(lens.iter())
                .zip(at.iter())
                .all(|((&(first, _), len), pos)| first * 64 + len == *pos),
            "a cell's size and its encoding disagree"
        );
        crate::sha256x16::hash_padded(&self.midstate, blocks, spans, digests);
        &digests[..n]
    }

    /// The digest of one row.
    fn digest(&self, row: usize) -> RowDigest {
        RowDigest(self.digest_group(row..row + 1, &mut GroupScratch::default())[0])
    }

    /// The digests of `rows`, in order.
    fn digests(&self, rows: std::ops::Range<usize>) -> Vec<RowDigest> {
        let mut out = Vec::with_capacity(rows.len());
        let mut scratch = GroupScratch::default();
        for_groups(rows, |group| {
            out.extend(
                self.digest_group(group, &mut scratch)
                    .iter()
                    .map(|d| RowDigest(*d)),
            );
        });
        out
    }
}

/// Calls `f` on consecutive parts of `rows` of at most [`GROUP_ROWS`] rows.
#[inline]
fn for_groups(rows: std::ops::Range<usize>, mut f: impl FnMut(std::ops::Range<usize>)) {
    let mut start = rows.start;
    while start < rows.end {
        let end = (start + GROUP_ROWS).min(rows.end);
        f(start..end);
        start = end;
    }
}

/// Batches with at least this many rows are digested on up to
/// `std::thread::available_parallelism()` threads (at most [`MAX_DIGEST_THREADS`]): each row
/// costs a SHA-256 and a 2 KiB XOF expansion, a few microseconds, so a 20k-row chunk is worth
/// splitting.
pub const PARALLEL_ROWS: usize = 4096;
/// Upper bound on digest threads per batch.
pub const MAX_DIGEST_THREADS: usize = 8;

/// Threads a digest may use: the available cores, at most [`MAX_DIGEST_THREADS`]. Asked once
/// per process: `available_parallelism` reads the cgroup's files at every call, and a verify
/// that bisects asks for thousands of range digests.
fn digest_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_DIGEST_THREADS)
    })
}

/// The digest of rows `rows` of a batch, on the calling thread.
fn digest_range(hasher: &RowHasher<'_>, rows: std::ops::Range<usize>) -> TableDigest {
    let mut d = TableDigest::new();
    let mut scratch = GroupScratch::default();
    for_groups(rows, |group| {
        let digests = hasher.digest_group(group, &mut scratch);
        crate::expand::add_all_into_lanes(digests, &mut d.lanes);
        d.rows = d.rows.wrapping_add(digests.len() as i64);
    });
    d
}

fn digest_rows(table: &str, batch: &Batch) -> TableDigest {
    let hasher = RowHasher::new(table, batch);
    let rows = batch.num_rows();
    let threads = if rows >= PARALLEL_ROWS {
        digest_threads()
    } else {
        1
    };
    if threads <= 1 {
        return digest_range(&hasher, 0..rows);
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        let hasher = &hasher;
        // The calling thread takes the first part; the others run beside it.
        let others: Vec<_> = (1..threads)
            .map(|t| {
                scope.spawn(move || {
                    digest_range(hasher, (t * per).min(rows)..((t + 1) * per).min(rows))
                })
            })
            .collect();
        let mut total = digest_range(hasher, 0..per.min(rows));
        for handle in others {
            match handle.join() {
                Ok(part) => total.combine(&part),
                // Digesting a checked batch does not panic; if it ever did, re-raise it here
                // rather than return a digest that silently misses rows.
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
        total
    })
}

/// Digests the batches of a scan on worker threads while the caller goes on reading the next
/// ones, so that reading and digesting overlap: what a sink's table digest uses. Batches are
/// handed over whole; each worker folds the batches it takes into a partial digest, and
/// [`Digester::finish`] adds the partial digests up (the result does not depend on which
/// worker took which batch).
///
/// The workers start once [`PARALLEL_ROWS`] rows have been pushed; fewer are digested on the
/// calling thread. A digest of a few rows (a key range of a bisection, a single key) starts no
/// thread.
pub struct Digester {
    table: std::sync::Arc<str>,
    sender: Option<std::sync::mpsc::SyncSender<Work>>,
    workers: Vec<std::thread::JoinHandle<Result<TableDigest>>>,
    /// The digest of rows folded on the calling thread (before the workers started, or when
    /// none could be started).
    local: Result<TableDigest>,
    /// Rows folded on the calling thread before the workers started.
    inline_rows: usize,
    /// Whether starting the workers was tried.
    started: bool,
}

/// What a digest worker takes.
enum Work {
    Batch(Batch),
    Rows(Box<dyn DigestRows>),
}

impl Work {
    fn num_rows(&self) -> usize {
        match self {
            Work::Batch(batch) => batch.num_rows(),
            Work::Rows(rows) => rows.num_rows(),
        }
    }

    /// Adds the rows to `total`; rows held elsewhere are checked first.
    fn fold(&self, table: &str, total: &mut TableDigest) -> Result<()> {
        let (hasher, rows) = match self {
            Work::Batch(batch) => (RowHasher::new(table, batch), batch.num_rows()),
            Work::Rows(rows) => (RowHasher::of(table, rows.as_ref())?, rows.num_rows()),
        };
        total.combine(&digest_range(&hasher, 0..rows));
        Ok(())
    }
}

impl Digester {
    /// A digester of rows of `table`. Its workers, one per available core (at most
    /// [`MAX_DIGEST_THREADS`]), start with the rows (see [`Digester`]).
    pub fn new(table: &str) -> Digester {
        Digester {
            table: table.into(),
            sender: None,
            workers: Vec::new(),
            local: Ok(TableDigest::new()),
            inline_rows: 0,
            started: false,
        }
    }

    /// Starts the workers; if none can be started, rows are folded on the calling thread.
    fn start_workers(&mut self) {
        self.started = true;
        let threads = digest_threads();
        let table = &self.table;
        // Two batches queued per worker: enough to keep them busy, little memory held.
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Work>(threads * 2);
        let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (table, receiver) = (
                std::sync::Arc::clone(table),
                std::sync::Arc::clone(&receiver),
            );
            let spawned = std::thread::Builder::new()
                .name("caudal-digest".into())
                .spawn(move || {
                    let mut total = TableDigest::new();
                    let mut failed = None;
                    loop {
                        // The lock is held only while taking the next batch.
                        let next = match receiver.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => break,
                        };
                        let Ok(work) = next else { break };
                        // After an error the rest is only drained, so the caller never
                        // blocks on a full queue.
                        if failed.is_none()
                            && let Err(e) = work.fold(&table, &mut total)
                        {
                            failed = Some(e);
                        }
                    }
                    failed.map_or(Ok(total), Err)
                });
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(_) => break,
            }
        }
        self.sender = (!workers.is_empty()).then_some(sender);
        self.workers = workers;
    }

    /// Adds the rows of `batch`; returns once a worker can take it.
    pub fn push(&mut self, batch: Batch) {
        self.hand_over(Work::Batch(batch));
    }

    /// Adds rows held in a connector's own buffers, digested where they are; returns once a
    /// worker can take them. Columns that do not hold what the schema says make
    /// [`Digester::finish`] fail.
    pub fn push_rows(&mut self, rows: impl DigestRows + 'static) {
        self.hand_over(Work::Rows(Box::new(rows)));
    }

    fn hand_over(&mut self, work: Work) {
        if !self.started {
            let rows = self.inline_rows + work.num_rows();
            if rows < PARALLEL_ROWS {
                self.inline_rows = rows;
                self.fold_here(work);
                return;
            }
            self.start_workers();
        }
        let work = match &self.sender {
            Some(sender) => match sender.send(work) {
                Ok(()) => return,
                // Every worker is gone (only if one panicked): fold here; `finish` re-raises.
                Err(std::sync::mpsc::SendError(work)) => work,
            },
            None => work,
        };
        self.fold_here(work);
    }

    fn fold_here(&mut self, work: Work) {
        if let Ok(local) = &mut self.local
            && let Err(e) = work.fold(&self.table, local)
        {
            self.local = Err(e);
        }
    }

    /// The digest of every row pushed, or the first error of rows that could not be read.
    pub fn finish(mut self) -> Result<TableDigest> {
        drop(self.sender.take());
        let mut total = std::mem::replace(&mut self.local, Ok(TableDigest::new()));
        for handle in self.workers.drain(..) {
            match handle.join() {
                Ok(Ok(part)) => {
                    if let Ok(t) = &mut total {
                        t.combine(&part);
                    }
                }
                Ok(Err(e)) => {
                    if total.is_ok() {
                        total = Err(e);
                    }
                }
                // Digesting a checked batch does not panic; if it ever did, re-raise it here
                // rather than return a digest that silently misses rows.
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
        total
    }
}

/// The homomorphic multiset hash of a table's rows (LtHash16, 2 KiB), plus the net row count.
#[derive(Clone, PartialEq, Eq)]
pub struct TableDigest {
    lanes: Box<[u16; LANES]>,
    rows: i64,
}

impl Default for TableDigest {
    fn default() -> Self {
        TableDigest::new()
    }
}

impl TableDigest {
    /// The digest of the empty table.
    pub fn new() -> TableDigest {
        TableDigest {
            lanes: Box::new([0; LANES]),
            rows: 0,
        }
    }

    /// The digest of the rows of one batch, as rows of `table`.
    pub fn of_batch(table: &str, batch: &Batch) -> TableDigest {
        let mut d = TableDigest::new();
        d.add_batch(table, batch);
        d
    }

    #[inline]
    fn apply(&mut self, row: &RowDigest, add: bool) {
        self.apply_into(row, add, &mut [0u8; STATE_BYTES]);
    }

    /// [`TableDigest::apply`] with the 2 KiB expansion buffer supplied by the caller (the
    /// fast path adds the expansion to the lanes without writing it out).
    #[inline]
    fn apply_into(&mut self, row: &RowDigest, add: bool, expanded: &mut [u8; STATE_BYTES]) {
        crate::expand::expand_into_lanes(&row.0, &mut self.lanes, add, expanded);
        self.rows = if add {
            self.rows.wrapping_add(1)
        } else {
            self.rows.wrapping_sub(1)
        };
    }

    /// Adds one row.
    pub fn add_row(&mut self, row: &RowDigest) {
        self.apply(row, true);
    }

    /// Adds many rows: [`TableDigest::add_row`] of each, with the expansions' key schedules
    /// computed several at a time.
    pub fn add_rows(&mut self, rows: &[RowDigest]) {
        let mut seeds = [[0u8; 32]; 64];
        for chunk in rows.chunks(seeds.len()) {
            for (seed, row) in seeds.iter_mut().zip(chunk) {
                *seed = row.0;
            }
            crate::expand::add_all_into_lanes(&seeds[..chunk.len()], &mut self.lanes);
            self.rows = self.rows.wrapping_add(chunk.len() as i64);
        }
    }

    /// Removes one row (the inverse of [`TableDigest::add_row`]).
    pub fn remove_row(&mut self, row: &RowDigest) {
        self.apply(row, false);
    }

    /// Adds every row of `batch` as rows of `table`. Large batches are digested on several
    /// threads (see [`PARALLEL_ROWS`]); the result does not depend on how rows are split.
    pub fn add_batch(&mut self, table: &str, batch: &Batch) {
        self.combine(&digest_rows(table, batch));
    }

    /// Removes every row of `batch` (for deletes, and the old side of upserts).
    pub fn remove_batch(&mut self, table: &str, batch: &Batch) {
        self.subtract(&digest_rows(table, batch));
    }

    /// Adds another partial digest (of disjoint rows, e.g. computed in parallel).
    pub fn combine(&mut self, other: &TableDigest) {
        for (a, b) in self.lanes.iter_mut().zip(other.lanes.iter()) {
            *a = a.wrapping_add(*b);
        }
        self.rows = self.rows.wrapping_add(other.rows);
    }

    /// Removes a partial digest that was added before.
    pub fn subtract(&mut self, other: &TableDigest) {
        for (a, b) in self.lanes.iter_mut().zip(other.lanes.iter()) {
            *a = a.wrapping_sub(*b);
        }
        self.rows = self.rows.wrapping_sub(other.rows);
    }

    /// Net number of rows added (adds minus removes).
    pub fn rows(&self) -> i64 {
        self.rows
    }

    /// The 2 KiB state, lanes little-endian.
    pub fn state_bytes(&self) -> Vec<u8> {
        self.lanes.iter().flat_map(|l| l.to_le_bytes()).collect()
    }

    /// A digest from its state bytes and row count; the state must be exactly 2 KiB.
    pub fn from_state_bytes(state: &[u8], rows: i64) -> Result<TableDigest> {
        if state.len() != STATE_BYTES {
            return Err(Error::Decode(format!(
                "table digest state of {} bytes, expected {STATE_BYTES}",
                state.len()
            )));
        }
        let mut d = TableDigest::new();
        for (lane, b) in d.lanes.iter_mut().zip(state.chunks_exact(2)) {
            *lane = u16::from_le_bytes([b[0], b[1]]);
        }
        d.rows = rows;
        Ok(d)
    }

    /// What users see: the SHA-256 of the state, lower-case hex.
    pub fn hex(&self) -> String {
        hex(&Sha256::digest(self.state_bytes()))
    }
}

impl std::fmt::Display for TableDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

impl std::fmt::Debug for TableDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TableDigest({}, rows {})", self.hex(), self.rows)
    }
}

#[derive(Serialize, Deserialize)]
struct TableDigestWire {
    #[serde(with = "serde_bytes_vec")]
    state: Vec<u8>,
    rows: i64,
}

impl Serialize for TableDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        TableDigestWire {
            state: self.state_bytes(),
            rows: self.rows,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for TableDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = TableDigestWire::deserialize(d)?;
        TableDigest::from_state_bytes(&w.state, w.rows).map_err(serde::de::Error::custom)
    }
}

/// A `Vec<u8>` as one byte string rather than a sequence of numbers.
mod serde_bytes_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(serde_bytes_buf::ByteBuf::deserialize(d)?.0)
    }

    mod serde_bytes_buf {
        use serde::de::{SeqAccess, Visitor};
        use serde::{Deserialize, Deserializer};

        pub struct ByteBuf(pub Vec<u8>);

        impl<'de> Deserialize<'de> for ByteBuf {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = ByteBuf;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<ByteBuf, E> {
                        Ok(ByteBuf(b.to_vec()))
                    }
                    fn visit_byte_buf<E: serde::de::Error>(self, b: Vec<u8>) -> Result<ByteBuf, E> {
                        Ok(ByteBuf(b))
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
                        let mut out = Vec::new();
                        while let Some(b) = seq.next_element::<u8>()? {
                            out.push(b);
                        }
                        Ok(ByteBuf(out))
                    }
                }
                d.deserialize_byte_buf(V)
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::builder::BatchBuilder;
    use crate::sample::{all_types_batch, all_types_schema};
    use crate::types::{Field, Schema};
    use crate::value::Value;
    use proptest::prelude::*;

    fn schema(t: LogicalType) -> Arc<Schema> {
        Arc::new(
            Schema::new(
                vec![
                    Field::new("k", LogicalType::Int64, false),
                    Field::new("v", t, true),
                ],
                &["k"],
            )
            .unwrap(),
        )
    }

    fn one_row(t: LogicalType, v: Value) -> RowDigest {
        let mut b = BatchBuilder::new(schema(t));
        b.push_row(&[Value::Int(1), v]).unwrap();
        RowDigest::of_row("t", &b.finish().unwrap(), 0).unwrap()
    }

    #[test]
    fn null_and_empty_differ() {
        let text = LogicalType::Text { max_bytes: None };
        assert_ne!(
            one_row(text.clone(), Value::Null),
            one_row(text, Value::Text(String::new()))
        );
        let bin = LogicalType::Blob { max_bytes: None };
        assert_ne!(
            one_row(bin.clone(), Value::Null),
            one_row(bin, Value::Bytes(vec![]))
        );
        assert_ne!(
            one_row(LogicalType::Int64, Value::Null),
            one_row(LogicalType::Int64, Value::Int(0))
        );
    }

    #[test]
    fn integers_are_widened_across_storage_widths() {
        assert_eq!(
            one_row(LogicalType::Int8, Value::Int(-7)),
            one_row(LogicalType::Int64, Value::Int(-7))
        );
        assert_eq!(
            one_row(LogicalType::UInt32, Value::Int(7)),
            one_row(LogicalType::Int128, Value::Int(7))
        );
        assert_ne!(
            one_row(LogicalType::Int64, Value::Int(7)),
            one_row(LogicalType::Int64, Value::Int(8))
        );
    }

    #[test]
    fn text_and_binary_with_equal_bytes_differ() {
        assert_ne!(
            one_row(LogicalType::Json, Value::Text("ab".into())),
            one_row(
                LogicalType::Blob { max_bytes: None },
                Value::Bytes(b"ab".to_vec())
            )
        );
    }

    #[test]
    fn table_name_is_part_of_the_row() {
        let batch = all_types_batch(&Arc::new(all_types_schema()), 0, 1).unwrap();
        assert_ne!(
            RowDigest::of_row("a", &batch, 0),
            RowDigest::of_row("b", &batch, 0)
        );
        assert_eq!(RowDigest::of_row("a", &batch, 1), None);
    }

    #[test]
    fn adjacent_text_cells_cannot_be_confused() {
        let s = Arc::new(
            Schema::new(
                vec![
                    Field::new("a", LogicalType::Json, true),
                    Field::new("b", LogicalType::Json, true),
                ],
                &[],
            )
            .unwrap(),
        );
        let mut b = BatchBuilder::new(s);
        b.push_row(&[Value::Text("ab".into()), Value::Text("c".into())])
            .unwrap();
        b.push_row(&[Value::Text("a".into()), Value::Text("bc".into())])
            .unwrap();
        let batch = b.finish().unwrap();
        assert_ne!(
            RowDigest::of_row("t", &batch, 0),
            RowDigest::of_row("t", &batch, 1)
        );
    }

    #[test]
    fn rows_digested_in_groups_equal_rows_digested_alone() {
        // Every type with its NULLs, in groups of 16 with remainders, from any first row.
        let schema = Arc::new(all_types_schema());
        for rows in [1usize, 15, 16, 17, 40] {
            let batch = all_types_batch(&schema, 3, rows).unwrap();
            let alone: Vec<RowDigest> = (0..rows)
                .map(|r| RowDigest::of_row("t", &batch, r).unwrap())
                .collect();
            assert_eq!(
                RowDigest::of_rows("t", &batch, 0..rows),
                alone,
                "{rows} rows"
            );
            assert_eq!(
                RowDigest::of_rows("t", &batch, 1..rows + 5),
                alone[1..].to_vec()
            );
            let mut sum = TableDigest::new();
            alone.iter().for_each(|d| sum.add_row(d));
            assert_eq!(TableDigest::of_batch("t", &batch), sum, "{rows} rows");
            let mut many = TableDigest::new();
            many.add_rows(&alone);
            assert_eq!(many, sum, "{rows} rows added at once");
        }
    }

    #[test]
    fn digests_of_the_sample_are_fixed() {
        // Part of the format: journals and destinations digested by earlier builds must agree.
        let batch = all_types_batch(&Arc::new(all_types_schema()), 0, 100).unwrap();
        assert_eq!(
            TableDigest::of_batch("golden", &batch).hex(),
            "8adb60bc370f96fc337cb34385120a7220131f542b5642fac231db25981f9b79"
        );
        assert_eq!(
            RowDigest::of_row("golden", &batch, 7).unwrap().hex(),
            "ee62b3d04ef5ea7269e195607111745123ca0d8ee5f10850b337eff5f402df13"
        );
    }

    #[test]
    fn hex_is_sha256_of_the_state() {
        let d = TableDigest::new();
        // SHA-256 of 2048 zero bytes.
        assert_eq!(
            d.hex(),
            "e5a00aa9991ac8a5ee3109844d84a55583bd20572ad3ffcd42792f3c36b183ad"
        );
        let batch = all_types_batch(&Arc::new(all_types_schema()), 0, 10).unwrap();
        let d = TableDigest::of_batch("t", &batch);
        assert_ne!(d.hex(), TableDigest::new().hex());
        assert_eq!(d.rows(), 10);
        let back = TableDigest::from_state_bytes(&d.state_bytes(), d.rows()).unwrap();
        assert_eq!(back, d);
        let bytes = bincode::serde::encode_to_vec(&d, bincode::config::standard()).unwrap();
        let (again, _): (TableDigest, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(again, d);
        assert!(TableDigest::from_state_bytes(&[0; 10], 0).is_err());
    }

    fn digest_of(rows: &[u64]) -> TableDigest {
        let schema = Arc::new(all_types_schema());
        let mut d = TableDigest::new();
        for &id in rows {
            d.add_batch("t", &all_types_batch(&schema, id, 1).unwrap());
        }
        d
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn order_does_not_matter(ids in proptest::collection::vec(0u64..10_000, 1..30), seed in any::<u64>()) {
            let mut shuffled = ids.clone();
            // Deterministic shuffle from the seed.
            let n = shuffled.len();
            for i in 0..n {
                let j = (seed.wrapping_mul(i as u64 + 1).rotate_left(17) % n as u64) as usize;
                shuffled.swap(i, j);
            }
            prop_assert_eq!(digest_of(&ids), digest_of(&shuffled));
        }

        #[test]
        fn add_then_remove_is_identity(base in proptest::collection::vec(0u64..10_000, 0..20),
                                       extra in proptest::collection::vec(0u64..10_000, 1..20)) {
            let schema = Arc::new(all_types_schema());
            let mut d = digest_of(&base);
            let before = d.clone();
            for &id in &extra {
                d.add_batch("t", &all_types_batch(&schema, id, 1).unwrap());
            }
            prop_assert_ne!(&d, &before);
            for &id in extra.iter().rev() {
                d.remove_batch("t", &all_types_batch(&schema, id, 1).unwrap());
            }
            prop_assert_eq!(d, before);
        }

        #[test]
        fn partial_digests_combine(ids in proptest::collection::vec(0u64..10_000, 0..30), cut in 0usize..30) {
            let cut = cut.min(ids.len());
            let mut left = digest_of(&ids[..cut]);
            left.combine(&digest_of(&ids[cut..]));
            prop_assert_eq!(&left, &digest_of(&ids));
            left.subtract(&digest_of(&ids[cut..]));
            prop_assert_eq!(left, digest_of(&ids[..cut]));
        }

        #[test]
        fn decimals_are_normalised(unscaled in -10i128.pow(20)..10i128.pow(20), extra in 0u8..10) {
            let narrow = LogicalType::Decimal { precision: 38, scale: 4 };
            let wide = LogicalType::Decimal { precision: 38, scale: 4 + extra };
            let a = one_row(narrow, Value::Decimal { unscaled, scale: 4 });
            let b = one_row(wide, Value::Decimal { unscaled: unscaled * 10i128.pow(u32::from(extra)), scale: 4 + extra });
            prop_assert_eq!(a, b);
            let (u, s) = normalize_decimal(unscaled * 1000, 7);
            prop_assert!(s == 0 || u % 10 != 0);
        }

        #[test]
        fn different_values_give_different_rows(a in any::<i64>(), b in any::<i64>()) {
            prop_assume!(a != b);
            prop_assert_ne!(one_row(LogicalType::Int64, Value::Int(a)), one_row(LogicalType::Int64, Value::Int(b)));
        }
    }

    #[test]
    fn a_large_batch_split_across_threads_digests_like_row_by_row() {
        let batch = all_types_batch(&Arc::new(all_types_schema()), 0, PARALLEL_ROWS + 123).unwrap();
        let mut by_row = TableDigest::new();
        for row in 0..batch.num_rows() {
            by_row.add_row(&RowDigest::of_row("t", &batch, row).unwrap());
        }
        assert_eq!(TableDigest::of_batch("t", &batch), by_row);
        let mut d = by_row.clone();
        d.remove_batch("t", &batch);
        assert_eq!(d, TableDigest::new());
    }

    #[test]
    fn the_digester_adds_up_like_one_batch_at_a_time() {
        let schema = Arc::new(all_types_schema());
        let mut one_by_one = TableDigest::new();
        let mut digester = Digester::new("t");
        for part in 0..40 {
            let batch = all_types_batch(&schema, part * 50, 50).unwrap();
            one_by_one.add_batch("t", &batch);
            digester.push(batch);
        }
        let got = digester.finish().unwrap();
        assert_eq!(got, one_by_one);
        assert_eq!(got.rows(), 2000);
        assert_eq!(Digester::new("t").finish().unwrap(), TableDigest::new());
    }

    #[test]
    fn the_digester_starts_its_workers_only_past_parallel_rows() {
        let schema = Arc::new(all_types_schema());
        let mut expected = TableDigest::new();
        let mut digester = Digester::new("t");
        let mut pushed = 0;
        for part in 0..200 {
            let batch = all_types_batch(&schema, part * 50, 50).unwrap();
            expected.add_batch("t", &batch);
            digester.push(batch);
            pushed += 50;
            assert_eq!(
                digester.workers.is_empty(),
                pushed < PARALLEL_ROWS,
                "after {pushed} rows"
            );
        }
        let got = digester.finish().unwrap();
        assert_eq!(got, expected);
        assert_eq!(got.rows(), 10_000);
    }

    /// Rows `skip..` of a batch, seen the way Arrow slices arrays: values and offsets from
    /// `skip` on (offsets not starting at 0), validity from bit `skip`; or broken on purpose.
    struct Sliced {
        batch: Batch,
        skip: usize,
        /// Column 0's values given as another storage.
        wrong_storage: bool,
        /// Column 0's values one short.
        short_values: bool,
        /// A text column's offsets decreasing at row `skip + 1`.
        bad_offsets: Option<(usize, Vec<i32>)>,
        /// The last column's validity a byte short.
        short_validity: bool,
    }

    impl Sliced {
        fn new(batch: Batch, skip: usize) -> Sliced {
            Sliced {
                batch,
                skip,
                wrong_storage: false,
                short_values: false,
                bad_offsets: None,
                short_validity: false,
            }
        }
    }

    impl DigestRows for Sliced {
        fn schema(&self) -> &Schema {
            self.batch.schema()
        }

        fn num_rows(&self) -> usize {
            self.batch.num_rows() - self.skip
        }

        fn column(&self, i: usize) -> crate::rows::ColumnRef<'_> {
            let k = self.skip;
            let c = &self.batch.columns()[i];
            let mut values = match c.data().values() {
                Values::I64(v) => Values::I64(&v[k..]),
                Values::Bool(v) => Values::Bool(&v[k..]),
                Values::I8(v) => Values::I8(&v[k..]),
                Values::I16(v) => Values::I16(&v[k..]),
                Values::I32(v) => Values::I32(&v[k..]),
                Values::I128(v) => Values::I128(&v[k..]),
                Values::U8(v) => Values::U8(&v[k..]),
                Values::U16(v) => Values::U16(&v[k..]),
                Values::U32(v) => Values::U32(&v[k..]),
                Values::U64(v) => Values::U64(&v[k..]),
                Values::F32(v) => Values::F32(&v[k..]),
                Values::F64(v) => Values::F64(&v[k..]),
                Values::Utf8 { offsets, data } => Values::Utf8 {
                    offsets: &offsets[k..],
                    data,
                },
                Values::Binary { offsets, data } => Values::Binary {
                    offsets: &offsets[k..],
                    data,
                },
                Values::Uuid(v) => Values::Uuid(&v[k..]),
                Values::OffsetTimestamp(v) => Values::OffsetTimestamp(&v[k..]),
                Values::Interval(v) => Values::Interval(&v[k..]),
            };
            if i == 0
                && let Values::I64(v) = values
            {
                if self.wrong_storage {
                    values = Values::U64(&[]);
                } else if self.short_values {
                    values = Values::I64(&v[..v.len() - 1]);
                }
            }
            if let Some((col, offsets)) = &self.bad_offsets
                && *col == i
                && let Values::Utf8 { data, .. } = values
            {
                values = Values::Utf8 { offsets, data };
            }
            let mut bits = c.validity().as_bytes();
            if self.short_validity && i + 1 == self.batch.num_columns() {
                bits = &bits[..bits.len() - 1];
            }
            crate::rows::ColumnRef {
                values,
                validity: Some((bits, k)),
            }
        }
    }

    #[test]
    fn rows_read_in_place_digest_like_the_same_rows_in_a_batch() {
        let schema = Arc::new(all_types_schema());
        for (skip, rows) in [(0, 1), (3, 40), (5, 16), (13, 333)] {
            let whole = all_types_batch(&schema, 0, skip + rows).unwrap();
            let tail = all_types_batch(&schema, skip as u64, rows).unwrap();
            let want = TableDigest::of_batch("t", &tail);
            let mut digester = Digester::new("t");
            digester.push_rows(Sliced::new(whole, skip));
            assert_eq!(
                digester.finish().unwrap(),
                want,
                "{skip} skipped, {rows} rows"
            );
        }
        // No validity bitmap means no NULLs.
        struct NoNulls(Batch);
        impl DigestRows for NoNulls {
            fn schema(&self) -> &Schema {
                self.0.schema()
            }
            fn num_rows(&self) -> usize {
                self.0.num_rows()
            }
            fn column(&self, i: usize) -> crate::rows::ColumnRef<'_> {
                crate::rows::ColumnRef {
                    values: self.0.columns()[i].data().values(),
                    validity: None,
                }
            }
        }
        let schema = Arc::new(
            Schema::new(
                vec![
                    Field::new("id", LogicalType::Int64, false),
                    Field::new("name", LogicalType::Text { max_bytes: None }, false),
                ],
                &["id"],
            )
            .unwrap(),
        );
        let mut b = BatchBuilder::with_capacity(Arc::clone(&schema), 3);
        for (id, name) in [(1i64, "uno"), (2, ""), (3, "tres")] {
            b.push(0, id).unwrap();
            b.push(1, name).unwrap();
        }
        let batch = b.finish().unwrap();
        let want = TableDigest::of_batch("t", &batch);
        let mut digester = Digester::new("t");
        digester.push_rows(NoNulls(batch));
        assert_eq!(digester.finish().unwrap(), want);
    }

    #[test]
    fn rows_read_in_place_that_do_not_hold_their_schema_fail_by_column() {
        let schema = Arc::new(all_types_schema());
        let text_col = schema
            .fields()
            .iter()
            .position(|f| f.logical_type.storage() == crate::types::Storage::Utf8)
            .unwrap();
        let text_name = schema.fields()[text_col].name.clone();
        let last_name = schema.fields().last().unwrap().name.clone();
        let id_name = schema.fields()[0].name.clone();
        let broken: Vec<(Sliced, &str, String)> = vec![
            {
                let mut s = Sliced::new(all_types_batch(&schema, 0, 40).unwrap(), 2);
                s.wrong_storage = true;
                (s, "stored as I64", id_name.clone())
            },
            {
                let mut s = Sliced::new(all_types_batch(&schema, 0, 40).unwrap(), 2);
                s.short_values = true;
                (s, "37 values for 38 rows", id_name.clone())
            },
            {
                let mut s = Sliced::new(all_types_batch(&schema, 0, 40).unwrap(), 0);
                let mut offsets = vec![0i32; 41];
                offsets[1] = 5;
                s.bad_offsets = Some((text_col, offsets));
                (s, "offsets decrease", text_name.clone())
            },
            {
                let mut s = Sliced::new(all_types_batch(&schema, 0, 40).unwrap(), 0);
                s.bad_offsets = Some((text_col, vec![0i32, 1 << 30]));
                (s, "values for 40 rows", text_name.clone())
            },
            {
                let mut s = Sliced::new(all_types_batch(&schema, 0, 40).unwrap(), 0);
                s.short_validity = true;
                (s, "validity bits", last_name.clone())
            },
        ];
        for (rows, what, column) in broken {
            let mut digester = Digester::new("t");
            digester.push(all_types_batch(&schema, 100, 10).unwrap());
            digester.push_rows(rows);
            let err = digester.finish().unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
            assert!(err.contains(&format!("`{column}`")), "{err}");
        }
    }

    #[test]
    fn money_and_decimal_of_equal_value_agree() {
        assert_eq!(
            one_row(
                LogicalType::Money,
                Value::Decimal {
                    unscaled: 12_500,
                    scale: 4
                }
            ),
            one_row(
                LogicalType::Decimal {
                    precision: 10,
                    scale: 2
                },
                Value::Decimal {
                    unscaled: 125,
                    scale: 2
                }
            )
        );
    }
}
