//! Arrow on both sides of DuckDB: SDK batches to Arrow record batches for the appender, and
//! the record batches DuckDB returns to SDK batches.
//!
//! Writing ([`record_batch`]): fixed-width columns are copied as whole slices (one memcpy per
//! column), text and bytes reuse the batch's Arrow-layout offsets and data, the validity
//! bitmap is Arrow's layout already. Only `Int128` and intervals (as text, see `types.rs`) and
//! UUIDs (a flattening copy) touch values one by one, and none of them allocates per value.
//!
//! Reading ([`push_rows`]): one match per column picks a typed loop; each value is one push
//! into the [`BatchBuilder`], without allocation. The select list casts every column to the
//! DuckDB type of its logical type (`types::read_expression`), so each logical type meets one
//! Arrow type; the few variants DuckDB may choose between (string views, narrow decimals,
//! timestamp units) are accepted too.
//!
//! Digesting ([`ArrowRows`]): a table digest reads most columns where DuckDB put them, with
//! no batch in between; only the columns whose Arrow layout is not their storage's are
//! converted.

use std::ops::Range;
use std::sync::Arc;

use caudal_connector::{
    Batch, BatchBuilder, Column, ColumnData, ColumnRef, DigestRows, Error, Field, LogicalType,
    NativeValue, Result, Schema, Storage, Utf8Data, Value, Values, VarData,
};
use duckdb::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Decimal128Array, FixedSizeBinaryArray,
    PrimitiveArray, RecordBatch, RecordBatchOptions, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use duckdb::arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use duckdb::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field as ArrowField, IntervalUnit, Schema as ArrowSchema,
    TimeUnit,
};

use crate::sql::parse_uuid;

/// Microseconds in a day: the end of DuckDB's `TIME` range (24:00:00 is allowed).
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The Arrow extension DuckDB reads as `UUID`.
const UUID_EXTENSION: (&str, &str) = ("ARROW:extension:name", "arrow.uuid");

/// Columns `columns` of `batch` as an Arrow record batch for DuckDB's appender.
pub fn record_batch(batch: &Batch, columns: &[usize]) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays = Vec::with_capacity(columns.len());
    for &i in columns {
        let (field, column) = schema
            .fields()
            .get(i)
            .zip(batch.column(i))
            .ok_or_else(|| Error::Schema(format!("column index {i} is out of range")))?;
        let (arrow_field, array) = column_array(field, column)?;
        fields.push(arrow_field);
        arrays.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(ArrowSchema::new(fields)), arrays, &options)
        .map_err(|e| Error::Encode(format!("Arrow record batch: {e}")))
}

fn nulls(column: &Column) -> Option<NullBuffer> {
    if column.null_count() == 0 {
        return None;
    }
    let v = column.validity();
    Some(NullBuffer::new(BooleanBuffer::new(
        Buffer::from_slice_ref(v.as_bytes()),
        0,
        v.len(),
    )))
}

fn mismatch(field: &Field, column: &Column) -> Error {
    Error::Schema(format!(
        "column `{}` of type {:?} holds {:?} values",
        field.name,
        field.logical_type,
        column.data().storage()
    ))
}

fn primitive<T: ArrowPrimitiveType>(values: &[T::Native], column: &Column) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::new(
        ScalarBuffer::from(values.to_vec()),
        nulls(column),
    ))
}

