//! The data-parallel step (`Dlrm::train_step_parallel`) as two plans around a host exchange:
//! the gradient plan (forward, loss, backward with the TT core gradients in their unfused mode,
//! every gradient copied into one flat buffer, dT copied out for the dense tables), then on the
//! host the fixed-order sum of the flat gradients across ranks and the gathering of the dense
//! tables' ids and gradient rows, then the update plan (the gradients copied back, the same
//! update kernels as one process: MLP, TT cores, the dense tables' fused backward over the
//! lookups of every rank in rank order, and the finiteness checks).
//!
//! Every rank uploads the same bits and runs the same update, so the ranks' parameters stay
//! bitwise equal; P ranks at batch B compute the step of one process at batch P B up to
//! the order of the reductions (each rank's gradient is scaled by 1/P after the sum).

use std::time::Instant;

use crate::dist::{fixed_sum, gather_f32, gather_u32, Collective};
use crate::dlrm::finite::record_checks;
use crate::dlrm::inputs::{fill, DlrmBatch};
use crate::dlrm::net::Net;
use crate::dlrm::step::{build_step_plan, StepPlan};
use crate::error::{Error, Result};
use crate::graph::{Buf, GraphBuilder, Plan, PlanInput};
use crate::kernels::loss::StepParams;
use crate::nn::DenseBagLookups;
use crate::tt::{Bags, TtParams};

/// The two plans of a data-parallel step for `batch` samples per rank and `ranks` ranks.
pub(super) struct SplitPlan {
    grad: StepPlan,
    update: Plan,
    update_input: PlanInput,
    update_step: Buf,
    /// The dense tables' lookups of all ranks and their output gradients (an input).
    dense: Option<(DenseBagLookups, Buf)>,
    /// Every gradient, in [`grad_buffers`] order.
    flat: wgpu::Buffer,
    flat_len: usize,
    /// A copy of dT (with dense tables).
    dt: Option<wgpu::Buffer>,
    ranks: usize,
}

/// The gradient buffers exchanged, in order: the MLPs' arena, then every TT group's cores.
fn grad_buffers(net: &Net) -> Vec<wgpu::Buffer> {
    let mut bufs = vec![net.arena.grads_buffer().clone()];
    for grp in &net.tt {
        for k in 0..grp.params.shape().d() {
            bufs.push(grp.params.grad_buffer(k).clone());
        }
    }
    bufs
}

/// Builds both plans.
pub(super) fn build_split_plan(
    net: &Net,
    stats: &wgpu::Buffer,
    batch: usize,
    ranks: usize,
) -> Result<SplitPlan> {
    if net.md.is_some() {
        return Err(Error::input(
            None,
            "--embedding md is not supported in data-parallel runs yet",
        ));
    }
    let bufs = grad_buffers(net);
    let flat_bytes: u64 = bufs.iter().map(|b| b.size()).sum();
    let flat = net.gpu.storage("data-parallel gradients", flat_bytes);
    let dt_bytes = (batch * net.t_stride()) as u64 * 4;
    let dt = net.dense.as_ref().map(|_| {
        net.gpu
            .storage("dT for the dense tables' exchange", dt_bytes)
    });
    let out = |g: &mut GraphBuilder, dt_buf: &Buf| -> Result<()> {
        let mut at = 0;
        for b in &bufs {
            g.copy(
                "gradient out",
                Buf::from(b),
                0,
                Buf::from(&flat),
                at,
                b.size(),
            );
            at += b.size();
        }
        if let Some(d) = &dt {
            g.copy("dT out", dt_buf.clone(), 0, Buf::from(d), 0, dt_bytes);
        }
        Ok(())
    };
    let grad = build_step_plan(net, stats, batch, Some(&out))?;

    let mut g = GraphBuilder::new(&net.gpu);
    let update_step = g.input("step", std::mem::size_of::<StepParams>() as u64);
    let mut at = 0;
    for b in &bufs {
        g.copy(
            "gradient in",
            Buf::from(&flat),
            at,
            Buf::from(b),
            0,
            b.size(),
        );
        at += b.size();
    }
    net.arena.record_update(&mut g, "mlp")?;
    for (i, grp) in net.tt.iter().enumerate() {
        grp.params.record_update(&mut g, &format!("tt group {i}"))?;
    }
    let dense = match &net.dense {
        Some(group) => {
            let all = batch * ranks;
            let lk = DenseBagLookups::declare(
                &mut g,
                group,
                all,
                all * group.num_tables(),
                net.t_stride(),
                &net.dense_col_offsets(),
                "dense tables (all ranks)",
            )?;
            let dout = g.input("dT of all ranks", (all * net.t_stride()) as u64 * 4);
            lk.record_backward(&mut g, group, dout.clone())?;
            Some((lk, dout))
        }
        None => None,
    };
    let tt: Vec<&TtParams> = net.tt.iter().map(|grp| &grp.params).collect();
    let checked_dense = net.dense.as_ref().zip(dense.as_ref().map(|(lk, _)| lk));
    record_checks(
        &mut g,
        &update_step,
        &Buf::from(stats),
        &net.arena,
        &tt,
        checked_dense,
        None, // QR tables: refused in data-parallel runs (`Dlrm::train_step_parallel`)
        None, // MD tables: refused likewise
        false,
    )?;
    let update = g.build()?;
    let update_input = update.new_input();
    Ok(SplitPlan {
        grad,
        update,
        update_input,
        update_step,
        dense,
        flat,
        flat_len: (flat_bytes / 4) as usize,
        dt,
        ranks,
    })
}

