//! The subgroup chain on shapes that qualify at 32 and 64 lanes (N = q_k R_{k+1} a multiple of
//! 4 x 64: NVIDIA's 32 and AMD's 64 lanes take them). Wherever the adapter runs subgroups and a
//! shape qualifies, the subgroup kernels must run (node labels) and give bitwise what the
//! portable kernels give, both matching the twin.
//!
//! lavapipe's subgroup size is its SIMD width (`LP_NATIVE_VECTOR_WIDTH` / 32 lanes: 8 with
//! AVX2), so the test runs itself again in fresh processes with the width forced to 128 and
//! 512 bits: 4 and 16 lanes, which lavapipe runs faithfully. Forced to 1024 and 2048 bits,
//! lavapipe (Mesa 22.3) reports 32 and 64 lanes but runs subgroups of 16 (subgroup ids repeat
//! 0..15 within a workgroup): `Gpu::subgroup_size` detects that and turns the subgroup kernels
//! off, which those runs check, with results still right. So on lavapipe the kernels run at 4,
//! 8 and 16 lanes; 32 and 64 lanes need a GPU (on one, the in-process run covers its size).

mod common;

use common::twins::tt as twin;
use common::*;
use ttrec::tt::{Bags, Mode, Optimizer, Pooling, TtEmbeddingBag, TtKernels, TtOptions, TtShape};

/// Set in a child process: the lane count the forced lavapipe must report.
const EXPECT_LANES: &str = "TTREC_EDGE_EXPECT_LANES";

/// Shapes whose core-1 forward product has N = 256 (4 x 64 lanes) or N = 128 (4 x 32 lanes).
fn shapes() -> Vec<(&'static str, TtShape)> {
    vec![
        // Core 1: M = q_0 = 4, K = R_1 = 8, N = q_1 R_2 = 4 x 64 = 256.
        (
            "d3 N 256",
            TtShape::new(300, &[6, 5, 10], &[4, 4, 4], &[8, 64]).unwrap(),
        ),
        // Core 1: N = 4 x 32 = 128 (qualifies at up to 32 lanes).
        (
            "d3 N 128",
            TtShape::new(300, &[6, 5, 10], &[4, 4, 4], &[8, 32]).unwrap(),
        ),
        // The final product (A from core 0, writing rows): N = q_1 = 256, D = 512.
        (
            "d2 final N 256",
            TtShape::new(60, &[6, 10], &[2, 256], &[8]).unwrap(),
        ),
    ]
}

struct Run {
    out: Vec<f32>,
    grads: Vec<Vec<f32>>,
    cores: Vec<Vec<f32>>,
    state: Vec<Vec<f32>>,
    labels: Vec<String>,
}

fn run(g: &ttrec::gpu::Gpu, shape: &TtShape, subgroups: bool, seed: u64) -> (Run, Vec<f64>) {
    let cores = random_cores(shape, seed);
    let mut r = rng(seed + 1);
    // 40 bags of up to 6 lookups: every core-1 digit seen several times per chunk.
    let (idx, off) = bags(&mut r, 40, 6, shape.num_embeddings);
    let dout = values(&mut r, 40 * shape.dim());
    let options = TtOptions {
        optimizer: Optimizer::Adagrad {
            lr: 0.05,
            eps: 1e-8,
        },
        kernels: Some(TtKernels {
            subgroups,
            ..TtKernels::for_adapter(g)
        }),
        ..TtOptions::default()
    };
    let mut t = TtEmbeddingBag::from_cores(g, shape.clone(), &cores, options.clone()).unwrap();
    let b = Bags::new(&idx, &off);
    let out = t.forward_backward(&b, &dout).unwrap();
    let want = twin::forward(shape, &cores, &u64s(&idx), &u64s(&off), None, Pooling::Sum);
    let labels = {
        // The same call on a fresh table, profiled: the node labels of the plan that ran.
        let mut p = TtEmbeddingBag::from_cores(g, shape.clone(), &cores, options).unwrap();
        p.profile(&b, Some(&dout), Mode::ForwardBackward)
            .unwrap()
            .into_iter()
            .map(|n| n.label)
            .collect()
    };
    let run = Run {
        out,
        grads: t.grads().unwrap(),
        cores: t.cores().unwrap(),
        state: t.optimizer_state().unwrap().expect("Adagrad state"),
        labels,
    };
    (run, want)
}

