//! Hashing in the data layer.
//!
//! - [`mix64`], SplitMix64's finaliser, stays hand-written on purpose: it is part of what the
//!   data means. Every synthetic sample is `mix64` of `(seed, index)` and the shuffle seed of an
//!   epoch is derived with it, so changing it would change the synthetic data set, the training
//!   order and the published results; the test below pins it to the reference SplitMix64.
//! - The dictionaries' maps use foldhash (the hasher hashbrown itself defaults to), seeded per
//!   process. Ids are given in order of first appearance, so the hasher never shows in the output.
//! - The data store's checksums are XXH3-64 from `xxhash-rust` (see `store/format.rs`).

/// SplitMix64's finaliser: a bijective 64-bit mixer with good avalanche.
#[inline(always)]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hash map for integer keys: foldhash, fast on integers and seeded per process.
pub(crate) type IntHashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix64_is_splitmix64() {
        // SplitMix64 seeded with 0 first returns mix64(golden gamma) = 0xe220a8397b1dcdaf.
        assert_eq!(mix64(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
        assert_eq!(mix64(0xdead_beef), 0x4e06_2702_ec92_9eea);
        assert_eq!(mix64(0), 0);
    }
}
