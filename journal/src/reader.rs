//! Reading a journal: by seq, from a seq on, and following new entries.
//!
//! A [`Reader`] takes no lock and may run while a writer (in this or another process) appends.
//! It relies on the writer's order of operations: records are written before they are
//! acknowledged, and a segment is complete before the next one is created. So an incomplete
//! record at the end of the newest segment is a write in flight (the reader stops there and
//! picks it up later), while anything else that does not check out is damage and ends reading
//! with [`Error::Damaged`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::entry::{Digest, Entry, Payload};
use crate::error::{Error, Result};
use crate::format::SEGMENT_HEADER_LEN;
use crate::io::{Io, StdIo};
use crate::lock::LOCK_FILE;
use crate::segment::{self, Checked, Cursor, SegmentFile, Step, damaged};

/// A segment file of a journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// File name.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// Seq of its first entry.
    pub first_seq: u64,
    /// File size.
    pub bytes: u64,
}

/// An entry as read, with where it is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEntry {
    /// The entry.
    pub entry: Entry,
    /// Segment file name.
    pub segment: String,
    /// Byte offset of the record in the segment.
    pub offset: u64,
    /// Length of the record (frame included).
    pub len: u64,
    /// The entry's chain hash.
    pub chain: Digest,
}

/// Read access to a journal directory.
#[derive(Clone)]
pub struct Reader {
    dir: PathBuf,
    io: Arc<dyn Io>,
}

impl Reader {
    /// Opens the journal in `dir` for reading.
    pub fn open(dir: &Path) -> Result<Reader> {
        Reader::open_with(dir, Arc::new(StdIo))
    }

    /// [`Reader::open`] with a given I/O implementation.
    pub fn open_with(dir: &Path, io: Arc<dyn Io>) -> Result<Reader> {
        let not_a_journal = || Error::NotAJournal {
            dir: dir.to_path_buf(),
        };
        let names = io.list(dir).map_err(|_| not_a_journal())?;
        if !names
            .iter()
            .any(|n| n == LOCK_FILE || crate::format::parse_segment_name(n).is_some())
        {
            return Err(not_a_journal());
        }
        Ok(Reader {
            dir: dir.to_path_buf(),
            io,
        })
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segment files, in seq order.
    pub fn segments(&self) -> Result<Vec<SegmentInfo>> {
        segment::list_segments(&*self.io, &self.dir)?
            .into_iter()
            .map(|s| {
                let f = self
                    .io
                    .open_read(&s.path)
                    .map_err(Error::io("opening segment", &s.path))?;
                let bytes = f.len().map_err(Error::io("reading segment", &s.path))?;
                Ok(SegmentInfo {
                    name: s.name,
                    path: s.path,
                    first_seq: s.first_seq,
                    bytes,
                })
            })
            .collect()
    }

    /// Seq of the last whole entry; 0 when the journal is empty.
    pub fn last_seq(&self) -> Result<u64> {
        let segs = segment::list_segments(&*self.io, &self.dir)?;
        let Some(last) = segs.last() else {
            return Ok(0);
        };
        let Some(mut pos) = segment::seek(&*self.io, &self.dir, last, u64::MAX)? else {
            return Ok(last.first_seq - 1);
        };
        loop {
            match pos
                .cursor
                .next()
                .map_err(Error::io("reading segment", &last.path))?
            {
                Step::Record { .. } => pos.expected += 1,
                Step::End => return Ok(pos.expected - 1),
                Step::Incomplete { offset } => {
                    segment::check_incomplete(last, pos.cursor.file(), offset, pos.expected)?;
                    return Ok(pos.expected - 1);
                }
                Step::BadLength { offset } => {
                    return Err(damaged(
                        &last.name,
                        offset,
                        pos.expected,
                        "impossible record length",
                    ));
                }
                Step::BadCrc { offset } => {
                    return Err(damaged(&last.name, offset, pos.expected, "crc mismatch"));
                }
            }
        }
    }

    /// The entry `seq`, found through the segment's sparse index; `None` if it does not exist
    /// (yet).
    pub fn get(&self, seq: u64) -> Result<Option<StoredEntry>> {
        let segs = segment::list_segments(&*self.io, &self.dir)?;
        let Some(i) = segment_for(&segs, seq) else {
            return Ok(None);
        };
        let mut entries = Entries::at(self.clone(), segs, i, seq)?;
        match entries.next() {
            Some(Ok(e)) if e.entry.seq == seq => Ok(Some(e)),
            Some(Ok(_)) | None => Ok(None),
            Some(Err(e)) => Err(e),
        }
    }

    /// Entries from `seq` on (from the first if `seq` is 0), up to the current end.
    pub fn entries_from(&self, seq: u64) -> Result<Entries> {
        let seq = seq.max(1);
        let segs = segment::list_segments(&*self.io, &self.dir)?;
        // Past the end: start at the newest segment, which skips to `seq` as entries arrive.
        let i = segment_for(&segs, seq).or(segs.len().checked_sub(1));
        match i {
            Some(i) => Entries::at(self.clone(), segs, i, seq),
            None => Ok(Entries::empty(self.clone(), seq)),
        }
    }

    /// Entries from `seq` on, waiting (polling every `poll`) for new ones, new segments
    /// included. Ends only after an error.
    pub fn follow_from(&self, seq: u64, poll: Duration) -> Result<Follow> {
        Ok(Follow {
            entries: self.entries_from(seq)?,
            poll,
        })
    }
}

/// Index of the segment that would hold `seq`.
fn segment_for(segs: &[SegmentFile], seq: u64) -> Option<usize> {
    segs.iter().rposition(|s| s.first_seq <= seq)
}

/// Iterator over stored entries, in seq order. Each record's CRC is checked, and so are its
/// seq and chain link to the one before. Yields `None` at the current end of the journal;
/// calling `next` again later continues with entries written since. After an error it yields
/// `None` for good.
pub struct Entries {
    reader: Reader,
    segs: Vec<SegmentFile>,
    /// Current segment in `segs`.
    seg: usize,
    cursor: Option<Cursor>,
    /// Seq of the next record at the cursor.
    expected: u64,
    prev_chain: Option<[u8; 32]>,
    /// Records before this seq are read but not returned.
    from: u64,
    /// A newer segment exists, so the current one must end cleanly.
    sealed: bool,
    failed: bool,
}

impl Entries {
    fn empty(reader: Reader, from: u64) -> Entries {
        Entries {
            reader,
            segs: Vec::new(),
            seg: 0,
            cursor: None,
            expected: 1,
            prev_chain: None,
            from,
            sealed: false,
            failed: false,
        }
    }

