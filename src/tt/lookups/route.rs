//! Routing a plan's lookups on the GPU, and the row cache's part of a step: the buffers the
//! routing writes ([`Routing`]: row digits, each lookup's bag destination and scale, per core the
//! sort by digit with its segments and pieces), the cores' path ([`CoresPath`]: the batch's own
//! lookups, the misses the cache's compaction leaves, or a refresh's members), and recording the
//! probe, compaction, routing, sorts, the cached rows' pooling and their training.
//! Kernels: `shaders/tt_route.wgsl` and `shaders/tt_cache.wgsl`.

use crate::error::{Error, Result};
use crate::graph::{Buf, GraphBuilder};
use crate::kernels::tt::{ChunkParams, GradPieces};
use crate::kernels::tt_cache::{record_cache_pool_as, record_cache_probe, record_cache_update_as};
use crate::kernels::tt_route::{
    record_compact, record_members_batch, record_route_bags, record_route_digits, record_sort,
    CompactBuffers, CompactLayout, RouteParams, SortBuffers, SortLayout,
};
use crate::tt::lookups::fill::HostInputs;
use crate::tt::lookups::layout::{LookupLayout, LookupSource};
use crate::tt::params::TtParams;

/// A plan's cache routing: each lookup's slot and the compaction of the misses.
#[derive(Debug, Clone)]
pub struct CacheRouting {
    /// Whether the probe counts the lookups (training steps).
    pub count: bool,
    pub layout: CompactLayout,
    pub bufs: CompactBuffers,
}

/// The lookups that go through the cores: their uniform, ids, bag offsets and table
/// descriptors (the host's batch as written without a cache; the compacted misses with one; the
/// members for a refresh).
#[derive(Debug, Clone)]
pub struct CoresPath {
    pub route: Buf,
    pub ids: Buf,
    pub offsets: Buf,
    pub desc: Buf,
    /// The path's uniform buffer as the GPU writes it (its [`RouteParams`], then one
    /// [`ChunkParams`] per chunk), copied into `route` and the chunks' input regions; None when
    /// the host writes them.
    pub uniforms: Option<Buf>,
}

/// What the routing writes on the GPU, and the sorts' layouts.
#[derive(Debug, Clone)]
pub struct Routing {
    pub cores: CoresPath,
    pub cache: Option<CacheRouting>,
    /// Per core k at `k * nnz_cap + n`: lookup n's row digit in the group's core.
    pub digits: Buf,
    /// Per lookup: where its bag's row starts.
    pub dest: Buf,
    /// Per lookup: its pooling scale.
    pub scale: Buf,
    /// Per core: the lookups of each chunk sorted by digit.
    pub sorted: Buf,
    /// Per core: the sort's layout and buffers (segments, piece tables, pieces).
    pub sorts: Vec<(SortLayout, SortBuffers)>,
    /// Per core: the core-gradient pieces, where the gradient is reduced as pieces.
    pub grad_pieces: Vec<Option<GradPieces>>,
}

