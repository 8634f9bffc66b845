//! The GPU layer and the executor: borrowed devices, bounded memory on a large call, plans.

mod common;

use common::*;
use ttrec::gpu::Gpu;
use ttrec::tt::{Bags, Optimizer, Pooling, TtEmbeddingBag, TtOptions, TtShape};
use ttrec::twin::tt as reference;

/// An app that owns its device hands it in; ttrec computes on it.
#[test]
fn borrowed_device_is_used() {
    let own = gpu();
    let gpu = Gpu::from_device(
        own.device().clone(),
        own.queue().clone(),
        own.info().clone(),
    );
    let shape = TtShape::new(50, &[5, 10], &[2, 3], &[4]).unwrap();
    let cores = vec![values(&mut rng(1), 5 * 8), values(&mut rng(2), 10 * 12)];
    let mut t =
        TtEmbeddingBag::from_cores(&gpu, shape.clone(), &cores, TtOptions::default()).unwrap();
    let out = t
        .forward(&Bags::new(&vec![3u32, 49], &vec![0u32, 1, 2]))
        .unwrap();
    assert_close(
        "borrowed",
        &out,
        &reference::forward(&shape, &cores, &[3, 49], &[0, 1, 2], None, Pooling::Sum),
        1e-5,
        1e-6,
    );
}

/// One call with 1,000,000 lookups on the FBTT benchmark table runs in bounded scratch memory
/// (lavapipe allows 128 MiB per binding): the plan's scratch stays within the table's budget
/// (chunks) plus the routing's few words per lookup, and every one of the 50,000 bags matches
/// the twin (ids from 10,000 distinct rows, whose twin rows are computed once).
#[test]
fn a_million_lookups_fit_in_bounded_memory() {
    use std::collections::HashMap;
    use ttrec::graph::{Buf, GraphBuilder};
    use ttrec::tt::{TtLookups, DEFAULT_SCRATCH_BYTES};
    let gpu = gpu();
    let shape = TtShape::new(11_000_000, &[200, 220, 250], &[4, 4, 4], &[32, 32]).unwrap();
    let options = TtOptions {
        optimizer: Optimizer::None,
        seed: 3,
        ..TtOptions::default()
    };
    let mut t = TtEmbeddingBag::new(&gpu, shape.clone(), options).unwrap();
    let mut r = rng(11);
    let rows: Vec<u32> = (0..10_000)
        .map(|_| rand::Rng::random_range(&mut r, 0..11_000_000u32))
        .collect();
    let nnz = 1_000_000usize;
    let bag_len = 20;
    let bags = nnz / bag_len;
    let idx: Vec<u32> = (0..nnz)
        .map(|_| rows[rand::Rng::random_range(&mut r, 0..rows.len())])
        .collect();
    let off: Vec<u32> = (0..=bags).map(|b| (b * bag_len) as u32).collect();
    let out = t.forward(&Bags::new(&idx, &off)).unwrap();
    assert_eq!(out.len(), bags * 64);
    // Every bag against the twin.
    let cores = t.cores().unwrap();
    let twin_rows: HashMap<u32, Vec<f64>> = rows
        .iter()
        .map(|&i| (i, reference::tt_row(&shape, &cores, i as u64)))
        .collect();
    let mut want = vec![0f64; bags * 64];
    for (b, w) in want.chunks_mut(64).enumerate() {
        for &i in &idx[b * bag_len..(b + 1) * bag_len] {
            for (x, v) in w.iter_mut().zip(&twin_rows[&i]) {
                *x += v;
            }
        }
    }
    assert_close("all 50,000 bags", &out, &want, 1e-5, 1e-9);
    // The scratch of the plan of that call: the chunks' share within the table's scratch
    // budget, plus the routing's words per lookup (ids, weights, digits and sorted positions
    // per core, bag and scale: 40 bytes here, 48 allowed).
    let mut g = GraphBuilder::new(&gpu);
    let lk = TtLookups::declare(&mut g, t.params(), 1 << 20, 1 << 16, "tt");
    let dest = gpu.storage("out", (1u64 << 16) * 64 * 4);
    lk.record_forward(&mut g, t.params(), &Buf::from(&dest))
        .unwrap();
    let plan = g.build().unwrap();
    let bound = DEFAULT_SCRATCH_BYTES + 48 * (1 << 20);
    println!(
        "scratch of 2^20 lookups: {} MiB in {} chunks (bound {} MiB)",
        plan.transient_bytes() >> 20,
        lk.chunks(),
        bound >> 20
    );
    assert!(lk.chunks() >= 10, "{} chunks", lk.chunks());
    assert!(
        plan.transient_bytes() <= bound,
        "scratch {} MiB for 2^20 lookups in {} chunks, over {} MiB",
        plan.transient_bytes() >> 20,
        lk.chunks(),
        bound >> 20
    );
}