    fn at(reader: Reader, segs: Vec<SegmentFile>, seg: usize, from: u64) -> Result<Entries> {
        let expected = segs[seg].first_seq;
        let mut e = Entries {
            reader,
            segs,
            seg,
            cursor: None,
            expected,
            prev_chain: None,
            from,
            sealed: false,
            failed: false,
        };
        if let Some(pos) = segment::seek(&*e.reader.io, &e.reader.dir, &e.segs[seg], from)? {
            e.cursor = Some(pos.cursor);
            e.expected = pos.expected;
            e.prev_chain = pos.prev_chain;
        }
        Ok(e)
    }

    fn step(&mut self) -> Result<Option<StoredEntry>> {
        loop {
            if self.segs.is_empty() && !self.reopen_listing()? {
                return Ok(None);
            }
            if self.cursor.is_none() && !self.open_current()? {
                if self.newer_segment_exists()? {
                    let seg = &self.segs[self.seg];
                    return Err(damaged(
                        &seg.name,
                        0,
                        self.expected,
                        "segment header is incomplete, yet a newer segment exists",
                    ));
                }
                return Ok(None);
            }
            let seg = &self.segs[self.seg];
            let Some(cursor) = self.cursor.as_mut() else {
                return Ok(None);
            };
            match cursor
                .next()
                .map_err(Error::io("reading segment", &seg.path))?
            {
                Step::Record { offset, bytes } => {
                    let Checked { view, header } = segment::check_record(
                        &seg.name,
                        offset,
                        bytes,
                        self.expected,
                        self.prev_chain.as_ref(),
                    )?;
                    self.expected += 1;
                    self.prev_chain = Some(view.chain);
                    if header.seq < self.from {
                        continue;
                    }
                    let payload = match view.payload {
                        Some(p) => Payload::Inline(p.to_vec()),
                        None => Payload::Compacted {
                            sha256: Digest(view.payload_sha),
                            len: view.payload_len,
                        },
                    };
                    let entry = Entry {
                        seq: header.seq,
                        time: header.time,
                        run: header.run,
                        pipeline: header.pipeline,
                        kind: header.kind,
                        payload,
                    };
                    let stored = StoredEntry {
                        entry,
                        segment: seg.name.clone(),
                        offset,
                        len: bytes.len() as u64,
                        chain: Digest(view.chain),
                    };
                    return Ok(Some(stored));
                }
                Step::End if self.sealed => {
                    self.seg += 1;
                    self.cursor = None;
                    self.sealed = false;
                }
                Step::Incomplete { offset } if self.sealed => {
                    return Err(damaged(
                        &seg.name,
                        offset,
                        self.expected,
                        "incomplete record at the end of a sealed segment",
                    ));
                }
                Step::Incomplete { offset } => {
                    segment::check_incomplete(seg, cursor.file(), offset, self.expected)?;
                    if !self.newer_segment_exists()? {
                        return Ok(None);
                    }
                    self.sealed = true;
                }
                Step::End => {
                    if !self.newer_segment_exists()? {
                        return Ok(None);
                    }
                    // The writer completes a segment before creating the next, so it is final
                    // now; read its end once more, since records may have landed meanwhile.
                    self.sealed = true;
                }
                Step::BadLength { offset } => {
                    return Err(damaged(
                        &seg.name,
                        offset,
                        self.expected,
                        "impossible record length",
                    ));
                }
                Step::BadCrc { offset } => {
                    return Err(damaged(&seg.name, offset, self.expected, "crc mismatch"));
                }
            }
        }
    }

