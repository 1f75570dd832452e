//! SQL text shared by the source and the sink: quoted names, bound values, and the
//! predicates of cursor bounds, keyset pages and key ranges.
//!
//! Every comparison follows one total order per column: NULL first, then values in the
//! column's own order (what `ORDER BY c` does in MySQL). So "after NULL" is `c IS NOT NULL`,
//! "before v" includes the NULLs, and a reader resuming after a chunk whose last cursor was
//! NULL neither repeats nor skips a row. Bound values travel as parameters, wrapped in a
//! `CAST` for decimals and temporal types so that MySQL compares them as such (a string
//! compared with a decimal column would be compared as a double).

use std::ops::Bound;

use caudal_connector::{Field, LogicalType, Value};
use sqlx::mysql::{MySql, MySqlArguments};
use sqlx::query::Query;

use crate::calendar::{write_date, write_datetime, write_time};
use crate::encode::write_decimal;
use crate::error::{Error, Result};

/// A piece of SQL with its `?` parameters, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fragment {
    /// The text, with one `?` per parameter.
    pub sql: String,
    /// The parameters.
    pub params: Vec<Value>,
}

/// Appends `name` as a quoted identifier.
pub fn push_ident(out: &mut String, name: &str) {
    out.push('`');
    out.push_str(&name.replace('`', "``"));
    out.push('`');
}

/// `name` as a quoted identifier.
pub fn ident(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    push_ident(&mut s, name);
    s
}

/// A table name, optionally qualified by its database (`db.table`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// The database, when the name was qualified or a default applies.
    pub database: Option<String>,
    /// The table.
    pub table: String,
}

impl TableName {
    /// Splits `db.table` at the first dot; an unqualified name gets `default_database`.
    pub fn parse(name: &str, default_database: Option<&str>) -> Result<TableName> {
        let (database, table) = match name.split_once('.') {
            Some((db, t)) if !db.is_empty() && !t.is_empty() => (Some(db.to_owned()), t),
            Some(_) => {
                return Err(Error::NotFound(format!(
                    "table name `{name}` is not `table` or `database.table`"
                )));
            }
            None => (default_database.map(str::to_owned), name),
        };
        if table.is_empty() {
            return Err(Error::NotFound("an empty table name".into()));
        }
        Ok(TableName {
            database,
            table: table.to_owned(),
        })
    }

    /// The quoted, qualified name for SQL text.
    pub fn sql(&self) -> String {
        match &self.database {
            Some(db) => format!("{}.{}", ident(db), ident(&self.table)),
            None => ident(&self.table),
        }
    }

    /// The same database, another table.
    pub fn sibling(&self, table: &str) -> TableName {
        TableName {
            database: self.database.clone(),
            table: table.to_owned(),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.database {
            Some(db) => write!(f, "`{db}`.`{}`", self.table),
            None => write!(f, "`{}`", self.table),
        }
    }
}

/// The parameter marker for a value compared with a column of type `t`.
pub fn placeholder(t: &LogicalType) -> String {
    use LogicalType as L;
    match t {
        L::Decimal { precision, scale } => format!("CAST(? AS DECIMAL({precision},{scale}))"),
        L::Money => "CAST(? AS DECIMAL(19,4))".into(),
        L::SmallMoney => "CAST(? AS DECIMAL(10,4))".into(),
        L::Int128 => "CAST(? AS DECIMAL(39,0))".into(),
        L::Date => "CAST(? AS DATE)".into(),
        L::Time { .. } => "CAST(? AS TIME(6))".into(),
        L::DateTime { .. } | L::Timestamp { .. } | L::DateTimeOffset { .. } => {
            "CAST(? AS DATETIME(6))".into()
        }
        _ => "?".into(),
    }
}

/// Binds `value` as the next parameter of `query`.
pub fn bind<'q>(
    query: Query<'q, MySql, MySqlArguments>,
    value: &Value,
) -> Result<Query<'q, MySql, MySqlArguments>> {
    let text = |f: &dyn Fn(&mut String)| {
        let mut s = String::new();
        f(&mut s);
        s
    };
    Ok(match value {
        Value::Null => query.bind(None::<i64>),
        Value::Bool(b) => query.bind(*b),
        Value::Int(i) => query.bind(*i),
        Value::UInt(u) => query.bind(*u),
        Value::Int128(i) => query.bind(i.to_string()),
        Value::Float(f) => query.bind(*f),
        Value::Decimal { unscaled, scale } => {
            query.bind(text(&|s| write_decimal(s, *unscaled, *scale)))
        }
        Value::Date(d) => query.bind(text(&|s| write_date(s, i64::from(*d)))),
        Value::Time(t) => query.bind(text(&|s| write_time(s, *t))),
        Value::DateTime(m) | Value::Timestamp(m) => query.bind(text(&|s| write_datetime(s, *m))),
        Value::DateTimeOffset(o) => query.bind(text(&|s| write_datetime(s, o.utc_micros))),
        Value::Text(s) => query.bind(s.clone()),
        Value::Bytes(b) => query.bind(b.clone()),
        Value::Uuid(u) => query.bind(u.to_vec()),
        Value::Interval(i) => query.bind(format!("{}mo {}d {}us", i.months, i.days, i.micros)),
        other => {
            return Err(Error::Unsupported(format!(
                "{other:?} cannot be used as a bound value"
            )));
        }
    })
}

