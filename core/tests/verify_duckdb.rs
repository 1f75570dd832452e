//! `caudal verify` against a DuckDB destination (the plugin, loaded as in production): a row
//! changed, a row deleted and rows added behind caudal's back are named exactly, `--repair`
//! writes back only those rows from the journal, and every check is journaled as a
//! `VerifyResult`.
//!
//! Needs `cargo build --release --workspace` first (same CARGO_TARGET_DIR as the tests).

mod engine_support;
mod verify_support;

use std::sync::Arc;

use caudal_connector::{Batch, Schema, WriteOp};
use caudal_journal::EntryKind;
use engine_support::*;
use verify_support::{keys, verify_json};

const KEY: [&str; 3] = ["tienda", "factura", "linea"];

fn connections(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("[connections.{n}]\nconnector = \"duckdb\"\npath = \"{n}.duckdb\"\n\n"))
        .collect()
}

/// The key columns of a sales batch, with no key declared (what a delete carries).
fn key_columns(b: &Batch) -> Batch {
    let schema = b.schema();
    let idx: Vec<usize> = KEY.iter().map(|k| schema.index_of(k).unwrap()).collect();
    let fields = idx.iter().map(|&i| schema.fields()[i].clone()).collect();
    let columns = idx.iter().map(|&i| b.columns()[i].clone()).collect();
    Batch::try_new(Arc::new(Schema::new(fields, &KEY).unwrap()), columns).unwrap()
}

#[test]
fn verify_names_tampered_duckdb_rows_and_repair_fixes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (src, wh, journal) = (
        dir.path().join("src.duckdb"),
        dir.path().join("wh.duckdb"),
        dir.path().join("journal"),
    );
    fill(&src, "items", &[sales("t1", 0..6000, 100, &KEY)], true);
    let file = pipeline(
        dir.path(),
        &format!(
            "{}[[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"wh\"\nmode = \"merge\"\n\
             primary_key = [\"tienda\", \"factura\", \"linea\"]\nchunk_rows = 700\n",
            connections(&["src", "wh"])
        ),
    );
    run_ok(&["run", s(&file), "--progress", "none"]);
    // Updates and deletes at the source, journaled by a second run.
    fill(&src, "items", &[sales("t1", 100..200, 7, &KEY)], false);
    delete(
        &src,
        "items",
        &key_columns(&sales("t1", 3000..3010, 100, &KEY)),
    );
    run_ok(&["run", s(&file), "--progress", "none"]);

    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "a fresh destination verifies: {report}");
    assert_eq!(report["tables"][0]["expected"]["rows"], 5990);
    assert_eq!(
        report["tables"][0]["actual"],
        report["tables"][0]["expected"]
    );

    // Behind caudal's back: one row changed, one deleted, two added (one sorting before
    // every key, one after).
    {
        let mut conn = open(&wh);
        fixture_write(
            &mut conn,
            "items",
            1,
            WriteOp::Upsert,
            &sales("t1", 700..701, 1, &KEY),
        );
        fixture_write(
            &mut conn,
            "items",
            2,
            WriteOp::Delete,
            &key_columns(&sales("t1", 1201..1202, 100, &KEY)),
        );
        fixture_write(
            &mut conn,
            "items",
            3,
            WriteOp::Upsert,
            &sales("t0", 3..4, 100, &KEY),
        );
        fixture_write(
            &mut conn,
            "items",
            4,
            WriteOp::Upsert,
            &sales("t1", 9000..9001, 100, &KEY),
        );
        conn.close().unwrap();
    }
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 1, "a tampered destination fails: {report}");
    let table = &report["tables"][0];
    assert_eq!(table["ok"], false);
    assert_eq!(keys(table, "changed"), ["t1,233,2"]);
    assert_eq!(keys(table, "missing"), ["t1,400,2"]);
    assert_eq!(keys(table, "extra"), ["t0,1,1", "t1,3000,1"]);

    let (code, report) = verify_json(&file, &["--repair"]);
    assert_eq!(code, 0, "repair makes the table equal: {report}");
    assert_eq!(report["tables"][0]["repaired"]["ok"], true);
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "verify passes after the repair: {report}");
    assert!(keys(&report["tables"][0], "changed").is_empty());

    // The repair touched no lane's offset: a run still finds nothing new to write.
    let before = table_digest(&wh, "items", &stream_schema(&journal, "items"));
    run_ok(&["run", s(&file), "--progress", "none"]);
    assert_eq!(
        table_digest(&wh, "items", &stream_schema(&journal, "items")),
        before
    );
    assert_eq!(verify_json(&file, &[]).0, 0);

    let results: Vec<_> = entries(&journal)
        .into_iter()
        .filter_map(|e| match e.kind {
            EntryKind::VerifyResult {
                connection,
                table,
                ok,
                missing,
                extra,
                changed,
                keys,
                expected,
                actual,
            } => Some((
                connection, table, ok, missing, extra, changed, keys, expected, actual,
            )),
            _ => None,
        })
        .collect();
    // fresh ok, mismatch, mismatch + repaired, ok, ok after the last run.
    assert_eq!(results.len(), 6, "{results:?}");
    let oks: Vec<bool> = results.iter().map(|r| r.2).collect();
    assert_eq!(oks, [true, false, false, true, true, true]);
    let mismatch = &results[1];
    assert_eq!((mismatch.0.as_str(), mismatch.1.as_str()), ("wh", "items"));
    assert_eq!((mismatch.3, mismatch.4, mismatch.5), (1, 2, 1));
    assert_eq!(
        mismatch.6,
        [
            "missing t1,400,2",
            "extra t0,1,1",
            "extra t1,3000,1",
            "changed t1,233,2"
        ]
    );
    assert_ne!(mismatch.7, mismatch.8);
    assert_eq!(results[3].7, results[3].8);
    verify(&journal);
}

