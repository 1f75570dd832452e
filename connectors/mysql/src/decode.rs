//! Server -> batch: decoding rows of MySQL's binary protocol straight into a [`BatchBuilder`].
//!
//! Every read goes through a prepared statement, so values arrive in the binary protocol:
//! integers and floats as little-endian bytes, dates and times as small structs, decimals,
//! strings, bit strings and JSON as bytes. [`RowDecoder::new`] decides once per result set how
//! each column is decoded, from the target logical type (the stream's schema) and the type the
//! server announces ([`Wire`]); [`RowDecoder::push_row`] then does one match and one vector push
//! per value, borrowing the bytes from sqlx's row buffer (no per-value allocation).
//!
//! Decoding never panics on what the server sends: a value of the wrong length, a date that is
//! not a date, a decimal that does not fit its scale are [`Error::Decode`] naming the column.

use caudal_connector::{
    BatchBuilder, Field, Interval, LogicalType, OffsetTimestamp, Storage, Value,
};
use sqlx::mysql::{MySql, MySqlRow};
use sqlx::{Column as _, Decode, Row as _, TypeInfo as _, ValueRef as _};

use crate::calendar::{MICROS_PER_DAY, days_from_civil, is_valid_date};
use crate::error::{Error, Result};

/// How the server sends a column (from the result set's column definition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// A fixed-width little-endian integer of `bytes` bytes (`boolean`: `tinyint(1)`, whose
    /// signedness the server does not tell).
    Int {
        /// Width on the wire: 1, 2, 4 or 8.
        bytes: u8,
        /// Whether the column is unsigned.
        unsigned: bool,
        /// Whether the server calls it `BOOLEAN` (`tinyint(1)`).
        boolean: bool,
    },
    /// `YEAR`: a 2-byte integer.
    Year,
    /// `FLOAT`: 4 bytes.
    Float,
    /// `DOUBLE`: 8 bytes.
    Double,
    /// `DECIMAL`: its text.
    Decimal,
    /// `DATE`: length byte, year (2), month, day.
    Date,
    /// `TIME`: length byte, sign, days (4), hour, minute, second, microseconds (4).
    Time,
    /// `DATETIME` and `TIMESTAMP`: length byte, date, hour, minute, second, microseconds.
    DateTime,
    /// `BIT(n)`: big-endian bytes.
    Bit,
    /// Every string, binary, enum, set, JSON or geometry type: the bytes.
    Bytes,
    /// The `NULL` type (a literal NULL column): every value is NULL.
    Null,
}

impl Wire {
    /// The wire form of a result column, from the type name sqlx reports for it.
    pub fn of(type_name: &str) -> Wire {
        let unsigned = type_name.ends_with("UNSIGNED");
        let int = |bytes| Wire::Int {
            bytes,
            unsigned,
            boolean: false,
        };
        match type_name.split(' ').next().unwrap_or_default() {
            "BOOLEAN" => Wire::Int {
                bytes: 1,
                unsigned: false,
                boolean: true,
            },
            "TINYINT" => int(1),
            "SMALLINT" => int(2),
            "MEDIUMINT" | "INT" => int(4),
            "BIGINT" => int(8),
            "YEAR" => Wire::Year,
            "FLOAT" => Wire::Float,
            "DOUBLE" => Wire::Double,
            "DECIMAL" => Wire::Decimal,
            "DATE" => Wire::Date,
            "TIME" => Wire::Time,
            "DATETIME" | "TIMESTAMP" => Wire::DateTime,
            "BIT" => Wire::Bit,
            "NULL" => Wire::Null,
            _ => Wire::Bytes,
        }
    }
}

/// What one column's values become.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `tinyint(1)` -> bool; any value but 0 and 1 is an error.
    Bool {
        bytes: u8,
    },
    /// A wire integer into an integer storage, multiplied by `factor` (10^scale for decimals).
    Int {
        bytes: u8,
        unsigned: bool,
        factor: i128,
    },
    /// Decimal text into an unscaled `i128` at `scale`.
    Decimal {
        scale: u8,
    },
    Float32,
    Float64,
    /// A `FLOAT` read into an `f64` column (exact widening).
    Float32As64,
    Date,
    Time,
    /// `DATETIME` / `TIMESTAMP` as microseconds.
    Instant,
    /// `DATETIME` holding UTC, into a `DateTimeOffset` with offset 0.
    Offset,
    Bit,
    Text,
    Bytes,
    Uuid,
    Interval,
    Null,
}

