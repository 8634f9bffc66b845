//! CPU twin of the routing kernels (`shaders/tt_route.wgsl`, launchers in `kernels::tt_route`):
//! a validated batch laid out as the GPU routes it, in plain Rust: each lookup's row digits, its
//! bag's destination and pooling scale, per core every chunk's lookups stably sorted by digit with
//! their segments ([`prepare_group`]), and the subgroup chain's pieces ([`cut_pieces`]). The GPU
//! does all of this in a step (the host only writes ids, offsets and placements); these functions
//! are the tests' oracle, which must match it exactly (integers only).

use crate::tt_bags::{Bags, Placement};
use crate::tt_shape::{GroupTable, Pooling, TtShape};

/// A validated batch as the routing kernels lay it out, padded to the plan's capacities.
#[derive(Debug, Default)]
pub struct RoutedBatch {
    pub nnz: usize,
    pub num_bags: usize,
    /// Row digit (in the group's core) of lookup n for core k at `k * nnz_cap + n`.
    pub digits: Vec<u32>,
    /// For each lookup, where its bag's row starts in the output (and its gradient).
    pub dest: Vec<u32>,
    /// Pooling factor of each lookup: weight (sum), 1 (sum), 1 / bag length (mean).
    pub scale: Vec<f32>,
    /// Bag offsets into the lookups (all tables' bags in table order), padded with nnz to
    /// bag_cap + 1.
    pub offsets: Vec<u32>,
    /// For each bag, where its pooled row starts in the output.
    pub bag_dest: Vec<u32>,
    /// For core k at `k * nnz_cap + s`: lookups of each chunk sorted by digit k (stable).
    pub sorted: Vec<u32>,
    /// For core k: per chunk, rows_k + 1 positions into `sorted` where each digit's run starts.
    pub segments: Vec<Vec<u32>>,
}

/// Lays a validated single-table batch out (pooled rows dense `[B, D]`); see [`prepare_group`].
pub fn prepare(
    shape: &TtShape,
    bags: &Bags,
    pooling: Pooling,
    nnz_cap: usize,
    bag_cap: usize,
    chunk: usize,
) -> RoutedBatch {
    let table = GroupTable {
        shape: shape.clone(),
        bases: vec![0; shape.d()],
    };
    prepare_group(
        &[table],
        &shape.p,
        &[*bags],
        &Placement::dense(shape.dim()),
        pooling,
        nnz_cap,
        bag_cap,
        chunk,
    )
}

