//! The XOF that expands a row digest to a 2 KiB lattice element of the table digest:
//! AES-256 in counter mode keyed by the 32-byte row digest, counter blocks `0..128` as
//! little-endian `u128`, no nonce. (A block cipher keyed by a hash output is the usual
//! ideal-cipher construction of an extendable output; AES-256 keeps the whole digest as key.)
//!
//! It is the table digest's hot path: every row of every digest costs one expansion. On
//! CPUs with VAES and AVX-512 (detected at run time) four blocks go through each AES
//! instruction, and [`add_all_into_lanes`] expands the keys of four row digests at once;
//! elsewhere the `aes` crate does the work (AES-NI when present, constant-time
//! software otherwise). Both give the same bytes (tested).

use aes::cipher::{BlockEncrypt, KeyInit, consts::U16, generic_array::GenericArray};

/// Bytes of one expansion.
pub const EXPANDED_BYTES: usize = 2048;
const BLOCKS: usize = EXPANDED_BYTES / 16;

/// Fills `out` with the expansion of `seed`.
#[inline]
pub fn expand(seed: &[u8; 32], out: &mut [u8; EXPANDED_BYTES]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("vaes")
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("aes")
        {
            // SAFETY: the features the function is compiled for were detected just above.
            unsafe { vaes::expand(seed, out) };
            return;
        }
    }
    expand_portable(seed, out);
}

/// Adds (or, with `add` false, subtracts) the expansion of `seed` to 1024 little-endian `u16`
/// lanes, wrapping: one row into an LtHash16 state. `scratch` is used where the expansion
/// has to be written out first.
#[inline]
pub fn expand_into_lanes(
    seed: &[u8; 32],
    lanes: &mut [u16; EXPANDED_BYTES / 2],
    add: bool,
    scratch: &mut [u8; EXPANDED_BYTES],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("vaes")
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("aes")
        {
            // SAFETY: the features the function is compiled for were detected just above.
            unsafe { vaes::expand_into_lanes(seed, lanes, add) };
            return;
        }
    }
    expand_portable(seed, scratch);
    let pairs = lanes.iter_mut().zip(scratch.chunks_exact(2));
    if add {
        for (lane, b) in pairs {
            *lane = lane.wrapping_add(u16::from_le_bytes([b[0], b[1]]));
        }
    } else {
        for (lane, b) in pairs {
            *lane = lane.wrapping_sub(u16::from_le_bytes([b[0], b[1]]));
        }
    }
}

/// Adds the expansions of every seed of `seeds` to the lanes: [`expand_into_lanes`] of each,
/// with the AES key schedules of four seeds computed at once where VAES allows.
pub fn add_all_into_lanes(seeds: &[[u8; 32]], lanes: &mut [u16; EXPANDED_BYTES / 2]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("vaes")
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("aes")
        {
            let mut fours = seeds.chunks_exact(4);
            for four in &mut fours {
                // SAFETY: the features the function is compiled for were detected just above.
                unsafe {
                    vaes::add_four_into_lanes([&four[0], &four[1], &four[2], &four[3]], lanes)
                };
            }
            for seed in fours.remainder() {
                // SAFETY: as above.
                unsafe { vaes::expand_into_lanes(seed, lanes, true) };
            }
            return;
        }
    }
    let mut scratch = [0u8; EXPANDED_BYTES];
    for seed in seeds {
        expand_into_lanes(seed, lanes, true, &mut scratch);
    }
}

/// The expansion through the `aes` crate.
pub fn expand_portable(seed: &[u8; 32], out: &mut [u8; EXPANDED_BYTES]) {
    let cipher = aes::Aes256::new(GenericArray::from_slice(seed));
    let mut blocks = [GenericArray::<u8, U16>::default(); BLOCKS];
    for (i, block) in blocks.iter_mut().enumerate() {
        block.copy_from_slice(&(i as u128).to_le_bytes());
    }
    cipher.encrypt_blocks(&mut blocks);
    for (chunk, block) in out.chunks_exact_mut(16).zip(&blocks) {
        chunk.copy_from_slice(block);
    }
}

#[cfg(target_arch = "x86_64")]
mod vaes {
    use std::arch::x86_64::{
        __m128i, __m512i, _mm_aeskeygenassist_si128, _mm_loadu_si128, _mm_setzero_si128,
        _mm_shuffle_epi32, _mm_slli_si128, _mm_xor_si128, _mm512_add_epi16, _mm512_add_epi64,
        _mm512_aesenc_epi128, _mm512_aesenclast_epi128, _mm512_broadcast_i32x4,
        _mm512_bslli_epi128, _mm512_castsi128_si512, _mm512_inserti32x4, _mm512_loadu_si512,
        _mm512_set_epi64, _mm512_set1_epi32, _mm512_setzero_si512, _mm512_shuffle_epi8,
        _mm512_shuffle_i32x4, _mm512_storeu_si512, _mm512_sub_epi16, _mm512_xor_si512,
    };