/// Decodes one column.
#[derive(Debug, Clone)]
pub struct ColumnDecoder {
    kind: Kind,
    storage: Storage,
    name: String,
}

impl ColumnDecoder {
    /// The decoder of values sent as `wire` into a column of type `field.logical_type`.
    pub fn new(field: &Field, wire: Wire, server_type: &str) -> Result<ColumnDecoder> {
        use LogicalType as L;
        let t = &field.logical_type;
        let storage = t.storage();
        let mismatch = || {
            Error::Schema(format!(
                "column `{}`: the server sends {server_type} values, which cannot be read as {t:?}",
                field.name
            ))
        };
        let kind = match (t, wire) {
            (_, Wire::Null) => Kind::Null,
            (L::Bool, Wire::Int { bytes, .. }) => Kind::Bool { bytes },
            (L::Year, Wire::Year) => Kind::Int {
                bytes: 2,
                unsigned: true,
                factor: 1,
            },
            (L::Decimal { .. } | L::Money | L::SmallMoney | L::Int128, Wire::Decimal) => {
                Kind::Decimal {
                    scale: t.decimal_scale().unwrap_or(0),
                }
            }
            (
                _,
                Wire::Int {
                    bytes,
                    unsigned,
                    boolean,
                },
            ) if accepts_integers(t) => Kind::Int {
                bytes,
                // The server does not say whether a `tinyint(1)` is unsigned: trust the
                // column's logical type.
                unsigned: if boolean {
                    is_unsigned_storage(storage)
                } else {
                    unsigned
                },
                factor: match t.decimal_scale() {
                    Some(s) => 10i128.pow(u32::from(s)),
                    None => 1,
                },
            },
            (L::Float32, Wire::Float) => Kind::Float32,
            (L::Float64, Wire::Double) => Kind::Float64,
            (L::Float64, Wire::Float) => Kind::Float32As64,
            (L::Date, Wire::Date) => Kind::Date,
            (L::Time { .. }, Wire::Time) => Kind::Time,
            (L::DateTime { .. } | L::Timestamp { .. }, Wire::DateTime) => Kind::Instant,
            (L::DateTimeOffset { .. }, Wire::DateTime) => Kind::Offset,
            (L::Bit { .. }, Wire::Bit) => Kind::Bit,
            (L::Uuid, Wire::Bytes) => Kind::Uuid,
            (L::Interval, Wire::Bytes) => Kind::Interval,
            (_, Wire::Bytes | Wire::Decimal) if storage == Storage::Utf8 => Kind::Text,
            (_, Wire::Bytes) if storage == Storage::Binary => Kind::Bytes,
            _ => return Err(mismatch()),
        };
        Ok(ColumnDecoder {
            kind,
            storage,
            name: field.name.clone(),
        })
    }

    #[cold]
    fn fail(&self, why: impl std::fmt::Display) -> Error {
        Error::Decode(format!("column `{}`: {why}", self.name))
    }

