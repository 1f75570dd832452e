//! One writer per directory: a second writer, in this process or another, gets `Locked` naming
//! the holder's pid and changes no byte of the directory. Readers need no lock.

mod common;

use std::path::Path;
use std::process::Command;

use caudal_journal::{Durability, Error, Journal, JournalOptions, Reader};
use common::*;

const CHILD_ENV: &str = "CAUDAL_JOURNAL_TEST_SECOND_WRITER";

/// Runs as the second writer when re-executed by the test below; a no-op otherwise.
#[test]
fn second_writer_child_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    match Journal::open(Path::new(&dir), JournalOptions::default()) {
        Ok(_) => println!("RESULT opened"),
        Err(e @ Error::Locked { pid, .. }) => println!("RESULT locked {pid:?} | {e}"),
        Err(e) => println!("RESULT other | {e}"),
    }
}

#[test]
fn a_second_writer_in_another_process_is_refused_and_writes_nothing() {
    let dir = tempdir();
    let j = open(dir.path(), Durability::Batch, 1 << 20);
    for i in 0..3 {
        j.append_blocking(tagged(i, 10)).unwrap();
    }
    let before = snapshot(dir.path());
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "second_writer_child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let me = std::process::id();
    assert!(
        stdout.contains(&format!("RESULT locked Some({me})")),
        "child said: {stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "journal {} is in use by another writer (pid {me})",
            dir.path().display()
        )),
        "child said: {stdout}"
    );
    assert_eq!(snapshot(dir.path()), before);
    // The holder is unaffected.
    assert_eq!(j.append_blocking(tagged(9, 1)).unwrap().seq, 4);
}

#[test]
fn a_second_writer_in_the_same_process_is_refused_and_readers_still_read() {
    let dir = tempdir();
    let j = open(dir.path(), Durability::Batch, 1 << 20);
    j.append_blocking(tagged(1, 10)).unwrap();
    let before = snapshot(dir.path());
    match Journal::open(dir.path(), opts(Durability::Batch, 1 << 20)) {
        Err(Error::Locked { pid, dir: d }) => {
            assert_eq!(pid, Some(std::process::id()));
            assert_eq!(d, dir.path());
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a second writer opened the journal"),
    }
    assert_eq!(snapshot(dir.path()), before);
    let r = Reader::open(dir.path()).unwrap();
    assert_eq!(r.last_seq().unwrap(), 1);
    assert_eq!(r.get(1).unwrap().unwrap().entry.payload.len(), 10);
    drop(j);
    // Dropping the last handle releases the lock.
    let j = open(dir.path(), Durability::Batch, 1 << 20);
    assert_eq!(j.last_seq(), 1);
}

/// A refused writer does not even cut a torn tail: that is the holder's business.
#[test]
fn a_refused_writer_leaves_a_torn_tail_alone() {
    let dir = tempdir();
    let j = open(dir.path(), Durability::Batch, 1 << 20);
    j.append_blocking(tagged(1, 10)).unwrap();
    j.close().unwrap();
    let seg = dir.path().join("00000000000000000001.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[7, 0, 0]);
    std::fs::write(&seg, &bytes).unwrap();

    // Another program holds the lock, having written its pid.
    let holder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join("LOCK"))
        .unwrap();
    holder.try_lock().unwrap();
    holder.set_len(0).unwrap();
    std::os::unix::fs::FileExt::write_at(&holder, b"4242\n", 0).unwrap();
    let before = snapshot(dir.path());
    let err = Journal::open(dir.path(), opts(Durability::Batch, 1 << 20))
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            Error::Locked {
                pid: Some(4242),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("(pid 4242)"), "{err}");
    assert_eq!(snapshot(dir.path()), before);

    drop(holder);
    let j = open(dir.path(), Durability::Batch, 1 << 20);
    assert_eq!(j.recovery().map(|r| r.bytes_dropped), Some(3));
}
