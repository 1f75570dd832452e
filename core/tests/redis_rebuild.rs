//! `caudal project redis --rebuild` against a Redis cache (needs the server at 127.0.0.1:6379
//! and `redis-cli`): the journal (inserts, updates, deletes across runs) is folded into the
//! final rows, which are written once; stale keys are removed whether or not the table's
//! metadata keys survived; a cache left half-written (rows missing, rows written without
//! their row digests, as a rebuild that died midway leaves it) is rebuilt equal to the
//! journal; the streams' offsets end at their last journaled batch, so a later run goes on
//! from there; a rebuild killed midway is made again by the next `caudal run` or `caudal
//! project redis`.
//!
//! Needs `cargo build --release --workspace` first (same CARGO_TARGET_DIR as the tests).

mod engine_support;
mod redis_support;
mod verify_support;

use std::path::Path;

use caudal_journal::{EntryKind, NewEntry, RunId};
use engine_support::*;
use redis_support::*;
use verify_support::{item_keys, items, verify_json};

/// The stream's offset in the cache.
fn offset(prefix: &str) -> String {
    redis_cli(&[
        "HGET",
        &format!("{prefix}:_caudal_offsets"),
        "e2e\u{1f}items",
    ])
    .trim()
    .to_owned()
}

fn last_batch_seq(journal: &Path) -> u64 {
    entries(journal)
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::BatchRead { .. }))
        .map(|e| e.seq)
        .max()
        .unwrap()
}

