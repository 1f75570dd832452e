//! Every T-SQL statement the connector sends, built by the functions of this file (and the two
//! that tiberius sends on its own for a bulk load, documented in [`bulk_load_shapes`]).
//!
//! The statements are plain T-SQL that SQL Server 2019 and later accept; the TDS test server
//! (`tests/tds-server`) supports exactly these shapes, so a new shape belongs here first.
//! A bulk load is sent by tiberius as `SELECT TOP 0 [a], [b] FROM <table>` (for the column
//! types) then `INSERT BULK <table> ([a] int, [b] nvarchar(max)) WITH (KEEP_NULLS)` and the
//! rows ([`bulk_load_shapes`]).
//! Identifiers are bracket-quoted (`[a]]b]`), values travel as `sp_executesql` parameters
//! `@P1, @P2, ...` in the order they appear in the text, each typed as the column it is
//! compared with ([`Param::sql_type`]): a `datetime` cursor is bound as `datetime` with the
//! column's own 1/300 s ticks, never as a rounded `datetime2`, so `c > @P1` excludes the row
//! the cursor came from.
//!
//! Statements without parameters (transaction control, DDL, the staging table, `sp_rename`)
//! go as plain SQL batches, so that a transaction or a `#temp` table outlives them; the others,
//! and the `INSERT ... SELECT` / `MERGE` / `DELETE` from the staging table (for their row
//! counts), go through `sp_executesql`.
//!
//! Comparisons follow one total order per column, NULL first (what `ORDER BY c` does in SQL
//! Server): "after NULL" is `c IS NOT NULL`, "before v" includes the NULLs.
//!
//! The shapes, by use:
//!
//! | use | statement |
//! |---|---|
//! | discovery | [`list_tables`], [`list_columns`], [`list_primary_keys`] |
//! | keyset page | `SELECT TOP (@P1) [a], CAST([m] AS decimal(19,4)) FROM [s].[t] WHERE <bounds> AND <after key> ORDER BY [k1], [k2]` ([`keyset_page`]) |
//! | page without key | `SELECT ... FROM [s].[t] WHERE <bounds> ORDER BY [c1], [c2] OFFSET @Pn ROWS FETCH NEXT @Pm ROWS ONLY` ([`offset_page`]) |
//! | query, describe | `SELECT name, system_type_name, is_nullable FROM sys.dm_exec_describe_first_result_set(@P1, N'@from sql_variant, @to sql_variant', 0) ORDER BY column_ordinal` ([`describe_query`]) |
//! | query, read | `DECLARE @from <type> = @P1; DECLARE @to <type> = @P2; SELECT <columns> FROM (<query>) AS [_caudal_q] ORDER BY [cursor]` ([`query_read`]) |
//! | offsets table | [`create_offsets_table`]; [`table_exists`] first |
//! | create | `CREATE TABLE [s].[t] ([a] int NOT NULL, [b] nvarchar(max) NULL, PRIMARY KEY ([a]))` ([`create_table`]), `DROP TABLE IF EXISTS [s].[t]` ([`drop_table_if_exists`]) |
//! | write | `BEGIN TRANSACTION`, [`lock_offset`], bulk load, [`insert_from_stage`] / [`merge_from_stage`] / [`delete_from_stage`], [`update_offset`] / [`insert_offset`], `COMMIT TRANSACTION` (or `ROLLBACK TRANSACTION`) |
//! | staging | `CREATE TABLE [#caudal_stage] (...)` ([`create_stage`]), `DROP TABLE IF EXISTS [#caudal_stage]` |
//! | offset | [`read_offset`] |
//! | digest | `SELECT <columns> FROM [s].[t] WHERE <key range>` ([`digest_scan`]) |
//! | swap | `BEGIN TRANSACTION`, `EXEC sp_rename N'[s].[t]', N'_caudal_old_t'` ([`rename_table`]), `EXEC sp_rename N'[s].[t__caudal_staging]', N't'`, `DROP TABLE [s].[_caudal_old_t]`, `COMMIT TRANSACTION` |

use std::ops::Bound;

use caudal_connector::Value;

use crate::error::{Error, Result};
use crate::types::SqlType;

/// The temporary table every write stages its rows in when it needs one.
pub const STAGE_TABLE: &str = "#caudal_stage";
/// The table of applied offsets, one row per `(pipeline, stream)`.
pub const OFFSETS_TABLE: &str = "_caudal_offsets";
/// Alias of a stream's query inside the statements that wrap it.
pub const QUERY_ALIAS: &str = "_caudal_q";

/// `BEGIN TRANSACTION`.
pub const BEGIN: &str = "BEGIN TRANSACTION";
/// `COMMIT TRANSACTION`.
pub const COMMIT: &str = "COMMIT TRANSACTION";
/// `ROLLBACK TRANSACTION`.
pub const ROLLBACK: &str = "ROLLBACK TRANSACTION";

