//! Helpers shared by the journal's integration tests: entry generators, directory snapshots.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use caudal_journal::{
    Digest, Durability, EntryKind, Journal, JournalOptions, NewEntry, RunId, StdIo,
};
use proptest::prelude::*;

/// Options with a policy and segment size, on the real file system.
pub fn opts(durability: Durability, segment_bytes: u64) -> JournalOptions {
    JournalOptions {
        durability,
        segment_bytes,
        io: Arc::new(StdIo),
    }
}

/// Opens a journal, panicking with the error's text.
pub fn open(dir: &Path, durability: Durability, segment_bytes: u64) -> Journal {
    Journal::open(dir, opts(durability, segment_bytes))
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// Deterministic, cheap filler bytes (proptest's per-byte generation is slow for 70 KB).
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Every file of a directory with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        m.insert(
            e.file_name().into_string().unwrap(),
            std::fs::read(e.path()).unwrap(),
        );
    }
    m
}

/// Writes a snapshot into an (empty) directory.
pub fn restore(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (name, b) in files {
        std::fs::write(dir.join(name), b).unwrap();
    }
}

/// Segment file names of a snapshot, in order.
pub fn segment_names(files: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    files
        .keys()
        .filter(|n| n.ends_with(".seg"))
        .cloned()
        .collect()
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z_]{1,10}", "\\PC{0,12}"]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest)
}

/// Any entry kind with arbitrary fields.
pub fn kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        (
            text(),
            text(),
            proptest::collection::vec(text(), 0..4),
            text()
        )
            .prop_map(
                |(pipeline_file, trigger, streams, args)| EntryKind::RunStarted {
                    pipeline_file,
                    trigger,
                    streams,
                    args
                }
            ),
        (
            text(),
            opt_text(),
            text(),
            proptest::collection::vec(text(), 0..3),
            text(),
            opt_text()
        )
            .prop_map(
                |(stream, partition, source, destinations, mode, resume_cursor)| {
                    EntryKind::StreamStarted {
                        stream,
                        partition,
                        source,
                        destinations,
                        mode,
                        resume_cursor,
                    }
                }
            ),
        (
            text(),
            opt_text(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            opt_text(),
            opt_text(),
            digest()
        )
            .prop_map(
                |(stream, partition, schema_id, rows, bytes, cursor_low, cursor_high, digest)| {
                    EntryKind::BatchRead {
                        stream,
                        partition,
                        schema_id,
                        rows,
                        bytes,
                        cursor_low,
                        cursor_high,
                        digest,
                    }
                }
            ),
        (
            text(),
            opt_text(),
            text(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>()
        )
            .prop_map(
                |(stream, partition, destination, batch_seq, rows, attempt, elapsed_us)| {
                    EntryKind::WriteApplied {
                        stream,
                        partition,
                        destination,
                        batch_seq,
                        rows,
                        attempt,
                        elapsed_us,
                    }
                }
            ),
        (
            text(),
            opt_text(),
            text(),
            any::<u64>(),
            text(),
            any::<u32>(),
            any::<bool>()
        )
            .prop_map(
                |(stream, partition, destination, batch_seq, error, attempt, retryable)| {
                    EntryKind::WriteFailed {
                        stream,
                        partition,
                        destination,
                        batch_seq,
                        error,
                        attempt,
                        retryable,
                    }
                }
            ),
        (
            text(),
            opt_text(),
            text(),
            any::<u64>(),
            any::<u32>(),
            any::<i64>()
        )
            .prop_map(
                |(stream, partition, destination, batch_seq, attempt, due)| {
                    EntryKind::RetryScheduled {
                        stream,
                        partition,
                        destination,
                        batch_seq,
                        attempt,
                        due,
                    }
                }
            ),
        (text(), opt_text(), opt_text(), any::<u64>()).prop_map(
            |(stream, partition, cursor, through_seq)| EntryKind::Checkpoint {
                stream,
                partition,
                cursor,
                through_seq
            }
        ),
        (text(), opt_text(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(stream, partition, rows, batches, failed_batches)| {
                EntryKind::StreamCompleted {
                    stream,
                    partition,
                    rows,
                    batches,
                    failed_batches,
                }
            }
        ),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>()
        )
            .prop_map(|(rows, batches, streams_ok, streams_failed, elapsed_us)| {
                EntryKind::RunCompleted {
                    rows,
                    batches,
                    streams_ok,
                    streams_failed,
                    elapsed_us,
                }
            }),
        (text(), any::<u64>())
            .prop_map(|(error, elapsed_us)| EntryKind::RunFailed { error, elapsed_us }),
        (text(), any::<u64>()).prop_map(|(projection, through_seq)| EntryKind::ProjectionRebuilt {
            projection,
            through_seq
        }),
        (
            text(),
            text(),
            digest(),
            digest(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(text(), 0..4)
        )
            .prop_map(
                |(connection, table, expected, actual, ok, missing, extra, changed, keys)| {
                    EntryKind::VerifyResult {
                        connection,
                        table,
                        expected,
                        actual,
                        ok,
                        missing,
                        extra,
                        changed,
                        keys,
                    }
                }
            ),
        (text(), any::<u64>(), any::<u64>()).prop_map(|(segment, offset, bytes_dropped)| {
            EntryKind::JournalRecovered {
                segment,
                offset,
                bytes_dropped,
            }
        }),
        (text(), any::<u64>(), digest()).prop_map(|(table, rows, digest)| EntryKind::Ingested {
            table,
            rows,
            digest
        }),
        (
            text(),
            proptest::option::of(text()),
            text(),
            any::<u32>(),
            any::<bool>(),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(
                |(stream, partition, error, attempt, retryable, retry_due)| {
                    EntryKind::ReadFailed {
                        stream,
                        partition,
                        error,
                        attempt,
                        retryable,
                        retry_due,
                    }
                }
            ),
    ]
}

/// Payload length: empty, small, or larger than an index stride (64 KiB).
pub fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0usize), 6 => 1usize..300, 1 => 65_537usize..70_000]
}

/// Any new entry.
pub fn new_entry() -> impl Strategy<Value = NewEntry> {
    (
        kind(),
        payload_len(),
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        text(),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(|(kind, len, seed, run, pipeline, time)| NewEntry {
            time,
            run: run.map(RunId),
            pipeline,
            kind,
            payload: bytes(len, seed),
        })
}

/// A simple entry with a payload derived from `tag`.
pub fn tagged(tag: u64, len: usize) -> NewEntry {
    NewEntry::new(
        "p",
        EntryKind::Ingested {
            table: format!("t{tag}"),
            rows: tag,
            digest: Digest::of(&tag.to_le_bytes()),
        },
    )
    .with_payload(bytes(len, tag))
}

/// A temporary directory, on tmpfs when the machine has one: these tests check logic, not the
/// disk, and fsync on tmpfs costs nothing (a real disk here takes milliseconds per fsync).
/// Tests about real durability timing use `tempfile::tempdir()` directly.
pub fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().unwrap()
}
