//! Type mapping between MySQL / MariaDB column types and caudal's logical types, both ways.
//!
//! Reading, a column's type text (`information_schema.COLUMNS.COLUMN_TYPE`, or `SHOW COLUMNS`
//! for a query's result) is parsed by [`ColumnType::parse`] and mapped by
//! [`ColumnType::logical`]. Creating a table, [`ddl_type`] gives the column type for a logical
//! type. How values travel is in `decode.rs` (server -> batch) and `encode.rs`
//! (batch -> SQL literal).
//!
//! | MySQL / MariaDB | logical type | created as | notes |
//! |---|---|---|---|
//! | `tinyint(1)`, `bool`, `boolean` | `Bool` | `tinyint(1)` | a value other than 0 or 1 is a read error |
//! | `tinyint` / `unsigned` | `Int8` / `UInt8` | same | `tinyint(1) unsigned` is `UInt8` |
//! | `smallint` / `unsigned` | `Int16` / `UInt16` | same | |
//! | `mediumint` / `unsigned` | `Int32` / `UInt32` | `int` / `int unsigned` | |
//! | `int` / `unsigned` | `Int32` / `UInt32` | same | |
//! | `bigint` / `unsigned` | `Int64` / `UInt64` | same | |
//! | `decimal(p,s)`, p <= 38 | `Decimal{p,s}` | `decimal(p,s)` | unscaled `i128` at scale s |
//! | `decimal(39,0)` | `Int128` | `decimal(39,0)` | values beyond `i128` are a read error |
//! | `decimal(p,s)`, p > 38 otherwise | `Varchar{p+2}` | `varchar(p+2)` | exact digits, as text |
//! | `float` | `Float32` | `float` | exact bits (binary protocol) |
//! | `double`, `real` | `Float64` | `double` | NaN and infinities cannot be written |
//! | `bit(n)` | `Bit{n}` | `bit(n)` | |
//! | `date` | `Date` | `date` | zero dates read as NULL |
//! | `time(p)` | `Time{p}` | `time(p)` | negative and > 24 h kept |
//! | `datetime(p)` | `DateTime{p}` | `datetime(p)` | zero datetimes read as NULL |
//! | `timestamp(p)` | `Timestamp{p}` | `timestamp(p)` | read and written in UTC (session `time_zone = '+00:00'`) |
//! | `year` | `Year` | `year` | |
//! | `char(n)` | `Char{n}` | `char(n)` | MySQL strips trailing spaces on read |
//! | `varchar(n)` | `Varchar{n}` | `varchar(n)` | |
//! | `tinytext`, `text`, `mediumtext`, `longtext` | `Text{255, 65535, 16777215, None}` | by size | |
//! | `binary(n)` | `Binary{n}` | `binary(n)` | |
//! | `varbinary(n)` | `Varbinary{n}` | `varbinary(n)` | |
//! | `tinyblob`, `blob`, `mediumblob`, `longblob` | `Blob{255, 65535, 16777215, None}` | by size | |
//! | `json` (MySQL); `longtext` + `CHECK (json_valid(c))` (MariaDB) | `Json` | `json` | text as the server prints it |
//! | `enum('a',..)` | `Enum{variants}` | `enum(..)` | |
//! | `set('a',..)` | `Set{members}` | `set(..)` | comma-separated, as MySQL prints it |
//! | `uuid` (MariaDB >= 10.7) | `Uuid` | `binary(16)` | RFC 4122 byte order |
//! | geometry and other types | `Blob{None}` | `longblob` | the bytes the server sends |
//!
//! Logical types MySQL has no type for, when a table is created from another source's schema:
//!
//! | logical type | created as | stored as |
//! |---|---|---|
//! | `Int128` | `decimal(39,0)` | the integer |
//! | `Money`, `SmallMoney` | `decimal(19,4)`, `decimal(10,4)` | the amount |
//! | `DateTimeOffset{p}` | `datetime(p)` | the UTC instant (the offset is not kept; the digest does not hash it) |
//! | `NChar{n}`, `NVarchar{n}` | `char(n)`, `varchar(n)` | (tables are `utf8mb4`) |
//! | `Varchar{None}`, `NVarchar{None}` | `longtext` (`varchar(768)` in a key) | |
//! | `Varbinary{None}` | `longblob` (`varbinary(3072)` in a key) | |
//! | `Uuid` | `binary(16)` | RFC 4122 byte order |
//! | `Char{n}`, `Binary{n}`, n > 255 | `varchar(n)`, `varbinary(n)` | |
//! | `Varchar{n}`, n > 16383; `Varbinary{n}`, n > 65532 | the text / blob type that holds them | (outside keys) |
//! | `Interval` | `varchar(64)` | `"<months>mo <days>d <micros>us"` |
//!
//! NULL of every type is SQL NULL. Created tables are `utf8mb4` with a binary, no-pad
//! collation, so that keys that differ only in case or trailing spaces stay distinct.

