//! The nightly store-sales job on DuckDB stores, end to end through the `caudal` binary and
//! the DuckDB plugin: 16 store databases `tienda_01..tienda_16` (each missing some days) into
//! one warehouse table `ventas_raw` through the partitioned stream `tienda_*`.
//!
//! - `tienda_05` is locked by another process (this test, with an fcntl lock, as DuckDB
//!   takes one per file) during its first two reads, then released: read again by the retry
//!   policy, it completes on its third attempt;
//! - `tienda_13`'s path is a directory: it fails all three attempts;
//! - the run's summary (16 stores, 15 succeeded, 1 failed, rows) is in `caudal history`;
//! - `caudal gaps` gives, per store, the last loaded day, days behind and missing days, equal
//!   to what the test generated (table and `--json`);
//! - a manual range run of `tienda_02` fills one of its missing days, and `caudal gaps` then
//!   shows it filled.
//!
//! Needs `cargo build --release --workspace` first (same CARGO_TARGET_DIR as the tests).

mod engine_support;

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use caudal_connector::{Batch, BatchBuilder, ReadTarget};
use engine_support::*;
use serde_json::Value as Json;

const KEY: [&str; 3] = ["tienda", "factura", "linea"];
const STORES: i32 = 16;
const DAYS: i32 = 30;
/// Rows per store and day: 10 invoices of 3 lines.
const PER_DAY: usize = 30;
const LOCKED: i32 = 5;
const BROKEN: i32 = 13;
/// `--today`: day 35 (2025-02-05).
const TODAY: &str = "2025-02-05";
const TODAY_DAY: i32 = DAY0 + 35;

fn store(t: i32) -> String {
    format!("tienda_{t:02}")
}

fn day_text(d: i32) -> String {
    caudal::engine::gaps::day_text(d)
}

/// The days store `t` has: days 0..30 from `DAY0`, without those where
/// `(t * 37 + d * 11) % 23 == 0`, and without the last `t % 4` days (the store's server was
/// down).
fn store_days(t: i32) -> Vec<i32> {
    (0..DAYS - t % 4)
        .filter(|d| (t * 37 + d * 11) % 23 != 0)
        .map(|d| DAY0 + d)
        .collect()
}

/// The sales of store `t` on `days`.
fn store_sales(t: i32, days: &[i32]) -> Batch {
    let mut b = BatchBuilder::new(Arc::new(sales_schema(&KEY)));
    for &day in days {
        for n in 0..PER_DAY as i64 {
            b.push(0, store(t).as_str()).unwrap();
            b.push(
                1,
                i64::from(t) * 1_000_000 + i64::from(day - DAY0) * 1000 + n / 3,
            )
            .unwrap();
            b.push(2, (n % 3) as i32 + 1).unwrap();
            b.push(3, day).unwrap();
            b.push(4, format!("P{:04}", (n * 7 + i64::from(t)) % 500).as_str())
                .unwrap();
            b.push(5, (n % 5) as i32 + 1).unwrap();
            b.push(6, i128::from(n) * 25 + 150).unwrap();
        }
    }
    b.finish().unwrap()
}

/// What `caudal gaps` must say of store `t` holding `days`: (first, last, missing).
fn expected_gaps(days: &BTreeSet<i32>) -> (Option<i32>, Option<i32>, Vec<i32>) {
    match (days.first(), days.last()) {
        (Some(&a), Some(&b)) => (
            Some(a),
            Some(b),
            (a..=b).filter(|d| !days.contains(d)).collect(),
        ),
        _ => (None, None, Vec::new()),
    }
}

/// A write lock on a file, as DuckDB takes one (fcntl): while it is held, no other process
/// can open the database. Released when dropped.
struct FileLock {
    _held: std::fs::File,
}

impl FileLock {
    fn hold(path: &Path) -> FileLock {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        // SAFETY: a zeroed `flock` is a valid value; the pointer lives across the call.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: a valid descriptor and a valid `flock`.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) };
        assert_eq!(rc, 0, "locking {}", path.display());
        FileLock { _held: file }
    }
}

