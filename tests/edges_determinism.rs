//! Determinism beyond one process and beyond the CPU adapter's kernel choice: the kernels a GPU
//! gets (core gradients as pieces, the blocks sort, tiled matrix products) run twice give
//! bitwise the same results; and a TT training step and a DLRM training step computed in two
//! separate processes (each its own device and fresh pipeline compiles) are bitwise equal.

mod common;

use common::*;
use rand::Rng;
use ttrec::dlrm::{Dlrm, DlrmBatch, DlrmConfig, DlrmOptions};
use ttrec::gpu::Gpu;
use ttrec::kernels::matmul::GemmVariant;
use ttrec::tt::{
    Bags, CoreGradStrategy, Optimizer, SortStrategy, TtEmbeddingBag, TtKernels, TtOptions, TtShape,
};

/// Set in the child process: where it writes its results.
const DUMP: &str = "TTREC_EDGE_DETERMINISM_DUMP";

/// Named results as bit patterns.
type Results = Vec<(String, Vec<u32>)>;

/// The kernels a GPU adapter gets (pieces, blocks sort), with or without subgroups.
fn gpu_class(g: &Gpu, subgroups: bool) -> TtKernels {
    TtKernels {
        subgroups,
        core_grad: CoreGradStrategy::Pieces,
        sort: SortStrategy::Blocks,
        ..TtKernels::for_adapter(g)
    }
}

/// Two Adagrad steps of a TT table with hot rows, in chunks: outputs, gradients, cores, state.
fn tt_steps(g: &Gpu, kernels: TtKernels, tag: &str) -> Results {
    let shape = TtShape::new(2000, &[10, 10, 20], &[4, 4, 4], &[16, 16]).unwrap();
    let cores = random_cores(&shape, 120);
    let options = TtOptions {
        optimizer: Optimizer::Adagrad {
            lr: 0.05,
            eps: 1e-8,
        },
        max_chunk_lookups: Some(200),
        kernels: Some(kernels),
        ..TtOptions::default()
    };
    let mut t = TtEmbeddingBag::from_cores(g, shape.clone(), &cores, options).unwrap();
    let mut r = rng(121);
    let mut out = Results::new();
    for s in 0..2 {
        let (mut idx, off) = bags(&mut r, 80, 8, 2000);
        for (i, v) in idx.iter_mut().enumerate() {
            if i % 3 == 0 {
                *v = 1234; // a hot row: runs longer than a piece
            }
        }
        let dout = values(&mut r, 80 * shape.dim());
        let rows = t.forward_backward(&Bags::new(&idx, &off), &dout).unwrap();
        out.push((format!("{tag} step {s} rows"), bits(&rows)));
        for (k, gk) in t.grads().unwrap().iter().enumerate() {
            out.push((format!("{tag} step {s} grad {k}"), bits(gk)));
        }
    }
    for (k, c) in t.cores().unwrap().iter().enumerate() {
        out.push((format!("{tag} core {k}"), bits(c)));
    }
    for (k, s) in t.optimizer_state().unwrap().unwrap().iter().enumerate() {
        out.push((format!("{tag} state {k}"), bits(s)));
    }
    out
}

fn dlrm_config() -> DlrmConfig {
    small_dlrm_config(9, false)
}

/// Three DLRM steps: losses, every parameter, then predictions.
fn dlrm_steps(g: &Gpu, options: DlrmOptions, tag: &str) -> Results {
    let config = dlrm_config();
    let mut m = Dlrm::new(g, config.clone(), options).unwrap();
    let mut r = rng(130);
    let mut make = |b: usize| {
        let dense: Vec<f32> = (0..b * 13).map(|_| r.random_range(0.0..3.0)).collect();
        let sparse: Vec<u32> = (0..b)
            .flat_map(|_| {
                [
                    r.random_range(0..30),
                    r.random_range(0..200),
                    r.random_range(0..99),
                ]
            })
            .collect();
        let labels: Vec<f32> = (0..b).map(|i| (i % 3 == 0) as u8 as f32).collect();
        (dense, sparse, labels)
    };
    let mut out = Results::new();
    for _ in 0..3 {
        let (dense, sparse, labels) = make(24);
        m.train_step(&DlrmBatch {
            dense: &dense,
            sparse: &sparse,
            labels: &labels,
        })
        .unwrap();
    }
    let losses: Vec<u32> = m
        .take_stats()
        .unwrap()
        .iter()
        .flat_map(|s| {
            let b = s.loss.to_bits();
            [(b >> 32) as u32, b as u32]
        })
        .collect();
    out.push((format!("{tag} losses"), losses));
    for (n, _) in m.parameter_names() {
        out.push((format!("{tag} {n}"), bits(&m.parameter(&n).unwrap())));
    }
    let (dense, sparse, _) = make(10);
    let p = m
        .predict(&DlrmBatch {
            dense: &dense,
            sparse: &sparse,
            labels: &[],
        })
        .unwrap();
    out.push((format!("{tag} predictions"), bits(&p)));
    out
}

