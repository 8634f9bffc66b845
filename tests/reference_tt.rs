//! The f64 reference of TT-EmbeddingBag against the parity fixtures, finite differences and an
//! independent left-to-right chain.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ttrec::parity;
use ttrec::tt::{Optimizer, Pooling, TtShape};
use ttrec::twin::tt as rtt;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/shared");

/// Checks `got` against `want` with ttrec's tolerance rule at 1e-5 max|want| + 1e-6 (the f64
/// twin against fixtures stored in f32); returns the worst error relative to the tolerance.
fn check(file: &str, name: &str, got: &[f64], want: &[f32]) -> f64 {
    let want: Vec<f64> = want.iter().map(|&w| w as f64).collect();
    let c = parity::check_close(name, got, &want, 1e-5, 1e-6);
    let at = c.worst_index;
    println!(
        "{file}: {name}: worst |err| {:.3e} at [{at}], max|want| {:.3e}, tol {:.3e}",
        c.worst_abs, c.max_abs_want, c.tolerance
    );
    assert!(
        c.pass,
        "{file}: {name}: worst error {:e} at [{at}] (got {}, want {}) exceeds tolerance {:e}",
        c.worst_abs, got[at], want[at], c.tolerance
    );
    c.worst_abs / c.tolerance
}

fn run_fixture(path: &Path) {
    let fx = parity::Fixture::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = fx.name.clone();
    let shape = &fx.shape;
    let u64s = |v: &[i64]| v.iter().map(|&x| x as u64).collect::<Vec<u64>>();
    let (indices, offsets) = (u64s(&fx.indices), u64s(&fx.offsets));
    let weights = fx.weights.as_deref();
    let t0 = std::time::Instant::now();
    let out = rtt::forward(shape, &fx.cores, &indices, &offsets, weights, fx.pooling);
    let grads = rtt::backward(
        shape,
        &fx.cores,
        &indices,
        &offsets,
        weights,
        fx.pooling,
        &fx.grad_output,
    );
    println!(
        "{file}: {shape}, {} lookups, {} bags: forward+backward {:?}",
        indices.len(),
        offsets.len() - 1,
        t0.elapsed()
    );
    let expected = |name: &str| -> &[f32] {
        &fx.expected
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("{file}: no tensor {name}"))
            .2
    };
    let mut checked = 0;
    let mut worst = check(&file, "expected.output", &out, expected("expected.output"));
    checked += 1;
    for (k, g) in grads.iter().enumerate() {
        let name = format!("expected.grad.cores.{k}");
        worst = worst.max(check(&file, &name, g, expected(&name)));
        checked += 1;
    }
    // An f32 result (updated cores, Adagrad state) against the fixture's tensor `name`.
    let check_f32 = |name: &str, got: &[f32]| {
        let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
        check(&file, name, &got, expected(name))
    };
    let updated: Option<Vec<Vec<f32>>> = match fx.optimizer {
        Optimizer::None => None,
        Optimizer::Sgd { lr } => Some(rtt::sgd_update(&fx.cores, &grads, lr as f64)),
        Optimizer::Adagrad { lr, eps } => {
            let zero: Vec<Vec<f32>> = fx.cores.iter().map(|c| vec![0.0; c.len()]).collect();
            let (upd, state) = rtt::adagrad_update(&fx.cores, &zero, &grads, lr as f64, eps as f64);
            for (k, s) in state.iter().enumerate() {
                worst = worst.max(check_f32(&format!("expected.state.cores.{k}"), s));
                checked += 1;
            }
            Some(upd)
        }
    };
    if let Some(upd) = updated {
        for (k, c) in upd.iter().enumerate() {
            worst = worst.max(check_f32(&format!("expected.updated.cores.{k}"), c));
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        fx.expected.len(),
        "{file}: {} expected tensors, {checked} checked",
        fx.expected.len()
    );
    println!("{file}: {checked} tensors, worst error / tolerance {worst:.3e}");
}

#[test]
fn parity_fixtures() {
    let dir = Path::new(FIXTURES);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("fixture directory {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    for f in &files {
        run_fixture(f);
    }
}