/// Runs one data-parallel step of `batch` (validated; this rank's part) with statistics slot
/// `slot`: returns the seconds spent in the exchange (the host's sums and gathers, after every
/// rank has its gradients).
pub(super) fn run_split(
    net: &Net,
    sp: &mut SplitPlan,
    batch: &DlrmBatch,
    slot: u32,
    group: &dyn Collective,
) -> Result<f64> {
    let b = sp.grad.inputs.batch;
    let ids = fill(net, &mut sp.grad.input, &sp.grad.inputs, batch, Some(slot))?.dense;
    sp.grad.plan.run_with(&sp.grad.input)?;
    let mut grads = net.gpu.read_f32(&sp.flat, 0, sp.flat_len)?;
    let dt = match &sp.dt {
        Some(d) => Some(net.gpu.read_f32(d, 0, b * net.t_stride())?),
        None => None,
    };
    // The exchange's own time, not the wait for the slowest rank's backward.
    if sp.ranks > 1 {
        crate::dist::barrier(group)?;
    }
    let start = Instant::now();
    fixed_sum(group, &mut grads)?;
    // The mean over the global batch: each rank's loss is the mean over its own part.
    let scale = 1.0 / sp.ranks as f32;
    if sp.ranks > 1 {
        grads.iter_mut().for_each(|g| *g *= scale);
    }
    if let (Some(dgroup), Some((lk, dout)), Some(dt), Some(ids)) = (&net.dense, &sp.dense, dt, ids)
    {
        let (ts, d) = (net.t_stride(), net.config.dim());
        let cols = net.dense_col_offsets();
        // This rank's dense-table gradient rows, sample-major: [B, dense tables, D].
        let mut rows = Vec::with_capacity(b * cols.len() * d);
        for s in 0..b {
            for &c in &cols {
                rows.extend(dt[s * ts + c..][..d].iter().map(|x| x * scale));
            }
        }
        let ids_flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let all_rows = gather_f32(group, &rows)?;
        let all_ids = gather_u32(group, &ids_flat)?;
        let (nd, all) = (cols.len(), b * sp.ranks);
        // Per dense table, the ids of every rank's samples in rank order.
        let table_ids: Vec<Vec<u32>> = (0..nd)
            .map(|t| {
                (0..sp.ranks)
                    .flat_map(|r| all_ids[(r * nd + t) * b..][..b].to_vec())
                    .collect()
            })
            .collect();
        let mut full = vec![0f32; all * ts];
        for s in 0..all {
            for (t, &c) in cols.iter().enumerate() {
                full[s * ts + c..][..d].copy_from_slice(&all_rows[(s * nd + t) * d..][..d]);
            }
        }
        let offsets: Vec<u32> = (0..=all as u32).collect();
        let bags: Vec<Bags> = table_ids.iter().map(|i| Bags::new(i, &offsets)).collect();
        lk.fill(&mut sp.update_input, dgroup, &bags)?;
        sp.update_input.write(dout, &full)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    sp.update_input
        .write(&sp.update_step, &[StepParams { slot, _pad: [0; 3] }])?;
    net.gpu.write(&sp.flat, &grads);
    sp.update.run_with(&sp.update_input)?;
    Ok(seconds)
}
