//! Recording the lookups of a TT table (or of a group of tables stored as one) into a step graph.
//! The host writes a batch's ids, bag offsets and where each bag's row goes into regions of the
//! plan's input (one O(nnz + bags) pass, no allocation); the step routes them on the GPU (row
//! digits, each lookup's bag, per-core sorts by digit with segments and pieces,
//! shaders/tt_route.wgsl). The pooled rows go to a caller's buffer at per-bag positions and the
//! row gradients come from one the same way. The same recording serves the standalone
//! [`crate::tt::TtEmbeddingBag`] and a whole model step, where all TT tables of a group share
//! every dispatch.

use crate::error::{Error, Result};
use crate::graph::{Buf, GraphBuilder, PlanInput};
use crate::kernels::cache::{
    record_cache_pool, record_cache_probe, record_cache_update, TABLE_WORDS,
};
use crate::kernels::route::{
    record_compact, record_members_batch, record_route_bags, record_route_digits, record_sort,
    table_desc_words, tt_params_words, CompactBuffers, CompactLayout, RouteParams, SortBuffers,
    SortLayout,
};
use crate::kernels::tt::{
    core_grad_is_vec4, record_chain, record_chain_sg, record_core_grad, record_pool,
    record_row_grad, record_transpose, ChainShape, ChunkParams, CoreGradShape, CoreGradStrategy,
    FusedUpdate, GradPieces, PieceLayout, PrefixSource, CORE_GRAD_BLOCK,
};
use crate::tt::batch::{Bags, Ids, Placement};
use crate::tt::{Pooling, TtParams};

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
}

/// A plan's cache routing: each lookup's slot and the compaction of the misses.
#[derive(Debug, Clone)]
struct CacheRouting {
    count: bool,
    /// Per table `[first lookup, first key]` (input).
    tables: Buf,
    layout: CompactLayout,
    bufs: CompactBuffers,
}

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
    source: LookupSource,
    // Inputs, written by `fill` (the chunks and `tt_route` by the GPU with a cache).
    chunk_params: Vec<Buf>,
    route: Buf,
    /// The cores' path: its route uniform, ids, bag offsets and table descriptors (the batch's
    /// own without a cache; the compacted misses with one; the members for a refresh).
    tt_route: Buf,
    tt_ids: Buf,
    tt_offsets: Buf,
    tt_desc: Buf,
    /// The TT path's uniforms as the GPU writes them (a cache or a refresh), copied into
    /// `tt_route` and the chunk regions.
    tt_params: Option<Buf>,
    cache: Option<CacheRouting>,
    /// Each id as u32 (a TT table has at most 2^32 rows).
    ids: Buf,
    /// Per table: first lookup, then rows and first group row of each core.
    table_desc: Buf,
    /// Bag offsets into the lookups (all tables' bags in table order), padded with nnz.
    offsets: Buf,
    /// Per bag: where its row starts in the output (and gradient) buffer.
    bag_dest: Buf,
    weights: Buf,
    // Routed on the GPU.
    digits: Buf,
    /// Per lookup: where its bag's row starts.
    dest: Buf,
    scale: Buf,
    sorted: Buf,
    /// Per core: the sort's layout and buffers (segments, piece tables, pieces).
    sorts: Vec<(SortLayout, SortBuffers)>,
    /// Per core: the core-gradient pieces, with [`CoreGradStrategy::Pieces`].
    grad_pieces: Vec<Option<GradPieces>>,
    /// Per core: the subgroup chain's piece layout, where it runs.
    pieces: Vec<Option<PieceLayout>>,
    /// Per core: whether the backward product reads the transposed copy (refreshed by each
    /// backward: worth it only when the lookups outnumber the core's rows).
    transposed: Vec<bool>,
}

