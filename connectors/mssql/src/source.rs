//! The source: discovery from `INFORMATION_SCHEMA`, and reads of a table or a query in chunks.
//!
//! A table with a primary key is read in keyset pages: each page is one statement
//! `SELECT TOP (n) ... WHERE <bounds> AND <after the last key> ORDER BY <key>`, so no
//! statement runs for long, no row is read twice, and a read started with
//! `from = Excluded(cursor)` resumes mid-table. The key of the pages is the primary key,
//! preceded by the cursor column when there is one (so rows come in cursor order). A table
//! without a key is read in `OFFSET .. FETCH` pages ordered by the cursor and then every
//! comparable column. A query is read with one statement, its bounds as `@from` / `@to`.
//!
//! Chunks are cut when [`ChunkLimits`] are reached, but never between two rows with the same
//! cursor value: a chunk's cursor is then a safe point to resume from. Cursor values are bound
//! in the cursor column's own type, so a `datetime` cursor (1/300 s ticks, read as truncated
//! microseconds) is compared tick for tick and the last row is not read again.
//!
//! Bounds (`from`, `to`) apply to the cursor column, or, for a table read without one, to its
//! primary key when that key is a single column (the chunk's cursor is then the last key).
//!
//! A read runs as a task on the plugin's runtime with its own connection and sends finished
//! chunks through a channel of one. Dropping the reader stops the task.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use caudal_connector::{
    BatchBuilder, BatchReader, Chunk, ChunkLimits, Field, ReadRequest, ReadTarget, Schema, Source,
    TableInfo, Value,
};
use futures::TryStreamExt as _;
use tokio::sync::mpsc;

use crate::decode;
use crate::error::{self, Error, Result};
use crate::sql::{self, Condition, SqlColumn, TableName};
use crate::types::SqlType;
use crate::{MsSqlConnector, Shared, TdsClient, connect, fetch, query};

impl Source for MsSqlConnector {
    fn discover(&mut self) -> caudal_connector::Result<Vec<TableInfo>> {
        let result = self.with_client(async |client, shared| {
            describe_tables(client, shared.schema(), None)
                .await
                .map(|tables| tables.into_iter().map(|t| t.info).collect())
                .map_err(|e| e.context(format!("discovering schema `{}`", shared.schema())))
        });
        result.map_err(|e| self.shared.sdk(e))
    }

    fn read(&mut self, request: &ReadRequest) -> caudal_connector::Result<Box<dyn BatchReader>> {
        let shared = Arc::clone(&self.shared);
        let runtime = Arc::clone(&self.runtime);
        let started = self.runtime.block_on(async {
            let mut client = connect(&shared.config).await?;
            let plan = match &request.target {
                ReadTarget::Table(name) => plan_table(&mut client, &shared, name, request).await,
                ReadTarget::Query(text) => plan_query(&mut client, text, request).await,
            }?;
            let (tx, rx) = mpsc::channel(1);
            let schema = Arc::clone(&plan.schema);
            let task = tokio::spawn(async move {
                let result = produce(client, plan, &tx).await;
                // The reader may be gone; then nobody waits for the outcome.
                let _ = tx.send(result.map(|()| None)).await;
            });
            Ok::<_, Error>((schema, rx, task))
        });
        let (schema, chunks, task) = started.map_err(|e| shared.sdk(e))?;
        Ok(Box::new(MsSqlReader {
            schema,
            chunks,
            task,
            shared,
            _runtime: runtime,
            finished: None,
        }))
    }
}

/// A table with the SQL Server types of its columns.
pub(crate) struct DescribedTable {
    pub info: TableInfo,
    pub columns: Vec<SqlColumn>,
}

fn cell_text(row: &tiberius::Row, i: usize) -> Option<String> {
    row.try_get::<&str, _>(i).ok().flatten().map(str::to_owned)
}

fn cell_int(row: &tiberius::Row, i: usize) -> Option<i64> {
    row.try_get::<i32, _>(i).ok().flatten().map(i64::from)
}

