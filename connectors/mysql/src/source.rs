//! The source: discovery from `information_schema`, and reads of a table or a query in chunks.
//!
//! A table with a primary key is read in keyset pages: each page is one statement
//! `... WHERE <bounds> AND <after the last key> ORDER BY <key> LIMIT n`, so no statement runs
//! for long, no row is read twice, and a read started with `from = Excluded(cursor)` resumes
//! mid-table. The key of the pages is the primary key, preceded by the cursor column when
//! there is one (so rows come in cursor order). Chunks are cut independently of pages, when
//! [`ChunkLimits`] are reached, but never between two rows with the same cursor value: a
//! chunk's cursor is then a safe point to resume from. Tables without a primary key, and
//! queries, are read with one statement.
//!
//! Where the cursor's value changes is decided on the bytes the server sends, so a cursor
//! column should be numeric, temporal, or text with a binary collation: under a
//! case-insensitive collation `'a'` and `'A'` are one value to MySQL but two to the reader,
//! which could end a chunk between them, and resuming after `'a'` would skip `'A'`.
//!
//! Bounds (`from`, `to`) apply to the cursor column, or, for a table read without one, to its
//! primary key when that key is a single column (the chunk's cursor is then the last key).
//! A query sees them as the session variables `@from` and `@to`; an unbounded side is the
//! smallest or largest value of the cursor's type, so `fecha >= @from AND fecha < @to`
//! selects everything on a first run.
//!
//! A read runs as a task on the plugin's runtime that holds one pooled connection and sends
//! finished chunks through a channel of one: the host journals chunk N while chunk N+1 is
//! being decoded. Dropping the reader stops the task.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use caudal_connector::{
    BatchBuilder, BatchReader, Chunk, ChunkLimits, Field, LogicalType, ReadRequest, ReadTarget,
    Schema, Source, TableInfo, Value,
};
use futures::TryStreamExt as _;
use sqlx::mysql::{MySql, MySqlPool, MySqlRow};
use sqlx::pool::PoolConnection;
use sqlx::{Executor as _, Row as _};
use tokio::sync::mpsc;

use crate::decode::{RowDecoder, decode_value, raw_value};
use crate::error::{self, Error, Result};
use crate::sql::{self, Fragment, TableName, ident};
use crate::types::ColumnType;
use crate::{MySqlConnector, Shared};

/// Name of the temporary table a query's result types are read from.
const DESCRIBE_TABLE: &str = "_caudal_describe";
/// Tables of caudal's own bookkeeping, not offered by discovery.
const OWN_TABLES: [&str; 1] = ["_caudal_offsets"];
/// How long the server waits for the reader to take rows (the host may be busy writing the
/// previous chunk to a slow sink).
const READ_WRITE_TIMEOUT_SECS: u32 = 3600;

impl Source for MySqlConnector {
    fn discover(&mut self) -> caudal_connector::Result<Vec<TableInfo>> {
        let result = self.default_database("discovery").map(str::to_owned);
        let result = result.and_then(|db| {
            self.runtime
                .block_on(describe_tables(&self.pool, &db, None))
                .map_err(|e| e.context(format!("discovering database `{db}`")))
        });
        result.map_err(|e| self.shared.sdk(e))
    }

    fn read(&mut self, request: &ReadRequest) -> caudal_connector::Result<Box<dyn BatchReader>> {
        let shared = Arc::clone(&self.shared);
        let runtime = Arc::clone(&self.runtime);
        let started = self.runtime.block_on(async {
            let plan = match &request.target {
                ReadTarget::Table(name) => plan_table(&self.pool, &shared, name, request).await,
                ReadTarget::Query(text) => plan_query(&self.pool, text, request).await,
            }?;
            let (tx, rx) = mpsc::channel(1);
            let schema = Arc::clone(&plan.schema);
            let task = tokio::spawn(produce(plan, tx));
            Ok::<_, Error>((schema, rx, task))
        });
        let (schema, chunks, task) = started.map_err(|e| shared.sdk(e))?;
        Ok(Box::new(MySqlReader {
            schema,
            chunks,
            task,
            shared,
            _runtime: runtime,
            finished: None,
        }))
    }
}

