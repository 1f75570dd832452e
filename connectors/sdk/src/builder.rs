//! Building batches in a source: row by row or column by column, without per-value allocation.
//!
//! ```
//! use std::sync::Arc;
//! use caudal_connector::{BatchBuilder, ChunkLimits, Field, LogicalType, Schema};
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("id", LogicalType::Int64, false),
//!     Field::new("name", LogicalType::Varchar { max_length: Some(40) }, true),
//! ], &["id"])?);
//! let mut b = BatchBuilder::with_capacity(schema, 2);
//! b.push(0, 1i64)?;
//! b.push(1, "uno")?;
//! b.push(0, 2i64)?;
//! b.push_null(1)?;
//! assert!(!b.is_full(&ChunkLimits::default()));
//! let batch = b.finish()?;
//! assert_eq!(batch.num_rows(), 2);
//! # Ok::<(), caudal_connector::Error>(())
//! ```
//!
//! Each `push` is one match on the column's storage and one vector push. The value type must be
//! the column's [`Storage`] exactly (`i32` for `Date`, `i64` microseconds for `DateTime`,
//! `i128` unscaled for `Decimal`, `&str` for every text type); a mismatch is an
//! [`Error::Schema`] naming the column. [`BatchBuilder::push_value`] converts a [`Value`] with
//! range and scale checks, for the rare generic path.

use std::sync::Arc;

use crate::batch::{Batch, Column, ColumnData, Interval, OffsetTimestamp};
use crate::error::{Error, Result};
use crate::types::{Schema, SchemaId, Storage};
use crate::value::Value;

/// Where a source should end a chunk: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkLimits {
    /// Rows per chunk (default 20 000).
    pub max_rows: usize,
    /// Approximate bytes of values per chunk, see [`Batch::byte_size`] (default 8 MiB).
    pub max_bytes: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_rows: 20_000,
            max_bytes: 8 << 20,
        }
    }
}

/// Why a native value could not be pushed (internal to [`NativeValue`] implementations).
#[doc(hidden)]
#[derive(Debug)]
pub enum PushFailure {
    /// The column's storage is a different type.
    Mismatch,
    /// The column's variable-length data would exceed 2 GiB.
    TooLarge,
}

/// A Rust value that a column storage holds natively. Implemented for `bool`, every integer
/// width, `f32`, `f64`, `&str`, `&[u8]`, `[u8; 16]` (UUID), [`OffsetTimestamp`] and [`Interval`].
pub trait NativeValue: Copy {
    /// Name of the Rust type, for mismatch errors.
    const RUST_TYPE: &'static str;
    /// Appends `self` to `data` if its storage is this type.
    #[doc(hidden)]
    fn push_to(self, data: &mut ColumnData) -> std::result::Result<(), PushFailure>;
}

macro_rules! native {
    ($t:ty, $variant:ident) => {
        impl NativeValue for $t {
            const RUST_TYPE: &'static str = stringify!($t);
            #[inline]
            fn push_to(self, data: &mut ColumnData) -> std::result::Result<(), PushFailure> {
                match data {
                    ColumnData::$variant(v) => {
                        v.push(self);
                        Ok(())
                    }
                    _ => Err(PushFailure::Mismatch),
                }
            }
        }
    };
}
native!(bool, Bool);
native!(i8, I8);
native!(i16, I16);
native!(i32, I32);
native!(i64, I64);
native!(i128, I128);
native!(u8, U8);
native!(u16, U16);
native!(u32, U32);
native!(u64, U64);
native!(f32, F32);
native!(f64, F64);
native!([u8; 16], Uuid);
native!(OffsetTimestamp, OffsetTimestamp);
native!(Interval, Interval);

impl NativeValue for &str {
    const RUST_TYPE: &'static str = "&str";
    #[inline]
    fn push_to(self, data: &mut ColumnData) -> std::result::Result<(), PushFailure> {
        match data {
            ColumnData::Utf8(v) => v.push(self).map_err(|_| PushFailure::TooLarge),
            _ => Err(PushFailure::Mismatch),
        }
    }
}

