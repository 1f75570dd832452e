//! Reading the cache back: tables found by their schema keys, rows found by SCAN and read in
//! chunks (HGETALL or GET, pipelined), decoded with a schema into batches; table digests over a
//! key range computed from those batches with the SDK's canonical encoding.
//!
//! Redis keeps no order: a plain read returns every row once, in SCAN order (how `caudal
//! verify` reads a table that differs: the connector declares `Capabilities::UNORDERED`); a
//! read with a cursor column reads every row, keeps those within the cursor bounds and returns
//! them sorted by the cursor, so it holds them in memory. A digest over one whole key
//! (`lower == upper`, both included) reads that one key instead of scanning. SCAN may return a key twice; the scanner remembers the keys
//! it has returned. Rows changed while a scan runs may or may not be seen (SCAN's own
//! guarantee). Only keys of the table's type are rows (hashes, or strings for JSON): a key of
//! another type under the table's prefix is not read.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use caudal_connector::{
    Batch, BatchBuilder, BatchReader, Chunk, ChunkLimits, DigestRequest, Digester, Error, KeyRange,
    ReadRequest, ReadTarget, Result, RowDigest, Schema, TableDigest, TableInfo, Value,
};
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

use crate::config::{Format, KeyTemplate};
use crate::keys::{self, glob_escape, is_row_suffix};
use crate::types::{decode_json, decode_text};
use crate::{Redis, redis_error};

/// Keys asked for per SCAN call.
const SCAN_COUNT: usize = 1000;
/// Rows fetched per pipelined round trip.
const FETCH_ROWS: usize = 1000;

/// The document stored at `{prefix}:{table}:schema`: how the table's rows are stored and typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TableDoc {
    /// Hash or JSON.
    pub format: Format,
    /// The key template the rows were written with.
    pub key: String,
    /// Columns, logical types and primary key.
    pub schema: Schema,
}

impl TableDoc {
    pub fn template(&self) -> Result<KeyTemplate> {
        KeyTemplate::parse(&self.key)
    }
}

/// The schema document of `table`, `None` when the table does not exist.
pub(crate) fn load_doc(redis: &mut Redis, table: &str) -> Result<Option<TableDoc>> {
    let key = keys::schema_key(&redis.config.prefix, table);
    let text: Option<Vec<u8>> = redis
        .runtime
        .block_on(redis::cmd("GET").arg(&key).query_async(&mut redis.conn))
        .map_err(|e| redis_error(format!("reading `{key}`"), e))?;
    text.map(|t| {
        serde_json::from_slice(&t)
            .map_err(|e| Error::Decode(format!("the schema document `{key}`: {e}")))
    })
    .transpose()
}

