//! Type mapping between the SDK's logical types and DuckDB.
//!
//! # Creating tables: logical type -> DuckDB ([`duckdb_type`])
//!
//! | logical type | DuckDB column | read back as | notes |
//! |---|---|---|---|
//! | `Bool` | `BOOLEAN` | `Bool` | |
//! | `Int8`, `Int16`, `Int32`, `Int64` | `TINYINT`, `SMALLINT`, `INTEGER`, `BIGINT` | same | |
//! | `Int128` | `HUGEINT` | `Int128` | crosses the appender and reads as text: Arrow has no 128-bit integer and `DECIMAL(38,0)` cannot hold `i128::MAX` |
//! | `UInt8` .. `UInt64` | `UTINYINT`, `USMALLINT`, `UINTEGER`, `UBIGINT` | same | |
//! | `Float32`, `Float64` | `FLOAT`, `DOUBLE` | same | NaN and infinities kept |
//! | `Decimal{p,s}` | `DECIMAL(p,s)` | same | p <= 38, DuckDB's maximum as well |
//! | `Money` | `DECIMAL(19,4)` | `Decimal{19,4}` | the range of SQL Server `money` |
//! | `SmallMoney` | `DECIMAL(10,4)` | `Decimal{10,4}` | the range of `smallmoney` |
//! | `Date` | `DATE` | `Date` | |
//! | `Time{p}` | `TIME` | `Time{6}` | only 00:00..=24:00; a MySQL duration outside it is refused with the column named |
//! | `DateTime{p}` | `TIMESTAMP` | `DateTime{6}` | microseconds whatever `p`: no value is rounded |
//! | `Timestamp{p}` | `TIMESTAMPTZ` | `Timestamp{6}` | UTC instant |
//! | `DateTimeOffset{p}` | `TIMESTAMPTZ` | `Timestamp{6}` | DuckDB keeps the instant, not the offset; the digest hashes the instant only, so it is unchanged |
//! | `Year` | `SMALLINT` | `Int16` | |
//! | `Bit{w}` | `UBIGINT` | `UInt64` | the bits as an unsigned integer (bit operators work on it) |
//! | `Char`, `Varchar`, `Text`, `NChar`, `NVarchar` | `VARCHAR` | `Varchar{None}` | DuckDB does not enforce lengths; values are never padded or cut |
//! | `Json` | `VARCHAR` | `Varchar{None}` | the JSON extension is not part of this build |
//! | `Enum{variants}` | `ENUM('a', ...)` | `Enum{variants}` | a value outside the list is refused with the column named; an empty list makes `VARCHAR` |
//! | `Set{members}` | `VARCHAR` | `Varchar{None}` | comma-separated, as MySQL prints it |
//! | `Binary`, `Varbinary`, `Blob` | `BLOB` | `Blob{None}` | |
//! | `Uuid` | `UUID` | `Uuid` | |
//! | `Interval` | `INTERVAL` | `Interval` | months, days and microseconds kept apart; crosses the appender as text (duckdb-rs drops the NULLs of Arrow intervals) |
//!
//! Every row digest is unchanged by the trip (the digest widens integers, normalises
//! decimals, hashes every text type alike and instants as UTC microseconds), which is what
//! the round-trip tests check.
//!
//! # Reading tables: DuckDB -> logical type ([`logical_type_of`])
//!
//! The table above read right to left, plus: `TIMESTAMP_S` / `_MS` / `_NS` as `DateTime{0}` /
//! `{3}` / `{6}` (nanoseconds truncated), `TIMESTAMP_NS WITH TIME ZONE` as `Timestamp{6}`,
//! `TIME_NS` as `Time{6}`, `UHUGEINT` as `Decimal{38,0}` (a value past 38 digits fails the
//! read, naming the column), `JSON` as `Json`. Types without a logical counterpart (`BIT`,
//! `TIME WITH TIME ZONE`, lists, structs, maps, unions, arrays, `VARINT`, ...) are read as
//! their DuckDB text (`Varchar{None}`) so that no table is unreadable.
//!
//! # Reading values ([`read_expression`])
//!
//! Every column is selected through a cast to the DuckDB type of its logical type, so the
//! Arrow arrays DuckDB returns have one known shape per logical type (see `arrow.rs`).

use caudal_connector::{Error, LogicalType, Result};

use crate::sql::{ident, string_literal};

