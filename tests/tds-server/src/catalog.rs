//! The side catalog: the SQL Server type each column was declared with, and the keys, which
//! DuckDB's own catalog cannot tell apart (`datetime` and `datetime2` are both `TIMESTAMP`).
//!
//! It lives inside each database, in schema `tds_catalog`, so it commits and rolls back with
//! the DDL it describes. INFORMATION_SCHEMA queries are answered from views over it. Temp
//! tables (`#name`) are described in the session instead, as DuckDB keeps them per connection.

use crate::error::{Error, Result};
use crate::sql::{Tok, closing, ident_sql};
use crate::types::{SqlType, quote};

/// One column of a table, as declared.
#[derive(Debug, Clone)]
pub(crate) struct ColumnDef {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
    pub identity: Option<(i64, i64)>,
    /// Default expression, already in DuckDB SQL.
    pub default: Option<String>,
}

/// A table as declared: columns in order and its primary key.
#[derive(Debug, Clone)]
pub(crate) struct TableDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    pub primary_key: Vec<String>,
    pub pk_name: Option<String>,
    pub unique: Vec<(String, Vec<String>)>,
}

impl TableDef {
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    pub fn is_temp(&self) -> bool {
        self.name.starts_with('#')
    }

    /// DuckDB DDL creating this table (and sequences for identity columns).
    pub fn ddl(&self) -> Vec<String> {
        let temp = if self.is_temp() { "TEMP " } else { "" };
        let mut stmts = Vec::new();
        let mut cols = Vec::new();
        for c in &self.columns {
            let mut s = format!("{} {}", ident_sql(&c.name), c.ty.duckdb_type());
            if let Some((seed, inc)) = c.identity {
                let seq = format!("{}__{}_seq", self.name, c.name);
                stmts.push(format!(
                    "CREATE {temp}SEQUENCE {} START {seed} INCREMENT {inc}",
                    ident_sql(&seq)
                ));
                s.push_str(&format!(" DEFAULT nextval({})", quote(&seq)));
            } else if let Some(d) = &c.default {
                s.push_str(&format!(" DEFAULT ({d})"));
            }
            if !c.nullable {
                s.push_str(" NOT NULL");
            }
            if let SqlType::DateTimeOffset(_) = c.ty {
                s.push_str(&format!(
                    " CHECK ({})",
                    datetimeoffset_check(&ident_sql(&c.name))
                ));
            }
            if let Some((n, binary)) = c.ty.length_limit() {
                let f = if binary { "octet_length" } else { "length" };
                s.push_str(&format!(" CHECK ({f}({}) <= {n})", ident_sql(&c.name)));
            }
            cols.push(s);
        }
        if !self.primary_key.is_empty() {
            let k: Vec<String> = self.primary_key.iter().map(|c| ident_sql(c)).collect();
            cols.push(format!("PRIMARY KEY ({})", k.join(", ")));
        }
        for (_, u) in &self.unique {
            let k: Vec<String> = u.iter().map(|c| ident_sql(c)).collect();
            cols.push(format!("UNIQUE ({})", k.join(", ")));
        }
        stmts.push(format!(
            "CREATE {temp}TABLE {} ({})",
            ident_sql(&self.name),
            cols.join(", ")
        ));
        stmts
    }

    /// Statements recording this table in the side catalog.
    pub fn catalog_inserts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, c) in self.columns.iter().enumerate() {
            let opt = |v: Option<i64>| v.map_or("NULL".to_string(), |v| v.to_string());
            let (p, s) =
                c.ty.numeric_precision_scale()
                    .map_or((None, None), |(p, s)| (Some(p), (s >= 0).then_some(s)));
            out.push(format!(
                "INSERT INTO tds_catalog.columns VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                quote(&self.name),
                i + 1,
                quote(&c.name),
                quote(c.ty.name()),
                quote(&c.ty.declaration()),
                opt(c.ty.char_max_length()),
                opt(p),
                opt(s),
                opt(c.ty.datetime_precision()),
                c.nullable,
                c.identity.is_some(),
                c.default.as_deref().map_or("NULL".to_string(), quote),
            ));
        }
        let mut cons = |name: &str, kind: &str, cols: &[String]| {
            for (i, col) in cols.iter().enumerate() {
                out.push(format!(
                    "INSERT INTO tds_catalog.constraints VALUES ({}, {}, {}, {}, {})",
                    quote(&self.name),
                    quote(name),
                    quote(kind),
                    quote(col),
                    i + 1
                ));
            }
        };
        if !self.primary_key.is_empty() {
            let name = self
                .pk_name
                .clone()
                .unwrap_or_else(|| format!("PK_{}", self.name));
            cons(&name, "PRIMARY KEY", &self.primary_key);
        }
        for (name, cols) in &self.unique {
            cons(name, "UNIQUE", cols);
        }
        out
    }
}

