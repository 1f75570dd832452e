//! `caudal verify [--file PIPELINE | --pipeline P] [--connection C] [--table T] [--repair]
//! [--json]`: compares each destination table with the state the journal implies, names the
//! keys that differ, and with `--repair` writes back only those rows (see
//! [`crate::engine::verify`]). Exit status 0 when every table is equal to the journal (after
//! the repair, with `--repair`), 1 on a mismatch, 2 for usage errors.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use serde_json::json;

use super::location::JournalLocation;
use super::retry::pipeline_for;
use super::run::{EXIT_USAGE, OutputArgs, engine_error};
use crate::engine::{DigestSummary, Engine, PluginEndpoints, TableCheck, VerifyOptions};

/// Keys listed per kind in the text output; `--json` lists them all.
const SHOWN_KEYS: usize = 20;

/// `caudal verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    location: JournalLocation,
    /// The pipeline to verify, when the journal holds several (its file is the one its last
    /// run was started from; or give the file with --file).
    #[arg(long)]
    pipeline: Option<String>,
    /// Only this destination connection.
    #[arg(long, value_name = "CONNECTION")]
    connection: Option<String>,
    /// Only this destination table.
    #[arg(long, value_name = "TABLE")]
    table: Option<String>,
    /// Write the rows that differ back from the journal, then check again.
    #[arg(long)]
    repair: bool,
    /// A JSON report instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `caudal verify`.
pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    // A journal without runs of the pipeline, or a file that names another journal: the
    // command line does not say which pipeline file to use.
    let pipeline = match pipeline_for(&args.location, args.pipeline.as_deref()) {
        Ok(Ok(p)) => p,
        Ok(Err(code)) => return Ok(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    if let Some(p) = &args.pipeline
        && p != pipeline.name()
    {
        eprintln!(
            "error: --pipeline {p}: {} is the file of pipeline `{}`",
            pipeline.path().display(),
            pipeline.name()
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let progress = args.output.init();
    let endpoints = Arc::new(PluginEndpoints::for_pipeline(&pipeline));
    let engine = Engine::new(Arc::clone(&pipeline), endpoints, progress);
    let options = VerifyOptions {
        connection: args.connection,
        table: args.table,
        repair: args.repair,
    };
    let report = match engine.verify(&options) {
        Ok(r) => r,
        Err(e) => return Ok(engine_error(&pipeline, &e)),
    };
    if args.json {
        let tables: Vec<_> = report.tables.iter().map(table_json).collect();
        outln!(
            "{}",
            json!({
                "pipeline": pipeline.name(),
                "ok": report.passes(),
                "tables": tables,
            })
        );
    } else {
        for t in &report.tables {
            print_table(t);
        }
    }
    Ok(if report.passes() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn summary_json(s: &DigestSummary) -> serde_json::Value {
    json!({ "digest": s.digest, "rows": s.rows })
}

fn table_json(t: &TableCheck) -> serde_json::Value {
    json!({
        "connection": t.connection,
        "table": t.table,
        "ok": t.ok,
        "expected": summary_json(&t.expected),
        "actual": t.actual.as_ref().map(summary_json),
        "missing": t.missing,
        "extra": t.extra,
        "changed": t.changed,
        "unlisted_extra": t.unlisted_extra,
        "repaired": t.repaired.as_ref().map(|(after, ok)| json!({
            "actual": summary_json(after),
            "ok": ok,
        })),
        "error": t.error,
    })
}

fn print_table(t: &TableCheck) {
    let name = format!("{}.{}", t.connection, t.table);
    if t.ok {
        outln!(
            "{name}: ok, {} rows, digest {}",
            t.expected.rows,
            short(&t.expected.digest)
        );
    } else if let Some(actual) = &t.actual {
        outln!(
            "{name}: MISMATCH: journal {} rows, digest {}; destination {} rows, digest {}",
            t.expected.rows,
            short(&t.expected.digest),
            actual.rows,
            short(&actual.digest)
        );
        for (kind, keys) in [
            ("missing", &t.missing),
            ("extra", &t.extra),
            ("changed", &t.changed),
        ] {
            if keys.is_empty() {
                continue;
            }
            let shown: Vec<&str> = keys.iter().take(SHOWN_KEYS).map(String::as_str).collect();
            let more = keys.len().saturating_sub(SHOWN_KEYS);
            outln!(
                "  {kind:<8} {} key{}: {}{}",
                keys.len(),
                if keys.len() == 1 { "" } else { "s" },
                shown.join(" "),
                if more > 0 {
                    format!(" (and {more} more; --json lists all)")
                } else {
                    String::new()
                }
            );
        }
        if t.unlisted_extra > 0 {
            outln!(
                "  extra    {} rows whose keys the connector cannot list",
                t.unlisted_extra
            );
        }
    } else {
        outln!(
            "{name}: NOT CHECKED: journal {} rows, digest {}; the destination could not be read",
            t.expected.rows,
            short(&t.expected.digest)
        );
    }
    if let Some((after, ok)) = &t.repaired {
        outln!(
            "  repaired: now {} rows, digest {}: {}",
            after.rows,
            short(&after.digest),
            if *ok {
                "equal to the journal"
            } else {
                "STILL DIFFERENT"
            }
        );
    }
    if let Some(e) = &t.error {
        outln!("  error: {e}");
    }
}

fn short(digest: &str) -> &str {
    digest.get(..16).unwrap_or(digest)
}
