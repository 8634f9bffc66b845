//! Issue 19 items 1 and 2: a trained model scores what it never saw. A model saved at the end of
//! a short run on the Criteo sample, scored with `ttrec predict` on the run's evaluation lines,
//! gives the run's final AUC; the probabilities come in input order (also from lines without
//! labels); a file with unseen
//! categories and a malformed line scores (NaN in that line's place), and so does its data
//! store (its own dictionaries mapped to the model's); `train --inference-only`
//! evaluates without training; `Dlrm::score_into` writes into an app's buffer in the app's
//! encoder bitwise what the host path returns; a model saved by an app loads and scores alike.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use ttrec::data::{Categories, Encoding, NUM_SPARSE};
use ttrec::dlrm::{Dlrm, DlrmBatch, DlrmConfig, DlrmOptions, TableConfig, TableKind};

const BIN: &str = env!("CARGO_BIN_EXE_ttrec");

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

fn read_tsv(p: &Path) -> Vec<f32> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn read_npy(p: &Path) -> Vec<f32> {
    let b = std::fs::read(p).unwrap();
    assert_eq!(&b[..6], b"\x93NUMPY");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    b[10 + hlen..]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn labels_of(lines: &[&str]) -> Vec<f32> {
    lines.iter().map(|l| l[..1].parse().unwrap()).collect()
}

#[test]
fn a_saved_model_scores_its_evaluation_lines_with_the_runs_auc_in_input_order() {
    let dir = temp_dir("predict");
    let text = sample_text();
    let lines: Vec<&str> = text.lines().collect();
    let train = dir.join("train.txt");
    std::fs::write(&train, &text).unwrap();
    let (ck, summary, store) = (
        dir.join("ck.safetensors"),
        dir.join("summary.json"),
        dir.join("train.ttcache"),
    );
    let common = [
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
    ];
    let mut args = vec!["train", "--mini-batch-size", "16", "--learning-rate", "0.5"];
    args.extend(common);
    args.extend(["--save-model", s(&ck), "--summary-json", s(&summary)]);
    let (ok, out, err) = ttrec(&args);
    assert!(ok, "{out}\n{err}");
    let sum: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let run_auc = sum["auc"].as_f64().unwrap();
    assert_eq!(sum["eval_samples"], 40);

    // The evaluation split is the last 40 lines (in file order); scored in one batch of 40 as
    // the run did.
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
    assert!(
        out.contains("scored 40 samples") && out.contains("samples/s"),
        "{out}"
    );
    let p = read_tsv(&scores);
    assert_eq!(p.len(), 40);
    let auc = ttrec::metrics::roc_auc(&labels_of(&lines[160..]), &p).unwrap();
    assert!(
        (auc - run_auc).abs() <= 1e-6,
        "predict AUC {auc} vs the run's {run_auc}"
    );
    assert!(out.contains(&format!("AUC {auc:.6}")), "{out}");

    // Input order: the lines reversed give the probabilities reversed (as .npy); here without
    // their labels, as Kaggle's test.txt (39 fields): no metrics then.
    let rev = dir.join("reversed.txt");
    let mut back: Vec<&str> = lines[160..].iter().map(|l| &l[2..]).collect();
    back.reverse();
    std::fs::write(&rev, back.join("\n") + "\n").unwrap();
    let npy = dir.join("reversed.npy");
    let (ok, out, err) = ttrec(&[
        "predict",
        "--model",
        s(&ck),
        "--data",
        s(&rev),
        "--out",
        s(&npy),
        "--mini-batch-size",
        "40",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("no labels") && !out.contains("evaluation on"),
        "{out}"
    );
    let mut q = read_npy(&npy);
    q.reverse();
    assert_eq!(q, p, "the probabilities follow the input order");

    // dlrm's --inference-only: the same evaluation, no training step.
    let inf_summary = dir.join("inference.json");
    let mut args = vec!["train", "--inference-only", "--load-model", s(&ck)];
    args.extend(common);
    args.extend(["--summary-json", s(&inf_summary)]);
    let (ok, out, err) = ttrec(&args);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("inference only") && !out.contains("Finished training"),
        "{out}"
    );
    let inf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&inf_summary).unwrap()).unwrap();
    let inf_auc = inf["auc"].as_f64().unwrap();
    assert!((inf_auc - run_auc).abs() <= 1e-6, "{inf_auc} vs {run_auc}");
    assert_eq!(inf["train_samples"], 0);

    // Another file: unseen categories in C1 and C5, a malformed line in the middle.
    let mut other: Vec<String> = lines[..30].iter().map(|l| l.to_string()).collect();
    for (i, l) in other.iter_mut().enumerate().take(10) {
        let mut f: Vec<String> = l.split('\t').map(String::from).collect();
        f[14] = format!("{:08x}", 0xdead_0000u32 + i as u32);
        f[18] = "0badf00d".into();
        *l = f.join("\t");
    }
    other.insert(12, "not\ta\tcriteo\tline".into());
    let unseen = dir.join("other.txt");
    std::fs::write(&unseen, other.join("\n") + "\n").unwrap();
    let (ok, out, err) = ttrec(&["predict", "--model", s(&ck), "--data", s(&unseen)]);
    assert!(ok, "{out}\n{err}");
    let q: Vec<f32> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(q.len(), 31, "one line out per line in");
    assert!(q[12].is_nan(), "the malformed line's place holds NaN");
    assert!(q
        .iter()
        .enumerate()
        .all(|(i, v)| i == 12 || (0.0..=1.0).contains(v)));
    assert!(err.contains("1 malformed"), "{err}");
    assert!(err.contains("C1: 10, C5: 10"), "{err}");

    // The same file as a data store of its own (other dictionaries): its ids are mapped
    // through its dictionaries to the model's, giving the same probabilities.
    let other_store = dir.join("other.ttcache");
    let (ok, out, err) = ttrec(&["data", "preprocess", s(&unseen), "--store", s(&other_store)]);
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) = ttrec(&["predict", "--model", s(&ck), "--data", s(&other_store)]);
    assert!(ok, "{out}\n{err}");
    let from_store: Vec<f32> = out.lines().map(|l| l.parse().unwrap()).collect();
    let valid: Vec<f32> = q.iter().copied().filter(|v| !v.is_nan()).collect();
    assert_eq!(from_store.len(), 30);
    for (a, b) in from_store.iter().zip(&valid) {
        assert!((a - b).abs() <= 1e-6, "{from_store:?}\n{valid:?}");
    }
    assert!(err.contains("C1: 10, C5: 10"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

fn small_config() -> DlrmConfig {
    DlrmConfig {
        bottom_mlp: vec![13, 16, 8],
        top_mlp: vec![16, 1],
        tables: (0..NUM_SPARSE)
            .map(|t| TableConfig {
                rows: 50 + 7 * t as u64,
                kind: TableKind::Dense,
            })
            .collect(),
        learning_rate: 0.1,
        tt_init: ttrec::tt::TtInit::SampledGaussian,
        seed: 3,
    }
    .with_tt_largest(2, 4)
    .unwrap()
}

/// The app's path: `Dlrm::score_into` in the app's encoder, into the app's buffer at an offset,
/// bitwise the host path's probabilities; saved with `save_model`, loaded with `load_model`,
/// the model scores the same; a buffer without COPY_DST is a named error.
#[test]
fn score_into_an_apps_buffer_matches_the_host_path_and_a_saved_model_loads() {
    let gpu = gpu();
    let config = small_config();
    let mut model = Dlrm::new(&gpu, config.clone(), DlrmOptions::default()).unwrap();
    let b = 24;
    let mut r = rng(5);
    let dense = values(&mut r, b * 13)
        .iter()
        .map(|v| v.abs() * 3.0)
        .collect::<Vec<_>>();
    let sparse: Vec<u32> = (0..b * NUM_SPARSE)
        .map(|i| ((i * 7919 + 13) % 50) as u32)
        .collect();
    let labels: Vec<f32> = (0..b).map(|i| (i % 3 == 0) as u32 as f32).collect();
    let batch = DlrmBatch {
        dense: &dense,
        sparse: &sparse,
        labels: &labels,
    };
    for _ in 0..3 {
        model.train_step(&batch).unwrap();
    }
    let host = model.predict(&batch).unwrap();
    assert!(host.iter().all(|p| *p > 0.0 && *p < 1.0));

    let out = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("app scores"),
        size: 4 * (b as u64 + 8),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut enc = gpu.device().create_command_encoder(&Default::default());
    model.score_into(&batch, &out, 32, &mut enc).unwrap();
    gpu.queue().submit([enc.finish()]);
    let on_gpu = gpu.read_f32(&out, 8, b).unwrap();
    assert_eq!(bits(&on_gpu), bits(&host));

    let mut enc = gpu.device().create_command_encoder(&Default::default());
    let err = model
        .score_into(&batch, &out, 40, &mut enc)
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not fit"), "{err}");
    let no_dst = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("read only"),
        size: 4 * b as u64,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let err = model
        .score_into(&batch, &no_dst, 0, &mut enc)
        .unwrap_err()
        .to_string();
    assert!(err.contains("COPY_DST"), "{err}");

    let dir = temp_dir("predict-app");
    let path = dir.join("app.safetensors");
    let encoding = Encoding {
        max_ind_range: None,
        categories: Categories::Modulo(std::array::from_fn(|t| config.tables[t].rows)),
    };
    ttrec::predict::save_model(&path, &model, &encoding).unwrap();
    let (mut loaded, enc2) =
        ttrec::predict::load_model(&gpu, &path, DlrmOptions::default()).unwrap();
    assert_eq!(enc2, encoding);
    assert_eq!(loaded.steps(), 3);
    assert_eq!(bits(&loaded.predict(&batch).unwrap()), bits(&host));
    std::fs::remove_dir_all(dir).unwrap();
}
