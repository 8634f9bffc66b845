//! The pieces the subgroup chain runs on (host side, no GPU): every lookup of a chunk lands in
//! exactly one piece, a piece holds one digit's lookups in sorted order, and the slots fit the
//! layout's bound whatever the batch (uniform ids, one hot row, every lookup distinct).

mod common;

use common::*;
use ttrec::kernels::tt::ChainShape;
use ttrec::kernels::tt_subgroup::PieceLayout;
use ttrec::tt::{Bags, Pooling, TtShape};
use ttrec::twin::tt_route::{cut_pieces, prepare, NO_LOOKUP};

fn check(shape: &TtShape, idx: &[i64], off: &[i64], chunk: usize, lanes: usize) {
    let bags = Bags::new(idx, off);
    let nnz = idx.len();
    let cap = nnz.max(64).next_power_of_two();
    let hb = prepare(shape, &bags, Pooling::Sum, cap, off.len(), chunk);
    for k in 1..shape.d() {
        let layout = PieceLayout::new(lanes, shape.q_prefix(k), shape.p[k], chunk).unwrap();
        assert!(layout.len.is_power_of_two() && layout.len * shape.q_prefix(k) <= 16);
        let pieces = cut_pieces(&hb, k, shape.p[k], cap, chunk, layout.len, layout.per_chunk);
        let chunks = cap.div_ceil(chunk);
        assert_eq!(pieces.len(), chunks * layout.per_chunk * layout.len);
        let mut seen = vec![0u32; nnz];
        for c in 0..chunks {
            let mut last_digit_and_pos: Option<(u32, u32)> = None;
            for p in 0..layout.per_chunk {
                let slots = &pieces[(c * layout.per_chunk + p) * layout.len..][..layout.len];
                // Used slots hold lookup + 1.
                let used: Vec<u32> = slots
                    .iter()
                    .filter(|&&g| g != NO_LOOKUP)
                    .map(|&g| g - 1)
                    .collect();
                // Used slots come first; a piece is one digit; digits and lookups ascend.
                assert!(slots[..used.len()].iter().all(|&g| g != NO_LOOKUP));
                for &g in &used {
                    let g = g as usize;
                    assert!(
                        g >= c * chunk && g < ((c + 1) * chunk).min(nnz),
                        "lookup {g} in chunk {c}"
                    );
                    seen[g] += 1;
                    let digit = hb.digits[k * cap + g];
                    assert_eq!(
                        digit,
                        hb.digits[k * cap + used[0] as usize],
                        "piece mixes digits"
                    );
                    if let Some((d0, g0)) = last_digit_and_pos {
                        assert!((d0, g0) < (digit, g as u32), "pieces out of sorted order");
                    }
                    last_digit_and_pos = Some((digit, g as u32));
                }
            }
        }
        assert!(
            seen.iter().all(|&s| s == 1),
            "core {k}: a lookup is missing or repeated"
        );
    }
}

#[test]
fn pieces_cover_every_lookup_once_in_digit_order() {
    let shape = TtShape::new(5000, &[13, 11, 35], &[4, 4, 4], &[32, 8]).unwrap();
    let mut r = rng(1);
    let (idx, off) = bags(&mut r, 300, 10, 5000);
    for chunk in [idx.len(), 301, 64] {
        check(&shape, &idx, &off, chunk, 8);
        check(&shape, &idx, &off, chunk, 32);
    }
    // One hot row: one digit's run is far longer than a piece.
    let hot: Vec<i64> = idx
        .iter()
        .enumerate()
        .map(|(i, &v)| if i % 2 == 0 { 4321 } else { v })
        .collect();
    check(&shape, &hot, &off, 301, 8);
    // Every lookup a different row of core 1: runs of one.
    let distinct: Vec<i64> = (0..11).map(|i| i * 35 + 3).collect();
    check(&shape, &distinct, &[0, 5, 11], 11, 4);
}

#[test]
fn layouts_fit_only_whole_column_groups() {
    let l = PieceLayout::new(8, 4, 220, 10240).unwrap();
    assert_eq!(l.len, 4); // 4 x 4 rows fill the 16 accumulators; runs average 46
    assert_eq!(l.per_chunk, 10240 / 4 + 220);
    let product = |m, k, n| ChainShape {
        m,
        k,
        n,
        core: 1,
        trans_b: false,
        a_from_core: true,
    };
    assert!(l.fits(&product(4, 32, 128)));
    assert!(
        !l.fits(&product(4, 32, 4)),
        "4 columns do not fill 8 lanes x 4"
    );
    assert!(!l.fits(&product(4, 30, 128)), "K must be a multiple of 4");
    // Short runs (few lookups per digit) get short pieces.
    assert_eq!(PieceLayout::new(8, 2, 1000, 2048).unwrap().len, 2);
    // q prefixes above 16 rows cannot run.
    assert!(PieceLayout::new(8, 32, 10, 1000).is_none());
}
