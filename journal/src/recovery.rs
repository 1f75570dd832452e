//! What the writer does on open: check the directory's shape, find the end of the journal, and
//! cut a torn tail.
//!
//! Only the newest segment can have a torn tail: earlier ones were synced before the next one
//! was created. So open checks every segment header, the link between the last two segments
//! (the newest's carried-in chain must be the previous one's last chain), and scans the newest
//! segment record by record. At the first bad spot it decides:
//! - an incomplete record or segment header at the end of the file is torn: cut;
//! - a complete record whose CRC fails, or whose length is impossible, is torn only if no valid
//!   record follows it anywhere in the file; otherwise it is damage;
//! - a CRC-valid record with the wrong seq or chain is damage.
//!
//! Damage makes open fail with [`Error::Damaged`]; nothing is changed on disk in that case.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{self, INDEX_EVERY, SEGMENT_HEADER_LEN, SegmentHeader, ZERO_CHAIN};
use crate::io::{Io, IoFile, write_all_at};
use crate::segment::{self, Cursor, SegmentFile, Step, damaged};

/// What open cut from the journal, if anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Segment file name that was cut.
    pub segment: String,
    /// Offset the segment was cut at.
    pub offset: u64,
    /// Bytes removed.
    pub bytes_dropped: u64,
}

/// The newest segment, ready for appending.
pub(crate) struct Tail {
    pub seg: SegmentFile,
    pub file: Box<dyn IoFile>,
    /// Length of the segment after any cut: where the next record goes.
    pub len: u64,
    pub next_seq: u64,
    pub last_chain: [u8; 32],
    /// Index hints of the segment, rebuilt by the scan.
    pub hints: Vec<(u64, u64)>,
    pub cut: Option<Recovery>,
}

/// Finds the end of the journal in `dir`, cutting a torn tail; creates the first segment of an
/// empty journal.
pub(crate) fn recover(io: &dyn Io, dir: &Path) -> Result<Tail> {
    let segs = segment::list_segments(io, dir)?;
    let Some(last) = segs.last().cloned() else {
        let seg = new_segment_file(dir, 1);
        let file = create_segment(io, dir, &seg, &ZERO_CHAIN)?;
        return Ok(Tail {
            seg,
            file,
            len: SEGMENT_HEADER_LEN,
            next_seq: 1,
            last_chain: ZERO_CHAIN,
            hints: Vec::new(),
            cut: None,
        });
    };
    if segs[0].first_seq != 1 {
        return Err(damaged(
            &segs[0].name,
            0,
            1,
            format!(
                "journal starts at seq {}: the segments before it are missing",
                segs[0].first_seq
            ),
        ));
    }
    for seg in &segs[..segs.len() - 1] {
        let f = io
            .open_read(&seg.path)
            .map_err(Error::io("opening segment", &seg.path))?;
        if segment::read_header(seg, &*f)?.is_none() {
            return Err(damaged(
                &seg.name,
                0,
                seg.first_seq,
                "segment header is incomplete",
            ));
        }
    }
    // The chain and seq the newest segment must carry in.
    let (prev_seq, prev_chain) = match segs.len() {
        1 => (0, ZERO_CHAIN),
        n => segment_end(io, dir, &segs[n - 2])?,
    };
    if last.first_seq != prev_seq + 1 {
        return Err(damaged(
            &last.name,
            0,
            prev_seq + 1,
            format!(
                "segment starts at seq {} but the previous segment ends at seq {prev_seq}",
                last.first_seq
            ),
        ));
    }

    let file = io
        .open_write(&last.path)
        .map_err(Error::io("opening segment", &last.path))?;
    let file_len = file
        .len()
        .map_err(Error::io("reading segment", &last.path))?;
    let header = match segment::read_header(&last, &*file) {
        Ok(h) => h,
        // A header that is garbage with nothing after it is a torn creation, like a short one.
        Err(Error::Damaged { .. }) if file_len <= SEGMENT_HEADER_LEN => None,
        Err(e) => return Err(e),
    };
    let Some(header) = header else {
        let file = create_segment(io, dir, &last, &prev_chain)?;
        let cut = (file_len > 0).then(|| Recovery {
            segment: last.name.clone(),
            offset: 0,
            bytes_dropped: file_len,
        });
        return Ok(Tail {
            seg: last,
            file,
            len: SEGMENT_HEADER_LEN,
            next_seq: prev_seq + 1,
            last_chain: prev_chain,
            hints: Vec::new(),
            cut,
        });
    };
    if header.chain_in != prev_chain {
        return Err(damaged(
            &last.name,
            0,
            last.first_seq,
            "segment header's carried-in chain differs from the previous segment's last chain",
        ));
    }
    scan_newest(io, dir, last, file, file_len, header)
}

