//! Writing DuckDB: table creation from a schema, journaled writes with their offset row in the
//! same transaction, upserts and deletes through a staging table, snapshot swaps and table
//! digests.
//!
//! Every write is one transaction: read the stream's offset from `_caudal_offsets`; if it is
//! at or past the batch's seq, change nothing (a replay); else apply the rows and set the
//! offset to the seq; commit. A crash before the commit leaves neither rows nor offset, one
//! after leaves both, so the engine's resume (skip what the offset covers) neither loses nor
//! repeats a row.
//!
//! Rows go in through DuckDB's appender as Arrow record batches (`append_record_batch`, one
//! conversion per column rather than per value). Upserts and deletes append to a temporary
//! staging table first, then run one set-based statement against the target: an upsert
//! deletes the rows whose keys it brings and inserts the last row of each key; a delete
//! deletes by key. Temporary tables live in memory only, so staging writes no WAL.
//!
//! Two ways to spend less on a snapshot were measured on `caudal bench mysql` (a million rows
//! in batches of 20,000, this DuckDB build) and left out:
//! - Several batches in one transaction of a row group's worth (122,880 rows or more), which
//!   DuckDB writes straight to the file instead of the WAL: the run's writes took 0.33 s less,
//!   but closing the database then compressed those row groups again (0.45 s), and the file
//!   grew from 28 to 43 MB. The total CPU time was the same.
//! - Tables made anew (snapshot staging) loaded without their primary key, and the key added
//!   in bulk at the swap (`ALTER TABLE ... ADD PRIMARY KEY`, 0.15 s). The sink alone, fed the
//!   bench's 12 columns in 50 batches, spent 1.17 s of CPU instead of 1.61 s. In `caudal run`,
//!   each batch took less too (17-20 ms instead of 25-35 ms), but the automatic checkpoints
//!   grew with the table (100 to 400 ms each, against 60-80 ms; twice the string compression,
//!   also with a 512 MiB memory limit), and the run took 2.7-3.4 s instead of 2.2-2.6 s. Why
//!   the checkpoints differ between the two was not found.

use caudal_connector::{
    Batch, ChunkLimits, DigestRequest, Digester, Error, PrepareTable, Result, Schema, Sink,
    TableDigest, WriteOp, WriteOutcome, WriteRequest,
};
use duckdb::Connection;

use crate::DuckDb;
use crate::arrow::{ArrowRows, record_batch};
use crate::database::{db_error, is_out_of_memory};
use crate::source::{DuckDbReader, tables};
use crate::sql::{TableName, ident, key_range_condition};
use crate::types::{duckdb_type, read_expression};

/// The offsets table: one row per `(pipeline, stream)`, the last journal seq applied.
pub const OFFSETS_TABLE: &str = "_caudal_offsets";
/// The temporary staging table of upserts and deletes (per connection, so writers on other
/// connections never see it).
const STAGING_TABLE: &str = "_caudal_staging";

const CREATE_OFFSETS: &str = "CREATE TABLE IF NOT EXISTS main._caudal_offsets (
    pipeline VARCHAR NOT NULL,
    stream VARCHAR NOT NULL,
    seq UBIGINT NOT NULL,
    PRIMARY KEY (pipeline, stream))";

/// `CREATE TABLE IF NOT EXISTS` for `schema` (columns, NOT NULL, primary key).
fn create_table_sql(table: &TableName, schema: &Schema) -> Result<String> {
    let mut parts = Vec::with_capacity(schema.len() + 1);
    for f in schema.fields() {
        let t =
            duckdb_type(&f.logical_type).map_err(|e| e.context(format!("column `{}`", f.name)))?;
        let not_null = if f.nullable { "" } else { " NOT NULL" };
        parts.push(format!("{} {t}{not_null}", ident(&f.name)));
    }
    if !schema.primary_key().is_empty() {
        let keys: Vec<String> = schema
            .primary_key()
            .iter()
            .map(|&k| ident(&schema.fields()[k].name))
            .collect();
        parts.push(format!("PRIMARY KEY ({})", keys.join(", ")));
    }
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        table.sql(),
        parts.join(", ")
    ))
}

fn offset(conn: &Connection, pipeline: &str, stream: &str) -> duckdb::Result<Option<u64>> {
    let mut stmt = conn
        .prepare_cached("SELECT seq FROM main._caudal_offsets WHERE pipeline = ? AND stream = ?")?;
    let mut rows = stmt.query([pipeline, stream])?;
    match rows.next()? {
        Some(row) => row.get(0).map(Some),
        None => Ok(None),
    }
}

