//! The sink: creating tables, applying journaled batches exactly once, digests and the
//! snapshot swap.
//!
//! A write is one transaction: lock the `(pipeline, stream)` row of `_caudal_offsets`
//! (`SELECT ... FOR UPDATE`), stop if it already holds this seq or a later one, apply the rows,
//! set the offset to the batch's seq, commit. A failure anywhere rolls everything back: the
//! rows and the offset move together or not at all.
//!
//! Rows travel as multi-row statements cut at 2 MiB, and never beyond the server's
//! `max_allowed_packet` (or the configured override; a single larger row is an error saying
//! so): inserts `INSERT ... VALUES (?, ..),(?, ..)` and upserts the same with
//! `ON DUPLICATE KEY UPDATE c = VALUES(c)` as prepared statements with bound values
//! (`bind.rs`); deletes `DELETE ... WHERE k IN (..)` (or `OR`ed key tuples) as literals
//! (`encode.rs`, [`StatementBuilder`]), at most [`MAX_KEYS_PER_DELETE`] keys each so the range
//! optimizer stays cheap. The host's thread
//! builds the next statement while the plugin's worker executes the previous one.

use std::ops::Bound;
use std::sync::Arc;

use caudal_connector::{
    Batch, BatchBuilder, DigestRequest, Digester, Field, PrepareTable, Schema, Sink, TableDigest,
    WriteOp, WriteOutcome, WriteRequest,
};
use futures::TryStreamExt as _;
use sqlx::mysql::{MySqlArguments, MySqlPool};
use sqlx::{Executor as _, Row as _};
use tokio::sync::mpsc;

use crate::bind::BoundRows;
use crate::decode::{RowDecoder, raw_value};
use crate::encode::write_literal;
use crate::error::{self, Error, Result};
use crate::source::describe_tables;
use crate::sql::{self, Fragment, TableName, ident, push_ident};
use crate::types::ddl_type;
use crate::{MySqlConnector, Shared};

/// The table of applied offsets, one row per `(pipeline, stream)`, in the default database.
pub const OFFSETS_TABLE: &str = "_caudal_offsets";
/// Keys per DELETE statement.
pub const MAX_KEYS_PER_DELETE: usize = 1000;
/// Rows per batch when a digest reads a table back.
const DIGEST_BATCH_ROWS: usize = 8192;

impl Sink for MySqlConnector {
    fn prepare_table(&mut self, request: &PrepareTable) -> caudal_connector::Result<()> {
        let result = self.ensure_offsets().and_then(|()| {
            let what = format!("preparing table `{}`", request.table);
            self.runtime
                .block_on(prepare(&self.pool, &self.shared, request))
                .map_err(|e| e.context(what))
        });
        result.map_err(|e| self.shared.sdk(e))
    }

    fn write(
        &mut self,
        request: &WriteRequest,
        batch: &Batch,
    ) -> caudal_connector::Result<WriteOutcome> {
        let result = self.ensure_offsets().and_then(|()| {
            let what = format!(
                "writing seq {} to table `{}` (pipeline `{}`, stream `{}`)",
                request.seq, request.table, request.pipeline, request.stream
            );
            self.runtime
                .block_on(write(&self.pool, &self.shared, request, batch))
                .map_err(|e| e.context(what))
        });
        result.map_err(|e| self.shared.sdk(e))
    }

    fn last_applied_seq(
        &mut self,
        pipeline: &str,
        stream: &str,
    ) -> caudal_connector::Result<Option<u64>> {
        let result = self.offsets_table().and_then(|offsets| {
            self.runtime
                .block_on(read_offset(&self.pool, &offsets, pipeline, stream))
                .map_err(|e| {
                    e.context(format!(
                        "reading the offset of pipeline `{pipeline}`, stream `{stream}`"
                    ))
                })
        });
        result.map_err(|e| self.shared.sdk(e))
    }

    fn table_digest(&mut self, request: &DigestRequest) -> caudal_connector::Result<TableDigest> {
        let what = format!("computing the digest of table `{}`", request.table);
        let result = self
            .runtime
            .block_on(digest(&self.pool, &self.shared, request))
            .map_err(|e| e.context(what));
        result.map_err(|e| self.shared.sdk(e))
    }

