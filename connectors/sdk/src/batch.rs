//! The columnar batch: what sources produce, the journal stores and sinks consume.
//!
//! A [`Batch`] holds its [`Schema`] and one [`Column`] per field. A column is a typed vector
//! ([`ColumnData`], one variant per [`Storage`]) plus a validity [`Bitmap`] (bit set = value
//! present, the Arrow convention). A NULL slot holds the storage's default value (0, empty
//! string), which nothing may interpret. There is no per-value enum: sinks match once per
//! column and then walk a plain slice (`as_i64`, `as_utf8`, ...).
//!
//! Invariants, established by [`crate::BatchBuilder::finish`] and re-checked by
//! [`Batch::decode`] on every byte string (journal files are input, not trusted):
//! - one column per schema field, of the field type's storage;
//! - every column and bitmap has exactly `num_rows` entries;
//! - variable-length offsets start at 0, never decrease and end at the data length; text data
//!   is UTF-8 and every offset falls on a character boundary.
//!
//! Encoding: one format-version byte, then bincode 2 (serde, standard config) of the schema,
//! the row count and the columns; fixed-width vectors are written as one little-endian byte
//! string each, so encoding and decoding run at memory speed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::{LogicalType, Schema, SchemaId, Storage};
use crate::value::Value;

/// Version byte written in front of every encoded batch.
pub const BATCH_FORMAT_VERSION: u8 = 1;

/// A date and time with its UTC offset (SQL Server `datetimeoffset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct OffsetTimestamp {
    /// The instant, in microseconds since 1970-01-01T00:00:00Z.
    pub utc_micros: i64,
    /// The offset from UTC the value was written with, in minutes (-840..=840).
    pub offset_minutes: i16,
}

/// A calendar interval: the three parts are independent (a month is not a fixed number of days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Interval {
    /// Whole months.
    pub months: i32,
    /// Whole days.
    pub days: i32,
    /// Microseconds.
    pub micros: i64,
}

/// A validity bitmap: bit `i` (LSB first within each byte) is set when row `i` holds a value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Bitmap {
    #[serde(with = "raw")]
    bytes: Vec<u8>,
    len: usize,
}

impl Bitmap {
    /// An empty bitmap with room for `capacity` bits.
    pub fn with_capacity(capacity: usize) -> Bitmap {
        Bitmap {
            bytes: Vec::with_capacity(capacity.div_ceil(8)),
            len: 0,
        }
    }

    /// Appends one bit.
    #[inline]
    pub fn push(&mut self, set: bool) {
        if self.len.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if set && let Some(last) = self.bytes.last_mut() {
            *last |= 1 << (self.len % 8);
        }
        self.len += 1;
    }

    /// The bit at `i`; `false` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.bytes[i / 8] & (1 << (i % 8)) != 0
    }

    /// Number of bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the bitmap has no bits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packed bytes, LSB first (Arrow's validity layout).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of bits not set.
    pub fn count_unset(&self) -> usize {
        let set: usize = self.bytes.iter().map(|b| b.count_ones() as usize).sum();
        self.len - set
    }

    fn check(&self) -> Result<()> {
        if self.bytes.len() != self.len.div_ceil(8) {
            return Err(Error::Decode(format!(
                "batch: validity bitmap of {} bits has {} bytes",
                self.len,
                self.bytes.len()
            )));
        }
        // Bits past `len` must be clear so that counting and equality are exact.
        if !self.len.is_multiple_of(8)
            && let Some(last) = self.bytes.last()
            && last >> (self.len % 8) != 0
        {
            return Err(Error::Decode(
                "batch: validity bitmap has bits set past its end".into(),
            ));
        }
        Ok(())
    }
}

/// Variable-length values: value `i` is `data[offsets[i]..offsets[i + 1]]` (Arrow's layout
/// with 32-bit offsets, so a column holds at most 2 GiB per batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VarData {
    #[serde(with = "raw")]
    offsets: Vec<i32>,
    #[serde(with = "raw")]
    data: Vec<u8>,
}

impl Default for VarData {
    fn default() -> Self {
        VarData {
            offsets: vec![0],
            data: Vec::new(),
        }
    }
}

impl VarData {
    fn with_capacity(rows: usize, bytes: usize) -> VarData {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        VarData {
            offsets,
            data: Vec::with_capacity(bytes),
        }
    }

