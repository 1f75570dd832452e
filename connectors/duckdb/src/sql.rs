//! SQL text: quoted identifiers, table names, typed literals for cursor and key bounds, and
//! the `@from` / `@to` placeholders of stream queries.
//!
//! Values are written into statements as typed literals rather than bound as parameters, so
//! that a query with `@from` can still be described (`DESCRIBE`) to learn its result schema.
//! Every literal is exact: integers in decimal, floats by their shortest round-trip text,
//! decimals with their scale, dates and times from their integer units through DuckDB's own
//! constructors, text and bytes quoted with every quote doubled (nothing else needs escaping
//! inside a DuckDB string literal).

use std::fmt::Write as _;
use std::ops::Bound;

use caudal_connector::{Error, Interval, KeyRange, OffsetTimestamp, Result, Value};

/// `name` as a quoted identifier: `"a""b"` for `a"b`.
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `text` as a string literal: `'O''Brien'`.
pub fn string_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A table name as users write it: `table` (schema `main`) or `schema.table`, split at the
/// first dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// The schema (`main` when the name has none).
    pub schema: String,
    /// The table.
    pub table: String,
}

impl TableName {
    /// Parses `table` or `schema.table`; empty parts are an error naming the input.
    pub fn parse(name: &str) -> Result<TableName> {
        let (schema, table) = match name.split_once('.') {
            Some((s, t)) => (s, t),
            None => ("main", name),
        };
        if schema.is_empty() || table.is_empty() {
            return Err(Error::Schema(format!(
                "table name `{name}` is not `table` or `schema.table`"
            )));
        }
        Ok(TableName {
            schema: schema.to_owned(),
            table: table.to_owned(),
        })
    }

