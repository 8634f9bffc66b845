//! The CLI's `--json` records (each with a "type"), its list flags (comma-separated or
//! repeated) and its checks of numeric flags, through the real binary.

mod common;

use std::process::Command;

use serde_json::Value;

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn ttrec(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_ttrec"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TTREC_PROGRESS")
        .output()
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every stdout line as JSON; each must have a string "type".
fn records(r: &Run) -> Vec<Value> {
    r.stdout
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v["type"].is_string(), "no \"type\": {l}");
            v
        })
        .collect()
}

fn of_type<'a>(recs: &'a [Value], t: &str) -> Vec<&'a Value> {
    recs.iter().filter(|v| v["type"] == t).collect()
}

/// The fields every bench record (and info, parity_summary) carries about where it ran.
fn assert_env(v: &Value) {
    assert_eq!(v["ttrec_version"], env!("CARGO_PKG_VERSION"), "{v}");
    for k in ["adapter", "backend", "device_type", "driver", "driver_info"] {
        assert!(v[k].is_string(), "{k} missing: {v}");
    }
    assert!(v["timestamps"].is_boolean(), "{v}");
    assert!(
        v["subgroup_size"].is_null() || v["subgroup_size"].as_u64().unwrap() >= 4,
        "{v}"
    );
}

fn assert_spread(v: &Value, min_reps: u64) {
    let (p10, med, p90) = (
        v["p10"].as_f64().unwrap(),
        v["median"].as_f64().unwrap(),
        v["p90"].as_f64().unwrap(),
    );
    assert!(0.0 < p10 && p10 <= med && med <= p90, "{v}");
    assert!(v["reps"].as_u64().unwrap() >= min_reps, "{v}");
}

/// Whether the subgroup flag agrees with the kernel list (null exactly when no list).
fn assert_kernels(v: &Value) {
    match v["kernels"].as_array() {
        Some(k) => {
            assert!(!k.is_empty(), "{v}");
            let sg = k.iter().any(|k| k.as_str().unwrap().contains("(subgroup)"));
            assert_eq!(v["subgroup_kernels"], sg, "{v}");
        }
        None => {
            assert_eq!(v["timestamps"], false, "{v}");
            assert!(v["subgroup_kernels"].is_null(), "{v}");
        }
    }
}

#[test]
fn info_json() {
    let r = ttrec(&["info", "--json"]);
    assert!(r.ok, "{}", r.stderr);
    let recs = records(&r);
    assert_eq!(recs.len(), 1);
    let v = &recs[0];
    assert_eq!(v["type"], "info");
    assert_env(v);
    assert!(v["max_buffer_size"].as_u64().unwrap() > 0);
    assert!(v["subgroup_kernels"].is_boolean());
    assert_eq!(v["subgroup_kernels"], !v["subgroup_size"].is_null());
}

