//! `ttrec bench gemm`: GFLOP/s of each matrix-product variant on given shapes (by default the
//! Kaggle DLRM step's products at batch 128, 2,048 and 16,384), so users compare adapters and
//! kernel classes. A shape `M x N x K` is the product C[M, N] = A^T B with A stored `[K, M]` and
//! B `[K, N]` (the launchers' one form: forward, input and weight gradients alike).

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Buf, GraphBuilder};
use crate::kernels::matmul::{record_gemm, Gemm, GemmVariant};
use crate::kernels::MatrixAt;

/// The batch sizes of the default shapes.
pub const DEFAULT_BATCHES: [usize; 3] = [128, 2048, 16_384];

/// The products of the Kaggle DLRM step (bottom 13-512-256-64-16, top 367-512-256-1) at
/// `batches`: per layer its forward (B x out x in), input gradient (B x in x out; not for the
/// first layer) and weight gradient (out x in x B), without repeats.
pub fn kaggle_shapes(batches: &[usize]) -> Vec<[usize; 3]> {
    let layers = [
        (13, 512, true),
        (512, 256, false),
        (256, 64, false),
        (64, 16, false),
        (368, 512, false),
        (512, 256, false),
        (256, 4, false),
    ];
    let mut out: Vec<[usize; 3]> = Vec::new();
    for &b in batches {
        for &(inp, outp, first) in &layers {
            let mut shapes = vec![[b, outp, inp], [outp, inp, b]];
            if !first {
                shapes.push([b, inp, outp]);
            }
            for s in shapes {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    out
}

/// Parses "MxNxK".
pub fn parse_shape(s: &str) -> Result<[usize; 3]> {
    let dims: Vec<usize> = s
        .split(['x', 'X'])
        .map(|d| d.trim().parse::<usize>().ok().filter(|&v| v > 0))
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    match dims[..] {
        [m, n, k] => Ok([m, n, k]),
        _ => Err(Error::input(
            None,
            format!("product shape {s:?}: three positive sizes MxNxK, e.g. 2048x512x512"),
        )),
    }
}

/// One variant on one shape.
#[derive(Clone, Debug)]
pub struct GemmBenchResult {
    pub shape: [usize; 3],
    pub variant: GemmVariant,
    /// The kernels the plan runs (a split product adds its combine).
    pub kernels: Vec<&'static str>,
    /// Median microseconds per product over the timed blocks.
    pub us: f64,
    pub spread: super::Spread,
}

impl GemmBenchResult {
    pub fn gflops(&self) -> f64 {
        let [m, n, k] = self.shape;
        2.0 * (m * n * k) as f64 / (self.us * 1e3)
    }
    /// The `--json` line, `"type": "bench_gemm"`.
    pub fn json(&self, gpu: &Gpu) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert("type".into(), "bench_gemm".into());
        super::BenchEnv::of(gpu).add_to(&mut obj);
        let [m, n, k] = self.shape;
        let rest = serde_json::json!({
            "m": m, "n": n, "k": k,
            "variant": format!("{:?}", self.variant),
            "kernels": self.kernels,
            "us": self.us,
            "us_spread": self.spread.json(),
            "gflops": self.gflops(),
        });
        if let serde_json::Value::Object(r) = rest {
            obj.extend(r);
        }
        serde_json::Value::Object(obj)
    }
}

/// Times product `shape` with `variant`: one plan, replayed back to back in 5 blocks of at
/// least `min_iters / 5` products and `seconds / 5` each, with a wait after each block.
pub fn run_gemm(
    gpu: &Gpu,
    shape: [usize; 3],
    variant: GemmVariant,
    min_iters: usize,
    seconds: f64,
) -> Result<GemmBenchResult> {
    let [m, n, k] = shape;
    let lda = m.div_ceil(4) * 4;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut values =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(0.5..1.5)).collect() };
    let a = gpu.storage_from("bench gemm a", &values(k * lda));
    let b = gpu.storage_from("bench gemm b", &values(k * n));
    let c = gpu.storage("bench gemm c", (4 * m * n) as u64);
    let p = Gemm {
        m,
        n,
        k,
        a: MatrixAt::dense(Buf::from(&a), lda),
        b: MatrixAt::dense(Buf::from(&b), n),
        c: Some(MatrixAt::dense(Buf::from(&c), n)),
        ct: None,
        bias: None,
        relu: false,
        mask: None,
    };
    let mut g = GraphBuilder::new(gpu);
    record_gemm(&mut g, "bench gemm", &p, variant)?;
    let plan = g.build()?;
    let kernels = plan.counts().iter().filter_map(|c| c.kernel).collect();
    plan.run()?;
    gpu.wait()?;
    let blocks = 5;
    let block_iters = min_iters.div_ceil(blocks).max(1);
    let mut per = Vec::with_capacity(blocks);
    for _ in 0..blocks {
        let start = Instant::now();
        let mut done = 0;
        while done < block_iters || start.elapsed().as_secs_f64() < seconds / blocks as f64 {
            plan.run()?;
            done += 1;
            if done % 64 == 0 {
                gpu.wait()?;
            }
        }
        gpu.wait()?;
        per.push(start.elapsed().as_secs_f64() * 1e6 / done as f64);
    }
    let spread = super::Spread::of(per);
    Ok(GemmBenchResult {
        shape,
        variant,
        kernels,
        us: spread.median,
        spread,
    })
}
