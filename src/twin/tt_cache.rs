//! The CPU twin of `shaders/tt_cache.wgsl`: plain Rust, no GPU, the same arithmetic in the same
//! order, so the kernels' integer results match exactly and their f32 results to the last bit
//! (or within an ulp where the GPU fuses a multiply-add).
//!
//! - [`keys_of`]: each lookup's key from the table descriptor, as the probe finds it;
//! - [`HashTwin`]: the hash table, probed in lookup order (the GPU probes concurrently, so which
//!   entry a colliding key takes, and which keys a full table drops, can differ; a key's count
//!   cannot), the refresh ([`HashTwin::refresh`]: the members by [`top_keys`], slots in entry
//!   order, exactly as the GPU assigns them given the same entries);
//! - [`count_keys`], [`top_keys`]: exact counts and the top-C rule on their own;
//! - [`pool_hits`], [`update_rows`]: the cached rows' pooling and training.

use std::collections::HashMap;

use crate::cache::{EMPTY, NONE};

/// The murmur3 finalizer, the hash of the GPU table.
pub fn mix32(key: u32) -> u32 {
    let mut h = key;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The key of every lookup: `tables[t] = [first lookup of t, key offset of t]` (tables in
/// lookup order; tables without lookups share their start), key = key offset + id.
pub fn keys_of(ids: &[u32], tables: &[[u32; 2]]) -> Vec<u32> {
    let mut t = 0;
    ids.iter()
        .enumerate()
        .map(|(n, &id)| {
            while t + 1 < tables.len() && tables[t + 1][0] as usize <= n {
                t += 1;
            }
            tables[t][1].wrapping_add(id)
        })
        .collect()
}

/// Occurrences of each key.
pub fn count_keys(keys: &[u32]) -> HashMap<u32, u32> {
    let mut m = HashMap::new();
    for &k in keys {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// The top `c` of (key, count) pairs by count descending, then key ascending: exactly `c` keys
/// when there are at least `c`, else all of them, in that order.
pub fn top_keys(counts: impl IntoIterator<Item = (u32, u32)>, c: usize) -> Vec<u32> {
    let mut all: Vec<(u32, u32)> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(c);
    all.into_iter().map(|(k, _)| k).collect()
}

/// The hash table and its counters, as the GPU holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashTwin {
    pub keys: Vec<u32>,
    pub counts: Vec<u32>,
    pub slots: Vec<u32>,
    pub max_probe: usize,
    /// The stats words: lookups, hits, dropped, members, occupied.
    pub lookups: u64,
    pub hits: u64,
    pub dropped: u64,
    pub members: u64,
    pub occupied: u64,
}

impl HashTwin {
    /// An empty table of `entries` (a power of two) entries.
    pub fn new(entries: usize, max_probe: usize) -> Self {
        Self::from_parts(
            vec![EMPTY; entries],
            vec![0; entries],
            vec![NONE; entries],
            max_probe,
        )
    }

    /// A table with the given entries (e.g. read back from the GPU), counters at zero.
    pub fn from_parts(keys: Vec<u32>, counts: Vec<u32>, slots: Vec<u32>, max_probe: usize) -> Self {
        HashTwin {
            keys,
            counts,
            slots,
            max_probe,
            lookups: 0,
            hits: 0,
            dropped: 0,
            members: 0,
            occupied: 0,
        }
    }

    fn chain(&self, key: u32) -> impl Iterator<Item = usize> {
        let h = self.keys.len();
        let home = mix32(key) as usize & (h - 1);
        (0..self.max_probe.min(h)).map(move |p| (home + p) & (h - 1))
    }

    /// The entry holding `key`, if any (an empty entry ends the chain).
    pub fn find(&self, key: u32) -> Option<usize> {
        for e in self.chain(key) {
            match self.keys[e] {
                k if k == key => return Some(e),
                EMPTY => return None,
                _ => {}
            }
        }
        None
    }

    /// Probes the lookups' keys in order: with `count`, inserts absent keys (first empty entry
    /// of the chain) and adds one per occurrence, counting the keys that find no entry as
    /// dropped. Returns each lookup's slot or [`NONE`].
    pub fn probe(&mut self, keys: &[u32], count: bool) -> Vec<u32> {
        keys.iter()
            .map(|&key| {
                let mut found = None;
                if key != EMPTY {
                    for e in self.chain(key) {
                        if count && self.keys[e] == EMPTY {
                            self.keys[e] = key;
                        }
                        if self.keys[e] == key {
                            found = Some(e);
                            break;
                        }
                        if self.keys[e] == EMPTY {
                            break;
                        }
                    }
                }
                let slot = match found {
                    Some(e) => {
                        if count {
                            self.counts[e] += 1;
                        }
                        self.slots[e]
                    }
                    None => {
                        if count {
                            self.dropped += 1;
                        }
                        NONE
                    }
                };
                self.lookups += 1;
                if slot != NONE {
                    self.hits += 1;
                }
                slot
            })
            .collect()
    }

    /// Each present key's count.
    pub fn counts_by_key(&self) -> HashMap<u32, u32> {
        self.keys
            .iter()
            .zip(&self.counts)
            .filter(|(&k, _)| k != EMPTY)
            .map(|(&k, &c)| (k, c))
            .collect()
    }

    /// The refresh with `c` cache rows: members by [`top_keys`], each member entry's slot its
    /// rank among the members in entry order, every other entry [`NONE`]. Returns
    /// `members[slot] = key` (m = min(c, non-empty entries) keys).
    pub fn refresh(&mut self, c: usize) -> Vec<u32> {
        let chosen: std::collections::HashSet<u32> =
            top_keys(self.counts_by_key(), c).into_iter().collect();
        let mut members = Vec::with_capacity(chosen.len());
        for (e, &k) in self.keys.iter().enumerate() {
            if k != EMPTY && chosen.contains(&k) {
                self.slots[e] = members.len() as u32;
                members.push(k);
            } else {
                self.slots[e] = NONE;
            }
        }
        self.members = members.len() as u64;
        self.occupied = self.keys.iter().filter(|&&k| k != EMPTY).count() as u64;
        members
    }
}

/// How a bag pools its lookups (the `pool` of the kernels' `RouteParams`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    Sum,
    Mean,
    /// Sum weighted by per-sample weights.
    Weighted,
}

/// A batch's bags as the kernels read them.
#[derive(Clone, Copy, Debug)]
pub struct TwinBatch<'a> {
    /// `num_bags + 1` bag offsets (more after them are ignored).
    pub offsets: &'a [u32],
    /// Where each bag's row starts in the output (and its gradient), in elements.
    pub bag_dest: &'a [u32],
    /// Per-lookup weights (read with [`Pool::Weighted`] only).
    pub weights: &'a [f32],
    pub pool: Pool,
    pub num_bags: usize,
}

impl TwinBatch<'_> {
    /// The pooling scale of lookup `n` of bag `b`, as the kernels compute it.
    fn scale(&self, b: usize, n: usize) -> f32 {
        match self.pool {
            Pool::Sum => 1.0,
            Pool::Mean => 1.0 / (self.offsets[b + 1] - self.offsets[b]) as f32,
            Pool::Weighted => self.weights[n],
        }
    }
}

