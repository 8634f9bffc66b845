//! Progress of long `ttrec data` commands when stderr is not a terminal (here: a pipe): plain
//! lines, no bar drawing; `TTREC_PROGRESS=off` silences them; `data preprocess` builds the data
//! store `ttrec train` then reuses; the log subscriber shows library log lines with `RUST_LOG`.

mod common;

use std::path::Path;
use std::process::Command;

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn ttrec_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ttrec"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("TTREC_PROGRESS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ttrec(args: &[&str]) -> Run {
    ttrec_env(args, &[])
}

/// Lines of `text` that start with `prefix`.
fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

fn assert_no_terminal_drawing(stderr: &str) {
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b'),
        "bar drawing off a terminal: {stderr:?}"
    );
}

fn synth(path: &Path, samples: &str) -> Run {
    ttrec(&[
        "data",
        "synth",
        "--samples",
        samples,
        "--out",
        path.to_str().unwrap(),
        "--scale",
        "0.001",
    ])
}

#[test]
fn synth_and_inspect_print_plain_progress_lines_off_a_terminal() {
    let dir = common::temp_dir("cli-progress-synth");
    let file = dir.join("s.txt");
    let r = synth(&file, "100000");
    assert!(r.ok, "{}", r.stderr);
    assert_no_terminal_drawing(&r.stderr);
    let prefix = format!("writing {}: ", file.display());
    let lines = lines_with(&r.stderr, &prefix);
    // A line at every tenth (the callback comes every 16,384 samples, so some tenths share
    // one), then the last one.
    assert!(lines.len() >= 5, "{}", r.stderr);
    let percents: Vec<u32> = lines[..lines.len() - 1]
        .iter()
        .map(|l| {
            let rest = &l[prefix.len()..];
            rest[..rest.find('%').unwrap_or_else(|| panic!("no %: {l}"))]
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        percents.windows(2).all(|w| w[0] < w[1]),
        "not increasing: {percents:?}"
    );
    assert!(lines[0].contains("/100,000 samples)"), "{}", lines[0]);
    assert!(
        lines.last().unwrap().contains("done, 100,000 samples in"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("wrote 100000 samples"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);

    let r = ttrec(&["data", "inspect", file.to_str().unwrap()]);
    assert!(r.ok, "{}", r.stderr);
    assert_no_terminal_drawing(&r.stderr);
    let prefix = format!("reading {}: ", file.display());
    let lines = lines_with(&r.stderr, &prefix);
    assert!(lines.len() >= 2, "{}", r.stderr);
    assert!(lines[0].contains("% ("), "{}", lines[0]);
    assert!(lines.last().unwrap().contains(": done, "), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("missing (build it: ttrec data preprocess"),
        "{}",
        r.stdout
    );

    // TTREC_PROGRESS=off: only the result line.
    let r = ttrec_env(
        &[
            "data",
            "synth",
            "--samples",
            "100000",
            "--out",
            file.to_str().unwrap(),
            "--scale",
            "0.001",
        ],
        &[("TTREC_PROGRESS", "off")],
    );
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn preprocess_builds_the_store_training_reuses() {
    let dir = common::temp_dir("cli-progress-preprocess");
    let (a, b) = (dir.join("day_0.txt"), dir.join("day_1.txt.gz"));
    assert!(synth(&a, "30000").ok);
    assert!(synth(&b, "20000").ok);
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());

    let r = ttrec_env(&["data", "preprocess", a_s, b_s], &[("RUST_LOG", "info")]);
    assert!(r.ok, "{}", r.stderr);
    assert_no_terminal_drawing(&r.stderr);
    let building = lines_with(&r.stderr, "building the data store: ");
    assert!(building.len() >= 2, "{}", r.stderr);
    assert!(building.last().unwrap().contains("done, "), "{}", r.stderr);
    // The library's log line, through the CLI's subscriber.
    assert!(
        r.stderr.contains("INFO") && r.stderr.contains("built: 50000 rows"),
        "{}",
        r.stderr
    );
    let store = dir.join("day_0.txt.2-files.ttcache");
    assert!(r.stdout.contains("built "), "{}", r.stdout);
    assert!(r.stdout.contains("(it was missing)"), "{}", r.stdout);
    assert!(r.stdout.contains("50000 samples"), "{}", r.stdout);
    assert!(store.exists(), "{} missing", store.display());

    // Again: nothing to do, no progress, no log lines at the default level.
    let r = ttrec(&["data", "preprocess", a_s, b_s]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("is valid: nothing to do"), "{}", r.stdout);
    assert!(r.stderr.is_empty(), "{}", r.stderr);

    // Training finds and reuses it (same default name, same contents).
    let data = ttrec::train::TrainData::criteo(&[a.clone(), b.clone()], None, None, None, 0, None)
        .unwrap();
    let describe = data.describe();
    assert!(describe.contains("reused"), "{describe}");
    assert!(describe.contains("50000 samples"), "{describe}");
    drop(data);

    // --force rebuilds; --cache (the old name of --store) still puts it elsewhere.
    let other = dir.join("other.ttcache");
    let r = ttrec(&[
        "data",
        "preprocess",
        dir.to_str().unwrap(),
        "--cache",
        other.to_str().unwrap(),
        "--force",
    ]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("(it was missing)"), "{}", r.stdout);
    assert!(other.exists());

    // A file that is not Criteo: an error naming it, no store left behind.
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, "hello\nworld\n").unwrap();
    let r = ttrec(&["data", "preprocess", bad.to_str().unwrap()]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("error:") && r.stderr.contains("bad.txt"),
        "{}",
        r.stderr
    );
    assert!(!dir.join("bad.txt.ttcache").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    std::fs::remove_dir_all(dir).unwrap();
}