    /// Appends one non-NULL value, as the server sent it, to column `col` of `b`.
    #[inline]
    pub fn push(&self, b: &mut BatchBuilder, col: usize, raw: &[u8]) -> Result<()> {
        match self.kind {
            Kind::Bool { bytes } => match read_int(raw, bytes, false) {
                Some(0) => b.push(col, false)?,
                Some(1) => b.push(col, true)?,
                Some(v) => {
                    return Err(self.fail(format!(
                        "holds {v}, which is not a boolean; declare the column tinyint(4), or \
                         read it through a query that casts it"
                    )));
                }
                None => return Err(self.fail(bad_length(raw, "integer"))),
            },
            Kind::Int {
                bytes,
                unsigned,
                factor,
            } => {
                let v = read_int(raw, bytes, unsigned)
                    .ok_or_else(|| self.fail(bad_length(raw, "integer")))?;
                let v = v
                    .checked_mul(factor)
                    .ok_or_else(|| self.fail(format!("{v} overflows")))?;
                push_int(b, col, self.storage, v)
                    .map_err(|()| self.fail(format!("{v} is out of range for its type")))?;
            }
            Kind::Decimal { scale } => {
                let v = parse_decimal(raw, scale).ok_or_else(|| {
                    self.fail(format!(
                        "decimal `{}` does not fit scale {scale} in 38 digits",
                        String::from_utf8_lossy(raw)
                    ))
                })?;
                b.push(col, v)?;
            }
            Kind::Float32 => {
                let a: [u8; 4] = raw
                    .try_into()
                    .map_err(|_| self.fail(bad_length(raw, "float")))?;
                b.push(col, f32::from_le_bytes(a))?;
            }
            Kind::Float64 => {
                let a: [u8; 8] = raw
                    .try_into()
                    .map_err(|_| self.fail(bad_length(raw, "double")))?;
                b.push(col, f64::from_le_bytes(a))?;
            }
            Kind::Float32As64 => {
                let a: [u8; 4] = raw
                    .try_into()
                    .map_err(|_| self.fail(bad_length(raw, "float")))?;
                b.push(col, f64::from(f32::from_le_bytes(a)))?;
            }
            Kind::Date => {
                let days = read_date(raw).map_err(|why| self.fail(why))?;
                let days = i32::try_from(days).map_err(|_| self.fail("date out of range"))?;
                b.push(col, days)?;
            }
            Kind::Time => b.push(col, read_time(raw).map_err(|why| self.fail(why))?)?,
            Kind::Instant => b.push(col, read_datetime(raw).map_err(|why| self.fail(why))?)?,
            Kind::Offset => {
                let utc_micros = read_datetime(raw).map_err(|why| self.fail(why))?;
                b.push(
                    col,
                    OffsetTimestamp {
                        utc_micros,
                        offset_minutes: 0,
                    },
                )?;
            }
            Kind::Bit => {
                if raw.len() > 8 {
                    return Err(self.fail(bad_length(raw, "bit")));
                }
                let v = raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                b.push(col, v)?;
            }
            Kind::Text => {
                let s = std::str::from_utf8(raw)
                    .map_err(|e| self.fail(format!("text is not UTF-8 ({e})")))?;
                b.push(col, s)?;
            }
            Kind::Bytes => b.push(col, raw)?,
            Kind::Uuid => b.push(col, read_uuid(raw).map_err(|why| self.fail(why))?)?,
            Kind::Interval => {
                let s = std::str::from_utf8(raw).ok();
                let v = s.and_then(parse_interval).ok_or_else(|| {
                    self.fail(format!(
                        "`{}` is not an interval written as `<months>mo <days>d <micros>us`",
                        String::from_utf8_lossy(raw)
                    ))
                })?;
                b.push(col, v)?;
            }
            Kind::Null => b.push_null(col)?,
        }
        Ok(())
    }
}

/// Logical types whose values an integer on the wire can become.
fn accepts_integers(t: &LogicalType) -> bool {
    use LogicalType as L;
    matches!(
        t,
        L::Int8
            | L::Int16
            | L::Int32
            | L::Int64
            | L::Int128
            | L::UInt8
            | L::UInt16
            | L::UInt32
            | L::UInt64
            | L::Year
            | L::Decimal { .. }
            | L::Money
            | L::SmallMoney
    )
}

fn is_unsigned_storage(s: Storage) -> bool {
    matches!(s, Storage::U8 | Storage::U16 | Storage::U32 | Storage::U64)
}

#[cold]
fn bad_length(raw: &[u8], what: &str) -> String {
    format!("the server sent {} bytes for a {what}", raw.len())
}

/// Decodes every column of a result set, in result order, into the builder's columns.
#[derive(Debug, Clone)]
pub struct RowDecoder {
    columns: Vec<ColumnDecoder>,
}

