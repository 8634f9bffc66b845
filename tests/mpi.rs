//! Data-parallel training under `mpirun --oversubscribe -np 2` (feature `mpi`; run by .ci/run,
//! which installs OpenMPI): both ranks hold bitwise-equal parameters (the run compares their
//! hashes and stops if they differ), a rerun is bitwise the same, the result matches one
//! process at twice the batch within the DLRM tolerance and its AUC within 0.002, a resume from
//! a 2-rank checkpoint is bitwise the uninterrupted run, and a failing or crashing rank ends the
//! job non-zero without hanging (a hang guard, never a speed check).
#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ttrec::parity::{compare_with, DLRM_ATOL, DLRM_RTOL};

const BIN: &str = env!("CARGO_BIN_EXE_ttrec");

/// 20 steps of a tiny model on synthetic data (at `batch` samples per rank).
fn small(batch: usize, extra: &[&str]) -> Vec<String> {
    let b = batch.to_string();
    let mut v: Vec<String> = [
        "train",
        "--synthetic-samples",
        "3000",
        "--synthetic-scale",
        "0.001",
        "--mini-batch-size",
        &b,
        "--arch-mlp-bot",
        "13-32-16",
        "--arch-mlp-top",
        "32-1",
        "--tt-rank",
        "4",
        "--num-batches",
        "20",
        "--print-freq",
        "5",
        "--test-freq",
        "10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary (under `mpirun -np ranks`, or alone for 0 ranks) with output to files; a hang
/// guard of 3 minutes kills it and fails.
fn run(dir: &Path, ranks: usize, args: &[String], env: &[(&str, &str)]) -> Run {
    run_with(dir, ranks, args, env, None)
}

/// What a test does while mpirun runs: given mpirun's pid and the stdout file.
type During<'a> = &'a dyn Fn(u32, &Path);

/// [`run`], calling `during` with mpirun's pid and the stdout file once it started.
fn run_with(
    dir: &Path,
    ranks: usize,
    args: &[String],
    env: &[(&str, &str)],
    during: Option<During>,
) -> Run {
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut cmd = if ranks == 0 {
        Command::new(BIN)
    } else {
        let mut c = Command::new("mpirun");
        c.args(["--oversubscribe", "-np", &ranks.to_string(), BIN]);
        c
    };
    cmd.args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("LP_NUM_THREADS", "1")
        .env("TTREC_PROGRESS", "plain")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("running mpirun (is OpenMPI installed?)");
    if let Some(during) = during {
        during(child.id(), &out);
    }
    let limit = Duration::from_secs(180);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "hang guard: {args:?} on {ranks} ranks has not ended after {limit:?}\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Run {
        ok: status.success(),
        code: status.code(),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
    }
}

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn tensors(path: &str) -> Vec<(String, Vec<f32>)> {
    ttrec::train::checkpoint::load(Path::new(path))
        .unwrap()
        .tensors
        .into_iter()
        .map(|(n, _, v)| (n, v))
        .collect()
}

/// The metrics lines without what differs between runs by design (run id, start, speed).
fn metrics(path: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let r = v.as_object_mut().unwrap();
            r.remove("run");
            r.remove("started");
            r.remove("samples_per_s");
            v
        })
        .collect()
}

fn auc(path: &str) -> f64 {
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    s["auc"].as_f64().unwrap()
}

