//! Where ttrec promises to run beyond its default device, through the `ttrec` binary: the parity
//! fixtures (tests/fixtures/parity, cuda, dlrm) under WebGPU's default limits (`--limits webgpu`)
//! and on wgpu's GL backend (`WGPU_BACKEND=gl`: Mesa's GL llvmpipe in CI, which `.ci/run`
//! installs; without a GL adapter that test fails, it does not skip), and the default training
//! configuration at batch 2,048 under WebGPU's limits (tables scaled down for CI time).

mod common;

use std::process::Command;

const FIXTURE_DIRS: [&str; 3] = [
    "tests/fixtures/parity",
    "tests/fixtures/cuda",
    "tests/fixtures/dlrm",
];

/// Runs `ttrec parity --json <dirs> <extra>` with `env`; returns the summary record.
fn parity(extra: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ttrec"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("parity")
        .arg("--json")
        .args(FIXTURE_DIRS)
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("runs ttrec");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ttrec parity {extra:?} with {env:?} failed:\n{stdout}\n{stderr}"
    );
    let summary = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "parity_summary")
        .unwrap_or_else(|| panic!("no parity_summary in:\n{stdout}\n{stderr}"));
    let files: usize = FIXTURE_DIRS
        .iter()
        .map(|d| {
            std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(d))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .and_then(|x| x.to_str())
                        == Some("safetensors")
                })
                .count()
        })
        .sum();
    assert!(files >= 25, "only {files} fixtures found");
    assert_eq!(summary["total"], files, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    summary
}

#[test]
fn parity_fixtures_pass_under_webgpu_limits() {
    let s = parity(&["--limits", "webgpu"], &[]);
    assert_eq!(s["limits"], "webgpu", "{s}");
}

#[test]
fn parity_fixtures_pass_on_the_gl_backend() {
    // TTREC_ADAPTER is cleared so that the GL adapter, whatever its name, is the one chosen.
    let s = parity(&[], &[("WGPU_BACKEND", "gl"), ("TTREC_ADAPTER", "")]);
    assert_eq!(s["backend"], "Gl", "not the GL backend: {s}");
}

/// `train_kaggle`'s default model (MLPs 13-512-256-64-16 and 512-256-1, D 16, the 7 largest
/// tables TT at rank 32, evaluation batches of 16,384) for 20 steps at batch 2,048 under WebGPU's
/// limits. The synthetic tables are Kaggle's sizes times 0.01 to keep CI short; the full-size
/// run is reported in the README.
#[test]
fn default_training_at_batch_2048_runs_under_webgpu_limits() {
    let dir = common::temp_dir("webgpu-train");
    let summary = dir.join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_ttrec"))
        .args([
            "train",
            "--limits",
            "webgpu",
            "--mini-batch-size",
            "2048",
            "--num-batches",
            "20",
            "--synthetic-scale",
            "0.01",
            "--synthetic-samples",
            "60000",
            // Asked for: at 1/100 of Kaggle's sizes the default keeps C24 and C26 dense (TT at
            // rank 32 would not be 2x smaller).
            "--tt-tables",
            "7",
            "--summary-json",
        ])
        .arg(&summary)
        .output()
        .expect("runs ttrec");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["steps"], 20, "{s}");
    assert_eq!(s["tt_tables"], 7, "{s}");
    assert!(s["eval_samples"].as_u64().unwrap() > 0, "{s}");
    std::fs::remove_dir_all(&dir).ok();
}
