//! The routing kernels (shaders/tt_route.wgsl) against their CPU twin (`prepare_group` and
//! `cut_pieces`): row digits (ids up to 2^32 - 1, the most rows a table may have),
//! destinations and pooling scales (sum, mean, weighted; empty bags), and per core the stable
//! sort by digit with its segments and piece tables, over several chunks and a group of tables.

mod common;

use common::*;
use rand::Rng;
use ttrec::graph::{Buf, GraphBuilder};
use ttrec::kernels::tt::{GradPieces, CORE_GRAD_BLOCK};
use ttrec::kernels::tt_route::{
    record_route_bags, record_route_digits, record_sort, table_desc_words, RouteParams,
    SortBuffers, SortLayout, SortStrategy, FUSED_SORT_MAX_ROWS,
};
use ttrec::tt::{Bags, GroupTable, Placement};
use ttrec::tt::{Pooling, TtShape};
use ttrec::twin::tt_route::{cut_pieces, prepare_group};

struct Case {
    tables: Vec<GroupTable>,
    rows: Vec<usize>,
    ids: Vec<Vec<i64>>,
    offsets: Vec<Vec<i64>>,
    weights: Option<Vec<Vec<f32>>>,
    pooling: Pooling,
    chunk: usize,
    /// Subgroup piece length per core (None: no pieces).
    sg_len: Option<usize>,
}

fn group(shapes: &[TtShape]) -> (Vec<GroupTable>, Vec<usize>) {
    let d = shapes[0].d();
    let mut rows = vec![0usize; d];
    let mut tables = Vec::new();
    for s in shapes {
        tables.push(GroupTable {
            shape: s.clone(),
            bases: rows.clone(),
        });
        for (r, p) in rows.iter_mut().zip(&s.p) {
            *r += p;
        }
    }
    (tables, rows)
}

/// Random bags of table `shape` with some empty bags and one hot id.
fn random_bags(seed: u64, shape: &TtShape, bags_n: usize, hot: i64) -> (Vec<i64>, Vec<i64>) {
    let mut r = rng(seed);
    let n = shape.num_embeddings;
    let (mut ids, off) = bags(&mut r, bags_n, 9, n);
    for v in ids.iter_mut() {
        if r.random_range(0..3) == 0 {
            *v = hot;
        }
    }
    (ids, off)
}

fn check(case: &Case) {
    for strategy in [SortStrategy::Blocks, SortStrategy::Workgroup] {
        check_with(case, strategy);
    }
}

