//! Logical types and schemas: what a column means, independent of any database.
//!
//! Every connector maps its database types to a [`LogicalType`] when it reads and back when
//! it creates a table, so that a MySQL `decimal(12,2)` arrives in DuckDB as `DECIMAL(12,2)` and
//! a SQL Server `datetimeoffset(3)` keeps its offset. Each logical type has exactly one
//! physical [`Storage`] in a batch (see [`LogicalType::storage`]); the table in the crate
//! documentation lists the units (days, microseconds, unscaled integers).
//!
//! A [`Schema`] is the ordered list of [`Field`]s plus the primary-key columns. It is checked
//! when built or decoded ([`Schema::new`]), so the rest of the SDK may index it freely.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// Largest decimal precision a batch can hold (unscaled values are `i128`).
pub const MAX_DECIMAL_PRECISION: u8 = 38;
/// Finest fractional-second precision kept (microseconds).
pub const MAX_TIME_PRECISION: u8 = 6;

/// What a column means. Parameters are the database's own (lengths in characters for text,
/// bytes for binary; `None` means unbounded / `max`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LogicalType {
    /// true / false (MySQL `bool`, SQL Server `bit`, DuckDB `BOOLEAN`).
    Bool,
    /// Signed 8-bit integer.
    Int8,
    /// Signed 16-bit integer.
    Int16,
    /// Signed 32-bit integer.
    Int32,
    /// Signed 64-bit integer.
    Int64,
    /// Signed 128-bit integer (DuckDB `HUGEINT`).
    Int128,
    /// Unsigned 8-bit integer (SQL Server `tinyint`, MySQL `tinyint unsigned`).
    UInt8,
    /// Unsigned 16-bit integer.
    UInt16,
    /// Unsigned 32-bit integer.
    UInt32,
    /// Unsigned 64-bit integer.
    UInt64,
    /// IEEE 754 single precision.
    Float32,
    /// IEEE 754 double precision.
    Float64,
    /// Exact decimal with `precision` digits (1..=38), `scale` of them after the point.
    Decimal {
        /// Total number of digits.
        precision: u8,
        /// Digits after the decimal point (<= precision).
        scale: u8,
    },
    /// SQL Server `money`: a decimal with 4 fractional digits, range of `i64`.
    Money,
    /// SQL Server `smallmoney`: a decimal with 4 fractional digits, range of `i32`.
    SmallMoney,
    /// Calendar date without time zone.
    Date,
    /// Time of day, or a MySQL `TIME` duration (which may be negative or exceed 24 h).
    Time {
        /// Fractional-second digits kept by the source (0..=6).
        precision: u8,
    },
    /// Date and time without time zone (MySQL `DATETIME`, SQL Server `datetime2`, DuckDB `TIMESTAMP`).
    DateTime {
        /// Fractional-second digits (0..=6).
        precision: u8,
    },
    /// An instant in UTC (MySQL `TIMESTAMP`, DuckDB `TIMESTAMPTZ`).
    Timestamp {
        /// Fractional-second digits (0..=6).
        precision: u8,
    },
    /// An instant with its UTC offset (SQL Server `datetimeoffset`).
    DateTimeOffset {
        /// Fractional-second digits (0..=6).
        precision: u8,
    },
    /// MySQL `YEAR`.
    Year,
    /// A bit string of `width` bits (1..=64), MySQL `BIT(n)`.
    Bit {
        /// Number of bits.
        width: u8,
    },
    /// Fixed-length character string.
    Char {
        /// Length in characters.
        length: u32,
    },
    /// Variable-length character string.
    Varchar {
        /// Maximum length in characters; `None` for unbounded (`varchar(max)`, DuckDB `VARCHAR`).
        max_length: Option<u32>,
    },
    /// Long text (MySQL `TEXT` family, SQL Server `text`/`ntext`).
    Text {
        /// Maximum size in bytes (MySQL: 255, 65535, 16777215); `None` for unbounded.
        max_bytes: Option<u32>,
    },
    /// Fixed-length Unicode string (SQL Server `nchar`).
    NChar {
        /// Length in characters.
        length: u32,
    },
    /// Variable-length Unicode string (SQL Server `nvarchar`).
    NVarchar {
        /// Maximum length in characters; `None` for `nvarchar(max)`.
        max_length: Option<u32>,
    },
    /// A JSON document, stored as its text.
    Json,
    /// One of a fixed list of strings (MySQL `ENUM`, DuckDB `ENUM`).
    Enum {
        /// The allowed values, in declaration order.
        variants: Vec<String>,
    },
    /// A subset of a fixed list of strings (MySQL `SET`), stored as MySQL prints it: comma-separated.
    Set {
        /// The allowed members, in declaration order.
        members: Vec<String>,
    },
    /// Fixed-length byte string.
    Binary {
        /// Length in bytes.
        length: u32,
    },
    /// Variable-length byte string.
    Varbinary {
        /// Maximum length in bytes; `None` for unbounded.
        max_length: Option<u32>,
    },
    /// Large binary object (MySQL `BLOB` family, DuckDB `BLOB`).
    Blob {
        /// Maximum size in bytes; `None` for unbounded.
        max_bytes: Option<u32>,
    },
    /// A 128-bit UUID (SQL Server `uniqueidentifier`, DuckDB `UUID`), in RFC 4122 byte order.
    Uuid,
    /// A calendar interval (DuckDB `INTERVAL`): months, days and microseconds kept apart.
    Interval,
}

