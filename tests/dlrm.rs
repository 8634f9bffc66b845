//! The DLRM training step on the GPU (src/dlrm) against PyTorch's float64 fixtures
//! (tests/fixtures/dlrm, made by tools/dlrm/gen_fixtures.py) and against the model's CPU twin
//! (src/twin/dlrm.rs): loss, probabilities, intermediate values, every gradient, every updated
//! parameter. Also: determinism, one plan per batch size, bad input, learning on synthetic data.

mod common;

use std::collections::HashMap;

use common::*;
use ttrec::dlrm::fixture::DlrmFixture;
use ttrec::dlrm::{Dlrm, DlrmBatch, DlrmConfig, DlrmOptions};
use ttrec::gpu::KernelClass;
use ttrec::kernels::matmul::GemmVariant;
use ttrec::tt::{CoreGradStrategy, SortStrategy, TtKernels};
use ttrec::twin::dlrm::{self as twin, TwinModel, TwinTable};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dlrm");

fn fixtures() -> Vec<DlrmFixture> {
    let mut paths: Vec<_> = std::fs::read_dir(FIXTURES)
        .expect("tests/fixtures/dlrm")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 3, "expected the committed DLRM fixtures");
    paths
        .iter()
        .map(|p| DlrmFixture::read(p).unwrap())
        .collect()
}

fn batch(fx: &DlrmFixture) -> DlrmBatch<'_> {
    DlrmBatch {
        dense: &fx.dense,
        sparse: &fx.sparse,
        labels: &fx.labels,
    }
}

/// The twin's plain description of `config`'s model (the twin sits below `dlrm`, so it does
/// not take a `DlrmConfig`).
fn twin_model(config: &DlrmConfig) -> TwinModel {
    TwinModel {
        bottom_mlp: config.bottom_mlp.clone(),
        top_mlp: config.top_widths(),
        dim: config.dim(),
        tables: (0..config.tables.len())
            .map(|t| match config.tt_shape(t).unwrap() {
                None => TwinTable::Dense {
                    rows: config.tables[t].rows,
                },
                Some(shape) => TwinTable::Tt(shape),
            })
            .collect(),
        learning_rate: config.learning_rate,
    }
}

/// Tolerance of a float32 step against float64 values: relative to the tensor's largest
/// magnitude, as the parity checker does.
const RTOL: f64 = 2e-5;
const ATOL: f64 = 1e-7;

#[test]
fn twin_matches_pytorch_fixtures() {
    for fx in fixtures() {
        let params: HashMap<String, Vec<f32>> = fx
            .params
            .iter()
            .map(|(n, _, v)| (n.clone(), v.clone()))
            .collect();
        let s = twin::step(
            &twin_model(&fx.config),
            &params,
            &fx.dense,
            &fx.sparse,
            &fx.labels,
        )
        .unwrap();
        let name = &fx.name;
        // Both sides are float64 from the same float32 inputs; the fixture stores float32.
        let tol = 1e-6;
        assert_close(
            &format!("{name} loss"),
            fx.expected("expected.loss").unwrap(),
            &[s.loss],
            tol,
            0.0,
        );
        for (key, got) in [
            ("expected.probabilities", &s.probabilities),
            ("expected.bottom_out", &s.bottom_out),
            ("expected.interaction", &s.interaction),
        ] {
            assert_close(
                &format!("{name} {key}"),
                fx.expected(key).unwrap(),
                got,
                tol,
                0.0,
            );
        }
        for (pname, _, _) in &fx.params {
            let want = fx.expected(&format!("expected.grad.{pname}")).unwrap();
            assert_close(
                &format!("{name} grad {pname}"),
                want,
                &s.grads[pname],
                tol,
                1e-12,
            );
            let want = fx.expected(&format!("expected.updated.{pname}")).unwrap();
            assert_close(
                &format!("{name} updated {pname}"),
                want,
                &s.updated[pname],
                tol,
                1e-12,
            );
        }
    }
}

fn load(fx: &DlrmFixture, options: DlrmOptions) -> Dlrm {
    let mut m = Dlrm::zeroed(&gpu(), fx.config.clone(), options).unwrap();
    let names: Vec<String> = m.parameter_names().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), fx.params.len(), "{}: parameter count", fx.name);
    for (n, shape, v) in &fx.params {
        let want_shape = m
            .parameter_names()
            .into_iter()
            .find(|(m, _)| m == n)
            .map(|(_, s)| s);
        assert_eq!(
            want_shape.as_ref(),
            Some(shape),
            "{}: shape of {n}",
            fx.name
        );
        m.set_parameter(n, v).unwrap();
    }
    m
}

