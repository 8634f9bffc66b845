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

use std::collections::{HashMap, VecDeque};

use crate::cache::{CacheConfig, CacheStats};
use crate::data::Batch;
use crate::dlrm::config::{DlrmConfig, TableKind};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Buf, GraphBuilder, Plan, PlanInput};
use crate::kernels::interaction::{
    record_interaction_bwd, record_interaction_fwd, InteractionShape,
};
use crate::kernels::loss::{record_bce, record_probabilities, StepParams, STATS_PER_STEP};
use crate::kernels::matmul::GemmVariant;
use crate::kernels::MatrixAt;
use crate::nn::mlp::pad4;
use crate::nn::{
    act_transient, Act, ArenaLayout, DenseBagGroup, DenseBagLookups, Mlp, MlpActivations,
    ParamArena,
};
use crate::tt::batch::Placement;
use crate::tt::lookups::LookupSource;
use crate::tt::{
    init_cores, Bags, Optimizer, Pooling, TtKernels, TtLookups, TtOptions, TtParams, TtSaved,
    TtShape,
};

/// One batch as the model takes it: `dense` `[B, dense features]` (after dlrm's log transform),
/// `sparse` `[B, tables]` ids, `labels` `[B]` (0 or 1; may be empty for prediction).
#[derive(Clone, Copy, Debug)]
pub struct DlrmBatch<'a> {
    pub dense: &'a [f32],
    pub sparse: &'a [u32],
    pub labels: &'a [f32],
}

impl<'a> From<&'a Batch> for DlrmBatch<'a> {
    fn from(b: &'a Batch) -> Self {
        DlrmBatch {
            dense: &b.dense,
            sparse: &b.sparse,
            labels: &b.labels,
        }
    }
}

/// Choices that do not change the model's math.
#[derive(Clone, Debug)]
pub struct DlrmOptions {
    /// The matrix-product variant (default: chosen from the adapter class).
    pub gemm: Option<GemmVariant>,
    /// The TT tables' kernel variants (None: chosen for the adapter; results are bitwise the
    /// same whatever the choice).
    pub tt_kernels: Option<TtKernels>,
    /// Steps whose statistics the GPU keeps before the host must read them (it reads them
    /// itself, with one wait, when the ring is full).
    pub stats_ring: usize,
    /// Cap on a dense-table shard's bytes (default: the adapter's binding limit).
    pub max_shard_bytes: Option<u64>,
    /// An LFU row cache on every TT group (None: no cache).
    pub tt_cache: Option<TtCacheOptions>,
}

/// The LFU row cache of each TT group of a model (see [`crate::cache`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TtCacheOptions {
    /// Cache rows: below 1, a fraction of the group's rows; from 1 on, rows per TT table.
    pub rows: f64,
    /// Training steps before the first refresh.
    pub warmup_steps: usize,
    /// Training steps between refreshes.
    pub refresh_every: usize,
}

impl TtCacheOptions {
    /// The cache of a group of tables with `rows` rows in all, `tables` of them.
    pub fn config(&self, rows: u64, tables: usize) -> Result<CacheConfig> {
        if !(self.rows.is_finite() && self.rows > 0.0) {
            return Err(Error::input(
                None,
                format!(
                    "cache rows {}: a fraction in (0, 1) or a count of at least 1",
                    self.rows
                ),
            ));
        }
        let want = if self.rows < 1.0 {
            self.rows * rows as f64
        } else {
            self.rows.floor() * tables as f64
        };
        let fraction = (want / rows as f64).min(1.0);
        let mut c = CacheConfig::for_table(rows, fraction)?;
        c.warmup_steps = self.warmup_steps;
        c.refresh_every = self.refresh_every;
        c.validate(rows)?;
        Ok(c)
    }
}

impl Default for DlrmOptions {
    fn default() -> Self {
        DlrmOptions {
            gemm: None,
            tt_kernels: None,
            stats_ring: 1024,
            max_shard_bytes: None,
            tt_cache: None,
        }
    }
}

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

/// Per-batch inputs of a plan.
struct BatchInputs {
    batch: usize,
    /// The dense features batch-major [B, pad4(13)] and feature-major [pad4(13), pad4(B)].
    dense_x: Buf,
    dense_x_t: Buf,
    labels: Option<Buf>,
    step: Option<Buf>,
    dense: Option<DenseBagLookups>,
    /// One per TT group.
    tt: Vec<TtLookups>,
}

/// Buffers of one recorded forward.
struct Forward {
    t: Buf,
    r: Act,
    logits: Buf,
    bottom: MlpActivations,
    top: MlpActivations,
    /// One per TT group.
    saved: Vec<TtSaved>,
}