/// A query with every parameter of `fragment` bound.
pub fn query(fragment: Fragment) -> Result<Query<'static, MySql, MySqlArguments>> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(fragment.sql));
    for p in &fragment.params {
        q = bind(q, p)?;
    }
    Ok(q)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Greater,
    Less,
}

/// `c = v` in the NULL-first order.
fn equal(out: &mut Fragment, c: &Field, v: &Value) {
    push_ident(&mut out.sql, &c.name);
    if v.is_null() {
        out.sql.push_str(" IS NULL");
    } else {
        out.sql.push_str(" = ");
        out.sql.push_str(&placeholder(&c.logical_type));
        out.params.push(v.clone());
    }
}

/// `c > v` or `c < v` in the NULL-first order.
fn strictly(out: &mut Fragment, c: &Field, op: Op, v: &Value) {
    let name = ident(&c.name);
    match (op, v.is_null()) {
        (Op::Greater, true) => {
            out.sql.push_str(&name);
            out.sql.push_str(" IS NOT NULL");
        }
        (Op::Less, true) => out.sql.push_str("FALSE"),
        (op, false) => {
            let nulls_before = op == Op::Less && c.nullable;
            if nulls_before {
                out.sql.push('(');
            }
            out.sql.push_str(&name);
            out.sql
                .push_str(if op == Op::Greater { " > " } else { " < " });
            out.sql.push_str(&placeholder(&c.logical_type));
            out.params.push(v.clone());
            if nulls_before {
                out.sql.push_str(" OR ");
                out.sql.push_str(&name);
                out.sql.push_str(" IS NULL)");
            }
        }
    }
}

/// The tuple comparison `(c1, c2, ..) op (v1, v2, ..)`, expanded into `OR`s of `AND`s so
/// that the range optimizer of both MySQL and MariaDB uses the index.
fn tuple(columns: &[&Field], values: &[Value], op: Op, inclusive: bool) -> Fragment {
    let mut out = Fragment::default();
    out.sql.push('(');
    let n = columns.len().min(values.len());
    for i in 0..n {
        if i > 0 {
            out.sql.push_str(" OR ");
        }
        out.sql.push('(');
        for j in 0..i {
            equal(&mut out, columns[j], &values[j]);
            out.sql.push_str(" AND ");
        }
        strictly(&mut out, columns[i], op, &values[i]);
        out.sql.push(')');
    }
    if inclusive {
        if n > 0 {
            out.sql.push_str(" OR ");
        }
        out.sql.push('(');
        for j in 0..n {
            if j > 0 {
                out.sql.push_str(" AND ");
            }
            equal(&mut out, columns[j], &values[j]);
        }
        if n == 0 {
            out.sql.push_str("TRUE");
        }
        out.sql.push(')');
    } else if n == 0 {
        out.sql.push_str("FALSE");
    }
    out.sql.push(')');
    out
}

