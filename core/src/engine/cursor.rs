//! Cursor values as text: how the journal stores them and how users type them.
//!
//! The journal keeps each batch's cursor range as text (`BatchRead.cursor_low/high`), and the
//! next incremental run resumes after the last one, so the text must give back the exact value
//! *and* its type: `date:2025-01-10`, `int:42`, `timestamp:2025-01-10T05:00:00.000000Z`,
//! `text:ABC`. [`to_text`] and [`from_text`] round-trip every [`Value`].
//!
//! On the command line (`caudal run --from 2025-01-01 --to 2025-02-01`) users type plain
//! values; [`parse_user`] reads them as the cursor column's type when it is known (from an
//! earlier journaled cursor or the source's schema) and guesses from the text otherwise.

use caudal_connector::{Interval, LogicalType, OffsetTimestamp, Value};

/// Days from 0000-03-01 based civil arithmetic: the Julian day of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The tagged text of a value; [`from_text`] reads it back exactly.
pub fn to_text(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("bool:{b}"),
        Value::Int(i) => format!("int:{i}"),
        Value::UInt(u) => format!("uint:{u}"),
        Value::Int128(i) => format!("int128:{i}"),
        // `{:?}` prints the shortest text that parses back to the same f64.
        Value::Float(f) => format!("float:{f:?}"),
        Value::Decimal { unscaled, scale } => {
            format!("decimal:{}", decimal_text(*unscaled, *scale))
        }
        Value::Date(d) => format!("date:{}", date_text(*d)),
        Value::Time(us) => format!("time:{us}"),
        Value::DateTime(us) => format!("datetime:{}", datetime_text(*us)),
        Value::Timestamp(us) => format!("timestamp:{}Z", datetime_text(*us)),
        Value::DateTimeOffset(t) => format!("datetimeoffset:{},{}", t.utc_micros, t.offset_minutes),
        Value::Text(s) => format!("text:{s}"),
        Value::Bytes(b) => format!("bytes:{}", hex::encode(b)),
        Value::Uuid(u) => format!("uuid:{}", hex::encode(u)),
        Value::Interval(i) => format!("interval:{},{},{}", i.months, i.days, i.micros),
        // A variant added to the SDK later: kept readable, refused by `from_text`.
        other => format!("unknown:{other:?}"),
    }
}

/// The value of a tagged text written by [`to_text`].
pub fn from_text(text: &str) -> Result<Value, String> {
    if text == "null" {
        return Ok(Value::Null);
    }
    let (tag, body) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not a cursor value (expected TYPE:VALUE)"))?;
    let bad = |what: &str| format!("`{text}` is not a valid {what} cursor value");
    Ok(match tag {
        "bool" => Value::Bool(body.parse().map_err(|_| bad("bool"))?),
        "int" => Value::Int(body.parse().map_err(|_| bad("int"))?),
        "uint" => Value::UInt(body.parse().map_err(|_| bad("uint"))?),
        "int128" => Value::Int128(body.parse().map_err(|_| bad("int128"))?),
        "float" => Value::Float(body.parse().map_err(|_| bad("float"))?),
        "decimal" => {
            let (unscaled, scale) = parse_decimal(body).ok_or_else(|| bad("decimal"))?;
            Value::Decimal { unscaled, scale }
        }
        "date" => Value::Date(parse_date(body).ok_or_else(|| bad("date"))?),
        "time" => Value::Time(body.parse().map_err(|_| bad("time"))?),
        "datetime" => Value::DateTime(parse_datetime(body).ok_or_else(|| bad("datetime"))?),
        "timestamp" => {
            let naive = body.strip_suffix('Z').ok_or_else(|| bad("timestamp"))?;
            Value::Timestamp(parse_datetime(naive).ok_or_else(|| bad("timestamp"))?)
        }
        "datetimeoffset" => {
            let (utc, offset) = body.split_once(',').ok_or_else(|| bad("datetimeoffset"))?;
            Value::DateTimeOffset(OffsetTimestamp {
                utc_micros: utc.parse().map_err(|_| bad("datetimeoffset"))?,
                offset_minutes: offset.parse().map_err(|_| bad("datetimeoffset"))?,
            })
        }
        "text" => Value::Text(body.to_owned()),
        "bytes" => Value::Bytes(hex::decode(body).map_err(|_| bad("bytes"))?),
        "uuid" => {
            let mut u = [0u8; 16];
            hex::decode_to_slice(body, &mut u).map_err(|_| bad("uuid"))?;
            Value::Uuid(u)
        }
        "interval" => {
            let parts: Vec<&str> = body.split(',').collect();
            let [m, d, us] = parts.as_slice() else {
                return Err(bad("interval"));
            };
            Value::Interval(Interval {
                months: m.parse().map_err(|_| bad("interval"))?,
                days: d.parse().map_err(|_| bad("interval"))?,
                micros: us.parse().map_err(|_| bad("interval"))?,
            })
        }
        other => return Err(format!("`{text}`: unknown cursor type `{other}`")),
    })
}