/// Runs a metadata query and returns every row's columns as text (NULL as `None`).
async fn text_rows(pool: &MySqlPool, q: Fragment) -> Result<Vec<Vec<Option<String>>>> {
    let rows = sql::query(q)?
        .fetch_all(pool)
        .await
        .map_err(|e| error::sql("reading information_schema", e))?;
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| Ok(raw_value(row, i)?.map(|b| String::from_utf8_lossy(b).into_owned())))
                .collect()
        })
        .collect()
}

/// The tables of `database` (or only `only`), with columns, types and primary keys.
pub(crate) async fn describe_tables(
    pool: &MySqlPool,
    database: &str,
    only: Option<&str>,
) -> Result<Vec<TableInfo>> {
    let filtered = |sql: &str, order: &str| {
        let mut params = vec![Value::Text(database.to_owned())];
        let mut sql = sql.to_owned();
        if let Some(t) = only {
            sql.push_str(" AND TABLE_NAME = ?");
            params.push(Value::Text(t.to_owned()));
        }
        sql.push_str(order);
        Fragment { sql, params }
    };
    let tables = text_rows(
        pool,
        filtered(
            "SELECT TABLE_NAME, CAST(TABLE_ROWS AS CHAR) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ?",
            " ORDER BY TABLE_NAME",
        ),
    )
    .await?;
    let columns = text_rows(
        pool,
        filtered(
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ?",
            " ORDER BY TABLE_NAME, ORDINAL_POSITION",
        ),
    )
    .await?;
    let keys = text_rows(
        pool,
        filtered(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND CONSTRAINT_NAME = 'PRIMARY'",
            " ORDER BY TABLE_NAME, ORDINAL_POSITION",
        ),
    )
    .await?;
    // MariaDB's `json` is `longtext` with a `json_valid` check; MySQL's has its own type and
    // a CHECK_CONSTRAINTS table without TABLE_NAME, so the query fails there: no JSON texts.
    let checks = text_rows(
        pool,
        filtered(
            "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = ?",
            "",
        ),
    )
    .await
    .unwrap_or_default();

    let cell = |row: &[Option<String>], i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let mut json: BTreeMap<(String, String), ()> = BTreeMap::new();
    for row in &checks {
        let clause = cell(row, 1);
        if let Some(col) = clause
            .strip_prefix("json_valid(`")
            .and_then(|r| r.strip_suffix("`)"))
        {
            json.insert((cell(row, 0), col.replace("``", "`")), ());
        }
    }
    let mut fields: BTreeMap<String, Vec<Field>> = BTreeMap::new();
    for row in &columns {
        let (table, name, type_text) = (cell(row, 0), cell(row, 1), cell(row, 2));
        let is_json = json.contains_key(&(table.clone(), name.clone()));
        let logical = ColumnType::parse(&type_text)
            .and_then(|t| t.logical(is_json))
            .map_err(|e| e.context(format!("table `{table}`, column `{name}`")))?;
        let nullable = cell(row, 3).eq_ignore_ascii_case("YES");
        fields
            .entry(table)
            .or_default()
            .push(Field::new(name, logical, nullable));
    }
    let mut pk: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in &keys {
        pk.entry(cell(row, 0)).or_default().push(cell(row, 1));
    }
    let mut out = Vec::new();
    for row in &tables {
        let name = cell(row, 0);
        if OWN_TABLES.contains(&name.as_str()) {
            continue;
        }
        let cols = fields.remove(&name).unwrap_or_default();
        let key: Vec<&str> = pk
            .get(&name)
            .map_or(Vec::new(), |k| k.iter().map(String::as_str).collect());
        let schema = Schema::new(cols, &key)
            .map_err(|e| Error::Schema(format!("table `{name}`: {}", e.message())))?;
        out.push(TableInfo {
            estimated_rows: row.get(1).cloned().flatten().and_then(|r| r.parse().ok()),
            name,
            schema,
        });
    }
    Ok(out)
}

