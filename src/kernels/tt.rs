//! Launchers of `shaders/tt.wgsl`: the per-lookup core chain, pooling, the row gradient and the
//! segment-ordered core gradient, each specialised by override constants for its shapes.

use crate::error::Result;
use crate::gpu::grid;
use crate::graph::{Buf, GraphBuilder};
use crate::kernels::groups;
use crate::kernels::optim::UpdateKind;

/// The per-chunk uniform (the WGSL `Chunk`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ChunkParams {
    pub start: u32,
    pub len: u32,
    pub cap: u32,
    pub num_bags: u32,
    pub index: u32,
    pub _pad: [u32; 3],
}

/// Shapes of one chain product C = A (m x k) * B (k x n) per lookup.
#[derive(Clone, Copy, Debug)]
pub struct ChainShape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Core whose slice is B (its digit selects the slice).
    pub core: usize,
    /// B is stored transposed ([n, k]): the backward direction.
    pub trans_b: bool,
    /// A is core 0's slice at the lookup's digit 0 instead of scratch.
    pub a_from_core: bool,
}

/// Adds one chain product for up to `max_lookups` lookups of a chunk.
#[allow(clippy::too_many_arguments)]
pub fn record_chain(
    g: &mut GraphBuilder,
    label: String,
    s: ChainShape,
    chunk: Buf,
    digits: Buf,
    a: Buf,
    core: Buf,
    out: Buf,
    max_lookups: usize,
) -> Result<()> {
    // Vectorised variants where the inner dimensions allow vec4 reads.
    let entry = match (s.trans_b, s.k.is_multiple_of(4), s.n.is_multiple_of(4)) {
        (false, true, true) => "chain_v4",
        (true, true, _) => "chain_t_v4",
        _ => "chain",
    };
    // Wider column tiles amortise each invocation's loads of A over more columns.
    let tnq = if entry == "chain_t_v4" {
        pick_tnq_rows(s.n)
    } else {
        pick_tnq(s.n)
    };
    let pipeline = g.gpu().pipeline(
        "tt",
        entry,
        &[
            ("M", s.m as f64),
            ("K", s.k as f64),
            ("N", s.n as f64),
            ("CORE_K", s.core as f64),
            ("TRANS_B", if s.trans_b { 1.0 } else { 0.0 }),
            ("A_FROM_CORE", if s.a_from_core { 1.0 } else { 0.0 }),
            ("TNQ", tnq as f64),
        ],
    )?;
    let col_tiles = match entry {
        "chain_v4" => s.n / 4 / tnq,
        "chain_t_v4" => s.n.div_ceil(4 * tnq),
        _ => s.n.div_ceil(4),
    };
    let inv = max_lookups as u64 * s.m.div_ceil(4) as u64 * col_tiles as u64;
    let gr = groups(g, inv);
    g.dispatch(label, pipeline, vec![chunk, digits, a, core, out], gr);
    Ok(())
}

/// Adds the pooling of a chunk's rows into the bag outputs (bag b's row at element `dest[b]` of
/// `out`): the first chunk writes every bag, later ones (`accumulate`) add to it.
#[allow(clippy::too_many_arguments)]
pub fn record_pool(
    g: &mut GraphBuilder,
    label: String,
    dim: usize,
    chunk: Buf,
    offsets: Buf,
    scale: Buf,
    rows: Buf,
    out: Buf,
    dest: Buf,
    accumulate: bool,
    max_bags: usize,
) -> Result<()> {
    let pipeline = g.gpu().pipeline(
        "tt",
        "pool",
        &[
            ("D", dim as f64),
            ("ACCUMULATE", if accumulate { 1.0 } else { 0.0 }),
        ],
    )?;
    let gr = groups(g, max_bags as u64 * dim as u64);
    g.dispatch(
        label,
        pipeline,
        vec![chunk, offsets, scale, rows, out, dest],
        gr,
    );
    Ok(())
}

/// Adds the per-lookup row gradient `drow[n] = scale[n] * dout[dest[n]..]` (`dest[n]`: where the
/// lookup's bag's gradient row starts).
#[allow(clippy::too_many_arguments)]
pub fn record_row_grad(
    g: &mut GraphBuilder,
    label: String,
    dim: usize,
    chunk: Buf,
    dest: Buf,
    scale: Buf,
    dout: Buf,
    drow: Buf,
    max_lookups: usize,
) -> Result<()> {
    let pipeline = g.gpu().pipeline("tt", "row_grad", &[("D", dim as f64)])?;
    let gr = groups(g, max_lookups as u64 * dim as u64);
    g.dispatch(label, pipeline, vec![chunk, dest, scale, dout, drow], gr);
    Ok(())
}

/// Where the left factor P_k of a core gradient comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixSource {
    /// P_0 = 1 (core 0).
    One,
    /// P_1 = core 0's slice.
    Core0,
    /// P_k from scratch.
    Scratch,
}

/// Shapes of one core gradient: `grad[row]` (rk x nk) += P^T (rk x qk) * dP (qk x nk).
#[derive(Clone, Copy, Debug)]
pub struct CoreGradShape {
    pub core: usize,
    pub rows: usize,
    pub qk: usize,
    pub rk: usize,
    pub nk: usize,
    pub prefix: PrefixSource,
}

/// The update fused into a core gradient (a plan with one chunk): which optimizer, its uniform
/// parameters, the core and its optimizer state.
#[derive(Clone, Debug)]
pub struct FusedUpdate {
    pub kind: UpdateKind,
    pub opt: Buf,
    pub weight: Buf,
    pub state: Buf,
}