/// The DuckDB column type that stores `t` (see the module table).
pub fn duckdb_type(t: &LogicalType) -> Result<String> {
    use LogicalType as L;
    Ok(match t {
        L::Bool => "BOOLEAN".into(),
        L::Int8 => "TINYINT".into(),
        L::Int16 | L::Year => "SMALLINT".into(),
        L::Int32 => "INTEGER".into(),
        L::Int64 => "BIGINT".into(),
        L::Int128 => "HUGEINT".into(),
        L::UInt8 => "UTINYINT".into(),
        L::UInt16 => "USMALLINT".into(),
        L::UInt32 => "UINTEGER".into(),
        L::UInt64 | L::Bit { .. } => "UBIGINT".into(),
        L::Float32 => "FLOAT".into(),
        L::Float64 => "DOUBLE".into(),
        L::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
        L::Money => "DECIMAL(19,4)".into(),
        L::SmallMoney => "DECIMAL(10,4)".into(),
        L::Date => "DATE".into(),
        L::Time { .. } => "TIME".into(),
        L::DateTime { .. } => "TIMESTAMP".into(),
        L::Timestamp { .. } | L::DateTimeOffset { .. } => "TIMESTAMPTZ".into(),
        L::Char { .. }
        | L::Varchar { .. }
        | L::Text { .. }
        | L::NChar { .. }
        | L::NVarchar { .. }
        | L::Json
        | L::Set { .. } => "VARCHAR".into(),
        L::Enum { variants } if variants.is_empty() => "VARCHAR".into(),
        L::Enum { variants } => {
            let list: Vec<String> = variants.iter().map(|v| string_literal(v)).collect();
            format!("ENUM({})", list.join(", "))
        }
        L::Binary { .. } | L::Varbinary { .. } | L::Blob { .. } => "BLOB".into(),
        L::Uuid => "UUID".into(),
        L::Interval => "INTERVAL".into(),
        other => {
            return Err(Error::Unsupported(format!(
                "the DuckDB connector has no column type for {other:?}"
            )));
        }
    })
}

/// The select-list expression that reads `column` as logical type `t`: a cast to the type's
/// DuckDB type (text for 128-bit integers and UUIDs, whose Arrow forms are lossy or vary).
pub fn read_expression(column: &str, t: &LogicalType) -> Result<String> {
    use LogicalType as L;
    let c = ident(column);
    let target = match t {
        L::Int128 | L::Uuid => "VARCHAR".to_owned(),
        // Enums come back as dictionaries otherwise; text is what the batch stores.
        L::Enum { .. } => "VARCHAR".to_owned(),
        other => duckdb_type(other)?,
    };
    Ok(format!("CAST({c} AS {target}) AS {c}"))
}

/// The logical type of a DuckDB column type as DuckDB prints it (`DECIMAL(18,4)`,
/// `TIMESTAMP WITH TIME ZONE`, `ENUM('a', 'b')`, `INTEGER[]`, ...).
pub fn logical_type_of(duckdb: &str) -> LogicalType {
    use LogicalType as L;
    let t = duckdb.trim();
    let upper = t.to_ascii_uppercase();
    if let Some(args) = upper
        .strip_prefix("DECIMAL(")
        .or_else(|| upper.strip_prefix("NUMERIC("))
        .and_then(|r| r.strip_suffix(')'))
    {
        return parse_decimal(args).unwrap_or(L::Varchar { max_length: None });
    }
    if upper.starts_with("ENUM(") && t.ends_with(')') {
        return match parse_enum(&t[5..t.len() - 1]) {
            Some(variants) => L::Enum { variants },
            None => L::Varchar { max_length: None },
        };
    }
    match upper.as_str() {
        "BOOLEAN" | "BOOL" => L::Bool,
        "TINYINT" | "INT1" => L::Int8,
        "SMALLINT" | "INT2" => L::Int16,
        "INTEGER" | "INT" | "INT4" => L::Int32,
        "BIGINT" | "INT8" => L::Int64,
        "HUGEINT" | "INT128" => L::Int128,
        "UTINYINT" => L::UInt8,
        "USMALLINT" => L::UInt16,
        "UINTEGER" => L::UInt32,
        "UBIGINT" => L::UInt64,
        "UHUGEINT" => L::Decimal {
            precision: 38,
            scale: 0,
        },
        "FLOAT" | "REAL" | "FLOAT4" => L::Float32,
        "DOUBLE" | "FLOAT8" => L::Float64,
        "DECIMAL" | "NUMERIC" => L::Decimal {
            precision: 18,
            scale: 3,
        },
        "DATE" => L::Date,
        "TIME" | "TIME_NS" => L::Time { precision: 6 },
        "TIMESTAMP" | "DATETIME" | "TIMESTAMP_US" | "TIMESTAMP_NS" => L::DateTime { precision: 6 },
        "TIMESTAMP_S" => L::DateTime { precision: 0 },
        "TIMESTAMP_MS" => L::DateTime { precision: 3 },
        "TIMESTAMP WITH TIME ZONE"
        | "TIMESTAMPTZ"
        | "TIMESTAMP_NS WITH TIME ZONE"
        | "TIMESTAMPTZ_NS"
        | "TIMESTAMP_TZ_NS" => L::Timestamp { precision: 6 },
        "INTERVAL" => L::Interval,
        "UUID" => L::Uuid,
        "BLOB" | "BYTEA" | "BINARY" | "VARBINARY" => L::Blob { max_bytes: None },
        "JSON" => L::Json,
        _ => L::Varchar { max_length: None },
    }
}

