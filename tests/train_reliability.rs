//! A training run is never silently wrong and never loses a file (issue 16), through the
//! `ttrec train` binary on the small synthetic run `S`: a diverged model is an error
//! that names the step, the tensor and the last finite checkpoint, and is never saved; resuming
//! to a larger run continues; temp files do not outlive their writer; the metrics file holds
//! whole lines; checkpoints are checksummed whole and byte-identical for identical runs; output
//! paths, adapter limits and locks are checked before any work; SIGINT and SIGTERM stop
//! promptly with 130 and 143; a failed optional plot keeps exit 0.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_ttrec");

/// The issue's `S`: a small model on 20,000 synthetic samples at 1/1000 of Kaggle's tables
/// (148 training batches of 128 per epoch, 1,000 evaluation samples).
fn s(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "train",
        "--mini-batch-size",
        "128",
        "--synthetic-samples",
        "20000",
        "--synthetic-scale",
        "0.001",
        "--test-fraction",
        "0.05",
        "--arch-mlp-bot",
        "13-32-16",
        "--arch-mlp-top",
        "32-1",
        "--seed",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

struct Done {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Done {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
    fn both(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

fn train(args: &[String]) -> Done {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("running the ttrec binary");
    Done {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// The tensors of a checkpoint (which must load), as bits.
fn tensors(path: &str) -> Vec<(String, Vec<u32>)> {
    let ck = ttrec::train::checkpoint::load(Path::new(path))
        .unwrap_or_else(|e| panic!("{path} does not load: {e}"));
    ck.tensors
        .into_iter()
        .map(|(n, _, v)| (n, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

/// Non-finite values in a checkpoint (which must load).
fn non_finite(path: &str) -> usize {
    let ck = ttrec::train::checkpoint::load(Path::new(path)).unwrap();
    ck.tensors
        .iter()
        .map(|(_, _, v)| v.iter().filter(|x| !x.is_finite()).count())
        .sum()
}

/// The stored position of a checkpoint (which must load).
fn position(path: &str) -> ttrec::train::Position {
    ttrec::train::checkpoint::load(Path::new(path))
        .unwrap()
        .meta
        .position
}

/// Files in `dir` whose names end in `.tmp`.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// A running `ttrec train` whose stdout and stderr lines arrive on channels.
struct Running {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

fn spawn(args: &[String]) -> Running {
    let mut child = Command::new(BIN)
        .args(args)
        .env("TTREC_PROGRESS", "plain")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the ttrec binary");
    let lines = |r: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(|l| l.ok()) {
                let _ = tx.send(line);
            }
        });
        rx
    };
    let stdout = lines(Box::new(child.stdout.take().unwrap()));
    let stderr = lines(Box::new(child.stderr.take().unwrap()));
    Running {
        child,
        stdout,
        stderr,
    }
}

impl Running {
    /// Waits for a line of `from` that starts with `prefix` (two minutes at most).
    fn wait_for(&self, stderr: bool, prefix: &str) {
        let rx = if stderr { &self.stderr } else { &self.stdout };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return,
                Ok(_) => {}
                Err(e) => panic!("no line starting with {prefix:?}: {e}"),
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The exit code (None if killed by a signal) and the rest of stderr, within `limit`.
    fn finish(mut self, limit: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the run did not stop within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader threads end with the pipes.
        let mut rest = String::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            rest.push_str(&l);
            rest.push('\n');
        }
        (status.code(), rest)
    }
}

/// Item 1: a learning rate that blows the model up is an error naming the step and the first
/// non-finite tensor; nothing non-finite is saved, and the message says which checkpoint is the
/// last finite one.
#[test]
fn a_blown_up_model_is_an_error_and_is_never_saved() {
    let dir = temp_dir("rel-blowup");
    for lr in ["30", "1e6"] {
        let ck = p(&dir, &format!("x{lr}.st"));
        let r = train(&s(&[
            "--num-batches",
            "30",
            "--test-freq",
            "100",
            "--learning-rate",
            lr,
            "--save-model",
            &ck,
        ]));
        assert!(!r.ok(), "lr {lr}: a diverged run exited 0\n{}", r.both());
        assert_eq!(r.code, Some(1), "{}", r.both());
        let e = &r.stderr;
        assert!(e.contains("training stopped at step "), "{e}");
        assert!(e.contains("non-finite"), "{e}");
        assert!(
            e.contains("bot_l.") || e.contains("top_l.") || e.contains("emb_l."),
            "names no tensor: {e}"
        );
        assert!(e.contains("No finite checkpoint was written"), "{e}");
        assert!(
            !Path::new(&ck).exists(),
            "lr {lr}: a checkpoint was written"
        );
        assert!(!r.stdout.contains("final evaluation"), "{}", r.stdout);
    }
}

/// Item 2: a non-finite step between two prints is caught before the next evaluation writes
/// a checkpoint: the good file from before stays, and the message names it truly.
#[test]
fn the_last_good_checkpoint_is_truly_kept() {
    let dir = temp_dir("rel-kept");
    let kept = p(&dir, "kept.st");
    let r = train(&s(&["--num-batches", "5", "--save-model", &kept]));
    assert!(r.ok(), "{}", r.both());
    let good = tensors(&kept);
    let r = train(&s(&[
        "--num-batches",
        "50",
        "--learning-rate",
        "1e38",
        "--print-freq",
        "100",
        "--test-freq",
        "3",
        "--save-model",
        &kept,
    ]));
    assert_eq!(r.code, Some(1), "{}", r.both());
    assert!(r.stderr.contains("non-finite"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("The last finite checkpoint is {kept} (step 5)")),
        "{}",
        r.stderr
    );
    assert_eq!(non_finite(&kept), 0);
    assert!(tensors(&kept) == good, "kept.st was overwritten");
    // No checkpoint yet: the message names none.
    let fresh = p(&dir, "fresh.st");
    let r = train(&s(&[
        "--num-batches",
        "50",
        "--learning-rate",
        "1e38",
        "--print-freq",
        "100",
        "--test-freq",
        "3",
        "--save-model",
        &fresh,
    ]));
    assert_eq!(r.code, Some(1), "{}", r.both());
    assert!(
        r.stderr.contains("No finite checkpoint was written"),
        "{}",
        r.stderr
    );
    assert!(!Path::new(&fresh).exists());
}

/// Item 3: a run resumed with a larger --num-batches continues where it stopped, to the same
/// parameters as one run of that length.
#[test]
fn resuming_to_a_larger_run_continues_where_it_stopped() {
    let dir = temp_dir("rel-resume");
    let (a, b, whole) = (p(&dir, "a.st"), p(&dir, "b.st"), p(&dir, "whole.st"));
    let r = train(&s(&["--num-batches", "6", "--save-model", &a]));
    assert!(r.ok(), "{}", r.both());
    let r = train(&s(&[
        "--num-batches",
        "12",
        "--load-model",
        &a,
        "--save-model",
        &b,
    ]));
    assert!(r.ok(), "{}", r.both());
    // Steps count from the start; samples are this run's: 6 more steps of 128.
    assert!(
        r.stdout.contains("training: 12 steps, 768 samples"),
        "{}",
        r.stdout
    );
    let r = train(&s(&["--num-batches", "12", "--save-model", &whole]));
    assert!(r.ok(), "{}", r.both());
    assert_eq!(position(&b).step, 12);
    assert!(tensors(&b) == tensors(&whole), "resumed parameters differ");
    // And a second epoch after a whole first one.
    let (c, d) = (p(&dir, "c.st"), p(&dir, "d.st"));
    let r = train(&s(&["--num-batches", "4", "--save-model", &c]));
    assert!(r.ok(), "{}", r.both());
    let r = train(&s(&[
        "--num-batches",
        "4",
        "--nepochs",
        "2",
        "--load-model",
        &c,
        "--save-model",
        &d,
    ]));
    assert!(r.ok(), "{}", r.both());
    assert!(
        r.stdout.contains("training: 8 steps, 512 samples"),
        "{}",
        r.stdout
    );
    assert_eq!(position(&d).step, 8);
}

/// Item 4: a temp file of a dead writer (recognised by its name and pid) is removed by the
/// next write of the same target; a live writer's is left alone.
#[test]
fn stale_temp_files_are_removed_on_the_next_write() {
    let dir = temp_dir("rel-stale");
    let ck = p(&dir, "ck.st");
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let stale = dir.join(format!(".ck.st.{dead}.x1y2z3.tmp"));
    let live = dir.join(format!(".ck.st.{}.a1b2c3.tmp", std::process::id()));
    let other = dir.join(format!(".other.st.{dead}.q1w2e3.tmp"));
    for f in [&stale, &live, &other] {
        std::fs::write(f, b"half a checkpoint").unwrap();
    }
    let r = train(&s(&["--num-batches", "2", "--save-model", &ck]));
    assert!(r.ok(), "{}", r.both());
    assert!(
        !stale.exists(),
        "the dead writer's temp file is still there"
    );
    assert!(live.exists(), "a live writer's temp file was removed");
    assert!(other.exists(), "another target's temp file was removed");
}

/// Items 4 and 10: Ctrl-C during the data store's build stops at once (exit 130), leaving no
/// temp file and no store.
#[cfg(unix)]
#[test]
fn sigint_during_the_store_build_stops_at_once_and_cleans_up() {
    let dir = temp_dir("rel-build");
    let data = dir.join("day.txt");
    let st = Command::new(BIN)
        .args(["data", "synth", "--samples", "300000", "--scale", "0.001"])
        .arg("--out")
        .arg(&data)
        .output()
        .unwrap();
    assert!(st.status.success());
    let store = p(&dir, "day.store");
    let ck = p(&dir, "ck.st");
    let run = spawn(&[
        "train".into(),
        "--data".into(),
        data.display().to_string(),
        "--processed-data-file".into(),
        store.clone(),
        "--test-fraction".into(),
        "0.05".into(),
        "--arch-mlp-bot".into(),
        "13-32-16".into(),
        "--arch-mlp-top".into(),
        "32-1".into(),
        "--save-model".into(),
        ck.clone(),
    ]);
    run.wait_for(true, "building the data");
    run.signal("INT");
    let (code, stderr) = run.finish(Duration::from_secs(120));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(!stderr.contains("interrupted after step"), "{stderr}");
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));
    assert!(!Path::new(&store).exists());
    assert!(!Path::new(&ck).exists());
}

/// Item 10: SIGTERM is taken like Ctrl-C (the step finishes, a checkpoint is written), and the
/// exit code is 143; Ctrl-C's is 130.
#[cfg(unix)]
#[test]
fn sigterm_and_sigint_write_a_checkpoint_and_exit_143_and_130() {
    let dir = temp_dir("rel-term");
    for (signal, want) in [("TERM", 143), ("INT", 130)] {
        let ck = p(&dir, &format!("{signal}.st"));
        let run = spawn(&s(&[
            "--nepochs",
            "1000",
            "--print-freq",
            "5",
            "--save-model",
            &ck,
        ]));
        run.wait_for(false, "Finished training it");
        run.signal(signal);
        let (code, stderr) = run.finish(Duration::from_secs(120));
        assert_eq!(code, Some(want), "SIG{signal}: {stderr}");
        assert!(stderr.contains("interrupted after step"), "{stderr}");
        assert!(!tensors(&ck).is_empty());
        assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));
    }
}

/// Item 10: Ctrl-C while the plans compile stops at once: no step, no checkpoint.
#[cfg(unix)]
#[test]
fn sigint_while_the_plans_compile_stops_at_once() {
    let dir = temp_dir("rel-compile");
    let ck = p(&dir, "ck.st");
    // The default MLPs: their plans take seconds to compile on a CPU adapter.
    let mut args = s(&["--save-model", &ck]);
    let at = args.iter().position(|a| a == "--arch-mlp-bot").unwrap();
    args.drain(at..at + 4);
    let run = spawn(&args);
    run.wait_for(false, "model:");
    run.signal("INT");
    let (code, stderr) = run.finish(Duration::from_secs(120));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(!stderr.contains("interrupted after step"), "{stderr}");
    assert!(!Path::new(&ck).exists());
}

/// Item 5: every metrics record is one whole JSON line naming its run; a partial line left by
/// a failed write is cut back before the next run appends.
#[test]
fn metrics_lines_are_whole_and_name_their_run() {
    let dir = temp_dir("rel-metrics");
    let m = p(&dir, "m.jsonl");
    std::fs::write(&m, "{\"kind\":\"train\",\"step\":1}\n{\"kind\":\"tr").unwrap();
    for _ in 0..2 {
        let r = train(&s(&[
            "--num-batches",
            "4",
            "--print-freq",
            "2",
            "--test-freq",
            "4",
            "--metrics-jsonl",
            &m,
        ]));
        assert!(r.ok(), "{}", r.both());
    }
    let text = std::fs::read_to_string(&m).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    // The old whole line, then 2 runs x (2 prints + 1 test).
    assert_eq!(lines.len(), 1 + 2 * 3, "{text}");
    let runs: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l["run"].as_str().unwrap())
        .collect();
    assert!(runs[..3].iter().all(|r| *r == runs[0]), "{runs:?}");
    assert!(runs[3..].iter().all(|r| *r == runs[3]), "{runs:?}");
    assert_ne!(runs[0], runs[3], "two runs share an id");
    for l in &lines[1..] {
        let started = l["started"].as_str().expect("a start time");
        assert!(started.len() == 20 && started.ends_with('Z'), "{started}");
    }
}

/// Item 6: one flipped digit of the stored position is a checksum error, not a silent resume
/// at the wrong batch.
#[test]
fn the_checksum_covers_the_stored_position() {
    let dir = temp_dir("rel-checksum");
    let ck = p(&dir, "ck.st");
    let r = train(&s(&["--num-batches", "20", "--save-model", &ck]));
    assert!(r.ok(), "{}", r.both());
    let mut bytes = std::fs::read(&ck).unwrap();
    // The position is JSON inside the JSON header: {\"batch\":20,...}.
    let needle = b"batch\\\":20";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the stored batch");
    bytes[at + needle.len() - 2] = b'3';
    let flipped = p(&dir, "flipped.st");
    std::fs::write(&flipped, &bytes).unwrap();
    let r = train(&s(&["--num-batches", "40", "--load-model", &flipped]));
    assert!(!r.ok(), "{}", r.both());
    assert!(r.stderr.contains("checksum mismatch"), "{}", r.stderr);
}

/// Item 7: an output path that cannot be written is an error before any work.
#[test]
fn output_paths_are_checked_before_any_work() {
    let dir = temp_dir("rel-paths");
    let sub = p(&dir, "a-directory");
    std::fs::create_dir_all(&sub).unwrap();
    for (flag, value) in [
        ("--summary-json", sub.clone()),
        ("--save-model", sub.clone()),
        ("--metrics-jsonl", sub.clone()),
        ("--plot", sub.clone()),
    ] {
        let r = train(&s(&["--num-batches", "2", flag, &value]));
        assert_eq!(r.code, Some(1), "{flag}: {}", r.both());
        assert!(r.stderr.contains(flag), "{flag}: {}", r.stderr);
        assert!(r.stderr.contains("is a directory"), "{flag}: {}", r.stderr);
        assert!(!r.stdout.contains("adapter:"), "{flag}: work started first");
    }
    // A read-only directory (not for root, who may write anywhere).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.join("read-only");
        std::fs::create_dir_all(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(ro.join("probe"), b"x").is_err() {
            let r = train(&s(&["--summary-json", &p(&ro, "s.json")]));
            assert_eq!(r.code, Some(1), "{}", r.both());
            assert!(r.stderr.contains("--summary-json"), "{}", r.stderr);
            assert!(!r.stdout.contains("adapter:"), "work started first");
        }
    }
}

/// The smallest power-of-two TT rank whose core 1 of S's largest TT table is over `binding`
/// bytes.
fn rank_over(binding: u64) -> usize {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ttrec::train::TrainArgs,
    }
    let sizes = *ttrec::data::SyntheticCriteo::new(1, 0.001)
        .unwrap()
        .table_sizes();
    let mut rank = 64;
    loop {
        // --tt-tables: asked for, the tables are TT even at ranks where TT does not pay.
        let w = Wrap::parse_from(s(&["--tt-rank", &rank.to_string(), "--tt-tables", "7"]));
        let config = ttrec::train::model_config(&w.args, &sizes).unwrap();
        let largest = (0..config.tables.len())
            .filter_map(|t| config.tt_shape(t).unwrap())
            .map(|shape| shape.core_len(1) as u64 * 4)
            .max()
            .unwrap();
        if largest > binding {
            return rank;
        }
        rank *= 2;
    }
}

/// Item 8: options that make a plan larger than the adapter allows are ttrec's own error,
/// naming the option and the limit, before the model is built. The values are chosen from
/// this adapter's binding limit: a TT core, a batch of activations (at least 27 x 16 values a
/// sample) and a cache of 16-value rows each just over it.
#[test]
fn options_over_the_adapters_limits_are_named_at_once() {
    let binding = common::gpu().max_binding();
    let rank = rank_over(binding).to_string();
    let batch = binding / (4 * 27 * 16) + 1;
    let samples = (2 * batch + 1000).to_string();
    let batch = batch.to_string();
    let cache_rows = (binding / (4 * 16) + 1).to_string();
    for (args, flag) in [
        (vec!["--tt-rank", &rank, "--tt-tables", "7"], "--tt-rank"),
        (
            vec!["--synthetic-samples", &samples, "--mini-batch-size", &batch],
            "--mini-batch-size",
        ),
        (
            vec!["--synthetic-scale", "1", "--cache-rows", &cache_rows],
            "--cache-rows",
        ),
    ] {
        // The case's options replace S's.
        let mut a = s(&["--num-batches", "1"]);
        for pair in args.chunks(2) {
            match a.iter().position(|x| x == pair[0]) {
                Some(i) => a[i + 1] = pair[1].to_string(),
                None => a.extend([pair[0].to_string(), pair[1].to_string()]),
            }
        }
        let r = train(&a);
        assert_eq!(r.code, Some(1), "{args:?}: {}", r.both());
        assert!(r.stderr.contains(flag), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("limit"), "{args:?}: {}", r.stderr);
        assert!(
            !r.stdout.contains("model:"),
            "{args:?}: the model was built first"
        );
    }
}

/// Item 11: identical runs write byte-identical checkpoints.
#[test]
fn identical_runs_write_identical_checkpoints() {
    let dir = temp_dir("rel-identical");
    let (a, b) = (p(&dir, "a.st"), p(&dir, "b.st"));
    for ck in [&a, &b] {
        let r = train(&s(&["--num-batches", "3", "--save-model", ck]));
        assert!(r.ok(), "{}", r.both());
    }
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "the checkpoints differ in bytes"
    );
}