/// Everything the reading task needs, decided before it starts.
struct ReadPlan {
    schema: Arc<Schema>,
    /// What the errors call the read (`table `db`.`t``, `query`).
    label: String,
    /// The connection the read runs on (a query's session variables live on it).
    conn: PoolConnection<MySql>,
    /// `SELECT <columns> FROM <source>`.
    select: String,
    /// Conditions of every page (the cursor bounds).
    bounds: Vec<Fragment>,
    /// Columns of the page order; pages are keyset pages when non-empty and `paged`.
    order: Vec<usize>,
    /// Whether `order` is unique (a primary key is in it), so pages can follow each other.
    paged: bool,
    /// Rows per page.
    page_rows: usize,
    /// The cursor column: chunks are cut only where its value changes.
    cursor: Option<usize>,
    /// The column whose last value is each chunk's cursor.
    report: Option<usize>,
    limits: ChunkLimits,
}

impl ReadPlan {
    fn fields(&self, columns: &[usize]) -> Vec<&Field> {
        columns.iter().map(|&i| &self.schema.fields()[i]).collect()
    }

    /// The statement of the page after `last` (the first page for `None`).
    fn page(&self, last: Option<&[Value]>) -> Fragment {
        let mut parts = self.bounds.clone();
        if let Some(last) = last {
            parts.push(sql::after(&self.fields(&self.order), last));
        }
        let filter = sql::where_all(parts);
        let mut text = self.select.clone();
        text.push_str(&filter.sql);
        if !self.order.is_empty() {
            text.push_str(" ORDER BY ");
            let names: Vec<String> = self
                .order
                .iter()
                .map(|&i| ident(&self.schema.fields()[i].name))
                .collect();
            text.push_str(&names.join(", "));
        }
        if self.paged {
            text.push_str(&format!(" LIMIT {}", self.page_rows));
        }
        Fragment {
            sql: text,
            params: filter.params,
        }
    }
}

/// Rows per keyset page: a few chunks, so that a page's query start-up is paid rarely, and
/// bounded, so that no statement holds its read view for long.
fn page_rows(limits: &ChunkLimits) -> usize {
    limits.max_rows.saturating_mul(4).clamp(4, 200_000)
}

fn column_index(schema: &Schema, name: &str, what: &str) -> Result<usize> {
    schema.index_of(name).ok_or_else(|| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name.as_str()).collect();
        Error::NotFound(format!(
            "cursor column `{name}` is not a column of {what} (columns: {})",
            names.join(", ")
        ))
    })
}

fn is_unbounded(request: &ReadRequest) -> bool {
    matches!(
        (&request.from, &request.to),
        (Bound::Unbounded, Bound::Unbounded)
    )
}

async fn plan_table(
    pool: &MySqlPool,
    shared: &Shared,
    name: &str,
    request: &ReadRequest,
) -> Result<ReadPlan> {
    let table = TableName::parse(name, shared.database.as_deref())?;
    let label = format!("reading table {table}");
    let database = table.database.clone().ok_or_else(|| {
        Error::Config(format!(
            "{label}: no database; qualify the name (`database.table`) or set `database`"
        ))
    })?;
    let info = describe_tables(pool, &database, Some(&table.table))
        .await
        .map_err(|e| e.context(&label))?
        .pop()
        .ok_or_else(|| Error::NotFound(format!("table {table} does not exist")))?;
    let schema = Arc::new(info.schema);
    let pk = schema.primary_key().to_vec();
    let cursor = match &request.cursor_column {
        Some(c) => Some(column_index(&schema, c, &format!("table {table}"))?),
        None => None,
    };
    let (order, bound_column) = match cursor {
        Some(c) => {
            let mut order = vec![c];
            order.extend(pk.iter().copied().filter(|&k| k != c));
            (order, Some(c))
        }
        None if pk.len() == 1 => (pk.clone(), Some(pk[0])),
        None => {
            if !is_unbounded(request) {
                return Err(Error::Unsupported(format!(
                    "{label}: bounds need a cursor column or a single-column primary key"
                )));
            }
            (pk.clone(), None)
        }
    };
    let mut bounds = Vec::new();
    if let Some(b) = bound_column {
        let field = [&schema.fields()[b]];
        bounds.extend(sql::lower(&field, &sql::single(&request.from)));
        bounds.extend(sql::upper(&field, &sql::single(&request.to)));
    }
    let columns: Vec<String> = schema.fields().iter().map(|f| ident(&f.name)).collect();
    let select = format!("SELECT {} FROM {}", columns.join(", "), table.sql());
    let conn = acquire(pool, &label).await?;
    Ok(ReadPlan {
        label,
        conn,
        select,
        bounds,
        paged: !pk.is_empty(),
        order,
        page_rows: page_rows(&request.limits),
        cursor,
        report: bound_column,
        limits: request.limits,
        schema,
    })
}

