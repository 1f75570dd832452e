//! Reading DuckDB: the catalog (tables and views with columns and primary keys) and chunked
//! reads of a table or a query from a cursor.
//!
//! A read runs its query on a worker thread that owns its own connection to the database and
//! streams DuckDB's Arrow record batches (`stream_arrow`, so memory stays bounded) through a
//! channel of two; [`DuckDbReader`] cuts them into chunks at the request's row and byte
//! limits. Owning a connection is what lets the reader outlive the borrow of the
//! [`crate::DuckDb`] that started it, as the SDK requires.
//!
//! Chunk rule (the SDK's): with a cursor column, rows come in cursor order (NULLs first, so
//! that a resumed read, which starts past a non-NULL cursor, never meets them again) and a
//! chunk ends only between two different cursor values; a chunk may therefore exceed its
//! limits by the rows that tie with its last cursor value. A chunk's cursor is the greatest
//! non-NULL cursor value read so far.

use std::collections::HashMap;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use caudal_connector::{
    BatchBuilder, BatchReader, Chunk, ChunkLimits, Error, Field, ReadRequest, ReadTarget, Result,
    Schema, TableInfo, Value,
};
use duckdb::arrow::array::RecordBatch;
use duckdb::{Connection, InterruptHandle};

use crate::arrow::{push_rows, value_at};
use crate::database::{Database, db_error};
use crate::sql::{TableName, bind_placeholders, cursor_condition, ident, string_literal};
use crate::types::{logical_type_of, read_expression};

/// Tables whose names start with this are the connector's own (offsets, staging) and are not
/// offered by `discover`.
pub const INTERNAL_PREFIX: &str = "_caudal_";

/// The user tables and views of the database, in name order, or only `only` when given.
pub fn tables(conn: &Connection, only: Option<&TableName>) -> Result<Vec<TableInfo>> {
    let filter = table_filter(only, "name");
    let sql = format!(
        "SELECT schema_name, name, estimated_size FROM (
             SELECT schema_name, table_name AS name, estimated_size FROM duckdb_tables()
             WHERE database_name = current_database() AND NOT internal AND NOT temporary
             UNION ALL
             SELECT schema_name, view_name, NULL FROM duckdb_views()
             WHERE database_name = current_database() AND NOT internal AND NOT temporary
         ) WHERE true{filter} ORDER BY schema_name, name"
    );
    let ctx = "listing tables";
    let mut stmt = conn.prepare(&sql).map_err(|e| db_error(ctx, e))?;
    let mut names = Vec::new();
    let mut rows = stmt.query([]).map_err(|e| db_error(ctx, e))?;
    while let Some(row) = rows.next().map_err(|e| db_error(ctx, e))? {
        let schema: String = row.get(0).map_err(|e| db_error(ctx, e))?;
        let table: String = row.get(1).map_err(|e| db_error(ctx, e))?;
        let estimate: Option<i64> = row.get(2).map_err(|e| db_error(ctx, e))?;
        if table.starts_with(INTERNAL_PREFIX) {
            continue;
        }
        names.push((TableName { schema, table }, estimate));
    }
    let mut columns = columns(conn, &table_filter(only, "table_name"))?;
    let keys = primary_keys(conn, &table_filter(only, "table_name"))?;
    let mut out = Vec::with_capacity(names.len());
    for (name, estimate) in names {
        let key = (name.schema.clone(), name.table.clone());
        let fields = columns.remove(&key).unwrap_or_default();
        let pk = keys.get(&key).cloned().unwrap_or_default();
        let pk: Vec<&str> = pk.iter().map(String::as_str).collect();
        let schema = Schema::new(fields, &pk).map_err(|e| e.context(format!("table `{name}`")))?;
        out.push(TableInfo {
            name: name.display(),
            schema,
            estimated_rows: estimate.and_then(|n| u64::try_from(n).ok()),
        });
    }
    Ok(out)
}

type ByTable<T> = HashMap<(String, String), T>;

/// ` AND schema_name = '..' AND <table_column> = '..'` for one table, or nothing.
fn table_filter(only: Option<&TableName>, table_column: &str) -> String {
    only.map(|t| {
        format!(
            " AND schema_name = {} AND {table_column} = {}",
            string_literal(&t.schema),
            string_literal(&t.table)
        )
    })
    .unwrap_or_default()
}

