//! SQL Server column types as declared in `CREATE TABLE`, their DuckDB storage, and their wire
//! form: TYPE_INFO in COLMETADATA, values in ROW tokens (from DuckDB), and values decoded from RPC
//! parameters and bulk-load rows (into [`Value`], later rendered as DuckDB literals).
//!
//! Storage choices (each keeps the value exactly):
//! - `datetime` is a DuckDB `TIMESTAMP`; wire ticks (1/300 s) are stored as the rounded
//!   microsecond and read back as the nearest tick, which is the tick that was written.
//! - `datetime2(7)` uses `TIMESTAMP_NS` (so it covers 1677..2262 only); lower scales use
//!   microseconds. `time(n)` is `TIME` (microseconds): `time(7)` loses its last digit, as the
//!   DuckDB Rust binding cannot read `TIME_NS` values.
//! - `datetimeoffset(n)` is text `YYYY-MM-DD HH:MM:SS.fffffff +HH:MM` (local time and offset).
//! - `money` / `smallmoney` are `DECIMAL(19,4)` / `DECIMAL(10,4)`; `tinyint` is `UTINYINT`.
//! - `char`/`varchar`/`text` are sent with collation Latin1_General_CI_AS (code page 1252).

use bytes::{BufMut, BytesMut};
use duckdb::types::{TimeUnit, ValueRef};

use crate::error::{Error, Result};

/// Days from 0001-01-01 to 1970-01-01 (proleptic Gregorian).
pub(crate) const DAYS_0001_TO_1970: i64 = 719_162;
/// Days from 1900-01-01 to 1970-01-01.
const DAYS_1900_TO_1970: i64 = 25_567;
const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// Collation Latin1_General_CI_AS: LCID 0x0409, ignore case/kana/width, sort id 0 (code page 1252).
pub(crate) const LATIN1_CI_AS: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x00];

/// A column type as SQL Server names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Numeric {
        precision: u8,
        scale: u8,
    },
    Money,
    SmallMoney,
    Real,
    Float,
    Date,
    Time(u8),
    DateTime,
    DateTime2(u8),
    SmallDateTime,
    DateTimeOffset(u8),
    Char(u16),
    /// `None` is `max`.
    VarChar(Option<u16>),
    NChar(u16),
    NVarChar(Option<u16>),
    Text,
    NText,
    Binary(u16),
    VarBinary(Option<u16>),
    UniqueIdentifier,
}

impl SqlType {
    /// Parses a type name with its arguments (`args` as written: numbers or `max`).
    pub fn parse(name: &str, args: &[String]) -> Result<SqlType> {
        let lower = name.to_ascii_lowercase();
        let num = |i: usize, default: u32| -> Result<u32> {
            match args.get(i) {
                None => Ok(default),
                Some(a) => a
                    .parse::<u32>()
                    .map_err(|_| Error::sql(102, format!("Incorrect syntax near '{a}'."))),
            }
        };
        let len = |default: u32, limit: u32| -> Result<Option<u16>> {
            match args.first() {
                Some(a) if a.eq_ignore_ascii_case("max") => Ok(None),
                _ => {
                    let n = num(0, default)?;
                    if n == 0 || n > limit {
                        return Err(Error::sql(
                            131,
                            format!(
                                "The size ({n}) given to the type '{lower}' exceeds the maximum allowed for any data type ({limit})."
                            ),
                        ));
                    }
                    Ok(Some(n as u16))
                }
            }
        };
        let fixed = |default: u32, limit: u32| -> Result<u16> {
            len(default, limit)?.ok_or_else(|| {
                Error::sql(
                    2716,
                    format!("Column or parameter has an invalid type specification: {lower}(max)."),
                )
            })
        };
        let scale7 = || -> Result<u8> {
            let s = num(0, 7)?;
            if s > 7 {
                return Err(Error::sql(1002, format!("Specified scale {s} is invalid.")));
            }
            Ok(s as u8)
        };
        Ok(match lower.as_str() {
            "bit" => SqlType::Bit,
            "tinyint" => SqlType::TinyInt,
            "smallint" => SqlType::SmallInt,
            "int" | "integer" => SqlType::Int,
            "bigint" => SqlType::BigInt,
            "decimal" | "dec" | "numeric" => {
                let precision = num(0, 18)?;
                let scale = num(1, 0)?;
                if !(1..=38).contains(&precision) || scale > precision {
                    return Err(Error::sql(
                        2750,
                        format!(
                            "Column or parameter has an invalid precision or scale: ({precision}, {scale})."
                        ),
                    ));
                }
                let (precision, scale) = (precision as u8, scale as u8);
                if lower == "numeric" {
                    SqlType::Numeric { precision, scale }
                } else {
                    SqlType::Decimal { precision, scale }
                }
            }
            "money" => SqlType::Money,
            "smallmoney" => SqlType::SmallMoney,
            "real" => SqlType::Real,
            "float" => {
                if num(0, 53)? <= 24 {
                    SqlType::Real
                } else {
                    SqlType::Float
                }
            }
            "date" => SqlType::Date,
            "time" => SqlType::Time(scale7()?),
            "datetime" => SqlType::DateTime,
            "datetime2" => SqlType::DateTime2(scale7()?),
            "smalldatetime" => SqlType::SmallDateTime,
            "datetimeoffset" => SqlType::DateTimeOffset(scale7()?),
            "char" | "character" => SqlType::Char(fixed(1, 8000)?),
            "varchar" => SqlType::VarChar(len(1, 8000)?),
            "nchar" => SqlType::NChar(fixed(1, 4000)?),
            "nvarchar" => SqlType::NVarChar(len(1, 4000)?),
            "text" => SqlType::Text,
            "ntext" => SqlType::NText,
            "binary" => SqlType::Binary(fixed(1, 8000)?),
            "varbinary" => SqlType::VarBinary(len(1, 8000)?),
            "uniqueidentifier" => SqlType::UniqueIdentifier,
            "sysname" => SqlType::NVarChar(Some(128)),
            _ => {
                return Err(Error::sql(
                    2715,
                    format!("Column, parameter, or variable #1: Cannot find data type {name}."),
                ));
            }
        })
    }

