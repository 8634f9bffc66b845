//! TT tables at their edges, against the twin (f64): several chunks with SGD and Adagrad for a
//! table, a group and a `TtTableBatch`; a batch with no lookups at all; i64 ids >= 2^31 on a
//! table of nearly 2^32 rows; several steps in one app encoder with the app's own commands
//! between them; the buffer-usage errors of the GPU-resident calls. (The setters and
//! checkpoints of Adagrad state: tests/edges_tt_state.rs.)

mod common;

use common::tt_table::{options, table_part, TwinTable};
use common::*;
use ttrec::graph::{Buf, GraphBuilder};
use ttrec::tt::Placement;
use ttrec::tt::{
    Bags, Optimizer, Pooling, TtEmbeddingBag, TtLookups, TtParams, TtShape, TtTableBatch,
};

const SGD: Optimizer = Optimizer::Sgd { lr: 0.1 };
const ADAGRAD: Optimizer = Optimizer::Adagrad { lr: 0.1, eps: 1e-8 };

/// A table in chunks of 7 lookups (bags split across chunks, the update a separate pass)
/// trains like the twin's SGD and Adagrad: outputs, gradients, cores and state, two steps.
#[test]
fn chunked_table_trains_like_the_twin() {
    let g = gpu();
    let shape = TtShape::new(300, &[6, 7, 8], &[2, 3, 2], &[5, 6]).unwrap();
    let cores = random_cores(&shape, 3);
    for (opt, pooling) in [(SGD, Pooling::Mean), (ADAGRAD, Pooling::Sum)] {
        let mut t =
            TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, options(opt, pooling, Some(7)))
                .unwrap();
        let mut tw = TwinTable::new(&shape, &cores);
        let mut r = rng(4);
        for step in 0..2 {
            let (idx, off) = bags(&mut r, 40, 9, 300);
            assert!(idx.len() > 10 * 7, "several chunks");
            let dout = values(&mut r, 40 * shape.dim());
            let out = t.forward_backward(&Bags::new(&idx, &off), &dout).unwrap();
            let (want, grads) = tw.step(opt, pooling, &idx, &off, &dout);
            let what = format!("{opt:?} {pooling:?} step {step}");
            assert_close(&format!("{what}: forward"), &out, &want, 1e-5, 1e-6);
            let state = t.optimizer_state().unwrap();
            tw.check(
                &what,
                opt,
                &grads,
                &t.grads().unwrap(),
                &t.cores().unwrap(),
                state.as_deref(),
            );
        }
    }
}

