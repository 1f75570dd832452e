//! Damage and torn tails: a flipped byte anywhere in a segment is caught by `verify` at the right
//! seq; a cut at any byte offset reopens with every whole record before it kept.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use caudal_journal::{
    Durability, Entry, EntryKind, Error, Journal, Reader, Recovery, StoredEntry, verify,
};
use common::*;
use proptest::prelude::*;

/// A journal written once, kept as bytes, with every record's place.
struct Reference {
    files: BTreeMap<String, Vec<u8>>,
    records: Vec<StoredEntry>,
}

impl Reference {
    fn build(payload_lens: &[usize], segment_bytes: u64) -> Reference {
        let dir = tempdir();
        let j = open(dir.path(), Durability::Never, segment_bytes);
        for (i, &len) in payload_lens.iter().enumerate() {
            let mut e = tagged(i as u64, len);
            if i % 3 == 1 {
                e.kind = EntryKind::RunFailed {
                    error: format!("error {i}"),
                    elapsed_us: i as u64,
                };
            }
            j.append_blocking(e).unwrap();
        }
        j.close().unwrap();
        let records = Reader::open(dir.path())
            .unwrap()
            .entries_from(1)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        Reference {
            files: snapshot(dir.path()),
            records,
        }
    }

    fn segments(&self) -> Vec<(String, u64)> {
        segment_names(&self.files)
            .into_iter()
            .map(|n| (n.clone(), n[..20].parse().unwrap()))
            .collect()
    }

    fn entries(&self) -> Vec<Entry> {
        self.records.iter().map(|r| r.entry.clone()).collect()
    }
}

fn flip_reference() -> &'static Reference {
    static R: OnceLock<Reference> = OnceLock::new();
    R.get_or_init(|| {
        Reference::build(
            &[0, 5, 300, 0, 70_000, 20, 0, 1000, 3, 0, 150, 64, 0, 9],
            1500,
        )
    })
}

/// The segment and in-segment offset of byte `pos` of the concatenated segments.
fn locate(files: &BTreeMap<String, Vec<u8>>, mut pos: usize) -> (String, usize) {
    for name in segment_names(files) {
        let len = files[&name].len();
        if pos < len {
            return (name, pos);
        }
        pos -= len;
    }
    unreachable!("position past the segments")
}

fn seg_total(files: &BTreeMap<String, Vec<u8>>) -> usize {
    segment_names(files).iter().map(|n| files[n].len()).sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn a_flipped_byte_anywhere_in_a_segment_is_caught_at_its_seq(pos in 0usize..1_000_000, mask in 1u8..=255) {
        let r = flip_reference();
        let (seg, off) = locate(&r.files, pos % seg_total(&r.files));
        check_flip(r, &seg, off, mask)?;
    }
}

/// Every byte of every segment header, record frame and record layout fields (header length,
/// payload length, payload flag), flipped: the bytes where a wrong value could mislead the
/// decoder rather than just fail a hash.
#[test]
fn a_flipped_structural_byte_is_caught_at_its_seq() {
    let r = flip_reference();
    let mut positions: Vec<(String, usize)> = Vec::new();
    for (seg, _) in r.segments() {
        positions.extend((0..64).map(|o| (seg.clone(), o)));
    }
    for rec in &r.records {
        let start = rec.offset as usize;
        positions.extend((start..start + 8 + 13).map(|o| (rec.segment.clone(), o)));
    }
    for (i, (seg, off)) in positions.iter().enumerate() {
        for mask in [1u8 << (i % 8), 0xFF] {
            check_flip(r, seg, *off, mask)
                .unwrap_or_else(|e| panic!("{seg} byte {off} ^ {mask:#x}: {e}"));
        }
    }
}

