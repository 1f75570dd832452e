//! What the crash tests share: a replayable random generator for the kill delays, a `caudal`
//! command SIGKILLed after a delay, and a failed trial's files kept for a look afterwards.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::caudal;

/// A small deterministic generator (SplitMix64): no dependency, replayable from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, max)`.
    pub fn below(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos().max(1) as u64;
        Duration::from_nanos(self.next() % nanos)
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

/// The seed of a crash test: `CAUDAL_CRASH_SEED` when set (to replay a failure), else the
/// clock. Printed, so that a failing run can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("CAUDAL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| caudal_journal::now() as u64);
    eprintln!("crash test seed: CAUDAL_CRASH_SEED={seed}");
    seed
}

/// Starts `caudal` with `args` (quiet), kills it with SIGKILL after `delay` if it is still
/// running, and reaps it. Returns whether it was killed.
pub fn run_and_kill(args: &[&str], delay: Duration) -> bool {
    let mut child = caudal()
        .args(args)
        .args(["--progress", "none", "--log-level", "error"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("caudal starts");
    let start = Instant::now();
    while start.elapsed() < delay {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2).min(delay.saturating_sub(start.elapsed())));
    }
    // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, no unlock runs.
    let killed = child.try_wait().expect("wait").is_none();
    let _ = child.kill();
    child.wait().expect("reaped");
    killed
}

/// Runs `trial` on every item, two at a time (each trial has its own journal and
/// databases); the results in no particular order.
pub fn two_at_a_time<T: Sync, R: Send>(items: &[T], trial: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    while let Some(t) =
                        items.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        mine.push(trial(t));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("trial thread"))
            .collect()
    })
}

/// Copies a failed trial's directory to `<target tmp>/<test>/seed-S-trial-N` and adds where to
/// `error`.
pub fn keep_failed(dir: &Path, test: &str, seed: u64, trial: usize, error: String) -> String {
    let kept: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(test)
        .join(format!("seed-{seed}-trial-{trial:02}"));
    let _ = std::fs::remove_dir_all(&kept);
    match copy_dir(dir, &kept) {
        Ok(()) => format!(
            "{error}\n(the trial's files are kept in {})",
            kept.display()
        ),
        Err(why) => format!("{error}\n(the trial's files could not be kept: {why})"),
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
