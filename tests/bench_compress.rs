//! `ttrec bench compress` (the same run once per compression method) and `ttrec plan` for every
//! table kind: rows per method with finite metrics and the bytes `ttrec plan` gives; the same
//! run as `ttrec train`; a failing method reported while the others run, and a non-zero exit;
//! QR and MD plans checked against the sizes computed here from the table rows.

mod common;

use std::process::Command;

use clap::Parser;
use ttrec::bench::compress::method_args;
use ttrec::data::scaled_table_sizes;
use ttrec::train::{EmbeddingKind, TrainArgs};

const BIN: &str = env!("CARGO_BIN_EXE_ttrec");

/// The tiny synthetic run every training here makes (a few seconds on lavapipe).
const TINY: [&str; 8] = [
    "--synthetic-scale",
    "0.001",
    "--synthetic-samples",
    "2000",
    "--num-batches",
    "5",
    "--mini-batch-size",
    "64",
];

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn ttrec(args: &[&str]) -> Run {
    let out = Command::new(BIN).args(args).output().expect("runs ttrec");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn with(head: &[&str], tail: &[&str]) -> Vec<String> {
    head.iter().chain(tail).map(|s| s.to_string()).collect()
}

fn run(args: &[String]) -> Run {
    ttrec(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn json_lines(r: &Run) -> Vec<serde_json::Value> {
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `ttrec plan --json` of the tiny run with `extra`.
fn plan(extra: &[&str]) -> serde_json::Value {
    let r = run(&with(
        &["plan", "--json"],
        &with(&TINY, extra)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
    assert!(r.ok, "{}", r.stderr);
    serde_json::from_str(r.stdout.trim()).unwrap()
}

#[test]
fn methods_side_by_side_match_plan_and_train() {
    let r = run(&with(
        &["bench", "compress", "--methods", "tt,dense", "--json"],
        &TINY,
    ));
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let rows = json_lines(&r);
    assert_eq!(rows.len(), 2, "{}", r.stdout);
    for (row, method) in rows.iter().zip(["tt", "dense"]) {
        assert_eq!(row["type"], "bench_compress");
        assert_eq!(row["method"], method);
        assert_eq!(row["ok"], true, "{row}");
        assert!(row["adapter"].as_str().is_some_and(|a| !a.is_empty()));
        assert_eq!(row["settings"]["seed"], 0);
        assert_eq!(row["settings"]["num_batches"], 5);
        let auc = row["auc"].as_f64().unwrap();
        assert!(auc.is_finite() && auc > 0.0 && auc < 1.0, "{row}");
        assert!(row["logloss"].as_f64().unwrap().is_finite());
        assert!(row["train_samples_per_s"].as_f64().unwrap() > 0.0);
        assert_eq!(row["train_samples"], 5 * 64);
        // The bytes are the plan's of the same options.
        let p = plan(&["--embedding", method]);
        assert_eq!(row["embedding_bytes"], p["embedding_bytes"], "{method}");
        assert_eq!(row["dense_embedding_bytes"], p["dense_embedding_bytes"]);
        assert_eq!(
            row["model_bytes"].as_u64().unwrap(),
            p["embedding_bytes"].as_u64().unwrap() + p["mlp_bytes"].as_u64().unwrap()
        );
        assert_eq!(
            row["embedding_params"].as_u64().unwrap() * 4,
            p["embedding_bytes"]
        );
        let kind = p["tables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["form"] == method)
            .count();
        assert_eq!(row["tables_of_kind"], kind);
    }
    assert_eq!(rows[1]["tables_of_kind"], 26);
    assert_eq!(rows[1]["x_smaller"], 1.0);
    assert!(rows[0]["x_smaller"].as_f64().unwrap() > 1.0);
    assert!(rows[0]["tables_of_kind"].as_u64().unwrap() > 0);
    // The tt row is `ttrec train --embedding tt` with the same options, bit for bit.
    let dir = common::temp_dir("bench-compress-train");
    let summary = dir.join("s.json");
    let t = run(&with(
        &["train", "--summary-json", summary.to_str().unwrap()],
        &TINY,
    ));
    assert!(t.ok, "{}", t.stderr);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["auc"], rows[0]["auc"]);
    assert_eq!(s["logloss"], rows[0]["logloss"]);
    // The summary counts the tables of each kind, as the plan has them.
    assert_eq!(s["tables_by_kind"]["tt"], rows[0]["tables_of_kind"]);
    let tt = rows[0]["tables_of_kind"].as_u64().unwrap();
    assert_eq!(s["tables_by_kind"]["dense"], 26 - tt);
    assert_eq!(s["tables_by_kind"]["qr"], 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_failing_method_is_reported_and_the_others_run() {
    let dir = common::temp_dir("bench-compress-fail");
    let out = dir.join("table.txt");
    // Column factors of product 9 cannot make D = 16: tt fails, dense still trains.
    let r = run(&with(
        &[
            "bench",
            "compress",
            "--methods",
            "dense,tt",
            "--tt-q-shapes",
            "3,3",
            "--out",
            out.to_str().unwrap(),
        ],
        &TINY,
    ));
    assert!(!r.ok, "{}", r.stdout);
    assert!(
        r.stderr.contains("1 of 2 methods failed: tt"),
        "{}",
        r.stderr
    );
    let dense = r.stdout.lines().find(|l| l.starts_with("dense ")).unwrap();
    let fields: Vec<&str> = dense.split_whitespace().collect();
    assert_eq!(fields[1], "26/26", "{dense}");
    // The last five columns: AUC, log loss, accuracy, samples/s, evaluation seconds.
    let auc: f64 = fields[fields.len() - 5]
        .parse()
        .unwrap_or_else(|_| panic!("{dense}"));
    assert!(auc > 0.0 && auc < 1.0, "{dense}");
    let tt = r.stdout.lines().find(|l| l.starts_with("tt ")).unwrap();
    assert!(
        tt.contains("error: ") && tt.contains("--tt-q-shapes 3,3"),
        "{tt}"
    );
    // --out holds the same table.
    assert_eq!(std::fs::read_to_string(&out).unwrap(), r.stdout);
    // Options that would make every method write one file, or choose one method, are refused.
    let r = ttrec(&["bench", "compress", "--summary-json", "x.json"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("--summary-json is not an option of bench compress")
    );
    let r = ttrec(&["bench", "compress", "--out", "/nonexistent-dir/table.txt"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("cannot write in the directory /nonexistent-dir"),
        "{}",
        r.stderr
    );
    let r = ttrec(&["bench", "compress", "--embedding", "dense"]);
    assert!(
        !r.ok && r.stderr.contains("takes --methods"),
        "{}",
        r.stderr
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[derive(Parser)]
struct Wrap {
    #[command(flatten)]
    train: TrainArgs,
}

#[test]
fn each_method_keeps_only_its_own_options() {
    let base = Wrap::parse_from([
        "x",
        "--tt-rank",
        "8",
        "--qr-operation",
        "concat",
        "--md-temperature",
        "0.5",
    ])
    .train;
    let (tt, _) = method_args(&base, EmbeddingKind::Tt);
    assert_eq!((tt.tt_rank, tt.baselines.qr_operation), (Some(8), None));
    assert!(tt.check().is_ok());
    let (qr, note) = method_args(&base, EmbeddingKind::Qr);
    assert_eq!(qr.tt_rank, None);
    assert_eq!(qr.baselines.md_temperature, None);
    // QR concat: the bottom MLP ends in 2 D, as dlrm builds it.
    assert_eq!(qr.arch_mlp_bot, "13-512-256-64-32");
    assert!(note.unwrap().contains("13-512-256-64-32"));
    assert!(qr.check().is_ok());
    let (md, _) = method_args(&base, EmbeddingKind::Md);
    assert_eq!(md.baselines.md_temperature, Some(0.5));
    assert!(md.check().is_ok());
    let (dense, _) = method_args(&base, EmbeddingKind::Dense);
    assert!(dense.check().is_ok());
}

#[test]
fn plan_prints_qr_and_md_tables() {
    let rows = scaled_table_sizes(0.001).unwrap();
    let d = 16u64;
    // QR: tables of more than 200 rows (dlrm's threshold), ceil(n / 4) + 4 rows of D.
    let p = plan(&["--embedding", "qr"]);
    let tables = p["tables"].as_array().unwrap();
    let mut want_total = 0;
    for (t, &n) in rows.iter().enumerate() {
        let table = &tables[t];
        assert_eq!(table["rows"], n);
        let bytes = if n > 200 {
            assert_eq!(table["form"], "qr", "{table}");
            assert_eq!(table["qr"]["quotient_rows"], n.div_ceil(4));
            assert_eq!(table["qr"]["remainder_rows"], 4);
            assert_eq!(table["qr"]["operation"], "mult");
            4 * (n.div_ceil(4) + 4) * d
        } else {
            assert_eq!(table["form"], "dense", "{table}");
            4 * n * d
        };
        assert_eq!(table["param_bytes"], bytes, "{table}");
        want_total += bytes;
    }
    assert_eq!(p["embedding_bytes"], want_total);
    // Concat: D = 32 (the bottom MLP ends in twice --arch-sparse-feature-size, as dlrm), each
    // part D/2 = 16 wide; 10 collisions; Adagrad doubles each table's bytes.
    let p = plan(&[
        "--embedding",
        "qr",
        "--qr-operation",
        "concat",
        "--qr-collisions",
        "10",
        "--arch-mlp-bot",
        "13-512-256-64-32",
        "--optimizer",
        "adagrad",
    ]);
    let big = rows.iter().position(|&n| n > 200).unwrap();
    let t = &p["tables"][big];
    let n = rows[big];
    assert_eq!(t["qr"]["part_dim"], 16);
    assert_eq!(t["param_bytes"], 4 * (n.div_ceil(10) + 10) * 16);
    assert_eq!(t["optimizer_bytes"], t["param_bytes"]);
    // MD: dlrm's alpha-power widths (alpha 0.3, anchored at the smallest table) and a
    // projection to D, for the tables above 200 rows.
    let p = plan(&["--embedding", "md"]);
    let n_min = *rows.iter().min().unwrap() as f64;
    for (t, &n) in rows.iter().enumerate() {
        let table = &p["tables"][t];
        if n <= 200 {
            assert_eq!(table["form"], "dense", "{table}");
            continue;
        }
        let w = (16.0 * (n_min / n as f64).powf(0.3)).max(1.0).round() as u64;
        if w >= d {
            continue; // as wide as D: dense
        }
        assert_eq!(table["form"], "md", "{table}");
        assert_eq!(table["md"]["width"], w, "{table}");
        assert_eq!(table["md"]["projection"], serde_json::json!([w, d]));
        assert_eq!(table["param_bytes"], 4 * (n * w + w * d), "{table}");
    }
    // The text table names the kinds and their sizes.
    let r = ttrec(&["plan", "--synthetic-scale", "0.001", "--embedding", "qr"]);
    assert!(r.ok, "{}", r.stderr);
    let line = r.stdout.lines().find(|l| l.contains(" qr ")).unwrap();
    assert!(line.contains(" + 4 rows x 16, mult"), "{line}");
    assert!(r.stdout.contains("QR)"), "{}", r.stdout);
    let r = ttrec(&["plan", "--synthetic-scale", "0.001", "--embedding", "md"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains(", projection "), "{}", r.stdout);
}
