//! The CUDA-parity suite: every committed fixture (tests/fixtures/parity, made by
//! tools/parity/gen_fixtures.py) and every shared one (tests/fixtures/shared, made by an
//! independent implementation) must pass on this adapter.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ttrec::parity::{run_fixture, Fixture};

/// Runs every fixture of `dir` (which must hold some); returns (fixtures, checks made). Every
/// expected tensor of a fixture is checked: the checks are counted, not assumed.
fn run_dir(dir: &Path) -> (usize, usize) {
    assert!(dir.is_dir(), "{} is missing", dir.display());
    let files = ttrec::parity::fixtures_in(dir).unwrap();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    let gpu = common::gpu();
    let mut checks = 0;
    for f in &files {
        let fx = Fixture::read(f).unwrap_or_else(|e| panic!("{e}"));
        let report = run_fixture(&gpu, &fx).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for c in &report.checks {
            assert!(
                c.pass,
                "{}: {} worst error {:.3e} > tolerance {:.3e}",
                f.display(),
                c.name,
                c.worst_abs,
                c.tolerance
            );
        }
        assert!(
            report
                .checks
                .iter()
                .any(|c| c.name.starts_with("expected.grad")),
            "{}: no gradient checked",
            f.display()
        );
        assert_eq!(
            report.checks.len(),
            fx.expected.len(),
            "{}: checks made vs expected tensors",
            f.display()
        );
        checks += report.checks.len();
    }
    (files.len(), checks)
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

#[test]
fn committed_fixtures_pass() {
    let (n, checks) = run_dir(&PathBuf::from(FIXTURES).join("parity"));
    assert!(n >= 10, "only {n} committed fixtures");
    assert!(checks >= 3 * n, "only {checks} checks in {n} fixtures");
}

/// The fixtures made by an independent implementation (committed under tests/fixtures/shared):
/// required, not skipped when absent.
#[test]
fn shared_fixtures_pass() {
    let (n, checks) = run_dir(&PathBuf::from(FIXTURES).join("shared"));
    assert!(n >= 5, "only {n} shared fixtures");
    assert!(checks >= 3 * n, "only {checks} checks in {n} fixtures");
}

#[test]
fn cuda_goldens_pass() {
    // The reference CUDA op's own outputs (an H100), at the same tolerance.
    let (n, checks) = run_dir(&PathBuf::from(FIXTURES).join("cuda"));
    assert!(n >= 15, "only {n} CUDA goldens");
    assert!(checks >= 3 * n, "only {checks} checks in {n} goldens");
}

/// Rewrites a fixture with one tensor replaced or added.
fn patched(
    src: &Path,
    dst: &Path,
    replace: &str,
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
) {
    let (meta, mut tensors) = ttrec::tt::checkpoint::read_safetensors(src).unwrap();
    tensors.insert(
        replace.to_string(),
        ttrec::tt::checkpoint::Tensor { dtype, shape, data },
    );
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap(),
            )
        })
        .collect();
    let bytes =
        safetensors::serialize(views, Some(meta.into_iter().collect::<HashMap<_, _>>())).unwrap();
    std::fs::write(dst, bytes).unwrap();
}

