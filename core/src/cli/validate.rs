//! `caudal validate FILE`: the pipeline file parses and every rule holds (the config crate's
//! checks, with file:line:column), and each connection's connector exists as a plugin that
//! can do what the streams ask of it (read from sources, write to destinations). Nothing is
//! connected to and nothing is journaled. Exit status 0 when valid, 2 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use caudal_config::{ConfigError, Pipeline};
use caudal_connector::Capabilities;

use super::run::{EXIT_USAGE, load_pipeline};
use crate::host::{PluginRegistry, SearchPath};

/// `caudal validate`
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The pipeline file.
    file: PathBuf,
}

/// Runs `caudal validate`.
pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
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
    outln!(
        "{}: pipeline `{}` is valid: {} connections, {} streams",
        args.file.display(),
        pipeline.name(),
        pipeline.connections().len(),
        pipeline.streams().len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Every connection whose plugin cannot be found or loaded, or cannot read (a source) or
/// write (a destination), as an error at its `connector = ...`.
pub fn plugin_problems(pipeline: &Pipeline) -> Vec<ConfigError> {
    let registry = PluginRegistry::new(SearchPath::new(pipeline.plugin_dir()));
    let mut problems = Vec::new();
    for connection in pipeline.connections() {
        let at = connection.connector_location();
        let plugin = match registry.get(connection.connector()) {
            Ok(p) => p,
            Err(e) => {
                problems.push(
                    pipeline.error_at(at, format!("connection `{}`: {e}", connection.name())),
                );
                continue;
            }
        };
        let name = connection.name();
        let is_source = pipeline
            .streams()
            .iter()
            .any(|s| s.sources().iter().any(|c| c == name));
        let is_destination = pipeline
            .streams()
            .iter()
            .any(|s| s.destinations().iter().any(|c| c == name));
        let caps = plugin.capabilities();
        for (needed, cap, what) in [
            (
                is_source,
                Capabilities::SOURCE,
                "read from (it is a stream's source)",
            ),
            (
                is_destination,
                Capabilities::SINK,
                "write to (it is a stream's destination)",
            ),
        ] {
            if needed && !caps.contains(cap) {
                problems.push(pipeline.error_at(
                    at,
                    format!(
                        "connection `{name}`: the `{}` connector cannot be {what}; it can: {}",
                        plugin.name(),
                        caps.names().join(", ")
                    ),
                ));
            }
        }
    }
    problems
}
