//! Injected I/O faults: a failed fsync, a torn or refused write (ENOSPC) at the Nth call. The
//! appender gets an error, the writer is poisoned, and after a simulated power loss (which drops
//! everything not fsynced) and a reopen on the real file system, every acknowledged entry is
//! there and the journal verifies. A legal short write is just continued.

mod common;

use std::sync::{Arc, Mutex};

use caudal_journal::fault::{Fault, FaultyIo, Op};
use caudal_journal::{Durability, Error, Journal, JournalOptions, Payload, Reader, verify};
use common::*;

struct Outcome {
    acked: Vec<(u64, u64)>,
    errors: usize,
    fired: bool,
}

/// Appends from three threads with a fault planned at the `n`th `op` call after open (or
/// before it); checks poisoning; then simulates a power loss (if asked) and checks recovery.
fn run(
    policy: Durability,
    op: Op,
    n: u64,
    fault: Fault,
    before_open: bool,
    lose_power: bool,
) -> Outcome {
    let dir = tempdir();
    let fio = FaultyIo::new();
    if before_open {
        fio.fail_at(op, n, fault);
    }
    let what =
        format!("{policy} {op:?} #{n} {fault:?} before_open={before_open} lose_power={lose_power}");
    let options = JournalOptions {
        durability: policy,
        segment_bytes: 700,
        io: Arc::new(fio.clone()),
    };
    let mut outcome = Outcome {
        acked: Vec::new(),
        errors: 0,
        fired: false,
    };
    match Journal::open(dir.path(), options) {
        Err(e) => {
            assert_eq!(fio.fired(), 1, "{what}: open failed without a fault: {e}");
            assert!(matches!(e, Error::Io { .. }), "{what}: {e}");
            outcome.errors += 1;
        }
        Ok(j) => {
            if !before_open {
                fio.fail_at(op, n, fault);
            }
            let results = Arc::new(Mutex::new(Vec::new()));
            let threads: Vec<_> = (0..3u64)
                .map(|t| {
                    let (j, results) = (j.clone(), results.clone());
                    std::thread::spawn(move || {
                        let mut failed = false;
                        for i in 0..12u64 {
                            let tag = t * 100 + i;
                            let r = j.append_blocking(tagged(tag, (tag % 5) as usize * 40));
                            if failed {
                                // Once poisoned, always poisoned.
                                assert!(
                                    matches!(r, Err(Error::Poisoned { .. })),
                                    "append after a failure gave {r:?}"
                                );
                            }
                            failed |= r.is_err();
                            results.lock().unwrap().push((tag, r));
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            for (tag, r) in results.lock().unwrap().drain(..) {
                match r {
                    Ok(a) => outcome.acked.push((a.seq, tag)),
                    Err(Error::Poisoned { cause }) => {
                        assert!(
                            cause.contains("injected")
                                || cause.contains("No space")
                                || cause.contains("Input/output"),
                            "{what}: {cause}"
                        );
                        outcome.errors += 1;
                    }
                    Err(e) => panic!("{what}: unexpected {e}"),
                }
            }
            let closed = j.close();
            if fio.fired() > 0 && fault != Fault::ShortWrite {
                assert!(
                    matches!(closed, Err(Error::Poisoned { .. })),
                    "{what}: close gave {closed:?}"
                );
            } else {
                closed.unwrap_or_else(|e| panic!("{what}: close: {e}"));
            }
        }
    }
    outcome.fired = fio.fired() > 0;
    if lose_power {
        fio.power_loss().unwrap();
    }

    let j = Journal::open(dir.path(), JournalOptions::default())
        .unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
    j.close().unwrap();
    verify(dir.path()).unwrap_or_else(|e| panic!("{what}: verify: {e}"));
    let r = Reader::open(dir.path()).unwrap();
    for &(seq, tag) in &outcome.acked {
        let e = r
            .get(seq)
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: acknowledged seq {seq} is lost"))
            .entry;
        assert_eq!(
            e.payload,
            Payload::Inline(bytes((tag % 5) as usize * 40, tag)),
            "{what}: seq {seq}"
        );
    }
    outcome
}

#[test]
fn failed_writes_poison_and_lose_nothing_acknowledged() {
    for policy in [Durability::Batch, Durability::Always] {
        for fault in [Fault::NoSpace, Fault::TornWrite] {
            for n in 1..=14 {
                let o = run(policy, Op::Write, n, fault, false, true);
                assert!(
                    o.fired && o.errors > 0,
                    "{policy} {fault:?} #{n}: the fault never surfaced"
                );
            }
        }
    }
}

#[test]
fn failed_fsync_poisons_and_loses_nothing_acknowledged() {
    for policy in [Durability::Batch, Durability::Always] {
        for n in 1..=14 {
            let o = run(policy, Op::Sync, n, Fault::SyncFails, false, true);
            assert!(
                o.fired && o.errors > 0,
                "{policy} sync #{n}: the fault never surfaced"
            );
        }
    }
}

#[test]
fn faults_while_opening_fail_the_open_or_a_later_append() {
    for (op, fault) in [
        (Op::Write, Fault::NoSpace),
        (Op::Write, Fault::TornWrite),
        (Op::Sync, Fault::SyncFails),
    ] {
        for n in 1..=4 {
            let o = run(Durability::Batch, op, n, fault, true, true);
            assert!(
                o.fired && o.errors > 0,
                "{op:?} {fault:?} #{n} at open: the fault never surfaced"
            );
        }
    }
}

#[test]
fn without_a_power_loss_a_torn_group_is_cut_on_reopen() {
    for n in 1..=8 {
        let o = run(
            Durability::Batch,
            Op::Write,
            n,
            Fault::TornWrite,
            false,
            false,
        );
        assert!(o.fired && o.errors > 0);
    }
}

#[test]
fn under_lazy_policies_a_failed_sync_still_poisons() {
    for policy in [
        Durability::Never,
        Durability::Interval(std::time::Duration::from_millis(1)),
    ] {
        for n in 1..=3 {
            let o = run(policy, Op::Sync, n, Fault::SyncFails, false, false);
            assert!(o.fired, "{policy} sync #{n}: no sync happened");
            assert!(
                o.errors > 0,
                "{policy} sync #{n}: no append saw the failure"
            );
        }
    }
}

#[test]
fn a_legal_short_write_is_continued() {
    for n in 1..=10 {
        let o = run(
            Durability::Batch,
            Op::Write,
            n,
            Fault::ShortWrite,
            false,
            true,
        );
        assert!(
            o.fired && o.errors == 0,
            "short write #{n}: errors {}",
            o.errors
        );
        assert_eq!(o.acked.len(), 36);
    }
}