/// Orders two tagged cursor texts of the same type; `None` when either does not parse or the
/// types differ.
pub fn compare(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let (a, b) = (from_text(a).ok()?, from_text(b).ok()?);
    Some(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(&y),
        (Value::UInt(x), Value::UInt(y)) => x.cmp(&y),
        (Value::Int128(x), Value::Int128(y)) => x.cmp(&y),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(&y)?,
        (
            Value::Decimal {
                unscaled: x,
                scale: sx,
            },
            Value::Decimal {
                unscaled: y,
                scale: sy,
            },
        ) => {
            let scale = sx.max(sy);
            rescale(x, sx, scale)?.cmp(&rescale(y, sy, scale)?)
        }
        (Value::Date(x), Value::Date(y)) => x.cmp(&y),
        (Value::Time(x), Value::Time(y))
        | (Value::DateTime(x), Value::DateTime(y))
        | (Value::Timestamp(x), Value::Timestamp(y)) => x.cmp(&y),
        (Value::DateTimeOffset(x), Value::DateTimeOffset(y)) => x.utc_micros.cmp(&y.utc_micros),
        (Value::Text(x), Value::Text(y)) => x.cmp(&y),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(&y),
        (Value::Uuid(x), Value::Uuid(y)) => x.cmp(&y),
        _ => return None,
    })
}

/// The type tag of a tagged text (`date` for `date:2025-01-10`), if it has one.
pub fn tag_of(text: &str) -> Option<&str> {
    text.split_once(':').map(|(tag, _)| tag)
}

/// Reads a value typed by a user (`2025-01-10`, `42`, `2025-01-10T05:00:00Z`, or a tagged
/// text). `like` is what the cursor column holds, when known: a tag of an earlier journaled
/// cursor, or the column's logical type.
pub fn parse_user(text: &str, like: Option<CursorKind>) -> Result<Value, String> {
    if let Some(tag) = tag_of(text)
        && KNOWN_TAGS.contains(&tag)
    {
        return from_text(text);
    }
    let kind = like.unwrap_or_else(|| guess(text));
    let fail = || format!("`{text}` is not a {} value", kind.describe());
    match kind {
        CursorKind::Int => text.parse().map(Value::Int).map_err(|_| fail()),
        CursorKind::UInt => text.parse().map(Value::UInt).map_err(|_| fail()),
        CursorKind::Int128 => text.parse().map(Value::Int128).map_err(|_| fail()),
        CursorKind::Float => text.parse().map(Value::Float).map_err(|_| fail()),
        CursorKind::Decimal(scale) => {
            let (unscaled, given) = parse_decimal(text).ok_or_else(fail)?;
            rescale(unscaled, given, scale)
                .map(|unscaled| Value::Decimal { unscaled, scale })
                .ok_or_else(fail)
        }
        CursorKind::Date => parse_date(text).map(Value::Date).ok_or_else(fail),
        CursorKind::DateTime => parse_datetime_or_date(text)
            .map(Value::DateTime)
            .ok_or_else(fail),
        CursorKind::Timestamp => {
            let naive = text.strip_suffix('Z').unwrap_or(text);
            parse_datetime_or_date(naive)
                .map(Value::Timestamp)
                .ok_or_else(fail)
        }
        CursorKind::Text => Ok(Value::Text(text.to_owned())),
    }
}