impl NativeValue for &[u8] {
    const RUST_TYPE: &'static str = "&[u8]";
    #[inline]
    fn push_to(self, data: &mut ColumnData) -> std::result::Result<(), PushFailure> {
        match data {
            ColumnData::Binary(v) => v.push_bytes(self).map_err(|_| PushFailure::TooLarge),
            _ => Err(PushFailure::Mismatch),
        }
    }
}

/// Builds one [`Batch`] for a schema. See the module documentation.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    schema: Arc<Schema>,
    schema_id: SchemaId,
    columns: Vec<Column>,
    capacity: usize,
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new(schema: Arc<Schema>) -> BatchBuilder {
        BatchBuilder::with_capacity(schema, 0)
    }

    /// An empty builder with room for `rows` rows in every column.
    pub fn with_capacity(schema: Arc<Schema>, rows: usize) -> BatchBuilder {
        let schema_id = schema.id();
        let columns = new_columns(&schema, rows);
        BatchBuilder {
            schema,
            schema_id,
            columns,
            capacity: rows,
        }
    }

    /// The schema of the batch being built.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    fn column_mut(&mut self, col: usize) -> Result<&mut Column> {
        let n = self.columns.len();
        self.columns.get_mut(col).ok_or_else(|| {
            Error::Schema(format!(
                "column index {col} is out of range for {n} columns"
            ))
        })
    }

    /// Appends a value to column `col`.
    #[inline]
    pub fn push<T: NativeValue>(&mut self, col: usize, value: T) -> Result<()> {
        let column = self.column_mut(col)?;
        let (data, validity) = column.parts_mut();
        match value.push_to(data) {
            Ok(()) => {
                validity.push(true);
                Ok(())
            }
            Err(failure) => Err(self.push_error(col, T::RUST_TYPE, failure)),
        }
    }

    /// Appends a value, or NULL for `None`.
    #[inline]
    pub fn push_opt<T: NativeValue>(&mut self, col: usize, value: Option<T>) -> Result<()> {
        match value {
            Some(v) => self.push(col, v),
            None => self.push_null(col),
        }
    }

    /// Appends NULL to column `col`.
    #[inline]
    pub fn push_null(&mut self, col: usize) -> Result<()> {
        let (data, validity) = self.column_mut(col)?.parts_mut();
        data.push_default();
        validity.push(false);
        Ok(())
    }

    /// Appends many non-NULL values to one column (the column-by-column path).
    pub fn extend<T: NativeValue>(
        &mut self,
        col: usize,
        values: impl IntoIterator<Item = T>,
    ) -> Result<()> {
        for v in values {
            self.push(col, v)?;
        }
        Ok(())
    }

    /// Appends a [`Value`], converting it to the column's storage with range and scale checks
    /// (an `Int` into an `Int16` column, a `Decimal` of scale 1 into a `decimal(12,2)`).
    pub fn push_value(&mut self, col: usize, value: &Value) -> Result<()> {
        let schema = Arc::clone(&self.schema);
        let field = schema
            .fields()
            .get(col)
            .ok_or_else(|| Error::Schema(format!("column index {col} is out of range")))?;
        let storage = field.logical_type.storage();
        let target_scale = field.logical_type.decimal_scale();
        let fail = |why: &str| {
            Error::Schema(format!(
                "column `{}` ({:?}): cannot store {value:?}: {why}",
                field.name, field.logical_type
            ))
        };
        macro_rules! int {
            ($v:expr) => {{
                let v: i128 = $v;
                match (storage, target_scale) {
                    (Storage::I128, Some(scale)) => rescale(v, 0, scale).map(|u| self.push(col, u)),
                    (Storage::I8, _) => i8::try_from(v).ok().map(|x| self.push(col, x)),
                    (Storage::I16, _) => i16::try_from(v).ok().map(|x| self.push(col, x)),
                    (Storage::I32, _) => i32::try_from(v).ok().map(|x| self.push(col, x)),
                    (Storage::I64, _) => i64::try_from(v).ok().map(|x| self.push(col, x)),
                    (Storage::I128, None) => Some(self.push(col, v)),
                    (Storage::U8, _) => u8::try_from(v).ok().map(|x| self.push(col, x)),
                    (Storage::U16, _) => u16::try_from(v).ok().map(|x| self.push(col, x)),
                    (Storage::U32, _) => u32::try_from(v).ok().map(|x| self.push(col, x)),
                    (Storage::U64, _) => u64::try_from(v).ok().map(|x| self.push(col, x)),
                    _ => return Err(fail("not an integer column")),
                }
                .ok_or_else(|| fail("out of range"))?
            }};
        }
        match value {
            Value::Null => self.push_null(col),
            Value::Bool(b) => self.push(col, *b),
            Value::Int(i) => int!(i128::from(*i)),
            Value::UInt(u) => int!(i128::from(*u)),
            Value::Int128(i) => int!(*i),
            Value::Float(f) => match storage {
                Storage::F64 => self.push(col, *f),
                Storage::F32 => {
                    let narrow = *f as f32;
                    if f64::from(narrow) == *f || f.is_nan() {
                        self.push(col, narrow)
                    } else {
                        Err(fail("not exactly representable as f32"))
                    }
                }
                _ => Err(fail("not a float column")),
            },
            Value::Decimal { unscaled, scale } => match target_scale {
                Some(target) => {
                    let v = rescale(*unscaled, *scale, target)
                        .ok_or_else(|| fail("loses digits or overflows"))?;
                    self.push(col, v)
                }
                None => Err(fail("not a decimal column")),
            },
            Value::Date(d) => self.push(col, *d),
            Value::Time(m) | Value::DateTime(m) | Value::Timestamp(m) => self.push(col, *m),
            Value::DateTimeOffset(t) => self.push(col, *t),
            Value::Text(s) => self.push(col, s.as_str()),
            Value::Bytes(b) => self.push(col, b.as_slice()),
            Value::Uuid(u) => self.push(col, *u),
            Value::Interval(i) => self.push(col, *i),
        }
    }

    /// Appends one row of [`Value`]s (one per column), see [`BatchBuilder::push_value`].
    pub fn push_row(&mut self, row: &[Value]) -> Result<()> {
        if row.len() != self.columns.len() {
            return Err(Error::Schema(format!(
                "row has {} values but the schema has {} columns",
                row.len(),
                self.columns.len()
            )));
        }
        for (i, v) in row.iter().enumerate() {
            self.push_value(i, v)?;
        }
        Ok(())
    }

    /// Number of complete rows (the shortest column).
    pub fn num_rows(&self) -> usize {
        self.columns.iter().map(Column::len).min().unwrap_or(0)
    }

    /// Approximate bytes of the values pushed so far.
    pub fn byte_size(&self) -> usize {
        self.columns.iter().map(Column::byte_size).sum()
    }

    /// Whether the batch has reached either limit and should be finished.
    pub fn is_full(&self, limits: &ChunkLimits) -> bool {
        let rows = self.columns.first().map_or(0, Column::len);
        rows >= limits.max_rows || self.byte_size() >= limits.max_bytes
    }

    /// The batch; fails if the columns do not all have the same number of rows.
    pub fn finish(self) -> Result<Batch> {
        Batch::from_parts(self.schema, self.columns, Some(self.schema_id))
    }

    /// Finishes the batch built so far and leaves the builder empty, ready for the next chunk.
    pub fn take(&mut self) -> Result<Batch> {
        let columns =
            std::mem::replace(&mut self.columns, new_columns(&self.schema, self.capacity));
        Batch::from_parts(Arc::clone(&self.schema), columns, Some(self.schema_id))
    }

    #[cold]
    fn push_error(&self, col: usize, rust_type: &str, failure: PushFailure) -> Error {
        let field = &self.schema.fields()[col];
        match failure {
            PushFailure::Mismatch => Error::Schema(format!(
                "column `{}` of type {:?} is stored as {:?}; cannot push a {rust_type}",
                field.name,
                field.logical_type,
                field.logical_type.storage()
            )),
            PushFailure::TooLarge => Error::Schema(format!(
                "column `{}` exceeds 2 GiB of data in one batch; lower the chunk size",
                field.name
            )),
        }
    }
}