#[test]
fn redis_rebuild_writes_the_final_rows_over_stale_keys_and_a_half_done_rebuild() {
    let prefix = Prefix::new("rebuild");
    let dir = tempfile::tempdir().unwrap();
    let (src, journal) = (dir.path().join("src.duckdb"), dir.path().join("journal"));
    let file = pipeline(
        dir.path(),
        &format!(
            "[connections.src]\nconnector = \"duckdb\"\npath = \"src.duckdb\"\n\n\
             [connections.cache]\nconnector = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\n\
             prefix = \"{}\"\n\n\
             [[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"cache\"\nmode = \"merge\"\n\
             primary_key = [\"id\"]\nchunk_rows = 100\n",
            prefix.0
        ),
    );
    // Three runs: inserts; updates of journaled rows and new rows; deletes.
    fill(&src, "items", &[items(0..500, 0)], true);
    run_ok(&["run", s(&file), "--progress", "none"]);
    fill(
        &src,
        "items",
        &[items(10..20, 1), items(500..520, 0)],
        false,
    );
    run_ok(&["run", s(&file), "--progress", "none"]);
    delete(&src, "items", &item_keys(30..40));
    run_ok(&["run", s(&file), "--progress", "none"]);
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    let before = report["tables"][0]["actual"].clone();
    assert_eq!(before["rows"], 510);

    // Every key flushed, offsets included, and stale rows left under the table's name.
    let stale = format!("{}:items:9999", prefix.0);
    let stale_text = format!("{}:items:abc", prefix.0);
    delete_under(&prefix.0);
    redis_cli(&["HSET", &stale, "id", "9999", "qty", "1"]);
    redis_cli(&["SET", &stale_text, "x"]);
    let report = rebuild(&file);
    assert_eq!(report["ok"], true, "{report}");
    let table = &report["rebuilt"][0];
    assert_eq!(table["rows"], 510, "one write per final row: {report}");
    let last = last_batch_seq(&journal);
    assert_eq!(table["offsets"][0]["seq"], last, "{report}");
    assert_eq!(offset(&prefix.0), last.to_string());
    assert_eq!(redis_cli(&["EXISTS", &stale, &stale_text]).trim(), "0");
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        report["tables"][0]["actual"], before,
        "the digest is the one before"
    );

    // A cache a rebuild left half-written: rows of later batches missing, rows of the batch
    // it was writing there without their row digests, offsets from before it.
    for id in 200..400 {
        redis_cli(&["UNLINK", &format!("{}:items:{id}", prefix.0)]);
    }
    for id in 150..200 {
        redis_cli(&[
            "HDEL",
            &format!("{}:items:rowdigests", prefix.0),
            &id.to_string(),
        ]);
    }
    redis_cli(&["HSET", &stale, "id", "9999", "qty", "1"]);
    let (code, _) = verify_json(&file, &[]);
    assert_eq!(code, 1, "the half-written cache differs from the journal");
    let report = rebuild(&file);
    assert_eq!(report["rebuilt"][0]["rows"], 510, "{report}");
    assert_eq!(redis_cli(&["EXISTS", &stale]).trim(), "0");
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["tables"][0]["actual"], before);

    // A run after the rebuild goes on after the last journaled batch: only new rows come.
    fill(&src, "items", &[items(600..605, 0)], false);
    assert!(run_json(&file)["rebuilds"].as_array().unwrap().is_empty());
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    let before = report["tables"][0]["actual"].clone();
    assert_eq!(before["rows"], 515);
    assert_eq!(offset(&prefix.0), last_batch_seq(&journal).to_string());

    // A rebuild killed midway: its `RunStarted` is journaled with no end after it, rows are
    // missing from the cache, and the offsets still say it is whole. The next run rebuilds
    // the connection before it reads, and says so; the run after it has nothing to finish.
    // That run cannot read its source (moved away), so what the cache gets back comes from
    // the rebuild alone, not from the merge stream's read of every row.
    let kill_a_rebuild = |args: &str| {
        let killed = caudal_journal::Journal::open(&journal, Default::default()).unwrap();
        let started = EntryKind::RunStarted {
            pipeline_file: s(&file).to_owned(),
            trigger: "rebuild".into(),
            streams: vec!["items".into()],
            args: args.into(),
        };
        killed
            .append_blocking(NewEntry::new("e2e", started).with_run(RunId::random()))
            .unwrap();
        killed.close().unwrap();
        for id in 100..300 {
            redis_cli(&["UNLINK", &format!("{}:items:{id}", prefix.0)]);
        }
        let (code, _) = verify_json(&file, &[]);
        assert_eq!(code, 1, "the half-written cache differs from the journal");
    };
    kill_a_rebuild("--connection cache");
    let away = dir.path().join("src.away");
    std::fs::rename(&src, &away).unwrap();
    let out = run(&["run", s(&file), "--progress", "none", "--json"]);
    let _ = std::fs::remove_file(&src);
    std::fs::rename(&away, &src).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "the source is away: {stdout}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["streams"][0]["status"], "read_failed", "{report}");
    let rebuilds = report["rebuilds"].as_array().unwrap();
    assert_eq!(rebuilds.len(), 1, "{report}");
    assert_eq!(rebuilds[0]["connection"], "cache");
    assert_eq!(rebuilds[0]["ok"], true, "{report}");
    assert_eq!(rebuilds[0]["rows"], 515, "{report}");
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["tables"][0]["actual"], before);
    assert!(run_json(&file)["rebuilds"].as_array().unwrap().is_empty());

    // `caudal project redis` (no --rebuild) finishes one too, here of one table, before it
    // writes the batches the cache lacks (none).
    kill_a_rebuild("--connection cache --table items");
    let out = run_ok(&["project", "redis", "--file", s(&file), "--json"]);
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["rebuilds"][0]["table"], "items", "{report}");
    assert_eq!(report["rebuilds"][0]["rows"], 515, "{report}");
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["tables"][0]["actual"], before);
    let out = run_ok(&["project", "redis", "--file", s(&file), "--json"]);
    assert!(out.contains("\"rebuilds\":[]"), "{out}");
    let rebuild_runs = entries(&journal)
        .iter()
        .filter(
            |e| matches!(&e.kind, EntryKind::RunStarted { trigger, .. } if trigger == "rebuild"),
        )
        .count();
    assert_eq!(
        rebuild_runs, 6,
        "two rebuilds, then twice a killed one and the one that finished it"
    );
}

/// `caudal run --json`, which must exit 0.
fn run_json(file: &Path) -> serde_json::Value {
    let stdout = run_ok(&["run", s(file), "--progress", "none", "--json"]);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("no JSON ({e}): {stdout}"))
}