const KNOWN_TAGS: [&str; 16] = [
    "bool",
    "int",
    "uint",
    "int128",
    "float",
    "decimal",
    "date",
    "time",
    "datetime",
    "timestamp",
    "datetimeoffset",
    "text",
    "bytes",
    "uuid",
    "interval",
    "null",
];

/// What a cursor column holds, as far as reading a typed-in bound is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    /// Signed integers.
    Int,
    /// Unsigned 64-bit integers.
    UInt,
    /// 128-bit integers.
    Int128,
    /// Floats.
    Float,
    /// Decimals at this scale.
    Decimal(u8),
    /// Dates.
    Date,
    /// Date and time without zone.
    DateTime,
    /// UTC instants.
    Timestamp,
    /// Text.
    Text,
}

impl CursorKind {
    /// The kind of a column's logical type; `None` for types users cannot type as a bound.
    pub fn of_type(t: &LogicalType) -> Option<CursorKind> {
        use LogicalType as L;
        Some(match t {
            L::Int8 | L::Int16 | L::Int32 | L::Int64 | L::UInt8 | L::UInt16 | L::UInt32 => {
                CursorKind::Int
            }
            L::Year => CursorKind::Int,
            L::UInt64 | L::Bit { .. } => CursorKind::UInt,
            L::Int128 => CursorKind::Int128,
            L::Float32 | L::Float64 => CursorKind::Float,
            L::Decimal { .. } | L::Money | L::SmallMoney => {
                CursorKind::Decimal(t.decimal_scale().unwrap_or(0))
            }
            L::Date => CursorKind::Date,
            L::DateTime { .. } => CursorKind::DateTime,
            L::Timestamp { .. } => CursorKind::Timestamp,
            L::Char { .. }
            | L::Varchar { .. }
            | L::Text { .. }
            | L::NChar { .. }
            | L::NVarchar { .. }
            | L::Json
            | L::Enum { .. } => CursorKind::Text,
            _ => return None,
        })
    }

    /// The kind of a journaled cursor text (by its tag).
    pub fn of_text(text: &str) -> Option<CursorKind> {
        Some(match tag_of(text)? {
            "int" => CursorKind::Int,
            "uint" => CursorKind::UInt,
            "int128" => CursorKind::Int128,
            "float" => CursorKind::Float,
            "decimal" => {
                let (_, scale) = parse_decimal(text.split_once(':')?.1)?;
                CursorKind::Decimal(scale)
            }
            "date" => CursorKind::Date,
            "datetime" => CursorKind::DateTime,
            "timestamp" => CursorKind::Timestamp,
            "text" => CursorKind::Text,
            _ => return None,
        })
    }

    fn describe(self) -> &'static str {
        match self {
            CursorKind::Int => "integer",
            CursorKind::UInt => "unsigned integer",
            CursorKind::Int128 => "128-bit integer",
            CursorKind::Float => "number",
            CursorKind::Decimal(_) => "decimal",
            CursorKind::Date => "date (YYYY-MM-DD)",
            CursorKind::DateTime => "date and time (YYYY-MM-DDTHH:MM:SS)",
            CursorKind::Timestamp => "timestamp (YYYY-MM-DDTHH:MM:SSZ)",
            CursorKind::Text => "text",
        }
    }
}