/// Rows strictly after `values` in the order of `columns` (the next keyset page).
pub fn after(columns: &[&Field], values: &[Value]) -> Fragment {
    tuple(columns, values, Op::Greater, false)
}

/// The lower bound of a range over `columns`, or `None` when unbounded.
pub fn lower(columns: &[&Field], bound: &Bound<Vec<Value>>) -> Option<Fragment> {
    match bound {
        Bound::Unbounded => None,
        Bound::Included(v) => Some(tuple(columns, v, Op::Greater, true)),
        Bound::Excluded(v) => Some(tuple(columns, v, Op::Greater, false)),
    }
}

/// The upper bound of a range over `columns`, or `None` when unbounded.
pub fn upper(columns: &[&Field], bound: &Bound<Vec<Value>>) -> Option<Fragment> {
    match bound {
        Bound::Unbounded => None,
        Bound::Included(v) => Some(tuple(columns, v, Op::Less, true)),
        Bound::Excluded(v) => Some(tuple(columns, v, Op::Less, false)),
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

/// `WHERE a AND b ...` of the non-empty fragments (empty text if there are none).
pub fn where_all(parts: impl IntoIterator<Item = Fragment>) -> Fragment {
    let mut out = Fragment::default();
    for (i, p) in parts.into_iter().enumerate() {
        out.sql.push_str(if i == 0 { " WHERE " } else { " AND " });
        out.sql.push_str(&p.sql);
        out.params.extend(p.params);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, t: LogicalType, nullable: bool) -> Field {
        Field::new(name, t, nullable)
    }

    #[test]
    fn identifiers_and_names() {
        assert_eq!(ident("a`b"), "`a``b`");
        let t = TableName::parse("ventas.lineas", Some("x")).unwrap();
        assert_eq!(t.sql(), "`ventas`.`lineas`");
        let t = TableName::parse("lineas", Some("x")).unwrap();
        assert_eq!(t.to_string(), "`x`.`lineas`");
        assert!(TableName::parse(".t", None).is_err());
        assert!(TableName::parse("", None).is_err());
    }

    #[test]
    fn keyset_after_expands_the_tuple() {
        let a = field("a", LogicalType::Int64, false);
        let b = field(
            "b",
            LogicalType::Decimal {
                precision: 10,
                scale: 2,
            },
            false,
        );
        let cols = [&a, &b];
        let f = after(&cols, &[Value::Int(1), Value::Int(2)]);
        assert_eq!(
            f.sql,
            "((`a` > ?) OR (`a` = ? AND `b` > CAST(? AS DECIMAL(10,2))))"
        );
        assert_eq!(f.params, vec![Value::Int(1), Value::Int(1), Value::Int(2)]);
    }

    #[test]
    fn nulls_come_first() {
        let c = field("c", LogicalType::Date, true);
        let k = field("k", LogicalType::Int32, false);
        let cols = [&c, &k];
        let f = after(&cols, &[Value::Null, Value::Int(5)]);
        assert_eq!(f.sql, "((`c` IS NOT NULL) OR (`c` IS NULL AND `k` > ?))");
        let f = upper(&cols[..1], &Bound::Excluded(vec![Value::Date(3)])).unwrap();
        assert_eq!(f.sql, "(((`c` < CAST(? AS DATE) OR `c` IS NULL)))");
        let f = upper(&cols[..1], &Bound::Excluded(vec![Value::Null])).unwrap();
        assert_eq!(f.sql, "((FALSE))");
        let f = lower(&cols[..1], &Bound::Included(vec![Value::Null])).unwrap();
        assert_eq!(f.sql, "((`c` IS NOT NULL) OR (`c` IS NULL))");
        let w = where_all([f, after(&cols[1..], &[Value::Int(1)])]);
        assert!(
            w.sql.starts_with(" WHERE ((") && w.sql.contains(" AND ((`k` > ?))"),
            "{}",
            w.sql
        );
    }
}