fn parse_decimal(args: &str) -> Option<LogicalType> {
    let (p, s) = args.split_once(',')?;
    let precision: u8 = p.trim().parse().ok()?;
    let scale: u8 = s.trim().parse().ok()?;
    let t = LogicalType::Decimal { precision, scale };
    t.validate().ok().map(|()| t)
}

/// The quoted values of an `ENUM(...)` type string: `'a', 'it''s'` -> `["a", "it's"]`.
fn parse_enum(list: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = list.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        if chars.next()? != '\'' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    value.push('\'');
                }
                '\'' => break,
                c => value.push(c),
            }
        }
        out.push(value);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_connector::sample::all_types_schema;

    #[test]
    fn every_sample_type_has_a_column_type() {
        for f in all_types_schema().fields() {
            let t = duckdb_type(&f.logical_type).unwrap();
            assert!(!t.is_empty(), "{}", f.name);
            read_expression(&f.name, &f.logical_type).unwrap();
        }
    }

    #[test]
    fn column_types_read_back_as_documented() {
        use LogicalType as L;
        let cases = [
            (L::Int128, L::Int128),
            (
                L::Money,
                L::Decimal {
                    precision: 19,
                    scale: 4,
                },
            ),
            (
                L::SmallMoney,
                L::Decimal {
                    precision: 10,
                    scale: 4,
                },
            ),
            (L::Year, L::Int16),
            (L::Bit { width: 3 }, L::UInt64),
            (L::Time { precision: 3 }, L::Time { precision: 6 }),
            (
                L::DateTimeOffset { precision: 2 },
                L::Timestamp { precision: 6 },
            ),
            (L::Json, L::Varchar { max_length: None }),
            (L::Binary { length: 4 }, L::Blob { max_bytes: None }),
            (
                L::Decimal {
                    precision: 38,
                    scale: 10,
                },
                L::Decimal {
                    precision: 38,
                    scale: 10,
                },
            ),
            (L::Interval, L::Interval),
            (L::Uuid, L::Uuid),
        ];
        for (written, read) in cases {
            assert_eq!(
                logical_type_of(&duckdb_type(&written).unwrap()),
                read,
                "{written:?}"
            );
        }
    }

    #[test]
    fn enums_with_quotes_round_trip_through_the_type_string() {
        let t = LogicalType::Enum {
            variants: vec!["it's".into(), "a, b".into(), "".into(), "日本".into()],
        };
        let s = duckdb_type(&t).unwrap();
        assert_eq!(s, "ENUM('it''s', 'a, b', '', '日本')");
        assert_eq!(logical_type_of(&s), t);
        assert_eq!(
            duckdb_type(&LogicalType::Enum { variants: vec![] }).unwrap(),
            "VARCHAR"
        );
        assert_eq!(
            logical_type_of("ENUM('a' 'b')"),
            LogicalType::Varchar { max_length: None }
        );
    }

    #[test]
    fn duckdb_spellings_map_as_documented() {
        use LogicalType as L;
        assert_eq!(
            logical_type_of("TIMESTAMP WITH TIME ZONE"),
            L::Timestamp { precision: 6 }
        );
        assert_eq!(
            logical_type_of("TIMESTAMP_MS"),
            L::DateTime { precision: 3 }
        );
        assert_eq!(
            logical_type_of("decimal(9, 2)"),
            L::Decimal {
                precision: 9,
                scale: 2
            }
        );
        assert_eq!(
            logical_type_of("DECIMAL(99,2)"),
            L::Varchar { max_length: None }
        );
        assert_eq!(
            logical_type_of("INTEGER[]"),
            L::Varchar { max_length: None }
        );
        assert_eq!(
            logical_type_of("STRUCT(a INTEGER)"),
            L::Varchar { max_length: None }
        );
        assert_eq!(logical_type_of("BIT"), L::Varchar { max_length: None });
    }

    proptest::proptest! {
        #[test]
        fn any_enum_round_trips_through_its_type_string(
            variants in proptest::collection::vec("[^\\x00]{0,12}", 1..6)
        ) {
            let t = LogicalType::Enum { variants };
            proptest::prop_assert_eq!(logical_type_of(&duckdb_type(&t).unwrap()), t);
        }
    }
}
