//! When a pipeline runs by itself under `caudal serve`: a cron expression, a fixed period, or
//! once at a given time. Exactly one of `cron`, `every` and `once` is set in `[schedule]`.
//!
//! Times without an offset (`once = 2025-01-10T20:00:00`) and cron expressions are read in the
//! local time of the machine that runs caudal, as crontab does.

use std::time::Duration;

/// A point in time written in the pipeline file, with or without a UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleTime {
    /// The date and wall-clock time as written.
    pub datetime: time::PrimitiveDateTime,
    /// The offset if one was written (`Z`, `-04:00`); `None` means local time.
    pub offset: Option<time::UtcOffset>,
}

impl ScheduleTime {
    /// The instant this time denotes, reading a time without offset at `local`.
    pub fn at_offset(&self, local: time::UtcOffset) -> time::OffsetDateTime {
        self.datetime.assume_offset(self.offset.unwrap_or(local))
    }
}

/// A parsed cron expression together with the text it came from.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    pub(crate) text: String,
    pub(crate) cron: croner::Cron,
}

impl CronSchedule {
    /// The expression as written, e.g. `"0 5 * * *"`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The croner schedule, to ask for the next occurrence
    /// (`cron().find_next_occurrence(&now, false)`).
    pub fn cron(&self) -> &croner::Cron {
        &self.cron
    }
}

/// The `[schedule]` of a pipeline.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Schedule {
    /// `cron = "0 5 * * *"`: at the times the expression matches, local time.
    Cron(CronSchedule),
    /// `every = "3d"`: a fixed period between runs; `start` (optional) is the first run,
    /// otherwise the first run is when `caudal serve` starts.
    Every {
        /// The period. Never zero.
        period: Duration,
        /// The first run, if given.
        start: Option<ScheduleTime>,
    },
    /// `once = 2025-01-10T20:00:00`: a single run.
    Once(ScheduleTime),
}