/// The kind a typed-in value most likely has when nothing says otherwise.
fn guess(text: &str) -> CursorKind {
    if text.parse::<i64>().is_ok() {
        CursorKind::Int
    } else if parse_date(text).is_some() {
        CursorKind::Date
    } else if text.ends_with('Z') && parse_datetime(&text[..text.len() - 1]).is_some() {
        CursorKind::Timestamp
    } else if parse_datetime(text).is_some() {
        CursorKind::DateTime
    } else {
        CursorKind::Text
    }
}

fn decimal_text(unscaled: i128, scale: u8) -> String {
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

/// `-12.50` -> (-1250, 2).
fn parse_decimal(text: &str) -> Option<(i128, u8)> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let scale = u8::try_from(frac.len()).ok()?;
    let magnitude: i128 = format!("{int}{frac}").parse().ok()?;
    Some((if negative { -magnitude } else { magnitude }, scale))
}

fn rescale(unscaled: i128, from: u8, to: u8) -> Option<i128> {
    if to >= from {
        unscaled.checked_mul(10i128.checked_pow(u32::from(to - from))?)
    } else {
        let div = 10i128.checked_pow(u32::from(from - to))?;
        (unscaled % div == 0).then_some(unscaled / div)
    }
}

fn date_text(days: i32) -> String {
    match time::Date::from_julian_day(days.saturating_add(UNIX_EPOCH_JULIAN_DAY)) {
        Ok(d) => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        // Outside the calendar `time` supports: keep the exact number.
        Err(_) => format!("{days}d"),
    }
}

fn parse_date(text: &str) -> Option<i32> {
    if let Some(days) = text.strip_suffix('d') {
        return days.parse().ok();
    }
    let mut parts = text.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(date.to_julian_day() - UNIX_EPOCH_JULIAN_DAY)
}

fn datetime_text(micros: i64) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let rest = micros.rem_euclid(MICROS_PER_DAY);
    let Ok(days) = i32::try_from(days) else {
        return format!("{micros}us");
    };
    let secs = rest / 1_000_000;
    format!(
        "{}T{:02}:{:02}:{:02}.{:06}",
        date_text(days),
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        rest % 1_000_000
    )
}

fn parse_datetime(text: &str) -> Option<i64> {
    if let Some(us) = text.strip_suffix("us") {
        return us.parse().ok();
    }
    let (date, clock) = text.split_once(['T', ' '])?;
    let days = i64::from(parse_date(date)?);
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut parts = hms.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s: i64 = parts.next().map_or(Some(0), |s| s.parse().ok())?;
    if h > 23 || m > 59 || s > 60 || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    days.checked_mul(MICROS_PER_DAY)?
        .checked_add((h * 3600 + m * 60 + s) * 1_000_000 + micros)
}