/// A `datetimeoffset` is stored as text: it must read as one, and in UTC fall in 0001..9999
/// (SQL Server stores the UTC instant).
fn datetimeoffset_check(col: &str) -> String {
    let offset = format!("regexp_extract({col}, '[+-]\\d{{2}}:\\d{{2}}$')");
    format!(
        "{col} IS NULL OR (regexp_full_match({col}, '\\d{{4}}-\\d{{2}}-\\d{{2}}[ T]\\d{{2}}:\\d{{2}}(:\\d{{2}}(\\.\\d{{1,7}})?)? ?[+-]\\d{{2}}:\\d{{2}}') \
         AND year(CAST(substr({col}, 1, 10) || ' ' || substr({col}, 12, 5) AS TIMESTAMP) \
         - to_minutes(CAST((CASE WHEN substr({offset}, 1, 1) = '-' THEN -1 ELSE 1 END) \
         * (CAST(substr({offset}, 2, 2) AS INTEGER) * 60 + CAST(substr({offset}, 5, 2) AS INTEGER)) AS BIGINT))) \
         BETWEEN 1 AND 9999)"
    )
}

/// Creates the catalog schema and the INFORMATION_SCHEMA views of a database.
pub(crate) fn setup_sql(database: &str) -> String {
    let db = quote(database);
    format!(
        "CREATE SCHEMA IF NOT EXISTS tds_catalog;
CREATE TABLE IF NOT EXISTS tds_catalog.columns (table_name VARCHAR, ordinal INTEGER, column_name VARCHAR,
  data_type VARCHAR, declaration VARCHAR, char_max BIGINT, num_precision BIGINT, num_scale BIGINT,
  dt_precision BIGINT, nullable BOOLEAN, is_identity BOOLEAN, default_sql VARCHAR);
CREATE TABLE IF NOT EXISTS tds_catalog.constraints (table_name VARCHAR, constraint_name VARCHAR,
  constraint_type VARCHAR, column_name VARCHAR, ordinal INTEGER);
CREATE OR REPLACE VIEW tds_catalog.information_schema_tables AS
  SELECT DISTINCT {db} AS TABLE_CATALOG, 'dbo' AS TABLE_SCHEMA, table_name AS TABLE_NAME,
    'BASE TABLE' AS TABLE_TYPE FROM tds_catalog.columns;
CREATE OR REPLACE VIEW tds_catalog.information_schema_columns AS
  SELECT {db} AS TABLE_CATALOG, 'dbo' AS TABLE_SCHEMA, table_name AS TABLE_NAME,
    column_name AS COLUMN_NAME, ordinal AS ORDINAL_POSITION, default_sql AS COLUMN_DEFAULT,
    CASE WHEN nullable THEN 'YES' ELSE 'NO' END AS IS_NULLABLE, data_type AS DATA_TYPE,
    CAST(char_max AS INTEGER) AS CHARACTER_MAXIMUM_LENGTH,
    CAST(CASE WHEN data_type IN ('nchar', 'nvarchar') AND char_max > 0 THEN char_max * 2
      WHEN data_type = 'ntext' THEN 2147483646 ELSE char_max END AS INTEGER) AS CHARACTER_OCTET_LENGTH,
    CAST(num_precision AS UTINYINT) AS NUMERIC_PRECISION,
    CAST(CASE WHEN num_precision IS NULL THEN NULL WHEN data_type IN ('real', 'float') THEN 2 ELSE 10 END AS SMALLINT) AS NUMERIC_PRECISION_RADIX,
    CAST(num_scale AS INTEGER) AS NUMERIC_SCALE, CAST(dt_precision AS SMALLINT) AS DATETIME_PRECISION,
    CASE WHEN data_type IN ('char', 'varchar', 'text', 'nchar', 'nvarchar', 'ntext') THEN 'Latin1_General_CI_AS' END AS COLLATION_NAME
  FROM tds_catalog.columns;
CREATE OR REPLACE VIEW tds_catalog.information_schema_table_constraints AS
  SELECT DISTINCT {db} AS CONSTRAINT_CATALOG, 'dbo' AS CONSTRAINT_SCHEMA, constraint_name AS CONSTRAINT_NAME,
    {db} AS TABLE_CATALOG, 'dbo' AS TABLE_SCHEMA, table_name AS TABLE_NAME, constraint_type AS CONSTRAINT_TYPE,
    'NO' AS IS_DEFERRABLE, 'NO' AS INITIALLY_DEFERRED
  FROM tds_catalog.constraints;
CREATE OR REPLACE VIEW tds_catalog.information_schema_key_column_usage AS
  SELECT {db} AS CONSTRAINT_CATALOG, 'dbo' AS CONSTRAINT_SCHEMA, constraint_name AS CONSTRAINT_NAME,
    {db} AS TABLE_CATALOG, 'dbo' AS TABLE_SCHEMA, table_name AS TABLE_NAME, column_name AS COLUMN_NAME,
    ordinal AS ORDINAL_POSITION
  FROM tds_catalog.constraints;"
    )
}

