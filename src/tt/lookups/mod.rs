//! Recording the lookups of a TT table (or of a group of tables stored as one) into a step graph.
//! The host writes a batch's ids, bag offsets and where each bag's row goes into regions of the
//! plan's input (one O(nnz + bags) pass, no allocation); the step routes them on the GPU (row
//! digits, each lookup's bag, per-core sorts by digit with segments and pieces,
//! shaders/tt_route.wgsl). The pooled rows go to a caller's buffer at per-bag positions and the
//! row gradients come from one the same way. The same recording serves the standalone
//! [`crate::tt::TtEmbeddingBag`] and a whole model step, where all TT tables of a group share
//! every dispatch.
//!
//! [`TtLookups`] is declared here (its buffers, in one place) and made of parts, one file each:
//! - `layout.rs`: sizing and kernel choice, one `LookupLayout` value;
//! - `fill.rs`: the input regions and the host's packing of a batch into them;
//! - `route.rs`: the routing's buffers and its recording, with the row cache's part of a step;
//! - `chain.rs`: the chain's forward and backward recording, chunk by chunk.

pub mod chain;
pub mod fill;
pub mod layout;
pub mod route;

use crate::error::Result;
use crate::graph::{Buf, GraphBuilder, PlanInput};
use crate::kernels::tt::{ChunkParams, GradPieces, CORE_GRAD_BLOCK};
use crate::kernels::tt_cache::TABLE_WORDS;
use crate::kernels::tt_route::{
    table_desc_words, tt_params_words, CompactBuffers, CompactLayout, RouteParams, SortBuffers,
    SortLayout,
};
use crate::tt::params::TtParams;
use crate::tt_bags::{Bags, Placement};
use crate::tt_shape::Pooling;
use chain::Chain;
use fill::HostInputs;
use layout::{core_grad_shape, LookupLayout};
use route::{CacheRouting, CoresPath, Routing};

pub use chain::TtSaved;
pub use layout::LookupSource;

/// The lookups of one table in one plan: capacities, chunking, the per-batch input regions and
/// the routing's GPU buffers.
#[derive(Debug, Clone)]
pub struct TtLookups {
    /// Most lookups a batch may have in this plan.
    pub nnz_cap: usize,
    /// Most bags a batch may have in this plan.
    pub bag_cap: usize,
    /// Lookups per chunk (scratch is sized for one chunk).
    pub chunk: usize,
    tag: String,
    layout: LookupLayout,
    /// Written by [`Self::fill`] (the chunks by the GPU where the cores' path is routed there).
    inputs: HostInputs,
    /// Written by the GPU.
    routing: Routing,
}

/// Bytes of `n` u32 or f32 words.
fn words(n: usize) -> u64 {
    n as u64 * 4
}

/// Declares the sorts of every core: the sorted lookups (shared), then per core its counts,
/// totals, segments, piece tables and pieces, and its gradient pieces where the gradient is
/// reduced as pieces.
#[allow(clippy::type_complexity)]
fn declare_sorts(
    g: &mut GraphBuilder,
    params: &TtParams,
    layout: &LookupLayout,
    tag: &str,
) -> (Buf, Vec<(SortLayout, SortBuffers)>, Vec<Option<GradPieces>>) {
    let (s, d) = (params.shape(), params.shape().d());
    let (chunk, chunks) = (layout.chunk, layout.chunks);
    let mut sorts = Vec::with_capacity(d);
    let mut grad_pieces = Vec::with_capacity(d);
    let sorted = g.transient(&format!("{tag} sorted"), words(d * layout.nnz_cap));
    for (k, sg) in layout.pieces.iter().enumerate() {
        let rows = s.p[k];
        let by_pieces = layout.grad_by_pieces(params, k);
        let sort_layout = SortLayout::new(
            rows,
            k,
            chunk,
            chunks,
            if by_pieces { CORE_GRAD_BLOCK } else { 0 },
            sg.map(|l| (l.len, l.per_chunk)),
            params.kernels().sort,
        );
        let table_bytes = words(sort_layout.table_words());
        let grad_starts =
            by_pieces.then(|| g.transient(&format!("{tag} gradient pieces {k}"), table_bytes));
        let bufs = SortBuffers {
            counts: g.transient(
                &format!("{tag} sort counts {k}"),
                words(sort_layout.count_words()),
            ),
            totals: g.transient(
                &format!("{tag} sort totals {k}"),
                words(sort_layout.total_words()),
            ),
            segments: g.transient(&format!("{tag} segments {k}"), table_bytes),
            grad_pieces: grad_starts.clone(),
            sg_starts: sg.map(|_| g.transient(&format!("{tag} piece starts {k}"), table_bytes)),
            sg_pieces: sg.map(|l| {
                g.transient(
                    &format!("{tag} pieces {k}"),
                    words(chunks * l.per_chunk * l.len),
                )
            }),
            sorted: sorted.clone(),
        };
        grad_pieces.push(grad_starts.map(|starts| {
            let grad_shape = core_grad_shape(params, k);
            let per_chunk = GradPieces::slots(chunk, rows);
            let slice = (grad_shape.rk * grad_shape.nk) as u64;
            GradPieces {
                starts,
                partial: g.transient(
                    &format!("{tag} gradient partials {k}"),
                    per_chunk as u64 * slice * 4,
                ),
                per_chunk,
            }
        }));
        sorts.push((sort_layout, bufs));
    }
    (sorted, sorts, grad_pieces)
}

