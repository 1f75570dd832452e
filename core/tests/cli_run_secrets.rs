//! A secret passed through the environment appears nowhere: not in the journal's bytes (every
//! file of the journal directory, the projection checkpoint included), not in the logs (text
//! and JSON, at debug level), not in any command's output or error text — even when a
//! database error quotes it, as DuckDB does with a path it cannot create.
//!
//! Needs `cargo build --release --workspace` first (same CARGO_TARGET_DIR as the tests).

mod engine_support;

use std::path::Path;
use std::process::Output;

use engine_support::*;

const VAR: &str = "CAUDAL_E2E_WH_SECRET";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_secret_from_the_environment_never_reaches_journal_logs_or_output() {
    let dir = tempfile::tempdir().unwrap();
    // Unique per run, and long enough that it cannot appear by chance.
    let secret = format!("sEcReT-{:x}-pw", caudal_journal::now());
    fill(
        &dir.path().join("src.duckdb"),
        "ventas",
        &[sales("t1", 0..500, 50, &[])],
        true,
    );
    // A regular file where the warehouse's directory should be: DuckDB cannot create the
    // database, and its error quotes the path, secret included.
    std::fs::write(dir.path().join("blocked"), b"not a directory").unwrap();
    let file = pipeline(
        dir.path(),
        &format!(
            "[connections.src]\nconnector = \"duckdb\"\npath = \"src.duckdb\"\n\n\
             [connections.wh]\nconnector = \"duckdb\"\npath = \"blocked/${{{VAR}}}/wh.duckdb\"\n\n\
             [[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\nmode = \"incremental\"\n\
             cursor = \"fecha\"\nchunk_rows = 100\n\n[retry]\nmax_attempts = 2\nevery = \"50ms\"\n"
        ),
    );
    let f = s(&file);
    let with_secret = |args: &[&str]| -> Output {
        caudal()
            .args(args)
            .env(VAR, &secret)
            .output()
            .expect("caudal runs")
    };
    let mut outputs: Vec<(String, Output)> = Vec::new();
    for args in [
        vec!["validate", f],
        vec!["check", f],
        vec![
            "run",
            f,
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "--progress",
            "lines",
        ],
        vec![
            "run",
            f,
            "--log-format",
            "text",
            "--log-level",
            "trace",
            "--progress",
            "lines",
            "--json",
        ],
        vec!["status", "--file", f],
        vec!["status", "--file", f, "--json"],
        vec!["history", "--file", f],
        vec!["history", "--file", f, "--json"],
        vec!["failures", "--file", f],
        vec!["failures", "--file", f, "--json"],
        vec!["retry", "--file", f, "--log-level", "debug"],
        vec!["replay", "--file", f, "--to", "wh", "--log-level", "debug"],
        vec!["journal", "inspect", "--file", f, "--json"],
        vec!["journal", "inspect", "--file", f],
    ] {
        outputs.push((args.join(" "), with_secret(&args)));
    }
    // The failure happened, and its text made it through, masked.
    let run = &outputs[2].1;
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let failures = String::from_utf8_lossy(&outputs[9].1.stdout).into_owned();
    assert!(
        failures.contains("blocked/***"),
        "the failure names the masked path: {failures}"
    );
    let logs = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(
        logs.contains("write failed") && logs.contains("***"),
        "{logs}"
    );

    for (command, out) in &outputs {
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !contains(bytes, &secret),
                "the secret is in the {stream} of `caudal {command}`:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    let journal = dir.path().join("journal");
    let all = files(&journal);
    assert!(
        all.iter()
            .any(|p| p.extension().is_some_and(|e| e == "seg")),
        "{all:?}"
    );
    for path in all {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !contains(&bytes, &secret),
            "the secret is in {}",
            path.display()
        );
    }
}
