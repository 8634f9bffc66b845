//! The f64 reference of TT-EmbeddingBag against the parity fixtures, finite differences and an
//! independent left-to-right chain.

use std::collections::HashMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::{Dtype, SafeTensors};
use ttrec::reference::tt as rtt;
use ttrec::tt::{Pooling, TtShape};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/parity");

fn parse_list(s: &str) -> Vec<usize> {
    s.split(',').map(|v| v.trim().parse().unwrap()).collect()
}

fn tensor_f32(st: &SafeTensors, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name} must be f32");
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn tensor_i64(st: &SafeTensors, name: &str) -> Vec<i64> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::I64, "{name} must be i64");
    t.data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Checks `got` against `want` with |got - want| <= 1e-5 max|want| + 1e-6; returns the worst
/// error relative to the tolerance (<= 1 passes) and prints the worst element.
fn check(file: &str, name: &str, got: &[f64], want: &[f32]) -> f64 {
    assert_eq!(
        got.len(),
        want.len(),
        "{file}: {name}: {} values computed, {} expected",
        got.len(),
        want.len()
    );
    let max_want = want.iter().fold(0.0f64, |m, &w| m.max((w as f64).abs()));
    let tol = 1e-5 * max_want + 1e-6;
    let (mut worst, mut at) = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g - w as f64).abs();
        assert!(e.is_finite(), "{file}: {name}[{i}]: got {g}, want {w}");
        if e > worst {
            worst = e;
            at = i;
        }
    }
    println!(
        "{file}: {name}: worst |err| {worst:.3e} at [{at}] (got {:.9e}, want {:.9e}), max|want| {max_want:.3e}, tol {tol:.3e}",
        got[at], want[at]
    );
    assert!(
        worst <= tol,
        "{file}: {name}: worst error {worst:e} at [{at}] exceeds tolerance {tol:e}"
    );
    worst / tol
}

fn run_fixture(path: &Path) {
    let file = path.file_name().unwrap().to_string_lossy().to_string();
    let buf = std::fs::read(path).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&buf).unwrap();
    let meta: HashMap<String, String> = meta.metadata().clone().expect("fixture has no metadata");
    assert_eq!(meta["format"], "ttrec-parity-v1", "{file}");
    let st = SafeTensors::deserialize(&buf).unwrap();

    let n: u64 = meta["num_embeddings"].parse().unwrap();
    let p = parse_list(&meta["p_shapes"]);
    let q = parse_list(&meta["q_shapes"]);
    let r = parse_list(&meta["tt_ranks"]);
    let shape = TtShape::new(n, &p, &q, &r).unwrap();
    let d = shape.d();
    let pooling = match meta["pooling"].as_str() {
        "sum" => Pooling::Sum,
        "mean" => Pooling::Mean,
        other => panic!("{file}: unknown pooling {other}"),
    };
    let optimizer = meta["optimizer"].clone();
    let lr: f64 = meta["learning_rate"].parse().unwrap();
    let eps: f64 = meta["eps"].parse().unwrap();

    let mut known: Vec<String> = vec![
        "indices".into(),
        "offsets".into(),
        "per_sample_weights".into(),
    ];
    known.extend(["grad_output".into(), "expected.output".into()]);
    for k in 0..d {
        for prefix in [
            "cores",
            "expected.grad.cores",
            "expected.updated.cores",
            "expected.state.cores",
        ] {
            known.push(format!("{prefix}.{k}"));
        }
    }
    let names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    for name in &names {
        assert!(known.contains(name), "{file}: unknown tensor {name}");
    }

    let cores: Vec<Vec<f32>> = (0..d)
        .map(|k| tensor_f32(&st, &format!("cores.{k}")))
        .collect();
    shape.check_cores(&cores).unwrap();
    let indices: Vec<u64> = tensor_i64(&st, "indices")
        .into_iter()
        .map(|v| v as u64)
        .collect();
    let offsets: Vec<u64> = tensor_i64(&st, "offsets")
        .into_iter()
        .map(|v| v as u64)
        .collect();
    assert_eq!(offsets[0], 0);
    assert_eq!(*offsets.last().unwrap() as usize, indices.len());
    assert!(indices.iter().all(|&i| i < n), "{file}: index out of range");
    let weights = names
        .iter()
        .any(|s| s == "per_sample_weights")
        .then(|| tensor_f32(&st, "per_sample_weights"));
    let grad_output = tensor_f32(&st, "grad_output");

    let t0 = std::time::Instant::now();
    let out = rtt::forward(
        &shape,
        &cores,
        &indices,
        &offsets,
        weights.as_deref(),
        pooling,
    );
    let grads = rtt::backward(
        &shape,
        &cores,
        &indices,
        &offsets,
        weights.as_deref(),
        pooling,
        &grad_output,
    );
    println!(
        "{file}: {shape}, {} lookups, {} bags: forward+backward {:?}",
        indices.len(),
        offsets.len() - 1,
        t0.elapsed()
    );

    let mut checked = 0;
    let mut worst = check(
        &file,
        "expected.output",
        &out,
        &tensor_f32(&st, "expected.output"),
    );
    checked += 1;
    for (k, g) in grads.iter().enumerate() {
        worst = worst.max(check(
            &file,
            &format!("expected.grad.cores.{k}"),
            g,
            &tensor_f32(&st, &format!("expected.grad.cores.{k}")),
        ));
        checked += 1;
    }
    // An f32 result (updated cores, Adagrad state) against the fixture's tensor `name`.
    let check_f32 = |name: &str, got: &[f32]| {
        let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
        check(&file, name, &got, &tensor_f32(&st, name))
    };
    let updated: Option<Vec<Vec<f32>>> = match optimizer.as_str() {
        "none" => None,
        "sgd" => Some(rtt::sgd_update(&cores, &grads, lr)),
        "adagrad" => {
            let zero: Vec<Vec<f32>> = cores.iter().map(|c| vec![0.0; c.len()]).collect();
            let (upd, state) = rtt::adagrad_update(&cores, &zero, &grads, lr, eps);
            for (k, s) in state.iter().enumerate() {
                let name = format!("expected.state.cores.{k}");
                worst = worst.max(check_f32(&name, s));
                checked += 1;
            }
            Some(upd)
        }
        other => panic!("{file}: unknown optimizer {other}"),
    };
    if let Some(upd) = updated {
        for (k, c) in upd.iter().enumerate() {
            let name = format!("expected.updated.cores.{k}");
            worst = worst.max(check_f32(&name, c));
            checked += 1;
        }
    }
    let expected_count = names.iter().filter(|s| s.starts_with("expected.")).count();
    assert_eq!(
        checked, expected_count,
        "{file}: {expected_count} expected tensors, {checked} checked"
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