struct StepPlan {
    plan: Plan,
    input: PlanInput,
    inputs: BatchInputs,
}

struct EvalPlan {
    plan: Plan,
    input: PlanInput,
    inputs: BatchInputs,
    prob: wgpu::Buffer,
    /// (T, R) copies for [`Dlrm::trace`].
    trace: Option<(wgpu::Buffer, wgpu::Buffer)>,
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

/// A DLRM with its parameters, gradients and optimizer state on the GPU.
pub struct Dlrm {
    gpu: Gpu,
    config: DlrmConfig,
    options: DlrmOptions,
    variant: GemmVariant,
    arena: ParamArena,
    bottom: Mlp,
    top: Mlp,
    dense: Option<DenseBagGroup>,
    /// Per model table: its index in the dense group (None for TT tables).
    dense_index: Vec<Option<usize>>,
    /// TT tables with the same cores, column factors and ranks, stored (and run) as one group.
    tt: Vec<TtGroup>,
    /// Per model table: its TT group and position in it (None for dense tables).
    tt_of: Vec<Option<(usize, usize)>>,
    stats: wgpu::Buffer,
    steps: u64,
    /// Steps whose statistics are still only on the GPU: (step, samples).
    unread: VecDeque<(u64, usize)>,
    read: Vec<StepStats>,
    train_plans: HashMap<usize, StepPlan>,
    eval_plans: HashMap<(usize, bool), EvalPlan>,
    /// The dense tables' ids of the last training batch (for [`Dlrm::gradient`]).
    last_dense_ids: Option<Vec<Vec<u32>>>,
}

impl std::fmt::Debug for Dlrm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dlrm")
            .field("config", &self.config)
            .field("variant", &self.variant)
            .field("steps", &self.steps)
            .finish()
    }
}

/// TT tables stored as one (see [`TtParams::group_from_cores`]).
struct TtGroup {
    params: TtParams,
    /// Model table of each group table, in order.
    tables: Vec<usize>,
}

/// Names of the parameters, as dlrm's state dict.
fn emb_weight(t: usize) -> String {
    format!("emb_l.{t}.weight")
}
fn emb_core(t: usize, k: usize) -> String {
    format!("emb_l.{t}.tt_cores.{k}")
}

/// A parsed parameter name.
enum Param<'a> {
    Mlp(&'a str),
    Dense(usize),
    Core(usize, usize),
}

fn parse_name(name: &str) -> Param<'_> {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["emb_l", t, "weight"] => t.parse().map(Param::Dense).unwrap_or(Param::Mlp(name)),
        ["emb_l", t, "tt_cores", k] => match (t.parse(), k.parse()) {
            (Ok(t), Ok(k)) => Param::Core(t, k),
            _ => Param::Mlp(name),
        },
        _ => Param::Mlp(name),
    }
}

impl Dlrm {
    /// A model of `config` initialised as dlrm does (TT tables by `config.tt_init`), from
    /// `config.seed`.
    pub fn new(gpu: &Gpu, config: DlrmConfig, options: DlrmOptions) -> Result<Self> {
        Self::build(gpu, config, options, true)
    }

