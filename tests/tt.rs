//! TT-EmbeddingBag on the GPU against its CPU twin (src/twin/tt.rs): forward, backward, fused
//! SGD and Adagrad, chunking, determinism, bad input, checkpoints. Runs on lavapipe in CI.

mod common;

use common::*;
use ttrec::tt::{
    Bags, CoreGradStrategy, Mode, Optimizer, Pooling, SortStrategy, TtEmbeddingBag, TtInit,
    TtKernels, TtOptions, TtShape,
};
use ttrec::twin::tt as reference;

struct Case {
    name: &'static str,
    n: u64,
    p: &'static [usize],
    q: &'static [usize],
    r: &'static [usize],
}

const CASES: &[Case] = &[
    Case {
        name: "d2",
        n: 90,
        p: &[9, 11],
        q: &[4, 4],
        r: &[6],
    },
    Case {
        name: "d2 rank 64",
        n: 72,
        p: &[8, 9],
        q: &[4, 4],
        r: &[64],
    },
    Case {
        name: "d3 padded, D=6",
        n: 100,
        p: &[4, 5, 6],
        q: &[3, 1, 2],
        r: &[5, 7],
    },
    Case {
        name: "d3 fbtt-like",
        n: 1000,
        p: &[10, 10, 10],
        q: &[4, 4, 4],
        r: &[16, 16],
    },
    // Shapes the subgroup chain takes (N a multiple of 4 x 8 lanes): core 1's forward and
    // backward products in d3, the final product (A from core 0, writing rows) in d2.
    Case {
        name: "d3 subgroup products",
        n: 2000,
        p: &[13, 11, 14],
        q: &[4, 4, 4],
        r: &[32, 8],
    },
    Case {
        name: "d2 subgroup final product",
        n: 99,
        p: &[9, 11],
        q: &[2, 32],
        r: &[8],
    },
    Case {
        name: "d4",
        n: 200,
        p: &[3, 4, 5, 4],
        q: &[2, 3, 2, 2],
        r: &[3, 5, 4],
    },
];

fn table(
    shape: &TtShape,
    cores: &[Vec<f32>],
    pooling: Pooling,
    optimizer: Optimizer,
    chunk: Option<usize>,
) -> TtEmbeddingBag {
    let options = TtOptions {
        pooling,
        optimizer,
        max_chunk_lookups: chunk,
        ..TtOptions::default()
    };
    TtEmbeddingBag::from_cores(&gpu(), shape.clone(), cores, options).expect("table")
}