fn columns(conn: &Connection, filter: &str) -> Result<ByTable<Vec<Field>>> {
    let sql = format!(
        "SELECT schema_name, table_name, column_name, data_type, is_nullable FROM duckdb_columns()
         WHERE database_name = current_database(){filter}
         ORDER BY schema_name, table_name, column_index"
    );
    let ctx = "listing columns";
    let mut stmt = conn.prepare(&sql).map_err(|e| db_error(ctx, e))?;
    let mut rows = stmt.query([]).map_err(|e| db_error(ctx, e))?;
    let mut out: ByTable<Vec<Field>> = HashMap::new();
    while let Some(row) = rows.next().map_err(|e| db_error(ctx, e))? {
        let schema: String = row.get(0).map_err(|e| db_error(ctx, e))?;
        let table: String = row.get(1).map_err(|e| db_error(ctx, e))?;
        let column: String = row.get(2).map_err(|e| db_error(ctx, e))?;
        let data_type: String = row.get(3).map_err(|e| db_error(ctx, e))?;
        let nullable: bool = row.get(4).map_err(|e| db_error(ctx, e))?;
        out.entry((schema, table)).or_default().push(Field::new(
            column,
            logical_type_of(&data_type),
            nullable,
        ));
    }
    Ok(out)
}

fn primary_keys(conn: &Connection, filter: &str) -> Result<ByTable<Vec<String>>> {
    // One row per key column, in key order.
    let sql = format!(
        "SELECT schema_name, table_name, unnest(constraint_column_names) FROM duckdb_constraints()
         WHERE database_name = current_database() AND constraint_type = 'PRIMARY KEY'{filter}"
    );
    let ctx = "listing primary keys";
    let mut stmt = conn.prepare(&sql).map_err(|e| db_error(ctx, e))?;
    let mut rows = stmt.query([]).map_err(|e| db_error(ctx, e))?;
    let mut out: ByTable<Vec<String>> = HashMap::new();
    while let Some(row) = rows.next().map_err(|e| db_error(ctx, e))? {
        let schema: String = row.get(0).map_err(|e| db_error(ctx, e))?;
        let table: String = row.get(1).map_err(|e| db_error(ctx, e))?;
        let column: String = row.get(2).map_err(|e| db_error(ctx, e))?;
        out.entry((schema, table)).or_default().push(column);
    }
    Ok(out)
}

/// The result schema of a query (no primary key), from `DESCRIBE`.
fn describe(conn: &Connection, query: &str) -> Result<Schema> {
    let ctx = |e| db_error("describing the stream's query", e);
    let mut stmt = conn
        .prepare(&format!("DESCRIBE SELECT * FROM ({query}) AS q"))
        .map_err(ctx)?;
    let mut rows = stmt.query([]).map_err(ctx)?;
    let mut fields = Vec::new();
    while let Some(row) = rows.next().map_err(ctx)? {
        let name: String = row.get(0).map_err(ctx)?;
        let data_type: String = row.get(1).map_err(ctx)?;
        let nullable: String = row.get(2).map_err(ctx)?;
        fields.push(Field::new(
            name,
            logical_type_of(&data_type),
            nullable != "NO",
        ));
    }
    Schema::new(fields, &[]).map_err(|e| e.context("the stream's query"))
}

