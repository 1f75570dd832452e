//! Full verification of a journal: every segment header, every record's CRC, seq density, the
//! whole chain, and every payload's SHA-256.
//!
//! Payload hashing is the bulk of the work, and the chain does not need it (it covers the
//! stored payload hash), so it runs on a second thread: the main thread reads, checks CRCs,
//! decodes headers and follows the chain, and hands payload bytes over in ~1 MiB jobs. Because
//! the main thread only hands over payloads of records that passed its checks, a payload
//! mismatch is always earlier than any damage the main thread finds; so the reported seq is
//! the first bad one either way.
//!
//! Unlike a reader, verify accepts no incomplete record at the end: an unrecovered torn tail is
//! reported (opening the journal for writing cuts it). A record a live writer is in the middle
//! of writing is waited for briefly before that verdict.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::entry::Timestamp;
use crate::error::{Error, Result};
use crate::format::{SEGMENT_HEADER_LEN, ZERO_CHAIN};
use crate::io::{Io, StdIo};
use crate::reader::Reader;
use crate::segment::{self, Cursor, SegmentFile, Step, damaged};

/// What a successful [`verify`] saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Bytes of all segment files.
    pub bytes: u64,
    /// Segment files.
    pub segments: usize,
    /// First seq (0 when empty).
    pub first_seq: u64,
    /// Last seq (0 when empty).
    pub last_seq: u64,
    /// Time of the first entry.
    pub first_time: Option<Timestamp>,
    /// Time of the last entry.
    pub last_time: Option<Timestamp>,
}

/// Checks the whole journal in `dir`; fails with [`Error::Damaged`] naming the first bad seq.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    verify_with(dir, Arc::new(StdIo))
}

/// [`verify`] with a given I/O implementation.
pub fn verify_with(dir: &Path, io: Arc<dyn Io>) -> Result<VerifyReport> {
    Reader::open_with(dir, io.clone())?;
    let segs = segment::list_segments(&*io, dir)?;
    let (job_tx, job_rx) = sync_channel::<Job>(4);
    let (free_tx, free_rx) = channel::<Job>();
    let hasher = std::thread::Builder::new()
        .name("caudal-journal-verify".into())
        .spawn(move || hash_payloads(job_rx, free_tx))
        .map_err(Error::io("starting verify thread for", dir))?;
    let mut work = Work {
        tx: job_tx,
        free: free_rx,
        job: Job::default(),
    };
    let checked = check_segments(&*io, &segs, &mut work);
    work.send();
    drop(work);
    let payload_damage = hasher.join().unwrap_or(None);
    match (payload_damage, checked) {
        (Some(bad), _) => Err(damaged(
            &segs[bad.seg].name,
            bad.offset,
            bad.seq,
            "payload hash mismatch",
        )),
        (None, r) => r,
    }
}

/// Payload bytes and what their hashes must be.
#[derive(Default)]
struct Job {
    data: Vec<u8>,
    items: Vec<Item>,
}

struct Item {
    seq: u64,
    seg: usize,
    offset: u64,
    end: usize,
    sha: [u8; 32],
}

struct Work {
    tx: std::sync::mpsc::SyncSender<Job>,
    free: Receiver<Job>,
    job: Job,
}

const JOB_BYTES: usize = 1 << 20;

impl Work {
    fn push(&mut self, payload: &[u8], sha: [u8; 32], seq: u64, seg: usize, offset: u64) {
        self.job.data.extend_from_slice(payload);
        self.job.items.push(Item {
            seq,
            seg,
            offset,
            end: self.job.data.len(),
            sha,
        });
        if self.job.data.len() >= JOB_BYTES {
            self.send();
        }
    }

    fn send(&mut self) {
        if self.job.items.is_empty() {
            return;
        }
        let mut next = self.free.try_recv().unwrap_or_default();
        next.data.clear();
        next.items.clear();
        let job = std::mem::replace(&mut self.job, next);
        // The hasher stops at the first mismatch; later jobs have nothing to add then.
        let _ = self.tx.send(job);
    }
}

