//! The GPU shape of the DLRM step, checked without a GPU: the batch-2,048 Kaggle step (7 TT
//! tables, rank 32; table sizes scaled down for lavapipe's memory, which changes no kernel's
//! shape but the TT row factors) built with the `gpu` kernel class, read from the plan's
//! per-node counts (set by each launcher's cost function). Every node above 1 MFLOP must launch
//! at least 256 workgroups (two per SM of an H100) and no node's serial chain may exceed 512.
//!
//! Every node must have a cost (launchers count dispatches, the graph counts clears and copies):
//! a node without one is a failure, never an exemption. Run with `--nocapture` for the table.

mod common;

use common::*;
use ttrec::bench::dlrm::{bench_model, DlrmBenchConfig};
use ttrec::data::SyntheticCriteo;
use ttrec::dlrm::{Dlrm, DlrmConfig, DlrmOptions};
use ttrec::gpu::{AdapterClass, KernelClass};
use ttrec::graph::NodeCount;
use ttrec::tt::TtKernels;

const MIN_WORKGROUPS: u64 = 256;
const MAX_SERIAL: u64 = 512;
const BIG_FLOPS: f64 = 1e6;

fn kaggle_step(kernels: KernelClass, batch: usize) -> Vec<NodeCount> {
    let gpu = gpu();
    let cfg = DlrmBenchConfig {
        variant: "tt".into(),
        batch,
        scale: 0.05,
        rank: 32,
    };
    let mut model = bench_model(&gpu, &cfg, None, kernels).expect("the Kaggle model");
    model.train_counts(batch).expect("the step's plan")
}

/// The same step (as `bench_model` builds it) with the GPU class's TT kernels but no subgroup
/// chain: what a GPU gets where `chain_sg` does not fit (an NVIDIA GPU's 32 lanes need N a
/// multiple of 128, which the Kaggle shapes are not).
fn kaggle_step_portable_tt(batch: usize) -> Vec<NodeCount> {
    let gpu = gpu();
    let synth = SyntheticCriteo::new(1, 0.05).unwrap();
    let config = DlrmConfig::kaggle_dense()
        .with_table_sizes(synth.table_sizes())
        .with_tt_largest(7, 32)
        .unwrap();
    let options = DlrmOptions {
        kernels: KernelClass::Gpu,
        tt_kernels: Some(TtKernels {
            subgroups: false,
            ..TtKernels::for_class(AdapterClass::Gpu)
        }),
        ..DlrmOptions::default()
    };
    let mut model = Dlrm::new(&gpu, config, options).expect("the Kaggle model");
    model.train_counts(batch).expect("the step's plan")
}

/// Every node has a cost, and none breaks the GPU shape.
fn assert_gpu_shaped(what: &str, counts: &[NodeCount]) {
    print_counts(what, counts);
    let uncounted: Vec<&str> = counts
        .iter()
        .filter(|c| c.cost.is_none())
        .map(|c| c.label.as_str())
        .collect();
    assert!(
        uncounted.is_empty(),
        "{what}: nodes without a cost function: {uncounted:?}"
    );
    let violations: Vec<String> = counts.iter().filter_map(violation).collect();
    assert!(
        violations.is_empty(),
        "{what}: nodes not GPU-shaped:\n{}",
        violations.join("\n")
    );
}

/// Why `c` breaks the GPU shape, if it does.
fn violation(c: &NodeCount) -> Option<String> {
    let cost = c.cost?;
    if cost.flops > BIG_FLOPS && c.workgroups < MIN_WORKGROUPS {
        return Some(format!(
            "{}: {:.1} MFLOP in {} workgroups",
            c.label,
            cost.flops / 1e6,
            c.workgroups
        ));
    }
    (cost.serial > MAX_SERIAL).then(|| format!("{}: serial {}", c.label, cost.serial))
}

fn is_product(c: &NodeCount) -> bool {
    c.kernel
        .is_some_and(|k| k.starts_with("gemm") || k == "transpose")
}

#[test]
fn gpu_class_kaggle_step_is_gpu_shaped() {
    let counts = kaggle_step(KernelClass::Gpu, 2048);
    let products: Vec<&NodeCount> = counts.iter().filter(|c| is_product(c)).collect();
    // The MLPs' 7 layers: forward, input and weight gradients, each at least one node.
    assert!(products.len() >= 18, "{} product nodes", products.len());
    for p in &products {
        assert!(p.cost.is_some(), "{}: a product without its cost", p.label);
        assert!(p.invocations.is_some(), "{}: no invocation count", p.label);
    }
    // The split-K kernels do run: the weight gradients' K is the batch (2,048 > 512).
    assert!(products
        .iter()
        .any(|p| p.kernel == Some("gemm_combine_wgrad")));
    assert_gpu_shaped("gpu class, batch 2,048", &counts);
    // The GPU class's own TT and dense-table kernels run.
    for kernel in [
        "chain_row_v4",
        "core_grad_pieces_row",
        "core_grad_combine",
        "bag_bwd_pieces",
        "bag_bwd_combine",
        "sort_count",
    ] {
        assert!(
            counts.iter().any(|c| c.kernel == Some(kernel)),
            "{kernel} is not in the GPU class's step"
        );
    }
}