fn new_columns(schema: &Schema, rows: usize) -> Vec<Column> {
    schema
        .fields()
        .iter()
        .map(|f| Column::with_capacity(f.logical_type.storage(), rows))
        .collect()
}

/// `unscaled * 10^-from` expressed at scale `to`, if exact and in range.
pub(crate) fn rescale(unscaled: i128, from: u8, to: u8) -> Option<i128> {
    if to >= from {
        10i128
            .checked_pow(u32::from(to - from))
            .and_then(|m| unscaled.checked_mul(m))
    } else {
        let d = 10i128.checked_pow(u32::from(from - to))?;
        (unscaled % d == 0).then_some(unscaled / d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Field, LogicalType};

    fn schema() -> Arc<Schema> {
        Arc::new(
            Schema::new(
                vec![
                    Field::new("id", LogicalType::Int32, false),
                    Field::new(
                        "price",
                        LogicalType::Decimal {
                            precision: 12,
                            scale: 2,
                        },
                        true,
                    ),
                    Field::new("name", LogicalType::Text { max_bytes: None }, true),
                ],
                &["id"],
            )
            .unwrap(),
        )
    }

    #[test]
    fn wrong_native_type_names_the_column() {
        let mut b = BatchBuilder::new(schema());
        let err = b.push(0, 5i64).unwrap_err();
        assert!(
            err.to_string().contains("`id`") && err.to_string().contains("i64"),
            "{err}"
        );
        let err = b.push(7, 5i32).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn push_value_checks_range_and_scale() {
        let mut b = BatchBuilder::new(schema());
        b.push_value(0, &Value::Int(7)).unwrap();
        assert!(b.push_value(0, &Value::Int(i64::MAX)).is_err());
        b.push_value(
            1,
            &Value::Decimal {
                unscaled: 15,
                scale: 1,
            },
        )
        .unwrap();
        assert!(
            b.push_value(
                1,
                &Value::Decimal {
                    unscaled: 1234,
                    scale: 3
                }
            )
            .is_err()
        );
        b.push_value(2, &Value::Null).unwrap();
        let batch = b.finish().unwrap();
        assert_eq!(
            batch.value(0, 1),
            Some(Value::Decimal {
                unscaled: 150,
                scale: 2
            })
        );
        assert_eq!(batch.value(0, 2), Some(Value::Null));
    }

    #[test]
    fn ragged_columns_are_refused() {
        let mut b = BatchBuilder::new(schema());
        b.push(0, 1i32).unwrap();
        let err = b.finish().unwrap_err();
        assert!(err.to_string().contains("`price`"), "{err}");
    }

    #[test]
    fn limits_cut_by_rows_and_bytes() {
        let mut b = BatchBuilder::new(schema());
        let limits = ChunkLimits {
            max_rows: 3,
            max_bytes: 1 << 20,
        };
        for i in 0..3 {
            assert!(!b.is_full(&limits));
            b.push(0, i).unwrap();
            b.push(1, 100i128).unwrap();
            b.push(2, "x").unwrap();
        }
        assert!(b.is_full(&limits));
        let first = b.take().unwrap();
        assert_eq!(first.num_rows(), 3);
        assert_eq!(b.num_rows(), 0);
        let big = "y".repeat(600);
        let limits = ChunkLimits {
            max_rows: 1000,
            max_bytes: 1000,
        };
        b.push(0, 1).unwrap();
        b.push(1, 1i128).unwrap();
        b.push(2, big.as_str()).unwrap();
        assert!(!b.is_full(&limits));
        b.push(0, 2).unwrap();
        b.push(1, 1i128).unwrap();
        b.push(2, big.as_str()).unwrap();
        assert!(b.is_full(&limits));
    }

    #[test]
    fn rescale_is_exact() {
        assert_eq!(rescale(15, 1, 3), Some(1500));
        assert_eq!(rescale(1500, 3, 1), Some(15));
        assert_eq!(rescale(1501, 3, 1), None);
        assert_eq!(rescale(i128::MAX, 0, 1), None);
    }
}