/// Every kernel variant gives bitwise the same outputs and gradients: the subgroup chain (pieces
/// of one digit, operands shared across lanes) and the portable chain, and the core gradients
/// row by row or as pieces and a combine; over several chunks, hot rows (runs longer than a
/// piece) and rows seen once, with the fused update. The variants really run (node labels).
#[test]
fn kernel_variants_subgroup_portable_rows_pieces_equal_bitwise() {
    let g = gpu();
    let shape = TtShape::new(5000, &[13, 11, 35], &[4, 4, 4], &[32, 8]).unwrap();
    let cores = random_cores(&shape, 21);
    let mut r = rng(22);
    let (mut idx, off) = bags(&mut r, 150, 10, 5000);
    for (i, v) in idx.iter_mut().enumerate() {
        if i % 4 == 0 {
            *v = 1234; // one hot row: long runs of its digits
        }
    }
    let dout = values(&mut r, 150 * shape.dim());
    let bags_ = Bags::new(&idx, &off);
    let run = |subgroups: bool, core_grad: CoreGradStrategy, chunk: usize| {
        // The sort strategy goes with the core-gradient one (CPU and GPU defaults), so both
        // sorts are compared too.
        let sort = match core_grad {
            CoreGradStrategy::Rows => SortStrategy::Workgroup,
            CoreGradStrategy::Pieces => SortStrategy::Blocks,
        };
        let options = TtOptions {
            optimizer: Optimizer::Adagrad {
                lr: 0.05,
                eps: 1e-8,
            },
            max_chunk_lookups: Some(chunk),
            kernels: Some(TtKernels {
                subgroups,
                core_grad,
                sort,
                ..TtKernels::for_adapter(&g)
            }),
            ..TtOptions::default()
        };
        let mut t = TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, options).unwrap();
        let out = t.forward_backward(&bags_, &dout).unwrap();
        let labels: Vec<String> = t
            .profile(&bags_, Some(&dout), Mode::ForwardBackward)
            .unwrap()
            .into_iter()
            .map(|n| n.label)
            .collect();
        (out, t.grads().unwrap(), t.cores().unwrap(), labels)
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    // 301 lookups per chunk: several chunks, a separate update; all 1,500: one chunk, the
    // update fused into the core gradients (or their combine).
    for chunk in [301, 1500] {
        let (out_pt, grads_pt, cores_pt, labels_pt) = run(false, CoreGradStrategy::Rows, chunk);
        assert!(!labels_pt.iter().any(|l| l.contains("(subgroup)")));
        assert!(!labels_pt.iter().any(|l| l.contains("pieces")));
        let want = reference::forward(&shape, &cores, &u64s(&idx), &u64s(&off), None, Pooling::Sum);
        assert_close("portable forward", &out_pt, &want, 1e-5, 1e-6);
        for (subgroups, strategy) in [
            (true, CoreGradStrategy::Rows),
            (false, CoreGradStrategy::Pieces),
            (true, CoreGradStrategy::Pieces),
        ] {
            let (out, grads, cores_after, labels) = run(subgroups, strategy, chunk);
            let what = format!("subgroups {subgroups}, {strategy:?}, chunk {chunk}");
            assert_eq!(bits(&out), bits(&out_pt), "outputs differ ({what})");
            for k in 0..3 {
                assert_eq!(
                    bits(&grads[k]),
                    bits(&grads_pt[k]),
                    "grad {k} differs ({what})"
                );
                assert_eq!(
                    bits(&cores_after[k]),
                    bits(&cores_pt[k]),
                    "core {k} after the update differs ({what})"
                );
            }
            if strategy == CoreGradStrategy::Pieces {
                let n = labels.iter().filter(|l| l.ends_with(" combine")).count();
                assert!(n >= 3, "core-gradient pieces not used ({what}): {labels:?}");
            }
            // Required wherever the shape qualifies at the adapter's lanes (N = 32: up to 8).
            let lanes = g.subgroup_size().map(|n| n as usize);
            if subgroups && lanes.is_some_and(|l| subgroup_forward_qualifies(&shape, l)) {
                let sg = labels.iter().filter(|l| l.contains("(subgroup)")).count();
                // chain 1 and chain^T 1 in each of the chunks
                assert!(sg >= 2, "subgroup kernels not used ({what}): {labels:?}");
            }
        }
    }
}

fn u64s(v: &[i64]) -> Vec<u64> {
    v.iter().map(|&x| x as u64).collect()
}

/// Forward and backward of every case and pooling mode against the twin; with weights for sum.
#[test]
fn forward_and_gradients_match_the_twin() {
    for (ci, case) in CASES.iter().enumerate() {
        let shape = TtShape::new(case.n, case.p, case.q, case.r).unwrap();
        let cores = random_cores(&shape, 10 + ci as u64);
        for (pooling, weighted) in [
            (Pooling::Sum, false),
            (Pooling::Sum, true),
            (Pooling::Mean, false),
        ] {
            let mut r = rng(100 + ci as u64);
            let (idx, off) = bags(&mut r, 23, 6, case.n);
            let w = values(&mut r, idx.len());
            let dout = values(&mut r, 23 * shape.dim());
            let mut bags_ = Bags::new(&idx, &off);
            if weighted {
                bags_ = bags_.with_weights(&w);
            }
            let wref = if weighted { Some(&w[..]) } else { None };
            let what = format!("{} {pooling:?} weighted={weighted}", case.name);
            let mut t = table(&shape, &cores, pooling, Optimizer::None, None);
            let out = t.forward(&bags_).unwrap();
            let want = reference::forward(&shape, &cores, &u64s(&idx), &u64s(&off), wref, pooling);
            assert_close(&format!("{what} forward"), &out, &want, 1e-5, 1e-6);
            t.backward(&bags_, &dout).unwrap();
            let grads = t.grads().unwrap();
            let want = reference::backward(
                &shape,
                &cores,
                &u64s(&idx),
                &u64s(&off),
                wref,
                pooling,
                &dout,
            );
            for k in 0..shape.d() {
                assert_close(
                    &format!("{what} grad core {k}"),
                    &grads[k],
                    &want[k],
                    1e-5,
                    1e-6,
                );
            }
            // Optimizer None leaves the cores alone.
            assert_eq!(
                t.cores().unwrap(),
                cores,
                "{what}: cores changed without an optimizer"
            );
        }
    }
}

