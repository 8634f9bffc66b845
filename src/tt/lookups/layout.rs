//! How a plan's lookups are processed, decided once when the plan is declared: where they come
//! from ([`LookupSource`]), the capacities, the chunk size (scratch is sized for one chunk), and
//! per core the kernel choices (the subgroup chain's pieces, the transposed backward copy, the
//! core-gradient strategy), all in one [`LookupLayout`] value; and the shapes of the chain
//! products and core gradients those kernels run. Sizing only: no buffers, no recording.

use crate::kernels::tt::{
    core_grad_is_vec4, ChainShape, CoreGradShape, CoreGradStrategy, PrefixSource, RunBounds,
};
use crate::kernels::tt_subgroup::PieceLayout;
use crate::tt::params::TtParams;

/// Where a plan's lookups come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupSource {
    /// The host's batch, every lookup through the cores.
    Host,
    /// The host's batch through the table's LFU cache: cached rows are pooled (and trained) from
    /// the cache, the misses are compacted on the GPU into the cores' path. With `count` the
    /// probe counts every lookup (training steps).
    Cached { count: bool },
    /// A cache refresh's members, bag i = member i (rows computed into the cache).
    Members,
}

impl LookupSource {
    /// The source of a plan over `params`'s table: through its cache where it has one.
    pub fn for_table(params: &TtParams, training: bool) -> Self {
        if params.cache().is_some() {
            LookupSource::Cached { count: training }
        } else {
            LookupSource::Host
        }
    }

    /// Whether the cores' path is routed on the GPU from something other than the host's batch
    /// as written (the misses of a cache, or a refresh's members): its uniforms are then
    /// written by the GPU, not by the host.
    pub fn gpu_routed(self) -> bool {
        self != LookupSource::Host
    }
}

/// The plan-time decisions of one table's lookups in one plan.
#[derive(Debug, Clone)]
pub struct LookupLayout {
    pub source: LookupSource,
    /// Most lookups a batch may have in this plan (at least 1).
    pub nnz_cap: usize,
    /// Most bags a batch may have in this plan.
    pub bag_cap: usize,
    /// Lookups per chunk (scratch is sized for one chunk).
    pub chunk: usize,
    /// Chunks of the plan: `nnz_cap / chunk`, rounded up.
    pub chunks: usize,
    /// Per core: the subgroup chain's piece layout, where it runs.
    pub pieces: Vec<Option<PieceLayout>>,
    /// Per core: whether the backward product reads the transposed copy (refreshed by each
    /// backward: worth it only when the lookups outnumber the core's rows).
    pub transposed: Vec<bool>,
    /// How the core gradients are reduced (the table's kernel variant).
    pub strategy: CoreGradStrategy,
    /// The longest bag and row runs the plan's batches may have (the kernels' counts).
    pub runs: RunBounds,
}

impl LookupLayout {
    /// The layout of up to `nnz_cap` lookups in up to `bag_cap` bags of `params`'s table.
    pub fn new(params: &TtParams, nnz_cap: usize, bag_cap: usize, source: LookupSource) -> Self {
        let d = params.shape().d();
        let nnz_cap = nnz_cap.max(1);
        let chunk = chunk_lookups(params, nnz_cap);
        LookupLayout {
            source,
            nnz_cap,
            bag_cap,
            chunk,
            chunks: nnz_cap.div_ceil(chunk),
            pieces: (0..d)
                .map(|k| piece_layout(params, k, chunk, source))
                .collect(),
            transposed: (0..d)
                .map(|k| use_transposed(params, k, chunk, source))
                .collect(),
            strategy: params.kernels().core_grad,
            runs: match source {
                // A refresh's members: one lookup per bag.
                LookupSource::Members => RunBounds {
                    bag: 1,
                    ..RunBounds::any(chunk, nnz_cap)
                },
                _ => RunBounds::any(chunk, nnz_cap),
            },
        }
    }

    /// Whether core k's gradient is reduced as pieces (the strategy, where the shapes allow
    /// the vec4 kernels).
    pub fn grad_by_pieces(&self, params: &TtParams, k: usize) -> bool {
        self.strategy == CoreGradStrategy::Pieces && core_grad_is_vec4(&core_grad_shape(params, k))
    }
}