    fn replace_table(&mut self, staging: &str, table: &str) -> caudal_connector::Result<()> {
        let what = format!("replacing table `{table}` by `{staging}`");
        let result = self
            .runtime
            .block_on(replace(&self.pool, &self.shared, staging, table))
            .map_err(|e| e.context(what));
        result.map_err(|e| self.shared.sdk(e))
    }
}

impl MySqlConnector {
    fn offsets_table(&self) -> Result<TableName> {
        let db = self.default_database("a sink (for its `_caudal_offsets` table)")?;
        Ok(TableName {
            database: Some(db.to_owned()),
            table: OFFSETS_TABLE.to_owned(),
        })
    }

    /// Creates `_caudal_offsets` once per connection. (`CREATE TABLE` commits implicitly, so
    /// it cannot happen inside a write's transaction.)
    fn ensure_offsets(&mut self) -> Result<()> {
        if self.offsets_ready {
            return Ok(());
        }
        let offsets = self.offsets_table()?;
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             `pipeline` VARCHAR(255) NOT NULL, \
             `stream` VARCHAR(255) NOT NULL, \
             `seq` BIGINT UNSIGNED NOT NULL, \
             `updated_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
             PRIMARY KEY (`pipeline`, `stream`)\
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={}",
            offsets.sql(),
            self.shared.server.table_collation()
        );
        self.runtime
            .block_on(self.pool.execute(sqlx::AssertSqlSafe(ddl)))
            .map_err(|e| error::sql(format!("creating {offsets}"), e))?;
        self.offsets_ready = true;
        Ok(())
    }
}

/// `CREATE TABLE` text for `schema`.
fn create_table_sql(
    table: &TableName,
    schema: &Schema,
    collation: &str,
    guard: &str,
) -> Result<String> {
    let mut out = format!("CREATE TABLE {guard}{} (", table.sql());
    for (i, f) in schema.fields().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let in_key = schema.primary_key().contains(&i);
        push_ident(&mut out, &f.name);
        out.push(' ');
        out.push_str(
            &ddl_type(&f.logical_type, in_key)
                .map_err(|e| e.context(format!("column `{}`", f.name)))?,
        );
        let timestamp = matches!(
            f.logical_type,
            caudal_connector::LogicalType::Timestamp { .. }
        );
        // An explicit default keeps a TIMESTAMP free of MySQL's automatic initialisation and
        // update (servers with explicit_defaults_for_timestamp off): copied values stay.
        out.push_str(match (f.nullable && !in_key, timestamp) {
            (true, true) => " NULL DEFAULT NULL",
            (true, false) => " NULL",
            (false, true) => " NOT NULL DEFAULT '1970-01-01 00:00:01'",
            (false, false) => " NOT NULL",
        });
    }
    if !schema.primary_key().is_empty() {
        out.push_str(", PRIMARY KEY (");
        for (j, &k) in schema.primary_key().iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            push_ident(&mut out, &schema.fields()[k].name);
        }
        out.push(')');
    }
    out.push_str(&format!(
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}"
    ));
    Ok(out)
}

async fn prepare(pool: &MySqlPool, shared: &Shared, request: &PrepareTable) -> Result<()> {
    let table = TableName::parse(&request.table, shared.database.as_deref())?;
    let collation = shared.server.table_collation();
    let run = |sql: String| async move {
        pool.execute(sqlx::AssertSqlSafe(sql.clone()))
            .await
            .map_err(|e| error::sql("creating the table", e))
    };
    if request.replace {
        run(format!("DROP TABLE IF EXISTS {}", table.sql())).await?;
        run(create_table_sql(&table, &request.schema, collation, "")?).await?;
        return Ok(());
    }
    run(create_table_sql(
        &table,
        &request.schema,
        collation,
        "IF NOT EXISTS ",
    )?)
    .await?;
    let Some(database) = table.database.as_deref() else {
        return Ok(());
    };
    // An existing table is kept; it must at least have every column of the stream.
    let existing = describe_tables(pool, database, Some(&table.table)).await?;
    let Some(info) = existing.first() else {
        return Ok(());
    };
    let missing: Vec<&str> = request
        .schema
        .fields()
        .iter()
        .filter(|f| info.schema.index_of(&f.name).is_none())
        .map(|f| f.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Schema(format!(
            "table {table} exists without the column(s) `{}`; add them, or let a snapshot \
             replace the table",
            missing.join("`, `")
        )));
    }
    Ok(())
}

/// Builds the multi-row statements of one batch, each at most `limit` bytes.
struct StatementBuilder<'a> {
    batch: &'a Batch,
    table: &'a TableName,
    /// Columns written, by batch column index.
    columns: Vec<usize>,
    prefix: String,
    suffix: String,
    /// Separator between rows and what wraps each row.
    kind: StatementKind,
    /// Where a statement of several rows is cut.
    limit: usize,
    /// The most a statement of one row may take (the server's packet limit).
    row_limit: usize,
    next_row: usize,
    row: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StatementKind {
    /// `(v, v), (v, v)`.
    Values,
    /// `k IN (v, v)`.
    KeyIn,
    /// `(k = v AND k = v) OR (..)`.
    KeyTuples,
}

impl<'a> StatementBuilder<'a> {
    fn new(table: &'a TableName, batch: &'a Batch, op: WriteOp, limit: usize) -> Result<Self> {
        let schema = batch.schema();
        let key = schema.primary_key();
        if key.is_empty() && op != WriteOp::Insert {
            return Err(Error::Schema(format!(
                "an {} needs a primary key, and the batch's schema has none",
                op_name(op)
            )));
        }
        let names = |cols: &[usize]| -> Vec<String> {
            cols.iter()
                .map(|&i| ident(&schema.fields()[i].name))
                .collect()
        };
        let all: Vec<usize> = (0..schema.len()).collect();
        let (columns, prefix, suffix, kind) = match op {
            WriteOp::Insert | WriteOp::Upsert => {
                let prefix = format!(
                    "INSERT INTO {} ({}) VALUES ",
                    table.sql(),
                    names(&all).join(", ")
                );
                let suffix = if op == WriteOp::Upsert {
                    let updates: Vec<String> = all
                        .iter()
                        .filter(|i| !key.contains(i))
                        .map(|&i| {
                            let c = ident(&schema.fields()[i].name);
                            format!("{c} = VALUES({c})")
                        })
                        .collect();
                    // A table made only of key columns has nothing to update: a no-op
                    // assignment keeps the statement valid and the row as it is.
                    let updates = if updates.is_empty() {
                        let c = ident(&schema.fields()[key[0]].name);
                        vec![format!("{c} = {c}")]
                    } else {
                        updates
                    };
                    format!(" ON DUPLICATE KEY UPDATE {}", updates.join(", "))
                } else {
                    String::new()
                };
                (all, prefix, suffix, StatementKind::Values)
            }
            WriteOp::Delete if key.len() == 1 => (
                key.to_vec(),
                format!("DELETE FROM {} WHERE {} IN (", table.sql(), names(key)[0]),
                ")".to_owned(),
                StatementKind::KeyIn,
            ),
            WriteOp::Delete => (
                key.to_vec(),
                format!("DELETE FROM {} WHERE ", table.sql()),
                String::new(),
                StatementKind::KeyTuples,
            ),
        };
        Ok(StatementBuilder {
            batch,
            table,
            columns,
            prefix,
            suffix,
            kind,
            limit,
            row_limit: limit,
            next_row: 0,
            row: String::new(),
        })
    }

    /// Lets a single row take up to `row_limit` bytes (at least the multi-row limit).
    fn with_row_limit(mut self, row_limit: usize) -> Self {
        self.row_limit = row_limit.max(self.limit);
        self
    }

    /// Writes row `r` (its written columns) into `self.row`.
    fn render_row(&mut self, r: usize) -> Result<()> {
        let schema = self.batch.schema();
        self.row.clear();
        let wrap = self.kind != StatementKind::KeyIn;
        if wrap {
            self.row.push('(');
        }
        for (j, &c) in self.columns.iter().enumerate() {
            let field = &schema.fields()[c];
            match self.kind {
                StatementKind::KeyTuples => {
                    if j > 0 {
                        self.row.push_str(" AND ");
                    }
                    push_ident(&mut self.row, &field.name);
                    self.row.push_str(" <=> ");
                }
                _ if j > 0 => self.row.push_str(", "),
                _ => {}
            }
            write_literal(
                &mut self.row,
                &self.batch.columns()[c],
                &field.logical_type,
                r,
            )
            .map_err(|why| self.value_error(field, r, &why))?;
        }
        if wrap {
            self.row.push(')');
        }
        Ok(())
    }

    #[cold]
    fn value_error(&self, field: &Field, row: usize, why: &str) -> Error {
        Error::Encode(format!(
            "table {}, column `{}`, row {row} of the batch: {why}",
            self.table, field.name
        ))
    }

    /// The next statement, or `None` when every row is in one.
    fn next_statement(&mut self) -> Option<Result<String>> {
        let rows = self.batch.num_rows();
        if self.next_row >= rows {
            return None;
        }
        let separator = if self.kind == StatementKind::KeyTuples {
            " OR "
        } else {
            ", "
        };
        let mut out = String::with_capacity(self.limit.min(1 << 20));
        out.push_str(&self.prefix);
        let mut in_statement = 0;
        while self.next_row < rows {
            if let Err(e) = self.render_row(self.next_row) {
                return Some(Err(e));
            }
            let needed = if in_statement > 0 { separator.len() } else { 0 }
                + self.row.len()
                + self.suffix.len();
            let limit = if in_statement == 0 {
                self.row_limit
            } else {
                self.limit
            };
            let full = out.len() + needed > limit
                || (self.kind != StatementKind::Values && in_statement >= MAX_KEYS_PER_DELETE);
            if full {
                if in_statement == 0 {
                    return Some(Err(Error::Encode(format!(
                        "table {}, row {} of the batch: the row alone needs a statement of {} \
                         bytes, more than the {} allowed; raise the server's \
                         max_allowed_packet (and this connection's `max_allowed_packet`)",
                        self.table,
                        self.next_row,
                        self.prefix.len() + needed,
                        self.row_limit
                    ))));
                }
                break;
            }
            if in_statement > 0 {
                out.push_str(separator);
            }
            out.push_str(&self.row);
            in_statement += 1;
            self.next_row += 1;
        }
        out.push_str(&self.suffix);
        Some(Ok(out))
    }
}

/// A statement on its way to the server.
enum Statement {
    /// SQL text with its values as literals.
    Text(String),
    /// A prepared statement, the values bound to it and their size on the wire.
    Bound(String, MySqlArguments, usize),
}

/// The statements of one write.
enum Statements<'a> {
    Text(StatementBuilder<'a>),
    Bound(BoundRows<'a>),
}

impl Statements<'_> {
    fn next_statement(&mut self) -> Option<Result<Statement>> {
        match self {
            Statements::Text(b) => b.next_statement().map(|s| s.map(Statement::Text)),
            Statements::Bound(b) => b
                .next_statement()
                .map(|s| s.map(|(sql, args, bytes)| Statement::Bound(sql, args, bytes))),
        }
    }
}

async fn write(
    pool: &MySqlPool,
    shared: &Arc<Shared>,
    request: &WriteRequest,
    batch: &Batch,
) -> Result<WriteOutcome> {
    let table = TableName::parse(&request.table, shared.database.as_deref())?;
    let offsets = TableName {
        database: shared.database.clone(),
        table: OFFSETS_TABLE.to_owned(),
    };
    let text = StatementBuilder::new(&table, batch, request.op, shared.server.statement_target)?
        .with_row_limit(shared.server.statement_limit);
    let mut statements = match request.op {
        // Rows as bound parameters: the server parses no literal (see `bind.rs`).
        WriteOp::Insert | WriteOp::Upsert => Statements::Bound(BoundRows::new(
            &table,
            batch,
            text.prefix.clone(),
            text.suffix.clone(),
            shared.server.statement_target,
            shared.server.statement_limit,
        )),
        WriteOp::Delete => Statements::Text(text),
    };
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| error::sql("starting the transaction", e))?;
    let current = sql::query(Fragment {
        sql: format!(
            "SELECT CAST(`seq` AS CHAR) FROM {} WHERE `pipeline` = ? AND `stream` = ? FOR UPDATE",
            offsets.sql()
        ),
        params: vec![
            caudal_connector::Value::Text(request.pipeline.clone()),
            caudal_connector::Value::Text(request.stream.clone()),
        ],
    })?
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| error::sql("locking the offset row", e))?;
    if let Some(row) = current {
        let last = parse_seq(raw_value(&row, 0)?)?;
        if last >= request.seq {
            tx.rollback()
                .await
                .map_err(|e| error::sql("rolling back", e))?;
            return Ok(WriteOutcome::AlreadyApplied { last_seq: last });
        }
    }
    // Statements are built on this (the host's) thread while the previous one executes on the
    // plugin's worker thread, so the server's work and ours overlap. The task owns the
    // transaction and hands it back; dropping it uncommitted rolls everything back.
    let (to_server, mut queued) = mpsc::channel::<Statement>(1);
    let op = request.op;
    let stats = Arc::clone(shared);
    let executor = tokio::spawn(async move {
        let mut affected = 0u64;
        while let Some(statement) = queued.recv().await {
            let (bytes, executed) = match statement {
                Statement::Text(sql) => (
                    sql.len(),
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut *tx)
                        .await,
                ),
                Statement::Bound(sql, args, bytes) => (
                    sql.len() + bytes,
                    sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                        .execute(&mut *tx)
                        .await,
                ),
            };
            match executed {
                Ok(done) => {
                    stats.count_statement(bytes);
                    affected += done.rows_affected();
                }
                Err(e) => return (tx, Err(error::sql(format!("{} statement", op_name(op)), e))),
            }
        }
        (tx, Ok(affected))
    });
    let mut built = Ok(());
    while let Some(statement) = statements.next_statement() {
        match statement {
            // A closed channel means the executor stopped on an error: it reports it below.
            Ok(s) => {
                if to_server.send(s).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                built = Err(e);
                break;
            }
        }
    }
    drop(to_server);
    let (mut tx, executed) = executor
        .await
        .map_err(|e| Error::Other(format!("the statement task stopped: {e}")))?;
    built?;
    let affected = executed?;
    sql::query(Fragment {
        sql: format!(
            "INSERT INTO {} (`pipeline`, `stream`, `seq`) VALUES (?, ?, ?) \
             ON DUPLICATE KEY UPDATE `seq` = VALUES(`seq`), `updated_at` = CURRENT_TIMESTAMP(6)",
            offsets.sql()
        ),
        params: vec![
            caudal_connector::Value::Text(request.pipeline.clone()),
            caudal_connector::Value::Text(request.stream.clone()),
            caudal_connector::Value::UInt(request.seq),
        ],
    })?
    .execute(&mut *tx)
    .await
    .map_err(|e| error::sql("recording the offset", e))?;
    tx.commit().await.map_err(|e| error::sql("committing", e))?;
    let rows = match request.op {
        // Rows the server found and deleted (keys absent from the table count zero).
        WriteOp::Delete => affected,
        // An upsert counts 2 for a replaced row: report the rows of the batch.
        WriteOp::Insert | WriteOp::Upsert => batch.num_rows() as u64,
    };
    Ok(WriteOutcome::Applied { rows })
}

fn op_name(op: WriteOp) -> &'static str {
    match op {
        WriteOp::Insert => "insert",
        WriteOp::Upsert => "upsert",
        WriteOp::Delete => "delete",
    }
}

fn parse_seq(raw: Option<&[u8]>) -> Result<u64> {
    raw.and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Decode("the offset row holds no valid seq".into()))
}

async fn read_offset(
    pool: &MySqlPool,
    offsets: &TableName,
    pipeline: &str,
    stream: &str,
) -> Result<Option<u64>> {
    let found = sql::query(Fragment {
        sql: format!(
            "SELECT CAST(`seq` AS CHAR) FROM {} WHERE `pipeline` = ? AND `stream` = ?",
            offsets.sql()
        ),
        params: vec![
            caudal_connector::Value::Text(pipeline.to_owned()),
            caudal_connector::Value::Text(stream.to_owned()),
        ],
    })?
    .fetch_optional(pool)
    .await;
    match found {
        Ok(Some(row)) => parse_seq(raw_value(&row, 0)?).map(Some),
        Ok(None) => Ok(None),
        // No offsets table yet: nothing was ever written through this database.
        Err(e) if error::number(&e) == Some(1146) => Ok(None),
        Err(e) => Err(error::sql(format!("reading {offsets}"), e)),
    }
}

async fn digest(pool: &MySqlPool, shared: &Shared, request: &DigestRequest) -> Result<TableDigest> {
    let table = TableName::parse(&request.table, shared.database.as_deref())?;
    let schema = Arc::new(request.schema.clone());
    let key: Vec<&Field> = schema
        .primary_key()
        .iter()
        .map(|&k| &schema.fields()[k])
        .collect();
    if key.is_empty() && !request.range.is_all() {
        return Err(Error::Schema(
            "a key range needs a schema with a primary key".into(),
        ));
    }
    let check = |b: &Bound<Vec<caudal_connector::Value>>| match b {
        Bound::Included(v) | Bound::Excluded(v) if v.len() != key.len() => {
            Err(Error::Schema(format!(
                "a key range bound has {} values but the primary key has {} columns",
                v.len(),
                key.len()
            )))
        }
        _ => Ok(()),
    };
    check(&request.range.lower)?;
    check(&request.range.upper)?;
    let filter = sql::where_all(
        sql::lower(&key, &request.range.lower)
            .into_iter()
            .chain(sql::upper(&key, &request.range.upper)),
    );
    let columns: Vec<String> = schema.fields().iter().map(|f| ident(&f.name)).collect();
    let statement = Fragment {
        sql: format!(
            "SELECT {} FROM {}{}",
            columns.join(", "),
            table.sql(),
            filter.sql
        ),
        params: filter.params,
    };
    // Worker threads digest each batch while the next one is read.
    let mut digest = Digester::new(&request.table);
    let mut builder = BatchBuilder::with_capacity(Arc::clone(&schema), DIGEST_BATCH_ROWS);
    let mut decoder: Option<RowDecoder> = None;
    let mut rows = 0usize;
    let query = sql::query(statement)?;
    let mut stream = query.fetch(pool);
    while let Some(row) = stream
        .try_next()
        .await
        .map_err(|e| error::sql("reading rows", e))?
    {
        if decoder.is_none() {
            decoder = Some(RowDecoder::new(schema.fields(), row.columns())?);
        }
        if let Some(d) = &decoder {
            d.push_row(&mut builder, &row)?;
        }
        rows += 1;
        if rows.is_multiple_of(DIGEST_BATCH_ROWS) {
            digest.push(builder.take()?);
        }
    }
    digest.push(builder.take()?);
    digest.finish()
}

async fn table_exists(pool: &MySqlPool, table: &TableName) -> Result<bool> {
    let mut params = vec![caudal_connector::Value::Text(table.table.clone())];
    let schema_filter = match &table.database {
        Some(db) => {
            params.push(caudal_connector::Value::Text(db.clone()));
            "TABLE_SCHEMA = ?"
        }
        None => "TABLE_SCHEMA = DATABASE()",
    };
    let found = sql::query(Fragment {
        sql: format!(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_NAME = ? AND {schema_filter}"
        ),
        params,
    })?
    .fetch_optional(pool)
    .await
    .map_err(|e| error::sql("looking the table up", e))?;
    Ok(found.is_some())
}

async fn replace(pool: &MySqlPool, shared: &Shared, staging: &str, table: &str) -> Result<()> {
    let staging = TableName::parse(staging, shared.database.as_deref())?;
    let table = TableName::parse(table, shared.database.as_deref())?;
    if !table_exists(pool, &staging).await? {
        return Err(Error::NotFound(format!(
            "staging table {staging} does not exist"
        )));
    }
    let run = |sql: String| async move {
        pool.execute(sqlx::AssertSqlSafe(sql))
            .await
            .map_err(|e| error::sql("swapping the tables", e))
    };
    if !table_exists(pool, &table).await? {
        run(format!("RENAME TABLE {} TO {}", staging.sql(), table.sql())).await?;
        return Ok(());
    }
    let old_name: String = format!("_caudal_old_{}", table.table)
        .chars()
        .take(64)
        .collect();
    let old = table.sibling(&old_name);
    run(format!("DROP TABLE IF EXISTS {}", old.sql())).await?;
    // One RENAME of both: readers see the old table or the new one, never neither.
    run(format!(
        "RENAME TABLE {} TO {}, {} TO {}",
        table.sql(),
        old.sql(),
        staging.sql(),
        table.sql()
    ))
    .await?;
    run(format!("DROP TABLE {}", old.sql())).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_connector::{LogicalType, Schema};

    fn batch(rows: usize, text: &str) -> Batch {
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
        let mut b = BatchBuilder::new(schema);
        for i in 0..rows {
            b.push(0, i as i64).unwrap();
            b.push(1, text).unwrap();
        }
        b.finish().unwrap()
    }

    fn all(mut s: StatementBuilder<'_>) -> Result<Vec<String>> {
        let mut out = Vec::new();
        while let Some(st) = s.next_statement() {
            out.push(st?);
        }
        Ok(out)
    }

    #[test]
    fn inserts_are_cut_under_the_limit_and_keep_every_row() {
        let table = TableName::parse("t", Some("db")).unwrap();
        let b = batch(500, "some text of forty bytes, give or take..");
        let statements =
            all(StatementBuilder::new(&table, &b, WriteOp::Insert, 4096).unwrap()).unwrap();
        assert!(statements.len() > 5, "{}", statements.len());
        let mut rows = 0;
        for s in &statements {
            assert!(s.len() <= 4096, "{}", s.len());
            assert!(s.starts_with("INSERT INTO `db`.`t` (`id`, `name`) VALUES ("));
            rows += s.matches("'some text").count();
        }
        assert_eq!(rows, 500);
        // Ids appear in order, each once.
        let joined = statements.join("\n");
        for i in [0, 1, 250, 499] {
            assert_eq!(joined.matches(&format!("({i}, ")).count(), 1, "{i}");
        }
    }

    #[test]
    fn a_large_row_goes_alone_up_to_the_packet_limit() {
        let table = TableName::parse("t", Some("db")).unwrap();
        let mut b = BatchBuilder::new(batch(0, "").schema().clone());
        for (id, text) in [(1i64, "small"), (2, &"L".repeat(6000)), (3, "small")] {
            b.push(0, id).unwrap();
            b.push(1, text).unwrap();
        }
        let b = b.finish().unwrap();
        let s = all(StatementBuilder::new(&table, &b, WriteOp::Insert, 4096)
            .unwrap()
            .with_row_limit(8192))
        .unwrap();
        assert_eq!(s.len(), 3, "the large row is a statement of its own");
        assert!(s[1].len() > 6000 && s[1].len() <= 8192);
    }

    #[test]
    fn upserts_update_non_key_columns() {
        let table = TableName::parse("t", Some("db")).unwrap();
        let b = batch(2, "x");
        let s = all(StatementBuilder::new(&table, &b, WriteOp::Upsert, 1 << 20).unwrap()).unwrap();
        assert_eq!(
            s,
            vec![
                "INSERT INTO `db`.`t` (`id`, `name`) VALUES (0, 'x'), (1, 'x') \
                 ON DUPLICATE KEY UPDATE `name` = VALUES(`name`)"
            ]
        );
    }

    #[test]
    fn deletes_by_key() {
        let table = TableName::parse("t", Some("db")).unwrap();
        let b = batch(2500, "x");
        let s = all(StatementBuilder::new(&table, &b, WriteOp::Delete, 1 << 20).unwrap()).unwrap();
        assert_eq!(s.len(), 3);
        assert!(
            s[0].starts_with("DELETE FROM `db`.`t` WHERE `id` IN (0, 1, 2"),
            "{}",
            &s[0][..60]
        );
        assert!(s[2].ends_with("2498, 2499)"));
    }

    #[test]
    fn a_row_larger_than_the_limit_is_a_clear_error() {
        let table = TableName::parse("t", Some("db")).unwrap();
        let big = "y".repeat(5000);
        let b = batch(1, &big);
        let err = all(StatementBuilder::new(&table, &b, WriteOp::Insert, 4096).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_allowed_packet") && err.contains("row 0"),
            "{err}"
        );
    }

    #[test]
    fn create_table_text() {
        let schema = Schema::new(
            vec![
                Field::new("id", LogicalType::Int64, false),
                Field::new("ts", LogicalType::Timestamp { precision: 6 }, true),
                Field::new("k", LogicalType::Varchar { max_length: None }, false),
            ],
            &["id", "k"],
        )
        .unwrap();
        let t = TableName::parse("t", Some("db")).unwrap();
        let sql = create_table_sql(&t, &schema, "utf8mb4_bin", "").unwrap();
        assert_eq!(
            sql,
            "CREATE TABLE `db`.`t` (`id` bigint NOT NULL, `ts` timestamp(6) NULL DEFAULT NULL, \
             `k` varchar(768) NOT NULL, PRIMARY KEY (`id`, `k`)) ENGINE=InnoDB DEFAULT \
             CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        );
    }
}
