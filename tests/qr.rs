//! dlrm's quotient-remainder embeddings (`--embedding qr`, issue 21 item 4): the lookups (both
//! parts pooled, combined by mult, add or concat) and their gradients against numpy's float64
//! reference (tests/fixtures/baselines/qr_f64.json, made by tools/baselines/qr_reference.py)
//! and the twin; a small DLRM with QR tables stepped on the GPU against the twin (forward,
//! gradients, SGD and Adagrad updates), bitwise reruns, bad input named, a saved model scored
//! by `ttrec predict`, and `ttrec train --embedding qr` / dlrm's `--qr-flag` end to end.

mod common;

use std::path::Path;
use std::process::Command;

use common::twins::{nn as twin_nn, qr as twin_qr, twin_model};
use common::*;
use serde_json::Value;
use ttrec::dlrm::TableKind;
use ttrec::dlrm::{Dlrm, DlrmBatch, DlrmConfig, DlrmOptions, OptimizerKind, QrOperation};
use ttrec::gpu::KernelClass;
use ttrec::graph::{Buf, GraphBuilder};
use ttrec::kernels::qr::QrOp;
use ttrec::nn::{QrBagGroup, QrLookups, QrPart, QrTableSpec};
use ttrec::tt::{Bags, Optimizer};
use ttrec::twin::dlrm as twin;

const BIN: &str = env!("CARGO_BIN_EXE_ttrec");
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/baselines/qr_f64.json"
);

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}
fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}
fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn lookups_and_gradients_match_numpy_float64_reference_for_every_operation() {
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    assert_eq!(fx["format"], "ttrec-qr-f64-v1");
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    let gpu = gpu();
    let lr = 0.5f32;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (rows, c, dim) = (
            case["rows"].as_u64().unwrap(),
            case["collisions"].as_u64().unwrap(),
            case["dim"].as_u64().unwrap() as usize,
        );
        let (op, twin_op) = match case["operation"].as_str().unwrap() {
            "mult" => (QrOp::Mult, twin_qr::QrOperation::Mult),
            "add" => (QrOp::Add, twin_qr::QrOperation::Add),
            _ => (QrOp::Concat, twin_qr::QrOperation::Concat),
        };
        let part = if op == QrOp::Concat { dim / 2 } else { dim };
        let (wq, wr) = (floats(&case["weight_q"]), floats(&case["weight_r"]));
        let (ids, offsets) = (u32s(&case["indices"]), u32s(&case["offsets"]));
        let dout = floats(&case["dout"]);
        let (want_out, want_gq, want_gr) = (
            floats(&case["out"]),
            floats(&case["grad_q"]),
            floats(&case["grad_r"]),
        );
        let bags_n = offsets.len() - 1;

        // The twin, from the math, against numpy (both float64).
        let w = twin_qr::QrWeights {
            q: &wq,
            r: &wr,
            part,
            collisions: c,
            operation: twin_op,
        };
        let (idx, offs): (Vec<u64>, Vec<u64>) = (
            ids.iter().map(|&i| i as u64).collect(),
            offsets.iter().map(|&o| o as u64).collect(),
        );
        let (out, pooled) = twin_qr::forward(&w, &idx, &offs);
        let (gq, gr) = twin_qr::backward(&w, &idx, &offs, &pooled, &dout);
        for (what, got, want) in [
            ("out", &out, &want_out),
            ("grad_q", &gq, &want_gq),
            ("grad_r", &gr, &want_gr),
        ] {
            let got: Vec<f32> = f32s(got);
            assert_close(&format!("twin {name} {what}"), &got, want, 1e-6, 1e-9);
        }

        // The GPU: forward, gradients and the fused SGD update in one plan.
        let spec = QrTableSpec {
            rows,
            collisions: c,
            op,
        };
        let mut qr =
            QrBagGroup::new(&gpu, dim, &[spec], Optimizer::Sgd { lr }, None, None).unwrap();
        qr.set_table(0, QrPart::Quotient, &f32s(&wq)).unwrap();
        qr.set_table(0, QrPart::Remainder, &f32s(&wr)).unwrap();
        let out_buf = gpu.storage_from("out", &vec![POISON; bags_n * dim]);
        let dout_buf = gpu.storage_from("dout", &f32s(&dout));
        let mut g = GraphBuilder::new(&gpu);
        let lk = QrLookups::declare(&mut g, &qr, bags_n, ids.len(), dim, &[0], "qr").unwrap();
        lk.record_forward(&mut g, &qr, Buf::from(&out_buf)).unwrap();
        lk.record_backward(&mut g, &qr, Buf::from(&dout_buf))
            .unwrap();
        let plan = g.build().unwrap();
        let mut input = plan.new_input();
        let bags = [Bags::new(&ids, &offsets)];
        lk.validate(&qr, &bags).unwrap();
        lk.fill(&mut input, &qr, &bags).unwrap();
        plan.run_with(&input).unwrap();
        let got = gpu.read_f32(&out_buf, 0, bags_n * dim).unwrap();
        assert_close(&format!("gpu {name} out"), &got, &want_out, 1e-6, 1e-7);
        let (g_q, g_r) = lk.table_grads(&qr, &bags, 0).unwrap();
        assert_close(&format!("gpu {name} grad_q"), &g_q, &want_gq, 1e-6, 1e-7);
        assert_close(&format!("gpu {name} grad_r"), &g_r, &want_gr, 1e-6, 1e-7);
        let upd = |w: &[f64], g: &[f64]| twin_nn::sgd(w, g, lr as f64);
        assert_close(
            &format!("gpu {name} updated weight_q"),
            &qr.table(0, QrPart::Quotient).unwrap(),
            &upd(&wq, &want_gq),
            1e-6,
            1e-7,
        );
        assert_close(
            &format!("gpu {name} updated weight_r"),
            &qr.table(0, QrPart::Remainder).unwrap(),
            &upd(&wr, &want_gr),
            1e-6,
            1e-7,
        );
    }
}