async fn acquire(pool: &MySqlPool, label: &str) -> Result<PoolConnection<MySql>> {
    let mut conn = pool.acquire().await.map_err(|e| error::sql(label, e))?;
    conn.execute(sqlx::AssertSqlSafe(format!(
        "SET SESSION net_write_timeout = {READ_WRITE_TIMEOUT_SECS}"
    )))
    .await
    .map_err(|e| error::sql(label, e))?;
    Ok(conn)
}

async fn plan_query(pool: &MySqlPool, text: &str, request: &ReadRequest) -> Result<ReadPlan> {
    let label = "reading the stream's query".to_owned();
    let mut conn = acquire(pool, &label).await?;
    let run = |sql: String| sqlx::AssertSqlSafe(sql);
    conn.execute("SET @from = NULL, @to = NULL")
        .await
        .map_err(|e| error::sql(&label, e))?;
    let body = text.trim().trim_end_matches(';');
    let source = format!("({body}) AS `_caudal_q`");
    // The result's exact types (precision, scale, length, enum values) are those of a table
    // created from it; a temporary table lives only in this session.
    let describe = async {
        conn.execute(run(format!(
            "CREATE TEMPORARY TABLE {} AS SELECT * FROM {source} LIMIT 0",
            ident(DESCRIBE_TABLE)
        )))
        .await?;
        let rows = conn
            .fetch_all(run(format!("SHOW COLUMNS FROM {}", ident(DESCRIBE_TABLE))))
            .await;
        conn.execute(run(format!(
            "DROP TEMPORARY TABLE IF EXISTS {}",
            ident(DESCRIBE_TABLE)
        )))
        .await?;
        rows
    };
    let rows = describe.await.map_err(|e| {
        let hint = match error::number(&e) {
            // Access denied: the result's types are read through a temporary table.
            Some(1044 | 1142) => " (the user needs the CREATE TEMPORARY TABLES privilege)",
            _ => "",
        };
        error::sql(
            format!("{label}: finding the result's column types{hint}"),
            e,
        )
    })?;
    let mut fields = Vec::with_capacity(rows.len());
    for row in &rows {
        let text = |i: usize| -> Result<String> {
            Ok(raw_value(row, i)?
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default())
        };
        let name = text(0)?;
        let logical = ColumnType::parse(&text(1)?)
            .and_then(|t| t.logical(false))
            .map_err(|e| e.context(format!("{label}, column `{name}`")))?;
        fields.push(Field::new(
            name,
            logical,
            text(2)?.eq_ignore_ascii_case("YES"),
        ));
    }
    let schema = Arc::new(
        Schema::new(fields, &[]).map_err(|e| Error::Schema(format!("{label}: {}", e.message())))?,
    );
    let cursor = match &request.cursor_column {
        Some(c) => Some(column_index(&schema, c, "the query's result")?),
        None => None,
    };
    let cursor_type = cursor.map(|c| &schema.fields()[c].logical_type);
    let vars = Fragment {
        sql: match cursor_type {
            Some(t) => format!(
                "SET @from = {}, @to = {}",
                sql::placeholder(t),
                sql::placeholder(t)
            ),
            None => "SET @from = ?, @to = ?".into(),
        },
        params: vec![
            variable_value(&request.from, cursor_type, Extreme::Smallest),
            variable_value(&request.to, cursor_type, Extreme::Largest),
        ],
    };
    sql::query(vars)?
        .execute(&mut *conn)
        .await
        .map_err(|e| error::sql(format!("{label}: setting @from and @to"), e))?;
    let mut bounds = Vec::new();
    if let Some(c) = cursor {
        let field = [&schema.fields()[c]];
        bounds.extend(sql::lower(&field, &sql::single(&request.from)));
        bounds.extend(sql::upper(&field, &sql::single(&request.to)));
    }
    Ok(ReadPlan {
        label,
        conn,
        select: format!("SELECT * FROM {source}"),
        bounds,
        order: cursor.into_iter().collect(),
        paged: false,
        page_rows: page_rows(&request.limits),
        cursor,
        report: cursor,
        limits: request.limits,
        schema,
    })
}