fn check_with(case: &Case, strategy: SortStrategy) {
    let g = gpu();
    let d = case.rows.len();
    let nnz: usize = case.ids.iter().map(|v| v.len()).sum();
    let nb: usize = case.offsets.iter().map(|o| o.len() - 1).sum();
    let cap = nnz + 37; // capacity above the batch, as in a plan
    let bag_cap = nb + 3;
    let chunks = cap.div_ceil(case.chunk);
    let dim = 8;
    let bags: Vec<Bags> = case
        .ids
        .iter()
        .zip(&case.offsets)
        .enumerate()
        .map(|(t, (i, o))| {
            let b = Bags::new(i, o);
            match &case.weights {
                Some(w) => b.with_weights(&w[t]),
                None => b,
            }
        })
        .collect();
    let place = Placement {
        col: (0..case.tables.len()).map(|t| t * dim).collect(),
        stride: vec![dim * case.tables.len(); case.tables.len()],
    };
    let want = prepare_group(
        &case.tables,
        &case.rows,
        &bags,
        &place,
        case.pooling,
        cap,
        bag_cap,
        case.chunk,
    );

    // Inputs, laid out as TtLookups::fill lays them out.
    let route = RouteParams {
        nnz: nnz as u32,
        num_bags: nb as u32,
        tables: case.tables.len() as u32,
        cap: cap as u32,
        pool: match (case.pooling, case.weights.is_some()) {
            (Pooling::Mean, _) => 1,
            (Pooling::Sum, true) => 2,
            (Pooling::Sum, false) => 0,
        },
        _pad: [0; 3],
    };
    let route_buf = g.uniform("route", 32);
    g.write(&route_buf, &[route]);
    let mut desc = vec![0u32; case.tables.len() * table_desc_words(d)];
    let mut ids = vec![0u32; cap];
    let mut weights = vec![0f32; cap];
    let mut n0 = 0;
    for (t, table) in case.tables.iter().enumerate() {
        let at = t * table_desc_words(d);
        desc[at] = n0 as u32;
        for k in 0..d {
            desc[at + 1 + k] = table.shape.p[k] as u32;
            desc[at + 1 + d + k] = table.bases[k] as u32;
        }
        for (i, &x) in case.ids[t].iter().enumerate() {
            ids[n0 + i] = x as u32;
            if let Some(w) = &case.weights {
                weights[n0 + i] = w[t][i];
            }
        }
        n0 += case.ids[t].len();
    }
    let u32s = |n: usize| n as u64 * 4;
    let ext = |b: &wgpu::Buffer| Buf::from(b);
    let ids_buf = g.storage_from("ids", &ids);
    let desc_buf = g.storage_from("tables", &desc);
    let offsets_buf = g.storage_from("offsets", &want.offsets);
    let bag_dest_buf = g.storage_from("bag dest", &want.bag_dest);
    let weights_buf = g.storage_from("weights", &weights);
    let digits = g.storage("digits", u32s(d * cap));
    let dest = g.storage("dest", u32s(cap));
    let scale = g.storage("scale", u32s(cap));
    let sorted = g.storage("sorted", u32s(d * cap));

    let mut gb = GraphBuilder::new(&g);
    record_route_digits(
        &mut gb,
        "digits".into(),
        d,
        case.tables.len(),
        false,
        ext(&route_buf),
        ext(&ids_buf),
        ext(&desc_buf),
        ext(&digits),
        cap,
    )
    .unwrap();
    record_route_bags(
        &mut gb,
        "bags".into(),
        ext(&route_buf),
        ext(&offsets_buf),
        ext(&bag_dest_buf),
        ext(&weights_buf),
        ext(&dest),
        ext(&scale),
        None,
        cap,
    )
    .unwrap();
    let mut outs = Vec::new();
    for k in 0..d {
        // As many slots as PieceLayout gives: every run may end in a partial piece.
        let sg = case
            .sg_len
            .map(|len| (len, case.chunk.div_ceil(len) + case.rows[k].min(case.chunk)));
        let layout = SortLayout::new(
            case.rows[k],
            k,
            case.chunk,
            chunks,
            CORE_GRAD_BLOCK,
            sg,
            strategy,
        );
        // The one-dispatch sort runs for cores of up to FUSED_SORT_MAX_ROWS rows.
        let fused = strategy == SortStrategy::Workgroup && case.rows[k] <= FUSED_SORT_MAX_ROWS;
        assert_eq!(layout.strategy == SortStrategy::Workgroup, fused);
        let bufs = SortBuffers {
            counts: ext(&g.storage("counts", u32s(layout.count_words()))),
            totals: ext(&g.storage("totals", u32s(layout.total_words()))),
            segments: ext(&g.storage("segments", u32s(layout.table_words()))),
            grad_pieces: Some(ext(&g.storage("grad pieces", u32s(layout.table_words())))),
            sg_starts: sg.map(|_| ext(&g.storage("sg starts", u32s(layout.table_words())))),
            sg_pieces: sg.map(|(len, per)| ext(&g.storage("sg pieces", u32s(chunks * per * len)))),
            sorted: ext(&sorted),
        };
        record_sort(
            &mut gb,
            &format!("sort {k}"),
            &layout,
            ext(&route_buf),
            ext(&digits),
            &bufs,
        )
        .unwrap();
        outs.push((layout, bufs));
    }
    let plan = gb.build().unwrap();
    // Twice: the second run must not see the first one's counts or pieces.
    plan.run().unwrap();
    plan.run().unwrap();

    let read = |b: &Buf, n: usize| match b {
        Buf::External(b) => g.read_u32(b, 0, n).unwrap(),
        _ => unreachable!(),
    };
    let got_digits = g.read_u32(&digits, 0, d * cap).unwrap();
    for k in 0..d {
        assert_eq!(
            &got_digits[k * cap..k * cap + nnz],
            &want.digits[k * cap..k * cap + nnz],
            "digits of core {k}"
        );
    }
    assert_eq!(
        g.read_u32(&dest, 0, nnz).unwrap(),
        &want.dest[..nnz],
        "destinations"
    );
    let got_scale = g.read_f32(&scale, 0, nnz).unwrap();
    for (i, (&a, &b)) in got_scale.iter().zip(&want.scale[..nnz]).enumerate() {
        assert!(
            (a - b).abs() <= 1e-7 * b.abs(),
            "scale of lookup {i}: {a} vs {b}"
        );
    }
    let got_sorted = g.read_u32(&sorted, 0, d * cap).unwrap();
    for (k, (layout, bufs)) in outs.iter().enumerate() {
        assert_eq!(
            &got_sorted[k * cap..k * cap + nnz],
            &want.sorted[k * cap..k * cap + nnz],
            "sorted lookups of core {k} ({strategy:?})"
        );
        let seg = read(&bufs.segments, layout.table_words());
        assert_eq!(seg, want.segments[k], "segments of core {k} ({strategy:?})");
        // Piece tables: each run's first piece, runs cut into pieces of a fixed length.
        let starts = |len: usize| -> Vec<u32> {
            let p = layout.rows;
            let mut out = Vec::new();
            for c in 0..chunks {
                let s = &want.segments[k][c * (p + 1)..(c + 1) * (p + 1)];
                let mut at = 0u32;
                for r in 0..p {
                    out.push(at);
                    at += (s[r + 1] - s[r]).div_ceil(len as u32);
                }
                out.push(at);
            }
            out
        };
        let grad = read(bufs.grad_pieces.as_ref().unwrap(), layout.table_words());
        assert_eq!(
            grad,
            starts(CORE_GRAD_BLOCK),
            "gradient pieces of core {k} ({strategy:?})"
        );
        let most = *grad.iter().max().unwrap() as usize;
        assert!(
            most <= GradPieces::slots(case.chunk, layout.rows),
            "piece slots of core {k}"
        );
        if let Some((len, per)) = layout.sg {
            let sg = read(bufs.sg_starts.as_ref().unwrap(), layout.table_words());
            assert_eq!(
                sg,
                starts(len),
                "subgroup piece starts of core {k} ({strategy:?})"
            );
            let pieces = read(bufs.sg_pieces.as_ref().unwrap(), chunks * per * len);
            let twin = cut_pieces(&want, k, layout.rows, cap, case.chunk, len, per);
            assert_eq!(pieces, twin, "subgroup pieces of core {k} ({strategy:?})");
        }
    }
}