#[test]
fn bad_fixtures_are_errors_not_passes() {
    let src = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/parity/d3_sum.safetensors"
    ));
    let dir = std::env::temp_dir().join(format!("ttrec-parity-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gpu = common::gpu();
    let fx = Fixture::read(&src).unwrap();
    // An index out of range: the table names it.
    let mut idx = fx.indices.clone();
    idx[3] = fx.shape.num_embeddings as i64 + 5;
    let bad = dir.join("bad_index.safetensors");
    patched(
        &src,
        &bad,
        "indices",
        safetensors::Dtype::I64,
        vec![idx.len()],
        bytemuck::cast_slice(&idx).to_vec(),
    );
    let e = run_fixture(&gpu, &Fixture::read(&bad).unwrap())
        .expect_err("must fail")
        .to_string();
    assert!(e.contains("position 3"), "{e}");
    // An unknown tensor is an error, not skipped.
    let unknown = dir.join("unknown.safetensors");
    patched(
        &src,
        &unknown,
        "expected.mystery",
        safetensors::Dtype::F32,
        vec![1],
        vec![0; 4],
    );
    let e = Fixture::read(&unknown).expect_err("must fail").to_string();
    assert!(e.contains("expected.mystery"), "{e}");
    // A wrong expected value fails the check.
    let (_, t) = ttrec::tt::checkpoint::read_safetensors(&src).unwrap();
    let out = &t["expected.output"];
    let mut vals: Vec<f32> = bytemuck::pod_collect_to_vec(&out.data);
    vals[5] += 1e-2;
    let off = dir.join("off.safetensors");
    patched(
        &src,
        &off,
        "expected.output",
        safetensors::Dtype::F32,
        out.shape.clone(),
        bytemuck::cast_slice(&vals).to_vec(),
    );
    let report = run_fixture(&gpu, &Fixture::read(&off).unwrap()).unwrap();
    assert!(!report.pass());
    let failed: Vec<_> = report
        .checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| (c.name.clone(), c.worst_index))
        .collect();
    assert_eq!(failed, vec![("expected.output".to_string(), 5)]);
    std::fs::remove_dir_all(&dir).ok();
}

/// The step's tolerance follows its gradient's (`ttrec::parity::step_slack`), and still fails
/// what it should: on the committed Adagrad fixture with padded rows, an element of updated core
/// 1 whose gradient lies within the gradient's tolerance of zero gets a slack larger than the
/// plain tolerance (what the fixture was made for), a well-conditioned element moved past its
/// bound is rejected at that element, and moving the ill-conditioned element by half its slack
/// still passes.
#[test]
fn adagrad_step_tolerance_follows_the_gradient_and_still_rejects() {
    use ttrec::parity::{step_slack, StepOutput, ATOL, RTOL};
    let src = PathBuf::from(FIXTURES).join("parity/d3_padded_adagrad.safetensors");
    let fx = Fixture::read(&src).unwrap();
    let tensor = |name: &str| {
        fx.expected
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, s, v)| (s.clone(), v.clone()))
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let (_, grad) = tensor("expected.grad.cores.1");
    let (shape, want) = tensor("expected.updated.cores.1");
    let max_abs = |v: &[f32]| v.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
    let grad_tol = RTOL * max_abs(&grad) + ATOL;
    let plain = RTOL * max_abs(&want) + ATOL;
    let slack = step_slack(fx.optimizer, StepOutput::Updated, &grad, grad_tol);
    let argmax = |v: &[f64]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    let ill = argmax(&slack);
    let well = argmax(&grad.iter().map(|&g| (g as f64).abs()).collect::<Vec<_>>());
    assert!(
        slack[ill] > plain,
        "no ill-conditioned element: {:.2e}",
        slack[ill]
    );
    assert!(slack[well] < 1e-3 * plain, "slack {:.2e}", slack[well]);

    let dir = std::env::temp_dir().join(format!("ttrec-parity-step-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gpu = common::gpu();
    let run_with = |at: usize, delta: f64| {
        let mut vals = want.clone();
        vals[at] += delta as f32;
        let path = dir.join(format!("moved_{at}.safetensors"));
        patched(
            &src,
            &path,
            "expected.updated.cores.1",
            safetensors::Dtype::F32,
            shape.clone(),
            bytemuck::cast_slice(&vals).to_vec(),
        );
        let report = run_fixture(&gpu, &Fixture::read(&path).unwrap()).unwrap();
        let check = report
            .checks
            .into_iter()
            .find(|c| c.name == "expected.updated.cores.1")
            .unwrap();
        (check.pass, check.worst_index)
    };
    let (pass, at) = run_with(well, 2.0 * (plain + slack[well]));
    assert!(
        !pass,
        "a well-conditioned element moved past its bound passed"
    );
    assert_eq!(at, well);
    let (pass, _) = run_with(ill, 0.5 * slack[ill]);
    assert!(
        pass,
        "the ill-conditioned element's own uncertainty was rejected"
    );
    std::fs::remove_dir_all(&dir).ok();
}