/// Flips `mask` into byte `off` of `seg` in a copy of the reference, and checks that verify,
/// a reader and the writer's open each react as they must.
fn check_flip(r: &Reference, seg: &str, off: usize, mask: u8) -> Result<(), TestCaseError> {
    let seg = seg.to_string();
    {
        let first_seq: u64 = seg[..20].parse().unwrap();
        // The damaged seq: the segment's first for a header byte, else the record's own.
        let (bad_seq, bad_offset, last_record_of_journal) = if off < 64 {
            (first_seq, 0, false)
        } else {
            let rec = r
                .records
                .iter()
                .find(|x| x.segment == seg && (x.offset..x.offset + x.len).contains(&(off as u64)))
                .unwrap();
            (
                rec.entry.seq,
                rec.offset,
                rec.entry.seq == r.records.len() as u64,
            )
        };
        let mut files = r.files.clone();
        files.get_mut(&seg).unwrap()[off] ^= mask;
        let dir = tempdir();
        restore(dir.path(), &files);

        match verify(dir.path()) {
            Err(Error::Damaged {
                segment,
                offset,
                seq,
                ..
            }) => {
                prop_assert_eq!(
                    (segment.as_str(), offset, seq),
                    (seg.as_str(), bad_offset, bad_seq)
                );
            }
            other => prop_assert!(
                false,
                "verify gave {:?} for a flip at {} byte {}",
                other,
                seg,
                off
            ),
        }

        // A reader returns only intact entries before the damage, then the same error; only
        // a record at the very end may read as a write still in flight.
        let reader = Reader::open(dir.path()).unwrap();
        let mut read = Vec::new();
        let mut error = None;
        match reader.entries_from(1) {
            Err(e) => error = Some(e),
            Ok(entries) => {
                for e in entries {
                    match e {
                        Ok(e) => read.push(e.entry),
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
            }
        }
        prop_assert_eq!(&read[..], &r.entries()[..read.len()]);
        match error {
            Some(Error::Damaged { seq, .. }) => prop_assert_eq!(seq, bad_seq),
            Some(other) => prop_assert!(false, "reader gave {}", other),
            None => prop_assert!(last_record_of_journal && read.len() as u64 == bad_seq - 1),
        }

        check_writer_open(dir.path(), r, &seg, off, bad_seq, bad_offset)?;
    }
    Ok(())
}

/// Opening for writing either refuses with the same seq, or cuts only a final record as a torn
/// tail. (Open checks headers, the end of the previous segment and the whole newest segment;
/// damage deeper inside older segments is `verify`'s to find.)
fn check_writer_open(
    dir: &Path,
    r: &Reference,
    seg: &str,
    off: usize,
    bad_seq: u64,
    bad_offset: u64,
) -> Result<(), TestCaseError> {
    let segs = r.segments();
    let newest = &segs[segs.len() - 1].0;
    let second_newest = &segs[segs.len() - 2].0;
    match Journal::open(dir, opts(Durability::Never, 1500)) {
        Err(Error::Damaged { seq, .. }) => prop_assert_eq!(seq, bad_seq),
        Err(other) => prop_assert!(false, "open gave {}", other),
        Ok(j) => {
            if seg == newest {
                prop_assert!(
                    off >= 64 && bad_seq == r.records.len() as u64,
                    "open accepted damage at seq {}",
                    bad_seq
                );
                let cut = j.recovery().unwrap();
                prop_assert_eq!(cut.offset, bad_offset);
            } else {
                prop_assert!(
                    seg != second_newest && off >= 64,
                    "open accepted damage at seq {} in {}",
                    bad_seq,
                    seg
                );
            }
        }
    }
    Ok(())
}

/// Writes the reference cut at global byte `cut` of its segments: later segments removed (their
/// index files left behind, as a crash could), the segment holding `cut` truncated.
fn cut_copy(r: &Reference, cut: usize, dir: &Path) -> (String, usize) {
    let mut files = r.files.clone();
    let mut left = cut;
    let mut cut_seg = None;
    for name in segment_names(&r.files) {
        let len = r.files[&name].len();
        match cut_seg {
            Some(_) => {
                files.remove(&name);
            }
            None if left < len
                || (left == len && name == *segment_names(&r.files).last().unwrap()) =>
            {
                files.get_mut(&name).unwrap().truncate(left);
                cut_seg = Some((name.clone(), left));
            }
            None => left -= len,
        }
    }
    restore(dir, &files);
    cut_seg.unwrap()
}

fn cut_everywhere(r: &Reference) {
    let total = seg_total(&r.files);
    for cut in 0..=total {
        let dir = tempdir();
        let (seg, seg_len) = cut_copy(r, cut, dir.path());
        let seg_first: u64 = seg[..20].parse().unwrap();
        // Whole records before the cut, and where the last of them ends in the cut segment.
        let kept: Vec<&StoredEntry> = r
            .records
            .iter()
            .filter(|x| {
                x.entry.seq < seg_first || (x.segment == seg && x.offset + x.len <= seg_len as u64)
            })
            .collect();
        let whole_end = match kept.last() {
            Some(x) if x.segment == seg => (x.offset + x.len) as usize,
            _ if seg_len < 64 => 0,
            _ => 64,
        };
        let torn = seg_len - whole_end;

        let j = Journal::open(dir.path(), opts(Durability::Never, 1 << 20))
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let want_cut = (torn > 0).then(|| Recovery {
            segment: seg.clone(),
            offset: whole_end as u64,
            bytes_dropped: torn as u64,
        });
        assert_eq!(j.recovery(), want_cut, "cut at {cut}");
        let n = kept.len() as u64 + u64::from(torn > 0);
        assert_eq!(j.last_seq(), n, "cut at {cut}");
        assert_eq!(j.append_blocking(tagged(100, 7)).unwrap().seq, n + 1);
        assert_eq!(j.append_blocking(tagged(101, 0)).unwrap().seq, n + 2);
        j.close().unwrap();

        let report = verify(dir.path()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(
            (report.entries, report.last_seq),
            (n + 2, n + 2),
            "cut at {cut}"
        );
        let read: Vec<Entry> = Reader::open(dir.path())
            .unwrap()
            .entries_from(1)
            .unwrap()
            .map(|e| e.unwrap().entry)
            .collect();
        let kept_entries: Vec<Entry> = kept.iter().map(|x| x.entry.clone()).collect();
        assert_eq!(&read[..kept.len()], &kept_entries[..], "cut at {cut}");
        if torn > 0 {
            let want = EntryKind::JournalRecovered {
                segment: seg.clone(),
                offset: whole_end as u64,
                bytes_dropped: torn as u64,
            };
            assert_eq!(read[kept.len()].kind, want, "cut at {cut}");
        }
    }
}

#[test]
fn a_cut_at_every_offset_of_one_segment_recovers() {
    cut_everywhere(&Reference::build(&[0, 12, 150, 0, 40], 1 << 20));
}

#[test]
fn a_cut_at_every_offset_across_rotated_segments_recovers() {
    let r = Reference::build(&[3, 0, 90, 10, 0, 60, 5], 300);
    assert!(
        r.segments().len() >= 3,
        "want several segments, got {}",
        r.segments().len()
    );
    cut_everywhere(&r);
}

/// Garbage after a bad record that contains a valid record is damage, not a tail: open refuses
/// and changes nothing.
#[test]
fn a_bad_record_followed_by_valid_ones_is_damage_not_a_tail() {
    let r = Reference::build(&[10, 10, 10, 10], 1 << 20);
    let seg = segment_names(&r.files).pop().unwrap();
    let second = &r.records[1];
    let mut files = r.files.clone();
    files.get_mut(&seg).unwrap()[second.offset as usize + 20] ^= 0xFF;
    let dir = tempdir();
    restore(dir.path(), &files);
    let before = snapshot(dir.path());
    let err = Journal::open(dir.path(), opts(Durability::Batch, 1 << 20))
        .err()
        .unwrap();
    match &err {
        Error::Damaged {
            segment,
            offset,
            seq,
            ..
        } => assert_eq!((segment, *offset, *seq), (&seg, second.offset, 2)),
        other => panic!("{other}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with("journal damaged at seq 2 (segment 00000000000000000001.seg, byte"),
        "{text}"
    );
    let mut after = snapshot(dir.path());
    after.remove("LOCK");
    let mut before = before;
    before.remove("LOCK");
    assert_eq!(after, before);
}