    /// The DuckDB type that stores this type exactly.
    pub fn duckdb_type(self) -> String {
        match self {
            SqlType::Bit => "BOOLEAN".into(),
            SqlType::TinyInt => "UTINYINT".into(),
            SqlType::SmallInt => "SMALLINT".into(),
            SqlType::Int => "INTEGER".into(),
            SqlType::BigInt => "BIGINT".into(),
            SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale } => {
                format!("DECIMAL({precision},{scale})")
            }
            SqlType::Money => "DECIMAL(19,4)".into(),
            SqlType::SmallMoney => "DECIMAL(10,4)".into(),
            SqlType::Real => "FLOAT".into(),
            SqlType::Float => "DOUBLE".into(),
            SqlType::Date => "DATE".into(),
            SqlType::Time(_) => "TIME".into(),
            SqlType::DateTime2(7) => "TIMESTAMP_NS".into(),
            SqlType::DateTime | SqlType::DateTime2(_) | SqlType::SmallDateTime => {
                "TIMESTAMP".into()
            }
            SqlType::DateTimeOffset(_) => "VARCHAR".into(),
            SqlType::Char(_)
            | SqlType::VarChar(_)
            | SqlType::NChar(_)
            | SqlType::NVarChar(_)
            | SqlType::Text
            | SqlType::NText => "VARCHAR".into(),
            SqlType::Binary(_) | SqlType::VarBinary(_) => "BLOB".into(),
            SqlType::UniqueIdentifier => "UUID".into(),
        }
    }

    /// The name INFORMATION_SCHEMA reports in DATA_TYPE.
    pub fn name(self) -> &'static str {
        match self {
            SqlType::Bit => "bit",
            SqlType::TinyInt => "tinyint",
            SqlType::SmallInt => "smallint",
            SqlType::Int => "int",
            SqlType::BigInt => "bigint",
            SqlType::Decimal { .. } => "decimal",
            SqlType::Numeric { .. } => "numeric",
            SqlType::Money => "money",
            SqlType::SmallMoney => "smallmoney",
            SqlType::Real => "real",
            SqlType::Float => "float",
            SqlType::Date => "date",
            SqlType::Time(_) => "time",
            SqlType::DateTime => "datetime",
            SqlType::DateTime2(_) => "datetime2",
            SqlType::SmallDateTime => "smalldatetime",
            SqlType::DateTimeOffset(_) => "datetimeoffset",
            SqlType::Char(_) => "char",
            SqlType::VarChar(_) => "varchar",
            SqlType::NChar(_) => "nchar",
            SqlType::NVarChar(_) => "nvarchar",
            SqlType::Text => "text",
            SqlType::NText => "ntext",
            SqlType::Binary(_) => "binary",
            SqlType::VarBinary(_) => "varbinary",
            SqlType::UniqueIdentifier => "uniqueidentifier",
        }
    }

    /// The type as T-SQL writes it, with its arguments: `nvarchar(max)`, `decimal(18,2)`.
    pub fn declaration(self) -> String {
        let n = |v: Option<u16>| v.map_or("max".to_string(), |v| v.to_string());
        match self {
            SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale } => {
                format!("{}({precision},{scale})", self.name())
            }
            SqlType::Time(s) | SqlType::DateTime2(s) | SqlType::DateTimeOffset(s) => {
                format!("{}({s})", self.name())
            }
            SqlType::Char(l) | SqlType::NChar(l) | SqlType::Binary(l) => {
                format!("{}({l})", self.name())
            }
            SqlType::VarChar(l) | SqlType::NVarChar(l) | SqlType::VarBinary(l) => {
                format!("{}({})", self.name(), n(l))
            }
            _ => self.name().to_string(),
        }
    }

    /// CHARACTER_MAXIMUM_LENGTH: characters (or bytes), -1 for max, 2^30-1 / 2^31-1 for ntext/text.
    pub fn char_max_length(self) -> Option<i64> {
        match self {
            SqlType::Char(l) | SqlType::NChar(l) | SqlType::Binary(l) => Some(i64::from(l)),
            SqlType::VarChar(l) | SqlType::NVarChar(l) | SqlType::VarBinary(l) => {
                Some(l.map_or(-1, i64::from))
            }
            SqlType::Text => Some(2_147_483_647),
            SqlType::NText => Some(1_073_741_823),
            _ => None,
        }
    }

    /// NUMERIC_PRECISION and NUMERIC_SCALE as SQL Server reports them.
    pub fn numeric_precision_scale(self) -> Option<(i64, i64)> {
        Some(match self {
            SqlType::TinyInt => (3, 0),
            SqlType::SmallInt => (5, 0),
            SqlType::Int => (10, 0),
            SqlType::BigInt => (19, 0),
            SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale } => {
                (i64::from(precision), i64::from(scale))
            }
            SqlType::Money => (19, 4),
            SqlType::SmallMoney => (10, 4),
            SqlType::Real => (24, -1),
            SqlType::Float => (53, -1),
            _ => return None,
        })
    }

    /// DATETIME_PRECISION.
    pub fn datetime_precision(self) -> Option<i64> {
        match self {
            SqlType::Date | SqlType::SmallDateTime => Some(0),
            SqlType::DateTime => Some(3),
            SqlType::Time(s) | SqlType::DateTime2(s) | SqlType::DateTimeOffset(s) => {
                Some(i64::from(s))
            }
            _ => None,
        }
    }

    /// The longest value in characters (strings) or bytes (binary) a column accepts, if bounded.
    pub fn length_limit(self) -> Option<(u16, bool)> {
        match self {
            SqlType::Char(l) | SqlType::VarChar(Some(l)) | SqlType::NChar(l) => Some((l, false)),
            SqlType::NVarChar(Some(l)) => Some((l, false)),
            SqlType::Binary(l) | SqlType::VarBinary(Some(l)) => Some((l, true)),
            _ => None,
        }
    }

    fn is_plp(self) -> bool {
        matches!(
            self,
            SqlType::VarChar(None) | SqlType::NVarChar(None) | SqlType::VarBinary(None)
        )
    }

    /// Writes TYPE_INFO as COLMETADATA carries it (`table` is used for text/ntext).
    pub fn write_type_info(self, dst: &mut BytesMut, table: &str) {
        match self {
            SqlType::Bit => dst.put_slice(&[0x68, 1]),
            SqlType::TinyInt => dst.put_slice(&[0x26, 1]),
            SqlType::SmallInt => dst.put_slice(&[0x26, 2]),
            SqlType::Int => dst.put_slice(&[0x26, 4]),
            SqlType::BigInt => dst.put_slice(&[0x26, 8]),
            SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale } => {
                let ty = if matches!(self, SqlType::Numeric { .. }) {
                    0x6C
                } else {
                    0x6A
                };
                dst.put_slice(&[ty, decimal_len(precision), precision, scale]);
            }
            SqlType::Money => dst.put_slice(&[0x6E, 8]),
            SqlType::SmallMoney => dst.put_slice(&[0x6E, 4]),
            SqlType::Real => dst.put_slice(&[0x6D, 4]),
            SqlType::Float => dst.put_slice(&[0x6D, 8]),
            SqlType::Date => dst.put_u8(0x28),
            SqlType::Time(s) => dst.put_slice(&[0x29, s]),
            SqlType::DateTime => dst.put_slice(&[0x6F, 8]),
            SqlType::SmallDateTime => dst.put_slice(&[0x6F, 4]),
            SqlType::DateTime2(s) => dst.put_slice(&[0x2A, s]),
            SqlType::DateTimeOffset(s) => dst.put_slice(&[0x2B, s]),
            SqlType::Char(l) => {
                dst.put_u8(0xAF);
                dst.put_u16_le(l);
                dst.put_slice(&LATIN1_CI_AS);
            }
            SqlType::VarChar(l) => {
                dst.put_u8(0xA7);
                dst.put_u16_le(l.unwrap_or(0xFFFF));
                dst.put_slice(&LATIN1_CI_AS);
            }
            SqlType::NChar(l) => {
                dst.put_u8(0xEF);
                dst.put_u16_le(l * 2);
                dst.put_slice(&LATIN1_CI_AS);
            }
            SqlType::NVarChar(l) => {
                dst.put_u8(0xE7);
                dst.put_u16_le(l.map_or(0xFFFF, |l| l * 2));
                dst.put_slice(&LATIN1_CI_AS);
            }
            SqlType::Text | SqlType::NText => {
                let (ty, len) = if self == SqlType::Text {
                    (0x23, 0x7FFF_FFFF)
                } else {
                    (0x63, 0x7FFF_FFFE)
                };
                dst.put_u8(ty);
                dst.put_u32_le(len);
                dst.put_slice(&LATIN1_CI_AS);
                dst.put_u8(2);
                write_us_varchar(dst, "dbo");
                write_us_varchar(dst, table);
            }
            SqlType::Binary(l) => {
                dst.put_u8(0xAD);
                dst.put_u16_le(l);
            }
            SqlType::VarBinary(l) => {
                dst.put_u8(0xA5);
                dst.put_u16_le(l.unwrap_or(0xFFFF));
            }
            SqlType::UniqueIdentifier => dst.put_slice(&[0x24, 16]),
        }
    }

    /// Writes one value of this type into a ROW token, from what DuckDB returned.
    pub fn write_value(self, dst: &mut BytesMut, v: ValueRef<'_>) -> Result<()> {
        if matches!(v, ValueRef::Null) {
            self.write_null(dst);
            return Ok(());
        }
        match self {
            SqlType::Bit => {
                dst.put_u8(1);
                dst.put_u8(u8::from(as_i128(v)? != 0));
            }
            SqlType::TinyInt => put_int(dst, 1, as_i128(v)?),
            SqlType::SmallInt => put_int(dst, 2, as_i128(v)?),
            SqlType::Int => put_int(dst, 4, as_i128(v)?),
            SqlType::BigInt => put_int(dst, 8, as_i128(v)?),
            SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale } => {
                let raw = as_scaled(v, scale)?;
                let len = decimal_len(precision);
                dst.put_u8(len);
                dst.put_u8(u8::from(raw >= 0));
                let mag = raw.unsigned_abs().to_le_bytes();
                dst.put_slice(&mag[..usize::from(len - 1)]);
            }
            SqlType::Money => {
                let raw = as_scaled(v, 4)? as i64;
                dst.put_u8(8);
                dst.put_i32_le((raw >> 32) as i32);
                dst.put_u32_le(raw as u32);
            }
            SqlType::SmallMoney => {
                dst.put_u8(4);
                dst.put_i32_le(as_scaled(v, 4)? as i32);
            }
            SqlType::Real => {
                dst.put_u8(4);
                dst.put_f32_le(as_f64(v)? as f32);
            }
            SqlType::Float => {
                dst.put_u8(8);
                dst.put_f64_le(as_f64(v)?);
            }
            SqlType::Date => {
                dst.put_u8(3);
                put_date(dst, as_days(v)?);
            }
            SqlType::Time(s) => {
                dst.put_u8(time_len(s));
                put_time(dst, as_time_nanos(v)?, s);
            }
            SqlType::DateTime => {
                let (days, nanos) = as_datetime(v)?;
                let mut ticks = (nanos * 3 + 5_000_000) / 10_000_000;
                let mut days = days + DAYS_1900_TO_1970;
                if ticks >= 300 * 86_400 {
                    ticks -= 300 * 86_400;
                    days += 1;
                }
                dst.put_u8(8);
                dst.put_i32_le(days as i32);
                dst.put_u32_le(ticks as u32);
            }
            SqlType::SmallDateTime => {
                let (days, nanos) = as_datetime(v)?;
                let mut minutes = (nanos + 29_999_000_000) / 60_000_000_000;
                let mut days = days + DAYS_1900_TO_1970;
                if minutes >= 1440 {
                    minutes -= 1440;
                    days += 1;
                }
                dst.put_u8(4);
                dst.put_u16_le(days as u16);
                dst.put_u16_le(minutes as u16);
            }
            SqlType::DateTime2(s) => {
                let (days, nanos) = as_datetime(v)?;
                dst.put_u8(time_len(s) + 3);
                put_time(dst, nanos, s);
                put_date(dst, days);
            }
            SqlType::DateTimeOffset(s) => {
                let text = as_text(v)?;
                let (days, nanos, offset) = parse_datetimeoffset(&text)?;
                // The wire carries UTC plus the offset.
                let total = i128::from(days) * i128::from(NANOS_PER_DAY) + i128::from(nanos)
                    - i128::from(offset) * 60_000_000_000;
                let udays = total.div_euclid(i128::from(NANOS_PER_DAY)) as i64;
                let unanos = total.rem_euclid(i128::from(NANOS_PER_DAY)) as i64;
                dst.put_u8(time_len(s) + 5);
                put_time(dst, unanos, s);
                put_date(dst, udays);
                dst.put_i16_le(offset);
            }
            SqlType::Char(_) | SqlType::VarChar(_) | SqlType::Text => {
                let mut bytes = encode_cp1252(&as_text(v)?)?;
                if let SqlType::Char(l) = self {
                    bytes.resize(usize::from(l).max(bytes.len()), b' ');
                }
                self.put_bytes(dst, &bytes);
            }
            SqlType::NChar(_) | SqlType::NVarChar(_) | SqlType::NText => {
                let mut text = as_text(v)?;
                if let SqlType::NChar(l) = self {
                    let units = text.encode_utf16().count();
                    for _ in units..usize::from(l) {
                        text.push(' ');
                    }
                }
                let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
                self.put_bytes(dst, &bytes);
            }
            SqlType::Binary(l) => {
                let mut bytes = as_bytes(v)?;
                bytes.resize(usize::from(l).max(bytes.len()), 0);
                self.put_bytes(dst, &bytes);
            }
            SqlType::VarBinary(_) => self.put_bytes(dst, &as_bytes(v)?),
            SqlType::UniqueIdentifier => {
                if let ValueRef::Blob(b) = v
                    && b.len() == 16
                {
                    let mut g = [0u8; 16];
                    g.copy_from_slice(b);
                    dst.put_u8(16);
                    dst.put_slice(&guid_wire(g));
                    return Ok(());
                }
                let text = as_text(v)?;
                let uuid = uuid::Uuid::parse_str(&text)
                    .map_err(|e| Error::sql(8169, format!("Conversion failed when converting from a character string to uniqueidentifier: {e}")))?;
                dst.put_u8(16);
                dst.put_slice(&guid_wire(*uuid.as_bytes()));
            }
        }
        Ok(())
    }

    fn put_bytes(self, dst: &mut BytesMut, bytes: &[u8]) {
        match self {
            SqlType::Text | SqlType::NText => {
                dst.put_u8(16);
                dst.put_slice(&[0u8; 16]);
                dst.put_slice(&[0u8; 8]);
                dst.put_u32_le(bytes.len() as u32);
                dst.put_slice(bytes);
            }
            t if t.is_plp() => {
                dst.put_u64_le(bytes.len() as u64);
                if !bytes.is_empty() {
                    dst.put_u32_le(bytes.len() as u32);
                    dst.put_slice(bytes);
                }
                dst.put_u32_le(0);
            }
            _ => {
                dst.put_u16_le(bytes.len() as u16);
                dst.put_slice(bytes);
            }
        }
    }

    /// Writes NULL in this type's ROW form.
    pub fn write_null(self, dst: &mut BytesMut) {
        match self {
            SqlType::Text | SqlType::NText => dst.put_u8(0),
            t if t.is_plp() => dst.put_u64_le(u64::MAX),
            SqlType::Char(_)
            | SqlType::VarChar(_)
            | SqlType::NChar(_)
            | SqlType::NVarChar(_)
            | SqlType::Binary(_)
            | SqlType::VarBinary(_) => dst.put_u16_le(0xFFFF),
            _ => dst.put_u8(0),
        }
    }

    /// The SQL Server type that best describes a computed result column of DuckDB type `dt`.
    pub fn for_result(dt: &duckdb::arrow::datatypes::DataType) -> SqlType {
        use duckdb::arrow::datatypes::{DataType as D, TimeUnit as U};
        match dt {
            D::Boolean => SqlType::Bit,
            D::UInt8 => SqlType::TinyInt,
            D::Int8 | D::Int16 => SqlType::SmallInt,
            D::Int32 | D::UInt16 => SqlType::Int,
            D::Int64 | D::UInt32 => SqlType::BigInt,
            D::UInt64 => SqlType::Decimal {
                precision: 20,
                scale: 0,
            },
            D::Decimal128(p, s) => SqlType::Decimal {
                precision: (*p).min(38),
                scale: (*s).max(0) as u8,
            },
            D::Float16 | D::Float32 => SqlType::Real,
            D::Float64 => SqlType::Float,
            D::Date32 | D::Date64 => SqlType::Date,
            D::Time32(_) | D::Time64(U::Microsecond) => SqlType::Time(6),
            D::Time64(_) => SqlType::Time(7),
            D::Timestamp(U::Nanosecond, None) => SqlType::DateTime2(7),
            D::Timestamp(_, None) => SqlType::DateTime2(6),
            D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => {
                SqlType::VarBinary(None)
            }
            _ => SqlType::NVarChar(None),
        }
    }
}