/// The hasher thread: returns the first payload whose hash does not match.
fn hash_payloads(jobs: Receiver<Job>, free: Sender<Job>) -> Option<Item> {
    for job in jobs {
        let mut start = 0;
        for item in &job.items {
            let sha: [u8; 32] = Sha256::digest(&job.data[start..item.end]).into();
            if sha != item.sha {
                return Some(Item {
                    seq: item.seq,
                    seg: item.seg,
                    offset: item.offset,
                    end: 0,
                    sha,
                });
            }
            start = item.end;
        }
        let _ = free.send(job);
    }
    None
}

/// How often, and how long, to wait for a live writer to finish a record at the very end.
const TAIL_RETRIES: u32 = 3;
const TAIL_WAIT: Duration = Duration::from_millis(10);

fn check_segments(io: &dyn Io, segs: &[SegmentFile], work: &mut Work) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        segments: segs.len(),
        ..VerifyReport::default()
    };
    let Some(first) = segs.first() else {
        return Ok(report);
    };
    if first.first_seq != 1 {
        return Err(damaged(
            &first.name,
            0,
            1,
            format!(
                "journal starts at seq {}: the segments before it are missing",
                first.first_seq
            ),
        ));
    }
    let mut expected = 1u64;
    let mut chain = ZERO_CHAIN;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let io_err = Error::io;
        let file = io
            .open_read(&seg.path)
            .map_err(io_err("opening segment", &seg.path))?;
        let mut header = segment::read_header(seg, &*file)?;
        for _ in 0..TAIL_RETRIES {
            if header.is_some() || !last {
                break;
            }
            std::thread::sleep(TAIL_WAIT);
            header = segment::read_header(seg, &*file)?;
        }
        let Some(header) = header else {
            return Err(damaged(
                &seg.name,
                0,
                seg.first_seq,
                "segment header is incomplete",
            ));
        };
        if header.first_seq != expected {
            return Err(damaged(
                &seg.name,
                0,
                expected,
                format!(
                    "segment starts at seq {} where seq {expected} belongs",
                    header.first_seq
                ),
            ));
        }
        if header.chain_in != chain {
            return Err(damaged(
                &seg.name,
                0,
                expected,
                "segment header's carried-in chain differs from the previous segment's last chain",
            ));
        }
        let mut cursor =
            Cursor::new(file, SEGMENT_HEADER_LEN).map_err(io_err("reading segment", &seg.path))?;
        let mut retries = 0;
        loop {
            match cursor
                .next()
                .map_err(io_err("reading segment", &seg.path))?
            {
                Step::Record { offset, bytes } => {
                    let c =
                        segment::check_record(&seg.name, offset, bytes, expected, Some(&chain))?;
                    if let Some(p) = c.view.payload {
                        work.push(p, c.view.payload_sha, expected, i, offset);
                    }
                    report.first_time.get_or_insert(c.header.time);
                    report.last_time = Some(c.header.time);
                    report.entries += 1;
                    chain = c.view.chain;
                    expected += 1;
                    retries = 0;
                }
                Step::End => break,
                Step::Incomplete { .. } if last && retries < TAIL_RETRIES => {
                    retries += 1;
                    std::thread::sleep(TAIL_WAIT);
                }
                Step::Incomplete { offset } => {
                    return Err(damaged(
                        &seg.name,
                        offset,
                        expected,
                        "incomplete record (a torn tail: opening the journal for writing cuts it)",
                    ));
                }
                Step::BadLength { offset } => {
                    return Err(damaged(
                        &seg.name,
                        offset,
                        expected,
                        "impossible record length",
                    ));
                }
                Step::BadCrc { offset } => {
                    return Err(damaged(&seg.name, offset, expected, "crc mismatch"));
                }
            }
        }
        report.bytes += cursor.offset();
    }
    if report.entries > 0 {
        report.first_seq = 1;
        report.last_seq = expected - 1;
    }
    Ok(report)
}