#[derive(Clone, Copy)]
enum Extreme {
    Smallest,
    Largest,
}

/// The value of `@from` / `@to` for a bound: the bound's value, or for an unbounded side the
/// extreme of the cursor's type (NULL when the type has none, e.g. text).
fn variable_value(bound: &Bound<Value>, t: Option<&LogicalType>, side: Extreme) -> Value {
    use LogicalType as L;
    let v = match bound {
        Bound::Included(v) | Bound::Excluded(v) => return v.clone(),
        Bound::Unbounded => t,
    };
    let small = matches!(side, Extreme::Smallest);
    let days = |y: i64, m: u32, d: u32| crate::calendar::days_from_civil(y, m, d);
    let micros_of = |day: i64, extra: i64| day * crate::calendar::MICROS_PER_DAY + extra;
    let last_micro = crate::calendar::MICROS_PER_DAY - 1;
    match v {
        Some(L::Int8 | L::Int16 | L::Int32 | L::Int64 | L::Year) => {
            Value::Int(if small { i64::MIN } else { i64::MAX })
        }
        Some(L::UInt8 | L::UInt16 | L::UInt32 | L::UInt64) => {
            if small {
                Value::Int(0)
            } else {
                Value::UInt(u64::MAX)
            }
        }
        Some(L::Float32 | L::Float64) => Value::Float(if small { f64::MIN } else { f64::MAX }),
        Some(L::Decimal { precision, scale }) => {
            let max = 10i128.pow(u32::from(*precision)) - 1;
            Value::Decimal {
                unscaled: if small { -max } else { max },
                scale: *scale,
            }
        }
        Some(L::Date) => Value::Date(if small {
            days(1000, 1, 1) as i32
        } else {
            days(9999, 12, 31) as i32
        }),
        Some(L::DateTime { .. }) => Value::DateTime(if small {
            micros_of(days(1000, 1, 1), 0)
        } else {
            micros_of(days(9999, 12, 31), last_micro)
        }),
        Some(L::Timestamp { .. }) => Value::Timestamp(if small {
            1_000_000
        } else {
            2_147_483_647_999_999
        }),
        Some(L::Time { .. }) => {
            let max = (838 * 3600 + 59 * 60 + 59) * 1_000_000;
            Value::Time(if small { -max } else { max })
        }
        _ => Value::Null,
    }
}

/// The reading task: pages, decoding, chunk cuts; sends `Ok(None)` when done.
async fn produce(mut plan: ReadPlan, tx: mpsc::Sender<Result<Option<Chunk>>>) {
    let label = plan.label.clone();
    let outcome = read_pages(&mut plan, &tx).await;
    let last = match outcome {
        Ok(()) => Ok(None),
        Err(e) => Err(e.context(label)),
    };
    // The receiver is gone only if the reader was dropped: nobody is left to tell.
    let _ = tx.send(last).await;
}

/// The raw bytes of the cursor value of the last row pushed (to find where it changes).
#[derive(Default)]
struct Boundary {
    set: bool,
    null: bool,
    raw: Vec<u8>,
}

impl Boundary {
    fn same(&self, v: Option<&[u8]>) -> bool {
        self.set
            && match v {
                None => self.null,
                Some(b) => !self.null && self.raw == b,
            }
    }

    fn remember(&mut self, v: Option<&[u8]>) {
        self.set = true;
        self.null = v.is_none();
        self.raw.clear();
        if let Some(b) = v {
            self.raw.extend_from_slice(b);
        }
    }
}