/// Three tables stored as one group, run in chunks of 11 lookups of the whole group (chunks
/// span tables): two steps with SGD and with Adagrad against each table's twin.
#[test]
fn chunked_group_trains_like_the_twin() {
    let g = gpu();
    let shapes = vec![
        TtShape::new(100, &[4, 5, 6], &[2, 2, 4], &[4, 8]).unwrap(),
        TtShape::new(60, &[3, 4, 5], &[2, 2, 4], &[4, 8]).unwrap(),
        TtShape::new(500, &[7, 8, 9], &[2, 2, 4], &[4, 8]).unwrap(),
    ];
    let cores: Vec<Vec<Vec<f32>>> = shapes
        .iter()
        .enumerate()
        .map(|(t, s)| random_cores(s, 60 + t as u64))
        .collect();
    let (b, d) = (12usize, 16usize);
    let stride = 3 * d;
    for opt in [SGD, ADAGRAD] {
        let params = TtParams::group_from_cores(
            &g,
            shapes.clone(),
            &cores,
            options(opt, Pooling::Sum, Some(11)),
        )
        .unwrap();
        let mut twins: Vec<TwinTable> = shapes
            .iter()
            .zip(&cores)
            .map(|(s, c)| TwinTable::new(s, c))
            .collect();
        let out = g.storage("out", (b * stride * 4) as u64);
        let dout_buf = g.storage("dout", (b * stride * 4) as u64);
        let mut gb = GraphBuilder::new(&g);
        let lk = TtLookups::declare(&mut gb, &params, 3 * b * 5, 3 * b, "group");
        let saved = lk
            .record_forward(&mut gb, &params, &Buf::from(&out))
            .unwrap();
        lk.record_backward(&mut gb, &params, &Buf::from(&dout_buf), Some(saved), true)
            .unwrap();
        let plan = gb.build().unwrap();
        let mut input = plan.new_input();
        let place = Placement {
            col: vec![0, d, 2 * d],
            stride: vec![stride; 3],
        };
        let mut r = rng(61);
        for step in 0..2 {
            let batches: Vec<(Vec<i64>, Vec<i64>)> = shapes
                .iter()
                .map(|s| bags(&mut r, b, 5, s.num_embeddings))
                .collect();
            let nnz: usize = batches.iter().map(|(i, _)| i.len()).sum();
            assert!(nnz > 2 * 11, "several chunks: {nnz} lookups");
            let dout = values(&mut r, b * stride);
            g.write(&dout_buf, &dout);
            let list: Vec<Bags> = batches.iter().map(|(i, o)| Bags::new(i, o)).collect();
            lk.fill(&mut input, &params, &list, &place, Pooling::Sum)
                .unwrap();
            plan.run_with(&input).unwrap();
            let got = g.read_f32(&out, 0, b * stride).unwrap();
            let state = params.optimizer_state().unwrap();
            for (t, tw) in twins.iter_mut().enumerate() {
                let part = |v: &[f32]| -> Vec<f32> {
                    (0..b)
                        .flat_map(|i| v[i * stride + t * d..][..d].to_vec())
                        .collect()
                };
                let (idx, off) = &batches[t];
                let (want, grads) = tw.step(opt, Pooling::Sum, idx, off, &part(&dout));
                let what = format!("{opt:?} group table {t} step {step}");
                assert_close(&format!("{what}: forward"), &part(&got), &want, 1e-5, 1e-6);
                let st = state.as_ref().map(|s| table_part(&params, s, t));
                tw.check(
                    &what,
                    opt,
                    &grads,
                    &params.table_grads(t).unwrap(),
                    &params.table_cores(t).unwrap(),
                    st.as_deref(),
                );
            }
        }
        assert!(lk.chunks() > 1, "the plan has {} chunk(s)", lk.chunks());
    }
}

/// Three tables of different shapes in one `TtTableBatch`, each in chunks of 5 lookups: two
/// steps with SGD and with Adagrad against the twin.
#[test]
fn chunked_table_batch_trains_like_the_twin() {
    let g = gpu();
    let shapes = [
        TtShape::new(1000, &[10, 10, 10], &[2, 2, 4], &[8, 8]).unwrap(),
        TtShape::new(90, &[9, 11], &[4, 4], &[6]).unwrap(),
        TtShape::new(100, &[4, 5, 6], &[3, 1, 2], &[5, 7]).unwrap(),
    ];
    let cores: Vec<_> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| random_cores(s, 70 + i as u64))
        .collect();
    for opt in [SGD, ADAGRAD] {
        let tables = shapes
            .iter()
            .zip(&cores)
            .map(|(s, c)| {
                TtEmbeddingBag::from_cores(&g, s.clone(), c, options(opt, Pooling::Sum, Some(5)))
                    .unwrap()
            })
            .collect();
        let mut batch = TtTableBatch::new(tables).unwrap();
        let mut twins: Vec<TwinTable> = shapes
            .iter()
            .zip(&cores)
            .map(|(s, c)| TwinTable::new(s, c))
            .collect();
        let mut r = rng(71);
        for step in 0..2 {
            let data: Vec<_> = shapes
                .iter()
                .map(|s| bags(&mut r, 15, 5, s.num_embeddings))
                .collect();
            let douts: Vec<Vec<f32>> = shapes
                .iter()
                .map(|s| values(&mut r, 15 * s.dim()))
                .collect();
            let all: Vec<Bags> = data.iter().map(|(i, o)| Bags::new(i, o)).collect();
            let dref: Vec<&[f32]> = douts.iter().map(|d| &d[..]).collect();
            let outs = batch.forward_backward(&all, &dref).unwrap();
            for (t, tw) in twins.iter_mut().enumerate() {
                let (want, grads) = tw.step(opt, Pooling::Sum, &data[t].0, &data[t].1, &douts[t]);
                let what = format!("{opt:?} batch table {t} step {step}");
                assert!(data[t].0.len() > 2 * 5, "{what}: several chunks");
                assert_close(&format!("{what}: forward"), &outs[t], &want, 1e-5, 1e-6);
                let table = &batch.tables()[t];
                let state = table.optimizer_state().unwrap();
                tw.check(
                    &what,
                    opt,
                    &grads,
                    &table.grads().unwrap(),
                    &table.cores().unwrap(),
                    state.as_deref(),
                );
            }
        }
    }
}