use caudal_connector::LogicalType;

use crate::error::{Error, Result};

/// Longest `varchar` an unbounded text column becomes inside a primary key: 3072 bytes, the
/// InnoDB key limit, over 4 bytes per `utf8mb4` character.
pub const KEY_VARCHAR_CHARS: u32 = 768;
/// Longest `varbinary` an unbounded binary column becomes inside a primary key.
pub const KEY_VARBINARY_BYTES: u32 = 3072;
/// Longest `char` and `binary` MySQL has; longer fixed-length types become variable-length.
pub const MAX_CHAR: u32 = 255;
/// Longest `varchar` of `utf8mb4` that fits MySQL's 65 535-byte row; longer ones become text.
pub const MAX_VARCHAR_CHARS: u32 = 16_383;
/// Longest `varbinary` that fits MySQL's row; longer ones become blobs.
pub const MAX_VARBINARY_BYTES: u32 = 65_532;

/// A column type as MySQL prints it (`decimal(12,2) unsigned`, `enum('a','b')`), parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    /// Base type name, lower case (`decimal`, `enum`, `longtext`).
    pub name: String,
    /// The parenthesised arguments: numbers for most types, the unquoted values for
    /// `enum` and `set`.
    pub args: Vec<String>,
    /// Whether `unsigned` (or `zerofill`, which implies it) follows.
    pub unsigned: bool,
}

impl ColumnType {
    /// Parses a type text such as `int(10) unsigned zerofill` or `set('a','b''c')`.
    pub fn parse(text: &str) -> Result<ColumnType> {
        let bad = |why: &str| Error::Schema(format!("column type `{text}`: {why}"));
        let text = text.trim();
        let name_end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        let name = text[..name_end].to_ascii_lowercase();
        if name.is_empty() {
            return Err(bad("no type name"));
        }
        let mut rest = &text[name_end..];
        let mut args = Vec::new();
        if let Some(inner) = rest.strip_prefix('(') {
            let (parsed, used) = parse_args(inner).ok_or_else(|| bad("unbalanced arguments"))?;
            args = parsed;
            rest = &inner[used..];
        }
        let words = rest.to_ascii_lowercase();
        let unsigned = words
            .split_whitespace()
            .any(|w| w == "unsigned" || w == "zerofill");
        Ok(ColumnType {
            name,
            args,
            unsigned,
        })
    }

    fn number(&self, i: usize) -> Result<u32> {
        self.args
            .get(i)
            .ok_or_else(|| Error::Schema(format!("type `{}` lacks argument {}", self.name, i + 1)))?
            .trim()
            .parse()
            .map_err(|_| {
                Error::Schema(format!(
                    "type `{}` has a non-numeric argument `{}`",
                    self.name, self.args[i]
                ))
            })
    }

    fn number_or(&self, i: usize, default: u32) -> Result<u32> {
        if self.args.len() > i {
            self.number(i)
        } else {
            Ok(default)
        }
    }