/// Scans the newest segment to its end, cutting a torn tail.
fn scan_newest(
    io: &dyn Io,
    dir: &Path,
    seg: SegmentFile,
    file: Box<dyn IoFile>,
    file_len: u64,
    header: SegmentHeader,
) -> Result<Tail> {
    let reader = io
        .open_read(&seg.path)
        .map_err(Error::io("opening segment", &seg.path))?;
    // Mapped: the writer's lock is held, so the file does not change under the scan, which
    // then checks each record in place instead of copying the segment (up to 64 MiB) first.
    let mut cursor = Cursor::mapped(reader, SEGMENT_HEADER_LEN)
        .map_err(Error::io("reading segment", &seg.path))?;
    let mut expected = header.first_seq;
    let mut chain = header.chain_in;
    let mut hints = Vec::new();
    let mut next_hint_at = SEGMENT_HEADER_LEN;
    let cut_at = loop {
        let step = cursor
            .next()
            .map_err(Error::io("reading segment", &seg.path))?;
        match step {
            Step::Record { offset, bytes } => {
                let c = segment::check_record(&seg.name, offset, bytes, expected, Some(&chain))?;
                chain = c.view.chain;
                if offset >= next_hint_at {
                    hints.push((expected, offset));
                    next_hint_at = offset + INDEX_EVERY;
                }
                expected += 1;
            }
            Step::End => break None,
            Step::Incomplete { offset } => {
                segment::check_incomplete(&seg, cursor.file(), offset, expected)?;
                break Some(offset);
            }
            Step::BadLength { offset } | Step::BadCrc { offset } => {
                let after = segment::valid_record_after(
                    cursor.file(),
                    offset + 1,
                    expected.saturating_sub(1),
                )
                .map_err(Error::io("reading segment", &seg.path))?;
                if after {
                    return Err(damaged(
                        &seg.name,
                        offset,
                        expected,
                        "record fails its crc check, yet valid records follow it: not a torn tail",
                    ));
                }
                break Some(offset);
            }
        }
    };
    // The map goes before the file may be cut below it.
    drop(cursor);
    let mut len = file_len;
    let mut cut = None;
    if let Some(offset) = cut_at {
        file.set_len(offset)
            .map_err(Error::io("cutting torn tail of", &seg.path))?;
        file.sync_data().map_err(Error::io("syncing", &seg.path))?;
        cut = Some(Recovery {
            segment: seg.name.clone(),
            offset,
            bytes_dropped: file_len - offset,
        });
        len = offset;
    }
    write_index(io, dir, &seg, &hints)?;
    Ok(Tail {
        seg,
        file,
        len,
        next_seq: expected,
        last_chain: chain,
        hints,
        cut,
    })
}

/// The last seq and chain of a sealed segment, checking that it ends cleanly.
fn segment_end(io: &dyn Io, dir: &Path, seg: &SegmentFile) -> Result<(u64, [u8; 32])> {
    let Some(mut pos) = segment::seek(io, dir, seg, u64::MAX)? else {
        return Err(damaged(
            &seg.name,
            0,
            seg.first_seq,
            "segment header is incomplete",
        ));
    };
    let mut chain = pos.prev_chain;
    loop {
        let step = pos
            .cursor
            .next()
            .map_err(Error::io("reading segment", &seg.path))?;
        match step {
            Step::Record { offset, bytes } => {
                let c =
                    segment::check_record(&seg.name, offset, bytes, pos.expected, chain.as_ref())?;
                chain = Some(c.view.chain);
                pos.expected += 1;
            }
            Step::End => break,
            Step::Incomplete { offset } => {
                return Err(damaged(
                    &seg.name,
                    offset,
                    pos.expected,
                    "incomplete record in a sealed segment",
                ));
            }
            Step::BadLength { offset } => {
                return Err(damaged(
                    &seg.name,
                    offset,
                    pos.expected,
                    "impossible record length",
                ));
            }
            Step::BadCrc { offset } => {
                return Err(damaged(&seg.name, offset, pos.expected, "crc mismatch"));
            }
        }
    }
    // A sealed segment has at least one record, so a chain is known here.
    let chain = chain.ok_or_else(|| {
        damaged(
            &seg.name,
            SEGMENT_HEADER_LEN,
            seg.first_seq,
            "sealed segment holds no records",
        )
    })?;
    Ok((pos.expected - 1, chain))
}

pub(crate) fn new_segment_file(dir: &Path, first_seq: u64) -> SegmentFile {
    let name = format::segment_name(first_seq);
    SegmentFile {
        path: dir.join(&name),
        name,
        first_seq,
    }
}

/// Creates (or rewrites) a segment with its header and an empty index, and makes the directory
/// entry durable. The header's own durability comes with the next fdatasync of the segment.
pub(crate) fn create_segment(
    io: &dyn Io,
    dir: &Path,
    seg: &SegmentFile,
    chain_in: &[u8; 32],
) -> Result<Box<dyn IoFile>> {
    let file = io
        .open_write(&seg.path)
        .map_err(Error::io("creating segment", &seg.path))?;
    let header = format::encode_segment_header(&SegmentHeader {
        first_seq: seg.first_seq,
        chain_in: *chain_in,
    });
    file.set_len(0)
        .map_err(Error::io("creating segment", &seg.path))?;
    write_all_at(&*file, &header, 0).map_err(Error::io("writing segment header", &seg.path))?;
    file.sync_data().map_err(Error::io("syncing", &seg.path))?;
    write_index(io, dir, seg, &[])?;
    io.sync_dir(dir)
        .map_err(Error::io("syncing directory", dir))?;
    Ok(file)
}

/// Rewrites a segment's index with `hints`. The index is a hint file: not synced.
pub(crate) fn write_index(
    io: &dyn Io,
    dir: &Path,
    seg: &SegmentFile,
    hints: &[(u64, u64)],
) -> Result<()> {
    let path = dir.join(format::index_name(seg.first_seq));
    let mut bytes = format::index_header().to_vec();
    for &(s, o) in hints {
        format::encode_hint(&mut bytes, s, o);
    }
    let f = io
        .open_write(&path)
        .map_err(Error::io("opening index", &path))?;
    f.set_len(0).map_err(Error::io("writing index", &path))?;
    write_all_at(&*f, &bytes, 0).map_err(Error::io("writing index", &path))
}
