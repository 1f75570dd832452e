//! `caudal bench journal`: entries/s and MB/s for small and large entries under each durability
//! policy with 1 and 16 concurrent appenders, and verify MB/s.
//!
//! Each append figure is set against a plain sequential write of the same number of bytes in
//! the same number of write calls with the same number of fdatasyncs (the journal's own
//! counters say how many groups and syncs it made), in the same directory. Verify is set
//! against single-threaded SHA-256 over the same segment bytes already in memory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use caudal_journal::{
    Digest, Durability, EntryKind, Journal, JournalOptions, NewEntry, WriterStats,
};
use clap::Args;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::cli::when;

/// Options of `caudal bench journal`.
#[derive(Debug, Args)]
pub struct JournalBenchArgs {
    /// Directory to write the scratch journals in, created if missing (it must be on the disk
    /// you care about).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Seconds each configuration runs.
    #[arg(long, default_value = "1.5s", value_parser = when::parse_duration)]
    duration: Duration,
    /// Payload sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [100usize, 65_536])]
    sizes: Vec<usize>,
    /// Durability policies.
    #[arg(long, value_delimiter = ',', default_values = ["always", "batch", "interval", "never"])]
    policies: Vec<String>,
    /// Concurrent appender counts.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16])]
    appenders: Vec<usize>,
    /// Appends each appender keeps in flight (1 = wait for each append before the next). A
    /// group can only hold the appends that are outstanding, so durable entries/s under
    /// `batch` is bounded by appenders x in-flight / fdatasync latency.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 64])]
    in_flight: Vec<usize>,
    /// One JSON object per figure instead of a table.
    #[arg(long)]
    json: bool,
}

/// What one configuration measured.
struct AppendFigure {
    size: usize,
    policy: String,
    appenders: usize,
    in_flight: usize,
    entries: u64,
    seconds: f64,
    stats: WriterStats,
    limit_mbps: f64,
}

impl AppendFigure {
    fn entries_per_s(&self) -> f64 {
        self.entries as f64 / self.seconds
    }
    fn mbps(&self) -> f64 {
        self.stats.bytes as f64 / 1e6 / self.seconds
    }
}

