//! Benchmarks behind `ttrec bench` and `cargo bench`: the TT-EmbeddingBag configurations of the
//! reference's benchmark (FBTT-Embedding) and of the TT-Rec paper's Kaggle tables; the DLRM
//! training step ([`dlrm`]); the compression methods compared in training ([`compress`]).

pub mod cache;
pub mod compress;
pub mod dist;
pub mod dlrm;
pub mod gemm;

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tt::{Bags, Mode, Optimizer, Pooling, TtEmbeddingBag, TtOptions, TtShape};

/// One benchmark configuration.
#[derive(Clone, Debug)]
pub struct TtBenchConfig {
    pub name: &'static str,
    pub num_embeddings: u64,
    pub p: [usize; 3],
    pub q: [usize; 3],
    pub ranks: [usize; 2],
    pub bags: usize,
    pub bag_len: usize,
    /// The kernel class the table is built with (`--kernels`).
    pub kernels: crate::gpu::KernelClass,
    /// How the cores are stored (`--tt-precision`).
    pub precision: crate::tt::CorePrecision,
}

/// The configurations named in the project's benchmark.
pub fn tt_configs() -> Vec<TtBenchConfig> {
    let kaggle = |name, r| TtBenchConfig {
        name,
        num_embeddings: 10_131_227,
        p: [200, 220, 250],
        q: [2, 2, 4],
        ranks: [r, r],
        bags: 2048,
        bag_len: 1,
        kernels: Default::default(),
        precision: Default::default(),
    };
    vec![
        TtBenchConfig {
            name: "fbtt",
            num_embeddings: 11_000_000,
            p: [200, 220, 250],
            q: [4, 4, 4],
            ranks: [32, 32],
            bags: 512,
            bag_len: 20,
            kernels: Default::default(),
            precision: Default::default(),
        },
        kaggle("kaggle-r8", 8),
        kaggle("kaggle-r16", 16),
        kaggle("kaggle-r32", 32),
        // Real GPU batch sizes (run only when named): 8,192 bags of 20 with fbtt's shapes,
        // 65,536 single lookups with kaggle-r32's.
        TtBenchConfig {
            name: "fbtt-b8k",
            num_embeddings: 11_000_000,
            p: [200, 220, 250],
            q: [4, 4, 4],
            ranks: [32, 32],
            bags: 8192,
            bag_len: 20,
            kernels: Default::default(),
            precision: Default::default(),
        },
        TtBenchConfig {
            bags: 65_536,
            ..kaggle("kaggle-r32-b64k", 32)
        },
    ]
}

/// The configurations `ttrec bench tt` runs when none is named (the large ones only by name).
pub fn default_tt_configs() -> Vec<&'static str> {
    vec!["fbtt", "kaggle-r8", "kaggle-r16", "kaggle-r32"]
}

/// What a benchmark ran on: the ttrec version, the adapter, its backend and driver, and
/// whether the subgroup kernels can run. Every `--json` record of `ttrec bench` carries it.
#[derive(Clone, Debug)]
pub struct BenchEnv {
    pub ttrec_version: &'static str,
    /// The adapter as ttrec names it everywhere: "name (backend, device type)".
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    /// Subgroup size the subgroup kernels use; None when they are off on this adapter.
    pub subgroup_size: Option<u32>,
    pub timestamps: bool,
    /// The TT kernel variants that run on the adapter ([`crate::tt::TtKernels::describe`];
    /// "subgroups off" where `subgroup_size` is None).
    pub tt_kernels: String,
}

