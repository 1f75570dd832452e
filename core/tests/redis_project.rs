//! `caudal project redis` and `caudal verify` against a Redis cache (needs the server at
//! 127.0.0.1:6379 and `redis-cli`): the cache is rebuilt from the journal alone (the source
//! file is gone), stale keys under the prefix are removed, and keys changed or deleted behind
//! caudal's back are named exactly and repaired.
//!
//! Needs `cargo build --release --workspace` first (same CARGO_TARGET_DIR as the tests).

mod engine_support;
mod redis_support;
mod verify_support;

use engine_support::*;
use redis_support::*;
use verify_support::{closed_port, keys, verify_json};

const KEY: [&str; 3] = ["tienda", "factura", "linea"];

/// A row of store `t9`, line 1 of invoice `factura`, written under `key` behind caudal's
/// back: one the journal never held.
fn write_stray_row(key: &str, factura: &str) {
    redis_cli(&[
        "HSET",
        key,
        "tienda",
        "t9",
        "factura",
        factura,
        "linea",
        "1",
        "fecha",
        "2025-01-01",
        "cantidad",
        "1",
    ]);
}

/// A DuckDB source of `rows` sales lines (`src.duckdb` in `dir`) and a pipeline merging them
/// into a Redis cache under `prefix`, run once.
fn cache_of_sales(
    dir: &std::path::Path,
    prefix: &Prefix,
    rows: i64,
    chunk_rows: u32,
) -> std::path::PathBuf {
    fill(
        &dir.join("src.duckdb"),
        "items",
        &[sales("t1", 0..rows, 100, &KEY)],
        true,
    );
    let file = pipeline(
        dir,
        &format!(
            "[connections.src]\nconnector = \"duckdb\"\npath = \"src.duckdb\"\n\n\
             [connections.cache]\nconnector = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\n\
             prefix = \"{}\"\n\n\
             [[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"cache\"\nmode = \"merge\"\n\
             primary_key = [\"tienda\", \"factura\", \"linea\"]\nchunk_rows = {chunk_rows}\n",
            prefix.0
        ),
    );
    run_ok(&["run", s(&file), "--progress", "none"]);
    file
}

#[test]
fn redis_cache_rebuilt_from_the_journal_alone_then_tampered_and_repaired() {
    let prefix = Prefix::new("project");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.duckdb");
    let file = cache_of_sales(dir.path(), &prefix, 2000, 300);
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    let before = report["tables"][0]["actual"].clone();
    assert_eq!(before["rows"], 2000);

    // The source is gone: only the journal can rebuild the cache.
    std::fs::remove_file(&src).unwrap();
    delete_under(&prefix.0);
    assert!(keys_under(&prefix.0).is_empty());
    // A stale row under the prefix, which the journal does not imply.
    let stale = format!("{}:items:t9:1:1", prefix.0);
    write_stray_row(&stale, "1");
    rebuild(&file);
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        report["tables"][0]["actual"], before,
        "the digest is the one before"
    );
    assert_eq!(
        redis_cli(&["EXISTS", &stale]).trim(),
        "0",
        "the stale key is gone"
    );

    // One field of one key changed, another key deleted.
    redis_cli(&[
        "HSET",
        &format!("{}:items:t1:233:2", prefix.0),
        "cantidad",
        "99",
    ]);
    redis_cli(&["DEL", &format!("{}:items:t1:400:2", prefix.0)]);
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 1, "{report}");
    let table = &report["tables"][0];
    assert_eq!(keys(table, "changed"), ["t1,233,2"]);
    assert_eq!(keys(table, "missing"), ["t1,400,2"]);
    assert!(keys(table, "extra").is_empty());
    let (code, report) = verify_json(&file, &["--repair"]);
    assert_eq!(code, 0, "{report}");
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["tables"][0]["actual"], before);
}

