//! Full verification of a journal: every segment header, every record's CRC, seq density, the
//! whole chain, every payload's SHA-256, and that every entry header decodes.
//!
//! Payload hashing is the bulk of the work, and the chain does not need it (it covers the
//! stored payload hash), so it runs on a second thread: the main thread reads, checks CRCs,
//! seqs and the chain, and hands header and payload bytes over in ~1 MiB jobs; the second
//! thread hashes payloads and fully decodes headers (so a verified journal is a readable one).
//! Because the main thread only hands over records that passed its own checks, anything the
//! second thread finds is earlier than any damage the main thread finds; so the reported seq is
//! the first bad one either way.
//!
//! Unlike a reader, verify accepts no incomplete record at the end: an unrecovered torn tail is
//! reported (opening the journal for writing cuts it). A record a live writer is in the middle
//! of writing is waited for briefly before that verdict.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError, channel, sync_channel};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::entry::Timestamp;
use crate::error::{Error, Result};
use crate::format::{self, FRAME_LEN, RecordView, SEGMENT_HEADER_LEN, ZERO_CHAIN};
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
    let (job_tx, job_rx) = sync_channel::<Job>(2);
    let (free_tx, free_rx) = channel::<Job>();
    let second = std::thread::Builder::new()
        .name("caudal-journal-verify".into())
        .spawn(move || check_jobs(job_rx, free_tx))
        .map_err(Error::io("starting verify thread for", dir))?;
    let mut work = Work {
        tx: job_tx,
        free: free_rx,
        job: Job::default(),
        found: None,
        spare: None,
    };
    let checked = check_segments(&*io, &segs, &mut work);
    work.send();
    let Work {
        tx,
        found: found_here,
        ..
    } = work;
    drop(tx);
    let found_there = second.join().unwrap_or_else(|_| {
        Some(Found {
            seq: 0,
            seg: 0,
            offset: 0,
            reason: "the verify thread panicked".into(),
        })
    });
    // Both threads check records in order, but jobs are split between them: the first bad
    // seq is the lower of what each found.
    let found = match (found_here, found_there) {
        (Some(a), Some(b)) => Some(if a.seq <= b.seq { a } else { b }),
        (a, b) => a.or(b),
    };
    match (found, checked) {
        (Some(bad), _) => Err(damaged(
            &segs[bad.seg].name,
            bad.offset,
            bad.seq,
            bad.reason,
        )),
        (None, r) => r,
    }
}

/// Header and payload bytes of consecutive records, and what to check about them.
#[derive(Default)]
struct Job {
    data: Vec<u8>,
    items: Vec<Item>,
}

struct Item {
    seq: u64,
    seg: usize,
    offset: u64,
    /// The header is `data[previous item's end..header_end]`, the payload `data[header_end..end]`.
    header_end: usize,
    end: usize,
    /// The payload's stored hash; `None` when the payload was compacted away.
    sha: Option<[u8; 32]>,
}

/// Damage found while checking jobs.
struct Found {
    seq: u64,
    seg: usize,
    offset: u64,
    reason: String,
}

/// Hands jobs to the second thread, or checks them here when it is behind: so the hashing is
/// shared when it is the bottleneck (large payloads), and left to the second thread otherwise.
struct Work {
    tx: SyncSender<Job>,
    free: Receiver<Job>,
    job: Job,
    /// The first damage found by jobs checked on this thread.
    found: Option<Found>,
    /// Buffers of the last job checked here, for reuse.
    spare: Option<Job>,
}

const JOB_BYTES: usize = 1 << 20;

impl Work {
    fn push(&mut self, view: &RecordView<'_>, seq: u64, seg: usize, offset: u64) {
        self.job.data.extend_from_slice(view.header);
        let header_end = self.job.data.len();
        if let Some(p) = view.payload {
            self.job.data.extend_from_slice(p);
        }
        let sha = view.payload.map(|_| view.payload_sha);
        let end = self.job.data.len();
        self.job.items.push(Item {
            seq,
            seg,
            offset,
            header_end,
            end,
            sha,
        });
        if self.job.data.len() >= JOB_BYTES {
            self.send();
        }
    }

    /// Whether damage was found here: nothing after it matters any more.
    fn stopped(&self) -> bool {
        self.found.is_some()
    }

