//! Batch -> SQL: each value of a batch as a MySQL literal, for multi-row INSERT and DELETE
//! statements sent as text.
//!
//! Literals rather than bound parameters, because a statement must be cut to fit
//! `max_allowed_packet` and its exact size is only known as text. Strings are quoted with
//! backslash escapes (the session's `sql_mode` never has `NO_BACKSLASH_ESCAPES`: see
//! `lib.rs`); bytes are hex literals, which need no escaping at all; floats are written in
//! their shortest round-trip form, so the server parses back the same bits. What MySQL cannot
//! store (NaN, infinities) is an error naming the column, never a silent change.

use std::fmt::Write as _;

use caudal_connector::{Column, ColumnData, LogicalType};

use crate::calendar::{write_date, write_datetime, write_time};

/// Appends `s` as a single-quoted string literal.
pub fn push_quoted(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('\'');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'\\' => "\\\\",
            b'\'' => "\\'",
            0 => "\\0",
            b'\n' => "\\n",
            b'\r' => "\\r",
            0x1a => "\\Z",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(escaped);
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('\'');
}

/// Appends `bytes` as a hex literal `X'..'`.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() * 2 + 3);
    out.push_str("X'");
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out.push('\'');
}

/// Appends the decimal digits of `v` (no allocation: a stack buffer). Values that fit 64 bits
/// (nearly every decimal) take 64-bit division, one instruction, not a 128-bit library call;
/// larger ones are cut into 19-digit parts.
#[inline]
pub fn push_u128(out: &mut String, v: u128) {
    const PART: u128 = 10_000_000_000_000_000_000;
    match u64::try_from(v) {
        Ok(small) => push_padded(out, small, 1),
        Err(_) => {
            push_u128(out, v / PART);
            // The remainder is below 10^19, so it fits 64 bits.
            push_padded(out, (v % PART) as u64, 19);
        }
    }
}

/// Appends the decimal digits of `v`, zero-padded to at least `width` digits (at most 20).
#[inline]
pub fn push_padded(out: &mut String, mut v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = i.min(buf.len() - width.min(buf.len()));
    // Only ASCII digits are in the buffer.
    out.push_str(std::str::from_utf8(&buf[start..]).unwrap_or_default());
}

/// Appends a signed integer.
#[inline]
pub fn push_i128(out: &mut String, v: i128) {
    if v < 0 {
        out.push('-');
    }
    push_u128(out, v.unsigned_abs());
}

/// Appends `unscaled * 10^-scale` as decimal text (`-12.50`).
pub fn write_decimal(out: &mut String, unscaled: i128, scale: u8) {
    if unscaled < 0 {
        out.push('-');
    }
    let scale = usize::from(scale);
    let start = out.len();
    push_u128(out, unscaled.unsigned_abs());
    let digits = out.len() - start;
    if scale == 0 {
        return;
    }
    if digits > scale {
        out.insert(out.len() - scale, '.');
    } else {
        // 0.00ddd: the point and the leading zeros go before the digits.
        let zeros = scale - digits;
        out.insert_str(start, "0.");
        for _ in 0..zeros {
            out.insert(start + 2, '0');
        }
    }
}

/// Appends a double in its shortest round-trip form (`1.5e-1`); NaN and infinities are
/// refused, since MySQL has no value for them.
fn write_float(out: &mut String, v: f64) -> Result<(), String> {
    if !v.is_finite() {
        return Err(format!(
            "{v} cannot be stored in MySQL (no NaN or infinity in float/double columns)"
        ));
    }
    let _ = write!(out, "{v:e}");
    Ok(())
}

