//! The sink: creating tables, applying journaled batches exactly once, digests and the
//! snapshot swap.
//!
//! A write is one transaction: `BEGIN TRANSACTION`, read the `(pipeline, stream)` row of
//! `_caudal_offsets` under `UPDLOCK, HOLDLOCK` (so a concurrent writer of the same stream
//! waits), stop if it already holds this seq or a later one, apply the rows, set the offset
//! to the batch's seq, `COMMIT TRANSACTION`. A failure anywhere rolls everything back: the
//! rows and the offset move together or not at all.
//!
//! Rows travel by TDS bulk load. Inserts load straight into the table, unless it has `money`
//! columns (tiberius carries money as `f64`, which would round amounts past 2^52 / 10^4): then,
//! as for upserts and deletes, the rows are loaded into the session's `#caudal_stage` table
//! (money as exact decimals) and applied with one `INSERT ... SELECT`, `MERGE` or `DELETE ...
//! WHERE EXISTS`. An upsert batch that holds a key twice keeps the last row of that key (a
//! `MERGE` may not touch a row twice).

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use caudal_connector::{
    Batch, BatchBuilder, DigestRequest, Digester, Field, PrepareTable, Schema, Sink, TableDigest,
    WriteOp, WriteOutcome, WriteRequest,
};
use futures::TryStreamExt as _;
use tiberius::{SqlBulkCopyOption, TokenRow};

use crate::decode;
use crate::encode::{Cell, encode};
use crate::error::{self, Error, Result};
use crate::source::describe_tables;
use crate::sql::{self, Condition, SqlColumn, TableName, ident};
use crate::types::SqlType;
use crate::{MsSqlConnector, Shared, TdsClient, execute, execute_count, fetch, query};

/// Rows per batch when a digest reads a table back.
const DIGEST_BATCH_ROWS: usize = 8192;
/// Server error: there is already an object with that name.
const ALREADY_EXISTS: u32 = 2714;
/// Server error: invalid object name.
const NO_SUCH_OBJECT: u32 = 208;

impl Sink for MsSqlConnector {
    fn prepare_table(&mut self, request: &PrepareTable) -> caudal_connector::Result<()> {
        let result = self.ensure_offsets().and_then(|()| {
            self.with_client(async |client, shared| {
                prepare(client, shared, request)
                    .await
                    .map_err(|e| e.context(format!("preparing table `{}`", request.table)))
            })
        });
        result.map_err(|e| self.shared.sdk(e))
    }

    fn write(
        &mut self,
        request: &WriteRequest,
        batch: &Batch,
    ) -> caudal_connector::Result<WriteOutcome> {
        let result = self.ensure_offsets().and_then(|()| {
            self.with_client(async |client, shared| {
                write(client, shared, request, batch).await.map_err(|e| {
                    e.context(format!(
                        "writing seq {} to table `{}` (pipeline `{}`, stream `{}`)",
                        request.seq, request.table, request.pipeline, request.stream
                    ))
                })
            })
        });
        result.map_err(|e| self.shared.sdk(e))
    }

    fn last_applied_seq(
        &mut self,
        pipeline: &str,
        stream: &str,
    ) -> caudal_connector::Result<Option<u64>> {
        let result = self.with_client(async |client, shared| {
            read_offset(client, shared, pipeline, stream)
                .await
                .map_err(|e| {
                    e.context(format!(
                        "reading the offset of pipeline `{pipeline}`, stream `{stream}`"
                    ))
                })
        });
        result.map_err(|e| self.shared.sdk(e))
    }

    fn table_digest(&mut self, request: &DigestRequest) -> caudal_connector::Result<TableDigest> {
        let result = self.with_client(async |client, shared| {
            digest(client, shared, request).await.map_err(|e| {
                e.context(format!("computing the digest of table `{}`", request.table))
            })
        });
        result.map_err(|e| self.shared.sdk(e))
    }

    fn replace_table(&mut self, staging: &str, table: &str) -> caudal_connector::Result<()> {
        let result = self.with_client(async |client, shared| {
            replace(client, shared, staging, table)
                .await
                .map_err(|e| e.context(format!("replacing table `{table}` by `{staging}`")))
        });
        result.map_err(|e| self.shared.sdk(e))
    }
}

impl MsSqlConnector {
    /// Creates `_caudal_offsets` once per connection.
    fn ensure_offsets(&mut self) -> Result<()> {
        if self.offsets_ready {
            return Ok(());
        }
        self.with_client(async |client, shared| {
            let offsets = offsets_table(shared);
            if !table_exists(client, &offsets).await? {
                create_tolerant(client, &sql::create_offsets_table(&offsets), &offsets).await?;
            }
            Ok(())
        })?;
        self.offsets_ready = true;
        Ok(())
    }
}

