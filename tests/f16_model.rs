//! f16 TT cores in files and runs (`--tt-precision f16`): a TT checkpoint keeps f16 cores as F16
//! tensors and loads as an f16 table with bitwise the same cores; a short DLRM run in f16 learns
//! (loss down, finite), records the precision, saves F16 cores that `ttrec predict` scores with
//! the run's AUC and that `--load-model` resumes in f16; an adapter without SHADER_F16
//! (lavapipe's GL adapter) fails the run with an error naming the feature and the flag.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use ttrec::tt::checkpoint::read_safetensors;
use ttrec::tt::{Bags, CorePrecision, Optimizer, TtEmbeddingBag, TtOptions, TtShape};

const BIN: &str = env!("CARGO_BIN_EXE_ttrec");

fn ttrec(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running ttrec");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An f16 table's checkpoint holds F16 cores and `tt_precision` f16; it loads (whatever the
/// options ask) as an f16 table with the same cores, state and forward, bitwise.
#[test]
fn a_tt_checkpoint_keeps_f16_cores() {
    let g = gpu();
    let shape = TtShape::new(90, &[9, 11], &[4, 4], &[8]).unwrap();
    let opts = TtOptions {
        optimizer: Optimizer::Adagrad {
            lr: 0.05,
            eps: 1e-8,
        },
        precision: CorePrecision::F16,
        ..TtOptions::default()
    };
    let mut t =
        TtEmbeddingBag::from_cores(&g, shape.clone(), &random_cores(&shape, 3), opts.clone())
            .unwrap();
    let mut r = rng(4);
    let (idx, off) = bags(&mut r, 16, 4, 90);
    let b = Bags::new(&idx, &off);
    t.forward_backward(&b, &values(&mut r, 16 * 16)).unwrap();
    let path = temp_dir("f16-tt-ck").join("t.safetensors");
    t.save(&path).unwrap();
    let (meta, tensors) = read_safetensors(&path).unwrap();
    assert_eq!(meta.get("tt_precision").map(String::as_str), Some("f16"));
    assert_eq!(tensors["tt_cores.0"].dtype, safetensors::Dtype::F16);
    assert_eq!(tensors["tt_cores.0"].data.len(), shape.core_len(0) * 2);
    assert_eq!(
        tensors["optimizer_state.optimizer_state0"].dtype,
        safetensors::Dtype::F32
    );
    let asked_f32 = TtOptions {
        precision: CorePrecision::F32,
        ..opts
    };
    let mut back = TtEmbeddingBag::load(&g, &path, asked_f32).unwrap();
    assert_eq!(back.params().precision(), CorePrecision::F16);
    let (a, c) = (t.cores().unwrap(), back.cores().unwrap());
    for k in 0..2 {
        assert_eq!(bits(&a[k]), bits(&c[k]), "core {k}");
    }
    let (sa, sc) = (
        t.optimizer_state().unwrap().unwrap(),
        back.optimizer_state().unwrap().unwrap(),
    );
    assert_eq!(bits(&sa[1]), bits(&sc[1]));
    assert_eq!(
        bits(&back.forward(&b).unwrap()),
        bits(&t.forward(&b).unwrap())
    );
}

/// A short run in f16 on the Criteo sample learns and stays finite; its checkpoint has F16 TT
/// cores, `ttrec predict` scores it with the run's AUC, and `--load-model` resumes it in f16.
#[test]
fn a_dlrm_trains_saves_predicts_and_resumes_in_f16() {
    let dir = temp_dir("f16-train");
    let text = sample_text();
    let lines: Vec<&str> = text.lines().collect();
    let train = dir.join("train.txt");
    std::fs::write(&train, &text).unwrap();
    let (ck, summary, metrics, store) = (
        dir.join("ck.safetensors"),
        dir.join("summary.json"),
        dir.join("metrics.jsonl"),
        dir.join("train.ttcache"),
    );
    let common = [
        "train",
        "--data",
        s(&train),
        "--processed-data-file",
        s(&store),
        "--test-fraction",
        "0.2",
        "--arch-mlp-bot",
        "13-32-16",
        "--arch-mlp-top",
        "32-1",
        "--tt-rank",
        "4",
        "--mini-batch-size",
        "16",
        "--learning-rate",
        "0.5",
        "--print-freq",
        "2",
    ];
    let mut args = common.to_vec();
    args.extend([
        "--nepochs",
        "3",
        "--tt-precision",
        "f16",
        "--save-model",
        s(&ck),
        "--summary-json",
        s(&summary),
        "--metrics-jsonl",
        s(&metrics),
    ]);
    let (ok, out, err) = ttrec(&args, &[]);
    assert!(ok, "{out}\n{err}");
    let sum: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(sum["config"]["tt_precision"], "f16", "{sum}");
    let losses: Vec<f64> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["kind"] == "train")
        .map(|l| l["logloss"].as_f64().unwrap())
        .collect();
    assert!(losses.len() >= 6, "{losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let third = losses.len() / 3;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(&losses[losses.len() - third..]) < mean(&losses[..third]),
        "the loss did not decrease: {losses:?}"
    );
    // The checkpoint: F16 TT cores, recorded precision.
    let (meta, tensors) = read_safetensors(&ck).unwrap();
    assert_eq!(meta.get("tt_precision").map(String::as_str), Some("f16"));
    let cores: Vec<_> = tensors
        .iter()
        .filter(|(n, _)| n.contains(".tt_cores."))
        .collect();
    assert!(!cores.is_empty());
    assert!(cores
        .iter()
        .all(|(_, t)| t.dtype == safetensors::Dtype::F16));
    let loaded = ttrec::train::checkpoint::load(&ck).unwrap();
    assert_eq!(loaded.meta.tt_precision, CorePrecision::F16);
    // predict scores the f16 model as the run evaluated it.
    let eval = dir.join("eval.txt");
    std::fs::write(&eval, lines[160..].join("\n") + "\n").unwrap();
    let scores = dir.join("scores.tsv");
    let (ok, out, err) = ttrec(
        &[
            "predict",
            "--model",
            s(&ck),
            "--data",
            s(&eval),
            "--out",
            s(&scores),
            "--mini-batch-size",
            "40",
        ],
        &[],
    );
    assert!(ok, "{out}\n{err}");
    let p: Vec<f32> = std::fs::read_to_string(&scores)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let labels: Vec<f32> = lines[160..]
        .iter()
        .map(|l| l[..1].parse().unwrap())
        .collect();
    let auc = ttrec::metrics::roc_auc(&labels, &p).unwrap();
    let run_auc = sum["auc"].as_f64().unwrap();
    assert!(
        (auc - run_auc).abs() <= 1e-6,
        "predict {auc} vs run {run_auc}"
    );
    // Resumed without the flag: f16, from the checkpoint.
    let summary2 = dir.join("summary2.json");
    let mut args = common.to_vec();
    args.extend([
        "--nepochs",
        "4",
        "--load-model",
        s(&ck),
        "--summary-json",
        s(&summary2),
    ]);
    let (ok, out, err) = ttrec(&args, &[]);
    assert!(ok, "{out}\n{err}");
    let sum2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary2).unwrap()).unwrap();
    assert_eq!(sum2["config"]["tt_precision"], "f16", "{sum2}");
}

/// On an adapter without SHADER_F16 the run fails before any data is read, naming the
/// adapter's missing feature and the flag.
#[test]
fn train_on_an_adapter_without_f16_is_a_named_error() {
    let (ok, out, err) = ttrec(
        &[
            "train",
            "--synthetic-samples",
            "200",
            "--synthetic-scale",
            "0.001",
            "--tt-rank",
            "4",
            "--tt-precision",
            "f16",
        ],
        &[("WGPU_BACKEND", "gl")],
    );
    assert!(!ok, "{out}\n{err}");
    assert!(
        err.contains("SHADER_F16") && err.contains("--tt-precision f16"),
        "{out}\n{err}"
    );
    let (ok, out, err) = ttrec(
        &["bench", "tt", "--tt-precision", "f16"],
        &[("WGPU_BACKEND", "gl")],
    );
    assert!(!ok && err.contains("SHADER_F16"), "{out}\n{err}");
}
