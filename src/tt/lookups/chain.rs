//! Recording the TT chain of a plan's lookups, chunk by chunk: each lookup's row as the
//! left-to-right product of its core slices, pooled into bags (forward); the row gradients, the
//! chain transposed and the core gradients reduced in the sort's order, with the optimizer fused
//! in where one chunk holds every lookup (backward). Kernels: `shaders/tt.wgsl` and
//! `shaders/tt_subgroup.wgsl`; the routing they read is [`super::route`]'s.

use crate::error::Result;
use crate::graph::{Buf, GraphBuilder};
use crate::kernels::tt::{
    record_chain, record_core_grad, record_pool, record_row_grad, record_transpose_as, ChainShape,
    FusedUpdate,
};
use crate::kernels::tt_subgroup::record_chain_sg;
use crate::tt::lookups::fill::HostInputs;
use crate::tt::lookups::layout::{
    backward_product, core_grad_shape, forward_product, LookupLayout,
};
use crate::tt::lookups::route::Routing;
use crate::tt::params::TtParams;

/// Forward scratch kept for the backward of the same plan (one chunk only: with several chunks
/// the backward recomputes each chunk's prefixes in its own scratch).
#[derive(Debug, Clone)]
pub struct TtSaved {
    prefix: Vec<Option<Buf>>,
    /// Cores whose lookups the forward has sorted (those the subgroup chain needed).
    sorted: Vec<bool>,
}

/// The parts one recording reads: the table, the plan's layout, its input regions and routing.
#[derive(Debug)]
pub struct Chain<'a> {
    pub params: &'a TtParams,
    pub layout: &'a LookupLayout,
    pub inputs: &'a HostInputs,
    pub routing: &'a Routing,
    /// Prefix of the node labels.
    pub tag: &'a str,
}