/// One bound value and the SQL Server type it is sent as.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// The value.
    pub value: Value,
    /// The type of the parameter (the type of the column it is compared with).
    pub sql_type: SqlType,
}

/// A statement with its parameters `@P1..@Pn`, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statement {
    /// The text.
    pub sql: String,
    /// The parameters.
    pub params: Vec<Param>,
}

impl Statement {
    fn new(sql: impl Into<String>) -> Statement {
        Statement {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    fn push(&mut self, s: &str) {
        self.sql.push_str(s);
    }

    /// Appends the next parameter marker and records its value.
    fn bind(&mut self, value: Value, sql_type: SqlType) {
        self.params.push(Param { value, sql_type });
        self.sql.push_str(&format!("@P{}", self.params.len()));
    }

    fn text(value: &str) -> Param {
        Param {
            value: Value::Text(value.to_owned()),
            sql_type: SqlType::NVarChar { length: Some(4000) },
        }
    }
}

/// Appends `name` as a bracket-quoted identifier.
pub fn push_ident(out: &mut String, name: &str) {
    out.push('[');
    out.push_str(&name.replace(']', "]]"));
    out.push(']');
}

/// `name` as a bracket-quoted identifier.
pub fn ident(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    push_ident(&mut s, name);
    s
}

/// `value` as a Unicode string literal `N'...'`.
pub fn nstring(value: &str) -> String {
    format!("N'{}'", value.replace('\'', "''"))
}

/// A table name, qualified by its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// The schema (`dbo` unless the name or the config says otherwise).
    pub schema: String,
    /// The table.
    pub table: String,
}

impl TableName {
    /// Splits `schema.table` at the first dot; an unqualified name gets `default_schema`.
    pub fn parse(name: &str, default_schema: &str) -> Result<TableName> {
        let (schema, table) = match name.split_once('.') {
            Some((s, t)) if !s.is_empty() && !t.is_empty() => (s, t),
            Some(_) => {
                return Err(Error::NotFound(format!(
                    "table name `{name}` is not `table` or `schema.table`"
                )));
            }
            None => (default_schema, name),
        };
        if table.is_empty() {
            return Err(Error::NotFound("an empty table name".into()));
        }
        Ok(TableName {
            schema: schema.to_owned(),
            table: table.to_owned(),
        })
    }

