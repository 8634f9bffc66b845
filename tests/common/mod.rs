//! Shared helpers of the tests: the GPU, random values, temp dirs, the Criteo sample.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The adapter the tests run on: the same choice as the library (TTREC_ADAPTER, WGPU_BACKEND).
/// With no adapter the tests fail, they do not skip.
pub fn gpu() -> ttrec::gpu::Gpu {
    ttrec::gpu::Gpu::new()
        .unwrap_or_else(|e| panic!("tests need a wgpu adapter (lavapipe works): {e}"))
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Random non-zero values in about [-1, 1].
pub fn values(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v: f32 = rng.random_range(-1.0..1.0);
            if v.abs() < 0.05 {
                v + 0.1f32.copysign(v)
            } else {
                v
            }
        })
        .collect()
}

/// Random non-zero TT cores of about unit scale (each value in about [-0.6, 0.6]).
pub fn random_cores(shape: &ttrec::tt::TtShape, seed: u64) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    (0..shape.d())
        .map(|k| {
            values(&mut r, shape.core_len(k))
                .iter()
                .map(|v| v * 0.6)
                .collect()
        })
        .collect()
}

/// Random bags: `b` bags with lengths in [0, max_len], indices < n.
pub fn bags(rng: &mut ChaCha8Rng, b: usize, max_len: usize, n: u64) -> (Vec<i64>, Vec<i64>) {
    let mut offsets = vec![0i64];
    let mut indices = Vec::new();
    for _ in 0..b {
        let len = rng.random_range(0..=max_len);
        for _ in 0..len {
            indices.push(rng.random_range(0..n) as i64);
        }
        offsets.push(indices.len() as i64);
    }
    (indices, offsets)
}

/// Asserts |got - want| <= rtol * max|want| + atol elementwise (ttrec's one tolerance rule,
/// `parity::check_close`), naming the worst element.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let c = ttrec::parity::check_close(what, &to_f64(got), want, rtol, atol);
    let i = c.worst_index;
    assert!(
        c.pass,
        "{what}: worst error {:.3e} at {i} (got {}, want {}), tolerance {:.3e}",
        c.worst_abs, got[i], want[i], c.tolerance
    );
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// A fresh, unique directory under the system temp dir for one test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        std::env::temp_dir().join(format!("ttrec-test-{name}-{}-{nonce}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The small DLRM the model tests share: MLPs off the kernels' tiles, a 30-row dense table and
/// two TT tables of odd sizes in two TT groups (200 rows: p 5x6x7, ranks 4,8; 99 rows: p 9x11,
/// rank 6); with `second_dense`, a 7-row dense table between the TT ones.
pub fn small_dlrm_config(seed: u64, second_dense: bool) -> ttrec::dlrm::DlrmConfig {
    use ttrec::dlrm::{TableConfig, TableKind};
    let mut tables = vec![
        TableConfig {
            rows: 30,
            kind: TableKind::Dense,
        },
        TableConfig {
            rows: 200,
            kind: TableKind::Tt {
                p: vec![5, 6, 7],
                q: vec![2, 2, 2],
                ranks: vec![4, 8],
            },
        },
        TableConfig {
            rows: 99,
            kind: TableKind::Tt {
                p: vec![9, 11],
                q: vec![2, 4],
                ranks: vec![6],
            },
        },
    ];
    if second_dense {
        tables.insert(
            2,
            TableConfig {
                rows: 7,
                kind: TableKind::Dense,
            },
        );
    }
    ttrec::dlrm::DlrmConfig {
        bottom_mlp: vec![13, 24, 8],
        top_mlp: vec![12, 1],
        tables,
        learning_rate: 0.2,
        tt_init: ttrec::tt::TtInit::SampledGaussian,
        seed,
    }
}

/// A random batch for `config`'s model: `b` samples of dense features in [0, 3), one id per
/// table drawn over all its rows (so every row, and every digit of a TT core, can come up), and
/// every third sample clicked. Returns (dense `[b, features]`, sparse `[b, tables]`, labels).
pub fn random_dlrm_batch(
    config: &ttrec::dlrm::DlrmConfig,
    b: usize,
    seed: u64,
) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let mut r = rng(seed);
    let dense: Vec<f32> = (0..b * config.dense_features())
        .map(|_| r.random_range(0.0..3.0))
        .collect();
    let sparse: Vec<u32> = (0..b)
        .flat_map(|_| {
            config
                .tables
                .iter()
                .map(|t| r.random_range(0..t.rows) as u32)
                .collect::<Vec<_>>()
        })
        .collect();
    let labels: Vec<f32> = (0..b).map(|i| (i % 3 == 0) as u8 as f32).collect();
    (dense, sparse, labels)
}

/// Every parameter of `m` by its dlrm name.
pub fn parameters_of(m: &ttrec::dlrm::Dlrm) -> std::collections::HashMap<String, Vec<f32>> {
    m.parameter_names()
        .into_iter()
        .map(|(n, _)| {
            let v = m.parameter(&n).unwrap();
            (n, v)
        })
        .collect()
}

