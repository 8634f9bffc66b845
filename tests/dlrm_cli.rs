//! A dlrm user's command line and records (issue 19 items 3, 6-9), through the `ttrec` binary:
//! dlrm's Kaggle script's flags run unchanged on a generated Criteo-format file (and the
//! Terabyte script's, with its day prefix); flags without meaning are noted once; the optimizer,
//! dlrm's learning-rate schedule and the MLPerf AUC target act on the run; FBTT's TT shapes are
//! used and checked; the summary holds every option as typed, the metrics file one name per
//! quantity; on a terminal the log stays above the bars; adapters are listed and chosen; `bench
//! tt` says what it measures.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_ttrec");

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn ttrec_env(args: &[String], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("TTREC_PROGRESS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running the ttrec binary");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ttrec(args: &[String]) -> Run {
    ttrec_env(args, &[])
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A small model on synthetic data at 1/1000 of Kaggle's table sizes (as tests/train_cli.rs).
fn small(extra: &[&str]) -> Vec<String> {
    let mut v = strings(&[
        "train",
        "--synthetic-samples",
        "3000",
        "--synthetic-scale",
        "0.001",
        "--mini-batch-size",
        "64",
        "--arch-mlp-bot",
        "13-32-16",
        "--arch-mlp-top",
        "32-1",
        "--print-freq",
        "10",
        "--test-freq",
        "20",
    ]);
    v.extend(strings(extra));
    v
}

#[test]
fn dlrms_kaggle_script_runs_unchanged() {
    let dir = temp_dir("dlrm-kaggle");
    let raw = dir.join("train.txt");
    std::fs::write(&raw, sample_text()).unwrap();
    let npz = dir.join("kaggleAdDisplayChallenge_processed.npz");
    // bench/dlrm_s_criteo_kaggle.sh's pytorch line, paths aside.
    let script = format!(
        "--arch-sparse-feature-size=16 --arch-mlp-bot=13-512-256-64-16 --arch-mlp-top=512-256-1 --data-generation=dataset --data-set=kaggle --raw-data-file={} --processed-data-file={} --loss-function=bce --round-targets=True --learning-rate=0.1 --mini-batch-size=128 --print-freq=1024 --print-time --test-mini-batch-size=16384 --test-num-workers=16",
        raw.display(),
        npz.display()
    );
    let mut args = vec!["train".to_string()];
    args.extend(script.split(' ').map(String::from));
    let r = ttrec(&args);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("final evaluation on"), "{}", r.stdout);
    for note in [
        "note: --print-time:",
        "note: --num-workers/--test-num-workers:",
        "note: --round-targets:",
        "does not read or write dlrm's .npz",
    ] {
        assert!(r.stderr.contains(note), "{note}: {}", r.stderr);
    }
    assert!(dir
        .join("kaggleAdDisplayChallenge_processed.ttcache")
        .is_file());
    assert!(!npz.exists(), "nothing is written under dlrm's .npz name");
    // The brief's further dlrm flags, on the store just built; each meaningless one noted once.
    args.extend(strings(&[
        "--memory-map",
        "--mlperf-logging",
        "--enable-profiling",
        "--use-gpu",
        "--optimizer=sgd",
        "--lr-num-warmup-steps=0",
        "--lr-decay-start-step=0",
        "--lr-num-decay-steps=0",
        "--mlperf-auc-threshold=0.0",
        "--nepochs=1",
        "--num-batches=0",
        "--test-freq=-1",
        "--max-ind-range=-1",
    ]));
    let r = ttrec(&args);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        r.stderr
            .matches("note: --use-gpu: ttrec picks the adapter; see --adapter")
            .count(),
        1,
        "{}",
        r.stderr
    );
    for note in ["--memory-map", "--mlperf-logging", "--enable-profiling"] {
        assert!(
            r.stderr.contains(&format!("note: {note}:")),
            "{note}: {}",
            r.stderr
        );
    }
    assert!(r.stdout.contains("(reused)"), "{}", r.stdout);
}

