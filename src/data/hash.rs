//! Small hand-written hashes: a fast integer hasher for the dictionaries (SipHash would dominate
//! the preprocessing time), a stateless mixer for the synthetic source, and the cache checksum.

use std::hash::{BuildHasherDefault, Hasher};

/// SplitMix64's finaliser: a bijective 64-bit mixer with good avalanche.
#[inline(always)]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hasher for integer keys: one multiply and a fold, so both the low (bucket) and high (tag) bits
/// depend on every key bit.
#[derive(Default, Clone, Copy)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(x as u64);
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        let h = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }
}

pub(crate) type IntHashMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<IntHasher>>;

const LANES: usize = 4;
const BLOCK: usize = 8 * LANES;
const PRIME: u64 = 0x9e37_79b9_7f4a_7c15;

/// 64-bit checksum of the cache payload: four independent multiply-rotate lanes over 8-byte words
/// (several GB/s, so verifying a cache on open costs little next to reading it), streamed in
/// chunks of any size with the same result as one call over the whole.
pub(crate) struct Checksum64 {
    lanes: [u64; LANES],
    tail: [u8; BLOCK],
    tail_len: usize,
    total: u64,
}

impl Checksum64 {
    pub(crate) fn new() -> Self {
        Checksum64 {
            lanes: [
                0x243f_6a88_85a3_08d3,
                0x1319_8a2e_0370_7344,
                0xa409_3822_299f_31d0,
                0x082e_fa98_ec4e_6c89,
            ],
            tail: [0; BLOCK],
            tail_len: 0,
            total: 0,
        }
    }

    #[inline(always)]
    fn block(lanes: &mut [u64; LANES], block: &[u8]) {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let w = u64::from_le_bytes(block[i * 8..i * 8 + 8].try_into().unwrap());
            *lane = (*lane ^ w).wrapping_mul(PRIME).rotate_left(31);
        }
    }

    pub(crate) fn update(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.tail_len > 0 {
            let take = (BLOCK - self.tail_len).min(bytes.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&bytes[..take]);
            self.tail_len += take;
            bytes = &bytes[take..];
            if self.tail_len < BLOCK {
                return;
            }
            let tail = self.tail;
            Self::block(&mut self.lanes, &tail);
            self.tail_len = 0;
        }
        let mut chunks = bytes.chunks_exact(BLOCK);
        for block in &mut chunks {
            Self::block(&mut self.lanes, block);
        }
        let rest = chunks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    pub(crate) fn finish(&self) -> u64 {
        let mut lanes = self.lanes;
        if self.tail_len > 0 {
            let mut last = [0u8; BLOCK];
            last[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            Self::block(&mut lanes, &last);
        }
        let mut h = self.total;
        for lane in lanes {
            h = mix64(h ^ lane);
        }
        h
    }
}

/// The checksum of `bytes` in one call.
pub(crate) fn checksum64(bytes: &[u8]) -> u64 {
    let mut c = Checksum64::new();
    c.update(bytes);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_chunking_independent_and_detects_flips() {
        let data: Vec<u8> = (0..1000u32).map(|i| (mix64(i as u64) >> 7) as u8).collect();
        let whole = checksum64(&data);
        for split in [1, 7, 31, 32, 33, 500, 999] {
            let mut c = Checksum64::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.finish(), whole, "split at {split}");
        }
        let mut flipped = data.clone();
        flipped[517] ^= 1;
        assert_ne!(checksum64(&flipped), whole);
        assert_ne!(checksum64(&data[..999]), whole);
    }
}
