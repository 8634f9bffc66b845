//! Launcher of `shaders/embedding.wgsl`: uncompressed EmbeddingBag (sum) over a group of tables,
//! per shard of rows, forward and backward with the fused update. Widths that are a multiple of
//! 4 run the vec4 kernels; other widths (dlrm's mixed-dimension tables) their scalar forms
//! (`_s`): one invocation per scalar column, the same sums in the same order.

use crate::error::Result;
use crate::gpu::shaders::Kernel;
use crate::graph::{Buf, Cost, GraphBuilder};
use crate::kernels::named;
use crate::kernels::optim::UpdateKind;
use crate::kernels::{launch, MatrixAt};

/// A shard: `rows` group rows from `lo`, held in `weight` (and `state` for Adagrad).
#[derive(Clone, Debug)]
pub struct ShardAt {
    pub lo: usize,
    pub rows: usize,
    pub weight: Buf,
    pub state: Buf,
}

/// Shapes of a group's lookups.
#[derive(Clone, Copy, Debug)]
pub struct BagGroupShape {
    pub dim: usize,
    pub tables: usize,
    pub bags: usize,
    /// Most lookups of a batch, of one bag, and of one row (the counts' loops).
    pub lookups: usize,
    pub bag_run: usize,
    pub row_run: usize,
}

/// `vec4` when `dim` is a multiple of 4, else the scalar form; with the columns per invocation.
fn pick(dim: usize, vec4: Kernel, scalar: Kernel) -> (Kernel, usize) {
    if dim.is_multiple_of(4) {
        (vec4, 4)
    } else {
        (scalar, 1)
    }
}

/// Adds the pooling of one shard's rows: bag b of table t into `out` at
/// `b * out.stride + col_off[t]` (`out.offset` must be 0; `col_off` holds the offsets).
/// `accumulate`: add to what earlier shards wrote.
#[allow(clippy::too_many_arguments)]
pub fn record_bag_fwd(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    s: BagGroupShape,
    offsets: Buf,
    rows: Buf,
    col_off: Buf,
    shard: &ShardAt,
    out: &MatrixAt,
    accumulate: bool,
) -> Result<()> {
    let (kernel, lanes) = pick(s.dim, Kernel::BagFwd, Kernel::BagFwdS);
    launch(
        g,
        label,
        kernel,
        &[
            ("D", s.dim as f64),
            ("TABLES", s.tables as f64),
            ("BAGS", s.bags as f64),
            ("OUT_STRIDE", out.stride as f64),
            ("SHARD_LO", shard.lo as f64),
            ("SHARD_ROWS", shard.rows as f64),
            ("ACCUMULATE", accumulate as u8 as f64),
        ],
        named![
            offsets,
            rows,
            col_off,
            weight = shard.weight.clone(),
            out = out.buf.clone()
        ],
        (s.tables * s.bags * s.dim / lanes) as u64,
    )?;
    // One invocation per (table, bag, vec4 column) walks the bag's lookups; every lookup's
    // row is read (the shard's rows only are added).
    let (l, d, out) = (
        s.lookups as f64,
        s.dim as f64,
        (s.tables * s.bags * s.dim) as f64,
    );
    g.set_cost(Cost {
        flops: l * d,
        bytes: 4.0 * (l * (d + 1.0) + out * (1.0 + accumulate as u8 as f64)),
        serial: s.bag_run as u64,
    });
    Ok(())
}

/// Adds one shard's backward: per distinct row (segment) the sum of its lookups' output
/// gradients (kept in `seg_grad`), then `kind`'s update of the row with the parameters in `opt`.
/// `row_run`: the most lookups of one row (the counts).
#[allow(clippy::too_many_arguments)]
pub fn record_bag_bwd(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    dim: usize,
    segments: usize,
    kind: UpdateKind,
    opt: Buf,
    segs: Buf,
    dest: Buf,
    dout: Buf,
    shard: &ShardAt,
    seg_grad: Buf,
    row_run: usize,
) -> Result<()> {
    let (kernel, lanes) = pick(dim, Kernel::BagBwd, Kernel::BagBwdS);
    launch(
        g,
        label,
        kernel,
        &update_overrides(dim, segments, kind, shard),
        named![
            opt,
            segs,
            dest,
            dout,
            weight = shard.weight.clone(),
            state = shard.state.clone(),
            seg_grad
        ],
        (segments * dim / lanes) as u64,
    )?;
    // One invocation per (segment, vec4 column) sums the row's lookups in order, then updates.
    let (u, d) = (segments as f64, dim as f64);
    g.set_cost(Cost {
        flops: u * d * 6.0,
        bytes: 4.0 * (u * d * 6.0 + 3.0 * u),
        serial: row_run as u64,
    });
    Ok(())
}

