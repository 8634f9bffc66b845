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
/// (lavapipe allows 128 MiB per binding); sampled bags match the twin.
#[test]
fn a_million_lookups_fit_in_bounded_memory() {
    let gpu = gpu();
    let shape = TtShape::new(11_000_000, &[200, 220, 250], &[4, 4, 4], &[32, 32]).unwrap();
    let options = TtOptions {
        optimizer: Optimizer::None,
        seed: 3,
        ..TtOptions::default()
    };
    let mut t = TtEmbeddingBag::new(&gpu, shape.clone(), options).unwrap();
    let mut r = rng(11);
    let nnz = 1_000_000usize;
    let bag_len = 20;
    let idx: Vec<u32> = (0..nnz)
        .map(|_| rand::Rng::random_range(&mut r, 0..11_000_000u32))
        .collect();
    let off: Vec<u32> = (0..=nnz / bag_len).map(|b| (b * bag_len) as u32).collect();
    let out = t.forward(&Bags::new(&idx, &off)).unwrap();
    assert_eq!(out.len(), nnz / bag_len * 64);
    let cores = t.cores().unwrap();
    for b in [0usize, 1234, 31_337, nnz / bag_len - 1] {
        let i: Vec<u64> = idx[b * bag_len..(b + 1) * bag_len]
            .iter()
            .map(|&x| x as u64)
            .collect();
        let want = reference::forward(&shape, &cores, &i, &[0, bag_len as u64], None, Pooling::Sum);
        assert_close(
            &format!("bag {b}"),
            &out[b * 64..(b + 1) * 64],
            &want,
            1e-4,
            1e-9,
        );
    }
}
