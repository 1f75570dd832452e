//! `caudal plugins`: lists the connector plugins the host can find.

use std::process::ExitCode;

/// Arguments of `caudal plugins`.
#[derive(Debug, clap::Args)]
pub struct PluginsArgs {
    /// One JSON object per plugin instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: PluginsArgs) -> anyhow::Result<ExitCode> {
    let _ = args.json;
    anyhow::bail!("plugin discovery is not available yet")
}
