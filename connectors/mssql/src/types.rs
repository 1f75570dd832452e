//! Type mapping between SQL Server column types and caudal's logical types, both ways.
//!
//! Reading, a column's type comes from `INFORMATION_SCHEMA.COLUMNS` (`DATA_TYPE`, lengths,
//! precision, scale), is parsed by [`SqlType::from_catalog`] and mapped by
//! [`SqlType::logical`]. Creating a table, [`SqlType::for_logical`] gives the column type for a
//! logical type. How values travel is in `decode.rs` (server -> batch) and `encode.rs`
//! (batch -> TDS values for bulk loads and parameters).
//!
//! | SQL Server | logical type | created back as | notes |
//! |---|---|---|---|
//! | `bit` | `Bool` | `bit` | |
//! | `tinyint` | `UInt8` | `tinyint` | SQL Server's tinyint is unsigned |
//! | `smallint`, `int`, `bigint` | `Int16`, `Int32`, `Int64` | same | |
//! | `decimal(p,s)`, `numeric(p,s)` | `Decimal{p,s}` | `decimal(p,s)` | unscaled `i128` |
//! | `money`, `smallmoney` | `Money`, `SmallMoney` | same | read through `CAST(.. AS decimal(19,4))` / `decimal(10,4)` and written through a staging table of that type: exact, never a float |
//! | `real`, `float` | `Float32`, `Float64` | same | NaN and infinities cannot be written |
//! | `date` | `Date` | `date` | |
//! | `time(p)` | `Time{min(p,6)}` | `time(p)` | 100 ns digits truncated |
//! | `datetime` | `DateTime{6}` | `datetime2(6)` | 1/300 s ticks, read as microseconds (truncated); every value read is kept exactly by `datetime2(6)`; cursor bounds are bound as `datetime` with the same ticks |
//! | `datetime2(p)` | `DateTime{min(p,6)}` | `datetime2(p)` | |
//! | `smalldatetime` | `DateTime{0}` | `datetime2(0)` | minutes |
//! | `datetimeoffset(p)` | `DateTimeOffset{min(p,6)}` | `datetimeoffset(p)` | offset kept |
//! | `char(n)`, `varchar(n)`, `varchar(max)` | `Char{n}`, `Varchar{n}`, `Varchar{None}` | `nchar(n)`, `nvarchar(n)`, `nvarchar(max)` | created Unicode, so text from any source keeps every character |
//! | `nchar(n)`, `nvarchar(n)`, `nvarchar(max)` | `NChar{n}`, `NVarchar{n}`, `NVarchar{None}` | same | |
//! | `text`, `ntext`, `xml` | `Text{None}` | `nvarchar(max)` | |
//! | `binary(n)`, `varbinary(n)`, `varbinary(max)`, `image` | `Binary{n}`, `Varbinary{n}`, `Varbinary{None}`, `Varbinary{None}` | `binary(n)`, `varbinary(n|max)` | |
//! | `uniqueidentifier` | `Uuid` | `uniqueidentifier` | RFC 4122 byte order (as SQL Server prints it) |
//!
//! Logical types SQL Server has no type for, when a table is created from another source:
//!
//! | logical type | created as | stored as |
//! |---|---|---|
//! | `Int8` | `smallint` | the integer |
//! | `UInt16`, `UInt32` | `int`, `bigint` | the integer |
//! | `UInt64`, `Bit{64}` | `decimal(20,0)` | the integer |
//! | `Bit{w}`, w < 64 | `bigint` | the bits as an integer |
//! | `Int128` | `varchar(40)` | decimal digits (`i128` needs 39 digits; `decimal` has 38) |
//! | `Year` | `smallint` | the year |
//! | `Timestamp{p}` | `datetimeoffset(p)` | the UTC instant, offset `+00:00` |
//! | `Text{..}`, `Json`, `Enum`, `Set` | `nvarchar(max)` (`nvarchar(450)` in a key) | the text |
//! | `Blob{..}` | `varbinary(max)` (`varbinary(900)` in a key) | the bytes |
//! | `Interval` | `varchar(64)` | `"<months>mo <days>d <micros>us"` |
//!
//! NULL of every type is SQL NULL. A table's digest reads every column back in the stream's
//! logical types, so these conversions are undone on read (`decode.rs`).