/// Forward scratch kept for the backward of the same plan (one chunk only: with several chunks
/// the backward recomputes each chunk's prefixes in its own scratch).
#[derive(Debug, Clone)]
pub struct TtSaved {
    prefix: Vec<Option<Buf>>,
    /// Cores whose lookups the forward has sorted (those the subgroup chain needed).
    sorted: Vec<bool>,
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

/// Forward product k: P_{k+1} = P_k * G_k[i_k] (P_1 is core 0's slice).
fn forward_product(params: &TtParams, k: usize) -> ChainShape {
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

/// Backward product k: dP_k = dP_{k+1} * G_k[i_k]^T, on the transposed copy when `transposed`.
fn backward_product(params: &TtParams, k: usize, transposed: bool) -> ChainShape {
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
fn core_grad_shape(params: &TtParams, k: usize) -> CoreGradShape {
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
        let s = params.shape();
        let d = s.d();
        let nnz_cap = nnz_cap.max(1);
        let chunk = chunk_lookups(params, nnz_cap);
        let chunks = nnz_cap.div_ceil(chunk);
        let words = |n: usize| n as u64 * 4;
        let pieces: Vec<Option<PieceLayout>> = (0..d)
            .map(|k| piece_layout(params, k, chunk, source))
            .collect();
        let strategy = params.kernels().core_grad;
        let mut sorts = Vec::with_capacity(d);
        let mut grad_pieces = Vec::with_capacity(d);
        let sorted = g.transient(&format!("{tag} sorted"), words(d * nnz_cap));
        for (k, sg) in pieces.iter().enumerate() {
            let rows = s.p[k];
            let grad_shape = core_grad_shape(params, k);
            let by_pieces = strategy == CoreGradStrategy::Pieces && core_grad_is_vec4(&grad_shape);
            let layout = SortLayout::new(
                rows,
                k,
                chunk,
                chunks,
                if by_pieces { CORE_GRAD_BLOCK } else { 0 },
                sg.map(|l| (l.len, l.per_chunk)),
                params.kernels().sort,
            );
            let table_bytes = words(layout.table_words());
            let grad_starts =
                by_pieces.then(|| g.transient(&format!("{tag} gradient pieces {k}"), table_bytes));
            let bufs = SortBuffers {
                counts: g.transient(
                    &format!("{tag} sort counts {k}"),
                    words(layout.count_words()),
                ),
                totals: g.transient(
                    &format!("{tag} sort totals {k}"),
                    words(layout.total_words()),
                ),
                segments: g.transient(&format!("{tag} segments {k}"), words(layout.table_words())),
                grad_pieces: grad_starts.clone(),
                sg_starts: pieces[k]
                    .map(|_| g.transient(&format!("{tag} piece starts {k}"), table_bytes)),
                sg_pieces: sg.map(|l| {
                    g.transient(
                        &format!("{tag} pieces {k}"),
                        words(chunks * l.per_chunk * l.len),
                    )
                }),
                sorted: sorted.clone(),
            };
            grad_pieces.push(grad_starts.map(|starts| {
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
            sorts.push((layout, bufs));
        }
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
        let gpu_route = |g: &mut GraphBuilder| {
            (
                g.input(
                    &format!("{tag} cores' route"),
                    std::mem::size_of::<RouteParams>() as u64,
                ),
                g.transient(
                    &format!("{tag} cores' uniforms"),
                    words(tt_params_words(chunks)),
                ),
            )
        };
        let (tt_route, tt_ids, tt_offsets, tt_desc, tt_params, cache) = match source {
            LookupSource::Host => (
                route.clone(),
                ids.clone(),
                offsets.clone(),
                table_desc.clone(),
                None,
                None,
            ),
            LookupSource::Cached { count } => {
                let (tt_route, params_buf) = gpu_route(g);
                let layout = CompactLayout::new(nnz_cap, chunk, chunks, table_desc_words(d));
                let bufs = CompactBuffers {
                    hit: g.transient(&format!("{tag} cache slots"), words(nnz_cap)),
                    ids: ids.clone(),
                    offsets: offsets.clone(),
                    tables: table_desc.clone(),
                    blocks: g.transient(&format!("{tag} compact blocks"), words(layout.blocks)),
                    total: g.transient(&format!("{tag} compact total"), 16),
                    rank: g.transient(&format!("{tag} compact rank"), words(nnz_cap)),
                    tt_ids: g.transient(&format!("{tag} misses"), words(nnz_cap)),
                    orig: g.transient(&format!("{tag} misses' positions"), words(nnz_cap)),
                    tt_offsets: g.transient(&format!("{tag} misses' offsets"), words(bag_cap + 1)),
                    tt_tables: g.transient(
                        &format!("{tag} misses' tables"),
                        words(params.tables().len() * table_desc_words(d)),
                    ),
                    params: params_buf.clone(),
                };
                let cache = CacheRouting {
                    count,
                    tables: g.input(
                        &format!("{tag} cache tables"),
                        words(params.tables().len() * TABLE_WORDS),
                    ),
                    layout,
                    bufs: bufs.clone(),
                };
                (
                    tt_route,
                    bufs.tt_ids,
                    bufs.tt_offsets,
                    bufs.tt_tables,
                    Some(params_buf),
                    Some(cache),
                )
            }
            LookupSource::Members => {
                let (tt_route, params_buf) = gpu_route(g);
                let members = params
                    .cache()
                    .map(|c| Buf::from(&c.members))
                    .unwrap_or_else(|| ids.clone());
                (
                    tt_route,
                    members,
                    offsets.clone(),
                    table_desc.clone(),
                    Some(params_buf),
                    None,
                )
            }
        };
        TtLookups {
            nnz_cap,
            bag_cap,
            chunk,
            tag: tag.to_string(),
            source,
            route,
            tt_route,
            tt_ids,
            tt_offsets,
            tt_desc,
            tt_params,
            cache,
            chunk_params: (0..chunks)
                .map(|c| {
                    g.input(
                        &format!("{tag} chunk {c}"),
                        std::mem::size_of::<ChunkParams>() as u64,
                    )
                })
                .collect(),
            ids,
            table_desc,
            offsets,
            bag_dest: g.input(&format!("{tag} bag destinations"), words(bag_cap)),
            weights: g.input(&format!("{tag} weights"), words(nnz_cap)),
            digits: g.transient(&format!("{tag} digits"), words(d * nnz_cap)),
            dest: g.transient(&format!("{tag} destinations"), words(nnz_cap)),
            scale: g.transient(&format!("{tag} scale"), words(nnz_cap)),
            sorted,
            sorts,
            grad_pieces,
            pieces,
            transposed: (0..d)
                .map(|k| use_transposed(params, k, chunk, source))
                .collect(),
        }
    }

    /// Number of chunks.
    pub fn chunks(&self) -> usize {
        self.chunk_params.len()
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
        let tables = params.tables();
        if bags.len() != tables.len() || place.col.len() != tables.len() {
            return Err(Error::input(
                None,
                format!(
                    "{} batches and {} placements for a TT group of {} tables",
                    bags.len(),
                    place.col.len(),
                    tables.len()
                ),
            ));
        }
        let nnz: usize = bags.iter().map(|b| b.nnz()).sum();
        let nb: usize = bags.iter().map(|b| b.num_bags()).sum();
        if nnz > self.nnz_cap || nb > self.bag_cap {
            return Err(Error::input(
                None,
                format!(
                    "{nnz} lookups in {nb} bags; this plan takes at most {} in {}",
                    self.nnz_cap, self.bag_cap
                ),
            ));
        }
        let weighted = bags.iter().any(|b| b.weights.is_some());
        let route = RouteParams {
            nnz: nnz as u32,
            num_bags: nb as u32,
            tables: tables.len() as u32,
            cap: self.nnz_cap as u32,
            pool: match (pooling, weighted) {
                (Pooling::Mean, _) => 1,
                (Pooling::Sum, true) => 2,
                (Pooling::Sum, false) => 0,
            },
            _pad: [0; 3],
        };
        input.write(&self.route, &[route])?;
        if let Some(routing) = &self.cache {
            let cache = params.cache().ok_or_else(|| {
                Error::input(None, "a cached plan over a TT table without a cache")
            })?;
            let words = input.region_mut::<u32>(&routing.tables)?;
            let mut n0 = 0usize;
            for (t, b) in bags.iter().enumerate() {
                words[t * TABLE_WORDS] = n0 as u32;
                words[t * TABLE_WORDS + 1] = cache.key_offsets[t];
                n0 += b.nnz();
            }
        }
        // The cores' path's chunks: from the host, or from the GPU after the cache's compaction.
        let host_chunks = if self.tt_params.is_some() {
            &[][..]
        } else {
            &self.chunk_params[..]
        };
        for (ci, region) in host_chunks.iter().enumerate() {
            let start = (ci * self.chunk).min(nnz);
            let end = ((ci + 1) * self.chunk).min(nnz);
            let p = ChunkParams {
                start: start as u32,
                len: (end - start) as u32,
                cap: self.nnz_cap as u32,
                num_bags: nb as u32,
                index: ci as u32,
                _pad: [0; 3],
            };
            input.write(region, &[p])?;
        }
        // Table descriptors: first lookup, rows and first group row per core.
        let d = params.shape().d();
        let desc = input.region_mut::<u32>(&self.table_desc)?;
        let mut n0 = 0usize;
        for (t, (table, b)) in tables.iter().zip(bags).enumerate() {
            let at = t * table_desc_words(d);
            desc[at] = n0 as u32;
            for k in 0..d {
                desc[at + 1 + k] = table.shape.p[k] as u32;
                desc[at + 1 + d + k] = table.bases[k] as u32;
            }
            n0 += b.nnz();
        }
        // Ids as u32 (validated below the table's rows, at most 2^32).
        let ids = input.region_mut::<u32>(&self.ids)?;
        let mut n0 = 0usize;
        for b in bags {
            let out = &mut ids[n0..n0 + b.nnz()];
            match b.indices {
                Ids::U32(v) => out.copy_from_slice(v),
                Ids::I64(v) => out.iter_mut().zip(v).for_each(|(o, &x)| *o = x as u32),
            }
            n0 += b.nnz();
        }
        // Offsets (shifted by the lookups of the tables before), each bag's row, and weights.
        let offsets = input.region_mut::<u32>(&self.offsets)?;
        let (mut n0, mut b0) = (0usize, 0usize);
        for b in bags {
            for i in 0..b.num_bags() {
                offsets[b0 + i] = (n0 as i64 + b.offsets.get(i)) as u32;
            }
            n0 += b.nnz();
            b0 += b.num_bags();
        }
        offsets[nb..].iter_mut().for_each(|o| *o = nnz as u32);
        let bag_dest = input.region_mut::<u32>(&self.bag_dest)?;
        let mut b0 = 0usize;
        for (t, b) in bags.iter().enumerate() {
            for i in 0..b.num_bags() {
                bag_dest[b0 + i] = (place.col[t] + i * place.stride[t]) as u32;
            }
            b0 += b.num_bags();
        }
        if weighted {
            let weights = input.region_mut::<f32>(&self.weights)?;
            let mut n0 = 0usize;
            for b in bags {
                let out = &mut weights[n0..n0 + b.nnz()];
                match b.weights {
                    Some(w) => out.copy_from_slice(w),
                    None => out.fill(1.0),
                }
                n0 += b.nnz();
            }
        }
        Ok(())
    }

    /// Writes a cache refresh's static input (route: the tables and capacity; bag i = member i
    /// with its row at i D; tables by their first key).
    pub fn fill_members(&self, input: &mut PlanInput, params: &TtParams) -> Result<()> {
        let cache = params
            .cache()
            .ok_or_else(|| Error::input(None, "this TT table has no cache"))?;
        let (tables, d, dim) = (params.tables(), params.shape().d(), params.shape().dim());
        let c = self.nnz_cap;
        let route = RouteParams {
            nnz: 0,
            num_bags: c as u32,
            tables: tables.len() as u32,
            cap: c as u32,
            pool: 0,
            _pad: [0; 3],
        };
        input.write(&self.route, &[route])?;
        let offsets = input.region_mut::<u32>(&self.offsets)?;
        offsets
            .iter_mut()
            .enumerate()
            .for_each(|(i, o)| *o = i.min(c) as u32);
        let bag_dest = input.region_mut::<u32>(&self.bag_dest)?;
        bag_dest
            .iter_mut()
            .enumerate()
            .for_each(|(i, o)| *o = (i * dim) as u32);
        let desc = input.region_mut::<u32>(&self.table_desc)?;
        for (t, table) in tables.iter().enumerate() {
            let at = t * table_desc_words(d);
            desc[at] = cache.key_offsets[t];
            for k in 0..d {
                desc[at + 1 + k] = table.shape.p[k] as u32;
                desc[at + 1 + d + k] = table.bases[k] as u32;
            }
        }
        Ok(())
    }

    /// Adds the copies of the GPU-written uniforms of the cores' path into its input regions.
    fn record_tt_params_copies(&self, g: &mut GraphBuilder) {
        let Some(src) = &self.tt_params else {
            return;
        };
        let bytes = std::mem::size_of::<RouteParams>() as u64;
        g.copy(
            format!("{} cores' route", self.tag),
            src.clone(),
            0,
            self.tt_route.clone(),
            0,
            bytes,
        );
        for (c, region) in self.chunk_params.iter().enumerate() {
            g.copy(
                format!("{} chunk {c} uniform", self.tag),
                src.clone(),
                bytes * (c as u64 + 1),
                region.clone(),
                0,
                std::mem::size_of::<ChunkParams>() as u64,
            );
        }
    }

    /// Adds the routing: with a cache, the probe and the compaction of the misses (or a
    /// refresh's member batch) first; then every lookup of the cores' path gets its digits and
    /// its bag's destination and scale.
    fn record_route(&self, g: &mut GraphBuilder, params: &TtParams) -> Result<()> {
        let tag = &self.tag;
        let mut orig = None;
        match (&self.source, &self.cache, params.cache()) {
            (LookupSource::Cached { .. }, Some(routing), Some(cache)) => {
                record_cache_probe(
                    g,
                    &format!("{tag} cache probe"),
                    self.route.clone(),
                    self.ids.clone(),
                    routing.tables.clone(),
                    &cache.hash,
                    routing.bufs.hit.clone(),
                    Buf::from(&cache.stats),
                    routing.count,
                    self.nnz_cap,
                )?;
                record_compact(
                    g,
                    &format!("{tag} compact misses"),
                    &routing.layout,
                    self.route.clone(),
                    &routing.bufs,
                    self.bag_cap + 1,
                    params.tables().len(),
                )?;
                orig = Some(routing.bufs.orig.clone());
            }
            (LookupSource::Members, _, Some(cache)) => {
                record_members_batch(
                    g,
                    &format!("{tag} members"),
                    self.chunk,
                    self.chunks(),
                    self.route.clone(),
                    Buf::from(&cache.selection),
                    self.tt_params.clone().expect("uniforms"),
                )?;
            }
            (LookupSource::Host, _, _) => {}
            _ => {
                return Err(Error::input(
                    None,
                    format!("{tag}: a cached plan over a TT table without a cache"),
                ))
            }
        }
        self.record_tt_params_copies(g);
        record_route_digits(
            g,
            format!("{tag} route digits"),
            params.shape().d(),
            self.source == LookupSource::Members,
            self.tt_route.clone(),
            self.tt_ids.clone(),
            self.tt_desc.clone(),
            self.digits.clone(),
            self.nnz_cap,
        )?;
        record_route_bags(
            g,
            format!("{tag} route bags"),
            self.tt_route.clone(),
            self.offsets.clone(),
            self.bag_dest.clone(),
            self.weights.clone(),
            self.dest.clone(),
            self.scale.clone(),
            orig,
            self.nnz_cap,
        )
    }

    /// Adds the cached rows' part of the pooled output (after the cores' part is written).
    fn record_cache_pool(&self, g: &mut GraphBuilder, params: &TtParams, out: &Buf) -> Result<()> {
        let (Some(routing), Some(cache)) = (&self.cache, params.cache()) else {
            return Ok(());
        };
        record_cache_pool(
            g,
            &format!("{} cache pool", self.tag),
            self.route.clone(),
            self.offsets.clone(),
            self.bag_dest.clone(),
            self.weights.clone(),
            routing.bufs.hit.clone(),
            Buf::from(&cache.values),
            out.clone(),
            params.shape().dim(),
            self.bag_cap,
        )
    }

    /// Adds the training of the cached rows from the output gradient.
    fn record_cache_update(
        &self,
        g: &mut GraphBuilder,
        params: &TtParams,
        dout: &Buf,
    ) -> Result<()> {
        let (Some(routing), Some(cache), Some(kind)) =
            (&self.cache, params.cache(), params.update_kind())
        else {
            return Ok(());
        };
        record_cache_update(
            g,
            &format!("{} cache update", self.tag),
            self.route.clone(),
            self.offsets.clone(),
            self.bag_dest.clone(),
            self.weights.clone(),
            routing.bufs.hit.clone(),
            dout.clone(),
            Buf::from(&cache.values),
            Buf::from(&cache.state),
            Buf::from(params.opt_buffer(0)),
            kind,
            params.shape().dim(),
            self.nnz_cap,
            cache.config.rows,
        )
    }

    /// Adds the sort of core k's lookups by digit.
    fn record_sort(&self, g: &mut GraphBuilder, k: usize) -> Result<()> {
        let (layout, bufs) = &self.sorts[k];
        record_sort(
            g,
            &format!("{} sort {k}", self.tag),
            layout,
            self.tt_route.clone(),
            self.digits.clone(),
            bufs,
        )
    }

    /// Adds product `shape` of core k for one chunk: the subgroup kernel where it fits.
    #[allow(clippy::too_many_arguments)]
    fn record_product(
        &self,
        g: &mut GraphBuilder,
        params: &TtParams,
        label: String,
        shape: ChainShape,
        chunk: Buf,
        a: Buf,
        b: Buf,
        out: Buf,
    ) -> Result<()> {
        let k = shape.core;
        match (&self.pieces[k], &self.sorts[k].1.sg_pieces) {
            (Some(layout), Some(pieces)) if layout.fits(&shape) => record_chain_sg(
                g,
                format!("{label} (subgroup)"),
                shape,
                *layout,
                params.shape().p[k],
                chunk,
                self.digits.clone(),
                pieces.clone(),
                a,
                b,
                out,
            ),
            _ => record_chain(
                g,
                label,
                shape,
                chunk,
                self.digits.clone(),
                a,
                b,
                out,
                self.chunk,
                params.kernels(),
            ),
        }
    }

    /// Scratch for the prefixes P_k (k >= 2) of one chunk.
    fn prefix_scratch(&self, g: &mut GraphBuilder, params: &TtParams) -> Vec<Option<Buf>> {
        let s = params.shape();
        (0..s.d())
            .map(|k| {
                (k >= 2).then(|| {
                    let block = (s.q_prefix(k) * s.ranks[k]) as u64;
                    g.transient(&format!("{} P{k}", self.tag), self.chunk as u64 * block * 4)
                })
            })
            .collect()
    }

    /// Adds chunk `ci`'s prefix products P_2..P_{last} (and the row when `row` is given).
    fn record_chunk_chain(
        &self,
        g: &mut GraphBuilder,
        params: &TtParams,
        ci: usize,
        prefix: &[Option<Buf>],
        row: Option<&Buf>,
    ) -> Result<()> {
        let d = params.shape().d();
        let last = if row.is_some() { d - 1 } else { d - 2 };
        for k in 1..=last {
            let a = if k == 1 {
                Buf::from(params.core_buffer(0))
            } else {
                prefix[k].clone().expect("prefix")
            };
            let out = if k == d - 1 {
                row.expect("row").clone()
            } else {
                prefix[k + 1].clone().expect("prefix")
            };
            self.record_product(
                g,
                params,
                format!("{} c{ci} chain {k}", self.tag),
                forward_product(params, k),
                self.chunk_params[ci].clone(),
                a,
                Buf::from(params.core_buffer(k)),
                out,
            )?;
        }
        Ok(())
    }

    /// Adds one chunk's forward: its rows built into `row`, then pooled into `out` (the first
    /// chunk overwrites each bag's output, later ones accumulate).
    fn record_chunk_forward(
        &self,
        g: &mut GraphBuilder,
        params: &TtParams,
        ci: usize,
        prefix: &[Option<Buf>],
        row: &Buf,
        out: &Buf,
    ) -> Result<()> {
        self.record_chunk_chain(g, params, ci, prefix, Some(row))?;
        record_pool(
            g,
            format!("{} c{ci} pool", self.tag),
            params.shape().dim(),
            self.chunk_params[ci].clone(),
            self.tt_offsets.clone(),
            self.scale.clone(),
            row.clone(),
            out.clone(),
            self.bag_dest.clone(),
            ci > 0,
            self.bag_cap,
        )
    }

    /// Adds the forward: every chunk's rows pooled into `out` (each bag's row where the batch's
    /// placement puts it). Returns the scratch the backward of the same plan can reuse.
    pub fn record_forward(
        &self,
        g: &mut GraphBuilder,
        params: &TtParams,
        out: &Buf,
    ) -> Result<TtSaved> {
        self.record_route(g, params)?;
        let sorted: Vec<bool> = self.pieces.iter().map(|p| p.is_some()).collect();
        for k in (0..params.shape().d()).filter(|&k| sorted[k]) {
            self.record_sort(g, k)?;
        }
        let dim = params.shape().dim();
        let prefix = self.prefix_scratch(g, params);
        let row = g.transient(&format!("{} rows", self.tag), (self.chunk * dim) as u64 * 4);
        for ci in 0..self.chunks() {
            self.record_chunk_forward(g, params, ci, &prefix, &row, out)?;
        }
        self.record_cache_pool(g, params, out)?;
        Ok(TtSaved { prefix, sorted })
    }

    /// Whether the update is fused into the core-gradient kernels (one chunk: each touched
    /// row's gradient is complete there, and untouched rows need no update).
    fn fused(&self, params: &TtParams, update: bool) -> bool {
        update && self.chunks() == 1 && params.update_kind().is_some()
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
        let reuse = self.chunks() == 1 && saved.is_some();
        // Without this plan's forward, route the batch here.
        let sorted = match &saved {
            Some(saved) => saved.sorted.clone(),
            None => {
                self.record_route(g, params)?;
                vec![false; params.shape().d()]
            }
        };
        for k in (0..params.shape().d()).filter(|&k| !sorted[k]) {
            self.record_sort(g, k)?;
        }
        let prefix = match saved {
            Some(saved) if reuse => saved.prefix,
            _ => self.prefix_scratch(g, params),
        };
        let scratch = self.backward_setup(g, params)?;
        let fused = self.fused(params, update);
        for ci in 0..self.chunks() {
            if !reuse {
                self.record_chunk_chain(g, params, ci, &prefix, None)?;
            }
            self.record_chunk_backward(g, params, ci, &prefix, &scratch, dout, fused)?;
        }
        if update {
            self.record_cache_update(g, params, dout)?;
        }
        if update && !fused {
            params.record_update(g, &self.tag)?;
        }
        Ok(())
    }

    /// Adds forward and backward chunk by chunk, each chunk's backward right after its forward
    /// (the prefixes are computed once whatever the number of chunks), and with `update` the
    /// optimizer step: the training step of a table whose output gradient is known before the
    /// step, as in the standalone API.
    pub fn record_forward_backward(
        &self,
        g: &mut GraphBuilder,
        params: &TtParams,
        out: &Buf,
        dout: &Buf,
        update: bool,
    ) -> Result<()> {
        let fused = self.fused(params, update);
        self.record_route(g, params)?;
        for k in 0..params.shape().d() {
            self.record_sort(g, k)?;
        }
        let dim = params.shape().dim();
        let prefix = self.prefix_scratch(g, params);
        let row = g.transient(&format!("{} rows", self.tag), (self.chunk * dim) as u64 * 4);
        let scratch = self.backward_setup(g, params)?;
        for ci in 0..self.chunks() {
            self.record_chunk_forward(g, params, ci, &prefix, &row, out)?;
            self.record_chunk_backward(g, params, ci, &prefix, &scratch, dout, fused)?;
        }
        self.record_cache_pool(g, params, out)?;
        if update {
            self.record_cache_update(g, params, dout)?;
        }
        if update && !fused {
            params.record_update(g, &self.tag)?;
        }
        Ok(())
    }

    /// The backward's scratch (dP_k for k >= 1, then the row gradient), after zeroing the
    /// gradients and refreshing the transposed cores.
    fn backward_setup(&self, g: &mut GraphBuilder, params: &TtParams) -> Result<Vec<Buf>> {
        let s = params.shape();
        let d = s.d();
        let tag = &self.tag;
        let mut scratch: Vec<Buf> = (0..d)
            .map(|k| {
                let block = if k == 0 {
                    1
                } else {
                    (s.q_prefix(k) * s.ranks[k]) as u64
                };
                g.transient(&format!("{tag} dP{k}"), self.chunk as u64 * block * 4)
            })
            .collect();
        scratch[0] = g.transient(&format!("{tag} drows"), (self.chunk * s.dim()) as u64 * 4);
        for k in 0..d {
            g.clear(
                format!("{tag} zero grad {k}"),
                Buf::from(params.grad_buffer(k)),
            );
        }
        for k in 1..d {
            if let (true, Some(t)) = (self.transposed[k], params.core_t_buffer(k)) {
                record_transpose(
                    g,
                    format!("{tag} transpose core {k}"),
                    Buf::from(params.core_buffer(k)),
                    Buf::from(t),
                    s.p[k],
                    s.ranks[k],
                    s.q[k] * s.ranks[k + 1],
                )?;
            }
        }
        Ok(scratch)
    }

    /// Adds chunk `ci`'s backward: row gradients, the transposed chain and the core gradients
    /// (with the fused update when `fused`). `scratch[0]` holds the row gradients, `scratch[k]`
    /// dP_k.
    #[allow(clippy::too_many_arguments)]
    fn record_chunk_backward(
        &self,
        g: &mut GraphBuilder,
        params: &TtParams,
        ci: usize,
        prefix: &[Option<Buf>],
        scratch: &[Buf],
        dout: &Buf,
        fused: bool,
    ) -> Result<()> {
        let s = params.shape();
        let d = s.d();
        let tag = &self.tag;
        let chunk = self.chunk_params[ci].clone();
        let drow = scratch[0].clone();
        record_row_grad(
            g,
            format!("{tag} c{ci} row grad"),
            s.dim(),
            chunk.clone(),
            self.dest.clone(),
            self.scale.clone(),
            dout.clone(),
            drow.clone(),
            self.chunk,
        )?;
        let dp_next = |k: usize| {
            if k + 1 == d {
                drow.clone()
            } else {
                scratch[k + 1].clone()
            }
        };
        // dP_k = dP_{k+1} * G_k[i_k]^T, from the last core down to core 1.
        for k in (1..d).rev() {
            // With a transposed copy the product reads G_k^T's contiguous rows.
            let b = match (self.transposed[k], params.core_t_buffer(k)) {
                (true, Some(t)) => Buf::from(t),
                _ => Buf::from(params.core_buffer(k)),
            };
            self.record_product(
                g,
                params,
                format!("{tag} c{ci} chain^T {k}"),
                backward_product(params, k, self.transposed[k]),
                chunk.clone(),
                dp_next(k),
                b,
                scratch[k].clone(),
            )?;
        }
        // grad G_k[row] += sum over the row's lookups of P_k^T dP_{k+1}.
        for k in (0..d).rev() {
            let pbuf = match k {
                0 | 1 => Buf::from(params.core_buffer(0)),
                _ => prefix[k].clone().expect("prefix"),
            };
            let (layout, sort) = &self.sorts[k];
            debug_assert_eq!(layout.core, k);
            record_core_grad(
                g,
                format!("{tag} c{ci} core grad {k}"),
                core_grad_shape(params, k),
                chunk.clone(),
                self.digits.clone(),
                self.sorted.clone(),
                sort.segments.clone(),
                pbuf,
                dp_next(k),
                Buf::from(params.grad_buffer(k)),
                Buf::from(params.opt_buffer(k)),
                fused.then(|| FusedUpdate {
                    kind: params.update_kind().expect("an optimizer"),
                    opt: Buf::from(params.opt_buffer(k)),
                    weight: Buf::from(params.core_buffer(k)),
                    state: Buf::from(params.state_buffer(k)),
                }),
                self.grad_pieces[k].as_ref(),
                params.kernels(),
            )?;
        }
        Ok(())
    }
}