fn column_array(field: &Field, column: &Column) -> Result<(ArrowField, ArrayRef)> {
    use LogicalType as L;
    use duckdb::arrow::datatypes as t;
    let data = column.data();
    let bad = || mismatch(field, column);
    let array: ArrayRef = match (&field.logical_type, data) {
        (L::Bool, ColumnData::Bool(v)) => Arc::new(BooleanArray::new(
            BooleanBuffer::from(v.as_slice()),
            nulls(column),
        )),
        (_, ColumnData::I8(v)) => primitive::<t::Int8Type>(v, column),
        (_, ColumnData::I16(v)) => primitive::<t::Int16Type>(v, column),
        (L::Date, ColumnData::I32(v)) => primitive::<t::Date32Type>(v, column),
        (_, ColumnData::I32(v)) => primitive::<t::Int32Type>(v, column),
        (L::Time { .. }, ColumnData::I64(v)) => {
            check_times(field, column, v)?;
            primitive::<t::Time64MicrosecondType>(v, column)
        }
        (L::DateTime { .. }, ColumnData::I64(v)) => {
            primitive::<t::TimestampMicrosecondType>(v, column)
        }
        (L::Timestamp { .. }, ColumnData::I64(v)) => Arc::new(
            TimestampMicrosecondArray::new(ScalarBuffer::from(v.to_vec()), nulls(column))
                .with_timezone_utc(),
        ),
        (_, ColumnData::I64(v)) => primitive::<t::Int64Type>(v, column),
        (L::Int128, ColumnData::I128(v)) => int128_text(v, column),
        (lt, ColumnData::I128(v)) => {
            let (precision, scale) = match lt {
                L::Decimal { precision, scale } => (*precision, *scale),
                L::Money => (19, 4),
                L::SmallMoney => (10, 4),
                _ => return Err(bad()),
            };
            check_precision(field, column, v, precision)?;
            Arc::new(
                Decimal128Array::new(ScalarBuffer::from(v.to_vec()), nulls(column))
                    .with_precision_and_scale(precision, scale as i8)
                    .map_err(|e| Error::Schema(format!("column `{}`: {e}", field.name)))?,
            )
        }
        (_, ColumnData::U8(v)) => primitive::<t::UInt8Type>(v, column),
        (_, ColumnData::U16(v)) => primitive::<t::UInt16Type>(v, column),
        (_, ColumnData::U32(v)) => primitive::<t::UInt32Type>(v, column),
        (_, ColumnData::U64(v)) => primitive::<t::UInt64Type>(v, column),
        (_, ColumnData::F32(v)) => primitive::<t::Float32Type>(v, column),
        (_, ColumnData::F64(v)) => primitive::<t::Float64Type>(v, column),
        (lt, ColumnData::Utf8(v)) => {
            if let L::Enum { variants } = lt {
                check_enum(field, column, v, variants)?;
            }
            let raw = v.raw();
            Arc::new(
                StringArray::try_new(
                    OffsetBuffer::new(ScalarBuffer::from(raw.offsets().to_vec())),
                    Buffer::from_slice_ref(raw.data()),
                    nulls(column),
                )
                .map_err(|e| Error::Schema(format!("column `{}`: {e}", field.name)))?,
            )
        }
        (_, ColumnData::Binary(v)) => binary(field, column, v)?,
        (_, ColumnData::Uuid(v)) => Arc::new(
            FixedSizeBinaryArray::try_new(
                16,
                Buffer::from_slice_ref(v.as_flattened()),
                nulls(column),
            )
            .map_err(|e| Error::Schema(format!("column `{}`: {e}", field.name)))?,
        ),
        (_, ColumnData::OffsetTimestamp(v)) => {
            let micros: Vec<i64> = v.iter().map(|t| t.utc_micros).collect();
            Arc::new(
                TimestampMicrosecondArray::new(ScalarBuffer::from(micros), nulls(column))
                    .with_timezone_utc(),
            )
        }
        (_, ColumnData::Interval(v)) => interval_text(v, column),
        _ => return Err(bad()),
    };
    let mut arrow_field = ArrowField::new(field.name.as_str(), array.data_type().clone(), true);
    if matches!(data, ColumnData::Uuid(_)) {
        arrow_field = arrow_field.with_metadata([(UUID_EXTENSION.0, UUID_EXTENSION.1)]);
    }
    Ok((arrow_field, array))
}

fn binary(field: &Field, column: &Column, v: &VarData) -> Result<ArrayRef> {
    Ok(Arc::new(
        BinaryArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(v.offsets().to_vec())),
            Buffer::from_slice_ref(v.data()),
            nulls(column),
        )
        .map_err(|e| Error::Schema(format!("column `{}`: {e}", field.name)))?,
    ))
}

/// Intervals cross as text that DuckDB parses back exactly (`-1 months 2 days 3 microseconds`):
/// duckdb-rs's appender drops the NULLs of Arrow interval arrays, and Arrow's nanoseconds
/// would overflow for microsecond parts past 292 years.
fn interval_text(values: &[caudal_connector::Interval], column: &Column) -> ArrayRef {
    use std::fmt::Write as _;
    let mut b = StringBuilder::with_capacity(values.len(), values.len() * 40);
    for (row, i) in values.iter().enumerate() {
        if column.is_null(row) {
            b.append_null();
        } else {
            // Writing into the builder's buffer cannot fail; `append_value("")` ends the value.
            let _ = write!(
                b,
                "{} months {} days {} microseconds",
                i.months, i.days, i.micros
            );
            b.append_value("");
        }
    }
    Arc::new(b.finish())
}

/// `HUGEINT` crosses as text: DuckDB casts it back exactly.
fn int128_text(values: &[i128], column: &Column) -> ArrayRef {
    use std::fmt::Write as _;
    let mut b = StringBuilder::with_capacity(values.len(), values.len() * 20);
    for (row, v) in values.iter().enumerate() {
        if column.is_null(row) {
            b.append_null();
        } else {
            // Writing into the builder's buffer cannot fail; `append_value("")` ends the value.
            let _ = write!(b, "{v}");
            b.append_value("");
        }
    }
    Arc::new(b.finish())
}

fn check_times(field: &Field, column: &Column, values: &[i64]) -> Result<()> {
    for (row, &v) in values.iter().enumerate() {
        if !(0..=MICROS_PER_DAY).contains(&v) && !column.is_null(row) {
            return Err(Error::Schema(format!(
                "column `{}` row {row}: time {v} µs is outside DuckDB's TIME range \
                 (00:00:00 to 24:00:00); a duration belongs in an INTERVAL column",
                field.name
            )));
        }
    }
    Ok(())
}