use caudal_connector::LogicalType;

use crate::error::{Error, Result};

/// Longest `nvarchar` in a primary key: 900 bytes, SQL Server's clustered key limit, over 2.
pub const KEY_NVARCHAR_CHARS: u32 = 450;
/// Longest `varbinary` in a primary key.
pub const KEY_VARBINARY_BYTES: u32 = 900;
/// Longest `nchar` / `nvarchar(n)` SQL Server has; longer ones are `nvarchar(max)`.
pub const MAX_NCHAR: u32 = 4000;
/// Longest `char`, `varchar(n)`, `binary`, `varbinary(n)`.
pub const MAX_CHAR: u32 = 8000;

/// A SQL Server column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlType {
    /// `bit`.
    Bit,
    /// `tinyint` (0..=255).
    TinyInt,
    /// `smallint`.
    SmallInt,
    /// `int`.
    Int,
    /// `bigint`.
    BigInt,
    /// `decimal(p,s)` / `numeric(p,s)`.
    Decimal {
        /// Digits.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// `money`.
    Money,
    /// `smallmoney`.
    SmallMoney,
    /// `real`.
    Real,
    /// `float`.
    Float,
    /// `date`.
    Date,
    /// `time(scale)`.
    Time {
        /// Fractional digits (0..=7).
        scale: u8,
    },
    /// `datetime` (1/300 s).
    DateTime,
    /// `datetime2(scale)`.
    DateTime2 {
        /// Fractional digits (0..=7).
        scale: u8,
    },
    /// `smalldatetime` (minutes).
    SmallDateTime,
    /// `datetimeoffset(scale)`.
    DateTimeOffset {
        /// Fractional digits (0..=7).
        scale: u8,
    },
    /// `char(n)`.
    Char {
        /// Length.
        length: u32,
    },
    /// `varchar(n)`, `varchar(max)` for `None`.
    VarChar {
        /// Maximum length.
        length: Option<u32>,
    },
    /// `nchar(n)`.
    NChar {
        /// Length in characters.
        length: u32,
    },
    /// `nvarchar(n)`, `nvarchar(max)` for `None`.
    NVarChar {
        /// Maximum length in characters.
        length: Option<u32>,
    },
    /// `text`.
    Text,
    /// `ntext`.
    NText,
    /// `xml`.
    Xml,
    /// `binary(n)`.
    Binary {
        /// Length.
        length: u32,
    },
    /// `varbinary(n)`, `varbinary(max)` for `None`.
    VarBinary {
        /// Maximum length.
        length: Option<u32>,
    },
    /// `image`.
    Image,
    /// `uniqueidentifier`.
    UniqueIdentifier,
}