async fn read_pages(plan: &mut ReadPlan, tx: &mpsc::Sender<Result<Option<Chunk>>>) -> Result<()> {
    let capacity = plan.limits.max_rows.clamp(1, 1 << 16);
    let mut builder = BatchBuilder::with_capacity(Arc::clone(&plan.schema), capacity);
    let mut decoder: Option<RowDecoder> = None;
    let mut boundary = Boundary::default();
    let mut last_key: Option<Vec<Value>> = None;
    let mut rows_in_chunk = 0usize;
    let mut rows_read = 0u64;
    loop {
        let page = plan.page(last_key.as_deref());
        let query = sql::query(page)?;
        let mut stream = query.fetch(&mut *plan.conn);
        let mut in_page = 0usize;
        let mut last_row: Option<MySqlRow> = None;
        while let Some(row) = stream
            .try_next()
            .await
            .map_err(|e| error::sql("fetching rows", e))?
        {
            if decoder.is_none() {
                decoder = Some(RowDecoder::new(plan.schema.fields(), row.columns())?);
            }
            let Some(d) = decoder.as_ref() else {
                continue;
            };
            let cursor_raw = match plan.cursor {
                Some(c) => Some(raw_value(&row, c)?),
                None => None,
            };
            if rows_in_chunk > 0
                && builder.is_full(&plan.limits)
                && !cursor_raw.is_some_and(|v| boundary.same(v))
            {
                if !send(&mut builder, plan.report, tx).await? {
                    return Ok(());
                }
                rows_in_chunk = 0;
            }
            d.push_row(&mut builder, &row)
                .map_err(|e| e.context(format!("row {} of the read", rows_read + 1)))?;
            if let Some(v) = cursor_raw {
                boundary.remember(v);
            }
            rows_in_chunk += 1;
            rows_read += 1;
            in_page += 1;
            last_row = Some(row);
        }
        drop(stream);
        if !plan.paged || in_page < plan.page_rows {
            break;
        }
        let (Some(row), Some(d)) = (last_row.as_ref(), decoder.as_ref()) else {
            break;
        };
        let mut key = Vec::with_capacity(plan.order.len());
        for &k in &plan.order {
            let column = d
                .column(k)
                .ok_or_else(|| Error::Other(format!("no decoder for column {k}")))?;
            key.push(decode_value(
                &plan.schema.fields()[k],
                column,
                raw_value(row, k)?,
            )?);
        }
        last_key = Some(key);
    }
    if rows_in_chunk > 0 {
        send(&mut builder, plan.report, tx).await?;
    }
    Ok(())
}

/// Sends the chunk built so far; `false` if the reader is gone.
async fn send(
    builder: &mut BatchBuilder,
    report: Option<usize>,
    tx: &mpsc::Sender<Result<Option<Chunk>>>,
) -> Result<bool> {
    let batch = builder.take()?;
    let cursor = match (report, batch.num_rows()) {
        (Some(c), n) if n > 0 => batch.value(n - 1, c),
        _ => None,
    };
    Ok(tx.send(Ok(Some(Chunk { batch, cursor }))).await.is_ok())
}

/// The reader handed to the host: receives chunks from the reading task.
struct MySqlReader {
    schema: Arc<Schema>,
    chunks: mpsc::Receiver<Result<Option<Chunk>>>,
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
    /// Keeps the runtime (and so the task) alive even if the connection is closed first.
    _runtime: Arc<tokio::runtime::Runtime>,
    /// Set once the read ended: `Ok` when complete, else the error, repeated on every call.
    finished: Option<caudal_connector::Result<()>>,
}

impl BatchReader for MySqlReader {
    fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    fn next_chunk(&mut self) -> caudal_connector::Result<Option<Chunk>> {
        if let Some(done) = &self.finished {
            return done.clone().map(|()| None);
        }
        let outcome = match self.chunks.blocking_recv() {
            Some(Ok(Some(chunk))) => return Ok(Some(chunk)),
            Some(Ok(None)) => Ok(()),
            Some(Err(e)) => Err(self.shared.sdk(e)),
            None => Err(self.shared.sdk(Error::Other(
                "the read stopped before its end (the connection was closed)".into(),
            ))),
        };
        self.finished = Some(outcome.clone());
        outcome.map(|()| None)
    }
}

impl Drop for MySqlReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}