/// `out[bag_dest[b] + c] += sum over the hits n of bag b, in order, of scale_n cache[hit[n], c]`
/// (bags without hits untouched), as `cache_pool` does.
pub fn pool_hits(batch: &TwinBatch, hit: &[u32], cache: &[f32], dim: usize, out: &mut [f32]) {
    for b in 0..batch.num_bags {
        let (lo, hi) = (batch.offsets[b] as usize, batch.offsets[b + 1] as usize);
        for c in 0..dim {
            let mut acc = 0.0f32;
            let mut any = false;
            for n in lo..hi {
                if hit[n] != NONE {
                    acc += batch.scale(b, n) * cache[hit[n] as usize * dim + c];
                    any = true;
                }
            }
            if any {
                out[batch.bag_dest[b] as usize + c] += acc;
            }
        }
    }
}

/// The update of the cached rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TwinOpt {
    Sgd {
        lr: f32,
    },
    /// Row-wise Adagrad: one state per cached row.
    Adagrad {
        lr: f32,
        eps: f32,
    },
}

/// Trains the cached rows per occurrence in lookup order, as `cache_update` does: g = scale_n
/// dout[bag_dest[bag(n)] + c]; SGD w -= lr g; row-wise Adagrad state += mean over the columns of
/// g^2, then w -= lr g / (sqrt(state) + eps).
pub fn update_rows(
    batch: &TwinBatch,
    hit: &[u32],
    dout: &[f32],
    dim: usize,
    values: &mut [f32],
    state: &mut [f32],
    opt: TwinOpt,
) {
    update_rows_stored(batch, hit, dout, dim, values, state, opt, |w| w);
}

