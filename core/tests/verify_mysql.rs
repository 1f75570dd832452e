//! `caudal verify` against a MySQL destination (needs the MariaDB server on 127.0.0.1:3306,
//! root without a password, and the `mysql` client): rows changed, deleted and added with
//! plain SQL behind caudal's back are named exactly, `--repair` writes back only those rows,
//! and every check is journaled as a `VerifyResult`.
//!
//! Needs `cargo build --release --workspace` first (same CARGO_TARGET_DIR as the tests).

mod engine_support;
mod verify_support;

use caudal_journal::EntryKind;
use engine_support::*;
use verify_support::*;

#[test]
fn verify_names_tampered_mysql_rows_and_repair_fixes_them() {
    let db = Database::new("verify");
    let dir = tempfile::tempdir().unwrap();
    let (src, journal) = (dir.path().join("src.duckdb"), dir.path().join("journal"));
    fill(&src, "items", &[items(0..4000, 0)], true);
    let file = pipeline(
        dir.path(),
        &format!(
            "[connections.src]\nconnector = \"duckdb\"\npath = \"src.duckdb\"\n\n\
             [connections.db]\nconnector = \"mysql\"\nurl = \"mysql://root@127.0.0.1:3306/{}\"\n\n\
             [[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"db\"\nmode = \"merge\"\n\
             primary_key = [\"id\"]\nchunk_rows = 500\n\n\
             [retry]\nmax_attempts = 1\nevery = \"10ms\"\n",
            db.0
        ),
    );
    run_ok(&["run", s(&file), "--progress", "none"]);
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "a fresh destination verifies: {report}");
    assert_eq!(report["tables"][0]["expected"]["rows"], 4000);

    let t = format!("`{}`.items", db.0);
    mysql(&format!("UPDATE {t} SET qty = 99 WHERE id = 700"));
    mysql(&format!("DELETE FROM {t} WHERE id = 1201"));
    mysql(&format!(
        "INSERT INTO {t} (id, name, qty, price, day) VALUES (5555, 'x', 1, 1.50, '2025-02-01')"
    ));
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 1, "a tampered destination fails: {report}");
    let table = &report["tables"][0];
    assert_eq!(keys(table, "changed"), ["700"]);
    assert_eq!(keys(table, "missing"), ["1201"]);
    assert_eq!(keys(table, "extra"), ["5555"]);

    let (code, report) = verify_json(&file, &["--repair"]);
    assert_eq!(code, 0, "repair makes the table equal: {report}");
    assert_eq!(verify_json(&file, &[]).0, 0);
    assert_eq!(
        mysql(&format!("SELECT qty FROM {t} WHERE id = 700")).trim(),
        "0"
    );
    assert_eq!(
        mysql(&format!(
            "SELECT COUNT(*) FROM {t} WHERE id IN (1201, 5555)"
        ))
        .trim(),
        "1"
    );
    // The lane's offset is untouched; the repair has offsets of its own.
    let offsets = mysql(&format!(
        "SELECT stream FROM `{}`._caudal_offsets ORDER BY stream",
        db.0
    ));
    let streams: Vec<&str> = offsets.lines().collect();
    assert_eq!(
        streams,
        ["_caudal_repair", "_caudal_repair_deletes", "items"],
        "{offsets}"
    );

    let results: Vec<(bool, u64, u64, u64)> = entries(&journal)
        .into_iter()
        .filter_map(|e| match e.kind {
            EntryKind::VerifyResult {
                ok,
                missing,
                extra,
                changed,
                ..
            } => Some((ok, missing, extra, changed)),
            _ => None,
        })
        .collect();
    assert_eq!(
        results,
        [
            (true, 0, 0, 0),
            (false, 1, 1, 1),
            (false, 1, 1, 1),
            (true, 0, 0, 0),
            (true, 0, 0, 0)
        ]
    );
}
