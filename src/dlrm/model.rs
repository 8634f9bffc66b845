//! dlrm's DLRM on the GPU: bottom MLP, embedding tables (a sharded group of dense tables and any
//! number of TT tables), dot interaction, top MLP, sigmoid + BCE, SGD. A training step (upload of
//! one batch, forward, backward, every update) is one prebuilt plan replayed per batch with one
//! write and one submit; the loss stays on the GPU in a ring of per-step statistics until the
//! host asks. Evaluation (forward only) is a second plan.
//!
//! Data flow of a step (B samples, F = tables + 1 vectors of D values):
//! dense x [B, 16] -> bottom MLP -> T[:, 0] ; dense tables, TT tables -> T[:, 1..F]  (T [B, F, D])
//! -> interaction -> R [B, pad4(D + F(F-1)/2)] -> top MLP -> logits [B, 4] -> BCE -> dlogits
//! -> top backward -> dR -> interaction backward -> dT -> bottom backward (dT[:, 0]),
//! dense tables' fused update (dT), TT backward + fused update (dT) -> MLP update.
//!
//! This file holds [`Dlrm`]: building it, its public calls, the plan caches and the statistics
//! ring. The network itself is `net`, the plans are recorded in `step`, batches are checked and
//! packed in `inputs`, parameters are reached by name in `state_dict`.

use std::collections::VecDeque;

use crate::cache::CacheStats;
use crate::dlrm::config::{DlrmConfig, DlrmOptions, TableKind};
use crate::dlrm::inputs::{fill, validate, DlrmBatch};
use crate::dlrm::net::Net;
use crate::dlrm::split::{build_split_plan, run_split, SplitPlan};
use crate::dlrm::state_dict::{self, LastDenseStep, LastMdStep};
use crate::dlrm::step::{build_eval_plan, build_train_plan, EvalPlan, StepPlan};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{NodeTime, Plan, PlanCache, PlanInput};
use crate::kernels::loss::STATS_PER_STEP;
use crate::kernels::matmul::GemmVariant;
use crate::tt::TtParams;

/// Plans kept per kind (training, evaluation): shapes in a run are few (the training batch, the
/// evaluation batch, a last partial batch), so a new shape past this drops the others.
const PLANS_PER_KIND: usize = 4;

/// What one training step measured, read back from the GPU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Step number (0-based, counted since the model was made or loaded).
    pub step: u64,
    pub samples: usize,
    /// Mean BCE over the batch.
    pub loss: f64,
    /// Predictions on the right side of 0.5.
    pub correct: usize,
    /// A logit of the step was NaN or infinite (the clamped loss would not show it).
    pub non_finite_logits: bool,
    /// After the step's update, the code of the first parameter region with a NaN or an
    /// infinity, 0 if none ([`Dlrm::non_finite_region`] names it).
    pub non_finite_code: u32,
}

/// Intermediate values of one forward, for checks against a reference.
#[derive(Clone, Debug)]
pub struct Trace {
    /// `[B, D]`: the bottom MLP's output.
    pub bottom_out: Vec<f32>,
    /// `[B, D + F(F-1)/2]`: the top MLP's input.
    pub interaction: Vec<f32>,
    /// `[B]`: sigmoid of the logits.
    pub probabilities: Vec<f32>,
}

/// Key of an evaluation plan: (batch size, with the trace copies).
type EvalKey = (usize, bool);

/// A DLRM with its parameters, gradients and optimizer state on the GPU.
pub struct Dlrm {
    net: Net,
    options: DlrmOptions,
    /// The ring of per-step statistics ([`STATS_PER_STEP`] values per slot).
    stats: wgpu::Buffer,
    steps: u64,
    /// Steps whose statistics are still only on the GPU: (step, samples).
    unread: VecDeque<(u64, usize)>,
    read: Vec<StepStats>,
    train_plans: PlanCache<usize, StepPlan>,
    eval_plans: PlanCache<EvalKey, EvalPlan>,
    /// The dense tables' ids of the last training batch (for [`Dlrm::gradient`]).
    last_dense_ids: Option<Vec<Vec<u32>>>,
    /// The MD tables' ids of the last training batch (for [`Dlrm::gradient`]).
    last_md_ids: Option<Vec<Vec<u32>>>,
    /// Data-parallel steps' plans by (batch per rank, ranks).
    split_plans: PlanCache<(usize, usize), SplitPlan>,
    /// The QR tables' ids of the last training batch (for [`Dlrm::gradient`]).
    last_qr_ids: Option<Vec<Vec<u32>>>,
}

