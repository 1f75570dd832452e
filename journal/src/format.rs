//! The on-disk format, byte by byte. All integers are little-endian.
//!
//! A journal is a directory holding:
//! - `LOCK`: the writer's lock file; its content is the holder's pid.
//! - Segments `NNNNNNNNNNNNNNNNNNNN.seg`, named by the seq of their first entry (20 digits), so a
//!   lexical sort is the seq order. Each starts with a 64-byte header:
//!
//!   | bytes  | field                                                        |
//!   |--------|--------------------------------------------------------------|
//!   | 0..8   | magic `CAUDALJL`                                             |
//!   | 8..12  | format version ([`FORMAT_VERSION`])                          |
//!   | 12..16 | reserved, zero                                               |
//!   | 16..24 | first seq (equals the file name)                             |
//!   | 24..56 | chain carried in: the chain of the previous segment's last entry (zeros for seq 1) |
//!   | 56..60 | reserved, zero                                               |
//!   | 60..64 | CRC32C of bytes 0..60                                        |
//!
//!   Then records, back to back. A record is `len: u32`, `crc: u32`, then `len` bytes of body;
//!   `crc` is CRC32C over the 4 length bytes and the body, so a damaged length is caught too.
//!   The body is:
//!
//!   | bytes        | field                                                    |
//!   |--------------|----------------------------------------------------------|
//!   | 0..4         | `header_len`                                             |
//!   | 4..12        | payload length (also kept when the payload is compacted) |
//!   | 12           | 0 = payload inline, 1 = payload compacted (absent)       |
//!   | 13..45       | SHA-256 of the payload                                   |
//!   | 45..77       | chain = SHA-256(previous chain ‖ header bytes ‖ payload SHA-256) |
//!   | 77..         | header: bincode (standard config) of (seq, time, run, pipeline, kind) |
//!   | then         | the payload bytes, when inline                           |
//!
//!   The chain covers the header bytes exactly as stored and only the payload's hash, so
//!   verifying it never reads payloads, and compaction may drop them without breaking it.
//! - Sparse indexes `NNNNNNNNNNNNNNNNNNNN.idx`, one per segment: an 8-byte magic `CAUDALIX`, a
//!   `u32` format version, then 20-byte hints `seq: u64, offset: u64, crc32c: u32` (CRC over the
//!   16 bytes before it), one for each 64 KiB of records. Hints are never trusted: a reader
//!   checks that the record at `offset` has CRC-valid bytes and that seq, and falls back to a scan
//!   otherwise. So the index needs no fsync and may lag or be missing.
//!
//! Decoding never trusts a length: record lengths are checked against the file's size before
//! anything is allocated, and bincode decodes with a byte limit.

use bincode::config::{Configuration, Limit};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::entry::{EntryKind, RunId, Timestamp};

/// On-disk format version, stored in every segment header.
pub const FORMAT_VERSION: u32 = 1;

pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"CAUDALJL";
pub(crate) const SEGMENT_HEADER_LEN: u64 = 64;
pub(crate) const SEGMENT_EXT: &str = "seg";
pub(crate) const INDEX_EXT: &str = "idx";
pub(crate) const INDEX_MAGIC: [u8; 8] = *b"CAUDALIX";
pub(crate) const INDEX_HEADER_LEN: u64 = 12;
pub(crate) const INDEX_HINT_LEN: usize = 20;
/// One index hint per this many bytes of records.
pub(crate) const INDEX_EVERY: u64 = 64 * 1024;

pub(crate) const FRAME_LEN: usize = 8;
pub(crate) const BODY_FIXED: usize = 77;
/// Largest record body; bigger entries are refused at append, bigger lengths on disk are damage.
pub(crate) const MAX_BODY: usize = 1 << 30;
/// Upper bound for one decoded entry header, so garbage cannot make bincode allocate more.
const HEADER_LIMIT: usize = 64 << 20;

pub(crate) const ZERO_CHAIN: [u8; 32] = [0; 32];

pub(crate) fn bincode_config()
-> Configuration<bincode::config::LittleEndian, bincode::config::Varint, Limit<HEADER_LIMIT>> {
    bincode::config::standard().with_limit::<HEADER_LIMIT>()
}

