//! How a journal is opened: durability policy, segment size and the I/O implementation.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::io::{Io, StdIo};

/// When an append counts as done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// One fdatasync per entry, before it is acknowledged.
    Always,
    /// Group commit: one fdatasync per group of queued entries, before any is acknowledged.
    #[default]
    Batch,
    /// Acknowledged once written; fdatasync at most this often while there is unsynced data,
    /// and on close.
    Interval(Duration),
    /// Acknowledged once written; fdatasync only at segment rotation and on close.
    Never,
}

/// The interval of a bare `interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);

impl FromStr for Durability {
    type Err = Error;
    fn from_str(s: &str) -> Result<Durability> {
        let bad = || Error::BadDurability {
            value: s.to_string(),
        };
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "always" => Ok(Durability::Always),
            "batch" => Ok(Durability::Batch),
            "never" => Ok(Durability::Never),
            "interval" => Ok(Durability::Interval(DEFAULT_INTERVAL)),
            other => {
                let d = other.strip_prefix("interval:").ok_or_else(bad)?;
                let d = parse_duration(d.trim()).ok_or_else(bad)?;
                Ok(Durability::Interval(d))
            }
        }
    }
}

/// Parses `250ms`, `2s`, `500us`, `1m`: a positive whole number and a unit.
fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Always => f.write_str("always"),
            Durability::Batch => f.write_str("batch"),
            Durability::Never => f.write_str("never"),
            Durability::Interval(d) if d.subsec_micros() % 1000 != 0 => {
                write!(f, "interval:{}us", d.as_micros())
            }
            Durability::Interval(d) => write!(f, "interval:{}ms", d.as_millis()),
        }
    }
}

/// Options for [`crate::Journal::open`].
#[derive(Clone)]
pub struct JournalOptions {
    /// When appends are acknowledged. Default: [`Durability::Batch`].
    pub durability: Durability,
    /// A segment is closed and a new one started once it holds this many bytes. Default 64 MiB.
    pub segment_bytes: u64,
    /// All file I/O goes through this. Default: [`StdIo`].
    pub io: Arc<dyn Io>,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            durability: Durability::Batch,
            segment_bytes: 64 << 20,
            io: Arc::new(StdIo),
        }
    }
}

impl fmt::Debug for JournalOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalOptions")
            .field("durability", &self.durability)
            .field("segment_bytes", &self.segment_bytes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_parses_and_prints() {
        let cases = [
            ("always", Durability::Always, "always"),
            ("Batch", Durability::Batch, "batch"),
            ("NEVER", Durability::Never, "never"),
            (
                "interval",
                Durability::Interval(Duration::from_millis(100)),
                "interval:100ms",
            ),
            (
                "interval:250ms",
                Durability::Interval(Duration::from_millis(250)),
                "interval:250ms",
            ),
            (
                "Interval:2s",
                Durability::Interval(Duration::from_secs(2)),
                "interval:2000ms",
            ),
            (
                "interval:1500us",
                Durability::Interval(Duration::from_micros(1500)),
                "interval:1500us",
            ),
        ];
        for (text, want, shown) in cases {
            let got: Durability = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), shown);
            assert_eq!(shown.parse::<Durability>().unwrap(), want);
        }
        assert_eq!(Durability::default(), Durability::Batch);
    }

    #[test]
    fn bad_durability_lists_the_choices() {
        for bad in [
            "",
            "sometimes",
            "interval:",
            "interval:0ms",
            "interval:5h",
            "interval:ms",
            "interval:-1s",
        ] {
            let err = bad.parse::<Durability>().unwrap_err().to_string();
            assert!(err.contains("always, batch, interval"), "{bad}: {err}");
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }
}
