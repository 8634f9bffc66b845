//! Shared helpers of the tests: the GPU, random values, temp dirs, the Criteo sample.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The adapter the tests run on: the same choice as the library (TTREC_ADAPTER, WGPU_BACKEND).
/// With no adapter the tests fail, they do not skip.
pub fn gpu() -> ttrec::gpu::Gpu {
    ttrec::gpu::Gpu::new()
        .unwrap_or_else(|e| panic!("tests need a wgpu adapter (lavapipe works): {e}"))
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Random non-zero values in about [-1, 1].
pub fn values(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v: f32 = rng.random_range(-1.0..1.0);
            if v.abs() < 0.05 {
                v + 0.1f32.copysign(v)
            } else {
                v
            }
        })
        .collect()
}

/// Random non-zero TT cores of about unit scale (each value in about [-0.6, 0.6]).
pub fn random_cores(shape: &ttrec::tt::TtShape, seed: u64) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    (0..shape.d())
        .map(|k| {
            values(&mut r, shape.core_len(k))
                .iter()
                .map(|v| v * 0.6)
                .collect()
        })
        .collect()
}

/// Random bags: `b` bags with lengths in [0, max_len], indices < n.
pub fn bags(rng: &mut ChaCha8Rng, b: usize, max_len: usize, n: u64) -> (Vec<i64>, Vec<i64>) {
    let mut offsets = vec![0i64];
    let mut indices = Vec::new();
    for _ in 0..b {
        let len = rng.random_range(0..=max_len);
        for _ in 0..len {
            indices.push(rng.random_range(0..n) as i64);
        }
        offsets.push(indices.len() as i64);
    }
    (indices, offsets)
}

/// Asserts |got - want| <= rtol * max|want| + atol elementwise (ttrec's one tolerance rule,
/// `parity::check_close`), naming the worst element.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let c = ttrec::parity::check_close(what, &to_f64(got), want, rtol, atol);
    let i = c.worst_index;
    assert!(
        c.pass,
        "{what}: worst error {:.3e} at {i} (got {}, want {}), tolerance {:.3e}",
        c.worst_abs, got[i], want[i], c.tolerance
    );
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// A fresh, unique directory under the system temp dir for one test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        std::env::temp_dir().join(format!("ttrec-test-{name}-{}-{nonce}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub mod criteo;
/// The 200-line Criteo-format sample the tests write themselves (see `criteo.rs`).
#[allow(unused_imports)] // not every test file uses both
pub use criteo::{sample_path, sample_text};

/// Records nodes with `record` into a fresh graph, runs it once and waits.
pub fn run_graph(
    gpu: &ttrec::gpu::Gpu,
    record: impl FnOnce(&mut ttrec::graph::GraphBuilder) -> ttrec::Result<()>,
) {
    let mut g = ttrec::graph::GraphBuilder::new(gpu);
    record(&mut g).expect("recording");
    let plan = g.build().expect("building the plan");
    plan.run().expect("running the plan");
    gpu.wait().expect("waiting for the GPU");
}

/// Values that show where a kernel wrote nothing.
pub const POISON: f32 = 1.0e30;