    use super::EXPANDED_BYTES;

    /// `k ^ (k << 32) ^ (k << 64) ^ (k << 96)`: the running XOR of the AES key schedule.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn spread(k: __m128i) -> __m128i {
        let s1 = _mm_slli_si128::<4>(k);
        let s2 = _mm_slli_si128::<4>(s1);
        let s3 = _mm_slli_si128::<4>(s2);
        _mm_xor_si128(_mm_xor_si128(k, s1), _mm_xor_si128(s2, s3))
    }

    /// The 15 round keys of AES-256 (FIPS-197 key expansion with AES-NI's assist).
    #[target_feature(enable = "aes,sse2")]
    fn round_keys(key: &[u8; 32]) -> [__m128i; 15] {
        macro_rules! even {
            ($a:expr, $b:expr, $rcon:literal) => {
                _mm_xor_si128(
                    spread($a),
                    _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>($b)),
                )
            };
        }
        macro_rules! odd {
            ($a:expr, $b:expr) => {
                _mm_xor_si128(
                    spread($b),
                    _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>($a)),
                )
            };
        }
        let mut rk = [_mm_setzero_si128(); 15];
        // SAFETY: both loads read 16 bytes inside the 32-byte key (unaligned loads).
        let (a, b) = unsafe {
            (
                _mm_loadu_si128(key.as_ptr().cast()),
                _mm_loadu_si128(key.as_ptr().add(16).cast()),
            )
        };
        rk[0] = a;
        rk[1] = b;
        rk[2] = even!(rk[0], rk[1], 0x01);
        rk[3] = odd!(rk[2], rk[1]);
        rk[4] = even!(rk[2], rk[3], 0x02);
        rk[5] = odd!(rk[4], rk[3]);
        rk[6] = even!(rk[4], rk[5], 0x04);
        rk[7] = odd!(rk[6], rk[5]);
        rk[8] = even!(rk[6], rk[7], 0x08);
        rk[9] = odd!(rk[8], rk[7]);
        rk[10] = even!(rk[8], rk[9], 0x10);
        rk[11] = odd!(rk[10], rk[9]);
        rk[12] = even!(rk[10], rk[11], 0x20);
        rk[13] = odd!(rk[12], rk[11]);
        rk[14] = even!(rk[12], rk[13], 0x40);
        rk
    }

    /// The round keys, each broadcast to the four 128-bit lanes of a vector.
    #[inline]
    #[target_feature(enable = "aes,sse2,avx512f")]
    fn broadcast_keys(seed: &[u8; 32]) -> [__m512i; 15] {
        let rk = round_keys(seed);
        let mut k = [_mm512_setzero_si512(); 15];
        for (wide, r) in k.iter_mut().zip(rk) {
            *wide = _mm512_broadcast_i32x4(r);
        }
        k
    }

    /// [`spread`] in each 128-bit lane.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn spread4(k: __m512i) -> __m512i {
        let s1 = _mm512_bslli_epi128::<4>(k);
        let s2 = _mm512_bslli_epi128::<4>(s1);
        let s3 = _mm512_bslli_epi128::<4>(s2);
        _mm512_xor_si512(_mm512_xor_si512(k, s1), _mm512_xor_si512(s2, s3))
    }

    /// The round keys of four AES-256 keys at once, key `l` in 128-bit lane `l`.
    ///
    /// `aeskeygenassist` works on one key; here the S-box comes from `aesenclast` with a zero
    /// round key on the key word copied into all four columns, where `ShiftRows` changes
    /// nothing: `SubWord(w)` in each column. Rotating the word's bytes first gives
    /// `SubWord(RotWord(w))`, and a round key of `rcon` in every column adds it.
    #[target_feature(enable = "aes,sse2,avx512f,avx512bw,vaes")]
    fn round_keys4(seeds: [&[u8; 32]; 4]) -> [__m512i; 15] {
        let half = |offset: usize| {
            // SAFETY: each load reads 16 bytes at offset 0 or 16 of a 32-byte key (unaligned).
            let load = |i: usize| unsafe { _mm_loadu_si128(seeds[i].as_ptr().add(offset).cast()) };
            let v = _mm512_castsi128_si512(load(0));
            let v = _mm512_inserti32x4::<1>(v, load(1));
            let v = _mm512_inserti32x4::<2>(v, load(2));
            _mm512_inserti32x4::<3>(v, load(3))
        };
        // Bytes of dword 3 of each lane, in every column: rotated (13, 14, 15, 12) or not.
        let rotated_last = _mm512_set1_epi32(0x0c0f_0e0d);
        let last = _mm512_set1_epi32(0x0f0e_0d0c);
        let mut rk = [_mm512_setzero_si512(); 15];
        rk[0] = half(0);
        rk[1] = half(16);
        let mut rcon = 1;
        for j in 2..15 {
            let t = if j % 2 == 0 {
                let t = _mm512_aesenclast_epi128(
                    _mm512_shuffle_epi8(rk[j - 1], rotated_last),
                    _mm512_set1_epi32(rcon),
                );
                rcon <<= 1;
                t
            } else {
                _mm512_aesenclast_epi128(
                    _mm512_shuffle_epi8(rk[j - 1], last),
                    _mm512_setzero_si512(),
                )
            };
            rk[j] = _mm512_xor_si512(spread4(rk[j - 2]), t);
        }
        rk
    }

    /// Round key set `L` of [`round_keys4`], broadcast to the four lanes of each vector.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn lane_keys<const L: i32>(rk4: &[__m512i; 15]) -> [__m512i; 15] {
        std::array::from_fn(|i| _mm512_shuffle_i32x4::<L>(rk4[i], rk4[i]))
    }

    /// [`expand_into_lanes`] (adding) of four seeds, their key schedules computed together.
    #[target_feature(enable = "aes,sse2,avx512f,avx512bw,vaes")]
    pub(super) fn add_four_into_lanes(
        seeds: [&[u8; 32]; 4],
        lanes: &mut [u16; EXPANDED_BYTES / 2],
    ) {
        let rk4 = round_keys4(seeds);
        for keys in [
            lane_keys::<0x00>(&rk4),
            lane_keys::<0x55>(&rk4),
            lane_keys::<0xaa>(&rk4),
            lane_keys::<0xff>(&rk4),
        ] {
            add_keystream(&keys, lanes, true);
        }
    }

    /// 32 blocks of keystream, from the counter vector `counter` on (advanced past them).
    #[inline]
    #[target_feature(enable = "aes,sse2,avx512f,vaes")]
    fn keystream(k: &[__m512i; 15], counter: &mut __m512i) -> [__m512i; 8] {
        // Lanes hold blocks n, n+1, n+2, n+3 (the counter is the low 64 bits, little-endian).
        let step = _mm512_set_epi64(0, 4, 0, 4, 0, 4, 0, 4);
        let mut x = [_mm512_setzero_si512(); 8];
        for lane in &mut x {
            *lane = _mm512_xor_si512(*counter, k[0]);
            *counter = _mm512_add_epi64(*counter, step);
        }
        for key in &k[1..14] {
            for lane in &mut x {
                *lane = _mm512_aesenc_epi128(*lane, *key);
            }
        }
        for lane in &mut x {
            *lane = _mm512_aesenclast_epi128(*lane, k[14]);
        }
        x
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn first_counter() -> __m512i {
        _mm512_set_epi64(0, 3, 0, 2, 0, 1, 0, 0)
    }

    /// AES-256-CTR over 128 blocks, four blocks per instruction, 32 blocks in flight.
    #[target_feature(enable = "aes,sse2,avx512f,vaes")]
    pub(super) fn expand(seed: &[u8; 32], out: &mut [u8; EXPANDED_BYTES]) {
        let k = broadcast_keys(seed);
        let mut counter = first_counter();
        for group in out.chunks_exact_mut(512) {
            let x = keystream(&k, &mut counter);
            for (lane, dst) in x.iter().zip(group.chunks_exact_mut(64)) {
                // SAFETY: `dst` is 64 bytes; the store is unaligned.
                unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), *lane) };
            }
        }
    }

    /// [`expand`] added to (or subtracted from) 1024 `u16` lanes, without writing it out.
    #[target_feature(enable = "aes,sse2,avx512f,avx512bw,vaes")]
    pub(super) fn expand_into_lanes(
        seed: &[u8; 32],
        lanes: &mut [u16; EXPANDED_BYTES / 2],
        add: bool,
    ) {
        add_keystream(&broadcast_keys(seed), lanes, add);
    }

    /// Adds (or subtracts) the 2 KiB keystream of the round keys `k` to the lanes.
    #[inline]
    #[target_feature(enable = "aes,sse2,avx512f,avx512bw,vaes")]
    fn add_keystream(k: &[__m512i; 15], lanes: &mut [u16; EXPANDED_BYTES / 2], add: bool) {
        let mut counter = first_counter();
        for group in lanes.chunks_exact_mut(256) {
            let x = keystream(k, &mut counter);
            for (stream, dst) in x.iter().zip(group.chunks_exact_mut(32)) {
                // SAFETY: `dst` is 32 lanes = 64 bytes; loads and stores are unaligned.
                unsafe {
                    let have = _mm512_loadu_si512(dst.as_ptr().cast());
                    let sum = if add {
                        _mm512_add_epi16(have, *stream)
                    } else {
                        _mm512_sub_epi16(have, *stream)
                    };
                    _mm512_storeu_si512(dst.as_mut_ptr().cast(), sum);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_and_the_aes_crate_agree() {
        let mut seed = [0u8; 32];
        for i in 0..500u32 {
            for (j, b) in seed.iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(31).wrapping_add(j as u8 * 7);
            }
            let (mut fast, mut portable) = ([0u8; EXPANDED_BYTES], [0u8; EXPANDED_BYTES]);
            expand(&seed, &mut fast);
            expand_portable(&seed, &mut portable);
            assert_eq!(fast, portable, "seed {i}");
        }
    }

    #[test]
    fn adding_into_lanes_equals_adding_the_expansion() {
        let mut fused = [0u16; EXPANDED_BYTES / 2];
        let mut plain = [0u16; EXPANDED_BYTES / 2];
        let mut scratch = [0u8; EXPANDED_BYTES];
        for i in 0..50u8 {
            let seed = [i; 32];
            let add = i % 3 != 0;
            expand_into_lanes(&seed, &mut fused, add, &mut scratch);
            let mut e = [0u8; EXPANDED_BYTES];
            expand_portable(&seed, &mut e);
            for (lane, b) in plain.iter_mut().zip(e.chunks_exact(2)) {
                let v = u16::from_le_bytes([b[0], b[1]]);
                *lane = if add {
                    lane.wrapping_add(v)
                } else {
                    lane.wrapping_sub(v)
                };
            }
            assert_eq!(fused, plain, "after seed {i}");
        }
    }

    #[test]
    fn adding_many_seeds_equals_adding_each() {
        // 4-seed groups, with a remainder, and seeds differing in every byte position.
        for n in [0usize, 1, 3, 4, 5, 8, 13] {
            let seeds: Vec<[u8; 32]> = (0..n)
                .map(|i| std::array::from_fn(|j| (i * 37 + j * 11 + (i ^ j)) as u8))
                .collect();
            let mut many = [7u16; EXPANDED_BYTES / 2];
            add_all_into_lanes(&seeds, &mut many);
            let mut each = [7u16; EXPANDED_BYTES / 2];
            let mut e = [0u8; EXPANDED_BYTES];
            for seed in &seeds {
                expand_portable(seed, &mut e);
                for (lane, b) in each.iter_mut().zip(e.chunks_exact(2)) {
                    *lane = lane.wrapping_add(u16::from_le_bytes([b[0], b[1]]));
                }
            }
            assert_eq!(many, each, "{n} seeds");
        }
    }

    #[test]
    fn the_expansion_is_aes_256_ctr() {
        // FIPS-197 appendix C.3: AES-256 of 00112233..eeff under key 000102..1f is
        // 8ea2b7ca516745bfeafc49904b496089. Counter block 0 is all zeros, so check the
        // cipher itself through the crate on the FIPS vector, and block 0 of the expansion
        // against a direct encryption of the zero block.
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let cipher = aes::Aes256::new(GenericArray::from_slice(&key));
        let mut block = GenericArray::<u8, U16>::clone_from_slice(&[
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ]);
        cipher.encrypt_block(&mut block);
        assert_eq!(
            block.as_slice(),
            [
                0x8e, 0xa2, 0xb7, 0xca, 0x51, 0x67, 0x45, 0xbf, 0xea, 0xfc, 0x49, 0x90, 0x4b, 0x49,
                0x60, 0x89
            ]
        );
        let mut out = [0u8; EXPANDED_BYTES];
        expand(&key, &mut out);
        for i in [0usize, 1, 77, 127] {
            let mut b = GenericArray::<u8, U16>::clone_from_slice(&(i as u128).to_le_bytes());
            cipher.encrypt_block(&mut b);
            assert_eq!(&out[i * 16..i * 16 + 16], b.as_slice(), "block {i}");
        }
    }
}
