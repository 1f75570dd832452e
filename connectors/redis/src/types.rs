//! The type mapping: how each logical type is written as Redis text and read back.
//!
//! Redis stores strings, so every value is written as text, and reading the text with the
//! table's schema gives back exactly the logical value (the round trip is a property test).
//! NULL is not a text: in a hash a NULL column has no field; in JSON it is `null`.
//!
//! | logical type | text | example |
//! |---|---|---|
//! | `Bool` | `true` / `false` | `true` |
//! | integers, `Year` | decimal | `-42` |
//! | `Bit{w}` | `w` binary digits | `000000000101` |
//! | `Float32`, `Float64` | shortest exact decimal, `NaN`, `inf`, `-inf` | `0.1`, `-0.0`, `1e300` |
//! | `Decimal{p,s}`, money | decimal with exactly `s` (money: 4) fraction digits | `-12.5000` |
//! | `Date` | `YYYY-MM-DD` (years outside 0..=9999 signed) | `2024-02-29` |
//! | `Time{p}` | `[-]HH:MM:SS[.f]` (hours may exceed 23) | `-838:59:59` |
//! | `DateTime{p}` | `YYYY-MM-DDTHH:MM:SS[.f]` | `2024-02-29T13:05:00.250` |
//! | `Timestamp{p}` | the same in UTC, with `Z` | `2024-02-29T13:05:00Z` |
//! | `DateTimeOffset{p}` | local time and offset | `2024-02-29T15:05:00+02:00` |
//! | text types, JSON, enum, set | the text itself | `año` |
//! | binary types | lower-case hex | `00ff10` |
//! | `Uuid` | `8-4-4-4-12` lower-case hex | `123e4567-e89b-12d3-a456-426614174000` |
//! | `Interval` | `M months D days U microseconds` | `-1 months 3 days 0 microseconds` |
//!
//! Fractions of a second print at least the column's precision and as many digits (up to 6)
//! as the value needs, so no microsecond is lost. In the JSON format, booleans and integers of
//! up to 64 bits (not `Bit`) are JSON booleans and numbers; every other value is a JSON string
//! holding the text above. Floats are strings too: JSON has no NaN or infinity, and a JSON
//! number is not guaranteed to read back to the same bits.

use caudal_connector::{BatchBuilder, Column, ColumnData, Error, Interval, LogicalType, Result};
use caudal_connector::{OffsetTimestamp, Storage};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Appends the text of non-NULL cell `row` of `column` (of logical type `t`) to `out`.
pub fn encode_text(column: &Column, t: &LogicalType, row: usize, out: &mut Vec<u8>) {
    use LogicalType as L;
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let mut w = |args: std::fmt::Arguments<'_>| {
        let _ = out.write_fmt(args);
    };
    match (column.data(), t) {
        (ColumnData::Bool(v), _) => w(format_args!("{}", v[row])),
        (ColumnData::I8(v), _) => w(format_args!("{}", v[row])),
        (ColumnData::I16(v), _) => w(format_args!("{}", v[row])),
        (ColumnData::I32(v), L::Date) => write_date(out, i64::from(v[row])),
        (ColumnData::I32(v), _) => w(format_args!("{}", v[row])),
        (ColumnData::I64(v), L::Time { precision }) => write_time(out, v[row], *precision),
        (ColumnData::I64(v), L::DateTime { precision }) => {
            write_datetime(out, i128::from(v[row]), *precision)
        }
        (ColumnData::I64(v), L::Timestamp { precision }) => {
            write_datetime(out, i128::from(v[row]), *precision);
            out.push(b'Z');
        }
        (ColumnData::I64(v), _) => w(format_args!("{}", v[row])),
        (ColumnData::I128(v), t) => match t.decimal_scale() {
            Some(scale) => write_decimal(out, v[row], scale),
            None => w(format_args!("{}", v[row])),
        },
        (ColumnData::U8(v), _) => w(format_args!("{}", v[row])),
        (ColumnData::U16(v), _) => w(format_args!("{}", v[row])),
        (ColumnData::U32(v), _) => w(format_args!("{}", v[row])),
        (ColumnData::U64(v), L::Bit { width }) => w(format_args!(
            "{:0width$b}",
            v[row],
            width = usize::from(*width)
        )),
        (ColumnData::U64(v), _) => w(format_args!("{}", v[row])),
        (ColumnData::F32(v), _) => write_float(out, f64::from(v[row]), format!("{:?}", v[row])),
        (ColumnData::F64(v), _) => write_float(out, v[row], format!("{:?}", v[row])),
        (ColumnData::Utf8(v), _) => out.extend_from_slice(v.get(row).as_bytes()),
        (ColumnData::Binary(v), _) => write_hex(out, v.get(row)),
        (ColumnData::Uuid(v), _) => write_uuid(out, &v[row]),
        (ColumnData::OffsetTimestamp(v), L::DateTimeOffset { precision }) => {
            write_offset_timestamp(out, v[row], *precision)
        }
        (ColumnData::OffsetTimestamp(v), _) => write_offset_timestamp(out, v[row], 6),
        (ColumnData::Interval(v), _) => {
            let i = v[row];
            w(format_args!(
                "{} months {} days {} microseconds",
                i.months, i.days, i.micros
            ))
        }
    }
}