pub(crate) fn discover(redis: &mut Redis) -> Result<Vec<TableInfo>> {
    let prefix = redis.config.prefix.clone();
    let pattern = format!("{}:*:schema", glob_escape(&prefix));
    let mut found = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis
            .runtime
            .block_on(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut redis.conn),
            )
            .map_err(|e| redis_error("scanning for schema keys", e))?;
        for key in batch {
            // The pattern guarantees `{prefix}:` in front and `:schema` at the end.
            let start = (prefix.len() + 1).min(key.len());
            let end = key.len().saturating_sub(":schema".len()).max(start);
            let Ok(table) = std::str::from_utf8(&key[start..end]) else {
                continue;
            };
            if keys::check_table_name(table).is_ok() && !found.iter().any(|t| t == table) {
                found.push(table.to_owned());
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    found.sort();
    let mut tables = Vec::with_capacity(found.len());
    for name in found {
        let Some(doc) = load_doc(redis, &name)? else {
            continue;
        };
        let rows: u64 = redis
            .runtime
            .block_on(
                redis::cmd("HLEN")
                    .arg(keys::row_digests_key(&prefix, &name))
                    .query_async(&mut redis.conn),
            )
            .map_err(|e| redis_error(format!("counting the rows of `{name}`"), e))?;
        tables.push(TableInfo {
            name,
            schema: doc.schema,
            estimated_rows: Some(rows),
        });
    }
    Ok(tables)
}

/// Finds a table's rows by SCAN and decodes them with a schema.
pub(crate) struct RowScanner {
    runtime: Arc<tokio::runtime::Runtime>,
    conn: MultiplexedConnection,
    table: String,
    row_prefix: String,
    pattern: String,
    format: Format,
    schema: Arc<Schema>,
    columns: HashMap<Vec<u8>, usize>,
    /// Next SCAN cursor; `None` once the scan is complete.
    cursor: Option<u64>,
    seen: HashSet<Vec<u8>>,
    pending: Vec<Vec<u8>>,
}

impl RowScanner {
    /// A scanner over the rows of `table` (stored as `doc` says), decoded with `schema`.
    pub fn new(redis: &Redis, table: &str, doc: &TableDoc, schema: Arc<Schema>) -> Result<Self> {
        let row_prefix = doc.template()?.row_prefix(&redis.config.prefix, table);
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.as_bytes().to_vec(), i))
            .collect();
        Ok(RowScanner {
            runtime: Arc::clone(&redis.runtime),
            conn: redis.conn.clone(),
            table: table.to_owned(),
            pattern: format!("{}*", glob_escape(&row_prefix)),
            row_prefix,
            format: doc.format,
            schema,
            columns,
            cursor: Some(0),
            seen: HashSet::new(),
            pending: Vec::new(),
        })
    }

    /// Scans until `want` keys are pending or the scan is complete.
    fn fill(&mut self, want: usize) -> Result<()> {
        while self.pending.len() < want {
            let Some(cursor) = self.cursor else {
                return Ok(());
            };
            let (next, found): (u64, Vec<Vec<u8>>) = self
                .runtime
                .block_on(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&self.pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .arg("TYPE")
                        .arg(match self.format {
                            Format::Hash => "hash",
                            Format::Json => "string",
                        })
                        .query_async(&mut self.conn),
                )
                .map_err(|e| redis_error(format!("scanning the keys of `{}`", self.table), e))?;
            for key in found {
                let suffix = &key[self.row_prefix.len().min(key.len())..];
                if is_row_suffix(suffix) && !self.seen.contains(&key) {
                    self.seen.insert(key.clone());
                    self.pending.push(key);
                }
            }
            self.cursor = (next != 0).then_some(next);
        }
        Ok(())
    }

    /// The next rows, at most as many as `limits` allow; `None` when every row was returned.
    pub fn next_batch(&mut self, limits: &ChunkLimits) -> Result<Option<Batch>> {
        self.next_rows(limits, None)
    }

    /// [`RowScanner::next_batch`], also appending each returned row's key to `keys`.
    pub fn next_batch_with_keys(
        &mut self,
        limits: &ChunkLimits,
        keys: &mut Vec<Vec<u8>>,
    ) -> Result<Option<Batch>> {
        self.next_rows(limits, Some(keys))
    }

    fn next_rows(
        &mut self,
        limits: &ChunkLimits,
        mut keys: Option<&mut Vec<Vec<u8>>>,
    ) -> Result<Option<Batch>> {
        let mut b = BatchBuilder::with_capacity(Arc::clone(&self.schema), FETCH_ROWS);
        loop {
            let want = FETCH_ROWS.min(limits.max_rows.saturating_sub(b.num_rows()).max(1));
            self.fill(want)?;
            if self.pending.is_empty() {
                break;
            }
            let take = want.min(self.pending.len());
            let group: Vec<Vec<u8>> = self.pending.drain(..take).collect();
            self.fetch(&group, &mut b, keys.as_deref_mut())?;
            if b.is_full(limits) {
                break;
            }
        }
        if b.num_rows() == 0 {
            return Ok(None);
        }
        b.finish().map(Some)
    }

    /// Reads the rows of `keys` in one pipelined round trip and appends them to `b` (keys
    /// deleted since the scan found them are skipped), and the keys of the rows to `found`.
    fn fetch(
        &mut self,
        keys: &[Vec<u8>],
        b: &mut BatchBuilder,
        mut found: Option<&mut Vec<Vec<u8>>>,
    ) -> Result<()> {
        let mut pipe = redis::pipe();
        let command = match self.format {
            Format::Hash => "HGETALL",
            Format::Json => "GET",
        };
        for key in keys {
            pipe.cmd(command).arg(key);
        }
        let ctx = || format!("reading the rows of `{}`", self.table);
        let mut record = |key: &Vec<u8>| {
            if let Some(f) = found.as_deref_mut() {
                f.push(key.clone());
            }
        };
        match self.format {
            Format::Hash => {
                let rows: Vec<Vec<(Vec<u8>, Vec<u8>)>> = self
                    .runtime
                    .block_on(pipe.query_async(&mut self.conn))
                    .map_err(|e| redis_error(ctx(), e))?;
                for (key, fields) in keys.iter().zip(rows) {
                    if !fields.is_empty() {
                        self.push_hash_row(b, &fields)
                            .map_err(|e| e.context(row_context(&self.table, key)))?;
                        record(key);
                    }
                }
            }
            Format::Json => {
                let rows: Vec<Option<Vec<u8>>> = self
                    .runtime
                    .block_on(pipe.query_async(&mut self.conn))
                    .map_err(|e| redis_error(ctx(), e))?;
                for (key, text) in keys.iter().zip(rows) {
                    if let Some(text) = text {
                        self.push_json_row(b, &text)
                            .map_err(|e| e.context(row_context(&self.table, key)))?;
                        record(key);
                    }
                }
            }
        }
        Ok(())
    }

    fn push_hash_row(&self, b: &mut BatchBuilder, fields: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut slots: Vec<Option<&[u8]>> = vec![None; self.schema.len()];
        for (name, value) in fields {
            if let Some(&col) = self.columns.get(name) {
                slots[col] = Some(value);
            }
        }
        for (col, (slot, f)) in slots.iter().zip(self.schema.fields()).enumerate() {
            match slot {
                Some(text) => decode_text(b, col, &f.logical_type, text)
                    .map_err(|e| e.context(format!("column `{}`", f.name)))?,
                None => b.push_null(col)?,
            }
        }
        Ok(())
    }

    fn push_json_row(&self, b: &mut BatchBuilder, text: &[u8]) -> Result<()> {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(text)
            .map_err(|e| Error::Decode(format!("not a JSON object: {e}")))?;
        for (col, f) in self.schema.fields().iter().enumerate() {
            match object.get(&f.name) {
                Some(v) => decode_json(b, col, &f.logical_type, v)
                    .map_err(|e| e.context(format!("column `{}`", f.name)))?,
                None => b.push_null(col)?,
            }
        }
        Ok(())
    }
}