fn check_precision(field: &Field, column: &Column, values: &[i128], precision: u8) -> Result<()> {
    let limit = 10i128.pow(u32::from(precision));
    for (row, &v) in values.iter().enumerate() {
        if (v >= limit || v <= -limit) && !column.is_null(row) {
            return Err(Error::Schema(format!(
                "column `{}` row {row}: unscaled value {v} has more than the {precision} digits \
                 of {:?}",
                field.name, field.logical_type
            )));
        }
    }
    Ok(())
}

fn check_enum(
    field: &Field,
    column: &Column,
    values: &Utf8Data,
    variants: &[String],
) -> Result<()> {
    if variants.is_empty() {
        return Ok(());
    }
    for (row, v) in values.iter().enumerate() {
        if !column.is_null(row) && !variants.iter().any(|x| x == v) {
            return Err(Error::Schema(format!(
                "column `{}` row {row}: `{v}` is not one of the enum's values ({})",
                field.name,
                variants.join(", ")
            )));
        }
    }
    Ok(())
}

/// Appends rows `range` of `rb` (columns in schema order) to `builder`.
pub fn push_rows(builder: &mut BatchBuilder, rb: &RecordBatch, range: Range<usize>) -> Result<()> {
    let schema = Arc::clone(builder.schema());
    if rb.num_columns() != schema.len() {
        return Err(Error::Schema(format!(
            "DuckDB returned {} columns, the schema has {}",
            rb.num_columns(),
            schema.len()
        )));
    }
    for (col, field) in schema.fields().iter().enumerate() {
        push_column(builder, col, field, rb.column(col).as_ref(), range.clone())?;
    }
    Ok(())
}

/// A record batch DuckDB returned, as rows the digest reads in place ([`DigestRows`]).
///
/// Columns whose Arrow layout is their storage's are not copied: integers, floats, dates,
/// microsecond times and timestamps, decimals at the column's own scale, and text and bytes
/// with 32-bit offsets. The others are converted as [`push_rows`] would (Arrow keeps booleans
/// as bits, a batch as bytes; UUIDs and 128-bit integers come as text), into a batch of just
/// those columns. Either way the values are the ones a batch would hold, so the digest is the
/// same.
pub struct ArrowRows {
    rb: RecordBatch,
    schema: Arc<Schema>,
    /// For each column, its index in `converted` when it is not read in place.
    converted_at: Vec<Option<usize>>,
    converted: Option<Batch>,
}

impl ArrowRows {
    /// `rb`'s columns are `schema`'s, in order.
    pub fn new(rb: RecordBatch, schema: Arc<Schema>) -> Result<ArrowRows> {
        if rb.num_columns() != schema.len() {
            return Err(Error::Schema(format!(
                "DuckDB returned {} columns, the schema has {}",
                rb.num_columns(),
                schema.len()
            )));
        }
        let mut converted_at = Vec::with_capacity(schema.len());
        let mut convert = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            if in_place(field, rb.column(i).as_ref()).is_some() {
                converted_at.push(None);
            } else {
                converted_at.push(Some(convert.len()));
                convert.push(i);
            }
        }
        let converted = if convert.is_empty() {
            None
        } else {
            let fields = convert
                .iter()
                .map(|&i| schema.fields()[i].clone())
                .collect();
            let part = Arc::new(Schema::from_parts(fields, Vec::new())?);
            let mut b = BatchBuilder::with_capacity(part, rb.num_rows());
            for (j, &i) in convert.iter().enumerate() {
                let field = &schema.fields()[i];
                push_column(&mut b, j, field, rb.column(i).as_ref(), 0..rb.num_rows())?;
            }
            Some(b.finish()?)
        };
        Ok(ArrowRows {
            rb,
            schema,
            converted_at,
            converted,
        })
    }

    /// How many columns are read in place (the rest are converted).
    #[cfg(test)]
    fn in_place_columns(&self) -> usize {
        self.converted_at.iter().filter(|c| c.is_none()).count()
    }
}

impl DigestRows for ArrowRows {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn num_rows(&self) -> usize {
        self.rb.num_rows()
    }

    fn column(&self, i: usize) -> ColumnRef<'_> {
        if let (Some(Some(j)), Some(batch)) = (self.converted_at.get(i), &self.converted) {
            return DigestRows::column(batch, *j);
        }
        let array = self.rb.column(i).as_ref();
        ColumnRef {
            // `new` found the column readable in place; were it not, no values: the digest
            // then fails on the column rather than read a wrong one.
            values: in_place(&self.schema.fields()[i], array).unwrap_or(Values::Bool(&[])),
            validity: array
                .nulls()
                .filter(|n| n.null_count() > 0)
                .map(|n| (n.validity(), n.offset())),
        }
    }
}

