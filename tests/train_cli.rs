//! Training runs through the `ttrec train` binary (the same code as examples/train_kaggle.rs): a
//! short run's summary JSON, metrics file and plot; resume from a checkpoint gives bitwise the
//! same parameters and metrics as an uninterrupted run; broken, corrupted and mismatched
//! checkpoints are named errors; a diverging loss stops the run naming the step; malformed lines
//! of a Criteo file are skipped and counted.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_ttrec");

/// A small, quick model on synthetic data at 1/1000 of Kaggle's table sizes.
fn small(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
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
        "--print-freq",
        "10",
        "--test-freq",
        "20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn train(args: &[String]) -> Run {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("running the ttrec binary");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn json(path: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn short_run_writes_summary_metrics_and_plot() {
    let dir = temp_dir("train-short");
    let (summary, metrics) = (p(&dir, "summary.json"), p(&dir, "metrics.jsonl"));
    let r = train(&small(&[
        "--summary-json",
        &summary,
        "--metrics-jsonl",
        &metrics,
    ]));
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("Testing at 20/42 of epoch 1"),
        "{}",
        r.stdout
    );
    let s = json(&summary);
    for key in [
        "auc",
        "logloss",
        "accuracy",
        "train_samples_per_s",
        "embedding_params",
        "uncompressed_embedding_params",
        "compression_ratio",
        "adapter",
        "malformed_lines",
    ] {
        assert!(s.get(key).is_some(), "summary lacks {key}: {s}");
    }
    let auc = s["auc"].as_f64().unwrap();
    assert!((0.5..1.0).contains(&auc), "auc {auc}");
    assert!(s["logloss"].as_f64().unwrap() > 0.0);
    assert_eq!(s["malformed_lines"].as_u64(), Some(0));
    let (e, u) = (
        s["embedding_params"].as_f64().unwrap(),
        s["uncompressed_embedding_params"].as_f64().unwrap(),
    );
    assert!((s["compression_ratio"].as_f64().unwrap() - u / e).abs() < 1e-9);
    assert!(s["train_samples_per_s"].as_f64().unwrap() > 0.0);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let train_lines = lines.iter().filter(|l| l["kind"] == "train").count();
    let test_lines: Vec<_> = lines.iter().filter(|l| l["kind"] == "test").collect();
    // 42 batches: prints at 10, 20, 30, 40, 42; tests at 20, 40 and the end (42).
    assert_eq!(train_lines, 5, "{lines:?}");
    assert_eq!(test_lines.len(), 3, "{lines:?}");
    assert_eq!(test_lines[2]["auc"], s["auc"]);
    let svg = std::fs::read_to_string(dir.join("summary.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("evaluation AUC"));
}

/// Every value of every tensor of the checkpoint at `path` is finite (a model that diverged must
/// never be saved).
fn assert_finite_checkpoint(path: &str) {
    let ck = ttrec::train::checkpoint::load(Path::new(path)).unwrap();
    assert!(!ck.tensors.is_empty(), "{path}: no tensors");
    for (name, _, v) in &ck.tensors {
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            panic!("{path}: {name}[{i}] = {} is not finite", v[i]);
        }
    }
}

