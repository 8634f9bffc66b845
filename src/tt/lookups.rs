//! Recording the lookups of a TT table (or of a group of tables stored as one) into a step graph:
//! the per-batch inputs (row digits, where each bag's row goes, pooling scale, digit-sorted
//! lookups and segments, subgroup pieces) are regions of the plan's input; the pooled rows go to
//! a caller's buffer at per-bag positions and the row gradients come from one the same way. The
//! same recording serves the standalone [`crate::tt::TtEmbeddingBag`] and a whole model step,
//! where all TT tables of a group share every dispatch.

use crate::error::{Error, Result};
use crate::graph::{Buf, GraphBuilder, PlanInput};
use crate::kernels::tt::{
    record_chain, record_chain_sg, record_core_grad, record_pool, record_row_grad,
    record_transpose, ChainShape, ChunkParams, CoreGradShape, FusedUpdate, PieceLayout,
    PrefixSource,
};
use crate::tt::batch::{cut_pieces, prepare_group, Bags, Placement};
use crate::tt::{Pooling, TtParams};

/// The lookups of one table in one plan: capacities, chunking, and where each per-batch input
/// lives in the plan's input.
#[derive(Debug, Clone)]
pub struct TtLookups {
    /// Most lookups a batch may have in this plan.
    pub nnz_cap: usize,
    /// Most bags a batch may have in this plan.
    pub bag_cap: usize,
    /// Lookups per chunk (scratch is sized for one chunk).
    pub chunk: usize,
    tag: String,
    chunk_params: Vec<Buf>,
    digits: Buf,
    /// Per lookup: where its bag's row starts in the output (and gradient) buffer.
    dest: Buf,
    /// Per bag: where its row starts.
    bag_dest: Buf,
    scale: Buf,
    offsets: Buf,
    sorted: Buf,
    segments: Vec<Buf>,
    /// Per core: its lookups cut into pieces of one digit, where the subgroup chain runs.
    pieces: Vec<Option<(PieceLayout, Buf)>>,
    /// Per core: whether the backward product reads the transposed copy (refreshed by each
    /// backward: worth it only when the lookups outnumber the core's rows).
    transposed: Vec<bool>,
}

/// Forward scratch kept for the backward of the same plan (one chunk only: with several chunks
/// the backward recomputes each chunk's prefixes in its own scratch).
#[derive(Debug, Clone)]
pub struct TtSaved {
    prefix: Vec<Option<Buf>>,
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

/// Whether core k's backward reads a transposed copy for chunks of `chunk` lookups: the copy
/// costs a pass over the whole core per backward, so only when there are at least as many
/// lookups as rows.
fn use_transposed(params: &TtParams, k: usize, chunk: usize) -> bool {
    params.core_t_buffer(k).is_some() && chunk >= params.shape().p[k]
}

/// The pieces of core k for the subgroup chain, where the adapter has fixed-size subgroups, one
/// of core k's products fits the kernel, and a digit has on average at least two lookups (with
/// fewer, most pieces would be padding).
fn piece_layout(params: &TtParams, k: usize, chunk: usize) -> Option<PieceLayout> {
    if k == 0 || !params.options().subgroup_kernels || chunk < 2 * params.shape().p[k] {
        return None;
    }
    let lanes = params.gpu().subgroup_size()? as usize;
    let s = params.shape();
    let layout = PieceLayout::new(lanes, s.q_prefix(k), s.p[k], chunk)?;
    let transposed = use_transposed(params, k, chunk);
    (layout.fits(&forward_product(params, k))
        || layout.fits(&backward_product(params, k, transposed)))
    .then_some(layout)
}

impl TtLookups {
    /// Declares the inputs of up to `nnz_cap` lookups in up to `bag_cap` bags of `params`'s
    /// table in `g`; `tag` prefixes the node labels.
    pub fn declare(
        g: &mut GraphBuilder,
        params: &TtParams,
        nnz_cap: usize,
        bag_cap: usize,
        tag: &str,
    ) -> Self {
        let s = params.shape();
        let d = s.d();
        let nnz_cap = nnz_cap.max(1);
        let chunk = chunk_lookups(params, nnz_cap);
        let chunks = nnz_cap.div_ceil(chunk);
        let u32s = |n: usize| n as u64 * 4;
        let pieces = (0..d)
            .map(|k| {
                let layout = piece_layout(params, k, chunk)?;
                let bytes = u32s(chunks * layout.per_chunk * layout.len);
                Some((layout, g.input(&format!("{tag} pieces {k}"), bytes)))
            })
            .collect();
        TtLookups {
            nnz_cap,
            bag_cap,
            chunk,
            tag: tag.to_string(),
            chunk_params: (0..chunks)
                .map(|c| {
                    g.input(
                        &format!("{tag} chunk {c}"),
                        std::mem::size_of::<ChunkParams>() as u64,
                    )
                })
                .collect(),
            digits: g.input(&format!("{tag} digits"), u32s(d * nnz_cap)),
            dest: g.input(&format!("{tag} destinations"), u32s(nnz_cap)),
            bag_dest: g.input(&format!("{tag} bag destinations"), u32s(bag_cap)),
            scale: g.input(&format!("{tag} scale"), u32s(nnz_cap)),
            offsets: g.input(&format!("{tag} offsets"), u32s(bag_cap + 1)),
            sorted: g.input(&format!("{tag} sorted"), u32s(d * nnz_cap)),
            segments: (0..d)
                .map(|k| g.input(&format!("{tag} segments {k}"), u32s(chunks * (s.p[k] + 1))))
                .collect(),
            pieces,
            transposed: (0..d).map(|k| use_transposed(params, k, chunk)).collect(),
        }
    }