pub mod criteo;
/// The 200-line Criteo-format sample the tests write themselves (see `criteo.rs`).
#[allow(unused_imports)] // not every test file uses both
pub use criteo::{sample_path, sample_text};

/// Records nodes with `record` into a fresh graph, runs it once and waits.
pub fn run_graph(
    gpu: &ttrec::gpu::Gpu,
    record: impl FnOnce(&mut ttrec::graph::GraphBuilder) -> ttrec::Result<()>,
) {
    let mut g = ttrec::graph::GraphBuilder::new(gpu);
    record(&mut g).expect("recording");
    let plan = g.build().expect("building the plan");
    plan.run().expect("running the plan");
    gpu.wait().expect("waiting for the GPU");
}

/// Values that show where a kernel wrote nothing.
pub const POISON: f32 = 1.0e30;

pub mod tt_table;

/// The CPU twins (f64 oracles) the edge tests compare with, imported in this one place so that
/// a move of their modules is one edit.
#[allow(unused_imports)]
pub mod twins {
    pub use ttrec::twin::dlrm;
    pub use ttrec::twin::nn;
    pub use ttrec::twin::qr;
    pub use ttrec::twin::tt;
    pub use ttrec::twin::tt_cache as cache;

    use ttrec::dlrm::DlrmConfig;
    use ttrec::twin::dlrm::{TwinModel, TwinTable};

    /// The twin's plain description of `config`'s model (the twin sits below `dlrm`, so it does
    /// not take a `DlrmConfig`).
    pub fn twin_model(config: &DlrmConfig) -> TwinModel {
        TwinModel {
            bottom_mlp: config.bottom_mlp.clone(),
            top_mlp: config.top_widths(),
            dim: config.dim(),
            tables: (0..config.tables.len())
                .map(
                    |t| match (&config.tables[t].kind, config.tt_shape(t).unwrap()) {
                        (
                            ttrec::dlrm::TableKind::Qr {
                                collisions,
                                operation,
                            },
                            _,
                        ) => TwinTable::Qr {
                            rows: config.tables[t].rows,
                            collisions: *collisions,
                            operation: qr_operation(*operation),
                        },
                        (ttrec::dlrm::TableKind::Md { dim }, _) => TwinTable::Md {
                            rows: config.tables[t].rows,
                            dim: *dim,
                        },
                        (_, None) => TwinTable::Dense {
                            rows: config.tables[t].rows,
                        },
                        (_, Some(shape)) => TwinTable::Tt(shape),
                    },
                )
                .collect(),
            learning_rate: config.learning_rate,
        }
    }

    /// The twin's name of a QR operation.
    pub fn qr_operation(op: ttrec::dlrm::QrOperation) -> qr::QrOperation {
        match op {
            ttrec::dlrm::QrOperation::Mult => qr::QrOperation::Mult,
            ttrec::dlrm::QrOperation::Add => qr::QrOperation::Add,
            ttrec::dlrm::QrOperation::Concat => qr::QrOperation::Concat,
        }
    }
}

/// The bit patterns of `v` (bitwise comparisons that name NaNs and signed zeros too).
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

pub fn u64s(v: &[i64]) -> Vec<u64> {
    v.iter().map(|&x| x as u64).collect()
}

/// Runs `f` on its own thread and returns its result; a hang guard, never a speed check: fails
/// only if `f` has not finished after `limit` (choose it generously: minutes, not seconds).
pub fn hang_guard<T: Send + 'static>(
    what: &str,
    limit: std::time::Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            worker
                .join()
                .expect("the guarded work panicked after finishing");
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the guarded work ended without a result"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("hang guard: {what} has not finished after {limit:?}")
        }
    }
}

/// Runs test `name` of this very test binary again in a fresh process (its own device, fresh
/// pipeline compiles) with `env` set; returns its output. The child finds itself by the
/// variables in `env`.
pub fn rerun_test(name: &str, env: &[(&str, &str)]) -> std::process::Output {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = std::process::Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads", "1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("re-running the test binary")
}

/// Asserts a child test run passed, showing its output otherwise.
pub fn assert_child_passed(what: &str, out: &std::process::Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    // The harness prints "1 passed" for the one test it ran: never a filtered-out nothing.
    assert!(
        text.contains("test result: ok. 1 passed"),
        "{what} ran no test:\n{text}"
    );
}

/// Whether the subgroup chain can take a forward product of `shape` on subgroups of `lanes`
/// lanes (written from the kernel's rule, `PieceLayout::fits`, independently): some core k >= 1
/// with N = q_k R_{k+1} a multiple of 4 x lanes, K = R_k a multiple of 4, and at most 16 rows
/// of A (q_0 ... q_{k-1}) per lookup.
pub fn subgroup_forward_qualifies(shape: &ttrec::tt::TtShape, lanes: usize) -> bool {
    (1..shape.d()).any(|k| {
        let m: usize = shape.q[..k].iter().product();
        (shape.q[k] * shape.ranks[k + 1]).is_multiple_of(4 * lanes)
            && shape.ranks[k].is_multiple_of(4)
            && m <= 16
    })
}