    /// The quoted, qualified name for SQL text: `[schema].[table]`.
    pub fn sql(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.table))
    }

    /// The same schema, another table.
    pub fn sibling(&self, table: &str) -> TableName {
        TableName {
            schema: self.schema.clone(),
            table: table.to_owned(),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}.{}`", self.schema, self.table)
    }
}

/// A column as the statements need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlColumn {
    /// Name.
    pub name: String,
    /// Its SQL Server type.
    pub sql_type: SqlType,
    /// Whether it accepts NULL.
    pub nullable: bool,
}

impl SqlColumn {
    /// A column; shorthand for the struct literal.
    pub fn new(name: impl Into<String>, sql_type: SqlType, nullable: bool) -> SqlColumn {
        SqlColumn {
            name: name.into(),
            sql_type,
            nullable,
        }
    }
}

fn filter_table(s: &mut Statement, column: &str, only: Option<&str>) {
    if let Some(t) = only {
        s.push(&format!(" AND {column} = "));
        s.bind(
            Value::Text(t.to_owned()),
            SqlType::NVarChar { length: Some(128) },
        );
    }
}

/// The base tables of `schema` (or only `only`): `TABLE_NAME`.
pub fn list_tables(schema: &str, only: Option<&str>) -> Statement {
    let mut s = Statement::new(
        "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES \
         WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA = ",
    );
    s.bind(
        Value::Text(schema.to_owned()),
        SqlType::NVarChar { length: Some(128) },
    );
    filter_table(&mut s, "TABLE_NAME", only);
    s.push(" ORDER BY TABLE_NAME");
    s
}

/// The columns of the tables of `schema`, in table order: `TABLE_NAME, COLUMN_NAME,
/// DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION,
/// IS_NULLABLE`, the numbers cast to `int`.
pub fn list_columns(schema: &str, only: Option<&str>) -> Statement {
    let mut s = Statement::new(
        "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, \
         CAST(CHARACTER_MAXIMUM_LENGTH AS int) AS CHARACTER_MAXIMUM_LENGTH, \
         CAST(NUMERIC_PRECISION AS int) AS NUMERIC_PRECISION, \
         CAST(NUMERIC_SCALE AS int) AS NUMERIC_SCALE, \
         CAST(DATETIME_PRECISION AS int) AS DATETIME_PRECISION, IS_NULLABLE \
         FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = ",
    );
    s.bind(
        Value::Text(schema.to_owned()),
        SqlType::NVarChar { length: Some(128) },
    );
    filter_table(&mut s, "TABLE_NAME", only);
    s.push(" ORDER BY TABLE_NAME, ORDINAL_POSITION");
    s
}

/// The primary-key columns of the tables of `schema`, in key order: `TABLE_NAME, COLUMN_NAME`.
pub fn list_primary_keys(schema: &str, only: Option<&str>) -> Statement {
    let mut s = Statement::new(
        "SELECT tc.TABLE_NAME, kcu.COLUMN_NAME \
         FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS AS tc \
         JOIN INFORMATION_SCHEMA.KEY_COLUMN_USAGE AS kcu \
         ON kcu.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA \
         AND kcu.CONSTRAINT_NAME = tc.CONSTRAINT_NAME \
         AND kcu.TABLE_NAME = tc.TABLE_NAME \
         WHERE tc.CONSTRAINT_TYPE = 'PRIMARY KEY' AND tc.TABLE_SCHEMA = ",
    );
    s.bind(
        Value::Text(schema.to_owned()),
        SqlType::NVarChar { length: Some(128) },
    );
    filter_table(&mut s, "tc.TABLE_NAME", only);
    s.push(" ORDER BY tc.TABLE_NAME, kcu.ORDINAL_POSITION");
    s
}

/// `SELECT 1 FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = @P1 AND TABLE_NAME = @P2`.
pub fn table_exists(table: &TableName) -> Statement {
    Statement {
        sql:
            "SELECT 1 FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = @P1 AND TABLE_NAME = @P2"
                .into(),
        params: vec![
            Statement::text(&table.schema),
            Statement::text(&table.table),
        ],
    }
}

/// The select list of a read: every column by name, `money` and `smallmoney` through an
/// exact decimal (tiberius reads money as a float). The casts are left unnamed: rows are read
/// by position, and the result column is a `decimal`, not the table's `money` column.
pub fn select_list(columns: &[SqlColumn]) -> String {
    let items: Vec<String> = columns
        .iter()
        .map(|c| {
            if c.sql_type.is_money() {
                format!("CAST({} AS {})", ident(&c.name), c.sql_type.exact())
            } else {
                ident(&c.name)
            }
        })
        .collect();
    items.join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Greater,
    Less,
}

/// `c = v` in the NULL-first order.
fn equal(out: &mut Statement, c: &SqlColumn, v: &Value) {
    push_ident(&mut out.sql, &c.name);
    if v.is_null() {
        out.push(" IS NULL");
    } else {
        out.push(" = ");
        out.bind(v.clone(), c.sql_type.exact());
    }
}

/// `c > v` or `c < v` in the NULL-first order.
fn strictly(out: &mut Statement, c: &SqlColumn, op: Op, v: &Value) {
    let name = ident(&c.name);
    match (op, v.is_null()) {
        (Op::Greater, true) => {
            out.push(&name);
            out.push(" IS NOT NULL");
        }
        (Op::Less, true) => out.push("1 = 0"),
        (op, false) => {
            let nulls_before = op == Op::Less && c.nullable;
            if nulls_before {
                out.push("(");
            }
            out.push(&name);
            out.push(if op == Op::Greater { " > " } else { " < " });
            out.bind(v.clone(), c.sql_type.exact());
            if nulls_before {
                out.push(" OR ");
                out.push(&name);
                out.push(" IS NULL)");
            }
        }
    }
}

/// The tuple comparison `(c1, c2, ..) op (v1, v2, ..)`, expanded into `OR`s of `AND`s.
fn tuple(out: &mut Statement, columns: &[&SqlColumn], values: &[Value], op: Op, inclusive: bool) {
    out.push("(");
    let n = columns.len().min(values.len());
    for i in 0..n {
        if i > 0 {
            out.push(" OR ");
        }
        out.push("(");
        for j in 0..i {
            equal(out, columns[j], &values[j]);
            out.push(" AND ");
        }
        strictly(out, columns[i], op, &values[i]);
        out.push(")");
    }
    if inclusive {
        if n > 0 {
            out.push(" OR ");
        }
        out.push("(");
        for j in 0..n {
            if j > 0 {
                out.push(" AND ");
            }
            equal(out, columns[j], &values[j]);
        }
        if n == 0 {
            out.push("1 = 1");
        }
        out.push(")");
    } else if n == 0 {
        out.push("1 = 0");
    }
    out.push(")");
}

/// A condition on a tuple of columns, built into the statement where it is placed (parameter
/// numbers follow the text).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Rows at or after (`Included`) / strictly after (`Excluded`) the values.
    Lower(Vec<SqlColumn>, Bound<Vec<Value>>),
    /// Rows at or before / strictly before the values.
    Upper(Vec<SqlColumn>, Bound<Vec<Value>>),
}