/// A batch with no lookups at all (bags, but every one empty; or no bags): zero rows, zero
/// gradients, cores and Adagrad state untouched; in a `TtTableBatch` next to a table with
/// lookups, that table gives what it gives alone.
#[test]
fn a_batch_with_no_lookups_at_all() {
    let g = gpu();
    let shape = TtShape::new(120, &[4, 5, 6], &[2, 2, 2], &[3, 4]).unwrap();
    let cores = random_cores(&shape, 8);
    let none: Vec<i64> = vec![];
    let empty_bags: Vec<i64> = vec![0, 0, 0];
    for opt in [SGD, ADAGRAD] {
        let mut t = TtEmbeddingBag::from_cores(
            &g,
            shape.clone(),
            &cores,
            options(opt, Pooling::Mean, None),
        )
        .unwrap();
        // A real step first, so that state and gradients are not zero before the empty one.
        let mut r = rng(9);
        let (idx, off) = bags(&mut r, 6, 4, 120);
        let dout = values(&mut r, 6 * 8);
        t.forward_backward(&Bags::new(&idx, &off), &dout).unwrap();
        let (cores1, state1) = (t.cores().unwrap(), t.optimizer_state().unwrap());
        let b = Bags::new(&none, &empty_bags);
        let out = t.forward_backward(&b, &[0.5; 16]).unwrap();
        assert_eq!(out, vec![0.0; 16], "{opt:?}: empty bags pool to zero");
        assert_eq!(t.forward(&b).unwrap(), vec![0.0; 16]);
        t.backward(&b, &[0.25; 16]).unwrap();
        assert_eq!(t.cores().unwrap(), cores1, "{opt:?}: cores moved");
        assert_eq!(t.optimizer_state().unwrap(), state1, "{opt:?}: state moved");
        for (k, gk) in t.grads().unwrap().iter().enumerate() {
            assert!(
                gk.iter().all(|&x| x == 0.0),
                "{opt:?}: gradient {k} of no lookups"
            );
        }
        let zero = [0i64];
        let out = t.forward(&Bags::new(&none, &zero[..])).unwrap();
        assert!(out.is_empty(), "no bags, no rows");
        t.backward(&Bags::new(&none, &zero[..]), &[]).unwrap();
        assert_eq!(t.cores().unwrap(), cores1, "{opt:?}: cores moved (no bags)");
    }
    // In a batch of tables.
    let other = TtShape::new(90, &[9, 11], &[4, 4], &[6]).unwrap();
    let other_cores = random_cores(&other, 10);
    let make = |s: &TtShape, c: &[Vec<f32>]| {
        TtEmbeddingBag::from_cores(&g, s.clone(), c, options(ADAGRAD, Pooling::Sum, None)).unwrap()
    };
    let mut batch =
        TtTableBatch::new(vec![make(&shape, &cores), make(&other, &other_cores)]).unwrap();
    let mut alone = make(&other, &other_cores);
    let mut r = rng(11);
    let (idx, off) = bags(&mut r, 3, 4, 90);
    let dout = values(&mut r, 3 * 16);
    let all = [Bags::new(&none, &empty_bags), Bags::new(&idx, &off)];
    let outs = batch.forward_backward(&all, &[&[1.0; 16], &dout]).unwrap();
    assert_eq!(outs[0], vec![0.0; 16]);
    assert_eq!(outs[1], alone.forward_backward(&all[1], &dout).unwrap());
    assert_eq!(
        batch.tables()[0].cores().unwrap(),
        cores,
        "empty table moved"
    );
    assert_eq!(batch.tables()[1].cores().unwrap(), alone.cores().unwrap());
}