#[test]
fn dlrms_terabyte_flags_take_the_day_prefix() {
    let dir = temp_dir("dlrm-terabyte");
    let text = sample_text();
    let lines: Vec<&str> = text.lines().collect();
    for (k, chunk) in lines.chunks(70).enumerate() {
        std::fs::write(dir.join(format!("day_{k}")), chunk.join("\n") + "\n").unwrap();
    }
    let prefix = dir.join("day");
    // bench/dlrm_s_criteo_terabyte.sh's flags, at a batch 200 lines fill.
    let script = format!(
        "--arch-sparse-feature-size=64 --arch-mlp-bot=13-512-256-64 --arch-mlp-top=512-512-256-1 --max-ind-range=10000000 --data-generation=dataset --data-set=terabyte --raw-data-file={} --processed-data-file={} --loss-function=bce --round-targets=True --learning-rate=0.1 --mini-batch-size=32 --print-freq=1024 --print-time --test-mini-batch-size=16384 --test-num-workers=16 --embedding=dense --num-batches=2",
        prefix.display(),
        dir.join("terabyte_processed.npz").display()
    );
    let mut args = vec!["train".to_string()];
    args.extend(script.split(' ').map(String::from));
    let r = ttrec(&args);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("3 file(s)"), "{}", r.stdout);
    assert!(
        r.stderr.contains("note: --data-set terabyte"),
        "{}",
        r.stderr
    );
}

#[test]
fn what_ttrec_does_not_do_is_refused_by_name() {
    for (args, want) in [
        (vec!["--loss-function=mse"], "--loss-function mse"),
        (vec!["--optimizer=rwsadagrad"], "row-wise"),
        (vec!["--optimizer", "adam"], "choose sgd or adagrad"),
        (vec!["--arch-interaction-op=cat"], "dot only"),
        (vec!["--data-generation=dataset"], "needs --raw-data-file"),
        (vec!["--data-generation=internal"], "no internal data"),
        (vec!["--quantize-emb-with-bit=4"], "does not quantize"),
        (
            vec!["--lr-num-warmup-steps=10", "--lr-decay-start-step=5"],
            "--lr-decay-start-step 5",
        ),
        (vec!["--mlperf-auc-threshold=1.5"], "--mlperf-auc-threshold"),
        (vec!["--raw-data-file=/nonexistent/day"], "--raw-data-file"),
        (vec!["--tt-q-shapes=2,2,3"], "product 12"),
        (vec!["--tt-ranks=8", "--tt-q-shapes=2,2,4"], "cores"),
        (vec!["--tt-ranks=8,x"], "--tt-ranks"),
        (
            vec!["--embedding=dense", "--tt-p-shapes=4,4,4"],
            "need --embedding tt",
        ),
    ] {
        let mut a = vec!["train".to_string()];
        a.extend(strings(&args));
        let r = ttrec(&a);
        assert!(!r.ok, "{args:?} was accepted");
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert!(
            !r.stdout.contains("adapter:"),
            "{args:?}: work started before the check"
        );
    }
}

