//! The per-step finiteness checks (shaders/finite.wgsl) against their CPU twin, the loss's
//! non-finite flag and its clamp (shaders/loss.wgsl: the training loss is the evaluation's log
//! loss of the same logits), and a DLRM whose parameters go non-finite flagging the step in
//! its statistics.

mod common;

use common::*;
use rand::Rng;
use ttrec::dlrm::{Dlrm, DlrmBatch, DlrmConfig, DlrmOptions, TableConfig, TableKind};
use ttrec::graph::{Buf, GraphBuilder};
use ttrec::kernels::finite::{
    record_finite_rows, record_finite_span, FiniteRegion, NON_FINITE_WORD,
};
use ttrec::kernels::loss::{record_bce, StepParams, STATS_PER_STEP};
use ttrec::twin::finite as twin;

const SLOT: u32 = 2;
const RING: usize = 4;

/// A stats ring of POISON with the checked word of `SLOT` at 0 (as the loss leaves it).
fn ring(gpu: &ttrec::gpu::Gpu) -> wgpu::Buffer {
    let mut v = vec![POISON; RING * STATS_PER_STEP];
    v[SLOT as usize * STATS_PER_STEP + NON_FINITE_WORD] = 0.0;
    gpu.storage_from("stats", &v)
}

/// Reads the ring: the checked word of `SLOT`, after asserting every other word untouched.
fn read_word(gpu: &ttrec::gpu::Gpu, stats: &wgpu::Buffer) -> u32 {
    let got = gpu.read_f32(stats, 0, RING * STATS_PER_STEP).unwrap();
    let at = SLOT as usize * STATS_PER_STEP + NON_FINITE_WORD;
    for (i, v) in got.iter().enumerate() {
        if i != at {
            assert_eq!(*v, POISON, "stats word {i} written");
        }
    }
    got[at].to_bits()
}

fn step_input(g: &mut GraphBuilder) -> Buf {
    g.input("step", 16)
}

fn run(gpu: &ttrec::gpu::Gpu, plan: ttrec::graph::Plan, step: &Buf) {
    let mut input = plan.new_input();
    input
        .write(
            step,
            &[StepParams {
                slot: SLOT,
                _pad: [0; 3],
            }],
        )
        .unwrap();
    plan.run_with(&input).unwrap();
    gpu.wait().unwrap();
}

fn region(gpu: &ttrec::gpu::Gpu, r: FiniteRegion) -> wgpu::Buffer {
    let b = gpu.uniform("region", 32);
    gpu.write(&b, &[r]);
    b
}

/// Spans of random values, some with a NaN or an infinity planted, checked in one plan: the
/// word is the largest code of a span with one, as the twin says; spans outside the planted
/// value's position see nothing.
#[test]
fn span_checks_match_the_twin() {
    let gpu = gpu();
    for seed in 0..6u64 {
        let mut r = rng(seed);
        let n = 70_000 + r.random_range(0..5000usize);
        let mut v = values(&mut r, n);
        let plants = r.random_range(0..3usize);
        for _ in 0..plants {
            let at = r.random_range(0..n);
            v[at] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][r.random_range(0..3usize)];
        }
        // Five spans, some overlapping, with codes 5..1.
        let spans: Vec<(usize, usize, u32)> = (0..5)
            .map(|i| {
                let off = r.random_range(0..n - 1);
                let len = r.random_range(1..=(n - off).min(40_000));
                (off, len, 5 - i)
            })
            .collect();
        let buf = gpu.storage_from("values", &v);
        let stats = ring(&gpu);
        let mut g = GraphBuilder::new(&gpu);
        let step = step_input(&mut g);
        let mut regions = Vec::new();
        for &(offset, len, code) in &spans {
            let u = region(
                &gpu,
                FiniteRegion {
                    offset: offset as u32,
                    len: len as u32,
                    code,
                    ..FiniteRegion::default()
                },
            );
            record_finite_span(
                &mut g,
                "span",
                len,
                step.clone(),
                Buf::from(&u),
                Buf::from(&buf),
                Buf::from(&stats),
            )
            .unwrap();
            regions.push(u);
        }
        run(&gpu, g.build().unwrap(), &step);
        let slices: Vec<(&[f32], u32)> = spans.iter().map(|&(o, l, c)| (&v[o..o + l], c)).collect();
        assert_eq!(
            read_word(&gpu, &stats),
            twin::span_word(&slices),
            "seed {seed}"
        );
    }
}

