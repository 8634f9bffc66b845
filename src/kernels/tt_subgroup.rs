//! Launcher of `shaders/tt_subgroup.wgsl`: the chain product computed piece by piece, the
//! lookups of one digit sharing the loaded core slice across a subgroup (`chain_sg`), where the
//! adapter has fixed-size subgroups. Its own file because it is its own shader (compiled only
//! where subgroups exist); the products are those of [`crate::kernels::tt`]'s chain, bitwise the
//! same. The pieces are cut on the GPU by the routing sort (`kernels::tt_route`).

use crate::error::Result;
use crate::gpu::grid;
use crate::gpu::shaders::{CorePrecision, Kernel, ShaderTypes};
use crate::graph::{Buf, Cost, GraphBuilder};
use crate::kernels::tt::ChainShape;
use crate::kernels::{launch_grid_typed, named};

/// How the lookups of a chunk are cut into pieces of one digit of core k for `chain_sg`
/// (shaders/tt_subgroup.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceLayout {
    /// Subgroup size the kernels run with.
    pub lanes: usize,
    /// Lookups per piece (L).
    pub len: usize,
    /// Piece slots per chunk: enough for any batch (every digit may leave one partial piece).
    pub per_chunk: usize,
}

/// Vec4 accumulators per lane in `chain_sg` (its MAX_ROWS). 16 is the measured best on lavapipe:
/// with 32 the compiler stops unrolling the lane's loops and the kernel runs 3x slower.
const SG_MAX_ROWS: usize = 16;

impl PieceLayout {
    /// The layout for products with `m` rows of A per lookup over a core with `rows` digits and
    /// chunks of `chunk` lookups, on subgroups of `lanes`; None where `chain_sg` cannot run. L is
    /// the largest power of two that fits the lane's accumulators and does not exceed the mean
    /// run of a digit (longer pieces would mostly be padding). A subgroup of up to 64 lanes
    /// works (lanes past the piece's rows only load), so NVIDIA's 32 and AMD's 64 qualify.
    pub fn new(lanes: usize, m: usize, rows: usize, chunk: usize) -> Option<Self> {
        let mean_run = (chunk / rows.max(1)).max(1);
        let mut best = None;
        let mut len = 1;
        while len * m <= SG_MAX_ROWS && (best.is_none() || len <= mean_run) {
            best = Some(len);
            len *= 2;
        }
        best.map(|len| PieceLayout {
            lanes,
            len,
            per_chunk: chunk.div_ceil(len) + rows.min(chunk),
        })
    }

    /// Whether `chain_sg` can compute product `s` (vec4 reads along K, whole column groups).
    pub fn fits(&self, s: &ChainShape) -> bool {
        !s.trans_b
            && s.k.is_multiple_of(4)
            && s.n.is_multiple_of(4 * self.lanes)
            && self.len * s.m <= SG_MAX_ROWS
    }
}

/// Adds one chain product computed piece by piece with subgroup operand sharing (`chain_sg`).
#[allow(clippy::too_many_arguments)]
pub fn record_chain_sg(
    g: &mut GraphBuilder,
    label: String,
    s: ChainShape,
    layout: PieceLayout,
    rows: usize,
    chunk: Buf,
    digits: Buf,
    pieces: Buf,
    a: Buf,
    core: Buf,
    out: Buf,
    precision: CorePrecision,
) -> Result<()> {
    let tasks = layout.per_chunk as u64 * (s.n / 4 / layout.lanes) as u64;
    let gr = grid(
        tasks * layout.lanes as u64,
        layout.lanes as u32,
        g.gpu().limits().max_compute_workgroups_per_dimension,
    );
    launch_grid_typed(
        g,
        label,
        Kernel::TtChainSg,
        ShaderTypes::new(precision, s.a_from_core),
        &[
            ("SG", layout.lanes as f64),
            ("L", layout.len as f64),
            ("PIECES", layout.per_chunk as f64),
            ("M", s.m as f64),
            ("K", s.k as f64),
            ("N", s.n as f64),
            ("PK", rows as f64),
            ("CORE_K", s.core as f64),
            ("A_FROM_CORE", if s.a_from_core { 1.0 } else { 0.0 }),
        ],
        named![chunk, digits, pieces, a, b = core, out],
        gr,
    )?;
    let slots = (layout.per_chunk * layout.len) as f64;
    let (m, k, n) = (s.m as f64, s.k as f64, s.n as f64);
    if let Some(meta) = g.last_meta() {
        meta.invocations = Some(tasks * layout.lanes as u64);
    }
    // Every piece slot computes (a piece's empty tail repeats its first lookup); B's slice is
    // loaded once per piece, A and C per lookup; each output one chain of K multiply-adds.
    g.set_cost(Cost {
        flops: 2.0 * slots * m * k * n,
        bytes: 4.0 * (slots * (m * k + m * n + 1.0) + layout.per_chunk as f64 * k * n),
        serial: s.k as u64,
    });
    Ok(())
}