#[test]
fn bench_tt_json_with_spread_kernels_and_profile() {
    // Comma-separated and repeated --config together.
    let r = ttrec(&[
        "bench",
        "tt",
        "--config",
        "fbtt,kaggle-r8",
        "--config",
        "kaggle-r16",
        "--bags",
        "16",
        "--seconds",
        "0",
        "--iters",
        "3",
        "--json",
        "--profile",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let recs = records(&r);
    let cases = of_type(&recs, "bench_tt");
    let names: Vec<&str> = cases
        .iter()
        .map(|v| v["config"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fbtt", "kaggle-r8", "kaggle-r16"]);
    for v in &cases {
        assert_env(v);
        assert_eq!(v["bags"], 16);
        assert!(v["iterations"].as_u64().unwrap() >= 3);
        for m in ["forward", "backward", "step"] {
            assert_spread(&v["spread_us"][m], 3);
        }
        let med_ms = v["spread_us"]["step"]["median"].as_f64().unwrap() / 1e3;
        assert!(
            (med_ms - v["step_ms"].as_f64().unwrap()).abs() < 1e-9,
            "{v}"
        );
        assert_kernels(v);
    }
    let kernels = of_type(&recs, "bench_tt_kernel");
    if cases[0]["timestamps"] == true {
        assert!(kernels.len() >= 3 * 5, "{} kernel records", kernels.len());
        for k in &kernels {
            assert!(k["config"].is_string() && k["node"].is_string() && k["us"].is_number());
        }
    }
    assert_eq!(
        cases.len() + kernels.len(),
        recs.len(),
        "unknown record types"
    );
    // Progress on stderr (not a terminal here: plain lines).
    assert!(r.stderr.contains("bench tt: "), "{}", r.stderr);
    assert!(r.stderr.contains("kaggle-r16 step"), "{}", r.stderr);
    assert!(r.stderr.contains("done, 9 measurements"), "{}", r.stderr);
}

#[test]
fn bench_dlrm_json_with_spread_and_profile() {
    let r = ttrec(&[
        "bench",
        "dlrm",
        "--variant",
        "tt",
        "--batch",
        "16,32",
        "--scale",
        "0.001",
        "--rank",
        "4",
        "--seconds",
        "0",
        "--steps",
        "5",
        "--json",
        "--profile",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let recs = records(&r);
    let cases = of_type(&recs, "bench_dlrm");
    let batches: Vec<u64> = cases.iter().map(|v| v["batch"].as_u64().unwrap()).collect();
    assert_eq!(batches, [16, 32]);
    for v in &cases {
        assert_env(v);
        assert_eq!(v["variant"], "tt");
        assert!(v["gemm"].is_string());
        assert!(v["samples_per_s"].as_f64().unwrap() > 0.0);
        assert_spread(&v["samples_per_s_spread"], 5);
        assert_spread(&v["synced_step_ms_spread"], 5);
        assert_eq!(v["synced_step_ms"], v["synced_step_ms_spread"]["median"]);
        assert_kernels(v);
    }
    let nodes = of_type(&recs, "bench_dlrm_node");
    let parts = of_type(&recs, "bench_dlrm_part");
    if cases[0]["timestamps"] == true {
        assert!(!nodes.is_empty() && !parts.is_empty());
    }
    assert_eq!(
        cases.len() + nodes.len() + parts.len(),
        recs.len(),
        "unknown record types"
    );
}

#[test]
fn parity_json_cases_and_summary() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/parity/d2_sum.safetensors"
    );
    let r = ttrec(&["parity", fixture, "/no/such/fixture.safetensors", "--json"]);
    assert!(!r.ok, "a missing fixture must fail the run");
    let recs = records(&r);
    assert_eq!(recs.len(), 3, "{}", r.stdout);
    let cases = of_type(&recs, "parity_case");
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0]["pass"], true, "{}", cases[0]);
    assert_eq!(cases[0]["name"], "d2_sum");
    let checks = cases[0]["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    for c in checks {
        assert_eq!(c["pass"], true);
        assert!(c["worst_abs"].as_f64().unwrap() <= c["tolerance"].as_f64().unwrap());
    }
    assert_eq!(cases[1]["pass"], false);
    assert!(cases[1]["error"]
        .as_str()
        .unwrap()
        .contains("/no/such/fixture.safetensors"));
    let summary = &recs[2];
    assert_eq!(summary["type"], "parity_summary");
    assert_env(summary);
    assert_eq!(
        (
            summary["passed"].as_u64(),
            summary["failed"].as_u64(),
            summary["total"].as_u64()
        ),
        (Some(1), Some(1), Some(2))
    );
}

#[test]
fn bad_numbers_are_errors_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["bench", "tt", "--seconds", "nan"], "--seconds"),
        (&["bench", "tt", "--seconds", "-1"], "--seconds"),
        (&["bench", "tt", "--seconds", "inf"], "--seconds"),
        (&["bench", "tt", "--iters", "0"], "--iters"),
        (&["bench", "tt", "--bags", "0"], "--bags"),
        (&["bench", "tt", "--config", "fbtt,nope"], "nope"),
        (&["bench", "dlrm", "--seconds", "NaN"], "--seconds"),
        (&["bench", "dlrm", "--scale", "0"], "--scale"),
        (&["bench", "dlrm", "--scale", "-2"], "--scale"),
        (&["bench", "dlrm", "--batch", "128,0"], "--batch"),
        (&["bench", "dlrm", "--variant", "tt,sparse"], "--variant"),
        (&["bench", "dlrm", "--rank", "0"], "--rank"),
        (
            &["data", "synth", "--samples", "0", "--out", "/tmp/x.txt"],
            "--samples",
        ),
        (
            &[
                "data",
                "synth",
                "--samples",
                "5",
                "--out",
                "/tmp/x.txt",
                "--scale",
                "nan",
            ],
            "--scale",
        ),
        (
            &["data", "preprocess", "x.txt", "--max-ind-range", "0"],
            "--max-ind-range",
        ),
    ];
    for (args, flag) in cases {
        let r = ttrec(args);
        assert!(!r.ok, "{args:?} was accepted");
        assert!(
            r.stderr.contains(flag) && r.stderr.starts_with("error:"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn data_json_records_have_types() {
    let dir = common::temp_dir("cli-json-data");
    let file = dir.join("s.txt");
    let f = file.to_str().unwrap();
    let r = ttrec(&[
        "data",
        "synth",
        "--samples",
        "2000",
        "--out",
        f,
        "--scale",
        "0.001",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let r = ttrec(&["data", "inspect", f, "--json"]);
    assert!(r.ok, "{}", r.stderr);
    let v = &records(&r)[0];
    assert_eq!(v["type"], "data_inspect");
    assert_eq!(v["valid_lines"], 2000);
    assert_eq!(v["cache"]["valid"], false);
    let r = ttrec(&["data", "preprocess", f, "--json"]);
    assert!(r.ok, "{}", r.stderr);
    let v = &records(&r)[0];
    assert_eq!(v["type"], "data_preprocess");
    assert_eq!(v["built"], true);
    assert_eq!(v["found"], "missing");
    assert_eq!(v["rows"], 2000);
    assert_eq!(v["malformed_lines"], 0);
    assert_eq!(v["table_sizes"].as_array().unwrap().len(), 26);
    let r = ttrec(&["data", "inspect", f, "--json"]);
    assert_eq!(records(&r)[0]["cache"]["valid"], true);
    std::fs::remove_dir_all(dir).unwrap();
}