    fn build(gpu: &Gpu, config: DlrmConfig, options: DlrmOptions, init: bool) -> Result<Self> {
        config.validate()?;
        if options.stats_ring == 0 {
            return Err(Error::input(
                None,
                "the statistics ring needs at least one slot",
            ));
        }
        let sgd = Optimizer::Sgd {
            lr: config.learning_rate,
        };
        let mut layout = ArenaLayout::default();
        let bottom = Mlp::declare(&mut layout, "bot_l", &config.bottom_mlp, true)?;
        let top = Mlp::declare(&mut layout, "top_l", &config.top_widths(), false)?;
        let mut arena = ParamArena::new(gpu, layout, sgd)?;
        if init {
            bottom.init(&mut arena, config.seed)?;
            top.init(&mut arena, config.seed ^ 0x5bd1_e995)?;
        }
        let mut dense_rows = Vec::new();
        let mut dense_index = Vec::new();
        // TT tables grouped by (column factors, ranks): a group runs in shared dispatches.
        type Group = (Vec<usize>, Vec<usize>, Vec<(usize, TtShape)>);
        let mut groups: Vec<Group> = Vec::new();
        let mut tt_of = vec![None; config.tables.len()];
        for (t, table) in config.tables.iter().enumerate() {
            match config.tt_shape(t)? {
                None => {
                    dense_index.push(Some(dense_rows.len()));
                    dense_rows.push(table.rows);
                }
                Some(shape) => {
                    dense_index.push(None);
                    let gi = match groups
                        .iter()
                        .position(|(q, r, _)| *q == shape.q && *r == shape.ranks)
                    {
                        Some(i) => i,
                        None => {
                            groups.push((shape.q.clone(), shape.ranks.clone(), Vec::new()));
                            groups.len() - 1
                        }
                    };
                    tt_of[t] = Some((gi, groups[gi].2.len()));
                    groups[gi].2.push((t, shape));
                }
            }
        }
        let mut tt = Vec::with_capacity(groups.len());
        for (_, _, members) in groups {
            let cache = match &options.tt_cache {
                Some(c) => {
                    let rows: u64 = members.iter().map(|(_, s)| s.num_embeddings).sum();
                    Some(
                        c.config(rows, members.len())
                            .map_err(|e| e.with_table(members[0].0))?,
                    )
                }
                None => None,
            };
            let opts = TtOptions {
                pooling: Pooling::Sum,
                optimizer: sgd,
                init: config.tt_init,
                seed: config.seed,
                kernels: options.tt_kernels,
                cache,
                ..TtOptions::default()
            };
            // Each table drawn as if alone, from its own seed.
            let cores: Vec<Vec<Vec<f32>>> = members
                .iter()
                .map(|(t, shape)| {
                    if init {
                        init_cores(
                            shape,
                            config.tt_init,
                            config.seed.wrapping_add(1000 + *t as u64),
                        )
                    } else {
                        (0..shape.d())
                            .map(|k| vec![0.0; shape.core_len(k)])
                            .collect()
                    }
                })
                .collect();
            let tables: Vec<usize> = members.iter().map(|(t, _)| *t).collect();
            let shapes: Vec<TtShape> = members.into_iter().map(|(_, s)| s).collect();
            let params = TtParams::group_from_cores(gpu, shapes, &cores, opts)
                .map_err(|e| e.with_table(tables[0]))?;
            tt.push(TtGroup { params, tables });
        }
        let dense = if dense_rows.is_empty() {
            None
        } else if init {
            Some(DenseBagGroup::new(
                gpu,
                config.dim(),
                &dense_rows,
                sgd,
                config.seed.wrapping_add(7),
                options.max_shard_bytes,
            )?)
        } else {
            Some(DenseBagGroup::empty(
                gpu,
                config.dim(),
                &dense_rows,
                sgd,
                options.max_shard_bytes,
            )?)
        };
        let variant = options.gemm.unwrap_or_else(|| GemmVariant::for_gpu(gpu));
        let stats = gpu.storage(
            "dlrm step stats",
            (options.stats_ring * STATS_PER_STEP) as u64 * 4,
        );
        Ok(Dlrm {
            gpu: gpu.clone(),
            config,
            options,
            variant,
            arena,
            bottom,
            top,
            dense,
            dense_index,
            tt,
            tt_of,
            stats,
            steps: 0,
            unread: VecDeque::new(),
            read: Vec::new(),
            train_plans: HashMap::new(),
            eval_plans: HashMap::new(),
            last_dense_ids: None,
        })
    }

    /// A model of `config` with every parameter zero (to be loaded).
    pub fn zeroed(gpu: &Gpu, config: DlrmConfig, options: DlrmOptions) -> Result<Self> {
        Self::build(gpu, config, options, false)
    }

    pub fn config(&self) -> &DlrmConfig {
        &self.config
    }
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
    /// The matrix-product variant in use.
    pub fn gemm_variant(&self) -> GemmVariant {
        self.variant
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
        self.dense.as_ref().map_or(0, |d| d.num_shards())
    }

