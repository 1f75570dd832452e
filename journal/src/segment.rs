//! Reading segments: listing them, their headers, a buffered record cursor, and seeking by seq
//! with the sparse index. Shared by the reader, `verify` and the writer's recovery.
//!
//! [`Cursor::next`] classifies what it finds at each offset ([`Step`]) without deciding whether
//! it is damage: an incomplete record at the end of the newest segment is a write in flight to
//! a reader, a torn tail to recovery, and damage to `verify`. Callers decide.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{self, FRAME_LEN, HeaderProblem, SEGMENT_HEADER_LEN, SegmentHeader};
use crate::io::{Io, IoFile, read_full_at};

/// A segment file found in the directory.
#[derive(Clone, Debug)]
pub(crate) struct SegmentFile {
    pub name: String,
    pub path: PathBuf,
    pub first_seq: u64,
}

/// Lists the segments of `dir`, in seq order.
pub(crate) fn list_segments(io: &dyn Io, dir: &Path) -> Result<Vec<SegmentFile>> {
    let names = io.list(dir).map_err(Error::io("listing", dir))?;
    let mut segs: Vec<SegmentFile> = names
        .into_iter()
        .filter_map(|name| {
            let first_seq = format::parse_segment_name(&name)?;
            Some(SegmentFile {
                path: dir.join(&name),
                name,
                first_seq,
            })
        })
        .collect();
    segs.sort_by_key(|s| s.first_seq);
    Ok(segs)
}

/// Builds an [`Error::Damaged`].
pub(crate) fn damaged(segment: &str, offset: u64, seq: u64, reason: impl Into<String>) -> Error {
    Error::Damaged {
        segment: segment.to_string(),
        offset,
        seq,
        reason: reason.into(),
    }
}

/// Reads and checks a segment's header. `Ok(None)`: the file is shorter than a header.
pub(crate) fn read_header(seg: &SegmentFile, file: &dyn IoFile) -> Result<Option<SegmentHeader>> {
    let mut b = [0u8; SEGMENT_HEADER_LEN as usize];
    let n = read_full_at(file, &mut b, 0).map_err(Error::io("reading segment", &seg.path))?;
    match format::decode_segment_header(&b[..n]) {
        Ok(h) if h.first_seq != seg.first_seq => Err(damaged(
            &seg.name,
            0,
            seg.first_seq,
            format!(
                "segment header says first seq {} but the file name says {}",
                h.first_seq, seg.first_seq
            ),
        )),
        Ok(h) => Ok(Some(h)),
        Err(HeaderProblem::Short) => Ok(None),
        Err(HeaderProblem::Corrupt(why)) => Err(damaged(&seg.name, 0, seg.first_seq, why)),
        Err(HeaderProblem::Version(found)) => Err(Error::UnsupportedFormat {
            segment: seg.name.clone(),
            found,
            expected: format::FORMAT_VERSION,
        }),
    }
}

/// What a [`Cursor`] finds at its position.
#[derive(Debug)]
pub(crate) enum Step<'a> {
    /// A whole record whose CRC matches: frame and body.
    Record { offset: u64, bytes: &'a [u8] },
    /// The file ends exactly here.
    End,
    /// The file ends inside a record (or inside its frame).
    Incomplete { offset: u64 },
    /// The frame's length cannot be a record's.
    BadLength { offset: u64 },
    /// The record's bytes do not match its CRC.
    BadCrc { offset: u64 },
}

const CHUNK: usize = 256 * 1024;

/// Buffered sequential reader of records, or a reader of the whole file mapped in memory.
pub(crate) struct Cursor {
    file: Box<dyn IoFile>,
    buf: Vec<u8>,
    /// The file mapped whole ([`Cursor::mapped`]); then `buf` is unused and `start` is 0.
    map: Option<memmap2::Mmap>,
    /// File offset of `buf[0]`.
    start: u64,
    /// Next record starts at `buf[head]`.
    head: usize,
    /// `buf[..end]` holds file bytes.
    end: usize,
    /// File length as last seen; refreshed only when a record seems to pass it.
    file_len: u64,
    /// How much to read ahead at once.
    chunk: usize,
}

impl Cursor {
    /// A cursor at `offset` of `file`.
    pub fn new(file: Box<dyn IoFile>, offset: u64) -> io::Result<Cursor> {
        Cursor::with_read_ahead(file, offset, CHUNK)
    }

    /// A cursor that reads ahead `chunk` bytes at a time (more when a record needs it).
    pub fn with_read_ahead(file: Box<dyn IoFile>, offset: u64, chunk: usize) -> io::Result<Cursor> {
        let file_len = file.len()?;
        Ok(Cursor {
            file,
            buf: Vec::new(),
            map: None,
            start: offset,
            head: 0,
            end: 0,
            file_len,
            chunk,
        })
    }

