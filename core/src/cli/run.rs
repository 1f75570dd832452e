//! `caudal run FILE`: one run of a pipeline (see [`crate::engine::run`]), plus what every
//! engine command shares: loading the pipeline file (exit 2 on any problem), logging with
//! tracing (`--log-format text|json`), progress on standard error, and the exit status
//! (0 everything read and written, 1 something failed, 2 usage or configuration).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use caudal_config::Pipeline;
use clap::{Args, ValueEnum};
use indicatif::MultiProgress;
use serde_json::json;

use crate::engine::{
    Bars, Engine, EngineError, Lines, PartOutcome, PluginEndpoints, Progress, RepairedRebuild,
    RunOptions, RunReport, Silent,
};

/// Exit status for usage and configuration errors.
pub const EXIT_USAGE: u8 = 2;

/// `caudal run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline file.
    file: PathBuf,
    /// Only this stream (repeatable).
    #[arg(long = "stream", value_name = "STREAM")]
    streams: Vec<String>,
    /// Only this source connection of partitioned streams (repeatable), e.g. tienda_07.
    #[arg(long = "partition", value_name = "CONNECTION")]
    partitions: Vec<String>,
    /// Manual range: read rows whose cursor is at or after this value (e.g. 2025-01-01).
    #[arg(long, value_name = "VALUE")]
    from: Option<String>,
    /// Manual range: read rows whose cursor is before this value.
    #[arg(long, value_name = "VALUE")]
    to: Option<String>,
    /// Streams or partitions run at the same time.
    #[arg(long, default_value_t = 4, value_name = "N")]
    jobs: usize,
    /// Do not wait for the retries `[retry]` schedules: journal them and end the run.
    #[arg(long)]
    no_retry_wait: bool,
    /// A JSON summary on standard output instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// Logging and progress options shared by the engine commands.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Log lines as text or one JSON object per line (standard error).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `caudal=debug` [default: warn with progress bars, else info;
    /// or $RUST_LOG].
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Progress display on standard error.
    #[arg(long, value_enum, default_value_t = ProgressChoice::Auto)]
    progress: ProgressChoice,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressChoice {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    /// A bar per stream.
    Bars,
    /// Plain lines.
    Lines,
    /// Nothing.
    None,
}

impl OutputArgs {
    /// Sets up logging and returns where progress goes.
    pub fn init(&self) -> Arc<dyn Progress> {
        let choice = match self.progress {
            ProgressChoice::Auto if std::io::stderr().is_terminal() => ProgressChoice::Bars,
            ProgressChoice::Auto => ProgressChoice::Lines,
            other => other,
        };
        match choice {
            ProgressChoice::Bars => {
                let bars = Bars::new();
                self.init_logging("warn", Some(bars.multi().clone()));
                Arc::new(bars)
            }
            ProgressChoice::Lines => {
                self.init_logging("info", None);
                Arc::new(Lines::default())
            }
            _ => {
                self.init_logging("info", None);
                Arc::new(Silent)
            }
        }
    }

    fn init_logging(&self, default: &str, bars: Option<MultiProgress>) {
        use tracing_subscriber::EnvFilter;
        let filter = match &self.log_level {
            Some(level) => EnvFilter::new(level),
            None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
        };
        let writer = LogWriter { bars };
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false);
        // A second initialisation (tests running commands in one process) keeps the first.
        let _ = match self.log_format {
            LogFormat::Json => builder.json().try_init(),
            LogFormat::Text => builder.try_init(),
        };
    }
}

/// Log lines go to standard error, printed above the progress bars when there are any.
#[derive(Clone)]
struct LogWriter {
    bars: Option<MultiProgress>,
}

struct LogLine {
    buf: Vec<u8>,
    bars: Option<MultiProgress>,
}

impl Write for LogLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let print = || {
            let _ = std::io::stderr().write_all(&buf);
        };
        match &self.bars {
            Some(bars) => bars.suspend(print),
            None => print(),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine {
            buf: Vec::new(),
            bars: self.bars.clone(),
        }
    }
}

/// Loads a pipeline file; on any problem prints every error (file:line:column) and returns
/// the exit status to end with.
pub fn load_pipeline(file: &Path) -> Result<Arc<Pipeline>, ExitCode> {
    Pipeline::from_path(file).map(Arc::new).map_err(|e| {
        for problem in e.problems() {
            eprintln!("error: {problem}");
        }
        ExitCode::from(EXIT_USAGE)
    })
}

/// The exit status for an engine error: 2 for usage, 1 otherwise (printed here).
pub fn engine_error(pipeline: &Pipeline, e: &EngineError) -> ExitCode {
    eprintln!("error: {}", pipeline.scrub(&e.to_string()));
    match e {
        EngineError::Usage(_) => ExitCode::from(EXIT_USAGE),
        _ => ExitCode::from(1),
    }
}