impl SqlType {
    /// The type of a column as `INFORMATION_SCHEMA.COLUMNS` describes it: `DATA_TYPE`,
    /// `CHARACTER_MAXIMUM_LENGTH` (-1 for `max`), `NUMERIC_PRECISION`, `NUMERIC_SCALE`,
    /// `DATETIME_PRECISION`.
    pub fn from_catalog(
        data_type: &str,
        char_length: Option<i64>,
        precision: Option<i64>,
        scale: Option<i64>,
        datetime_precision: Option<i64>,
    ) -> Result<SqlType> {
        let bad = |why: &str| Error::Schema(format!("column type `{data_type}`: {why}"));
        let length = || -> Result<Option<u32>> {
            match char_length {
                Some(-1) => Ok(None),
                Some(n) => u32::try_from(n)
                    .map(Some)
                    .map_err(|_| bad("length out of range")),
                None => Err(bad("no length")),
            }
        };
        let fixed = || -> Result<u32> { length()?.ok_or_else(|| bad("fixed length of `max`")) };
        let frac = || -> Result<u8> {
            let p = datetime_precision.unwrap_or(7);
            u8::try_from(p)
                .ok()
                .filter(|p| *p <= 7)
                .ok_or_else(|| bad("fractional precision out of range"))
        };
        Ok(match data_type.to_ascii_lowercase().as_str() {
            "bit" => SqlType::Bit,
            "tinyint" => SqlType::TinyInt,
            "smallint" => SqlType::SmallInt,
            "int" => SqlType::Int,
            "bigint" => SqlType::BigInt,
            "decimal" | "numeric" => {
                let p = precision.unwrap_or(18);
                let s = scale.unwrap_or(0);
                match (u8::try_from(p), u8::try_from(s)) {
                    (Ok(p), Ok(s)) if (1..=38).contains(&p) && s <= p => SqlType::Decimal {
                        precision: p,
                        scale: s,
                    },
                    _ => return Err(bad("precision or scale out of range")),
                }
            }
            "money" => SqlType::Money,
            "smallmoney" => SqlType::SmallMoney,
            "real" => SqlType::Real,
            // `float(n)` with n <= 24 is listed as `real`; `float` alone is 53 bits.
            "float" if precision.is_some_and(|p| p <= 24) => SqlType::Real,
            "float" => SqlType::Float,
            "date" => SqlType::Date,
            "time" => SqlType::Time { scale: frac()? },
            "datetime" => SqlType::DateTime,
            "datetime2" => SqlType::DateTime2 { scale: frac()? },
            "smalldatetime" => SqlType::SmallDateTime,
            "datetimeoffset" => SqlType::DateTimeOffset { scale: frac()? },
            "char" => SqlType::Char { length: fixed()? },
            "varchar" => SqlType::VarChar { length: length()? },
            "nchar" => SqlType::NChar { length: fixed()? },
            "nvarchar" => SqlType::NVarChar { length: length()? },
            "text" => SqlType::Text,
            "ntext" => SqlType::NText,
            "xml" => SqlType::Xml,
            "binary" => SqlType::Binary { length: fixed()? },
            "varbinary" => SqlType::VarBinary { length: length()? },
            "image" => SqlType::Image,
            "uniqueidentifier" => SqlType::UniqueIdentifier,
            other => {
                return Err(Error::Schema(format!(
                    "column type `{other}` has no logical type (supported: bit, integers, \
                     decimal, money, real, float, date and time types, character and binary \
                     types, uniqueidentifier); select it through a query with a CAST"
                )));
            }
        })
    }

