//! TDS values -> batch values, in the logical type of the column being filled.
//!
//! The target type is the stream's (for a digest, the schema the source read with), so values
//! stored in another SQL Server type by the sink come back as they were sent: the digits of a
//! `varchar(40)` as an `Int128`, a `decimal(20,0)` as a `UInt64`, an interval's text as an
//! `Interval`. Temporal values are converted with integer arithmetic: a `datetime`'s 1/300 s
//! ticks become microseconds truncated (`ticks * 10_000 / 3`), which `encode::datetime_ticks`
//! turns back into the same ticks.

use caudal_connector::{BatchBuilder, Interval, LogicalType, OffsetTimestamp, Value};
use tiberius::ColumnData;

use crate::encode::{DAY_MICROS, DAYS_0001_TO_1970, DAYS_1900_TO_1970};
use crate::error::{Error, Result};

fn time_micros(increments: u64, scale: u8) -> i64 {
    let v = if scale >= 6 {
        increments / 10u64.pow(u32::from(scale - 6))
    } else {
        increments * 10u64.pow(u32::from(6 - scale))
    };
    v as i64
}

/// Parses `"<months>mo <days>d <micros>us"`.
pub fn parse_interval(s: &str) -> Option<Interval> {
    let mut it = s.split_whitespace();
    let months = it.next()?.strip_suffix("mo")?.parse().ok()?;
    let days = it.next()?.strip_suffix('d')?.parse().ok()?;
    let micros = it.next()?.strip_suffix("us")?.parse().ok()?;
    it.next().is_none().then_some(Interval {
        months,
        days,
        micros,
    })
}

fn instant(micros: i64, offset_minutes: i16, target: &LogicalType) -> Value {
    match target {
        LogicalType::DateTimeOffset { .. } => Value::DateTimeOffset(OffsetTimestamp {
            utc_micros: micros,
            offset_minutes,
        }),
        LogicalType::Timestamp { .. } => Value::Timestamp(micros),
        LogicalType::Date => Value::Date(micros.div_euclid(DAY_MICROS) as i32),
        _ => Value::DateTime(micros),
    }
}

/// The value of `data` as a value of logical type `target`.
pub fn value(data: &ColumnData<'_>, target: &LogicalType) -> std::result::Result<Value, String> {
    use LogicalType as L;
    let int = |i: i64| match target {
        L::Bool => Value::Bool(i != 0),
        _ => Value::Int(i),
    };
    Ok(match data {
        ColumnData::U8(v) => v.map_or(Value::Null, |x| int(i64::from(x))),
        ColumnData::I16(v) => v.map_or(Value::Null, |x| int(i64::from(x))),
        ColumnData::I32(v) => v.map_or(Value::Null, |x| int(i64::from(x))),
        ColumnData::I64(v) => v.map_or(Value::Null, int),
        ColumnData::F32(v) => v.map_or(Value::Null, |x| Value::Float(f64::from(x))),
        ColumnData::F64(v) => v.map_or(Value::Null, Value::Float),
        ColumnData::Bit(v) => match (v, target) {
            (None, _) => Value::Null,
            (Some(b), L::Bool) => Value::Bool(*b),
            (Some(b), _) => Value::Int(i64::from(*b)),
        },
        ColumnData::Numeric(v) => match v {
            None => Value::Null,
            Some(n) if target.decimal_scale().is_none() && n.scale() == 0 => {
                Value::Int128(n.value())
            }
            Some(n) => Value::Decimal {
                unscaled: n.value(),
                scale: n.scale(),
            },
        },
        ColumnData::String(v) => match (v, target) {
            (None, _) => Value::Null,
            (Some(s), L::Int128) => Value::Int128(
                s.trim()
                    .parse()
                    .map_err(|_| format!("`{s}` is not a 128-bit integer"))?,
            ),
            (Some(s), L::Interval) => Value::Interval(
                parse_interval(s).ok_or_else(|| format!("`{s}` is not an interval"))?,
            ),
            (Some(s), L::Uuid) => Value::Uuid(
                *uuid::Uuid::parse_str(s)
                    .map_err(|e| format!("`{s}`: {e}"))?
                    .as_bytes(),
            ),
            (Some(s), _) => Value::Text(s.to_string()),
        },
        ColumnData::Guid(v) => v.map_or(Value::Null, |u| Value::Uuid(*u.as_bytes())),
        ColumnData::Binary(v) => match (v, target) {
            (None, _) => Value::Null,
            (Some(b), L::Uuid) => Value::Uuid(
                b.as_ref()
                    .try_into()
                    .map_err(|_| format!("{} bytes are not a UUID", b.len()))?,
            ),
            (Some(b), _) => Value::Bytes(b.to_vec()),
        },
        ColumnData::Xml(v) => v
            .as_ref()
            .map_or(Value::Null, |x| Value::Text(x.to_string())),
        ColumnData::DateTime(v) => v.map_or(Value::Null, |d| {
            let days = i64::from(d.days()) - DAYS_1900_TO_1970;
            let micros = i64::from(d.seconds_fragments()) * 10_000 / 3;
            instant(days * DAY_MICROS + micros, 0, target)
        }),
        ColumnData::SmallDateTime(v) => v.map_or(Value::Null, |d| {
            let days = i64::from(d.days()) - DAYS_1900_TO_1970;
            instant(
                days * DAY_MICROS + i64::from(d.seconds_fragments()) * 60_000_000,
                0,
                target,
            )
        }),
        ColumnData::Time(v) => v.map_or(Value::Null, |t| {
            Value::Time(time_micros(t.increments(), t.scale()))
        }),
        ColumnData::Date(v) => v.map_or(Value::Null, |d| match target {
            L::DateTime { .. } => {
                Value::DateTime((i64::from(d.days()) - DAYS_0001_TO_1970) * DAY_MICROS)
            }
            _ => Value::Date((i64::from(d.days()) - DAYS_0001_TO_1970) as i32),
        }),
        ColumnData::DateTime2(v) => v.map_or(Value::Null, |d| {
            let days = i64::from(d.date().days()) - DAYS_0001_TO_1970;
            let micros = time_micros(d.time().increments(), d.time().scale());
            instant(days * DAY_MICROS + micros, 0, target)
        }),
        ColumnData::DateTimeOffset(v) => v.map_or(Value::Null, |o| {
            let d = o.datetime2();
            let days = i64::from(d.date().days()) - DAYS_0001_TO_1970;
            let micros = time_micros(d.time().increments(), d.time().scale());
            instant(days * DAY_MICROS + micros, o.offset(), target)
        }),
    })
}

