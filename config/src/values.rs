//! Value types that check themselves while they are deserialized.
//!
//! A serde error raised inside a value's `Deserialize` is reported by the TOML deserializer at
//! that value's own line and column, so checks that need no other setting (a duration that does
//! not parse, a zero `chunk_rows`, a bad cron expression) live here and get precise positions
//! for free. Checks that compare settings live in `load.rs`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

/// A duration written the humantime way: `"20m"`, `"200ms"`, `"3d"`, `"1h 30m"`. Never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub(crate) Duration);

/// Parses a humantime duration that must be greater than zero.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration \"{text}\": {e}; write e.g. \"20m\", \"200ms\" or \"3d\"")
    })?;
    if duration.is_zero() {
        return Err(format!(
            "duration \"{text}\" is zero; it must be greater than zero"
        ));
    }
    Ok(duration)
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"20m\", \"200ms\" or \"3d\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                parse_duration(text).map(HumanDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

/// A size in bytes: an integer, or a string with a unit (`"8 MiB"`, `"512KiB"`, `"1GB"`).
/// Never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSize(pub(crate) u64);

/// Parses `"<integer> [unit]"`; units are B, KB, KiB, MB, MiB, GB, GiB, case-insensitive.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let hint = "write an integer number of bytes or e.g. \"8 MiB\", \"512 KiB\", \"1 GB\"";
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid size \"{text}\": {hint}"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size \"{text}\": unknown unit \"{other}\"; {hint}"
            ));
        }
    };
    let bytes = number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size \"{text}\" is too large"))?;
    if bytes == 0 {
        return Err(format!(
            "size \"{text}\" is zero; it must be at least 1 byte"
        ));
    }
    Ok(bytes)
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: an integer number of bytes or a string such as \"8 MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                match u64::try_from(v) {
                    Ok(v) if v > 0 => Ok(ByteSize(v)),
                    _ => Err(E::custom(format!("size {v} must be at least 1 byte"))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
                parse_size(text).map(ByteSize).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// An integer of at least 1 (a count: rows, attempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Positive(pub(crate) u64);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PositiveVisitor;
        impl Visitor<'_> for PositiveVisitor {
            type Value = Positive;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer of at least 1")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Positive, E> {
                match u64::try_from(v) {
                    Ok(v) if v > 0 => Ok(Positive(v)),
                    _ => Err(E::custom(format!("must be at least 1, not {v}"))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Positive, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        deserializer.deserialize_any(PositiveVisitor)
    }
}

/// A fraction between 0 and 1 inclusive (retry jitter).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fraction(pub(crate) f64);

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FractionVisitor;
        impl Visitor<'_> for FractionVisitor {
            type Value = Fraction;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number between 0 and 1, e.g. 0.1")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Fraction, E> {
                if (0.0..=1.0).contains(&v) {
                    Ok(Fraction(v))
                } else {
                    Err(E::custom(format!(
                        "{v} is out of range: it must be between 0 and 1"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Fraction, E> {
                // Integers 0 and 1 are exact in f64; anything else is rejected by the range check.
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Fraction, E> {
                self.visit_f64(v as f64)
            }
        }
        deserializer.deserialize_any(FractionVisitor)
    }
}

/// One string or an array of strings (`to = "warehouse"` or `to = ["warehouse", "cache"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StringList(pub(crate) Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = StringList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
                Ok(StringList(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(StringList(items))
            }
        }
        deserializer.deserialize_any(ListVisitor)
    }
}

/// A cron expression, checked by croner: five fields (minute to weekday), optionally seconds
/// first and a year last, or a nickname such as `@daily`.
#[derive(Debug, Clone)]
pub(crate) struct CronExpr {
    pub(crate) text: String,
    pub(crate) cron: croner::Cron,
}

impl<'de> Deserialize<'de> for CronExpr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CronVisitor;
        impl Visitor<'_> for CronVisitor {
            type Value = CronExpr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cron expression string such as \"0 5 * * *\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<CronExpr, E> {
                let cron = text.parse::<croner::Cron>().map_err(|e| {
                    E::custom(format!(
                        "invalid cron expression \"{text}\": {e} \
                         (fields: minute hour day-of-month month day-of-week, e.g. \"0 5 * * *\")"
                    ))
                })?;
                Ok(CronExpr {
                    text: text.to_owned(),
                    cron,
                })
            }
        }
        deserializer.deserialize_str(CronVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_humantime_and_refuse_zero_and_garbage() {
        assert_eq!(parse_duration("20m"), Ok(Duration::from_secs(1200)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("0s").unwrap_err().contains("zero"));
        assert!(
            parse_duration("20x")
                .unwrap_err()
                .contains("invalid duration \"20x\"")
        );
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes_accept_integers_and_units() {
        assert_eq!(parse_size("8 MiB"), Ok(8 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1gb"), Ok(1_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(
            parse_size("8 MiBs")
                .unwrap_err()
                .contains("unknown unit \"mibs\"")
        );
        assert!(parse_size("1.5 MiB").is_err());
        assert!(parse_size("0 MiB").unwrap_err().contains("zero"));
        assert!(parse_size("99999999999999999999 GiB").is_err());
        assert!(
            parse_size("18446744073709551615 GiB")
                .unwrap_err()
                .contains("too large")
        );
    }
}