/// Declares the cores' path of `layout.source` over the batch's own `inputs` (ids, offsets,
/// tables; the chunks and bags are declared later): the batch itself from the host; through a
/// cache the probe's slots, the compaction's buffers, the misses and the cache's table input;
/// for a refresh the members. Returns the path, the cache routing and the cache's table input.
fn declare_cores_path(
    g: &mut GraphBuilder,
    params: &TtParams,
    layout: &LookupLayout,
    tag: &str,
    [route, ids, offsets, table_desc]: [&Buf; 4],
) -> (CoresPath, Option<CacheRouting>, Option<Buf>) {
    let d = params.shape().d();
    let (nnz_cap, bag_cap) = (layout.nnz_cap, layout.bag_cap);
    let gpu_routed = |g: &mut GraphBuilder| {
        (
            g.input(
                &format!("{tag} cores' route"),
                std::mem::size_of::<RouteParams>() as u64,
            ),
            g.transient(
                &format!("{tag} cores' uniforms"),
                words(tt_params_words(layout.chunks)),
            ),
        )
    };
    match layout.source {
        LookupSource::Host => {
            let path = CoresPath {
                route: route.clone(),
                ids: ids.clone(),
                offsets: offsets.clone(),
                desc: table_desc.clone(),
                uniforms: None,
            };
            (path, None, None)
        }
        LookupSource::Cached { count } => {
            let (cores_route, uniforms) = gpu_routed(g);
            let compact =
                CompactLayout::new(nnz_cap, layout.chunk, layout.chunks, table_desc_words(d));
            let bufs = CompactBuffers {
                hit: g.transient(&format!("{tag} cache slots"), words(nnz_cap)),
                ids: ids.clone(),
                offsets: offsets.clone(),
                tables: table_desc.clone(),
                blocks: g.transient(&format!("{tag} compact blocks"), words(compact.blocks)),
                total: g.transient(&format!("{tag} compact total"), 16),
                rank: g.transient(&format!("{tag} compact rank"), words(nnz_cap)),
                tt_ids: g.transient(&format!("{tag} misses"), words(nnz_cap)),
                orig: g.transient(&format!("{tag} misses' positions"), words(nnz_cap)),
                tt_offsets: g.transient(&format!("{tag} misses' offsets"), words(bag_cap + 1)),
                tt_tables: g.transient(
                    &format!("{tag} misses' tables"),
                    words(params.tables().len() * table_desc_words(d)),
                ),
                params: uniforms.clone(),
            };
            let cache_tables = g.input(
                &format!("{tag} cache tables"),
                words(params.tables().len() * TABLE_WORDS),
            );
            let path = CoresPath {
                route: cores_route,
                ids: bufs.tt_ids.clone(),
                offsets: bufs.tt_offsets.clone(),
                desc: bufs.tt_tables.clone(),
                uniforms: Some(uniforms),
            };
            let routing = CacheRouting {
                count,
                layout: compact,
                bufs,
            };
            (path, Some(routing), Some(cache_tables))
        }
        LookupSource::Members => {
            let (cores_route, uniforms) = gpu_routed(g);
            let members = params
                .cache()
                .map(|c| Buf::from(&c.members))
                .unwrap_or_else(|| ids.clone());
            let path = CoresPath {
                route: cores_route,
                ids: members,
                offsets: offsets.clone(),
                desc: table_desc.clone(),
                uniforms: Some(uniforms),
            };
            (path, None, None)
        }
    }
}

impl TtLookups {
    /// Declares the inputs of up to `nnz_cap` lookups in up to `bag_cap` bags of `params`'s
    /// table in `g` for a training step (through the table's cache, counting, where it has
    /// one), and the routing's buffers; `tag` prefixes the node labels.
    pub fn declare(
        g: &mut GraphBuilder,
        params: &TtParams,
        nnz_cap: usize,
        bag_cap: usize,
        tag: &str,
    ) -> Self {
        let source = LookupSource::for_table(params, true);
        Self::declare_with(g, params, nnz_cap, bag_cap, tag, source)
    }

    /// The lookups of a cache refresh: the cache's members as one-lookup bags.
    pub fn declare_members(g: &mut GraphBuilder, params: &TtParams, tag: &str) -> Self {
        let rows = params.cache().map_or(1, |c| c.config.rows);
        Self::declare_with(g, params, rows, rows, tag, LookupSource::Members)
    }