/// The physical representation of a column inside a [`crate::Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Storage {
    /// `Vec<bool>`.
    Bool,
    /// `Vec<i8>`.
    I8,
    /// `Vec<i16>`.
    I16,
    /// `Vec<i32>`.
    I32,
    /// `Vec<i64>`.
    I64,
    /// `Vec<i128>`.
    I128,
    /// `Vec<u8>`.
    U8,
    /// `Vec<u16>`.
    U16,
    /// `Vec<u32>`.
    U32,
    /// `Vec<u64>`.
    U64,
    /// `Vec<f32>`.
    F32,
    /// `Vec<f64>`.
    F64,
    /// UTF-8 strings: offsets plus one byte buffer.
    Utf8,
    /// Byte strings: offsets plus one byte buffer.
    Binary,
    /// `Vec<[u8; 16]>`.
    Uuid,
    /// `Vec<OffsetTimestamp>`.
    OffsetTimestamp,
    /// `Vec<Interval>`.
    Interval,
}

impl LogicalType {
    /// The one physical storage of this type in a batch.
    pub fn storage(&self) -> Storage {
        use LogicalType as L;
        match self {
            L::Bool => Storage::Bool,
            L::Int8 => Storage::I8,
            L::Int16 | L::Year => Storage::I16,
            L::Int32 | L::Date => Storage::I32,
            L::Int64 | L::Time { .. } | L::DateTime { .. } | L::Timestamp { .. } => Storage::I64,
            L::Int128 | L::Decimal { .. } | L::Money | L::SmallMoney => Storage::I128,
            L::UInt8 => Storage::U8,
            L::UInt16 => Storage::U16,
            L::UInt32 => Storage::U32,
            L::UInt64 | L::Bit { .. } => Storage::U64,
            L::Float32 => Storage::F32,
            L::Float64 => Storage::F64,
            L::Char { .. }
            | L::Varchar { .. }
            | L::Text { .. }
            | L::NChar { .. }
            | L::NVarchar { .. }
            | L::Json
            | L::Enum { .. }
            | L::Set { .. } => Storage::Utf8,
            L::Binary { .. } | L::Varbinary { .. } | L::Blob { .. } => Storage::Binary,
            L::Uuid => Storage::Uuid,
            L::DateTimeOffset { .. } => Storage::OffsetTimestamp,
            L::Interval => Storage::Interval,
        }
    }

    /// The decimal scale of types stored as unscaled `i128` (decimal and money), else `None`.
    pub fn decimal_scale(&self) -> Option<u8> {
        match self {
            LogicalType::Decimal { scale, .. } => Some(*scale),
            LogicalType::Money | LogicalType::SmallMoney => Some(4),
            _ => None,
        }
    }