    /// The type of a type name as SQL Server prints it in `system_type_name`
    /// (`decimal(12,2)`, `nvarchar(50)`, `varchar(max)`, `datetime2(7)`, `int`).
    pub fn parse(text: &str) -> Result<SqlType> {
        let text = text.trim();
        let (name, args) = match text.split_once('(') {
            Some((n, rest)) => {
                let inner = rest.strip_suffix(')').ok_or_else(|| {
                    Error::Schema(format!("type `{text}`: unbalanced parentheses"))
                })?;
                (
                    n.trim(),
                    inner.split(',').map(str::trim).collect::<Vec<_>>(),
                )
            }
            None => (text, Vec::new()),
        };
        let number = |i: usize| -> Result<Option<i64>> {
            match args.get(i) {
                None => Ok(None),
                Some(a) if a.eq_ignore_ascii_case("max") => Ok(Some(-1)),
                Some(a) => a.parse().map(Some).map_err(|_| {
                    Error::Schema(format!("type `{text}`: argument `{a}` is not a number"))
                }),
            }
        };
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "char" | "varchar" | "nchar" | "nvarchar" | "binary" | "varbinary" => {
                SqlType::from_catalog(&name, Some(number(0)?.unwrap_or(1)), None, None, None)
            }
            "decimal" | "numeric" => SqlType::from_catalog(
                &name,
                None,
                number(0)?.or(Some(18)),
                number(1)?.or(Some(0)),
                None,
            ),
            "time" | "datetime2" | "datetimeoffset" => {
                SqlType::from_catalog(&name, None, None, None, number(0)?.or(Some(7)))
            }
            "float" => SqlType::from_catalog(&name, None, number(0)?.or(Some(53)), None, None),
            _ => SqlType::from_catalog(&name, None, None, None, None),
        }
    }

    /// The logical type of a column of this type.
    pub fn logical(&self) -> LogicalType {
        use LogicalType as L;
        let p = |scale: u8| scale.min(6);
        match *self {
            SqlType::Bit => L::Bool,
            SqlType::TinyInt => L::UInt8,
            SqlType::SmallInt => L::Int16,
            SqlType::Int => L::Int32,
            SqlType::BigInt => L::Int64,
            SqlType::Decimal { precision, scale } => L::Decimal { precision, scale },
            SqlType::Money => L::Money,
            SqlType::SmallMoney => L::SmallMoney,
            SqlType::Real => L::Float32,
            SqlType::Float => L::Float64,
            SqlType::Date => L::Date,
            SqlType::Time { scale } => L::Time {
                precision: p(scale),
            },
            SqlType::DateTime => L::DateTime { precision: 6 },
            SqlType::DateTime2 { scale } => L::DateTime {
                precision: p(scale),
            },
            SqlType::SmallDateTime => L::DateTime { precision: 0 },
            SqlType::DateTimeOffset { scale } => L::DateTimeOffset {
                precision: p(scale),
            },
            SqlType::Char { length } => L::Char { length },
            SqlType::VarChar { length } => L::Varchar { max_length: length },
            SqlType::NChar { length } => L::NChar { length },
            SqlType::NVarChar { length } => L::NVarchar { max_length: length },
            SqlType::Text | SqlType::NText | SqlType::Xml => L::Text { max_bytes: None },
            SqlType::Binary { length } => L::Binary { length },
            SqlType::VarBinary { length } => L::Varbinary { max_length: length },
            SqlType::Image => L::Varbinary { max_length: None },
            SqlType::UniqueIdentifier => L::Uuid,
        }
    }

    /// The column type a created table gets for `t`; `in_key` for primary-key columns, which
    /// cannot be `max` types in SQL Server.
    pub fn for_logical(t: &LogicalType, in_key: bool) -> Result<SqlType> {
        use LogicalType as L;
        let nvarchar = |n: Option<u32>| match n {
            Some(n) if n <= MAX_NCHAR => SqlType::NVarChar { length: Some(n) },
            _ if in_key => SqlType::NVarChar {
                length: Some(KEY_NVARCHAR_CHARS),
            },
            _ => SqlType::NVarChar { length: None },
        };
        let varbinary = |n: Option<u32>| match n {
            Some(n) if n <= MAX_CHAR => SqlType::VarBinary { length: Some(n) },
            _ if in_key => SqlType::VarBinary {
                length: Some(KEY_VARBINARY_BYTES),
            },
            _ => SqlType::VarBinary { length: None },
        };
        Ok(match t {
            L::Bool => SqlType::Bit,
            L::Int8 | L::Int16 | L::Year => SqlType::SmallInt,
            L::UInt8 => SqlType::TinyInt,
            L::Int32 | L::UInt16 => SqlType::Int,
            L::Int64 | L::UInt32 => SqlType::BigInt,
            L::Bit { width } if *width < 64 => SqlType::BigInt,
            L::UInt64 | L::Bit { .. } => SqlType::Decimal {
                precision: 20,
                scale: 0,
            },
            L::Int128 => SqlType::VarChar { length: Some(40) },
            L::Float32 => SqlType::Real,
            L::Float64 => SqlType::Float,
            L::Decimal { precision, scale } => SqlType::Decimal {
                precision: *precision,
                scale: *scale,
            },
            L::Money => SqlType::Money,
            L::SmallMoney => SqlType::SmallMoney,
            L::Date => SqlType::Date,
            L::Time { precision } => SqlType::Time { scale: *precision },
            L::DateTime { precision } => SqlType::DateTime2 { scale: *precision },
            L::Timestamp { precision } | L::DateTimeOffset { precision } => {
                SqlType::DateTimeOffset { scale: *precision }
            }
            L::Char { length } | L::NChar { length } if *length <= MAX_NCHAR => SqlType::NChar {
                length: (*length).max(1),
            },
            L::Char { length } | L::NChar { length } => nvarchar(Some(*length)),
            L::Varchar { max_length } | L::NVarchar { max_length } => nvarchar(*max_length),
            L::Text { .. } | L::Json | L::Enum { .. } | L::Set { .. } => nvarchar(None),
            L::Binary { length } if *length <= MAX_CHAR => SqlType::Binary {
                length: (*length).max(1),
            },
            L::Binary { length } => varbinary(Some(*length)),
            L::Varbinary { max_length } => varbinary(*max_length),
            L::Blob { .. } => varbinary(None),
            L::Uuid => SqlType::UniqueIdentifier,
            L::Interval => SqlType::VarChar { length: Some(64) },
            other => {
                return Err(Error::Schema(format!(
                    "logical type {other:?} has no SQL Server column type"
                )));
            }
        })
    }

    /// Whether values of this type are compared and sorted (`text`, `ntext`, `image` and
    /// `xml` are not, in SQL Server).
    pub fn comparable(&self) -> bool {
        !matches!(
            self,
            SqlType::Text | SqlType::NText | SqlType::Image | SqlType::Xml
        )
    }

    /// Whether the type is `money` or `smallmoney`, whose values tiberius carries as `f64`:
    /// they are read and written through an exact decimal instead (see [`SqlType::exact`]).
    pub fn is_money(&self) -> bool {
        matches!(self, SqlType::Money | SqlType::SmallMoney)
    }

    /// The type values of this column travel as: `decimal(19,4)` for `money`,
    /// `decimal(10,4)` for `smallmoney`, the type itself otherwise.
    pub fn exact(&self) -> SqlType {
        match self {
            SqlType::Money => SqlType::Decimal {
                precision: 19,
                scale: 4,
            },
            SqlType::SmallMoney => SqlType::Decimal {
                precision: 10,
                scale: 4,
            },
            other => *other,
        }
    }
}