pub fn run(args: JournalBenchArgs) -> anyhow::Result<ExitCode> {
    let scratch = super::scratch_dir(&args.dir, "caudal-bench-journal-")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let policies: Vec<Durability> = args
        .policies
        .iter()
        .map(|p| {
            p.parse::<Durability>()
                .map_err(|e| anyhow::anyhow!("--policies: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;

    if !args.json {
        outln!(
            "caudal bench journal: {:.1} s per configuration, scratch in {}, SHA-NI {}",
            args.duration.as_secs_f64(),
            scratch.path().display(),
            if sha_ni() { "yes" } else { "no" }
        );
        outln!(
            "{:>7}  {:<14}  {:>9}  {:>9}  {:>12}  {:>9}  {:>9}  {:>11}  {:>6}  {:>8}",
            "size",
            "policy",
            "appenders",
            "in-flight",
            "entries/s",
            "MB/s",
            "syncs",
            "limit MB/s",
            "ratio",
            "entries"
        );
    }
    let mut verify_dir = None;
    for &size in &args.sizes {
        for policy in &policies {
            for (appenders, in_flight) in args
                .appenders
                .iter()
                .flat_map(|a| args.in_flight.iter().map(move |f| (*a, *f)))
            {
                let dir = scratch
                    .path()
                    .join(format!("j-{size}-{policy}-{appenders}x{in_flight}"));
                let load = Load {
                    size,
                    policy: *policy,
                    appenders,
                    in_flight,
                    duration: args.duration,
                };
                let figure = runtime.block_on(measure_appends(&dir, load))?;
                print_figure(&figure, args.json);
                // Keep the largest batch-policy journal for the verify figure; drop the rest.
                if matches!(policy, Durability::Batch)
                    && verify_dir
                        .as_ref()
                        .is_none_or(|(_, b)| figure.stats.bytes > *b)
                {
                    if let Some((old, _)) = verify_dir.replace((dir.clone(), figure.stats.bytes)) {
                        std::fs::remove_dir_all(old).ok();
                    }
                } else {
                    std::fs::remove_dir_all(&dir).ok();
                }
            }
        }
    }
    if let Some((dir, _)) = verify_dir {
        measure_verify(&dir, args.json)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One configuration: entry size, policy, and how many appends are outstanding at once.
#[derive(Clone, Copy)]
struct Load {
    size: usize,
    policy: Durability,
    appenders: usize,
    in_flight: usize,
    duration: Duration,
}

async fn measure_appends(dir: &Path, load: Load) -> anyhow::Result<AppendFigure> {
    let Load {
        size,
        policy,
        appenders,
        in_flight,
        duration,
    } = load;
    let opts = JournalOptions {
        durability: policy,
        ..JournalOptions::default()
    };
    let journal = Journal::open(dir, opts)
        .with_context(|| format!("cannot open scratch journal {}", dir.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    // An appender with k appends in flight is k tasks appending one at a time.
    let mut tasks = Vec::with_capacity(appenders * in_flight);
    for a in 0..appenders * in_flight {
        let journal = journal.clone();
        let stop = stop.clone();
        let payload = vec![(a % 251) as u8; size];
        tasks.push(tokio::spawn(async move {
            let mut acked = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let kind = EntryKind::Ingested {
                    table: "bench".into(),
                    rows: 1,
                    digest: Digest([0; 32]),
                };
                journal
                    .append(NewEntry::new("bench", kind).with_payload(payload.clone()))
                    .await?;
                acked += 1;
            }
            Ok::<u64, caudal_journal::Error>(acked)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut entries = 0;
    for t in tasks {
        entries += t.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = journal.stats();
    journal.close()?;
    let limit_mbps = sequential_write_limit(dir, &stats)?;
    Ok(AppendFigure {
        size,
        policy: policy.to_string(),
        appenders,
        in_flight,
        entries,
        seconds,
        stats,
        limit_mbps,
    })
}

/// A plain file written with the same bytes, write calls and fdatasyncs as the journal made.
fn sequential_write_limit(dir: &Path, stats: &WriterStats) -> anyhow::Result<f64> {
    let path = dir.join("limit.bin");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    let writes = stats.groups.max(1);
    let chunk = vec![0x5au8; (stats.bytes / writes).max(1) as usize];
    let sync_every = writes
        .checked_div(stats.syncs)
        .map_or(u64::MAX, |n| n.max(1));
    let started = Instant::now();
    for i in 1..=writes {
        file.write_all(&chunk)?;
        if i % sync_every == 0 {
            file.sync_data()?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).ok();
    Ok(chunk.len() as f64 * writes as f64 / 1e6 / seconds)
}

fn measure_verify(dir: &Path, json: bool) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    paths.sort();
    for p in &paths {
        File::open(p)?.read_to_end(&mut bytes)?;
    }
    // Warm the page cache for verify as reading the files above did, then time both.
    let started = Instant::now();
    let report = caudal_journal::verify(dir)?;
    let verify_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut hasher = Sha256::new();
    hasher.update(&bytes);
    std::hint::black_box(hasher.finalize());
    let sha_s = started.elapsed().as_secs_f64();
    let verify_mbps = report.bytes as f64 / 1e6 / verify_s;
    let sha_mbps = bytes.len() as f64 / 1e6 / sha_s;
    if json {
        outln!(
            "{}",
            json!({"figure": "verify", "entries": report.entries, "bytes": report.bytes, "mb_per_s": verify_mbps,
                   "limit": "sha256", "limit_mb_per_s": sha_mbps, "ratio": verify_mbps / sha_mbps})
        );
    } else {
        outln!(
            "verify: {} entries, {:.1} MB in {:.3} s = {:.0} MB/s; SHA-256 over the same bytes {:.0} MB/s; ratio {:.2}",
            report.entries,
            report.bytes as f64 / 1e6,
            verify_s,
            verify_mbps,
            sha_mbps,
            verify_mbps / sha_mbps
        );
    }
    Ok(())
}

fn print_figure(f: &AppendFigure, json: bool) {
    let ratio = f.mbps() / f.limit_mbps;
    if json {
        outln!(
            "{}",
            json!({"figure": "append", "size": f.size, "policy": f.policy, "appenders": f.appenders, "in_flight": f.in_flight,
                   "entries": f.entries, "seconds": f.seconds, "entries_per_s": f.entries_per_s(),
                   "mb_per_s": f.mbps(), "syncs": f.stats.syncs, "groups": f.stats.groups,
                   "limit": "sequential write, same bytes and fsync cadence",
                   "limit_mb_per_s": f.limit_mbps, "ratio": ratio})
        );
    } else {
        outln!(
            "{:>7}  {:<14}  {:>9}  {:>9}  {:>12.0}  {:>9.1}  {:>9}  {:>11.1}  {:>6.2}  {:>8}",
            f.size,
            f.policy,
            f.appenders,
            f.in_flight,
            f.entries_per_s(),
            f.mbps(),
            f.stats.syncs,
            f.limit_mbps,
            ratio,
            f.entries
        );
    }
}

fn sha_ni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