/// `array`'s values as they are, when their layout is `field`'s storage and they need no
/// conversion (the same values [`push_column`] would push).
fn in_place<'a>(field: &Field, array: &'a dyn Array) -> Option<Values<'a>> {
    use duckdb::arrow::datatypes as t;
    fn values<T: ArrowPrimitiveType>(array: &dyn Array) -> Option<&[T::Native]> {
        array.as_primitive_opt::<T>().map(|a| &a.values()[..])
    }
    let t = &field.logical_type;
    Some(match (t.storage(), array.data_type()) {
        (Storage::I8, DataType::Int8) => Values::I8(values::<t::Int8Type>(array)?),
        (Storage::I16, DataType::Int16) => Values::I16(values::<t::Int16Type>(array)?),
        (Storage::I32, DataType::Int32) => Values::I32(values::<t::Int32Type>(array)?),
        (Storage::I32, DataType::Date32) => Values::I32(values::<t::Date32Type>(array)?),
        (Storage::I64, DataType::Int64) => Values::I64(values::<t::Int64Type>(array)?),
        (Storage::I64, DataType::Time64(TimeUnit::Microsecond)) => {
            Values::I64(values::<t::Time64MicrosecondType>(array)?)
        }
        (Storage::I64, DataType::Timestamp(TimeUnit::Microsecond, _)) => {
            Values::I64(values::<t::TimestampMicrosecondType>(array)?)
        }
        (Storage::I128, DataType::Decimal128(_, scale))
            if u8::try_from(*scale).ok() == Some(t.decimal_scale().unwrap_or(0)) =>
        {
            Values::I128(values::<t::Decimal128Type>(array)?)
        }
        (Storage::U8, DataType::UInt8) => Values::U8(values::<t::UInt8Type>(array)?),
        (Storage::U16, DataType::UInt16) => Values::U16(values::<t::UInt16Type>(array)?),
        (Storage::U32, DataType::UInt32) => Values::U32(values::<t::UInt32Type>(array)?),
        (Storage::U64, DataType::UInt64) => Values::U64(values::<t::UInt64Type>(array)?),
        (Storage::F32, DataType::Float32) => Values::F32(values::<t::Float32Type>(array)?),
        (Storage::F64, DataType::Float64) => Values::F64(values::<t::Float64Type>(array)?),
        (Storage::Utf8, DataType::Utf8) => {
            let a = array.as_string_opt::<i32>()?;
            Values::Utf8 {
                offsets: a.value_offsets(),
                data: a.value_data(),
            }
        }
        (Storage::Binary, DataType::Binary) => {
            let a = array.as_binary_opt::<i32>()?;
            Values::Binary {
                offsets: a.value_offsets(),
                data: a.value_data(),
            }
        }
        _ => return None,
    })
}

/// Row `row` of `array` as a [`Value`] of `field`'s logical type (cursor values; allocates).
pub fn value_at(field: &Field, array: &dyn Array, row: usize) -> Result<Value> {
    let schema = Arc::new(Schema::from_parts(vec![field.clone()], Vec::new())?);
    let mut b = BatchBuilder::with_capacity(schema, 1);
    push_column(&mut b, 0, field, array, row..row + 1)?;
    Ok(b.finish()?.value(0, 0).unwrap_or(Value::Null))
}

/// Pushes `array[range]` mapped by `f`; NULL where the array is NULL.
#[inline]
fn push_each<V: NativeValue>(
    b: &mut BatchBuilder,
    col: usize,
    array: &dyn Array,
    range: Range<usize>,
    mut f: impl FnMut(usize) -> Result<V>,
) -> Result<()> {
    match array.nulls().filter(|n| n.null_count() > 0) {
        None => {
            for i in range {
                b.push(col, f(i)?)?;
            }
        }
        Some(n) => {
            for i in range {
                if n.is_null(i) {
                    b.push_null(col)?;
                } else {
                    b.push(col, f(i)?)?;
                }
            }
        }
    }
    Ok(())
}

fn push_primitive<T: ArrowPrimitiveType>(
    b: &mut BatchBuilder,
    col: usize,
    array: &dyn Array,
    range: Range<usize>,
) -> Result<bool>
where
    T::Native: NativeValue,
{
    let Some(a) = array.as_primitive_opt::<T>() else {
        return Ok(false);
    };
    let values = a.values();
    push_each(b, col, array, range, |i| Ok(values[i]))?;
    Ok(true)
}

/// A text column of any of Arrow's string layouts.
fn text_at<'a>(array: &'a dyn Array) -> Option<Box<dyn Fn(usize) -> &'a str + 'a>> {
    if let Some(a) = array.as_string_opt::<i32>() {
        Some(Box::new(move |i| a.value(i)))
    } else if let Some(a) = array.as_string_opt::<i64>() {
        Some(Box::new(move |i| a.value(i)))
    } else if let Some(a) = array.as_string_view_opt() {
        Some(Box::new(move |i| a.value(i)))
    } else {
        None
    }
}

