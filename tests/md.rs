//! dlrm's mixed-dimension tables (`TableKind::Md`, `--embedding md`): the layer (`nn::md`)
//! against the float64 numpy reference (tests/fixtures/baselines/md_reference.json, made by
//! tools/baselines/md_reference.py), `md_dims` against the reference's md_solver, a small DLRM
//! with MD tables (widths 3, 4, 5: scalar and vec4 kernels) against the CPU twin after SGD and Adagrad
//! steps, bitwise reruns, named bad ids, and the CLI end to end (train, save, predict).

mod common;

use common::twins::dlrm as twin;
use common::{assert_close, gpu, temp_dir};
use ttrec::dlrm::baselines::md_dims;
use ttrec::dlrm::{Dlrm, DlrmBatch, DlrmConfig, DlrmOptions, OptimizerKind, TableKind};
use ttrec::gpu::KernelClass;
use ttrec::graph::{Buf, GraphBuilder};
use ttrec::kernels::matmul::GemmVariant;
use ttrec::nn::md::{proj_name, MdLookups, MdOut, MdTableSpec, MdTables};
use ttrec::nn::{ArenaLayout, ParamArena};
use ttrec::tt::{Bags, Optimizer};

const RTOL: f64 = 2e-5;
const ATOL: f64 = 1e-7;

