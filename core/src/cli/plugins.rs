//! `caudal plugins`: lists the connector plugins the host can find, in search-path order
//! (`--plugin-dir`, then `CAUDAL_PLUGIN_PATH`, then next to the `caudal` binary), with name,
//! version, ABI version, capabilities and path. A file that cannot be loaded is listed with
//! the reason; the command still succeeds, since listing is what it is for.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::host::{HostError, Plugin, SearchPath};

/// Arguments of `caudal plugins`.
#[derive(Debug, clap::Args)]
pub struct PluginsArgs {
    /// Look in this directory first (as a pipeline's `plugin_dir` does).
    #[arg(long, value_name = "DIR")]
    plugin_dir: Option<PathBuf>,
    /// One JSON object per plugin instead of a table.
    #[arg(long)]
    json: bool,
}

/// One line of the listing.
#[derive(Debug, serde::Serialize)]
struct Row {
    name: String,
    version: Option<String>,
    abi_version: Option<u32>,
    capabilities: Vec<&'static str>,
    path: String,
    error: Option<String>,
}

pub fn run(args: PluginsArgs) -> anyhow::Result<ExitCode> {
    let search = SearchPath::new(args.plugin_dir.as_deref());
    let rows: Vec<Row> = search
        .list()?
        .into_iter()
        .map(|file| row(file.name, file.path))
        .collect();
    if args.json {
        for r in &rows {
            outln!("{}", serde_json::to_string(r)?);
        }
    } else {
        print_table(&rows, &search);
    }
    Ok(ExitCode::SUCCESS)
}

fn row(name: String, path: PathBuf) -> Row {
    let shown = path.display().to_string();
    match Plugin::load(&path) {
        Ok(p) => {
            let info = p.info();
            let error =
                (info.name != name).then(|| format!("the plugin calls itself `{}`", info.name));
            Row {
                name,
                version: Some(info.version.clone()),
                abi_version: Some(info.abi_version),
                capabilities: info.capabilities.names(),
                path: shown,
                error,
            }
        }
        Err(e) => {
            let abi_version = match &e {
                HostError::AbiMismatch { plugin_abi, .. } => Some(*plugin_abi),
                _ => None,
            };
            Row {
                name,
                version: None,
                abi_version,
                capabilities: vec![],
                path: shown,
                error: Some(e.to_string()),
            }
        }
    }
}

fn print_table(rows: &[Row], search: &SearchPath) {
    if rows.is_empty() {
        let dirs: Vec<String> = search
            .dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        outln!("no plugins found in: {}", dirs.join(", "));
        return;
    }
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.version.clone().unwrap_or_else(|| "-".into()),
                r.abi_version.map_or_else(|| "-".into(), |v| v.to_string()),
                if r.capabilities.is_empty() {
                    "-".into()
                } else {
                    r.capabilities.join(",")
                },
                r.path.clone(),
            ]
        })
        .collect();
    let header = ["NAME", "VERSION", "ABI", "CAPABILITIES", "PATH"];
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, cell) in widths.iter_mut().zip(c) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |c: [&str; 5]| {
        let mut s = String::new();
        for (i, (cell, w)) in c.iter().zip(widths).enumerate() {
            if i + 1 == c.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s
    };
    outln!("{}", line(header));
    for (c, r) in cells.iter().zip(rows) {
        outln!("{}", line([&c[0], &c[1], &c[2], &c[3], &c[4]]));
        if let Some(e) = &r.error {
            outln!("  error: {e}");
        }
    }
}