/// Runs every shape with and without subgroups on this process's adapter; returns how many
/// runs the subgroup kernels took part in.
fn check_all_shapes() -> usize {
    let g = gpu();
    let lanes = g.subgroup_size().map(|l| l as usize);
    if let Ok(want) = std::env::var(EXPECT_LANES) {
        // The forced width took effect: the adapter reports the size asked for.
        let reported = g.info().subgroup_min_size.to_string();
        assert_eq!(
            reported,
            want,
            "{}: reported subgroup size",
            g.adapter_name()
        );
    }
    let mut used = 0;
    for (i, (name, shape)) in shapes().into_iter().enumerate() {
        let seed = 50 + i as u64;
        let (portable, want) = run(&g, &shape, false, seed);
        let (sg, _) = run(&g, &shape, true, seed);
        let what = format!("{name} at {lanes:?} lanes");
        assert_close(&format!("{what}: forward"), &sg.out, &want, 1e-5, 1e-6);
        assert_eq!(bits(&sg.out), bits(&portable.out), "{what}: outputs");
        for k in 0..shape.d() {
            assert_eq!(
                bits(&sg.grads[k]),
                bits(&portable.grads[k]),
                "{what}: grad {k}"
            );
            assert_eq!(
                bits(&sg.cores[k]),
                bits(&portable.cores[k]),
                "{what}: core {k}"
            );
            assert_eq!(
                bits(&sg.state[k]),
                bits(&portable.state[k]),
                "{what}: Adagrad state {k}"
            );
        }
        assert!(
            !portable.labels.iter().any(|l| l.contains("(subgroup)")),
            "{what}: subgroup kernels ran with subgroups off"
        );
        let ran = sg
            .labels
            .iter()
            .filter(|l| l.contains("(subgroup)"))
            .count();
        let qualifies = lanes.is_some_and(|l| subgroup_forward_qualifies(&shape, l));
        if qualifies {
            assert!(
                ran >= 1,
                "{what}: the shape qualifies but no subgroup kernel ran: {:?}",
                sg.labels
            );
            used += 1;
        }
    }
    used
}

#[test]
fn subgroup_chain_at_native_32_and_64_lanes() {
    let g = gpu();
    let used = check_all_shapes();
    let forced = std::env::var(EXPECT_LANES).ok();
    let info = g.info();
    let reported = info.subgroup_min_size;
    let reports_usable = g.device().features().contains(wgpu::Features::SUBGROUP)
        && reported == info.subgroup_max_size
        && (4..=64).contains(&reported)
        && reported.is_power_of_two();
    match (g.subgroup_size(), forced.as_deref()) {
        // Every shape qualifies at up to 32 lanes, two of the three at 64.
        (Some(l), _) => assert_eq!(used, if l <= 32 { 3 } else { 2 }, "at {l} lanes"),
        (None, _) if !reports_usable => assert_eq!(used, 0),
        // lavapipe forced wider than it runs: the probe turned the subgroup kernels off.
        (None, Some("32" | "64")) if info.name.contains("llvmpipe") => {
            assert_eq!(used, 0);
            println!("lavapipe reports {reported} lanes, runs fewer: subgroup kernels off");
        }
        (None, _) => panic!(
            "{} reports subgroups of {reported} lanes, but ttrec does not use them",
            g.adapter_name()
        ),
    }
    if forced.is_none() && g.info().name.contains("llvmpipe") {
        // lavapipe: other subgroup sizes, each in a fresh process.
        for (bits, lanes) in [("128", "4"), ("512", "16"), ("1024", "32"), ("2048", "64")] {
            let out = rerun_test(
                "subgroup_chain_at_native_32_and_64_lanes",
                &[("LP_NATIVE_VECTOR_WIDTH", bits), (EXPECT_LANES, lanes)],
            );
            assert_child_passed(&format!("the run at {bits}-bit vectors"), &out);
        }
    }
}
