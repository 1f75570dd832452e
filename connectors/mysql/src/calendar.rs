//! Proleptic Gregorian calendar arithmetic: days since 1970-01-01 to and from (year, month,
//! day), and text forms of dates, times and datetimes as MySQL reads them.
//!
//! Dates use Howard Hinnant's `days_from_civil` / `civil_from_days`, exact for every year an
//! `i32` day count covers. Nothing here allocates except the `format_*` helpers' output.

use std::fmt::Write as _;

use crate::encode::push_padded;

/// Microseconds per day.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days since 1970-01-01 of a civil date (month 1..=12, day 1..=31, not checked here).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Whether (year, month, day) is a real calendar date.
pub fn is_valid_date(year: i64, month: u32, day: u32) -> bool {
    if !(1..=12).contains(&month) || day == 0 {
        return false;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= days_in_month
}

/// Appends `YYYY-MM-DD`.
pub fn write_date(out: &mut String, days: i64) {
    let (y, m, d) = civil_from_days(days);
    match u64::try_from(y) {
        // Years MySQL stores: fixed-width digits, no formatting machinery.
        Ok(year) if year <= 9999 => {
            push_padded(out, year, 4);
            out.push('-');
            push_padded(out, u64::from(m), 2);
            out.push('-');
            push_padded(out, u64::from(d), 2);
        }
        // Writing to a String cannot fail.
        _ => {
            let _ = write!(out, "{y:04}-{m:02}-{d:02}");
        }
    }
}

/// Appends `YYYY-MM-DD HH:MM:SS.ffffff` for microseconds since 1970-01-01T00:00.
pub fn write_datetime(out: &mut String, micros: i64) {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let of_day = micros.rem_euclid(MICROS_PER_DAY);
    write_date(out, days);
    out.push(' ');
    write_clock(out, of_day.unsigned_abs());
}

/// Appends `[-]HH:MM:SS.ffffff` for a signed duration in microseconds (MySQL `TIME`; hours
/// may exceed 24).
pub fn write_time(out: &mut String, micros: i64) {
    if micros < 0 {
        out.push('-');
    }
    write_clock(out, micros.unsigned_abs());
}

/// Appends `HH:MM:SS.ffffff`; the hours of a TIME may take three digits.
fn write_clock(out: &mut String, micros: u64) {
    let secs = micros / 1_000_000;
    push_padded(out, secs / 3600, 2);
    out.push(':');
    push_padded(out, secs / 60 % 60, 2);
    out.push(':');
    push_padded(out, secs % 60, 2);
    out.push('.');
    push_padded(out, micros % 1_000_000, 6);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1000, 1, 1), -354_285);
        assert_eq!(days_from_civil(9999, 12, 31), 2_932_896);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert!(is_valid_date(2024, 2, 29));
        assert!(!is_valid_date(2023, 2, 29));
        assert!(!is_valid_date(2023, 0, 1));
        assert!(!is_valid_date(1900, 2, 29));
    }

    #[test]
    fn text_forms() {
        let mut s = String::new();
        write_datetime(&mut s, -1);
        assert_eq!(s, "1969-12-31 23:59:59.999999");
        s.clear();
        write_time(&mut s, -(838 * 3600 + 59 * 60 + 59) * 1_000_000);
        assert_eq!(s, "-838:59:59.000000");
        s.clear();
        write_date(&mut s, days_from_civil(1000, 1, 1));
        assert_eq!(s, "1000-01-01");
    }

    proptest! {
        #[test]
        fn text_forms_equal_formatted_ones(
            days in -1_000_000i64..3_000_000,
            of_day in 0i64..MICROS_PER_DAY,
            time in -3_020_399_999_999i64..=3_020_399_999_999,
        ) {
            let (y, m, d) = civil_from_days(days);
            let mut s = String::new();
            write_date(&mut s, days);
            prop_assert_eq!(&s, &format!("{y:04}-{m:02}-{d:02}"));
            let clock = |us: u64| {
                let secs = us / 1_000_000;
                format!(
                    "{:02}:{:02}:{:02}.{:06}",
                    secs / 3600,
                    secs / 60 % 60,
                    secs % 60,
                    us % 1_000_000
                )
            };
            s.clear();
            write_datetime(&mut s, days * MICROS_PER_DAY + of_day);
            prop_assert_eq!(&s, &format!("{y:04}-{m:02}-{d:02} {}", clock(of_day as u64)));
            s.clear();
            write_time(&mut s, time);
            let sign = if time < 0 { "-" } else { "" };
            prop_assert_eq!(&s, &format!("{sign}{}", clock(time.unsigned_abs())));
        }

        #[test]
        fn days_round_trip(days in -1_000_000i64..3_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!(is_valid_date(y, m, d));
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
