//! SHA-256 of up to 16 short messages at once, all continuing from one midstate: how row
//! digests are computed (every row of a table starts from the state after the table prefix,
//! see [`crate::digest`]).
//!
//! A row's encoding is one to three blocks. SHA-NI hashes one message at a time, about 30 ns a
//! block on the AMD EPYC this project is measured on; with AVX-512 (detected at run time) the
//! sixteen 32-bit lanes of a vector each carry one message, about 16 ns a block. Elsewhere
//! every message goes through `sha2`'s compression function (itself SHA-NI when present). Both
//! give the same bytes as `sha2::Sha256` (tested).
//!
//! Messages come padded ([`pad`]) and laid out as whole 64-byte blocks in one buffer, each
//! starting at a block boundary. Messages of different lengths share a call: a lane whose
//! message has ended keeps its state (masked adds), and once fewer than `MIN_LANES` lanes
//! have a block left, the rest of the longest messages go through `sha2` one at a time.

use sha2::digest::generic_array::GenericArray;

/// Messages hashed per call.
pub const LANES: usize = 16;

/// The initial hash value of SHA-256 (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The state after `prefix`, whole 64-byte blocks (its length must be a multiple of 64).
pub fn midstate(prefix: &[u8]) -> [u32; 8] {
    debug_assert_eq!(prefix.len() % 64, 0, "a midstate covers whole blocks");
    let mut state = IV;
    compress_blocks(&mut state, prefix);
    state
}

/// Compresses `blocks` (whole 64-byte blocks) into `state`, through `sha2`.
fn compress_blocks(state: &mut [u32; 8], blocks: &[u8]) {
    for block in blocks.chunks_exact(64) {
        sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
}

/// Blocks of a message of `len` bytes once padded (the 0x80 byte and the 8-byte length).
pub fn padded_blocks(len: usize) -> usize {
    (len + 9).div_ceil(64)
}

/// Pads in place the message of `len` bytes at the start of `span` ([`padded_blocks`] blocks
/// long). `hashed_before` is the length of what the midstate already covers.
pub fn pad(span: &mut [u8], len: usize, hashed_before: u64) {
    debug_assert_eq!(span.len(), padded_blocks(len) * 64);
    let bits = (hashed_before + len as u64).wrapping_mul(8);
    let end = span.len();
    span[len] = 0x80;
    span[len + 1..end - 8].fill(0);
    span[end - 8..].copy_from_slice(&bits.to_be_bytes());
}

/// The SHA-256 of each message `spans[i]` of `blocks` (padded by [`pad`]), continued from
/// `midstate`, into `out[i]`. At most [`LANES`] messages; `out` at least as long as `spans`.
pub fn hash_padded(
    midstate: &[u32; 8],
    blocks: &[u8],
    spans: &[(usize, usize)],
    out: &mut [[u8; 32]],
) {
    assert!(spans.len() <= LANES && out.len() >= spans.len());
    assert!(
        spans
            .iter()
            .all(|&(first, n)| (first + n) * 64 <= blocks.len()),
        "a span past the end of its buffer"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if spans.len() >= MIN_LANES
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the features the function is compiled for were detected just above.
            let (states, done) = unsafe { x16::compress_while_full(midstate, blocks, spans) };
            // The blocks of the longest messages that are left go one message at a time.
            for ((&(first, n), state), digest) in spans.iter().zip(states).zip(out.iter_mut()) {
                let from = (first + done.min(n)) * 64;
                finish(state, &blocks[from..(first + n) * 64], digest);
            }
            return;
        }
    }
    hash_padded_portable(midstate, blocks, spans, out);
}

/// Lanes that must still have a block for a step of the sixteen-lane compression: one step
/// costs about as much as eight blocks through SHA-NI, so with fewer messages left the rest
/// go one at a time (a long row among short ones costs no more than alone).
const MIN_LANES: usize = 8;

/// Compresses `blocks` (whole 64-byte blocks) into `state`, then writes the digest.
fn finish(mut state: [u32; 8], blocks: &[u8], digest: &mut [u8; 32]) {
    compress_blocks(&mut state, blocks);
    for (bytes, word) in digest.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
}

/// [`hash_padded`] one message at a time, through `sha2`.
pub fn hash_padded_portable(
    midstate: &[u32; 8],
    blocks: &[u8],
    spans: &[(usize, usize)],
    out: &mut [[u8; 32]],
) {
    for (&(first, n), digest) in spans.iter().zip(out.iter_mut()) {
        finish(*midstate, &blocks[first * 64..(first + n) * 64], digest);
    }
}

