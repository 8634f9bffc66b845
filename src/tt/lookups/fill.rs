//! The host's part of a step: the per-batch input regions of a plan's lookups ([`HostInputs`])
//! and how a validated batch is packed into them, one O(nnz + bags) pass writing in place, no
//! allocation: the batch's uniform, ids as u32, bag offsets (shifted per table), where each
//! bag's row goes, weights, table descriptors, and the chunks' uniforms where the host knows
//! them. Everything else is routed on the GPU ([`super::route`]).

use crate::error::{Error, Result};
use crate::graph::{Buf, PlanInput};
use crate::kernels::tt::ChunkParams;
use crate::kernels::tt_cache::TABLE_WORDS;
use crate::kernels::tt_route::{table_desc_words, RouteParams};
use crate::tt::lookups::layout::LookupLayout;
use crate::tt::params::TtParams;
use crate::tt_bags::{Bags, Ids, Placement};
use crate::tt_shape::Pooling;

/// The regions of a plan's input that the host writes for each batch.
#[derive(Debug, Clone)]
pub struct HostInputs {
    /// The batch's uniform ([`RouteParams`]).
    pub route: Buf,
    /// Each id as u32 (a TT table has at most 2^32 rows).
    pub ids: Buf,
    /// Bag offsets into the lookups (all tables' bags in table order), padded with nnz.
    pub offsets: Buf,
    /// Per table: first lookup, then rows and first group row of each core.
    pub table_desc: Buf,
    /// Per bag: where its row starts in the output (and gradient) buffer.
    pub bag_dest: Buf,
    pub weights: Buf,
    /// Per chunk: its uniform ([`ChunkParams`]); written by the GPU instead where the cores'
    /// path is routed there ([`super::layout::LookupSource::gpu_routed`]).
    pub chunk_params: Vec<Buf>,
    /// Through a cache: per table `[first lookup, first key]` for the probe.
    pub cache_tables: Option<Buf>,
}

impl HostInputs {
    /// Writes validated `bags` (one per table of `params`, each passed [`Bags::validate`]
    /// against its table) into `input`, pooled rows placed by `place`.
    pub fn fill(
        &self,
        layout: &LookupLayout,
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
        if nnz > layout.nnz_cap || nb > layout.bag_cap {
            return Err(Error::input(
                None,
                format!(
                    "{nnz} lookups in {nb} bags; this plan takes at most {} in {}",
                    layout.nnz_cap, layout.bag_cap
                ),
            ));
        }
        let weighted = bags.iter().any(|b| b.weights.is_some());
        let route = RouteParams {
            nnz: nnz as u32,
            num_bags: nb as u32,
            tables: tables.len() as u32,
            cap: layout.nnz_cap as u32,
            pool: match (pooling, weighted) {
                (Pooling::Mean, _) => 1,
                (Pooling::Sum, true) => 2,
                (Pooling::Sum, false) => 0,
            },
            _pad: [0; 3],
        };
        input.write(&self.route, &[route])?;
        if let Some(region) = &self.cache_tables {
            let cache = params.cache().ok_or_else(|| {
                Error::input(None, "a cached plan over a TT table without a cache")
            })?;
            let words = input.region_mut::<u32>(region)?;
            let mut n0 = 0usize;
            for (t, b) in bags.iter().enumerate() {
                words[t * TABLE_WORDS] = n0 as u32;
                words[t * TABLE_WORDS + 1] = cache.key_offsets[t];
                n0 += b.nnz();
            }
        }
        // The cores' path's chunks: from the host, or from the GPU after the cache's compaction.
        let host_chunks = if layout.source.gpu_routed() {
            &[][..]
        } else {
            &self.chunk_params[..]
        };
        for (ci, region) in host_chunks.iter().enumerate() {
            let start = (ci * layout.chunk).min(nnz);
            let end = ((ci + 1) * layout.chunk).min(nnz);
            let p = ChunkParams {
                start: start as u32,
                len: (end - start) as u32,
                cap: layout.nnz_cap as u32,
                num_bags: nb as u32,
                index: ci as u32,
                _pad: [0; 3],
            };
            input.write(region, &[p])?;
        }
        self.fill_tables(input, params, bags)?;
        self.fill_bags(input, bags, place, nnz, nb)
    }

    /// Table descriptors: first lookup, rows and first group row per core.
    fn fill_tables(&self, input: &mut PlanInput, params: &TtParams, bags: &[Bags]) -> Result<()> {
        let d = params.shape().d();
        let desc = input.region_mut::<u32>(&self.table_desc)?;
        let mut n0 = 0usize;
        for (t, (table, b)) in params.tables().iter().zip(bags).enumerate() {
            let at = t * table_desc_words(d);
            desc[at] = n0 as u32;
            for k in 0..d {
                desc[at + 1 + k] = table.shape.p[k] as u32;
                desc[at + 1 + d + k] = table.bases[k] as u32;
            }
            n0 += b.nnz();
        }
        Ok(())
    }

    /// Ids, offsets (shifted by the lookups of the tables before), each bag's row, and weights.
    fn fill_bags(
        &self,
        input: &mut PlanInput,
        bags: &[Bags],
        place: &Placement,
        nnz: usize,
        nb: usize,
    ) -> Result<()> {
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
        if bags.iter().any(|b| b.weights.is_some()) {
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
    pub fn fill_members(
        &self,
        layout: &LookupLayout,
        input: &mut PlanInput,
        params: &TtParams,
    ) -> Result<()> {
        let cache = params
            .cache()
            .ok_or_else(|| Error::input(None, "this TT table has no cache"))?;
        let (tables, d, dim) = (params.tables(), params.shape().d(), params.shape().dim());
        let c = layout.nnz_cap;
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
}