impl BenchEnv {
    /// The environment of `gpu`.
    pub fn of(gpu: &Gpu) -> Self {
        let info = gpu.info();
        BenchEnv {
            ttrec_version: env!("CARGO_PKG_VERSION"),
            adapter: gpu.adapter_name(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            subgroup_size: gpu.subgroup_size(),
            timestamps: gpu.has_timestamps(),
            tt_kernels: {
                // What runs: subgroup kernels only where the adapter's subgroups passed the
                // probe (the same test the TT tables make).
                let mut k = crate::tt::TtKernels::for_adapter(gpu);
                k.subgroups &= gpu.subgroup_size().is_some();
                k.describe()
            },
        }
    }

    /// Adds the environment's fields to a JSON object.
    pub fn add_to(&self, obj: &mut serde_json::Map<String, serde_json::Value>) {
        let fields = serde_json::json!({
            "ttrec_version": self.ttrec_version,
            "adapter": self.adapter,
            "backend": self.backend,
            "device_type": self.device_type,
            "driver": self.driver,
            "driver_info": self.driver_info,
            "subgroup_size": self.subgroup_size,
            "timestamps": self.timestamps,
            "tt_kernels": self.tt_kernels,
        });
        if let serde_json::Value::Object(m) = fields {
            obj.extend(m);
        }
    }
}

/// The spread of one measurement's repetitions: 10th percentile, median and 90th percentile
/// (nearest rank), and how many repetitions there were.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub p10: f64,
    pub median: f64,
    pub p90: f64,
    pub reps: usize,
}

impl Spread {
    /// The spread of `values` (at least one).
    pub fn of(mut values: Vec<f64>) -> Self {
        assert!(!values.is_empty(), "a spread needs at least one value");
        values.sort_by(|a, b| a.total_cmp(b));
        let n = values.len();
        let rank = |q: f64| values[((n - 1) as f64 * q).round() as usize];
        Spread {
            p10: rank(0.1),
            median: values[n / 2],
            p90: rank(0.9),
            reps: n,
        }
    }

    /// The spread scaled by `k` (a unit change).
    pub fn scaled(self, k: f64) -> Self {
        Spread {
            p10: self.p10 * k,
            median: self.median * k,
            p90: self.p90 * k,
            reps: self.reps,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"p10": self.p10, "median": self.median, "p90": self.p90, "reps": self.reps})
    }
}

