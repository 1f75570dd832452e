//! Rows to digest where they already are: a [`Batch`]'s columns, or a database's own columnar
//! buffers (the DuckDB connector hands Arrow arrays to the digest without copying them into a
//! batch).
//!
//! A connector implements [`DigestRows`] for its buffers and gives them to
//! [`crate::Digester::push_rows`]. The digest checks every column before reading it (storage
//! against the schema's logical type, lengths, offsets), so a wrong buffer is an error, never
//! a panic or a wrong digest.

use crate::batch::{Batch, ColumnData, Interval, OffsetTimestamp};
use crate::error::{Error, Result};
use crate::types::{Schema, Storage};

/// The values of one column, borrowed, one variant per [`Storage`]. The value under a NULL
/// cell is never read. Variable-length values are laid out as in Arrow: value `i` is
/// `data[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    Bool(&'a [bool]),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    I128(&'a [i128]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    F32(&'a [f32]),
    F64(&'a [f64]),
    /// UTF-8 text (not checked again: hashed as bytes).
    Utf8 {
        offsets: &'a [i32],
        data: &'a [u8],
    },
    Binary {
        offsets: &'a [i32],
        data: &'a [u8],
    },
    Uuid(&'a [[u8; 16]]),
    OffsetTimestamp(&'a [OffsetTimestamp]),
    Interval(&'a [Interval]),
}

impl Values<'_> {
    /// The storage these values are.
    pub fn storage(&self) -> Storage {
        match self {
            Values::Bool(_) => Storage::Bool,
            Values::I8(_) => Storage::I8,
            Values::I16(_) => Storage::I16,
            Values::I32(_) => Storage::I32,
            Values::I64(_) => Storage::I64,
            Values::I128(_) => Storage::I128,
            Values::U8(_) => Storage::U8,
            Values::U16(_) => Storage::U16,
            Values::U32(_) => Storage::U32,
            Values::U64(_) => Storage::U64,
            Values::F32(_) => Storage::F32,
            Values::F64(_) => Storage::F64,
            Values::Utf8 { .. } => Storage::Utf8,
            Values::Binary { .. } => Storage::Binary,
            Values::Uuid(_) => Storage::Uuid,
            Values::OffsetTimestamp(_) => Storage::OffsetTimestamp,
            Values::Interval(_) => Storage::Interval,
        }
    }

    /// Number of values (of offsets minus one for variable-length values).
    fn len(&self) -> usize {
        match self {
            Values::Bool(v) => v.len(),
            Values::I8(v) => v.len(),
            Values::I16(v) => v.len(),
            Values::I32(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::I128(v) => v.len(),
            Values::U8(v) => v.len(),
            Values::U16(v) => v.len(),
            Values::U32(v) => v.len(),
            Values::U64(v) => v.len(),
            Values::F32(v) => v.len(),
            Values::F64(v) => v.len(),
            Values::Utf8 { offsets, .. } | Values::Binary { offsets, .. } => {
                offsets.len().saturating_sub(1)
            }
            Values::Uuid(v) => v.len(),
            Values::OffsetTimestamp(v) => v.len(),
            Values::Interval(v) => v.len(),
        }
    }
}

/// One column of [`DigestRows`]: its values and which cells are non-NULL.
#[derive(Debug, Clone, Copy)]
pub struct ColumnRef<'a> {
    pub values: Values<'a>,
    /// Cell `i` is non-NULL when bit `offset + i` of the bytes is set (least significant bit
    /// first: Arrow's layout and [`crate::Bitmap`]'s); `None` when no cell is NULL.
    pub validity: Option<(&'a [u8], usize)>,
}

/// Rows of one table, held in columns, that the digest reads in place.
pub trait DigestRows: Send {
    /// The columns' names and logical types, and the primary key.
    fn schema(&self) -> &Schema;
    /// Number of rows.
    fn num_rows(&self) -> usize;
    /// Column `i`, in schema order (`i < schema().len()`), with at least `num_rows()` cells.
    fn column(&self, i: usize) -> ColumnRef<'_>;
}

impl ColumnData {
    /// The values, borrowed.
    pub fn values(&self) -> Values<'_> {
        match self {
            ColumnData::Bool(v) => Values::Bool(v),
            ColumnData::I8(v) => Values::I8(v),
            ColumnData::I16(v) => Values::I16(v),
            ColumnData::I32(v) => Values::I32(v),
            ColumnData::I64(v) => Values::I64(v),
            ColumnData::I128(v) => Values::I128(v),
            ColumnData::U8(v) => Values::U8(v),
            ColumnData::U16(v) => Values::U16(v),
            ColumnData::U32(v) => Values::U32(v),
            ColumnData::U64(v) => Values::U64(v),
            ColumnData::F32(v) => Values::F32(v),
            ColumnData::F64(v) => Values::F64(v),
            ColumnData::Utf8(v) => Values::Utf8 {
                offsets: v.raw().offsets(),
                data: v.raw().data(),
            },
            ColumnData::Binary(v) => Values::Binary {
                offsets: v.offsets(),
                data: v.data(),
            },
            ColumnData::Uuid(v) => Values::Uuid(v),
            ColumnData::OffsetTimestamp(v) => Values::OffsetTimestamp(v),
            ColumnData::Interval(v) => Values::Interval(v),
        }
    }
}

impl DigestRows for Batch {
    fn schema(&self) -> &Schema {
        Batch::schema(self)
    }

    fn num_rows(&self) -> usize {
        Batch::num_rows(self)
    }

    fn column(&self, i: usize) -> ColumnRef<'_> {
        let c = &self.columns()[i];
        ColumnRef {
            values: c.data().values(),
            validity: Some((c.validity().as_bytes(), 0)),
        }
    }
}

/// Checks that column `col` (named `name`, of storage `storage`) holds `rows` readable cells:
/// enough values, offsets that stay inside their data and do not decrease, enough validity
/// bits.
pub(crate) fn check_column(
    name: &str,
    storage: Storage,
    column: &ColumnRef<'_>,
    rows: usize,
) -> Result<()> {
    let bad = |what: String| Err(Error::Schema(format!("digest of column `{name}`: {what}")));
    if column.values.storage() != storage {
        return bad(format!(
            "the values are {:?}, the column's type is stored as {storage:?}",
            column.values.storage()
        ));
    }
    if column.values.len() < rows {
        return bad(format!("{} values for {rows} rows", column.values.len()));
    }
    if let Values::Utf8 { offsets, data } | Values::Binary { offsets, data } = column.values {
        // `rows + 1` offsets: with none at all, `len` above says 0 values, enough for 0 rows.
        let Some(used) = offsets.get(..=rows) else {
            return bad(format!("{} offsets for {rows} rows", offsets.len()));
        };
        if used.windows(2).any(|w| w[1] < w[0])
            || used.first().is_some_and(|&o| o < 0)
            || used.last().is_some_and(|&o| o as usize > data.len())
        {
            return bad("offsets decrease or leave their data".into());
        }
    }
    if let Some((bits, offset)) = column.validity
        && bits.len().saturating_mul(8) < offset.saturating_add(rows)
    {
        return bad(format!(
            "{} validity bits from bit {offset} for {rows} rows",
            bits.len() * 8
        ));
    }
    Ok(())
}