fn fixture() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/baselines/md_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}
fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}
fn u64s(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

/// The fixture's tables (widths 3, 6, 1; bags with empty ones) run by the GPU layer (forward
/// into one matrix, backward from the fixture's dout) and by the twin: outputs, row and
/// projection gradients against numpy's float64 values.
#[test]
fn md_layer_matches_the_numpy_reference() {
    let fx = fixture();
    let d = fx["out_dim"].as_u64().unwrap() as usize;
    let b = fx["bags"].as_u64().unwrap() as usize;
    let cases = fx["cases"].as_array().unwrap();
    let specs: Vec<MdTableSpec> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| MdTableSpec {
            prefix: format!("case{i}"),
            table: i,
            rows: c["rows"].as_u64().unwrap(),
            dim: c["dim"].as_u64().unwrap() as usize,
        })
        .collect();
    let ids: Vec<Vec<u32>> = cases
        .iter()
        .map(|c| u64s(&c["indices"]).iter().map(|&x| x as u32).collect())
        .collect();
    let offsets: Vec<Vec<u32>> = cases
        .iter()
        .map(|c| u64s(&c["offsets"]).iter().map(|&x| x as u32).collect())
        .collect();
    let bags: Vec<Bags> = ids
        .iter()
        .zip(&offsets)
        .map(|(i, o)| Bags::new(i, o))
        .collect();
    // Every table's vectors side by side: [B, cases * D].
    let stride = cases.len() * d;
    let cols: Vec<usize> = (0..cases.len()).map(|i| i * d).collect();
    let mut dout = vec![0f32; b * stride];
    for (i, c) in cases.iter().enumerate() {
        for (k, v) in f32s(&c["dout"]).into_iter().enumerate() {
            dout[(k / d) * stride + cols[i] + k % d] = v;
        }
    }
    // Twin first: the oracle the DLRM tests lean on, against numpy.
    for (i, c) in cases.iter().enumerate() {
        let (t, p) = (f64s(&c["table"]), f64s(&c["proj"]));
        let idx: Vec<u64> = u64s(&c["indices"]);
        let off: Vec<u64> = u64s(&c["offsets"]);
        let (pooled, out) = ttrec::twin::md::forward(&t, &p, specs[i].dim, &idx, &off);
        let close = |what: &str, got: &[f64], want: &[f64]| {
            let g: Vec<f32> = got.iter().map(|&x| x as f32).collect();
            assert_close(&format!("twin case {i} {what}"), &g, want, 1e-6, 1e-9);
        };
        close("out", &out, &f64s(&c["out"]));
        let dout_i = f64s(&c["dout"]);
        let (gt, gp) = ttrec::twin::md::backward(
            specs[i].rows as usize,
            &p,
            specs[i].dim,
            &idx,
            &off,
            &pooled,
            &dout_i,
        );
        close("grad table", &gt, &f64s(&c["grad_table"]));
        close("grad proj", &gp, &f64s(&c["grad_proj"]));
    }
    let gpu = gpu();
    for (variant, pieces) in [(GemmVariant::Registers, false), (GemmVariant::Split, true)] {
        let opt = Optimizer::Sgd { lr: 0.1 };
        let mut layout = ArenaLayout::default();
        let decl = MdTables::declare(&mut layout, &specs, d).unwrap();
        let mut arena = ParamArena::new(&gpu, layout, opt).unwrap();
        let mut md = MdTables::new(&gpu, decl, &mut arena, opt, None, None).unwrap();
        for (i, c) in cases.iter().enumerate() {
            md.set_rows(i, &f32s(&c["table"])).unwrap();
            arena
                .set(&proj_name(&specs[i].prefix), &f32s(&c["proj"]))
                .unwrap();
        }
        let out = gpu.storage("md out", (b * stride) as u64 * 4);
        let dout_buf = gpu.storage_from("md dout", &dout);
        let mut g = GraphBuilder::new(&gpu);
        let lk = MdLookups::declare(&mut g, &md, b, 4, false, pieces, "md").unwrap();
        let (ob, db) = (Buf::from(&out), Buf::from(&dout_buf));
        let at = |buf| MdOut {
            buf,
            stride,
            cols: &cols,
        };
        let saved = lk
            .record_forward(&mut g, &md, &arena, &at(&ob), variant)
            .unwrap();
        lk.record_backward(&mut g, &md, &arena, &at(&db), &saved, variant)
            .unwrap();
        let plan = g.build().unwrap();
        let mut input = plan.new_input();
        lk.fill(&mut input, &md, &bags).unwrap();
        plan.run_with(&input).unwrap();
        let got = gpu.read_f32(&out, 0, b * stride).unwrap();
        for (i, c) in cases.iter().enumerate() {
            let what = format!("{variant:?} case {i} (width {})", specs[i].dim);
            let mine: Vec<f32> = (0..b)
                .flat_map(|s| got[s * stride + cols[i]..][..d].to_vec())
                .collect();
            assert_close(&format!("{what} out"), &mine, &f64s(&c["out"]), RTOL, ATOL);
            assert_close(
                &format!("{what} grad table"),
                &lk.rows_grad(&md, &bags, i).unwrap(),
                &f64s(&c["grad_table"]),
                RTOL,
                ATOL,
            );
            assert_close(
                &format!("{what} grad proj"),
                &arena.grad(&proj_name(&specs[i].prefix)).unwrap(),
                &f64s(&c["grad_proj"]),
                RTOL,
                ATOL,
            );
            // The fused SGD update of the rows: table - lr * grad.
            let want: Vec<f64> = f64s(&c["table"])
                .iter()
                .zip(f64s(&c["grad_table"]))
                .map(|(w, g)| w - 0.1 * g)
                .collect();
            assert_close(
                &format!("{what} rows after SGD"),
                &md.rows(i).unwrap(),
                &want,
                RTOL,
                ATOL,
            );
        }
    }
}

/// ttrec's `md_dims` gives the widths of dlrm's md_solver (float32, as torch) on the fixture's
/// row lists, Kaggle's among them.
#[test]
fn md_dims_match_dlrms_md_solver() {
    let fx = fixture();
    for s in fx["md_solver"].as_array().unwrap() {
        let rows = u64s(&s["rows"]);
        let want: Vec<usize> = u64s(&s["dims"]).iter().map(|&x| x as usize).collect();
        let got = md_dims(
            &rows,
            s["alpha"].as_f64().unwrap() as f32,
            s["d0"].as_u64().unwrap() as usize,
            s["round_dim"].as_bool().unwrap(),
        );
        assert_eq!(got, want, "md_solver on {rows:?}");
    }
}