/// Decimal storage length on the wire (sign byte included) for a precision.
pub(crate) fn decimal_len(precision: u8) -> u8 {
    match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

fn time_len(scale: u8) -> u8 {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

fn put_int(dst: &mut BytesMut, len: u8, v: i128) {
    dst.put_u8(len);
    let b = (v as i64).to_le_bytes();
    dst.put_slice(&b[..usize::from(len)]);
}

fn put_date(dst: &mut BytesMut, days_since_1970: i64) {
    let d = (days_since_1970 + DAYS_0001_TO_1970) as u32;
    dst.put_slice(&d.to_le_bytes()[..3]);
}

fn put_time(dst: &mut BytesMut, nanos: i64, scale: u8) {
    let unit = 10i64.pow(9 - u32::from(scale));
    let v = (nanos / unit) as u64;
    dst.put_slice(&v.to_le_bytes()[..usize::from(time_len(scale))]);
}

pub(crate) fn write_us_varchar(dst: &mut BytesMut, s: &str) {
    let units: Vec<u16> = s.encode_utf16().collect();
    dst.put_u16_le(units.len() as u16);
    for u in units {
        dst.put_u16_le(u);
    }
}

pub(crate) fn write_b_varchar(dst: &mut BytesMut, s: &str) {
    let units: Vec<u16> = s.encode_utf16().collect();
    dst.put_u8(units.len() as u8);
    for u in units {
        dst.put_u16_le(u);
    }
}

/// GUID byte order on the wire: the first three groups little-endian.
pub(crate) fn guid_wire(mut b: [u8; 16]) -> [u8; 16] {
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

fn conv(what: &str, v: ValueRef<'_>) -> Error {
    Error::sql(
        245,
        format!("Conversion failed when converting the value {v:?} to data type {what}."),
    )
}

fn as_i128(v: ValueRef<'_>) -> Result<i128> {
    Ok(match v {
        ValueRef::Boolean(b) => i128::from(b),
        ValueRef::TinyInt(i) => i128::from(i),
        ValueRef::SmallInt(i) => i128::from(i),
        ValueRef::Int(i) => i128::from(i),
        ValueRef::BigInt(i) => i128::from(i),
        ValueRef::HugeInt(i) => i,
        ValueRef::UTinyInt(i) => i128::from(i),
        ValueRef::USmallInt(i) => i128::from(i),
        ValueRef::UInt(i) => i128::from(i),
        ValueRef::UBigInt(i) => i128::from(i),
        ValueRef::Decimal(d) => d.value() / 10i128.pow(u32::from(d.scale())),
        ValueRef::Float(f) => f as i128,
        ValueRef::Double(f) => f as i128,
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| conv("int", v))?,
        _ => return Err(conv("int", v)),
    })
}

/// The value as an integer scaled by 10^scale (exact for integers and decimals).
fn as_scaled(v: ValueRef<'_>, scale: u8) -> Result<i128> {
    let factor = 10i128.pow(u32::from(scale));
    Ok(match v {
        ValueRef::Decimal(d) => rescale(d.value(), d.scale(), scale),
        ValueRef::Float(f) => (f64::from(f) * factor as f64).round() as i128,
        ValueRef::Double(f) => (f * factor as f64).round() as i128,
        ValueRef::Text(t) => {
            let s = std::str::from_utf8(t).map_err(|_| conv("decimal", v))?;
            let d: rust_decimal::Decimal = s.trim().parse().map_err(|_| conv("decimal", v))?;
            rescale(d.mantissa(), d.scale() as u8, scale)
        }
        _ => as_i128(v)? * factor,
    })
}

pub(crate) fn rescale(value: i128, from: u8, to: u8) -> i128 {
    if to >= from {
        value * 10i128.pow(u32::from(to - from))
    } else {
        let f = 10i128.pow(u32::from(from - to));
        let half = f / 2;
        if value >= 0 {
            (value + half) / f
        } else {
            (value - half) / f
        }
    }
}

fn as_f64(v: ValueRef<'_>) -> Result<f64> {
    Ok(match v {
        ValueRef::Float(f) => f64::from(f),
        ValueRef::Double(f) => f,
        ValueRef::Decimal(d) => d.value() as f64 / 10f64.powi(i32::from(d.scale())),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| conv("float", v))?,
        _ => as_i128(v)? as f64,
    })
}

fn unit_nanos(u: TimeUnit, v: i64) -> i64 {
    match u {
        TimeUnit::Second => v * 1_000_000_000,
        TimeUnit::Millisecond => v * 1_000_000,
        TimeUnit::Microsecond => v * 1000,
        TimeUnit::Nanosecond => v,
    }
}

fn as_days(v: ValueRef<'_>) -> Result<i64> {
    match v {
        ValueRef::Date32(d) => Ok(i64::from(d)),
        ValueRef::Timestamp(..) | ValueRef::Text(_) => Ok(as_datetime(v)?.0),
        _ => Err(conv("date", v)),
    }
}

fn as_time_nanos(v: ValueRef<'_>) -> Result<i64> {
    match v {
        ValueRef::Time64(u, t) => Ok(unit_nanos(u, t)),
        ValueRef::Timestamp(..) => Ok(as_datetime(v)?.1),
        ValueRef::Text(t) => {
            parse_time(std::str::from_utf8(t).unwrap_or_default()).ok_or_else(|| conv("time", v))
        }
        _ => Err(conv("time", v)),
    }
}

/// (days since 1970-01-01, nanoseconds since midnight).
fn as_datetime(v: ValueRef<'_>) -> Result<(i64, i64)> {
    match v {
        ValueRef::Timestamp(u, t) => {
            let n = unit_nanos_wide(u, t);
            Ok((
                n.div_euclid(i128::from(NANOS_PER_DAY)) as i64,
                n.rem_euclid(i128::from(NANOS_PER_DAY)) as i64,
            ))
        }
        ValueRef::Date32(d) => Ok((i64::from(d), 0)),
        ValueRef::Text(t) => {
            let s = std::str::from_utf8(t).unwrap_or_default();
            parse_datetime(s).ok_or_else(|| conv("datetime2", v))
        }
        _ => Err(conv("datetime2", v)),
    }
}

fn unit_nanos_wide(u: TimeUnit, v: i64) -> i128 {
    let v = i128::from(v);
    match u {
        TimeUnit::Second => v * 1_000_000_000,
        TimeUnit::Millisecond => v * 1_000_000,
        TimeUnit::Microsecond => v * 1000,
        TimeUnit::Nanosecond => v,
    }
}

fn as_text(v: ValueRef<'_>) -> Result<String> {
    Ok(match v {
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Boolean(b) => if b { "1" } else { "0" }.to_string(),
        ValueRef::Float(f) => f.to_string(),
        ValueRef::Double(f) => f.to_string(),
        ValueRef::Decimal(d) => decimal_text(d.value(), d.scale()),
        ValueRef::HugeInt(i) => i.to_string(),
        ValueRef::UBigInt(i) => i.to_string(),
        ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
        ValueRef::Date32(_) | ValueRef::Timestamp(..) => {
            let (d, n) = as_datetime(v)?;
            format_datetime(d, n, 7)
        }
        ValueRef::Time64(u, t) => format_time(unit_nanos(u, t), 7),
        other => match as_i128(other) {
            Ok(i) => i.to_string(),
            Err(_) => format!("{other:?}"),
        },
    })
}

fn as_bytes(v: ValueRef<'_>) -> Result<Vec<u8>> {
    match v {
        ValueRef::Blob(b) => Ok(b.to_vec()),
        ValueRef::Text(t) => Ok(t.to_vec()),
        _ => Err(conv("varbinary", v)),
    }
}

/// Encodes text in code page 1252; characters it lacks are an error (SQL Server would store '?').
pub(crate) fn encode_cp1252(s: &str) -> Result<Vec<u8>> {
    if s.is_ascii() {
        return Ok(s.as_bytes().to_vec());
    }
    let enc = tds_protocol::collation::encoding_for_lcid(0x0409)
        .ok_or_else(|| Error::Protocol("no code page for Latin1_General".into()))?;
    let (bytes, _, had_errors) = enc.encode(s);
    if had_errors {
        return Err(Error::sql(
            8152,
            format!("String contains characters code page 1252 cannot represent: {s:?}."),
        ));
    }
    Ok(bytes.into_owned())
}

pub(crate) fn decode_cp1252(b: &[u8]) -> String {
    if b.is_ascii() {
        return String::from_utf8_lossy(b).into_owned();
    }
    match tds_protocol::collation::encoding_for_lcid(0x0409) {
        Some(enc) => enc.decode_without_bom_handling(b).0.into_owned(),
        None => String::from_utf8_lossy(b).into_owned(),
    }
}

/// A value that arrived on the wire (an RPC parameter or a bulk-load cell).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Real(f32),
    Float(f64),
    /// Unscaled value and scale.
    Decimal(i128, u8),
    /// Days since 1970-01-01.
    Date(i64),
    /// Nanoseconds since midnight, and the scale it was sent with.
    Time(i64, u8),
    /// Days since 1970-01-01, nanoseconds since midnight, scale.
    DateTime(i64, i64, u8),
    /// Local days, local nanoseconds, scale, offset in minutes.
    DateTimeOffset(i64, i64, u8, i16),
    Text(String),
    Bytes(Vec<u8>),
    Guid([u8; 16]),
}