impl RowDecoder {
    /// A decoder for rows whose column `i` becomes field `i` of `fields`. `columns` is the
    /// result set's metadata (from the first row or the statement).
    pub fn new(fields: &[Field], columns: &[sqlx::mysql::MySqlColumn]) -> Result<RowDecoder> {
        if fields.len() != columns.len() {
            return Err(Error::Schema(format!(
                "the result has {} columns but the schema has {}",
                columns.len(),
                fields.len()
            )));
        }
        let columns = fields
            .iter()
            .zip(columns)
            .map(|(f, c)| {
                let name = c.type_info().name();
                ColumnDecoder::new(f, Wire::of(name), name)
            })
            .collect::<Result<_>>()?;
        Ok(RowDecoder { columns })
    }

    /// The decoder of column `i`.
    pub fn column(&self, i: usize) -> Option<&ColumnDecoder> {
        self.columns.get(i)
    }

    /// Appends one row.
    #[inline]
    pub fn push_row(&self, b: &mut BatchBuilder, row: &MySqlRow) -> Result<()> {
        for (col, d) in self.columns.iter().enumerate() {
            match raw_value(row, col)? {
                None => b.push_null(col)?,
                Some(raw) => d.push(b, col, raw)?,
            }
        }
        Ok(())
    }
}

/// The bytes of value `col` of `row` as the server sent them; `None` for NULL (and for zero
/// dates, which sqlx reports as NULL).
#[inline]
pub fn raw_value(row: &MySqlRow, col: usize) -> Result<Option<&[u8]>> {
    let v = row
        .try_get_raw(col)
        .map_err(|e| Error::Decode(format!("result column {col}: {e}")))?;
    if v.is_null() {
        return Ok(None);
    }
    <&[u8] as Decode<MySql>>::decode(v)
        .map(Some)
        .map_err(|e| Error::Decode(format!("result column {col}: {e}")))
}

/// One value as an owned [`Value`] (for keyset positions and cursors, never per row).
pub fn decode_value(field: &Field, decoder: &ColumnDecoder, raw: Option<&[u8]>) -> Result<Value> {
    let schema = caudal_connector::Schema::new(vec![field.clone()], &[])?;
    let mut b = BatchBuilder::with_capacity(std::sync::Arc::new(schema), 1);
    match raw {
        Some(raw) => decoder.push(&mut b, 0, raw)?,
        None => b.push_null(0)?,
    }
    let batch = b.finish()?;
    Ok(batch.value(0, 0).unwrap_or(Value::Null))
}

/// Reads a little-endian integer of `bytes` bytes; `None` if the length is wrong.
#[inline]
fn read_int(raw: &[u8], bytes: u8, unsigned: bool) -> Option<i128> {
    Some(match (bytes, unsigned) {
        (1, false) => i128::from(i8::from_le_bytes(raw.try_into().ok()?)),
        (1, true) => i128::from(u8::from_le_bytes(raw.try_into().ok()?)),
        (2, false) => i128::from(i16::from_le_bytes(raw.try_into().ok()?)),
        (2, true) => i128::from(u16::from_le_bytes(raw.try_into().ok()?)),
        (4, false) => i128::from(i32::from_le_bytes(raw.try_into().ok()?)),
        (4, true) => i128::from(u32::from_le_bytes(raw.try_into().ok()?)),
        (8, false) => i128::from(i64::from_le_bytes(raw.try_into().ok()?)),
        (8, true) => i128::from(u64::from_le_bytes(raw.try_into().ok()?)),
        _ => return None,
    })
}

/// Pushes an integer into an integer column of any width; `Err` if it does not fit.
#[inline]
fn push_int(b: &mut BatchBuilder, col: usize, storage: Storage, v: i128) -> Result<(), ()> {
    macro_rules! narrow {
        ($t:ty) => {
            b.push(col, <$t>::try_from(v).map_err(|_| ())?)
        };
    }
    let pushed = match storage {
        Storage::I8 => narrow!(i8),
        Storage::I16 => narrow!(i16),
        Storage::I32 => narrow!(i32),
        Storage::I64 => narrow!(i64),
        Storage::I128 => b.push(col, v),
        Storage::U8 => narrow!(u8),
        Storage::U16 => narrow!(u16),
        Storage::U32 => narrow!(u32),
        Storage::U64 => narrow!(u64),
        _ => return Err(()),
    };
    pushed.map_err(|_| ())
}

