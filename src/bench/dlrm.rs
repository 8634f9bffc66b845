//! `ttrec bench dlrm`: training samples/s of dlrm's Kaggle configuration (TT and dense tables) on
//! synthetic Criteo-shaped batches, with the FLOPs per sample counted per part and, with
//! `--profile`, per-kernel GPU times of one step.

use std::time::Instant;

use crate::data::SyntheticCriteo;
use crate::dlrm::{Dlrm, DlrmBatch, DlrmConfig, DlrmOptions};
use crate::error::{Error, Result};
use crate::gpu::{AdapterClass, Gpu};

/// One measurement's setup.
#[derive(Clone, Debug)]
pub struct DlrmBenchConfig {
    /// "tt" (the 7 largest tables TT, rank `rank`) or "dense".
    pub variant: String,
    pub batch: usize,
    /// Kaggle's table sizes times this.
    pub scale: f64,
    pub rank: usize,
}

/// Table scale that fits the adapter when none is given: the full Kaggle sizes except for dense
/// tables on a CPU adapter (lavapipe's 2 GiB heap cannot hold 2.16 GB of rows).
pub fn default_scale(gpu: &Gpu, variant: &str) -> f64 {
    if variant == "dense" && gpu.class() == AdapterClass::Cpu {
        0.05
    } else {
        1.0
    }
}

/// What one configuration measured.
#[derive(Clone, Debug)]
pub struct DlrmBenchResult {
    pub config: DlrmBenchConfig,
    pub adapter: String,
    pub env: super::BenchEnv,
    /// The matrix-product kernels (registers or tiled).
    pub gemm: String,
    pub embedding_params: u64,
    /// Samples per second with steps submitted back to back (one wait at the end of each of
    /// [`THROUGHPUT_BLOCKS`] blocks): all samples over all the blocks' time.
    pub samples_per_s: f64,
    /// Samples per second of each block.
    pub samples_per_s_spread: super::Spread,
    /// Median wall time of one step with a wait after it (the PyTorch peers' way).
    pub synced_step_ms: f64,
    /// The synced steps' times, in milliseconds.
    pub synced_step_ms_spread: super::Spread,
    pub steps: usize,
    pub flops_per_sample: Vec<(String, f64)>,
    /// The kernel kinds of the step's plan (see [`super::kernel_kinds`]); None when the adapter
    /// has no timestamps.
    pub kernels: Option<Vec<String>>,
    /// Per-node GPU times of one step (label, microseconds), when profiled.
    pub profile: Vec<(String, f64)>,
    /// Per node of the step's plan, its structure (when profiled; the same order as `profile`).
    pub counts: Vec<crate::graph::NodeCount>,
}

/// Blocks the back-to-back throughput is measured in (for its spread).
pub const THROUGHPUT_BLOCKS: usize = 5;