impl Condition {
    fn is_bounded(&self) -> bool {
        let (Condition::Lower(_, b) | Condition::Upper(_, b)) = self;
        !matches!(b, Bound::Unbounded)
    }

    fn write(&self, out: &mut Statement) {
        let (columns, bound, op) = match self {
            Condition::Lower(c, b) => (c, b, Op::Greater),
            Condition::Upper(c, b) => (c, b, Op::Less),
        };
        let refs: Vec<&SqlColumn> = columns.iter().collect();
        match bound {
            Bound::Unbounded => out.push("1 = 1"),
            Bound::Included(v) => tuple(out, &refs, v, op, true),
            Bound::Excluded(v) => tuple(out, &refs, v, op, false),
        }
    }
}

/// A single-value bound as a one-element tuple bound.
pub fn single(bound: &Bound<Value>) -> Bound<Vec<Value>> {
    match bound {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(v) => Bound::Included(vec![v.clone()]),
        Bound::Excluded(v) => Bound::Excluded(vec![v.clone()]),
    }
}

fn push_where(out: &mut Statement, conditions: &[Condition]) {
    let mut first = true;
    for c in conditions.iter().filter(|c| c.is_bounded()) {
        out.push(if first { " WHERE " } else { " AND " });
        first = false;
        c.write(out);
    }
}

fn push_order(out: &mut Statement, order: &[&SqlColumn]) {
    if order.is_empty() {
        return;
    }
    out.push(" ORDER BY ");
    let names: Vec<String> = order.iter().map(|c| ident(&c.name)).collect();
    out.push(&names.join(", "));
}

/// One keyset page: `SELECT TOP (@P1) <columns> FROM <table> WHERE <conditions> ORDER BY
/// <order>`. The caller puts "after the last key" among `conditions` as a
/// [`Condition::Lower`] with an excluded bound.
pub fn keyset_page(
    table: &TableName,
    columns: &[SqlColumn],
    conditions: &[Condition],
    order: &[&SqlColumn],
    rows: usize,
) -> Statement {
    let mut s = Statement::new("SELECT TOP (");
    s.bind(Value::Int(rows as i64), SqlType::BigInt);
    s.push(&format!(") {} FROM {}", select_list(columns), table.sql()));
    push_where(&mut s, conditions);
    push_order(&mut s, order);
    s
}

/// One page of a table without a key: `SELECT <columns> FROM <table> WHERE <conditions>
/// ORDER BY <order> OFFSET @Pn ROWS FETCH NEXT @Pm ROWS ONLY`. `order` must not be empty.
pub fn offset_page(
    table: &TableName,
    columns: &[SqlColumn],
    conditions: &[Condition],
    order: &[&SqlColumn],
    offset: u64,
    rows: usize,
) -> Statement {
    let mut s = Statement::new(format!(
        "SELECT {} FROM {}",
        select_list(columns),
        table.sql()
    ));
    push_where(&mut s, conditions);
    push_order(&mut s, order);
    s.push(" OFFSET ");
    s.bind(Value::Int(offset as i64), SqlType::BigInt);
    s.push(" ROWS FETCH NEXT ");
    s.bind(Value::Int(rows as i64), SqlType::BigInt);
    s.push(" ROWS ONLY");
    s
}

/// The query without a trailing `;` and surrounding blanks.
fn query_body(query: &str) -> &str {
    query.trim().trim_end_matches(';').trim_end()
}

/// `SELECT name, system_type_name, is_nullable FROM sys.dm_exec_describe_first_result_set(
/// @P1, N'@from sql_variant, @to sql_variant', 0) ORDER BY column_ordinal`: the result columns
/// of a stream's query (`@P1`, its text) with their exact types (`decimal(12,2)`,
/// `nvarchar(50)`, `datetime2(7)`, ...), without running it.
pub fn describe_query(query: &str) -> Statement {
    let mut s = Statement::new(
        "SELECT name, system_type_name, is_nullable \
         FROM sys.dm_exec_describe_first_result_set(",
    );
    s.bind(
        Value::Text(query_body(query).to_owned()),
        SqlType::NVarChar { length: None },
    );
    s.push(", N'@from sql_variant, @to sql_variant', 0) ORDER BY column_ordinal");
    s
}

/// `DECLARE @from <t> = @P1; DECLARE @to <t> = @P2; SELECT <columns> FROM (<query>) AS
/// [_caudal_q] ORDER BY [cursor]`: the stream's query with its cursor bounds as variables of
/// the cursor column's type `t`, read in cursor order (so the query itself has no `ORDER BY`,
/// as any derived table).
pub fn query_read(
    query: &str,
    columns: &[SqlColumn],
    cursor: Option<&SqlColumn>,
    from: Value,
    to: Value,
) -> Statement {
    let t = cursor.map_or(SqlType::BigInt, |c| c.sql_type.exact());
    let mut s = Statement::new(format!("DECLARE @from {t} = "));
    s.bind(from, t);
    s.push(&format!("; DECLARE @to {t} = "));
    s.bind(to, t);
    s.push(&format!(
        "; SELECT {} FROM ({}) AS {}",
        select_list(columns),
        query_body(query),
        ident(QUERY_ALIAS)
    ));
    if let Some(c) = cursor {
        push_order(&mut s, &[c]);
    }
    s
}

