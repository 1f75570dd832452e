//! Entries written are read back exactly: in order, by seq, across segment rotations, under
//! every durability policy and with concurrent appenders and readers.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use caudal_journal::{Durability, Entry, EntryKind, Journal, NewEntry, Payload, Reader, verify};
use common::*;
use proptest::prelude::*;

/// What `e` reads back as, given its seq and (if it had none) the time the writer gave it.
fn expected(seq: u64, e: &NewEntry, written_time: i64) -> Entry {
    Entry {
        seq,
        time: e.time.unwrap_or(written_time),
        run: e.run,
        pipeline: e.pipeline.clone(),
        kind: e.kind.clone(),
        payload: Payload::Inline(e.payload.clone()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn entries_round_trip_through_writer_and_reader(
        entries in proptest::collection::vec(new_entry(), 1..24),
        segment_bytes in prop_oneof![Just(1u64), 100u64..3000, Just(64u64 << 20)],
    ) {
        let dir = tempdir();
        let j = open(dir.path(), Durability::Never, segment_bytes);
        let before = caudal_journal::now();
        for (i, e) in entries.iter().enumerate() {
            let a = j.append_blocking(e.clone()).unwrap();
            prop_assert_eq!(a.seq, i as u64 + 1);
        }
        let after = caudal_journal::now();
        prop_assert_eq!(j.last_seq(), entries.len() as u64);
        j.close().unwrap();

        let r = Reader::open(dir.path()).unwrap();
        let read: Vec<_> = r.entries_from(1).unwrap().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(read.len(), entries.len());
        for (i, (got, e)) in read.iter().zip(&entries).enumerate() {
            if e.time.is_none() {
                prop_assert!((before..=after).contains(&got.entry.time));
            }
            prop_assert_eq!(&got.entry, &expected(i as u64 + 1, e, got.entry.time));
            let by_seq = r.get(i as u64 + 1).unwrap().unwrap();
            prop_assert_eq!(&by_seq, got);
            // Reading from the middle starts exactly there.
            let from: Vec<_> = r.entries_from(i as u64 + 1).unwrap().map(|x| x.unwrap().entry.seq).collect();
            prop_assert_eq!(from.first().copied(), Some(i as u64 + 1));
            prop_assert_eq!(from.len(), entries.len() - i);
        }
        prop_assert_eq!(r.get(0).unwrap(), None);
        prop_assert_eq!(r.get(entries.len() as u64 + 1).unwrap(), None);
        prop_assert_eq!(r.last_seq().unwrap(), entries.len() as u64);
        if segment_bytes == 1 {
            prop_assert_eq!(r.segments().unwrap().len(), entries.len());
        }

        let report = verify(dir.path()).unwrap();
        prop_assert_eq!(report.entries, entries.len() as u64);
        prop_assert_eq!(report.last_seq, entries.len() as u64);
        let seg_bytes: u64 = r.segments().unwrap().iter().map(|s| s.bytes).sum();
        prop_assert_eq!(report.bytes, seg_bytes);

        // A clean reopen cuts nothing and continues the seqs.
        let j = open(dir.path(), Durability::Batch, segment_bytes);
        prop_assert_eq!(j.recovery(), None);
        prop_assert_eq!(j.append_blocking(tagged(1, 3)).unwrap().seq, entries.len() as u64 + 1);
        j.close().unwrap();
        prop_assert_eq!(verify(dir.path()).unwrap().entries, entries.len() as u64 + 1);
    }
}

/// Many async appenders under each policy: every seq acknowledged once, dense, readable.
#[test]
fn concurrent_async_appends_under_every_policy() {
    for policy in [
        Durability::Always,
        Durability::Batch,
        Durability::Interval(Duration::from_millis(5)),
        Durability::Never,
    ] {
        let dir = tempdir();
        let j = open(dir.path(), policy, 16 * 1024);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (tasks, per_task) = (8u64, 40u64);
        let acked: Vec<(u64, u64)> = rt.block_on(async {
            let mut handles = Vec::new();
            for t in 0..tasks {
                let j = j.clone();
                handles.push(tokio::spawn(async move {
                    let mut got = Vec::new();
                    for i in 0..per_task {
                        let tag = t * 1000 + i;
                        got.push((
                            j.append(tagged(tag, (tag % 200) as usize))
                                .await
                                .unwrap()
                                .seq,
                            tag,
                        ));
                    }
                    got
                }));
            }
            let mut all = Vec::new();
            for h in handles {
                all.extend(h.await.unwrap());
            }
            all
        });
        let seqs: BTreeSet<u64> = acked.iter().map(|a| a.0).collect();
        assert_eq!(
            seqs.len() as u64,
            tasks * per_task,
            "{policy}: duplicate seqs"
        );
        assert_eq!(
            seqs.iter().copied().collect::<Vec<_>>(),
            (1..=tasks * per_task).collect::<Vec<_>>(),
            "{policy}"
        );
        let stats = j.stats();
        assert_eq!(stats.entries, tasks * per_task);
        match policy {
            Durability::Always => assert!(stats.syncs >= stats.entries, "{policy}: {stats:?}"),
            Durability::Batch => assert!(
                stats.syncs >= stats.groups && stats.groups <= stats.entries,
                "{policy}: {stats:?}"
            ),
            _ => {}
        }
        j.close().unwrap();
        let r = Reader::open(dir.path()).unwrap();
        for (seq, tag) in acked {
            let e = r.get(seq).unwrap().unwrap();
            assert_eq!(
                e.entry.payload,
                Payload::Inline(bytes((tag % 200) as usize, tag)),
                "{policy}: seq {seq}"
            );
        }
        assert_eq!(verify(dir.path()).unwrap().entries, tasks * per_task);
    }
}

/// Under `Interval`, unsynced data is synced when the interval passes, with no further appends.
#[test]
fn interval_policy_syncs_without_new_appends() {
    let dir = tempdir();
    let j = open(
        dir.path(),
        Durability::Interval(Duration::from_millis(20)),
        1 << 20,
    );
    j.append_blocking(tagged(1, 10)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while j.stats().syncs == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no interval sync happened"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    j.close().unwrap();
}

/// `Never` still syncs at close, and close makes later appends fail with `Closed`.
#[test]
fn close_syncs_and_refuses_later_appends() {
    let dir = tempdir();
    let j = open(dir.path(), Durability::Never, 1 << 20);
    let other = j.clone();
    j.append_blocking(tagged(1, 10)).unwrap();
    assert_eq!(j.stats().syncs, 0);
    j.close().unwrap();
    let err = other.append_blocking(tagged(2, 10)).unwrap_err();
    assert!(matches!(err, caudal_journal::Error::Closed), "{err}");
    drop(other);
    // The lock is free again.
    let j = open(dir.path(), Durability::Never, 1 << 20);
    assert_eq!(j.last_seq(), 1);
}

/// A follower sees every entry, across rotations, as the writer appends them.
#[test]
fn follow_sees_new_entries_and_new_segments() {
    let dir = tempdir();
    let j = open(dir.path(), Durability::Batch, 2000);
    j.append_blocking(tagged(0, 10)).unwrap();
    let r = Reader::open(dir.path()).unwrap();
    let follower = std::thread::spawn(move || {
        r.follow_from(1, Duration::from_millis(2))
            .unwrap()
            .take(120)
            .map(|e| e.unwrap().entry.seq)
            .collect::<Vec<_>>()
    });
    for i in 1..120 {
        j.append_blocking(tagged(i, (i % 300) as usize)).unwrap();
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    assert_eq!(follower.join().unwrap(), (1..=120).collect::<Vec<_>>());
    assert!(Reader::open(dir.path()).unwrap().segments().unwrap().len() > 5);
}

/// Readers running while the writer appends and rotates see a dense, valid prefix every time.
#[test]
fn readers_alongside_the_writer_see_consistent_prefixes() {
    let dir = tempdir();
    let j = open(dir.path(), Durability::Never, 1500);
    j.append_blocking(tagged(0, 1)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (dir, stop) = (dir.path().to_path_buf(), stop.clone());
        std::thread::spawn(move || {
            let r = Reader::open(&dir).unwrap();
            let mut rounds = 0;
            loop {
                // Read as the writer stops: a final round then sees everything.
                let stopping = stop.load(Ordering::Relaxed);
                let seqs: Vec<u64> = r
                    .entries_from(1)
                    .unwrap()
                    .map(|e| e.unwrap().entry.seq)
                    .collect();
                assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
                let last = r.last_seq().unwrap();
                assert!(last >= seqs.len() as u64);
                if last > 0 {
                    assert_eq!(r.get(last).unwrap().unwrap().entry.seq, last);
                }
                rounds += 1;
                if stopping {
                    return (rounds, seqs.len());
                }
            }
        })
    };
    for i in 1..400 {
        j.append_blocking(tagged(i, (i % 120) as usize)).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (rounds, last_read) = reader.join().unwrap();
    assert!(rounds > 0);
    assert_eq!(last_read, 400, "the final round missed entries");
}

/// The error texts a user sees name what and where.
#[test]
fn errors_name_what_and_where() {
    let dir = tempdir();
    let missing = dir.path().join("nope");
    let err = Reader::open(&missing).err().unwrap();
    assert!(matches!(err, caudal_journal::Error::NotAJournal { .. }));
    assert!(
        err.to_string().contains("nope") && err.to_string().contains("not a caudal journal"),
        "{err}"
    );
    assert!(caudal_journal::verify(dir.path()).is_err());

    let j = Journal::open(dir.path(), opts(Durability::Batch, 1 << 20)).unwrap();
    let big = NewEntry::new(
        "p",
        EntryKind::RunFailed {
            error: String::new(),
            elapsed_us: 0,
        },
    )
    .with_payload(vec![0; (1 << 30) + 1]);
    let err = j.append_blocking(big).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    // A refused entry does not poison the writer or take a seq.
    assert_eq!(j.append_blocking(tagged(1, 1)).unwrap().seq, 1);
}

/// Counts the bytes read through it.
#[derive(Default)]
struct CountingIo {
    read: Arc<std::sync::atomic::AtomicU64>,
}

struct CountingFile {
    inner: Box<dyn caudal_journal::IoFile>,
    read: Arc<std::sync::atomic::AtomicU64>,
}

impl caudal_journal::Io for CountingIo {
    fn open_read(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<Box<dyn caudal_journal::IoFile>> {
        let inner = caudal_journal::StdIo.open_read(path)?;
        Ok(Box::new(CountingFile {
            inner,
            read: self.read.clone(),
        }))
    }
    fn open_write(
        &self,
        path: &std::path::Path,
    ) -> std::io::Result<Box<dyn caudal_journal::IoFile>> {
        caudal_journal::StdIo.open_write(path)
    }
    fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        caudal_journal::StdIo.create_dir_all(dir)
    }
    fn list(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        caudal_journal::StdIo.list(dir)
    }
    fn remove(&self, path: &std::path::Path) -> std::io::Result<()> {
        caudal_journal::StdIo.remove(path)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        caudal_journal::StdIo.sync_dir(dir)
    }
}

impl caudal_journal::IoFile for CountingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let n = self.inner.read_at(buf, offset)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<usize> {
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
}

/// `get` and `entries_from` seek through the sparse index instead of scanning the segment, in
/// the active segment too (its index is written as it grows).
#[test]
fn lookups_by_seq_read_a_small_part_of_a_large_segment() {
    let dir = tempdir();
    let j = open(dir.path(), Durability::Never, 64 << 20);
    for i in 0..4000 {
        j.append_blocking(tagged(i, 1000)).unwrap();
    }
    let io = Arc::new(CountingIo::default());
    let r = Reader::open_with(dir.path(), io.clone()).unwrap();
    let segment_bytes = r.segments().unwrap()[0].bytes;
    assert!(segment_bytes > 4_000_000);
    for seq in [3900, 2000, 1, 4000] {
        let before = io.read.load(Ordering::Relaxed);
        let e = r.get(seq).unwrap().unwrap();
        assert_eq!(e.entry.payload, Payload::Inline(bytes(1000, seq - 1)));
        let read = io.read.load(Ordering::Relaxed) - before;
        assert!(
            read < 400_000,
            "get({seq}) read {read} of {segment_bytes} bytes"
        );
        let before = io.read.load(Ordering::Relaxed);
        let first = r.entries_from(seq).unwrap().next().unwrap().unwrap();
        assert_eq!(first.entry.seq, seq);
        let read = io.read.load(Ordering::Relaxed) - before;
        assert!(
            read < 400_000,
            "entries_from({seq}) read {read} of {segment_bytes} bytes"
        );
    }
    // With the index gone, lookups still work, by scanning.
    j.close().unwrap();
    std::fs::remove_file(dir.path().join("00000000000000000001.idx")).unwrap();
    assert_eq!(r.get(3999).unwrap().unwrap().entry.seq, 3999);
}
