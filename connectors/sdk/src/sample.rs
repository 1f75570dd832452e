//! Deterministic sample data covering every logical type, for tests and benchmarks of the SDK,
//! the host and every connector (a round trip of [`all_types_schema`] through a connector must
//! give equal digests on both sides).
//!
//! Values are a pure function of `(row id, column)`: the same rows come out in every process,
//! whatever the chunking. Nullable columns hold a NULL in roughly one row in seven (a different
//! row per column); text and binary columns hold an empty value in roughly one row in eleven,
//! so NULL-versus-empty mistakes show up. Extremes (integer bounds, 38-digit decimals, the
//! largest offsets) appear at fixed row ids.

use std::sync::Arc;

use crate::batch::{Batch, Interval, OffsetTimestamp};
use crate::builder::BatchBuilder;
use crate::error::Result;
use crate::types::{Field, LogicalType, Schema};

/// A schema with a non-null `Int64` primary key `id` and one nullable column per logical type.
pub fn all_types_schema() -> Schema {
    use LogicalType as L;
    let cols: Vec<(&str, LogicalType)> = vec![
        ("c_bool", L::Bool),
        ("c_i8", L::Int8),
        ("c_i16", L::Int16),
        ("c_i32", L::Int32),
        ("c_i64", L::Int64),
        ("c_i128", L::Int128),
        ("c_u8", L::UInt8),
        ("c_u16", L::UInt16),
        ("c_u32", L::UInt32),
        ("c_u64", L::UInt64),
        ("c_f32", L::Float32),
        ("c_f64", L::Float64),
        (
            "c_dec",
            L::Decimal {
                precision: 18,
                scale: 4,
            },
        ),
        (
            "c_dec38",
            L::Decimal {
                precision: 38,
                scale: 10,
            },
        ),
        ("c_money", L::Money),
        ("c_smallmoney", L::SmallMoney),
        ("c_date", L::Date),
        ("c_time", L::Time { precision: 6 }),
        ("c_datetime", L::DateTime { precision: 6 }),
        ("c_timestamp", L::Timestamp { precision: 3 }),
        ("c_dto", L::DateTimeOffset { precision: 6 }),
        ("c_year", L::Year),
        ("c_bit", L::Bit { width: 12 }),
        ("c_char", L::Char { length: 4 }),
        (
            "c_varchar",
            L::Varchar {
                max_length: Some(64),
            },
        ),
        ("c_text", L::Text { max_bytes: None }),
        ("c_nchar", L::NChar { length: 3 }),
        ("c_nvarchar", L::NVarchar { max_length: None }),
        ("c_json", L::Json),
        (
            "c_enum",
            L::Enum {
                variants: vec!["rojo".into(), "verde".into(), "azul".into()],
            },
        ),
        (
            "c_set",
            L::Set {
                members: vec!["a".into(), "b".into(), "c".into()],
            },
        ),
        ("c_binary", L::Binary { length: 4 }),
        (
            "c_varbinary",
            L::Varbinary {
                max_length: Some(32),
            },
        ),
        ("c_blob", L::Blob { max_bytes: None }),
        ("c_uuid", L::Uuid),
        ("c_interval", L::Interval),
    ];
    let mut fields = vec![Field::new("id", L::Int64, false)];
    fields.extend(cols.into_iter().map(|(n, t)| Field::new(n, t, true)));
    // The column list above is valid by construction; `Schema::new` only rejects bad input.
    Schema::new(fields, &["id"]).unwrap_or_else(|e| unreachable!("sample schema is valid: {e}"))
}

/// splitmix64: a fast, well-mixed pure function of its input.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

const WORDS: [&str; 8] = [
    "",
    "caudal",
    "año",
    "日本語",
    "a,b",
    "O'Brien",
    "\"q\"",
    "línea\nnueva",
];

/// Rows `start .. start + rows` of the [`all_types_schema`] data set.
pub fn all_types_batch(schema: &Arc<Schema>, start: u64, rows: usize) -> Result<Batch> {
    let mut b = BatchBuilder::with_capacity(Arc::clone(schema), rows);
    for id in start..start + rows as u64 {
        push_all_types_row(&mut b, id)?;
    }
    b.finish()
}

/// Appends row `id` of the [`all_types_schema`] data set to `b` (whose schema must be it).
pub fn push_all_types_row(b: &mut BatchBuilder, id: u64) -> Result<()> {
    let r = mix(id);
    let signed = r as i64;
    b.push(0, id as i64)?;
    for col in 1..b.schema().len() {
        let h = mix(r ^ col as u64);
        if h.is_multiple_of(7) {
            b.push_null(col)?;
        } else {
            push_cell(b, col, id, h, signed)?;
        }
    }
    Ok(())
}