/// A byte-string column of any of Arrow's binary layouts.
fn bytes_at<'a>(array: &'a dyn Array) -> Option<Box<dyn Fn(usize) -> &'a [u8] + 'a>> {
    if let Some(a) = array.as_binary_opt::<i32>() {
        Some(Box::new(move |i| a.value(i)))
    } else if let Some(a) = array.as_binary_opt::<i64>() {
        Some(Box::new(move |i| a.value(i)))
    } else if let Some(a) = array.as_binary_view_opt() {
        Some(Box::new(move |i| a.value(i)))
    } else if let Some(a) = array.as_fixed_size_binary_opt() {
        Some(Box::new(move |i| a.value(i)))
    } else {
        None
    }
}

fn push_column(
    b: &mut BatchBuilder,
    col: usize,
    field: &Field,
    array: &dyn Array,
    range: Range<usize>,
) -> Result<()> {
    use duckdb::arrow::datatypes as t;
    let name = &field.name;
    let done = match field.logical_type.storage() {
        Storage::Bool => match array.as_boolean_opt() {
            Some(a) => push_each(b, col, array, range, |i| Ok(a.value(i))).map(|()| true)?,
            None => false,
        },
        Storage::I8 => push_primitive::<t::Int8Type>(b, col, array, range)?,
        Storage::I16 => push_primitive::<t::Int16Type>(b, col, array, range)?,
        Storage::I32 => {
            push_primitive::<t::Int32Type>(b, col, array, range.clone())?
                || push_primitive::<t::Date32Type>(b, col, array, range)?
        }
        Storage::I64 => push_i64(b, col, array, range)?,
        Storage::I128 => push_i128(b, col, field, array, range)?,
        Storage::U8 => push_primitive::<t::UInt8Type>(b, col, array, range)?,
        Storage::U16 => push_primitive::<t::UInt16Type>(b, col, array, range)?,
        Storage::U32 => push_primitive::<t::UInt32Type>(b, col, array, range)?,
        Storage::U64 => push_primitive::<t::UInt64Type>(b, col, array, range)?,
        Storage::F32 => push_primitive::<t::Float32Type>(b, col, array, range)?,
        Storage::F64 => push_primitive::<t::Float64Type>(b, col, array, range)?,
        Storage::Utf8 => match text_at(array) {
            Some(get) => push_each(b, col, array, range, |i| Ok(get(i))).map(|()| true)?,
            None => false,
        },
        Storage::Binary => match bytes_at(array) {
            Some(get) => push_each(b, col, array, range, |i| Ok(get(i))).map(|()| true)?,
            None => false,
        },
        Storage::Uuid => match (text_at(array), array.as_fixed_size_binary_opt()) {
            (Some(get), _) => push_each(b, col, array, range, |i| {
                parse_uuid(get(i)).ok_or_else(|| {
                    Error::Decode(format!("column `{name}`: `{}` is not a UUID", get(i)))
                })
            })
            .map(|()| true)?,
            (None, Some(a)) if a.value_length() == 16 => push_each(b, col, array, range, |i| {
                let mut u = [0u8; 16];
                u.copy_from_slice(a.value(i));
                Ok(u)
            })
            .map(|()| true)?,
            _ => false,
        },
        Storage::OffsetTimestamp => match timestamp_micros(array) {
            Some(get) => push_each(b, col, array, range, |i| {
                Ok(caudal_connector::OffsetTimestamp {
                    utc_micros: get(i).ok_or_else(|| overflow(name))?,
                    offset_minutes: 0,
                })
            })
            .map(|()| true)?,
            None => false,
        },
        Storage::Interval => match array.data_type() {
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                let a = array.as_primitive::<t::IntervalMonthDayNanoType>();
                push_each(b, col, array, range, |i| {
                    let v = a.value(i);
                    Ok(caudal_connector::Interval {
                        months: v.months,
                        days: v.days,
                        micros: v.nanoseconds.div_euclid(1000),
                    })
                })
                .map(|()| true)?
            }
            _ => false,
        },
    };
    if done {
        Ok(())
    } else {
        Err(Error::Schema(format!(
            "column `{name}` ({:?}): DuckDB returned Arrow type {}, which does not read as it",
            field.logical_type,
            array.data_type()
        )))
    }
}

fn overflow(name: &str) -> Error {
    Error::Decode(format!(
        "column `{name}`: a timestamp is outside the microsecond range of an i64"
    ))
}

