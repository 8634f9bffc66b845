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
    pub gemm: String,
    pub embedding_params: u64,
    /// Samples per second with steps submitted back to back (one wait at the end).
    pub samples_per_s: f64,
    /// Median wall time of one step with a wait after it (the PyTorch peers' way).
    pub synced_step_ms: f64,
    pub steps: usize,
    pub flops_per_sample: Vec<(String, f64)>,
    /// Per-node GPU times of one step (label, microseconds), when profiled.
    pub profile: Vec<(String, f64)>,
}

impl DlrmBenchResult {
    pub fn mflop_per_sample(&self) -> f64 {
        self.flops_per_sample.iter().map(|(_, f)| f).sum::<f64>() / 1e6
    }
    pub fn gflops(&self) -> f64 {
        self.mflop_per_sample() * self.samples_per_s / 1e3
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "bench": "dlrm",
            "variant": self.config.variant,
            "batch": self.config.batch,
            "scale": self.config.scale,
            "tt_rank": self.config.rank,
            "adapter": self.adapter,
            "gemm": self.gemm,
            "embedding_params": self.embedding_params,
            "samples_per_s": self.samples_per_s,
            "synced_step_ms": self.synced_step_ms,
            "steps": self.steps,
            "mflop_per_sample": self.mflop_per_sample(),
            "gflops": self.gflops(),
            "flops_per_sample": self.flops_per_sample.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The model of a benchmark configuration (one per variant; batch sizes share it), with the
/// matrix-product variant `gemm` (None: the adapter's default).
pub fn bench_model(
    gpu: &Gpu,
    cfg: &DlrmBenchConfig,
    gemm: Option<crate::kernels::matmul::GemmVariant>,
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
            ..DlrmOptions::default()
        },
    )
}

/// Measures one configuration on `model` (from [`bench_model`]): warm-up, then steps back to
/// back for at least `seconds` (and `min_steps`), then synced steps.
pub fn run_dlrm(
    gpu: &Gpu,
    model: &mut Dlrm,
    cfg: &DlrmBenchConfig,
    min_steps: usize,
    seconds: f64,
    profile: bool,
) -> Result<DlrmBenchResult> {
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
    let start = Instant::now();
    let mut steps = 0;
    while steps < min_steps || start.elapsed().as_secs_f64() < seconds {
        model.train_step(&DlrmBatch::from(&batches[steps % batches.len()]))?;
        steps += 1;
        if steps % 256 == 0 {
            model.take_stats()?;
        }
    }
    gpu.wait()?;
    let elapsed = start.elapsed().as_secs_f64();
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
    let mut prof = Vec::new();
    if profile {
        if !gpu.has_timestamps() {
            return Err(Error::Gpu(format!(
                "{} has no timestamp queries; --profile needs them",
                gpu.adapter_name()
            )));
        }
        for n in model.profile_step(&DlrmBatch::from(&batches[0]))? {
            prof.push((n.label, n.nanos / 1e3));
        }
    }
    Ok(DlrmBenchResult {
        config: cfg.clone(),
        adapter: gpu.adapter_name(),
        gemm: format!("{:?}", model.gemm_variant()),
        embedding_params,
        samples_per_s: (steps * cfg.batch) as f64 / elapsed,
        synced_step_ms: median(synced),
        steps,
        flops_per_sample: model
            .flops_per_sample()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        profile: prof,
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
