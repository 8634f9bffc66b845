//! Benchmarks behind `ttrec bench` and `cargo bench`: the TT-EmbeddingBag configurations of the
//! reference's benchmark (FBTT-Embedding) and of the TT-Rec paper's Kaggle tables; the DLRM
//! training step ([`dlrm`]).

pub mod dlrm;

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

/// Timings of one configuration (medians over the timed iterations).
#[derive(Clone, Debug)]
pub struct TtBenchResult {
    pub config: String,
    pub adapter: String,
    pub lookups: usize,
    /// Most timed steps of the three measurements.
    pub iterations: usize,
    pub forward_us: f64,
    pub backward_us: f64,
    pub step_us: f64,
    pub step_flops: f64,
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
    /// One JSON object (the `--json` line).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "config": self.config,
            "adapter": self.adapter,
            "lookups": self.lookups,
            "iterations": self.iterations,
            "us_per_lookup": self.us_per_lookup(),
            "gflops": self.gflops(),
            "step_ms": self.step_us / 1e3,
            "fwd_us_per_lookup": self.forward_us / self.lookups as f64,
            "fwd_gflops": self.forward_gflops(),
            "bwd_us_per_lookup": self.backward_us / self.lookups as f64,
            "bwd_gflops": self.backward_gflops(),
        })
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
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
    let shape = TtShape::new(cfg.num_embeddings, &cfg.p, &cfg.q, &cfg.ranks)?;
    let options = TtOptions {
        pooling: Pooling::Sum,
        optimizer: Optimizer::Sgd { lr: 0.1 },
        seed: 1,
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
    let mut time = |mode: Mode| -> Result<f64> {
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
        Ok(median(times))
    };
    let forward_us = time(Mode::Forward)?;
    let backward_us = time(Mode::Backward)?;
    let step_us = time(Mode::ForwardBackward)?;
    let iterations = timed_steps;
    let mut prof = Vec::new();
    if profile {
        if !gpu.has_timestamps() {
            return Err(Error::Gpu(format!(
                "{} has no timestamp queries; --profile needs them",
                gpu.adapter_name()
            )));
        }
        for n in table.profile(&bags, Some(&dout), Mode::ForwardBackward)? {
            prof.push((n.label, n.nanos));
        }
    }
    Ok(TtBenchResult {
        config: cfg.name.to_string(),
        adapter: gpu.adapter_name(),
        lookups: cfg.nnz(),
        iterations,
        forward_us,
        backward_us,
        step_us,
        step_flops: cfg.step_flops(),
        profile: prof,
    })
}