fn offsets_table(shared: &Shared) -> TableName {
    TableName {
        schema: shared.schema().to_owned(),
        table: sql::OFFSETS_TABLE.to_owned(),
    }
}

async fn table_exists(client: &mut TdsClient, table: &TableName) -> Result<bool> {
    let rows = fetch(client, &sql::table_exists(table), "looking the table up").await?;
    Ok(!rows.is_empty())
}

/// Runs a `CREATE TABLE`; a table created meanwhile by another connection is no error.
async fn create_tolerant(client: &mut TdsClient, ddl: &str, table: &TableName) -> Result<()> {
    let created = match client.simple_query(ddl).await {
        Ok(stream) => stream.into_results().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match created {
        Ok(()) => Ok(()),
        Err(e) if error::number(&e) == Some(ALREADY_EXISTS) => Ok(()),
        Err(e) => Err(error::tds(format!("creating {table}"), e)),
    }
}

/// The table's columns as SQL Server has them (cached per connection; `prepare_table` and
/// `replace_table` forget the entries they change).
async fn table_columns(
    client: &mut TdsClient,
    shared: &Shared,
    table: &TableName,
) -> Result<Vec<SqlColumn>> {
    let key = (table.schema.clone(), table.table.clone());
    if let Some(cols) = shared.columns_cache().get(&key) {
        return Ok(cols.clone());
    }
    let found = describe_tables(client, &table.schema, Some(&table.table))
        .await?
        .pop()
        .ok_or_else(|| Error::NotFound(format!("table {table} does not exist")))?;
    shared.columns_cache().insert(key, found.columns.clone());
    Ok(found.columns)
}

/// The destination column of each field, by name (exact, else case-insensitive as SQL
/// Server's default collations compare names).
fn match_columns(
    fields: &[Field],
    dest: &[SqlColumn],
    table: &TableName,
) -> Result<Vec<SqlColumn>> {
    fields
        .iter()
        .map(|f| {
            dest.iter()
                .find(|c| c.name == f.name)
                .or_else(|| dest.iter().find(|c| c.name.eq_ignore_ascii_case(&f.name)))
                .cloned()
                .ok_or_else(|| {
                    Error::Schema(format!(
                        "table {table} has no column `{}`; add it, or let a snapshot replace \
                         the table",
                        f.name
                    ))
                })
        })
        .collect()
}

fn sql_columns(schema: &Schema) -> Result<Vec<SqlColumn>> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let in_key = schema.primary_key().contains(&i);
            let t = SqlType::for_logical(&f.logical_type, in_key)
                .map_err(|e| e.context(format!("column `{}`", f.name)))?;
            Ok(SqlColumn::new(f.name.clone(), t, f.nullable && !in_key))
        })
        .collect()
}

async fn prepare(client: &mut TdsClient, shared: &Shared, request: &PrepareTable) -> Result<()> {
    let table = TableName::parse(&request.table, shared.schema())?;
    shared.forget(&table);
    let columns = sql_columns(&request.schema)?;
    let ddl = sql::create_table(&table, &columns, request.schema.primary_key());
    if request.replace {
        execute(
            client,
            &sql::drop_table_if_exists(&table.sql()),
            "dropping the table",
        )
        .await?;
        execute(client, &ddl, "creating the table").await?;
        return Ok(());
    }
    let existing = describe_tables(client, &table.schema, Some(&table.table)).await?;
    match existing.first() {
        None => create_tolerant(client, &ddl, &table).await,
        // An existing table is kept; it must at least have every column of the stream.
        Some(found) => match_columns(request.schema.fields(), &found.columns, &table).map(|_| ()),
    }
}