/// `SELECT <columns> FROM <table> WHERE <key range>`: the rows a digest reads.
pub fn digest_scan(
    table: &TableName,
    columns: &[SqlColumn],
    conditions: &[Condition],
) -> Statement {
    let mut s = Statement::new(format!(
        "SELECT {} FROM {}",
        select_list(columns),
        table.sql()
    ));
    push_where(&mut s, conditions);
    s
}

fn column_definitions(columns: &[SqlColumn], key: &[usize]) -> String {
    let mut out = String::new();
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_ident(&mut out, &c.name);
        out.push(' ');
        out.push_str(&c.sql_type.to_string());
        out.push_str(if c.nullable && !key.contains(&i) {
            " NULL"
        } else {
            " NOT NULL"
        });
    }
    out
}

/// `CREATE TABLE [s].[t] (<columns>, PRIMARY KEY (<key>))`. The key constraint is unnamed:
/// SQL Server names it uniquely, so a staging table renamed into place never collides with
/// the next staging table's constraint.
pub fn create_table(table: &TableName, columns: &[SqlColumn], key: &[usize]) -> String {
    let mut out = format!(
        "CREATE TABLE {} ({}",
        table.sql(),
        column_definitions(columns, key)
    );
    if !key.is_empty() {
        let names: Vec<String> = key.iter().map(|&k| ident(&columns[k].name)).collect();
        out.push_str(&format!(", PRIMARY KEY ({})", names.join(", ")));
    }
    out.push(')');
    out
}

/// `DROP TABLE IF EXISTS <table>`.
pub fn drop_table_if_exists(table: &str) -> String {
    format!("DROP TABLE IF EXISTS {table}")
}

/// `DROP TABLE <table>`.
pub fn drop_table(table: &TableName) -> String {
    format!("DROP TABLE {}", table.sql())
}

/// `CREATE TABLE [#caudal_stage] (<columns>)`: the session's staging table, with `money`
/// columns as exact decimals (bulk loads carry money as floats otherwise).
pub fn create_stage(columns: &[SqlColumn]) -> String {
    let exact: Vec<SqlColumn> = columns
        .iter()
        .map(|c| SqlColumn::new(c.name.clone(), c.sql_type.exact(), true))
        .collect();
    format!(
        "CREATE TABLE {} ({})",
        ident(STAGE_TABLE),
        column_definitions(&exact, &[])
    )
}

fn names(columns: &[SqlColumn], prefix: &str) -> String {
    let v: Vec<String> = columns
        .iter()
        .map(|c| format!("{prefix}{}", ident(&c.name)))
        .collect();
    v.join(", ")
}

/// `INSERT INTO <table> (<columns>) SELECT <columns> FROM [#caudal_stage]`.
pub fn insert_from_stage(table: &TableName, columns: &[SqlColumn]) -> String {
    let list = names(columns, "");
    format!(
        "INSERT INTO {} ({list}) SELECT {list} FROM {}",
        table.sql(),
        ident(STAGE_TABLE)
    )
}

fn key_match(key: &[&SqlColumn], left: &str, right: &str) -> String {
    let v: Vec<String> = key
        .iter()
        .map(|c| {
            let n = ident(&c.name);
            format!("{left}.{n} = {right}.{n}")
        })
        .collect();
    v.join(" AND ")
}

/// `MERGE INTO <table> AS [t] USING [#caudal_stage] AS [s] ON <key equal> WHEN MATCHED THEN
/// UPDATE SET ... WHEN NOT MATCHED THEN INSERT (...) VALUES (...);` — an upsert by key. A
/// table made only of key columns has no `WHEN MATCHED` clause.
pub fn merge_from_stage(table: &TableName, columns: &[SqlColumn], key: &[usize]) -> String {
    let key_cols: Vec<&SqlColumn> = key.iter().map(|&k| &columns[k]).collect();
    let mut out = format!(
        "MERGE INTO {} AS [t] USING {} AS [s] ON {}",
        table.sql(),
        ident(STAGE_TABLE),
        key_match(&key_cols, "[t]", "[s]")
    );
    let updates: Vec<String> = columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !key.contains(i))
        .map(|(_, c)| {
            let n = ident(&c.name);
            format!("[t].{n} = [s].{n}")
        })
        .collect();
    if !updates.is_empty() {
        out.push_str(" WHEN MATCHED THEN UPDATE SET ");
        out.push_str(&updates.join(", "));
    }
    out.push_str(&format!(
        " WHEN NOT MATCHED THEN INSERT ({}) VALUES ({});",
        names(columns, ""),
        names(columns, "[s].")
    ));
    out
}