/// The tables of `schema` (or only `only`), with columns, SQL Server types and primary keys.
pub(crate) async fn describe_tables(
    client: &mut TdsClient,
    schema: &str,
    only: Option<&str>,
) -> Result<Vec<DescribedTable>> {
    let what = "reading INFORMATION_SCHEMA";
    let tables = fetch(client, &sql::list_tables(schema, only), what).await?;
    let columns = fetch(client, &sql::list_columns(schema, only), what).await?;
    let keys = fetch(client, &sql::list_primary_keys(schema, only), what).await?;
    let mut fields: BTreeMap<String, Vec<SqlColumn>> = BTreeMap::new();
    for row in &columns {
        let table = cell_text(row, 0).unwrap_or_default();
        let name = cell_text(row, 1).unwrap_or_default();
        let data_type = cell_text(row, 2).unwrap_or_default();
        let sql_type = SqlType::from_catalog(
            &data_type,
            cell_int(row, 3),
            cell_int(row, 4),
            cell_int(row, 5),
            cell_int(row, 6),
        )
        .map_err(|e| e.context(format!("table `{schema}.{table}`, column `{name}`")))?;
        let nullable = cell_text(row, 7).is_some_and(|n| n.eq_ignore_ascii_case("YES"));
        fields
            .entry(table)
            .or_default()
            .push(SqlColumn::new(name, sql_type, nullable));
    }
    let mut pk: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in &keys {
        pk.entry(cell_text(row, 0).unwrap_or_default())
            .or_default()
            .push(cell_text(row, 1).unwrap_or_default());
    }
    let mut out = Vec::new();
    for row in &tables {
        let name = cell_text(row, 0).unwrap_or_default();
        if name.starts_with("_caudal_") {
            continue;
        }
        let cols = fields.remove(&name).unwrap_or_default();
        let key: Vec<&str> = pk
            .get(&name)
            .map_or(Vec::new(), |k| k.iter().map(String::as_str).collect());
        let logical: Vec<Field> = cols
            .iter()
            .map(|c| Field::new(c.name.clone(), c.sql_type.logical(), c.nullable))
            .collect();
        let table_schema = Schema::new(logical, &key)
            .map_err(|e| Error::Schema(format!("table `{schema}.{name}`: {}", e.message())))?;
        out.push(DescribedTable {
            info: TableInfo {
                name,
                schema: table_schema,
                estimated_rows: None,
            },
            columns: cols,
        });
    }
    Ok(out)
}

/// What a read pages through.
enum Paging {
    /// Keyset pages over these columns (the cursor, then the primary key).
    Keyset(Vec<usize>),
    /// `OFFSET .. FETCH` pages ordered by these columns.
    Offset(Vec<usize>),
    /// One statement: a query.
    Query(sql::Statement),
}

/// Everything the reading task needs, decided before it starts.
struct ReadPlan {
    schema: Arc<Schema>,
    /// The table read (for pages) and what errors call the read.
    table: Option<TableName>,
    label: String,
    columns: Vec<SqlColumn>,
    /// Conditions of every page (the cursor bounds).
    bounds: Vec<Condition>,
    paging: Paging,
    /// Rows per page.
    page_rows: usize,
    /// The cursor column: chunks are cut only where its value changes.
    cursor: Option<usize>,
    /// The column whose last value is each chunk's cursor.
    report: Option<usize>,
    limits: ChunkLimits,
}

impl ReadPlan {
    fn page(&self, last: Option<&[Value]>, offset: u64) -> Option<sql::Statement> {
        let table = self.table.as_ref()?;
        let cols = |idx: &[usize]| -> Vec<SqlColumn> {
            idx.iter().map(|&i| self.columns[i].clone()).collect()
        };
        match &self.paging {
            Paging::Keyset(order) => {
                let mut conditions = self.bounds.clone();
                if let Some(last) = last {
                    conditions.push(Condition::Lower(
                        cols(order),
                        Bound::Excluded(last.to_vec()),
                    ));
                }
                let order: Vec<&SqlColumn> = order.iter().map(|&i| &self.columns[i]).collect();
                Some(sql::keyset_page(
                    table,
                    &self.columns,
                    &conditions,
                    &order,
                    self.page_rows,
                ))
            }
            Paging::Offset(order) => {
                let order: Vec<&SqlColumn> = order.iter().map(|&i| &self.columns[i]).collect();
                Some(sql::offset_page(
                    table,
                    &self.columns,
                    &self.bounds,
                    &order,
                    offset,
                    self.page_rows,
                ))
            }
            Paging::Query(_) => None,
        }
    }
}