/// File name of the segment whose first entry is `first_seq`.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.{SEGMENT_EXT}")
}

/// File name of the index of the segment whose first entry is `first_seq`.
pub(crate) fn index_name(first_seq: u64) -> String {
    format!("{first_seq:020}.{INDEX_EXT}")
}

/// The first seq a segment file name stands for, if it is a segment name.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_EXT)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub first_seq: u64,
    pub chain_in: [u8; 32],
}

/// Why a segment header did not decode.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    /// Fewer than 64 bytes.
    Short,
    /// Magic, CRC or reserved bytes wrong.
    Corrupt(&'static str),
    /// Intact, but of another format version.
    Version(u32),
}

pub(crate) fn encode_segment_header(h: &SegmentHeader) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0..8].copy_from_slice(&SEGMENT_MAGIC);
    b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[16..24].copy_from_slice(&h.first_seq.to_le_bytes());
    b[24..56].copy_from_slice(&h.chain_in);
    let crc = crc32c::crc32c(&b[0..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

pub(crate) fn decode_segment_header(b: &[u8]) -> Result<SegmentHeader, HeaderProblem> {
    let b: &[u8; 64] = b
        .get(..64)
        .and_then(|s| s.try_into().ok())
        .ok_or(HeaderProblem::Short)?;
    if b[0..8] != SEGMENT_MAGIC {
        return Err(HeaderProblem::Corrupt("bad segment magic"));
    }
    if crc32c::crc32c(&b[0..60]) != u32_at(b, 60) {
        return Err(HeaderProblem::Corrupt("segment header crc mismatch"));
    }
    let version = u32_at(b, 8);
    if version != FORMAT_VERSION {
        return Err(HeaderProblem::Version(version));
    }
    if b[12..16] != [0; 4] || b[56..60] != [0; 4] {
        return Err(HeaderProblem::Corrupt(
            "segment header reserved bytes are not zero",
        ));
    }
    let mut chain_in = [0u8; 32];
    chain_in.copy_from_slice(&b[24..56]);
    Ok(SegmentHeader {
        first_seq: u64_at(b, 16),
        chain_in,
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The metadata part of an entry, as encoded into the chained header (borrowed for writing).
#[derive(Serialize)]
pub(crate) struct HeaderRef<'a> {
    pub seq: u64,
    pub time: Timestamp,
    pub run: Option<RunId>,
    pub pipeline: &'a str,
    pub kind: &'a EntryKind,
}

/// The metadata part of an entry, decoded. Same field order as [`HeaderRef`].
#[derive(Deserialize)]
pub(crate) struct Header {
    pub seq: u64,
    pub time: Timestamp,
    pub run: Option<RunId>,
    pub pipeline: String,
    pub kind: EntryKind,
}

/// Decodes an entry header, requiring every byte to be used.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<Header, String> {
    match bincode::serde::decode_from_slice::<Header, _>(bytes, bincode_config()) {
        Ok((h, used)) if used == bytes.len() => Ok(h),
        Ok((_, used)) => Err(format!(
            "entry header has {} trailing bytes",
            bytes.len() - used
        )),
        Err(e) => Err(format!("entry header does not decode: {e}")),
    }
}

/// Decodes just the seq and time at the front of an entry header.
pub(crate) fn decode_header_seq_time(bytes: &[u8]) -> Option<(u64, Timestamp)> {
    bincode::serde::decode_from_slice::<(u64, Timestamp), _>(bytes, bincode_config())
        .ok()
        .map(|(st, _)| st)
}

/// Decodes just the seq at the front of an entry header.
pub(crate) fn decode_header_seq(bytes: &[u8]) -> Option<u64> {
    bincode::serde::decode_from_slice::<u64, _>(bytes, bincode_config())
        .ok()
        .map(|(s, _)| s)
}

/// SHA-256 of a payload.
pub(crate) fn payload_sha(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(payload).into()
}

/// `SHA-256(prev ‖ header ‖ payload_sha)`.
pub(crate) fn chain(prev: &[u8; 32], header: &[u8], payload_sha: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(header);
    h.update(payload_sha);
    h.finalize().into()
}

/// Appends one record to `buf` and returns its chain. `payload` is stored inline;
/// `payload_sha` is its SHA-256.
pub(crate) fn encode_record(
    buf: &mut Vec<u8>,
    prev_chain: &[u8; 32],
    header: &HeaderRef<'_>,
    payload: &[u8],
    payload_sha: &[u8; 32],
) -> Result<[u8; 32], crate::Error> {
    let start = buf.len();
    buf.resize(start + FRAME_LEN + BODY_FIXED, 0);
    let header_start = buf.len();
    if let Err(e) = bincode::serde::encode_into_std_write(header, buf, bincode_config()) {
        buf.truncate(start);
        return Err(crate::Error::Encode(e.to_string()));
    }
    let header_len = buf.len() - header_start;
    let body_len = BODY_FIXED + header_len + payload.len();
    if body_len > MAX_BODY {
        buf.truncate(start);
        return Err(crate::Error::EntryTooLarge {
            bytes: body_len as u64,
            max: MAX_BODY as u64,
        });
    }
    let chain = chain(prev_chain, &buf[header_start..], payload_sha);
    buf.extend_from_slice(payload);

    let body = start + FRAME_LEN;
    buf[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    buf[body..body + 4].copy_from_slice(&(header_len as u32).to_le_bytes());
    buf[body + 4..body + 12].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    buf[body + 12] = 0;
    buf[body + 13..body + 45].copy_from_slice(payload_sha);
    buf[body + 45..body + 77].copy_from_slice(&chain);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[start..start + 4]), &buf[body..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(chain)
}

/// Whether `len` is a body length a record may have.
pub(crate) fn plausible_body_len(len: u32) -> bool {
    (BODY_FIXED..=MAX_BODY).contains(&(len as usize))
}

/// Checks the CRC of a whole record (frame and body).
pub(crate) fn record_crc_ok(record: &[u8]) -> bool {
    if record.len() < FRAME_LEN {
        return false;
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&record[0..4]), &record[FRAME_LEN..]);
    crc == u32_at(record, 4)
}

/// A record body, split into its parts (nothing decoded yet).
#[derive(Debug)]
pub(crate) struct RecordView<'a> {
    pub header: &'a [u8],
    /// `None` when the payload was compacted away.
    pub payload: Option<&'a [u8]>,
    pub payload_len: u64,
    pub payload_sha: [u8; 32],
    pub chain: [u8; 32],
}

/// Splits a record body (the bytes after the 8-byte frame) into its parts.
pub(crate) fn parse_body(body: &[u8]) -> Result<RecordView<'_>, &'static str> {
    if body.len() < BODY_FIXED {
        return Err("record body is shorter than its fixed part");
    }
    let header_len = u32_at(body, 0) as usize;
    let payload_len = u64_at(body, 4);
    let flag = body[12];
    let rest = body.len() - BODY_FIXED;
    if header_len > rest {
        return Err("entry header length exceeds the record");
    }
    let header = &body[BODY_FIXED..BODY_FIXED + header_len];
    let payload = match flag {
        0 => {
            if payload_len != (rest - header_len) as u64 {
                return Err("payload length disagrees with the record length");
            }
            Some(&body[BODY_FIXED + header_len..])
        }
        1 => {
            if rest != header_len {
                return Err("compacted record carries payload bytes");
            }
            None
        }
        _ => return Err("unknown payload flag"),
    };
    let mut payload_sha = [0u8; 32];
    payload_sha.copy_from_slice(&body[13..45]);
    let mut chain = [0u8; 32];
    chain.copy_from_slice(&body[45..77]);
    Ok(RecordView {
        header,
        payload,
        payload_len,
        payload_sha,
        chain,
    })
}

/// Encodes one index hint.
pub(crate) fn encode_hint(out: &mut Vec<u8>, seq: u64, offset: u64) {
    let start = out.len();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The index file's header.
pub(crate) fn index_header() -> [u8; INDEX_HEADER_LEN as usize] {
    let mut b = [0u8; INDEX_HEADER_LEN as usize];
    b[0..8].copy_from_slice(&INDEX_MAGIC);
    b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b
}

/// Decodes an index file: the hints of its valid prefix, in order. Anything odd yields fewer hints.
pub(crate) fn decode_index(bytes: &[u8]) -> Vec<(u64, u64)> {
    let h = INDEX_HEADER_LEN as usize;
    if bytes.len() < h || bytes[..h] != index_header() {
        return Vec::new();
    }
    let mut hints = Vec::new();
    for c in bytes[h..].chunks_exact(INDEX_HINT_LEN) {
        if crc32c::crc32c(&c[..16]) != u32_at(c, 16) {
            break;
        }
        let (seq, off) = (u64_at(c, 0), u64_at(c, 8));
        // Hints must increase; a stale tail (e.g. after a recovery cut) ends the valid prefix.
        if hints.last().is_some_and(|&(s, o)| s >= seq || o >= off) {
            break;
        }
        hints.push((seq, off));
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_by_seq_and_parse_back() {
        assert_eq!(segment_name(1), "00000000000000000001.seg");
        assert_eq!(parse_segment_name("00000000000000000042.seg"), Some(42));
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        for bad in [
            "42.seg",
            "0000000000000000004x.seg",
            "00000000000000000042.idx",
            "00000000000000000042seg",
            "99999999999999999999.seg",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
        assert!(segment_name(9) < segment_name(10));
    }

    #[test]
    fn segment_header_round_trips_and_detects_every_flip() {
        let h = SegmentHeader {
            first_seq: 77,
            chain_in: [9; 32],
        };
        let b = encode_segment_header(&h);
        assert_eq!(decode_segment_header(&b), Ok(h));
        assert_eq!(decode_segment_header(&b[..63]), Err(HeaderProblem::Short));
        for i in 0..64 {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(
                decode_segment_header(&c).is_err(),
                "flip at {i} went unnoticed"
            );
        }
    }

    #[test]
    fn other_format_version_is_reported_as_such() {
        let mut b = encode_segment_header(&SegmentHeader {
            first_seq: 1,
            chain_in: ZERO_CHAIN,
        });
        b[8..12].copy_from_slice(&7u32.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_segment_header(&b), Err(HeaderProblem::Version(7)));
    }

    #[test]
    fn record_round_trips_through_parse_and_chain() {
        let kind = EntryKind::RunFailed {
            error: "boom".into(),
            elapsed_us: 5,
        };
        let hdr = HeaderRef {
            seq: 3,
            time: 11,
            run: Some(RunId(4)),
            pipeline: "p",
            kind: &kind,
        };
        let mut buf = vec![0xAA];
        let sha: [u8; 32] = Sha256::digest(b"payload").into();
        let c = encode_record(&mut buf, &[1; 32], &hdr, b"payload", &sha).unwrap();
        let rec = &buf[1..];
        assert!(record_crc_ok(rec));
        let len = u32_at(rec, 0) as usize;
        assert_eq!(len + FRAME_LEN, rec.len());
        let v = parse_body(&rec[FRAME_LEN..]).unwrap();
        assert_eq!(v.payload, Some(&b"payload"[..]));
        assert_eq!(v.chain, c);
        assert_eq!(chain(&[1; 32], v.header, &v.payload_sha), c);
        let h = decode_header(v.header).unwrap();
        assert_eq!(
            (h.seq, h.time, h.run, h.pipeline.as_str(), h.kind),
            (3, 11, Some(RunId(4)), "p", kind)
        );
        assert_eq!(decode_header_seq(v.header), Some(3));
        for i in 0..rec.len() {
            let mut r = rec.to_vec();
            r[i] ^= 1;
            assert!(!record_crc_ok(&r), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn index_keeps_only_the_valid_increasing_prefix() {
        let mut b = index_header().to_vec();
        encode_hint(&mut b, 1, 64);
        encode_hint(&mut b, 9, 70_000);
        encode_hint(&mut b, 5, 80_000); // goes backwards: stale
        encode_hint(&mut b, 20, 200_000);
        assert_eq!(decode_index(&b), vec![(1, 64), (9, 70_000)]);
        b[INDEX_HEADER_LEN as usize + 3] ^= 1;
        assert_eq!(decode_index(&b), vec![]);
        assert_eq!(decode_index(b"CAUDAL"), vec![]);
    }
}