impl Value {
    /// This value as a DuckDB SQL literal.
    pub fn to_literal(&self) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Bool(b) => if *b { "true" } else { "false" }.into(),
            Value::Int(i) => i.to_string(),
            Value::Real(f) => format!("CAST('{f:e}' AS FLOAT)"),
            Value::Float(f) => format!("CAST('{f:e}' AS DOUBLE)"),
            Value::Decimal(v, s) => format!("CAST('{}' AS DECIMAL(38,{s}))", decimal_text(*v, *s)),
            Value::Date(d) => format!("DATE '{}'", format_date(*d)),
            Value::Time(n, _) => format!("CAST('{}' AS TIME)", format_time(*n, 6)),
            Value::DateTime(d, n, s) => {
                let ty = if *s == 7 { "TIMESTAMP_NS" } else { "TIMESTAMP" };
                format!("CAST('{}' AS {ty})", format_datetime(*d, *n, 7))
            }
            Value::DateTimeOffset(d, n, _, o) => {
                format!("'{}'", format_datetimeoffset(*d, *n, *o))
            }
            Value::Text(t) => quote(t),
            Value::Bytes(b) => {
                let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
                format!("from_hex('{hex}')")
            }
            Value::Guid(g) => format!("'{}'::UUID", uuid::Uuid::from_bytes(*g)),
        }
    }
}