/// The small DLRM of the other tests with MD tables of widths 3 (scalar kernels), 4 (vec4), 5
/// and 3 again (three groups, one of two tables), beside dense and TT tables (D = 8).
fn md_config(seed: u64) -> DlrmConfig {
    let mut c = common::small_dlrm_config(seed, true);
    c.tables[2].kind = TableKind::Md { dim: 3 };
    c.tables[3].kind = TableKind::Md { dim: 5 };
    c.tables.push(ttrec::dlrm::TableConfig {
        rows: 50,
        kind: TableKind::Md { dim: 4 },
    });
    c.tables.push(ttrec::dlrm::TableConfig {
        rows: 41,
        kind: TableKind::Md { dim: 3 },
    });
    c.validate().unwrap();
    c
}

/// Steps of the model built with `options` against the twin: loss, every gradient (MD rows
/// and projections among them), every updated parameter (SGD: the twin's; Adagrad: the first
/// step's s = g^2, w - lr g / (sqrt(s) + eps) from the GPU's own gradient).
fn check_against_twin(options: DlrmOptions, batches: &[usize], what: &str) {
    let config = md_config(3);
    let mut m = Dlrm::new(&gpu(), config.clone(), options.clone()).unwrap();
    let names: Vec<String> = m.parameter_names().into_iter().map(|(n, _)| n).collect();
    for want in [
        "emb_l.2.embs.weight",
        "emb_l.2.proj.weight",
        "emb_l.5.proj.weight",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    let shape = |n: &str| {
        m.parameter_names()
            .into_iter()
            .find(|(x, _)| x == n)
            .unwrap()
            .1
    };
    assert_eq!(shape("emb_l.3.embs.weight"), vec![99, 5]);
    assert_eq!(shape("emb_l.3.proj.weight"), vec![8, 5]);
    for (i, &b) in batches.iter().enumerate() {
        let (dense, sparse, labels) = common::random_dlrm_batch(&config, b, 40 + i as u64);
        let before = common::parameters_of(&m);
        let want = twin::step(
            &common::twins::twin_model(&config),
            &before,
            &dense,
            &sparse,
            &labels,
        )
        .unwrap();
        let batch = DlrmBatch {
            dense: &dense,
            sparse: &sparse,
            labels: &labels,
        };
        m.train_step(&batch).unwrap();
        let what = format!("{what} step {i} (B = {b})");
        let stats = m.take_stats().unwrap();
        assert_close(
            &format!("{what} loss"),
            &[stats[0].loss as f32],
            &[want.loss],
            RTOL,
            0.0,
        );
        assert_eq!(stats[0].non_finite_code, 0, "{what}");
        assert!(want.grads.contains_key("emb_l.5.embs.weight"));
        for (n, g) in &want.grads {
            let got = m.gradient(n).unwrap();
            assert_close(&format!("{what} grad {n}"), &got, g, RTOL, ATOL);
            let updated = match options.optimizer {
                OptimizerKind::Sgd => want.updated[n].clone(),
                OptimizerKind::Adagrad { eps } => before[n]
                    .iter()
                    .zip(&got)
                    .map(|(&w, &g)| {
                        let (w, g) = (w as f64, g as f64);
                        w - config.learning_rate as f64 * g / ((g * g).sqrt() + eps as f64)
                    })
                    .collect(),
            };
            assert_close(
                &format!("{what} updated {n}"),
                &m.parameter(n).unwrap(),
                &updated,
                RTOL,
                ATOL,
            );
        }
    }
}

#[test]
fn md_dlrm_steps_match_the_twin() {
    let registers = DlrmOptions {
        gemm: Some(GemmVariant::Registers),
        ..Default::default()
    };
    check_against_twin(registers, &[13, 8], "registers");
    let gpu_class = DlrmOptions {
        kernels: KernelClass::Gpu,
        ..Default::default()
    };
    check_against_twin(gpu_class, &[13], "gpu kernels");
    let adagrad = DlrmOptions {
        optimizer: OptimizerKind::Adagrad { eps: 1e-8 },
        ..Default::default()
    };
    check_against_twin(adagrad, &[12], "adagrad");
}

/// Two models from one seed, three steps each: bitwise the same parameters; a rebuilt model's
/// initial values are bitwise the first's (the MD rows and projections drawn from the seed).
#[test]
fn md_training_is_bitwise_deterministic_and_bad_ids_are_named() {
    let config = md_config(5);
    let run = || {
        let mut m = Dlrm::new(&gpu(), config.clone(), DlrmOptions::default()).unwrap();
        let init = common::parameters_of(&m);
        for i in 0..3 {
            let (dense, sparse, labels) = common::random_dlrm_batch(&config, 9, 70 + i);
            m.train_step(&DlrmBatch {
                dense: &dense,
                sparse: &sparse,
                labels: &labels,
            })
            .unwrap();
        }
        (init, common::parameters_of(&m), m)
    };
    let (init_a, a, mut model) = run();
    let (init_b, b, _) = run();
    // dlrm's initial scales: rows within 1/sqrt(N), projections within sqrt(6 / (m + D)).
    let rows = &init_a["emb_l.3.embs.weight"];
    assert!(rows.iter().all(|v| v.abs() <= (1.0 / 99f32).sqrt()) && rows.iter().any(|&v| v != 0.0));
    let proj = &init_a["emb_l.3.proj.weight"];
    assert!(proj.iter().all(|v| v.abs() <= (6.0 / 13f32).sqrt()) && proj.iter().any(|&v| v != 0.0));
    for (n, v) in &a {
        assert_eq!(
            common::bits(&init_a[n]),
            common::bits(&init_b[n]),
            "init {n}"
        );
        assert_eq!(
            common::bits(v),
            common::bits(&b[n]),
            "{n} after three steps"
        );
        assert_ne!(init_a[n], *v, "{n} trained");
    }
    // An id past an MD table's rows: the table, sample and value named, nothing run.
    let (dense, mut sparse, labels) = common::random_dlrm_batch(&config, 4, 99);
    let tables = config.tables.len();
    sparse[2 * tables + 5] = 41;
    let err = model
        .train_step(&DlrmBatch {
            dense: &dense,
            sparse: &sparse,
            labels: &labels,
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("table 5") && err.contains("id 41") && err.contains("sample 2"),
        "{err}"
    );
    // Data-parallel steps refuse MD tables by name.
    let err = model.prepare_parallel(4, 1).unwrap_err().to_string();
    assert!(err.contains("--embedding md"), "{err}");
}

fn ttrec(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ttrec"))
        .args(args)
        .env_remove("TTREC_PROGRESS")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// dlrm's flags (`--md-flag --md-temperature 0.3 --md-round-dims`) train a few batches of the
/// synthetic set with smaller tables; `--embedding md` on a Criteo-format file trains, saves,
/// and `ttrec predict` on the saved model scores the evaluation lines with the run's AUC.
#[test]
fn md_trains_saves_and_predicts_from_the_cli() {
    let dir = temp_dir("md_cli");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let summary = dir.join("synthetic.json");
    let (ok, out, err) = ttrec(&[
        "train",
        "--md-flag",
        "--md-temperature",
        "0.3",
        "--md-round-dims",
        "--synthetic-scale",
        "0.001",
        "--synthetic-samples",
        "2000",
        "--num-batches",
        "5",
        "--summary-json",
        &s(&summary),
    ]);
    assert!(ok, "{out}\n{err}");
    let sum: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let (emb, full) = (
        sum["embedding_params"].as_f64().unwrap(),
        sum["uncompressed_embedding_params"].as_f64().unwrap(),
    );
    assert!(emb < full, "MD tables are smaller: {emb} vs {full}");

    let text = common::sample_text();
    let lines: Vec<&str> = text.lines().collect();
    let train = dir.join("train.txt");
    std::fs::write(&train, &text).unwrap();
    let (ck, summary, store) = (
        dir.join("ck.safetensors"),
        dir.join("summary.json"),
        dir.join("train.ttcache"),
    );
    let (ok, out, err) = ttrec(&[
        "train",
        "--embedding",
        "md",
        "--md-threshold",
        "20",
        "--data",
        &s(&train),
        "--processed-data-file",
        &s(&store),
        "--test-fraction",
        "0.2",
        "--arch-mlp-bot",
        "13-32-16",
        "--arch-mlp-top",
        "32-1",
        "--mini-batch-size",
        "16",
        "--learning-rate",
        "0.5",
        "--save-model",
        &s(&ck),
        "--summary-json",
        &s(&summary),
    ]);
    assert!(ok, "{out}\n{err}");
    let sum: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let run_auc = sum["auc"].as_f64().unwrap();
    let saved = ttrec::train::checkpoint::load(&ck).unwrap();
    assert!(
        saved
            .meta
            .config
            .tables
            .iter()
            .any(|t| matches!(t.kind, TableKind::Md { .. })),
        "the saved model has MD tables"
    );
    assert!(saved
        .tensors
        .iter()
        .any(|(n, _, _)| n.ends_with(".proj.weight")));
    let eval = dir.join("eval.txt");
    std::fs::write(&eval, lines[160..].join("\n") + "\n").unwrap();
    let scores = dir.join("scores.tsv");
    let (ok, out, err) = ttrec(&[
        "predict",
        "--model",
        &s(&ck),
        "--data",
        &s(&eval),
        "--out",
        &s(&scores),
        "--mini-batch-size",
        "40",
    ]);
    assert!(ok, "{out}\n{err}");
    let p: Vec<f32> = std::fs::read_to_string(&scores)
        .unwrap()
        .lines()
        .filter_map(|l| l.split('\t').next_back()?.parse().ok())
        .collect();
    assert_eq!(p.len(), 40, "{out}");
    let labels: Vec<f32> = lines[160..]
        .iter()
        .map(|l| l[..1].parse().unwrap())
        .collect();
    let auc = ttrec::metrics::roc_auc(&labels, &p).unwrap();
    assert!(
        (auc - run_auc).abs() <= 1e-6,
        "predict AUC {auc} vs the run's {run_auc}"
    );
}

/// The GPU class's step of a Kaggle-shaped MD model (table sizes x 0.05, dlrm's widths,
/// batch 2,048), read from the plan's counts as tests/structure.rs reads the TT model's: every
/// node has a cost, every node above 1 MFLOP launches at least 256 workgroups, no serial chain
/// exceeds 512.
#[test]
fn gpu_class_md_step_is_gpu_shaped() {
    let synth = ttrec::data::SyntheticCriteo::new(1, 0.05).unwrap();
    let config = DlrmConfig::kaggle_dense()
        .with_table_sizes(synth.table_sizes())
        .with_baseline(ttrec::dlrm::Baseline::Md {
            threshold: 200,
            temperature: 0.3,
            round_dims: false,
        })
        .unwrap();
    let options = DlrmOptions {
        kernels: KernelClass::Gpu,
        ..Default::default()
    };
    let mut model = Dlrm::zeroed(&gpu(), config, options).unwrap();
    let counts = model.train_counts(2048).unwrap();
    assert!(counts.iter().any(|c| c.label.contains("md table")));
    for c in &counts {
        let cost = c
            .cost
            .unwrap_or_else(|| panic!("{}: a node without a cost", c.label));
        assert!(
            cost.flops <= 1e6 || c.workgroups >= 256,
            "{}: {:.1} MFLOP in {} workgroups",
            c.label,
            cost.flops / 1e6,
            c.workgroups
        );
        assert!(cost.serial <= 512, "{}: serial {}", c.label, cost.serial);
    }
}
