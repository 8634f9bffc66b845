//! `ttrec tt convert` (dense <-> TT cores), `ttrec plan`, and in training: `--tt-init
//! from-dense:` warm starts, the plan in the summary, no TT details for a dense model.

mod common;

use std::path::Path;
use std::process::Command;

use ttrec::compress::tt_svd::tt_to_dense_f64;
use ttrec::compress::{tt_svd, RankChoice};
use ttrec::tt::checkpoint::{load_cores, read_safetensors, write_safetensors};

const BIN: &str = env!("CARGO_BIN_EXE_ttrec");

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

fn json_line(r: &Run) -> serde_json::Value {
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn tensor(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let (_, t) = read_safetensors(path).unwrap();
    let t = &t[name];
    (t.shape.clone(), t.f32s(name, path).unwrap())
}

#[test]
fn convert_a_table_to_tt_and_back() {
    let dir = common::temp_dir("compress-convert");
    let src = dir.join("model.safetensors");
    let mut r = common::rng(5);
    let table = common::values(&mut r, 60 * 8);
    write_safetensors(
        &src,
        &[("emb_l.0.weight".to_string(), vec![60, 8], table.clone())],
        Default::default(),
    )
    .unwrap();
    let (s, cores) = (src.to_str().unwrap(), dir.join("cores.safetensors"));
    let c = cores.to_str().unwrap();
    let base = [
        "tt", "convert", "--from", s, "--table", "C1", "--out", c, "--json",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|x| x.to_string()).collect()
    };
    let run = |a: &[String]| ttrec(&a.iter().map(String::as_str).collect::<Vec<_>>());
    // Given ranks, with automatic shapes (60 rows: p = 3,4,5; D = 8: q = 2,2,2).
    let v = json_line(&run(&with(&["--ranks", "3,5"])));
    assert_eq!(v["ranks"], serde_json::json!([3, 5]), "{v}");
    assert_eq!(v["p"], serde_json::json!([3, 4, 5]), "{v}");
    let err = v["relative_error"].as_f64().unwrap();
    assert!(
        err > 0.0 && err <= v["predicted_relative_error"].as_f64().unwrap() + 1e-6,
        "{v}"
    );
    let (shape, got) = load_cores(&cores).unwrap();
    let want = tt_svd(
        &table,
        60,
        &[3, 4, 5],
        &[2, 2, 2],
        &RankChoice::Fixed(vec![3, 5]),
    )
    .unwrap();
    assert_eq!((shape, got.clone()), (want.shape.clone(), want.cores));
    // A tolerance, a budget.
    let v = json_line(&run(&with(&["--tolerance", "0.3"])));
    assert!(v["relative_error"].as_f64().unwrap() <= 0.3, "{v}");
    let v = json_line(&run(&with(&["--budget", "1kB"])));
    assert!(v["tt_bytes"].as_u64().unwrap() <= 1000, "{v}");
    // Back to dense: the cores multiplied out.
    let json_out = json_line(&run(&with(&["--ranks", "2,2"])));
    assert_eq!(json_out["ranks"], serde_json::json!([2, 2]));
    let dense = dir.join("dense.safetensors");
    let d = dense.to_str().unwrap();
    let v = json_line(&ttrec(&[
        "tt",
        "convert",
        "--to-dense",
        "--from",
        c,
        "--out",
        d,
        "--json",
    ]));
    assert_eq!(v["rows"], 60);
    let (shape, cores2) = load_cores(&cores).unwrap();
    let (dims, values) = tensor(&dense, "weight");
    assert_eq!(dims, [60, 8]);
    let want: Vec<f32> = tt_to_dense_f64(&shape, &cores2)
        .unwrap()
        .iter()
        .map(|&x| x as f32)
        .collect();
    assert_eq!(values, want);
    // A table that is not there is named, with the tables that are.
    let r = ttrec(&["tt", "convert", "--from", s, "--table", "C9", "--out", c]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("no tensor emb_l.8.weight") && r.stderr.contains("emb_l.0.weight"),
        "{}",
        r.stderr
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn plan_prints_tables_and_budgets() {
    // At 1/100 of Kaggle's sizes, rank 32: C24 and C26 would not be 2x smaller as TT.
    let v = json_line(&ttrec(&["plan", "--synthetic-scale", "0.01", "--json"]));
    assert_eq!(v["type"], "plan");
    let tables = v["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 26);
    let tt: Vec<&str> = tables
        .iter()
        .filter(|t| t["form"] == "tt")
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tt, ["C3", "C4", "C12", "C16", "C21"], "{v}");
    assert!(v["notes"][0].as_str().unwrap().contains("C24"), "{v}");
    assert!(v["mlp_bytes"].as_u64().unwrap() > 0);
    // A budget on Kaggle's tables.
    let v = json_line(&ttrec(&[
        "plan",
        "--table-sizes",
        "kaggle",
        "--embedding-budget",
        "20MB",
        "--json",
    ]));
    assert!(v["embedding_bytes"].as_u64().unwrap() <= 20_000_000, "{v}");
    let text = ttrec(&["plan", "--table-sizes", "kaggle", "--compression", "100x"]);
    assert!(text.ok, "{}", text.stderr);
    assert!(
        text.stdout.contains("C3 ") && text.stdout.contains("MLPs:"),
        "{}",
        text.stdout
    );
    // Errors that say what is wrong.
    let r = ttrec(&["plan", "--synthetic-scale", "0.01", "--tt-tables", "30"]);
    assert!(
        !r.ok && r.stderr.contains("the data has 26 tables"),
        "{}",
        r.stderr
    );
    let r = ttrec(&["plan", "--embedding", "dense", "--compression", "10x"]);
    assert!(
        !r.ok && r.stderr.contains("need --embedding tt"),
        "{}",
        r.stderr
    );
}

fn small(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "train",
        "--synthetic-samples",
        "1000",
        "--synthetic-scale",
        "0.001",
        "--mini-batch-size",
        "64",
        "--num-batches",
        "2",
        "--arch-mlp-bot",
        "13-32-16",
        "--arch-mlp-top",
        "32-1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// A dense model's line has no TT details; a TT model warm-started from it holds the TT-SVD of
/// its tables and its MLPs; the summary carries the plan.
#[test]
fn warm_start_from_a_dense_model() {
    let dir = common::temp_dir("compress-warm");
    let dense = dir.join("dense.safetensors");
    let d = dense.to_str().unwrap();
    let args = small(&["--embedding", "dense", "--save-model", d]);
    let r = ttrec(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let line = r.stdout.lines().find(|l| l.starts_with("model:")).unwrap();
    assert!(
        line.contains("(all dense)") && !line.contains("TT") && !line.contains("rank"),
        "{line}"
    );
    // TT from it, trained with a learning rate too small to move anything.
    let tt = dir.join("tt.safetensors");
    let summary = dir.join("summary.json");
    let from = format!("from-dense:{d}");
    let args = small(&[
        "--tt-rank",
        "4",
        "--tt-init",
        &from,
        "--learning-rate",
        "1e-30",
        "--save-model",
        tt.to_str().unwrap(),
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    let r = ttrec(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("warm start from") && r.stdout.contains("7 TT tables by TT-SVD"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("(7 TT, ranks 4,4)"), "{}", r.stdout);
    // Table 2 (C3, the largest): its cores are the TT-SVD of the dense table.
    let (dims, table) = tensor(&dense, "emb_l.2.weight");
    let (p, q) = (
        ttrec::tt::suggested_tt_shapes(dims[0] as u64, 3, true),
        [2, 2, 4],
    );
    let svd = tt_svd(
        &table,
        dims[0] as u64,
        &p,
        &q,
        &RankChoice::Fixed(vec![4, 4]),
    )
    .unwrap();
    for (k, want) in svd.cores.iter().enumerate() {
        let (_, got) = tensor(&tt, &format!("emb_l.2.tt_cores.{k}"));
        let max = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-6 * max, "core {k}: {g} vs {w}");
        }
    }
    // The same through `tt convert` on the training checkpoints, both ways.
    let cores = dir.join("c3.safetensors");
    let c = cores.to_str().unwrap();
    let v = json_line(&ttrec(&[
        "tt", "convert", "--from", d, "--table", "C3", "--ranks", "4,4", "--out", c, "--json",
    ]));
    assert_eq!(v["table"], "emb_l.2.weight");
    assert_eq!(load_cores(&cores).unwrap().1, svd.cores);
    let back = dir.join("c3-dense.safetensors");
    let t = tt.to_str().unwrap();
    let b = back.to_str().unwrap();
    json_line(&ttrec(&[
        "tt",
        "convert",
        "--to-dense",
        "--from",
        t,
        "--table",
        "C3",
        "--out",
        b,
        "--json",
    ]));
    let saved: Vec<Vec<f32>> = (0..3)
        .map(|k| tensor(&tt, &format!("emb_l.2.tt_cores.{k}")).1)
        .collect();
    let want: Vec<f32> = tt_to_dense_f64(&svd.shape, &saved)
        .unwrap()
        .iter()
        .map(|&x| x as f32)
        .collect();
    assert_eq!(tensor(&back, "weight"), (dims.clone(), want));
    // The MLPs and the dense tables copied.
    for name in ["bot_l.0.weight", "top_l.0.bias", "emb_l.0.weight"] {
        assert_eq!(tensor(&tt, name), tensor(&dense, name), "{name}");
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["plan"]["tables"][2]["form"], "tt", "{s}");
    assert_eq!(s["plan"]["tables"][2]["ranks"], serde_json::json!([4, 4]));
    // Two starting points at once is refused.
    let args = small(&["--tt-init", &from, "--load-model", d]);
    let r = ttrec(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!r.ok && r.stderr.contains("give one"), "{}", r.stderr);
    std::fs::remove_dir_all(&dir).ok();
}