/// Appends the JSON of cell `row` of `column` (`null` for NULL) to `out`.
pub fn encode_json(column: &Column, t: &LogicalType, row: usize, out: &mut Vec<u8>) {
    if column.is_null(row) {
        out.extend_from_slice(b"null");
        return;
    }
    match (column.data(), t) {
        (ColumnData::Bool(_), _)
        | (ColumnData::I8(_), _)
        | (ColumnData::I16(_), _)
        | (ColumnData::U8(_), _)
        | (ColumnData::U16(_), _)
        | (ColumnData::U32(_), _)
        | (ColumnData::U64(_), LogicalType::UInt64)
        | (ColumnData::I32(_), LogicalType::Int32)
        | (ColumnData::I64(_), LogicalType::Int64) => encode_text(column, t, row, out),
        (ColumnData::Utf8(v), _) => {
            // Serializing a &str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, v.get(row));
        }
        _ => {
            // Every other text is ASCII without quotes or backslashes: no escaping needed.
            out.push(b'"');
            encode_text(column, t, row, out);
            out.push(b'"');
        }
    }
}

/// Pushes the value `text` (written by [`encode_text`] for type `t`) to column `col`.
pub fn decode_text(b: &mut BatchBuilder, col: usize, t: &LogicalType, text: &[u8]) -> Result<()> {
    use LogicalType as L;
    let bad = |why: &str| {
        Error::Decode(format!(
            "{:?} as {t:?}: {why}",
            String::from_utf8_lossy(&text[..text.len().min(80)])
        ))
    };
    if matches!(t.storage(), Storage::Binary) {
        let bytes = parse_hex(text).ok_or_else(|| bad("not hex"))?;
        return b.push(col, bytes.as_slice());
    }
    let s = std::str::from_utf8(text).map_err(|_| bad("not UTF-8"))?;
    macro_rules! parsed {
        ($ty:ty) => {
            b.push(col, s.parse::<$ty>().map_err(|e| bad(&e.to_string()))?)
        };
    }
    match (t.storage(), t) {
        (Storage::Bool, _) => match s {
            "true" | "1" => b.push(col, true),
            "false" | "0" => b.push(col, false),
            _ => Err(bad("not true or false")),
        },
        (Storage::I8, _) => parsed!(i8),
        (Storage::I16, _) => parsed!(i16),
        (Storage::I32, L::Date) => {
            let days = parse_date_text(s).ok_or_else(|| bad("not a date YYYY-MM-DD"))?;
            b.push(col, i32::try_from(days).map_err(|_| bad("out of range"))?)
        }
        (Storage::I32, _) => parsed!(i32),
        (Storage::I64, L::Time { .. }) => b.push(
            col,
            parse_time(s).ok_or_else(|| bad("not a time HH:MM:SS"))?,
        ),
        (Storage::I64, L::DateTime { .. }) => {
            let micros = parse_datetime_text(s).ok_or_else(|| bad("not YYYY-MM-DDTHH:MM:SS"))?;
            b.push(col, i64::try_from(micros).map_err(|_| bad("out of range"))?)
        }
        (Storage::I64, L::Timestamp { .. }) => {
            let local = s
                .strip_suffix('Z')
                .ok_or_else(|| bad("no `Z` at the end"))?;
            let micros =
                parse_datetime_text(local).ok_or_else(|| bad("not YYYY-MM-DDTHH:MM:SSZ"))?;
            b.push(col, i64::try_from(micros).map_err(|_| bad("out of range"))?)
        }
        (Storage::I64, _) => parsed!(i64),
        (Storage::I128, t) => match t.decimal_scale() {
            Some(scale) => b.push(
                col,
                parse_decimal(s, scale).ok_or_else(|| bad("not exact"))?,
            ),
            None => parsed!(i128),
        },
        (Storage::U8, _) => parsed!(u8),
        (Storage::U16, _) => parsed!(u16),
        (Storage::U32, _) => parsed!(u32),
        (Storage::U64, L::Bit { .. }) => b.push(
            col,
            u64::from_str_radix(s, 2).map_err(|_| bad("not binary digits"))?,
        ),
        (Storage::U64, _) => parsed!(u64),
        (Storage::F32, _) => parsed!(f32),
        (Storage::F64, _) => parsed!(f64),
        (Storage::Utf8, _) => b.push(col, s),
        (Storage::Uuid, _) => b.push(col, parse_uuid(s).ok_or_else(|| bad("not a UUID"))?),
        (Storage::OffsetTimestamp, _) => b.push(
            col,
            parse_offset_timestamp(s).ok_or_else(|| bad("not YYYY-MM-DDTHH:MM:SS+HH:MM"))?,
        ),
        (Storage::Interval, _) => b.push(
            col,
            parse_interval(s).ok_or_else(|| bad("not `M months D days U microseconds`"))?,
        ),
        (Storage::Binary, _) => unreachable!("handled above"),
    }
}