    /// Number of chunks.
    pub fn chunks(&self) -> usize {
        self.chunk_params.len()
    }

    /// Lays validated `bags` (one per table of `params`, each passed [`Bags::validate`] against
    /// its table) out into the plan's `input`, pooled rows placed by `place` (the host's part of
    /// a step: digits, the per-digit sort and segments, O(nnz d + chunks sum(p))).
    pub fn fill(
        &self,
        input: &mut PlanInput,
        params: &TtParams,
        bags: &[Bags],
        place: &Placement,
        pooling: Pooling,
    ) -> Result<()> {
        let shape = params.shape();
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
        let hb = prepare_group(
            tables,
            &shape.p,
            bags,
            place,
            pooling,
            self.nnz_cap,
            self.bag_cap,
            self.chunk,
        );
        for (ci, region) in self.chunk_params.iter().enumerate() {
            let start = (ci * self.chunk).min(hb.nnz);
            let end = ((ci + 1) * self.chunk).min(hb.nnz);
            let p = ChunkParams {
                start: start as u32,
                len: (end - start) as u32,
                cap: self.nnz_cap as u32,
                num_bags: hb.num_bags as u32,
                index: ci as u32,
                _pad: [0; 3],
            };
            input.write(region, &[p])?;
        }
        input.write(&self.digits, &hb.digits)?;
        input.write(&self.dest, &hb.dest)?;
        input.write(&self.bag_dest, &hb.bag_dest)?;
        input.write(&self.scale, &hb.scale)?;
        input.write(&self.offsets, &hb.offsets)?;
        input.write(&self.sorted, &hb.sorted)?;
        for (k, seg) in hb.segments.iter().enumerate() {
            input.write(&self.segments[k], seg)?;
        }
        for (k, pieces) in self.pieces.iter().enumerate() {
            if let Some((layout, region)) = pieces {
                let cut = cut_pieces(
                    &hb,
                    k,
                    shape.p[k],
                    self.nnz_cap,
                    self.chunk,
                    layout.len,
                    layout.per_chunk,
                );
                input.write(region, &cut)?;
            }
        }
        Ok(())
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
        match &self.pieces[shape.core] {
            Some((layout, pieces)) if layout.fits(&shape) => record_chain_sg(
                g,
                format!("{label} (subgroup)"),
                shape,
                *layout,
                params.shape().p[shape.core],
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
            self.offsets.clone(),
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
        let dim = params.shape().dim();
        let prefix = self.prefix_scratch(g, params);
        let row = g.transient(&format!("{} rows", self.tag), (self.chunk * dim) as u64 * 4);
        for ci in 0..self.chunks() {
            self.record_chunk_forward(g, params, ci, &prefix, &row, out)?;
        }
        Ok(TtSaved { prefix })
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
        let dim = params.shape().dim();
        let prefix = self.prefix_scratch(g, params);
        let row = g.transient(&format!("{} rows", self.tag), (self.chunk * dim) as u64 * 4);
        let scratch = self.backward_setup(g, params)?;
        for ci in 0..self.chunks() {
            self.record_chunk_forward(g, params, ci, &prefix, &row, out)?;
            self.record_chunk_backward(g, params, ci, &prefix, &scratch, dout, fused)?;
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
            let (src, pbuf) = match k {
                0 => (PrefixSource::One, Buf::from(params.core_buffer(0))),
                1 => (PrefixSource::Core0, Buf::from(params.core_buffer(0))),
                _ => (PrefixSource::Scratch, prefix[k].clone().expect("prefix")),
            };
            let shape = CoreGradShape {
                core: k,
                rows: s.p[k],
                qk: s.q_prefix(k),
                rk: s.ranks[k],
                nk: s.q[k] * s.ranks[k + 1],
                prefix: src,
            };
            record_core_grad(
                g,
                format!("{tag} c{ci} core grad {k}"),
                shape,
                chunk.clone(),
                self.digits.clone(),
                self.sorted.clone(),
                self.segments[k].clone(),
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
            )?;
        }
        Ok(())
    }
}
