//! Runs the TDS test server standalone, for manual use and benchmarks. It is a test double
//! backed by DuckDB, not a SQL Server.
//!
//! ```text
//! caudal-tds-server [--listen 127.0.0.1:1433] [--user sa] [--data-dir DIR] DATABASE...
//! ```
//! The password comes from `CAUDAL_TDS_PASSWORD` (default empty). With `--data-dir`, each
//! database is a DuckDB file `DIR/<name>.duckdb`; otherwise databases live in memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use caudal_tds_server::TdsServer;

fn usage(problem: &str) -> ExitCode {
    eprintln!("caudal-tds-server: {problem}");
    eprintln!(
        "usage: caudal-tds-server [--listen ADDR:PORT] [--user NAME] [--data-dir DIR] DATABASE..."
    );
    eprintln!("       the password is read from CAUDAL_TDS_PASSWORD");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 1433));
    let mut user = "sa".to_string();
    let mut dir: Option<PathBuf> = None;
    let mut databases = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => match args.next().map(|v| v.parse()) {
                Some(Ok(addr)) => listen = addr,
                _ => return usage("--listen takes ADDR:PORT, for example 127.0.0.1:1433"),
            },
            "--user" => match args.next() {
                Some(u) => user = u,
                None => return usage("--user takes a name"),
            },
            "--data-dir" => match args.next() {
                Some(d) => dir = Some(PathBuf::from(d)),
                None => return usage("--data-dir takes a directory"),
            },
            "-h" | "--help" => return usage("runs a TDS test server backed by DuckDB"),
            name if !name.starts_with('-') => databases.push(name.to_string()),
            other => return usage(&format!("unknown option {other}")),
        }
    }
    if databases.is_empty() {
        return usage("name at least one database");
    }
    let password = std::env::var("CAUDAL_TDS_PASSWORD").unwrap_or_default();
    let mut builder = TdsServer::builder()
        .credentials(&user, &password)
        .listen(listen);
    for db in &databases {
        builder = match &dir {
            Some(d) => builder.database_file(db, d.join(format!("{db}.duckdb"))),
            None => builder.database(db),
        };
    }
    let server = match builder.start_blocking() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("caudal-tds-server: cannot start on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "caudal-tds-server (test double, DuckDB engine) listening on {} with {}",
        server.addr(),
        databases.join(", ")
    );
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("caudal-tds-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = rt.block_on(tokio::signal::ctrl_c());
    println!("{:?}", server.stats());
    ExitCode::SUCCESS
}