impl Value {
    /// This value for DuckDB's appender, which casts it to the column's type.
    pub fn to_duckdb(&self) -> duckdb::types::Value {
        use duckdb::types::Value as V;
        match self {
            Value::Null => V::Null,
            Value::Bool(b) => V::Boolean(*b),
            Value::Int(i) => V::BigInt(*i),
            Value::Real(f) => V::Float(*f),
            Value::Float(f) => V::Double(*f),
            Value::Decimal(v, s) => match duckdb::types::Decimal::new(38, *s, *v) {
                Ok(d) => V::Decimal(d),
                Err(_) => V::Text(decimal_text(*v, *s)),
            },
            Value::Date(d) => V::Date32(*d as i32),
            Value::Time(n, _) => V::Time64(TimeUnit::Microsecond, n / 1000),
            // The appender takes timestamps in microseconds: finer values go as text.
            Value::DateTime(d, n, _) if n % 1000 == 0 => {
                V::Timestamp(TimeUnit::Microsecond, d * 86_400_000_000 + n / 1000)
            }
            Value::DateTime(d, n, _) => V::Text(format_datetime(*d, *n, 7)),
            Value::DateTimeOffset(d, n, _, o) => V::Text(format_datetimeoffset(*d, *n, *o)),
            Value::Text(t) => V::Text(t.clone()),
            Value::Bytes(b) => V::Blob(b.clone()),
            Value::Guid(g) => V::Text(uuid::Uuid::from_bytes(*g).to_string()),
        }
    }
}