/// The rows of a dense-table shard that a batch's segments name, with non-finite values
/// planted in rows named and not named: only named rows in the shard count.
#[test]
fn row_checks_match_the_twin() {
    let gpu = gpu();
    let dim = 8;
    for seed in 0..6u64 {
        let mut r = rng(100 + seed);
        let (lo, rows) = (r.random_range(0..50usize), 200usize);
        let mut w = values(&mut r, rows * dim);
        for _ in 0..r.random_range(0..4usize) {
            w[r.random_range(0..rows * dim)] = f32::NAN;
        }
        // Segments over group rows [0, lo + rows + 50): sorted starts, some empty.
        let segments = 64;
        let mut segs = Vec::with_capacity(2 * segments + 2);
        let mut start = 0u32;
        for _ in 0..segments {
            segs.push(start);
            segs.push(r.random_range(0..(lo + rows + 50) as u32));
            start += r.random_range(0..3u32);
        }
        segs.push(start);
        segs.push(0);
        let code = 7;
        let (wb, sb) = (gpu.storage_from("w", &w), gpu.storage_from("segs", &segs));
        let stats = ring(&gpu);
        let u = region(
            &gpu,
            FiniteRegion {
                offset: lo as u32,
                len: rows as u32,
                code,
                dim: dim as u32,
                segments: segments as u32,
                ..FiniteRegion::default()
            },
        );
        let mut g = GraphBuilder::new(&gpu);
        let step = step_input(&mut g);
        record_finite_rows(
            &mut g,
            "rows",
            segments,
            dim,
            step.clone(),
            Buf::from(&u),
            Buf::from(&sb),
            Buf::from(&wb),
            Buf::from(&stats),
        )
        .unwrap();
        run(&gpu, g.build().unwrap(), &step);
        let want = twin::rows_word(&w, dim, lo, &segs, segments, code);
        assert_eq!(read_word(&gpu, &stats), want, "seed {seed}");
    }
}

/// The loss's slot: the clamped training loss is the evaluation's log loss of the same logits
/// (also for logits far past the clamp), the flag says whether a logit was non-finite, and the
/// parameters' word starts at 0.
#[test]
fn the_training_loss_is_the_test_log_loss_and_non_finite_logits_are_flagged() {
    let gpu = gpu();
    let batch = 64;
    for (case, planted) in [(0, None), (1, Some(f32::NAN)), (2, Some(f32::INFINITY))] {
        let mut r = rng(case);
        let mut z: Vec<f32> = (0..batch)
            .map(|b| values(&mut r, 1)[0] * [3.0, 40.0, 1e9, 3e29][b % 4])
            .collect();
        if let Some(v) = planted {
            z[17] = v;
        }
        let labels: Vec<f32> = (0..batch).map(|b| (b % 3 == 0) as u8 as f32).collect();
        let stats = gpu.storage_from("stats", &[POISON; RING * STATS_PER_STEP]);
        let (zb, yb) = (gpu.storage_from("z", &z), gpu.storage_from("y", &labels));
        let dz = gpu.storage("dz", batch as u64 * 4);
        let dzt = gpu.storage("dzt", batch as u64 * 4);
        let mut g = GraphBuilder::new(&gpu);
        let step = step_input(&mut g);
        record_bce(
            &mut g,
            "bce",
            batch,
            1,
            step.clone(),
            Buf::from(&zb),
            Buf::from(&yb),
            Buf::from(&dz),
            Buf::from(&dzt),
            Buf::from(&stats),
        )
        .unwrap();
        run(&gpu, g.build().unwrap(), &step);
        let got = gpu.read_f32(&stats, 0, RING * STATS_PER_STEP).unwrap();
        let s = SLOT as usize * STATS_PER_STEP;
        assert_eq!(
            got[s + 2],
            planted.is_some() as u8 as f32,
            "case {case}: flag"
        );
        assert_eq!(got[s + 3].to_bits(), 0, "case {case}: the parameters' word");
        if planted.is_none() {
            let probs: Vec<f32> = z
                .iter()
                .map(|&v| (1.0 / (1.0 + (-(v as f64)).exp())) as f32)
                .collect();
            let want = ttrec::metrics::log_loss(&labels, &probs).unwrap();
            assert!(
                (got[s] as f64 - want).abs() <= 1e-4 * want,
                "training loss {} against the log loss {want}",
                got[s]
            );
        }
    }
}

fn small_config(learning_rate: f32) -> DlrmConfig {
    DlrmConfig {
        bottom_mlp: vec![13, 24, 8],
        top_mlp: vec![12, 1],
        tables: vec![
            TableConfig {
                rows: 30,
                kind: TableKind::Dense,
            },
            TableConfig {
                rows: 200,
                kind: TableKind::Tt {
                    p: vec![5, 6, 7],
                    q: vec![2, 2, 2],
                    ranks: vec![4, 8],
                },
            },
        ],
        learning_rate,
        tt_init: ttrec::tt::TtInit::SampledGaussian,
        seed: 3,
    }
}