fn row_context(table: &str, key: &[u8]) -> String {
    format!("table `{table}`, key `{}`", String::from_utf8_lossy(key))
}

/// A running read of one table: in SCAN order, or (with a cursor column) every row in the
/// cursor range, sorted by the cursor.
pub struct RedisReader {
    schema: Arc<Schema>,
    limits: ChunkLimits,
    rows: Rows,
}

enum Rows {
    Scan(Box<RowScanner>),
    /// Rows sorted by the cursor: (cursor value, batch, row), consumed from the front.
    Sorted {
        cursor: usize,
        batches: Vec<Batch>,
        order: std::vec::IntoIter<(Value, usize, usize)>,
        next: Option<(Value, usize, usize)>,
    },
}

impl BatchReader for RedisReader {
    fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        match &mut self.rows {
            Rows::Scan(scanner) => Ok(scanner.next_batch(&self.limits)?.map(|batch| Chunk {
                batch,
                cursor: None,
            })),
            Rows::Sorted {
                cursor,
                batches,
                order,
                next,
            } => {
                let mut b = BatchBuilder::with_capacity(Arc::clone(&self.schema), 1024);
                let mut last: Option<Value> = None;
                while let Some((value, batch, row)) = next.take().or_else(|| order.next()) {
                    // End a chunk only between different cursor values.
                    if b.is_full(&self.limits) && last.as_ref() != Some(&value) {
                        *next = Some((value, batch, row));
                        break;
                    }
                    for col in 0..self.schema.len() {
                        let cell = batches[batch].value(row, col).unwrap_or(Value::Null);
                        b.push_value(col, &cell)?;
                    }
                    last = Some(value);
                }
                if b.num_rows() == 0 {
                    return Ok(None);
                }
                let batch = b.finish()?;
                let cursor = batch.value(batch.num_rows() - 1, *cursor);
                Ok(Some(Chunk { batch, cursor }))
            }
        }
    }
}