#[test]
fn project_redis_refuses_a_pipeline_without_a_redis_destination() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.duckdb");
    fill(&src, "items", &[sales("t1", 0..10, 100, &KEY)], true);
    let file = pipeline(
        dir.path(),
        "[connections.src]\nconnector = \"duckdb\"\npath = \"src.duckdb\"\n\n\
         [connections.wh]\nconnector = \"duckdb\"\npath = \"wh.duckdb\"\n\n\
         [[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = \"wh\"\n",
    );
    let out = run(&["project", "redis", "--file", s(&file)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Redis"));
    let out = run(&["project", "redis", "--file", s(&file), "--connection", "wh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("duckdb"));
}

/// `caudal bench redis` on a small cache: every command it times succeeds (else it exits
/// non-zero), each figure is there and positive, the second rebuild over the full cache is
/// timed too, and no key of the bench is left on the server.
#[test]
fn bench_redis_times_each_command_and_leaves_no_key_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(&[
        "bench",
        "redis",
        "--rows",
        "3000",
        "--json",
        "--dir",
        s(dir.path()),
    ]);
    let report: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("no JSON ({e}): {out}"));
    assert_eq!(report["rows"], 3000);
    for figure in [
        "redis_benchmark_set_per_s",
        "rebuild_s",
        "rebuild_keys_per_s",
        "replay_s",
        "rebuild_full_s",
        "rebuild_full_keys_per_s",
        "share",
    ] {
        let v = report[figure].as_f64();
        assert!(v.is_some_and(|v| v > 0.0), "{figure}: {report}");
    }
    let file = std::fs::read_to_string(dir.path().join("bench-redis.toml")).unwrap();
    let prefix = file
        .lines()
        .find_map(|l| l.strip_prefix("prefix = \""))
        .and_then(|p| p.strip_suffix('"'))
        .expect("the bench's pipeline names its prefix");
    assert!(prefix.starts_with("caudal_bench_"), "{prefix}");
    let left = redis_cli(&["--scan", "--pattern", &format!("{prefix}:*")]);
    assert!(left.trim().is_empty(), "keys left: {left}");
}

#[test]
fn a_cache_drifted_in_many_keys_is_compared_in_one_read_named_exactly_and_repaired() {
    let prefix = Prefix::new("drift");
    let dir = tempfile::tempdir().unwrap();
    let file = cache_of_sales(dir.path(), &prefix, 20_000, 2500);
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    let before = report["tables"][0]["actual"].clone();

    // Row keys in key order, as verify names them ("t1,233,2").
    let row = format!("{}:items:", prefix.0);
    let mut rows: Vec<String> = keys_under(&prefix.0)
        .into_iter()
        .filter_map(|k| k.strip_prefix(&row).map(str::to_owned))
        .filter(|k| k.split(':').count() == 3)
        .collect();
    rows.sort();
    assert_eq!(rows.len(), 20_000);
    let text = |k: &str| k.replace(':', ",");
    // Scattered over the whole key space: hundreds deleted, hundreds changed, and rows the
    // journal never held.
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    for (i, k) in rows.iter().enumerate() {
        if i % 37 == 5 {
            missing.push(text(k));
        } else if i % 53 == 7 {
            redis_cli(&["HSET", &format!("{row}{k}"), "cantidad", "-77"]);
            changed.push(text(k));
        }
    }
    let deleted: Vec<String> = missing
        .iter()
        .map(|k| format!("{row}{}", k.replace(',', ":")))
        .collect();
    for chunk in deleted.chunks(200) {
        let mut args = vec!["DEL"];
        args.extend(chunk.iter().map(String::as_str));
        redis_cli(&args);
    }
    let mut extra = Vec::new();
    for i in 0..25 {
        let factura = (i * 7919).to_string();
        write_stray_row(&format!("{row}t9:{factura}:1"), &factura);
        extra.push(format!("t9,{factura},1"));
    }
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 1, "{report}");
    let table = &report["tables"][0];
    assert_eq!(sorted(keys(table, "missing")), sorted(missing.clone()));
    assert_eq!(sorted(keys(table, "changed")), sorted(changed.clone()));
    assert_eq!(sorted(keys(table, "extra")), sorted(extra.clone()));
    assert!(
        missing.len() > 500 && changed.len() > 300,
        "{} {}",
        missing.len(),
        changed.len()
    );

    let (code, report) = verify_json(&file, &["--repair"]);
    assert_eq!(code, 0, "{report}");
    let (code, report) = verify_json(&file, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["tables"][0]["actual"], before);
}

/// `caudal bench redis` against a port nothing listens on ends at once with an error naming
/// the server (redis-benchmark alone would retry it for ever).
#[test]
fn bench_redis_names_a_server_that_does_not_answer() {
    let port = closed_port().to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_caudal"))
        .args(["bench", "redis", "--rows", "10", "--port", &port])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = std::process::Command::new("pkill")
                .args(["-f", &format!("redis-benchmark -h 127.0.0.1 -p {port} ")])
                .status();
            let _ = child.kill();
            panic!("bench redis still running after 60 s against a closed port");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach Redis at 127.0.0.1:{port}")),
        "{stderr}"
    );
}