    /// The logical type of a column of this type; `json` says the column holds JSON even
    /// though its type is text (MariaDB's `json` is `longtext` with a `json_valid` check).
    pub fn logical(&self, json: bool) -> Result<LogicalType> {
        use LogicalType as L;
        let u = self.unsigned;
        let precision = |i: usize| -> Result<u8> {
            let p = self.number_or(i, 0)?;
            u8::try_from(p).ok().filter(|p| *p <= 6).ok_or_else(|| {
                Error::Schema(format!("fractional precision {p} of `{}`", self.name))
            })
        };
        Ok(match self.name.as_str() {
            "tinyint" if !u && self.args.first().map(String::as_str) == Some("1") => L::Bool,
            "bool" | "boolean" => L::Bool,
            "tinyint" if u => L::UInt8,
            "tinyint" => L::Int8,
            "smallint" if u => L::UInt16,
            "smallint" => L::Int16,
            "mediumint" | "int" | "integer" if u => L::UInt32,
            "mediumint" | "int" | "integer" => L::Int32,
            "bigint" if u => L::UInt64,
            "bigint" => L::Int64,
            "decimal" | "numeric" | "dec" | "fixed" => {
                let p = self.number_or(0, 10)?;
                let s = self.number_or(1, 0)?;
                match (u8::try_from(p), u8::try_from(s)) {
                    (Ok(p), Ok(s)) if p <= 38 && s <= p => L::Decimal {
                        precision: p,
                        scale: s,
                    },
                    _ if p == 39 && s == 0 => L::Int128,
                    _ => L::Varchar {
                        max_length: Some(p + 2),
                    },
                }
            }
            "float" => L::Float32,
            "double" | "real" => L::Float64,
            "bit" => {
                let w = self.number_or(0, 1)?;
                L::Bit {
                    width: u8::try_from(w)
                        .ok()
                        .filter(|w| (1..=64).contains(w))
                        .ok_or_else(|| Error::Schema(format!("bit({w}) is out of range")))?,
                }
            }
            "date" => L::Date,
            "time" => L::Time {
                precision: precision(0)?,
            },
            "datetime" => L::DateTime {
                precision: precision(0)?,
            },
            "timestamp" => L::Timestamp {
                precision: precision(0)?,
            },
            "year" => L::Year,
            "char" => L::Char {
                length: self.number_or(0, 1)?,
            },
            "varchar" => L::Varchar {
                max_length: Some(self.number(0)?),
            },
            "tinytext" | "text" | "mediumtext" | "longtext" if json => L::Json,
            "json" => L::Json,
            "tinytext" => L::Text {
                max_bytes: Some(255),
            },
            "text" => L::Text {
                max_bytes: Some(65_535),
            },
            "mediumtext" => L::Text {
                max_bytes: Some(16_777_215),
            },
            "longtext" => L::Text { max_bytes: None },
            "binary" => L::Binary {
                length: self.number_or(0, 1)?,
            },
            "varbinary" => L::Varbinary {
                max_length: Some(self.number(0)?),
            },
            "tinyblob" => L::Blob {
                max_bytes: Some(255),
            },
            "blob" => L::Blob {
                max_bytes: Some(65_535),
            },
            "mediumblob" => L::Blob {
                max_bytes: Some(16_777_215),
            },
            "longblob" => L::Blob { max_bytes: None },
            "enum" => L::Enum {
                variants: self.args.clone(),
            },
            "set" => L::Set {
                members: self.args.clone(),
            },
            "uuid" => L::Uuid,
            _ => L::Blob { max_bytes: None },
        })
    }
}