/// Whether a cursor value passes a lower (`lower`) or upper bound.
fn bound_allows(value: &Value, bound: &Bound<Value>, lower: bool) -> Result<bool> {
    let (b, inclusive) = match bound {
        Bound::Unbounded => return Ok(true),
        Bound::Included(b) => (b, true),
        Bound::Excluded(b) => (b, false),
    };
    let o = compare_values(value, b).ok_or_else(|| {
        Error::Schema(format!(
            "cursor value {value:?} cannot be compared with {b:?}"
        ))
    })?;
    Ok(match (o, lower) {
        (Ordering::Equal, _) => inclusive,
        (Ordering::Greater, true) | (Ordering::Less, false) => true,
        _ => false,
    })
}

pub(crate) fn read(redis: &mut Redis, request: &ReadRequest) -> Result<RedisReader> {
    let table = match &request.target {
        ReadTarget::Table(t) => t,
        ReadTarget::Query(_) => {
            return Err(Error::Unsupported(
                "Redis has no query language: read a table (set `table`, not `query`)".into(),
            ));
        }
    };
    keys::check_table_name(table)?;
    let doc = load_doc(redis, table)?.ok_or_else(|| {
        Error::NotFound(format!(
            "table `{table}`: no schema key `{}`",
            keys::schema_key(&redis.config.prefix, table)
        ))
    })?;
    let schema = Arc::new(doc.schema.clone());
    let mut scanner = RowScanner::new(redis, table, &doc, Arc::clone(&schema))?;
    let Some(name) = &request.cursor_column else {
        return Ok(RedisReader {
            schema,
            limits: request.limits,
            rows: Rows::Scan(Box::new(scanner)),
        });
    };
    // Redis keeps no order: read every row, keep those in the cursor range, sort them.
    let cursor = schema
        .index_of(name)
        .ok_or_else(|| Error::NotFound(format!("table `{table}` has no cursor column `{name}`")))?;
    let mut batches = Vec::new();
    let mut order = Vec::new();
    while let Some(batch) = scanner.next_batch(&ChunkLimits::default())? {
        for row in 0..batch.num_rows() {
            let value = batch.value(row, cursor).unwrap_or(Value::Null);
            if bound_allows(&value, &request.from, true)?
                && bound_allows(&value, &request.to, false)?
            {
                order.push((value, batches.len(), row));
            }
        }
        batches.push(batch);
    }
    order.sort_by(|a, b| compare_values(&a.0, &b.0).unwrap_or(Ordering::Equal));
    Ok(RedisReader {
        schema,
        limits: request.limits,
        rows: Rows::Sorted {
            cursor,
            batches,
            order: order.into_iter(),
            next: None,
        },
    })
}