fn check_fixture_on_gpu(fx: &DlrmFixture, variant: GemmVariant) {
    let options = DlrmOptions {
        gemm: Some(variant),
        ..Default::default()
    };
    check_fixture_with(fx, options, &format!("{variant:?}"));
}

fn check_fixture_with(fx: &DlrmFixture, options: DlrmOptions, how: &str) {
    let mut m = load(fx, options);
    let what = format!("{} ({how})", fx.name);
    let tr = m.trace(&batch(fx)).unwrap();
    let want = |k: &str| to_f64(fx.expected(k).unwrap());
    assert_close(
        &format!("{what} bottom_out"),
        &tr.bottom_out,
        &want("expected.bottom_out"),
        RTOL,
        ATOL,
    );
    assert_close(
        &format!("{what} interaction"),
        &tr.interaction,
        &want("expected.interaction"),
        RTOL,
        ATOL,
    );
    assert_close(
        &format!("{what} probabilities"),
        &tr.probabilities,
        &want("expected.probabilities"),
        RTOL,
        ATOL,
    );
    m.train_step(&batch(fx)).unwrap();
    let stats = m.take_stats().unwrap();
    assert_eq!(stats.len(), 1);
    assert_close(
        &format!("{what} loss"),
        &[stats[0].loss as f32],
        &want("expected.loss"),
        RTOL,
        0.0,
    );
    for (n, _, _) in &fx.params {
        let g = m.gradient(n).unwrap();
        assert_close(
            &format!("{what} grad {n}"),
            &g,
            &want(&format!("expected.grad.{n}")),
            RTOL,
            ATOL,
        );
        let p = m.parameter(n).unwrap();
        assert_close(
            &format!("{what} updated {n}"),
            &p,
            &want(&format!("expected.updated.{n}")),
            RTOL,
            ATOL,
        );
    }
}

#[test]
fn gpu_step_matches_pytorch_fixtures_registers() {
    for fx in fixtures() {
        check_fixture_on_gpu(&fx, GemmVariant::Registers);
    }
}

#[test]
fn gpu_step_matches_pytorch_fixtures_tiled() {
    for fx in fixtures() {
        check_fixture_on_gpu(&fx, GemmVariant::Tiled);
    }
}

/// The GPU kernel class (split-K products, the TT tables' GPU variants) forced on this
/// adapter, as `--kernels gpu` does.
fn gpu_class() -> DlrmOptions {
    DlrmOptions {
        kernels: KernelClass::Gpu,
        ..Default::default()
    }
}

#[test]
fn gpu_step_matches_pytorch_fixtures_gpu_kernels() {
    for fx in fixtures() {
        check_fixture_with(&fx, gpu_class(), "gpu kernels");
    }
}

/// A small model with dense and TT tables of odd sizes.
fn small_config(seed: u64) -> DlrmConfig {
    small_dlrm_config(seed, true)
}

#[test]
fn gpu_steps_match_twin_on_a_small_model() {
    for variant in [GemmVariant::Registers, GemmVariant::Tiled] {
        let options = DlrmOptions {
            gemm: Some(variant),
            ..Default::default()
        };
        check_steps_against_twin(options, &format!("{variant:?}"));
    }
}

#[test]
fn gpu_kernel_class_steps_match_twin_on_a_small_model() {
    check_steps_against_twin(gpu_class(), "gpu kernels");
}

/// Three steps of the small model built with `options` against the twin.
fn check_steps_against_twin(options: DlrmOptions, variant: &str) {
    let config = small_config(3);
    {
        let mut m = Dlrm::new(&gpu(), config.clone(), options).unwrap();
        // Batch sizes off the kernels' tiles; three steps so updated parameters feed the next.
        for (i, b) in [13usize, 8, 13].into_iter().enumerate() {
            let (dense, sparse, labels) = common::random_dlrm_batch(&config, b, 40 + i as u64);
            let before = common::parameters_of(&m);
            let want = twin::step(&twin_model(&config), &before, &dense, &sparse, &labels).unwrap();
            let batch = DlrmBatch {
                dense: &dense,
                sparse: &sparse,
                labels: &labels,
            };
            m.train_step(&batch).unwrap();
            let what = format!("{variant} step {i} (B = {b})");
            let stats = m.take_stats().unwrap();
            assert_close(
                &format!("{what} loss"),
                &[stats[0].loss as f32],
                &[want.loss],
                RTOL,
                0.0,
            );
            assert_eq!(stats[0].correct, want.correct, "{what} correct");
            for (n, g) in &want.grads {
                assert_close(
                    &format!("{what} grad {n}"),
                    &m.gradient(n).unwrap(),
                    g,
                    RTOL,
                    ATOL,
                );
                assert_close(
                    &format!("{what} updated {n}"),
                    &m.parameter(n).unwrap(),
                    &want.updated[n],
                    RTOL,
                    ATOL,
                );
            }
        }
    }
}