    /// A cursor at `offset` of `file` mapped whole, when the file can be mapped (else
    /// [`Cursor::new`]): records are checked where they lie, not copied first. Only for a file
    /// that does not change while it is read (the newest segment under the writer's lock).
    pub fn mapped(file: Box<dyn IoFile>, offset: u64) -> io::Result<Cursor> {
        let Some(map) = file.map()? else {
            return Cursor::new(file, offset);
        };
        let len = map.len();
        Ok(Cursor {
            file,
            buf: Vec::new(),
            head: usize::try_from(offset).unwrap_or(usize::MAX).min(len),
            end: len,
            file_len: len as u64,
            map: Some(map),
            start: 0,
            chunk: CHUNK,
        })
    }

    /// The bytes held: the read-ahead buffer, or the whole mapped file.
    fn data(&self) -> &[u8] {
        match &self.map {
            Some(map) => &map[..self.end],
            None => &self.buf[..self.end],
        }
    }

    /// File offset of the next record.
    pub fn offset(&self) -> u64 {
        self.start + self.head as u64
    }

    /// The file being read.
    pub fn file(&self) -> &dyn IoFile {
        &*self.file
    }

    /// Makes `need` bytes available from `head`; false if the file ends first.
    fn fill(&mut self, need: usize) -> io::Result<bool> {
        if self.end - self.head >= need {
            return Ok(true);
        }
        if self.map.is_some() {
            // The whole file is there: what is missing is past its end.
            return Ok(false);
        }
        if self.head > 0 {
            self.buf.copy_within(self.head..self.end, 0);
            self.start += self.head as u64;
            self.end -= self.head;
            self.head = 0;
        }
        // Read ahead a chunk, but no more than the file holds: small segments stay cheap.
        let remaining =
            usize::try_from(self.file_len.saturating_sub(self.start)).unwrap_or(usize::MAX);
        let want = need.max(self.chunk.min(remaining));
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        while self.end < need {
            let n = read_full_at(
                &*self.file,
                &mut self.buf[self.end..],
                self.start + self.end as u64,
            )?;
            if n == 0 {
                return Ok(false);
            }
            self.end += n;
        }
        Ok(true)
    }

    /// Reads the record at the current position; advances past it only when it is whole and
    /// CRC-valid.
    pub fn next(&mut self) -> io::Result<Step<'_>> {
        let offset = self.offset();
        if !self.fill(FRAME_LEN)? {
            return Ok(if self.end == self.head {
                Step::End
            } else {
                Step::Incomplete { offset }
            });
        }
        let data = self.data();
        let len_bytes: [u8; 4] = [
            data[self.head],
            data[self.head + 1],
            data[self.head + 2],
            data[self.head + 3],
        ];
        let len = u32::from_le_bytes(len_bytes);
        if !format::plausible_body_len(len) {
            return Ok(Step::BadLength { offset });
        }
        let total = FRAME_LEN + len as usize;
        // Check the length against the file before allocating for it.
        if offset + total as u64 > self.file_len {
            self.file_len = self.file.len()?;
            if offset + total as u64 > self.file_len {
                return Ok(Step::Incomplete { offset });
            }
        }
        if !self.fill(total)? {
            return Ok(Step::Incomplete { offset });
        }
        let bytes = &self.data()[self.head..self.head + total];
        if !format::record_crc_ok(bytes) {
            return Ok(Step::BadCrc { offset });
        }
        self.head += total;
        Ok(Step::Record {
            offset,
            bytes: &self.data()[self.head - total..self.head],
        })
    }
}

/// A record checked against its expected place in the journal.
pub(crate) struct Checked<'a> {
    pub view: format::RecordView<'a>,
    pub header: format::Header,
}

/// Splits and decodes a CRC-valid record, and checks its seq and, when `prev_chain` is known,
/// its chain.
pub(crate) fn check_record<'a>(
    seg: &str,
    offset: u64,
    bytes: &'a [u8],
    expected_seq: u64,
    prev_chain: Option<&[u8; 32]>,
) -> Result<Checked<'a>> {
    let view = format::parse_body(&bytes[FRAME_LEN..])
        .map_err(|why| damaged(seg, offset, expected_seq, why))?;
    let header = format::decode_header(view.header)
        .map_err(|why| damaged(seg, offset, expected_seq, why))?;
    if header.seq != expected_seq {
        return Err(damaged(
            seg,
            offset,
            expected_seq,
            format!(
                "record holds seq {} where seq {expected_seq} belongs (seqs must be dense)",
                header.seq
            ),
        ));
    }
    if let Some(prev) = prev_chain
        && format::chain(prev, view.header, &view.payload_sha) != view.chain
    {
        return Err(damaged(
            seg,
            offset,
            expected_seq,
            "chain hash mismatch (entry or its predecessor was altered)",
        ));
    }
    Ok(Checked { view, header })
}