impl std::fmt::Display for SqlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = |n: &Option<u32>| n.map_or("max".to_owned(), |n| n.to_string());
        match self {
            SqlType::Bit => f.write_str("bit"),
            SqlType::TinyInt => f.write_str("tinyint"),
            SqlType::SmallInt => f.write_str("smallint"),
            SqlType::Int => f.write_str("int"),
            SqlType::BigInt => f.write_str("bigint"),
            SqlType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            SqlType::Money => f.write_str("money"),
            SqlType::SmallMoney => f.write_str("smallmoney"),
            SqlType::Real => f.write_str("real"),
            SqlType::Float => f.write_str("float"),
            SqlType::Date => f.write_str("date"),
            SqlType::Time { scale } => write!(f, "time({scale})"),
            SqlType::DateTime => f.write_str("datetime"),
            SqlType::DateTime2 { scale } => write!(f, "datetime2({scale})"),
            SqlType::SmallDateTime => f.write_str("smalldatetime"),
            SqlType::DateTimeOffset { scale } => write!(f, "datetimeoffset({scale})"),
            SqlType::Char { length } => write!(f, "char({length})"),
            SqlType::VarChar { length } => write!(f, "varchar({})", len(length)),
            SqlType::NChar { length } => write!(f, "nchar({length})"),
            SqlType::NVarChar { length } => write!(f, "nvarchar({})", len(length)),
            SqlType::Text => f.write_str("text"),
            SqlType::NText => f.write_str("ntext"),
            SqlType::Xml => f.write_str("xml"),
            SqlType::Binary { length } => write!(f, "binary({length})"),
            SqlType::VarBinary { length } => write!(f, "varbinary({})", len(length)),
            SqlType::Image => f.write_str("image"),
            SqlType::UniqueIdentifier => f.write_str("uniqueidentifier"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LogicalType as L;

    fn catalog(
        dt: &str,
        len: Option<i64>,
        p: Option<i64>,
        s: Option<i64>,
        d: Option<i64>,
    ) -> SqlType {
        SqlType::from_catalog(dt, len, p, s, d).unwrap()
    }

    #[test]
    fn maps_every_listed_type() {
        let cases: Vec<(SqlType, LogicalType)> = vec![
            (catalog("bit", None, None, None, None), L::Bool),
            (catalog("tinyint", None, Some(3), Some(0), None), L::UInt8),
            (catalog("smallint", None, Some(5), Some(0), None), L::Int16),
            (catalog("int", None, Some(10), Some(0), None), L::Int32),
            (catalog("bigint", None, Some(19), Some(0), None), L::Int64),
            (
                catalog("decimal", None, Some(12), Some(2), None),
                L::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
            (
                catalog("numeric", None, Some(38), Some(38), None),
                L::Decimal {
                    precision: 38,
                    scale: 38,
                },
            ),
            (catalog("money", None, Some(19), Some(4), None), L::Money),
            (
                catalog("smallmoney", None, Some(10), Some(4), None),
                L::SmallMoney,
            ),
            (catalog("real", None, Some(24), None, None), L::Float32),
            (catalog("float", None, Some(53), None, None), L::Float64),
            (catalog("date", None, None, None, Some(0)), L::Date),
            (
                catalog("time", None, None, None, Some(7)),
                L::Time { precision: 6 },
            ),
            (
                catalog("time", None, None, None, Some(3)),
                L::Time { precision: 3 },
            ),
            (
                catalog("datetime", None, None, None, Some(3)),
                L::DateTime { precision: 6 },
            ),
            (
                catalog("datetime2", None, None, None, Some(2)),
                L::DateTime { precision: 2 },
            ),
            (
                catalog("smalldatetime", None, None, None, Some(0)),
                L::DateTime { precision: 0 },
            ),
            (
                catalog("datetimeoffset", None, None, None, Some(7)),
                L::DateTimeOffset { precision: 6 },
            ),
            (
                catalog("char", Some(4), None, None, None),
                L::Char { length: 4 },
            ),
            (
                catalog("varchar", Some(64), None, None, None),
                L::Varchar {
                    max_length: Some(64),
                },
            ),
            (
                catalog("varchar", Some(-1), None, None, None),
                L::Varchar { max_length: None },
            ),
            (
                catalog("nchar", Some(3), None, None, None),
                L::NChar { length: 3 },
            ),
            (
                catalog("nvarchar", Some(-1), None, None, None),
                L::NVarchar { max_length: None },
            ),
            (
                catalog("text", Some(2_147_483_647), None, None, None),
                L::Text { max_bytes: None },
            ),
            (
                catalog("ntext", Some(1_073_741_823), None, None, None),
                L::Text { max_bytes: None },
            ),
            (
                catalog("binary", Some(16), None, None, None),
                L::Binary { length: 16 },
            ),
            (
                catalog("varbinary", Some(-1), None, None, None),
                L::Varbinary { max_length: None },
            ),
            (catalog("uniqueidentifier", None, None, None, None), L::Uuid),
        ];
        for (sql, expected) in cases {
            assert_eq!(sql.logical(), expected, "{sql}");
        }
    }

    #[test]
    fn sql_server_types_come_back_from_their_logical_type() {
        for t in [
            SqlType::Bit,
            SqlType::TinyInt,
            SqlType::SmallInt,
            SqlType::Int,
            SqlType::BigInt,
            SqlType::Decimal {
                precision: 12,
                scale: 2,
            },
            SqlType::Money,
            SqlType::SmallMoney,
            SqlType::Real,
            SqlType::Float,
            SqlType::Date,
            SqlType::Time { scale: 3 },
            SqlType::DateTime2 { scale: 6 },
            SqlType::DateTimeOffset { scale: 5 },
            SqlType::NChar { length: 3 },
            SqlType::NVarChar { length: Some(100) },
            SqlType::NVarChar { length: None },
            SqlType::Binary { length: 8 },
            SqlType::VarBinary { length: Some(20) },
            SqlType::VarBinary { length: None },
            SqlType::UniqueIdentifier,
        ] {
            assert_eq!(SqlType::for_logical(&t.logical(), false).unwrap(), t, "{t}");
        }
        // Types whose values survive in another type.
        let back = |t: SqlType| SqlType::for_logical(&t.logical(), false).unwrap();
        assert_eq!(back(SqlType::DateTime), SqlType::DateTime2 { scale: 6 });
        assert_eq!(
            back(SqlType::SmallDateTime),
            SqlType::DateTime2 { scale: 0 }
        );
        assert_eq!(
            back(SqlType::Char { length: 4 }),
            SqlType::NChar { length: 4 }
        );
        assert_eq!(back(SqlType::Text), SqlType::NVarChar { length: None });
        assert_eq!(back(SqlType::Time { scale: 7 }), SqlType::Time { scale: 6 });
    }

    #[test]
    fn other_logical_types_get_a_type_that_holds_them() {
        let t = |l: LogicalType, key: bool| SqlType::for_logical(&l, key).unwrap().to_string();
        assert_eq!(t(L::Int8, false), "smallint");
        assert_eq!(t(L::UInt64, false), "decimal(20,0)");
        assert_eq!(t(L::Int128, false), "varchar(40)");
        assert_eq!(t(L::Bit { width: 12 }, false), "bigint");
        assert_eq!(t(L::Bit { width: 64 }, false), "decimal(20,0)");
        assert_eq!(t(L::Timestamp { precision: 3 }, false), "datetimeoffset(3)");
        assert_eq!(t(L::Text { max_bytes: None }, false), "nvarchar(max)");
        assert_eq!(t(L::Text { max_bytes: None }, true), "nvarchar(450)");
        assert_eq!(
            t(
                L::Varchar {
                    max_length: Some(5000)
                },
                false
            ),
            "nvarchar(max)"
        );
        assert_eq!(t(L::Blob { max_bytes: None }, true), "varbinary(900)");
        assert_eq!(t(L::Interval, false), "varchar(64)");
        assert_eq!(t(L::Json, false), "nvarchar(max)");
    }

    #[test]
    fn system_type_names() {
        let cases = [
            (
                "decimal(12,2)",
                SqlType::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
            ("nvarchar(50)", SqlType::NVarChar { length: Some(50) }),
            ("varchar(max)", SqlType::VarChar { length: None }),
            ("datetime2(7)", SqlType::DateTime2 { scale: 7 }),
            ("int", SqlType::Int),
            ("datetime", SqlType::DateTime),
            ("float", SqlType::Float),
            ("char(4)", SqlType::Char { length: 4 }),
            ("time(3)", SqlType::Time { scale: 3 }),
            ("uniqueidentifier", SqlType::UniqueIdentifier),
        ];
        for (text, t) in cases {
            assert_eq!(SqlType::parse(text).unwrap(), t, "{text}");
            assert_eq!(SqlType::parse(&t.to_string()).unwrap(), t, "{t}");
        }
        assert!(SqlType::parse("decimal(12,2").is_err());
        assert!(SqlType::parse("geography").is_err());
    }

    #[test]
    fn bad_catalog_rows_are_errors_naming_the_type() {
        let e = SqlType::from_catalog("geography", None, None, None, None).unwrap_err();
        assert!(e.to_string().contains("geography"), "{e}");
        let e = SqlType::from_catalog("decimal", None, Some(40), Some(2), None).unwrap_err();
        assert!(e.to_string().contains("decimal"), "{e}");
        let e = SqlType::from_catalog("char", Some(-1), None, None, None).unwrap_err();
        assert!(e.to_string().contains("char"), "{e}");
    }
}