#[test]
fn training_is_bitwise_deterministic_and_replays_build_nothing() {
    let config = small_config(5);
    let run = |kernels: Option<fn(&ttrec::gpu::Gpu) -> TtKernels>| {
        let gpu = gpu();
        let options = DlrmOptions {
            tt_kernels: kernels.map(|k| k(&gpu)),
            ..DlrmOptions::default()
        };
        let mut m = Dlrm::new(&gpu, config.clone(), options).unwrap();
        let mut built = None;
        for i in 0..4 {
            let (dense, sparse, labels) = common::random_dlrm_batch(&config, 16, 70 + i);
            m.train_step(&DlrmBatch {
                dense: &dense,
                sparse: &sparse,
                labels: &labels,
            })
            .unwrap();
            match built {
                None => built = Some(gpu.pipelines_built()),
                Some(n) => assert_eq!(gpu.pipelines_built(), n, "a replay built a pipeline"),
            }
        }
        let losses: Vec<u64> = m
            .take_stats()
            .unwrap()
            .iter()
            .map(|s| s.loss.to_bits())
            .collect();
        let mut p: Vec<(String, Vec<u32>)> = common::parameters_of(&m)
            .into_iter()
            .map(|(n, v)| (n, v.iter().map(|x| x.to_bits()).collect()))
            .collect();
        p.sort();
        (losses, p)
    };
    let (a, b) = (run(None), run(None));
    assert_eq!(a.0, b.0, "losses");
    assert!(a.1 == b.1, "parameters differ between two identical runs");
    // The TT kernels a GPU gets (core gradients as pieces, the blocks sort, here without
    // subgroups) give the whole model's step bitwise what the adapter's defaults give.
    let gpu_like = |g: &ttrec::gpu::Gpu| TtKernels {
        subgroups: false,
        core_grad: CoreGradStrategy::Pieces,
        sort: SortStrategy::Blocks,
        ..TtKernels::for_adapter(g)
    };
    let c = run(Some(gpu_like));
    assert_eq!(a.0, c.0, "losses with the GPU's TT kernels");
    assert!(a.1 == c.1, "parameters differ with the GPU's TT kernels");
}