/// Loads rows `rows` of `batch` (its columns `batch_cols`) into `target` (a quoted name) whose
/// columns are `cols`, by TDS bulk load. Returns the rows loaded.
async fn bulk_load(
    client: &mut TdsClient,
    target: &str,
    cols: &[SqlColumn],
    batch: &Batch,
    batch_cols: &[usize],
    rows: &[usize],
) -> Result<u64> {
    let names = sql::bulk_columns(cols);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = SqlBulkCopyOption::KeepIdentity | SqlBulkCopyOption::KeepNulls;
    let mut request = client
        .bulk_insert_with_options(target, &names, options, &[])
        .await
        .map_err(|e| error::tds(format!("starting the bulk load into {target}"), e))?;
    let schema = batch.schema();
    for &r in rows {
        let mut row = TokenRow::with_capacity(cols.len());
        for (c, &bc) in cols.iter().zip(batch_cols) {
            let field = &schema.fields()[bc];
            let cell = Cell::of_column(&batch.columns()[bc], &field.logical_type, r);
            let data = encode(cell, &c.sql_type).map_err(|why| {
                Error::Encode(format!(
                    "column `{}` ({}), row {r} of the batch: {why}",
                    field.name, c.sql_type
                ))
            })?;
            row.push(data);
        }
        request
            .send(row)
            .await
            .map_err(|e| error::tds(format!("bulk loading row {r} into {target}"), e))?;
    }
    let done = request
        .finalize()
        .await
        .map_err(|e| error::tds(format!("finishing the bulk load into {target}"), e))?;
    Ok(done.total())
}

/// The rows of an upsert: the last row of every key, in batch order.
fn last_of_each_key(batch: &Batch) -> Vec<usize> {
    let key = batch.schema().primary_key();
    let mut last: HashMap<String, usize> = HashMap::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        let values: Vec<_> = key.iter().map(|&k| batch.value(r, k)).collect();
        last.insert(format!("{values:?}"), r);
    }
    let mut rows: Vec<usize> = last.into_values().collect();
    rows.sort_unstable();
    rows
}

/// Loads the rows into `#caudal_stage` (created anew with `cols`, money as decimals).
async fn stage(
    client: &mut TdsClient,
    cols: &[SqlColumn],
    batch: &Batch,
    batch_cols: &[usize],
    rows: &[usize],
) -> Result<()> {
    let stage = ident(sql::STAGE_TABLE);
    execute(
        client,
        &sql::drop_table_if_exists(&stage),
        "dropping the staging table",
    )
    .await?;
    execute(
        client,
        &sql::create_stage(cols),
        "creating the staging table",
    )
    .await?;
    let staged: Vec<SqlColumn> = cols
        .iter()
        .map(|c| SqlColumn::new(c.name.clone(), c.sql_type.exact(), true))
        .collect();
    bulk_load(client, &stage, &staged, batch, batch_cols, rows).await?;
    Ok(())
}

async fn apply(
    client: &mut TdsClient,
    table: &TableName,
    cols: &[SqlColumn],
    request: &WriteRequest,
    batch: &Batch,
) -> Result<u64> {
    let schema = batch.schema();
    let key = schema.primary_key();
    let all: Vec<usize> = (0..schema.len()).collect();
    let every_row: Vec<usize> = (0..batch.num_rows()).collect();
    let stage_name = ident(sql::STAGE_TABLE);
    let drop_stage = sql::drop_table_if_exists(&stage_name);
    match request.op {
        WriteOp::Insert if !cols.iter().any(|c| c.sql_type.is_money()) => {
            bulk_load(client, &table.sql(), cols, batch, &all, &every_row).await?;
            Ok(batch.num_rows() as u64)
        }
        WriteOp::Insert => {
            stage(client, cols, batch, &all, &every_row).await?;
            execute_count(
                client,
                &sql::insert_from_stage(table, cols),
                "inserting the rows",
            )
            .await?;
            execute(client, &drop_stage, "dropping the staging table").await?;
            Ok(batch.num_rows() as u64)
        }
        WriteOp::Upsert => {
            stage(client, cols, batch, &all, &last_of_each_key(batch)).await?;
            execute_count(
                client,
                &sql::merge_from_stage(table, cols, key),
                "merging the rows",
            )
            .await?;
            execute(client, &drop_stage, "dropping the staging table").await?;
            Ok(batch.num_rows() as u64)
        }
        WriteOp::Delete => {
            let key_cols: Vec<SqlColumn> = key.iter().map(|&k| cols[k].clone()).collect();
            stage(client, &key_cols, batch, key, &every_row).await?;
            let deleted = execute_count(
                client,
                &sql::delete_from_stage(table, &key_cols),
                "deleting the rows",
            )
            .await?;
            execute(client, &drop_stage, "dropping the staging table").await?;
            Ok(deleted)
        }
    }
}