/// Starts a read (see the module documentation).
pub fn read(db: &Arc<Database>, conn: &Connection, request: &ReadRequest) -> Result<DuckDbReader> {
    let (from_sql, schema, what) = match &request.target {
        ReadTarget::Table(name) => {
            let table = TableName::parse(name)?;
            let info = tables(conn, Some(&table))?
                .pop()
                .ok_or_else(|| Error::NotFound(format!("table `{table}` in {}", db.location())))?;
            (table.sql(), info.schema, format!("table `{table}`"))
        }
        ReadTarget::Query(query) => {
            let query = query.trim().trim_end_matches(';');
            let query = bind_placeholders(query, &request.from, &request.to)?;
            let schema = describe(conn, &query)?;
            (
                format!("({query})"),
                schema,
                "the stream's query".to_owned(),
            )
        }
    };
    let cursor = match &request.cursor_column {
        Some(c) => Some(schema.index_of(c).ok_or_else(|| {
            Error::NotFound(format!("cursor column `{c}` is not a column of {what}"))
        })?),
        None => None,
    };
    let bounded = !matches!(
        (&request.from, &request.to),
        (Bound::Unbounded, Bound::Unbounded)
    );
    if cursor.is_none() && bounded && matches!(request.target, ReadTarget::Table(_)) {
        return Err(Error::Schema(format!(
            "the read of {what} has cursor bounds but no cursor column"
        )));
    }
    let select = schema
        .fields()
        .iter()
        .map(|f| read_expression(&f.name, &f.logical_type))
        .collect::<Result<Vec<_>>>()?
        .join(", ");
    let mut sql = format!("SELECT {select} FROM {from_sql} AS q");
    if let Some(c) = cursor {
        let name = &schema.fields()[c].name;
        let conditions: Vec<String> = [
            cursor_condition(name, &request.from, true)?,
            cursor_condition(name, &request.to, false)?,
        ]
        .into_iter()
        .flatten()
        .collect();
        if !conditions.is_empty() {
            sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
        }
        sql.push_str(&format!(" ORDER BY q.{} NULLS FIRST", ident(name)));
    }
    DuckDbReader::start(db, Arc::new(schema), cursor, request.limits, sql, what)
}

/// What the query thread sends.
enum Message {
    /// The query runs; batches follow.
    Started,
    /// Rows, in order.
    Batch(RecordBatch),
    /// Every row was sent.
    Done,
    /// The query failed; nothing follows.
    Failed(Error),
}

/// A running read of a DuckDB table or query. Dropping it stops the query.
pub struct DuckDbReader {
    schema: Arc<Schema>,
    limits: ChunkLimits,
    cursor: Option<usize>,
    builder: BatchBuilder,
    /// The record batch being cut and its next unread row.
    pending: Option<(RecordBatch, usize)>,
    /// Where the last row pushed came from (for cursor ties).
    last: Option<(RecordBatch, usize)>,
    max_cursor: Option<Value>,
    finished: bool,
    what: String,
    rx: Option<Receiver<Message>>,
    worker: Option<JoinHandle<()>>,
    interrupt: Arc<InterruptHandle>,
}

impl DuckDbReader {
    pub(crate) fn start(
        db: &Arc<Database>,
        schema: Arc<Schema>,
        cursor: Option<usize>,
        limits: ChunkLimits,
        sql: String,
        what: String,
    ) -> Result<DuckDbReader> {
        if limits.max_rows == 0 || limits.max_bytes == 0 {
            return Err(Error::Schema(format!(
                "chunk limits must be positive (rows {}, bytes {})",
                limits.max_rows, limits.max_bytes
            )));
        }
        let conn = db.connect()?;
        conn.execute_batch(&format!("SET streaming_buffer_size = '{STREAMING_BUFFER}'"))
            .map_err(|e| db_error(format!("reading {what}: setting up the connection"), e))?;
        let interrupt = conn.interrupt_handle();
        let (tx, rx) = sync_channel(2);
        let db = Arc::clone(db);
        let context = format!("reading {what}");
        let worker = std::thread::Builder::new()
            .name("caudal-duckdb-read".into())
            .spawn(move || {
                let outcome =
                    catch_unwind(AssertUnwindSafe(|| produce(&conn, &sql, &tx, &context)));
                let last = match outcome {
                    Ok(Ok(())) => Message::Done,
                    Ok(Err(e)) => Message::Failed(e),
                    Err(_) => Message::Failed(Error::Other(format!(
                        "{context}: the query thread panicked"
                    ))),
                };
                let _ = tx.send(last);
                // The connection goes before the database handle it depends on.
                drop(conn);
                drop(db);
            })
            .map_err(|e| Error::Other(format!("cannot start the read thread: {e}")))?;
        // Capacity for one chunk, bounded so that a huge row limit does not reserve memory
        // the byte limit would never let us use.
        let capacity = limits.max_rows.min(65_536);
        let mut reader = DuckDbReader {
            builder: BatchBuilder::with_capacity(Arc::clone(&schema), capacity),
            schema,
            limits,
            cursor,
            pending: None,
            last: None,
            max_cursor: None,
            finished: false,
            what,
            rx: Some(rx),
            worker: Some(worker),
            interrupt,
        };
        // Statement errors (a bad query, a missing column) surface here, not at the first chunk.
        match reader.receive()? {
            Some(Message::Started) => Ok(reader),
            _ => Err(Error::Other(format!(
                "reading {}: the query thread stopped before the query started",
                reader.what
            ))),
        }
    }