/// Pushes a JSON value (written by [`encode_json`] for type `t`) to column `col`.
pub fn decode_json(
    b: &mut BatchBuilder,
    col: usize,
    t: &LogicalType,
    value: &serde_json::Value,
) -> Result<()> {
    use serde_json::Value as J;
    let bad = || Error::Decode(format!("JSON {value} as {t:?}"));
    macro_rules! int {
        ($ty:ty, $n:expr) => {{
            let n = $n;
            let v = n
                .as_i64()
                .and_then(|x| <$ty>::try_from(x).ok())
                .or_else(|| n.as_u64().and_then(|x| <$ty>::try_from(x).ok()))
                .ok_or_else(bad)?;
            b.push(col, v)
        }};
    }
    match (value, t.storage()) {
        (J::Null, _) => b.push_null(col),
        (J::String(s), _) => decode_text(b, col, t, s.as_bytes()),
        (J::Bool(v), Storage::Bool) => b.push(col, *v),
        (J::Number(n), Storage::I8) => int!(i8, n),
        (J::Number(n), Storage::I16) => int!(i16, n),
        (J::Number(n), Storage::I32) => int!(i32, n),
        (J::Number(n), Storage::I64) => int!(i64, n),
        (J::Number(n), Storage::U8) => int!(u8, n),
        (J::Number(n), Storage::U16) => int!(u16, n),
        (J::Number(n), Storage::U32) => int!(u32, n),
        (J::Number(n), Storage::U64) => int!(u64, n),
        (J::Number(n), Storage::F64) => b.push(col, n.as_f64().ok_or_else(bad)?),
        (J::Number(n), Storage::F32) => {
            let wide = n.as_f64().ok_or_else(bad)?;
            let narrow = wide as f32;
            if f64::from(narrow) != wide {
                return Err(bad());
            }
            b.push(col, narrow)
        }
        _ => Err(bad()),
    }
}