    /// [`Self::declare`] with the source given.
    pub fn declare_with(
        g: &mut GraphBuilder,
        params: &TtParams,
        nnz_cap: usize,
        bag_cap: usize,
        tag: &str,
        source: LookupSource,
    ) -> Self {
        let layout = LookupLayout::new(params, nnz_cap, bag_cap, source);
        let (nnz_cap, d) = (layout.nnz_cap, params.shape().d());
        let (sorted, sorts, grad_pieces) = declare_sorts(g, params, &layout, tag);
        let route = g.input(
            &format!("{tag} route"),
            std::mem::size_of::<RouteParams>() as u64,
        );
        let ids = g.input(&format!("{tag} ids"), words(nnz_cap));
        let offsets = g.input(&format!("{tag} offsets"), words(bag_cap + 1));
        let table_desc = g.input(
            &format!("{tag} tables"),
            words(params.tables().len() * table_desc_words(d)),
        );
        let (cores, cache, cache_tables) = declare_cores_path(
            g,
            params,
            &layout,
            tag,
            [&route, &ids, &offsets, &table_desc],
        );
        let inputs = HostInputs {
            chunk_params: (0..layout.chunks)
                .map(|c| {
                    g.input(
                        &format!("{tag} chunk {c}"),
                        std::mem::size_of::<ChunkParams>() as u64,
                    )
                })
                .collect(),
            bag_dest: g.input(&format!("{tag} bag destinations"), words(bag_cap)),
            weights: g.input(&format!("{tag} weights"), words(nnz_cap)),
            route,
            ids,
            offsets,
            table_desc,
            cache_tables,
        };
        let routing = Routing {
            cores,
            cache,
            digits: g.transient(&format!("{tag} digits"), words(d * nnz_cap)),
            dest: g.transient(&format!("{tag} destinations"), words(nnz_cap)),
            scale: g.transient(&format!("{tag} scale"), words(nnz_cap)),
            sorted,
            sorts,
            grad_pieces,
        };
        TtLookups {
            nnz_cap,
            bag_cap,
            chunk: layout.chunk,
            tag: tag.to_string(),
            layout,
            inputs,
            routing,
        }
    }

    /// The plan takes one lookup per bag, `bags_per_table` bags per table (DLRM's one-hot
    /// features): only the kernels' counts change (a row sees at most one lookup per bag).
    pub fn assume_one_hot(mut self, bags_per_table: usize) -> Self {
        self.layout.runs = self.layout.runs.one_hot(bags_per_table);
        self
    }

    /// Number of chunks.
    pub fn chunks(&self) -> usize {
        self.layout.chunks
    }

    /// Writes validated `bags` (one per table of `params`, each passed [`Bags::validate`]
    /// against its table) into the plan's `input`, pooled rows placed by `place`: the host's
    /// part of a step, one pass over the ids and offsets writing in place.
    pub fn fill(
        &self,
        input: &mut PlanInput,
        params: &TtParams,
        bags: &[Bags],
        place: &Placement,
        pooling: Pooling,
    ) -> Result<()> {
        self.inputs
            .fill(&self.layout, input, params, bags, place, pooling)
    }

    /// Writes a cache refresh's static input (route: the tables and capacity; bag i = member i
    /// with its row at i D; tables by their first key).
    pub fn fill_members(&self, input: &mut PlanInput, params: &TtParams) -> Result<()> {
        self.inputs.fill_members(&self.layout, input, params)
    }

    /// The parts a recording over `params` reads.
    fn chain<'a>(&'a self, params: &'a TtParams) -> Chain<'a> {
        Chain {
            params,
            layout: &self.layout,
            inputs: &self.inputs,
            routing: &self.routing,
            tag: &self.tag,
        }
    }

    /// Adds the forward: every chunk's rows pooled into `out` (each bag's row where the batch's
    /// placement puts it). Returns the scratch the backward of the same plan can reuse.
    pub fn record_forward(
        &self,
        g: &mut GraphBuilder,
        params: &TtParams,
        out: &Buf,
    ) -> Result<TtSaved> {
        self.chain(params).record_forward(g, out)
    }

    /// Adds the backward: dense core gradients of `sum(dout * pooled rows)` (each bag's
    /// gradient row where the placement put its row) and, with `update`, the optimizer step.
    /// With `saved` from this plan's forward and one chunk, the forward's prefixes are reused;
    /// otherwise each chunk recomputes them.
    pub fn record_backward(
        &self,
        g: &mut GraphBuilder,
        params: &TtParams,
        dout: &Buf,
        saved: Option<TtSaved>,
        update: bool,
    ) -> Result<()> {
        self.chain(params).record_backward(g, dout, saved, update)
    }

    /// Adds forward and backward chunk by chunk, each chunk's backward right after its forward,
    /// and with `update` the optimizer step: the training step of a table whose output gradient
    /// is known before the step, as in the standalone API.
    pub fn record_forward_backward(
        &self,
        g: &mut GraphBuilder,
        params: &TtParams,
        out: &Buf,
        dout: &Buf,
        update: bool,
    ) -> Result<()> {
        self.chain(params)
            .record_forward_backward(g, out, dout, update)
    }
}