    /// The next message; `Failed` becomes the error, a vanished thread an error too.
    fn receive(&mut self) -> Result<Option<Message>> {
        let Some(rx) = &self.rx else {
            return Ok(None);
        };
        match rx.recv() {
            Ok(Message::Failed(e)) => {
                self.finished = true;
                Err(e)
            }
            Ok(Message::Done) => {
                self.finished = true;
                Ok(None)
            }
            Ok(m) => Ok(Some(m)),
            Err(_) => {
                self.finished = true;
                Err(Error::Other(format!(
                    "reading {}: the query thread ended without finishing",
                    self.what
                )))
            }
        }
    }

    /// Makes sure `pending` holds an unread row; `false` at the end of the rows.
    fn fill(&mut self) -> Result<bool> {
        loop {
            if let Some((rb, row)) = &self.pending
                && *row < rb.num_rows()
            {
                return Ok(true);
            }
            self.pending = None;
            if self.finished {
                return Ok(false);
            }
            match self.receive()? {
                Some(Message::Batch(rb)) => self.pending = Some((rb, 0)),
                Some(_) => {}
                None => return Ok(false),
            }
        }
    }

    /// The next record batch as DuckDB returned it (what is left of it when chunks took some
    /// of its rows), for readers that need no chunks; `None` after the last.
    pub(crate) fn next_record_batch(&mut self) -> Result<Option<RecordBatch>> {
        if !self.fill()? {
            return Ok(None);
        }
        Ok(self
            .pending
            .take()
            .map(|(rb, row)| rb.slice(row, rb.num_rows() - row)))
    }

    /// Pushes up to `limit` rows of the pending batch.
    fn push_pending(&mut self, limit: usize) -> Result<()> {
        let Some((rb, row)) = self.pending.take() else {
            return Ok(());
        };
        let take = limit.min(rb.num_rows() - row).max(1);
        push_rows(&mut self.builder, &rb, row..row + take)?;
        self.last = Some((rb.clone(), row + take - 1));
        self.pending = Some((rb, row + take));
        Ok(())
    }

    /// Rows of `rb` that fit the chunk being built, by rows and by estimated bytes.
    fn room(&self) -> usize {
        let built = self.builder.num_rows();
        let rows = self.limits.max_rows.saturating_sub(built);
        let bytes_left = self
            .limits
            .max_bytes
            .saturating_sub(self.builder.byte_size());
        let per_row = match &self.pending {
            Some((rb, _)) if rb.num_rows() > 0 => {
                (rb.get_array_memory_size() / rb.num_rows()).max(1)
            }
            _ => 1,
        };
        rows.min(bytes_left / per_row).max(1)
    }

    fn cursor_value(&self, at: &(RecordBatch, usize)) -> Result<Value> {
        let c = self.cursor.unwrap_or(0);
        value_at(&self.schema.fields()[c], at.0.column(c).as_ref(), at.1)
    }

    /// With a cursor, keeps adding rows while they tie with the last row's cursor value.
    fn extend_ties(&mut self) -> Result<()> {
        let Some(last) = self.last.clone() else {
            return Ok(());
        };
        let last_value = self.cursor_value(&last)?;
        while self.fill()? {
            let next = match &self.pending {
                Some(p) => p.clone(),
                None => break,
            };
            if self.cursor_value(&next)? != last_value {
                break;
            }
            self.push_pending(1)?;
        }
        Ok(())
    }
}

/// How far DuckDB runs a read's query ahead of the reader (`streaming_buffer_size`; DuckDB's
/// default is about 1 MB). Measured with `caudal bench verify` (1M rows, 5 columns, medians
/// of 9, two rounds): a full scan took 0.150-0.169 s with 16, 64 or 256 KiB against
/// 0.200-0.206 s with the default, and a verify 0.310-0.337 s against 0.351-0.361 s. A small
/// buffer hands chunks on while they are still in cache, and the first one comes after a
/// few thousand rows rather than after the buffer's worth (18 ms into a 1M-row scan).
const STREAMING_BUFFER: &str = "256KiB";

