//! Crash test: a child process appends under `batch` from several threads and prints each seq
//! once its append returned; it is SIGKILLed at random moments. After each kill, reopening
//! recovers, every printed seq is there with its payload, seqs are dense and the chain verifies.
//! Runs on the real disk (not tmpfs), so group commit meets real fsync latency.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use caudal_journal::{Durability, EntryKind, Journal, Payload, Reader, verify};
use common::*;
use rand::Rng;

const CHILD_ENV: &str = "CAUDAL_JOURNAL_TEST_CRASH_CHILD";
const THREADS: u64 = 4;
const SEGMENT_BYTES: u64 = 48 * 1024;

fn payload_len(tag: u64) -> usize {
    if tag.is_multiple_of(11) {
        0
    } else {
        (tag % 997) as usize * 3
    }
}

/// The child: appends until killed. Does nothing unless re-executed by the parent.
#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let j = Journal::open(Path::new(&dir), opts(Durability::Batch, SEGMENT_BYTES)).unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let tag = t * 1_000_000 + i;
                    let a = j.append_blocking(tagged(tag, payload_len(tag))).unwrap();
                    // One short line per write: atomic on a pipe, so the parent sees whole lines.
                    println!("acked {} {} end", a.seq, tag);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn parse(line: &str) -> Option<(u64, u64)> {
    let mut w = line.split(' ');
    match (w.next(), w.next(), w.next(), w.next()) {
        (Some("acked"), Some(seq), Some(tag), Some("end")) => {
            Some((seq.parse().ok()?, tag.parse().ok()?))
        }
        _ => None,
    }
}

#[test]
fn sigkilled_appender_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut total_acked = 0;
    for trial in 0..24 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let lines = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = parse(&line) {
                    if acked.is_empty() {
                        let _ = tx.send(());
                    }
                    acked.push(a);
                }
            }
            acked
        });
        // Kill at a random moment once appends are flowing.
        let started = rx.recv_timeout(Duration::from_secs(30)).is_ok();
        std::thread::sleep(Duration::from_millis(rng.random_range(0..80)));
        child.kill().unwrap();
        child.wait().unwrap();
        let acked = lines.join().unwrap();
        assert!(
            started && !acked.is_empty(),
            "trial {trial}: the child acknowledged nothing"
        );
        total_acked += acked.len();

        let t0 = Instant::now();
        let j = open(dir.path(), Durability::Batch, SEGMENT_BYTES);
        let last = j.last_seq();
        j.close().unwrap();
        let report = verify(dir.path()).unwrap_or_else(|e| panic!("trial {trial}: {e}"));
        assert_eq!(
            (report.first_seq, report.last_seq, report.entries),
            (1, last, last),
            "trial {trial}"
        );
        let r = Reader::open(dir.path()).unwrap();
        for &(seq, tag) in &acked {
            assert!(
                seq <= last,
                "trial {trial}: acknowledged seq {seq} is past the end ({last})"
            );
            let e = r
                .get(seq)
                .unwrap()
                .unwrap_or_else(|| panic!("trial {trial}: seq {seq} missing"))
                .entry;
            assert_eq!(
                e.payload,
                Payload::Inline(bytes(payload_len(tag), tag)),
                "trial {trial}: seq {seq}"
            );
            assert!(
                matches!(&e.kind, EntryKind::Ingested { rows, .. } if *rows == tag),
                "trial {trial}: seq {seq}"
            );
        }
        eprintln!(
            "trial {trial}: {} acknowledged, journal at seq {last}, checked in {:?}",
            acked.len(),
            t0.elapsed()
        );
    }
    assert!(total_acked > 24);
}
