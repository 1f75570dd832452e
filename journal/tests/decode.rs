//! The decoders never panic, whatever the bytes: random bytes, mutated records (with their CRC
//! fixed up so the mutation reaches the body decoder), and whole directories of garbage fed to
//! the reader, `verify` and the writer's recovery. Bounded case counts keep this to seconds.

mod common;

use std::sync::OnceLock;

use caudal_journal::{Durability, Journal, Reader, decode, verify};
use common::*;
use proptest::prelude::*;

/// Raw records (frame and body) of a small journal, and its first segment's bytes.
fn samples() -> &'static (Vec<Vec<u8>>, Vec<u8>) {
    static S: OnceLock<(Vec<Vec<u8>>, Vec<u8>)> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempdir();
        let j = open(dir.path(), Durability::Never, 1 << 20);
        for (i, len) in [0usize, 7, 200, 0, 33].into_iter().enumerate() {
            j.append_blocking(tagged(i as u64, len)).unwrap();
        }
        j.close().unwrap();
        let seg = std::fs::read(dir.path().join("00000000000000000001.seg")).unwrap();
        let records = Reader::open(dir.path())
            .unwrap()
            .entries_from(1)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                seg[e.offset as usize..(e.offset + e.len) as usize].to_vec()
            })
            .collect();
        (records, seg)
    })
}

/// Re-frames `body` with a correct length and CRC.
fn frame(body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), body);
    let mut out = len.to_vec();
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, muts: &[Mutation]) {
    for m in muts {
        let len = bytes.len().max(1);
        match m {
            Mutation::Set(i, v) if !bytes.is_empty() => bytes[i % len] = *v,
            Mutation::Set(..) => {}
            Mutation::Truncate(n) => bytes.truncate(n % len),
            Mutation::Insert(i, b) => {
                let at = i % (bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let at = i % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
        }
    }
}

/// Exercises every read path on a directory; only panics matter, errors are expected.
fn read_everything(dir: &std::path::Path) {
    if let Ok(r) = Reader::open(dir) {
        let _ = r.segments();
        let _ = r.last_seq();
        for seq in [0, 1, 2, 3, 5, 9, u64::MAX] {
            let _ = r.get(seq);
        }
        if let Ok(entries) = r.entries_from(1) {
            let mut expect = 1;
            for e in entries.take(100) {
                match e {
                    Ok(e) => {
                        assert_eq!(e.entry.seq, expect, "reader yielded a non-dense seq");
                        expect += 1;
                    }
                    Err(_) => break,
                }
            }
        }
    }
    let _ = verify(dir);
    if let Ok(j) = Journal::open(dir, opts(Durability::Never, 1 << 20)) {
        let _ = j.append_blocking(tagged(1, 1));
        let _ = j.close();
        // Whatever recovery accepted, what it leaves behind must verify.
        verify(dir).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_the_decoders(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode::segment_header(&b);
        prop_assert!(decode::record(&b).is_err() || b.len() >= 85);
        let _ = decode::body(&b);
        let _ = decode::index(&b);
    }

    #[test]
    fn mutated_records_never_panic_the_decoders(pick in any::<usize>(), muts in proptest::collection::vec(mutation(), 1..6)) {
        let (records, _) = samples();
        let mut rec = records[pick % records.len()].clone();
        apply(&mut rec, &muts);
        let _ = decode::record(&rec);
        // Past the CRC: mutate the body, then frame it correctly.
        let mut body = records[pick % records.len()][8..].to_vec();
        apply(&mut body, &muts);
        let _ = decode::body(&body);
        let _ = decode::record(&frame(&body));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn garbage_directories_never_panic_reader_verify_or_recovery(
        shape in 0u8..4,
        junk in proptest::collection::vec(any::<u8>(), 0..600),
        muts in proptest::collection::vec(mutation(), 1..5),
        index_junk in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (records, seg) = samples();
        let bytes = match shape {
            // Pure garbage.
            0 => junk.clone(),
            // A valid header, then garbage.
            1 => [&seg[..64], &junk[..]].concat(),
            // A valid segment, mutated (CRCs mostly break).
            2 => { let mut s = seg.clone(); apply(&mut s, &muts); s }
            // A valid segment followed by a CRC-valid record whose body is mutated.
            _ => {
                let mut body = records[junk.len() % records.len()][8..].to_vec();
                apply(&mut body, &muts);
                [&seg[..], &frame(&body)[..]].concat()
            }
        };
        let dir = tempdir();
        std::fs::write(dir.path().join("00000000000000000001.seg"), &bytes).unwrap();
        std::fs::write(dir.path().join("00000000000000000001.idx"), [&b"CAUDALIX\x01\0\0\0"[..], &index_junk[..]].concat()).unwrap();
        if shape == 3 {
            // A second segment whose name claims a later seq.
            std::fs::write(dir.path().join("00000000000000000009.seg"), &junk).unwrap();
        }
        read_everything(dir.path());
    }
}