/// The kinds of kernels in a plan, from its node labels: `tag` and every word with a digit
/// (chunk, core, layer and parameter numbers) dropped ("tt c0 chain 1 (subgroup)" -> "chain
/// (subgroup)"), each kind once, in plan order.
pub fn kernel_kinds(labels: &[String], tag: &str) -> Vec<String> {
    let mut kinds: Vec<String> = Vec::new();
    for label in labels {
        let kind = label
            .strip_prefix(tag)
            .unwrap_or(label)
            .split_whitespace()
            .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
            .collect::<Vec<_>>()
            .join(" ");
        if !kind.is_empty() && !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds
}

impl TtBenchConfig {
    /// Lookups per step.
    pub fn nnz(&self) -> usize {
        self.bags * self.bag_len
    }
    /// FLOPs of forward + backward as the reference counts them:
    /// 3 x 2 x nnz x (q0 R1 q1 R2 + q0 q1 R2 q2).
    pub fn step_flops(&self) -> f64 {
        let (q, r) = (self.q, self.ranks);
        3.0 * 2.0
            * self.nnz() as f64
            * (q[0] * r[0] * q[1] * r[1] + q[0] * q[1] * r[1] * q[2]) as f64
    }
}

/// Timings of one configuration (medians over the timed iterations, and their spread).
#[derive(Clone, Debug)]
pub struct TtBenchResult {
    pub config: String,
    pub adapter: String,
    pub env: BenchEnv,
    pub lookups: usize,
    pub bags: usize,
    pub bag_len: usize,
    /// Most timed steps of the three measurements.
    pub iterations: usize,
    pub forward_us: f64,
    pub backward_us: f64,
    pub step_us: f64,
    /// Per-repetition times of the three measurements, in microseconds.
    pub forward_spread: Spread,
    pub backward_spread: Spread,
    pub step_spread: Spread,
    pub step_flops: f64,
    /// The kernel kinds of the step's plan (see [`kernel_kinds`]); None when the adapter has no
    /// timestamps (the labels are read off a profiled step).
    pub kernels: Option<Vec<String>>,
    /// Per-node GPU times of one step, when profiled.
    pub profile: Vec<(String, f64)>,
}

impl TtBenchResult {
    pub fn us_per_lookup(&self) -> f64 {
        self.step_us / self.lookups as f64
    }
    /// Whole-step GFLOP/s by the reference's count.
    pub fn gflops(&self) -> f64 {
        self.step_flops / (self.step_us * 1e3)
    }
    pub fn forward_gflops(&self) -> f64 {
        self.step_flops / 3.0 / (self.forward_us * 1e3)
    }
    pub fn backward_gflops(&self) -> f64 {
        self.step_flops * 2.0 / 3.0 / (self.backward_us * 1e3)
    }
    /// Whether the subgroup kernels ran (None: not known, the adapter has no timestamps).
    pub fn subgroup_kernels_ran(&self) -> Option<bool> {
        self.kernels
            .as_ref()
            .map(|k| k.iter().any(|k| k.contains("(subgroup)")))
    }
    /// One JSON object (the `--json` line), `"type": "bench_tt"`.
    pub fn json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert("type".into(), "bench_tt".into());
        self.env.add_to(&mut obj);
        let n = self.lookups as f64;
        let rest = serde_json::json!({
            "config": self.config,
            "lookups": self.lookups,
            "bags": self.bags,
            "bag_len": self.bag_len,
            "iterations": self.iterations,
            "us_per_lookup": self.us_per_lookup(),
            "gflops": self.gflops(),
            "step_ms": self.step_us / 1e3,
            "fwd_us_per_lookup": self.forward_us / n,
            "fwd_gflops": self.forward_gflops(),
            "bwd_us_per_lookup": self.backward_us / n,
            "bwd_gflops": self.backward_gflops(),
            "spread_us": {
                "forward": self.forward_spread.json(),
                "backward": self.backward_spread.json(),
                "step": self.step_spread.json(),
            },
            "subgroup_kernels": self.subgroup_kernels_ran(),
            "kernels": self.kernels,
        });
        // "tt_kernels" says what ran in this configuration: the subgroup chain only where the
        // step's kernels show it (where they are known), so it agrees with "subgroup_kernels".
        let tt_kernels = match self.subgroup_kernels_ran() {
            Some(false) => self.env.tt_kernels.replace("subgroups on", "subgroups off"),
            _ => self.env.tt_kernels.clone(),
        };
        if let serde_json::Value::Object(m) = rest {
            obj.extend(m);
        }
        obj.insert("tt_kernels".into(), tt_kernels.into());
        serde_json::Value::Object(obj)
    }
}

/// Runs one configuration: warm-up, then at least `min_iters` timed iterations of forward,
/// backward (+SGD) and the whole step, each lasting at least `min_seconds` in total.
pub fn run_tt(
    gpu: &Gpu,
    cfg: &TtBenchConfig,
    min_iters: usize,
    min_seconds: f64,
    profile: bool,
) -> Result<TtBenchResult> {
    run_tt_with(gpu, cfg, min_iters, min_seconds, profile, &mut |_| {})
}