impl Chain<'_> {
    fn record_route(&self, g: &mut GraphBuilder) -> Result<()> {
        self.routing
            .record(g, self.params, self.layout, self.inputs, self.tag)
    }

    fn record_cache_pool(&self, g: &mut GraphBuilder, out: &Buf) -> Result<()> {
        self.routing
            .record_cache_pool(g, self.params, self.layout, self.inputs, out, self.tag)
    }

    fn record_cache_update(&self, g: &mut GraphBuilder, dout: &Buf) -> Result<()> {
        self.routing
            .record_cache_update(g, self.params, self.layout, self.inputs, dout, self.tag)
    }

    /// Adds product `shape` of core k for one chunk: the subgroup kernel where it fits.
    #[allow(clippy::too_many_arguments)]
    fn record_product(
        &self,
        g: &mut GraphBuilder,
        label: String,
        shape: ChainShape,
        chunk: Buf,
        a: Buf,
        b: Buf,
        out: Buf,
    ) -> Result<()> {
        let k = shape.core;
        let params = self.params;
        match (&self.layout.pieces[k], &self.routing.sorts[k].1.sg_pieces) {
            (Some(layout), Some(pieces)) if layout.fits(&shape) => record_chain_sg(
                g,
                format!("{label} (subgroup)"),
                shape,
                *layout,
                params.shape().p[k],
                chunk,
                self.routing.digits.clone(),
                pieces.clone(),
                a,
                b,
                out,
                params.precision(),
            ),
            _ => record_chain(
                g,
                label,
                shape,
                chunk,
                self.routing.digits.clone(),
                a,
                b,
                out,
                self.layout.chunk,
                params.kernels(),
                params.precision(),
            ),
        }
    }

    /// Scratch for the prefixes P_k (k >= 2) of one chunk.
    fn prefix_scratch(&self, g: &mut GraphBuilder) -> Vec<Option<Buf>> {
        let s = self.params.shape();
        (0..s.d())
            .map(|k| {
                (k >= 2).then(|| {
                    let block = (s.q_prefix(k) * s.ranks[k]) as u64;
                    g.transient(
                        &format!("{} P{k}", self.tag),
                        self.layout.chunk as u64 * block * 4,
                    )
                })
            })
            .collect()
    }

    /// Adds chunk `ci`'s prefix products P_2..P_{last} (and the row when `row` is given).
    fn record_chunk_chain(
        &self,
        g: &mut GraphBuilder,
        ci: usize,
        prefix: &[Option<Buf>],
        row: Option<&Buf>,
    ) -> Result<()> {
        let params = self.params;
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
                format!("{} c{ci} chain {k}", self.tag),
                forward_product(params, k),
                self.inputs.chunk_params[ci].clone(),
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
        ci: usize,
        prefix: &[Option<Buf>],
        row: &Buf,
        out: &Buf,
    ) -> Result<()> {
        self.record_chunk_chain(g, ci, prefix, Some(row))?;
        record_pool(
            g,
            format!("{} c{ci} pool", self.tag),
            self.params.shape().dim(),
            self.inputs.chunk_params[ci].clone(),
            self.routing.cores.offsets.clone(),
            self.routing.scale.clone(),
            row.clone(),
            out.clone(),
            self.inputs.bag_dest.clone(),
            ci > 0,
            self.layout.bag_cap,
            self.layout.runs,
        )
    }

    /// Adds the forward: every chunk's rows pooled into `out` (each bag's row where the batch's
    /// placement puts it). Returns the scratch the backward of the same plan can reuse.
    pub fn record_forward(&self, g: &mut GraphBuilder, out: &Buf) -> Result<TtSaved> {
        self.record_route(g)?;
        let sorted: Vec<bool> = self.layout.pieces.iter().map(|p| p.is_some()).collect();
        for k in (0..self.params.shape().d()).filter(|&k| sorted[k]) {
            self.routing.record_sort(g, k, self.tag)?;
        }
        let dim = self.params.shape().dim();
        let prefix = self.prefix_scratch(g);
        let row = g.transient(
            &format!("{} rows", self.tag),
            (self.layout.chunk * dim) as u64 * 4,
        );
        for ci in 0..self.layout.chunks {
            self.record_chunk_forward(g, ci, &prefix, &row, out)?;
        }
        self.record_cache_pool(g, out)?;
        Ok(TtSaved { prefix, sorted })
    }

    /// Whether the update is fused into the core-gradient kernels (one chunk: each touched
    /// row's gradient is complete there, and untouched rows need no update).
    fn fused(&self, update: bool) -> bool {
        update && self.layout.chunks == 1 && self.params.update_kind().is_some()
    }

    /// Adds the backward: dense core gradients of `sum(dout * pooled rows)` (each bag's
    /// gradient row where the placement put its row) and, with `update`, the optimizer step.
    /// With `saved` from this plan's forward and one chunk, the forward's prefixes are reused;
    /// otherwise each chunk recomputes them.
    pub fn record_backward(
        &self,
        g: &mut GraphBuilder,
        dout: &Buf,
        saved: Option<TtSaved>,
        update: bool,
    ) -> Result<()> {
        let params = self.params;
        let reuse = self.layout.chunks == 1 && saved.is_some();
        // Without this plan's forward, route the batch here.
        let sorted = match &saved {
            Some(saved) => saved.sorted.clone(),
            None => {
                self.record_route(g)?;
                vec![false; params.shape().d()]
            }
        };
        for k in (0..params.shape().d()).filter(|&k| !sorted[k]) {
            self.routing.record_sort(g, k, self.tag)?;
        }
        let prefix = match saved {
            Some(saved) if reuse => saved.prefix,
            _ => self.prefix_scratch(g),
        };
        let scratch = self.backward_setup(g)?;
        let fused = self.fused(update);
        for ci in 0..self.layout.chunks {
            if !reuse {
                self.record_chunk_chain(g, ci, &prefix, None)?;
            }
            self.record_chunk_backward(g, ci, &prefix, &scratch, dout, fused)?;
        }
        if update {
            self.record_cache_update(g, dout)?;
        }
        if update && !fused {
            params.record_update(g, self.tag)?;
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
        out: &Buf,
        dout: &Buf,
        update: bool,
    ) -> Result<()> {
        let params = self.params;
        let fused = self.fused(update);
        self.record_route(g)?;
        for k in 0..params.shape().d() {
            self.routing.record_sort(g, k, self.tag)?;
        }
        let dim = params.shape().dim();
        let prefix = self.prefix_scratch(g);
        let row = g.transient(
            &format!("{} rows", self.tag),
            (self.layout.chunk * dim) as u64 * 4,
        );
        let scratch = self.backward_setup(g)?;
        for ci in 0..self.layout.chunks {
            self.record_chunk_forward(g, ci, &prefix, &row, out)?;
            self.record_chunk_backward(g, ci, &prefix, &scratch, dout, fused)?;
        }
        self.record_cache_pool(g, out)?;
        if update {
            self.record_cache_update(g, dout)?;
        }
        if update && !fused {
            params.record_update(g, self.tag)?;
        }
        Ok(())
    }

    /// The backward's scratch (dP_k for k >= 1, then the row gradient), after zeroing the
    /// gradients and refreshing the transposed cores.
    fn backward_setup(&self, g: &mut GraphBuilder) -> Result<Vec<Buf>> {
        let params = self.params;
        let s = params.shape();
        let d = s.d();
        let (tag, chunk) = (self.tag, self.layout.chunk);
        let mut scratch: Vec<Buf> = (0..d)
            .map(|k| {
                let block = if k == 0 {
                    1
                } else {
                    (s.q_prefix(k) * s.ranks[k]) as u64
                };
                g.transient(&format!("{tag} dP{k}"), chunk as u64 * block * 4)
            })
            .collect();
        scratch[0] = g.transient(&format!("{tag} drows"), (chunk * s.dim()) as u64 * 4);
        for k in 0..d {
            g.clear(
                format!("{tag} zero grad {k}"),
                Buf::from(params.grad_buffer(k)),
            );
        }
        for k in 1..d {
            if let (true, Some(t)) = (self.layout.transposed[k], params.core_t_buffer(k)) {
                record_transpose_as(
                    g,
                    format!("{tag} transpose core {k}"),
                    Buf::from(params.core_buffer(k)),
                    Buf::from(t),
                    s.p[k],
                    s.ranks[k],
                    s.q[k] * s.ranks[k + 1],
                    params.precision(),
                )?;
            }
        }
        Ok(scratch)
    }

    /// Adds chunk `ci`'s backward: row gradients, the transposed chain and the core gradients
    /// (with the fused update when `fused`). `scratch[0]` holds the row gradients, `scratch[k]`
    /// dP_k.
    fn record_chunk_backward(
        &self,
        g: &mut GraphBuilder,
        ci: usize,
        prefix: &[Option<Buf>],
        scratch: &[Buf],
        dout: &Buf,
        fused: bool,
    ) -> Result<()> {
        let params = self.params;
        let s = params.shape();
        let d = s.d();
        let tag = self.tag;
        let chunk = self.inputs.chunk_params[ci].clone();
        let drow = scratch[0].clone();
        record_row_grad(
            g,
            format!("{tag} c{ci} row grad"),
            s.dim(),
            chunk.clone(),
            self.routing.dest.clone(),
            self.routing.scale.clone(),
            dout.clone(),
            drow.clone(),
            self.layout.chunk,
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
            let b = match (self.layout.transposed[k], params.core_t_buffer(k)) {
                (true, Some(t)) => Buf::from(t),
                _ => Buf::from(params.core_buffer(k)),
            };
            self.record_product(
                g,
                format!("{tag} c{ci} chain^T {k}"),
                backward_product(params, k, self.layout.transposed[k]),
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
            let (layout, sort) = &self.routing.sorts[k];
            debug_assert_eq!(layout.core, k);
            record_core_grad(
                g,
                format!("{tag} c{ci} core grad {k}"),
                core_grad_shape(params, k),
                chunk.clone(),
                self.routing.digits.clone(),
                self.routing.sorted.clone(),
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
                self.routing.grad_pieces[k].as_ref(),
                params.kernels(),
                self.layout.runs,
                params.precision(),
            )?;
        }
        Ok(())
    }
}