#[test]
fn fused_sgd_and_adagrad_update_every_row() {
    let shape = TtShape::new(1000, &[10, 10, 10], &[2, 2, 4], &[8, 8]).unwrap();
    let cores = random_cores(&shape, 7);
    let mut r = rng(8);
    // Touch every digit of every core so every row has a gradient.
    let idx: Vec<i64> = (0..1000).step_by(1).map(|i| i as i64).collect();
    let off: Vec<i64> = (0..=100).map(|b| b * 10).collect();
    let dout = values(&mut r, 100 * shape.dim());
    let bags_ = Bags::new(&idx, &off);
    let grads = reference::backward(
        &shape,
        &cores,
        &u64s(&idx),
        &u64s(&off),
        None,
        Pooling::Sum,
        &dout,
    );
    let mut t = table(
        &shape,
        &cores,
        Pooling::Sum,
        Optimizer::Sgd { lr: 0.05 },
        None,
    );
    t.backward(&bags_, &dout).unwrap();
    let want = reference::sgd_update(&cores, &grads, 0.05);
    for (k, got) in t.cores().unwrap().iter().enumerate() {
        assert_close(
            &format!("sgd core {k}"),
            got,
            &to_f64(&want[k][..]),
            1e-6,
            1e-7,
        );
        let changed = got
            .chunks(shape.core_cols(k))
            .zip(cores[k].chunks(shape.core_cols(k)))
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(changed, shape.p[k], "sgd: every row of core {k} must move");
    }
    let mut t = table(
        &shape,
        &cores,
        Pooling::Sum,
        Optimizer::Adagrad { lr: 0.1, eps: 1e-8 },
        None,
    );
    t.backward(&bags_, &dout).unwrap();
    t.backward(&bags_, &dout).unwrap();
    // Two Adagrad steps: the second sees the first's state and updated cores.
    let zero: Vec<Vec<f32>> = cores.iter().map(|c| vec![0.0; c.len()]).collect();
    let (c1, s1) = reference::adagrad_update(&cores, &zero, &grads, 0.1, 1e-8);
    let g2 = reference::backward(
        &shape,
        &c1,
        &u64s(&idx),
        &u64s(&off),
        None,
        Pooling::Sum,
        &dout,
    );
    let (c2, s2) = reference::adagrad_update(&c1, &s1, &g2, 0.1, 1e-8);
    let got_c = t.cores().unwrap();
    let got_s = t.optimizer_state().unwrap().expect("adagrad state");
    for k in 0..shape.d() {
        assert_close(
            &format!("adagrad core {k}"),
            &got_c[k],
            &to_f64(&c2[k]),
            1e-5,
            1e-6,
        );
        assert_close(
            &format!("adagrad state {k}"),
            &got_s[k],
            &to_f64(&s2[k]),
            1e-5,
            1e-9,
        );
    }
}