/// The override constants of a row update over one shard (`bag_bwd`, `bag_bwd_combine`).
fn update_overrides(
    dim: usize,
    segments: usize,
    kind: UpdateKind,
    shard: &ShardAt,
) -> [(&'static str, f64); 5] {
    let optimizer = match kind {
        UpdateKind::Sgd => 0.0,
        UpdateKind::Adagrad => 1.0,
    };
    [
        ("D", dim as f64),
        ("SEGMENTS", segments as f64),
        ("SHARD_LO", shard.lo as f64),
        ("SHARD_ROWS", shard.rows as f64),
        ("OPTIMIZER", optimizer),
    ]
}

/// Most lookups of one piece of the GPU class's backward (`bag_bwd_pieces`).
pub const BAG_PIECE: usize = 16;

/// Cuts the segments of a batch of `nnz` row-sorted lookups (segment u starts at `starts[u]`
/// and ends where u + 1 starts, the last at `nnz`) into pieces of at most [`BAG_PIECE`]
/// lookups: the pieces' starts (then `nnz`, padded with it to `slots + 1` words) and each
/// segment's first piece (then the piece count, padded with it to `segments + 1` words). A
/// piece holds at least one lookup, so `slots = nnz` suffice.
pub fn cut_bag_pieces(
    starts: &[u32],
    nnz: u32,
    slots: usize,
    segments: usize,
) -> (Vec<u32>, Vec<u32>) {
    let mut cuts = Vec::with_capacity(slots + 1);
    let mut seg_pieces = Vec::with_capacity(segments + 1);
    for (u, &s0) in starts.iter().enumerate() {
        let s1 = starts.get(u + 1).copied().unwrap_or(nnz);
        seg_pieces.push(cuts.len() as u32);
        cuts.extend((s0..s1).step_by(BAG_PIECE));
    }
    let pieces = cuts.len() as u32;
    cuts.resize(slots + 1, nnz);
    seg_pieces.resize(segments + 1, pieces);
    (cuts, seg_pieces)
}

/// Adds the GPU class's first half of the backward: the output gradients of each piece's
/// lookups (`cuts`, [`cut_bag_pieces`]) summed in order into `partial` ([slots, dim]).
#[allow(clippy::too_many_arguments)]
pub fn record_bag_bwd_pieces(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    dim: usize,
    slots: usize,
    cuts: Buf,
    dest: Buf,
    dout: Buf,
    partial: Buf,
) -> Result<()> {
    let (kernel, lanes) = pick(dim, Kernel::BagBwdPieces, Kernel::BagBwdPiecesS);
    launch(
        g,
        label,
        kernel,
        &[("D", dim as f64), ("PIECES", slots as f64)],
        named![cuts, dest, dout, partial],
        (slots * dim / lanes) as u64,
    )?;
    // Every lookup's gradient row read once, every piece's sum written once.
    let (p, d) = (slots as f64, dim as f64);
    g.set_cost(Cost {
        flops: p * d,
        bytes: 4.0 * (p * (2.0 * d + 2.0)),
        serial: BAG_PIECE as u64,
    });
    Ok(())
}

/// Adds the GPU class's second half of one shard's backward: per segment its pieces' sums
/// added in order (kept in `seg_grad`), then `kind`'s update of the row (as
/// [`record_bag_bwd`]). `row_run`: the most lookups of one row (the counts).
#[allow(clippy::too_many_arguments)]
pub fn record_bag_bwd_combine(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    dim: usize,
    segments: usize,
    kind: UpdateKind,
    opt: Buf,
    segs: Buf,
    seg_pieces: Buf,
    partial: Buf,
    shard: &ShardAt,
    seg_grad: Buf,
    row_run: usize,
) -> Result<()> {
    let (kernel, lanes) = pick(dim, Kernel::BagBwdCombine, Kernel::BagBwdCombineS);
    launch(
        g,
        label,
        kernel,
        &update_overrides(dim, segments, kind, shard),
        named![
            opt,
            segs,
            seg_pieces,
            partial,
            weight = shard.weight.clone(),
            state = shard.state.clone(),
            seg_grad
        ],
        (segments * dim / lanes) as u64,
    )?;
    let (u, d) = (segments as f64, dim as f64);
    g.set_cost(Cost {
        flops: u * d * 6.0,
        bytes: 4.0 * (u * d * 6.0 + 3.0 * u),
        serial: row_run.div_ceil(BAG_PIECE) as u64,
    });
    Ok(())
}
