//! Crash test of the MySQL and Redis sinks: a MySQL table is copied into another MySQL
//! database and into a Redis cache by one stream, and `caudal run` is SIGKILLed at random
//! moments (its rerun too, in some trials), before and after the source changes (updates,
//! inserts, and deletes where the mode carries them). In some trials the destination MySQL is
//! unreachable until the second half (the cache job's outage), and a cache rebuild
//! (`caudal project redis --rebuild`) is killed too, left for `caudal project redis` to finish.
//!
//! After the last run completes: the destination MySQL table equals the source (digest and
//! rows: nothing lost, nothing twice), `caudal verify` finds journal, MySQL and Redis equal,
//! and the journal verifies. Delays are drawn uniformly over the measured length of a whole
//! run; the seed is printed (`CAUDAL_CRASH_SEED=...` replays the draws), and a failed trial's
//! files are kept under the target directory (`tmp/crash_mysql_redis/`).
//!
//! Needs the MariaDB and Redis of the test machines, and `cargo build --release --workspace`
//! first (same CARGO_TARGET_DIR as the tests).

mod engine_support;
mod mysql_support;
mod redis_support;
mod verify_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engine_support::crash::{Rng, keep_failed, run_and_kill, seed, two_at_a_time};
use engine_support::*;
use mysql_support::{Db, numbers};
use redis_support::Prefix;
use verify_support::closed_port;

const ROWS: u64 = 30_000;

/// One trial: its mode, whether MySQL is down for the first half, and where to kill.
struct Trial {
    n: usize,
    mode: &'static str,
    outage: bool,
    /// Kills of the first half (before the source changes) and of the second.
    kills: [Vec<Duration>; 2],
    /// When to kill a cache rebuild at the end.
    rebuild: Duration,
}

/// The source table, `ROWS` items with a nullable note and a datetime(6) cursor.
fn fill_source(src: &Db) {
    src.exec(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(40) NOT NULL, qty INT NOT NULL, \
         price DECIMAL(10,2) NOT NULL, note VARCHAR(200) NULL, updated DATETIME(6) NOT NULL)",
    );
    src.exec(&format!(
        "INSERT INTO items SELECT n + 1, CONCAT('item-', n), n % 1000, (n % 10000) / 100, \
         IF(n % 7 = 0, NULL, REPEAT('x', n % 50)), \
         TIMESTAMP('2025-01-01') + INTERVAL n SECOND + INTERVAL n % 1000 MICROSECOND \
         FROM {}",
        numbers(ROWS)
    ));
}

/// Changes between the two halves: updates (moving their cursor forward), new rows, and
/// (when the mode carries deletes) a range deleted.
fn change_source(src: &Db, mode: &str, at: u64) {
    src.exec(&format!(
        "UPDATE items SET qty = qty + 1, note = NULL, updated = updated + INTERVAL 1 YEAR \
         WHERE id BETWEEN {at} AND {at} + 2000"
    ));
    src.exec(&format!(
        "INSERT INTO items SELECT {ROWS} + 1 + n, CONCAT('new-', n), 1, 1.50, 'new', \
         TIMESTAMP('2027-01-01') + INTERVAL n SECOND FROM {}",
        numbers(1500)
    ));
    if mode != "incremental" {
        src.exec(&format!(
            "DELETE FROM items WHERE id BETWEEN {at} + 5000 AND {at} + 5400"
        ));
    }
}

fn trial_pipeline(dir: &Path, src: &Db, dst_url: &str, prefix: &str, mode: &str) -> PathBuf {
    let stream = match mode {
        "incremental" => "mode = \"incremental\"\ncursor = \"updated\"\nprimary_key = [\"id\"]\n",
        "merge" => "mode = \"merge\"\nprimary_key = [\"id\"]\n",
        _ => "mode = \"snapshot\"\n",
    };
    pipeline(
        dir,
        &format!(
            "{}[connections.dst]\nconnector = \"mysql\"\nurl = \"{dst_url}\"\n\n\
             [connections.cache]\nconnector = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\n\
             prefix = \"{prefix}\"\n\n\
             [[streams]]\nfrom = \"src\"\ntable = \"items\"\nto = [\"dst\", \"cache\"]\n\
             {stream}chunk_rows = 1500\n\n\
             [retry]\nmax_attempts = 2\nevery = \"20ms\"\n",
            src.connection("src")
        ),
    )
}