/// Item 11: safetensors files (parity dumps, TT checkpoints) are byte-identical whatever the
/// order their metadata map iterates in.
#[test]
fn safetensors_files_do_not_depend_on_the_metadata_maps_order() {
    let dir = temp_dir("rel-safetensors");
    let tensors = vec![("w".to_string(), vec![2usize, 2], vec![1f32, 2.0, 3.0, 4.0])];
    let meta = || {
        (0..16)
            .map(|i| (format!("key{i}"), format!("value {i}")))
            .collect::<std::collections::HashMap<String, String>>()
    };
    let first = dir.join("first.safetensors");
    ttrec::tt::checkpoint::write_safetensors(&first, &tensors, meta()).unwrap();
    let want = std::fs::read(&first).unwrap();
    for i in 0..8 {
        let again = dir.join(format!("again{i}.safetensors"));
        ttrec::tt::checkpoint::write_safetensors(&again, &tensors, meta()).unwrap();
        assert!(std::fs::read(&again).unwrap() == want, "write {i} differs");
    }
    let (m, t) = ttrec::tt::checkpoint::read_safetensors(&first).unwrap();
    assert_eq!(m, meta());
    assert_eq!(t.len(), 1);
}

/// Item 12: a failed optional output (the plot next to the summary) is reported, and the
/// finished run still exits 0; asked for with --plot, it is an error.
#[test]
fn a_failed_optional_plot_keeps_exit_0() {
    let dir = temp_dir("rel-plot");
    let summary = p(&dir, "s.json");
    // The plot's path is taken by a directory.
    std::fs::create_dir_all(dir.join("s.svg")).unwrap();
    let r = train(&s(&["--num-batches", "2", "--summary-json", &summary]));
    assert!(r.ok(), "{}", r.both());
    assert!(r.stderr.contains("plot"), "{}", r.stderr);
    assert!(Path::new(&summary).exists());
}

/// Item 13: a second run writing the same checkpoint path is refused at once, naming the run
/// (pid) that holds it.
#[cfg(unix)]
#[test]
fn two_runs_cannot_write_one_checkpoint() {
    let dir = temp_dir("rel-lock");
    let ck = p(&dir, "ck.st");
    let first = spawn(&s(&[
        "--nepochs",
        "1000",
        "--print-freq",
        "5",
        "--save-model",
        &ck,
    ]));
    first.wait_for(false, "Finished training it");
    let r = train(&s(&["--num-batches", "2", "--save-model", &ck]));
    let holder = first.child.id();
    first.signal("INT");
    let (code, stderr) = first.finish(Duration::from_secs(120));
    assert_eq!(code, Some(130), "{stderr}");
    assert_eq!(r.code, Some(1), "{}", r.both());
    assert!(r.stderr.contains(&format!("pid {holder}")), "{}", r.stderr);
    assert!(!r.stdout.contains("adapter:"), "work started first");
    // Once the first has ended, the path is free.
    let r = train(&s(&["--num-batches", "2", "--save-model", &ck]));
    assert!(r.ok(), "{}", r.both());
}