/// Lookups per chunk: the largest number whose scratch fits the budget and every binding.
fn chunk_lookups(params: &TtParams, nnz_cap: usize) -> usize {
    let s = params.shape();
    let d = s.d();
    let mut per_lookup = 2 * s.dim(); // row and its gradient
    let mut largest = s.dim();
    for k in 1..d {
        let block = s.q_prefix(k) * s.ranks[k];
        // prefix P_k (k >= 2) and its gradient dP_k
        per_lookup += if k >= 2 { 2 * block } else { block };
        largest = largest.max(block);
    }
    let opts = params.options();
    let by_budget = (opts.scratch_bytes / (per_lookup as u64 * 4)).max(1);
    let by_binding = (params.gpu().max_binding() / (largest as u64 * 4)).max(1);
    let mut c = by_budget.min(by_binding) as usize;
    if let Some(m) = opts.max_chunk_lookups {
        c = c.min(m);
    }
    c.min(nnz_cap).max(1)
}

/// Forward product k: `P_{k+1} = P_k * G_k[i_k]` (P_1 is core 0's slice).
pub fn forward_product(params: &TtParams, k: usize) -> ChainShape {
    let s = params.shape();
    ChainShape {
        m: s.q_prefix(k),
        k: s.ranks[k],
        n: s.q[k] * s.ranks[k + 1],
        core: k,
        trans_b: false,
        a_from_core: k == 1,
    }
}

/// Backward product k: `dP_k = dP_{k+1} * G_k[i_k]^T`, on the transposed copy when
/// `transposed`.
pub fn backward_product(params: &TtParams, k: usize, transposed: bool) -> ChainShape {
    let s = params.shape();
    ChainShape {
        m: s.q_prefix(k),
        k: s.q[k] * s.ranks[k + 1],
        n: s.ranks[k],
        core: k,
        trans_b: !transposed,
        a_from_core: false,
    }
}

/// Core k's gradient: `grad[row]` += P_k^T dP_{k+1} over the row's lookups.
pub fn core_grad_shape(params: &TtParams, k: usize) -> CoreGradShape {
    let s = params.shape();
    CoreGradShape {
        core: k,
        rows: s.p[k],
        qk: s.q_prefix(k),
        rk: s.ranks[k],
        nk: s.q[k] * s.ranks[k + 1],
        prefix: match k {
            0 => PrefixSource::One,
            1 => PrefixSource::Core0,
            _ => PrefixSource::Scratch,
        },
    }
}

/// Whether core k's backward reads a transposed copy for chunks of `chunk` lookups: the copy
/// costs a pass over the whole core per backward, so only when there are at least as many
/// lookups as rows, and not through a cache (which serves most lookups of a skewed batch, so
/// the cores' path sees far fewer than the plan's capacity: measured 1.2x slower with the copy
/// at Zipf 1.2 with a 1% cache on lavapipe).
fn use_transposed(params: &TtParams, k: usize, chunk: usize, source: LookupSource) -> bool {
    params.core_t_buffer(k).is_some()
        && chunk >= params.shape().p[k]
        && !matches!(source, LookupSource::Cached { .. })
}

/// The pieces of core k for the subgroup chain, where the adapter has fixed-size subgroups, one
/// of core k's products fits the kernel, and a digit has on average at least two lookups (with
/// fewer, most pieces would be padding).
fn piece_layout(
    params: &TtParams,
    k: usize,
    chunk: usize,
    source: LookupSource,
) -> Option<PieceLayout> {
    if k == 0 || !params.kernels().subgroups || chunk < 2 * params.shape().p[k] {
        return None;
    }
    let lanes = params.gpu().subgroup_size()? as usize;
    let s = params.shape();
    let layout = PieceLayout::new(lanes, s.q_prefix(k), s.p[k], chunk)?;
    let transposed = use_transposed(params, k, chunk, source);
    (layout.fits(&forward_product(params, k))
        || layout.fits(&backward_product(params, k, transposed)))
    .then_some(layout)
}