/// `DELETE FROM <table> WHERE EXISTS (SELECT 1 FROM [#caudal_stage] AS [s] WHERE [s].[k] =
/// [schema].[table].[k] ...)`: deletes the rows whose key is staged.
pub fn delete_from_stage(table: &TableName, key: &[SqlColumn]) -> String {
    let refs: Vec<&SqlColumn> = key.iter().collect();
    format!(
        "DELETE FROM {t} WHERE EXISTS (SELECT 1 FROM {} AS [s] WHERE {})",
        ident(STAGE_TABLE),
        key_match(&refs, "[s]", &table.sql()),
        t = table.sql()
    )
}

/// `CREATE TABLE [s].[_caudal_offsets] ([pipeline] nvarchar(255) NOT NULL, [stream]
/// nvarchar(255) NOT NULL, [seq] bigint NOT NULL, [updated_at] datetime2(6) NOT NULL,
/// PRIMARY KEY ([pipeline], [stream]))`.
pub fn create_offsets_table(offsets: &TableName) -> String {
    format!(
        "CREATE TABLE {} ([pipeline] nvarchar(255) NOT NULL, [stream] nvarchar(255) NOT NULL, \
         [seq] bigint NOT NULL, [updated_at] datetime2(6) NOT NULL, \
         PRIMARY KEY ([pipeline], [stream]))",
        offsets.sql()
    )
}

/// `SELECT [seq] FROM <offsets> WITH (UPDLOCK, HOLDLOCK) WHERE [pipeline] = @P1 AND
/// [stream] = @P2`: reads the offset row and keeps it (or its absence) locked until the
/// transaction ends.
pub fn lock_offset(offsets: &TableName, pipeline: &str, stream: &str) -> Statement {
    Statement {
        sql: format!(
            "SELECT [seq] FROM {} WITH (UPDLOCK, HOLDLOCK) WHERE [pipeline] = @P1 AND [stream] = @P2",
            offsets.sql()
        ),
        params: vec![Statement::text(pipeline), Statement::text(stream)],
    }
}

/// `SELECT [seq] FROM <offsets> WHERE [pipeline] = @P1 AND [stream] = @P2`.
pub fn read_offset(offsets: &TableName, pipeline: &str, stream: &str) -> Statement {
    Statement {
        sql: format!(
            "SELECT [seq] FROM {} WHERE [pipeline] = @P1 AND [stream] = @P2",
            offsets.sql()
        ),
        params: vec![Statement::text(pipeline), Statement::text(stream)],
    }
}

/// `UPDATE <offsets> SET [seq] = @P1, [updated_at] = SYSUTCDATETIME() WHERE [pipeline] =
/// @P2 AND [stream] = @P3`.
pub fn update_offset(offsets: &TableName, pipeline: &str, stream: &str, seq: u64) -> Statement {
    Statement {
        sql: format!(
            "UPDATE {} SET [seq] = @P1, [updated_at] = SYSUTCDATETIME() \
             WHERE [pipeline] = @P2 AND [stream] = @P3",
            offsets.sql()
        ),
        params: vec![
            Param {
                value: Value::UInt(seq),
                sql_type: SqlType::BigInt,
            },
            Statement::text(pipeline),
            Statement::text(stream),
        ],
    }
}

/// `INSERT INTO <offsets> ([pipeline], [stream], [seq], [updated_at]) VALUES (@P1, @P2, @P3,
/// SYSUTCDATETIME())`.
pub fn insert_offset(offsets: &TableName, pipeline: &str, stream: &str, seq: u64) -> Statement {
    Statement {
        sql: format!(
            "INSERT INTO {} ([pipeline], [stream], [seq], [updated_at]) \
             VALUES (@P1, @P2, @P3, SYSUTCDATETIME())",
            offsets.sql()
        ),
        params: vec![
            Statement::text(pipeline),
            Statement::text(stream),
            Param {
                value: Value::UInt(seq),
                sql_type: SqlType::BigInt,
            },
        ],
    }
}

/// `EXEC sp_rename N'[s].[from]', N'to'`: renames a table within its schema (the new name is
/// given bare: `sp_rename` would keep brackets as part of it).
pub fn rename_table(from: &TableName, to: &str) -> String {
    format!("EXEC sp_rename {}, {}", nstring(&from.sql()), nstring(to))
}

/// The bracketed column names a bulk load is started with ([`bulk_load_shapes`]).
pub fn bulk_columns(columns: &[SqlColumn]) -> Vec<String> {
    columns.iter().map(|c| ident(&c.name)).collect()
}