async fn write(
    client: &mut TdsClient,
    shared: &Shared,
    request: &WriteRequest,
    batch: &Batch,
) -> Result<WriteOutcome> {
    let table = TableName::parse(&request.table, shared.schema())?;
    let schema = batch.schema();
    if schema.primary_key().is_empty() && request.op != WriteOp::Insert {
        return Err(Error::Schema(format!(
            "an {} needs a primary key, and the batch's schema has none",
            match request.op {
                WriteOp::Upsert => "upsert",
                _ => "delete",
            }
        )));
    }
    let dest = table_columns(client, shared, &table).await?;
    let cols = match_columns(schema.fields(), &dest, &table)?;
    let offsets = offsets_table(shared);
    execute(client, sql::BEGIN, "starting the transaction").await?;
    let outcome = async {
        let lock = sql::lock_offset(&offsets, &request.pipeline, &request.stream);
        let current = fetch(client, &lock, "locking the offset row").await?;
        let last = match current.first() {
            Some(row) => Some(seq_of(row)?),
            None => None,
        };
        if let Some(last) = last
            && last >= request.seq
        {
            return Ok(WriteOutcome::AlreadyApplied { last_seq: last });
        }
        let rows = if batch.num_rows() == 0 {
            0
        } else {
            apply(client, &table, &cols, request, batch).await?
        };
        let offset = match last {
            Some(_) => {
                sql::update_offset(&offsets, &request.pipeline, &request.stream, request.seq)
            }
            None => sql::insert_offset(&offsets, &request.pipeline, &request.stream, request.seq),
        };
        query(&offset)?
            .execute(client)
            .await
            .map_err(|e| error::tds("recording the offset", e))?;
        Ok(WriteOutcome::Applied { rows })
    }
    .await;
    match outcome {
        Ok(WriteOutcome::Applied { rows }) => {
            execute(client, sql::COMMIT, "committing").await?;
            Ok(WriteOutcome::Applied { rows })
        }
        Ok(already) => {
            execute(client, sql::ROLLBACK, "rolling back").await?;
            Ok(already)
        }
        Err(e) => rollback(client, e).await,
    }
}

/// Rolls the open transaction back after `e` and returns `e`. A server error of the rollback
/// (no transaction left: the failed statement already ended it, as under `XACT_ABORT`) is no
/// news; any other failure leaves the connection's state unknown: the error becomes a
/// connection error, which closes it.
async fn rollback<T>(client: &mut TdsClient, e: Error) -> Result<T> {
    let rolled = match client.simple_query(sql::ROLLBACK).await {
        Ok(stream) => stream.into_results().await.map(|_| ()),
        Err(rb) => Err(rb),
    };
    match rolled {
        Ok(()) | Err(tiberius::error::Error::Server(_)) => Err(e),
        Err(rb) => Err(Error::Connection(format!(
            "{e}; rolling back failed too ({rb}), the connection is closed"
        ))),
    }
}

fn seq_of(row: &tiberius::Row) -> Result<u64> {
    row.try_get::<i64, _>(0)
        .ok()
        .flatten()
        .and_then(|s| u64::try_from(s).ok())
        .ok_or_else(|| Error::Decode("the offset row holds no valid seq".into()))
}

async fn read_offset(
    client: &mut TdsClient,
    shared: &Shared,
    pipeline: &str,
    stream: &str,
) -> Result<Option<u64>> {
    let offsets = offsets_table(shared);
    let statement = sql::read_offset(&offsets, pipeline, stream);
    let rows = match query(&statement)?.query(client).await {
        Ok(s) => s.into_first_result().await,
        Err(e) => Err(e),
    };
    match rows {
        Ok(rows) => rows.first().map(seq_of).transpose(),
        // No offsets table yet: nothing was ever written through this schema.
        Err(e) if error::number(&e) == Some(NO_SUCH_OBJECT) => Ok(None),
        Err(e) => Err(error::tds(format!("reading {offsets}"), e)),
    }
}