fn random_cores(shape: &TtShape, rng: &mut ChaCha8Rng) -> Vec<Vec<f32>> {
    (0..shape.d())
        .map(|k| {
            (0..shape.core_len(k))
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect()
        })
        .collect()
}

/// Bags with random lengths 0..=5 (some empty) and indices from a small pool (so duplicates occur
/// within and across bags), always including the last row.
fn random_batch(n: u64, bags: usize, rng: &mut ChaCha8Rng) -> (Vec<u64>, Vec<u64>) {
    let pool: Vec<u64> = (0..6)
        .map(|_| rng.random_range(0..n))
        .chain([n - 1])
        .collect();
    let mut indices = Vec::new();
    let mut offsets = vec![0u64];
    for b in 0..bags {
        let len = if b % 4 == 1 {
            0
        } else {
            rng.random_range(1..=5)
        };
        for _ in 0..len {
            indices.push(pool[rng.random_range(0..pool.len())]);
        }
        offsets.push(indices.len() as u64);
    }
    (indices, offsets)
}

fn loss(
    shape: &TtShape,
    cores: &[Vec<f32>],
    idx: &[u64],
    off: &[u64],
    w: Option<&[f32]>,
    pool: Pooling,
    go: &[f32],
) -> f64 {
    rtt::forward(shape, cores, idx, off, w, pool)
        .iter()
        .zip(go)
        .map(|(a, &b)| a * b as f64)
        .sum()
}

fn small_shapes() -> Vec<TtShape> {
    vec![
        TtShape::new(20, &[4, 6], &[2, 3], &[3]).unwrap(),
        TtShape::new(50, &[3, 4, 5], &[2, 1, 3], &[2, 3]).unwrap(),
        TtShape::new(30, &[2, 3, 2, 3], &[2, 2, 1, 2], &[2, 3, 2]).unwrap(),
    ]
}

#[test]
fn backward_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for shape in small_shapes() {
        let cores = random_cores(&shape, &mut rng);
        let bags = 9;
        let (idx, off) = random_batch(shape.num_embeddings, bags, &mut rng);
        assert!(off.windows(2).any(|w| w[0] == w[1]), "an empty bag");
        let go: Vec<f32> = (0..bags * shape.dim())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let w: Vec<f32> = (0..idx.len())
            .map(|_| rng.random_range(0.1f32..2.0))
            .collect();
        for (pool, weights) in [
            (Pooling::Sum, None),
            (Pooling::Sum, Some(&w[..])),
            (Pooling::Mean, None),
        ] {
            let grads = rtt::backward(&shape, &cores, &idx, &off, weights, pool, &go);
            let mut nonzero = 0;
            for k in 0..shape.d() {
                for e in 0..shape.core_len(k) {
                    // The loss is linear in each single core entry, so a central difference over the
                    // f32-representable perturbation is exact up to f64 rounding.
                    let mut plus = cores.clone();
                    let mut minus = cores.clone();
                    plus[k][e] += 0.25;
                    minus[k][e] -= 0.25;
                    let h = plus[k][e] as f64 - minus[k][e] as f64;
                    let fd = (loss(&shape, &plus, &idx, &off, weights, pool, &go)
                        - loss(&shape, &minus, &idx, &off, weights, pool, &go))
                        / h;
                    let g = grads[k][e];
                    assert!(
                        (fd - g).abs() <= 1e-9 * (1.0 + fd.abs()),
                        "{shape} {pool:?} weights={} core {k}[{e}]: backward {g}, finite difference {fd}",
                        weights.is_some()
                    );
                    nonzero += (g != 0.0) as usize;
                }
            }
            assert!(
                nonzero > shape.num_params() / 10,
                "{shape}: only {nonzero} non-zero gradient entries"
            );
        }
    }
}

/// Independent evaluation of row `i`: the left-to-right chain of the spec's forward section,
/// on the logical layout [R_k, p_k, q_k, R_{k+1}] reached by index arithmetic.
fn chain_row(shape: &TtShape, cores: &[Vec<f32>], i: u64) -> Vec<f64> {
    let digits = shape.digits(i);
    // acc: [Q, R] with Q = q_0 .. q_{k-1}.
    let mut acc = vec![1.0f64];
    let (mut qa, mut ra) = (1usize, 1usize);
    for k in 0..shape.d() {
        let (qk, rn) = (shape.q[k], shape.ranks[k + 1]);
        let base = digits[k] * shape.core_cols(k);
        let mut next = vec![0.0f64; qa * qk * rn];
        for a in 0..qa {
            for r in 0..ra {
                for j in 0..qk {
                    for s in 0..rn {
                        next[(a * qk + j) * rn + s] +=
                            acc[a * ra + r] * cores[k][base + (r * qk + j) * rn + s] as f64;
                    }
                }
            }
        }
        acc = next;
        qa *= qk;
        ra = rn;
    }
    acc
}