#[test]
fn optimizer_schedule_and_records() {
    let dir = temp_dir("dlrm-schedule");
    let run = |name: &str, optimizer: &str, schedule: bool| {
        let (summary, metrics) = (
            dir.join(format!("{name}.json")),
            dir.join(format!("{name}.jsonl")),
        );
        let warmup = if schedule { "4" } else { "0" };
        let decay = if schedule { "4" } else { "0" };
        let r = ttrec(&strings(&[
            "train",
            "--synthetic-samples",
            "3000",
            "--synthetic-scale",
            "0.001",
            "--mini-batch-size",
            "64",
            "--arch-mlp-bot",
            "13-32-16",
            "--arch-mlp-top",
            "32-1",
            "--tt-rank",
            "4",
            "--num-batches",
            "12",
            "--print-freq",
            "1",
            "--learning-rate",
            "0.1",
            "--optimizer",
            optimizer,
            "--lr-num-warmup-steps",
            warmup,
            "--lr-decay-start-step",
            "6",
            "--lr-num-decay-steps",
            decay,
            "--numpy-rand-seed",
            "7",
            "--summary-json",
            summary.to_str().unwrap(),
            "--metrics-jsonl",
            metrics.to_str().unwrap(),
        ]));
        assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&metrics)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (json(&summary), lines)
    };
    let (s, lines) = run("adagrad", "adagrad", true);
    // Each step's rate is dlrm's scheduler's (the unit tests check its values).
    let policy = ttrec::train::lr::LrPolicy::new(0.1, 4, 6, 4).unwrap();
    let train: Vec<_> = lines.iter().filter(|l| l["kind"] == "train").collect();
    assert_eq!(train.len(), 12, "{lines:?}");
    for l in &train {
        let step = l["step"].as_u64().unwrap();
        assert_eq!(l["lr"].as_f64().unwrap(), policy.rate(step), "{l}");
        // One name per quantity, epochs counted as on the console, the run named.
        assert!(l["logloss"].is_number() && l.get("loss").is_none(), "{l}");
        assert_eq!(l["epoch"], 1, "{l}");
        assert!(l["run"].is_string() && l["started"].is_string(), "{l}");
    }
    assert!(lines
        .iter()
        .filter(|l| l["kind"] == "test")
        .all(|l| l["logloss"].is_number() && l["epoch"] == 1));
    let c = &s["config"];
    // Numbers as typed, every option, what ran.
    assert_eq!(c["learning_rate"].to_string(), "0.1", "{c}");
    for (k, v) in [
        ("optimizer", serde_json::json!("adagrad")),
        ("mini_batch_size", serde_json::json!(64)),
        ("num_batches", serde_json::json!(12)),
        ("synthetic_scale", serde_json::json!(0.001)),
        ("lr_num_warmup_steps", serde_json::json!(4)),
        ("seed", serde_json::json!(7)),
        (
            "ttrec_version",
            serde_json::json!(env!("CARGO_PKG_VERSION")),
        ),
    ] {
        assert_eq!(c[k], v, "{k}: {c}");
    }
    for k in ["adapter", "tt_kernels", "gemm_variant", "kernel_class"] {
        assert!(c[k].is_string(), "{k}: {c}");
    }
    assert!(c["model"]["tables"].is_array(), "{c}");
    assert!(s["auc"].as_f64().unwrap().is_finite());
    // Adagrad is what trained: SGD from the same start ends elsewhere; and the schedule is
    // what the GPU trained with: SGD at the constant rate ends elsewhere again.
    let (sgd, _) = run("sgd", "sgd", true);
    assert_ne!(s["logloss"], sgd["logloss"]);
    let (constant, lines) = run("sgd-constant", "sgd", false);
    assert_ne!(sgd["logloss"], constant["logloss"]);
    assert!(lines
        .iter()
        .filter(|l| l["kind"] == "train")
        .all(|l| l["lr"] == 0.1));
    let svg = std::fs::read_to_string(dir.join("adagrad.svg")).unwrap();
    for label in [
        "training step",
        "log loss",
        "evaluation log loss",
        "ROC AUC",
    ] {
        assert!(svg.contains(label), "the plot lacks {label:?}");
    }
}

#[test]
fn the_auc_target_stops_training() {
    let dir = temp_dir("dlrm-target");
    let summary = dir.join("s.json");
    let r = ttrec(&small(&[
        "--tt-rank",
        "4",
        "--mlperf-auc-threshold",
        "0.01",
        "--summary-json",
        summary.to_str().unwrap(),
    ]));
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("MLPerf testing auc threshold 0.01 reached"),
        "{}",
        r.stdout
    );
    // The first evaluation (step 20 of 42) ends the run, and is the final one.
    let s = json(&summary);
    assert_eq!(s["steps"], 20, "{s}");
    assert_eq!(r.stdout.matches("Testing at").count(), 1, "{}", r.stdout);
}

#[test]
fn fbtt_shapes_build_the_tt_tables_and_bad_ones_name_the_table() {
    let dir = temp_dir("dlrm-fbtt");
    let summary = dir.join("s.json");
    let r = ttrec(&small(&[
        "--tt-tables",
        "2",
        "--tt-ranks",
        "4,8",
        "--tt-q-shapes",
        "2,2,4",
        "--num-batches",
        "2",
        "--summary-json",
        summary.to_str().unwrap(),
    ]));
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("2 TT, ranks 4,8"), "{}", r.stdout);
    let s = json(&summary);
    let tt: Vec<&serde_json::Value> = s["config"]["model"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "tt")
        .collect();
    assert_eq!(tt.len(), 2);
    for t in tt {
        assert_eq!(t["ranks"], serde_json::json!([4, 8]), "{t}");
        assert_eq!(t["q"], serde_json::json!([2, 2, 4]), "{t}");
    }
    // Row factors that cannot hold the table: an error naming the table and its rows.
    let r = ttrec(&small(&[
        "--tt-tables",
        "1",
        "--tt-p-shapes",
        "2,2,2",
        "--num-batches",
        "2",
    ]));
    assert!(!r.ok);
    assert!(
        r.stderr
            .contains("--tt-p-shapes 2,2,2: the product 8 does not cover"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("table"), "{}", r.stderr);
}

