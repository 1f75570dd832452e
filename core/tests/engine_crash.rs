//! Crash test: `caudal run` of a 200 000-row source is SIGKILLed at random moments (and in
//! some trials its rerun is killed too); after a rerun to completion the destination holds
//! exactly the source's rows — equal table digests and row counts, so nothing lost and
//! nothing twice — and the journal verifies.
//!
//! The incremental trials write with plain inserts (no primary key), so only the sink's offset
//! row stands between a crash and a duplicate; the snapshot trials exercise the staging table
//! and its swap. Delays are drawn uniformly over the measured length of a whole run; the seed
//! is printed so that a failing trial can be replayed (`CAUDAL_CRASH_SEED=...`), and a failed
//! trial's files are kept under the target directory (`tmp/engine_crash/`). Trials run two at
//! a time, each with its own journal and warehouse.
//!
//! Needs `cargo build --release --workspace` first (same CARGO_TARGET_DIR as the tests).

mod engine_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use caudal_connector::{Batch, ReadTarget, Schema, TableDigest};
use engine_support::crash::{Rng, keep_failed, run_and_kill, seed, two_at_a_time};
use engine_support::*;

const ROWS: i64 = 200_000;

fn trial_pipeline(dir: &Path, src: &Path, mode: &str) -> PathBuf {
    let stream = match mode {
        "incremental" => "mode = \"incremental\"\ncursor = \"fecha\"\n",
        _ => "mode = \"snapshot\"\n",
    };
    // The source is shared by trials running at the same time: read-only, which DuckDB
    // allows in several processes at once.
    pipeline(
        dir,
        &format!(
            "[connections.src]\nconnector = \"duckdb\"\npath = \"{}\"\nread_only = true\n\n\
             [connections.wh]\nconnector = \"duckdb\"\npath = \"wh.duckdb\"\n\n\
             [[streams]]\nfrom = \"src\"\ntable = \"ventas\"\nto = \"wh\"\n{stream}chunk_rows = 4000\n",
            src.display()
        ),
    )
}

/// One trial: where to kill, and whether to kill the recovery run too.
struct Trial {
    n: usize,
    mode: &'static str,
    first: Duration,
    second: Option<Duration>,
}

/// Runs a trial in its own directory; returns whether its first run was killed, or what
/// went wrong. A failed trial's directory (pipeline, journal, warehouse) is kept under the
/// target directory, named in the error, to look into afterwards.
fn run_trial(
    base: &Path,
    src: &Path,
    t: &Trial,
    seed: u64,
    expected: &(TableDigest, u64),
    schema: &Schema,
) -> Result<bool, String> {
    let dir = base.join(format!("trial-{:02}", t.n));
    trial_in(&dir, src, t, expected, schema)
        .map_err(|e| keep_failed(&dir, "engine_crash", seed, t.n, e))
}

fn trial_in(
    dir: &Path,
    src: &Path,
    t: &Trial,
    expected: &(TableDigest, u64),
    schema: &Schema,
) -> Result<bool, String> {
    std::fs::create_dir_all(dir).unwrap();
    let file = trial_pipeline(dir, src, t.mode);
    let mut story = format!("trial {} ({}): kill after {:?}", t.n, t.mode, t.first);
    let killed = run_and_kill(&["run", s(&file)], t.first);
    if let Some(second) = t.second {
        story.push_str(&format!(", rerun killed after {second:?}"));
        run_and_kill(&["run", s(&file)], second);
    }
    let out = run(&[
        "run",
        s(&file),
        "--progress",
        "none",
        "--log-level",
        "error",
    ]);
    if !out.status.success() {
        return Err(format!(
            "{story}: the recovery run failed ({})\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let journal = dir.join("journal");
    let actual = table_digest(&dir.join("wh.duckdb"), "ventas", schema);
    if actual.rows() != expected.1 as i64 {
        return Err(format!(
            "{story}: {} rows in the destination",
            actual.rows()
        ));
    }
    if actual != expected.0 {
        return Err(format!("{story}: the destination differs from the source"));
    }
    caudal_journal::verify(&journal).map_err(|e| format!("{story}: journal damaged: {e}"))?;
    // Clean up as we go: 24 warehouses of 200k rows add up.
    std::fs::remove_dir_all(dir).unwrap();
    Ok(killed)
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

    // How long a whole run takes, per mode, and the schema the destination is digested in.
    let mut whole = std::collections::HashMap::new();
    let mut schema = None;
    for mode in ["incremental", "snapshot"] {
        let dir = base.path().join(format!("measure-{mode}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = trial_pipeline(&dir, &src, mode);
        let start = Instant::now();
        run_ok(&["run", s(&file), "--progress", "none"]);
        whole.insert(mode, start.elapsed());
        schema.get_or_insert_with(|| stream_schema(&dir.join("journal"), "ventas"));
    }
    let schema = schema.expect("measured");

    let seed = seed();
    let mut rng = Rng(seed);
    let modes = std::iter::repeat_n("incremental", 20).chain(std::iter::repeat_n("snapshot", 4));
    let trials: Vec<Trial> = modes
        .enumerate()
        .map(|(n, mode)| Trial {
            n,
            mode,
            first: rng.below(whole[mode].mul_f64(1.1)),
            // Every third trial, the recovery run is killed too.
            second: (n % 3 == 2).then(|| rng.below(whole[mode])),
        })
        .collect();

    let results = two_at_a_time(&trials, |t| {
        run_trial(base.path(), &src, t, seed, &expected, &schema)
    });
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failures.is_empty(), "seed {seed}: {failures:#?}");
    let killed = results.iter().filter(|r| matches!(r, Ok(true))).count();
    assert!(
        killed >= 12,
        "only {killed} of 24 runs were killed before they finished"
    );
}