fn write_float(out: &mut Vec<u8>, wide: f64, shortest: String) {
    if wide.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if wide.is_infinite() {
        out.extend_from_slice(if wide > 0.0 { b"inf" } else { b"-inf" });
    } else {
        out.extend_from_slice(shortest.as_bytes());
    }
}

fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
}

fn parse_hex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

fn write_uuid(out: &mut Vec<u8>, u: &[u8; 16]) {
    for (i, part) in [&u[0..4], &u[4..6], &u[6..8], &u[8..10], &u[10..16]]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b'-');
        }
        write_hex(out, part);
    }
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let digits: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
    parse_hex(&digits)?.try_into().ok()
}

/// `unscaled * 10^-scale` with exactly `scale` fraction digits.
fn write_decimal(out: &mut Vec<u8>, unscaled: i128, scale: u8) {
    if unscaled < 0 {
        out.push(b'-');
    }
    let digits = unscaled.unsigned_abs().to_string();
    let scale = usize::from(scale);
    if scale == 0 {
        out.extend_from_slice(digits.as_bytes());
        return;
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    out.extend_from_slice(int.as_bytes());
    out.push(b'.');
    out.extend_from_slice(frac.as_bytes());
}

/// A decimal text as an unscaled integer at `scale`, if exactly representable.
fn parse_decimal(s: &str, scale: u8) -> Option<i128> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() || !int.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) || (body.contains('.') && frac.is_empty()) {
        return None;
    }
    // Fraction digits beyond the scale must be zeros.
    let (kept, dropped) = frac.split_at(frac.len().min(usize::from(scale)));
    if dropped.bytes().any(|c| c != b'0') {
        return None;
    }
    let mut magnitude: u128 = 0;
    for c in int.bytes().chain(kept.bytes()) {
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u128::from(c - b'0'))?;
    }
    for _ in kept.len()..usize::from(scale) {
        magnitude = magnitude.checked_mul(10)?;
    }
    if neg {
        0i128.checked_sub_unsigned(magnitude)
    } else {
        i128::try_from(magnitude).ok()
    }
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a valid (year, month, day).
fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    let leap = y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d == 0 || d > month_days[(m - 1) as usize] {
        return None;
    }
    let y = y.checked_sub(i64::from(m <= 2))?;
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era.checked_mul(146_097)?
        .checked_add(doe)?
        .checked_sub(719_468)
}

fn write_date(out: &mut Vec<u8>, days: i64) {
    use std::io::Write as _;
    let (y, m, d) = civil_from_days(days);
    let _ = if (0..=9999).contains(&y) {
        write!(out, "{y:04}-{m:02}-{d:02}")
    } else {
        write!(out, "{y:+05}-{m:02}-{d:02}")
    };
}

fn parse_date_text(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let mut parts = body.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() < 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let y: i64 = digits(y)?.try_into().ok()?;
    days_from_civil(
        if neg { -y } else { y },
        digits(m)?.try_into().ok()?,
        digits(d)?.try_into().ok()?,
    )
}

/// An unsigned decimal made of ASCII digits only (no sign, not empty).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `.ffffff`: at least `precision` digits and as many as the value needs.
fn write_fraction(out: &mut Vec<u8>, micros: u32, precision: u8) {
    let text = format!("{micros:06}");
    let needed = text.trim_end_matches('0').len();
    let shown = needed.max(usize::from(precision.min(6)));
    if shown > 0 {
        out.push(b'.');
        out.extend_from_slice(&text.as_bytes()[..shown]);
    }
}

/// `SS[.ffffff]` as microseconds.
fn parse_seconds(s: &str) -> Option<i64> {
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    if sec.len() != 2 || frac.len() > 6 || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let sec = digits(sec)?;
    let frac = if frac.is_empty() {
        0
    } else {
        digits(frac)? * 10u64.pow(6 - frac.len() as u32)
    };
    if sec > 59 {
        return None;
    }
    i64::try_from(sec * 1_000_000 + frac).ok()
}