/// Appends cell `row` of `column` (of logical type `t`) as a literal. `Err` holds why the value
/// cannot be written; the caller names table and column.
#[inline]
pub fn write_literal(
    out: &mut String,
    column: &Column,
    t: &LogicalType,
    row: usize,
) -> Result<(), String> {
    if column.is_null(row) {
        out.push_str("NULL");
        return Ok(());
    }
    use LogicalType as L;
    // Writing to a String cannot fail: the `write!` results are ignored.
    match (column.data(), t) {
        (ColumnData::Bool(v), _) => out.push(if v[row] { '1' } else { '0' }),
        (ColumnData::I8(v), _) => push_i128(out, i128::from(v[row])),
        (ColumnData::I16(v), _) => push_i128(out, i128::from(v[row])),
        (ColumnData::I32(v), L::Date) => {
            out.push('\'');
            write_date(out, i64::from(v[row]));
            out.push('\'');
        }
        (ColumnData::I32(v), _) => push_i128(out, i128::from(v[row])),
        (ColumnData::I64(v), L::Time { .. }) => {
            out.push('\'');
            write_time(out, v[row]);
            out.push('\'');
        }
        (ColumnData::I64(v), L::DateTime { .. } | L::Timestamp { .. }) => {
            out.push('\'');
            write_datetime(out, v[row]);
            out.push('\'');
        }
        (ColumnData::I64(v), _) => push_i128(out, i128::from(v[row])),
        (ColumnData::I128(v), t) => write_decimal(out, v[row], t.decimal_scale().unwrap_or(0)),
        (ColumnData::U8(v), _) => push_u128(out, u128::from(v[row])),
        (ColumnData::U16(v), _) => push_u128(out, u128::from(v[row])),
        (ColumnData::U32(v), _) => push_u128(out, u128::from(v[row])),
        (ColumnData::U64(v), _) => push_u128(out, u128::from(v[row])),
        (ColumnData::F32(v), _) => write_float(out, f64::from(v[row]))?,
        (ColumnData::F64(v), _) => write_float(out, v[row])?,
        (ColumnData::Utf8(v), _) => push_quoted(out, v.get(row)),
        (ColumnData::Binary(v), _) => push_hex(out, v.get(row)),
        (ColumnData::Uuid(v), _) => push_hex(out, &v[row]),
        (ColumnData::OffsetTimestamp(v), _) => {
            out.push('\'');
            write_datetime(out, v[row].utc_micros);
            out.push('\'');
        }
        (ColumnData::Interval(v), _) => {
            let i = v[row];
            let _ = write!(out, "'{}mo {}d {}us'", i.months, i.days, i.micros);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_connector::{BatchBuilder, Field, Schema};
    use proptest::prelude::*;
    use std::sync::Arc;

    #[test]
    fn quoting_escapes_what_mysql_needs() {
        let mut s = String::new();
        push_quoted(&mut s, "O'Brien \\ año\0\n");
        assert_eq!(s, r"'O\'Brien \\ año\0\n'");
        s.clear();
        push_hex(&mut s, &[0, 0xAB, 0xFF]);
        assert_eq!(s, "X'00ABFF'");
        s.clear();
        push_hex(&mut s, &[]);
        assert_eq!(s, "X''");
    }

    #[test]
    fn decimals_and_floats() {
        let mut s = String::new();
        for (u, scale, text) in [
            (-150i128, 2u8, "-1.50"),
            (5, 3, "0.005"),
            (0, 2, "0.00"),
            (12, 0, "12"),
            (-5, 1, "-0.5"),
            (i128::MIN, 0, "-170141183460469231731687303715884105728"),
            (i128::MAX, 38, "1.70141183460469231731687303715884105727"),
        ] {
            s.clear();
            write_decimal(&mut s, u, scale);
            assert_eq!(s, text);
        }
        s.clear();
        write_float(&mut s, 0.1).unwrap();
        assert_eq!(s.parse::<f64>().unwrap(), 0.1);
        assert!(write_float(&mut s, f64::INFINITY).is_err());
        assert!(write_float(&mut s, f64::NAN).is_err());
    }

    #[test]
    fn literals_by_type() {
        let schema = Arc::new(
            Schema::new(
                vec![
                    Field::new("d", LogicalType::Date, true),
                    Field::new("t", LogicalType::DateTime { precision: 6 }, true),
                    Field::new("b", LogicalType::Blob { max_bytes: None }, true),
                ],
                &[],
            )
            .unwrap(),
        );
        let mut b = BatchBuilder::new(Arc::clone(&schema));
        b.push(0, 0i32).unwrap();
        b.push(1, -1i64).unwrap();
        b.push_null(2).unwrap();
        let batch = b.finish().unwrap();
        let mut s = String::new();
        for (i, f) in schema.fields().iter().enumerate() {
            write_literal(&mut s, &batch.columns()[i], &f.logical_type, 0).unwrap();
            s.push(',');
        }
        assert_eq!(s, "'1970-01-01','1969-12-31 23:59:59.999999',NULL,");
    }

    proptest! {
        #[test]
        fn integers_print_like_display(v in any::<i128>(), small in any::<i64>()) {
            let mut s = String::new();
            push_i128(&mut s, v);
            prop_assert_eq!(s, v.to_string());
            let mut s = String::new();
            push_i128(&mut s, i128::from(small));
            prop_assert_eq!(s, small.to_string());
        }

        #[test]
        fn padded_digits_print_like_format(v in any::<u64>(), width in 0usize..=20) {
            let mut s = String::new();
            push_padded(&mut s, v, width);
            prop_assert_eq!(s, format!("{v:0width$}"));
        }

        #[test]
        fn floats_round_trip_through_text(bits in any::<u64>()) {
            let v = f64::from_bits(bits);
            let mut s = String::new();
            match write_float(&mut s, v) {
                Ok(()) => prop_assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits()),
                Err(_) => prop_assert!(!v.is_finite()),
            }
        }

        #[test]
        fn quoted_text_unescapes_to_itself(text in ".*") {
            let mut s = String::new();
            push_quoted(&mut s, &text);
            // Undo MySQL's escapes the way the server does.
            let inner = &s[1..s.len() - 1];
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('0') => out.push('\0'),
                        Some('n') => out.push('\n'),
                        Some('r') => out.push('\r'),
                        Some('Z') => out.push('\x1a'),
                        Some(other) => out.push(other),
                        None => prop_assert!(false, "dangling backslash"),
                    }
                } else {
                    prop_assert!(c != '\'', "unescaped quote");
                    out.push(c);
                }
            }
            prop_assert_eq!(out, text);
        }
    }
}