/// Parses `a,b)` or `'x','y''z')` (the text after the opening parenthesis); returns the
/// arguments and the bytes consumed including the closing parenthesis.
fn parse_args(s: &str) -> Option<(Vec<String>, usize)> {
    let bytes = s.as_bytes();
    let mut args = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => {
                // A quoted value: '' is a quote, \x is x.
                i += 1;
                let mut value = Vec::new();
                loop {
                    match bytes.get(i)? {
                        b'\'' if bytes.get(i + 1) == Some(&b'\'') => {
                            value.push(b'\'');
                            i += 2;
                        }
                        b'\'' => {
                            i += 1;
                            break;
                        }
                        b'\\' => {
                            value.push(*bytes.get(i + 1)?);
                            i += 2;
                        }
                        b => {
                            value.push(*b);
                            i += 1;
                        }
                    }
                }
                current.push_str(std::str::from_utf8(&value).ok()?);
            }
            b',' => {
                args.push(std::mem::take(&mut current));
                i += 1;
            }
            b')' => {
                args.push(current);
                return Some((args, i + 1));
            }
            _ => {
                let c = s[i..].chars().next()?;
                current.push(c);
                i += c.len_utf8();
            }
        }
    }
    None
}

/// The column type a table gets for `t`; `in_key` for primary-key columns, which cannot be
/// `text` or `blob` in MySQL.
pub fn ddl_type(t: &LogicalType, in_key: bool) -> Result<String> {
    use LogicalType as L;
    let text_by_size = |max: Option<u32>, family: &str| -> String {
        let prefix = match max {
            Some(n) if n <= 255 => "tiny",
            Some(n) if n <= 65_535 => "",
            Some(n) if n <= 16_777_215 => "medium",
            _ => "long",
        };
        format!("{prefix}{family}")
    };
    Ok(match t {
        L::Bool => "tinyint(1)".into(),
        L::Int8 => "tinyint".into(),
        L::Int16 => "smallint".into(),
        L::Int32 => "int".into(),
        L::Int64 => "bigint".into(),
        L::Int128 => "decimal(39,0)".into(),
        L::UInt8 => "tinyint unsigned".into(),
        L::UInt16 => "smallint unsigned".into(),
        L::UInt32 => "int unsigned".into(),
        L::UInt64 => "bigint unsigned".into(),
        L::Float32 => "float".into(),
        L::Float64 => "double".into(),
        L::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
        L::Money => "decimal(19,4)".into(),
        L::SmallMoney => "decimal(10,4)".into(),
        L::Date => "date".into(),
        L::Time { precision } => format!("time({precision})"),
        L::DateTime { precision } | L::DateTimeOffset { precision } => {
            format!("datetime({precision})")
        }
        L::Timestamp { precision } => format!("timestamp({precision})"),
        L::Year => "year".into(),
        L::Bit { width } => format!("bit({width})"),
        L::Char { length } | L::NChar { length } if *length <= MAX_CHAR => {
            format!("char({length})")
        }
        L::Char { length: n }
        | L::NChar { length: n }
        | L::Varchar {
            max_length: Some(n),
        }
        | L::NVarchar {
            max_length: Some(n),
        } if in_key || *n <= MAX_VARCHAR_CHARS => format!("varchar({n})"),
        // Too long for a varchar of 4-byte characters: the text type that holds as many.
        L::Char { length: n }
        | L::NChar { length: n }
        | L::Varchar {
            max_length: Some(n),
        }
        | L::NVarchar {
            max_length: Some(n),
        } => text_by_size(Some(n.saturating_mul(4)), "text"),
        L::Varchar { max_length: None } | L::NVarchar { max_length: None } if in_key => {
            format!("varchar({KEY_VARCHAR_CHARS})")
        }
        L::Varchar { max_length: None } | L::NVarchar { max_length: None } => "longtext".into(),
        L::Text { .. } if in_key => format!("varchar({KEY_VARCHAR_CHARS})"),
        L::Text { max_bytes } => text_by_size(*max_bytes, "text"),
        L::Json if in_key => {
            return Err(Error::Schema(
                "a json column cannot be part of a MySQL primary key".into(),
            ));
        }
        L::Json => "json".into(),
        L::Enum { variants } => format!("enum({})", quoted_list(variants)?),
        L::Set { members } => format!("set({})", quoted_list(members)?),
        L::Binary { length } if *length <= MAX_CHAR => format!("binary({length})"),
        L::Binary { length: n }
        | L::Varbinary {
            max_length: Some(n),
        } if in_key || *n <= MAX_VARBINARY_BYTES => format!("varbinary({n})"),
        L::Binary { length: n }
        | L::Varbinary {
            max_length: Some(n),
        } => text_by_size(Some(*n), "blob"),
        L::Varbinary { max_length: None } | L::Blob { .. } if in_key => {
            format!("varbinary({KEY_VARBINARY_BYTES})")
        }
        L::Varbinary { max_length: None } => "longblob".into(),
        L::Blob { max_bytes } => text_by_size(*max_bytes, "blob"),
        L::Uuid => "binary(16)".into(),
        L::Interval => "varchar(64)".into(),
        other => {
            return Err(Error::Schema(format!(
                "logical type {other:?} has no MySQL column type"
            )));
        }
    })
}