/// `HH:MM:SS[.f]` (hours: two or more digits, at most `max_hours`) as microseconds.
fn parse_clock(s: &str, max_hours: u64) -> Option<i128> {
    let mut parts = s.splitn(3, ':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if h.len() < 2 || m.len() != 2 {
        return None;
    }
    let (h, m) = (digits(h)?, digits(m)?);
    if h > max_hours || m > 59 {
        return None;
    }
    let hm = i128::from(h) * 3600 + i128::from(m) * 60;
    Some(hm * i128::from(MICROS_PER_SECOND) + i128::from(parse_seconds(sec)?))
}

fn write_clock(out: &mut Vec<u8>, micros_of_day: u64, precision: u8) {
    use std::io::Write as _;
    let secs = micros_of_day / 1_000_000;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    write_fraction(out, (micros_of_day % 1_000_000) as u32, precision);
}

fn write_time(out: &mut Vec<u8>, micros: i64, precision: u8) {
    if micros < 0 {
        out.push(b'-');
    }
    write_clock(out, micros.unsigned_abs(), precision);
}

fn parse_time(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let magnitude = parse_clock(body, u64::MAX)?;
    i64::try_from(if neg { -magnitude } else { magnitude }).ok()
}

/// `micros` since 1970-01-01T00:00 as `YYYY-MM-DDTHH:MM:SS[.f]`.
fn write_datetime(out: &mut Vec<u8>, micros: i128, precision: u8) {
    let day = micros.div_euclid(i128::from(MICROS_PER_DAY));
    let of_day = micros.rem_euclid(i128::from(MICROS_PER_DAY));
    write_date(out, day as i64);
    out.push(b'T');
    write_clock(out, of_day as u64, precision);
}

fn parse_datetime_text(s: &str) -> Option<i128> {
    let (date, clock) = s.split_once('T')?;
    let day = parse_date_text(date)?;
    let of_day = parse_clock(clock, 23)?;
    Some(i128::from(day) * i128::from(MICROS_PER_DAY) + of_day)
}

fn write_offset_timestamp(out: &mut Vec<u8>, v: OffsetTimestamp, precision: u8) {
    use std::io::Write as _;
    let offset = i128::from(v.offset_minutes) * 60 * i128::from(MICROS_PER_SECOND);
    write_datetime(out, i128::from(v.utc_micros) + offset, precision);
    let minutes = v.offset_minutes.unsigned_abs();
    let sign = if v.offset_minutes < 0 { '-' } else { '+' };
    let _ = write!(out, "{sign}{:02}:{:02}", minutes / 60, minutes % 60);
}

fn parse_offset_timestamp(s: &str) -> Option<OffsetTimestamp> {
    let at = s.rfind(['+', '-'])?;
    let (local, offset) = s.split_at(at);
    let (h, m) = offset[1..].split_once(':')?;
    if h.len() < 2 || m.len() != 2 {
        return None;
    }
    let (h, m) = (digits(h)?, digits(m)?);
    if m > 59 {
        return None;
    }
    let magnitude = i64::try_from(h.checked_mul(60)?.checked_add(m)?).ok()?;
    let signed = if offset.starts_with('-') {
        -magnitude
    } else {
        magnitude
    };
    let offset_minutes = i16::try_from(signed).ok()?;
    let local = parse_datetime_text(local)?;
    let utc = local - i128::from(offset_minutes) * 60 * i128::from(MICROS_PER_SECOND);
    Some(OffsetTimestamp {
        utc_micros: i64::try_from(utc).ok()?,
        offset_minutes,
    })
}