/// Parses MySQL's decimal text (`-123.4500`) into an unscaled integer at `scale`; `None` if it
/// is malformed, has more non-zero fraction digits than `scale`, or overflows `i128`.
pub fn parse_decimal(text: &[u8], scale: u8) -> Option<i128> {
    let (negative, digits) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        (b'+', rest) => (false, rest),
        _ => (false, text),
    };
    let (int_part, frac_part) = match digits.iter().position(|&c| c == b'.') {
        Some(dot) => (&digits[..dot], &digits[dot + 1..]),
        None => (digits, &[][..]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    // Negative values accumulate downwards, so that i128::MIN parses too.
    let step = |v: i128, c: u8| -> Option<i128> {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = i128::from(c - b'0');
        let v = v.checked_mul(10)?;
        if negative {
            v.checked_sub(d)
        } else {
            v.checked_add(d)
        }
    };
    let mut v: i128 = 0;
    for &c in int_part {
        v = step(v, c)?;
    }
    let scale = usize::from(scale);
    for i in 0..scale.max(frac_part.len()) {
        let c = frac_part.get(i).copied().unwrap_or(b'0');
        if i < scale {
            v = step(v, c)?;
        } else if c != b'0' {
            return None;
        }
    }
    Some(v)
}

/// `DATE` (or the date part of a `DATETIME`) as days since 1970-01-01.
fn read_date(raw: &[u8]) -> Result<i64, String> {
    let (&len, body) = raw.split_first().ok_or("an empty date value")?;
    if body.len() != usize::from(len) || len < 4 {
        return Err(bad_length(raw, "date"));
    }
    let year = i64::from(u16::from_le_bytes([body[0], body[1]]));
    let (month, day) = (u32::from(body[2]), u32::from(body[3]));
    if !is_valid_date(year, month, day) {
        return Err(format!(
            "{year:04}-{month:02}-{day:02} is not a calendar date (zero parts are not kept)"
        ));
    }
    Ok(days_from_civil(year, month, day))
}

/// `DATETIME` / `TIMESTAMP` as microseconds since 1970-01-01T00:00.
fn read_datetime(raw: &[u8]) -> Result<i64, String> {
    let days = read_date(raw)?;
    let body = &raw[1..];
    let (h, m, s) = match body.len() {
        4 => (0, 0, 0),
        7 | 11 => (i64::from(body[4]), i64::from(body[5]), i64::from(body[6])),
        _ => return Err(bad_length(raw, "datetime")),
    };
    let micros = if body.len() == 11 {
        i64::from(u32::from_le_bytes([body[7], body[8], body[9], body[10]]))
    } else {
        0
    };
    if h > 23 || m > 59 || s > 59 || micros > 999_999 {
        return Err(format!("time of day {h}:{m}:{s}.{micros} is out of range"));
    }
    Ok(days * MICROS_PER_DAY + ((h * 60 + m) * 60 + s) * 1_000_000 + micros)
}

/// `TIME` as signed microseconds.
fn read_time(raw: &[u8]) -> Result<i64, String> {
    let (&len, body) = raw.split_first().ok_or("an empty time value")?;
    if body.len() != usize::from(len) {
        return Err(bad_length(raw, "time"));
    }
    if len == 0 {
        return Ok(0);
    }
    if len != 8 && len != 12 {
        return Err(bad_length(raw, "time"));
    }
    let negative = body[0] == 1;
    let days = i64::from(u32::from_le_bytes([body[1], body[2], body[3], body[4]]));
    let (h, m, s) = (i64::from(body[5]), i64::from(body[6]), i64::from(body[7]));
    let micros = if len == 12 {
        i64::from(u32::from_le_bytes([body[8], body[9], body[10], body[11]]))
    } else {
        0
    };
    // MySQL's TIME spans -838:59:59..838:59:59: anything else is not a TIME.
    if days > 34 || h > 23 || m > 59 || s > 59 || micros > 999_999 {
        return Err(format!(
            "time {days}d {h}:{m}:{s}.{micros} is out of MySQL's TIME range"
        ));
    }
    let v = (((days * 24 + h) * 60 + m) * 60 + s) * 1_000_000 + micros;
    Ok(if negative { -v } else { v })
}

/// A UUID from 16 bytes (`binary(16)`) or its 36-character text (MariaDB's `uuid` type).
fn read_uuid(raw: &[u8]) -> Result<[u8; 16], String> {
    if let Ok(a) = <[u8; 16]>::try_from(raw) {
        return Ok(a);
    }
    let hex: Vec<u8> = raw.iter().copied().filter(|&c| c != b'-').collect();
    let mut out = [0u8; 16];
    if hex.len() != 32 {
        return Err(bad_length(raw, "uuid"));
    }
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
            _ => return Err("a uuid with a non-hex digit".into()),
        }
    }
    Ok(out)
}