#[cfg(target_arch = "x86_64")]
mod x16 {
    use std::arch::x86_64::{
        __m512i, __mmask16, _mm512_add_epi32, _mm512_loadu_si512, _mm512_mask_add_epi32,
        _mm512_ror_epi32, _mm512_set_epi64, _mm512_set1_epi32, _mm512_setzero_si512,
        _mm512_shuffle_epi8, _mm512_shuffle_i32x4, _mm512_srli_epi32, _mm512_storeu_si512,
        _mm512_ternarylogic_epi32, _mm512_unpackhi_epi32, _mm512_unpackhi_epi64,
        _mm512_unpacklo_epi32, _mm512_unpacklo_epi64,
    };

    use super::LANES;

    /// The round constants (FIPS 180-4, 4.2.2).
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// Rows of 16 dwords in, columns out: `out[j]` lane `l` = `rows[l]` dword `j`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose(r: [__m512i; 16]) -> [__m512i; 16] {
        let mut t = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        let mut u = [_mm512_setzero_si512(); 16];
        for i in 0..4 {
            u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
            u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
        }
        let mut v = [_mm512_setzero_si512(); 16];
        for i in 0..2 {
            for j in 0..4 {
                v[8 * i + j] = _mm512_shuffle_i32x4::<0x88>(u[8 * i + j], u[8 * i + 4 + j]);
                v[8 * i + 4 + j] = _mm512_shuffle_i32x4::<0xdd>(u[8 * i + j], u[8 * i + 4 + j]);
            }
        }
        let mut o = [_mm512_setzero_si512(); 16];
        for j in 0..8 {
            o[j] = _mm512_shuffle_i32x4::<0x88>(v[j], v[8 + j]);
            o[8 + j] = _mm512_shuffle_i32x4::<0xdd>(v[j], v[8 + j]);
        }
        o
    }

    /// One block per lane: lanes in `active` add the block's compression to their state.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn compress(state: &mut [__m512i; 8], rows: [__m512i; 16], active: __mmask16) {
        // Each dword of the message is big-endian.
        let bswap = _mm512_set_epi64(
            0x0c0d0e0f08090a0b,
            0x0405060700010203,
            0x0c0d0e0f08090a0b,
            0x0405060700010203,
            0x0c0d0e0f08090a0b,
            0x0405060700010203,
            0x0c0d0e0f08090a0b,
            0x0405060700010203,
        );
        let columns = transpose(rows);
        let mut w: [__m512i; 16] = std::array::from_fn(|j| _mm512_shuffle_epi8(columns[j], bswap));
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
        // 0x96: x ^ y ^ z; 0xca: ch(x, y, z); 0xe8: maj(x, y, z).
        macro_rules! round {
            ($i:expr, $w:expr) => {{
                let s1 = _mm512_ternarylogic_epi32::<0x96>(
                    _mm512_ror_epi32::<6>(e),
                    _mm512_ror_epi32::<11>(e),
                    _mm512_ror_epi32::<25>(e),
                );
                let ch = _mm512_ternarylogic_epi32::<0xca>(e, f, g);
                let kw = _mm512_add_epi32($w, _mm512_set1_epi32(K[$i] as i32));
                let t1 = _mm512_add_epi32(_mm512_add_epi32(h, s1), _mm512_add_epi32(ch, kw));
                let s0 = _mm512_ternarylogic_epi32::<0x96>(
                    _mm512_ror_epi32::<2>(a),
                    _mm512_ror_epi32::<13>(a),
                    _mm512_ror_epi32::<22>(a),
                );
                let t2 = _mm512_add_epi32(s0, _mm512_ternarylogic_epi32::<0xe8>(a, b, c));
                h = g;
                g = f;
                f = e;
                e = _mm512_add_epi32(d, t1);
                d = c;
                c = b;
                b = a;
                a = _mm512_add_epi32(t1, t2);
            }};
        }
        for (i, &wi) in w.iter().enumerate() {
            round!(i, wi);
        }
        for i in 16..64 {
            let (w15, w2) = (w[(i - 15) & 15], w[(i - 2) & 15]);
            let s0 = _mm512_ternarylogic_epi32::<0x96>(
                _mm512_ror_epi32::<7>(w15),
                _mm512_ror_epi32::<18>(w15),
                _mm512_srli_epi32::<3>(w15),
            );
            let s1 = _mm512_ternarylogic_epi32::<0x96>(
                _mm512_ror_epi32::<17>(w2),
                _mm512_ror_epi32::<19>(w2),
                _mm512_srli_epi32::<10>(w2),
            );
            let next = _mm512_add_epi32(
                _mm512_add_epi32(w[i & 15], s0),
                _mm512_add_epi32(w[(i - 7) & 15], s1),
            );
            w[i & 15] = next;
            round!(i, next);
        }
        for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *s = _mm512_mask_add_epi32(*s, active, *s, v);
        }
    }

    /// Compresses the blocks of the messages `spans` (at most [`LANES`]) from `midstate`, one
    /// block of each message per step, while at least [`super::MIN_LANES`] of them have one
    /// left. Returns each message's state and the blocks done (of a shorter message, all).
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn compress_while_full(
        midstate: &[u32; 8],
        blocks: &[u8],
        spans: &[(usize, usize)],
    ) -> ([[u32; 8]; LANES], usize) {
        let mut state: [__m512i; 8] =
            std::array::from_fn(|i| _mm512_set1_epi32(midstate[i] as i32));
        let mut done = 0;
        loop {
            let mut active: __mmask16 = 0;
            let mut rows = [_mm512_setzero_si512(); LANES];
            for (lane, (&(first, n), row)) in spans.iter().zip(rows.iter_mut()).enumerate() {
                if done < n {
                    active |= 1 << lane;
                    let block = &blocks[(first + done) * 64..(first + done + 1) * 64];
                    // SAFETY: `block` is 64 bytes; the load is unaligned.
                    *row = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
                }
            }
            if (active.count_ones() as usize) < super::MIN_LANES {
                break;
            }
            compress(&mut state, rows, active);
            done += 1;
        }
        let mut words = [[0u32; LANES]; 8];
        for (w, s) in words.iter_mut().zip(state) {
            // SAFETY: `w` is 16 dwords = 64 bytes; the store is unaligned.
            unsafe { _mm512_storeu_si512(w.as_mut_ptr().cast(), s) };
        }
        (
            std::array::from_fn(|lane| std::array::from_fn(|i| words[i][lane])),
            done,
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    use super::*;

    /// Lays `messages` out padded after a `prefix_blocks`-block prefix and hashes them both
    /// ways; returns (fast, portable, sha2 of prefix || message).
    #[allow(clippy::type_complexity)]
    fn hash_all(
        prefix: &[u8],
        messages: &[Vec<u8>],
    ) -> (Vec<[u8; 32]>, Vec<[u8; 32]>, Vec<[u8; 32]>) {
        let mid = midstate(prefix);
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for m in messages {
            let (first, n) = (buf.len() / 64, padded_blocks(m.len()));
            buf.resize(buf.len() + n * 64, 0xAA);
            let span = &mut buf[first * 64..];
            span[..m.len()].copy_from_slice(m);
            pad(span, m.len(), prefix.len() as u64);
            spans.push((first, n));
        }
        let mut fast = vec![[0u8; 32]; messages.len()];
        let mut portable = vec![[0u8; 32]; messages.len()];
        hash_padded(&mid, &buf, &spans, &mut fast);
        hash_padded_portable(&mid, &buf, &spans, &mut portable);
        let expected = messages
            .iter()
            .map(|m| {
                let mut h = Sha256::new();
                h.update(prefix);
                h.update(m);
                h.finalize().into()
            })
            .collect();
        (fast, portable, expected)
    }

    #[test]
    fn every_length_around_the_block_boundaries_hashes_as_sha256() {
        let prefix: Vec<u8> = (0..128u8).collect();
        let messages: Vec<Vec<u8>> = (0..=200usize)
            .map(|n| (0..n).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        for group in messages.chunks(LANES) {
            let (fast, portable, expected) = hash_all(&prefix, group);
            assert_eq!(fast, expected);
            assert_eq!(portable, expected);
        }
    }

    #[test]
    fn a_long_message_among_short_ones_hashes_as_sha256() {
        let prefix = [9u8; 64];
        for short in [1usize, 7, 8, 9, 14] {
            let mut messages: Vec<Vec<u8>> = (0..short).map(|i| vec![i as u8; 10 + i]).collect();
            messages.insert(short / 2, (0..5000).map(|i| (i * 31) as u8).collect());
            messages.push(vec![1u8; 130]);
            let (fast, portable, expected) = hash_all(&prefix, &messages);
            assert_eq!(fast, expected, "{short} short messages");
            assert_eq!(portable, expected);
        }
    }

    #[test]
    fn an_empty_prefix_gives_plain_sha256() {
        // FIPS 180-2 appendix B.1: SHA-256("abc").
        let (fast, _, expected) = hash_all(&[], &[b"abc".to_vec(), b"abc".to_vec()]);
        assert_eq!(fast, expected);
        assert_eq!(
            fast[0][..4],
            [0xba, 0x78, 0x16, 0xbf],
            "SHA-256(\"abc\") starts ba7816bf"
        );
    }

    proptest! {
        #[test]
        fn up_to_sixteen_messages_of_any_lengths_hash_as_sha256(
            prefix_blocks in 0usize..3,
            messages in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..260), 0..=LANES),
        ) {
            let prefix: Vec<u8> = (0..prefix_blocks * 64).map(|i| (i * 13) as u8).collect();
            let (fast, portable, expected) = hash_all(&prefix, &messages);
            prop_assert_eq!(&fast, &expected);
            prop_assert_eq!(&portable, &expected);
        }
    }
}