/// On a terminal (a pseudo-terminal from util-linux's `script`), the run's log lines stay on
/// the screen above the bars, and the bars show no empty fields.
#[test]
fn on_a_terminal_the_log_stays_above_the_bar() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` (util-linux) to run under a terminal");
        return;
    }
    let cmd: Vec<String> = std::iter::once(BIN.to_string())
        .chain(small(&["--tt-rank", "4", "--num-batches", "20"]))
        .map(|a| format!("'{a}'"))
        .collect();
    let out = Command::new("script")
        .args(["-qec", &cmd.join(" "), "/dev/null"])
        .env_remove("TTREC_PROGRESS")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "Finished training it 10/20 of epoch 1",
        "Finished training it 20/20 of epoch 1",
        "Testing at 20/20 of epoch 1",
    ] {
        assert!(text.contains(line), "{line:?} is not in the log: {text}");
    }
    assert!(!text.contains(", ,"), "an empty field: {text}");
}

#[test]
fn adapters_are_listed_and_chosen_by_name() {
    let r = ttrec(&strings(&["info", "--list"]));
    assert!(r.ok, "{}", r.stderr);
    let picked: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(picked.len(), 1, "{}", r.stdout);
    assert!(picked[0].contains("backend") && picked[0].contains("class"));
    let r = ttrec(&strings(&["info", "--list", "--json"]));
    let recs: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(recs.iter().all(|v| v["type"] == "info_adapter"
        && v["backend"].is_string()
        && v["class"].is_string()));
    // --adapter on any command (global), naming an adapter that exists or not.
    let name = recs.iter().find(|v| v["picked"] == true).unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let r = ttrec(&strings(&["info", "--adapter", &name]));
    assert!(r.ok && r.stdout.contains(&name), "{}", r.stderr);
    let r = ttrec(&strings(&["--adapter", "no-such-adapter", "info"]));
    assert!(!r.ok);
    assert!(
        r.stderr.contains("no adapter name contains"),
        "{}",
        r.stderr
    );
    // A backend this machine lacks (Metal is Apple's) excludes every adapter: said so.
    if !cfg!(target_vendor = "apple") {
        let r = ttrec_env(&strings(&["info"]), &[("WGPU_BACKEND", "metal")]);
        assert!(!r.ok);
        assert!(
            r.stderr
                .contains("WGPU_BACKEND=metal excludes every adapter"),
            "{}",
            r.stderr
        );
    }
    // `info` tells what runs: never subgroup TT kernels on an adapter whose subgroups are off.
    let r = ttrec(&strings(&["info"]));
    assert!(r.ok, "{}", r.stderr);
    if r.stdout.contains("subgroups: off") {
        assert!(
            r.stdout.contains("tt kernels: subgroups off"),
            "{}",
            r.stdout
        );
    } else {
        assert!(
            r.stdout.contains("tt kernels: subgroups on"),
            "{}",
            r.stdout
        );
    }
}

#[test]
fn bench_tt_says_what_each_config_is() {
    let r = ttrec(&strings(&[
        "bench",
        "tt",
        "--config",
        "kaggle-r8",
        "--bags",
        "16",
        "--seconds",
        "0",
        "--iters",
        "1",
        "--json",
    ]));
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(v["rows"], 10_131_227, "{v}");
    assert_eq!(v["dim"], 16, "{v}");
    assert_eq!(v["ranks"], serde_json::json!([8, 8]), "{v}");
    assert_eq!(v["bags"], 16, "{v}");
    assert!(v["lookups"].as_u64().unwrap() >= 16, "{v}");
    // The kernel fields agree where the subgroup use is known.
    if let Some(sg) = v["subgroup_kernels"].as_bool() {
        let on = v["tt_kernels"].as_str().unwrap().contains("subgroups on");
        assert_eq!(on, sg, "{v}");
    }
    let r = ttrec(&strings(&[
        "bench",
        "tt",
        "--config",
        "kaggle-r8",
        "--bags",
        "16",
        "--seconds",
        "0",
        "--iters",
        "1",
    ]));
    assert!(r.ok, "{}", r.stderr);
    let header = r.stdout.lines().nth(1).unwrap();
    for col in ["rows", "D", "ranks", "bags", "lookups"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(r.stdout.contains("10131227"), "{}", r.stdout);
}