    /// Checks the type's parameters (decimal precision, time precision, bit width).
    pub fn validate(&self) -> Result<()> {
        match self {
            LogicalType::Decimal { precision, scale }
                if (*precision == 0 || *precision > MAX_DECIMAL_PRECISION || scale > precision) =>
            {
                return Err(Error::Schema(format!(
                    "decimal({precision},{scale}) is out of range: precision must be 1..=38 and scale <= precision"
                )));
            }
            LogicalType::Time { precision }
            | LogicalType::DateTime { precision }
            | LogicalType::Timestamp { precision }
            | LogicalType::DateTimeOffset { precision }
                if *precision > MAX_TIME_PRECISION =>
            {
                return Err(Error::Schema(format!(
                    "fractional-second precision {precision} is out of range 0..=6 (microseconds)"
                )));
            }
            LogicalType::Bit { width } if (*width == 0 || *width > 64) => {
                return Err(Error::Schema(format!(
                    "bit({width}) is out of range 1..=64"
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

/// One column of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Field {
    /// Column name as the source spells it.
    pub name: String,
    /// What the column means.
    pub logical_type: LogicalType,
    /// Whether the column accepts NULL.
    pub nullable: bool,
}

impl Field {
    /// A field; shorthand for the struct literal.
    pub fn new(name: impl Into<String>, logical_type: LogicalType, nullable: bool) -> Field {
        Field {
            name: name.into(),
            logical_type,
            nullable,
        }
    }
}

/// A short, content-derived identifier of a schema: the first 8 bytes of the SHA-256 of its
/// encoding. Equal schemas have equal ids in every process, so the journal can store a schema
/// once and refer to it by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SchemaId(pub u64);

impl std::fmt::Display for SchemaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// An ordered list of columns and the primary key.
///
/// Invariants (checked by [`Schema::new`] and on decode): column names are unique and
/// non-empty, every type's parameters are valid, primary-key indices are in range and distinct.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Schema {
    fields: Vec<Field>,
    primary_key: Vec<usize>,
}

impl Schema {
    /// A schema from its fields and the names of its primary-key columns (in key order).
    pub fn new(fields: Vec<Field>, primary_key: &[&str]) -> Result<Schema> {
        let mut pk = Vec::with_capacity(primary_key.len());
        for name in primary_key {
            let idx = fields.iter().position(|f| f.name == *name).ok_or_else(|| {
                Error::Schema(format!(
                    "primary key column `{name}` is not a column of the schema"
                ))
            })?;
            pk.push(idx);
        }
        Schema::from_parts(fields, pk)
    }

    /// A schema from fields and primary-key column indices.
    pub fn from_parts(fields: Vec<Field>, primary_key: Vec<usize>) -> Result<Schema> {
        let schema = Schema {
            fields,
            primary_key,
        };
        schema.validate()?;
        Ok(schema)
    }

    fn validate(&self) -> Result<()> {
        for (i, f) in self.fields.iter().enumerate() {
            if f.name.is_empty() {
                return Err(Error::Schema(format!("column {i} has an empty name")));
            }
            if self.fields[..i].iter().any(|g| g.name == f.name) {
                return Err(Error::Schema(format!("column `{}` appears twice", f.name)));
            }
            f.logical_type
                .validate()
                .map_err(|e| Error::Schema(format!("column `{}`: {}", f.name, e.message())))?;
        }
        for (j, &k) in self.primary_key.iter().enumerate() {
            if k >= self.fields.len() {
                return Err(Error::Schema(format!(
                    "primary key index {k} is out of range for {} columns",
                    self.fields.len()
                )));
            }
            if self.primary_key[..j].contains(&k) {
                return Err(Error::Schema(format!(
                    "column `{}` appears twice in the primary key",
                    self.fields[k].name
                )));
            }
        }
        Ok(())
    }

    /// The columns, in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Indices of the primary-key columns, in key order (empty when the table has none).
    pub fn primary_key(&self) -> &[usize] {
        &self.primary_key
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the schema has no columns.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The index of the column named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// The content-derived id of this schema.
    pub fn id(&self) -> SchemaId {
        // Encoding a validated schema into a Vec cannot fail; fall back to hashing the debug
        // text rather than panicking if it ever did.
        let bytes = bincode::serde::encode_to_vec(self, bincode::config::standard())
            .unwrap_or_else(|_| format!("{self:?}").into_bytes());
        let hash = Sha256::digest(&bytes);
        let mut id = [0u8; 8];
        id.copy_from_slice(&hash[..8]);
        SchemaId(u64::from_be_bytes(id))
    }
}

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            fields: Vec<Field>,
            primary_key: Vec<usize>,
        }
        let raw = Raw::deserialize(d)?;
        Schema::from_parts(raw.fields, raw.primary_key).map_err(serde::de::Error::custom)
    }
}

/// What a plugin can do, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Capabilities(pub u32);

impl Capabilities {
    /// Reads tables and queries.
    pub const SOURCE: Capabilities = Capabilities(1);
    /// Writes batches with offsets.
    pub const SINK: Capabilities = Capabilities(2);
    /// A sink that serves as a cache of other tables (Redis).
    pub const CACHE: Capabilities = Capabilities(4);
    /// Keeps rows in no key order (Redis): a key range is served by reading the whole table.
    /// `caudal verify` then names the rows that differ in one read of the table instead of
    /// bisecting it by key ranges.
    pub const UNORDERED: Capabilities = Capabilities(8);

    /// The union of two sets.
    pub const fn union(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }

    /// Whether every capability of `other` is in `self`.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// Lower-case names of the capabilities, in a fixed order ("source", "sink", "cache",
    /// "unordered").
    pub fn names(self) -> Vec<&'static str> {
        [
            (Self::SOURCE, "source"),
            (Self::SINK, "sink"),
            (Self::CACHE, "cache"),
            (Self::UNORDERED, "unordered"),
        ]
        .into_iter()
        .filter(|(c, _)| self.contains(*c))
        .map(|(_, n)| n)
        .collect()
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Capabilities) -> Capabilities {
        self.union(rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, t: LogicalType) -> Field {
        Field::new(name, t, true)
    }

    #[test]
    fn schema_rejects_bad_primary_key_and_duplicates() {
        let err = Schema::new(vec![f("a", LogicalType::Int64)], &["b"]).unwrap_err();
        assert!(err.to_string().contains("`b`"), "{err}");
        let err = Schema::new(
            vec![f("a", LogicalType::Int64), f("a", LogicalType::Bool)],
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let err = Schema::from_parts(vec![f("a", LogicalType::Int64)], vec![3]).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn type_parameters_are_checked() {
        let bad = [
            LogicalType::Decimal {
                precision: 39,
                scale: 2,
            },
            LogicalType::Decimal {
                precision: 5,
                scale: 6,
            },
            LogicalType::Decimal {
                precision: 0,
                scale: 0,
            },
            LogicalType::DateTime { precision: 7 },
            LogicalType::Bit { width: 65 },
        ];
        for t in bad {
            let err = Schema::new(vec![f("x", t.clone())], &[]).unwrap_err();
            assert!(err.to_string().contains("`x`"), "{t:?}: {err}");
        }
        assert!(
            Schema::new(
                vec![f(
                    "x",
                    LogicalType::Decimal {
                        precision: 38,
                        scale: 38
                    }
                )],
                &[]
            )
            .is_ok()
        );
    }

    #[test]
    fn schema_id_depends_on_content_only() {
        let a = Schema::new(
            vec![f("a", LogicalType::Int64), f("b", LogicalType::Json)],
            &["a"],
        )
        .unwrap();
        let b = Schema::new(
            vec![f("a", LogicalType::Int64), f("b", LogicalType::Json)],
            &["a"],
        )
        .unwrap();
        let c = Schema::new(
            vec![f("a", LogicalType::Int64), f("b", LogicalType::Json)],
            &[],
        )
        .unwrap();
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
    }

    #[test]
    fn decoding_an_invalid_schema_fails() {
        let bad = Schema {
            fields: vec![f("a", LogicalType::Int64)],
            primary_key: vec![9],
        };
        let bytes = bincode::serde::encode_to_vec(&bad, bincode::config::standard()).unwrap();
        let res: std::result::Result<(Schema, usize), _> =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard());
        assert!(res.is_err());
    }

    #[test]
    fn capability_names() {
        let c = Capabilities::SOURCE | Capabilities::SINK;
        assert_eq!(c.names(), vec!["source", "sink"]);
        assert!(!c.contains(Capabilities::CACHE));
        let all = c | Capabilities::CACHE | Capabilities::UNORDERED;
        assert_eq!(all.names(), vec!["source", "sink", "cache", "unordered"]);
    }
}
