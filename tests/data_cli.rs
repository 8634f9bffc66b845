//! `ttrec data synth` and `ttrec data inspect --json`, through the real binary.

mod common;
use common::sample_path;

use std::process::Command;

fn ttrec(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ttrec"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn inspect_json(path: &str) -> serde_json::Value {
    let (ok, stdout, stderr) = ttrec(&["data", "inspect", path, "--json"]);
    assert!(ok, "inspect failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn inspect_json_on_the_sample() {
    assert!(
        std::path::Path::new(sample_path()).exists(),
        "the sample {} was not written",
        sample_path()
    );
    let v = inspect_json(sample_path());
    assert_eq!(v["valid_lines"], 200);
    assert_eq!(v["malformed_lines"], 0);
    assert_eq!(v["positive_rate"], 0.22);
    let sizes = v["table_sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), 26);
    assert_eq!(sizes[8], 2, "C9 takes two values in the sample");
    assert_eq!(v["cache"]["valid"], false);
}

#[test]
fn synth_writes_gzip_that_inspect_reads_and_reports_a_cache() {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("ttrec-test-cli-{}-{nonce}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("synth.txt.gz");
    let out_s = out.to_str().unwrap();
    let (ok, _, stderr) = ttrec(&[
        "data",
        "synth",
        "--samples",
        "3000",
        "--out",
        out_s,
        "--seed",
        "9",
        "--scale",
        "0.001",
    ]);
    assert!(ok, "synth failed: {stderr}");
    assert_eq!(std::fs::read(&out).unwrap()[..2], [0x1f, 0x8b], "not gzip");
    let v = inspect_json(out_s);
    assert_eq!(v["valid_lines"], 3000);
    assert_eq!(v["malformed_lines"], 0);
    let rate = v["positive_rate"].as_f64().unwrap();
    assert!((0.2..0.3).contains(&rate), "positive rate {rate}");
    // Every categorical table of the scaled generator is at most its scaled size (+1 for missing).
    let scaled = ttrec::data::scaled_table_sizes(0.001).unwrap();
    for (c, size) in v["table_sizes"].as_array().unwrap().iter().enumerate() {
        assert!(
            size.as_u64().unwrap() <= scaled[c] + 1,
            "C{}: {size} > {}",
            c + 1,
            scaled[c]
        );
    }
    // Same seed, same bytes.
    let again = dir.join("again.txt.gz");
    ttrec(&[
        "data",
        "synth",
        "--samples",
        "3000",
        "--out",
        again.to_str().unwrap(),
        "--seed",
        "9",
        "--scale",
        "0.001",
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    // Once the cache is built, inspect says it is valid.
    ttrec::data::PreprocessedDataset::open_or_build(&out, &Default::default()).unwrap();
    assert_eq!(inspect_json(out_s)["cache"]["valid"], true);
    // Bad arguments fail with a message, not a panic.
    let (ok, _, stderr) = ttrec(&[
        "data",
        "synth",
        "--samples",
        "1",
        "--out",
        out_s,
        "--scale",
        "0",
    ]);
    assert!(!ok && stderr.contains("scale"), "{stderr}");
    let (ok, _, stderr) = ttrec(&["data", "inspect", "/nonexistent/x.txt"]);
    assert!(!ok && stderr.contains("/nonexistent/x.txt"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Issue 16 item 9: after a same-size edit with the mtime put back, `data inspect` says the store
/// is stale because the source's contents changed, not "valid".
#[test]
fn inspect_reports_a_store_stale_after_a_same_size_edit() {
    let dir = common::temp_dir("cli-same-size");
    let source = dir.join("train.txt");
    std::fs::write(&source, common::sample_text()).unwrap();
    let source_s = source.to_str().unwrap();
    let (ok, _, stderr) = ttrec(&["data", "preprocess", source_s]);
    assert!(ok, "{stderr}");
    assert_eq!(inspect_json(source_s)["store"]["valid"], true);
    common::criteo::flip_first_label_keeping_size_and_mtime(&source);
    let v = inspect_json(source_s);
    assert_eq!(v["store"]["valid"], false);
    assert_eq!(v["cache"]["valid"], false);
    let state = v["store"]["state"].as_str().unwrap();
    assert!(
        state.starts_with("stale") && state.contains("content"),
        "{state}"
    );
    let (ok, stdout, stderr) = ttrec(&["data", "inspect", source_s]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(": stale: source content changed"),
        "{stdout}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