/// A SQL string literal.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

fn decimal_text(v: i128, s: u8) -> String {
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let s = usize::from(s);
    let padded = if digits.len() <= s {
        format!("{}{digits}", "0".repeat(s - digits.len() + 1))
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - s);
    format!(
        "{}{int}{}{frac}",
        if neg { "-" } else { "" },
        if s > 0 { "." } else { "" }
    )
}

pub(crate) fn format_date(days_since_1970: i64) -> String {
    let jd = days_since_1970 + 2_440_588;
    match time::Date::from_julian_day(jd as i32) {
        Ok(d) => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        Err(_) => "invalid".into(),
    }
}

pub(crate) fn format_time(nanos: i64, digits: u32) -> String {
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let base = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    if digits == 0 {
        base
    } else {
        let f = frac / 10i64.pow(9 - digits);
        format!("{base}.{f:0width$}", width = digits as usize)
    }
}

pub(crate) fn format_datetime(days: i64, nanos: i64, digits: u32) -> String {
    format!("{} {}", format_date(days), format_time(nanos, digits))
}

pub(crate) fn format_datetimeoffset(days: i64, nanos: i64, offset: i16) -> String {
    let sign = if offset < 0 { '-' } else { '+' };
    let o = offset.unsigned_abs();
    format!(
        "{} {sign}{:02}:{:02}",
        format_datetime(days, nanos, 7),
        o / 60,
        o % 60
    )
}

fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i32 = it.next()?.parse().ok()?;
    let m: u8 = it.next()?.parse().ok()?;
    let d: u8 = it.next()?.parse().ok()?;
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()?;
    Some(i64::from(date.to_julian_day()) - 2_440_588)
}

fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let mut it = hms.split(':');
    let h: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let sec: i64 = it.next().unwrap_or("0").parse().ok()?;
    let mut f: i64 = 0;
    for (i, c) in frac.chars().take(9).enumerate() {
        f += i64::from(c.to_digit(10)?) * 10i64.pow(8 - i as u32);
    }
    Some(((h * 60 + m) * 60 + sec) * 1_000_000_000 + f)
}

fn parse_datetime(s: &str) -> Option<(i64, i64)> {
    let s = s.trim();
    match s.split_once([' ', 'T']) {
        Some((d, t)) => Some((parse_date(d)?, parse_time(t)?)),
        None => Some((parse_date(s)?, 0)),
    }
}