#[test]
fn full_weight_rows_equal_tt_row_and_chain() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for shape in small_shapes() {
        let cores = random_cores(&shape, &mut rng);
        let full = rtt::full_weight(&shape, &cores);
        let dim = shape.dim();
        assert_eq!(full.len(), shape.num_embeddings as usize * dim);
        for i in 0..shape.num_embeddings {
            let row = rtt::tt_row(&shape, &cores, i);
            let chain = chain_row(&shape, &cores, i);
            assert_eq!(
                &full[i as usize * dim..(i as usize + 1) * dim],
                &row[..],
                "{shape}: row {i}"
            );
            for (j, (a, b)) in row.iter().zip(&chain).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                    "{shape}: W[{i},{j}] = {a}, chain {b}"
                );
            }
        }
        // Rows differ from each other (the test would not notice a constant row otherwise).
        assert_ne!(&full[..dim], &full[dim..2 * dim]);
    }
}

#[test]
fn forward_pools_rows() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let shape = TtShape::new(50, &[3, 4, 5], &[2, 1, 3], &[2, 3]).unwrap();
    let cores = random_cores(&shape, &mut rng);
    let idx = [3u64, 49, 3, 17];
    let off = [0u64, 3, 3, 4];
    let w = [0.5f32, 2.0, -1.0, 3.0];
    let rows: Vec<Vec<f64>> = idx.iter().map(|&i| chain_row(&shape, &cores, i)).collect();
    let dim = shape.dim();
    let sum = rtt::forward(&shape, &cores, &idx, &off, None, Pooling::Sum);
    let mean = rtt::forward(&shape, &cores, &idx, &off, None, Pooling::Mean);
    let weighted = rtt::forward(&shape, &cores, &idx, &off, Some(&w), Pooling::Sum);
    for j in 0..dim {
        let s = rows[0][j] + rows[1][j] + rows[2][j];
        assert!((sum[j] - s).abs() < 1e-12);
        assert!((mean[j] - s / 3.0).abs() < 1e-12);
        assert!((weighted[j] - (0.5 * rows[0][j] + 2.0 * rows[1][j] - rows[2][j])).abs() < 1e-12);
        for out in [&sum, &mean, &weighted] {
            assert_eq!(out[dim + j], 0.0, "empty bag");
        }
        assert!((sum[2 * dim + j] - rows[3][j]).abs() < 1e-12);
        assert!((weighted[2 * dim + j] - 3.0 * rows[3][j]).abs() < 1e-12);
    }
}

#[test]
fn optimizers_update_elementwise() {
    let cores = vec![vec![1.0f32, -2.0, 0.5], vec![0.25f32]];
    let grads = vec![vec![0.5f64, -1.0, 0.0], vec![2.0]];
    let sgd = rtt::sgd_update(&cores, &grads, 0.1);
    assert_eq!(sgd, vec![vec![0.95f32, -1.9, 0.5], vec![0.05]]);
    let state = vec![vec![0.0f32, 3.0, 1.0], vec![0.0]];
    let (upd, s) = rtt::adagrad_update(&cores, &state, &grads, 0.1, 1e-10);
    assert_eq!(s, vec![vec![0.25f32, 4.0, 1.0], vec![4.0]]);
    let want = [
        1.0 - 0.1 * 0.5 / (0.5 + 1e-10),
        -2.0 + 0.1 * 1.0 / (2.0 + 1e-10),
        0.5,
    ];
    for (g, w) in upd[0].iter().zip(want) {
        assert_eq!(*g, w as f32);
    }
    assert_eq!(upd[1][0], (0.25 - 0.1 * 2.0 / (2.0 + 1e-10)) as f32);
}