#[test]
fn route_and_sort_one_table_several_chunks_sum_and_mean() {
    let shape = TtShape::new(5000, &[13, 11, 35], &[4, 4, 4], &[8, 8]).unwrap();
    let (tables, rows) = group(std::slice::from_ref(&shape));
    for (pooling, chunk, sg_len) in [
        (Pooling::Sum, 301, Some(4)),
        (Pooling::Mean, 64, None),
        (Pooling::Sum, 5000, Some(2)),
    ] {
        let (ids, off) = random_bags(1, &shape, 150, 1234);
        check(&Case {
            tables: tables.clone(),
            rows: rows.clone(),
            ids: vec![ids],
            offsets: vec![off],
            weights: None,
            pooling,
            chunk,
            sg_len,
        });
    }
}

#[test]
fn route_and_sort_a_group_with_weights() {
    let shapes = [
        TtShape::new(3000, &[10, 15, 20], &[2, 2, 2], &[4, 4]).unwrap(),
        TtShape::new(700, &[7, 10, 10], &[2, 2, 2], &[4, 4]).unwrap(),
        TtShape::new(40, &[2, 4, 5], &[2, 2, 2], &[4, 4]).unwrap(),
    ];
    let (tables, rows) = group(&shapes);
    let mut ids = Vec::new();
    let mut offsets = Vec::new();
    let mut weights = Vec::new();
    let mut r = rng(7);
    for (t, s) in shapes.iter().enumerate() {
        // The second table's batch has no lookups at all.
        let n = if t == 1 { 0 } else { 60 };
        let (i, o) = random_bags(10 + t as u64, s, n, 3);
        weights.push(values(&mut r, i.len()));
        ids.push(i);
        offsets.push(if n == 0 { vec![0] } else { o });
    }
    check(&Case {
        tables,
        rows,
        ids,
        offsets,
        weights: Some(weights),
        pooling: Pooling::Sum,
        chunk: 100,
        sg_len: Some(8),
    });
}

/// Ids up to 2^32 - 1 in a table of 2^32 rows (the most a TT table may have), and a core
/// with more rows than a u16 holds.
#[test]
fn route_digits_of_ids_up_to_2_pow_32() {
    for p in [[65536usize, 256, 256], [3, 70001, 5], [4096, 4096, 256]] {
        let n: u64 = p.iter().map(|&x| x as u64).product();
        let shape = TtShape::new(n, &p, &[2, 2, 2], &[2, 2]).unwrap();
        let (tables, rows) = group(std::slice::from_ref(&shape));
        let mut r = rng(3);
        let mut ids: Vec<i64> = (0..200).map(|_| r.random_range(0..n) as i64).collect();
        ids.extend([0, n as i64 - 1, n as i64 - 2, (n / 2) as i64]);
        let off = vec![0, 50, 50, ids.len() as i64];
        check(&Case {
            tables,
            rows,
            ids: vec![ids],
            offsets: vec![off],
            weights: None,
            pooling: Pooling::Mean,
            chunk: 128,
            sg_len: None,
        });
    }
}