    /// Changes the learning rate of every parameter (takes effect at the next step).
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::input(
                None,
                format!("the learning rate must be positive, got {lr}"),
            ));
        }
        self.config.learning_rate = lr;
        self.arena.set_learning_rate(lr);
        if let Some(d) = &mut self.dense {
            d.set_learning_rate(lr);
        }
        for g in &mut self.tt {
            g.params.set_learning_rate(lr);
        }
        Ok(())
    }

    fn slot_col(&self, t: usize) -> usize {
        (t + 1) * self.config.dim()
    }
    fn t_stride(&self) -> usize {
        self.config.vectors() * self.config.dim()
    }
    fn dense_col_offsets(&self) -> Vec<usize> {
        (0..self.config.tables.len())
            .filter(|&t| self.dense_index[t].is_some())
            .map(|t| self.slot_col(t))
            .collect()
    }

    fn declare_inputs(
        &self,
        g: &mut GraphBuilder,
        batch: usize,
        train: bool,
    ) -> Result<BatchInputs> {
        let in_p = self.bottom.input_stride();
        let dense_x = g.input("dense features", (batch * in_p) as u64 * 4);
        let dense_x_t = g.input("dense features transposed", (in_p * pad4(batch)) as u64 * 4);
        let (labels, step) = if train {
            (
                Some(g.input("labels", batch as u64 * 4)),
                Some(g.input("step", std::mem::size_of::<StepParams>() as u64)),
            )
        } else {
            (None, None)
        };
        let dense = match &self.dense {
            Some(group) => Some(DenseBagLookups::declare(
                g,
                group,
                batch,
                batch * group.num_tables(),
                self.t_stride(),
                &self.dense_col_offsets(),
                "dense tables",
            )?),
            None => None,
        };
        let tt = self
            .tt
            .iter()
            .enumerate()
            .map(|(i, grp)| {
                let n = batch * grp.tables.len();
                // Training plans count the lookups in the groups' caches; evaluation does not.
                let source = LookupSource::for_table(&grp.params, train);
                TtLookups::declare_with(g, &grp.params, n, n, &format!("tt group {i}"), source)
            })
            .collect();
        Ok(BatchInputs {
            batch,
            dense_x,
            dense_x_t,
            labels,
            step,
            dense,
            tt,
        })
    }

    fn record_forward(&self, g: &mut GraphBuilder, inputs: &BatchInputs) -> Result<Forward> {
        let b = inputs.batch;
        let cfg = &self.config;
        let d = cfg.dim();
        let f = cfg.vectors();
        let t_stride = self.t_stride();
        let t = g.transient(
            "T (bottom output and pooled embeddings)",
            (b * t_stride) as u64 * 4,
        );
        let ldr = self.top.input_stride();
        let r = act_transient(g, "R (interaction)", b, ldr);
        let ldz = self.top.output_stride();
        let logits = g.transient("logits", (b * ldz) as u64 * 4);
        self.arena.record_transposes(g, "mlp")?;
        let in_p = self.bottom.input_stride();
        let bottom = self.bottom.record_forward(
            g,
            &self.arena,
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
            self.variant,
            "bottom",
        )?;
        if let (Some(group), Some(lk)) = (&self.dense, &inputs.dense) {
            lk.record_forward(g, group, t.clone())?;
        }
        let mut saved = Vec::with_capacity(self.tt.len());
        for (grp, lk) in self.tt.iter().zip(&inputs.tt) {
            saved.push(lk.record_forward(g, &grp.params, &t)?);
        }
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
        let top = self.top.record_forward(
            g,
            &self.arena,
            r.clone(),
            Some(MatrixAt::dense(logits.clone(), ldz)),
            None,
            b,
            self.variant,
            "top",
        )?;
        Ok(Forward {
            t,
            r,
            logits,
            bottom,
            top,
            saved,
        })
    }

    fn build_train_plan(&self, batch: usize) -> Result<StepPlan> {
        let cfg = &self.config;
        let mut g = GraphBuilder::new(&self.gpu);
        let inputs = self.declare_inputs(&mut g, batch, true)?;
        let fw = self.record_forward(&mut g, &inputs)?;
        let ldz = self.top.output_stride();
        let ldr = self.top.input_stride();
        let t_stride = self.t_stride();
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
            Buf::from(&self.stats),
        )?;
        let dr = g.transient("dR", (batch * ldr) as u64 * 4);
        self.top.record_backward(
            &mut g,
            &self.arena,
            &fw.top,
            dlogits,
            Some(MatrixAt::dense(dr.clone(), ldr)),
            None,
            batch,
            self.variant,
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
        self.bottom.record_backward(
            &mut g,
            &self.arena,
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
            self.variant,
            "bottom",
        )?;
        if let (Some(group), Some(lk)) = (&self.dense, &inputs.dense) {
            lk.record_backward(&mut g, group, dt.clone())?;
        }
        for ((grp, lk), saved) in self.tt.iter().zip(&inputs.tt).zip(fw.saved) {
            lk.record_backward(&mut g, &grp.params, &dt, Some(saved), true)?;
        }
        self.arena.record_update(&mut g, "mlp")?;
        // Every parameter checked finite after the update, into the step's stats slot.
        let tt: Vec<&TtParams> = self.tt.iter().map(|grp| &grp.params).collect();
        let dense = self.dense.as_ref().zip(inputs.dense.as_ref());
        super::finite::record_checks(
            &mut g,
            inputs.step.as_ref().expect("train inputs"),
            &Buf::from(&self.stats),
            &self.arena,
            &tt,
            dense,
        )?;
        let plan = g.build()?;
        let input = plan.new_input();
        Ok(StepPlan {
            plan,
            input,
            inputs,
        })
    }

    fn build_eval_plan(&self, batch: usize, trace: bool) -> Result<EvalPlan> {
        let mut g = GraphBuilder::new(&self.gpu);
        let inputs = self.declare_inputs(&mut g, batch, false)?;
        let fw = self.record_forward(&mut g, &inputs)?;
        let prob = self.gpu.storage("dlrm probabilities", batch as u64 * 4);
        record_probabilities(
            &mut g,
            "probabilities",
            batch,
            self.top.output_stride(),
            fw.logits.clone(),
            Buf::from(&prob),
        )?;
        let trace = if trace {
            let t_bytes = (batch * self.t_stride()) as u64 * 4;
            let r_bytes = (batch * self.top.input_stride()) as u64 * 4;
            let tb = self.gpu.storage("trace T", t_bytes);
            let rb = self.gpu.storage("trace R", r_bytes);
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

    /// Samples in `batch`, after checking it against the model: sizes, finite dense features,
    /// ids in range, labels 0 or 1 (when `labels` are needed). Errors name the sample, feature
    /// or table, and the value.
    pub fn validate(&self, batch: &DlrmBatch, labels: bool) -> Result<usize> {
        let tables = self.config.tables.len();
        let features = self.config.dense_features();
        if batch.sparse.is_empty() || !batch.sparse.len().is_multiple_of(tables) {
            return Err(Error::input(
                None,
                format!(
                    "the batch has {} ids; the model has {tables} tables, so a batch of B samples has B x {tables}",
                    batch.sparse.len()
                ),
            ));
        }
        let b = batch.sparse.len() / tables;
        if batch.dense.len() != b * features {
            return Err(Error::input(
                None,
                format!(
                    "the batch has {} dense values; {b} samples x {features} dense features need {}",
                    batch.dense.len(),
                    b * features
                ),
            ));
        }
        if let Some(i) = batch.dense.iter().position(|x| !x.is_finite()) {
            return Err(Error::input(
                None,
                format!(
                    "dense feature I{} of sample {} is {} (not finite)",
                    i % features + 1,
                    i / features,
                    batch.dense[i]
                ),
            ));
        }
        for (i, &id) in batch.sparse.iter().enumerate() {
            let t = i % tables;
            let rows = self.config.tables[t].rows;
            if id as u64 >= rows {
                return Err(Error::input(
                    Some(t),
                    format!(
                        "id {id} of sample {} (C{}) is out of range; the table has {rows} rows",
                        i / tables,
                        t + 1
                    ),
                ));
            }
        }
        if labels || !batch.labels.is_empty() {
            if batch.labels.len() != b {
                return Err(Error::input(
                    None,
                    format!(
                        "the batch has {} labels for {b} samples",
                        batch.labels.len()
                    ),
                ));
            }
            if let Some(i) = batch.labels.iter().position(|&y| y != 0.0 && y != 1.0) {
                return Err(Error::input(
                    None,
                    format!(
                        "label of sample {i} is {}; labels are 0 or 1",
                        batch.labels[i]
                    ),
                ));
            }
        }
        Ok(b)
    }

    /// Writes `batch` into a plan's input image.
    fn fill(
        &self,
        input: &mut PlanInput,
        inputs: &BatchInputs,
        batch: &DlrmBatch,
        slot: Option<u32>,
    ) -> Result<Option<Vec<Vec<u32>>>> {
        let b = inputs.batch;
        let tables = self.config.tables.len();
        let features = self.config.dense_features();
        let in_p = self.bottom.input_stride();
        let bp = pad4(b);
        let mut x = vec![0f32; b * in_p];
        let mut x_t = vec![0f32; in_p * bp];
        for s in 0..b {
            for f in 0..features {
                let v = batch.dense[s * features + f];
                x[s * in_p + f] = v;
                x_t[f * bp + s] = v;
            }
        }
        input.write(&inputs.dense_x, &x)?;
        input.write(&inputs.dense_x_t, &x_t)?;
        if let Some(l) = &inputs.labels {
            input.write(l, batch.labels)?;
        }
        if let (Some(region), Some(slot)) = (&inputs.step, slot) {
            input.write(region, &[StepParams { slot, _pad: [0; 3] }])?;
        }
        let column =
            |t: usize| -> Vec<u32> { (0..b).map(|s| batch.sparse[s * tables + t]).collect() };
        let offsets: Vec<u32> = (0..=b as u32).collect();
        let mut dense_ids = None;
        if let (Some(group), Some(lk)) = (&self.dense, &inputs.dense) {
            let ids: Vec<Vec<u32>> = (0..tables)
                .filter(|&t| self.dense_index[t].is_some())
                .map(column)
                .collect();
            let bags: Vec<Bags> = ids.iter().map(|i| Bags::new(i, &offsets)).collect();
            lk.fill(input, group, &bags)?;
            dense_ids = Some(ids);
        }
        for (grp, lk) in self.tt.iter().zip(&inputs.tt) {
            let ids: Vec<Vec<u32>> = grp.tables.iter().map(|&t| column(t)).collect();
            let bags: Vec<Bags> = ids.iter().map(|i| Bags::new(i, &offsets)).collect();
            let place = Placement {
                col: grp.tables.iter().map(|&t| self.slot_col(t)).collect(),
                stride: vec![self.t_stride(); grp.tables.len()],
            };
            lk.fill(input, &grp.params, &bags, &place, Pooling::Sum)?;
        }
        Ok(dense_ids)
    }

    /// Builds the training plan for batches of `batch` samples ahead of the first step (pipeline
    /// compilation can take seconds on CPU adapters), so that step times are steady.
    pub fn prepare_train(&mut self, batch: usize) -> Result<()> {
        if batch == 0 {
            return Err(Error::input(None, "batch size must be at least 1"));
        }
        if !self.train_plans.contains_key(&batch) {
            let plan = self.build_train_plan(batch)?;
            self.train_plans.insert(batch, plan);
        }
        Ok(())
    }

    /// Builds the evaluation plan for batches of `batch` samples ahead of use.
    pub fn prepare_eval(&mut self, batch: usize) -> Result<()> {
        if batch == 0 {
            return Err(Error::input(None, "batch size must be at least 1"));
        }
        let p = self.eval_plan(batch, false)?;
        self.eval_plans.insert((batch, false), p);
        Ok(())
    }

    /// Click probabilities of `batch` computed with the evaluation plan of `plan_batch` samples
    /// (at least as many): the batch is padded with copies of its first sample, so batches of
    /// any size share one plan. Returns one probability per real sample.
    pub fn predict_padded(&mut self, batch: &DlrmBatch, plan_batch: usize) -> Result<Vec<f32>> {
        let b = self.validate(batch, false)?;
        if b >= plan_batch {
            return self.predict(batch);
        }
        let tables = self.config.tables.len();
        let features = self.config.dense_features();
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

    /// One training step on `batch`: one upload, one submit, no wait. The step's loss stays on
    /// the GPU until [`Dlrm::take_stats`].
    pub fn train_step(&mut self, batch: &DlrmBatch) -> Result<()> {
        let b = self.validate(batch, true)?;
        if self.unread.len() >= self.options.stats_ring {
            self.flush_stats()?;
        }
        if !self.train_plans.contains_key(&b) {
            if self.train_plans.len() >= 4 {
                self.train_plans.clear();
            }
            let plan = self.build_train_plan(b)?;
            self.train_plans.insert(b, plan);
        }
        let slot = (self.steps % self.options.stats_ring as u64) as u32;
        let mut sp = self.train_plans.remove(&b).expect("plan");
        let filled = self.fill(&mut sp.input, &sp.inputs, batch, Some(slot));
        let run = filled.and_then(|ids| {
            self.last_dense_ids = ids;
            sp.plan.run_with(&sp.input)
        });
        self.train_plans.insert(b, sp);
        run?;
        self.unread.push_back((self.steps, b));
        self.steps += 1;
        // Each TT group's cache refreshes when due (its own submit, after the step's).
        for grp in self.tt.iter_mut() {
            grp.params.cache_step()?;
        }
        Ok(())
    }

    /// The TT groups' caches together: lookups, hits and drops summed since the start, members
    /// and occupied entries as of their last refreshes, and the refreshes so far (None without
    /// a cache). Reads the GPU (one wait).
    pub fn cache_stats(&mut self) -> Result<Option<(CacheStats, u64)>> {
        let mut total: Option<(CacheStats, u64)> = None;
        for grp in self.tt.iter_mut() {
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

    /// A training step like [`Dlrm::train_step`], run with a GPU timestamp around every node:
    /// waits and returns the per-node times (needs timestamp queries).
    pub fn profile_step(&mut self, batch: &DlrmBatch) -> Result<Vec<crate::graph::NodeTime>> {
        let b = self.validate(batch, true)?;
        self.flush_stats()?;
        if !self.train_plans.contains_key(&b) {
            let plan = self.build_train_plan(b)?;
            self.train_plans.insert(b, plan);
        }
        let slot = (self.steps % self.options.stats_ring as u64) as u32;
        let mut sp = self.train_plans.remove(&b).expect("plan");
        let result = self
            .fill(&mut sp.input, &sp.inputs, batch, Some(slot))
            .and_then(|ids| {
                self.last_dense_ids = ids;
                sp.plan.upload(&sp.input)?;
                sp.plan.run_profiled()
            });
        self.train_plans.insert(b, sp);
        let times = result?;
        self.unread.push_back((self.steps, b));
        self.steps += 1;
        Ok(times)
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
        let cfg = &self.config;
        let d = cfg.dim() as f64;
        let pairs = (cfg.vectors() * (cfg.vectors() - 1) / 2) as f64;
        let mut tt = 0.0;
        let mut dense = 0.0;
        for t in 0..cfg.tables.len() {
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
        ]
    }

    /// Reads the statistics of the steps not read yet into the host list (one wait).
    fn flush_stats(&mut self) -> Result<()> {
        if self.unread.is_empty() {
            return Ok(());
        }
        let ring = self.options.stats_ring;
        let raw = self.gpu.read_f32(&self.stats, 0, ring * STATS_PER_STEP)?;
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
        let tt: Vec<&TtParams> = self.tt.iter().map(|grp| &grp.params).collect();
        super::finite::region_of(code, &super::finite::region_names(&tt, self.dense.as_ref()))
    }

    /// The statistics of every step since the last call (reads the GPU once if any are there).
    pub fn take_stats(&mut self) -> Result<Vec<StepStats>> {
        self.flush_stats()?;
        Ok(std::mem::take(&mut self.read))
    }

    fn eval_plan(&mut self, b: usize, trace: bool) -> Result<EvalPlan> {
        match self.eval_plans.remove(&(b, trace)) {
            Some(p) => Ok(p),
            None => {
                if self.eval_plans.len() >= 4 {
                    self.eval_plans.clear();
                }
                self.build_eval_plan(b, trace)
            }
        }
    }

    /// Click probabilities of every sample of `batch` (forward only; reads them back).
    pub fn predict(&mut self, batch: &DlrmBatch) -> Result<Vec<f32>> {
        let b = self.validate(batch, false)?;
        let mut ep = self.eval_plan(b, false)?;
        let out = self
            .fill(&mut ep.input, &ep.inputs, batch, None)
            .and_then(|_| ep.plan.run_with(&ep.input))
            .and_then(|_| self.gpu.read_f32(&ep.prob, 0, b));
        self.eval_plans.insert((b, false), ep);
        out
    }

    /// The evaluation plan for `batch` run with a GPU timestamp around every node: waits and
    /// returns the per-node times (needs timestamp queries).
    pub fn profile_predict(&mut self, batch: &DlrmBatch) -> Result<Vec<crate::graph::NodeTime>> {
        let b = self.validate(batch, false)?;
        let mut ep = self.eval_plan(b, false)?;
        let out = self
            .fill(&mut ep.input, &ep.inputs, batch, None)
            .and_then(|_| ep.plan.upload(&ep.input))
            .and_then(|_| ep.plan.run_profiled());
        self.eval_plans.insert((b, false), ep);
        out
    }

    /// The forward's intermediate values for `batch` (checks against a reference).
    pub fn trace(&mut self, batch: &DlrmBatch) -> Result<Trace> {
        let b = self.validate(batch, false)?;
        let mut ep = self.eval_plan(b, true)?;
        let result = (|| {
            self.fill(&mut ep.input, &ep.inputs, batch, None)?;
            ep.plan.run_with(&ep.input)?;
            let (tb, rb) = ep.trace.as_ref().expect("trace plan");
            let d = self.config.dim();
            let t = self.gpu.read_f32(tb, 0, b * self.t_stride())?;
            let ldr = self.top.input_stride();
            let w = self.config.interaction_width();
            let r = self.gpu.read_f32(rb, 0, b * ldr)?;
            Ok(Trace {
                bottom_out: (0..b)
                    .flat_map(|s| t[s * self.t_stride()..][..d].to_vec())
                    .collect(),
                interaction: (0..b).flat_map(|s| r[s * ldr..][..w].to_vec()).collect(),
                probabilities: self.gpu.read_f32(&ep.prob, 0, b)?,
            })
        })();
        self.eval_plans.insert((b, true), ep);
        result
    }

    /// Every parameter's name and logical shape, as dlrm's state dict names them: MLP layers,
    /// then tables in order (`emb_l.{t}.weight` or `emb_l.{t}.tt_cores.{k}`).
    pub fn parameter_names(&self) -> Vec<(String, Vec<usize>)> {
        let mut out: Vec<(String, Vec<usize>)> = self
            .arena
            .tensors()
            .iter()
            .map(|t| (t.name.clone(), t.shape()))
            .collect();
        for (t, table) in self.config.tables.iter().enumerate() {
            match self.tt_table(t) {
                Ok((p, i)) => {
                    let shape = &p.tables()[i].shape;
                    for k in 0..shape.d() {
                        out.push((emb_core(t, k), shape.core_shape(k).to_vec()));
                    }
                }
                Err(_) => out.push((emb_weight(t), vec![table.rows as usize, self.config.dim()])),
            }
        }
        out
    }

    /// Table `t`'s TT group's parameters and its position in the group.
    fn tt_table(&self, t: usize) -> Result<(&TtParams, usize)> {
        match self.tt_of.get(t).copied().flatten() {
            Some((g, i)) => Ok((&self.tt[g].params, i)),
            None => Err(Error::input(Some(t), "the table is not a TT table")),
        }
    }

    fn dense_table(&self, t: usize) -> Result<(&DenseBagGroup, usize)> {
        match (
            self.dense.as_ref(),
            self.dense_index.get(t).copied().flatten(),
        ) {
            (Some(g), Some(i)) => Ok((g, i)),
            _ => Err(Error::input(Some(t), "the table is not a dense table")),
        }
    }

    /// Parameter `name` read back (logical layout, row-major).
    pub fn parameter(&self, name: &str) -> Result<Vec<f32>> {
        match parse_name(name) {
            Param::Dense(t) => {
                let (g, i) = self.dense_table(t)?;
                g.table(i)
            }
            Param::Core(t, k) => {
                let (p, i) = self.tt_table(t)?;
                p.table_core(i, k).map_err(|e| e.with_table(t))
            }
            Param::Mlp(n) => self.arena.get(n),
        }
    }

    /// Replaces parameter `name` (logical layout); the shape must match.
    pub fn set_parameter(&mut self, name: &str, values: &[f32]) -> Result<()> {
        match parse_name(name) {
            Param::Dense(t) => {
                let i = self.dense_table(t)?.1;
                self.dense
                    .as_mut()
                    .expect("dense group")
                    .set_table(i, values)
            }
            Param::Core(t, k) => {
                let i = self.tt_table(t)?.1;
                let (g, _) = self.tt_of[t].expect("a TT table");
                self.tt[g]
                    .params
                    .set_table_core(i, k, values)
                    .map_err(|e| e.with_table(t))
            }
            Param::Mlp(n) => self.arena.set(n, values),
        }
    }

    /// The gradient of parameter `name` in the last training step (dense for every kind; for a
    /// dense table, rows that were not looked up are zero).
    pub fn gradient(&self, name: &str) -> Result<Vec<f32>> {
        match parse_name(name) {
            Param::Dense(t) => {
                let (g, i) = self.dense_table(t)?;
                let ids = self
                    .last_dense_ids
                    .as_ref()
                    .ok_or_else(|| Error::input(None, "no training step yet"))?;
                let b = ids[0].len();
                let sp = self
                    .train_plans
                    .get(&b)
                    .ok_or_else(|| Error::input(None, "no training step yet"))?;
                let offsets: Vec<u32> = (0..=b as u32).collect();
                let bags: Vec<Bags> = ids.iter().map(|v| Bags::new(v, &offsets)).collect();
                sp.inputs
                    .dense
                    .as_ref()
                    .expect("dense lookups")
                    .table_grad(g, &bags, i)
            }
            Param::Core(t, k) => {
                let (p, i) = self.tt_table(t)?;
                p.table_grad(i, k).map_err(|e| e.with_table(t))
            }
            Param::Mlp(n) => self.arena.grad(n),
        }
    }

    /// Bytes of every parameter: (MLPs, dense tables, TT cores).
    pub fn parameter_counts(&self) -> (u64, u64, u64) {
        let mlp = self.arena.num_params() as u64;
        let dense = self.dense.as_ref().map_or(0, |d| d.num_params());
        let tt = self.tt.iter().map(|g| g.params.num_params() as u64).sum();
        (mlp, dense, tt)
    }

    /// Which tables are TT.
    pub fn is_tt(&self, t: usize) -> bool {
        matches!(
            self.config.tables.get(t).map(|c| &c.kind),
            Some(TableKind::Tt { .. })
        )
    }
}
