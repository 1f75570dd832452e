//! A destination that rejects writes, through the DuckDB plugin: the run journals
//! `WriteFailed` with the database's error, retries as `[retry]` says (the attempts show in
//! `caudal history`), `caudal failures` lists what is pending; once the cause is fixed,
//! `caudal retry` writes it from the journal and it leaves the list, and the destination
//! equals the source.
//!
//! Needs `cargo build --release --workspace` first (same CARGO_TARGET_DIR as the tests).

mod engine_support;

use caudal_connector::{Batch, ReadTarget};
use caudal_journal::EntryKind;
use engine_support::*;

const KEY: [&str; 3] = ["tienda", "factura", "linea"];

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn a_constraint_violation_is_journaled_retried_listed_and_retried_after_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (src, wh, journal) = (
        dir.path().join("src.duckdb"),
        dir.path().join("wh.duckdb"),
        dir.path().join("journal"),
    );
    fill(&src, "ventas", &[sales("t1", 0..3000, 100, &[])], true);
    // The warehouse already has one of the rows, under a primary key: inserting the source's
    // copy violates it.
    fill(&wh, "ventas", &[sales("t1", 40..41, 100, &KEY)], true);
    let file = pipeline(
        dir.path(),
        "[connections.src]\nconnector = \"duckdb\"\npath = \"src.duckdb\"\n\n\
         [connections.wh]\nconnector = \"duckdb\"\npath = \"wh.duckdb\"\n\n\
         [[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\nmode = \"incremental\"\n\
         cursor = \"fecha\"\nchunk_rows = 1000\n\n\
         [retry]\nmax_attempts = 3\nevery = \"200ms\"\n",
    );
    let out = run(&["run", s(&file), "--progress", "none"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let failed: Vec<(u64, u32, String)> = entries(&journal)
        .into_iter()
        .filter_map(|e| match e.kind {
            EntryKind::WriteFailed {
                batch_seq,
                attempt,
                error,
                ..
            } => Some((batch_seq, attempt, error)),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 3, "three attempts in all: {failed:?}");
    assert_eq!(failed.iter().map(|f| f.1).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        failed.iter().all(|f| f.0 == failed[0].0),
        "always the first batch"
    );
    assert!(
        failed[0].2.to_lowercase().contains("constraint"),
        "the database's error: {}",
        failed[0].2
    );

    let listed = run_ok(&["failures", "--file", s(&file), "--json"]);
    let listed = json_lines(&listed);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["destination"], "wh");
    assert_eq!(listed[0]["batches"], 3);
    assert_eq!(listed[0]["attempts"], 3);
    assert!(
        listed[0]["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("constraint")
    );
    let text = run_ok(&["failures", "--file", s(&file)]);
    assert!(text.contains("ventas") && text.contains("wh"), "{text}");

    let history = run_ok(&["history", "--file", s(&file)]);
    for needle in ["attempt 1", "attempt 2", "attempt 3", "scheduled for"] {
        assert!(history.contains(needle), "`{needle}` in:\n{history}");
    }

    // The fix: the conflicting row goes. The source goes too, to show that the retry reads
    // only the journal.
    let row = sales("t1", 40..41, 100, &KEY);
    delete(&wh, "ventas", &row);
    let expected = read_digest(
        &src,
        ReadTarget::Table("ventas".into()),
        None,
        "ventas",
        &|b| b,
    );
    std::fs::remove_file(&src).unwrap();
    let retried = run_ok(&["retry", "--file", s(&file), "--json"]);
    let retried: serde_json::Value = serde_json::from_str(&retried).unwrap();
    assert_eq!(retried["ok"], true, "{retried}");
    let listed = run_ok(&["failures", "--file", s(&file), "--json"]);
    assert!(listed.trim().is_empty(), "still listed: {listed}");
    let text = run_ok(&["failures", "--file", s(&file)]);
    assert!(text.contains("no failed writes pending"), "{text}");
    assert_holds(&wh, "ventas", &journal, "ventas", &expected);
    let history = run_ok(&["history", "--file", s(&file), "--last", "1"]);
    assert!(
        history.contains("retry") && history.contains("completed"),
        "{history}"
    );
    verify(&journal);
}

#[test]
fn a_read_only_destination_fails_until_the_file_allows_writes_then_retry_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let (src, wh, journal) = (
        dir.path().join("src.duckdb"),
        dir.path().join("wh.duckdb"),
        dir.path().join("journal"),
    );
    fill(&src, "ventas", &[sales("t1", 0..1500, 100, &[])], true);
    // The warehouse exists, and the pipeline opens it read-only.
    fill(&wh, "otra", &[sales("x", 0..1, 1, &[])], true);
    let body = |read_only: bool| {
        format!(
            "[connections.src]\nconnector = \"duckdb\"\npath = \"src.duckdb\"\n\n\
             [connections.wh]\nconnector = \"duckdb\"\npath = \"wh.duckdb\"\nread_only = {read_only}\n\n\
             [[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\nmode = \"incremental\"\n\
             cursor = \"fecha\"\nchunk_rows = 500\n\n[retry]\nmax_attempts = 2\nevery = \"200ms\"\n"
        )
    };
    let file = pipeline(dir.path(), &body(true));
    let out = run(&["run", s(&file), "--progress", "none"]);
    assert_eq!(out.status.code(), Some(1));
    let listed = json_lines(&run_ok(&["failures", "--file", s(&file), "--json"]));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["batches"], 3);
    assert!(
        listed[0]["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("read"),
        "{}",
        listed[0]["error"]
    );
    // Fixed in the file; the retry takes the fixed file and writes from the journal.
    pipeline(dir.path(), &body(false));
    run_ok(&["retry", "--file", s(&file)]);
    assert!(
        run_ok(&["failures", "--file", s(&file), "--json"])
            .trim()
            .is_empty()
    );
    let expected = read_digest(
        &src,
        ReadTarget::Table("ventas".into()),
        None,
        "ventas",
        &|b: Batch| b,
    );
    assert_holds(&wh, "ventas", &journal, "ventas", &expected);
    verify(&journal);
}