/// Appends a row's cells (in schema order) to `builder`.
pub fn push_row<'a>(
    builder: &mut BatchBuilder,
    cells: impl Iterator<Item = &'a ColumnData<'static>>,
) -> Result<()> {
    let schema = std::sync::Arc::clone(builder.schema());
    for (i, (data, field)) in cells.zip(schema.fields()).enumerate() {
        let v = value(data, &field.logical_type)
            .map_err(|why| Error::Decode(format!("column `{}`: {why}", field.name)))?;
        builder.push_value(i, &v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Cell, encode};
    use crate::types::SqlType;
    use proptest::prelude::*;

    fn back(v: &Value, sql: SqlType, t: &LogicalType) -> Value {
        let data = encode(Cell::of_value(v).unwrap(), &sql).unwrap();
        value(&data, t).unwrap()
    }

    #[test]
    fn intervals() {
        let i = Interval {
            months: 14,
            days: -3,
            micros: -5,
        };
        assert_eq!(parse_interval(&crate::encode::interval_text(&i)), Some(i));
        assert_eq!(parse_interval("1mo 2d"), None);
    }

    #[test]
    fn values_stored_in_other_types_come_back() {
        let t = LogicalType::Int128;
        assert_eq!(
            back(
                &Value::Int128(i128::MIN),
                SqlType::VarChar { length: Some(40) },
                &t
            ),
            Value::Int128(i128::MIN)
        );
        let t = LogicalType::UInt64;
        assert_eq!(
            back(
                &Value::UInt(u64::MAX),
                SqlType::Decimal {
                    precision: 20,
                    scale: 0
                },
                &t
            ),
            Value::Int128(i128::from(u64::MAX))
        );
        let t = LogicalType::Timestamp { precision: 6 };
        assert_eq!(
            back(
                &Value::Timestamp(-1),
                SqlType::DateTimeOffset { scale: 6 },
                &t
            ),
            Value::Timestamp(-1)
        );
    }

    proptest! {
        #[test]
        fn datetime2_and_offsets_round_trip(
            micros in -62_135_596_800_000_000i64..253_402_300_799_999_999,
            offset in -840i16..=840,
        ) {
            let t = LogicalType::DateTime { precision: 6 };
            prop_assert_eq!(
                back(&Value::DateTime(micros), SqlType::DateTime2 { scale: 6 }, &t),
                Value::DateTime(micros)
            );
            let o = OffsetTimestamp { utc_micros: micros, offset_minutes: offset };
            let t = LogicalType::DateTimeOffset { precision: 6 };
            prop_assert_eq!(
                back(&Value::DateTimeOffset(o), SqlType::DateTimeOffset { scale: 7 }, &t),
                Value::DateTimeOffset(o)
            );
        }

        #[test]
        fn datetime_values_read_once_keep_their_ticks(days in -53_690i32..2_958_463, ticks in 0u32..25_920_000) {
            let original = ColumnData::DateTime(Some(tiberius::time::DateTime::new(days, ticks)));
            let t = LogicalType::DateTime { precision: 6 };
            let v = value(&original, &t).unwrap();
            let again = encode(Cell::of_value(&v).unwrap(), &SqlType::DateTime).unwrap();
            prop_assert_eq!(again, original);
        }

        #[test]
        fn decimals_round_trip(unscaled in -(10i128.pow(18) - 1)..10i128.pow(18), scale in 0u8..=18) {
            let t = LogicalType::Decimal { precision: 38, scale };
            let v = Value::Decimal { unscaled, scale };
            prop_assert_eq!(back(&v, SqlType::Decimal { precision: 38, scale }, &t), v);
        }
    }
}