/// Microseconds of a timestamp array of any unit (nanoseconds truncated toward the past).
fn timestamp_micros<'a>(array: &'a dyn Array) -> Option<Box<dyn Fn(usize) -> Option<i64> + 'a>> {
    use duckdb::arrow::datatypes as t;
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let a = array.as_primitive::<t::TimestampMicrosecondType>();
            Some(Box::new(move |i| Some(a.value(i))))
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            let a = array.as_primitive::<t::TimestampMillisecondType>();
            Some(Box::new(move |i| a.value(i).checked_mul(1000)))
        }
        DataType::Timestamp(TimeUnit::Second, _) => {
            let a = array.as_primitive::<t::TimestampSecondType>();
            Some(Box::new(move |i| a.value(i).checked_mul(1_000_000)))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            let a = array.as_primitive::<t::TimestampNanosecondType>();
            Some(Box::new(move |i| Some(a.value(i).div_euclid(1000))))
        }
        _ => None,
    }
}

fn push_i64(
    b: &mut BatchBuilder,
    col: usize,
    array: &dyn Array,
    range: Range<usize>,
) -> Result<bool> {
    use duckdb::arrow::datatypes as t;
    if let Some(get) = timestamp_micros(array) {
        let name = b.schema().fields()[col].name.clone();
        push_each(b, col, array, range, |i| {
            get(i).ok_or_else(|| overflow(&name))
        })?;
        return Ok(true);
    }
    match array.data_type() {
        DataType::Time64(TimeUnit::Nanosecond) => {
            let a = array.as_primitive::<t::Time64NanosecondType>();
            push_each(b, col, array, range, |i| Ok(a.value(i).div_euclid(1000)))?;
            Ok(true)
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            push_primitive::<t::Time64MicrosecondType>(b, col, array, range)
        }
        _ => push_primitive::<t::Int64Type>(b, col, array, range),
    }
}

fn push_i128(
    b: &mut BatchBuilder,
    col: usize,
    field: &Field,
    array: &dyn Array,
    range: Range<usize>,
) -> Result<bool> {
    let name = &field.name;
    if let Some(get) = text_at(array) {
        push_each(b, col, array, range, |i| {
            get(i).parse::<i128>().map_err(|_| {
                Error::Decode(format!(
                    "column `{name}`: `{}` is not a 128-bit integer",
                    get(i)
                ))
            })
        })?;
        return Ok(true);
    }
    let target = field.logical_type.decimal_scale().unwrap_or(0);
    let (values, scale): (Box<dyn Fn(usize) -> i128 + '_>, i8) = match array.data_type() {
        DataType::Decimal128(_, s) => {
            let a = array.as_primitive::<duckdb::arrow::datatypes::Decimal128Type>();
            (Box::new(move |i| a.value(i)), *s)
        }
        DataType::Decimal64(_, s) => {
            let a = array.as_primitive::<duckdb::arrow::datatypes::Decimal64Type>();
            (Box::new(move |i| i128::from(a.value(i))), *s)
        }
        DataType::Decimal32(_, s) => {
            let a = array.as_primitive::<duckdb::arrow::datatypes::Decimal32Type>();
            (Box::new(move |i| i128::from(a.value(i))), *s)
        }
        _ => return Ok(false),
    };
    let from = u8::try_from(scale)
        .map_err(|_| Error::Decode(format!("column `{name}`: negative decimal scale {scale}")))?;
    if from == target {
        push_each(b, col, array, range, |i| Ok(values(i)))?;
    } else {
        push_each(b, col, array, range, |i| {
            rescale(values(i), from, target).ok_or_else(|| {
                Error::Decode(format!(
                    "column `{name}`: {} at scale {from} does not fit scale {target} exactly",
                    values(i)
                ))
            })
        })?;
    }
    Ok(true)
}