/// The small model with its 200-row table QR (16 collisions) and its 7-row table QR (3), beside
/// a dense and a TT table.
fn qr_config(seed: u64, operation: QrOperation) -> DlrmConfig {
    let mut c = small_dlrm_config(seed, true);
    c.tables[1].kind = TableKind::Qr {
        collisions: 16,
        operation,
    };
    c.tables[2].kind = TableKind::Qr {
        collisions: 3,
        operation,
    };
    c
}

/// `steps` steps of the QR model with `options` against the twin: loss, every gradient, every
/// updated parameter (SGD; Adagrad from a zero accumulator, so one step).
fn check_against_twin(operation: QrOperation, options: DlrmOptions, steps: usize) {
    let config = qr_config(3, operation);
    let mut m = Dlrm::new(&gpu(), config.clone(), options.clone()).unwrap();
    let names: Vec<String> = m.parameter_names().into_iter().map(|(n, _)| n).collect();
    for t in [1, 2] {
        assert!(names.contains(&format!("emb_l.{t}.weight_q")), "{names:?}");
        assert!(names.contains(&format!("emb_l.{t}.weight_r")), "{names:?}");
    }
    // dlrm's init: U(sqrt(1/N), 1) for both parts (N the table's full rows).
    let wq = m.parameter("emb_l.1.weight_q").unwrap();
    let lo = (1.0f32 / 200.0).sqrt();
    assert!(wq.iter().all(|&v| (lo..1.0).contains(&v)), "init range");
    for (i, b) in [13usize, 8].into_iter().take(steps).enumerate() {
        let (dense, sparse, labels) = common::random_dlrm_batch(&config, b, 40 + i as u64);
        let before = common::parameters_of(&m);
        let want = twin::step(&twin_model(&config), &before, &dense, &sparse, &labels).unwrap();
        m.train_step(&DlrmBatch {
            dense: &dense,
            sparse: &sparse,
            labels: &labels,
        })
        .unwrap();
        let what = format!("{operation:?} {:?} step {i}", options.optimizer);
        let stats = m.take_stats().unwrap();
        assert_close(
            &format!("{what} loss"),
            &[stats[0].loss as f32],
            &[want.loss],
            2e-5,
            0.0,
        );
        assert_eq!(stats[0].non_finite_code, 0, "{what}");
        assert_eq!(
            want.grads.len(),
            names.len(),
            "{what}: a gradient per parameter"
        );
        for (n, g) in &want.grads {
            assert_close(
                &format!("{what} grad {n}"),
                &m.gradient(n).unwrap(),
                g,
                2e-5,
                1e-7,
            );
            let updated = match options.optimizer {
                OptimizerKind::Sgd => want.updated[n].clone(),
                OptimizerKind::Adagrad { eps } => {
                    let zero = vec![0.0; g.len()];
                    let w = to_f64(&before[n]);
                    let lr = config.learning_rate as f64;
                    twin_nn::adagrad(&w, &zero, g, lr, eps as f64).0
                }
            };
            assert_close(
                &format!("{what} updated {n}"),
                &m.parameter(n).unwrap(),
                &updated,
                2e-5,
                1e-7,
            );
        }
    }
}