/// A table of 4,294,967,000 rows (just under 2^32; p = 2^11 x 2^11 x 2^10) with i64 ids from
/// 2^31 up to its last row: forward, gradients and the Adagrad step against the twin; the first
/// id past the end is a named error.
#[test]
fn ids_above_2_pow_31_on_a_table_of_nearly_2_pow_32_rows() {
    let g = gpu();
    let n: u64 = 4_294_967_000;
    let shape = TtShape::new(n, &[2048, 2048, 1024], &[2, 2, 4], &[4, 4]).unwrap();
    let cores = random_cores(&shape, 12);
    let mut t = TtEmbeddingBag::from_cores(
        &g,
        shape.clone(),
        &cores,
        options(ADAGRAD, Pooling::Sum, None),
    )
    .unwrap();
    let mut r = rng(13);
    let mut idx: Vec<i64> = vec![
        1 << 31,
        (1 << 31) + 1,
        (1 << 32) - 297, // n - 1
        3_000_000_000,
        0,
        123_456_789,
        (1 << 31) - 1,
        4_000_000_000,
    ];
    for _ in 0..40 {
        idx.push(rand::Rng::random_range(&mut r, (1i64 << 31)..n as i64));
    }
    assert_eq!(idx[2] as u64, n - 1);
    let off: Vec<i64> = (0..=12).map(|b| b * 4).collect();
    let dout = values(&mut r, 12 * shape.dim());
    let mut tw = TwinTable::new(&shape, &cores);
    let out = t.forward_backward(&Bags::new(&idx, &off), &dout).unwrap();
    let (want, grads) = tw.step(ADAGRAD, Pooling::Sum, &idx, &off, &dout);
    assert_close("rows of ids >= 2^31", &out, &want, 1e-5, 1e-6);
    let state = t.optimizer_state().unwrap();
    tw.check(
        "ids >= 2^31",
        ADAGRAD,
        &grads,
        &t.grads().unwrap(),
        &t.cores().unwrap(),
        state.as_deref(),
    );
    // Row digits of the largest id reach the last rows of the cores.
    assert_eq!(shape.digits(n - 1), vec![2047, 2047, 727]);
    let past = [n as i64];
    let e = t
        .forward(&Bags::new(&past[..], &[0i64, 1][..]))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("index {n}")), "{e}");
}