/// The digest of the rows of `request.table` in `request.range`, read back in
/// `request.schema`.
pub(crate) fn table_digest(redis: &mut Redis, request: &DigestRequest) -> Result<TableDigest> {
    let table = &request.table;
    keys::check_table_name(table)?;
    let doc = load_doc(redis, table)?
        .ok_or_else(|| Error::NotFound(format!("table `{table}` does not exist")))?;
    let schema = Arc::new(request.schema.clone());
    let mut scanner = RowScanner::new(redis, table, &doc, Arc::clone(&schema))?;
    let mut digest = TableDigest::new();
    if let Some(pk) = point(&request.range, &doc.schema) {
        // One whole key: read that one row instead of scanning the table.
        let key = [scanner.row_prefix.as_bytes(), &pk].concat();
        let mut b = BatchBuilder::new(Arc::clone(&schema));
        scanner.fetch(&[key], &mut b, None)?;
        digest.add_batch(table, &b.finish()?);
        return Ok(digest);
    }
    let limits = ChunkLimits::default();
    if request.range.is_all() {
        // Worker threads digest each batch while the scan reads the next one.
        let mut digester = Digester::new(table);
        while let Some(batch) = scanner.next_batch(&limits)? {
            digester.push(batch);
        }
        return digester.finish();
    }
    while let Some(batch) = scanner.next_batch(&limits)? {
        for row in 0..batch.num_rows() {
            let key: Vec<Value> = schema
                .primary_key()
                .iter()
                .map(|&k| batch.value(row, k).unwrap_or(Value::Null))
                .collect();
            if in_range(&key, &request.range)?
                && let Some(d) = RowDigest::of_row(table, &batch, row)
            {
                digest.add_row(&d);
            }
        }
    }
    Ok(digest)
}

/// The encoded `{pk}` of a range that holds one whole key (lower and upper bound the same,
/// both included), written in the key column types of the table's stored schema.
fn point(range: &KeyRange, stored: &Schema) -> Option<Vec<u8>> {
    let (Bound::Included(lower), Bound::Included(upper)) = (&range.lower, &range.upper) else {
        return None;
    };
    let key = stored.primary_key();
    if lower != upper || lower.len() != key.len() {
        return None;
    }
    let fields = key.iter().map(|&k| stored.fields()[k].clone()).collect();
    let key_schema = Schema::from_parts(fields, (0..key.len()).collect()).ok()?;
    let mut b = BatchBuilder::new(Arc::new(key_schema));
    for (col, v) in lower.iter().enumerate() {
        b.push_value(col, v).ok()?;
    }
    keys::encoded_keys(&b.finish().ok()?).ok()?.pop()
}

/// Whether a key tuple lies in `range` (tuples compare column by column; NULL first; text and
/// bytes by their bytes).
pub(crate) fn in_range(key: &[Value], range: &KeyRange) -> Result<bool> {
    let lower = match &range.lower {
        Bound::Unbounded => true,
        Bound::Included(b) => compare_tuples(key, b)? != Ordering::Less,
        Bound::Excluded(b) => compare_tuples(key, b)? == Ordering::Greater,
    };
    let upper = match &range.upper {
        Bound::Unbounded => true,
        Bound::Included(b) => compare_tuples(key, b)? != Ordering::Greater,
        Bound::Excluded(b) => compare_tuples(key, b)? == Ordering::Less,
    };
    Ok(lower && upper)
}

fn compare_tuples(a: &[Value], b: &[Value]) -> Result<Ordering> {
    for (x, y) in a.iter().zip(b) {
        let o = compare_values(x, y).ok_or_else(|| {
            Error::Schema(format!(
                "key value {x:?} cannot be compared with range bound {y:?}"
            ))
        })?;
        if o != Ordering::Equal {
            return Ok(o);
        }
    }
    Ok(a.len().cmp(&b.len()))
}

fn as_decimal(v: &Value) -> Option<(i128, u8)> {
    match v {
        Value::Int(i) => Some((i128::from(*i), 0)),
        Value::UInt(u) => Some((i128::from(*u), 0)),
        Value::Int128(i) => Some((*i, 0)),
        Value::Decimal { unscaled, scale } => Some((*unscaled, *scale)),
        _ => None,
    }
}