fn push_cell(b: &mut BatchBuilder, col: usize, id: u64, h: u64, signed: i64) -> Result<()> {
    let edge = id % 97 == 3;
    let word = WORDS[(h % WORDS.len() as u64) as usize];
    let empty = h.is_multiple_of(11);
    match col {
        1 => b.push(col, h & 1 == 1),
        2 => b.push(col, if edge { i8::MIN } else { h as i8 }),
        3 => b.push(col, if edge { i16::MAX } else { h as i16 }),
        4 => b.push(col, if edge { i32::MIN } else { h as i32 }),
        5 => b.push(col, if edge { i64::MIN } else { signed }),
        6 => b.push(
            col,
            if edge {
                i128::MAX
            } else {
                i128::from(signed) * 1_000_003
            },
        ),
        7 => b.push(col, h as u8),
        8 => b.push(col, h as u16),
        9 => b.push(col, h as u32),
        10 => b.push(col, if edge { u64::MAX } else { h }),
        11 => b.push(col, (h % 1_000_000) as f32 / 64.0),
        12 => b.push(
            col,
            if edge {
                f64::INFINITY
            } else {
                (signed as f64) / 3.0
            },
        ),
        13 => b.push(col, i128::from(signed % 100_000_000_000_000)),
        14 => b.push(
            col,
            if edge {
                10i128.pow(38) - 1
            } else {
                i128::from(signed) * 7
            },
        ),
        15 => b.push(col, i128::from(signed / 4)),
        16 => b.push(col, i128::from(h as i32)),
        17 => b.push(col, (h % 40_000) as i32 - 3_000),
        18 => b.push(col, (h % 86_400_000_000) as i64),
        19 => b.push(col, (signed % 4_102_444_800_000_000).abs()),
        20 => b.push(col, (signed % 4_102_444_800_000).abs() * 1000),
        21 => b.push(
            col,
            OffsetTimestamp {
                utc_micros: (signed % 4_102_444_800_000_000).abs(),
                offset_minutes: if edge { -840 } else { (h % 1681) as i16 - 840 },
            },
        ),
        22 => b.push(col, 1901 + (h % 255) as i16),
        23 => b.push(col, h & 0xFFF),
        // Fixed-length types hold values of exactly their length: databases pad shorter ones.
        24 => b.push(col, ["abcd", "wxyz", "ñand", "1 2 "][(h % 4) as usize]),
        25 | 26 | 28 => b.push(col, if empty { "" } else { word }),
        27 => b.push(col, ["ñus", "abc", "東京都"][(h % 3) as usize]),
        29 => b.push(
            col,
            if empty {
                "{}"
            } else {
                r#"{"k":[1,2,{"x":null}]}"#
            },
        ),
        30 => b.push(col, ["rojo", "verde", "azul"][(h % 3) as usize]),
        31 => b.push(col, ["", "a", "a,b", "a,b,c", "c"][(h % 5) as usize]),
        32 => b.push(col, &h.to_le_bytes()[..4]),
        33 | 34 => {
            let bytes = h.to_le_bytes();
            b.push(
                col,
                if empty {
                    &[][..]
                } else {
                    &bytes[..(h % 8) as usize + 1]
                },
            )
        }
        35 => {
            let mut u = [0u8; 16];
            u[..8].copy_from_slice(&h.to_be_bytes());
            u[8..].copy_from_slice(&id.to_be_bytes());
            b.push(col, u)
        }
        36 => b.push(
            col,
            Interval {
                months: (h % 25) as i32 - 12,
                days: (h % 61) as i32 - 30,
                micros: signed % 86_400_000_000,
            },
        ),
        _ => b.push_null(col),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_every_column_with_values_and_nulls() {
        let schema = Arc::new(all_types_schema());
        let batch = all_types_batch(&schema, 0, 500).unwrap();
        for (i, c) in batch.columns().iter().enumerate().skip(1) {
            let name = &schema.fields()[i].name;
            assert!(c.null_count() > 0, "{name} has no NULL");
            assert!(c.null_count() < 200, "{name} is mostly NULL");
        }
        assert_eq!(batch.columns()[0].null_count(), 0);
    }

    #[test]
    fn chunking_does_not_change_the_rows() {
        let schema = Arc::new(all_types_schema());
        let whole = all_types_batch(&schema, 10, 20).unwrap();
        let part = all_types_batch(&schema, 15, 5).unwrap();
        for row in 0..5 {
            for col in 0..schema.len() {
                assert_eq!(whole.value(row + 5, col), part.value(row, col));
            }
        }
    }
}
