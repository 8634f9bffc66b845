//! Recording a DLRM's plans: the forward every plan shares, the training step (loss into the
//! statistics ring, backward, every update) and evaluation (probabilities, optionally copies of
//! the intermediate T and R for tracing). Each plan is built from a [`Net`] and kept by
//! `Dlrm` in a [`crate::graph::PlanCache`] per batch size.

use crate::dlrm::finite::{mlp_code, record_checks};
use crate::dlrm::inputs::{declare, BatchInputs};
use crate::dlrm::net::Net;
use crate::error::Result;
use crate::graph::{Buf, GraphBuilder, Plan, PlanInput};
use crate::kernels::interaction::{
    record_interaction_bwd, record_interaction_fwd, InteractionShape,
};
use crate::kernels::loss::{record_bce, record_probabilities};
use crate::kernels::optim::FiniteFlag;
use crate::kernels::MatrixAt;
use crate::nn::md::{MdOut, MdSaved};
use crate::nn::mlp::pad4;
use crate::nn::{act_transient, Act, MlpActivations};
use crate::tt::{TtParams, TtSaved};

/// Buffers of one recorded forward.
struct Forward {
    t: Buf,
    r: Act,
    logits: Buf,
    bottom: MlpActivations,
    top: MlpActivations,
    /// One per TT group.
    saved: Vec<TtSaved>,
    /// The MD tables' pooled rows.
    md: Option<MdSaved>,
}

/// A built training step with its input image.
pub(super) struct StepPlan {
    pub(super) plan: Plan,
    pub(super) input: PlanInput,
    pub(super) inputs: BatchInputs,
}

/// A built evaluation (forward only) with its input image and outputs.
pub(super) struct EvalPlan {
    pub(super) plan: Plan,
    pub(super) input: PlanInput,
    pub(super) inputs: BatchInputs,
    /// `[B]` click probabilities.
    pub(super) prob: wgpu::Buffer,
    /// (T, R) copies for `Dlrm::trace`.
    pub(super) trace: Option<(wgpu::Buffer, wgpu::Buffer)>,
}

fn record_forward(net: &Net, g: &mut GraphBuilder, inputs: &BatchInputs) -> Result<Forward> {
    let b = inputs.batch;
    let cfg = &net.config;
    let d = cfg.dim();
    let f = cfg.vectors();
    let t_stride = net.t_stride();
    let t = g.transient(
        "T (bottom output and pooled embeddings)",
        (b * t_stride) as u64 * 4,
    );
    let ldr = net.top.input_stride();
    let r = act_transient(g, "R (interaction)", b, ldr);
    let ldz = net.top.output_stride();
    let logits = g.transient("logits", (b * ldz) as u64 * 4);
    let in_p = net.bottom.input_stride();
    let bottom = net.bottom.record_forward(
        g,
        &net.arena,
        Act {
            rows: MatrixAt::dense(inputs.dense_x.clone(), in_p),
            cols: MatrixAt::dense(inputs.dense_x_t.clone(), pad4(b)),
        },
        Some(MatrixAt {
            buf: t.clone(),
            stride: t_stride,
            offset: 0,
        }),
        None,
        b,
        net.variant,
        "bottom",
    )?;
    if let (Some(group), Some(lk)) = (&net.dense, &inputs.dense) {
        lk.record_forward(g, group, t.clone())?;
    }
    if let (Some(q), Some(lk)) = (&net.qr, &inputs.qr) {
        lk.record_forward(g, &q.group, t.clone())?;
    }
    let mut saved = Vec::with_capacity(net.tt.len());
    for (grp, lk) in net.tt.iter().zip(&inputs.tt) {
        saved.push(lk.record_forward(g, &grp.params, &t)?);
    }
    let md = match (&net.md, &inputs.md) {
        (Some(md), Some(lk)) => {
            let cols = net.md_cols();
            let out = MdOut {
                buf: &t,
                stride: t_stride,
                cols: &cols,
            };
            Some(lk.record_forward(g, md, &net.arena, &out, net.variant)?)
        }
        _ => None,
    };
    record_interaction_fwd(
        g,
        "interaction",
        InteractionShape {
            batch: b,
            vectors: f,
            dim: d,
            out_stride: ldr,
        },
        t.clone(),
        r.rows.buf.clone(),
        r.cols.buf.clone(),
    )?;
    let top = net.top.record_forward(
        g,
        &net.arena,
        r.clone(),
        Some(MatrixAt::dense(logits.clone(), ldz)),
        None,
        b,
        net.variant,
        "top",
    )?;
    Ok(Forward {
        t,
        r,
        logits,
        bottom,
        top,
        saved,
        md,
    })
}