/// Runs `caudal run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let pipeline = match load_pipeline(&args.file) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if args.jobs == 0 {
        eprintln!("error: --jobs must be at least 1");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let progress = args.output.init();
    let endpoints = Arc::new(PluginEndpoints::for_pipeline(&pipeline));
    let engine = Engine::new(Arc::clone(&pipeline), endpoints, progress);
    let options = RunOptions {
        streams: args.streams,
        partitions: args.partitions,
        from: args.from,
        to: args.to,
        trigger: "manual".into(),
        wait_for_retries: !args.no_retry_wait,
        jobs: args.jobs,
    };
    if let Err(e) = engine.check(&options) {
        return Ok(engine_error(&pipeline, &e));
    }
    // A connector that is not installed is a mistake in the file: refused before anything
    // is journaled, as `caudal validate` would.
    let problems = super::validate::plugin_problems(&pipeline);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let report = match engine.run(&options) {
        Ok(r) => r,
        Err(e) => return Ok(engine_error(&pipeline, &e)),
    };
    if args.json {
        outln!("{}", report_json(&pipeline, &report));
    } else {
        print_report(&pipeline, &report);
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report_json(pipeline: &Pipeline, r: &RunReport) -> serde_json::Value {
    let parts: Vec<serde_json::Value> =
        r.parts
            .iter()
            .map(|p| {
                let (status, detail) = match &p.outcome {
                    PartOutcome::Ok => ("ok", json!(null)),
                    PartOutcome::ReadFailed(e) => ("read_failed", json!(e)),
                    PartOutcome::WritesPending { lanes } => (
                        "writes_pending",
                        json!(lanes
                        .iter()
                        .map(|(d, seq, e)| json!({"destination": d, "from_seq": seq, "error": e}))
                        .collect::<Vec<_>>()),
                    ),
                };
                json!({
                    "stream": p.label,
                    "rows": p.rows,
                    "batches": p.batches,
                    "status": status,
                    "detail": detail,
                })
            })
            .collect();
    json!({
        "run": r.run.to_string(),
        "pipeline": pipeline.name(),
        "ok": r.succeeded(),
        "rows": r.rows,
        "batches": r.batches,
        "elapsed_ms": r.elapsed.as_millis() as u64,
        "streams": parts,
        "rebuilds": r.rebuilds.iter().map(rebuild_json).collect::<Vec<_>>(),
    })
}

/// An unfinished rebuild the run made again: its scope, and its rows or why it failed.
pub(crate) fn rebuild_json(r: &RepairedRebuild) -> serde_json::Value {
    let (rows, error) = r.outcome();
    json!({
        "connection": r.scope.connection,
        "table": r.scope.table,
        "ok": r.succeeded(),
        "rows": rows,
        "error": error,
    })
}

fn print_report(pipeline: &Pipeline, r: &RunReport) {
    let secs = r.elapsed.as_secs_f64();
    outln!(
        "run {} of `{}`: {} rows in {} batches, {:.1}s ({:.0} rows/s)",
        r.run,
        pipeline.name(),
        r.rows,
        r.batches,
        secs,
        r.rows as f64 / secs.max(1e-3)
    );
    print_rebuilds(&r.rebuilds);
    let width = r.parts.iter().map(|p| p.label.len()).max().unwrap_or(0);
    for p in &r.parts {
        let status = match &p.outcome {
            PartOutcome::Ok => "ok".to_owned(),
            PartOutcome::ReadFailed(e) => format!("FAILED reading: {e}"),
            PartOutcome::WritesPending { lanes } => lanes
                .iter()
                .map(|(d, seq, e)| format!("PENDING -> {d} from seq {seq}: {e}"))
                .collect::<Vec<_>>()
                .join("; "),
        };
        outln!("  {:width$}  {:>10} rows  {status}", p.label, p.rows);
    }
    let pending = r
        .parts
        .iter()
        .any(|p| matches!(p.outcome, PartOutcome::WritesPending { .. }));
    let unread = r
        .parts
        .iter()
        .any(|p| matches!(p.outcome, PartOutcome::ReadFailed(_)));
    if pending {
        outln!("`caudal failures` lists what is pending; `caudal retry` writes it again.");
    }
    if unread {
        outln!("A stream that failed reading is read again by the next `caudal run`.");
    }
}

/// A line per unfinished rebuild made again first: its rows, or why it failed.
pub(crate) fn print_rebuilds(rebuilds: &[RepairedRebuild]) {
    for rebuilt in rebuilds {
        let scope = match &rebuilt.scope.table {
            Some(t) => format!("table `{t}` of connection `{}`", rebuilt.scope.connection),
            None => format!("connection `{}`", rebuilt.scope.connection),
        };
        match rebuilt.outcome() {
            (rows, None) => outln!(
                "  an earlier rebuild of {scope} had not finished: rebuilt first, {rows} rows"
            ),
            (_, Some(e)) => outln!(
                "  an earlier rebuild of {scope} had not finished, and rebuilding it FAILED: {e} \
                 (the next run tries again)"
            ),
        }
    }
}