/// Parses the stored `datetimeoffset` text: local date and time, then `+HH:MM`.
pub(crate) fn parse_datetimeoffset(s: &str) -> Result<(i64, i64, i16)> {
    let bad = || {
        Error::sql(
            241,
            format!(
                "Conversion failed when converting date and/or time from character string '{s}'."
            ),
        )
    };
    let s = s.trim();
    let pos = s.rfind(['+', '-']).filter(|&p| p > 10).ok_or_else(bad)?;
    let (dt, off) = s.split_at(pos);
    let (days, nanos) = parse_datetime(dt.trim()).ok_or_else(bad)?;
    let sign: i16 = if off.starts_with('-') { -1 } else { 1 };
    let (h, m) = off[1..].split_once(':').ok_or_else(bad)?;
    let h: i16 = h.parse().map_err(|_| bad())?;
    let m: i16 = m.parse().map_err(|_| bad())?;
    Ok((days, nanos, sign * (h * 60 + m)))
}

/// A cursor over a message body, with errors that name what was being read.
pub(crate) struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(Error::Protocol(format!(
                "message ends after {} bytes, {n} more expected at offset {}",
                self.buf.len(),
                self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or_default(),
        ))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    pub fn utf16(&mut self, chars: usize) -> Result<String> {
        let b = self.take(chars * 2)?;
        let units: Vec<u16> = b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).map_err(|_| Error::Protocol("invalid UTF-16 text".into()))
    }
    pub fn b_varchar(&mut self) -> Result<String> {
        let n = self.u8()?;
        self.utf16(usize::from(n))
    }
    pub fn us_varchar(&mut self) -> Result<String> {
        let n = self.u16()?;
        self.utf16(usize::from(n))
    }
}

/// A TYPE_INFO as a client sent it (RPC parameters, bulk-load COLMETADATA).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WireType {
    pub ty: u8,
    pub len: u32,
    pub precision: u8,
    pub scale: u8,
}

impl WireType {
    /// Reads TYPE_INFO; `in_bulk_metadata` also skips the table name text/ntext/image carry there.
    pub fn read(r: &mut Reader<'_>, in_bulk_metadata: bool) -> Result<WireType> {
        let ty = r.u8()?;
        let mut w = WireType {
            ty,
            len: 0,
            precision: 0,
            scale: 0,
        };
        match ty {
            0x1F => {}
            0x30 | 0x32 => w.len = 1,
            0x34 => w.len = 2,
            0x38 | 0x3A | 0x3B | 0x7A => w.len = 4,
            0x3C | 0x3D | 0x3E | 0x7F => w.len = 8,
            0x26 | 0x68 | 0x6D | 0x6E | 0x6F | 0x24 => w.len = u32::from(r.u8()?),
            0x6A | 0x6C => {
                w.len = u32::from(r.u8()?);
                w.precision = r.u8()?;
                w.scale = r.u8()?;
            }
            0x28 => w.len = 3,
            0x29..=0x2B => w.scale = r.u8()?,
            0xA5 | 0xAD => w.len = u32::from(r.u16()?),
            0xA7 | 0xAF | 0xE7 | 0xEF => {
                w.len = u32::from(r.u16()?);
                r.take(5)?;
            }
            0x23 | 0x63 | 0x22 => {
                w.len = r.u32()?;
                if ty != 0x22 {
                    r.take(5)?;
                }
                if in_bulk_metadata {
                    // A bulk load's COLMETADATA names the table in one US_VARCHAR (no NumParts).
                    r.us_varchar()?;
                }
            }
            0xF1 => {
                if r.u8()? == 1 {
                    r.b_varchar()?;
                    r.b_varchar()?;
                    r.us_varchar()?;
                }
                w.len = 0xFFFF;
            }
            other => {
                return Err(Error::Protocol(format!(
                    "unsupported TYPE_INFO 0x{other:02X}"
                )));
            }
        }
        Ok(w)
    }

    fn is_plp(&self) -> bool {
        matches!(self.ty, 0xA5 | 0xA7 | 0xE7 | 0xEF | 0xAD | 0xAF) && self.len == 0xFFFF
            || self.ty == 0xF1
    }

    /// Reads one value of this type.
    pub fn read_value(&self, r: &mut Reader<'_>) -> Result<Value> {
        match self.ty {
            0x1F => Ok(Value::Null),
            0x30 => Ok(Value::Int(i64::from(r.u8()?))),
            0x32 => Ok(Value::Bool(r.u8()? != 0)),
            0x34 | 0x38 | 0x7F => self.read_fixed(r, self.len as usize),
            0x3A | 0x3B | 0x3C | 0x3D | 0x3E | 0x7A => self.read_fixed(r, self.len as usize),
            0x26 | 0x68 | 0x6D | 0x6E | 0x6F | 0x24 | 0x6A | 0x6C | 0x28 | 0x29 | 0x2A | 0x2B => {
                let n = r.u8()?;
                if n == 0 {
                    return Ok(Value::Null);
                }
                self.read_fixed(r, usize::from(n))
            }
            0x23 | 0x63 | 0x22 => {
                let ptr = r.u8()?;
                if ptr == 0 {
                    return Ok(Value::Null);
                }
                r.take(usize::from(ptr) + 8)?;
                let n = r.u32()? as usize;
                let b = r.take(n)?;
                Ok(self.bytes_value(b))
            }
            _ if self.is_plp() => {
                let total = r.u64()?;
                if total == u64::MAX {
                    return Ok(Value::Null);
                }
                let mut data = Vec::new();
                loop {
                    let n = r.u32()? as usize;
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(r.take(n)?);
                }
                Ok(self.bytes_value(&data))
            }
            _ => {
                let n = r.u16()?;
                if n == 0xFFFF {
                    return Ok(Value::Null);
                }
                let b = r.take(usize::from(n))?;
                Ok(self.bytes_value(b))
            }
        }
    }

    fn bytes_value(&self, b: &[u8]) -> Value {
        match self.ty {
            0xE7 | 0xEF | 0x63 | 0xF1 => {
                let units: Vec<u16> = b
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                Value::Text(String::from_utf16_lossy(&units))
            }
            0xA7 | 0xAF | 0x23 => Value::Text(decode_cp1252(b)),
            _ => Value::Bytes(b.to_vec()),
        }
    }