fn step(m: &mut Dlrm, seed: u64) {
    let b = 32;
    let mut r = rng(seed);
    let dense: Vec<f32> = (0..b * 13).map(|_| r.random_range(0.0..3.0)).collect();
    let sparse: Vec<u32> = (0..b)
        .flat_map(|_| [r.random_range(0..30u32), r.random_range(0..200u32)])
        .collect();
    let labels: Vec<f32> = (0..b).map(|i| (i % 3 == 0) as u8 as f32).collect();
    m.train_step(&DlrmBatch {
        dense: &dense,
        sparse: &sparse,
        labels: &labels,
    })
    .unwrap();
}

/// A DLRM's steps carry the flag in their statistics: finite steps show nothing; with an
/// absurd learning rate the step whose update overflowed shows its region, and so do the
/// steps after it.
#[test]
fn a_dlrm_step_flags_non_finite_parameters() {
    let gpu = gpu();
    let mut m = Dlrm::new(&gpu, small_config(0.1), DlrmOptions::default()).unwrap();
    for s in 0..3 {
        step(&mut m, s);
    }
    for s in m.take_stats().unwrap() {
        assert!(!s.non_finite_logits && s.non_finite_code == 0, "{s:?}");
        assert_eq!(m.non_finite_region(s.non_finite_code), None);
    }
    let mut m = Dlrm::new(&gpu, small_config(3e38), DlrmOptions::default()).unwrap();
    for s in 0..4 {
        step(&mut m, s);
    }
    let stats = m.take_stats().unwrap();
    let first = stats
        .iter()
        .position(|s| s.non_finite_code != 0)
        .expect("no step flagged");
    assert!(m.non_finite_region(stats[first].non_finite_code).is_some());
    // Finite steps before it, and the flag stays (a ReLU's max turns NaN into 0: the logits
    // and the loss of later steps can still be finite).
    assert!(first > 0 && stats[..first].iter().all(|s| s.non_finite_code == 0));
    assert!(
        stats[first..].iter().all(|s| s.non_finite_code != 0),
        "{stats:?}"
    );
    let params: Vec<f32> = m
        .parameter_names()
        .iter()
        .flat_map(|(n, _)| m.parameter(n).unwrap())
        .collect();
    assert!(params.iter().any(|x| !x.is_finite()));
}

/// A core value beyond f16's range (1e6 > 65504) is finite in an f32 table and infinite once
/// stored as f16: the f16 table's step flags that core's region (an f16 core holds two values
/// per word: an odd and an even element are tried), the f32 table's step flags nothing. The value
/// sits in a row-digit slice no lookup reads (every id is 0), so nothing else changes first.
#[test]
fn a_tt_core_value_beyond_f16_range_is_flagged_only_in_f16() {
    let gpu = gpu();
    for precision in [ttrec::tt::CorePrecision::F32, ttrec::tt::CorePrecision::F16] {
        for (k, back, big) in [(1usize, 1usize, 1e6f32), (2, 2, -1e6)] {
            let options = DlrmOptions {
                tt_precision: precision,
                ..DlrmOptions::default()
            };
            let mut m = Dlrm::new(&gpu, small_config(0.1), options).unwrap();
            let name = format!("emb_l.1.tt_cores.{k}");
            let mut core = m.parameter(&name).unwrap();
            let at = core.len() - back;
            core[at] = big;
            m.set_parameter(&name, &core).unwrap();
            let b = 16;
            let dense: Vec<f32> = (0..b * 13).map(|i| (i % 7) as f32 * 0.25).collect();
            let sparse = vec![0u32; b * 2];
            let labels: Vec<f32> = (0..b).map(|i| (i % 2) as f32).collect();
            m.train_step(&DlrmBatch {
                dense: &dense,
                sparse: &sparse,
                labels: &labels,
            })
            .unwrap();
            let s = m.take_stats().unwrap()[0];
            assert!(!s.non_finite_logits, "{precision:?} core {k}: {s:?}");
            let want = match precision {
                ttrec::tt::CorePrecision::F16 => Some(format!("core {k} of TT group 0")),
                ttrec::tt::CorePrecision::F32 => None,
            };
            assert_eq!(
                m.non_finite_region(s.non_finite_code),
                want,
                "{precision:?} core {k} element {at}"
            );
        }
    }
}