/// Loads the index hints of a segment; a missing or unreadable index gives none.
pub(crate) fn load_hints(io: &dyn Io, dir: &Path, first_seq: u64) -> Vec<(u64, u64)> {
    let path = dir.join(format::index_name(first_seq));
    let Ok(f) = io.open_read(&path) else {
        return Vec::new();
    };
    let Ok(len) = f.len() else { return Vec::new() };
    // An index has one 20-byte hint per 64 KiB of segment; cap what we read for a sane size.
    let len = len.min(64 << 20) as usize;
    let mut bytes = vec![0u8; len];
    match read_full_at(&*f, &mut bytes, 0) {
        Ok(n) => format::decode_index(&bytes[..n]),
        Err(_) => Vec::new(),
    }
}

/// A cursor positioned to read a segment from some record on.
pub(crate) struct Positioned {
    pub cursor: Cursor,
    /// Seq of the record at the cursor.
    pub expected: u64,
    /// Chain of the record before the cursor, when known (always at the segment's start).
    pub prev_chain: Option<[u8; 32]>,
}

/// Opens `seg` at the best place to start reading for `seq`: the last index hint at or before
/// `seq` that checks out, else the first record. `Ok(None)`: the header is not written yet.
pub(crate) fn seek(
    io: &dyn Io,
    dir: &Path,
    seg: &SegmentFile,
    seq: u64,
) -> Result<Option<Positioned>> {
    let open = || {
        io.open_read(&seg.path)
            .map_err(Error::io("opening segment", &seg.path))
    };
    let file = open()?;
    let Some(header) = read_header(seg, &*file)? else {
        return Ok(None);
    };
    let hints = load_hints(io, dir, seg.first_seq);
    if let Some(&(hint_seq, hint_off)) = hints.iter().rev().find(|&&(s, _)| s <= seq)
        && hint_seq > seg.first_seq
        && hint_off >= SEGMENT_HEADER_LEN
        && hint_is_good(open()?, hint_seq, hint_off)
    {
        let cursor =
            Cursor::new(open()?, hint_off).map_err(Error::io("reading segment", &seg.path))?;
        return Ok(Some(Positioned {
            cursor,
            expected: hint_seq,
            prev_chain: None,
        }));
    }
    let cursor =
        Cursor::new(file, SEGMENT_HEADER_LEN).map_err(Error::io("reading segment", &seg.path))?;
    Ok(Some(Positioned {
        cursor,
        expected: seg.first_seq,
        prev_chain: Some(header.chain_in),
    }))
}

/// Whether a whole, CRC-valid record of seq `seq` starts at `offset`.
fn hint_is_good(file: Box<dyn IoFile>, seq: u64, offset: u64) -> bool {
    // One record is wanted: read little ahead.
    let Ok(mut c) = Cursor::with_read_ahead(file, offset, 4096) else {
        return false;
    };
    match c.next() {
        Ok(Step::Record { bytes, .. }) => format::parse_body(&bytes[FRAME_LEN..])
            .ok()
            .and_then(|v| format::decode_header_seq(v.header))
            .is_some_and(|s| s == seq),
        _ => false,
    }
}

/// An incomplete record at the end of the newest segment is a write in flight or a torn tail,
/// unless valid records follow it: then it is its length field that is damaged, and reading
/// on (or cutting there) would lose them.
pub(crate) fn check_incomplete(
    seg: &SegmentFile,
    file: &dyn IoFile,
    offset: u64,
    expected: u64,
) -> Result<()> {
    let after = valid_record_after(file, offset + 1, expected.saturating_sub(1))
        .map_err(Error::io("reading segment", &seg.path))?;
    if after {
        let why = "record length runs past the end of the file, yet valid records follow it";
        return Err(damaged(&seg.name, offset, expected, why));
    }
    Ok(())
}

/// Whether any CRC-valid record with a seq above `after_seq` starts anywhere in
/// `file[from..]`. Tells a torn tail (nothing valid after the bad bytes) from damage in the
/// middle (valid records after them). Searches byte by byte, because the bad record's own
/// length may be what is damaged.
pub(crate) fn valid_record_after(file: &dyn IoFile, from: u64, after_seq: u64) -> io::Result<bool> {
    let len = file.len()?;
    if len <= from {
        return Ok(false);
    }
    let mut rest = vec![0u8; (len - from) as usize];
    let n = read_full_at(file, &mut rest, from)?;
    rest.truncate(n);
    let mut at = 0;
    while at + FRAME_LEN <= rest.len() {
        let body_len = u32::from_le_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]]);
        let total = FRAME_LEN + body_len as usize;
        if format::plausible_body_len(body_len)
            && at + total <= rest.len()
            && format::record_crc_ok(&rest[at..at + total])
            && format::parse_body(&rest[at + FRAME_LEN..at + total])
                .ok()
                .and_then(|v| format::decode_header_seq(v.header))
                .is_some_and(|s| s > after_seq)
        {
            return Ok(true);
        }
        at += 1;
    }
    Ok(false)
}
