//! The GPU class's TT and dense-table kernels on the CPU adapter, against their twins: the
//! chain with one row per invocation (`chain_row_v4`), the core-gradient pieces with one row of
//! the slice per invocation (`core_grad_pieces_row`), and the dense tables' backward in pieces
//! (`bag_bwd_pieces`, `bag_bwd_combine`). Random non-zero inputs with hot rows (runs of several
//! pieces), forward and backward with the fused updates, each run twice for bitwise
//! determinism. The TT kernels add the same terms in the same order as the CPU class's, so the
//! two classes agree bitwise as well.

mod common;

use common::*;
use rand::Rng;
use ttrec::gpu::AdapterClass;
use ttrec::graph::{Buf, GraphBuilder};
use ttrec::nn::{DenseBagGroup, DenseBagLookups};
use ttrec::tt::{Bags, Optimizer, Pooling, TtEmbeddingBag, TtKernels, TtOptions, TtShape};
use ttrec::twin::nn as twin_nn;
use ttrec::twin::tt as twin_tt;

/// Outputs, core gradients and cores after one Adagrad step of `shape` with `kernels`.
fn tt_step(
    shape: &TtShape,
    kernels: TtKernels,
    idx: &[i64],
    off: &[i64],
    dout: &[f32],
) -> (Vec<f32>, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let cores = random_cores(shape, 31);
    let options = TtOptions {
        optimizer: Optimizer::Adagrad {
            lr: 0.05,
            eps: 1e-8,
        },
        kernels: Some(kernels),
        ..TtOptions::default()
    };
    let g = gpu();
    let mut t = TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, options).unwrap();
    let out = t.forward_backward(&Bags::new(idx, off), dout).unwrap();
    (out, t.grads().unwrap(), t.cores().unwrap())
}

/// The GPU class's TT kernels (with and without subgroups) against the f64 twin, twice
/// bitwise, and bitwise equal to the CPU class's; on shapes whose last product has N = 4 (one
/// vec4 column: only the one-row tiles give it many invocations) and on a wider one.
#[test]
fn tt_gpu_class_matches_twin_and_cpu_class_bitwise() {
    let shapes = [
        TtShape::new(3000, &[15, 15, 14], &[2, 2, 4], &[32, 32]).unwrap(),
        TtShape::new(1000, &[10, 10, 10], &[4, 4, 4], &[16, 8]).unwrap(),
    ];
    for shape in &shapes {
        let mut r = rng(32);
        let (mut idx, off) = bags(&mut r, 60, 4, shape.num_embeddings);
        for (i, v) in idx.iter_mut().enumerate() {
            if i % 3 == 0 {
                *v = 777; // a hot row: runs of several core-gradient pieces
            }
        }
        let dout = values(&mut r, 60 * shape.dim());
        let cores = random_cores(shape, 31);
        let want_out =
            twin_tt::forward(shape, &cores, &u64s(&idx), &u64s(&off), None, Pooling::Sum);
        let want_grads = twin_tt::backward(
            shape,
            &cores,
            &u64s(&idx),
            &u64s(&off),
            None,
            Pooling::Sum,
            &dout,
        );
        let cpu = tt_step(
            shape,
            TtKernels::for_class(AdapterClass::Cpu),
            &idx,
            &off,
            &dout,
        );
        for subgroups in [false, true] {
            let kernels = TtKernels {
                subgroups,
                ..TtKernels::for_class(AdapterClass::Gpu)
            };
            assert!(kernels.row_tiles);
            let what = format!("{shape:?}, subgroups {subgroups}");
            let a = tt_step(shape, kernels, &idx, &off, &dout);
            assert_close(&format!("{what} forward"), &a.0, &want_out, 1e-5, 1e-6);
            for (k, want) in want_grads.iter().enumerate() {
                assert_close(&format!("{what} grad {k}"), &a.1[k], want, 1e-5, 1e-6);
            }
            let b = tt_step(shape, kernels, &idx, &off, &dout);
            assert_eq!(bits(&a.0), bits(&b.0), "{what}: outputs differ run to run");
            for k in 0..shape.d() {
                assert_eq!(bits(&a.1[k]), bits(&b.1[k]), "{what}: grad {k} differs");
                assert_eq!(bits(&a.2[k]), bits(&b.2[k]), "{what}: core {k} differs");
                assert_eq!(bits(&a.1[k]), bits(&cpu.1[k]), "{what}: grad {k} vs CPU");
                assert_eq!(bits(&a.2[k]), bits(&cpu.2[k]), "{what}: core {k} vs CPU");
            }
            assert_eq!(bits(&a.0), bits(&cpu.0), "{what}: outputs vs CPU class");
        }
    }
}

const DIM: usize = 8;
const ROWS: [u64; 2] = [13, 40];
const BAGS: usize = 50;
const STRIDE: usize = 24;
const COLS: [usize; 2] = [4, 16];

/// One table's batch: hot rows (row 3 of table 0 in every bag, row 7 of table 1 in most) make
/// runs of several pieces; the rest random.
fn dense_batch(seed: u64) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let mut r = rng(seed);
    let (mut indices, mut offsets) = (Vec::new(), Vec::new());
    for (t, &n) in ROWS.iter().enumerate() {
        let (mut idx, mut off) = (Vec::new(), vec![0u32]);
        for b in 0..BAGS {
            if t == 0 || b % 5 != 0 {
                idx.push([3, 7][t]);
            }
            for _ in 0..r.random_range(0..3) {
                idx.push(r.random_range(0..n) as u32);
            }
            off.push(idx.len() as u32);
        }
        indices.push(idx);
        offsets.push(off);
    }
    (indices, offsets)
}