#[test]
fn dlrm_steps_with_qr_tables_match_twin_sgd_and_adagrad() {
    for op in [QrOperation::Mult, QrOperation::Add, QrOperation::Concat] {
        check_against_twin(op, DlrmOptions::default(), 2);
        let adagrad = DlrmOptions {
            optimizer: OptimizerKind::Adagrad { eps: 1e-2 },
            ..Default::default()
        };
        check_against_twin(op, adagrad, 1);
    }
    // The GPU class: the parts' backward in pieces.
    let gpu_class = DlrmOptions {
        kernels: KernelClass::Gpu,
        ..Default::default()
    };
    check_against_twin(QrOperation::Mult, gpu_class, 2);
}

#[test]
fn qr_training_is_bitwise_deterministic_and_every_node_has_a_cost() {
    let config = qr_config(5, QrOperation::Mult);
    let run = || {
        let mut m = Dlrm::new(&gpu(), config.clone(), DlrmOptions::default()).unwrap();
        for i in 0..3 {
            let (dense, sparse, labels) = common::random_dlrm_batch(&config, 16, 70 + i);
            m.train_step(&DlrmBatch {
                dense: &dense,
                sparse: &sparse,
                labels: &labels,
            })
            .unwrap();
        }
        let mut p: Vec<(String, Vec<u32>)> = common::parameters_of(&m)
            .into_iter()
            .map(|(n, v)| (n, bits(&v)))
            .collect();
        p.sort();
        (p, m)
    };
    let (a, mut m) = run();
    let (b, _) = run();
    assert!(a == b, "two runs differ");
    let counts = m.train_counts(16).unwrap();
    let qr_nodes: Vec<_> = counts
        .iter()
        .filter(|c| c.kernel.is_some_and(|k| k.starts_with("qr_")))
        .collect();
    assert_eq!(qr_nodes.len(), 2, "combine and its backward");
    for c in counts.iter().filter(|c| c.kernel.is_some()) {
        assert!(c.cost.is_some(), "{} has no cost", c.label);
    }
}

#[test]
fn bad_input_and_unsupported_uses_are_named_errors() {
    let config = qr_config(7, QrOperation::Add);
    let mut m = Dlrm::new(&gpu(), config.clone(), DlrmOptions::default()).unwrap();
    let (dense, mut sparse, labels) = common::random_dlrm_batch(&config, 4, 2);
    let tables = config.tables.len();
    sparse[2 * tables + 1] = 200; // sample 2, table 1 (200 rows, QR)
    let batch = DlrmBatch {
        dense: &dense,
        sparse: &sparse,
        labels: &labels,
    };
    let e = m.train_step(&batch).unwrap_err().to_string();
    assert!(
        e.contains("table 1") && e.contains("id 200 of sample 2"),
        "{e}"
    );
    sparse[2 * tables + 1] = 3;
    let batch = DlrmBatch {
        dense: &dense,
        sparse: &sparse,
        labels: &labels,
    };
    let e = m
        .train_step_parallel(&batch, &ttrec::dist::Solo)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--embedding qr is not supported in data-parallel"),
        "{e}"
    );
    let e = m.prepare_parallel(4, 2).unwrap_err().to_string();
    assert!(
        e.contains("--embedding qr is not supported in data-parallel"),
        "{e}"
    );
    let e = m.gradient("emb_l.1.weight_q").unwrap_err().to_string();
    assert!(e.contains("no training step"), "{e}");
    let e = m.parameter("emb_l.0.weight_q").unwrap_err().to_string();
    assert!(
        e.contains("table 0") && e.contains("not a quotient-remainder"),
        "{e}"
    );
    let e = m
        .set_parameter("emb_l.1.weight_r", &[0.0; 3])
        .unwrap_err()
        .to_string();
    assert!(e.contains("table 1") && e.contains("3 values"), "{e}");
    // Concat's D/2 parts and mult's D parts in one model: refused, naming the table.
    let mut mixed = qr_config(7, QrOperation::Mult);
    mixed.tables[2].kind = TableKind::Qr {
        collisions: 3,
        operation: QrOperation::Concat,
    };
    let e = Dlrm::new(&gpu(), mixed, DlrmOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("table 2") && e.contains("concat"), "{e}");
}