    fn read_fixed(&self, r: &mut Reader<'_>, n: usize) -> Result<Value> {
        let b = r.take(n)?;
        let le = |b: &[u8]| -> u64 {
            let mut a = [0u8; 8];
            a[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
            u64::from_le_bytes(a)
        };
        let signed = |b: &[u8]| -> i64 {
            let v = le(b);
            let bits = b.len() * 8;
            if bits >= 64 {
                v as i64
            } else {
                ((v << (64 - bits)) as i64) >> (64 - bits)
            }
        };
        Ok(match self.ty {
            0x32 | 0x68 => Value::Bool(b[0] != 0),
            0x30 | 0x34 | 0x38 | 0x7F | 0x26 => {
                if n == 1 {
                    Value::Int(i64::from(b[0]))
                } else {
                    Value::Int(signed(b))
                }
            }
            0x3B => Value::Real(f32::from_le_bytes(b.try_into().unwrap_or_default())),
            0x3E => Value::Float(f64::from_le_bytes(b.try_into().unwrap_or_default())),
            0x6D if n == 4 => Value::Real(f32::from_le_bytes(b.try_into().unwrap_or_default())),
            0x6D => Value::Float(f64::from_le_bytes(b.try_into().unwrap_or_default())),
            0x7A => Value::Decimal(i128::from(signed(b)), 4),
            0x3C => Value::Decimal(i128::from(money8(b)), 4),
            0x6E if n == 4 => Value::Decimal(i128::from(signed(b)), 4),
            0x6E => Value::Decimal(i128::from(money8(b)), 4),
            0x3A => smalldatetime(b),
            0x3D => datetime(b),
            0x6F if n == 4 => smalldatetime(b),
            0x6F => datetime(b),
            0x24 => {
                let mut g = [0u8; 16];
                g.copy_from_slice(&b[..16]);
                Value::Guid(guid_wire(g))
            }
            0x6A | 0x6C => {
                let mut mag = [0u8; 16];
                let m = &b[1..];
                mag[..m.len().min(16)].copy_from_slice(&m[..m.len().min(16)]);
                let v = u128::from_le_bytes(mag) as i128;
                Value::Decimal(if b[0] == 0 { -v } else { v }, self.scale)
            }
            0x28 => Value::Date(le(b) as i64 - DAYS_0001_TO_1970),
            0x29 => Value::Time(time_nanos(b, self.scale), self.scale),
            0x2A => {
                let tl = n - 3;
                Value::DateTime(
                    le(&b[tl..]) as i64 - DAYS_0001_TO_1970,
                    time_nanos(&b[..tl], self.scale),
                    self.scale,
                )
            }
            0x2B => {
                let tl = n - 5;
                let days = le(&b[tl..tl + 3]) as i64 - DAYS_0001_TO_1970;
                let nanos = time_nanos(&b[..tl], self.scale);
                let offset = i16::from_le_bytes([b[tl + 3], b[tl + 4]]);
                let total = i128::from(days) * i128::from(NANOS_PER_DAY)
                    + i128::from(nanos)
                    + i128::from(offset) * 60_000_000_000;
                Value::DateTimeOffset(
                    total.div_euclid(i128::from(NANOS_PER_DAY)) as i64,
                    total.rem_euclid(i128::from(NANOS_PER_DAY)) as i64,
                    self.scale,
                    offset,
                )
            }
            other => {
                return Err(Error::Protocol(format!(
                    "unsupported value type 0x{other:02X}"
                )));
            }
        })
    }
}

fn money8(b: &[u8]) -> i64 {
    let high = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let low = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    (i64::from(high) << 32) | i64::from(low)
}

fn time_nanos(b: &[u8], scale: u8) -> i64 {
    let mut a = [0u8; 8];
    a[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(a) as i64 * 10i64.pow(9 - u32::from(scale.min(7)))
}

fn datetime(b: &[u8]) -> Value {
    let days = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let ticks = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    // Round to the microsecond: every tick maps to a distinct microsecond and back.
    Value::DateTime(
        i64::from(days) - DAYS_1900_TO_1970,
        (i64::from(ticks) * 10_000_000 / 3 + 500) / 1000 * 1000,
        3,
    )
}

fn smalldatetime(b: &[u8]) -> Value {
    let days = u16::from_le_bytes([b[0], b[1]]);
    let minutes = u16::from_le_bytes([b[2], b[3]]);
    Value::DateTime(
        i64::from(days) - DAYS_1900_TO_1970,
        i64::from(minutes) * 60_000_000_000,
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_ticks_survive_microsecond_storage() {
        for ticks in [0u32, 1, 2, 3, 299, 300, 301, 25_919_999] {
            let mut b = Vec::new();
            b.extend_from_slice(&45_000i32.to_le_bytes());
            b.extend_from_slice(&ticks.to_le_bytes());
            let Value::DateTime(days, nanos, _) = datetime(&b) else {
                panic!("not a datetime")
            };
            let mut out = BytesMut::new();
            let micros = (days * 86_400_000_000) + nanos / 1000;
            SqlType::DateTime
                .write_value(&mut out, ValueRef::Timestamp(TimeUnit::Microsecond, micros))
                .unwrap();
            assert_eq!(&out[1..5], &45_000i32.to_le_bytes());
            assert_eq!(&out[5..9], &ticks.to_le_bytes(), "tick {ticks}");
        }
    }

    #[test]
    fn type_names_parse_with_arguments() {
        assert_eq!(
            SqlType::parse("NVARCHAR", &["max".into()]).unwrap(),
            SqlType::NVarChar(None)
        );
        assert_eq!(
            SqlType::parse("decimal", &["10".into(), "3".into()]).unwrap(),
            SqlType::Decimal {
                precision: 10,
                scale: 3
            }
        );
        assert_eq!(
            SqlType::parse("datetime2", &[]).unwrap(),
            SqlType::DateTime2(7)
        );
        assert!(SqlType::parse("decimal", &["10".into(), "11".into()]).is_err());
        assert!(SqlType::parse("geography", &[]).is_err());
    }

    #[test]
    fn datetimeoffset_text_round_trips() {
        let s = format_datetimeoffset(19_000, 3_600_000_000_100, -330);
        assert_eq!(
            parse_datetimeoffset(&s).unwrap(),
            (19_000, 3_600_000_000_100, -330)
        );
    }

    #[test]
    fn decimal_literal_keeps_scale() {
        assert_eq!(decimal_text(-5, 3), "-0.005");
        assert_eq!(decimal_text(12345, 2), "123.45");
    }
}
