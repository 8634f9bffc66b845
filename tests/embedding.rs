//! Uncompressed EmbeddingBag groups (shaders/embedding.wgsl, src/nn/embedding.rs) against the
//! CPU twin: pooling into a strided matrix, tables split across shards, duplicates and empty
//! bags, the fused SGD and Adagrad row updates, the kept row gradients, determinism, bad input.

mod common;

use common::*;
use rand::Rng;
use ttrec::graph::{Buf, GraphBuilder};
use ttrec::nn::{DenseBagGroup, DenseBagLookups};
use ttrec::tt::{Bags, Optimizer};
use ttrec::twin::nn as twin;

const DIM: usize = 8;
const ROWS: [u64; 3] = [11, 3, 26];
const BAGS: usize = 9;
/// Output: [BAGS, 40] with table t at column 4 + 12 t (a column block of a wider matrix).
const STRIDE: usize = 40;
const COLS: [usize; 3] = [4, 16, 28];

struct Batch {
    indices: Vec<Vec<u32>>,
    offsets: Vec<Vec<u32>>,
}

impl Batch {
    fn bags(&self) -> Vec<Bags<'_>> {
        self.indices
            .iter()
            .zip(&self.offsets)
            .map(|(i, o)| Bags::new(i, o))
            .collect()
    }
}

fn batch(seed: u64) -> Batch {
    let mut r = rng(seed);
    let mut indices = Vec::new();
    let mut offsets = Vec::new();
    for &n in &ROWS {
        let mut idx = Vec::new();
        let mut off = vec![0u32];
        for b in 0..BAGS {
            // Bag 2 is empty; ids come from a few rows so rows repeat within and across bags.
            let len = if b == 2 { 0 } else { r.random_range(1..4) };
            for _ in 0..len {
                idx.push(r.random_range(0..n.min(5)) as u32 * (n as u32 / 5).max(1) % n as u32);
            }
            off.push(idx.len() as u32);
        }
        indices.push(idx);
        offsets.push(off);
    }
    Batch { indices, offsets }
}

fn random_group(
    gpu: &ttrec::gpu::Gpu,
    opt: Optimizer,
    seed: u64,
) -> (DenseBagGroup, Vec<Vec<f32>>) {
    // 7 rows per shard: tables straddle shard boundaries.
    let mut group = DenseBagGroup::empty(gpu, DIM, &ROWS, opt, Some(7 * DIM as u64 * 4)).unwrap();
    assert_eq!(group.num_shards(), 6);
    let mut r = rng(seed);
    let tables: Vec<Vec<f32>> = ROWS
        .iter()
        .map(|&n| values(&mut r, n as usize * DIM))
        .collect();
    for (t, v) in tables.iter().enumerate() {
        group.set_table(t, v).unwrap();
    }
    (group, tables)
}

/// Runs forward + backward of one batch; returns (pooled output matrix, lookups).
fn step(
    gpu: &ttrec::gpu::Gpu,
    group: &DenseBagGroup,
    b: &Batch,
    dout: &[f32],
) -> (Vec<f32>, DenseBagLookups) {
    let out = gpu.storage_from("out", &vec![POISON; BAGS * STRIDE]);
    let dout_buf = gpu.storage_from("dout", dout);
    let mut g = GraphBuilder::new(gpu);
    let lk = DenseBagLookups::declare(&mut g, group, BAGS, 64, STRIDE, &COLS, "dense").unwrap();
    lk.record_forward(&mut g, group, Buf::from(&out)).unwrap();
    lk.record_backward(&mut g, group, Buf::from(&dout_buf))
        .unwrap();
    let plan = g.build().unwrap();
    let mut input = plan.new_input();
    lk.validate(group, &b.bags()).unwrap();
    lk.fill(&mut input, group, &b.bags()).unwrap();
    plan.run_with(&input).unwrap();
    (gpu.read_f32(&out, 0, BAGS * STRIDE).unwrap(), lk)
}

fn u64s(v: &[u32]) -> Vec<u64> {
    v.iter().map(|&x| x as u64).collect()
}