#[test]
fn a_model_loaded_from_its_parameters_predicts_bitwise_the_same() {
    let config = qr_config(9, QrOperation::Concat);
    let mut m = Dlrm::new(&gpu(), config.clone(), DlrmOptions::default()).unwrap();
    let (dense, sparse, labels) = common::random_dlrm_batch(&config, 12, 3);
    let batch = DlrmBatch {
        dense: &dense,
        sparse: &sparse,
        labels: &labels,
    };
    m.train_step(&batch).unwrap();
    let p = m.predict(&batch).unwrap();
    let mut z = Dlrm::zeroed(&gpu(), config, DlrmOptions::default()).unwrap();
    assert_ne!(bits(&z.predict(&batch).unwrap()), bits(&p));
    for (n, v) in common::parameters_of(&m) {
        z.set_parameter(&n, &v).unwrap();
    }
    assert_eq!(bits(&z.predict(&batch).unwrap()), bits(&p));
}

fn ttrec(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("running ttrec");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The tensor names of a safetensors file (its JSON header).
fn tensor_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn ttrec_train_embedding_qr_saves_a_model_that_predict_scores_with_the_runs_auc() {
    let dir = temp_dir("qr-cli");
    let text = criteo::sample_text();
    let lines: Vec<&str> = text.lines().collect();
    let train = dir.join("train.txt");
    std::fs::write(&train, &text).unwrap();
    let (ck, summary) = (dir.join("ck.safetensors"), dir.join("summary.json"));
    let (ok, out, err) = ttrec(&[
        "train",
        "--data",
        s(&train),
        "--processed-data-file",
        s(&dir.join("train.ttcache")),
        "--test-fraction",
        "0.2",
        "--arch-mlp-bot",
        "13-32-16",
        "--arch-mlp-top",
        "32-1",
        "--mini-batch-size",
        "16",
        "--embedding",
        "qr",
        "--qr-threshold",
        "10",
        "--qr-collisions",
        "4",
        "--qr-operation",
        "concat",
        "--arch-sparse-feature-size",
        "8", // concat: the bottom MLP ends in twice that (dlrm)
        "--optimizer",
        "adagrad",
        "--save-model",
        s(&ck),
        "--summary-json",
        s(&summary),
    ]);
    assert!(ok, "{out}\n{err}");
    let names = tensor_names(&ck);
    for t in [0, 25] {
        assert!(names.contains(&format!("emb_l.{t}.weight_q")), "{names:?}");
        assert!(names.contains(&format!("emb_l.{t}.weight_r")), "{names:?}");
    }
    let sum: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(sum["config"]["optimizer"], "adagrad", "{sum}");
    let run_auc = sum["auc"].as_f64().unwrap();
    assert_eq!(sum["eval_samples"], 40);
    let eval = dir.join("eval.txt");
    std::fs::write(&eval, lines[160..].join("\n") + "\n").unwrap();
    let scores = dir.join("scores.tsv");
    let (ok, out, err) = ttrec(&[
        "predict",
        "--model",
        s(&ck),
        "--data",
        s(&eval),
        "--out",
        s(&scores),
        "--mini-batch-size",
        "40",
    ]);
    assert!(ok, "{out}\n{err}");
    let p: Vec<f32> = std::fs::read_to_string(&scores)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
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

#[test]
fn ttrec_train_runs_with_embedding_qr_and_with_dlrms_qr_flags_on_synthetic_data() {
    let dir = temp_dir("qr-synthetic");
    let base = [
        "train",
        "--synthetic-scale",
        "0.001",
        "--synthetic-samples",
        "2000",
        "--num-batches",
        "5",
        "--mini-batch-size",
        "64",
        "--arch-mlp-bot",
        "13-32-16",
        "--arch-mlp-top",
        "32-1",
    ];
    for (i, extra) in [
        vec!["--embedding", "qr"],
        vec![
            "--qr-flag",
            "--qr-collisions",
            "4",
            "--qr-operation",
            "mult",
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let ck = dir.join(format!("ck{i}.safetensors"));
        let summary = dir.join(format!("summary{i}.json"));
        let mut args: Vec<&str> = base.to_vec();
        args.extend(extra.iter());
        args.extend(["--save-model", s(&ck), "--summary-json", s(&summary)]);
        let (ok, out, err) = ttrec(&args);
        assert!(ok, "{extra:?}\n{out}\n{err}");
        assert!(out.contains(" quotient-remainder)"), "{out}");
        let sum: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        assert!(sum["auc"].as_f64().unwrap().is_finite(), "{sum}");
        let names = tensor_names(&ck);
        assert!(
            names.iter().any(|n| n.ends_with("weight_q")),
            "{extra:?}: no QR table in the model: {names:?}"
        );
    }
}