/// Everything compared across processes: the adapter's defaults and the GPU-class kernels.
fn all_results(g: &Gpu) -> Results {
    let mut out = tt_steps(g, TtKernels::for_adapter(g), "tt defaults");
    out.extend(tt_steps(g, gpu_class(g, true), "tt gpu-class"));
    out.extend(dlrm_steps(g, DlrmOptions::default(), "dlrm defaults"));
    let tiled = DlrmOptions {
        gemm: Some(GemmVariant::Tiled),
        tt_kernels: Some(gpu_class(g, false)),
        ..DlrmOptions::default()
    };
    out.extend(dlrm_steps(g, tiled, "dlrm tiled, gpu-class"));
    out
}

fn assert_same(what: &str, a: &Results, b: &Results) {
    assert_eq!(a.len(), b.len(), "{what}: result count");
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        assert!(!va.is_empty(), "{na}: empty");
        if let Some(i) = va.iter().zip(vb).position(|(x, y)| x != y) {
            panic!(
                "{what}: {na} differs at element {i} ({:e} vs {:e})",
                f32::from_bits(va[i]),
                f32::from_bits(vb[i])
            );
        }
        assert_eq!(va.len(), vb.len(), "{what}: {na} length");
    }
}

/// The GPU-class kernels (pieces, blocks sort, subgroups on and off; tiled products in the
/// DLRM) run twice in one process: bitwise equal, and equal to the adapter's defaults.
#[test]
fn gpu_class_kernels_are_bitwise_deterministic() {
    let g = gpu();
    let defaults = tt_steps(&g, TtKernels::for_adapter(&g), "tt");
    for subgroups in [false, true] {
        let a = tt_steps(&g, gpu_class(&g, subgroups), "tt");
        let b = tt_steps(&g, gpu_class(&g, subgroups), "tt");
        assert_same(
            &format!("TT pieces/blocks, subgroups {subgroups}, twice"),
            &a,
            &b,
        );
        assert_same(
            &format!("TT pieces/blocks, subgroups {subgroups}, vs defaults"),
            &a,
            &defaults,
        );
    }
    let tiled = || DlrmOptions {
        gemm: Some(GemmVariant::Tiled),
        tt_kernels: Some(gpu_class(&g, false)),
        ..DlrmOptions::default()
    };
    let a = dlrm_steps(&g, tiled(), "dlrm");
    let b = dlrm_steps(&g, tiled(), "dlrm");
    assert_same("DLRM tiled products, pieces/blocks, twice", &a, &b);
}

/// The same steps in this process and in a fresh one (its own device, every pipeline compiled
/// again): bitwise equal.
#[test]
fn two_processes_give_bitwise_the_same_steps() {
    let g = gpu();
    let results = all_results(&g);
    if let Ok(path) = std::env::var(DUMP) {
        // The child: write the results.
        let mut bytes = Vec::new();
        for (name, v) in &results {
            bytes.extend((name.len() as u32).to_le_bytes());
            bytes.extend(name.as_bytes());
            bytes.extend((v.len() as u32).to_le_bytes());
            v.iter().for_each(|x| bytes.extend(x.to_le_bytes()));
        }
        std::fs::write(path, bytes).unwrap();
        return;
    }
    let dir = temp_dir("edges-determinism");
    let path = dir.join("child.bin");
    let out = rerun_test(
        "two_processes_give_bitwise_the_same_steps",
        &[(DUMP, path.to_str().unwrap())],
    );
    assert_child_passed("the child process", &out);
    let bytes = std::fs::read(&path).expect("the child's results");
    let mut child = Results::new();
    let mut at = 0;
    let word = |at: &mut usize| {
        let w = u32::from_le_bytes(bytes[*at..*at + 4].try_into().unwrap());
        *at += 4;
        w
    };
    while at < bytes.len() {
        let n = word(&mut at) as usize;
        let name = String::from_utf8(bytes[at..at + n].to_vec()).unwrap();
        at += n;
        let len = word(&mut at) as usize;
        let v: Vec<u32> = (0..len).map(|_| word(&mut at)).collect();
        child.push((name, v));
    }
    assert_same("this process vs a fresh one", &results, &child);
    std::fs::remove_dir_all(&dir).ok();
}