/// The GPU kernel class's step (split-K products with their combines) is bitwise the same
/// twice, and agrees with the CPU class's within the parity tolerance.
#[test]
fn gpu_kernel_class_training_is_bitwise_deterministic() {
    let config = small_config(5);
    let run = |options: DlrmOptions| {
        let mut m = Dlrm::new(&gpu(), config.clone(), options).unwrap();
        for i in 0..3 {
            let (dense, sparse, labels) = common::random_dlrm_batch(&config, 40, 90 + i);
            m.train_step(&DlrmBatch {
                dense: &dense,
                sparse: &sparse,
                labels: &labels,
            })
            .unwrap();
        }
        let losses: Vec<f32> = m
            .take_stats()
            .unwrap()
            .iter()
            .map(|s| s.loss as f32)
            .collect();
        let mut p: Vec<(String, Vec<f32>)> = common::parameters_of(&m).into_iter().collect();
        p.sort_by(|a, b| a.0.cmp(&b.0));
        (losses, p)
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let (a, b) = (run(gpu_class()), run(gpu_class()));
    assert_eq!(bits(&a.0), bits(&b.0), "losses");
    for ((n, x), (_, y)) in a.1.iter().zip(&b.1) {
        assert_eq!(bits(x), bits(y), "parameter {n} differs between two runs");
    }
    let cpu = run(DlrmOptions {
        kernels: KernelClass::Cpu,
        ..Default::default()
    });
    let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    assert_close(
        "losses, gpu vs cpu kernels",
        &a.0,
        &f64s(&cpu.0),
        RTOL,
        ATOL,
    );
    for ((n, x), (_, y)) in a.1.iter().zip(&cpu.1) {
        assert_close(&format!("{n}, gpu vs cpu kernels"), x, &f64s(y), RTOL, ATOL);
    }
}

#[test]
fn bad_batches_are_named_errors_before_gpu_work() {
    let config = small_config(1);
    let mut m = Dlrm::new(&gpu(), config.clone(), DlrmOptions::default()).unwrap();
    let (dense, mut sparse, labels) = common::random_dlrm_batch(&config, 6, 2);
    let before = common::parameters_of(&m);
    // Index out of range in table 1 (TT, 200 rows), sample 4.
    sparse[4 * 4 + 1] = 200;
    let e = m
        .train_step(&DlrmBatch {
            dense: &dense,
            sparse: &sparse,
            labels: &labels,
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("table 1") && e.contains("id 200 of sample 4"),
        "{e}"
    );
    sparse[4 * 4 + 1] = 0;
    // Wrong number of features.
    let e = m
        .train_step(&DlrmBatch {
            dense: &dense[1..],
            sparse: &sparse,
            labels: &labels,
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("13 dense features"), "{e}");
    let e = m
        .train_step(&DlrmBatch {
            dense: &dense,
            sparse: &sparse[1..],
            labels: &labels,
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("4 tables"), "{e}");
    // Non-finite dense feature I3 of sample 2.
    let mut bad = dense.clone();
    bad[2 * 13 + 2] = f32::NAN;
    let e = m
        .train_step(&DlrmBatch {
            dense: &bad,
            sparse: &sparse,
            labels: &labels,
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("I3 of sample 2"), "{e}");
    let mut bad_labels = labels.clone();
    bad_labels[5] = 0.5;
    let e = m
        .train_step(&DlrmBatch {
            dense: &dense,
            sparse: &sparse,
            labels: &bad_labels,
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("label of sample 5"), "{e}");
    assert_eq!(m.steps(), 0);
    assert!(
        common::parameters_of(&m) == before,
        "a rejected batch changed the model"
    );
    let e = m
        .set_parameter("bot_l.2.weight", &[1.0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("bot_l.2.weight"), "{e}");
    assert!(
        m.set_parameter("emb_l.1.weight", &[0.0]).is_err(),
        "table 1 is TT"
    );
    // TT core errors name the model's table (3, not its index in its TT group) and the core.
    let e = m
        .set_parameter("emb_l.3.tt_cores.1", &[0.0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("table 3") && e.contains("core 1"), "{e}");
    let e = m.parameter("emb_l.3.tt_cores.2").unwrap_err().to_string();
    assert!(e.contains("table 3") && e.contains("no core 2"), "{e}");
    let mut core = m.parameter("emb_l.3.tt_cores.1").unwrap();
    core[3] = f32::NAN;
    let e = m
        .set_parameter("emb_l.3.tt_cores.1", &core)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("table 3") && e.contains("element 3 of core 1"),
        "{e}"
    );
    assert!(
        common::parameters_of(&m) == before,
        "a rejected core changed the model"
    );
    // One core replaced alone: it reads back, the table's other core is untouched.
    core[3] = 0.25;
    m.set_parameter("emb_l.3.tt_cores.1", &core).unwrap();
    assert_eq!(m.parameter("emb_l.3.tt_cores.1").unwrap(), core);
    assert_eq!(
        common::parameters_of(&m)["emb_l.3.tt_cores.0"],
        before["emb_l.3.tt_cores.0"]
    );
}

#[test]
fn training_lowers_loss_and_raises_auc_on_synthetic_data() {
    use ttrec::data::SyntheticCriteo;
    // Kaggle's tables at 1/2000 of their size, the 7 largest TT; small MLPs.
    let synth = SyntheticCriteo::new(11, 0.0005).unwrap();
    let config = DlrmConfig {
        bottom_mlp: vec![13, 64, 16],
        top_mlp: vec![64, 1],
        learning_rate: 0.1,
        ..DlrmConfig::kaggle_dense()
    }
    .with_table_sizes(synth.table_sizes())
    .with_tt_largest(7, 8)
    .unwrap();
    let mut m = Dlrm::new(&gpu(), config, DlrmOptions::default()).unwrap();
    let b = 256;
    let test = synth.batch(10_000_000, 4096);
    let auc = |m: &mut Dlrm| {
        let p = m.predict(&DlrmBatch::from(&test)).unwrap();
        ttrec::metrics::roc_auc(&test.labels, &p).unwrap()
    };
    let auc0 = auc(&mut m);
    for step in 0..300u64 {
        let batch = synth.batch(step * b as u64, b);
        m.train_step(&DlrmBatch::from(&batch)).unwrap();
    }
    let stats = m.take_stats().unwrap();
    let mean =
        |s: &[ttrec::dlrm::StepStats]| s.iter().map(|x| x.loss).sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&stats[..30]), mean(&stats[270..]));
    let auc1 = auc(&mut m);
    assert!(
        last < first - 0.02,
        "loss {first:.4} -> {last:.4} did not fall"
    );
    assert!(
        auc1 > 0.70 && auc1 > auc0 + 0.1,
        "AUC {auc0:.3} -> {auc1:.3}"
    );
}

#[test]
fn terabyte_configuration_trains_at_small_scale() {
    // dlrm's Terabyte shape (D = 64, bottom 13-512-256-64, top 415-512-512-256-1) with its
    // tables cut to 1/10,000: one step runs and matches the twin.
    let mut config = DlrmConfig::terabyte();
    let sizes: Vec<u64> = config
        .tables
        .iter()
        .map(|t| (t.rows / 10_000).max(3))
        .collect();
    config = config
        .with_table_sizes(&sizes)
        .with_tt_largest(7, 4)
        .unwrap();
    assert_eq!(config.dim(), 64);
    assert_eq!(config.top_widths()[0], 415);
    let mut m = Dlrm::new(&gpu(), config.clone(), DlrmOptions::default()).unwrap();
    let (dense, sparse, labels) = common::random_dlrm_batch(&config, 6, 9);
    let want = twin::step(
        &twin_model(&config),
        &common::parameters_of(&m),
        &dense,
        &sparse,
        &labels,
    )
    .unwrap();
    m.train_step(&DlrmBatch {
        dense: &dense,
        sparse: &sparse,
        labels: &labels,
    })
    .unwrap();
    let loss = m.take_stats().unwrap()[0].loss;
    assert_close("terabyte loss", &[loss as f32], &[want.loss], RTOL, 0.0);
    // Every tensor: its gradient and its updated value.
    assert_eq!(want.updated.len(), m.parameter_names().len());
    for (n, _) in m.parameter_names() {
        assert_close(
            &format!("terabyte grad {n}"),
            &m.gradient(&n).unwrap(),
            &want.grads[&n],
            RTOL,
            ATOL,
        );
        assert_close(
            &format!("terabyte updated {n}"),
            &m.parameter(&n).unwrap(),
            &want.updated[&n],
            RTOL,
            ATOL,
        );
    }
}

#[test]
fn profiled_steps_train_and_tick_the_row_cache_like_plain_steps() {
    // profile_step is train_step with timestamps: the same plan, statistics and cache ticks, so
    // a run of profiled steps ends bitwise where a run of plain steps does (the row cache
    // refreshing on the same steps).
    let config = small_config(9);
    let run = |profiled: bool| {
        let gpu = gpu();
        assert!(
            gpu.has_timestamps(),
            "{} has no timestamp queries",
            gpu.adapter_name()
        );
        let options = DlrmOptions {
            tt_cache: Some(ttrec::dlrm::TtCacheOptions {
                rows: 0.25,
                warmup_steps: 1,
                refresh_every: 2,
            }),
            ..DlrmOptions::default()
        };
        let mut m = Dlrm::new(&gpu, config.clone(), options).unwrap();
        for i in 0..5 {
            let (dense, sparse, labels) = common::random_dlrm_batch(&config, 12, 90 + i);
            let batch = DlrmBatch {
                dense: &dense,
                sparse: &sparse,
                labels: &labels,
            };
            if profiled {
                assert!(!m.profile_step(&batch).unwrap().is_empty());
            } else {
                m.train_step(&batch).unwrap();
            }
        }
        let losses: Vec<u64> = m
            .take_stats()
            .unwrap()
            .iter()
            .map(|s| s.loss.to_bits())
            .collect();
        let (cache, refreshes) = m.cache_stats().unwrap().expect("a row cache");
        let mut p: Vec<(String, Vec<u32>)> = common::parameters_of(&m)
            .into_iter()
            .map(|(n, v)| (n, v.iter().map(|x| x.to_bits()).collect()))
            .collect();
        p.sort();
        (losses, (cache.lookups, cache.hits, refreshes), p)
    };
    let (plain, profiled) = (run(false), run(true));
    assert_eq!(plain.0.len(), 5, "one statistic per step");
    assert_eq!(plain.0, profiled.0, "losses");
    assert!(plain.1 .2 >= 2, "the cache refreshed: {:?}", plain.1);
    assert_eq!(plain.1, profiled.1, "cache lookups, hits and refreshes");
    assert!(plain.2 == profiled.2, "parameters differ");
}