fn parse_datetime_or_date(text: &str) -> Option<i64> {
    parse_datetime(text).or_else(|| parse_date(text).map(|d| i64::from(d) * MICROS_PER_DAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_text() {
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Int(-42),
            Value::UInt(u64::MAX),
            Value::Int128(i128::MIN),
            Value::Float(0.1),
            Value::Float(-1e300),
            Value::Decimal {
                unscaled: -1250,
                scale: 2,
            },
            Value::Decimal {
                unscaled: 5,
                scale: 4,
            },
            Value::Decimal {
                unscaled: 7,
                scale: 0,
            },
            Value::Date(0),
            Value::Date(20_098),
            Value::Date(-719_162),
            Value::Time(-5_000_000),
            Value::DateTime(1_736_485_200_123_456),
            Value::DateTime(-1),
            Value::Timestamp(1_736_485_200_000_000),
            Value::DateTimeOffset(OffsetTimestamp {
                utc_micros: 9,
                offset_minutes: -240,
            }),
            Value::Text("with: colon and ñ".into()),
            Value::Text(String::new()),
            Value::Bytes(vec![0, 255, 16]),
            Value::Uuid([7; 16]),
            Value::Interval(Interval {
                months: 1,
                days: -2,
                micros: 3,
            }),
        ];
        for v in values {
            let text = to_text(&v);
            assert_eq!(from_text(&text), Ok(v.clone()), "{text}");
        }
    }

    #[test]
    fn dates_and_times_read_as_people_write_them() {
        assert_eq!(to_text(&Value::Date(20_098)), "date:2025-01-10");
        assert_eq!(
            to_text(&Value::Timestamp(1_736_485_200_000_000)),
            "timestamp:2025-01-10T05:00:00.000000Z"
        );
        assert_eq!(
            to_text(&Value::Decimal {
                unscaled: -5,
                scale: 2
            }),
            "decimal:-0.05"
        );
    }

    #[test]
    fn typed_in_bounds_follow_the_column_type() {
        assert_eq!(
            parse_user("2025-01-10", Some(CursorKind::Date)),
            Ok(Value::Date(20_098))
        );
        assert_eq!(
            parse_user("2025-01-10", Some(CursorKind::Timestamp)),
            Ok(Value::Timestamp(20_098 * MICROS_PER_DAY))
        );
        assert_eq!(
            parse_user("2025-01-10 05:00", Some(CursorKind::DateTime)),
            Ok(Value::DateTime(20_098 * MICROS_PER_DAY + 5 * 3_600_000_000))
        );
        assert_eq!(
            parse_user("12.5", Some(CursorKind::Decimal(2))),
            Ok(Value::Decimal {
                unscaled: 1250,
                scale: 2
            })
        );
        assert_eq!(
            parse_user("0042", Some(CursorKind::Text)),
            Ok(Value::Text("0042".into()))
        );
        assert_eq!(parse_user("0042", None), Ok(Value::Int(42)));
        assert_eq!(parse_user("2025-01-10", None), Ok(Value::Date(20_098)));
        assert_eq!(
            parse_user("int:7", Some(CursorKind::Date)),
            Ok(Value::Int(7))
        );
        let err = parse_user("yesterday", Some(CursorKind::Date)).unwrap_err();
        assert!(
            err.contains("`yesterday`") && err.contains("YYYY-MM-DD"),
            "{err}"
        );
        assert!(parse_user("2025-02-30", Some(CursorKind::Date)).is_err());
        assert!(parse_user("1.234", Some(CursorKind::Decimal(2))).is_err());
    }

    #[test]
    fn kinds_come_from_journaled_text_and_column_types() {
        assert_eq!(
            CursorKind::of_text("date:2025-01-10"),
            Some(CursorKind::Date)
        );
        assert_eq!(
            CursorKind::of_text("decimal:1.250"),
            Some(CursorKind::Decimal(3))
        );
        assert_eq!(CursorKind::of_text("bytes:00"), None);
        assert_eq!(
            CursorKind::of_type(&LogicalType::Timestamp { precision: 6 }),
            Some(CursorKind::Timestamp)
        );
        assert_eq!(CursorKind::of_type(&LogicalType::Uuid), None);
    }

    #[test]
    fn cursors_compare_by_value_not_by_text() {
        use std::cmp::Ordering::*;
        assert_eq!(compare("int:9", "int:10"), Some(Less));
        assert_eq!(compare("decimal:1.5", "decimal:1.25"), Some(Greater));
        assert_eq!(compare("date:2025-01-10", "date:2024-12-31"), Some(Greater));
        assert_eq!(compare("text:b", "text:b"), Some(Equal));
        assert_eq!(compare("int:1", "date:2025-01-10"), None);
        assert_eq!(compare("int:x", "int:1"), None);
    }

    #[test]
    fn garbage_is_refused_with_the_text_in_the_message() {
        for bad in [
            "",
            "date",
            "date:x",
            "int:1.5",
            "nope:1",
            "timestamp:2025-01-10T00:00:00",
        ] {
            let err = from_text(bad).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }
}