    /// The quoted, schema-qualified name for SQL text.
    pub fn sql(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.table))
    }

    /// The name as users see it: schema `main` is left out.
    pub fn display(&self) -> String {
        if self.schema == "main" {
            self.table.clone()
        } else {
            format!("{}.{}", self.schema, self.table)
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// A [`Value`] as a typed DuckDB literal (the type follows the value's class: `Int` is a
/// `BIGINT`, `Timestamp` a `TIMESTAMPTZ`, and so on; comparisons cast as needed).
pub fn literal(value: &Value) -> Result<String> {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = match value {
        Value::Null => write!(s, "NULL"),
        Value::Bool(b) => write!(s, "{}", if *b { "TRUE" } else { "FALSE" }),
        Value::Int(i) => write!(s, "CAST({i} AS BIGINT)"),
        Value::UInt(u) => write!(s, "CAST({u} AS UBIGINT)"),
        Value::Int128(i) => write!(s, "CAST('{i}' AS HUGEINT)"),
        Value::Float(f) => write!(s, "CAST('{}' AS DOUBLE)", float_text(*f)),
        Value::Decimal { unscaled, scale } => {
            if *scale > 38 {
                return Err(Error::Schema(format!(
                    "decimal literal with scale {scale} exceeds DuckDB's 38 digits"
                )));
            }
            write!(
                s,
                "CAST('{}' AS DECIMAL(38,{scale}))",
                decimal_text(*unscaled, *scale)
            )
        }
        Value::Date(days) => write!(s, "CAST(DATE '1970-01-01' + ({days}) AS DATE)"),
        Value::Time(micros) => write!(
            s,
            "CAST(TIME '00:00:00' + to_microseconds({micros}) AS TIME)"
        ),
        Value::DateTime(micros) => write!(s, "make_timestamp(CAST({micros} AS BIGINT))"),
        Value::Timestamp(micros)
        | Value::DateTimeOffset(OffsetTimestamp {
            utc_micros: micros, ..
        }) => write!(
            s,
            "CAST(make_timestamp(CAST({micros} AS BIGINT)) AS TIMESTAMPTZ)"
        ),
        Value::Text(t) => write!(s, "{}", string_literal(t)),
        Value::Bytes(b) => {
            s.push_str("from_hex('");
            for byte in b {
                let _ = write!(s, "{byte:02X}");
            }
            write!(s, "')")
        }
        Value::Uuid(u) => write!(s, "CAST('{}' AS UUID)", uuid_text(u)),
        Value::Interval(Interval {
            months,
            days,
            micros,
        }) => write!(
            s,
            "(to_months({months}) + to_days({days}) + to_microseconds(CAST({micros} AS BIGINT)))"
        ),
        other => {
            return Err(Error::Unsupported(format!(
                "no DuckDB literal for the value {other:?}"
            )));
        }
    };
    Ok(s)
}

/// Shortest text that parses back to the same `f64`, with DuckDB's names for the specials.
fn float_text(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{f:?}")
    }
}

/// `unscaled * 10^-scale` as exact decimal text.
fn decimal_text(unscaled: i128, scale: u8) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    let scale = usize::from(scale);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// The canonical hyphenated form of a UUID in RFC 4122 byte order.
pub fn uuid_text(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses the hyphenated (or plain 32-digit) form of a UUID.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let mut nibbles = text.bytes().filter(|b| *b != b'-');
    for byte in out.iter_mut() {
        let hi = hex_value(nibbles.next()?)?;
        let lo = hex_value(nibbles.next()?)?;
        *byte = hi << 4 | lo;
    }
    nibbles.next().is_none().then_some(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The value a placeholder stands for, rendered for SQL text.
fn bound_literal(name: &str, bound: &Bound<Value>) -> Result<String> {
    match bound {
        Bound::Included(v) | Bound::Excluded(v) => literal(v),
        Bound::Unbounded => Err(Error::Schema(format!(
            "the query uses @{name} but the read has no {} cursor bound; give the stream a cursor \
             start, or filter with the cursor column instead of @{name}",
            if name == "from" { "lower" } else { "upper" }
        ))),
    }
}

/// Replaces the `@from` and `@to` placeholders of a stream query with literals of the cursor
/// bounds. Placeholders inside string literals, quoted identifiers and comments are left
/// alone; `@fromage` is not `@from`.
pub fn bind_placeholders(query: &str, from: &Bound<Value>, to: &Bound<Value>) -> Result<String> {
    let bytes = query.as_bytes();
    let mut out = String::with_capacity(query.len() + 32);
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == quote {
                        // A doubled quote is an escaped quote, not the end.
                        if bytes.get(i + 1) == Some(&quote) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'@' => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_')
                {
                    end += 1;
                }
                let name = &query[start..end];
                let replacement = match name.to_ascii_lowercase().as_str() {
                    "from" => Some(bound_literal("from", from)?),
                    "to" => Some(bound_literal("to", to)?),
                    _ => None,
                };
                if let Some(r) = replacement {
                    out.push_str(&query[copied..i]);
                    out.push_str(&r);
                    copied = end;
                }
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    out.push_str(&query[copied.min(query.len())..]);
    Ok(out)
}

/// One side of a cursor bound as a condition on `column` (`None` when unbounded).
pub fn cursor_condition(column: &str, bound: &Bound<Value>, lower: bool) -> Result<Option<String>> {
    let (v, strict) = match bound {
        Bound::Unbounded => return Ok(None),
        Bound::Included(v) => (v, false),
        Bound::Excluded(v) => (v, true),
    };
    let op = match (lower, strict) {
        (true, true) => ">",
        (true, false) => ">=",
        (false, true) => "<",
        (false, false) => "<=",
    };
    Ok(Some(format!("{} {op} {}", ident(column), literal(v)?)))
}

/// The condition "key tuple within `range`" over the primary-key columns `keys`, as a
/// lexicographic comparison expanded into `OR`/`AND` (no reliance on row-value syntax).
pub fn key_range_condition(keys: &[&str], range: &KeyRange) -> Result<Option<String>> {
    let mut parts = Vec::new();
    for (bound, lower) in [(&range.lower, true), (&range.upper, false)] {
        let (values, strict) = match bound {
            Bound::Unbounded => continue,
            Bound::Included(v) => (v, false),
            Bound::Excluded(v) => (v, true),
        };
        if keys.is_empty() {
            return Err(Error::Schema(
                "a key range needs a primary key, and the schema has none".into(),
            ));
        }
        if values.len() != keys.len() {
            return Err(Error::Schema(format!(
                "a key range bound has {} values for a primary key of {} columns ({})",
                values.len(),
                keys.len(),
                keys.join(", ")
            )));
        }
        let literals = values.iter().map(literal).collect::<Result<Vec<_>>>()?;
        parts.push(lexicographic(keys, &literals, lower, strict));
    }
    Ok((!parts.is_empty()).then(|| parts.join(" AND ")))
}

/// `(k1, .., kn) OP (v1, .., vn)` expanded: `k1 > v1 OR (k1 = v1 AND (...))`.
fn lexicographic(keys: &[&str], values: &[String], lower: bool, strict: bool) -> String {
    let (cmp, last) = match (lower, strict) {
        (true, true) => (">", ">"),
        (true, false) => (">", ">="),
        (false, true) => ("<", "<"),
        (false, false) => ("<", "<="),
    };
    let n = keys.len();
    let mut expr = format!("{} {last} {}", ident(keys[n - 1]), values[n - 1]);
    for i in (0..n - 1).rev() {
        let k = ident(keys[i]);
        expr = format!("({k} {cmp} {v} OR ({k} = {v} AND {expr}))", v = values[i]);
    }
    format!("({expr})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_strings_double_their_quotes() {
        assert_eq!(ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(string_literal("O'Brien"), "'O''Brien'");
        assert_eq!(
            TableName::parse("ventas.raw").unwrap().sql(),
            r#""ventas"."raw""#
        );
        assert_eq!(TableName::parse("t").unwrap().display(), "t");
        assert!(TableName::parse(".t").is_err());
        assert!(TableName::parse("s.").is_err());
    }

    #[test]
    fn decimals_keep_their_scale() {
        assert_eq!(decimal_text(12345, 2), "123.45");
        assert_eq!(decimal_text(-5, 3), "-0.005");
        assert_eq!(decimal_text(0, 0), "0");
        assert_eq!(decimal_text(i128::MIN + 1, 0), (i128::MIN + 1).to_string());
    }

    #[test]
    fn uuid_text_round_trips() {
        let u = *b"\x01\x23\x45\x67\x89\xab\xcd\xef\x00\x11\x22\x33\x44\x55\x66\x77";
        let t = uuid_text(&u);
        assert_eq!(t, "01234567-89ab-cdef-0011-223344556677");
        assert_eq!(parse_uuid(&t), Some(u));
        assert_eq!(parse_uuid(&t.to_uppercase()), Some(u));
        assert_eq!(parse_uuid("0123"), None);
        assert_eq!(parse_uuid(&format!("{t}0")), None);
        assert_eq!(parse_uuid("zz234567-89ab-cdef-0011-223344556677"), None);
    }

    #[test]
    fn placeholders_outside_quotes_and_comments_are_bound() {
        let q = "SELECT '@from', \"@to\" FROM t -- @from\nWHERE d >= @from AND d < @TO /* @to */ AND x = @fromage";
        let out = bind_placeholders(
            q,
            &Bound::Included(Value::Date(3)),
            &Bound::Excluded(Value::Int(7)),
        )
        .unwrap();
        assert_eq!(
            out,
            "SELECT '@from', \"@to\" FROM t -- @from\nWHERE d >= CAST(DATE '1970-01-01' + (3) AS DATE) AND d < CAST(7 AS BIGINT) /* @to */ AND x = @fromage"
        );
        let err = bind_placeholders("SELECT @from", &Bound::Unbounded, &Bound::Unbounded)
            .unwrap_err()
            .to_string();
        assert!(err.contains("@from") && err.contains("lower"), "{err}");
        // Without placeholders, unbounded reads are fine.
        assert_eq!(
            bind_placeholders("SELECT 1", &Bound::Unbounded, &Bound::Unbounded).unwrap(),
            "SELECT 1"
        );
    }

    #[test]
    fn key_ranges_expand_lexicographically() {
        let range = KeyRange {
            lower: Bound::Included(vec![Value::Int(1), Value::Text("b".into())]),
            upper: Bound::Excluded(vec![Value::Int(5), Value::Text("a".into())]),
        };
        let cond = key_range_condition(&["k", "s"], &range).unwrap().unwrap();
        assert_eq!(
            cond,
            "((\"k\" > CAST(1 AS BIGINT) OR (\"k\" = CAST(1 AS BIGINT) AND \"s\" >= 'b'))) AND \
             ((\"k\" < CAST(5 AS BIGINT) OR (\"k\" = CAST(5 AS BIGINT) AND \"s\" < 'a')))"
        );
        assert_eq!(key_range_condition(&["k"], &KeyRange::all()).unwrap(), None);
        let short = KeyRange {
            lower: Bound::Included(vec![Value::Int(1)]),
            upper: Bound::Unbounded,
        };
        assert!(key_range_condition(&["k", "s"], &short).is_err());
        assert!(key_range_condition(&[], &short).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn uuid_text_round_trips_for_any_bytes(u in proptest::prelude::any::<[u8; 16]>()) {
            proptest::prop_assert_eq!(parse_uuid(&uuid_text(&u)), Some(u));
        }

        #[test]
        fn binding_never_panics_and_leaves_other_text_alone(q in "[ -~\\n]{0,80}") {
            let out = bind_placeholders(&q, &Bound::Included(Value::Int(1)), &Bound::Included(Value::Int(2)));
            if !q.contains('@') {
                proptest::prop_assert_eq!(out.unwrap(), q);
            }
        }

        #[test]
        fn decimal_text_parses_back(unscaled in proptest::prelude::any::<i64>(), scale in 0u8..20) {
            let text = decimal_text(i128::from(unscaled), scale);
            let digits: String = text.chars().filter(|c| c.is_ascii_digit() || *c == '-').collect();
            proptest::prop_assert_eq!(digits.parse::<i128>().unwrap(), i128::from(unscaled));
            let frac = text.split_once('.').map_or(0, |(_, f)| f.len());
            proptest::prop_assert_eq!(frac, usize::from(scale));
        }
    }
}