#[test]
fn forward_backward_and_fused_updates_match_twin() {
    let gpu = gpu();
    for opt in [
        Optimizer::Sgd { lr: 0.3 },
        Optimizer::Adagrad { lr: 0.2, eps: 1e-8 },
    ] {
        let (group, tables) = random_group(&gpu, opt, 1);
        let b = batch(2);
        let mut r = rng(3);
        let dout = values(&mut r, BAGS * STRIDE);
        let (out, lk) = step(&gpu, &group, &b, &dout);
        for t in 0..ROWS.len() {
            let what = format!("{opt:?} table {t}");
            let idx = u64s(&b.indices[t]);
            let off = u64s(&b.offsets[t]);
            let want = twin::bag_forward(&to_f64(&tables[t]), DIM, &idx, &off);
            let got: Vec<f32> = (0..BAGS)
                .flat_map(|bag| out[bag * STRIDE + COLS[t]..][..DIM].to_vec())
                .collect();
            assert_close(&format!("{what} forward"), &got, &want, 1e-6, 1e-7);
            let dout_t: Vec<f64> = (0..BAGS)
                .flat_map(|bag| {
                    dout[bag * STRIDE + COLS[t]..][..DIM]
                        .iter()
                        .map(|&x| x as f64)
                })
                .collect();
            let grad = twin::bag_backward(ROWS[t] as usize, DIM, &idx, &off, &dout_t);
            let got_grad = lk.table_grad(&group, &b.bags(), t).unwrap();
            assert_close(&format!("{what} row grads"), &got_grad, &grad, 1e-6, 1e-7);
            let w = to_f64(&tables[t]);
            let (want_w, want_s) = match opt {
                Optimizer::Sgd { lr } => (twin::sgd(&w, &grad, lr as f64), None),
                Optimizer::Adagrad { lr, eps } => {
                    let (w2, s2) =
                        twin::adagrad(&w, &vec![0.0; w.len()], &grad, lr as f64, eps as f64);
                    (w2, Some(s2))
                }
                Optimizer::None => unreachable!(),
            };
            assert_close(
                &format!("{what} updated"),
                &group.table(t).unwrap(),
                &want_w,
                1e-6,
                1e-7,
            );
            if let Some(s) = want_s {
                assert_close(
                    &format!("{what} state"),
                    &group.table_state(t).unwrap().unwrap(),
                    &s,
                    1e-6,
                    1e-9,
                );
            }
            // Rows nobody looked up are bitwise untouched.
            let after = group.table(t).unwrap();
            for row in 0..ROWS[t] as usize {
                if grad[row * DIM..(row + 1) * DIM].iter().all(|&g| g == 0.0) {
                    assert_eq!(
                        after[row * DIM..(row + 1) * DIM],
                        tables[t][row * DIM..(row + 1) * DIM]
                    );
                }
            }
        }
        // Columns outside the tables' blocks are never written.
        for bag in 0..BAGS {
            for c in 0..STRIDE {
                if !COLS.iter().any(|&o| (o..o + DIM).contains(&c)) {
                    assert_eq!(out[bag * STRIDE + c], POISON, "bag {bag} column {c}");
                }
            }
        }
    }
}

#[test]
fn steps_are_bitwise_deterministic() {
    let gpu = gpu();
    let run = || {
        let (group, _) = random_group(&gpu, Optimizer::Sgd { lr: 0.5 }, 7);
        let b = batch(8);
        let dout = values(&mut rng(9), BAGS * STRIDE);
        let (out, _) = step(&gpu, &group, &b, &dout);
        let tables: Vec<Vec<f32>> = (0..ROWS.len()).map(|t| group.table(t).unwrap()).collect();
        (out, tables)
    };
    let (a, b) = (run(), run());
    assert!(a
        .0
        .iter()
        .zip(&b.0)
        .all(|(x, y)| x.to_bits() == y.to_bits()));
    assert_eq!(a.1, b.1);
}

#[test]
fn dlrm_init_is_uniform_within_bounds_and_seeded() {
    let gpu = gpu();
    let rows = [1000u64, 40];
    let a = DenseBagGroup::new(&gpu, 4, &rows, Optimizer::Sgd { lr: 0.1 }, 5, Some(4096)).unwrap();
    let b = DenseBagGroup::new(&gpu, 4, &rows, Optimizer::Sgd { lr: 0.1 }, 5, None).unwrap();
    for (t, &n) in rows.iter().enumerate() {
        let v = a.table(t).unwrap();
        assert_eq!(
            v,
            b.table(t).unwrap(),
            "shard layout must not change the values"
        );
        let bound = 1.0 / (n as f32).sqrt();
        assert!(v.iter().all(|x| x.abs() <= bound && *x != 0.0));
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        let want = (bound as f64).powi(2) / 3.0;
        assert!(
            (var / want - 1.0).abs() < 0.2,
            "table {t}: variance {var} vs {want}"
        );
    }
}