fn quoted_list(values: &[String]) -> Result<String> {
    if values.is_empty() {
        return Err(Error::Schema(
            "an enum or set needs at least one value".into(),
        ));
    }
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        crate::encode::push_quoted(&mut out, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use LogicalType as L;

    fn logical(text: &str) -> LogicalType {
        ColumnType::parse(text).unwrap().logical(false).unwrap()
    }

    #[test]
    fn parses_type_texts() {
        let t = ColumnType::parse("int(10) unsigned zerofill").unwrap();
        assert_eq!(t.name, "int");
        assert_eq!(t.args, vec!["10"]);
        assert!(t.unsigned);
        let t = ColumnType::parse(r"enum('x''y','b\\c','d,e','(p)')").unwrap();
        assert_eq!(t.args, vec!["x'y", r"b\c", "d,e", "(p)"]);
        let t = ColumnType::parse("set('año','日本')").unwrap();
        assert_eq!(t.args, vec!["año", "日本"]);
        assert!(ColumnType::parse("enum('a'").is_err());
        assert!(ColumnType::parse("(3)").is_err());
    }

    #[test]
    fn maps_every_listed_type() {
        let cases: Vec<(&str, LogicalType)> = vec![
            ("tinyint(1)", L::Bool),
            ("tinyint(1) unsigned", L::UInt8),
            ("tinyint(4)", L::Int8),
            ("tinyint unsigned", L::UInt8),
            ("smallint(6)", L::Int16),
            ("smallint unsigned", L::UInt16),
            ("mediumint", L::Int32),
            ("mediumint(8) unsigned", L::UInt32),
            ("int(11)", L::Int32),
            ("int unsigned", L::UInt32),
            ("bigint(20)", L::Int64),
            ("bigint(20) unsigned", L::UInt64),
            (
                "decimal(12,2)",
                L::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
            (
                "decimal(38,38)",
                L::Decimal {
                    precision: 38,
                    scale: 38,
                },
            ),
            ("decimal(39,0)", L::Int128),
            (
                "decimal(65,30)",
                L::Varchar {
                    max_length: Some(67),
                },
            ),
            ("float", L::Float32),
            ("float(7,4)", L::Float32),
            ("double", L::Float64),
            ("bit(12)", L::Bit { width: 12 }),
            ("date", L::Date),
            ("time(3)", L::Time { precision: 3 }),
            ("datetime", L::DateTime { precision: 0 }),
            ("datetime(6)", L::DateTime { precision: 6 }),
            ("timestamp(3)", L::Timestamp { precision: 3 }),
            ("year(4)", L::Year),
            ("char(4)", L::Char { length: 4 }),
            (
                "varchar(64)",
                L::Varchar {
                    max_length: Some(64),
                },
            ),
            (
                "tinytext",
                L::Text {
                    max_bytes: Some(255),
                },
            ),
            (
                "text",
                L::Text {
                    max_bytes: Some(65_535),
                },
            ),
            (
                "mediumtext",
                L::Text {
                    max_bytes: Some(16_777_215),
                },
            ),
            ("longtext", L::Text { max_bytes: None }),
            ("binary(16)", L::Binary { length: 16 }),
            (
                "varbinary(32)",
                L::Varbinary {
                    max_length: Some(32),
                },
            ),
            (
                "tinyblob",
                L::Blob {
                    max_bytes: Some(255),
                },
            ),
            ("longblob", L::Blob { max_bytes: None }),
            ("json", L::Json),
            (
                "enum('a','b')",
                L::Enum {
                    variants: vec!["a".into(), "b".into()],
                },
            ),
            (
                "set('a','b')",
                L::Set {
                    members: vec!["a".into(), "b".into()],
                },
            ),
            ("uuid", L::Uuid),
            ("geometry", L::Blob { max_bytes: None }),
        ];
        for (text, expected) in cases {
            assert_eq!(logical(text), expected, "{text}");
        }
        let json = ColumnType::parse("longtext")
            .unwrap()
            .logical(true)
            .unwrap();
        assert_eq!(json, L::Json);
    }

    #[test]
    fn mysql_types_survive_the_round_trip_through_ddl() {
        for text in [
            "tinyint(1)",
            "tinyint",
            "tinyint unsigned",
            "smallint",
            "smallint unsigned",
            "int",
            "int unsigned",
            "bigint",
            "bigint unsigned",
            "decimal(12,2)",
            "decimal(39,0)",
            "float",
            "double",
            "bit(12)",
            "date",
            "time(6)",
            "datetime(3)",
            "timestamp(6)",
            "year",
            "char(4)",
            "varchar(64)",
            "tinytext",
            "text",
            "mediumtext",
            "longtext",
            "binary(4)",
            "varbinary(32)",
            "tinyblob",
            "blob",
            "mediumblob",
            "longblob",
            "json",
            "enum('x''y','b\\\\c')",
            "set('a','b')",
        ] {
            let t = logical(text);
            let ddl = ddl_type(&t, false).unwrap();
            assert_eq!(logical(&ddl), t, "{text} -> {ddl}");
        }
    }

    #[test]
    fn lengths_beyond_mysql_limits_get_a_type_that_holds_them() {
        let t = |t: LogicalType| ddl_type(&t, false).unwrap();
        assert_eq!(t(L::Char { length: 300 }), "varchar(300)");
        assert_eq!(t(L::NChar { length: 255 }), "char(255)");
        assert_eq!(t(L::Binary { length: 1000 }), "varbinary(1000)");
        assert_eq!(
            t(L::Varchar {
                max_length: Some(20_000)
            }),
            "mediumtext"
        );
        assert_eq!(
            t(L::NVarchar {
                max_length: Some(16_383)
            }),
            "varchar(16383)"
        );
        assert_eq!(
            t(L::Varbinary {
                max_length: Some(100_000)
            }),
            "mediumblob"
        );
        assert_eq!(
            ddl_type(
                &L::Varchar {
                    max_length: Some(20_000)
                },
                true
            )
            .unwrap(),
            "varchar(20000)"
        );
    }

    #[test]
    fn keys_never_get_text_or_blob() {
        assert_eq!(
            ddl_type(&L::Text { max_bytes: None }, true).unwrap(),
            "varchar(768)"
        );
        assert_eq!(
            ddl_type(&L::Varbinary { max_length: None }, true).unwrap(),
            "varbinary(3072)"
        );
        assert!(ddl_type(&L::Json, true).is_err());
        assert!(
            ddl_type(
                &L::Enum {
                    variants: Vec::new()
                },
                false
            )
            .is_err()
        );
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        for text in ["varchar", "varchar(x)", "bit(0)", "bit(65)", "datetime(9)"] {
            let parsed = ColumnType::parse(text).unwrap();
            assert!(parsed.logical(false).is_err(), "{text}");
        }
    }
}