/// Without the subgroup chain (most GPUs at the Kaggle shapes) every chain product is a
/// per-lookup kernel: still GPU-shaped.
#[test]
fn gpu_class_step_without_subgroups_is_gpu_shaped() {
    let counts = kaggle_step_portable_tt(2048);
    assert!(!counts.iter().any(|c| c.kernel == Some("chain_sg")));
    assert!(counts.iter().any(|c| c.kernel == Some("chain_row_v4")));
    assert_gpu_shaped("gpu class without subgroups, batch 2,048", &counts);
}

/// The table of a step's nodes (run with `--nocapture`; BENCHMARKS.md's per-node tables).
fn print_counts(what: &str, counts: &[NodeCount]) {
    eprintln!("{what}: {} nodes", counts.len());
    eprintln!("node | kernel | workgroups | serial | MFLOP | MB");
    for c in counts {
        let cost = c.cost.unwrap_or_default();
        eprintln!(
            "{} | {} | {} | {} | {:.2} | {:.2}",
            c.label,
            c.kernel.unwrap_or("transfer"),
            c.workgroups,
            cost.serial,
            cost.flops / 1e6,
            cost.bytes / 1e6
        );
    }
}

/// The CPU class keeps its register kernels, whose serial chain is the whole K (the report
/// shows it; nothing to assert beyond the counts being there).
#[test]
fn cpu_class_products_report_their_counts() {
    let counts = kaggle_step(KernelClass::Cpu, 2048);
    let wgrads: Vec<&NodeCount> = counts
        .iter()
        .filter(|c| c.kernel == Some("gemm_tn_wgrad"))
        .collect();
    assert!(!wgrads.is_empty());
    for w in wgrads {
        assert_eq!(w.cost.expect("cost").serial, 2048, "{}", w.label);
    }
    // The CPU class keeps its kernels: none of the GPU class's.
    for kernel in [
        "gemm_gpu",
        "chain_row_v4",
        "core_grad_pieces_v4",
        "core_grad_pieces_row",
        "bag_bwd_pieces",
    ] {
        assert!(!counts.iter().any(|c| c.kernel == Some(kernel)), "{kernel}");
    }
    assert!(counts.iter().any(|c| c.kernel == Some("bag_bwd")));
    // Every node is counted in this class too.
    assert!(counts.iter().all(|c| c.cost.is_some()));
}

fn ttrec_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ttrec"))
        .args(args)
        .output()
        .expect("running ttrec");
    assert!(
        out.status.success(),
        "ttrec {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

/// `bench dlrm --profile --json` with `--kernels gpu`: one `bench_dlrm_node` record per node
/// with the launchers' counts; the products split.
#[test]
fn structural_report_prints_the_counts() {
    let recs = ttrec_json(&[
        "bench",
        "dlrm",
        "--variant",
        "tt",
        "--batch",
        "64",
        "--scale",
        "0.001",
        "--rank",
        "4",
        "--kernels",
        "gpu",
        "--profile",
        "--json",
        "--steps",
        "1",
        "--seconds",
        "0",
    ]);
    let nodes: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["type"] == "bench_dlrm_node")
        .collect();
    assert!(nodes.len() > 20, "{} node records", nodes.len());
    for n in &nodes {
        for key in [
            "kernel",
            "workgroups",
            "invocations",
            "serial",
            "flops",
            "bytes",
            "gpu_ms",
        ] {
            assert!(n.get(key).is_some(), "{key} missing in {n}");
        }
    }
    let wgrad = nodes
        .iter()
        .find(|n| n["kernel"] == "gemm_gpu_wgrad")
        .expect("a GPU-class weight gradient");
    assert!(wgrad["flops"].as_f64().unwrap() > 0.0);
    assert!(wgrad["serial"].as_u64().unwrap() <= MAX_SERIAL);
    assert!(wgrad["workgroups"].as_u64().unwrap() >= 1);
}

/// `bench gemm` times every variant on a shape off every tile, the split one with its combine.
#[test]
fn bench_gemm_reports_each_variant() {
    let recs = ttrec_json(&[
        "bench",
        "gemm",
        "--shape",
        "67x45x1031",
        "--json",
        "--iters",
        "1",
        "--seconds",
        "0",
    ]);
    let variants: Vec<&str> = recs
        .iter()
        .map(|r| r["variant"].as_str().unwrap())
        .collect();
    assert_eq!(variants, ["Registers", "Tiled", "Split"]);
    for r in &recs {
        assert_eq!(r["type"], "bench_gemm");
        assert!(r["gflops"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(recs[2]["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k == "gemm_combine"));
}
