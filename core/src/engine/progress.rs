//! Progress of a run, per stream or partition: rows, rows/s, bytes and, when the source knows
//! its row count, an ETA.
//!
//! [`Bars`] draws one indicatif line per task on a terminal; [`Lines`] prints plain lines (at
//! most one per task per interval, and one when the task ends) for logs and pipes; [`Silent`]
//! prints nothing. The engine only calls [`Progress`].

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where a run reports progress.
pub trait Progress: Send + Sync {
    /// A task (stream or partition) started; `estimated_rows` when the source knows.
    fn start(&self, label: &str, estimated_rows: Option<u64>) -> Box<dyn TaskProgress>;

    /// Whether row estimates are worth a call to the source (only when they are shown).
    fn wants_estimates(&self) -> bool {
        false
    }
}

/// The progress of one task.
pub trait TaskProgress: Send {
    /// A batch of `rows` rows and `bytes` bytes was read and journaled.
    fn advance(&mut self, rows: u64, bytes: u64);
    /// The task ended; `summary` says how.
    fn finish(&mut self, summary: &str);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

struct SilentTask;

impl Progress for Silent {
    fn start(&self, _: &str, _: Option<u64>) -> Box<dyn TaskProgress> {
        Box::new(SilentTask)
    }
}

impl TaskProgress for SilentTask {
    fn advance(&mut self, _: u64, _: u64) {}
    fn finish(&mut self, _: &str) {}
}

/// Plain lines on standard error.
#[derive(Debug, Clone, Copy)]
pub struct Lines {
    /// The least time between two lines of one task.
    pub every: Duration,
}

impl Default for Lines {
    fn default() -> Self {
        Lines {
            every: Duration::from_secs(5),
        }
    }
}

struct LineTask {
    label: String,
    every: Duration,
    started: Instant,
    last_line: Instant,
    rows: u64,
    bytes: u64,
    estimated: Option<u64>,
}

impl LineTask {
    fn line(&self, tail: &str) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let total = self
            .estimated
            .map(|e| format!(" of ~{e}"))
            .unwrap_or_default();
        format!(
            "{}: {} rows{total}, {}, {:.0} rows/s{tail}",
            self.label,
            self.rows,
            human_bytes(self.bytes),
            self.rows as f64 / secs
        )
    }
}

impl Progress for Lines {
    fn start(&self, label: &str, estimated_rows: Option<u64>) -> Box<dyn TaskProgress> {
        let now = Instant::now();
        Box::new(LineTask {
            label: label.to_owned(),
            every: self.every,
            started: now,
            last_line: now,
            rows: 0,
            bytes: 0,
            estimated: estimated_rows,
        })
    }
}

impl TaskProgress for LineTask {
    fn advance(&mut self, rows: u64, bytes: u64) {
        self.rows += rows;
        self.bytes += bytes;
        if self.last_line.elapsed() >= self.every {
            self.last_line = Instant::now();
            let _ = writeln!(std::io::stderr(), "{}", self.line(""));
        }
    }

    fn finish(&mut self, summary: &str) {
        let _ = writeln!(std::io::stderr(), "{}", self.line(&format!(" — {summary}")));
    }
}

/// One indicatif line per task, on standard error.
pub struct Bars {
    multi: MultiProgress,
}

impl Bars {
    /// Bars drawn on standard error.
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        }
    }

    /// The bars' container, so that log lines can be printed above them.
    pub fn multi(&self) -> &MultiProgress {
        &self.multi
    }
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

struct BarTask {
    bar: ProgressBar,
    bytes: u64,
}

impl Progress for Bars {
    fn start(&self, label: &str, estimated_rows: Option<u64>) -> Box<dyn TaskProgress> {
        let bar = match estimated_rows {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{prefix:>24} [{bar:30}] {human_pos}/{human_len} rows {per_sec} {msg} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::no_length().with_style(
                ProgressStyle::with_template("{prefix:>24} {spinner} {human_pos} rows {per_sec} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        let bar = self.multi.add(bar);
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Box::new(BarTask { bar, bytes: 0 })
    }

    fn wants_estimates(&self) -> bool {
        true
    }
}

impl TaskProgress for BarTask {
    fn advance(&mut self, rows: u64, bytes: u64) {
        self.bytes += bytes;
        self.bar.inc(rows);
        self.bar.set_message(human_bytes(self.bytes));
    }

    fn finish(&mut self, summary: &str) {
        self.bar
            .finish_with_message(format!("{} — {summary}", human_bytes(self.bytes)));
    }
}

/// `12.3 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(8 << 20), "8.0 MiB");
    }

    #[test]
    fn a_line_has_rows_bytes_and_rate() {
        let mut t = LineTask {
            label: "ventas/tienda_01".into(),
            every: Duration::from_secs(3600),
            started: Instant::now(),
            last_line: Instant::now(),
            rows: 0,
            bytes: 0,
            estimated: Some(100),
        };
        t.advance(40, 2048);
        let line = t.line("");
        assert!(
            line.starts_with("ventas/tienda_01: 40 rows of ~100, 2.0 KiB, "),
            "{line}"
        );
        assert!(line.ends_with("rows/s"), "{line}");
    }
}