/// Parses `"<months>mo <days>d <micros>us"` (how an interval is stored, see `types.rs`).
pub fn parse_interval(s: &str) -> Option<Interval> {
    let mut parts = s.split_whitespace();
    let months = parts.next()?.strip_suffix("mo")?.parse().ok()?;
    let days = parts.next()?.strip_suffix('d')?.parse().ok()?;
    let micros = parts.next()?.strip_suffix("us")?.parse().ok()?;
    parts.next().is_none().then_some(Interval {
        months,
        days,
        micros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimals_parse_at_scale() {
        assert_eq!(parse_decimal(b"-123.4500", 4), Some(-1_234_500));
        assert_eq!(parse_decimal(b"-123.4500", 2), Some(-12_345));
        assert_eq!(parse_decimal(b"123.4501", 2), None);
        assert_eq!(parse_decimal(b"0", 3), Some(0));
        assert_eq!(parse_decimal(b".5", 1), Some(5));
        assert_eq!(parse_decimal(b"1e5", 0), None);
        assert_eq!(parse_decimal(b"", 0), None);
        assert_eq!(parse_decimal(b"-", 0), None);
        assert_eq!(
            parse_decimal(b"99999999999999999999999999999999999999", 0),
            Some(10i128.pow(38) - 1)
        );
        assert_eq!(
            parse_decimal(b"-170141183460469231731687303715884105728", 0),
            Some(i128::MIN)
        );
        assert_eq!(
            parse_decimal(b"170141183460469231731687303715884105728", 0),
            None
        );
        assert_eq!(parse_decimal(b"1.2x", 2), None);
    }

    #[test]
    fn wire_names() {
        assert_eq!(
            Wire::of("BIGINT UNSIGNED"),
            Wire::Int {
                bytes: 8,
                unsigned: true,
                boolean: false
            }
        );
        assert_eq!(Wire::of("TIMESTAMP"), Wire::DateTime);
        assert_eq!(Wire::of("ENUM"), Wire::Bytes);
        assert_eq!(Wire::of("JSON"), Wire::Bytes);
    }

    fn one(t: LogicalType, wire: Wire, raw: &[u8]) -> Result<Value> {
        let f = Field::new("c", t, true);
        let d = ColumnDecoder::new(&f, wire, "T")?;
        decode_value(&f, &d, Some(raw))
    }

    #[test]
    fn binary_values() {
        let int = |bytes, unsigned| Wire::Int {
            bytes,
            unsigned,
            boolean: false,
        };
        assert_eq!(
            one(LogicalType::Int8, int(1, false), &[0xFF]).unwrap(),
            Value::Int(-1)
        );
        assert_eq!(
            one(LogicalType::UInt8, int(1, true), &[0xFF]).unwrap(),
            Value::Int(255)
        );
        assert_eq!(
            one(LogicalType::UInt64, int(8, true), &u64::MAX.to_le_bytes()).unwrap(),
            Value::UInt(u64::MAX)
        );
        // Too long for its column type: an error, not a wrapped value.
        assert!(one(LogicalType::Int8, int(2, false), &300i16.to_le_bytes()).is_err());
        assert!(one(LogicalType::Int32, int(4, false), &[1, 2]).is_err());
        let boolean = Wire::Int {
            bytes: 1,
            unsigned: false,
            boolean: true,
        };
        assert_eq!(
            one(LogicalType::Bool, boolean, &[1]).unwrap(),
            Value::Bool(true)
        );
        let e = one(LogicalType::Bool, boolean, &[2]).unwrap_err();
        assert!(
            e.to_string().contains("`c`") && e.to_string().contains("holds 2"),
            "{e}"
        );
        assert_eq!(
            one(LogicalType::UInt8, boolean, &[200]).unwrap(),
            Value::Int(200)
        );
        assert_eq!(
            one(LogicalType::Bit { width: 12 }, Wire::Bit, &[0x0F, 0xFF]).unwrap(),
            Value::UInt(0xFFF)
        );
        // 2024-02-29 13:14:15.000123
        let dt = [11, 0xE8, 0x07, 2, 29, 13, 14, 15, 123, 0, 0, 0];
        let v = one(LogicalType::DateTime { precision: 6 }, Wire::DateTime, &dt).unwrap();
        let days = days_from_civil(2024, 2, 29);
        assert_eq!(
            v,
            Value::DateTime(days * MICROS_PER_DAY + (13 * 3600 + 14 * 60 + 15) * 1_000_000 + 123)
        );
        let bad = [4, 0xE8, 0x07, 2, 30];
        assert!(one(LogicalType::Date, Wire::Date, &bad).is_err());
        assert!(one(LogicalType::Date, Wire::Date, &[4, 1]).is_err());
        // -838:59:59 as TIME: 34 days 22:59:59.
        let t = [8, 1, 34, 0, 0, 0, 22, 59, 59];
        assert_eq!(
            one(LogicalType::Time { precision: 0 }, Wire::Time, &t).unwrap(),
            Value::Time(-(838 * 3600 + 59 * 60 + 59) * 1_000_000)
        );
        assert_eq!(
            one(
                LogicalType::Decimal {
                    precision: 10,
                    scale: 2
                },
                Wire::Decimal,
                b"-1.50"
            )
            .unwrap(),
            Value::Decimal {
                unscaled: -150,
                scale: 2
            }
        );
        assert_eq!(
            one(
                LogicalType::Uuid,
                Wire::Bytes,
                b"00112233-4455-6677-8899-aabbccddeeff"
            )
            .unwrap(),
            Value::Uuid([
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ])
        );
        assert!(one(LogicalType::Json, Wire::Bytes, &[0xFF, 0xFE]).is_err());
    }

    #[test]
    fn incompatible_wire_is_refused_up_front() {
        let f = Field::new("d", LogicalType::Date, true);
        let e = ColumnDecoder::new(&f, Wire::Double, "DOUBLE").unwrap_err();
        assert!(
            e.to_string().contains("`d`") && e.to_string().contains("DOUBLE"),
            "{e}"
        );
    }

    #[test]
    fn interval_text() {
        let i = parse_interval("-3mo 12d 86399999999us").unwrap();
        assert_eq!((i.months, i.days, i.micros), (-3, 12, 86_399_999_999));
        assert!(parse_interval("3mo 12d").is_none());
        assert!(parse_interval("3mo 12d 1us extra").is_none());
    }

    proptest! {
        #[test]
        fn decimal_text_round_trips(unscaled in any::<i128>(), scale in 0u8..=38) {
            let mut s = String::new();
            crate::encode::write_decimal(&mut s, unscaled, scale);
            prop_assert_eq!(parse_decimal(s.as_bytes(), scale), Some(unscaled));
        }

        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..16)) {
            for (t, w) in [
                (LogicalType::Date, Wire::Date),
                (LogicalType::Time { precision: 6 }, Wire::Time),
                (LogicalType::DateTime { precision: 6 }, Wire::DateTime),
                (LogicalType::Decimal { precision: 38, scale: 10 }, Wire::Decimal),
                (LogicalType::Bit { width: 64 }, Wire::Bit),
                (LogicalType::Uuid, Wire::Bytes),
                (LogicalType::Float64, Wire::Double),
            ] {
                let _ = one(t, w, &raw);
            }
        }
    }
}