/// Tiny chunks (bags split across chunks) give the same results as one chunk, and both match.
#[test]
fn chunked_calls_match_unchunked() {
    let shape = TtShape::new(300, &[6, 7, 8], &[2, 3, 2], &[5, 6]).unwrap();
    let cores = random_cores(&shape, 3);
    let mut r = rng(4);
    let (idx, off) = bags(&mut r, 40, 9, 300);
    let dout = values(&mut r, 40 * shape.dim());
    let bags_ = Bags::new(&idx, &off);
    let mut whole = table(&shape, &cores, Pooling::Mean, Optimizer::None, None);
    let mut chunked = table(&shape, &cores, Pooling::Mean, Optimizer::None, Some(7));
    let a = whole.forward_backward(&bags_, &dout).unwrap();
    let b = chunked.forward_backward(&bags_, &dout).unwrap();
    let want = reference::forward(
        &shape,
        &cores,
        &u64s(&idx),
        &u64s(&off),
        None,
        Pooling::Mean,
    );
    assert_close("chunked forward", &b, &want, 1e-5, 1e-6);
    assert_close("whole forward", &a, &want, 1e-5, 1e-6);
    let gw = reference::backward(
        &shape,
        &cores,
        &u64s(&idx),
        &u64s(&off),
        None,
        Pooling::Mean,
        &dout,
    );
    for (k, g) in chunked.grads().unwrap().iter().enumerate() {
        assert_close(&format!("chunked grad {k}"), g, &gw[k], 1e-5, 1e-6);
    }
}

/// Same inputs, same adapter: bitwise-equal outputs, gradients and updated cores, with hot rows
/// repeated within and across bags.
#[test]
fn results_are_bitwise_deterministic() {
    let shape = TtShape::new(1000, &[10, 10, 10], &[4, 4, 4], &[16, 16]).unwrap();
    let cores = random_cores(&shape, 5);
    let mut r = rng(6);
    let (mut idx, off) = bags(&mut r, 64, 12, 1000);
    for (i, v) in idx.iter_mut().enumerate() {
        if i % 3 == 0 {
            *v = 777;
        }
    }
    let dout = values(&mut r, 64 * shape.dim());
    let run = || {
        let mut t = table(
            &shape,
            &cores,
            Pooling::Sum,
            Optimizer::Adagrad {
                lr: 0.1,
                eps: 1e-10,
            },
            Some(50),
        );
        let out = t.forward_backward(&Bags::new(&idx, &off), &dout).unwrap();
        (out, t.grads().unwrap(), t.cores().unwrap())
    };
    let a = run();
    let b = run();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.0), bits(&b.0), "outputs differ between runs");
    for k in 0..3 {
        assert_eq!(
            bits(&a.1[k]),
            bits(&b.1[k]),
            "grad of core {k} differs between runs"
        );
        assert_eq!(
            bits(&a.2[k]),
            bits(&b.2[k]),
            "core {k} differs between runs"
        );
    }
}

#[test]
fn empty_bags_u32_indices_and_fused_step_equal_separate_calls() {
    let shape = TtShape::new(120, &[4, 5, 6], &[2, 2, 2], &[3, 4]).unwrap();
    let cores = random_cores(&shape, 9);
    let idx: Vec<u32> = vec![119, 0, 5, 5, 64, 119, 3];
    let off: Vec<u32> = vec![0, 0, 3, 3, 7, 7];
    let mut r = rng(1);
    let dout = values(&mut r, 5 * 8);
    let mut t = table(
        &shape,
        &cores,
        Pooling::Mean,
        Optimizer::Sgd { lr: 0.3 },
        None,
    );
    let out = t.forward(&Bags::new(&idx, &off)).unwrap();
    let i64s: Vec<u64> = idx.iter().map(|&x| x as u64).collect();
    let o64s: Vec<u64> = off.iter().map(|&x| x as u64).collect();
    let want = reference::forward(&shape, &cores, &i64s, &o64s, None, Pooling::Mean);
    assert_close("u32 forward", &out, &want, 1e-5, 1e-6);
    assert!(
        out[..8].iter().all(|&x| x == 0.0)
            && out[16..24].iter().all(|&x| x == 0.0)
            && out[32..].iter().all(|&x| x == 0.0)
    );
    t.backward(&Bags::new(&idx, &off), &dout).unwrap();
    let separate = t.cores().unwrap();
    let mut f = table(
        &shape,
        &cores,
        Pooling::Mean,
        Optimizer::Sgd { lr: 0.3 },
        None,
    );
    let fused_out = f.forward_backward(&Bags::new(&idx, &off), &dout).unwrap();
    assert_eq!(fused_out, out);
    assert_eq!(
        f.cores().unwrap(),
        separate,
        "fused step differs from forward then backward"
    );
}