fn rescale(v: i128, from: u8, to: u8) -> Option<i128> {
    if to >= from {
        10i128.checked_pow(u32::from(to - from))?.checked_mul(v)
    } else {
        let d = 10i128.checked_pow(u32::from(from - to))?;
        (v % d == 0).then_some(v / d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_connector::sample::{all_types_batch, all_types_schema};

    #[test]
    fn every_sample_type_converts_to_arrow() {
        let schema = Arc::new(all_types_schema());
        let batch = all_types_batch(&schema, 0, 200).unwrap();
        let all: Vec<usize> = (0..schema.len()).collect();
        let rb = record_batch(&batch, &all).unwrap();
        assert_eq!(rb.num_rows(), 200);
        assert_eq!(rb.num_columns(), schema.len());
        for (i, c) in batch.columns().iter().enumerate() {
            assert_eq!(
                rb.column(i).null_count(),
                c.null_count(),
                "{}",
                schema.fields()[i].name
            );
        }
        let uuid = rb.schema().field_with_name("c_uuid").unwrap().clone();
        assert_eq!(uuid.extension_type_name(), Some("arrow.uuid"));
        // HUGEINT crosses as exact text.
        let i128_col = rb
            .column(schema.index_of("c_i128").unwrap())
            .as_string::<i32>();
        let row = (0..200).find(|r| !batch.columns()[6].is_null(*r)).unwrap();
        assert_eq!(
            i128_col.value(row).parse::<i128>().unwrap(),
            batch.columns()[6].data().as_i128().unwrap()[row]
        );
    }

    #[test]
    fn key_columns_only() {
        let schema = Arc::new(all_types_schema());
        let batch = all_types_batch(&schema, 0, 10).unwrap();
        let rb = record_batch(&batch, &[0]).unwrap();
        assert_eq!(rb.num_columns(), 1);
        assert_eq!(rb.schema().field(0).name(), "id");
    }

    fn one_column(t: LogicalType) -> Arc<Schema> {
        Arc::new(Schema::new(vec![Field::new("c", t, true)], &[]).unwrap())
    }

    #[test]
    fn out_of_range_values_name_column_and_row() {
        let mut b = BatchBuilder::new(one_column(LogicalType::Time { precision: 6 }));
        b.push(0, 5i64).unwrap();
        b.push(0, -1i64).unwrap();
        let err = record_batch(&b.finish().unwrap(), &[0])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`c` row 1") && err.contains("TIME"), "{err}");

        let mut b = BatchBuilder::new(one_column(LogicalType::Decimal {
            precision: 3,
            scale: 1,
        }));
        b.push(0, 999i128).unwrap();
        b.push(0, 1000i128).unwrap();
        let err = record_batch(&b.finish().unwrap(), &[0])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`c` row 1") && err.contains("3 digits"),
            "{err}"
        );

        let mut b = BatchBuilder::new(one_column(LogicalType::Enum {
            variants: vec!["a".into()],
        }));
        b.push(0, "a").unwrap();
        b.push_null(0).unwrap();
        b.push(0, "b").unwrap();
        let err = record_batch(&b.finish().unwrap(), &[0])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`c` row 2") && err.contains("`b`"), "{err}");
    }

    #[test]
    fn intervals_cross_as_exact_text_with_their_nulls() {
        let mut b = BatchBuilder::new(one_column(LogicalType::Interval));
        let big = caudal_connector::Interval {
            months: -1,
            days: 2,
            micros: i64::MAX,
        };
        b.push(0, big).unwrap();
        b.push_null(0).unwrap();
        let rb = record_batch(&b.finish().unwrap(), &[0]).unwrap();
        let text = rb.column(0).as_string::<i32>();
        assert_eq!(
            text.value(0),
            format!("-1 months 2 days {} microseconds", i64::MAX)
        );
        assert!(text.is_null(1));
    }

    #[test]
    fn arrow_rows_digest_like_the_batch_they_read_into() {
        use duckdb::arrow::array::{Date32Array, Int64Array, TimestampNanosecondArray};
        let schema = Arc::new(
            Schema::new(
                vec![
                    Field::new("id", LogicalType::Int64, false),
                    Field::new("name", LogicalType::Varchar { max_length: None }, true),
                    Field::new(
                        "price",
                        LogicalType::Decimal {
                            precision: 12,
                            scale: 2,
                        },
                        true,
                    ),
                    Field::new(
                        "rate",
                        LogicalType::Decimal {
                            precision: 12,
                            scale: 4,
                        },
                        true,
                    ),
                    Field::new("day", LogicalType::Date, true),
                    Field::new("ok", LogicalType::Bool, true),
                    Field::new("at", LogicalType::Timestamp { precision: 6 }, true),
                ],
                &["id"],
            )
            .unwrap(),
        );
        let n = 300usize;
        let some = |i: usize| i % 7 != 3;
        let names: Vec<Option<String>> = (0..n)
            .map(|i| some(i).then(|| "x".repeat(i % 13)))
            .collect();
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| i * 3))),
            Arc::new(StringArray::from(names)),
            Arc::new(
                Decimal128Array::from_iter((0..n).map(|i| some(i).then_some(i as i128 * 1001)))
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
            ),
            // At another scale than the column's: converted.
            Arc::new(
                Decimal128Array::from_iter((0..n).map(|i| some(i + 1).then_some(i as i128)))
                    .with_precision_and_scale(12, 1)
                    .unwrap(),
            ),
            Arc::new(Date32Array::from_iter(
                (0..n).map(|i| some(i + 2).then_some(i as i32 - 100)),
            )),
            // Bits in Arrow, bytes in a batch: converted.
            Arc::new(BooleanArray::from_iter(
                (0..n).map(|i| some(i + 3).then_some(i % 2 == 0)),
            )),
            // Nanoseconds: converted.
            Arc::new(
                TimestampNanosecondArray::from_iter(
                    (0..n).map(|i| some(i + 4).then_some(i as i64 * 1_000_123)),
                )
                .with_timezone_utc(),
            ),
        ];
        let fields: Vec<ArrowField> = arrays
            .iter()
            .enumerate()
            .map(|(i, a)| ArrowField::new(format!("f{i}"), a.data_type().clone(), true))
            .collect();
        let whole = RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), arrays).unwrap();
        // Sliced as DuckDB's reader may hand them on: offsets into values, validity and
        // text offsets that do not start at 0.
        for (start, len) in [(0, n), (5, 200), (17, 1), (3, 0)] {
            let rb = whole.slice(start, len);
            let mut b = BatchBuilder::new(Arc::clone(&schema));
            push_rows(&mut b, &rb, 0..len).unwrap();
            let want = caudal_connector::TableDigest::of_batch("t", &b.finish().unwrap());
            let rows = ArrowRows::new(rb, Arc::clone(&schema)).unwrap();
            assert_eq!(rows.in_place_columns(), 4);
            let mut digester = caudal_connector::Digester::new("t");
            digester.push_rows(rows);
            let got = digester.finish().unwrap();
            assert_eq!(got, want, "rows {start}..{}", start + len);
            assert_eq!(got.rows(), len as i64);
        }
        // A column DuckDB returned as something it does not read as: named.
        let rb = whole.slice(0, 10);
        let wrong = Arc::new(
            Schema::new(
                vec![
                    Field::new("id", LogicalType::Date, false),
                    Field::new("name", LogicalType::Varchar { max_length: None }, true),
                    Field::new("price", LogicalType::Float64, true),
                    Field::new("rate", LogicalType::Float64, true),
                    Field::new("day", LogicalType::Date, true),
                    Field::new("ok", LogicalType::Bool, true),
                    Field::new("at", LogicalType::Timestamp { precision: 6 }, true),
                ],
                &[],
            )
            .unwrap(),
        );
        let err = ArrowRows::new(rb, wrong).err().unwrap().to_string();
        assert!(err.contains("column `id`"), "{err}");
    }

    #[test]
    fn arrow_reads_back_into_the_same_batch() {
        // Arrow arrays of the shapes DuckDB returns for the cast select list.
        let schema = Arc::new(
            Schema::new(
                vec![
                    Field::new("i", LogicalType::Int128, true),
                    Field::new("u", LogicalType::Uuid, true),
                    Field::new(
                        "d",
                        LogicalType::Decimal {
                            precision: 12,
                            scale: 4,
                        },
                        true,
                    ),
                    Field::new("t", LogicalType::Timestamp { precision: 6 }, true),
                    Field::new("o", LogicalType::DateTimeOffset { precision: 6 }, true),
                    Field::new("n", LogicalType::Int64, false),
                ],
                &[],
            )
            .unwrap(),
        );
        let uuid = "01234567-89ab-cdef-0011-223344556677";
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![
                Some("-170141183460469231731687303715884105728"),
                None,
            ])),
            Arc::new(StringArray::from(vec![Some(uuid), None])),
            Arc::new(
                Decimal128Array::from(vec![Some(15i128), None])
                    .with_precision_and_scale(12, 1)
                    .unwrap(),
            ),
            Arc::new(
                duckdb::arrow::array::TimestampNanosecondArray::from(vec![Some(-1500i64), None])
                    .with_timezone_utc(),
            ),
            Arc::new(TimestampMicrosecondArray::from(vec![Some(7i64), None]).with_timezone_utc()),
            Arc::new(duckdb::arrow::array::Int64Array::from(vec![1, 2])),
        ];
        let fields: Vec<ArrowField> = arrays
            .iter()
            .enumerate()
            .map(|(i, a)| ArrowField::new(format!("f{i}"), a.data_type().clone(), true))
            .collect();
        let rb = RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), arrays).unwrap();
        let mut b = BatchBuilder::new(Arc::clone(&schema));
        push_rows(&mut b, &rb, 0..2).unwrap();
        let batch = b.finish().unwrap();
        assert_eq!(batch.value(0, 0), Some(Value::Int128(i128::MIN)));
        assert_eq!(
            batch.value(0, 1),
            Some(Value::Uuid(parse_uuid(uuid).unwrap()))
        );
        assert_eq!(
            batch.value(0, 2),
            Some(Value::Decimal {
                unscaled: 15000,
                scale: 4
            })
        );
        assert_eq!(batch.value(0, 3), Some(Value::Timestamp(-2)));
        assert_eq!(
            batch.value(0, 4),
            Some(Value::DateTimeOffset(caudal_connector::OffsetTimestamp {
                utc_micros: 7,
                offset_minutes: 0
            }))
        );
        for c in 0..5 {
            assert_eq!(batch.value(1, c), Some(Value::Null));
        }
        // A wrong Arrow type names the column.
        let mut b = BatchBuilder::new(one_column(LogicalType::Date));
        let rb = RecordBatch::try_new(
            Arc::new(ArrowSchema::new(vec![ArrowField::new(
                "c",
                DataType::Utf8,
                true,
            )])),
            vec![Arc::new(StringArray::from(vec!["x"]))],
        )
        .unwrap();
        let err = push_rows(&mut b, &rb, 0..1).unwrap_err().to_string();
        assert!(err.contains("`c`") && err.contains("Utf8"), "{err}");
    }
}