/// Parses `CREATE TABLE name ( ... )`; `toks` starts at CREATE, schema prefixes already gone.
pub(crate) fn parse_create_table(
    toks: &[Tok],
    translate: &dyn Fn(&[Tok]) -> Result<String>,
) -> Result<TableDef> {
    let syntax = |t: Option<&Tok>| {
        Error::sql(
            102,
            format!(
                "Incorrect syntax near '{}'.",
                t.map(Tok::text).unwrap_or_default()
            ),
        )
    };
    let name = toks
        .get(2)
        .and_then(Tok::ident)
        .ok_or_else(|| syntax(toks.get(2)))?
        .to_string();
    if !toks.get(3).is_some_and(|t| t.is_sym("(")) {
        return Err(syntax(toks.get(3)));
    }
    let close = closing(toks, 3).ok_or_else(|| syntax(toks.last()))?;
    let mut def = TableDef {
        name: name.clone(),
        columns: Vec::new(),
        primary_key: Vec::new(),
        pk_name: None,
        unique: Vec::new(),
    };
    // Split the body on top-level commas.
    let body = &toks[4..close];
    let mut items: Vec<&[Tok]> = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, t) in body.iter().enumerate() {
        if t.is_sym("(") {
            depth += 1;
        } else if t.is_sym(")") {
            depth -= 1;
        } else if t.is_sym(",") && depth == 0 {
            items.push(&body[start..i]);
            start = i + 1;
        }
    }
    items.push(&body[start..]);
    for item in items {
        if item.is_empty() {
            return Err(syntax(toks.get(close)));
        }
        let mut i = 0;
        let mut cname = None;
        if item[0].is_kw("CONSTRAINT") {
            cname = item.get(1).and_then(Tok::ident).map(str::to_string);
            i = 2;
        }
        let first = item.get(i).ok_or_else(|| syntax(item.last()))?;
        if first.is_kw("PRIMARY") || first.is_kw("UNIQUE") {
            let cols = key_columns(&item[i..]).ok_or_else(|| syntax(item.last()))?;
            if first.is_kw("PRIMARY") {
                def.primary_key = cols;
                def.pk_name = cname;
            } else {
                let n = cname.unwrap_or_else(|| format!("UQ_{}_{}", name, def.unique.len() + 1));
                def.unique.push((n, cols));
            }
            continue;
        }
        if first.is_kw("CHECK") || first.is_kw("FOREIGN") || first.is_kw("INDEX") {
            continue;
        }
        def.columns.push(parse_column(
            &item[i..],
            &mut def.primary_key,
            &mut def.pk_name,
            translate,
        )?);
    }
    if def.columns.is_empty() {
        return Err(syntax(toks.get(close)));
    }
    for k in &def.primary_key {
        match def
            .columns
            .iter_mut()
            .find(|c| c.name.eq_ignore_ascii_case(k))
        {
            Some(c) => c.nullable = false,
            None => {
                return Err(Error::sql(
                    1911,
                    format!("Column name '{k}' does not exist in the target table or view."),
                ));
            }
        }
    }
    Ok(def)
}