/// Adds the accumulation of one chunk's contribution to core `s.core`'s gradient, and with
/// `update` the fused update of the rows it touches (`opt` is the core's optimizer uniform,
/// bound even without an update).
#[allow(clippy::too_many_arguments)]
pub fn record_core_grad(
    g: &mut GraphBuilder,
    label: String,
    s: CoreGradShape,
    chunk: Buf,
    digits: Buf,
    sorted: Buf,
    segments: Buf,
    prefix: Buf,
    dp: Buf,
    grad: Buf,
    opt: Buf,
    update: Option<FusedUpdate>,
) -> Result<()> {
    let mode = match s.prefix {
        PrefixSource::One => 0.0,
        PrefixSource::Core0 => 1.0,
        PrefixSource::Scratch => 2.0,
    };
    let vec4 = s.nk.is_multiple_of(4) && (s.prefix == PrefixSource::One || s.rk.is_multiple_of(4));
    let entry = if vec4 { "core_grad_v4" } else { "core_grad" };
    let tnq = pick_tnq(s.nk);
    let trq = if vec4 { pick_trq(s.rk, s.prefix) } else { 1 };
    let pipeline = g.gpu().pipeline(
        "tt",
        entry,
        &[
            ("QK", s.qk as f64),
            ("RK", s.rk as f64),
            ("NK", s.nk as f64),
            ("PK", s.rows as f64),
            ("P_MODE", mode),
            ("CORE_K", s.core as f64),
            ("TNQ", tnq as f64),
            ("TRQ", trq as f64),
            (
                "FUSED_UPDATE",
                match update.as_ref().map(|u| u.kind) {
                    None => 0.0,
                    Some(UpdateKind::Sgd) => 1.0,
                    Some(UpdateKind::Adagrad) => 2.0,
                },
            ),
        ],
    )?;
    // Core 0 reads no prefix; bind the placeholder there so that its own buffer can be updated
    // (read-write) in the same dispatch.
    let prefix = if s.prefix == PrefixSource::One {
        Buf::from(g.gpu().placeholder())
    } else {
        prefix
    };
    let rw = Buf::from(g.gpu().placeholder_rw());
    let (weight, state) = match &update {
        Some(u) => (u.weight.clone(), u.state.clone()),
        None => (rw.clone(), rw),
    };
    let col_tiles = if vec4 {
        s.nk / 4 / tnq
    } else {
        s.nk.div_ceil(4)
    };
    let inv = s.rows as u64 * s.rk.div_ceil(4 * trq) as u64 * col_tiles as u64;
    let gr = groups(g, inv);
    g.dispatch(
        label,
        pipeline,
        vec![
            chunk, digits, sorted, segments, prefix, dp, grad, opt, weight, state,
        ],
        gr,
    );
    Ok(())
}

/// The widest of 4, 2, 1 quads that is at most `cap` (the environment variable `env` overrides
/// it, for tuning) and divides `len` into whole quads.
fn widest_quads(env: &str, cap: usize, len: usize) -> usize {
    let cap = std::env::var(env)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cap);
    [4, 2, 1]
        .into_iter()
        .filter(|&t| t <= cap)
        .find(|t| len.is_multiple_of(4 * t))
        .unwrap_or(1)
}

/// Vec4 columns per invocation (`TTREC_TNQ` caps it).
fn pick_tnq(cols: usize) -> usize {
    widest_quads("TTREC_TNQ", 4, cols)
}

/// Row quads per core-gradient invocation (`TTREC_TRQ` caps it); 1 where there is no prefix
/// (the rank is 1). 2, not 4: with 16 rows x 4 vec4 columns lavapipe's compiler stops unrolling.
fn pick_trq(rk: usize, prefix: PrefixSource) -> usize {
    if prefix == PrefixSource::One {
        return 1;
    }
    widest_quads("TTREC_TRQ", 2, rk)
}

/// Groups of 4 output columns per invocation of the transposed chain (any N: edges are clamped);
/// `TTREC_TNQ_T` overrides it, for tuning.
fn pick_tnq_rows(cols: usize) -> usize {
    let want = std::env::var("TTREC_TNQ_T")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2usize);
    want.clamp(1, 4).min(cols.div_ceil(4))
}

/// Adds the transposition of every `[rk, nk]` slice of a core with `rows` slices into `out`.
pub fn record_transpose(
    g: &mut GraphBuilder,
    label: String,
    core: Buf,
    out: Buf,
    rows: usize,
    rk: usize,
    nk: usize,
) -> Result<()> {
    let pipeline = g.gpu().pipeline(
        "tt",
        "transpose_slices",
        &[("RK", rk as f64), ("NK", nk as f64), ("PK", rows as f64)],
    )?;
    let gr = groups(g, (rows * rk * nk) as u64);
    g.dispatch(label, pipeline, vec![core, out], gr);
    Ok(())
}

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
) -> Result<()> {
    let pipeline = g.gpu().pipeline(
        "tt_subgroup",
        "chain_sg",
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
    )?;
    let tasks = layout.per_chunk as u64 * (s.n / 4 / layout.lanes) as u64;
    let gr = grid(
        tasks * layout.lanes as u64,
        layout.lanes as u32,
        g.gpu().limits().max_compute_workgroups_per_dimension,
    );
    g.dispatch(
        label,
        pipeline,
        vec![chunk, digits, pieces, a, core, out],
        gr,
    );
    Ok(())
}
