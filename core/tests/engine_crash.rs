//! Crash test: `caudal run` of a 200 000-row source is SIGKILLed at random moments (and in
//! some trials its rerun is killed too); after a rerun to completion the destination holds
//! exactly the source's rows — equal table digests and row counts, so nothing lost and
//! nothing twice — and the journal verifies.
//!
//! The incremental trials write with plain inserts (no primary key), so only the sink's offset
//! row stands between a crash and a duplicate; the snapshot trials exercise the staging table
//! and its swap. Delays are drawn uniformly over the measured length of a whole run; the seed
//! is printed so that a failing trial can be replayed (`CAUDAL_CRASH_SEED=...`).
//!
//! Needs `cargo build --release --workspace` first (same CARGO_TARGET_DIR as the tests).

mod engine_support;

use std::path::Path;
use std::time::{Duration, Instant};

use caudal_connector::{Batch, ReadTarget};
use engine_support::*;

const ROWS: i64 = 200_000;

/// A small deterministic generator (SplitMix64): no dependency, replayable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, max)`.
    fn below(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos().max(1) as u64;
        Duration::from_nanos(self.next() % nanos)
    }
}

fn trial_pipeline(dir: &Path, src: &Path, mode: &str) -> std::path::PathBuf {
    let stream = match mode {
        "incremental" => "mode = \"incremental\"\ncursor = \"fecha\"\n",
        _ => "mode = \"snapshot\"\n",
    };
    pipeline(
        dir,
        &format!(
            "[connections.src]\nconnector = \"duckdb\"\npath = \"{}\"\n\n\
             [connections.wh]\nconnector = \"duckdb\"\npath = \"wh.duckdb\"\n\n\
             [[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\n{stream}chunk_rows = 4000\n",
            src.display()
        ),
    )
}

/// Starts `caudal run FILE`, kills it with SIGKILL after `delay` (if it is still running).
/// Returns whether it was killed.
fn run_and_kill(file: &Path, delay: Duration) -> bool {
    let mut child = caudal()
        .args(["run", s(file), "--progress", "none", "--log-level", "error"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("caudal starts");
    let start = Instant::now();
    while start.elapsed() < delay {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2).min(delay - start.elapsed().min(delay)));
    }
    // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, no unlock runs.
    let killed = child.try_wait().expect("wait").is_none();
    let _ = child.kill();
    child.wait().expect("reaped");
    killed
}

fn measure(dir: &Path, src: &Path, mode: &str) -> Duration {
    let file = trial_pipeline(dir, src, mode);
    let start = Instant::now();
    run_ok(&["run", s(&file), "--progress", "none"]);
    start.elapsed()
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_duplicates_nothing() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src.duckdb");
    let batches: Vec<Batch> = (0..10)
        .map(|i| sales("t1", i * ROWS / 10..(i + 1) * ROWS / 10, 2000, &[]))
        .collect();
    fill(&src, "ventas", &batches, true);
    let expected = read_digest(
        &src,
        ReadTarget::Table("ventas".into()),
        None,
        "ventas",
        &|b| b,
    );
    assert_eq!(expected.1, ROWS as u64);

    let seed = std::env::var("CAUDAL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| caudal_journal::now() as u64);
    eprintln!("crash test seed: CAUDAL_CRASH_SEED={seed}");
    let mut rng = Rng(seed);

    let mut killed = 0;
    let trials: Vec<&str> = std::iter::repeat_n("incremental", 20)
        .chain(std::iter::repeat_n("snapshot", 4))
        .collect();
    let mut full = std::collections::HashMap::new();
    for (n, mode) in trials.into_iter().enumerate() {
        let whole = *full.entry(mode).or_insert_with(|| {
            let scratch = base.path().join(format!("measure-{mode}"));
            std::fs::create_dir_all(&scratch).unwrap();
            measure(&scratch, &src, mode)
        });
        let dir = base.path().join(format!("trial-{n:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = trial_pipeline(&dir, &src, mode);
        let first = rng.below(whole.mul_f64(1.1));
        let mut story = format!("trial {n} ({mode}): kill after {first:?}");
        if run_and_kill(&file, first) {
            killed += 1;
        }
        // Every third trial, the recovery run is killed too.
        if n % 3 == 2 {
            let second = rng.below(whole);
            story.push_str(&format!(", rerun killed after {second:?}"));
            run_and_kill(&file, second);
        }
        run_ok(&[
            "run",
            s(&file),
            "--progress",
            "none",
            "--log-level",
            "error",
        ]);
        let journal = dir.join("journal");
        let wh = dir.join("wh.duckdb");
        let schema = stream_schema(&journal, "ventas");
        let actual = table_digest(&wh, "ventas", &schema);
        assert_eq!(
            actual.rows(),
            ROWS,
            "{story}: {} rows in the destination",
            actual.rows()
        );
        assert_eq!(
            actual, expected.0,
            "{story}: the destination differs from the source"
        );
        verify(&journal);
        // Clean up as we go: 24 warehouses of 200k rows add up.
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(
        killed >= 12,
        "only {killed} of 24 runs were killed before they finished"
    );
}