#[test]
fn bad_input_names_table_position_and_value() {
    let gpu = gpu();
    let (group, _) = random_group(&gpu, Optimizer::Sgd { lr: 0.1 }, 1);
    let mut g = GraphBuilder::new(&gpu);
    let lk = DenseBagLookups::declare(&mut g, &group, BAGS, 64, STRIDE, &COLS, "dense").unwrap();
    let mut b = batch(2);
    b.indices[2][1] = 26;
    let e = lk.validate(&group, &b.bags()).unwrap_err().to_string();
    assert!(
        e.contains("table 2") && e.contains("index 26 at position 1"),
        "{e}"
    );
    let b = batch(2);
    let e = lk.validate(&group, &b.bags()[..2]).unwrap_err().to_string();
    assert!(e.contains("2 batches for 3 dense tables"), "{e}");
    assert!(DenseBagGroup::empty(&gpu, 6, &ROWS, Optimizer::Sgd { lr: 0.1 }, None).is_err());
    assert!(DenseBagLookups::declare(&mut g, &group, BAGS, 64, 42, &COLS, "x").is_err());
}

#[test]
fn large_batches_match_twin() {
    // 3 tables x 12,000 bags of one lookup: past the host's radix-sort threshold (32,768).
    let gpu = gpu();
    let rows = [50u64, 7, 3000];
    let bags = 12_000;
    let mut group = DenseBagGroup::empty(&gpu, 4, &rows, Optimizer::Sgd { lr: 0.5 }, None).unwrap();
    let mut r = rng(31);
    let tables: Vec<Vec<f32>> = rows
        .iter()
        .map(|&n| values(&mut r, n as usize * 4))
        .collect();
    for (t, v) in tables.iter().enumerate() {
        group.set_table(t, v).unwrap();
    }
    let ids: Vec<Vec<u32>> = rows
        .iter()
        .map(|&n| (0..bags).map(|_| r.random_range(0..n as u32)).collect())
        .collect();
    let offsets: Vec<u32> = (0..=bags as u32).collect();
    let bags_v: Vec<Bags> = ids.iter().map(|i| Bags::new(i, &offsets)).collect();
    let stride = 12;
    let cols = [0usize, 4, 8];
    let out = gpu.storage("out", (bags * stride * 4) as u64);
    let dout_v = values(&mut r, bags * stride);
    let dout = gpu.storage_from("dout", &dout_v);
    let mut g = GraphBuilder::new(&gpu);
    let lk =
        DenseBagLookups::declare(&mut g, &group, bags, 3 * bags, stride, &cols, "big").unwrap();
    lk.record_forward(&mut g, &group, Buf::from(&out)).unwrap();
    lk.record_backward(&mut g, &group, Buf::from(&dout))
        .unwrap();
    let plan = g.build().unwrap();
    let mut input = plan.new_input();
    lk.validate(&group, &bags_v).unwrap();
    lk.fill(&mut input, &group, &bags_v).unwrap();
    plan.run_with(&input).unwrap();
    for t in 0..3 {
        let idx: Vec<u64> = ids[t].iter().map(|&x| x as u64).collect();
        let off: Vec<u64> = offsets.iter().map(|&x| x as u64).collect();
        let d: Vec<f64> = (0..bags)
            .flat_map(|b| {
                dout_v[b * stride + cols[t]..][..4]
                    .iter()
                    .map(|&x| x as f64)
            })
            .collect();
        let grad = twin::bag_backward(rows[t] as usize, 4, &idx, &off, &d);
        let got = lk.table_grad(&group, &bags_v, t).unwrap();
        assert_close(&format!("table {t} row grads"), &got, &grad, 1e-5, 1e-6);
        let want = twin::sgd(&to_f64(&tables[t]), &grad, 0.5);
        assert_close(
            &format!("table {t} updated"),
            &group.table(t).unwrap(),
            &want,
            1e-5,
            1e-6,
        );
    }
}