    fn send(&mut self) {
        if self.job.items.is_empty() {
            return;
        }
        let mut next = self
            .spare
            .take()
            .or_else(|| self.free.try_recv().ok())
            .unwrap_or_default();
        next.data.clear();
        next.items.clear();
        let job = std::mem::replace(&mut self.job, next);
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                self.found = check_job(&job);
                self.spare = Some(job);
            }
            // The second thread stopped at damage; later jobs have nothing to add then.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Checks one job: the first record whose header does not decode or whose payload does not
/// match its hash.
fn check_job(job: &Job) -> Option<Found> {
    let mut start = 0;
    for item in &job.items {
        let found = |reason: String| {
            Some(Found {
                seq: item.seq,
                seg: item.seg,
                offset: item.offset,
                reason,
            })
        };
        if let Err(why) = format::decode_header(&job.data[start..item.header_end]) {
            return found(why);
        }
        if let Some(want) = item.sha {
            let sha: [u8; 32] = Sha256::digest(&job.data[item.header_end..item.end]).into();
            if sha != want {
                return found("payload hash mismatch".into());
            }
        }
        start = item.end;
    }
    None
}

/// The second thread: checks jobs in order until the first damage.
fn check_jobs(jobs: Receiver<Job>, free: Sender<Job>) -> Option<Found> {
    for job in jobs {
        if let Some(found) = check_job(&job) {
            return Some(found);
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
        let why = format!(
            "journal starts at seq {}: the segments before it are missing",
            first.first_seq
        );
        return Err(damaged(&first.name, 0, 1, why));
    }
    let mut expected = 1u64;
    let mut chain = ZERO_CHAIN;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let file = io
            .open_read(&seg.path)
            .map_err(Error::io("opening segment", &seg.path))?;
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
            let why = format!(
                "segment starts at seq {} where seq {expected} belongs",
                header.first_seq
            );
            return Err(damaged(&seg.name, 0, expected, why));
        }
        if header.chain_in != chain {
            let why =
                "segment header's carried-in chain differs from the previous segment's last chain";
            return Err(damaged(&seg.name, 0, expected, why));
        }
        let mut cursor = Cursor::new(file, SEGMENT_HEADER_LEN)
            .map_err(Error::io("reading segment", &seg.path))?;
        let mut retries = 0;
        loop {
            match cursor
                .next()
                .map_err(Error::io("reading segment", &seg.path))?
            {
                Step::Record { offset, bytes } => {
                    let bad = |why: &str| damaged(&seg.name, offset, expected, why);
                    let view = format::parse_body(&bytes[FRAME_LEN..]).map_err(bad)?;
                    let (seq, time) = format::decode_header_seq_time(view.header)
                        .ok_or_else(|| bad("entry header does not decode"))?;
                    if seq != expected {
                        let why = format!(
                            "record holds seq {seq} where seq {expected} belongs (seqs must be dense)"
                        );
                        return Err(bad(&why));
                    }
                    if format::chain(&chain, view.header, &view.payload_sha) != view.chain {
                        return Err(bad(
                            "chain hash mismatch (entry or its predecessor was altered)",
                        ));
                    }
                    work.push(&view, expected, i, offset);
                    if work.stopped() {
                        return Ok(report);
                    }
                    report.first_time.get_or_insert(time);
                    report.last_time = Some(time);
                    report.entries += 1;
                    chain = view.chain;
                    expected += 1;
                    retries = 0;
                }
                Step::End => break,
                Step::Incomplete { .. } if last && retries < TAIL_RETRIES => {
                    retries += 1;
                    std::thread::sleep(TAIL_WAIT);
                }
                Step::Incomplete { offset } => {
                    let why =
                        "incomplete record (a torn tail: opening the journal for writing cuts it)";
                    return Err(damaged(&seg.name, offset, expected, why));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{SegmentHeader, encode_segment_header};

    /// A record with arbitrary header bytes, CRC and chain correct.
    fn raw_record(prev: &[u8; 32], header: &[u8], payload: &[u8]) -> (Vec<u8>, [u8; 32]) {
        let sha: [u8; 32] = Sha256::digest(payload).into();
        let chain = format::chain(prev, header, &sha);
        let mut body = Vec::new();
        body.extend_from_slice(&(header.len() as u32).to_le_bytes());
        body.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        body.push(0);
        body.extend_from_slice(&sha);
        body.extend_from_slice(&chain);
        body.extend_from_slice(header);
        body.extend_from_slice(payload);
        let len = (body.len() as u32).to_le_bytes();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &body);
        let mut rec = len.to_vec();
        rec.extend_from_slice(&crc.to_le_bytes());
        rec.extend_from_slice(&body);
        (rec, chain)
    }

    fn header_bytes(seq: u64, kind_index: u8) -> Vec<u8> {
        // seq 1..=250 and time 0 are one varint byte each; run None; pipeline ""; then the
        // kind's variant index and, for RunFailed, its fields.
        vec![seq as u8, 0, 0, 0, kind_index, 0, 0]
    }

    #[test]
    fn a_header_that_does_not_decode_is_damage_even_with_valid_crc_and_chain() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = encode_segment_header(&SegmentHeader {
            first_seq: 1,
            chain_in: ZERO_CHAIN,
        })
        .to_vec();
        // Kind 9 is RunFailed { error: "", elapsed_us: 0 }: decodes. Kind 99 does not exist.
        let (r1, c1) = raw_record(&ZERO_CHAIN, &header_bytes(1, 9), b"ok");
        let (r2, c2) = raw_record(&c1, &header_bytes(2, 99), b"");
        let (r3, _) = raw_record(&c2, &header_bytes(3, 9), b"x");
        let second_offset = (seg.len() + r1.len()) as u64;
        for r in [r1, r2, r3] {
            seg.extend_from_slice(&r);
        }
        std::fs::write(dir.path().join("00000000000000000001.seg"), &seg).unwrap();
        match verify(dir.path()) {
            Err(Error::Damaged {
                seq,
                offset,
                reason,
                ..
            }) => {
                assert_eq!((seq, offset), (2, second_offset));
                assert!(reason.contains("does not decode"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_payload_that_does_not_match_its_hash_is_damage_at_its_seq() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = encode_segment_header(&SegmentHeader {
            first_seq: 1,
            chain_in: ZERO_CHAIN,
        })
        .to_vec();
        let (r1, c1) = raw_record(&ZERO_CHAIN, &header_bytes(1, 9), b"first");
        let (mut r2, _) = raw_record(&c1, &header_bytes(2, 9), b"second");
        // Change the payload and fix the CRC: only the payload hash can tell.
        let n = r2.len();
        r2[n - 1] ^= 1;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&r2[0..4]), &r2[8..]);
        r2[4..8].copy_from_slice(&crc.to_le_bytes());
        seg.extend_from_slice(&r1);
        seg.extend_from_slice(&r2);
        std::fs::write(dir.path().join("00000000000000000001.seg"), &seg).unwrap();
        match verify(dir.path()) {
            Err(Error::Damaged { seq, reason, .. }) => {
                assert_eq!(seq, 2);
                assert_eq!(reason, "payload hash mismatch");
            }
            other => panic!("{other:?}"),
        }
        // Readers do not hash payloads; they still read both (verify is the full check).
        let read = Reader::open(dir.path())
            .unwrap()
            .entries_from(1)
            .unwrap()
            .count();
        assert_eq!(read, 2);
    }

    #[test]
    fn the_first_bad_payload_is_named_whichever_thread_hashes_it() {
        let dir = tempfile::tempdir().unwrap();
        let header = SegmentHeader {
            first_seq: 1,
            chain_in: ZERO_CHAIN,
        };
        let mut seg = encode_segment_header(&header).to_vec();
        let mut chain = ZERO_CHAIN;
        let mut offsets = vec![0];
        for seq in 1..=40u64 {
            let payload = vec![seq as u8; 128 * 1024];
            let (mut rec, c) = raw_record(&chain, &header_bytes(seq, 9), &payload);
            if seq == 17 || seq == 30 {
                let n = rec.len();
                rec[n - 1] ^= 1;
                let crc = crc32c::crc32c_append(crc32c::crc32c(&rec[0..4]), &rec[8..]);
                rec[4..8].copy_from_slice(&crc.to_le_bytes());
            }
            offsets.push(seg.len() as u64);
            seg.extend_from_slice(&rec);
            chain = c;
        }
        std::fs::write(dir.path().join("00000000000000000001.seg"), &seg).unwrap();
        // Jobs are shared between the threads by timing; the answer must not depend on it.
        for _ in 0..3 {
            match verify(dir.path()) {
                Err(Error::Damaged {
                    seq,
                    offset,
                    reason,
                    ..
                }) => {
                    assert_eq!((seq, offset), (17, offsets[17]));
                    assert_eq!(reason, "payload hash mismatch");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