/// Rows per page: a few chunks, so that a page's start-up is paid rarely, and bounded, so that
/// no statement holds its locks for long.
fn page_rows(limits: &ChunkLimits) -> usize {
    limits.max_rows.saturating_mul(2).clamp(2, 100_000)
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
    client: &mut TdsClient,
    shared: &Shared,
    name: &str,
    request: &ReadRequest,
) -> Result<ReadPlan> {
    let table = TableName::parse(name, shared.schema())?;
    let label = format!("reading table {table}");
    let described = describe_tables(client, &table.schema, Some(&table.table))
        .await
        .map_err(|e| e.context(&label))?
        .pop()
        .ok_or_else(|| Error::NotFound(format!("table {table} does not exist")))?;
    let schema = Arc::new(described.info.schema);
    let columns = described.columns;
    let pk = schema.primary_key().to_vec();
    let cursor = match &request.cursor_column {
        Some(c) => Some(column_index(&schema, c, &format!("table {table}"))?),
        None => None,
    };
    if let Some(c) = cursor
        && !columns[c].sql_type.comparable()
    {
        return Err(Error::Unsupported(format!(
            "{label}: cursor column `{}` is of type {}, which SQL Server cannot compare",
            columns[c].name, columns[c].sql_type
        )));
    }
    let bound_column = match cursor {
        Some(c) => Some(c),
        None if pk.len() == 1 => Some(pk[0]),
        None if is_unbounded(request) => None,
        None => {
            return Err(Error::Unsupported(format!(
                "{label}: bounds need a cursor column or a single-column primary key"
            )));
        }
    };
    let paging = if pk.is_empty() {
        let mut order: Vec<usize> = cursor.into_iter().collect();
        order.extend(
            (0..columns.len()).filter(|&i| Some(i) != cursor && columns[i].sql_type.comparable()),
        );
        if order.is_empty() {
            return Err(Error::Unsupported(format!(
                "{label}: the table has no key and no column SQL Server can order by"
            )));
        }
        Paging::Offset(order)
    } else {
        let mut order: Vec<usize> = cursor.into_iter().collect();
        order.extend(pk.iter().copied().filter(|&k| Some(k) != cursor));
        Paging::Keyset(order)
    };
    let mut bounds = Vec::new();
    if let Some(b) = bound_column {
        let col = vec![columns[b].clone()];
        bounds.push(Condition::Lower(col.clone(), sql::single(&request.from)));
        bounds.push(Condition::Upper(col, sql::single(&request.to)));
    }
    Ok(ReadPlan {
        schema,
        table: Some(table),
        label,
        columns,
        bounds,
        paging,
        page_rows: page_rows(&request.limits),
        cursor,
        report: bound_column,
        limits: request.limits,
    })
}

/// The smallest or largest value of a cursor of type `t`, for an unbounded side of a query's
/// `@from` / `@to`.
fn extreme(t: SqlType, largest: bool) -> Result<Value> {
    use SqlType as S;
    let pick = |lo: Value, hi: Value| if largest { hi } else { lo };
    let day = 86_400_000_000i64;
    Ok(match t {
        S::TinyInt => pick(Value::Int(0), Value::Int(255)),
        S::SmallInt => pick(Value::Int(i16::MIN.into()), Value::Int(i16::MAX.into())),
        S::Int => pick(Value::Int(i32::MIN.into()), Value::Int(i32::MAX.into())),
        S::BigInt => pick(Value::Int(i64::MIN), Value::Int(i64::MAX)),
        S::Decimal { .. } | S::Money | S::SmallMoney => {
            let (precision, scale) = match t.exact() {
                S::Decimal { precision, scale } => (precision, scale),
                _ => (38, 0),
            };
            let max = 10i128.pow(u32::from(precision)) - 1;
            Value::Decimal {
                unscaled: if largest { max } else { -max },
                scale,
            }
        }
        S::Real | S::Float => pick(
            Value::Float(f64::from(f32::MIN)),
            Value::Float(f64::from(f32::MAX)),
        ),
        // 0001-01-01 and 9999-12-31.
        S::Date => pick(Value::Date(-719_162), Value::Date(2_932_896)),
        S::DateTime2 { .. } | S::DateTimeOffset { .. } => pick(
            Value::DateTime(-719_162 * day),
            Value::DateTime(2_932_897 * day - 1),
        ),
        // 1753-01-01 .. 9999-12-31 23:59:59.997.
        S::DateTime => pick(
            Value::DateTime(-79_623 * day),
            Value::DateTime(2_932_897 * day - 3_334),
        ),
        // 1900-01-01 .. 2079-06-06 23:59.
        S::SmallDateTime => pick(
            Value::DateTime(-25_567 * day),
            Value::DateTime(39_968 * day + 1439 * 60_000_000),
        ),
        S::Time { .. } => pick(Value::Time(0), Value::Time(day - 1)),
        S::Char { .. } | S::VarChar { .. } | S::NChar { .. } | S::NVarChar { .. } if !largest => {
            Value::Text(String::new())
        }
        other => {
            return Err(Error::Unsupported(format!(
                "a query's cursor of type {other} needs both bounds (`--from` and `--to`)"
            )));
        }
    })
}