/// Sets the stream's offset; `exists` says whether its row is there (read by [`offset`] in
/// the same transaction). An `UPDATE` or a plain `INSERT`: DuckDB runs `ON CONFLICT` through
/// a hash aggregate, about 2 ms a write.
fn set_offset(
    conn: &Connection,
    pipeline: &str,
    stream: &str,
    seq: u64,
    exists: bool,
) -> duckdb::Result<()> {
    if exists {
        let mut stmt = conn.prepare_cached(
            "UPDATE main._caudal_offsets SET seq = ? WHERE pipeline = ? AND stream = ?",
        )?;
        stmt.execute(duckdb::params![seq, pipeline, stream])?;
    } else {
        let mut stmt = conn.prepare_cached("INSERT INTO main._caudal_offsets VALUES (?, ?, ?)")?;
        stmt.execute(duckdb::params![pipeline, stream, seq])?;
    }
    Ok(())
}

/// Appends columns `columns` of `batch` to a table through the Arrow appender.
fn append(
    conn: &Connection,
    catalog: Option<&str>,
    table: &TableName,
    batch: &Batch,
    columns: &[usize],
) -> Result<()> {
    if batch.num_rows() == 0 {
        return Ok(());
    }
    let names: Vec<&str> = columns
        .iter()
        .map(|&i| batch.schema().fields()[i].name.as_str())
        .collect();
    let rb = record_batch(batch, columns)?;
    let ctx = |e| db_error(format!("appending to `{table}`"), e);
    let mut app = match catalog {
        Some(c) => {
            conn.appender_with_columns_to_catalog_and_db(&table.table, c, &table.schema, &names)
        }
        None => conn.appender_with_columns_to_db(&table.table, &table.schema, &names),
    }
    .map_err(ctx)?;
    app.append_record_batch(rb).map_err(ctx)?;
    app.flush().map_err(ctx)
}

/// `main._caudal_offsets`.
fn offsets_table() -> TableName {
    TableName {
        schema: "main".into(),
        table: OFFSETS_TABLE.into(),
    }
}

fn staging() -> TableName {
    TableName {
        schema: "main".into(),
        table: STAGING_TABLE.into(),
    }
}

/// Creates the staging table with the target's types for `columns` and appends them.
fn stage(conn: &Connection, target: &TableName, batch: &Batch, columns: &[usize]) -> Result<()> {
    let list = column_list(batch.schema(), columns);
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE {STAGING_TABLE} AS SELECT {list} FROM {} LIMIT 0",
        target.sql()
    ))
    .map_err(|e| db_error(format!("creating the staging table for `{target}`"), e))?;
    append(conn, Some("temp"), &staging(), batch, columns)
}