fn parse_interval(s: &str) -> Option<Interval> {
    let parts: Vec<&str> = s.split(' ').collect();
    match parts.as_slice() {
        [months, "months", days, "days", micros, "microseconds"] => Some(Interval {
            months: months.parse().ok()?,
            days: days.parse().ok()?,
            micros: micros.parse().ok()?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use caudal_connector::sample::{all_types_batch, all_types_schema};
    use caudal_connector::{Batch, Field, Schema, Value};
    use proptest::prelude::*;

    use super::*;

    /// Every cell of `batch` through the text codec (NULL kept as NULL), as a new batch.
    fn through_text(batch: &Batch) -> Batch {
        let schema = Arc::clone(batch.schema());
        let mut b = BatchBuilder::new(Arc::clone(&schema));
        for row in 0..batch.num_rows() {
            for (col, f) in schema.fields().iter().enumerate() {
                let column = &batch.columns()[col];
                if column.is_null(row) {
                    b.push_null(col).unwrap();
                    continue;
                }
                let mut text = Vec::new();
                encode_text(column, &f.logical_type, row, &mut text);
                decode_text(&mut b, col, &f.logical_type, &text)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.name));
            }
        }
        b.finish().unwrap()
    }

    fn through_json(batch: &Batch) -> Batch {
        let schema = Arc::clone(batch.schema());
        let mut b = BatchBuilder::new(Arc::clone(&schema));
        for row in 0..batch.num_rows() {
            for (col, f) in schema.fields().iter().enumerate() {
                let mut text = Vec::new();
                encode_json(&batch.columns()[col], &f.logical_type, row, &mut text);
                let v: serde_json::Value = serde_json::from_slice(&text).unwrap_or_else(|e| {
                    panic!("{}: {e}: {}", f.name, String::from_utf8_lossy(&text))
                });
                decode_json(&mut b, col, &f.logical_type, &v)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.name));
            }
        }
        b.finish().unwrap()
    }

    fn assert_same_values(a: &Batch, b: &Batch) {
        for row in 0..a.num_rows() {
            for col in 0..a.num_columns() {
                let (x, y) = (a.value(row, col), b.value(row, col));
                let same = match (&x, &y) {
                    (Some(Value::Float(p)), Some(Value::Float(q))) => {
                        p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())
                    }
                    _ => x == y,
                };
                assert!(same, "row {row} column {col}: {x:?} != {y:?}");
            }
        }
    }

    #[test]
    fn every_sample_value_survives_text_and_json() {
        let batch = all_types_batch(&Arc::new(all_types_schema()), 0, 400).unwrap();
        assert_same_values(&batch, &through_text(&batch));
        assert_same_values(&batch, &through_json(&batch));
    }

    fn one(t: LogicalType, push: impl FnOnce(&mut BatchBuilder)) -> Batch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", t, true)], &[]).unwrap());
        let mut b = BatchBuilder::new(schema);
        push(&mut b);
        b.finish().unwrap()
    }

    fn text_of(batch: &Batch) -> String {
        let mut out = Vec::new();
        encode_text(
            &batch.columns()[0],
            &batch.schema().fields()[0].logical_type,
            0,
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn texts_are_the_documented_ones() {
        use LogicalType as L;
        let cases: Vec<(Batch, &str)> = vec![
            (one(L::Bool, |b| b.push(0, true).unwrap()), "true"),
            (
                one(L::Bit { width: 12 }, |b| b.push(0, 5u64).unwrap()),
                "000000000101",
            ),
            (one(L::Float64, |b| b.push(0, -0.0f64).unwrap()), "-0.0"),
            (
                one(L::Float64, |b| b.push(0, f64::NEG_INFINITY).unwrap()),
                "-inf",
            ),
            (one(L::Float32, |b| b.push(0, 0.1f32).unwrap()), "0.1"),
            (
                one(
                    L::Decimal {
                        precision: 10,
                        scale: 4,
                    },
                    |b| b.push(0, -125000i128).unwrap(),
                ),
                "-12.5000",
            ),
            (one(L::Money, |b| b.push(0, 5i128).unwrap()), "0.0005"),
            (
                one(L::Date, |b| b.push(0, 19_782i32).unwrap()),
                "2024-02-29",
            ),
            (
                one(L::Date, |b| b.push(0, -719_529i32).unwrap()),
                "-0001-12-31",
            ),
            (
                one(L::Time { precision: 0 }, |b| {
                    b.push(0, -(838 * 3600 + 59 * 60 + 59) * 1_000_000i64)
                        .unwrap()
                }),
                "-838:59:59",
            ),
            (
                one(L::DateTime { precision: 3 }, |b| {
                    b.push(0, 1_709_211_900_250_000i64).unwrap()
                }),
                "2024-02-29T13:05:00.250",
            ),
            (
                one(L::Timestamp { precision: 0 }, |b| {
                    b.push(0, 1_709_211_900_000_000i64).unwrap()
                }),
                "2024-02-29T13:05:00Z",
            ),
            (
                one(L::DateTimeOffset { precision: 0 }, |b| {
                    b.push(
                        0,
                        OffsetTimestamp {
                            utc_micros: 1_709_211_900_000_000,
                            offset_minutes: 120,
                        },
                    )
                    .unwrap()
                }),
                "2024-02-29T15:05:00+02:00",
            ),
            (
                one(L::Blob { max_bytes: None }, |b| {
                    b.push(0, &[0u8, 255, 16][..]).unwrap()
                }),
                "00ff10",
            ),
            (
                one(L::Interval, |b| {
                    b.push(
                        0,
                        Interval {
                            months: -1,
                            days: 3,
                            micros: 0,
                        },
                    )
                    .unwrap()
                }),
                "-1 months 3 days 0 microseconds",
            ),
        ];
        for (batch, expected) in cases {
            assert_eq!(text_of(&batch), expected);
            assert_same_values(&batch, &through_text(&batch));
        }
    }

    #[test]
    fn bad_texts_are_errors_naming_the_type() {
        use LogicalType as L;
        let cases: Vec<(LogicalType, &str)> = vec![
            (L::Int8, "300"),
            (L::Bool, "yes"),
            (L::Date, "2023-02-29"),
            (L::Time { precision: 0 }, "10:61:00"),
            (
                L::Decimal {
                    precision: 5,
                    scale: 1,
                },
                "1.25",
            ),
            (L::Timestamp { precision: 0 }, "2024-01-01T00:00:00"),
            (L::Uuid, "123"),
            (L::Blob { max_bytes: None }, "0g"),
            (L::Interval, "1 month"),
        ];
        for (t, text) in cases {
            let schema =
                Arc::new(Schema::new(vec![Field::new("v", t.clone(), true)], &[]).unwrap());
            let mut b = BatchBuilder::new(schema);
            let err = decode_text(&mut b, 0, &t, text.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(text), "{t:?}: {err}");
        }
    }

    fn extremes() -> impl Strategy<Value = i64> {
        prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), any::<i64>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn instants_durations_and_decimals_round_trip(
            micros in extremes(),
            offset in -840i16..=840,
            unscaled in any::<i128>(),
            scale in 0u8..=38,
            days in any::<i32>(),
            f in any::<f64>(),
            g in any::<f32>(),
        ) {
            use LogicalType as L;
            let schema = Arc::new(Schema::new(vec![
                Field::new("t", L::Time { precision: 0 }, true),
                Field::new("dt", L::DateTime { precision: 2 }, true),
                Field::new("ts", L::Timestamp { precision: 6 }, true),
                Field::new("dto", L::DateTimeOffset { precision: 1 }, true),
                Field::new("dec", L::Decimal { precision: 38, scale }, true),
                Field::new("d", L::Date, true),
                Field::new("f", L::Float64, true),
                Field::new("g", L::Float32, true),
            ], &[]).unwrap());
            let mut b = BatchBuilder::new(schema);
            b.push(0, micros).unwrap();
            b.push(1, micros).unwrap();
            b.push(2, micros).unwrap();
            b.push(3, OffsetTimestamp { utc_micros: micros, offset_minutes: offset }).unwrap();
            b.push(4, unscaled).unwrap();
            b.push(5, days).unwrap();
            b.push(6, f).unwrap();
            b.push(7, g).unwrap();
            let batch = b.finish().unwrap();
            assert_same_values(&batch, &through_text(&batch));
            assert_same_values(&batch, &through_json(&batch));
        }
    }
}