/// [`update_rows`] of cached rows stored as f16 (`values` hold f16 values widened to f32, as
/// the cache stores them with f16 cores): each occurrence's new value is computed in f32 and
/// rounded once to f16 (round to nearest, ties to even), as `cache_update` with `core_t = f16`
/// does. The Adagrad state stays f32. Pooling needs no twin of its own: an f16 row widens to
/// f32 exactly, so [`pool_hits`] over the widened values is the kernel's arithmetic.
pub fn update_rows_f16(
    batch: &TwinBatch,
    hit: &[u32],
    dout: &[f32],
    dim: usize,
    values: &mut [f32],
    state: &mut [f32],
    opt: TwinOpt,
) {
    update_rows_stored(
        batch,
        hit,
        dout,
        dim,
        values,
        state,
        opt,
        super::tt_f16::round_f16,
    );
}

/// [`update_rows`] with each new value passed through `store` (the storage's rounding).
#[allow(clippy::too_many_arguments)]
fn update_rows_stored(
    batch: &TwinBatch,
    hit: &[u32],
    dout: &[f32],
    dim: usize,
    values: &mut [f32],
    state: &mut [f32],
    opt: TwinOpt,
    store: impl Fn(f32) -> f32,
) {
    for b in 0..batch.num_bags {
        let (lo, hi) = (batch.offsets[b] as usize, batch.offsets[b + 1] as usize);
        let dest = batch.bag_dest[b] as usize;
        for (n, &h) in hit.iter().enumerate().take(hi).skip(lo) {
            if h == NONE {
                continue;
            }
            let s = batch.scale(b, n);
            let slot = h as usize;
            let row = &mut values[slot * dim..(slot + 1) * dim];
            let g = |c: usize| s * dout[dest + c];
            match opt {
                TwinOpt::Sgd { lr } => {
                    for (c, w) in row.iter_mut().enumerate() {
                        *w = store(*w - lr * g(c));
                    }
                }
                TwinOpt::Adagrad { lr, eps } => {
                    let mut sq = 0.0f32;
                    for c in 0..dim {
                        sq += g(c) * g(c);
                    }
                    state[slot] += sq / dim as f32;
                    let den = state[slot].sqrt() + eps;
                    for (c, w) in row.iter_mut().enumerate() {
                        *w = store(*w - lr * g(c) / den);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_keys_breaks_ties_by_key() {
        let counts = [(5u32, 2u32), (3, 7), (9, 2), (1, 2), (4, 7)];
        assert_eq!(top_keys(counts, 3), [3, 4, 1]);
        assert_eq!(top_keys(counts, 10), [3, 4, 1, 5, 9]);
    }

    #[test]
    fn a_full_table_drops_and_reports() {
        let mut t = HashTwin::new(4, 4);
        let keys = [1u32, 2, 3, 4, 5, 1, 6];
        let hit = t.probe(&keys, true);
        assert!(hit.iter().all(|&h| h == NONE));
        assert_eq!(t.dropped, 2);
        assert_eq!(t.counts_by_key()[&1], 2);
        let members = t.refresh(2);
        assert_eq!(members.len(), 2);
        assert!(members.contains(&1));
        let hit = t.probe(&[1, 5], false);
        assert_ne!(hit[0], NONE);
        assert_eq!((hit[1], t.hits), (NONE, 1));
    }
}
