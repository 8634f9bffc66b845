//! `ttrec data inspect --json` and `ttrec data preprocess --json` on a Criteo-format file with
//! malformed lines of every kind (wrong field count, bad integer, bad hex, bad label), two of
//! each among valid lines: the counts per kind and the first examples (line, column, value).

mod common;

use std::process::Command;

use serde_json::{json, Value};

fn ttrec(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ttrec"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TTREC_PROGRESS")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A valid line: label, 13 integers (some missing), 26 hex ids (some missing).
fn valid(i: usize) -> Vec<String> {
    let mut f = vec![(i % 2).to_string()];
    f.extend((0..13).map(|j| {
        if (i + j).is_multiple_of(5) {
            String::new()
        } else {
            ((i * 7 + j) % 50).to_string()
        }
    }));
    f.extend((0..26).map(|c| {
        if (i + c).is_multiple_of(7) {
            String::new()
        } else {
            format!("{:08x}", (i * 31 + c * 17) % 9)
        }
    }));
    f
}

/// The file: 20 valid lines with the malformed ones at known line numbers.
fn file() -> (String, usize) {
    let bad: Vec<(usize, Vec<String>)> = vec![
        (3, valid(0)[..39].to_vec()), // 39 fields
        (6, {
            let mut f = valid(1);
            f[3] = "12x".into(); // I3
            f
        }),
        (9, {
            let mut f = valid(2);
            f[14 + 4] = "zz12".into(); // C5
            f
        }),
        (12, {
            let mut f = valid(3);
            f[0] = "2".into();
            f
        }),
        (15, [valid(4), vec!["1".into()]].concat()), // 41 fields
        (18, {
            let mut f = valid(5);
            f[13] = "abc".into(); // I13
            f
        }),
        (21, {
            let mut f = valid(6);
            f[39] = "123456789".into(); // C26: nine hex digits
            f
        }),
        (24, {
            let mut f = valid(7);
            f[0] = "x".into();
            f
        }),
    ];
    let mut lines = Vec::new();
    let mut v = 0;
    for n in 1..=28 {
        match bad.iter().find(|(at, _)| *at == n) {
            Some((_, f)) => lines.push(f.join("\t")),
            None => {
                lines.push(valid(100 + v).join("\t"));
                v += 1;
            }
        }
    }
    (lines.join("\n") + "\n", v)
}

#[test]
fn inspect_and_preprocess_json_count_every_kind_of_malformed_line() {
    let dir = common::temp_dir("edges-cli-malformed");
    let path = dir.join("day_0.txt");
    let (text, valid_lines) = file();
    assert_eq!(valid_lines, 20);
    std::fs::write(&path, text).unwrap();
    let p = path.to_str().unwrap();
    let (ok, stdout, stderr) = ttrec(&["data", "inspect", p, "--json"]);
    assert!(ok, "{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["type"], "data_inspect");
    assert_eq!(
        (&v["lines"], &v["valid_lines"], &v["malformed_lines"]),
        (&json!(28), &json!(20), &json!(8)),
        "{v}"
    );
    let m = &v["malformed"];
    let first = |kind: &str| -> Vec<Value> { m[kind]["first"].as_array().unwrap().clone() };
    for kind in ["field_count", "bad_integer", "bad_hex", "bad_label"] {
        assert_eq!(m[kind]["count"], 2, "{kind}: {m}");
        assert_eq!(first(kind).len(), 2, "{kind}: {m}");
    }
    assert_eq!(
        first("field_count"),
        [
            json!({"line": 3, "column": null, "value": "39"}),
            json!({"line": 15, "column": null, "value": "41"}),
        ]
    );
    assert_eq!(
        first("bad_integer"),
        [
            json!({"line": 6, "column": "I3", "value": "12x"}),
            json!({"line": 18, "column": "I13", "value": "abc"}),
        ]
    );
    assert_eq!(
        first("bad_hex"),
        [
            json!({"line": 9, "column": "C5", "value": "zz12"}),
            json!({"line": 21, "column": "C26", "value": "123456789"}),
        ]
    );
    assert_eq!(
        first("bad_label"),
        [
            json!({"line": 12, "column": "label", "value": "2"}),
            json!({"line": 24, "column": "label", "value": "x"}),
        ]
    );
    let (ok, stdout, stderr) = ttrec(&["data", "preprocess", p, "--json"]);
    assert!(ok, "{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["type"], "data_preprocess");
    assert_eq!(
        (&v["lines"], &v["rows"], &v["malformed_lines"]),
        (&json!(28), &json!(20), &json!(8)),
        "{v}"
    );
    assert_eq!(
        v["malformed"],
        json!({"field_count": 2, "bad_integer": 2, "bad_hex": 2, "bad_label": 2}),
        "{v}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Output piped into a reader that has already gone (`ttrec info --list | head -0`): ttrec ends
/// quietly, killed by SIGPIPE as any Unix tool, never a "failed printing to stdout" panic.
#[cfg(unix)]
#[test]
fn a_closed_stdout_pipe_ends_quietly_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ttrec"))
        .args(["info", "--list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ttrec runs");
    // The reader goes before ttrec has enumerated the adapters and printed.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("ttrec ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
    assert!(
        out.status.success() || out.status.signal() == Some(13),
        "{:?}: {err}",
        out.status
    );
}