impl std::fmt::Debug for Dlrm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dlrm")
            .field("config", &self.net.config)
            .field("variant", &self.net.variant)
            .field("steps", &self.steps)
            .finish()
    }
}

impl Dlrm {
    /// A model of `config` initialised as dlrm does (TT tables by `config.tt_init`), from
    /// `config.seed`.
    pub fn new(gpu: &Gpu, config: DlrmConfig, options: DlrmOptions) -> Result<Self> {
        Self::build(gpu, config, options, true)
    }

    /// A model of `config` with every parameter zero (to be loaded).
    pub fn zeroed(gpu: &Gpu, config: DlrmConfig, options: DlrmOptions) -> Result<Self> {
        Self::build(gpu, config, options, false)
    }

    fn build(gpu: &Gpu, config: DlrmConfig, options: DlrmOptions, init: bool) -> Result<Self> {
        config.validate()?;
        if options.stats_ring == 0 {
            return Err(Error::input(
                None,
                "the statistics ring needs at least one slot",
            ));
        }
        let net = Net::build(gpu, config, &options, init)?;
        let stats = gpu.storage(
            "dlrm step stats",
            (options.stats_ring * STATS_PER_STEP) as u64 * 4,
        );
        Ok(Dlrm {
            net,
            options,
            stats,
            steps: 0,
            unread: VecDeque::new(),
            read: Vec::new(),
            train_plans: PlanCache::new(PLANS_PER_KIND),
            eval_plans: PlanCache::new(PLANS_PER_KIND),
            last_dense_ids: None,
            last_md_ids: None,
            split_plans: PlanCache::new(PLANS_PER_KIND),
            last_qr_ids: None,
        })
    }

    pub fn config(&self) -> &DlrmConfig {
        &self.net.config
    }
    pub fn gpu(&self) -> &Gpu {
        &self.net.gpu
    }
    /// The matrix-product variant in use.
    pub fn gemm_variant(&self) -> GemmVariant {
        self.net.variant
    }
    /// The options the model was built with (optimizer, kernels, row cache).
    pub fn options(&self) -> &DlrmOptions {
        &self.options
    }
    /// Training steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }
    /// Sets the step counter (resuming from a checkpoint).
    pub fn set_steps(&mut self, steps: u64) -> Result<()> {
        self.take_stats()?;
        self.read.clear();
        self.steps = steps;
        Ok(())
    }
    /// Number of dense-table shards (dispatches per pass over the dense tables).
    pub fn dense_shards(&self) -> usize {
        self.net.dense.as_ref().map_or(0, |d| d.num_shards())
    }