/// `PRIMARY KEY [CLUSTERED] (a [ASC], b)` -> [a, b].
fn key_columns(toks: &[Tok]) -> Option<Vec<String>> {
    let open = toks.iter().position(|t| t.is_sym("("))?;
    let close = closing(toks, open)?;
    let mut out = Vec::new();
    for t in &toks[open + 1..close] {
        if let Some(n) = t.ident()
            && !(t.is_kw("ASC") || t.is_kw("DESC"))
        {
            out.push(n.to_string());
        }
    }
    Some(out)
}

/// Parses a type at `toks[*i]` with its `(args)`.
pub(crate) fn parse_type(toks: &[Tok], i: &mut usize) -> Result<SqlType> {
    let name = toks.get(*i).and_then(Tok::ident).ok_or_else(|| {
        Error::sql(
            102,
            format!(
                "Incorrect syntax near '{}'.",
                toks.get(*i).map(Tok::text).unwrap_or_default()
            ),
        )
    })?;
    *i += 1;
    let mut args = Vec::new();
    if toks.get(*i).is_some_and(|t| t.is_sym("(")) {
        let close =
            closing(toks, *i).ok_or_else(|| Error::sql(102, "Incorrect syntax near '('."))?;
        for t in &toks[*i + 1..close] {
            if !t.is_sym(",") {
                args.push(t.text());
            }
        }
        *i = close + 1;
    }
    SqlType::parse(name, &args)
}

fn parse_column(
    toks: &[Tok],
    pk: &mut Vec<String>,
    pk_name: &mut Option<String>,
    translate: &dyn Fn(&[Tok]) -> Result<String>,
) -> Result<ColumnDef> {
    let name = toks[0]
        .ident()
        .ok_or_else(|| Error::sql(102, format!("Incorrect syntax near '{}'.", toks[0].text())))?;
    let mut i = 1;
    let ty = parse_type(toks, &mut i)?;
    let mut col = ColumnDef {
        name: name.to_string(),
        ty,
        nullable: true,
        identity: None,
        default: None,
    };
    let mut constraint_name = None;
    while i < toks.len() {
        let t = &toks[i];
        if t.is_kw("NOT") && toks.get(i + 1).is_some_and(|t| t.is_kw("NULL")) {
            col.nullable = false;
            i += 2;
        } else if t.is_kw("NULL") {
            i += 1;
        } else if t.is_kw("IDENTITY") {
            col.identity = Some((1, 1));
            i += 1;
            if toks.get(i).is_some_and(|t| t.is_sym("(")) {
                let close = closing(toks, i).unwrap_or(toks.len() - 1);
                let nums: Vec<i64> = toks[i + 1..close]
                    .iter()
                    .filter_map(|t| t.text().parse().ok())
                    .collect();
                if nums.len() == 2 {
                    col.identity = Some((nums[0], nums[1]));
                }
                i = close + 1;
            }
            col.nullable = false;
        } else if t.is_kw("PRIMARY") {
            pk.clear();
            pk.push(col.name.clone());
            *pk_name = constraint_name.take();
            i += 2;
            while toks
                .get(i)
                .is_some_and(|t| t.is_kw("CLUSTERED") || t.is_kw("NONCLUSTERED"))
            {
                i += 1;
            }
        } else if t.is_kw("CONSTRAINT") {
            constraint_name = toks.get(i + 1).and_then(Tok::ident).map(str::to_string);
            i += 2;
        } else if t.is_kw("DEFAULT") {
            i += 1;
            let start = i;
            if toks.get(i).is_some_and(|t| t.is_sym("(")) {
                i = closing(toks, i).map_or(toks.len(), |c| c + 1);
            } else {
                if toks.get(i).is_some_and(|t| t.is_sym("-")) {
                    i += 1;
                }
                i += 1;
                if toks.get(i).is_some_and(|t| t.is_sym("(")) {
                    i = closing(toks, i).map_or(toks.len(), |c| c + 1);
                }
            }
            col.default = Some(translate(&toks[start..i.min(toks.len())])?);
        } else if t.is_kw("COLLATE") {
            i += 2;
        } else if t.is_kw("CHECK") || t.is_kw("REFERENCES") {
            i += 1;
            while i < toks.len() && !toks[i].is_sym("(") {
                i += 1;
            }
            i = closing(toks, i).map_or(toks.len(), |c| c + 1);
        } else {
            // UNIQUE, ROWGUIDCOL, SPARSE, CLUSTERED...: accepted and not enforced beyond DuckDB.
            i += 1;
        }
    }
    Ok(col)
}