/// The statements tiberius itself sends for a bulk load into `table` (`[s].[t]` or
/// `[#caudal_stage]`) of [`bulk_columns`], for the record: the column types come from the
/// first, the rows follow the second as a bulk-load message (COLMETADATA, ROW..., DONE).
pub fn bulk_load_shapes(table: &str, columns: &[SqlColumn]) -> [String; 2] {
    let types: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", ident(&c.name), c.sql_type))
        .collect();
    [
        format!(
            "SELECT TOP 0 {} FROM {table}",
            bulk_columns(columns).join(", ")
        ),
        format!(
            "INSERT BULK {table} ({}) WITH (KEEP_NULLS)",
            types.join(", ")
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, t: SqlType, nullable: bool) -> SqlColumn {
        SqlColumn::new(name, t, nullable)
    }

    fn table() -> TableName {
        TableName::parse("ventas", "dbo").unwrap()
    }

    #[test]
    fn identifiers_and_names() {
        assert_eq!(ident("a]b"), "[a]]b]");
        assert_eq!(nstring("O'Brien"), "N'O''Brien'");
        let t = TableName::parse("tienda.lineas", "dbo").unwrap();
        assert_eq!(t.sql(), "[tienda].[lineas]");
        assert_eq!(table().sql(), "[dbo].[ventas]");
        assert!(TableName::parse(".t", "dbo").is_err());
        assert!(TableName::parse("", "dbo").is_err());
    }

    #[test]
    fn keyset_page_binds_top_then_the_key_in_text_order() {
        let id = col("id", SqlType::Int, false);
        let linea = col("linea", SqlType::SmallInt, false);
        let m = col("importe", SqlType::Money, true);
        let columns = vec![id.clone(), linea.clone(), m];
        let after = Condition::Lower(
            vec![id.clone(), linea.clone()],
            Bound::Excluded(vec![Value::Int(7), Value::Int(2)]),
        );
        let s = keyset_page(&table(), &columns, &[after], &[&id, &linea], 500);
        assert_eq!(
            s.sql,
            "SELECT TOP (@P1) [id], [linea], CAST([importe] AS decimal(19,4)) \
             FROM [dbo].[ventas] WHERE (([id] > @P2) OR ([id] = @P3 AND [linea] > @P4)) \
             ORDER BY [id], [linea]"
        );
        let values: Vec<&Value> = s.params.iter().map(|p| &p.value).collect();
        assert_eq!(
            values,
            [
                &Value::Int(500),
                &Value::Int(7),
                &Value::Int(7),
                &Value::Int(2)
            ]
        );
        assert_eq!(s.params[1].sql_type, SqlType::Int);
        assert_eq!(s.params[3].sql_type, SqlType::SmallInt);
    }

    #[test]
    fn a_datetime_cursor_is_bound_as_datetime() {
        let c = col("fecha", SqlType::DateTime, true);
        let lower = Condition::Lower(
            vec![c.clone()],
            Bound::Excluded(vec![Value::DateTime(3333)]),
        );
        let upper = Condition::Upper(
            vec![c.clone()],
            Bound::Excluded(vec![Value::DateTime(9999)]),
        );
        let s = keyset_page(
            &table(),
            std::slice::from_ref(&c),
            &[lower, upper],
            &[&c],
            10,
        );
        assert_eq!(
            s.sql,
            "SELECT TOP (@P1) [fecha] FROM [dbo].[ventas] WHERE (([fecha] > @P2)) AND \
             ((([fecha] < @P3 OR [fecha] IS NULL))) ORDER BY [fecha]"
        );
        assert_eq!(s.params[1].sql_type, SqlType::DateTime);
    }

    #[test]
    fn nulls_come_first() {
        let c = col("c", SqlType::Date, true);
        let k = col("k", SqlType::Int, false);
        let after = Condition::Lower(
            vec![c.clone(), k.clone()],
            Bound::Excluded(vec![Value::Null, Value::Int(5)]),
        );
        let s = digest_scan(&table(), &[c.clone(), k.clone()], &[after]);
        assert!(
            s.sql
                .ends_with("WHERE (([c] IS NOT NULL) OR ([c] IS NULL AND [k] > @P1))"),
            "{}",
            s.sql
        );
        let upper = Condition::Upper(vec![c.clone()], Bound::Excluded(vec![Value::Null]));
        let s = digest_scan(&table(), std::slice::from_ref(&c), &[upper]);
        assert!(s.sql.ends_with("WHERE ((1 = 0))"), "{}", s.sql);
        let all = Condition::Lower(vec![c.clone()], Bound::Unbounded);
        let s = digest_scan(&table(), std::slice::from_ref(&c), &[all]);
        assert_eq!(s.sql, "SELECT [c] FROM [dbo].[ventas]");
    }

    #[test]
    fn offset_page_without_key() {
        let a = col("a", SqlType::NVarChar { length: Some(10) }, true);
        let s = offset_page(&table(), std::slice::from_ref(&a), &[], &[&a], 40, 20);
        assert_eq!(
            s.sql,
            "SELECT [a] FROM [dbo].[ventas] ORDER BY [a] OFFSET @P1 ROWS FETCH NEXT @P2 ROWS ONLY"
        );
        assert_eq!(s.params[0].value, Value::Int(40));
    }

    #[test]
    fn queries_get_their_bounds_as_variables() {
        let q = "SELECT * FROM ventas\nWHERE fecha >= @from AND fecha < @TO;";
        let d = describe_query(q);
        assert_eq!(
            d.sql,
            "SELECT name, system_type_name, is_nullable FROM \
             sys.dm_exec_describe_first_result_set(@P1, N'@from sql_variant, @to sql_variant', 0) \
             ORDER BY column_ordinal"
        );
        assert_eq!(
            d.params[0].value,
            Value::Text("SELECT * FROM ventas\nWHERE fecha >= @from AND fecha < @TO".into())
        );
        let fecha = col("fecha", SqlType::Date, false);
        let m = col("m", SqlType::SmallMoney, true);
        let s = query_read(
            q,
            &[fecha.clone(), m],
            Some(&fecha),
            Value::Date(1),
            Value::Date(2),
        );
        assert_eq!(
            s.sql,
            "DECLARE @from date = @P1; DECLARE @to date = @P2; SELECT [fecha], \
             CAST([m] AS decimal(10,4)) FROM (SELECT * FROM ventas\nWHERE \
             fecha >= @from AND fecha < @TO) AS [_caudal_q] ORDER BY [fecha]"
        );
    }

    #[test]
    fn create_statements() {
        let columns = vec![
            col("id", SqlType::BigInt, false),
            col("m", SqlType::Money, true),
            col("t", SqlType::NVarChar { length: None }, true),
        ];
        assert_eq!(
            create_table(&table(), &columns, &[0]),
            "CREATE TABLE [dbo].[ventas] ([id] bigint NOT NULL, [m] money NULL, \
             [t] nvarchar(max) NULL, PRIMARY KEY ([id]))"
        );
        assert_eq!(
            create_stage(&columns),
            "CREATE TABLE [#caudal_stage] ([id] bigint NULL, [m] decimal(19,4) NULL, \
             [t] nvarchar(max) NULL)"
        );
        assert!(
            create_offsets_table(&table().sibling(OFFSETS_TABLE))
                .starts_with("CREATE TABLE [dbo].[_caudal_offsets] ([pipeline] nvarchar(255)")
        );
    }

    #[test]
    fn write_statements() {
        let columns = vec![
            col("id", SqlType::BigInt, false),
            col("v", SqlType::Int, true),
        ];
        assert_eq!(
            merge_from_stage(&table(), &columns, &[0]),
            "MERGE INTO [dbo].[ventas] AS [t] USING [#caudal_stage] AS [s] ON [t].[id] = [s].[id] \
             WHEN MATCHED THEN UPDATE SET [t].[v] = [s].[v] WHEN NOT MATCHED THEN INSERT \
             ([id], [v]) VALUES ([s].[id], [s].[v]);"
        );
        assert_eq!(
            merge_from_stage(&table(), &columns[..1], &[0]),
            "MERGE INTO [dbo].[ventas] AS [t] USING [#caudal_stage] AS [s] ON [t].[id] = [s].[id] \
             WHEN NOT MATCHED THEN INSERT ([id]) VALUES ([s].[id]);"
        );
        assert_eq!(
            delete_from_stage(&table(), &columns[..1]),
            "DELETE FROM [dbo].[ventas] WHERE EXISTS (SELECT 1 FROM [#caudal_stage] AS [s] \
             WHERE [s].[id] = [dbo].[ventas].[id])"
        );
        assert_eq!(
            insert_from_stage(&table(), &columns),
            "INSERT INTO [dbo].[ventas] ([id], [v]) SELECT [id], [v] FROM [#caudal_stage]"
        );
        assert_eq!(
            rename_table(&table(), "_caudal_old_ventas"),
            "EXEC sp_rename N'[dbo].[ventas]', N'_caudal_old_ventas'"
        );
        let [probe, bulk] = bulk_load_shapes(&table().sql(), &columns);
        assert_eq!(probe, "SELECT TOP 0 [id], [v] FROM [dbo].[ventas]");
        assert_eq!(
            bulk,
            "INSERT BULK [dbo].[ventas] ([id] bigint, [v] int) WITH (KEEP_NULLS)"
        );
        let s = update_offset(&table().sibling(OFFSETS_TABLE), "p", "s", 9);
        assert!(s.sql.contains("SET [seq] = @P1"), "{}", s.sql);
        assert_eq!(s.params.len(), 3);
    }
}