#[test]
fn verify_finds_a_dropped_table_missing_and_repair_recreates_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.duckdb");
    fill(&src, "items", &[sales("t1", 0..300, 100, &KEY)], true);
    let file = pipeline(
        dir.path(),
        &format!(
            "{}[[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"wh\"\nmode = \"merge\"\n\
             primary_key = [\"tienda\", \"factura\", \"linea\"]\n",
            connections(&["src", "wh"])
        ),
    );
    run_ok(&["run", s(&file), "--progress", "none"]);
    // A new, empty destination file: the table is not there at all.
    std::fs::remove_file(dir.path().join("wh.duckdb")).unwrap();
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(keys(&report["tables"][0], "missing").len(), 300);
    assert_eq!(report["tables"][0]["actual"]["rows"], 0);
    let (code, report) = verify_json(&file, &["--repair"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(verify_json(&file, &[]).0, 0);
}

#[test]
fn verify_rejects_unknown_names_with_usage_status() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.duckdb");
    fill(&src, "items", &[sales("t1", 0..10, 100, &KEY)], true);
    let file = pipeline(
        dir.path(),
        &format!(
            "{}[[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"wh\"\nprimary_key = \
             [\"tienda\", \"factura\", \"linea\"]\n",
            connections(&["src", "wh"])
        ),
    );
    run_ok(&["run", s(&file), "--progress", "none"]);
    let out = run(&["verify", "--file", s(&file), "--connection", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    let out = run(&["verify", "--file", s(&file), "--table", "other"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("other"));
    let journal = dir.path().join("journal");
    let out = run(&["verify", "--journal", s(&journal), "--pipeline", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    // Without --file: the file of the pipeline's last run.
    let out = run(&["verify", "--journal", s(&journal), "--pipeline", "e2e"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Snapshot mode (the default): the table digest of the last snapshot.
    let out = run(&["verify", "--file", s(&file)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("wh.items: ok, 10 rows"));
}

#[test]
fn verify_refolds_the_journal_when_its_checkpoint_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let (src, wh, journal) = (
        dir.path().join("src.duckdb"),
        dir.path().join("wh.duckdb"),
        dir.path().join("journal"),
    );
    fill(&src, "items", &[sales("t1", 0..300, 100, &KEY)], true);
    let file = pipeline(
        dir.path(),
        &format!(
            "{}[[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"wh\"\nmode = \"merge\"\n\
             primary_key = [\"tienda\", \"factura\", \"linea\"]\nchunk_rows = 50\n",
            connections(&["src", "wh"])
        ),
    );
    run_ok(&["run", s(&file), "--progress", "none"]);
    assert_eq!(verify_json(&file, &[]).0, 0);
    let checkpoints: Vec<_> = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("verify-"))
        })
        .collect();
    // The table's fold (head and rows) and the batches per part.
    assert_eq!(checkpoints.len(), 3, "{checkpoints:?}");
    for p in &checkpoints {
        std::fs::write(p, b"not a checkpoint").unwrap();
    }
    delete(&wh, "items", &key_columns(&sales("t1", 10..11, 100, &KEY)));
    for _ in 0..2 {
        let (code, report) = verify_json(&file, &[]);
        assert_eq!(code, 1, "{report}");
        assert_eq!(keys(&report["tables"][0], "missing"), ["t1,3,2"]);
        assert_eq!(report["tables"][0]["expected"]["rows"], 300);
    }
}

#[test]
fn a_verify_after_a_later_run_sees_the_batches_journaled_since_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (src, journal) = (dir.path().join("src.duckdb"), dir.path().join("journal"));
    fill(&src, "items", &[sales("t1", 0..300, 100, &KEY)], true);
    let file = pipeline(
        dir.path(),
        &format!(
            "{}[[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"wh\"\nmode = \"merge\"\n\
             primary_key = [\"tienda\", \"factura\", \"linea\"]\nchunk_rows = 50\n",
            connections(&["src", "wh"])
        ),
    );
    run_ok(&["run", s(&file), "--progress", "none"]);
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["tables"][0]["expected"]["rows"], 300);
    let parts = std::fs::read_dir(&journal)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with("verify-parts-"))
        .count();
    assert_eq!(parts, 1, "the batches per part are checkpointed");
    // New rows and a changed one, journaled after the checkpoints were written.
    fill(&src, "items", &[sales("t1", 250..400, 9, &KEY)], false);
    run_ok(&["run", s(&file), "--progress", "none"]);
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["tables"][0]["expected"]["rows"], 400);
    assert_eq!(
        report["tables"][0]["actual"],
        report["tables"][0]["expected"]
    );
}

