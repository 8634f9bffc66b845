//! TT-EmbeddingBag accuracy against the reference CUDA op: for every CUDA golden
//! (tests/fixtures/cuda: the reference op's outputs on an H100 for the inputs of a float64
//! fixture), our worst error against the float64 values must be at most 1.5x the CUDA op's own
//! worst error on the same tensor, plus a floor near f32 rounding.

mod common;

use std::path::{Path, PathBuf};

use ttrec::parity::{run_fixture, Fixture};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Each CUDA golden and the float64 fixture with the same inputs (tests/fixtures/cuda/README.md).
fn pairs() -> Vec<(PathBuf, PathBuf)> {
    let root = Path::new(FIXTURES);
    let cuda = root.join("cuda");
    let mut out = Vec::new();
    for f in ttrec::parity::fixtures_in(&cuda).expect("tests/fixtures/cuda") {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let stem = name.trim_start_matches("cuda_");
        let twin = match stem {
            "shared_d4_sum.safetensors" => root.join("shared/d4_sum.safetensors"),
            s if root.join("parity").join(s).exists() => root.join("parity").join(s),
            s => root.join("shared").join(s),
        };
        assert!(
            twin.exists(),
            "{name}: no float64 twin at {}",
            twin.display()
        );
        out.push((f, twin));
    }
    assert!(
        out.len() >= 15,
        "expected the 15 CUDA goldens, found {}",
        out.len()
    );
    out
}

fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    let scale = want
        .iter()
        .fold(0f64, |m, &x| m.max((x as f64).abs()))
        .max(1e-30);
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w as f64).abs())
        .fold(0.0, f64::max)
        / scale
}

#[test]
fn errors_are_at_most_the_cuda_ops_own() {
    let gpu = common::gpu();
    let mut failures = Vec::new();
    let mut compared_in_all = 0;
    for (golden, twin) in pairs() {
        let cuda = Fixture::read(&golden).unwrap();
        let f64fx = Fixture::read(&twin).unwrap();
        let report = run_fixture(&gpu, &f64fx).unwrap();
        let mut compared = Vec::new();
        for (name, _, want) in &f64fx.expected {
            // Tensors the golden lacks are counted below: it must lack none it should have.
            let Some((_, _, cuda_vals)) = cuda.expected.iter().find(|(n, _, _)| n == name) else {
                continue;
            };
            compared.push(name.clone());
            let actual = name.replacen("expected.", "actual.", 1);
            let (_, _, ours) = report
                .actual
                .iter()
                .find(|(n, _, _)| *n == actual)
                .unwrap_or_else(|| panic!("{}: {actual} not computed", twin.display()));
            let (e_ours, e_cuda) = (rel_err(ours, want), rel_err(cuda_vals, want));
            let bound = 1.5 * e_cuda + 2e-7;
            let line = format!(
                "{:<40} {:<26} ours {:.2e} cuda {:.2e} ratio {:.2}",
                golden.file_name().unwrap().to_string_lossy(),
                name,
                e_ours,
                e_cuda,
                e_ours / e_cuda.max(1e-12)
            );
            println!("{line}");
            if e_ours > bound {
                failures.push(line);
            }
        }
        // Every tensor of the golden was compared, and a golden holds the output and the
        // gradient of every core (a golden or fixture that lost them would compare nothing).
        let g = golden.file_name().unwrap().to_string_lossy();
        assert_eq!(
            compared.len(),
            cuda.expected.len(),
            "{g}: compared {compared:?} of the golden's {} tensors",
            cuda.expected.len()
        );
        let d = f64fx.shape.d();
        let wanted = std::iter::once("expected.output".to_string())
            .chain((0..d).map(|k| format!("expected.grad.cores.{k}")));
        for w in wanted {
            assert!(compared.contains(&w), "{g}: {w} not compared: {compared:?}");
        }
        compared_in_all += compared.len();
    }
    println!("{compared_in_all} tensors compared");
    assert!(
        compared_in_all >= 15 * 4,
        "only {compared_in_all} tensors compared"
    );
    assert!(
        failures.is_empty(),
        "above 1.5x the CUDA op's error:\n{}",
        failures.join("\n")
    );
}

/// The fixtures without a CUDA golden (made for issue 18's exactness work: the reference
/// benchmark's table at ranks 32 and D 64, and Adagrad with padded rows) and, per tensor, the
/// error against float64 of the reference op's arithmetic emulated in float32 (per lookup,
/// products summing K in order with fused multiply-adds; each lookup's product added to the
/// gradient; `python3 tools/parity/accuracy.py FIXTURE --json`, column fbtt-fp32). Over the 15
/// CUDA goldens the emulation's errors are within 0.5-2x of the op's own.
const EMULATED_REFERENCE: &[(&str, &[(&str, f64)])] = &[
    (
        "d3_bench_q444_r32_sgd",
        &[
            ("expected.output", 1.99e-7),
            ("expected.grad.cores.0", 2.73e-7),
            ("expected.grad.cores.1", 4.03e-7),
            ("expected.grad.cores.2", 1.59e-7),
        ],
    ),
    (
        "d3_padded_adagrad",
        &[
            ("expected.output", 5.67e-8),
            ("expected.grad.cores.0", 9.83e-8),
            ("expected.grad.cores.1", 8.35e-8),
            ("expected.grad.cores.2", 1.32e-7),
        ],
    ),
];

/// Our error on those fixtures is at most 1.5x the emulated reference's plus half a float32 ulp
/// of the largest value (2^-24: the rounding of the stored float64 values). Before each lookup's
/// product was summed on its own (shaders/tt.wgsl, core_grad_block_v4), the last core's gradient
/// of d3_bench_q444_r32_sgd was 3.98e-7 (2.5x): this fails on that kernel.
#[test]
fn errors_are_at_most_the_emulated_reference_ops() {
    let gpu = common::gpu();
    let mut failures = Vec::new();
    for (fixture, tensors) in EMULATED_REFERENCE {
        let path = Path::new(FIXTURES).join(format!("parity/{fixture}.safetensors"));
        let fx = Fixture::read(&path).unwrap();
        let report = run_fixture(&gpu, &fx).unwrap();
        for (name, e_ref) in *tensors {
            let (_, _, want) = fx
                .expected
                .iter()
                .find(|(n, _, _)| n == name)
                .unwrap_or_else(|| panic!("{fixture}: no {name}"));
            let actual = name.replacen("expected.", "actual.", 1);
            let (_, _, ours) = report
                .actual
                .iter()
                .find(|(n, _, _)| *n == actual)
                .unwrap_or_else(|| panic!("{fixture}: {actual} not computed"));
            let e_ours = rel_err(ours, want);
            let line = format!(
                "{fixture:<24} {name:<24} ours {e_ours:.2e} emulated reference {e_ref:.2e} ratio {:.2}",
                e_ours / e_ref
            );
            println!("{line}");
            if e_ours > 1.5 * e_ref + 2f64.powi(-24) {
                failures.push(line);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "above 1.5x the emulated reference's error:\n{}",
        failures.join("\n")
    );
}
