//! Launcher of `shaders/embedding.wgsl`: uncompressed EmbeddingBag (sum) over a group of tables,
//! per shard of rows, forward and backward with the fused update.

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
    launch(
        g,
        label,
        Kernel::BagFwd,
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
        (s.tables * s.bags * s.dim / 4) as u64,
    )?;
    // One invocation per (table, bag, vec4 column) walks the bag's lookups; every lookup's
    // row is read (the shard's rows only are added).
    let (l, d, out) = (s.lookups as f64, s.dim as f64, (s.tables * s.bags * s.dim) as f64);
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
    let code = match kind {
        UpdateKind::Sgd => 0.0,
        UpdateKind::Adagrad => 1.0,
    };
    launch(
        g,
        label,
        Kernel::BagBwd,
        &[
            ("D", dim as f64),
            ("SEGMENTS", segments as f64),
            ("SHARD_LO", shard.lo as f64),
            ("SHARD_ROWS", shard.rows as f64),
            ("OPTIMIZER", code),
        ],
        named![
            opt,
            segs,
            dest,
            dout,
            weight = shard.weight.clone(),
            state = shard.state.clone(),
            seg_grad
        ],
        (segments * dim / 4) as u64,
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
