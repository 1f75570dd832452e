//! Helpers of the verify tests against MySQL and Redis: a MySQL database per test, item rows
//! keyed by an integer id, `caudal verify --json`, and the outage scenario of the cache job
//! (MySQL unreachable for three runs: inserts, updates, a row inserted, updated and then
//! deleted across batches; then reachable again), shared by the tests that run it with
//! different caches.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use caudal_connector::{Batch, BatchBuilder, Field, LogicalType, Schema};
use caudal_journal::EntryKind;

use super::engine_support::*;

/// Items `ids`, in their `version`: a name, a quantity, a price and a day, all changing with
/// the version. Keyed by `id`.
pub fn items(ids: std::ops::Range<i64>, version: i64) -> Batch {
    let schema = Schema::new(
        vec![
            Field::new("id", LogicalType::Int64, false),
            Field::new(
                "name",
                LogicalType::Varchar {
                    max_length: Some(40),
                },
                true,
            ),
            Field::new("qty", LogicalType::Int32, false),
            Field::new(
                "price",
                LogicalType::Decimal {
                    precision: 12,
                    scale: 2,
                },
                true,
            ),
            Field::new("day", LogicalType::Date, false),
        ],
        &["id"],
    )
    .unwrap();
    let mut b = BatchBuilder::new(Arc::new(schema));
    for id in ids {
        b.push(0, id).unwrap();
        if id % 11 == 0 {
            b.push_null(1).unwrap();
        } else {
            b.push(1, format!("item {id} v{version}").as_str()).unwrap();
        }
        b.push(2, (id % 7 + version) as i32).unwrap();
        b.push(3, i128::from(id * 10 + version)).unwrap();
        b.push(4, DAY0 + (id % 30) as i32).unwrap();
    }
    b.finish().unwrap()
}

/// The keys of `items(ids, _)`, as a delete carries them.
pub fn item_keys(ids: std::ops::Range<i64>) -> Batch {
    let schema = Schema::new(vec![Field::new("id", LogicalType::Int64, false)], &["id"]).unwrap();
    let mut b = BatchBuilder::new(Arc::new(schema));
    for id in ids {
        b.push(0, id).unwrap();
    }
    b.finish().unwrap()
}

