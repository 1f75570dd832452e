//! The writer: [`Journal`], the single writer of a journal directory, and its group-commit thread.
//!
//! Appenders (async or blocking) push their entry and a reply channel onto a queue. One thread
//! per journal takes everything queued at once (a group), assigns seqs, encodes and chains the
//! entries into one buffer, writes it with one call, and then, by policy, issues one fdatasync
//! for the group before acknowledging every entry in it. While it syncs, the next group queues
//! up, so concurrency turns into larger groups rather than more syncs.
//!
//! Invariants:
//! - An entry is acknowledged only after the write (and, under `Always`/`Batch`, the sync) that
//!   holds it succeeded.
//! - After a failed write or sync the writer is poisoned: that group and every later append get
//!   [`Error::Poisoned`], and nothing more is written. What reached the disk is sorted out by the
//!   next open's recovery; the page cache is not trusted after a failed fsync.
//! - A segment is synced before the next one is created, so only the newest can be torn.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::entry::{self, Digest, EntryKind, NewEntry};
use crate::error::{Error, Result};
use crate::format::{
    self, HeaderRef, INDEX_EVERY, INDEX_HEADER_LEN, INDEX_HINT_LEN, SEGMENT_HEADER_LEN,
};
use crate::io::{Io, IoFile, write_all_at};
use crate::lock::DirLock;
use crate::options::{Durability, JournalOptions};
use crate::recovery::{self, Recovery, Tail};
use crate::segment::SegmentFile;

/// What an acknowledged append returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The entry's seq.
    pub seq: u64,
    /// The entry's chain hash.
    pub chain: Digest,
}

/// Counters since the journal was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Entries acknowledged.
    pub entries: u64,
    /// Bytes written to segments (records and segment headers).
    pub bytes: u64,
    /// fdatasync calls on segments.
    pub syncs: u64,
    /// Groups written.
    pub groups: u64,
}

/// The single writer of a journal directory. Cheap to clone; all clones share one writer.
/// The last clone dropped closes the journal (best effort; call [`Journal::close`] to see errors).
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<Result<()>>>>,
    dir: PathBuf,
    recovery: Option<Recovery>,
}

/// State shared by appenders and the writer thread.
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    poisoned: OnceLock<String>,
    last_seq: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
    syncs: AtomicU64,
    groups: AtomicU64,
}

struct Queue {
    pending: Vec<Pending>,
    closing: bool,
}

struct Pending {
    entry: NewEntry,
    /// SHA-256 of the payload, computed by the appender so that hashing large payloads is
    /// spread over the appending threads instead of serialised in the writer.
    payload_sha: [u8; 32],
    reply: Option<Reply>,
}

enum Reply {
    Async(tokio::sync::oneshot::Sender<Result<Appended>>),
    Blocking(std::sync::mpsc::SyncSender<Result<Appended>>),
}