/// The training step for batches of `batch` samples: forward, BCE (its loss and correct count
/// written to `stats` at the slot the input names), backward and every update.
pub(super) fn build_train_plan(net: &Net, stats: &wgpu::Buffer, batch: usize) -> Result<StepPlan> {
    build_step_plan(net, stats, batch, None)
}

/// What a data-parallel step records after its backward instead of the updates: given the
/// graph and dT, the copies of the gradients out (see `dlrm::split`).
pub(super) type GradientsOut<'a> = &'a dyn Fn(&mut GraphBuilder, &Buf) -> Result<()>;

/// [`build_train_plan`], or with `gradients_out` the gradients-only step of a data-parallel run:
/// no dense-table backward (its rows are exchanged), TT core gradients without their update
/// (the unfused mode), no MLP update or checks; `gradients_out` records the copies out.
pub(super) fn build_step_plan(
    net: &Net,
    stats: &wgpu::Buffer,
    batch: usize,
    gradients_out: Option<GradientsOut>,
) -> Result<StepPlan> {
    let update = gradients_out.is_none();
    let cfg = &net.config;
    let mut g = GraphBuilder::new(&net.gpu);
    let inputs = declare(net, &mut g, batch, true)?;
    let fw = record_forward(net, &mut g, &inputs)?;
    let ldz = net.top.output_stride();
    let ldr = net.top.input_stride();
    let t_stride = net.t_stride();
    let dlogits = act_transient(&mut g, "dlogits", batch, ldz);
    record_bce(
        &mut g,
        "loss",
        batch,
        ldz,
        inputs.step.clone().expect("train inputs"),
        fw.logits.clone(),
        inputs.labels.clone().expect("train inputs"),
        dlogits.rows.buf.clone(),
        dlogits.cols.buf.clone(),
        Buf::from(stats),
    )?;
    let dr = g.transient("dR", (batch * ldr) as u64 * 4);
    net.top.record_backward(
        &mut g,
        &net.arena,
        &fw.top,
        dlogits,
        Some(MatrixAt::dense(dr.clone(), ldr)),
        None,
        batch,
        net.variant,
        "top",
    )?;
    let dt = g.transient("dT", (batch * t_stride) as u64 * 4);
    let dt0_t = g.transient("dT[:, 0] transposed", (cfg.dim() * pad4(batch)) as u64 * 4);
    record_interaction_bwd(
        &mut g,
        "interaction backward",
        InteractionShape {
            batch,
            vectors: cfg.vectors(),
            dim: cfg.dim(),
            out_stride: ldr,
        },
        dr,
        fw.t.clone(),
        dt.clone(),
        dt0_t.clone(),
        true, // the bottom MLP ends in a ReLU (dlrm)
    )?;
    net.bottom.record_backward(
        &mut g,
        &net.arena,
        &fw.bottom,
        Act {
            rows: MatrixAt {
                buf: dt.clone(),
                stride: t_stride,
                offset: 0,
            },
            cols: MatrixAt::dense(dt0_t, pad4(batch)),
        },
        None,
        None,
        batch,
        net.variant,
        "bottom",
    )?;
    if let (Some(group), Some(lk), true) = (&net.dense, &inputs.dense, update) {
        lk.record_backward(&mut g, group, dt.clone())?;
    }
    if let (Some(q), Some(lk), true) = (&net.qr, &inputs.qr, update) {
        lk.record_backward(&mut g, &q.group, dt.clone())?;
    }
    for ((grp, lk), saved) in net.tt.iter().zip(&inputs.tt).zip(fw.saved) {
        lk.record_backward(&mut g, &grp.params, &dt, Some(saved), update)?;
    }
    if let (Some(md), Some(lk), Some(saved)) = (&net.md, &inputs.md, &fw.md) {
        let cols = net.md_cols();
        let dout = MdOut {
            buf: &dt,
            stride: t_stride,
            cols: &cols,
        };
        lk.record_backward(&mut g, md, &net.arena, &dout, saved, net.variant)?;
    }
    if let Some(out) = gradients_out {
        out(&mut g, &dt)?;
        let plan = g.build()?;
        let input = plan.new_input();
        return Ok(StepPlan {
            plan,
            input,
            inputs,
        });
    }
    // Every parameter checked finite after the update, into the step's stats slot; the MLPs'
    // by their update itself.
    let tt: Vec<&TtParams> = net.tt.iter().map(|grp| &grp.params).collect();
    let dense = net.dense.as_ref().zip(inputs.dense.as_ref());
    let qr = net
        .qr
        .as_ref()
        .zip(inputs.qr.as_ref())
        .map(|(q, lk)| (q.group.group(), lk.part_lookups()));
    let step = inputs.step.clone().expect("train inputs");
    let check = FiniteFlag {
        step: step.clone(),
        stats: Buf::from(stats),
        code: mlp_code(
            &tt,
            dense.map(|(group, _)| group),
            qr.map(|(group, _)| group),
            net.md.as_ref(),
        ),
    };
    let mlp_checked = net
        .arena
        .record_update_checked(&mut g, "mlp", Some(check))?;
    record_checks(
        &mut g,
        &step,
        &Buf::from(stats),
        &net.arena,
        &tt,
        dense,
        qr,
        net.md.as_ref().zip(inputs.md.as_ref()),
        mlp_checked,
    )?;
    let plan = g.build()?;
    let input = plan.new_input();
    Ok(StepPlan {
        plan,
        input,
        inputs,
    })
}

