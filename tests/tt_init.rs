//! TT core initialisation: determinism, names, ranges and the reconstructed-row statistics.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ttrec::tt::init::{init_cores, sampled_gaussian_sigma, TtInit};
use ttrec::tt::TtShape;
use ttrec::twin::tt::tt_row;

fn shape3() -> TtShape {
    TtShape::new(1_000_000, &[100, 100, 100], &[2, 2, 4], &[16, 16]).unwrap()
}

#[test]
fn deterministic_by_seed() {
    let shape = TtShape::new(1000, &[10, 10, 10], &[2, 2, 2], &[4, 5]).unwrap();
    for init in TtInit::ALL {
        let a = init_cores(&shape, init, 42);
        let b = init_cores(&shape, init, 42);
        let c = init_cores(&shape, init, 43);
        assert_eq!(a, b, "{init}");
        assert_ne!(a, c, "{init}: seeds 42 and 43 give the same cores");
        shape.check_cores(&a).unwrap();
        // Cores are not copies of each other.
        assert_ne!(a[0][..20], a[1][..20], "{init}");
        assert!(
            a.iter().flatten().all(|v| v.is_finite() && *v != 0.0),
            "{init}"
        );
    }
}

#[test]
fn names_round_trip() {
    let names = [
        "sampled-gaussian",
        "uniform",
        "naive-uniform",
        "normal",
        "approx-normal",
    ];
    for (init, name) in TtInit::ALL.into_iter().zip(names) {
        assert_eq!(init.to_string(), name);
        assert_eq!(name.parse::<TtInit>().unwrap(), init);
    }
    assert_eq!(TtInit::default(), TtInit::SampledGaussian);
    let err = "gaussian".parse::<TtInit>().unwrap_err().to_string();
    assert!(
        err.contains("gaussian") && err.contains("sampled-gaussian"),
        "{err}"
    );
}

/// Mean and variance of the entries of `rows` random reconstructed rows.
fn row_stats(shape: &TtShape, cores: &[Vec<f32>], rows: usize, seed: u64) -> (f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut s, mut s2, mut cnt) = (0.0f64, 0.0f64, 0.0f64);
    for _ in 0..rows {
        let i = rng.random_range(0..shape.num_embeddings);
        for v in tt_row(shape, cores, i) {
            s += v;
            s2 += v * v;
            cnt += 1.0;
        }
    }
    let mean = s / cnt;
    (mean, s2 / cnt - mean * mean)
}

#[test]
fn sampled_gaussian_rows_have_dense_baseline_variance() {
    let shapes = [
        TtShape::new(1_000_000, &[1000, 1000], &[4, 4], &[16]).unwrap(),
        shape3(),
        TtShape::new(1_000_000, &[32, 32, 32, 32], &[2, 2, 2, 2], &[8, 8, 8]).unwrap(),
    ];
    for shape in &shapes {
        let target = 1.0 / (3.0 * shape.num_embeddings as f64);
        for seed in [1u64, 2] {
            let cores = init_cores(shape, TtInit::SampledGaussian, seed);
            let sigma = sampled_gaussian_sigma(shape);
            let bound = (2.0 * sigma) as f32 * (1.0 + 1e-6);
            assert!(
                cores.iter().flatten().all(|v| v.abs() <= bound),
                "{shape}: a value beyond 2 sigma"
            );
            let (mean, var) = row_stats(shape, &cores, 4000, seed + 100);
            println!("{shape} seed {seed}: mean {mean:.3e}, var {var:.4e}, target {target:.4e}, ratio {:.4}", var / target);
            assert!(
                (var / target - 1.0).abs() < 0.15,
                "{shape} seed {seed}: variance {var:e}, want {target:e}"
            );
            assert!(
                mean.abs() < 0.1 * target.sqrt(),
                "{shape} seed {seed}: mean {mean:e}"
            );
        }
    }
}

#[test]
fn sampled_gaussian_cores_are_truncated_normal() {
    let shape = shape3();
    let cores = init_cores(&shape, TtInit::SampledGaussian, 9);
    let sigma = sampled_gaussian_sigma(&shape);
    let all: Vec<f64> = cores.iter().flatten().map(|&v| v as f64 / sigma).collect();
    let n = all.len() as f64;
    let var = all.iter().map(|v| v * v).sum::<f64>() / n;
    assert!((var - 0.7737).abs() < 0.01, "truncated variance {var}");
    // Mass near the edges is present (truncation, not a narrower Gaussian).
    let beyond = all.iter().filter(|v| v.abs() > 1.9).count() as f64 / n;
    assert!(
        beyond > 0.005 && beyond < 0.02,
        "fraction beyond 1.9 sigma {beyond}"
    );
}

#[test]
fn uniform_ranges() {
    let shape = shape3();
    let n = shape.num_embeddings as f64;
    let naive_c = 1.0 / n.sqrt();
    let naive = init_cores(&shape, TtInit::NaiveUniform, 3);
    let prod_r = 256.0f64;
    let c = (2.0 / (n + 16.0)).powf(1.0 / 6.0) * prod_r.powf(-1.0 / 6.0);
    let uni = init_cores(&shape, TtInit::Uniform, 3);
    for (vals, c, name) in [(&naive, naive_c, "naive-uniform"), (&uni, c, "uniform")] {
        let all: Vec<f64> = vals.iter().flatten().map(|&v| v as f64).collect();
        assert!(
            all.iter().all(|&v| (0.0..c).contains(&v)),
            "{name}: a value outside [0, {c})"
        );
        let max = all.iter().cloned().fold(0.0, f64::max);
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        assert!(max > 0.999 * c, "{name}: max {max} of c {c}");
        assert!(
            (mean / c - 0.5).abs() < 0.01,
            "{name}: mean {mean} of c {c}"
        );
    }
}

#[test]
fn normal_and_approx_normal() {
    let shape = shape3();
    let n = shape.num_embeddings as f64;
    let normal: Vec<f64> = init_cores(&shape, TtInit::Normal, 5)
        .into_iter()
        .flatten()
        .map(|v| v as f64)
        .collect();
    let var = normal.iter().map(|v| v * v).sum::<f64>() / normal.len() as f64;
    assert!(
        (var * n - 1.0).abs() < 0.02,
        "normal: variance {var:e}, want {:e}",
        1.0 / n
    );
    assert!(
        normal.iter().any(|v| v.abs() > 3.0 / n.sqrt()),
        "normal is not truncated"
    );

    let scale = (3.0 * n).powf(-1.0 / 6.0);
    let approx: Vec<f64> = init_cores(&shape, TtInit::ApproxNormal, 5)
        .into_iter()
        .flatten()
        .map(|v| v as f64 / scale)
        .collect();
    assert!(
        approx.iter().all(|v| v.abs() >= 2.0 - 1e-6),
        "approx-normal keeps only |x| >= 2 (the reference's loop)"
    );
    let var = approx.iter().map(|v| v * v).sum::<f64>() / approx.len() as f64;
    assert!(
        (var - 5.746).abs() < 0.1,
        "approx-normal: variance {var} of scale^2, want ~5.75"
    );
    let pos = approx.iter().filter(|&&v| v > 0.0).count() as f64 / approx.len() as f64;
    assert!(
        (pos - 0.5).abs() < 0.01,
        "approx-normal is symmetric: {pos}"
    );
}