/// GPU-resident training as an app does it: three steps (forward_into, the app's own copy of
/// the rows and its own write of the gradient, backward_from) recorded into one encoder and
/// submitted once give, step by step, what the host calls give.
#[test]
fn several_steps_in_one_app_encoder_with_app_commands_between() {
    let g = gpu();
    let shape = TtShape::new(1000, &[10, 10, 10], &[4, 4, 4], &[16, 16]).unwrap();
    let cores = random_cores(&shape, 14);
    let opts = options(ADAGRAD, Pooling::Sum, None);
    let mut host = TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, opts.clone()).unwrap();
    let mut dev = TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, opts).unwrap();
    let (b, dim) = (10usize, shape.dim());
    let bytes = (b * dim * 4) as u64;
    let mut r = rng(15);
    let steps: Vec<_> = (0..3)
        .map(|_| {
            let (idx, off) = bags(&mut r, b, 4, 1000);
            // Hot row 7 in every step: each step's rows depend on the previous update.
            let idx: Vec<i64> = idx
                .iter()
                .enumerate()
                .map(|(i, &v)| if i % 3 == 0 { 7 } else { v })
                .collect();
            (idx, off, values(&mut r, b * dim))
        })
        .collect();
    let want: Vec<Vec<f32>> = steps
        .iter()
        .map(|(idx, off, dout)| host.forward_backward(&Bags::new(idx, off), dout).unwrap())
        .collect();
    let rows = g.storage("app rows", bytes);
    let grad = g.storage("app grad", bytes);
    let kept: Vec<wgpu::Buffer> = (0..3)
        .map(|s| g.storage(&format!("app copy {s}"), bytes))
        .collect();
    let sources: Vec<wgpu::Buffer> = steps
        .iter()
        .map(|(_, _, dout)| g.storage_from("app gradient source", dout))
        .collect();
    let mut enc = g.device().create_command_encoder(&Default::default());
    for (s, (idx, off, _)) in steps.iter().enumerate() {
        let bags_ = Bags::new(idx, off);
        dev.forward_into(&bags_, &rows, &mut enc).unwrap();
        // The app's own commands: keep this step's rows, clear the gradient buffer, then write
        // this step's gradient into it.
        enc.copy_buffer_to_buffer(&rows, 0, &kept[s], 0, bytes);
        enc.clear_buffer(&grad, 0, None);
        enc.copy_buffer_to_buffer(&sources[s], 0, &grad, 0, bytes);
        dev.backward_from(&bags_, &grad, &mut enc).unwrap();
    }
    g.queue().submit([enc.finish()]);
    for (s, w) in want.iter().enumerate() {
        let got = g.read_f32(&kept[s], 0, b * dim).unwrap();
        assert_eq!(bits(&got), bits(w), "rows of step {s}");
    }
    assert_eq!(dev.cores().unwrap(), host.cores().unwrap(), "cores");
    assert_eq!(
        dev.optimizer_state().unwrap(),
        host.optimizer_state().unwrap(),
        "Adagrad state"
    );
}

/// The GPU-resident calls name a buffer without the usage their copy needs (COPY_DST for the
/// rows, COPY_SRC for the gradient), and one too small; nothing is encoded.
#[test]
fn gpu_resident_calls_name_missing_buffer_usages() {
    let g = gpu();
    let shape = TtShape::new(90, &[9, 11], &[4, 4], &[6]).unwrap();
    let mut t = TtEmbeddingBag::new(&g, shape, options(SGD, Pooling::Sum, None)).unwrap();
    let idx = [3i64, 80];
    let off = [0i64, 1, 2];
    let b = Bags::new(&idx[..], &off[..]);
    let bytes = 2 * 16 * 4;
    let buffer = |usage| {
        g.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("app buffer"),
            size: bytes,
            usage,
            mapped_at_creation: false,
        })
    };
    use wgpu::BufferUsages as U;
    let mut enc = g.device().create_command_encoder(&Default::default());
    let e = t
        .forward_into(&b, &buffer(U::STORAGE | U::COPY_SRC), &mut enc)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("out buffer lacks usage") && e.contains("COPY_DST"),
        "{e}"
    );
    let e = t
        .backward_from(&b, &buffer(U::STORAGE | U::COPY_DST), &mut enc)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("grad_output buffer lacks usage") && e.contains("COPY_SRC"),
        "{e}"
    );
    let small = g.storage("small", 16);
    let e = t
        .backward_from(&b, &small, &mut enc)
        .unwrap_err()
        .to_string();
    assert!(e.contains("grad_output buffer has 16 bytes"), "{e}");
    // With the usages, the same calls work (and encoded nothing before).
    let ok = buffer(U::STORAGE | U::COPY_DST | U::COPY_SRC);
    t.forward_into(&b, &ok, &mut enc).unwrap();
    t.backward_from(&b, &ok, &mut enc).unwrap();
    g.queue().submit([enc.finish()]);
    g.wait().unwrap();
}