/// The evaluation for batches of `batch` samples: forward and probabilities, plus copies of T
/// and R when `trace`.
pub(super) fn build_eval_plan(net: &Net, batch: usize, trace: bool) -> Result<EvalPlan> {
    let mut g = GraphBuilder::new(&net.gpu);
    let inputs = declare(net, &mut g, batch, false)?;
    let fw = record_forward(net, &mut g, &inputs)?;
    let prob = net.gpu.storage("dlrm probabilities", batch as u64 * 4);
    record_probabilities(
        &mut g,
        "probabilities",
        batch,
        net.top.output_stride(),
        fw.logits.clone(),
        Buf::from(&prob),
    )?;
    let trace = if trace {
        let t_bytes = (batch * net.t_stride()) as u64 * 4;
        let r_bytes = (batch * net.top.input_stride()) as u64 * 4;
        let tb = net.gpu.storage("trace T", t_bytes);
        let rb = net.gpu.storage("trace R", r_bytes);
        g.copy("trace T", fw.t.clone(), 0, Buf::from(&tb), 0, t_bytes);
        g.copy(
            "trace R",
            fw.r.rows.buf.clone(),
            0,
            Buf::from(&rb),
            0,
            r_bytes,
        );
        Some((tb, rb))
    } else {
        None
    };
    let plan = g.build()?;
    let input = plan.new_input();
    Ok(EvalPlan {
        plan,
        input,
        inputs,
        prob,
        trace,
    })
}