async fn digest(
    client: &mut TdsClient,
    shared: &Shared,
    request: &DigestRequest,
) -> Result<TableDigest> {
    let table = TableName::parse(&request.table, shared.schema())?;
    let schema = Arc::new(request.schema.clone());
    let dest = table_columns(client, shared, &table).await?;
    let cols = match_columns(schema.fields(), &dest, &table)?;
    let key: Vec<SqlColumn> = schema
        .primary_key()
        .iter()
        .map(|&k| cols[k].clone())
        .collect();
    if key.is_empty() && !request.range.is_all() {
        return Err(Error::Schema(
            "a key range needs a schema with a primary key".into(),
        ));
    }
    for b in [&request.range.lower, &request.range.upper] {
        if let Bound::Included(v) | Bound::Excluded(v) = b
            && v.len() != key.len()
        {
            return Err(Error::Schema(format!(
                "a key range bound has {} values but the primary key has {} columns",
                v.len(),
                key.len()
            )));
        }
    }
    let conditions = [
        Condition::Lower(key.clone(), request.range.lower.clone()),
        Condition::Upper(key, request.range.upper.clone()),
    ];
    let statement = sql::digest_scan(&table, &cols, &conditions);
    // Worker threads digest each batch while the next one is read.
    let mut digest = Digester::new(&request.table);
    let mut builder = BatchBuilder::with_capacity(Arc::clone(&schema), DIGEST_BATCH_ROWS);
    let mut rows = query(&statement)?
        .query(client)
        .await
        .map_err(|e| error::tds("reading rows", e))?
        .into_row_stream();
    let mut n = 0usize;
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|e| error::tds("reading rows", e))?
    {
        decode::push_row(&mut builder, row.cells().map(|(_, d)| d))?;
        n += 1;
        if n.is_multiple_of(DIGEST_BATCH_ROWS) {
            digest.push(builder.take()?);
        }
    }
    digest.push(builder.take()?);
    digest.finish()
}

async fn replace(
    client: &mut TdsClient,
    shared: &Shared,
    staging: &str,
    table: &str,
) -> Result<()> {
    let staging = TableName::parse(staging, shared.schema())?;
    let table = TableName::parse(table, shared.schema())?;
    shared.forget(&staging);
    shared.forget(&table);
    if !table_exists(client, &staging).await? {
        return Err(Error::NotFound(format!(
            "staging table {staging} does not exist"
        )));
    }
    if !table_exists(client, &table).await? {
        execute(
            client,
            &sql::rename_table(&staging, &table.table),
            "renaming the staging table",
        )
        .await?;
        return Ok(());
    }
    let old_name: String = format!("_caudal_old_{}", table.table)
        .chars()
        .take(128)
        .collect();
    let old = table.sibling(&old_name);
    execute(
        client,
        &sql::drop_table_if_exists(&old.sql()),
        "dropping a leftover table",
    )
    .await?;
    // Both renames in one transaction: readers see the old table or the new one.
    execute(client, sql::BEGIN, "starting the transaction").await?;
    let swapped = async {
        execute(
            client,
            &sql::rename_table(&table, &old_name),
            "renaming the table",
        )
        .await?;
        execute(
            client,
            &sql::rename_table(&staging, &table.table),
            "renaming the staging table",
        )
        .await?;
        execute(client, &sql::drop_table(&old), "dropping the old table").await?;
        execute(client, sql::COMMIT, "committing").await?;
        Ok(())
    }
    .await;
    match swapped {
        Ok(()) => Ok(()),
        Err(e) => rollback(client, e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_connector::LogicalType;

    #[test]
    fn upserts_keep_the_last_row_of_each_key() {
        let schema = Arc::new(
            Schema::new(
                vec![
                    Field::new("k", LogicalType::Int32, false),
                    Field::new("v", LogicalType::Int32, true),
                ],
                &["k"],
            )
            .unwrap(),
        );
        let mut b = BatchBuilder::new(schema);
        for (k, v) in [(1, 10), (2, 20), (1, 11), (3, 30), (2, 21)] {
            b.push(0, k).unwrap();
            b.push(1, v).unwrap();
        }
        let batch = b.finish().unwrap();
        assert_eq!(last_of_each_key(&batch), vec![2, 3, 4]);
    }

    #[test]
    fn created_columns_follow_the_reverse_mapping() {
        let schema = Schema::new(
            vec![
                Field::new("id", LogicalType::Text { max_bytes: None }, true),
                Field::new("m", LogicalType::Money, true),
            ],
            &["id"],
        )
        .unwrap();
        let cols = sql_columns(&schema).unwrap();
        assert_eq!(cols[0].sql_type, SqlType::NVarChar { length: Some(450) });
        assert!(!cols[0].nullable);
        assert_eq!(cols[1].sql_type, SqlType::Money);
    }

    #[test]
    fn missing_columns_are_named() {
        let t = TableName::parse("t", "dbo").unwrap();
        let dest = vec![SqlColumn::new("ID", SqlType::Int, false)];
        let fields = vec![
            Field::new("id", LogicalType::Int32, false),
            Field::new("nombre", LogicalType::Int32, false),
        ];
        let err = match_columns(&fields, &dest, &t).unwrap_err().to_string();
        assert!(err.contains("`nombre`"), "{err}");
        assert_eq!(
            match_columns(&fields[..1], &dest, &t).unwrap()[0].name,
            "ID"
        );
    }
}
