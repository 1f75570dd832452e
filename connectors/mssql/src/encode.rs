//! Batch values -> TDS values: the cells of bulk-loaded rows and the parameters of statements.
//!
//! A value is converted for the SQL Server type of the column it goes to ([`encode`]), not for
//! its logical type alone: a `datetime` column gets a `datetime` with the same 1/300 s ticks
//! the source had, a `varchar(40)` holding an `Int128` gets its digits. Values a column cannot
//! hold (a NaN, an integer out of range, a time past midnight) are errors naming why; the
//! caller adds table, column and row.

use std::borrow::Cow;

use caudal_connector::{Column, ColumnData as Data, Interval, LogicalType, OffsetTimestamp, Value};
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
use tiberius::{ColumnData, Uuid};

use crate::types::SqlType;

/// Days from 0001-01-01 (TDS `date`) to 1970-01-01.
pub const DAYS_0001_TO_1970: i64 = 719_162;
/// Days from 1900-01-01 (TDS `datetime`) to 1970-01-01.
pub const DAYS_1900_TO_1970: i64 = 25_567;
/// Microseconds in a day.
pub const DAY_MICROS: i64 = 86_400_000_000;

/// One value, borrowed from a batch or a [`Value`], in the classes the encoder knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer (signed, unsigned, year, bits).
    Int(i128),
    /// A decimal or money value: unscaled, scale.
    Decimal(i128, u8),
    /// A float or double.
    Float(f64),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since 1970-01-01, no zone.
    DateTime(i64),
    /// An instant with its offset (a UTC timestamp has offset 0).
    Offset(OffsetTimestamp),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Bytes(&'a [u8]),
    /// A UUID, RFC 4122 byte order.
    Uuid([u8; 16]),
    /// A calendar interval.
    Interval(Interval),
}