#[test]
fn bad_input_is_reported_before_gpu_work() {
    let shape = TtShape::new(100, &[4, 5, 6], &[2, 2, 2], &[3, 4]).unwrap();
    let cores = random_cores(&shape, 2);
    let mut t = table(
        &shape,
        &cores,
        Pooling::Sum,
        Optimizer::Sgd { lr: 0.1 },
        None,
    );
    let err = |r: ttrec::Result<Vec<f32>>| r.expect_err("must fail").to_string();
    let e = err(t.forward(&Bags::new(&vec![1u32, 100], &vec![0u32, 2])));
    assert!(e.contains("index 100") && e.contains("position 1"), "{e}");
    let e = err(t.forward(&Bags::new(&vec![1i64, -3], &vec![0i64, 2])));
    assert!(e.contains("index -3") && e.contains("position 1"), "{e}");
    let e = err(t.forward(&Bags::new(&vec![1u32, 2], &vec![1u32, 2])));
    assert!(e.contains("offsets[0] = 1"), "{e}");
    let e = err(t.forward(&Bags::new(&vec![1u32, 2, 3], &vec![0u32, 2, 1, 3])));
    assert!(e.contains("decrease at position 2"), "{e}");
    let e = err(t.forward(&Bags::new(&vec![1u32, 2, 3], &vec![0u32, 2])));
    assert!(
        e.contains("offsets[1] = 2") && e.contains("3 indices"),
        "{e}"
    );
    let e = err(t.forward(&Bags::new(&vec![1u32, 2], &Vec::<u32>::new())));
    assert!(e.contains("offsets is empty"), "{e}");
    let w = [1.0f32];
    let e = err(t.forward(&Bags::new(&vec![1u32, 2], &vec![0u32, 2]).with_weights(&w)));
    assert!(e.contains("1 per-sample weights for 2 indices"), "{e}");
    let mut m = table(&shape, &cores, Pooling::Mean, Optimizer::None, None);
    let w2 = [1.0f32, 2.0];
    let e = err(m.forward(&Bags::new(&vec![1u32, 2], &vec![0u32, 2]).with_weights(&w2)));
    assert!(e.contains("mean"), "{e}");
    let e = t
        .backward(&Bags::new(&vec![1u32, 2], &vec![0u32, 2]), &[0.5; 7])
        .expect_err("must fail")
        .to_string();
    assert!(e.contains("grad_output has 7 values"), "{e}");
    // Shapes.
    let e = TtShape::with_dim(100, 16, &[4, 5, 6], &[2, 2, 2], &[3, 4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("prod(q) = 8") && e.contains("D = 16"), "{e}");
    let e = TtShape::new(100, &[4, 5, 6], &[2, 2, 2], &[3, 0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("rank R_2 is 0"), "{e}");
    let e = TtShape::new(200, &[4, 5, 6], &[2, 2, 2], &[3, 4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("prod(p) = 120 < num_embeddings = 200"), "{e}");
    let e = TtShape::new(100, &[100], &[4], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 to 4 cores"), "{e}");
    let mut bad = cores.clone();
    bad[1].pop();
    let e = TtEmbeddingBag::from_cores(&gpu(), shape.clone(), &bad, TtOptions::default())
        .expect_err("must fail")
        .to_string();
    assert!(e.contains("core 1 has 119 elements"), "{e}");
    // The table still works after errors.
    assert_eq!(
        t.forward(&Bags::new(&vec![1u32], &vec![0u32, 1]))
            .unwrap()
            .len(),
        8
    );
}

#[test]
fn full_weight_and_checkpoints_round_trip() {
    let shape = TtShape::new(100, &[4, 5, 6], &[3, 1, 2], &[5, 7]).unwrap();
    let options = TtOptions {
        init: TtInit::SampledGaussian,
        seed: 42,
        ..TtOptions::default()
    };
    let mut t = TtEmbeddingBag::new(&gpu(), shape.clone(), options.clone()).unwrap();
    let cores = t.cores().unwrap();
    assert!(cores.iter().flatten().any(|&x| x != 0.0));
    let full = t.full_weight().unwrap();
    assert_close(
        "full_weight",
        &full,
        &reference::full_weight(&shape, &cores),
        1e-5,
        1e-9,
    );
    let dir = std::env::temp_dir().join(format!("ttrec-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("table.safetensors");
    t.save(&path).unwrap();
    let mut back = TtEmbeddingBag::load(&gpu(), &path, options).unwrap();
    assert_eq!(back.shape(), &shape);
    assert_eq!(back.cores().unwrap(), cores);
    assert_eq!(back.full_weight().unwrap(), full);
    std::fs::write(&path, b"garbage").unwrap();
    let e = TtEmbeddingBag::load(&gpu(), &path, TtOptions::default())
        .expect_err("must fail")
        .to_string();
    assert!(e.contains("table.safetensors"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Replaying a call builds no new pipeline.
#[test]
fn replays_build_no_new_pipelines() {
    let g = gpu();
    let shape = TtShape::new(1000, &[10, 10, 10], &[2, 2, 4], &[8, 8]).unwrap();
    let mut t = TtEmbeddingBag::new(&g, shape, TtOptions::default()).unwrap();
    let mut r = rng(3);
    let (idx, off) = bags(&mut r, 32, 4, 1000);
    let dout = values(&mut r, 32 * 16);
    t.replay_only(&Bags::new(&idx, &off), Some(&dout), Mode::ForwardBackward)
        .unwrap();
    let built = g.pipelines_built();
    for _ in 0..3 {
        t.forward_backward(&Bags::new(&idx, &off), &dout).unwrap();
    }
    assert_eq!(g.pipelines_built(), built);
}

/// Several tables of different shapes in one call (one submit) give what each gives alone, and a
/// bad batch names its table.
#[test]
fn table_batch_matches_tables_alone() {
    use ttrec::tt::TtTableBatch;
    let g = gpu();
    let shapes = [
        TtShape::new(1000, &[10, 10, 10], &[2, 2, 4], &[8, 8]).unwrap(),
        TtShape::new(90, &[9, 11], &[4, 4], &[6]).unwrap(),
        TtShape::new(100, &[4, 5, 6], &[3, 1, 2], &[5, 7]).unwrap(),
    ];
    let mut r = rng(21);
    let cores: Vec<_> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| random_cores(s, 30 + i as u64))
        .collect();
    let data: Vec<_> = shapes
        .iter()
        .map(|s| bags(&mut r, 17, 5, s.num_embeddings))
        .collect();
    let douts: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| values(&mut r, 17 * s.dim()))
        .collect();
    let opt = Optimizer::Adagrad { lr: 0.1, eps: 1e-8 };
    let tables = shapes
        .iter()
        .zip(&cores)
        .map(|(s, c)| {
            TtEmbeddingBag::from_cores(
                &g,
                s.clone(),
                c,
                TtOptions {
                    optimizer: opt,
                    ..TtOptions::default()
                },
            )
            .unwrap()
        })
        .collect();
    let mut batch = TtTableBatch::new(tables).unwrap();
    let all: Vec<Bags> = data.iter().map(|(i, o)| Bags::new(i, o)).collect();
    let dref: Vec<&[f32]> = douts.iter().map(|d| &d[..]).collect();
    let outs = batch.forward_backward(&all, &dref).unwrap();
    for t in 0..3 {
        let mut alone = table(&shapes[t], &cores[t], Pooling::Sum, opt, None);
        let out = alone.forward_backward(&all[t], &douts[t]).unwrap();
        assert_eq!(outs[t], out, "table {t} output");
        assert_eq!(
            batch.tables()[t].cores().unwrap(),
            alone.cores().unwrap(),
            "table {t} cores"
        );
    }
    let bad_idx = vec![0i64, 5000];
    let bad_off = vec![0i64, 2];
    let mut wrong = all.clone();
    wrong[0] = Bags::new(&bad_idx, &bad_off);
    let e = batch.forward(&wrong).unwrap_err().to_string();
    assert!(e.contains("table 0") && e.contains("index 5000"), "{e}");
}

#[test]
fn a_group_of_tables_matches_each_table_alone() {
    use ttrec::graph::{Buf, GraphBuilder};
    use ttrec::tt::Placement;
    use ttrec::tt::{TtLookups, TtParams};
    // Three tables with the same column factors and ranks but other row factors, stored as one
    // group and run in shared dispatches; their bags pool into one [B, 3 D] matrix.
    let gpu = gpu();
    let shapes = vec![
        TtShape::new(100, &[4, 5, 6], &[2, 2, 4], &[4, 8]).unwrap(),
        TtShape::new(60, &[3, 4, 5], &[2, 2, 4], &[4, 8]).unwrap(),
        TtShape::new(500, &[7, 8, 9], &[2, 2, 4], &[4, 8]).unwrap(),
    ];
    let cores: Vec<Vec<Vec<f32>>> = shapes
        .iter()
        .enumerate()
        .map(|(t, s)| random_cores(s, 40 + t as u64))
        .collect();
    let lr = 0.3f32;
    let options = TtOptions {
        pooling: Pooling::Sum,
        optimizer: Optimizer::Sgd { lr },
        ..TtOptions::default()
    };
    let params = TtParams::group_from_cores(&gpu, shapes.clone(), &cores, options).unwrap();
    let mut r = rng(41);
    let batches: Vec<(Vec<i64>, Vec<i64>)> = shapes
        .iter()
        .map(|s| bags(&mut r, 9, 3, s.num_embeddings))
        .collect();
    let bag_list: Vec<Bags> = batches.iter().map(|(i, o)| Bags::new(i, o)).collect();
    let (b, d) = (9usize, 16usize);
    let stride = 3 * d;
    let dout = values(&mut r, b * stride);
    let out = gpu.storage_from("out", &vec![POISON; b * stride]);
    let dout_buf = gpu.storage_from("dout", &dout);
    let nnz: usize = bag_list.iter().map(|x| x.nnz()).sum();
    let mut g = GraphBuilder::new(&gpu);
    let lk = TtLookups::declare(&mut g, &params, nnz, 3 * b, "group");
    let saved = lk
        .record_forward(&mut g, &params, &Buf::from(&out))
        .unwrap();
    lk.record_backward(&mut g, &params, &Buf::from(&dout_buf), Some(saved), true)
        .unwrap();
    let plan = g.build().unwrap();
    let mut input = plan.new_input();
    let place = Placement {
        col: vec![0, d, 2 * d],
        stride: vec![stride; 3],
    };
    lk.fill(&mut input, &params, &bag_list, &place, Pooling::Sum)
        .unwrap();
    plan.run_with(&input).unwrap();
    let got = gpu.read_f32(&out, 0, b * stride).unwrap();
    for (t, s) in shapes.iter().enumerate() {
        let idx = u64s(&batches[t].0);
        let off = u64s(&batches[t].1);
        let want = reference::forward(s, &cores[t], &idx, &off, None, Pooling::Sum);
        let got_t: Vec<f32> = (0..b)
            .flat_map(|i| got[i * stride + t * d..][..d].to_vec())
            .collect();
        assert_close(&format!("table {t} forward"), &got_t, &want, 1e-5, 1e-6);
        let dout_t: Vec<f32> = (0..b)
            .flat_map(|i| dout[i * stride + t * d..][..d].to_vec())
            .collect();
        let grads = reference::backward(s, &cores[t], &idx, &off, None, Pooling::Sum, &dout_t);
        let got_g = params.table_grads(t).unwrap();
        let updated = reference::sgd_update(&cores[t], &grads, lr as f64);
        let got_c = params.table_cores(t).unwrap();
        for k in 0..3 {
            assert_close(
                &format!("table {t} grad {k}"),
                &got_g[k],
                &grads[k],
                1e-5,
                1e-6,
            );
            assert_close(
                &format!("table {t} updated core {k}"),
                &got_c[k],
                &to_f64(&updated[k]),
                1e-6,
                1e-7,
            );
        }
    }
    // Tables whose factors differ cannot share cores.
    let other = TtShape::new(100, &[4, 5, 6], &[4, 2, 2], &[4, 8]).unwrap();
    let e = TtParams::group_from_cores(
        &gpu,
        vec![shapes[0].clone(), other.clone()],
        &[cores[0].clone(), random_cores(&other, 1)],
        TtOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("table 1") && e.contains("share column factors"),
        "{e}"
    );
}

#[test]
fn gpu_resident_forward_and_backward_match_the_host_calls() {
    // forward_into / backward_from: rows and gradients stay in the app's buffers and the work goes
    // into the app's encoder; results equal forward() / backward().
    let gpu = gpu();
    let c = &CASES[3];
    let shape = TtShape::new(c.n, c.p, c.q, c.r).unwrap();
    let cores = random_cores(&shape, 3);
    let mut r = rng(4);
    let (idx, off) = bags(&mut r, 10, 4, c.n);
    let b = Bags::new(&idx, &off);
    let dim = shape.dim();
    let dout = values(&mut r, 10 * dim);
    let opts = TtOptions {
        optimizer: Optimizer::Sgd { lr: 0.2 },
        ..TtOptions::default()
    };
    let mut host = TtEmbeddingBag::from_cores(&gpu, shape.clone(), &cores, opts.clone()).unwrap();
    let want_out = host.forward(&b).unwrap();
    host.backward(&b, &dout).unwrap();
    let mut dev = TtEmbeddingBag::from_cores(&gpu, shape.clone(), &cores, opts).unwrap();
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let desc = |usage| wgpu::BufferDescriptor {
        label: Some("app rows"),
        size: (10 * dim * 4) as u64,
        usage,
        mapped_at_creation: false,
    };
    let out = gpu.device().create_buffer(&desc(usage));
    let grad = gpu.storage_from("app grad", &dout);
    let mut enc = gpu.device().create_command_encoder(&Default::default());
    dev.forward_into(&b, &out, &mut enc).unwrap();
    dev.backward_from(&b, &grad, &mut enc).unwrap();
    gpu.queue().submit([enc.finish()]);
    let got = gpu.read_f32(&out, 0, 10 * dim).unwrap();
    assert_eq!(got, want_out, "forward_into rows");
    assert_eq!(
        dev.cores().unwrap(),
        host.cores().unwrap(),
        "backward_from update"
    );
    // A buffer too small, or without the usage the copy needs, is a named error.
    let small = gpu.storage("small", 16);
    let mut enc = gpu.device().create_command_encoder(&Default::default());
    let e = dev
        .forward_into(&b, &small, &mut enc)
        .unwrap_err()
        .to_string();
    assert!(e.contains("out buffer has 16 bytes"), "{e}");
    let no_dst = gpu
        .device()
        .create_buffer(&desc(usage - wgpu::BufferUsages::COPY_DST));
    let e = dev.forward_into(&b, &no_dst, &mut enc).unwrap_err();
    assert!(format!("{e}").contains("usage BufferUsages(COPY_DST)"));
}