fn column_list(schema: &Schema, columns: &[usize]) -> String {
    columns
        .iter()
        .map(|&i| ident(&schema.fields()[i].name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `t.k1 IS NOT DISTINCT FROM s.k1 AND ...` (NULL keys match each other, as a key should).
fn key_match(schema: &Schema) -> String {
    schema
        .primary_key()
        .iter()
        .map(|&k| {
            let c = ident(&schema.fields()[k].name);
            format!("t.{c} IS NOT DISTINCT FROM s.{c}")
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn delete_staged(conn: &Connection, target: &TableName, schema: &Schema) -> Result<usize> {
    conn.execute(
        &format!(
            "DELETE FROM {} AS t USING temp.main.{STAGING_TABLE} AS s WHERE {}",
            target.sql(),
            key_match(schema)
        ),
        [],
    )
    .map_err(|e| db_error(format!("deleting by key from `{target}`"), e))
}

fn require_key(schema: &Schema, table: &TableName, op: &str) -> Result<()> {
    if schema.primary_key().is_empty() {
        return Err(Error::Schema(format!(
            "{op} into `{table}` needs a primary key, and the stream's schema has none; set \
             `primary_key` on the stream"
        )));
    }
    Ok(())
}

fn upsert(conn: &Connection, target: &TableName, batch: &Batch) -> Result<u64> {
    let schema = batch.schema();
    require_key(schema, target, "an upsert")?;
    let all: Vec<usize> = (0..schema.len()).collect();
    stage(conn, target, batch, &all)?;
    delete_staged(conn, target, schema)?;
    let list = column_list(schema, &all);
    let keys = column_list(schema, schema.primary_key());
    // The last row of a key wins, as if the rows had been applied one by one.
    let inserted = conn
        .execute(
            &format!(
                "INSERT INTO {} ({list}) SELECT {list} FROM temp.main.{STAGING_TABLE}
                 QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY rowid DESC) = 1",
                target.sql()
            ),
            [],
        )
        .map_err(|e| db_error(format!("inserting the upserted rows into `{target}`"), e))?;
    drop_staging(conn)?;
    Ok(inserted as u64)
}

fn delete(conn: &Connection, target: &TableName, batch: &Batch) -> Result<u64> {
    let schema = batch.schema();
    require_key(schema, target, "a delete")?;
    stage(conn, target, batch, schema.primary_key())?;
    let deleted = delete_staged(conn, target, schema)?;
    drop_staging(conn)?;
    Ok(deleted as u64)
}

fn drop_staging(conn: &Connection) -> Result<()> {
    conn.execute_batch(&format!("DROP TABLE IF EXISTS temp.main.{STAGING_TABLE}"))
        .map_err(|e| db_error("dropping the staging table", e))
}

/// Whether a table exists, caudal's own `_caudal_*` tables included (discovery hides those,
/// but snapshot staging tables are exactly what a swap needs to find).
fn table_exists(conn: &Connection, table: &TableName) -> Result<bool> {
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() \
             AND schema_name = ? AND table_name = ?",
            [table.schema.as_str(), table.table.as_str()],
            |r| r.get(0),
        )
        .map_err(|e| db_error(format!("looking for table `{table}`"), e))?;
    Ok(n > 0)
}

impl DuckDb {
    fn writable(&self, what: &str) -> Result<()> {
        if self.db.read_only() {
            return Err(Error::Unsupported(format!(
                "{}: cannot {what}: the connection is read-only (`read_only = true`)",
                self.describe()
            )));
        }
        Ok(())
    }

    fn ensure_offsets(&mut self) -> Result<()> {
        if !self.offsets_ready {
            self.conn.execute_batch(CREATE_OFFSETS).map_err(|e| {
                db_error(format!("{}: creating {OFFSETS_TABLE}", self.describe()), e)
            })?;
            self.offsets_ready = true;
        }
        Ok(())
    }

    /// One attempt at [`Sink::write`], in one transaction.
    fn write_once(&mut self, request: &WriteRequest, batch: &Batch) -> Result<WriteOutcome> {
        self.writable("write")?;
        self.ensure_offsets()?;
        let table = TableName::parse(&request.table)?;
        let ctx = format!(
            "{}: writing seq {} of stream `{}` of pipeline `{}` to table `{table}`",
            self.describe(),
            request.seq,
            request.stream,
            request.pipeline
        );
        self.db
            .make_room_for_commit(&self.conn, batch.byte_size())
            .map_err(|e| e.context(&ctx))?;
        let tx = self.conn.transaction().map_err(|e| db_error(&ctx, e))?;
        let last =
            offset(&tx, &request.pipeline, &request.stream).map_err(|e| db_error(&ctx, e))?;
        if let Some(last_seq) = last
            && last_seq >= request.seq
        {
            // Dropping the transaction rolls it back; nothing was changed.
            return Ok(WriteOutcome::AlreadyApplied { last_seq });
        }
        let rows = match request.op {
            WriteOp::Insert => {
                let all: Vec<usize> = (0..batch.num_columns()).collect();
                append(&tx, None, &table, batch, &all).map(|()| batch.num_rows() as u64)
            }
            WriteOp::Upsert => upsert(&tx, &table, batch),
            WriteOp::Delete => delete(&tx, &table, batch),
        }
        .map_err(|e| e.context(&ctx))?;
        set_offset(
            &tx,
            &request.pipeline,
            &request.stream,
            request.seq,
            last.is_some(),
        )
        .map_err(|e| db_error(&ctx, e))?;
        tx.commit().map_err(|e| {
            // DuckDB 1.2 undoes a failed commit's rows but can keep their keys in the table's
            // primary key index, on disk too: then every later write of those rows fails on
            // a duplicate key, and only a new table helps.
            db_error(
                format!(
                    "{ctx}: commit failed (DuckDB may keep this batch's keys in the table's \
                     primary key index; if retries then fail on a duplicate key, replay the \
                     journal into a new database file with `caudal replay`)"
                ),
                e,
            )
        })?;
        Ok(WriteOutcome::Applied { rows })
    }
}

impl Sink for DuckDb {
    fn prepare_table(&mut self, request: &PrepareTable) -> Result<()> {
        self.writable("create tables")?;
        self.ensure_offsets()?;
        let table = TableName::parse(&request.table)?;
        let ctx = format!("{}: preparing table `{table}`", self.describe());
        let create = create_table_sql(&table, &request.schema).map_err(|e| e.context(&ctx))?;
        let tx = self.conn.transaction().map_err(|e| db_error(&ctx, e))?;
        if table.schema != "main" {
            tx.execute_batch(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                ident(&table.schema)
            ))
            .map_err(|e| db_error(&ctx, e))?;
        }
        if request.replace {
            tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", table.sql()))
                .map_err(|e| db_error(&ctx, e))?;
        }
        tx.execute_batch(&create).map_err(|e| db_error(&ctx, e))?;
        // A table that already existed must at least have the stream's columns.
        let existing = tables(&tx, Some(&table))?;
        if let Some(info) = existing.first() {
            let missing: Vec<&str> = request
                .schema
                .fields()
                .iter()
                .filter(|f| info.schema.index_of(&f.name).is_none())
                .map(|f| f.name.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(Error::Schema(format!(
                    "{ctx}: the existing table has no column(s) {}; add them or let the \
                     stream write to a new table",
                    missing.join(", ")
                )));
            }
        }
        tx.commit().map_err(|e| db_error(&ctx, e))
    }

    fn write(&mut self, request: &WriteRequest, batch: &Batch) -> Result<WriteOutcome> {
        loop {
            match self.write_once(request, batch) {
                // The transaction was rolled back: nothing of it stays.
                Err(e) if is_out_of_memory(&e) && self.db.raise_memory_limit(&self.conn)? => {}
                done => return done,
            }
        }
    }

    fn last_applied_seq(&mut self, pipeline: &str, stream: &str) -> Result<Option<u64>> {
        let ctx = format!(
            "{}: reading the offset of stream `{stream}` of pipeline `{pipeline}`",
            self.describe()
        );
        // The catalog is asked only when the read fails: `duckdb_tables()` costs about 20 ms
        // on a database just opened, the read well under one.
        match offset(&self.conn, pipeline, stream) {
            Ok(seq) => Ok(seq),
            Err(e) => match table_exists(&self.conn, &offsets_table()) {
                Ok(false) => Ok(None),
                _ => Err(db_error(&ctx, e)),
            },
        }
    }

    fn table_digest(&mut self, request: &DigestRequest) -> Result<TableDigest> {
        let table = TableName::parse(&request.table)?;
        let ctx = format!("{}: digest of table `{table}`", self.describe());
        let schema = std::sync::Arc::new(request.schema.clone());
        let select = schema
            .fields()
            .iter()
            .map(|f| read_expression(&f.name, &f.logical_type))
            .collect::<Result<Vec<_>>>()?
            .join(", ");
        let keys: Vec<&str> = schema
            .primary_key()
            .iter()
            .map(|&k| schema.fields()[k].name.as_str())
            .collect();
        let mut sql = format!("SELECT {select} FROM {} AS q", table.sql());
        if let Some(cond) =
            key_range_condition(&keys, &request.range).map_err(|e| e.context(&ctx))?
        {
            sql.push_str(&format!(" WHERE {cond}"));
        }
        // The scan runs on its own connection in a thread of the reader while the digest
        // workers hash what it returned, in place (`ArrowRows`): scan and hashing overlap.
        // Record batches are taken whole, never cut into chunks: the smallest limits keep the
        // reader's unused chunk builder small.
        let limits = ChunkLimits {
            max_rows: 1,
            max_bytes: 1,
        };
        let started = DuckDbReader::start(
            &self.db,
            std::sync::Arc::clone(&schema),
            None,
            limits,
            sql,
            format!("table `{table}` for its digest"),
        );
        // The catalog is asked only when the scan could not start: on a database just
        // opened, `duckdb_tables()` costs more than the scan's own start (it sizes every
        // table), about 20 ms of a 1M-row verify's 300.
        let mut reader = match started {
            Ok(reader) => reader,
            // The scan's own error stands unless the table is known to be missing.
            Err(e) => {
                return Err(match table_exists(&self.conn, &table) {
                    Ok(false) => Error::NotFound(format!("{ctx}: the table does not exist")),
                    _ => e.context(&ctx),
                });
            }
        };
        let mut digest = Digester::new(&request.table);
        while let Some(rb) = reader.next_record_batch().map_err(|e| e.context(&ctx))? {
            let rows = ArrowRows::new(rb, std::sync::Arc::clone(&schema));
            digest.push_rows(rows.map_err(|e| e.context(&ctx))?);
        }
        digest.finish().map_err(|e| e.context(&ctx))
    }

    fn replace_table(&mut self, staging: &str, table: &str) -> Result<()> {
        self.writable("replace tables")?;
        let staging = TableName::parse(staging)?;
        let target = TableName::parse(table)?;
        let ctx = format!(
            "{}: replacing table `{target}` by `{staging}`",
            self.describe()
        );
        if staging.schema != target.schema {
            return Err(Error::Unsupported(format!(
                "{ctx}: both tables must be in the same schema"
            )));
        }
        let tx = self.conn.transaction().map_err(|e| db_error(&ctx, e))?;
        if !table_exists(&tx, &staging)? {
            return Err(Error::NotFound(format!(
                "{ctx}: `{staging}` does not exist"
            )));
        }
        tx.execute_batch(&format!(
            "DROP TABLE IF EXISTS {}; ALTER TABLE {} RENAME TO {}",
            target.sql(),
            staging.sql(),
            ident(&target.table)
        ))
        .map_err(|e| db_error(&ctx, e))?;
        tx.commit().map_err(|e| db_error(&ctx, e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use caudal_connector::sample::{all_types_batch, all_types_schema};
    use caudal_connector::{BatchBuilder, Connector, Field, KeyRange, LogicalType, Source, Value};

    use super::*;
    use crate::DuckDbConfig;
    use crate::testing::{fill_all_types, memory, open, schema_of, write_req};

    fn digest(db: &mut DuckDb, table: &str, schema: &Schema) -> TableDigest {
        db.table_digest(&DigestRequest {
            table: table.into(),
            schema: schema.clone(),
            range: KeyRange::all(),
        })
        .unwrap()
    }

    fn count(db: &DuckDb, table: &str) -> i64 {
        db.conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn every_logical_type_round_trips_with_equal_digests() {
        let mut db = memory();
        let written = fill_all_types(&mut db, "t", 3000, 1000);
        let schema = all_types_schema();
        let mut expected = TableDigest::new();
        written.iter().for_each(|b| expected.add_batch("t", b));
        let got = digest(&mut db, "t", &schema);
        assert_eq!(got.rows(), 3000);
        assert_eq!(got, expected);
        // Column types are the documented ones.
        let t: String = db
            .conn
            .query_row(
                "SELECT data_type FROM duckdb_columns() WHERE table_name = 't' AND column_name = 'c_enum'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(t, "ENUM('rojo', 'verde', 'azul')");
        // And the schema discovered from the table digests the same rows alike.
        let discovered = db.discover().unwrap().remove(0).schema;
        assert_eq!(digest(&mut db, "t", &discovered), expected);
    }

    #[test]
    fn a_replayed_seq_changes_nothing() {
        let mut db = memory();
        fill_all_types(&mut db, "t", 100, 50);
        assert_eq!(db.last_applied_seq("p", "s").unwrap(), Some(2));
        assert_eq!(db.last_applied_seq("p", "other").unwrap(), None);
        let batch = all_types_batch(&Arc::new(all_types_schema()), 100, 10).unwrap();
        let outcome = db
            .write(&write_req("t", 2, WriteOp::Insert), &batch)
            .unwrap();
        assert_eq!(outcome, WriteOutcome::AlreadyApplied { last_seq: 2 });
        assert_eq!(count(&db, "t"), 100);
        let outcome = db
            .write(&write_req("t", 3, WriteOp::Insert), &batch)
            .unwrap();
        assert_eq!(outcome, WriteOutcome::Applied { rows: 10 });
        assert_eq!(count(&db, "t"), 110);
        assert_eq!(db.last_applied_seq("p", "s").unwrap(), Some(3));
    }

    #[test]
    fn last_applied_seq_without_any_write_is_none() {
        let mut db = memory();
        assert_eq!(db.last_applied_seq("p", "s").unwrap(), None);
    }

    #[test]
    fn a_failed_write_leaves_neither_rows_nor_offset() {
        let mut db = memory();
        fill_all_types(&mut db, "t", 10, 10);
        // Rows 5..15 overlap the primary keys 5..10 already there: the insert fails.
        let batch = all_types_batch(&Arc::new(all_types_schema()), 5, 10).unwrap();
        let err = db
            .write(&write_req("t", 2, WriteOp::Insert), &batch)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Database {
                    retryable: false,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("seq 2") && text.contains("`t`"), "{text}");
        assert_eq!(count(&db, "t"), 10);
        assert_eq!(db.last_applied_seq("p", "s").unwrap(), Some(1));
        // The connection is not stuck in the failed transaction.
        let fresh = all_types_batch(&Arc::new(all_types_schema()), 10, 5).unwrap();
        db.write(&write_req("t", 2, WriteOp::Insert), &fresh)
            .unwrap();
        assert_eq!(count(&db, "t"), 15);
    }

    fn kv_schema() -> Arc<Schema> {
        schema_of(
            vec![
                Field::new("k", LogicalType::Int32, false),
                Field::new("v", LogicalType::Varchar { max_length: None }, true),
            ],
            &["k"],
        )
    }

    fn kv(rows: &[(i32, Option<&str>)]) -> Batch {
        let mut b = BatchBuilder::new(kv_schema());
        for (k, v) in rows {
            b.push(0, *k).unwrap();
            b.push_opt(1, *v).unwrap();
        }
        b.finish().unwrap()
    }

    fn kv_rows(db: &DuckDb) -> Vec<(i32, Option<String>)> {
        let mut stmt = db.conn.prepare("SELECT k, v FROM kv ORDER BY k").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    fn prepare_kv(db: &mut DuckDb) {
        db.prepare_table(&PrepareTable {
            table: "kv".into(),
            schema: (*kv_schema()).clone(),
            replace: false,
        })
        .unwrap();
    }

    #[test]
    fn upsert_replaces_by_key_and_the_last_row_of_a_key_wins() {
        let mut db = memory();
        prepare_kv(&mut db);
        db.write(
            &write_req("kv", 1, WriteOp::Insert),
            &kv(&[(1, Some("a")), (2, Some("b"))]),
        )
        .unwrap();
        let batch = kv(&[(2, Some("x")), (3, None), (2, Some("y")), (4, Some("d"))]);
        let outcome = db
            .write(&write_req("kv", 2, WriteOp::Upsert), &batch)
            .unwrap();
        assert_eq!(outcome, WriteOutcome::Applied { rows: 3 });
        assert_eq!(
            kv_rows(&db),
            [
                (1, Some("a".into())),
                (2, Some("y".into())),
                (3, None),
                (4, Some("d".into()))
            ]
        );
        // The digest follows the same logic as an incremental digest: remove old, add new.
        let mut expected = TableDigest::of_batch("kv", &kv(&[(1, Some("a")), (2, Some("b"))]));
        expected.remove_batch("kv", &kv(&[(2, Some("b"))]));
        expected.add_batch("kv", &kv(&[(2, Some("y")), (3, None), (4, Some("d"))]));
        assert_eq!(digest(&mut db, "kv", &kv_schema()), expected);
        // Upserting the same keys again in another transaction works too.
        db.write(&write_req("kv", 3, WriteOp::Upsert), &kv(&[(1, Some("z"))]))
            .unwrap();
        assert_eq!(kv_rows(&db)[0], (1, Some("z".into())));
    }

    /// A file database without `memory_limit` starts small; upserts into a table whose key
    /// index outgrows that limit still succeed, the limit raised as they need it.
    #[test]
    fn upserts_past_the_default_memory_limit_raise_it_and_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(DuckDbConfig::file(
            dir.path().join("kv.duckdb").to_string_lossy(),
        ));
        prepare_kv(&mut db);
        let limit = |db: &DuckDb| -> String {
            db.conn
                .query_row("SELECT current_setting('memory_limit')", [], |r| r.get(0))
                .unwrap()
        };
        let before = limit(&db);
        let per_batch = 100_000;
        for seq in 1..=12u64 {
            let first = (seq as i32 - 1) * per_batch;
            let mut b = BatchBuilder::new(kv_schema());
            for k in first..first + per_batch {
                b.push(0, k).unwrap();
                b.push_opt(1, Some("value")).unwrap();
            }
            let batch = b.finish().unwrap();
            let outcome = db
                .write(&write_req("kv", seq, WriteOp::Upsert), &batch)
                .unwrap();
            assert_eq!(
                outcome,
                WriteOutcome::Applied {
                    rows: per_batch as u64
                }
            );
        }
        assert_eq!(count(&db, "kv"), 12 * i64::from(per_batch));
        let after = limit(&db);
        assert_ne!(before, after, "the limit should have been raised");
    }

    /// Writes a million rows of 11 columns into `wide` in chunks of 131,072 (seven of them,
    /// then the rest): what a snapshot of such a table read in chunks of that size writes.
    /// The last chunk fills no whole row group, so the commit appends it. Returns the rows
    /// written, or the first error with its seq.
    fn write_a_million_wide_rows(db: &mut DuckDb) -> std::result::Result<i64, (u64, Error)> {
        let field = |name: &str, t: LogicalType, nullable: bool| Field::new(name, t, nullable);
        let decimal = |precision, scale| LogicalType::Decimal { precision, scale };
        let varchar = |n| LogicalType::Varchar {
            max_length: Some(n),
        };
        let schema = Arc::new(
            Schema::new(
                vec![
                    field("id", LogicalType::Int64, false),
                    field("qty", LogicalType::Int32, false),
                    field("store", LogicalType::Int16, false),
                    field("day", LogicalType::Date, false),
                    field("at", LogicalType::DateTime { precision: 6 }, false),
                    field("name", varchar(64), false),
                    field("note", varchar(200), true),
                    field("price", decimal(12, 2), false),
                    field("total", decimal(18, 4), false),
                    field("ratio", LogicalType::Float64, true),
                    field("paid", LogicalType::Bool, false),
                ],
                &["id"],
            )
            .unwrap(),
        );
        db.prepare_table(&PrepareTable {
            table: "wide".into(),
            schema: (*schema).clone(),
            replace: false,
        })
        .unwrap();
        let sizes = [
            131_072i64, 131_072, 131_072, 131_072, 131_072, 131_072, 131_072, 82_496,
        ];
        let mut first = 0i64;
        for (seq, &n) in (1u64..).zip(&sizes) {
            let mut b = BatchBuilder::with_capacity(Arc::clone(&schema), n as usize);
            for k in first..first + n {
                b.push(0, k).unwrap();
                b.push(1, (k * 7) as i32).unwrap();
                b.push(2, (k % 30_000) as i16).unwrap();
                b.push(3, 18_000 + (k % 2_000) as i32).unwrap();
                b.push(4, 1_600_000_000_000_000 + k * 1_000).unwrap();
                b.push(5, format!("customer {k}").as_str()).unwrap();
                let note = (k % 3 != 0).then(|| "n".repeat((k % 200) as usize));
                b.push_opt(6, note.as_deref()).unwrap();
                b.push(7, i128::from(k % 100_000) * 7).unwrap();
                b.push(8, i128::from(k) * 3 + 1).unwrap();
                b.push_opt(9, (k % 5 != 0).then_some(k as f64 / 3.0))
                    .unwrap();
                b.push(10, k % 2 == 0).unwrap();
            }
            let batch = b.finish().unwrap();
            match db.write(&write_req("wide", seq, WriteOp::Insert), &batch) {
                Ok(outcome) => assert_eq!(outcome, WriteOutcome::Applied { rows: n as u64 }),
                Err(e) => return Err((seq, e)),
            }
            first += n;
        }
        Ok(first)
    }

    /// Large chunks into a file database without `memory_limit`: every commit has the room
    /// it needs. (DuckDB 1.2 does not fully revert a commit that runs out of memory: the key
    /// index keeps the batch's keys, so the write could never be retried; see the next test.)
    #[test]
    fn large_batches_commit_within_the_default_memory_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(DuckDbConfig::file(
            dir.path().join("wide.duckdb").to_string_lossy(),
        ));
        let rows =
            write_a_million_wide_rows(&mut db).unwrap_or_else(|(seq, e)| panic!("seq {seq}: {e}"));
        assert_eq!(count(&db, "wide"), rows);
        assert_eq!(db.last_applied_seq("p", "s").unwrap(), Some(8));
    }

    /// With a `memory_limit` set by the user, which caudal does not raise, the same writes run
    /// out at the last commit. The error says that the commit failed and what DuckDB may have
    /// kept, and nothing of the batch is there.
    #[test]
    fn a_commit_out_of_memory_under_a_configured_limit_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = DuckDbConfig::file(dir.path().join("wide.duckdb").to_string_lossy());
        config.memory_limit = Some("16MiB".into());
        // DuckDB's memory use depends on its thread count: fixed, so the failure comes at
        // the same write on any machine.
        config.threads = Some(1);
        let mut db = open(config);
        let (seq, err) = write_a_million_wide_rows(&mut db).unwrap_err();
        assert_eq!(seq, 8, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("commit failed") && text.contains("caudal replay"),
            "{text}"
        );
        assert_eq!(count(&db, "wide"), 7 * 131_072);
        assert_eq!(db.last_applied_seq("p", "s").unwrap(), Some(7));
    }

    #[test]
    fn delete_removes_by_key_only() {
        let mut db = memory();
        prepare_kv(&mut db);
        db.write(
            &write_req("kv", 1, WriteOp::Insert),
            &kv(&[(1, Some("a")), (2, Some("b")), (3, Some("c"))]),
        )
        .unwrap();
        // Non-key values do not matter, missing keys are no error.
        let outcome = db
            .write(
                &write_req("kv", 2, WriteOp::Delete),
                &kv(&[(2, Some("zzz")), (9, None)]),
            )
            .unwrap();
        assert_eq!(outcome, WriteOutcome::Applied { rows: 1 });
        assert_eq!(kv_rows(&db), [(1, Some("a".into())), (3, Some("c".into()))]);
    }

    #[test]
    fn upsert_without_a_primary_key_is_refused_clearly() {
        let mut db = memory();
        let schema = schema_of(vec![Field::new("a", LogicalType::Int32, true)], &[]);
        db.prepare_table(&PrepareTable {
            table: "nokey".into(),
            schema: (*schema).clone(),
            replace: false,
        })
        .unwrap();
        let mut b = BatchBuilder::new(schema);
        b.push(0, 1i32).unwrap();
        let err = db
            .write(
                &write_req("nokey", 1, WriteOp::Upsert),
                &b.finish().unwrap(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("primary key"), "{err}");
        assert_eq!(db.last_applied_seq("p", "s").unwrap(), None);
    }

    #[test]
    fn snapshot_staging_table_replaces_the_target_atomically() {
        let mut db = memory();
        prepare_kv(&mut db);
        db.write(
            &write_req("kv", 1, WriteOp::Insert),
            &kv(&[(1, Some("old"))]),
        )
        .unwrap();
        db.prepare_table(&PrepareTable {
            table: "kv_next".into(),
            schema: (*kv_schema()).clone(),
            replace: true,
        })
        .unwrap();
        db.write(
            &WriteRequest {
                stream: "snap".into(),
                ..write_req("kv_next", 2, WriteOp::Insert)
            },
            &kv(&[(7, Some("new")), (8, None)]),
        )
        .unwrap();
        db.replace_table("kv_next", "kv").unwrap();
        assert_eq!(kv_rows(&db), [(7, Some("new".into())), (8, None)]);
        let names: Vec<String> = db.discover().unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["kv"]);
        // The swapped-in table keeps its primary key.
        assert_eq!(db.discover().unwrap()[0].schema.primary_key(), &[0]);
        let err = db.replace_table("missing", "kv").unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
        // A staging table of caudal's own (hidden from discovery) is found for the swap.
        db.prepare_table(&PrepareTable {
            table: "_caudal_staging_kv".into(),
            schema: (*kv_schema()).clone(),
            replace: true,
        })
        .unwrap();
        assert_eq!(db.discover().unwrap().len(), 1);
        db.replace_table("_caudal_staging_kv", "kv").unwrap();
        assert!(kv_rows(&db).is_empty());
    }

    #[test]
    fn the_digest_of_a_missing_table_is_not_found_and_a_bad_column_is_not() {
        let mut db = memory();
        let schema = all_types_schema();
        let request = |table: &str, schema: &Schema| DigestRequest {
            table: table.into(),
            schema: schema.clone(),
            range: KeyRange::all(),
        };
        let err = db.table_digest(&request("missing", &schema)).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
        assert!(err.to_string().contains("`missing`"), "{err}");
        // The table is there but lacks a column the journal's schema has: a database error
        // naming the table, not "does not exist".
        fill_all_types(&mut db, "t", 3, 1);
        let mut fields = schema.fields().to_vec();
        fields.push(Field::new("extra", LogicalType::Int32, true));
        let wider = Schema::new(fields, &["id"]).unwrap();
        let err = db.table_digest(&request("t", &wider)).unwrap_err();
        assert!(!matches!(err, Error::NotFound(_)), "{err:?}");
        assert!(err.to_string().contains("extra"), "{err}");
    }

    #[test]
    fn key_range_digests_add_up_to_the_table_digest() {
        let mut db = memory();
        fill_all_types(&mut db, "t", 1000, 1000);
        let schema = all_types_schema();
        let whole = digest(&mut db, "t", &schema);
        let mut parts = TableDigest::new();
        let cuts = [
            std::ops::Bound::Unbounded,
            std::ops::Bound::Excluded(vec![Value::Int(300)]),
            std::ops::Bound::Excluded(vec![Value::Int(777)]),
            std::ops::Bound::Unbounded,
        ];
        for w in 0..3 {
            let lower = match &cuts[w] {
                std::ops::Bound::Excluded(v) => std::ops::Bound::Included(v.clone()),
                other => other.clone(),
            };
            let part = db
                .table_digest(&DigestRequest {
                    table: "t".into(),
                    schema: schema.clone(),
                    range: KeyRange {
                        lower,
                        upper: cuts[w + 1].clone(),
                    },
                })
                .unwrap();
            assert!(part.rows() > 0);
            parts.combine(&part);
        }
        assert_eq!(parts, whole);
        assert_eq!(whole.rows(), 1000);
    }

    #[test]
    fn an_existing_table_without_the_streams_columns_is_refused() {
        let mut db = memory();
        db.conn
            .execute_batch("CREATE TABLE kv (k INTEGER)")
            .unwrap();
        let err = db
            .prepare_table(&PrepareTable {
                table: "kv".into(),
                schema: (*kv_schema()).clone(),
                replace: false,
            })
            .unwrap_err();
        assert!(matches!(err, Error::Schema(_)), "{err:?}");
        assert!(err.to_string().contains("no column(s) v"), "{err}");
    }

    #[test]
    fn tables_in_other_schemas_are_created_and_written() {
        let mut db = memory();
        db.prepare_table(&PrepareTable {
            table: "ventas.kv".into(),
            schema: (*kv_schema()).clone(),
            replace: false,
        })
        .unwrap();
        let batch = kv(&[(1, Some("a")), (2, None)]);
        db.write(&write_req("ventas.kv", 1, WriteOp::Insert), &batch)
            .unwrap();
        db.write(
            &write_req("ventas.kv", 2, WriteOp::Upsert),
            &kv(&[(2, Some("b"))]),
        )
        .unwrap();
        assert_eq!(count(&db, "ventas.kv"), 2);
        assert_eq!(db.discover().unwrap()[0].name, "ventas.kv");
    }

    #[test]
    fn a_read_only_connection_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro.duckdb").to_string_lossy().into_owned();
        {
            let mut rw = open(DuckDbConfig::file(path.clone()));
            prepare_kv(&mut rw);
            rw.close().unwrap();
        }
        let mut ro = open(DuckDbConfig {
            read_only: true,
            ..DuckDbConfig::file(path)
        });
        let err = ro
            .write(&write_req("kv", 1, WriteOp::Insert), &kv(&[(1, None)]))
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        assert!(err.to_string().contains("read-only"), "{err}");
        assert_eq!(ro.discover().unwrap().len(), 1);
    }

    #[test]
    fn bad_values_fail_the_write_naming_the_column() {
        let mut db = memory();
        let schema = schema_of(
            vec![
                Field::new("k", LogicalType::Int32, false),
                Field::new("t", LogicalType::Time { precision: 6 }, true),
            ],
            &["k"],
        );
        db.prepare_table(&PrepareTable {
            table: "times".into(),
            schema: (*schema).clone(),
            replace: false,
        })
        .unwrap();
        let mut b = BatchBuilder::new(schema);
        b.push(0, 1i32).unwrap();
        b.push(1, -3_600_000_000i64).unwrap();
        let err = db
            .write(
                &write_req("times", 1, WriteOp::Insert),
                &b.finish().unwrap(),
            )
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("column `t` row 0") && text.contains("`times`"),
            "{text}"
        );
    }

    #[test]
    fn data_survives_close_and_reopen_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.duckdb").to_string_lossy().into_owned();
        let written = {
            let mut db = open(DuckDbConfig::file(path.clone()));
            let w = fill_all_types(&mut db, "t", 500, 200);
            db.close().unwrap();
            w
        };
        let mut db = open(DuckDbConfig::file(path));
        let mut expected = TableDigest::new();
        written.iter().for_each(|b| expected.add_batch("t", b));
        assert_eq!(digest(&mut db, "t", &all_types_schema()), expected);
        assert_eq!(db.last_applied_seq("p", "s").unwrap(), Some(3));
    }
}