impl<'a> Cell<'a> {
    /// Cell `row` of `column`, of logical type `t`.
    pub fn of_column(column: &'a Column, t: &LogicalType, row: usize) -> Cell<'a> {
        if column.is_null(row) {
            return Cell::Null;
        }
        let int = |v: Option<i128>| v.map_or(Cell::Null, Cell::Int);
        match column.data() {
            Data::Bool(v) => v.get(row).map_or(Cell::Null, |b| Cell::Bool(*b)),
            Data::I8(v) => int(v.get(row).map(|x| i128::from(*x))),
            Data::I16(v) => int(v.get(row).map(|x| i128::from(*x))),
            Data::I32(v) if *t == LogicalType::Date => {
                v.get(row).map_or(Cell::Null, |d| Cell::Date(*d))
            }
            Data::I32(v) => int(v.get(row).map(|x| i128::from(*x))),
            Data::I64(v) => match (t, v.get(row)) {
                (_, None) => Cell::Null,
                (LogicalType::Time { .. }, Some(x)) => Cell::Time(*x),
                (LogicalType::DateTime { .. }, Some(x)) => Cell::DateTime(*x),
                (LogicalType::Timestamp { .. }, Some(x)) => Cell::Offset(OffsetTimestamp {
                    utc_micros: *x,
                    offset_minutes: 0,
                }),
                (_, Some(x)) => Cell::Int(i128::from(*x)),
            },
            Data::I128(v) => match (t.decimal_scale(), v.get(row)) {
                (_, None) => Cell::Null,
                (Some(s), Some(x)) => Cell::Decimal(*x, s),
                (None, Some(x)) => Cell::Int(*x),
            },
            Data::U8(v) => int(v.get(row).map(|x| i128::from(*x))),
            Data::U16(v) => int(v.get(row).map(|x| i128::from(*x))),
            Data::U32(v) => int(v.get(row).map(|x| i128::from(*x))),
            Data::U64(v) => int(v.get(row).map(|x| i128::from(*x))),
            Data::F32(v) => v
                .get(row)
                .map_or(Cell::Null, |x| Cell::Float(f64::from(*x))),
            Data::F64(v) => v.get(row).map_or(Cell::Null, |x| Cell::Float(*x)),
            Data::Utf8(v) => Cell::Text(v.get(row)),
            Data::Binary(v) => Cell::Bytes(v.get(row)),
            Data::Uuid(v) => v.get(row).map_or(Cell::Null, |u| Cell::Uuid(*u)),
            Data::OffsetTimestamp(v) => v.get(row).map_or(Cell::Null, |o| Cell::Offset(*o)),
            Data::Interval(v) => v.get(row).map_or(Cell::Null, |i| Cell::Interval(*i)),
        }
    }

    /// The cell of a single value.
    pub fn of_value(v: &'a Value) -> Result<Cell<'a>, String> {
        Ok(match v {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(*b),
            Value::Int(i) => Cell::Int(i128::from(*i)),
            Value::UInt(u) => Cell::Int(i128::from(*u)),
            Value::Int128(i) => Cell::Int(*i),
            Value::Float(f) => Cell::Float(*f),
            Value::Decimal { unscaled, scale } => Cell::Decimal(*unscaled, *scale),
            Value::Date(d) => Cell::Date(*d),
            Value::Time(t) => Cell::Time(*t),
            Value::DateTime(m) => Cell::DateTime(*m),
            Value::Timestamp(m) => Cell::Offset(OffsetTimestamp {
                utc_micros: *m,
                offset_minutes: 0,
            }),
            Value::DateTimeOffset(o) => Cell::Offset(*o),
            Value::Text(s) => Cell::Text(s),
            Value::Bytes(b) => Cell::Bytes(b),
            Value::Uuid(u) => Cell::Uuid(*u),
            Value::Interval(i) => Cell::Interval(*i),
            other => return Err(format!("{other:?} has no SQL Server value")),
        })
    }
}

/// The interval text stored in a `varchar(64)`: `"<months>mo <days>d <micros>us"`.
pub fn interval_text(i: &Interval) -> String {
    format!("{}mo {}d {}us", i.months, i.days, i.micros)
}

/// `unscaled * 10^-from` at scale `to`, if no digit is lost and it fits.
pub fn rescale(unscaled: i128, from: u8, to: u8) -> Option<i128> {
    if to >= from {
        unscaled.checked_mul(10i128.checked_pow(u32::from(to - from))?)
    } else {
        let div = 10i128.checked_pow(u32::from(from - to))?;
        (unscaled % div == 0).then(|| unscaled / div)
    }
}

fn digits(v: i128) -> u32 {
    let mut n = v.unsigned_abs();
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// The decimal text of `unscaled * 10^-scale`.
pub fn decimal_text(unscaled: i128, scale: u8) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    let scale = usize::from(scale);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

fn date_days(days_1970: i64) -> Result<Date, String> {
    let d = days_1970 + DAYS_0001_TO_1970;
    // 0001-01-01 ..= 9999-12-31.
    if !(0..=3_652_058).contains(&d) {
        return Err(format!(
            "date {days_1970} (days since 1970) is outside 0001..9999"
        ));
    }
    Ok(Date::new(d as u32))
}

fn time_at(micros: i64, scale: u8) -> Result<Time, String> {
    if !(0..DAY_MICROS).contains(&micros) {
        return Err(format!(
            "time of {micros} µs is outside a day (SQL Server `time` holds 00:00..24:00)"
        ));
    }
    let increments = if scale >= 6 {
        micros as u64 * 10u64.pow(u32::from(scale - 6))
    } else {
        micros as u64 / 10u64.pow(u32::from(6 - scale))
    };
    Ok(Time::new(increments, scale))
}

fn datetime2_at(micros: i64, scale: u8) -> Result<DateTime2, String> {
    let days = micros.div_euclid(DAY_MICROS);
    let time = micros.rem_euclid(DAY_MICROS);
    Ok(DateTime2::new(date_days(days)?, time_at(time, scale)?))
}

/// A `datetime` with the 1/300 s tick nearest to `micros`: exactly the ticks of a value read
/// from a `datetime` column (whose microseconds were truncated from the ticks).
pub fn datetime_ticks(micros: i64) -> Result<DateTime, String> {
    let mut days = micros.div_euclid(DAY_MICROS) + DAYS_1900_TO_1970;
    let in_day = micros.rem_euclid(DAY_MICROS);
    let mut ticks = (i128::from(in_day) * 3 + 5_000) / 10_000;
    if ticks >= 300 * 86_400 {
        ticks -= 300 * 86_400;
        days += 1;
    }
    // 1753-01-01 ..= 9999-12-31.
    if !(-53_690..=2_958_463).contains(&days) {
        return Err("datetime outside 1753..9999".into());
    }
    Ok(DateTime::new(days as i32, ticks as u32))
}

fn small_datetime(micros: i64) -> Result<SmallDateTime, String> {
    // Rounded to the minute, as SQL Server does.
    let minutes = (micros + 30_000_000).div_euclid(60_000_000);
    let days = minutes.div_euclid(1440) + DAYS_1900_TO_1970;
    let in_day = minutes.rem_euclid(1440);
    if !(0..=65_535).contains(&days) {
        return Err("smalldatetime outside 1900-01-01..2079-06-06".into());
    }
    Ok(SmallDateTime::new(days as u16, in_day as u16))
}

fn guid(bytes: &[u8]) -> Result<Uuid, String> {
    Uuid::from_slice(bytes).map_err(|_| format!("{} bytes are not a uniqueidentifier", bytes.len()))
}

fn text_of(cell: Cell<'_>) -> Result<Cow<'_, str>, String> {
    Ok(match cell {
        Cell::Text(s) => Cow::Borrowed(s),
        Cell::Int(i) => Cow::Owned(i.to_string()),
        Cell::Decimal(u, s) => Cow::Owned(decimal_text(u, s)),
        Cell::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        Cell::Float(f) => Cow::Owned(f.to_string()),
        Cell::Uuid(u) => Cow::Owned(Uuid::from_bytes(u).hyphenated().to_string()),
        Cell::Interval(i) => Cow::Owned(interval_text(&i)),
        other => return Err(format!("{other:?} cannot be stored as text")),
    })
}

/// The TDS value of `cell` for a column of type `sql`.
pub fn encode<'a>(cell: Cell<'a>, sql: &SqlType) -> Result<ColumnData<'a>, String> {
    use SqlType as S;
    let null = matches!(cell, Cell::Null);
    let int = |lo: i128, hi: i128| -> Result<Option<i128>, String> {
        match cell {
            Cell::Null => Ok(None),
            Cell::Int(i) if (lo..=hi).contains(&i) => Ok(Some(i)),
            Cell::Bool(b) => Ok(Some(i128::from(b))),
            Cell::Decimal(u, s) => match rescale(u, s, 0) {
                Some(i) if (lo..=hi).contains(&i) => Ok(Some(i)),
                _ => Err(format!("{cell:?} is not an integer in {lo}..={hi}")),
            },
            other => Err(format!("{other:?} is not an integer in {lo}..={hi}")),
        }
    };
    Ok(match sql {
        S::Bit => ColumnData::Bit(match cell {
            Cell::Null => None,
            Cell::Bool(b) => Some(b),
            Cell::Int(0) => Some(false),
            Cell::Int(1) => Some(true),
            other => return Err(format!("{other:?} is not a bit")),
        }),
        S::TinyInt => ColumnData::U8(int(0, 255)?.map(|i| i as u8)),
        S::SmallInt => ColumnData::I16(int(i16::MIN.into(), i16::MAX.into())?.map(|i| i as i16)),
        S::Int => ColumnData::I32(int(i32::MIN.into(), i32::MAX.into())?.map(|i| i as i32)),
        S::BigInt => ColumnData::I64(int(i64::MIN.into(), i64::MAX.into())?.map(|i| i as i64)),
        S::Decimal { .. } | S::Money | S::SmallMoney => {
            let (precision, scale) = match sql {
                S::Decimal { precision, scale } => (*precision, *scale),
                S::Money => (19, 4),
                _ => (10, 4),
            };
            let unscaled = match cell {
                Cell::Null => None,
                Cell::Int(i) => Some(rescale(i, 0, scale)),
                Cell::Decimal(u, s) => Some(rescale(u, s, scale)),
                Cell::Bool(b) => Some(rescale(i128::from(b), 0, scale)),
                other => return Err(format!("{other:?} is not a number")),
            };
            match unscaled {
                None => ColumnData::Numeric(None),
                Some(Some(u)) if digits(u) <= u32::from(precision) => {
                    ColumnData::Numeric(Some(Numeric::new_with_scale(u, scale)))
                }
                Some(_) => {
                    return Err(format!(
                        "{cell:?} does not fit decimal({precision},{scale}) without losing digits"
                    ));
                }
            }
        }
        S::Real | S::Float => {
            let f = match cell {
                Cell::Null => None,
                Cell::Float(f) => Some(f),
                Cell::Int(i) => Some(i as f64),
                other => return Err(format!("{other:?} is not a number")),
            };
            if let Some(f) = f
                && !f.is_finite()
            {
                return Err(format!(
                    "{f} cannot be stored: SQL Server has no NaN or infinity"
                ));
            }
            if *sql == S::Real {
                ColumnData::F32(f.map(|f| f as f32))
            } else {
                ColumnData::F64(f)
            }
        }
        S::Date => ColumnData::Date(match cell {
            Cell::Null => None,
            Cell::Date(d) => Some(date_days(i64::from(d))?),
            Cell::DateTime(m) => Some(date_days(m.div_euclid(DAY_MICROS))?),
            other => return Err(format!("{other:?} is not a date")),
        }),
        S::Time { scale } => ColumnData::Time(match cell {
            Cell::Null => None,
            Cell::Time(m) => Some(time_at(m, *scale)?),
            other => return Err(format!("{other:?} is not a time of day")),
        }),
        S::DateTime | S::DateTime2 { .. } | S::SmallDateTime if null => match sql {
            S::DateTime => ColumnData::DateTime(None),
            S::SmallDateTime => ColumnData::SmallDateTime(None),
            _ => ColumnData::DateTime2(None),
        },
        S::DateTime | S::DateTime2 { .. } | S::SmallDateTime => {
            let micros = match cell {
                Cell::DateTime(m) => m,
                Cell::Date(d) => i64::from(d) * DAY_MICROS,
                Cell::Offset(o) => o.utc_micros,
                other => return Err(format!("{other:?} is not a date and time")),
            };
            match sql {
                S::DateTime => ColumnData::DateTime(Some(datetime_ticks(micros)?)),
                S::SmallDateTime => ColumnData::SmallDateTime(Some(small_datetime(micros)?)),
                S::DateTime2 { scale } => {
                    ColumnData::DateTime2(Some(datetime2_at(micros, *scale)?))
                }
                _ => unreachable!("matched above"),
            }
        }
        S::DateTimeOffset { scale } => ColumnData::DateTimeOffset(match cell {
            Cell::Null => None,
            Cell::Offset(o) => Some(DateTimeOffset::new(
                datetime2_at(o.utc_micros, *scale)?,
                o.offset_minutes,
            )),
            Cell::DateTime(m) => Some(DateTimeOffset::new(datetime2_at(m, *scale)?, 0)),
            other => return Err(format!("{other:?} is not an instant")),
        }),
        S::Char { .. }
        | S::VarChar { .. }
        | S::NChar { .. }
        | S::NVarChar { .. }
        | S::Text
        | S::NText
        | S::Xml => ColumnData::String(if null { None } else { Some(text_of(cell)?) }),
        S::Binary { .. } | S::VarBinary { .. } | S::Image => ColumnData::Binary(match cell {
            Cell::Null => None,
            Cell::Bytes(b) => Some(Cow::Borrowed(b)),
            Cell::Uuid(u) => Some(Cow::Owned(u.to_vec())),
            Cell::Text(s) => Some(Cow::Borrowed(s.as_bytes())),
            other => return Err(format!("{other:?} is not binary")),
        }),
        S::UniqueIdentifier => ColumnData::Guid(match cell {
            Cell::Null => None,
            Cell::Uuid(u) => Some(Uuid::from_bytes(u)),
            Cell::Bytes(b) => Some(guid(b)?),
            Cell::Text(s) => Some(Uuid::parse_str(s).map_err(|e| format!("`{s}`: {e}"))?),
            other => return Err(format!("{other:?} is not a uniqueidentifier")),
        }),
    })
}

/// The TDS value of a parameter.
pub fn param(value: &Value, sql: &SqlType) -> Result<ColumnData<'static>, String> {
    let cell = Cell::of_value(value)?;
    let data = encode(cell, sql)?;
    Ok(into_owned(data))
}

fn into_owned(d: ColumnData<'_>) -> ColumnData<'static> {
    match d {
        ColumnData::String(s) => ColumnData::String(s.map(|s| Cow::Owned(s.into_owned()))),
        ColumnData::Binary(b) => ColumnData::Binary(b.map(|b| Cow::Owned(b.into_owned()))),
        ColumnData::U8(v) => ColumnData::U8(v),
        ColumnData::I16(v) => ColumnData::I16(v),
        ColumnData::I32(v) => ColumnData::I32(v),
        ColumnData::I64(v) => ColumnData::I64(v),
        ColumnData::F32(v) => ColumnData::F32(v),
        ColumnData::F64(v) => ColumnData::F64(v),
        ColumnData::Bit(v) => ColumnData::Bit(v),
        ColumnData::Guid(v) => ColumnData::Guid(v),
        ColumnData::Numeric(v) => ColumnData::Numeric(v),
        ColumnData::DateTime(v) => ColumnData::DateTime(v),
        ColumnData::SmallDateTime(v) => ColumnData::SmallDateTime(v),
        ColumnData::Time(v) => ColumnData::Time(v),
        ColumnData::Date(v) => ColumnData::Date(v),
        ColumnData::DateTime2(v) => ColumnData::DateTime2(v),
        ColumnData::DateTimeOffset(v) => ColumnData::DateTimeOffset(v),
        ColumnData::Xml(v) => ColumnData::Xml(v.map(|x| Cow::Owned(x.into_owned()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_ticks_round_trip_through_truncated_micros() {
        // Every tick of a day: ticks -> micros (truncated, as decode does) -> the same ticks.
        for ticks in (0..300 * 86_400u32).step_by(7) {
            let micros = i64::from(ticks) * 10_000 / 3;
            let d = datetime_ticks(micros).unwrap();
            assert_eq!(d.seconds_fragments(), ticks, "{ticks}");
            assert_eq!(i64::from(d.days()), DAYS_1900_TO_1970);
        }
        // Past the last tick of a day: the next day's midnight.
        let d = datetime_ticks(DAY_MICROS - 1).unwrap();
        assert_eq!(
            (d.days(), d.seconds_fragments()),
            (DAYS_1900_TO_1970 as i32 + 1, 0)
        );
        assert!(datetime_ticks(-300 * 365 * DAY_MICROS).is_err());
    }

    #[test]
    fn decimals_keep_every_digit_or_fail() {
        assert_eq!(decimal_text(-1234, 2), "-12.34");
        assert_eq!(decimal_text(5, 3), "0.005");
        assert_eq!(decimal_text(i128::MAX, 0), i128::MAX.to_string());
        let d = SqlType::Decimal {
            precision: 5,
            scale: 2,
        };
        match encode(Cell::Decimal(12345, 3), &d) {
            Err(e) => assert!(e.contains("losing digits"), "{e}"),
            Ok(v) => panic!("{v:?}"),
        }
        match encode(Cell::Decimal(12340, 3), &d).unwrap() {
            ColumnData::Numeric(Some(n)) => assert_eq!((n.value(), n.scale()), (1234, 2)),
            other => panic!("{other:?}"),
        }
        assert!(encode(Cell::Int(1000), &d).is_err());
    }

    #[test]
    fn out_of_range_values_are_errors() {
        assert!(encode(Cell::Int(256), &SqlType::TinyInt).is_err());
        assert!(encode(Cell::Int(-1), &SqlType::TinyInt).is_err());
        assert!(encode(Cell::Float(f64::NAN), &SqlType::Float).is_err());
        assert!(encode(Cell::Time(DAY_MICROS), &SqlType::Time { scale: 6 }).is_err());
        assert!(encode(Cell::Text("x"), &SqlType::Int).is_err());
        assert!(matches!(
            encode(Cell::Null, &SqlType::Int),
            Ok(ColumnData::I32(None))
        ));
    }

    #[test]
    fn times_follow_the_column_scale() {
        match encode(Cell::Time(1_234_567), &SqlType::Time { scale: 7 }).unwrap() {
            ColumnData::Time(Some(t)) => assert_eq!((t.increments(), t.scale()), (12_345_670, 7)),
            other => panic!("{other:?}"),
        }
        match encode(Cell::DateTime(-1), &SqlType::DateTime2 { scale: 6 }).unwrap() {
            ColumnData::DateTime2(Some(d)) => {
                assert_eq!(i64::from(d.date().days()), DAYS_0001_TO_1970 - 1);
                assert_eq!(d.time().increments(), (DAY_MICROS - 1) as u64);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn texts_of_other_types() {
        let s = |c: Cell<'_>| match encode(c, &SqlType::VarChar { length: Some(64) }).unwrap() {
            ColumnData::String(Some(s)) => s.into_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(s(Cell::Int(i128::MAX)), i128::MAX.to_string());
        let i = Interval {
            months: -1,
            days: 2,
            micros: 3,
        };
        assert_eq!(s(Cell::Interval(i)), "-1mo 2d 3us");
    }
}
