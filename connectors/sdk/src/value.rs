//! Owned single values: cursor positions, primary-key bounds, and cell access in tests.
//!
//! [`Value`] is deliberately *not* how batches store data (see [`crate::batch`]); it is for the
//! few values that travel alone: the cursor a chunk reached, the bounds of a [`KeyRange`].
//! Its variants follow the digest's value classes: every integer type is an `Int`/`UInt`,
//! decimals and money are `Decimal`, and so on (see [`Value::from_column`]).

use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::batch::{Column, ColumnData, Interval, OffsetTimestamp};
use crate::types::LogicalType;

/// One value in logical terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any signed integer type, `Year` and values of unsigned types that fit.
    Int(i64),
    /// A `UInt64` or `Bit` value (the full unsigned range).
    UInt(u64),
    /// A 128-bit integer.
    Int128(i128),
    /// A float or double (f32 widened exactly).
    Float(f64),
    /// A decimal or money value: `unscaled * 10^-scale`.
    Decimal {
        /// The digits as an integer.
        unscaled: i128,
        /// Digits after the point.
        scale: u8,
    },
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight (may be negative or exceed a day for MySQL `TIME`).
    Time(i64),
    /// Microseconds since 1970-01-01T00:00:00, no time zone.
    DateTime(i64),
    /// Microseconds since 1970-01-01T00:00:00Z.
    Timestamp(i64),
    /// An instant with its offset.
    DateTimeOffset(OffsetTimestamp),
    /// Text of any string type, JSON, enum or set.
    Text(String),
    /// Bytes of any binary type.
    Bytes(Vec<u8>),
    /// A UUID.
    Uuid([u8; 16]),
    /// A calendar interval.
    Interval(Interval),
}

impl Value {
    /// Cell `row` of `column`, interpreted as `logical_type` (which must be the column's type).
    /// Returns [`Value::Null`] for NULL cells and for rows past the end.
    pub fn from_column(column: &Column, logical_type: &LogicalType, row: usize) -> Value {
        if column.is_null(row) {
            return Value::Null;
        }
        use LogicalType as L;
        let data = column.data();
        let v = match (data, logical_type) {
            (ColumnData::Bool(v), _) => v.get(row).map(|x| Value::Bool(*x)),
            (ColumnData::I8(v), _) => v.get(row).map(|x| Value::Int(i64::from(*x))),
            (ColumnData::I16(v), _) => v.get(row).map(|x| Value::Int(i64::from(*x))),
            (ColumnData::I32(v), L::Date) => v.get(row).map(|x| Value::Date(*x)),
            (ColumnData::I32(v), _) => v.get(row).map(|x| Value::Int(i64::from(*x))),
            (ColumnData::I64(v), L::Time { .. }) => v.get(row).map(|x| Value::Time(*x)),
            (ColumnData::I64(v), L::DateTime { .. }) => v.get(row).map(|x| Value::DateTime(*x)),
            (ColumnData::I64(v), L::Timestamp { .. }) => v.get(row).map(|x| Value::Timestamp(*x)),
            (ColumnData::I64(v), _) => v.get(row).map(|x| Value::Int(*x)),
            (ColumnData::I128(v), t) => v.get(row).map(|x| match t.decimal_scale() {
                Some(scale) => Value::Decimal {
                    unscaled: *x,
                    scale,
                },
                None => Value::Int128(*x),
            }),
            (ColumnData::U8(v), _) => v.get(row).map(|x| Value::Int(i64::from(*x))),
            (ColumnData::U16(v), _) => v.get(row).map(|x| Value::Int(i64::from(*x))),
            (ColumnData::U32(v), _) => v.get(row).map(|x| Value::Int(i64::from(*x))),
            (ColumnData::U64(v), _) => v.get(row).map(|x| Value::UInt(*x)),
            (ColumnData::F32(v), _) => v.get(row).map(|x| Value::Float(f64::from(*x))),
            (ColumnData::F64(v), _) => v.get(row).map(|x| Value::Float(*x)),
            (ColumnData::Utf8(v), _) => Some(Value::Text(v.get(row).to_owned())),
            (ColumnData::Binary(v), _) => Some(Value::Bytes(v.get(row).to_vec())),
            (ColumnData::Uuid(v), _) => v.get(row).map(|x| Value::Uuid(*x)),
            (ColumnData::OffsetTimestamp(v), _) => v.get(row).map(|x| Value::DateTimeOffset(*x)),
            (ColumnData::Interval(v), _) => v.get(row).map(|x| Value::Interval(*x)),
        };
        v.unwrap_or(Value::Null)
    }

    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// A range of primary-key tuples (compared column by column in key order), for digests and
/// for the bisection of `verify`. Bounds hold one value per primary-key column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRange {
    /// Lower bound of the key tuple.
    pub lower: Bound<Vec<Value>>,
    /// Upper bound of the key tuple.
    pub upper: Bound<Vec<Value>>,
}

impl KeyRange {
    /// Every row of the table.
    pub fn all() -> KeyRange {
        KeyRange {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
        }
    }

    /// Whether the range is unbounded on both sides.
    pub fn is_all(&self) -> bool {
        matches!(
            (&self.lower, &self.upper),
            (Bound::Unbounded, Bound::Unbounded)
        )
    }
}