impl Routing {
    /// Adds the copies of the GPU-written uniforms of the cores' path into its input regions.
    fn record_uniform_copies(&self, g: &mut GraphBuilder, inputs: &HostInputs, tag: &str) {
        let Some(src) = &self.cores.uniforms else {
            return;
        };
        let bytes = std::mem::size_of::<RouteParams>() as u64;
        g.copy(
            format!("{tag} cores' route"),
            src.clone(),
            0,
            self.cores.route.clone(),
            0,
            bytes,
        );
        for (c, region) in inputs.chunk_params.iter().enumerate() {
            g.copy(
                format!("{tag} chunk {c} uniform"),
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
    pub fn record(
        &self,
        g: &mut GraphBuilder,
        params: &TtParams,
        layout: &LookupLayout,
        inputs: &HostInputs,
        tag: &str,
    ) -> Result<()> {
        let mut orig = None;
        match (
            &layout.source,
            &self.cache,
            &inputs.cache_tables,
            params.cache(),
        ) {
            (LookupSource::Cached { .. }, Some(routing), Some(tables), Some(cache)) => {
                record_cache_probe(
                    g,
                    &format!("{tag} cache probe"),
                    inputs.route.clone(),
                    inputs.ids.clone(),
                    tables.clone(),
                    &cache.hash,
                    routing.bufs.hit.clone(),
                    Buf::from(&cache.stats),
                    routing.count,
                    layout.nnz_cap,
                    params.tables().len(),
                )?;
                record_compact(
                    g,
                    &format!("{tag} compact misses"),
                    &routing.layout,
                    inputs.route.clone(),
                    &routing.bufs,
                    layout.bag_cap + 1,
                    params.tables().len(),
                )?;
                orig = Some(routing.bufs.orig.clone());
            }
            (LookupSource::Members, _, _, Some(cache)) => {
                record_members_batch(
                    g,
                    &format!("{tag} members"),
                    layout.chunk,
                    layout.chunks,
                    inputs.route.clone(),
                    Buf::from(&cache.selection),
                    self.cores.uniforms.clone().expect("uniforms"),
                )?;
            }
            (LookupSource::Host, _, _, _) => {}
            _ => {
                return Err(Error::input(
                    None,
                    format!("{tag}: a cached plan over a TT table without a cache"),
                ))
            }
        }
        self.record_uniform_copies(g, inputs, tag);
        record_route_digits(
            g,
            format!("{tag} route digits"),
            params.shape().d(),
            params.tables().len(),
            layout.source == LookupSource::Members,
            self.cores.route.clone(),
            self.cores.ids.clone(),
            self.cores.desc.clone(),
            self.digits.clone(),
            layout.nnz_cap,
        )?;
        record_route_bags(
            g,
            format!("{tag} route bags"),
            self.cores.route.clone(),
            inputs.offsets.clone(),
            inputs.bag_dest.clone(),
            inputs.weights.clone(),
            self.dest.clone(),
            self.scale.clone(),
            orig,
            layout.nnz_cap,
        )
    }

    /// Adds the sort of core k's lookups by digit.
    pub fn record_sort(&self, g: &mut GraphBuilder, k: usize, tag: &str) -> Result<()> {
        let (layout, bufs) = &self.sorts[k];
        record_sort(
            g,
            &format!("{tag} sort {k}"),
            layout,
            self.cores.route.clone(),
            self.digits.clone(),
            bufs,
        )
    }

    /// Adds the cached rows' part of the pooled output (after the cores' part is written).
    pub fn record_cache_pool(
        &self,
        g: &mut GraphBuilder,
        params: &TtParams,
        layout: &LookupLayout,
        inputs: &HostInputs,
        out: &Buf,
        tag: &str,
    ) -> Result<()> {
        let (Some(routing), Some(cache)) = (&self.cache, params.cache()) else {
            return Ok(());
        };
        record_cache_pool_as(
            g,
            &format!("{tag} cache pool"),
            [
                inputs.route.clone(),
                inputs.offsets.clone(),
                inputs.bag_dest.clone(),
                inputs.weights.clone(),
                routing.bufs.hit.clone(),
            ],
            Buf::from(&cache.values),
            out.clone(),
            [
                params.shape().dim(),
                layout.bag_cap,
                layout.nnz_cap,
                layout.runs.bag,
            ],
            cache.precision,
        )
    }

    /// Adds the training of the cached rows from the output gradient.
    pub fn record_cache_update(
        &self,
        g: &mut GraphBuilder,
        params: &TtParams,
        layout: &LookupLayout,
        inputs: &HostInputs,
        dout: &Buf,
        tag: &str,
    ) -> Result<()> {
        let (Some(routing), Some(cache), Some(kind)) =
            (&self.cache, params.cache(), params.update_kind())
        else {
            return Ok(());
        };
        record_cache_update_as(
            g,
            &format!("{tag} cache update"),
            [
                inputs.route.clone(),
                inputs.offsets.clone(),
                inputs.bag_dest.clone(),
                inputs.weights.clone(),
                routing.bufs.hit.clone(),
                dout.clone(),
            ],
            [
                Buf::from(&cache.values),
                Buf::from(&cache.state),
                Buf::from(params.opt_buffer(0)),
            ],
            kind,
            [
                params.shape().dim(),
                layout.nnz_cap,
                cache.config.rows,
                layout.runs.row,
            ],
            cache.precision,
        )
    }
}
