//! Times as users type them and read them: RFC 3339 instants, plain dates, and "2h ago"
//! durations in, RFC 3339 UTC with milliseconds out. Journal times are microseconds since the
//! Unix epoch, UTC.

use anyhow::{Context, bail};
use caudal_journal::Timestamp;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, macros::format_description};

/// Now, in journal time.
pub fn now() -> Timestamp {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as Timestamp
}

/// Parses `--since`/`--until` values: `2026-11-23T05:00:00Z`, `2026-11-23` (midnight UTC), or a
/// duration such as `90m` or `2days`, meaning that long before now.
pub fn parse_instant(text: &str) -> anyhow::Result<Timestamp> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000) as Timestamp);
    }
    if let Ok(d) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
        let t = d.midnight().assume_utc();
        return Ok((t.unix_timestamp_nanos() / 1_000) as Timestamp);
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(now() - ago.as_micros() as Timestamp),
        Err(_) => bail!(
            "`{text}` is not a time: use RFC 3339 (2026-11-23T05:00:00Z), a date (2026-11-23) \
             or a duration before now (90m, 2days)"
        ),
    }
}

/// Formats a journal time as RFC 3339 UTC with milliseconds.
pub fn format(t: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000)
        .ok()
        .and_then(|dt| {
            dt.format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| format!("@{t}us"))
}

/// Parses a duration flag such as `200ms` or `20m`.
pub fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    humantime::parse_duration(text)
        .with_context(|| format!("`{text}` is not a duration (e.g. 200ms, 20m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_through_rfc3339() {
        let t = parse_instant("2026-11-23T05:06:07.250Z").unwrap();
        assert_eq!(format(t), "2026-11-23T05:06:07.250Z");
        assert_eq!(
            parse_instant("2026-11-23").unwrap(),
            parse_instant("2026-11-23T00:00:00Z").unwrap()
        );
    }

    #[test]
    fn durations_count_back_from_now() {
        let t = parse_instant("1h").unwrap();
        let expected = now() - 3_600_000_000;
        assert!((t - expected).abs() < 5_000_000, "{t} vs {expected}");
        assert!(parse_instant("yesterday-ish").is_err());
    }
}