/// The keys of one kind (`missing`, `extra`, `changed`) in a table of a verify report.
pub fn keys(table: &serde_json::Value, kind: &str) -> Vec<String> {
    table[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no `{kind}` in {table}"))
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

/// Runs SQL with the `mysql` client as root; fails the test when the server is absent.
pub fn mysql(sql: &str) -> String {
    let out = Command::new("mysql")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-u",
            "root",
            "-N",
            "-B",
            "-e",
            sql,
        ])
        .output()
        .expect("the mysql client runs (the MySQL tests need it and the server)");
    assert!(
        out.status.success(),
        "mysql_server_required: `{sql}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A database for one test, dropped at the end.
pub struct Database(pub String);

impl Database {
    pub fn new(tag: &str) -> Database {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("caudal_{tag}_{}_{nanos}", std::process::id());
        mysql(&format!("CREATE DATABASE `{name}`"));
        Database(name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("mysql")
            .args(["-h", "127.0.0.1", "-u", "root", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.0))
            .output();
    }
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `caudal verify --json` with `extra` arguments: exit status and report.
pub fn verify_json(file: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["verify", "--file", s(file), "--json", "--progress", "none"];
    args.extend_from_slice(extra);
    let out = run(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn write_pipeline(dir: &Path, db: &str, port: u16, cache: &str) -> PathBuf {
    pipeline(
        dir,
        &format!(
            "[connections.app]\nconnector = \"duckdb\"\npath = \"app.duckdb\"\n\n\
             [connections.db]\nconnector = \"mysql\"\nurl = \"mysql://root@127.0.0.1:{port}/{db}\"\n\n\
             {cache}\n\
             [[streams]]\nfrom = \"app\"\ntable = \"items\"\nto = [\"db\", \"cache\"]\n\
             mode = \"merge\"\nprimary_key = [\"id\"]\nchunk_rows = 100\n\n\
             [retry]\nmax_attempts = 1\nevery = \"10ms\"\n"
        ),
    )
}

fn run_fails(file: &Path) {
    let out = run(&["run", s(file), "--progress", "none"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a run with MySQL down reports its pending writes\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The outage scenario; `cache` gives the `[connections.cache]` section for the test
/// directory.
pub fn outage_scenario(tag: &str, cache: impl Fn(&Path) -> String) {
    let db = Database::new(tag);
    let dir = tempfile::tempdir().unwrap();
    let (src, journal) = (dir.path().join("app.duckdb"), dir.path().join("journal"));
    let cache = cache(dir.path());
    fill(&src, "items", &[items(0..300, 0)], true);

    let down = write_pipeline(dir.path(), &db.0, closed_port(), &cache);
    run_fails(&down);
    // The cache is written while MySQL is down.
    let (code, report) = verify_json(&down, &["--connection", "cache"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["tables"][0]["actual"]["rows"], 300);

    // Row 5 inserted (run 1), updated (run 2), deleted (run 3); row 10 updated; new rows.
    fill(
        &src,
        "items",
        &[items(5..6, 1), items(10..11, 1), items(300..310, 0)],
        false,
    );
    run_fails(&down);
    delete(&src, "items", &item_keys(5..6));
    run_fails(&down);
    assert_eq!(
        mysql(&format!(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{}'",
            db.0
        ))
        .trim(),
        "0",
        "nothing reached MySQL while it was down"
    );
    let (code, report) = verify_json(&down, &["--connection", "cache"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["tables"][0]["actual"]["rows"], 309);
    // MySQL cannot be checked while it is down: no row count or digest is made up for it.
    let (code, report) = verify_json(&down, &["--connection", "db"]);
    assert_eq!(code, 1, "{report}");
    let table = &report["tables"][0];
    assert_eq!(table["actual"], serde_json::Value::Null, "{report}");
    assert_eq!(table["expected"]["rows"], 309, "{report}");
    assert!(
        table["error"].as_str().is_some_and(|e| e.contains("`db`")),
        "{report}"
    );
    let text = run(&["verify", "--file", s(&down), "--connection", "db"]);
    let said = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.status.code(), Some(1), "{said}");
    assert!(
        said.contains("db.items: NOT CHECKED") && !said.contains("MISMATCH"),
        "{said}"
    );

    // MySQL is back: the pending batches apply, in journal order.
    let up = write_pipeline(dir.path(), &db.0, 3306, &cache);
    run_ok(&["run", s(&up), "--progress", "none"]);
    let t = format!("`{}`.items", db.0);
    assert_eq!(mysql(&format!("SELECT COUNT(*) FROM {t}")).trim(), "309");
    assert_eq!(
        mysql(&format!("SELECT COUNT(*) FROM {t} WHERE id = 5")).trim(),
        "0",
        "the row inserted, updated and deleted while MySQL was down ends deleted"
    );
    assert_eq!(
        mysql(&format!("SELECT qty FROM {t} WHERE id = 10")).trim(),
        "4",
        "the update made while MySQL was down is applied"
    );

    // Every batch reached MySQL once, in seq order; the cache had each one as it was read.
    let entries = entries(&journal);
    let batches: Vec<u64> = entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::BatchRead { .. }))
        .map(|e| e.seq)
        .collect();
    let applied = |dest: &str| -> Vec<u64> {
        entries
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::WriteApplied {
                    destination,
                    batch_seq,
                    ..
                } if destination == dest => Some(*batch_seq),
                _ => None,
            })
            .collect()
    };
    assert_eq!(applied("db"), batches, "MySQL got every batch, in order");
    assert_eq!(
        applied("cache"),
        batches,
        "the cache got every batch, in order"
    );
    let failed = entries
        .iter()
        .filter(|e| matches!(&e.kind, EntryKind::WriteFailed { destination, .. } if destination == "db"))
        .count();
    assert!(
        failed >= 3,
        "each run with MySQL down journaled its failure"
    );

    let (code, report) = verify_json(&up, &[]);
    assert_eq!(code, 0, "journal, MySQL and cache equal: {report}");
    let tables = report["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2);
    assert_eq!(tables[0]["expected"], tables[1]["expected"]);
    assert_eq!(tables[0]["actual"], tables[1]["actual"]);
    assert_eq!(tables[0]["actual"]["rows"], 309);
}
