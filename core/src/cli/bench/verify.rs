//! `caudal bench verify [--rows N]`: the time of a verify of a DuckDB table of N rows
//! (default 1M) written by a run, against the time of a plain full scan of the same table
//! through the same connector (every chunk read and decoded, nothing digested). The goal is
//! a ratio under 2. Each figure is the median of `--repeat` measurements.
//!
//! The scan runs in this process with the plugin already loaded, so the verify it is set
//! against does too (the engine's verify, journal and fold checkpoint included). The
//! `caudal verify` command is timed as well: it adds the process start, the journal's open
//! and the DuckDB plugin's load, shown apart. So are the first verify (the whole journal
//! folded) and, last, a verify after a second run that adds 5% more rows (the fold's
//! checkpoint read, the new batches folded in): a verify after each nightly run.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use caudal_config::Pipeline;
use caudal_connector::{
    BatchBuilder, Field, LogicalType, PrepareTable, ReadRequest, Schema, WriteOp, WriteRequest,
};
use clap::Args;
use serde_json::json;

use crate::engine::{Engine, PluginEndpoints, Silent, VerifyOptions};
use crate::host::Connection;

/// `caudal bench verify`
#[derive(Debug, Args)]
pub struct VerifyBenchArgs {
    /// Rows in the table.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Measurements of each figure; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Directory for the generated files, kept afterwards [default: a temporary directory].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

const CHUNK: u64 = 20_000;

pub fn run(args: VerifyBenchArgs) -> anyhow::Result<ExitCode> {
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("bench-verify.toml");
    std::fs::write(
        &file,
        "[pipeline]\nname = \"bench_verify\"\n\n[journal]\ndir = \"journal\"\n\n\
         [connections.src]\nconnector = \"duckdb\"\npath = \"src.duckdb\"\n\n\
         [connections.wh]\nconnector = \"duckdb\"\npath = \"wh.duckdb\"\n\n\
         [[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"wh\"\nmode = \"incremental\"\n\
         cursor = \"id\"\nprimary_key = [\"id\"]\n",
    )?;
    let pipeline = Pipeline::from_path(&file).context("the bench's pipeline file")?;
    let endpoints = PluginEndpoints::for_pipeline(&pipeline);
    let duckdb = |path: &Path| super::open_duckdb(&endpoints, path);
    let started = Instant::now();
    generate(duckdb(&dir.join("src.duckdb"))?, 0..args.rows)?;
    let generated = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let file_arg = file.display().to_string();
    caudal(&["run", "--progress", "none", &file_arg], "run")?;
    let run_s = started.elapsed().as_secs_f64();

    // The first verify folds the whole journal (no checkpoint yet); later ones read the
    // fold's checkpoint and fold only what was journaled since.
    let cold_s = verify_command(&file_arg)?;
    let repeat = args.repeat.max(1);
    let mut scans = Vec::with_capacity(repeat);
    let mut verifies = Vec::with_capacity(repeat);
    let mut in_process = Vec::with_capacity(repeat);
    let engine = Engine::new(
        Arc::new(pipeline.clone()),
        Arc::new(PluginEndpoints::for_pipeline(&pipeline)),
        Arc::new(Silent),
    );
    for _ in 0..repeat {
        let started = Instant::now();
        let rows = scan(duckdb(&dir.join("wh.duckdb"))?)?;
        scans.push(started.elapsed().as_secs_f64());
        if rows != args.rows {
            bail!("the scan read {rows} rows, the table has {}", args.rows);
        }
        let started = Instant::now();
        let report = engine.verify(&VerifyOptions {
            connection: None,
            table: None,
            repair: false,
        })?;
        in_process.push(started.elapsed().as_secs_f64());
        if !report.passes() {
            bail!("verify found a difference in a table it should find equal");
        }
        verifies.push(verify_command(&file_arg)?);
    }
    // The nightly case: a later run brings 5% more rows; the verify after it reads the fold's
    // checkpoint, folds the new batches into it and writes it again.
    let more = (args.rows / 20).max(1);
    generate(
        duckdb(&dir.join("src.duckdb"))?,
        args.rows..args.rows + more,
    )?;
    caudal(&["run", "--progress", "none", &file_arg], "run")?;
    let after_run_s = verify_command(&file_arg)?;
    let (scan_s, command_s) = (median(&mut scans), median(&mut verifies));
    let verify_s = median(&mut in_process);
    let ratio = verify_s / scan_s;
    if args.json {
        outln!(
            "{}",
            json!({
                "rows": args.rows,
                "generate_s": generated,
                "run_s": run_s,
                "scan_s": scan_s,
                "verify_s": verify_s,
                "verify_command_s": command_s,
                "verify_cold_s": cold_s,
                "ratio": ratio,
                "ratio_command": command_s / scan_s,
                "ratio_cold": cold_s / scan_s,
                "verify_after_run_s": after_run_s,
                "rows_added": more,
                "goal": 2.0,
            })
        );
    } else {
        let rate = |s: f64| args.rows as f64 / s;
        outln!(
            "verify of a {}-row DuckDB table (medians of {repeat})",
            args.rows
        );
        outln!("  generate + run (setup): {generated:.2} s + {run_s:.2} s");
        outln!(
            "  full scan through the connector:   {scan_s:.3} s ({:.0} rows/s)",
            rate(scan_s)
        );
        outln!(
            "  verify (fold checkpointed):        {verify_s:.3} s ({:.0} rows/s)",
            rate(verify_s)
        );
        outln!(
            "  `caudal verify` command: {command_s:.3} s ({:.2}x the scan; process start, \
             journal open and plugin load included)",
            command_s / scan_s
        );
        outln!(
            "  caudal verify, first (whole journal folded): {cold_s:.3} s ({:.2}x the scan)",
            cold_s / scan_s
        );
        outln!(
            "  caudal verify after a run adding {more} rows (fold checkpoint read, the new \
             batches folded in, written again): {after_run_s:.3} s"
        );
        outln!(
            "  verify / scan: {ratio:.2}x (goal under 2x){}",
            if ratio < 2.0 { "" } else { ": NOT MET" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `id` (key), a name, a quantity, a price and a day per row.
fn schema() -> anyhow::Result<Schema> {
    Ok(Schema::new(
        vec![
            Field::new("id", LogicalType::Int64, false),
            Field::new(
                "name",
                LogicalType::Varchar {
                    max_length: Some(32),
                },
                true,
            ),
            Field::new("qty", LogicalType::Int32, false),
            Field::new(
                "price",
                LogicalType::Decimal {
                    precision: 12,
                    scale: 2,
                },
                true,
            ),
            Field::new("day", LogicalType::Date, false),
        ],
        &["id"],
    )?)
}

/// Writes rows `ids` into the source's `items`, created anew when `ids` starts at 0. Each
/// chunk of the source's own writes has the seq of its first id's chunk.
fn generate(mut conn: Connection, ids: std::ops::Range<u64>) -> anyhow::Result<()> {
    let schema = Arc::new(schema()?);
    conn.prepare_table(&PrepareTable {
        table: "items".into(),
        schema: (*schema).clone(),
        replace: ids.start == 0,
    })?;
    let mut seq = ids.start / CHUNK;
    let mut id = i64::try_from(ids.start)?;
    let total = i64::try_from(ids.end)?;
    while id < total {
        let n = (total - id).min(CHUNK as i64);
        let mut b = BatchBuilder::with_capacity(Arc::clone(&schema), n as usize);
        for i in id..id + n {
            b.push(0, i)?;
            b.push(1, format!("item {}", i % 100_000).as_str())?;
            b.push(2, (i % 97) as i32)?;
            b.push(3, i128::from(i % 100_000) * 7 + 99)?;
            b.push(4, 20_000 + (i % 365) as i32)?;
        }
        seq += 1;
        conn.write(
            &WriteRequest {
                pipeline: "bench".into(),
                stream: "items".into(),
                table: "items".into(),
                seq,
                op: WriteOp::Insert,
            },
            &b.finish()?,
        )?;
        id += n;
    }
    conn.close()?;
    Ok(())
}

/// Reads every row of `items`; returns the count.
fn scan(mut conn: Connection) -> anyhow::Result<u64> {
    let mut rows = 0u64;
    {
        let mut reader = conn.read(&ReadRequest::table("items"))?;
        while let Some(chunk) = reader.next_chunk()? {
            rows += chunk.batch.num_rows() as u64;
        }
    }
    conn.close()?;
    Ok(rows)
}

/// Seconds of a `caudal verify` of the pipeline file `file`, which must find the tables
/// equal.
fn verify_command(file: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let args = ["verify", "--json", "--progress", "none", "--file", file];
    let report = caudal(&args, "verify")?;
    let seconds = started.elapsed().as_secs_f64();
    if report["ok"] != true {
        bail!("verify found a difference in a table it should find equal: {report}");
    }
    Ok(seconds)
}

/// Runs this binary with `args`; the JSON it prints, if any.
fn caudal(args: &[&str], what: &str) -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe().context("cannot find the caudal binary")?;
    let out = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start caudal {what}"))?;
    if !out.status.success() && what != "verify" {
        bail!(
            "caudal {what} exited {:?}: {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null))
}