    /// Changes the learning rate of every parameter (takes effect at the next step).
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::input(
                None,
                format!("the learning rate must be positive, got {lr}"),
            ));
        }
        self.net.set_learning_rate(lr);
        Ok(())
    }

    /// Samples in `batch`, after checking it against the model: sizes, finite dense features,
    /// ids in range, labels 0 or 1 (when `labels` are needed). Errors name the sample, feature
    /// or table, and the value.
    pub fn validate(&self, batch: &DlrmBatch, labels: bool) -> Result<usize> {
        validate(&self.net.config, batch, labels)
    }

    /// Builds the training plan for batches of `batch` samples ahead of the first step (pipeline
    /// compilation can take seconds on CPU adapters), so that step times are steady.
    pub fn prepare_train(&mut self, batch: usize) -> Result<()> {
        if batch == 0 {
            return Err(Error::input(None, "batch size must be at least 1"));
        }
        let (net, stats) = (&self.net, &self.stats);
        self.train_plans
            .get_or_build(batch, || build_train_plan(net, stats, batch))?;
        Ok(())
    }

    /// The structure of the training plan for batches of `batch` samples (built when missing):
    /// per node its kernel, workgroups, invocations and the launcher's cost (FLOPs, bytes, serial
    /// chain). What `ttrec bench dlrm --profile --json` reports and the structural test checks.
    pub fn train_counts(&mut self, batch: usize) -> Result<Vec<crate::graph::NodeCount>> {
        self.prepare_train(batch)?;
        let (net, stats) = (&self.net, &self.stats);
        let sp = self
            .train_plans
            .get_or_build(batch, || build_train_plan(net, stats, batch))?;
        Ok(sp.plan.counts().to_vec())
    }

    /// Builds the evaluation plan for batches of `batch` samples ahead of use.
    pub fn prepare_eval(&mut self, batch: usize) -> Result<()> {
        if batch == 0 {
            return Err(Error::input(None, "batch size must be at least 1"));
        }
        let net = &self.net;
        self.eval_plans
            .get_or_build((batch, false), || build_eval_plan(net, batch, false))?;
        Ok(())
    }

    /// One training step on `batch`: one upload and one submit, without waiting, except that
    /// the host first reads the statistics ring when it is full (one wait), and a TT group's
    /// row cache that is due to refresh submits its refresh after the step. The step's loss
    /// stays on the GPU until [`Dlrm::take_stats`].
    pub fn train_step(&mut self, batch: &DlrmBatch) -> Result<()> {
        let b = self.validate(batch, true)?;
        self.replay_train(b, batch, |plan, input| plan.run_with(input))
    }

    /// A training step like [`Dlrm::train_step`] (the same plan, statistics and cache ticks),
    /// run with a GPU timestamp around every node: waits and returns the per-node times (needs
    /// timestamp queries).
    pub fn profile_step(&mut self, batch: &DlrmBatch) -> Result<Vec<NodeTime>> {
        let b = self.validate(batch, true)?;
        // The profiled replay waits anyway: read every pending statistic first.
        self.flush_stats()?;
        self.replay_train(b, batch, |plan, input| {
            plan.upload(input)?;
            plan.run_profiled()
        })
    }

    /// The one path of a training step on `batch` (`b` samples, validated): makes room in the
    /// statistics ring, fills the plan for `b` (built when missing, the cache bounded), replays
    /// it with `replay`, counts the step and ticks each TT group's row cache (a refresh that is
    /// due is its own submit, after the step's).
    fn replay_train<R>(
        &mut self,
        b: usize,
        batch: &DlrmBatch,
        replay: impl FnOnce(&Plan, &PlanInput) -> Result<R>,
    ) -> Result<R> {
        if self.unread.len() >= self.options.stats_ring {
            self.flush_stats()?;
        }
        let slot = (self.steps % self.options.stats_ring as u64) as u32;
        let (net, stats) = (&self.net, &self.stats);
        let sp = self
            .train_plans
            .get_or_build(b, || build_train_plan(net, stats, b))?;
        let ids = fill(net, &mut sp.input, &sp.inputs, batch, Some(slot))?;
        self.last_dense_ids = ids.dense;
        self.last_qr_ids = ids.qr;
        self.last_md_ids = ids.md;
        let out = replay(&sp.plan, &sp.input)?;
        self.unread.push_back((self.steps, b));
        self.steps += 1;
        for grp in self.net.tt.iter_mut() {
            grp.params.cache_step()?;
        }
        Ok(out)
    }

    /// Builds the data-parallel step's plans for `batch` samples per rank and `ranks` ranks.
    pub fn prepare_parallel(&mut self, batch: usize, ranks: usize) -> Result<()> {
        if batch == 0 || ranks == 0 {
            return Err(Error::input(
                None,
                "batch size and ranks must be at least 1",
            ));
        }
        self.refuse_baselines_in_parallel()?;
        let (net, stats) = (&self.net, &self.stats);
        self.split_plans.get_or_build((batch, ranks), || {
            build_split_plan(net, stats, batch, ranks)
        })?;
        Ok(())
    }

    /// Quotient-remainder and mixed-dimension tables have no data-parallel step yet (their
    /// rows' exchange).
    fn refuse_baselines_in_parallel(&self) -> Result<()> {
        for (present, kind) in [(self.net.qr.is_some(), "qr"), (self.net.md.is_some(), "md")] {
            if present {
                return Err(Error::input(
                    None,
                    format!("--embedding {kind} is not supported in data-parallel runs yet"),
                ));
            }
        }
        Ok(())
    }

    /// One data-parallel step on this rank's `batch` (every rank of `group` calls it with its
    /// part of the global batch, same size): gradients computed here, summed across the ranks
    /// in a fixed order, then the same update on every rank (the TT cores' update unfused, see
    /// `dlrm::split`). Waits for the GPU. Returns the seconds spent exchanging. With one rank
    /// ([`crate::dist::Solo`]) it is the unfused form of [`Dlrm::train_step`].
    pub fn train_step_parallel(
        &mut self,
        batch: &DlrmBatch,
        group: &dyn crate::dist::Collective,
    ) -> Result<f64> {
        let b = self.validate(batch, true)?;
        self.refuse_baselines_in_parallel()?;
        if self.net.tt.iter().any(|g| g.params.cache().is_some()) {
            return Err(Error::input(
                None,
                "the TT row cache (--cache-rows) is not supported in data-parallel runs",
            ));
        }
        if self.unread.len() >= self.options.stats_ring {
            self.flush_stats()?;
        }
        let slot = (self.steps % self.options.stats_ring as u64) as u32;
        let ranks = group.size();
        let (net, stats) = (&self.net, &self.stats);
        let sp = self
            .split_plans
            .get_or_build((b, ranks), || build_split_plan(net, stats, b, ranks))?;
        let seconds = run_split(net, sp, batch, slot, group)?;
        self.last_dense_ids = None;
        self.last_qr_ids = None;
        self.unread.push_back((self.steps, b));
        self.steps += 1;
        Ok(seconds)
    }

    /// The TT groups' caches together: lookups, hits and drops summed since the start, members
    /// and occupied entries as of their last refreshes, and the refreshes so far (None without
    /// a cache). Reads the GPU (one wait).
    pub fn cache_stats(&mut self) -> Result<Option<(CacheStats, u64)>> {
        let mut total: Option<(CacheStats, u64)> = None;
        for grp in self.net.tt.iter_mut() {
            if grp.params.cache().is_none() {
                continue;
            }
            let s = grp.params.cache_stats()?;
            let refreshes = grp.params.cache().map_or(0, |c| c.refreshes());
            let t = total.get_or_insert((CacheStats::default(), 0));
            t.0.lookups += s.lookups;
            t.0.hits += s.hits;
            t.0.dropped += s.dropped;
            t.0.members += s.members;
            t.0.occupied += s.occupied;
            t.1 = t.1.max(refreshes);
        }
        Ok(total)
    }

    /// FLOPs per sample of a training step by part (multiply-add = 2), as counted from the
    /// shapes: MLP forward, weight and input gradients; the interaction's dots and their
    /// gradients; the TT chains forward and backward (3x the forward chain, the reference's
    /// count); the dense tables' sums.
    pub fn flops_per_sample(&self) -> Vec<(&'static str, f64)> {
        let mlp = |w: &[usize], first_dx: bool| -> f64 {
            let macs: Vec<f64> = w.windows(2).map(|p| (p[0] * p[1]) as f64).collect();
            let total: f64 = macs.iter().sum();
            let dx = if first_dx { total } else { total - macs[0] };
            2.0 * (2.0 * total + dx)
        };
        let cfg = &self.net.config;
        let d = cfg.dim() as f64;
        let pairs = (cfg.vectors() * (cfg.vectors() - 1) / 2) as f64;
        let mut tt = 0.0;
        let mut dense = 0.0;
        let mut qr = 0.0;
        let mut md = 0.0;
        for t in 0..cfg.tables.len() {
            match &cfg.tables[t].kind {
                // Both parts pooled and updated (2 x 2 part), the combine (D) and the gradient's
                // split (2 D for mult).
                TableKind::Qr { operation, .. } => {
                    qr += 4.0 * operation.part_dim(cfg.dim()) as f64 + 3.0 * d;
                    continue;
                }
                // Rows of width m pooled and updated (2 m); the projection's forward, weight
                // gradient and input gradient (3 x 2 m D).
                TableKind::Md { dim } => {
                    md += 2.0 * *dim as f64 + 6.0 * *dim as f64 * d;
                    continue;
                }
                _ => {}
            }
            match cfg.tt_shape(t).ok().flatten() {
                Some(s) => {
                    let chain: f64 = (1..s.d())
                        .map(|k| {
                            2.0 * (s.q_prefix(k) * s.ranks[k] * s.q[k] * s.ranks[k + 1]) as f64
                        })
                        .sum();
                    tt += 3.0 * chain;
                }
                None => dense += 2.0 * d,
            }
        }
        vec![
            ("bottom MLP", mlp(&cfg.bottom_mlp, false)),
            ("top MLP", mlp(&cfg.top_widths(), true)),
            ("interaction", 2.0 * d * pairs * 3.0),
            ("TT tables", tt),
            ("dense tables", dense),
            ("QR tables", qr),
            ("MD tables", md),
        ]
    }

    /// Reads the statistics of the steps not read yet into the host list (one wait).
    fn flush_stats(&mut self) -> Result<()> {
        if self.unread.is_empty() {
            return Ok(());
        }
        let ring = self.options.stats_ring;
        let raw = self
            .net
            .gpu
            .read_f32(&self.stats, 0, ring * STATS_PER_STEP)?;
        for (step, samples) in self.unread.drain(..) {
            let s = (step % ring as u64) as usize * STATS_PER_STEP;
            self.read.push(StepStats {
                step,
                samples,
                loss: raw[s] as f64,
                correct: raw[s + 1] as usize,
                non_finite_logits: raw[s + 2] != 0.0,
                non_finite_code: raw[s + 3].to_bits(),
            });
        }
        Ok(())
    }

    /// The parameter region that a step's [`StepStats::non_finite_code`] names (None for 0).
    pub fn non_finite_region(&self, code: u32) -> Option<String> {
        let tt: Vec<&TtParams> = self.net.tt.iter().map(|grp| &grp.params).collect();
        let qr = self.net.qr.as_ref().map(|q| q.group.group());
        let names =
            super::finite::region_names(&tt, self.net.dense.as_ref(), qr, self.net.md.as_ref());
        super::finite::region_of(code, &names)
    }

    /// The statistics of every step since the last call (reads the GPU once if any are there).
    pub fn take_stats(&mut self) -> Result<Vec<StepStats>> {
        self.flush_stats()?;
        Ok(std::mem::take(&mut self.read))
    }

    /// Click probabilities of `batch` computed with the evaluation plan of `plan_batch` samples
    /// (at least as many): the batch is padded with copies of its first sample, so batches of
    /// any size share one plan. Returns one probability per real sample.
    pub fn predict_padded(&mut self, batch: &DlrmBatch, plan_batch: usize) -> Result<Vec<f32>> {
        let b = self.validate(batch, false)?;
        if b >= plan_batch {
            return self.predict(batch);
        }
        let tables = self.net.config.tables.len();
        let features = self.net.config.dense_features();
        let mut dense = batch.dense.to_vec();
        let mut sparse = batch.sparse.to_vec();
        for _ in b..plan_batch {
            dense.extend_from_slice(&batch.dense[..features]);
            sparse.extend_from_slice(&batch.sparse[..tables]);
        }
        let mut p = self.predict(&DlrmBatch {
            dense: &dense,
            sparse: &sparse,
            labels: &[],
        })?;
        p.truncate(b);
        Ok(p)
    }

    /// The evaluation plan for `batch` (built when missing, the cache bounded; with the trace
    /// copies when `trace`) with the batch written into its input, beside the network and the
    /// number of samples.
    fn filled_eval(&mut self, batch: &DlrmBatch, trace: bool) -> Result<(&Net, &EvalPlan, usize)> {
        let b = self.validate(batch, false)?;
        let net = &self.net;
        let ep = self
            .eval_plans
            .get_or_build((b, trace), || build_eval_plan(net, b, trace))?;
        fill(net, &mut ep.input, &ep.inputs, batch, None)?;
        Ok((net, ep, b))
    }

    /// Click probabilities of every sample of `batch` (forward only; reads them back).
    pub fn predict(&mut self, batch: &DlrmBatch) -> Result<Vec<f32>> {
        let (net, ep, b) = self.filled_eval(batch, false)?;
        ep.plan.run_with(&ep.input)?;
        net.gpu.read_f32(&ep.prob, 0, b)
    }

    /// Serving inside an app: encodes the upload of `batch`, the forward and a copy of its `[B]`
    /// click probabilities (f32) into `out` at byte `offset` into the app's `encoder`. `out`
    /// needs `COPY_DST` and room for `B * 4` bytes after `offset` (a multiple of 4). Nothing
    /// runs until the app submits the encoder; no wait, no readback. Several calls may share
    /// one encoder (their commands run in order). Probabilities are bitwise those of
    /// [`Dlrm::predict`].
    pub fn score_into(
        &mut self,
        batch: &DlrmBatch,
        out: &wgpu::Buffer,
        offset: u64,
        encoder: &mut wgpu::CommandEncoder,
    ) -> Result<()> {
        let b = self.validate(batch, false)? as u64;
        if !out.usage().contains(wgpu::BufferUsages::COPY_DST) {
            return Err(Error::input(
                None,
                "score_into: the output buffer needs COPY_DST usage",
            ));
        }
        if !offset.is_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT)
            || offset.saturating_add(4 * b) > out.size()
        {
            return Err(Error::input(
                None,
                format!(
                    "score_into: {b} probabilities at byte {offset} do not fit the output buffer of {} bytes (the offset must be a multiple of 4)",
                    out.size()
                ),
            ));
        }
        let (_, ep, _) = self.filled_eval(batch, false)?;
        ep.plan.encode_with(encoder, &ep.input)?;
        if b > 0 {
            encoder.copy_buffer_to_buffer(&ep.prob, 0, out, offset, 4 * b);
        }
        Ok(())
    }

    /// The evaluation plan for `batch` run with a GPU timestamp around every node: waits and
    /// returns the per-node times (needs timestamp queries).
    pub fn profile_predict(&mut self, batch: &DlrmBatch) -> Result<Vec<NodeTime>> {
        let (_, ep, _) = self.filled_eval(batch, false)?;
        ep.plan.upload(&ep.input)?;
        ep.plan.run_profiled()
    }

    /// The forward's intermediate values for `batch` (checks against a reference).
    pub fn trace(&mut self, batch: &DlrmBatch) -> Result<Trace> {
        let (net, ep, b) = self.filled_eval(batch, true)?;
        ep.plan.run_with(&ep.input)?;
        let (tb, rb) = ep.trace.as_ref().expect("trace plan");
        let d = net.config.dim();
        let t_stride = net.t_stride();
        let t = net.gpu.read_f32(tb, 0, b * t_stride)?;
        let ldr = net.top.input_stride();
        let w = net.config.interaction_width();
        let r = net.gpu.read_f32(rb, 0, b * ldr)?;
        Ok(Trace {
            bottom_out: (0..b)
                .flat_map(|s| t[s * t_stride..][..d].to_vec())
                .collect(),
            interaction: (0..b).flat_map(|s| r[s * ldr..][..w].to_vec()).collect(),
            probabilities: net.gpu.read_f32(&ep.prob, 0, b)?,
        })
    }

    /// Every parameter's name and logical shape, as dlrm's state dict names them: MLP layers,
    /// then tables in order (`emb_l.{t}.weight` or `emb_l.{t}.tt_cores.{k}`).
    pub fn parameter_names(&self) -> Vec<(String, Vec<usize>)> {
        state_dict::parameter_names(&self.net)
    }

    /// Parameter `name` read back (logical layout, row-major).
    pub fn parameter(&self, name: &str) -> Result<Vec<f32>> {
        state_dict::parameter(&self.net, name)
    }

    /// Replaces parameter `name` (logical layout); the shape must match.
    pub fn set_parameter(&mut self, name: &str, values: &[f32]) -> Result<()> {
        state_dict::set_parameter(&mut self.net, name, values)
    }

    /// The gradient of parameter `name` in the last training step (dense for every kind; for a
    /// dense table, rows that were not looked up are zero).
    pub fn gradient(&self, name: &str) -> Result<Vec<f32>> {
        let last_dense = self.last_dense_ids.as_ref().and_then(|ids| {
            let sp = self.train_plans.get(&ids[0].len())?;
            Some(LastDenseStep {
                ids,
                lookups: sp.inputs.dense.as_ref().expect("dense lookups"),
            })
        });
        if let Some((t, part)) = super::qr::parse_name(name) {
            return self.qr_gradient(t, part);
        }
        let last_md = self.last_md_ids.as_ref().and_then(|ids| {
            let sp = self.train_plans.get(&ids[0].len())?;
            Some(LastMdStep {
                ids,
                lookups: sp.inputs.md.as_ref()?,
            })
        });
        state_dict::gradient(&self.net, name, last_dense, last_md)
    }

    /// The gradient of QR table `t`'s `part` in the last training step.
    fn qr_gradient(&self, t: usize, part: crate::nn::QrPart) -> Result<Vec<f32>> {
        let q =
            self.net.qr.as_ref().ok_or_else(|| {
                Error::input(Some(t), "the table is not a quotient-remainder table")
            })?;
        let ids = self
            .last_qr_ids
            .as_ref()
            .ok_or_else(|| Error::input(None, "no training step yet"))?;
        let sp = self
            .train_plans
            .get(&ids[0].len())
            .ok_or_else(|| Error::input(None, "the last training step's plan was dropped"))?;
        let lk = sp.inputs.qr.as_ref().expect("QR lookups");
        q.gradient(lk, ids, t, part)
    }

    /// Number of parameters (values, not bytes): (MLPs, dense tables, TT cores).
    pub fn parameter_counts(&self) -> (u64, u64, u64) {
        state_dict::parameter_counts(&self.net)
    }

    /// Which tables are TT.
    pub fn is_tt(&self, t: usize) -> bool {
        matches!(
            self.net.config.tables.get(t).map(|c| &c.kind),
            Some(TableKind::Tt { .. })
        )
    }
}