    /// Whether a segment after the current one exists, re-listing the directory if needed.
    fn newer_segment_exists(&mut self) -> Result<bool> {
        if self.seg + 1 < self.segs.len() {
            return Ok(true);
        }
        let segs = segment::list_segments(&*self.reader.io, &self.reader.dir)?;
        let current = self.segs[self.seg].first_seq;
        if segs.iter().any(|s| s.first_seq > current) {
            self.segs = segs;
            self.seg = self
                .segs
                .iter()
                .position(|s| s.first_seq == current)
                .unwrap_or(self.seg);
            return Ok(true);
        }
        Ok(false)
    }

    /// Lists the directory when there were no segments yet.
    fn reopen_listing(&mut self) -> Result<bool> {
        self.segs = segment::list_segments(&*self.reader.io, &self.reader.dir)?;
        self.seg = 0;
        self.expected = self.segs.first().map_or(1, |s| s.first_seq);
        Ok(!self.segs.is_empty())
    }

    /// Opens the current segment at its first record; false if its header is not written yet.
    fn open_current(&mut self) -> Result<bool> {
        let seg = &self.segs[self.seg];
        let file = self
            .reader
            .io
            .open_read(&seg.path)
            .map_err(Error::io("opening segment", &seg.path))?;
        let Some(header) = segment::read_header(seg, &*file)? else {
            return Ok(false);
        };
        if header.first_seq != self.expected {
            return Err(damaged(
                &seg.name,
                0,
                self.expected,
                format!(
                    "segment starts at seq {} where seq {} belongs",
                    header.first_seq, self.expected
                ),
            ));
        }
        if let Some(prev) = self.prev_chain
            && prev != header.chain_in
        {
            return Err(damaged(
                &seg.name,
                0,
                self.expected,
                "segment header's carried-in chain differs from the previous segment's last chain",
            ));
        }
        self.prev_chain = Some(header.chain_in);
        self.cursor = Some(
            Cursor::new(file, SEGMENT_HEADER_LEN)
                .map_err(Error::io("reading segment", &seg.path))?,
        );
        Ok(true)
    }
}

impl Iterator for Entries {
    type Item = Result<StoredEntry>;

    fn next(&mut self) -> Option<Result<StoredEntry>> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Iterator that waits for new entries. Ends only after yielding an error.
pub struct Follow {
    entries: Entries,
    poll: Duration,
}

impl Iterator for Follow {
    type Item = Result<StoredEntry>;

    fn next(&mut self) -> Option<Result<StoredEntry>> {
        loop {
            if self.entries.failed {
                return None;
            }
            if let Some(item) = self.entries.next() {
                return Some(item);
            }
            std::thread::sleep(self.poll);
        }
    }
}