fn compare_decimals((a, sa): (i128, u8), (b, sb): (i128, u8)) -> Ordering {
    let scale = |v: i128, by: u8| {
        10i128
            .checked_pow(u32::from(by))
            .and_then(|m| v.checked_mul(m))
    };
    let (ta, tb) = (sa.max(sb) - sa, sa.max(sb) - sb);
    match (scale(a, ta), scale(b, tb)) {
        (Some(x), Some(y)) => x.cmp(&y),
        // One side is scaled by 10^0 and never overflows; the side that overflowed when
        // scaled up is the larger in magnitude, so its sign decides.
        (None, _) => a.cmp(&0),
        (_, None) => 0.cmp(&b),
    }
}

fn compare_values(a: &Value, b: &Value) -> Option<Ordering> {
    use Value as V;
    Some(match (a, b) {
        (V::Null, V::Null) => Ordering::Equal,
        (V::Null, _) => Ordering::Less,
        (_, V::Null) => Ordering::Greater,
        (V::Bool(x), V::Bool(y)) => x.cmp(y),
        (V::Float(x), V::Float(y)) => x.total_cmp(y),
        (V::Date(x), V::Date(y)) => x.cmp(y),
        (V::Time(x), V::Time(y))
        | (V::DateTime(x), V::DateTime(y))
        | (V::Timestamp(x), V::Timestamp(y)) => x.cmp(y),
        (V::DateTimeOffset(x), V::DateTimeOffset(y)) => x.utc_micros.cmp(&y.utc_micros),
        (V::Text(x), V::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (V::Bytes(x), V::Bytes(y)) => x.cmp(y),
        (V::Uuid(x), V::Uuid(y)) => x.cmp(y),
        (V::Interval(x), V::Interval(y)) => {
            (x.months, x.days, x.micros).cmp(&(y.months, y.days, y.micros))
        }
        _ => compare_decimals(as_decimal(a)?, as_decimal(b)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(lower: Bound<Vec<Value>>, upper: Bound<Vec<Value>>) -> KeyRange {
        KeyRange { lower, upper }
    }

    #[test]
    fn key_ranges_compare_tuples_in_key_order() {
        let r = range(
            Bound::Included(vec![Value::Int(2), Value::Text("b".into())]),
            Bound::Excluded(vec![Value::Int(5), Value::Text("a".into())]),
        );
        let k = |i: i64, s: &str| vec![Value::Int(i), Value::Text(s.into())];
        assert!(!in_range(&k(2, "a"), &r).unwrap());
        assert!(in_range(&k(2, "b"), &r).unwrap());
        assert!(in_range(&k(4, "zzz"), &r).unwrap());
        assert!(!in_range(&k(5, "a"), &r).unwrap());
        assert!(in_range(&k(5, "a"), &KeyRange::all()).unwrap());
        let bad = range(Bound::Included(vec![Value::Bool(true)]), Bound::Unbounded);
        assert!(in_range(&[Value::Text("x".into())], &bad).is_err());
    }

    #[test]
    fn decimals_and_integers_compare_by_value() {
        let d = |u: i128, s: u8| Value::Decimal {
            unscaled: u,
            scale: s,
        };
        assert_eq!(compare_values(&d(150, 2), &d(15, 1)), Some(Ordering::Equal));
        assert_eq!(
            compare_values(&d(151, 2), &Value::Int(1)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_values(&Value::UInt(u64::MAX), &Value::Int(-1)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_values(&d(i128::MAX, 0), &d(1, 30)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_values(&d(i128::MIN, 0), &d(1, 30)),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare_values(&d(1, 30), &d(i128::MAX, 0)),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare_values(&d(1, 30), &d(i128::MIN, 0)),
            Some(Ordering::Greater)
        );
    }
}