/// Runs `caudal` with `args` while `lock` holds `partition`'s database, and releases the lock
/// as soon as the run has logged the second failed read of that partition: the retry policy
/// then waits its `every` before the third read, which finds the file free. Returns the exit
/// status, what the run printed on standard error, and whether the lock was released that way.
fn run_releasing_after_two_failed_reads(
    args: &[&str],
    lock: FileLock,
    partition: &str,
) -> (Option<i32>, String, bool) {
    use std::io::BufRead;
    let mut child = caudal()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("caudal runs");
    let stderr = child.stderr.take().expect("piped stderr");
    let partition = partition.to_owned();
    let reader = std::thread::spawn(move || {
        let mut lock = Some(lock);
        let mut failed_reads = 0;
        let mut text = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.expect("stderr is text");
            if line.contains("stream failed") && line.contains(&partition) {
                failed_reads += 1;
                if failed_reads == 2 {
                    lock = None;
                }
            }
            text.push_str(&line);
            text.push('\n');
        }
        let released = lock.is_none() && failed_reads == 2;
        drop(lock);
        (text, released)
    });
    let status = child.wait().expect("caudal ends");
    let (text, released) = reader.join().expect("the stderr reader ends");
    (status.code(), text, released)
}

fn json(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn json_lines(text: &str) -> Vec<Json> {
    text.lines().map(json).collect()
}

/// The gaps of every store, by name, from `caudal gaps --json`.
fn gaps_json(file: &Path) -> Json {
    json(&run_ok(&[
        "gaps",
        "--file",
        s(file),
        "--pipeline",
        "ventas",
        "--date-column",
        "fecha",
        "--today",
        TODAY,
        "--json",
    ]))
}

fn assert_store_gaps(report: &Json, t: i32, days: &BTreeSet<i32>) {
    let part = report["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["partition"] == store(t).as_str())
        .unwrap_or_else(|| panic!("{} is missing from {report}", store(t)));
    let (first, last, missing) = expected_gaps(days);
    let shown = |d: Option<i32>| d.map(day_text);
    assert_eq!(
        part["first_day"].as_str().map(str::to_owned),
        shown(first),
        "{part}"
    );
    assert_eq!(
        part["last_day"].as_str().map(str::to_owned),
        shown(last),
        "{part}"
    );
    assert_eq!(
        part["days_behind"].as_i64(),
        last.map(|l| i64::from(TODAY_DAY - l)),
        "{part}"
    );
    assert_eq!(part["days_loaded"], days.len(), "{part}");
    let missing: Vec<String> = missing.into_iter().map(day_text).collect();
    let got: Vec<String> = part["missing_days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, missing, "{part}");
}

struct Stores {
    dir: tempfile::TempDir,
    file: PathBuf,
    journal: PathBuf,
    warehouse: PathBuf,
    /// What each store holds, by store number.
    days: Vec<BTreeSet<i32>>,
}

/// 16 stores (`tienda_13` a directory), a warehouse, and the pipeline file.
fn stores() -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let mut connections = String::new();
    let mut days = vec![BTreeSet::new()];
    for t in 1..=STORES {
        let path = dir.path().join(format!("{}.duckdb", store(t)));
        let held: Vec<i32> = store_days(t);
        if t == BROKEN {
            std::fs::create_dir(&path).unwrap();
        } else {
            fill(&path, "ventas", &[store_sales(t, &held)], true);
        }
        days.push(held.into_iter().collect());
        connections.push_str(&format!(
            "[connections.{}]\nconnector = \"duckdb\"\npath = \"{}.duckdb\"\n\n",
            store(t),
            store(t)
        ));
    }
    let file = dir.path().join("ventas.toml");
    std::fs::write(
        &file,
        format!(
            "[pipeline]\nname = \"ventas\"\n\n[journal]\ndir = \"journal\"\n\n{connections}\
             [connections.warehouse]\nconnector = \"duckdb\"\npath = \"warehouse.duckdb\"\n\n\
             [[streams]]\nname = \"ventas\"\nfrom = \"tienda_*\"\nquery = \"SELECT * FROM ventas\"\n\
             table = \"ventas_raw\"\nto = \"warehouse\"\nmode = \"incremental\"\ncursor = \"fecha\"\n\
             primary_key = [\"tienda\", \"factura\", \"linea\"]\nchunk_rows = 45\n\n\
             [retry]\nmax_attempts = 3\nevery = \"1s\"\nbackoff = \"fixed\"\n"
        ),
    )
    .unwrap();
    Stores {
        journal: dir.path().join("journal"),
        warehouse: dir.path().join("warehouse.duckdb"),
        file,
        days,
        dir,
    }
}

/// Rows of store `t` on `day` in the warehouse.
fn warehouse_rows(warehouse: &Path, t: i32, day: i32) -> u64 {
    let query = format!(
        "SELECT * FROM ventas_raw WHERE tienda = '{}' AND fecha = DATE '{}'",
        store(t),
        day_text(day)
    );
    read_digest(
        warehouse,
        ReadTarget::Query(query),
        None,
        "ventas_raw",
        &|b| b,
    )
    .1
}

#[test]
fn nightly_job_on_duckdb_stores_summary_gaps_and_a_manual_fill() {
    let st = stores();
    let f = s(&st.file);

    // The night's run: tienda_05 locked for its first two reads, tienda_13 broken.
    let lock = FileLock::hold(&st.dir.path().join(format!("{}.duckdb", store(LOCKED))));
    let (code, stderr, released) = run_releasing_after_two_failed_reads(
        &["run", f, "--progress", "none"],
        lock,
        &store(LOCKED),
    );
    assert!(
        released,
        "the lock was released after the second failed read:\n{stderr}"
    );
    assert_eq!(code, Some(1), "one store failed:\n{stderr}");

    // The summary, as JSON and as the table shows it.
    let history = json_lines(&run_ok(&["history", "--file", f, "--json"]));
    assert_eq!(history.len(), 1);
    let run0 = &history[0];
    assert_eq!(run0["state"], "failed", "{run0}");
    let loaded_rows: usize = (1..=STORES)
        .filter(|&t| t != BROKEN)
        .map(|t| st.days[t as usize].len() * PER_DAY)
        .sum();
    let summary = &run0["summary"][0];
    assert_eq!(summary["stream"], "ventas", "{run0}");
    assert_eq!(summary["total"], 16, "{summary}");
    assert_eq!(summary["succeeded"], 15, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    assert_eq!(summary["unfinished"], 0, "{summary}");
    assert_eq!(summary["rows"], loaded_rows, "{summary}");
    assert_eq!(summary["failed_parts"], serde_json::json!([store(BROKEN)]));
    let reads = |t: i32| {
        run0["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["partition"] == store(t).as_str())
            .map(|p| {
                (
                    p["reads"].as_u64().unwrap(),
                    p["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .unwrap()
    };
    assert_eq!(
        reads(LOCKED),
        (3, "succeeded".into()),
        "read three times, then loaded"
    );
    assert_eq!(
        reads(BROKEN),
        (3, "read_failed".into()),
        "three attempts, all failed"
    );
    assert_eq!(reads(1), (1, "succeeded".into()));
    let table = run_ok(&["history", "--file", f]);
    for needle in [
        "15/16 ok, 1 failed",
        &format!("ventas: 16 partitions, 15 succeeded, 1 failed (tienda_13); {loaded_rows} rows"),
    ] {
        assert!(table.contains(needle), "`{needle}` in\n{table}");
    }

    // Gaps: every store as generated; tienda_13 never loaded.
    let report = gaps_json(&st.file);
    assert_eq!(report["stream"], "ventas");
    assert_eq!(report["destination"], "warehouse");
    assert_eq!(report["today"], TODAY);
    assert_eq!(
        report["partitions"].as_array().unwrap().len(),
        16,
        "{report}"
    );
    let mut days = st.days.clone();
    days[BROKEN as usize].clear();
    for t in 1..=STORES {
        assert_store_gaps(&report, t, &days[t as usize]);
    }
    assert!(
        days.iter()
            .filter(|d| !expected_gaps(d).2.is_empty())
            .count()
            >= 10,
        "most stores have missing days to show"
    );

    // The table: a line per store, missing days as ranges.
    let table = run_ok(&[
        "gaps",
        "--file",
        f,
        "--date-column",
        "fecha",
        "--today",
        TODAY,
    ]);
    let line = |t: i32| {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(&store(t)))
            .unwrap_or_else(|| panic!("no line for {} in\n{table}", store(t)))
            .to_owned()
    };
    assert!(line(BROKEN).contains("nothing loaded"), "{table}");
    let (_, last, missing) = expected_gaps(&days[2]);
    assert!(!missing.is_empty(), "tienda_02 has a gap to fill");
    assert!(line(2).contains(&day_text(last.unwrap())), "{table}");
    assert!(line(2).contains(&day_text(missing[0])), "{table}");

    // A manual range fills one of tienda_02's missing days, once its rows exist.
    let gap = missing[0];
    let src = st.dir.path().join(format!("{}.duckdb", store(2)));
    fill(&src, "ventas", &[store_sales(2, &[gap])], false);
    assert_eq!(warehouse_rows(&st.warehouse, 2, gap), 0);
    run_ok(&[
        "run",
        f,
        "--partition",
        &store(2),
        "--from",
        &day_text(gap),
        "--to",
        &day_text(gap + 1),
        "--progress",
        "none",
    ]);
    assert_eq!(warehouse_rows(&st.warehouse, 2, gap), PER_DAY as u64);
    days[2].insert(gap);
    let report = gaps_json(&st.file);
    for t in 1..=STORES {
        assert_store_gaps(&report, t, &days[t as usize]);
    }
    let history = json_lines(&run_ok(&["history", "--file", f, "--json", "--last", "1"]));
    let summary = &history[0]["summary"][0];
    assert_eq!(
        (&summary["total"], &summary["succeeded"], &summary["rows"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(PER_DAY)
        ),
        "{summary}"
    );

    // The checkpoint is used, and gives what a fold from scratch gives.
    assert!(st.journal.join("gaps.json").is_file());
    std::fs::remove_file(st.journal.join("gaps.json")).unwrap();
    assert_eq!(gaps_json(&st.file), report);
    verify(&st.journal);
}

#[test]
fn gaps_refuses_bad_arguments_with_exit_2() {
    let st = stores();
    let f = s(&st.file);
    run_ok(&["run", f, "--partition", "tienda_01", "--progress", "none"]);
    for (args, needle) in [
        (vec!["--today", "2025-02-30"], "--today"),
        (vec!["--stream", "nope"], "no stream `nope`"),
        (vec!["--to", "elsewhere"], "does not write `elsewhere`"),
    ] {
        let mut all = vec!["gaps", "--file", f, "--date-column", "fecha"];
        all.extend(args);
        let out = run(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {stderr}");
        assert!(stderr.contains(needle), "`{needle}` in {stderr}");
    }
}

/// The shipped quickstart: 16 stores in one table (`tienda` a column), each missing the days
/// where `(t * 37 + d * 11) % 23 == 0`. `--by tienda` lists them per store.
#[test]
fn quickstart_gaps_by_store_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quickstart.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/quickstart.toml"),
        &file,
    )
    .unwrap();
    let f = s(&file);
    run_ok(&["run", f, "--progress", "none"]);
    let by_store = json(&run_ok(&[
        "gaps",
        "--file",
        f,
        "--by",
        "tienda",
        "--today",
        "2025-03-05",
        "--json",
    ]));
    assert_eq!(
        by_store["stream"], "ventas",
        "the snapshot stream is not the default"
    );
    assert_eq!(by_store["by"], "tienda");
    let parts = by_store["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 16, "{by_store}");
    let mut inside = 0;
    for t in 1..=16 {
        let days: BTreeSet<i32> = (0..60)
            .filter(|d| (t * 37 + d * 11) % 23 != 0)
            .map(|d| DAY0 + d)
            .collect();
        let (first, last, missing) = expected_gaps(&days);
        inside += missing.len();
        let part = parts
            .iter()
            .find(|p| p["partition"] == store(t).as_str())
            .unwrap_or_else(|| panic!("{} in {by_store}", store(t)));
        assert_eq!(
            part["first_day"],
            first.map(day_text).unwrap().as_str(),
            "{part}"
        );
        assert_eq!(
            part["last_day"],
            last.map(day_text).unwrap().as_str(),
            "{part}"
        );
        assert_eq!(
            part["days_behind"],
            i64::from(DAY0 + 63 - last.unwrap()),
            "{part}"
        );
        let want: Vec<String> = missing.into_iter().map(day_text).collect();
        assert_eq!(part["missing_days"], serde_json::json!(want), "{part}");
    }
    assert!(
        inside >= 30,
        "most of the 42 missing store-days lie inside a range: {inside}"
    );
    // By stream alone, every day has some store's rows.
    let whole = json(&run_ok(&[
        "gaps",
        "--file",
        f,
        "--today",
        "2025-03-05",
        "--json",
    ]));
    assert_eq!(
        whole["partitions"][0]["missing_days"],
        serde_json::json!([])
    );
    assert_eq!(whole["partitions"][0]["days_loaded"], 60);
    let table = run_ok(&["gaps", "--file", f, "--by", "tienda"]);
    assert!(
        table.contains("TIENDA") && table.contains("16 values of `tienda`"),
        "{table}"
    );
}