fn tensors(path: &str) -> Vec<(String, Vec<u32>)> {
    let ck = ttrec::train::checkpoint::load(Path::new(path)).unwrap();
    ck.tensors
        .into_iter()
        .map(|(n, _, v)| (n, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

#[test]
fn resume_gives_bitwise_the_same_parameters_and_metrics() {
    let dir = temp_dir("train-resume");
    let args = |ck: &str, summary: &str, extra: &[&str]| {
        let mut e = vec![
            "--nepochs",
            "2",
            "--save-model",
            ck,
            "--summary-json",
            summary,
        ];
        e.extend_from_slice(extra);
        small(&e)
    };
    let (a_ck, a_sum) = (p(&dir, "a.safetensors"), p(&dir, "a.json"));
    let r = train(&args(&a_ck, &a_sum, &[]));
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    // Stopped mid-epoch (step 13 of 42), then resumed to the end.
    let (b_ck, b_sum) = (p(&dir, "b.safetensors"), p(&dir, "b.json"));
    let r = train(&args(&b_ck, &b_sum, &["--stop-after-steps", "13"]));
    assert!(!r.ok, "an interrupted run exits non-zero");
    assert!(
        r.stderr.contains("interrupted after step 13"),
        "{}",
        r.stderr
    );
    let r = train(&args(&b_ck, &b_sum, &["--load-model", &b_ck]));
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("resumed from"), "{}", r.stdout);
    assert!(
        tensors(&a_ck) == tensors(&b_ck),
        "resumed parameters differ"
    );
    assert_finite_checkpoint(&a_ck);
    let (a, b) = (json(&a_sum), json(&b_sum));
    for key in ["auc", "logloss", "accuracy", "steps"] {
        assert_eq!(a[key], b[key], "{key}");
    }
}

#[test]
fn broken_and_mismatched_checkpoints_are_named_errors() {
    let dir = temp_dir("train-ckpt");
    let ck = p(&dir, "ck.safetensors");
    let r = train(&small(&["--num-batches", "4", "--save-model", &ck]));
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_finite_checkpoint(&ck);
    let bytes = std::fs::read(&ck).unwrap();
    // Truncated.
    let cut = p(&dir, "cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r = train(&small(&["--load-model", &cut]));
    assert!(
        !r.ok && r.stderr.contains("cut.safetensors"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("not a readable checkpoint"),
        "{}",
        r.stderr
    );
    // One bit flipped in the last tensor's data.
    let mut bad = bytes.clone();
    let at = bad.len() - 5;
    bad[at] ^= 0x10;
    let flipped = p(&dir, "flipped.safetensors");
    std::fs::write(&flipped, &bad).unwrap();
    let r = train(&small(&["--load-model", &flipped]));
    assert!(
        !r.ok && r.stderr.contains("checksum mismatch"),
        "{}",
        r.stderr
    );
    // Fewer TT tables and another seed: the error lists the differences.
    let r = train(&small(&[
        "--load-model",
        &ck,
        "--tt-tables",
        "6",
        "--seed",
        "3",
    ]));
    assert!(!r.ok, "{}", r.stdout);
    assert!(r.stderr.contains("does not fit"), "{}", r.stderr);
    // The 7th largest table of Kaggle is C26 (table 25).
    assert!(
        r.stderr.contains("table 25 (C26): 143 rows tt"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("vs 143 rows dense"), "{}", r.stderr);
    assert!(r.stderr.contains("--seed: 0 vs 3"), "{}", r.stderr);
}

#[test]
fn a_diverging_loss_stops_the_run_naming_the_step() {
    let dir = temp_dir("train-nan");
    let ck = p(&dir, "ck.safetensors");
    let r = train(&small(&["--learning-rate", "3e38", "--save-model", &ck]));
    assert!(!r.ok, "{}", r.stdout);
    assert!(r.stderr.contains("the loss of step"), "{}", r.stderr);
    // No checkpoint with a diverged model was written: none, or a finite one.
    if Path::new(&ck).exists() {
        assert_finite_checkpoint(&ck);
    }
}

/// With --cache-rows the TT tables train through their LFU caches: the progress lines and the
/// summary report the hit rate and the refreshes (42 steps: warm-up 10, then every 10).
#[test]
fn a_run_with_a_cache_reports_its_hit_rate() {
    let dir = temp_dir("train-cache");
    let summary = p(&dir, "summary.json");
    let r = train(&small(&[
        "--cache-rows",
        "0.05",
        "--cache-warmup",
        "10",
        "--cache-refresh",
        "10",
        "--summary-json",
        &summary,
    ]));
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("cache hit rate"), "{}", r.stdout);
    let s = json(&summary);
    let hit = s["cache_hit_rate"].as_f64().expect("cache_hit_rate");
    assert!(hit > 0.05 && hit < 1.0, "hit rate {hit}");
    assert_eq!(s["cache"]["refreshes"].as_u64(), Some(4), "{s}");
    assert_eq!(s["cache"]["dropped"].as_u64(), Some(0), "{s}");
    assert!(s["cache"]["members"].as_u64().unwrap() > 0);
    let auc = s["auc"].as_f64().unwrap();
    assert!((0.5..1.0).contains(&auc), "auc {auc}");
}

#[test]
fn bad_options_are_errors_before_any_work() {
    for (args, want) in [
        (
            vec!["--arch-mlp-bot", "13-64-8"],
            "--arch-sparse-feature-size 16",
        ),
        (vec!["--arch-mlp-top", "64-2"], "must end with 1"),
        (
            vec!["--embedding", "dense", "--tt-rank", "8"],
            "need --embedding tt",
        ),
        (vec!["--test-fraction", "1.5"], "--test-fraction"),
        (vec!["--processed-data-file", "x.ttcache"], "needs --data"),
        (vec!["--data", "/nonexistent/train.txt"], "no such file"),
        (vec!["--learning-rate", "nan"], "--learning-rate"),
        (vec!["--tt-init", "gaussian"], "--tt-init"),
        (vec!["--cache-rows", "-1"], "--cache-rows"),
        (
            vec!["--cache-rows", "0.01", "--embedding", "dense"],
            "--cache-rows needs",
        ),
        (vec!["--cache-refresh", "0"], "--cache-refresh"),
        (
            vec!["--load-model", "/nonexistent.safetensors"],
            "--load-model",
        ),
    ] {
        let mut a = vec!["train".to_string()];
        a.extend(args.iter().map(|s| s.to_string()));
        let r = train(&a);
        assert!(!r.ok, "{args:?} was accepted");
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        // No work before the check: the run never got as far as opening the adapter.
        assert!(
            !r.stdout.contains("adapter:"),
            "{args:?}: work started before the check"
        );
    }
}

#[test]
fn malformed_lines_of_a_criteo_file_are_skipped_and_counted() {
    let dir = temp_dir("train-real");
    let mut text = sample_text();
    text.push_str("1\t2\t3\n"); // too few fields
    text.push_str(&"x\t".repeat(39));
    text.push_str("x\n"); // a bad label
    let data: PathBuf = dir.join("day_0.txt");
    std::fs::write(&data, text).unwrap();
    let summary = p(&dir, "s.json");
    let r = train(&[
        "train".into(),
        "--data".into(),
        data.display().to_string(),
        "--embedding".into(),
        "dense".into(),
        "--test-fraction".into(),
        "0.2".into(),
        "--mini-batch-size".into(),
        "16".into(),
        "--arch-mlp-bot".into(),
        "13-32-16".into(),
        "--arch-mlp-top".into(),
        "32-1".into(),
        "--summary-json".into(),
        summary.clone(),
    ]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("202 lines read, 2 malformed skipped"),
        "{}",
        r.stdout
    );
    let s = json(&summary);
    assert_eq!(s["malformed_lines"].as_u64(), Some(2));
    assert_eq!(s["eval_samples"].as_u64(), Some(40));
    assert!(dir.join("day_0.txt.ttcache").exists());
}

#[test]
fn a_directory_of_day_files_plain_and_gzip_is_one_data_set() {
    use std::io::Write;
    let dir = temp_dir("train-days");
    let days = dir.join("days");
    std::fs::create_dir_all(&days).unwrap();
    let text = sample_text();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(days.join("day_1"), lines[..100].join("\n") + "\n").unwrap();
    let gz = std::fs::File::create(days.join("day_2.gz")).unwrap();
    let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::fast());
    enc.write_all((lines[100..].join("\n") + "\n").as_bytes())
        .unwrap();
    enc.finish().unwrap();
    let cache = p(&dir, "days.ttcache");
    let r = train(&[
        "train".into(),
        "--data".into(),
        days.display().to_string(),
        "--processed-data-file".into(),
        cache.clone(),
        "--embedding".into(),
        "dense".into(),
        "--test-fraction".into(),
        "0.2".into(),
        "--mini-batch-size".into(),
        "16".into(),
        "--arch-mlp-bot".into(),
        "13-32-16".into(),
        "--arch-mlp-top".into(),
        "32-1".into(),
    ]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("2 file(s)"), "{}", r.stdout);
    assert!(
        r.stdout.contains("200 lines read, 0 malformed"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("160 for training, 40 for evaluation"),
        "{}",
        r.stdout
    );
    assert!(Path::new(&cache).exists());
}

/// A real SIGINT (what Ctrl-C sends) mid-run: the step in flight finishes, a checkpoint is
/// written, the run exits non-zero naming the step, and the checkpoint resumes.
#[cfg(unix)]
#[test]
fn sigint_mid_run_writes_a_checkpoint_and_exits_non_zero() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let dir = temp_dir("train-sigint");
    let ck = p(&dir, "ck.safetensors");
    let mut child = Command::new(BIN)
        .args(small(&["--nepochs", "100000", "--save-model", &ck]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the ttrec binary");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            let _ = tx.send(line);
        }
    });
    // Wait until training runs (the handler is installed before the first step). The limits
    // below are hang guards (10 minutes, GPU_WAIT_TIMEOUT's), not checks of speed.
    let hang = Duration::from_secs(600);
    let started = Instant::now();
    loop {
        let line = rx
            .recv_timeout(hang)
            .expect("hang guard: no training progress for 10 minutes");
        if line.starts_with("Finished training it") {
            break;
        }
        assert!(
            started.elapsed() < hang,
            "hang guard: no training step after 10 minutes"
        );
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + hang;
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hang guard: the run did not stop within 10 minutes of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!code.success(), "an interrupted run exits non-zero");
    assert!(
        code.code().is_some(),
        "killed by the signal: {code:?}\n{stderr}"
    );
    assert!(stderr.contains("interrupted after step"), "{stderr}");
    assert!(!tensors(&ck).is_empty(), "no checkpoint written");
    // The checkpoint resumes (one more step of the same configuration).
    let ck2 = p(&dir, "ck2.safetensors");
    let r = train(&small(&[
        "--load-model",
        &ck,
        "--save-model",
        &ck2,
        "--nepochs",
        "100000",
        "--stop-after-steps",
        "1",
    ]));
    assert!(
        r.stdout.contains("resumed from"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
}

/// Resume on real-format data (the real Criteo sample as a day file, TT tables): a run stopped
/// at step 6 (a print step, not a test step) and resumed writes, into the same metrics file,
/// exactly the lines of an uninterrupted run (throughput aside), and ends with bitwise the same
/// parameters.
#[test]
fn resume_on_real_data_gives_the_same_metrics_lines() {
    let dir = temp_dir("train-resume-real");
    let data = dir.join("day_0.txt");
    std::fs::write(&data, sample_text()).unwrap();
    let args = |ck: &str, metrics: &str, extra: &[&str]| {
        let mut v: Vec<String> = [
            "train",
            "--data",
            data.to_str().unwrap(),
            "--test-fraction",
            "0.2",
            "--mini-batch-size",
            "16",
            "--nepochs",
            "2",
            "--arch-mlp-bot",
            "13-32-16",
            "--arch-mlp-top",
            "32-1",
            "--tt-rank",
            "4",
            "--print-freq",
            "3",
            "--test-freq",
            "4",
            "--save-model",
            ck,
            "--metrics-jsonl",
            metrics,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let (a_ck, a_m) = (p(&dir, "a.safetensors"), p(&dir, "a.jsonl"));
    let r = train(&args(&a_ck, &a_m, &[]));
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("TT"), "{}", r.stdout);
    let (b_ck, b_m) = (p(&dir, "b.safetensors"), p(&dir, "b.jsonl"));
    let r = train(&args(&b_ck, &b_m, &["--stop-after-steps", "6"]));
    assert!(
        r.stderr.contains("interrupted after step 6"),
        "{}",
        r.stderr
    );
    let r = train(&args(&b_ck, &b_m, &["--load-model", &b_ck]));
    assert!(
        r.ok && r.stdout.contains("resumed from"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let lines = |path: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let record = v.as_object_mut().unwrap();
                let rate = record.remove("samples_per_s");
                // Which run wrote a line, and when it started, differ by design.
                assert!(record.remove("run").is_some(), "{l}");
                assert!(record.remove("started").is_some(), "{l}");
                assert_eq!(rate.is_some(), v["kind"] == "train", "{l}");
                v
            })
            .collect()
    };
    let (a, b) = (lines(&a_m), lines(&b_m));
    // About 10 batches per epoch: train lines at 3, 6, 9, ...; test lines at 4, 8, ...; twice.
    assert!(
        a.iter().filter(|l| l["kind"] == "train").count() >= 6,
        "{a:?}"
    );
    assert!(
        a.iter().filter(|l| l["kind"] == "test").count() >= 4,
        "{a:?}"
    );
    assert_eq!(a, b, "metrics lines of the resumed run");
    assert!(
        tensors(&a_ck) == tensors(&b_ck),
        "resumed parameters differ"
    );
    assert_finite_checkpoint(&a_ck);
}