/// A 2-rank run at batch 32 in `dir` (checkpoint, summary, metrics), asserted successful.
fn two_ranks(dir: &Path, extra: &[&str]) -> Run {
    let (ck, sum, met) = (
        p(dir, "ck.safetensors"),
        p(dir, "s.json"),
        p(dir, "m.jsonl"),
    );
    let mut args = vec![
        "--save-model",
        &ck,
        "--summary-json",
        &sum,
        "--metrics-jsonl",
        &met,
    ];
    args.extend_from_slice(extra);
    let r = run(dir, 2, &small(32, &args), &[]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    r
}

#[test]
fn two_ranks_agree_rerun_bitwise_match_one_process_and_resume_bitwise() {
    let (a, a2, one, cut) = (
        temp_dir("mpi-a"),
        temp_dir("mpi-a2"),
        temp_dir("mpi-one"),
        temp_dir("mpi-cut"),
    );
    let r = two_ranks(&a, &[]);
    // The ranks' parameter hashes were compared at steps 10 and 20 and at the end.
    assert!(
        r.stdout.contains("parameters identical on every rank"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("rank 0 of 2"), "{}", r.stdout);
    // Only rank 0 prints: one summary.
    assert_eq!(
        r.stdout.matches("final evaluation").count(),
        1,
        "{}",
        r.stdout
    );

    two_ranks(&a2, &[]);
    let (ta, ta2) = (
        tensors(&p(&a, "ck.safetensors")),
        tensors(&p(&a2, "ck.safetensors")),
    );
    for ((n, x), (_, y)) in ta.iter().zip(&ta2) {
        assert_eq!(bits(x), bits(y), "{n}: a rerun differs");
    }
    assert_eq!(metrics(&p(&a, "m.jsonl")), metrics(&p(&a2, "m.jsonl")));
    let saved = ttrec::train::checkpoint::load(Path::new(&p(&a, "ck.safetensors"))).unwrap();
    assert_eq!((saved.meta.ranks, saved.meta.batch_size), (2, 64));

    // One process at batch 64 sees the same batches.
    let (ck1, sum1) = (p(&one, "ck.safetensors"), p(&one, "s.json"));
    let r1 = run(
        &one,
        0,
        &small(64, &["--save-model", &ck1, "--summary-json", &sum1]),
        &[],
    );
    assert!(r1.ok, "{}\n{}", r1.stdout, r1.stderr);
    let one_ck = ttrec::train::checkpoint::load(Path::new(&ck1)).unwrap();
    assert_eq!((one_ck.meta.ranks, one_ck.meta.batch_size), (1, 64));
    for ((n, x), (_, y)) in ta.iter().zip(&tensors(&ck1)) {
        let c = compare_with(n, x, y, DLRM_RTOL, DLRM_ATOL);
        assert!(c.pass, "2 ranks at 32 vs 1 process at 64: {c:?}");
    }
    let (auc2, auc1) = (auc(&p(&a, "s.json")), auc(&sum1));
    assert!((auc2 - auc1).abs() <= 0.002, "AUC {auc2} vs {auc1}");

    // Stopped after 13 steps by every rank, then resumed: bitwise the uninterrupted run.
    let ck = p(&cut, "ck.safetensors");
    let stop = run(
        &cut,
        2,
        &small(32, &["--save-model", &ck, "--stop-after-steps", "13"]),
        &[],
    );
    assert!(!stop.ok, "{}", stop.stdout);
    assert!(
        stop.stderr.contains("resume with --load-model"),
        "{}",
        stop.stderr
    );
    assert!(
        !stop.stderr.contains("MPI_ABORT"),
        "an agreed stop is no abort: {}",
        stop.stderr
    );
    let res = run(
        &cut,
        2,
        &small(32, &["--load-model", &ck, "--save-model", &ck]),
        &[],
    );
    assert!(res.ok, "{}\n{}", res.stdout, res.stderr);
    assert!(res.stdout.contains("(step 13)"), "{}", res.stdout);
    for ((n, x), (_, y)) in ta.iter().zip(&tensors(&ck)) {
        assert_eq!(bits(x), bits(y), "{n}: the resumed run differs");
    }
}

#[test]
fn a_failing_or_crashing_rank_ends_the_job_without_hanging() {
    let dir = temp_dir("mpi-fault");
    let r = run(&dir, 2, &small(32, &[]), &[("TTREC_DIST_FAULT", "1:5")]);
    assert!(!r.ok, "{}", r.stdout);
    assert!(
        r.stderr.contains("rank 1 of 2") && r.stderr.contains("injected failure at step 5"),
        "{}",
        r.stderr
    );
    let r = run(
        &dir,
        2,
        &small(32, &[]),
        &[("TTREC_DIST_FAULT", "1:7:crash")],
    );
    assert!(!r.ok, "exit {:?}: {}", r.code, r.stdout);
    assert!(r.stderr.contains("crashing at step 7"), "{}", r.stderr);
    // Rank 0 never finished the run.
    assert!(!r.stdout.contains("final evaluation"), "{}", r.stdout);
}

#[test]
fn sigterm_to_one_rank_stops_every_rank_with_one_checkpoint() {
    let dir = temp_dir("mpi-signal");
    let ck = p(&dir, "ck.safetensors");
    // Long enough (500 epochs of 20 steps) that the signal comes mid-run.
    let args = small(32, &["--save-model", &ck, "--nepochs", "500"]);
    let send = |mpirun: u32, out: &Path| {
        let start = Instant::now();
        while std::fs::read_to_string(out)
            .unwrap_or_default()
            .matches("Finished training it")
            .count()
            < 3
        {
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "hang guard: no training progress"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // mpirun's own SIGTERM ends the ranks at once (OpenMPI); a rank's stops them together.
        let ranks = Command::new("pgrep")
            .args(["-P", &mpirun.to_string()])
            .output()
            .unwrap();
        let pids = String::from_utf8_lossy(&ranks.stdout).into_owned();
        let last = pids.lines().last().expect("the ranks' pids").to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &last])
            .status()
            .unwrap()
            .success());
    };
    let r = run_with(&dir, 2, &args, &[], Some(&send));
    assert_eq!(r.code, Some(143), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("SIGTERM") && r.stderr.contains("resume with --load-model"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("MPI_ABORT"), "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("training interrupted").count(),
        1,
        "{}",
        r.stderr
    );
    let saved = ttrec::train::checkpoint::load(Path::new(&ck)).unwrap();
    assert!(saved.meta.position.step >= 15, "{:?}", saved.meta.position);
    assert_eq!(
        (saved.meta.ranks, saved.meta.batch_size),
        (2, 64),
        "the checkpoint records its ranks and their global batch"
    );
}