/// Runs `caudal` to its end; an error unless it exits `want`.
fn complete(story: &str, args: &[&str], want: i32) -> Result<(), String> {
    let out = run(&[args, &["--progress", "none", "--log-level", "error"]].concat());
    if out.status.code() == Some(want) {
        return Ok(());
    }
    Err(format!(
        "{story}: caudal {args:?} ended {}, expected exit status {want}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Runs a trial; returns how many of its runs were killed before they finished.
fn trial_in(dir: &Path, t: &Trial) -> Result<usize, String> {
    std::fs::create_dir_all(dir).unwrap();
    let (src, dst) = (Db::new("crash_src"), Db::new("crash_dst"));
    let prefix = Prefix::new("crash");
    fill_source(&src);
    let up = dst.url();
    let down = format!("mysql://root@127.0.0.1:{}/{}", closed_port(), dst.name);
    let first_url = if t.outage { &down } else { &up };
    let file = trial_pipeline(dir, &src, first_url, &prefix.0, t.mode);
    let run_args = ["run", s(&file)];
    let mut killed = 0;
    let mut story = format!(
        "trial {} ({}{})",
        t.n,
        t.mode,
        if t.outage { ", MySQL down" } else { "" }
    );

    for delay in &t.kills[0] {
        story.push_str(&format!(", killed after {delay:?}"));
        killed += usize::from(run_and_kill(&run_args, *delay));
    }
    // With MySQL down the run ends with its writes pending (1); else it completes (0).
    complete(&story, &run_args, i32::from(t.outage))?;

    change_source(&src, t.mode, 1 + t.n as u64 * 700);
    story.push_str(", source changed");
    for (i, delay) in t.kills[1].iter().enumerate() {
        if i == 1 && t.outage {
            // MySQL is back from the second kill on.
            trial_pipeline(dir, &src, &up, &prefix.0, t.mode);
            story.push_str(", MySQL back");
        }
        story.push_str(&format!(", killed after {delay:?}"));
        killed += usize::from(run_and_kill(&run_args, *delay));
    }
    trial_pipeline(dir, &src, &up, &prefix.0, t.mode);
    complete(&story, &run_args, 0)?;

    story.push_str(&format!(", rebuild killed after {:?}", t.rebuild));
    run_and_kill(
        &["project", "redis", "--file", s(&file), "--rebuild"],
        t.rebuild,
    );
    complete(&story, &["project", "redis", "--file", s(&file)], 0)?;

    // The destination holds exactly the source's rows.
    let journal = dir.join("journal");
    let schema = stream_schema(&journal, "items");
    let (expected, rows) = src.read_digest("items", "items", &|b| b);
    let actual = dst.table_digest("items", &schema);
    if actual.rows() != rows as i64 || actual != expected {
        return Err(format!(
            "{story}: the destination has {} rows, the source {rows}{}",
            actual.rows(),
            if actual.rows() == rows as i64 {
                ", and they differ"
            } else {
                ""
            }
        ));
    }
    // Journal, MySQL and Redis agree.
    complete(&story, &["verify", "--file", s(&file)], 0)?;
    caudal_journal::verify(&journal).map_err(|e| format!("{story}: journal damaged: {e}"))?;
    Ok(killed)
}

/// How long a whole run and a whole rebuild take, on a source of `ROWS` rows.
fn measure(base: &Path) -> (Duration, Duration) {
    let dir = base.join("measure");
    std::fs::create_dir_all(&dir).unwrap();
    let (src, dst) = (Db::new("crash_src"), Db::new("crash_dst"));
    let prefix = Prefix::new("crash");
    fill_source(&src);
    let file = trial_pipeline(&dir, &src, &dst.url(), &prefix.0, "merge");
    let start = Instant::now();
    run_ok(&["run", s(&file), "--progress", "none"]);
    let whole_run = start.elapsed();
    let start = Instant::now();
    redis_support::rebuild(&file);
    (whole_run, start.elapsed())
}

#[test]
fn sigkill_of_mysql_and_redis_writes_loses_nothing_and_duplicates_nothing() {
    let base = tempfile::tempdir().unwrap();
    let (whole_run, whole_rebuild) = measure(base.path());
    let seed = seed();
    let mut rng = Rng(seed);
    let kinds = [
        ("snapshot", false),
        ("incremental", false),
        ("merge", false),
        ("merge", true),
    ];
    let trials: Vec<Trial> = (0..12)
        .map(|n| {
            let (mode, outage) = kinds[n % kinds.len()];
            let half = |rng: &mut Rng| {
                let mut kills = vec![rng.below(whole_run.mul_f64(1.1))];
                if rng.one_in(2) {
                    kills.push(rng.below(whole_run));
                }
                kills
            };
            let mut first = half(&mut rng);
            let mut second = half(&mut rng);
            if outage {
                // A kill while MySQL is down, and one after it is back.
                first.truncate(1);
                second.resize_with(2, || rng.below(whole_run));
            }
            Trial {
                n,
                mode,
                outage,
                kills: [first, second],
                rebuild: rng.below(whole_rebuild.mul_f64(1.2)),
            }
        })
        .collect();

    let results = two_at_a_time(&trials, |t| {
        let dir = base.path().join(format!("trial-{:02}", t.n));
        trial_in(&dir, t).map_err(|e| keep_failed(&dir, "crash_mysql_redis", seed, t.n, e))
    });
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failures.is_empty(), "seed {seed}: {failures:#?}");
    let attempts: usize = trials
        .iter()
        .map(|t| t.kills[0].len() + t.kills[1].len())
        .sum();
    let killed: usize = results.iter().flatten().sum();
    eprintln!("{killed} of {attempts} runs were killed before they finished");
    assert!(
        killed * 2 >= attempts,
        "only {killed} of {attempts} runs were killed before they finished"
    );
}