/// [`run_tt`], calling `progress` with the measurement about to start ("forward", "backward",
/// "step").
pub fn run_tt_with(
    gpu: &Gpu,
    cfg: &TtBenchConfig,
    min_iters: usize,
    min_seconds: f64,
    profile: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<TtBenchResult> {
    if !(min_seconds.is_finite() && min_seconds >= 0.0) {
        return Err(Error::input(
            None,
            format!("seconds per measurement must be a non-negative number, got {min_seconds}"),
        ));
    }
    let min_iters = min_iters.max(1);
    let shape = TtShape::new(cfg.num_embeddings, &cfg.p, &cfg.q, &cfg.ranks)?;
    let options = TtOptions {
        pooling: Pooling::Sum,
        optimizer: Optimizer::Sgd { lr: 0.1 },
        seed: 1,
        kernels: Some(crate::tt::TtKernels::for_class(cfg.kernels.resolve(gpu))),
        precision: cfg.precision,
        ..TtOptions::default()
    };
    let mut table = TtEmbeddingBag::new(gpu, shape.clone(), options)?;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let indices: Vec<u32> = (0..cfg.nnz())
        .map(|_| rng.random_range(0..cfg.num_embeddings as u32))
        .collect();
    let offsets: Vec<u32> = (0..=cfg.bags).map(|b| (b * cfg.bag_len) as u32).collect();
    let dout: Vec<f32> = (0..cfg.bags * shape.dim())
        .map(|_| rng.random_range(-1e-3..1e-3))
        .collect();
    let bags = Bags::new(&indices, &offsets);
    let mut timed_steps = 0;
    let mut time = |mode: Mode| -> Result<Spread> {
        let dout = if mode == Mode::Forward {
            None
        } else {
            Some(&dout[..])
        };
        for _ in 0..2 {
            table.replay_only(&bags, dout, mode)?;
            gpu.wait()?;
        }
        let mut times = Vec::new();
        let start = Instant::now();
        while times.len() < min_iters || start.elapsed().as_secs_f64() < min_seconds {
            let t = Instant::now();
            table.replay_only(&bags, dout, mode)?;
            gpu.wait()?;
            times.push(t.elapsed().as_secs_f64() * 1e6);
            if times.len() >= 10_000 {
                break;
            }
        }
        timed_steps = timed_steps.max(times.len());
        Ok(Spread::of(times))
    };
    progress("forward");
    let forward = time(Mode::Forward)?;
    progress("backward");
    let backward = time(Mode::Backward)?;
    progress("step");
    let step = time(Mode::ForwardBackward)?;
    let iterations = timed_steps;
    if profile && !gpu.has_timestamps() {
        return Err(Error::Gpu(format!(
            "{} has no timestamp queries; --profile needs them",
            gpu.adapter_name()
        )));
    }
    // One profiled step tells which kernels the plan runs (and, asked for, their times).
    let nodes = if gpu.has_timestamps() {
        Some(table.profile(&bags, Some(&dout), Mode::ForwardBackward)?)
    } else {
        None
    };
    let kernels = nodes.as_ref().map(|nodes| {
        let labels: Vec<String> = nodes.iter().map(|n| n.label.clone()).collect();
        kernel_kinds(&labels, "tt ")
    });
    let prof = match (profile, nodes) {
        (true, Some(nodes)) => nodes.into_iter().map(|n| (n.label, n.nanos)).collect(),
        _ => Vec::new(),
    };
    Ok(TtBenchResult {
        config: cfg.name.to_string(),
        adapter: gpu.adapter_name(),
        env: BenchEnv::of(gpu),
        lookups: cfg.nnz(),
        bags: cfg.bags,
        bag_len: cfg.bag_len,
        iterations,
        forward_us: forward.median,
        backward_us: backward.median,
        step_us: step.median,
        forward_spread: forward,
        backward_spread: backward,
        step_spread: step,
        step_flops: cfg.step_flops(),
        kernels,
        profile: prof,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_nearest_rank() {
        let s = Spread::of((1..=11).rev().map(|x| x as f64).collect());
        assert_eq!((s.p10, s.median, s.p90, s.reps), (2.0, 6.0, 10.0, 11));
        let one = Spread::of(vec![3.5]);
        assert_eq!((one.p10, one.median, one.p90), (3.5, 3.5, 3.5));
    }

    #[test]
    fn kernel_kinds_drop_tags_and_numbered_words() {
        let labels: Vec<String> = [
            "tt zero grad 0",
            "tt c0 chain 1 (subgroup)",
            "tt c0 chain 2",
            "tt c1 chain 1 (subgroup)",
            "tt c0 chain^T 2 (subgroup)",
            "tt c0 core grad 1",
            "mlp transpose bot_l.0.weight",
            "bottom layer forward (gemm_tn)",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            kernel_kinds(&labels, "tt "),
            [
                "zero grad",
                "chain (subgroup)",
                "chain",
                "chain^T (subgroup)",
                "core grad",
                "mlp transpose",
                "bottom layer forward (gemm_tn)"
            ]
        );
    }
}