fn produce(conn: &Connection, sql: &str, tx: &SyncSender<Message>, context: &str) -> Result<()> {
    let mut stmt = conn.prepare(sql).map_err(|e| db_error(context, e))?;
    let stream = stmt.stream_arrow([]).map_err(|e| db_error(context, e))?;
    if tx.send(Message::Started).is_err() {
        return Ok(());
    }
    for rb in stream {
        let rb = rb.map_err(|e| db_error(context, e))?;
        if rb.num_rows() > 0 && tx.send(Message::Batch(rb)).is_err() {
            // The reader was dropped: stop quietly.
            return Ok(());
        }
    }
    Ok(())
}

impl BatchReader for DuckDbReader {
    fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        while !self.builder.is_full(&self.limits) && self.fill()? {
            let room = self.room();
            self.push_pending(room)?;
        }
        if self.cursor.is_some() && self.builder.is_full(&self.limits) {
            self.extend_ties()?;
        }
        if self.builder.num_rows() == 0 {
            return Ok(None);
        }
        let batch = self.builder.take()?;
        if let Some(last) = self.last.take()
            && self.cursor.is_some()
        {
            let v = self.cursor_value(&last)?;
            if !v.is_null() {
                self.max_cursor = Some(v);
            }
        }
        let cursor = self.cursor.and(self.max_cursor.clone());
        Ok(Some(Chunk { batch, cursor }))
    }
}