async fn plan_query(client: &mut TdsClient, text: &str, request: &ReadRequest) -> Result<ReadPlan> {
    let label = "reading the stream's query".to_owned();
    let described = fetch(client, &sql::describe_query(text), &label).await?;
    if described.is_empty() {
        return Err(Error::Schema(format!(
            "{label}: the server describes no result columns (is it a SELECT?)"
        )));
    }
    let mut columns = Vec::with_capacity(described.len());
    for row in &described {
        let name = cell_text(row, 0).unwrap_or_default();
        let type_name = cell_text(row, 1).unwrap_or_default();
        let t = SqlType::parse(&type_name)
            .map_err(|e| e.context(format!("{label}: column `{name}`")))?;
        let nullable = row.try_get::<bool, _>(2).ok().flatten().unwrap_or(true);
        columns.push(SqlColumn::new(name, t, nullable));
    }
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| Field::new(c.name.clone(), c.sql_type.logical(), c.nullable))
        .collect();
    let schema = Arc::new(
        Schema::new(fields, &[]).map_err(|e| Error::Schema(format!("{label}: {}", e.message())))?,
    );
    let cursor = match &request.cursor_column {
        Some(c) => Some(column_index(&schema, c, "the query")?),
        None => None,
    };
    let bound = |b: &Bound<Value>, largest: bool| -> Result<Value> {
        match (b, cursor) {
            (Bound::Included(v) | Bound::Excluded(v), _) => Ok(v.clone()),
            (Bound::Unbounded, Some(c)) => extreme(columns[c].sql_type, largest),
            (Bound::Unbounded, None) => Ok(Value::Null),
        }
    };
    if cursor.is_none() && !is_unbounded(request) {
        return Err(Error::Unsupported(format!(
            "{label}: bounds need a cursor column"
        )));
    }
    let statement = sql::query_read(
        text,
        &columns,
        cursor.map(|c| &columns[c]),
        bound(&request.from, false)?,
        bound(&request.to, true)?,
    );
    Ok(ReadPlan {
        schema,
        table: None,
        label,
        columns,
        bounds: Vec::new(),
        paging: Paging::Query(statement),
        page_rows: usize::MAX,
        cursor,
        report: cursor,
        limits: request.limits,
    })
}

/// Cuts chunks out of the rows as they come.
struct Chunker<'a> {
    plan: &'a ReadPlan,
    builder: BatchBuilder,
    last_cursor: Option<Value>,
}

impl Chunker<'_> {
    /// Appends a row; sends the chunk built so far first when it is full and the cursor moves
    /// on. `Ok(false)` when the reader is gone.
    async fn push(
        &mut self,
        row: &tiberius::Row,
        tx: &mpsc::Sender<Result<Option<Chunk>>>,
    ) -> Result<bool> {
        let cursor = match self.plan.cursor {
            Some(c) => Some(cell_value(row, c, &self.plan.schema)?),
            None => None,
        };
        // Without a cursor column any row boundary is a safe place to cut.
        let moved = self.plan.cursor.is_none() || cursor != self.last_cursor;
        if self.builder.is_full(&self.plan.limits) && moved && !self.send(tx).await? {
            return Ok(false);
        }
        decode::push_row(&mut self.builder, row.cells().map(|(_, d)| d))?;
        self.last_cursor = cursor;
        Ok(true)
    }

    async fn send(&mut self, tx: &mpsc::Sender<Result<Option<Chunk>>>) -> Result<bool> {
        let batch = self.builder.take()?;
        if batch.num_rows() == 0 {
            return Ok(true);
        }
        let cursor = self
            .plan
            .report
            .and_then(|c| batch.value(batch.num_rows() - 1, c));
        Ok(tx.send(Ok(Some(Chunk { batch, cursor }))).await.is_ok())
    }
}

fn cell_value(row: &tiberius::Row, col: usize, schema: &Schema) -> Result<Value> {
    let data = row
        .cells()
        .nth(col)
        .map(|(_, d)| d)
        .ok_or_else(|| Error::Other(format!("row without column {col}")))?;
    let field = &schema.fields()[col];
    decode::value(data, &field.logical_type)
        .map_err(|why| Error::Decode(format!("column `{}`: {why}", field.name)))
}