    #[inline]
    pub(crate) fn push_bytes(&mut self, value: &[u8]) -> Result<()> {
        self.data.extend_from_slice(value);
        match i32::try_from(self.data.len()) {
            Ok(end) => {
                self.offsets.push(end);
                Ok(())
            }
            Err(_) => {
                self.data.truncate(self.data.len() - value.len());
                Err(Error::Schema(
                    "a text or binary column exceeds 2 GiB in one batch; lower the chunk size"
                        .into(),
                ))
            }
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` as bytes; empty past the end.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.data[a as usize..b as usize],
            _ => &[],
        }
    }

    /// The offsets (`len() + 1` entries, starting at 0).
    pub fn offsets(&self) -> &[i32] {
        &self.offsets
    }

    /// All values' bytes, back to back.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The values in order, as bytes.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.offsets
            .windows(2)
            .map(|w| &self.data[w[0] as usize..w[1] as usize])
    }

    fn check(&self, utf8: bool) -> Result<()> {
        if self.offsets.first() != Some(&0) {
            return Err(Error::Decode(
                "batch: variable-length offsets do not start at 0".into(),
            ));
        }
        if self.offsets.windows(2).any(|w| w[1] < w[0]) {
            return Err(Error::Decode(
                "batch: variable-length offsets decrease".into(),
            ));
        }
        if self.offsets.last().map(|&e| e as usize) != Some(self.data.len()) {
            return Err(Error::Decode(
                "batch: variable-length offsets do not end at the data length".into(),
            ));
        }
        if utf8 {
            let text = std::str::from_utf8(&self.data)
                .map_err(|e| Error::Decode(format!("batch: text column is not UTF-8: {e}")))?;
            if self
                .offsets
                .iter()
                .any(|&o| !text.is_char_boundary(o as usize))
            {
                return Err(Error::Decode(
                    "batch: a text offset splits a UTF-8 character".into(),
                ));
            }
        }
        Ok(())
    }
}

/// UTF-8 strings: [`VarData`] whose every value is valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Utf8Data(VarData);

impl Utf8Data {
    #[inline]
    pub(crate) fn push(&mut self, value: &str) -> Result<()> {
        self.0.push_bytes(value.as_bytes())
    }

    /// Value `i`; empty past the end.
    #[inline]
    pub fn get(&self, i: usize) -> &str {
        // Only valid UTF-8 is ever pushed (`&str`), and decode checks every offset is a char
        // boundary of valid UTF-8, so this cannot fail; the fallback keeps it panic-free.
        std::str::from_utf8(self.0.get(i)).unwrap_or_default()
    }

    /// The values in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0
            .iter()
            .map(|b| std::str::from_utf8(b).unwrap_or_default())
    }

    /// The underlying offsets and bytes (Arrow `Utf8` layout).
    pub fn raw(&self) -> &VarData {
        &self.0
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The typed vector of one column; one variant per [`Storage`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum ColumnData {
    Bool(#[serde(with = "raw")] Vec<bool>),
    I8(#[serde(with = "raw")] Vec<i8>),
    I16(#[serde(with = "raw")] Vec<i16>),
    I32(#[serde(with = "raw")] Vec<i32>),
    I64(#[serde(with = "raw")] Vec<i64>),
    I128(#[serde(with = "raw")] Vec<i128>),
    U8(#[serde(with = "raw")] Vec<u8>),
    U16(#[serde(with = "raw")] Vec<u16>),
    U32(#[serde(with = "raw")] Vec<u32>),
    U64(#[serde(with = "raw")] Vec<u64>),
    F32(#[serde(with = "raw")] Vec<f32>),
    F64(#[serde(with = "raw")] Vec<f64>),
    Utf8(Utf8Data),
    Binary(VarData),
    Uuid(#[serde(with = "raw")] Vec<[u8; 16]>),
    OffsetTimestamp(#[serde(with = "raw")] Vec<OffsetTimestamp>),
    Interval(#[serde(with = "raw")] Vec<Interval>),
}

/// Expands `$body` once per fixed-width variant with `$v` bound to the vector.
macro_rules! each_fixed {
    ($data:expr, $v:ident => $body:expr, var $w:ident => $var:expr) => {
        match $data {
            ColumnData::Bool($v) => $body,
            ColumnData::I8($v) => $body,
            ColumnData::I16($v) => $body,
            ColumnData::I32($v) => $body,
            ColumnData::I64($v) => $body,
            ColumnData::I128($v) => $body,
            ColumnData::U8($v) => $body,
            ColumnData::U16($v) => $body,
            ColumnData::U32($v) => $body,
            ColumnData::U64($v) => $body,
            ColumnData::F32($v) => $body,
            ColumnData::F64($v) => $body,
            ColumnData::Uuid($v) => $body,
            ColumnData::OffsetTimestamp($v) => $body,
            ColumnData::Interval($v) => $body,
            ColumnData::Utf8(Utf8Data($w)) | ColumnData::Binary($w) => $var,
        }
    };
}

macro_rules! accessor {
    ($name:ident, $variant:ident, $t:ty) => {
        #[doc = concat!("The values as `&[", stringify!($t), "]` when the storage is `", stringify!($variant), "`.")]
        #[inline]
        pub fn $name(&self) -> Option<&[$t]> {
            match self {
                ColumnData::$variant(v) => Some(v),
                _ => None,
            }
        }
    };
}

impl ColumnData {
    /// An empty vector of the given storage with room for `rows` values.
    pub fn with_capacity(storage: Storage, rows: usize) -> ColumnData {
        match storage {
            Storage::Bool => ColumnData::Bool(Vec::with_capacity(rows)),
            Storage::I8 => ColumnData::I8(Vec::with_capacity(rows)),
            Storage::I16 => ColumnData::I16(Vec::with_capacity(rows)),
            Storage::I32 => ColumnData::I32(Vec::with_capacity(rows)),
            Storage::I64 => ColumnData::I64(Vec::with_capacity(rows)),
            Storage::I128 => ColumnData::I128(Vec::with_capacity(rows)),
            Storage::U8 => ColumnData::U8(Vec::with_capacity(rows)),
            Storage::U16 => ColumnData::U16(Vec::with_capacity(rows)),
            Storage::U32 => ColumnData::U32(Vec::with_capacity(rows)),
            Storage::U64 => ColumnData::U64(Vec::with_capacity(rows)),
            Storage::F32 => ColumnData::F32(Vec::with_capacity(rows)),
            Storage::F64 => ColumnData::F64(Vec::with_capacity(rows)),
            Storage::Utf8 => ColumnData::Utf8(Utf8Data(VarData::with_capacity(rows, rows * 16))),
            Storage::Binary => ColumnData::Binary(VarData::with_capacity(rows, rows * 16)),
            Storage::Uuid => ColumnData::Uuid(Vec::with_capacity(rows)),
            Storage::OffsetTimestamp => ColumnData::OffsetTimestamp(Vec::with_capacity(rows)),
            Storage::Interval => ColumnData::Interval(Vec::with_capacity(rows)),
        }
    }

    /// The storage this vector is.
    pub fn storage(&self) -> Storage {
        match self {
            ColumnData::Bool(_) => Storage::Bool,
            ColumnData::I8(_) => Storage::I8,
            ColumnData::I16(_) => Storage::I16,
            ColumnData::I32(_) => Storage::I32,
            ColumnData::I64(_) => Storage::I64,
            ColumnData::I128(_) => Storage::I128,
            ColumnData::U8(_) => Storage::U8,
            ColumnData::U16(_) => Storage::U16,
            ColumnData::U32(_) => Storage::U32,
            ColumnData::U64(_) => Storage::U64,
            ColumnData::F32(_) => Storage::F32,
            ColumnData::F64(_) => Storage::F64,
            ColumnData::Utf8(_) => Storage::Utf8,
            ColumnData::Binary(_) => Storage::Binary,
            ColumnData::Uuid(_) => Storage::Uuid,
            ColumnData::OffsetTimestamp(_) => Storage::OffsetTimestamp,
            ColumnData::Interval(_) => Storage::Interval,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        each_fixed!(self, v => v.len(), var w => w.len())
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes of the values (what the chunk-size limit counts).
    pub fn byte_size(&self) -> usize {
        each_fixed!(self, v => std::mem::size_of_val(v.as_slice()),
            var w => w.data.len() + w.offsets.len() * 4)
    }

    /// Appends the storage's default value (the placeholder under a NULL).
    #[inline]
    pub(crate) fn push_default(&mut self) {
        each_fixed!(self, v => v.push(Default::default()), var w => w.offsets.push(w.data.len() as i32))
    }

    accessor!(as_bool, Bool, bool);
    accessor!(as_i8, I8, i8);
    accessor!(as_i16, I16, i16);
    accessor!(as_i32, I32, i32);
    accessor!(as_i64, I64, i64);
    accessor!(as_i128, I128, i128);
    accessor!(as_u8, U8, u8);
    accessor!(as_u16, U16, u16);
    accessor!(as_u32, U32, u32);
    accessor!(as_u64, U64, u64);
    accessor!(as_f32, F32, f32);
    accessor!(as_f64, F64, f64);
    accessor!(as_uuid, Uuid, [u8; 16]);
    accessor!(as_offset_timestamp, OffsetTimestamp, OffsetTimestamp);
    accessor!(as_interval, Interval, Interval);

    /// The strings when the storage is `Utf8`.
    pub fn as_utf8(&self) -> Option<&Utf8Data> {
        match self {
            ColumnData::Utf8(v) => Some(v),
            _ => None,
        }
    }

    /// The byte strings when the storage is `Binary`.
    pub fn as_binary(&self) -> Option<&VarData> {
        match self {
            ColumnData::Binary(v) => Some(v),
            _ => None,
        }
    }

    fn check(&self) -> Result<()> {
        match self {
            ColumnData::Utf8(Utf8Data(w)) => w.check(true),
            ColumnData::Binary(w) => w.check(false),
            _ => Ok(()),
        }
    }
}

/// One column of a batch: typed values plus validity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    data: ColumnData,
    validity: Bitmap,
}

impl Column {
    pub(crate) fn with_capacity(storage: Storage, rows: usize) -> Column {
        Column {
            data: ColumnData::with_capacity(storage, rows),
            validity: Bitmap::with_capacity(rows),
        }
    }

    pub(crate) fn parts_mut(&mut self) -> (&mut ColumnData, &mut Bitmap) {
        (&mut self.data, &mut self.validity)
    }

    /// The typed values (a default value under each NULL).
    pub fn data(&self) -> &ColumnData {
        &self.data
    }

    /// The validity bitmap (bit set = value present).
    pub fn validity(&self) -> &Bitmap {
        &self.validity
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.validity.len()
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether row `i` is NULL (also `true` past the end).
    #[inline]
    pub fn is_null(&self, i: usize) -> bool {
        !self.validity.get(i)
    }

    /// Number of NULLs.
    pub fn null_count(&self) -> usize {
        self.validity.count_unset()
    }

    /// Approximate heap bytes of this column.
    pub fn byte_size(&self) -> usize {
        self.data.byte_size() + self.validity.bytes.len()
    }
}

/// A columnar batch of rows with its schema. See the module documentation for invariants.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    schema: Arc<Schema>,
    schema_id: SchemaId,
    columns: Vec<Column>,
    rows: usize,
}

#[derive(Serialize)]
struct BatchWireRef<'a> {
    schema: &'a Schema,
    rows: u64,
    columns: &'a [Column],
}

#[derive(Deserialize)]
struct BatchWire {
    schema: Schema,
    rows: u64,
    columns: Vec<Column>,
}

impl Batch {
    /// Assembles a batch from parts, checking every invariant of the module documentation.
    pub(crate) fn from_parts(
        schema: Arc<Schema>,
        columns: Vec<Column>,
        schema_id: Option<SchemaId>,
    ) -> Result<Batch> {
        if columns.len() != schema.len() {
            return Err(Error::Schema(format!(
                "batch has {} columns but its schema has {}",
                columns.len(),
                schema.len()
            )));
        }
        let rows = columns.first().map_or(0, Column::len);
        for (col, field) in columns.iter().zip(schema.fields()) {
            let expected = field.logical_type.storage();
            if col.data.storage() != expected {
                return Err(Error::Schema(format!(
                    "column `{}` of type {:?} must be stored as {expected:?}, found {:?}",
                    field.name,
                    field.logical_type,
                    col.data.storage()
                )));
            }
            if col.data.len() != rows || col.validity.len() != rows {
                return Err(Error::Schema(format!(
                    "column `{}` has {} values and {} validity bits, expected {rows} rows",
                    field.name,
                    col.data.len(),
                    col.validity.len()
                )));
            }
            col.validity.check()?;
            col.data
                .check()
                .map_err(|e| e.context(format!("column `{}`", field.name)))?;
        }
        let schema_id = schema_id.unwrap_or_else(|| schema.id());
        Ok(Batch {
            schema,
            schema_id,
            columns,
            rows,
        })
    }

    /// A batch from a schema and one column per field, checking every invariant of the module
    /// documentation: for code that derives a batch from others (adds a column, declares a
    /// primary key).
    pub fn try_new(schema: Arc<Schema>, columns: Vec<Column>) -> Result<Batch> {
        Batch::from_parts(schema, columns, None)
    }

    /// The schema and the columns, without copying the values.
    pub fn into_parts(self) -> (Arc<Schema>, Vec<Column>) {
        (self.schema, self.columns)
    }

    /// A batch with no rows.
    pub fn empty(schema: Arc<Schema>) -> Batch {
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column::with_capacity(f.logical_type.storage(), 0))
            .collect();
        let schema_id = schema.id();
        Batch {
            schema,
            schema_id,
            columns,
            rows: 0,
        }
    }

    /// The schema of every row.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The content-derived id of the schema.
    pub fn schema_id(&self) -> SchemaId {
        self.schema_id
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn num_columns(&self) -> usize {
        self.columns.len()
    }

    /// All columns, in schema order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Column `i`, if it exists.
    pub fn column(&self, i: usize) -> Option<&Column> {
        self.columns.get(i)
    }

    /// The column named `name`, if any.
    pub fn column_by_name(&self, name: &str) -> Option<&Column> {
        self.schema.index_of(name).and_then(|i| self.columns.get(i))
    }

    /// One cell as an owned [`Value`] (allocates for text and bytes: for cursors, keys and
    /// tests, not for bulk paths). `None` when row or column is out of range.
    pub fn value(&self, row: usize, col: usize) -> Option<Value> {
        if row >= self.rows {
            return None;
        }
        let column = self.columns.get(col)?;
        let field = &self.schema.fields()[col];
        Some(Value::from_column(column, &field.logical_type, row))
    }

    /// Approximate heap bytes of the values (what chunk limits count).
    pub fn byte_size(&self) -> usize {
        self.columns.iter().map(Column::byte_size).sum()
    }

    /// Encodes the batch (format byte + bincode), the bytes the journal stores.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.byte_size() + 256);
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the encoding to `out`, reusing its allocation.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        out.push(BATCH_FORMAT_VERSION);
        let wire = BatchWireRef {
            schema: &self.schema,
            rows: self.rows as u64,
            columns: &self.columns,
        };
        bincode::serde::encode_into_std_write(&wire, out, bincode::config::standard())
            .map_err(|e| Error::Encode(format!("batch: {e}")))?;
        Ok(())
    }

    /// Decodes and checks a batch. Any malformed input is an [`Error::Decode`] or
    /// [`Error::Schema`], never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Batch> {
        let (&version, rest) = bytes
            .split_first()
            .ok_or_else(|| Error::Decode("batch: empty byte string".into()))?;
        if version != BATCH_FORMAT_VERSION {
            return Err(Error::Decode(format!(
                "batch: format version {version}, this build reads version {BATCH_FORMAT_VERSION}"
            )));
        }
        let (wire, used): (BatchWire, usize) =
            bincode::serde::decode_from_slice(rest, crate::wire::decode_config())
                .map_err(|e| Error::Decode(format!("batch: {e}")))?;
        if used != rest.len() {
            return Err(Error::Decode(format!(
                "batch: {} trailing bytes",
                rest.len() - used
            )));
        }
        let batch = Batch::from_parts(Arc::new(wire.schema), wire.columns, None)?;
        if batch.rows as u64 != wire.rows {
            return Err(Error::Decode(format!(
                "batch: header says {} rows, columns hold {}",
                wire.rows, batch.rows
            )));
        }
        Ok(batch)
    }

    /// The logical type of column `i`.
    pub fn logical_type(&self, i: usize) -> Option<&LogicalType> {
        self.schema.fields().get(i).map(|f| &f.logical_type)
    }
}

/// Fixed-width vectors as one little-endian byte string (memory speed, and bincode's
/// per-element path would be ~10x slower for wide batches).
mod raw {
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    use super::{Interval, OffsetTimestamp};

    /// A plain value with a fixed little-endian encoding of `SIZE` bytes.
    pub trait Plain: Sized {
        const SIZE: usize;
        fn put(&self, out: &mut Vec<u8>);
        /// `None` when the bytes are not a valid value (a bool that is not 0 or 1).
        fn take(b: &[u8]) -> Option<Self>;
        /// The encoding of a whole vector as it lies in memory, for types whose in-memory
        /// representation *is* the encoding on this target (a little-endian number of `SIZE`
        /// bytes, no padding, every bit pattern valid): one `memcpy` instead of a loop.
        fn bulk_bytes(_v: &[Self]) -> Option<&[u8]> {
            None
        }
        /// The inverse of [`Plain::bulk_bytes`]; `b.len()` is a multiple of `SIZE`.
        fn bulk_vec(_b: &[u8]) -> Option<Vec<Self>> {
            None
        }
    }

    /// Marks the types whose [`Plain::bulk_bytes`] may copy memory as it is.
    ///
    /// # Safety
    ///
    /// Implementors are `Copy`, have no padding and no invalid bit patterns.
    unsafe trait Pod: Copy {}
    unsafe impl Pod for i8 {}
    unsafe impl Pod for i16 {}
    unsafe impl Pod for i32 {}
    unsafe impl Pod for i64 {}
    unsafe impl Pod for i128 {}
    unsafe impl Pod for u8 {}
    unsafe impl Pod for u16 {}
    unsafe impl Pod for u32 {}
    unsafe impl Pod for u64 {}
    unsafe impl Pod for f32 {}
    unsafe impl Pod for f64 {}
    unsafe impl Pod for [u8; 16] {}

    /// The bytes of a slice of plain numbers.
    fn pod_bytes<T: Pod>(v: &[T]) -> &[u8] {
        // SAFETY: `T: Pod` has no padding, so every byte of the slice is initialised; the
        // length is the slice's size in bytes and u8 has alignment 1.
        unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
    }

    /// A vector of plain numbers from their bytes (`b.len()` a multiple of the size).
    fn pod_vec<T: Pod>(b: &[u8]) -> Vec<T> {
        let n = b.len() / std::mem::size_of::<T>();
        let mut v: Vec<T> = Vec::with_capacity(n);
        // SAFETY: the destination has room for `n` values = `n * size_of::<T>()` bytes, the
        // source holds at least that many, the two do not overlap (fresh allocation), and
        // every bit pattern is a valid `T` (`Pod`), so the `n` values are initialised.
        unsafe {
            std::ptr::copy_nonoverlapping(
                b.as_ptr(),
                v.as_mut_ptr().cast::<u8>(),
                n * std::mem::size_of::<T>(),
            );
            v.set_len(n);
        }
        v
    }

    macro_rules! plain_num {
        ($($t:ty),*) => {$(
            impl Plain for $t {
                const SIZE: usize = std::mem::size_of::<$t>();
                #[inline]
                fn put(&self, out: &mut Vec<u8>) {
                    out.extend_from_slice(&self.to_le_bytes());
                }
                #[inline]
                fn take(b: &[u8]) -> Option<Self> {
                    Some(<$t>::from_le_bytes(b.try_into().ok()?))
                }
                fn bulk_bytes(v: &[Self]) -> Option<&[u8]> {
                    cfg!(target_endian = "little").then(|| pod_bytes(v))
                }
                fn bulk_vec(b: &[u8]) -> Option<Vec<Self>> {
                    cfg!(target_endian = "little").then(|| pod_vec(b))
                }
            }
        )*};
    }
    plain_num!(i8, i16, i32, i64, i128, u16, u32, u64, f32, f64);

    impl Plain for u8 {
        const SIZE: usize = 1;
        #[inline]
        fn put(&self, out: &mut Vec<u8>) {
            out.push(*self);
        }
        #[inline]
        fn take(b: &[u8]) -> Option<Self> {
            b.first().copied()
        }
        fn bulk_bytes(v: &[Self]) -> Option<&[u8]> {
            Some(v)
        }
        fn bulk_vec(b: &[u8]) -> Option<Vec<Self>> {
            Some(b.to_vec())
        }
    }

    impl Plain for bool {
        const SIZE: usize = 1;
        #[inline]
        fn put(&self, out: &mut Vec<u8>) {
            out.push(u8::from(*self));
        }
        #[inline]
        fn take(b: &[u8]) -> Option<Self> {
            match b.first() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            }
        }
    }

    impl Plain for [u8; 16] {
        const SIZE: usize = 16;
        #[inline]
        fn put(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(self);
        }
        #[inline]
        fn take(b: &[u8]) -> Option<Self> {
            b.try_into().ok()
        }
        fn bulk_bytes(v: &[Self]) -> Option<&[u8]> {
            Some(pod_bytes(v))
        }
        fn bulk_vec(b: &[u8]) -> Option<Vec<Self>> {
            Some(pod_vec(b))
        }
    }

    impl Plain for OffsetTimestamp {
        const SIZE: usize = 10;
        fn put(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.utc_micros.to_le_bytes());
            out.extend_from_slice(&self.offset_minutes.to_le_bytes());
        }
        fn take(b: &[u8]) -> Option<Self> {
            Some(OffsetTimestamp {
                utc_micros: i64::from_le_bytes(b.get(0..8)?.try_into().ok()?),
                offset_minutes: i16::from_le_bytes(b.get(8..10)?.try_into().ok()?),
            })
        }
    }

    impl Plain for Interval {
        const SIZE: usize = 16;
        fn put(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.months.to_le_bytes());
            out.extend_from_slice(&self.days.to_le_bytes());
            out.extend_from_slice(&self.micros.to_le_bytes());
        }
        fn take(b: &[u8]) -> Option<Self> {
            Some(Interval {
                months: i32::from_le_bytes(b.get(0..4)?.try_into().ok()?),
                days: i32::from_le_bytes(b.get(4..8)?.try_into().ok()?),
                micros: i64::from_le_bytes(b.get(8..16)?.try_into().ok()?),
            })
        }
    }

    pub fn serialize<T: Plain, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        if let Some(bytes) = T::bulk_bytes(v) {
            return s.serialize_bytes(bytes);
        }
        let mut out = Vec::with_capacity(v.len() * T::SIZE);
        for x in v {
            x.put(&mut out);
        }
        s.serialize_bytes(&out)
    }

    fn from_bytes<T: Plain, E: serde::de::Error>(b: &[u8]) -> Result<Vec<T>, E> {
        if !b.len().is_multiple_of(T::SIZE) {
            return Err(E::custom(format!(
                "{} bytes is not a whole number of {}-byte values",
                b.len(),
                T::SIZE
            )));
        }
        if let Some(v) = T::bulk_vec(b) {
            return Ok(v);
        }
        b.chunks_exact(T::SIZE)
            .map(|c| T::take(c).ok_or_else(|| E::custom("invalid value in a fixed-width column")))
            .collect()
    }

    struct RawVisitor<T>(std::marker::PhantomData<T>);

    impl<'de, T: Plain> Visitor<'de> for RawVisitor<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string of fixed-width values")
        }
        fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Vec<T>, E> {
            from_bytes(b)
        }
        fn visit_borrowed_bytes<E: serde::de::Error>(self, b: &'de [u8]) -> Result<Vec<T>, E> {
            from_bytes(b)
        }
        fn visit_byte_buf<E: serde::de::Error>(self, b: Vec<u8>) -> Result<Vec<T>, E> {
            from_bytes(&b)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut bytes = Vec::new();
            while let Some(b) = seq.next_element::<u8>()? {
                bytes.push(b);
            }
            from_bytes::<T, A::Error>(&bytes)
        }
    }

    pub fn deserialize<'de, T: Plain, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        // `bytes`, not `byte_buf`: from a slice, bincode hands out a borrowed, bounds-checked
        // sub-slice instead of allocating the length the input claims.
        d.deserialize_bytes(RawVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::BatchBuilder;
    use crate::sample::{all_types_batch, all_types_schema};
    use crate::types::Field;
    use proptest::prelude::*;

    fn sample(rows: usize) -> Batch {
        all_types_batch(&Arc::new(all_types_schema()), 0, rows).unwrap()
    }

    #[test]
    fn every_type_round_trips_through_bytes() {
        let batch = sample(300);
        let bytes = batch.encode().unwrap();
        let back = Batch::decode(&bytes).unwrap();
        assert_eq!(back, batch);
        assert_eq!(back.schema_id(), batch.schema_id());
        for col in 0..batch.num_columns() {
            for row in 0..batch.num_rows() {
                assert_eq!(back.value(row, col), batch.value(row, col));
            }
        }
    }

    #[test]
    fn columns_of_two_batches_make_a_third() {
        let left = sample(4);
        let extra_schema = Arc::new(
            Schema::new(
                vec![Field::new(
                    "_source",
                    LogicalType::Text { max_bytes: None },
                    false,
                )],
                &[],
            )
            .unwrap(),
        );
        let mut b = BatchBuilder::new(Arc::clone(&extra_schema));
        b.extend(0, ["tienda_01"; 4]).unwrap();
        let extra = b.finish().unwrap();
        let (schema, mut columns) = left.clone().into_parts();
        let mut fields = schema.fields().to_vec();
        fields.push(extra_schema.fields()[0].clone());
        columns.extend(extra.into_parts().1);
        let joined = Batch::try_new(
            Arc::new(Schema::from_parts(fields, schema.primary_key().to_vec()).unwrap()),
            columns,
        )
        .unwrap();
        assert_eq!(joined.num_columns(), left.num_columns() + 1);
        assert_eq!(
            joined.value(3, left.num_columns()),
            Some(Value::Text("tienda_01".into()))
        );
        // A column of another length is refused.
        let (schema, mut columns) = joined.into_parts();
        columns.pop();
        columns.push(sample(5).into_parts().1.pop().unwrap());
        assert!(Batch::try_new(schema, columns).is_err());
    }

    #[test]
    fn bulk_copies_are_the_element_encoding() {
        use raw::Plain;
        fn same<T: Plain + PartialEq + std::fmt::Debug>(v: &[T]) {
            let mut one_by_one = Vec::new();
            for x in v {
                x.put(&mut one_by_one);
            }
            // Every fixed-width number and UUID takes the bulk path here (x86-64 is
            // little-endian), and it gives the bytes and values of the element path.
            assert_eq!(T::bulk_bytes(v), Some(&one_by_one[..]));
            assert_eq!(T::bulk_vec(&one_by_one).as_deref(), Some(v));
        }
        same(&[i8::MIN, -1, 0, 1, i8::MAX]);
        same(&[i16::MIN, -2, 300, i16::MAX]);
        same(&[i32::MIN, -3, 70_000, i32::MAX]);
        same(&[i64::MIN, -4, 1 << 40, i64::MAX]);
        same(&[i128::MIN, -5, 1 << 100, i128::MAX]);
        same(&[0u8, 7, 255]);
        same(&[0u16, 7, u16::MAX]);
        same(&[0u32, 7, u32::MAX]);
        same(&[0u64, 7, u64::MAX]);
        same(&[0.5f32, -1.25, f32::MAX]);
        same(&[0.5f64, -1.25, f64::MIN_POSITIVE]);
        same(&[[1u8; 16], [0xAB; 16]]);
        // Types with a layout that is not their encoding keep the element path.
        assert!(<bool as Plain>::bulk_bytes(&[true]).is_none());
        let offset = OffsetTimestamp {
            utc_micros: 1,
            offset_minutes: 60,
        };
        assert!(<OffsetTimestamp as Plain>::bulk_bytes(&[offset]).is_none());
        let interval = Interval {
            months: 1,
            days: 2,
            micros: 3,
        };
        assert!(<Interval as Plain>::bulk_bytes(&[interval]).is_none());
    }

    #[test]
    fn empty_batch_round_trips() {
        let batch = Batch::empty(Arc::new(all_types_schema()));
        assert_eq!(Batch::decode(&batch.encode().unwrap()).unwrap(), batch);
    }

    #[test]
    fn encoding_is_compact_for_fixed_width_columns() {
        let schema =
            Arc::new(Schema::new(vec![Field::new("v", LogicalType::Int64, false)], &[]).unwrap());
        let mut b = BatchBuilder::with_capacity(schema, 10_000);
        b.extend(0, 0..10_000i64).unwrap();
        let bytes = b.finish().unwrap().encode().unwrap();
        // 8 bytes per value plus the validity bitmap and a small header.
        assert!(
            bytes.len() < 10_000 * 8 + 10_000 / 8 + 100,
            "{} bytes",
            bytes.len()
        );
    }

    #[test]
    fn wrong_version_and_trailing_bytes_are_named() {
        let mut bytes = sample(3).encode().unwrap();
        bytes.push(0);
        assert!(
            Batch::decode(&bytes)
                .unwrap_err()
                .to_string()
                .contains("trailing")
        );
        bytes[0] = 9;
        assert!(
            Batch::decode(&bytes)
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
        assert!(Batch::decode(&[]).is_err());
    }

    #[test]
    fn inconsistent_columns_are_refused() {
        let schema = Arc::new(
            Schema::new(
                vec![
                    Field::new("a", LogicalType::Int64, false),
                    Field::new("t", LogicalType::Json, true),
                ],
                &[],
            )
            .unwrap(),
        );
        let mut b = BatchBuilder::new(Arc::clone(&schema));
        b.push(0, 1i64).unwrap();
        b.push(1, "é").unwrap();
        let good = b.finish().unwrap();
        // Split the two-byte character: the offset falls inside it.
        let mut bad = good.clone();
        if let ColumnData::Utf8(Utf8Data(v)) = &mut bad.columns[1].data {
            v.offsets[1] = 1;
            v.data.truncate(1);
        }
        let err = Batch::decode(&bad.encode().unwrap()).unwrap_err();
        assert!(err.to_string().contains("`t`"), "{err}");
        // A column of the wrong storage for its type.
        let wrong = BatchWireRef {
            schema: &schema,
            rows: 1,
            columns: &[good.columns[0].clone(), good.columns[0].clone()],
        };
        let mut bytes = vec![BATCH_FORMAT_VERSION];
        bincode::serde::encode_into_std_write(&wrong, &mut bytes, bincode::config::standard())
            .unwrap();
        let err = Batch::decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("must be stored as Utf8"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut with_version = vec![BATCH_FORMAT_VERSION];
            with_version.extend_from_slice(&bytes);
            let _ = Batch::decode(&bytes);
            let _ = Batch::decode(&with_version);
        }

        #[test]
        fn decode_never_panics_on_a_flipped_byte(pos in 0usize..4096, bit in 0u8..8) {
            let bytes = sample(5).encode().unwrap();
            let mut bad = bytes.clone();
            let i = pos % bad.len();
            bad[i] ^= 1 << bit;
            if let Ok(b) = Batch::decode(&bad) {
                // Whatever decodes must still satisfy the invariants, so using it cannot panic.
                let _ = crate::TableDigest::of_batch("t", &b);
                for c in 0..b.num_columns() { let _ = b.value(b.num_rows().saturating_sub(1), c); }
            }
        }

        #[test]
        fn random_rows_round_trip(start in 0u64..1_000_000, rows in 0usize..40) {
            let batch = all_types_batch(&Arc::new(all_types_schema()), start, rows).unwrap();
            prop_assert_eq!(Batch::decode(&batch.encode().unwrap()).unwrap(), batch);
        }
    }
}
