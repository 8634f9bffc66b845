//! The data-parallel step without MPI: its unfused form in one process ([`Solo`]) against the
//! fused training step, and two ranks as threads ([`ThreadGroup`], each with its own device)
//! against each other and against one process at twice the batch. (`tests/mpi.rs` runs the
//! same under mpirun, feature `mpi`.)

mod common;

use common::*;
use rand::Rng;
use ttrec::dist::{Collective, Solo, ThreadGroup};
use ttrec::dlrm::{Dlrm, DlrmBatch, DlrmConfig, DlrmOptions};
use ttrec::parity::{compare_with, DLRM_ATOL, DLRM_RTOL};

/// A small model with dense and TT tables (two TT groups).
fn config() -> DlrmConfig {
    small_dlrm_config(5, true)
}

/// Batch `step` of `b` samples: (dense, sparse, labels).
fn batch(config: &DlrmConfig, b: usize, step: u64) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let mut r = rng(100 + step);
    let dense = (0..b * config.dense_features())
        .map(|_| r.random_range(0.0..3.0))
        .collect();
    let sparse = (0..b)
        .flat_map(|_| {
            config
                .tables
                .iter()
                .map(|t| r.random_range(0..t.rows) as u32)
                .collect::<Vec<_>>()
        })
        .collect();
    let labels = (0..b).map(|_| r.random_range(0..2) as f32).collect();
    (dense, sparse, labels)
}

/// Rows `range` of a batch.
fn part(
    (d, s, l): &(Vec<f32>, Vec<u32>, Vec<f32>),
    config: &DlrmConfig,
    range: std::ops::Range<usize>,
) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let (f, t) = (config.dense_features(), config.tables.len());
    (
        d[range.start * f..range.end * f].to_vec(),
        s[range.start * t..range.end * t].to_vec(),
        l[range].to_vec(),
    )
}

fn as_batch(b: &(Vec<f32>, Vec<u32>, Vec<f32>)) -> DlrmBatch<'_> {
    DlrmBatch {
        dense: &b.0,
        sparse: &b.1,
        labels: &b.2,
    }
}

fn params(m: &Dlrm) -> Vec<(String, Vec<f32>)> {
    m.parameter_names()
        .into_iter()
        .map(|(n, _)| {
            let v = m.parameter(&n).unwrap();
            (n, v)
        })
        .collect()
}

const STEPS: u64 = 4;

#[test]
fn unfused_step_equals_fused_within_one_rounding() {
    let gpu = gpu();
    let cfg = config();
    let mut fused = Dlrm::new(&gpu, cfg.clone(), DlrmOptions::default()).unwrap();
    let mut split = Dlrm::new(&gpu, cfg.clone(), DlrmOptions::default()).unwrap();
    let start = params(&fused);
    for step in 0..STEPS {
        let b = batch(&cfg, 16, step);
        fused.train_step(&as_batch(&b)).unwrap();
        split.train_step_parallel(&as_batch(&b), &Solo).unwrap();
    }
    let (sf, ss) = (fused.take_stats().unwrap(), split.take_stats().unwrap());
    assert_eq!(sf, ss, "the steps' losses");
    for (((name, f), (_, s)), (_, s0)) in params(&fused).iter().zip(params(&split)).zip(&start) {
        assert_ne!(bits(f), bits(s0), "{name} did not train");
        if name.contains("tt_cores") {
            // The update applied after the gradient (over every row) instead of inside the
            // gradient kernel (over touched rows): at most one rounding apart.
            for (i, (a, b)) in f.iter().zip(s).enumerate() {
                let tol = f32::EPSILON * a.abs().max(b.abs());
                assert!(
                    (a - b).abs() <= tol,
                    "{name}[{i}]: fused {a} vs unfused {b}"
                );
            }
        } else {
            // MLPs and dense tables run the same kernels on the same values.
            assert_eq!(bits(f), bits(&s), "{name}");
        }
    }
}

#[test]
fn two_thread_ranks_agree_bitwise_and_match_one_process_at_twice_the_batch() {
    let cfg = config();
    let b = 8;
    let ranks = ThreadGroup::run(2, |g| {
        let gpu = gpu();
        let mut m = Dlrm::new(&gpu, cfg.clone(), DlrmOptions::default())?;
        for step in 0..STEPS {
            let global = batch(&cfg, 2 * b, step);
            let mine = part(&global, &cfg, g.rank() * b..(g.rank() + 1) * b);
            m.train_step_parallel(&as_batch(&mine), &g)?;
        }
        Ok((params(&m), m.take_stats()?))
    });
    let ranks: Vec<_> = ranks.into_iter().map(|r| r.unwrap()).collect();
    let gpu = gpu();
    let mut one = Dlrm::new(&gpu, cfg.clone(), DlrmOptions::default()).unwrap();
    for step in 0..STEPS {
        one.train_step(&as_batch(&batch(&cfg, 2 * b, step)))
            .unwrap();
    }
    let stats = one.take_stats().unwrap();
    for (((name, a), (_, r1)), (_, o)) in ranks[0].0.iter().zip(&ranks[1].0).zip(params(&one)) {
        assert_eq!(bits(a), bits(r1), "{name}: the ranks differ");
        let c = compare_with(name, a, &o, DLRM_RTOL, DLRM_ATOL);
        assert!(
            c.pass,
            "{name}: 2 ranks at batch {b} vs 1 at {}: {c:?}",
            2 * b
        );
    }
    // Each rank's loss is over its half: their mean is the one process's loss.
    for (s, (r0, r1)) in stats.iter().zip(ranks[0].1.iter().zip(&ranks[1].1)) {
        let mean = (r0.loss + r1.loss) / 2.0;
        assert!((mean - s.loss).abs() < 1e-5, "loss {mean} vs {}", s.loss);
    }
}