/// Runs the read; sends chunks, then `Ok(None)` or the error (by the caller).
async fn produce(
    mut client: TdsClient,
    plan: ReadPlan,
    tx: &mpsc::Sender<Result<Option<Chunk>>>,
) -> Result<()> {
    let label = plan.label.clone();
    let capacity = plan.limits.max_rows.min(65_536);
    let mut chunker = Chunker {
        plan: &plan,
        builder: BatchBuilder::with_capacity(Arc::clone(&plan.schema), capacity),
        last_cursor: None,
    };
    if let Paging::Query(statement) = &plan.paging {
        let mut rows = query(statement)?
            .query(&mut client)
            .await
            .map_err(|e| error::tds(&label, e))?
            .into_row_stream();
        while let Some(row) = rows.try_next().await.map_err(|e| error::tds(&label, e))? {
            if !chunker
                .push(&row, tx)
                .await
                .map_err(|e| e.context(&label))?
            {
                return Ok(());
            }
        }
        drop(rows);
        chunker.send(tx).await?;
        return Ok(());
    }
    let mut last_key: Option<Vec<Value>> = None;
    let mut offset = 0u64;
    while let Some(statement) = plan.page(last_key.as_deref(), offset) {
        let rows = crate::fetch(&mut client, &statement, &label).await?;
        for row in &rows {
            if !chunker.push(row, tx).await.map_err(|e| e.context(&label))? {
                return Ok(());
            }
        }
        offset += rows.len() as u64;
        if rows.len() < plan.page_rows {
            break;
        }
        if let (Paging::Keyset(order), Some(last)) = (&plan.paging, rows.last()) {
            let key: Result<Vec<Value>> = order
                .iter()
                .map(|&k| cell_value(last, k, &plan.schema))
                .collect();
            last_key = Some(key?);
        }
    }
    chunker.send(tx).await?;
    Ok(())
}

/// The reader handed to the host: receives chunks from the reading task.
struct MsSqlReader {
    schema: Arc<Schema>,
    chunks: mpsc::Receiver<Result<Option<Chunk>>>,
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
    /// Keeps the runtime (and so the task) alive even if the connection is closed first.
    _runtime: Arc<tokio::runtime::Runtime>,
    /// Set once the read ended: `Ok` when complete, else the error, repeated on every call.
    finished: Option<caudal_connector::Result<()>>,
}

impl BatchReader for MsSqlReader {
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
            None => Err(self
                .shared
                .sdk(Error::Other("the read stopped before its end".into()))),
        };
        self.finished = Some(outcome.clone());
        outcome.map(|()| None)
    }
}

impl Drop for MsSqlReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_bound_every_value_of_their_type() {
        assert_eq!(
            extreme(SqlType::Int, false).unwrap(),
            Value::Int(i32::MIN.into())
        );
        assert_eq!(
            extreme(
                SqlType::Decimal {
                    precision: 5,
                    scale: 2
                },
                true
            )
            .unwrap(),
            Value::Decimal {
                unscaled: 99_999,
                scale: 2
            }
        );
        assert_eq!(
            extreme(SqlType::Money, true).unwrap(),
            Value::Decimal {
                unscaled: 10i128.pow(19) - 1,
                scale: 4
            }
        );
        // The largest datetime is 9999-12-31 23:59:59.997 and encodes as a valid datetime.
        let v = extreme(SqlType::DateTime, true).unwrap();
        let data = crate::encode::param(&v, &SqlType::DateTime).unwrap();
        assert!(
            matches!(data, tiberius::ColumnData::DateTime(Some(_))),
            "{data:?}"
        );
        for t in [
            SqlType::Date,
            SqlType::DateTime2 { scale: 7 },
            SqlType::SmallDateTime,
            SqlType::Time { scale: 7 },
        ] {
            for largest in [false, true] {
                let v = extreme(t, largest).unwrap();
                crate::encode::param(&v, &t.exact()).unwrap_or_else(|e| panic!("{t} {v:?}: {e}"));
            }
        }
        assert!(extreme(SqlType::NVarChar { length: None }, true).is_err());
        assert!(extreme(SqlType::UniqueIdentifier, false).is_err());
    }

    #[test]
    fn logical_types_of_discovered_columns() {
        let t = SqlType::DateTime.logical();
        assert_eq!(t, caudal_connector::LogicalType::DateTime { precision: 6 });
    }
}
