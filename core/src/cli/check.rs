//! `caudal check FILE`: validates the file, then connects to every connection and lists the
//! tables each offers (with row estimates where the database keeps them). Nothing is
//! journaled. Exit status 0 when every connection answers, 1 when one does not, 2 for an
//! invalid file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use caudal_connector::Capabilities;
use serde_json::json;

use super::run::{EXIT_USAGE, load_pipeline};
use super::validate::plugin_problems;
use crate::engine::PluginEndpoints;
use crate::engine::endpoint::ConnectionPool;

/// `caudal check`
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The pipeline file.
    file: PathBuf,
    /// One JSON object per connection instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `caudal check`.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let pipeline = match load_pipeline(&args.file) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let problems = plugin_problems(&pipeline);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let endpoints = Arc::new(PluginEndpoints::for_pipeline(&pipeline));
    let registry_caps = |connector: &str| {
        endpoints
            .registry()
            .get(connector)
            .map(|p| p.capabilities())
            .unwrap_or(Capabilities(0))
    };
    let pool = ConnectionPool::new(Arc::clone(&pipeline), endpoints.clone());
    let mut failed = false;
    for connection in pipeline.connections() {
        let name = connection.name();
        let can_read = registry_caps(connection.connector()).contains(Capabilities::SOURCE);
        let result = pool.with(name, |c| {
            if can_read {
                c.discover().map(Some)
            } else {
                Ok(None)
            }
        });
        match result {
            Ok(tables) => {
                let tables = tables.unwrap_or_default();
                if args.json {
                    let list: Vec<_> = tables
                        .iter()
                        .map(|t| {
                            json!({
                                "table": t.name,
                                "columns": t.schema.len(),
                                "estimated_rows": t.estimated_rows,
                            })
                        })
                        .collect();
                    outln!(
                        "{}",
                        json!({"connection": name, "connector": connection.connector(), "ok": true, "tables": list})
                    );
                } else {
                    outln!(
                        "{name} ({}): ok, {} tables",
                        connection.connector(),
                        tables.len()
                    );
                    for t in &tables {
                        let rows = t
                            .estimated_rows
                            .map(|n| format!(", ~{n} rows"))
                            .unwrap_or_default();
                        outln!("  {} ({} columns{rows})", t.name, t.schema.len());
                    }
                }
            }
            Err(e) => {
                failed = true;
                if args.json {
                    outln!(
                        "{}",
                        json!({"connection": name, "connector": connection.connector(), "ok": false, "error": e.message})
                    );
                } else {
                    outln!("{name} ({}): FAILED: {}", connection.connector(), e.message);
                }
            }
        }
    }
    pool.close_all();
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