impl Reply {
    fn send(self, r: Result<Appended>) {
        // An appender that gave up waiting is not an error: its entry is still journaled.
        match self {
            Reply::Async(tx) => drop(tx.send(r)),
            Reply::Blocking(tx) => drop(tx.send(r)),
        }
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // The queue holds plain data; a panic elsewhere cannot leave it inconsistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&self, entry: NewEntry, reply: Reply) -> Result<()> {
        if let Some(cause) = self.poisoned.get() {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        // Refuse what cannot fit a record before spending time hashing it.
        if entry.payload.len() > format::MAX_BODY - format::BODY_FIXED {
            return Err(Error::EntryTooLarge {
                bytes: (entry.payload.len() + format::BODY_FIXED) as u64,
                max: format::MAX_BODY as u64,
            });
        }
        let payload_sha = format::payload_sha(&entry.payload);
        let mut q = self.queue();
        if q.closing {
            return Err(Error::Closed);
        }
        let was_empty = q.pending.is_empty();
        q.pending.push(Pending {
            payload_sha,
            entry,
            reply: Some(reply),
        });
        drop(q);
        // The writer only sleeps on an empty queue, so only the first push needs to wake it.
        if was_empty {
            self.wake.notify_one();
        }
        Ok(())
    }
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` as its only writer: takes the lock,
    /// cuts a torn tail (appending a `JournalRecovered` entry), and starts the writer thread.
    pub fn open(dir: &Path, opts: JournalOptions) -> Result<Journal> {
        let io = opts.io.clone();
        io.create_dir_all(dir)
            .map_err(Error::io("creating journal directory", dir))?;
        let lock = DirLock::acquire(dir)?;
        let tail = recovery::recover(&*io, dir)?;
        let cut = tail.cut.clone();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                closing: false,
            }),
            wake: Condvar::new(),
            poisoned: OnceLock::new(),
            last_seq: AtomicU64::new(tail.next_seq - 1),
            entries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            groups: AtomicU64::new(0),
        });
        let mut writer = Writer::new(io, dir.to_path_buf(), &opts, tail, shared.clone())?;
        if let Some(r) = &cut {
            let kind = EntryKind::JournalRecovered {
                segment: r.segment.clone(),
                offset: r.offset,
                bytes_dropped: r.bytes_dropped,
            };
            writer.append_now(NewEntry::new("", kind))?;
        }
        let thread = std::thread::Builder::new()
            .name("caudal-journal-writer".into())
            .spawn(move || writer.run(lock))
            .map_err(Error::io("starting writer thread for", dir))?;
        Ok(Journal {
            inner: Arc::new(Inner {
                shared,
                thread: Mutex::new(Some(thread)),
                dir: dir.to_path_buf(),
                recovery: cut,
            }),
        })
    }

    /// Appends an entry; resolves once it is durable under the journal's policy. If the future
    /// is dropped early, the entry may still be written.
    pub async fn append(&self, e: NewEntry) -> Result<Appended> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.shared.submit(e, Reply::Async(tx))?;
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// [`Journal::append`] for threads that are not running an async runtime.
    pub fn append_blocking(&self, e: NewEntry) -> Result<Appended> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.inner.shared.submit(e, Reply::Blocking(tx))?;
        rx.recv().unwrap_or(Err(Error::Closed))
    }

    /// Seq of the last acknowledged entry; 0 when the journal is empty.
    pub fn last_seq(&self) -> u64 {
        self.inner.shared.last_seq.load(Ordering::Acquire)
    }

    /// What opening cut from a torn tail, if anything.
    pub fn recovery(&self) -> Option<Recovery> {
        self.inner.recovery.clone()
    }

    /// Counters since open.
    pub fn stats(&self) -> WriterStats {
        let s = &self.inner.shared;
        WriterStats {
            entries: s.entries.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            syncs: s.syncs.load(Ordering::Relaxed),
            groups: s.groups.load(Ordering::Relaxed),
        }
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Waits for queued appends, syncs, stops the writer and releases the lock. Other clones
    /// get [`Error::Closed`] afterwards. Returns the final sync's error, or
    /// [`Error::Poisoned`] if the writer had stopped on an I/O failure.
    pub fn close(self) -> Result<()> {
        self.inner.shutdown()
    }
}

impl Inner {
    fn shutdown(&self) -> Result<()> {
        self.shared.queue().closing = true;
        self.shared.wake.notify_all();
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        match handle {
            Some(h) => h.join().unwrap_or_else(|_| {
                Err(Error::Poisoned {
                    cause: "the writer thread panicked".into(),
                })
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The segment being appended to.
struct Active {
    seg: SegmentFile,
    file: Box<dyn IoFile>,
    len: u64,
    index: Box<dyn IoFile>,
    index_len: u64,
    next_hint_at: u64,
}

/// The writer thread's state.
struct Writer {
    io: Arc<dyn Io>,
    dir: PathBuf,
    durability: Durability,
    segment_bytes: u64,
    active: Active,
    next_seq: u64,
    last_chain: [u8; 32],
    /// Encoded records not yet written; reused across groups.
    buf: Vec<u8>,
    /// Encoded index hints not yet written.
    hints: Vec<u8>,
    /// Outcome of each entry of the current group.
    outcomes: Vec<Option<Result<Appended>>>,
    dirty: bool,
    last_sync: Instant,
    shared: Arc<Shared>,
}

impl Writer {
    fn new(
        io: Arc<dyn Io>,
        dir: PathBuf,
        opts: &JournalOptions,
        tail: Tail,
        shared: Arc<Shared>,
    ) -> Result<Writer> {
        let index_path = dir.join(format::index_name(tail.seg.first_seq));
        let index = io
            .open_write(&index_path)
            .map_err(Error::io("opening index", &index_path))?;
        let index_len = INDEX_HEADER_LEN + (tail.hints.len() * INDEX_HINT_LEN) as u64;
        let next_hint_at = tail
            .hints
            .last()
            .map_or(SEGMENT_HEADER_LEN, |&(_, o)| o + INDEX_EVERY);
        Ok(Writer {
            io,
            dir,
            durability: opts.durability,
            segment_bytes: opts.segment_bytes,
            active: Active {
                seg: tail.seg,
                file: tail.file,
                len: tail.len,
                index,
                index_len,
                next_hint_at,
            },
            next_seq: tail.next_seq,
            last_chain: tail.last_chain,
            buf: Vec::with_capacity(1 << 20),
            hints: Vec::new(),
            outcomes: Vec::new(),
            dirty: false,
            last_sync: Instant::now(),
            shared,
        })
    }

    /// Appends one entry and syncs, whatever the policy (used for the recovery entry at open).
    fn append_now(&mut self, entry: NewEntry) -> Result<Appended> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let mut group = vec![Pending {
            payload_sha: format::payload_sha(&entry.payload),
            entry,
            reply: Some(Reply::Blocking(tx)),
        }];
        self.commit(&mut group, true);
        rx.recv().unwrap_or(Err(Error::Closed))
    }

    fn run(mut self, lock: DirLock) -> Result<()> {
        let mut group: Vec<Pending> = Vec::new();
        loop {
            let mut q = self.shared.queue();
            while q.pending.is_empty() && !q.closing {
                match self.interval_wait() {
                    Some(wait) if wait.is_zero() => break,
                    Some(wait) => {
                        q = self
                            .shared
                            .wake
                            .wait_timeout(q, wait)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                    None => q = self.shared.wake.wait(q).unwrap_or_else(|e| e.into_inner()),
                }
            }
            std::mem::swap(&mut q.pending, &mut group);
            let closing = q.closing;
            drop(q);
            if group.is_empty() {
                if closing {
                    break;
                }
                // Only an interval sync falls due with nothing queued.
                self.sync();
                continue;
            }
            match self.durability {
                // One sync per entry: commit them one by one.
                Durability::Always => {
                    for one in group.chunks_mut(1) {
                        self.commit(one, true);
                    }
                }
                Durability::Batch => self.commit(&mut group, true),
                Durability::Interval(d) => {
                    self.commit(&mut group, false);
                    if self.last_sync.elapsed() >= d {
                        self.sync();
                    }
                }
                Durability::Never => self.commit(&mut group, false),
            }
            group.clear();
        }
        let result = match self.shared.poisoned.get() {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None if self.dirty => self.sync_segment(),
            None => Ok(()),
        };
        drop(lock);
        result
    }

    /// Time left until an interval sync is due, when there is unsynced data under `Interval`.
    fn interval_wait(&self) -> Option<Duration> {
        match self.durability {
            Durability::Interval(d) if self.dirty && self.shared.poisoned.get().is_none() => {
                Some(d.saturating_sub(self.last_sync.elapsed()))
            }
            _ => None,
        }
    }

    /// Writes a group, syncs it if `sync`, and replies to every appender in it.
    fn commit(&mut self, group: &mut [Pending], sync: bool) {
        if let Some(cause) = self.shared.poisoned.get() {
            let cause = cause.clone();
            for p in group.iter_mut() {
                if let Some(r) = p.reply.take() {
                    r.send(Err(Error::Poisoned {
                        cause: cause.clone(),
                    }));
                }
            }
            return;
        }
        self.outcomes.clear();
        let written = self
            .write_group(group)
            .and_then(|()| if sync { self.sync_segment() } else { Ok(()) });
        self.shared.groups.fetch_add(1, Ordering::Relaxed);
        match written {
            Ok(()) => {
                // Counters first, so an appender that sees its ack also sees them.
                let acked = self
                    .outcomes
                    .iter()
                    .filter(|o| matches!(o, Some(Ok(_))))
                    .count() as u64;
                self.shared.entries.fetch_add(acked, Ordering::Relaxed);
                self.shared
                    .last_seq
                    .store(self.next_seq - 1, Ordering::Release);
                for (p, outcome) in group.iter_mut().zip(self.outcomes.drain(..)) {
                    if let Some(r) = p.reply.take() {
                        r.send(outcome.unwrap_or(Err(Error::Closed)));
                    }
                }
            }
            Err(e) => {
                let cause = e.to_string();
                let _ = self.shared.poisoned.set(cause.clone());
                for (i, p) in group.iter_mut().enumerate() {
                    // Entries refused before any I/O keep their own error.
                    let outcome = match self.outcomes.get_mut(i).and_then(Option::take) {
                        Some(Err(e)) => Err(e),
                        _ => Err(Error::Poisoned {
                            cause: cause.clone(),
                        }),
                    };
                    if let Some(r) = p.reply.take() {
                        r.send(outcome);
                    }
                }
            }
        }
    }

    /// Encodes and writes a group, rotating segments as they fill. Fills `outcomes`.
    fn write_group(&mut self, group: &mut [Pending]) -> Result<()> {
        let now = entry::now();
        self.buf.clear();
        self.hints.clear();
        for p in group.iter_mut() {
            let full = self.active.len + self.buf.len() as u64 >= self.segment_bytes;
            if full && (self.active.len > SEGMENT_HEADER_LEN || !self.buf.is_empty()) {
                self.flush()?;
                self.rotate()?;
            }
            let offset = self.active.len + self.buf.len() as u64;
            let e = &p.entry;
            let header = HeaderRef {
                seq: self.next_seq,
                time: e.time.unwrap_or(now),
                run: e.run,
                pipeline: &e.pipeline,
                kind: &e.kind,
            };
            let outcome = format::encode_record(
                &mut self.buf,
                &self.last_chain,
                &header,
                &e.payload,
                &p.payload_sha,
            )
            .map(|chain| {
                if offset >= self.active.next_hint_at {
                    format::encode_hint(&mut self.hints, self.next_seq, offset);
                    self.active.next_hint_at = offset + INDEX_EVERY;
                }
                let a = Appended {
                    seq: self.next_seq,
                    chain: Digest(chain),
                };
                self.next_seq += 1;
                self.last_chain = chain;
                a
            });
            self.outcomes.push(Some(outcome));
        }
        self.flush()
    }

    /// Writes the buffered records and index hints of the active segment.
    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            let a = &mut self.active;
            write_all_at(&*a.file, &self.buf, a.len)
                .map_err(Error::io("writing segment", &a.seg.path))?;
            a.len += self.buf.len() as u64;
            self.shared
                .bytes
                .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
            self.buf.clear();
            self.dirty = true;
        }
        if !self.hints.is_empty() {
            let a = &mut self.active;
            write_all_at(&*a.index, &self.hints, a.index_len).map_err(|e| Error::Io {
                op: "writing index of",
                path: a.seg.path.clone(),
                source: e,
            })?;
            a.index_len += self.hints.len() as u64;
            self.hints.clear();
        }
        Ok(())
    }

    /// Seals the active segment (synced) and starts the next one at `next_seq`.
    fn rotate(&mut self) -> Result<()> {
        self.sync_segment()?;
        let seg = recovery::new_segment_file(&self.dir, self.next_seq);
        let file = recovery::create_segment(&*self.io, &self.dir, &seg, &self.last_chain)?;
        let index_path = self.dir.join(format::index_name(seg.first_seq));
        let index = self
            .io
            .open_write(&index_path)
            .map_err(Error::io("opening index", &index_path))?;
        self.shared
            .bytes
            .fetch_add(SEGMENT_HEADER_LEN, Ordering::Relaxed);
        self.shared.syncs.fetch_add(1, Ordering::Relaxed);
        self.active = Active {
            seg,
            file,
            len: SEGMENT_HEADER_LEN,
            index,
            index_len: INDEX_HEADER_LEN,
            next_hint_at: SEGMENT_HEADER_LEN,
        };
        Ok(())
    }

    /// fdatasync of the active segment.
    fn sync_segment(&mut self) -> Result<()> {
        let a = &self.active;
        a.file
            .sync_data()
            .map_err(Error::io("syncing segment", &a.seg.path))?;
        self.shared.syncs.fetch_add(1, Ordering::Relaxed);
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// An interval sync; a failure poisons the writer.
    fn sync(&mut self) {
        if !self.dirty || self.shared.poisoned.get().is_some() {
            return;
        }
        if let Err(e) = self.sync_segment() {
            let _ = self.shared.poisoned.set(e.to_string());
        }
    }
}