/// `caudal bench verify` on a small table: every verify it times (the first, those read from
/// the fold's checkpoint, the one after a second run) passes, or the bench fails.
#[test]
fn bench_verify_runs_each_verify_it_times_and_each_passes() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().display().to_string();
    let out = run_ok(&[
        "bench", "verify", "--rows", "3000", "--repeat", "1", "--json", "--dir", &dir_arg,
    ]);
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["rows"], 3000);
    assert_eq!(report["rows_added"], 150);
    for figure in ["scan_s", "verify_s", "verify_cold_s", "verify_after_run_s"] {
        assert!(
            report[figure].as_f64().is_some_and(|s| s > 0.0),
            "{figure}: {report}"
        );
    }
}

#[test]
fn verify_names_exactly_a_destination_drifted_in_many_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (src, wh) = (dir.path().join("src.duckdb"), dir.path().join("wh.duckdb"));
    fill(&src, "items", &[sales("t1", 0..20_000, 100, &KEY)], true);
    let file = pipeline(
        dir.path(),
        &format!(
            "{}[[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"wh\"\nmode = \"merge\"\n\
             primary_key = [\"tienda\", \"factura\", \"linea\"]\nchunk_rows = 2500\n",
            connections(&["src", "wh"])
        ),
    );
    run_ok(&["run", s(&file), "--progress", "none"]);
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    let before = report["tables"][0]["actual"].clone();

    // Line L of a store is key (store, L / 3, L % 3 + 1). Behind caudal's back, in every
    // block of 100 lines: two rows changed and three deleted; and rows added before and
    // after every key.
    let key = |store: &str, line: i64| format!("{store},{},{}", line / 3, line % 3 + 1);
    let (mut changed, mut missing, mut extra) = (Vec::new(), Vec::new(), Vec::new());
    {
        let mut conn = open(&wh);
        for block in 0..200 {
            let at = block * 100;
            fixture_write(
                &mut conn,
                "items",
                1 + block as u64 * 2,
                WriteOp::Upsert,
                &sales("t1", at + 7..at + 9, 1, &KEY),
            );
            changed.extend((at + 7..at + 9).map(|l| key("t1", l)));
            fixture_write(
                &mut conn,
                "items",
                2 + block as u64 * 2,
                WriteOp::Delete,
                &key_columns(&sales("t1", at + 50..at + 53, 100, &KEY)),
            );
            missing.extend((at + 50..at + 53).map(|l| key("t1", l)));
        }
        for (seq, store, lines) in [(1000, "t0", 0..5), (1001, "t2", 0..30)] {
            fixture_write(
                &mut conn,
                "items",
                seq,
                WriteOp::Upsert,
                &sales(store, lines.clone(), 100, &KEY),
            );
            extra.extend(lines.map(|l| key(store, l)));
        }
        conn.close().unwrap();
    }
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 1, "{report}");
    let table = &report["tables"][0];
    assert_eq!(sorted(keys(table, "changed")), sorted(changed));
    assert_eq!(sorted(keys(table, "missing")), sorted(missing));
    assert_eq!(sorted(keys(table, "extra")), sorted(extra));

    let (code, report) = verify_json(&file, &["--repair"]);
    assert_eq!(code, 0, "{report}");
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["tables"][0]["actual"], before);
}