/// Forward and backward of one batch with the backward in pieces: the pooled output, each
/// table's row gradients, tables and states after the update.
#[allow(clippy::type_complexity)]
fn dense_step(opt: Optimizer) -> (Vec<f32>, Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let gpu = gpu();
    // Shards of 6 rows: tables and the hot rows' shards straddle boundaries.
    let mut group = DenseBagGroup::empty(&gpu, DIM, &ROWS, opt, Some(6 * DIM as u64 * 4)).unwrap();
    let mut r = rng(41);
    for (t, &n) in ROWS.iter().enumerate() {
        group
            .set_table(t, &values(&mut r, n as usize * DIM))
            .unwrap();
    }
    let (indices, offsets) = dense_batch(42);
    let bags: Vec<Bags> = indices
        .iter()
        .zip(&offsets)
        .map(|(i, o)| Bags::new(i, o))
        .collect();
    let dout = values(&mut r, BAGS * STRIDE);
    let out = gpu.storage_from("out", &vec![0f32; BAGS * STRIDE]);
    let dout_buf = gpu.storage_from("dout", &dout);
    let mut g = GraphBuilder::new(&gpu);
    let nnz: usize = indices.iter().map(Vec::len).sum();
    let lk = DenseBagLookups::declare(&mut g, &group, BAGS, nnz + 5, STRIDE, &COLS, "dense")
        .unwrap()
        .use_pieces(&mut g, &group);
    lk.record_forward(&mut g, &group, Buf::from(&out)).unwrap();
    lk.record_backward(&mut g, &group, Buf::from(&dout_buf))
        .unwrap();
    let plan = g.build().unwrap();
    assert!(plan
        .counts()
        .iter()
        .any(|c| c.kernel == Some("bag_bwd_pieces")));
    assert!(plan
        .counts()
        .iter()
        .any(|c| c.kernel == Some("bag_bwd_combine")));
    let mut input = plan.new_input();
    lk.validate(&group, &bags).unwrap();
    lk.fill(&mut input, &group, &bags).unwrap();
    plan.run_with(&input).unwrap();
    let grads = (0..ROWS.len())
        .map(|t| lk.table_grad(&group, &bags, t).unwrap())
        .collect();
    let tables = (0..ROWS.len()).map(|t| group.table(t).unwrap()).collect();
    let states = (0..ROWS.len())
        .map(|t| group.table_state(t).unwrap().unwrap_or_default())
        .collect();
    (
        gpu.read_f32(&out, 0, BAGS * STRIDE).unwrap(),
        grads,
        tables,
        states,
    )
}

/// The dense tables' backward in pieces against the twin (row gradients, SGD and Adagrad
/// updates), twice bitwise.
#[test]
fn dense_backward_in_pieces_matches_twin_and_is_deterministic() {
    let (indices, offsets) = dense_batch(42);
    for opt in [
        Optimizer::Sgd { lr: 0.3 },
        Optimizer::Adagrad { lr: 0.2, eps: 1e-8 },
    ] {
        let (out, grads, tables, states) = dense_step(opt);
        let mut r = rng(41);
        let before: Vec<Vec<f32>> = ROWS
            .iter()
            .map(|&n| values(&mut r, n as usize * DIM))
            .collect();
        let dout = values(&mut r, BAGS * STRIDE);
        for t in 0..ROWS.len() {
            let what = format!("{opt:?} table {t}");
            let (idx, off): (Vec<u64>, Vec<u64>) = (
                indices[t].iter().map(|&x| x as u64).collect(),
                offsets[t].iter().map(|&x| x as u64).collect(),
            );
            let want = twin_nn::bag_forward(&to_f64(&before[t]), DIM, &idx, &off);
            let got: Vec<f32> = (0..BAGS)
                .flat_map(|b| out[b * STRIDE + COLS[t]..][..DIM].to_vec())
                .collect();
            assert_close(&format!("{what} forward"), &got, &want, 1e-6, 1e-7);
            let dout_t: Vec<f64> = (0..BAGS)
                .flat_map(|b| {
                    dout[b * STRIDE + COLS[t]..][..DIM]
                        .iter()
                        .map(|&x| x as f64)
                })
                .collect();
            let grad = twin_nn::bag_backward(ROWS[t] as usize, DIM, &idx, &off, &dout_t);
            assert_close(&format!("{what} row grads"), &grads[t], &grad, 1e-5, 1e-6);
            let w = to_f64(&before[t]);
            match opt {
                Optimizer::Sgd { lr } => {
                    let want_w = twin_nn::sgd(&w, &grad, lr as f64);
                    assert_close(&format!("{what} updated"), &tables[t], &want_w, 1e-5, 1e-6);
                }
                Optimizer::Adagrad { lr, eps } => {
                    let zeros = vec![0.0; w.len()];
                    let (want_w, want_s) =
                        twin_nn::adagrad(&w, &zeros, &grad, lr as f64, eps as f64);
                    assert_close(&format!("{what} updated"), &tables[t], &want_w, 1e-5, 1e-6);
                    assert_close(&format!("{what} state"), &states[t], &want_s, 1e-5, 1e-8);
                }
                Optimizer::None => unreachable!(),
            }
        }
        let again = dense_step(opt);
        assert_eq!(
            bits(&out),
            bits(&again.0),
            "{opt:?}: outputs differ run to run"
        );
        for t in 0..ROWS.len() {
            assert_eq!(bits(&grads[t]), bits(&again.1[t]), "{opt:?}: grads differ");
            assert_eq!(
                bits(&tables[t]),
                bits(&again.2[t]),
                "{opt:?}: tables differ"
            );
            assert_eq!(
                bits(&states[t]),
                bits(&again.3[t]),
                "{opt:?}: states differ"
            );
        }
    }
}