/// Lays validated batches of the tables of a group (one [`Bags`] per table, lookups concatenated
/// in table order) out for a plan with `nnz_cap` lookups, `bag_cap` bags and chunks of `chunk`
/// lookups; `rows[k]` is the group's row count of core k. O(nnz * d + chunks * sum(rows)).
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)]
pub fn prepare_group(
    tables: &[GroupTable],
    rows: &[usize],
    bags: &[Bags],
    place: &Placement,
    pooling: Pooling,
    nnz_cap: usize,
    bag_cap: usize,
    chunk: usize,
) -> RoutedBatch {
    let d = rows.len();
    let nnz: usize = bags.iter().map(|b| b.nnz()).sum();
    let nb: usize = bags.iter().map(|b| b.num_bags()).sum();
    let mut digits = vec![0u32; d * nnz_cap];
    let mut dest = vec![0u32; nnz_cap];
    let mut scale = vec![0f32; nnz_cap];
    let mut offsets = vec![nnz as u32; bag_cap + 1];
    let mut bag_dest = vec![0u32; bag_cap];
    let (mut n0, mut b0) = (0usize, 0usize);
    for (t, (table, bags)) in tables.iter().zip(bags).enumerate() {
        let shape = &table.shape;
        for b in 0..bags.num_bags() {
            let (lo, hi) = (
                bags.offsets.get(b) as usize,
                bags.offsets.get(b + 1) as usize,
            );
            offsets[b0 + b] = (n0 + lo) as u32;
            let at = (place.col[t] + b * place.stride[t]) as u32;
            bag_dest[b0 + b] = at;
            let mean = 1.0 / (hi - lo).max(1) as f32;
            for n in lo..hi {
                dest[n0 + n] = at;
                scale[n0 + n] = match (pooling, bags.weights) {
                    (Pooling::Mean, _) => mean,
                    (Pooling::Sum, Some(w)) => w[n],
                    (Pooling::Sum, None) => 1.0,
                };
            }
        }
        for n in 0..bags.nnz() {
            let mut rest = bags.indices.get(n) as u64;
            for k in (0..d).rev() {
                let digit = (rest % shape.p[k] as u64) as usize;
                digits[k * nnz_cap + n0 + n] = (table.bases[k] + digit) as u32;
                rest /= shape.p[k] as u64;
            }
        }
        n0 += bags.nnz();
        b0 += bags.num_bags();
    }
    offsets[nb] = nnz as u32;
    let chunks = nnz_cap.div_ceil(chunk).max(1);
    let mut sorted = vec![0u32; d * nnz_cap];
    let mut segments = Vec::with_capacity(d);
    for k in 0..d {
        let p = rows[k];
        let mut seg = vec![0u32; chunks * (p + 1)];
        let dk = &digits[k * nnz_cap..(k + 1) * nnz_cap];
        let out = &mut sorted[k * nnz_cap..(k + 1) * nnz_cap];
        let mut count = vec![0u32; p + 1];
        for c in 0..chunks {
            let start = (c * chunk).min(nnz);
            let end = ((c + 1) * chunk).min(nnz);
            count.iter_mut().for_each(|x| *x = 0);
            for &dg in &dk[start..end] {
                count[dg as usize + 1] += 1;
            }
            let s = &mut seg[c * (p + 1)..(c + 1) * (p + 1)];
            s[0] = start as u32;
            for r in 0..p {
                s[r + 1] = s[r] + count[r + 1];
            }
            let mut next: Vec<u32> = s[..p].to_vec();
            for (n, &dg) in dk.iter().enumerate().take(end).skip(start) {
                out[next[dg as usize] as usize] = n as u32;
                next[dg as usize] += 1;
            }
        }
        segments.push(seg);
    }
    RoutedBatch {
        nnz,
        num_bags: nb,
        digits,
        dest,
        scale,
        offsets,
        bag_dest,
        sorted,
        segments,
    }
}

/// Marks an unused slot of a piece (the WGSL `NONE`); a used slot holds its lookup + 1.
pub const NO_LOOKUP: u32 = 0;

/// Cuts each chunk's lookups, in core k's digit order, into pieces of up to `len` lookups of one
/// digit: `per_chunk` pieces of `len` slots per chunk, each used slot holding its lookup + 1,
/// unused slots `NO_LOOKUP`. The pieces of a
/// digit hold its lookups in sorted order, so every output keeps the order of the reference.
pub fn cut_pieces(
    hb: &RoutedBatch,
    k: usize,
    p_k: usize,
    nnz_cap: usize,
    chunk: usize,
    len: usize,
    per_chunk: usize,
) -> Vec<u32> {
    let chunks = nnz_cap.div_ceil(chunk).max(1);
    let mut out = vec![NO_LOOKUP; chunks * per_chunk * len];
    let sorted = &hb.sorted[k * nnz_cap..(k + 1) * nnz_cap];
    let seg = &hb.segments[k];
    for c in 0..chunks {
        let bounds = &seg[c * (p_k + 1)..(c + 1) * (p_k + 1)];
        let mut piece = 0;
        for r in 0..p_k {
            let run = &sorted[bounds[r] as usize..bounds[r + 1] as usize];
            for part in run.chunks(len) {
                let at = (c * per_chunk + piece) * len;
                for (slot, &n) in out[at..at + part.len()].iter_mut().zip(part) {
                    *slot = n + 1;
                }
                piece += 1;
            }
        }
        debug_assert!(piece <= per_chunk);
    }
    out
}