impl DlrmBenchResult {
    pub fn mflop_per_sample(&self) -> f64 {
        self.flops_per_sample.iter().map(|(_, f)| f).sum::<f64>() / 1e6
    }
    pub fn gflops(&self) -> f64 {
        self.mflop_per_sample() * self.samples_per_s / 1e3
    }
    /// Whether the TT subgroup kernels ran (None: not known, the adapter has no timestamps).
    pub fn subgroup_kernels_ran(&self) -> Option<bool> {
        self.kernels
            .as_ref()
            .map(|k| k.iter().any(|k| k.contains("(subgroup)")))
    }
    /// One JSON object (the `--json` line), `"type": "bench_dlrm"`.
    pub fn json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert("type".into(), "bench_dlrm".into());
        self.env.add_to(&mut obj);
        let rest = serde_json::json!({
            "variant": self.config.variant,
            "batch": self.config.batch,
            "scale": self.config.scale,
            "tt_rank": self.config.rank,
            "gemm": self.gemm,
            "subgroup_kernels": self.subgroup_kernels_ran(),
            "kernels": self.kernels,
            "embedding_params": self.embedding_params,
            "samples_per_s": self.samples_per_s,
            "samples_per_s_spread": self.samples_per_s_spread.json(),
            "synced_step_ms": self.synced_step_ms,
            "synced_step_ms_spread": self.synced_step_ms_spread.json(),
            "steps": self.steps,
            "mflop_per_sample": self.mflop_per_sample(),
            "gflops": self.gflops(),
            "flops_per_sample": self.flops_per_sample.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        if let serde_json::Value::Object(m) = rest {
            obj.extend(m);
        }
        serde_json::Value::Object(obj)
    }
}

/// The model of a benchmark configuration (one per variant; batch sizes share it), with the
/// matrix-product variant `gemm` (None: the kernel class's) and kernel class `kernels`.
pub fn bench_model(
    gpu: &Gpu,
    cfg: &DlrmBenchConfig,
    gemm: Option<crate::kernels::matmul::GemmVariant>,
    kernels: crate::gpu::KernelClass,
) -> Result<Dlrm> {
    let synth = SyntheticCriteo::new(1, cfg.scale)?;
    let base = DlrmConfig::kaggle_dense().with_table_sizes(synth.table_sizes());
    let config = match cfg.variant.as_str() {
        "tt" => base.with_tt_largest(7, cfg.rank)?,
        "dense" => base,
        v => {
            return Err(Error::input(
                None,
                format!("unknown DLRM variant {v:?}; tt or dense"),
            ))
        }
    };
    Dlrm::new(
        gpu,
        config,
        DlrmOptions {
            gemm,
            kernels,
            ..DlrmOptions::default()
        },
    )
}

/// Measures one configuration on `model` (from [`bench_model`]): warm-up, then steps back to
/// back for at least `seconds` (and `min_steps`) in [`THROUGHPUT_BLOCKS`] blocks with a wait at
/// the end of each, then synced steps.
pub fn run_dlrm(
    gpu: &Gpu,
    model: &mut Dlrm,
    cfg: &DlrmBenchConfig,
    min_steps: usize,
    seconds: f64,
    profile: bool,
) -> Result<DlrmBenchResult> {
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(Error::input(
            None,
            format!("seconds per measurement must be a non-negative number, got {seconds}"),
        ));
    }
    let synth = SyntheticCriteo::new(1, cfg.scale)?;
    let embedding_params = model.config().embedding_params()?;
    model.prepare_train(cfg.batch)?;
    // Distinct batches, made before timing so data generation is not measured.
    let batches: Vec<_> = (0..16)
        .map(|i| synth.batch(i * cfg.batch as u64, cfg.batch))
        .collect();
    for b in batches.iter().take(3) {
        model.train_step(&DlrmBatch::from(b))?;
    }
    gpu.wait()?;
    let block_steps = min_steps.div_ceil(THROUGHPUT_BLOCKS).max(1);
    let block_seconds = seconds / THROUGHPUT_BLOCKS as f64;
    let mut steps = 0;
    let mut elapsed = 0.0;
    let mut block_rates = Vec::with_capacity(THROUGHPUT_BLOCKS);
    for _ in 0..THROUGHPUT_BLOCKS {
        let start = Instant::now();
        let mut n = 0;
        while n < block_steps || start.elapsed().as_secs_f64() < block_seconds {
            model.train_step(&DlrmBatch::from(&batches[steps % batches.len()]))?;
            steps += 1;
            n += 1;
            if steps % 256 == 0 {
                model.take_stats()?;
            }
        }
        gpu.wait()?;
        let secs = start.elapsed().as_secs_f64();
        elapsed += secs;
        block_rates.push((n * cfg.batch) as f64 / secs);
    }
    let mut synced = Vec::new();
    let sync_start = Instant::now();
    while synced.len() < 5
        || (sync_start.elapsed().as_secs_f64() < seconds / 2.0 && synced.len() < 1000)
    {
        let t = Instant::now();
        model.train_step(&DlrmBatch::from(&batches[synced.len() % batches.len()]))?;
        gpu.wait()?;
        synced.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let stats = model.take_stats()?;
    if let Some(s) = stats.iter().find(|s| !s.loss.is_finite()) {
        return Err(Error::Gpu(format!(
            "the loss of step {} is {}",
            s.step, s.loss
        )));
    }
    // The structure is known without timestamps; the times need them.
    let counts = if profile {
        model.train_counts(cfg.batch)?
    } else {
        Vec::new()
    };
    // One profiled step tells which kernels the plan runs (and, asked for, their times).
    let nodes = if gpu.has_timestamps() {
        Some(model.profile_step(&DlrmBatch::from(&batches[0]))?)
    } else {
        None
    };
    let kernels = nodes.as_ref().map(|nodes| {
        let labels: Vec<String> = nodes.iter().map(|n| n.label.clone()).collect();
        super::kernel_kinds(&labels, "")
    });
    let prof = match (profile, nodes) {
        (true, Some(nodes)) => nodes
            .into_iter()
            .map(|n| (n.label, n.nanos / 1e3))
            .collect(),
        _ => Vec::new(),
    };
    let synced_spread = super::Spread::of(synced);
    Ok(DlrmBenchResult {
        config: cfg.clone(),
        adapter: gpu.adapter_name(),
        env: super::BenchEnv::of(gpu),
        gemm: format!("{:?}", model.gemm_variant()),
        embedding_params,
        samples_per_s: (steps * cfg.batch) as f64 / elapsed,
        samples_per_s_spread: super::Spread::of(block_rates),
        synced_step_ms: synced_spread.median,
        synced_step_ms_spread: synced_spread,
        steps,
        flops_per_sample: model
            .flops_per_sample()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        kernels,
        profile: prof,
        counts,
    })
}

/// The part of the model a profiled node belongs to, from its label.
pub fn node_part(label: &str) -> &'static str {
    if label.starts_with("bottom") {
        "bottom MLP"
    } else if label.starts_with("top") {
        "top MLP"
    } else if label.starts_with("interaction") {
        "interaction"
    } else if label.starts_with("tt group") {
        "TT tables"
    } else if label.starts_with("dense") {
        "dense tables"
    } else if label.starts_with("loss") {
        "loss"
    } else if label.starts_with("mlp") {
        "MLP update"
    } else {
        "other"
    }
}