impl Drop for DuckDbReader {
    fn drop(&mut self) {
        if !self.finished {
            // Stops a query that is still producing, so the join below is prompt.
            self.interrupt.interrupt();
        }
        // A thread blocked on a full channel wakes up with a send error.
        drop(self.rx.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use caudal_connector::sample::all_types_schema;
    use caudal_connector::{LogicalType, Source, TableDigest};

    use super::*;
    use crate::testing::{fill_all_types, memory, read_all};

    fn request(target: ReadTarget, cursor: Option<&str>, rows: usize) -> ReadRequest {
        ReadRequest {
            target,
            cursor_column: cursor.map(str::to_owned),
            from: Bound::Unbounded,
            to: Bound::Unbounded,
            limits: ChunkLimits {
                max_rows: rows,
                max_bytes: 64 << 20,
            },
        }
    }

    #[test]
    fn discover_lists_tables_views_columns_and_keys() {
        let mut db = memory();
        fill_all_types(&mut db, "all_types", 10, 10);
        db.conn
            .execute_batch(
                "CREATE SCHEMA ventas;
                 CREATE TABLE ventas.lineas (tienda INT, factura BIGINT, linea SMALLINT,
                     importe DECIMAL(12,2) NOT NULL, PRIMARY KEY (tienda, factura, linea));
                 CREATE VIEW v AS SELECT id FROM all_types;",
            )
            .unwrap();
        let tables = db.discover().unwrap();
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        // The offsets table is the connector's own and is not offered.
        assert_eq!(names, ["all_types", "v", "ventas.lineas"]);
        let all = &tables[0];
        assert_eq!(all.estimated_rows, Some(10));
        assert_eq!(all.schema.primary_key(), &[0]);
        assert_eq!(all.schema.len(), all_types_schema().len());
        let lineas = &tables[2].schema;
        let pk: Vec<&str> = lineas
            .primary_key()
            .iter()
            .map(|&k| lineas.fields()[k].name.as_str())
            .collect();
        assert_eq!(pk, ["tienda", "factura", "linea"]);
        let importe = &lineas.fields()[3];
        assert_eq!(
            importe.logical_type,
            LogicalType::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert!(!importe.nullable);
        assert_eq!(tables[1].estimated_rows, None);
    }

    #[test]
    fn a_table_reads_in_chunks_of_the_row_limit() {
        let mut db = memory();
        let written = fill_all_types(&mut db, "t", 5000, 1000);
        let mut reader = db
            .read(&request(ReadTarget::Table("t".into()), None, 700))
            .unwrap();
        let chunks = read_all(reader.as_mut());
        let sizes: Vec<usize> = chunks.iter().map(|c| c.batch.num_rows()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 5000);
        assert!(
            sizes[..sizes.len() - 1].iter().all(|&n| n == 700),
            "{sizes:?}"
        );
        assert!(chunks.iter().all(|c| c.cursor.is_none()));
        let mut expected = TableDigest::new();
        written.iter().for_each(|b| expected.add_batch("t", b));
        let mut got = TableDigest::new();
        chunks.iter().for_each(|c| got.add_batch("t", &c.batch));
        assert_eq!(got, expected);
    }

    #[test]
    fn the_byte_limit_cuts_chunks_too() {
        let mut db = memory();
        db.conn
            .execute_batch(
                "CREATE TABLE w AS SELECT i AS id, repeat('x', 1000) AS pad FROM range(3000) r(i)",
            )
            .unwrap();
        let mut req = request(ReadTarget::Table("w".into()), None, 100_000);
        req.limits.max_bytes = 100_000;
        let chunks = read_all(db.read(&req).unwrap().as_mut());
        assert_eq!(
            chunks.iter().map(|c| c.batch.num_rows()).sum::<usize>(),
            3000
        );
        assert!(chunks.len() >= 25, "{} chunks", chunks.len());
        for c in &chunks {
            // Cut by an estimate per row: within one row's size of the limit.
            assert!(
                c.batch.byte_size() <= 100_000 + 2_000,
                "{}",
                c.batch.byte_size()
            );
        }
    }

    fn ids(chunks: &[Chunk]) -> Vec<i64> {
        chunks
            .iter()
            .flat_map(|c| c.batch.column(0).unwrap().data().as_i64().unwrap().to_vec())
            .collect()
    }

    #[test]
    fn a_cursor_orders_rows_never_splits_ties_and_resumes_exactly() {
        let mut db = memory();
        // 100 rows over 10 days, 10 rows per day; two rows without a day.
        db.conn
            .execute_batch(
                "CREATE TABLE ev AS SELECT i AS id, DATE '2024-01-01' + (i % 10)::INT AS day
                 FROM range(100) r(i);
                 INSERT INTO ev VALUES (1000, NULL), (1001, NULL);",
            )
            .unwrap();
        let req = request(ReadTarget::Table("ev".into()), Some("day"), 15);
        let chunks = read_all(db.read(&req).unwrap().as_mut());
        assert_eq!(ids(&chunks).len(), 102);
        let mut seen_days: Vec<Value> = Vec::new();
        for c in &chunks {
            let n = c.batch.num_rows();
            let mut days: Vec<Value> = (0..n)
                .filter_map(|r| c.batch.value(r, 1))
                .filter(|v| !v.is_null())
                .collect();
            days.dedup();
            // No day appears in two chunks: chunks end only between different days.
            assert!(
                days.iter().all(|d| !seen_days.contains(d)),
                "a day is split: {days:?}"
            );
            assert_eq!(c.cursor.as_ref(), days.last());
            seen_days.extend(days);
        }
        // NULL days come first; the cursor is the greatest non-NULL day.
        assert_eq!(chunks[0].batch.value(0, 1), Some(Value::Null));
        // Resuming past the third chunk's cursor gives exactly the rows not read yet.
        let resume_from = chunks[2].cursor.clone().unwrap();
        let before: usize = chunks[..3].iter().map(|c| c.batch.num_rows()).sum();
        let mut req = req.clone();
        req.from = Bound::Excluded(resume_from);
        let rest = read_all(db.read(&req).unwrap().as_mut());
        let mut all = ids(&chunks[..3]);
        all.extend(ids(&rest));
        all.sort_unstable();
        let mut expected = ids(&chunks);
        expected.sort_unstable();
        assert_eq!(all, expected);
        assert_eq!(before + ids(&rest).len(), 102);
    }

    #[test]
    fn a_query_binds_from_and_to() {
        let mut db = memory();
        db.conn
            .execute_batch("CREATE TABLE v AS SELECT i AS id, i * 2 AS twice FROM range(50) r(i)")
            .unwrap();
        let mut req = request(
            ReadTarget::Query("SELECT id, twice FROM v WHERE id >= @from AND id < @to;".into()),
            Some("id"),
            1000,
        );
        req.from = Bound::Included(Value::Int(10));
        req.to = Bound::Excluded(Value::Int(20));
        let mut reader = db.read(&req).unwrap();
        assert_eq!(reader.schema().fields()[1].logical_type, LogicalType::Int64);
        let chunks = read_all(reader.as_mut());
        assert_eq!(ids(&chunks), (10..20).collect::<Vec<i64>>());
        assert_eq!(chunks[0].cursor, Some(Value::Int(19)));
    }

    #[test]
    fn read_errors_name_what_is_wrong() {
        let mut db = memory();
        db.conn.execute_batch("CREATE TABLE t(a INT)").unwrap();
        let err = db
            .read(&request(ReadTarget::Table("nope".into()), None, 10))
            .err()
            .unwrap();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
        assert!(err.to_string().contains("`nope`"), "{err}");
        let err = db
            .read(&request(ReadTarget::Table("t".into()), Some("b"), 10))
            .err()
            .unwrap();
        assert!(err.to_string().contains("cursor column `b`"), "{err}");
        let err = db
            .read(&request(
                ReadTarget::Query("SELECT nope FROM t".into()),
                None,
                10,
            ))
            .err()
            .unwrap();
        assert!(matches!(err, Error::Database { .. }), "{err:?}");
        assert!(err.to_string().contains("nope"), "{err}");
        let mut bounded = request(ReadTarget::Table("t".into()), None, 10);
        bounded.from = Bound::Included(Value::Int(1));
        assert!(db.read(&bounded).is_err());
    }

    #[test]
    fn dropping_a_reader_midway_stops_the_query_promptly() {
        let mut db = memory();
        let mut reader = db
            .read(&request(
                ReadTarget::Query("SELECT i, i::VARCHAR AS s FROM range(50000000) r(i)".into()),
                None,
                1000,
            ))
            .unwrap();
        assert_eq!(reader.next_chunk().unwrap().unwrap().batch.num_rows(), 1000);
        let start = Instant::now();
        drop(reader);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        // The connection is still usable.
        assert_eq!(db.discover().unwrap().len(), 0);
    }

    #[test]
    fn reads_run_with_a_small_streaming_buffer() {
        let mut db = memory();
        let mut reader = db
            .read(&request(
                ReadTarget::Query(
                    "SELECT current_setting('streaming_buffer_size') AS buffer".into(),
                ),
                None,
                10,
            ))
            .unwrap();
        let chunks = read_all(reader.as_mut());
        // DuckDB shows the size in its own units: 256 KiB = 262,144 bytes is "256.0 KiB".
        assert_eq!(
            chunks[0].batch.value(0, 0),
            Some(Value::Text("256.0 KiB".into()))
        );
    }

    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        // Ranges are DuckDB's: HUGEINT excludes i128::MIN, TIMESTAMP ends in year 294247.
        let instant = -9_000_000_000_000_000i64..9_000_000_000_000_000;
        prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<u64>().prop_map(Value::UInt),
            (i128::MIN + 1..=i128::MAX).prop_map(Value::Int128),
            any::<f64>()
                .prop_filter("NaN is never equal to itself", |f| !f.is_nan())
                .prop_map(Value::Float),
            (any::<i64>(), 0u8..=18).prop_map(|(u, scale)| Value::Decimal {
                unscaled: i128::from(u),
                scale
            }),
            (-1_000_000i32..1_000_000).prop_map(Value::Date),
            (0i64..86_400_000_000).prop_map(Value::Time),
            instant.clone().prop_map(Value::DateTime),
            instant.prop_map(Value::Timestamp),
            "[^\\x00]{0,24}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
            any::<[u8; 16]>().prop_map(Value::Uuid),
            (
                any::<i32>(),
                any::<i32>(),
                -1_000_000_000_000_000i64..1_000_000_000_000_000
            )
                .prop_map(|(months, days, micros)| Value::Interval(
                    caudal_connector::Interval {
                        months,
                        days,
                        micros
                    }
                )),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Cursor and key bounds are written into SQL as literals: DuckDB must read each one
        /// back as exactly the value it came from.
        #[test]
        fn every_literal_evaluates_to_its_value(v in any_value()) {
            let mut db = memory();
            let lit = crate::sql::literal(&v).unwrap();
            let mut reader = db
                .read(&request(ReadTarget::Query(format!("SELECT {lit} AS v")), None, 10))
                .unwrap();
            let chunks = read_all(reader.as_mut());
            proptest::prop_assert_eq!(chunks[0].batch.value(0, 0), Some(v));
        }
    }
}
