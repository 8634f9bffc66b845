//! A TT table's state at its edges, against the twin: `set_learning_rate`, `set_cores`,
//! `set_optimizer_state`, `TtParams::new_group`, and the Adagrad state of a `TtTableBatch` and
//! of a group through TT checkpoints.

mod common;

use common::tt_table::{options, table_part, TwinTable};
use common::*;
use ttrec::graph::{Buf, GraphBuilder};
use ttrec::tt::Placement;
use ttrec::tt::{
    Bags, Optimizer, Pooling, TtEmbeddingBag, TtInit, TtLookups, TtOptions, TtParams, TtShape,
    TtTableBatch,
};

const SGD: Optimizer = Optimizer::Sgd { lr: 0.1 };
const ADAGRAD: Optimizer = Optimizer::Adagrad { lr: 0.1, eps: 1e-8 };

/// `set_learning_rate` changes the rate and keeps the kind and eps; `set_cores` replaces the
/// cores and zeroes the Adagrad state; `set_optimizer_state` restores it: each checked by the
/// next step against the twin. Bad values are named errors that change nothing.
#[test]
fn setters_take_effect_at_the_next_step() {
    let g = gpu();
    let shape = TtShape::new(300, &[6, 7, 8], &[2, 3, 2], &[5, 6]).unwrap();
    let cores = random_cores(&shape, 16);
    let mut r = rng(17);
    let mut batch = || {
        let (idx, off) = bags(&mut r, 20, 5, 300);
        let dout = values(&mut r, 20 * shape.dim());
        (idx, off, dout)
    };
    // SGD: a new rate.
    let mut t =
        TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, options(SGD, Pooling::Sum, None))
            .unwrap();
    t.set_learning_rate(0.02);
    assert_eq!(t.options().optimizer, Optimizer::Sgd { lr: 0.02 });
    let mut tw = TwinTable::new(&shape, &cores);
    let (idx, off, dout) = batch();
    t.forward_backward(&Bags::new(&idx, &off), &dout).unwrap();
    let (_, grads) = tw.step(Optimizer::Sgd { lr: 0.02 }, Pooling::Sum, &idx, &off, &dout);
    tw.check(
        "SGD at 0.02",
        SGD,
        &grads,
        &t.grads().unwrap(),
        &t.cores().unwrap(),
        None,
    );
    // Adagrad: a new rate, eps kept.
    let eps = 0.5f32; // large, so that a lost eps shows
    let opt = Optimizer::Adagrad { lr: 0.1, eps };
    let mut t =
        TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, options(opt, Pooling::Sum, None))
            .unwrap();
    t.set_learning_rate(0.3);
    let now = Optimizer::Adagrad { lr: 0.3, eps };
    assert_eq!(t.options().optimizer, now);
    let mut tw = TwinTable::new(&shape, &cores);
    let (idx, off, dout) = batch();
    t.forward_backward(&Bags::new(&idx, &off), &dout).unwrap();
    let (_, grads) = tw.step(now, Pooling::Sum, &idx, &off, &dout);
    let state = t.optimizer_state().unwrap();
    tw.check(
        "Adagrad at 0.3",
        now,
        &grads,
        &t.grads().unwrap(),
        &t.cores().unwrap(),
        state.as_deref(),
    );
    // set_cores: new cores, state back to zero.
    let fresh = random_cores(&shape, 18);
    t.set_cores(&fresh).unwrap();
    assert_eq!(t.cores().unwrap(), fresh);
    let zero: Vec<Vec<f32>> = fresh.iter().map(|c| vec![0.0; c.len()]).collect();
    assert_eq!(
        t.optimizer_state().unwrap().unwrap(),
        zero,
        "state after set_cores"
    );
    let mut tw = TwinTable::new(&shape, &fresh);
    let (idx, off, dout) = batch();
    t.forward_backward(&Bags::new(&idx, &off), &dout).unwrap();
    let (_, grads) = tw.step(now, Pooling::Sum, &idx, &off, &dout);
    let state = t.optimizer_state().unwrap();
    tw.check(
        "after set_cores",
        now,
        &grads,
        &t.grads().unwrap(),
        &t.cores().unwrap(),
        state.as_deref(),
    );
    // set_optimizer_state: a given state is what the next step accumulates onto.
    let given: Vec<Vec<f32>> = zero
        .iter()
        .map(|s| {
            s.iter()
                .enumerate()
                .map(|(i, _)| 0.01 * (i % 7) as f32)
                .collect()
        })
        .collect();
    t.params_mut().set_optimizer_state(&given).unwrap();
    assert_eq!(
        t.optimizer_state().unwrap().unwrap(),
        given,
        "state after set_optimizer_state"
    );
    tw.state = given.clone();
    tw.cores = t.cores().unwrap();
    let (idx, off, dout) = batch();
    t.forward_backward(&Bags::new(&idx, &off), &dout).unwrap();
    let (_, grads) = tw.step(now, Pooling::Sum, &idx, &off, &dout);
    let state = t.optimizer_state().unwrap();
    tw.check(
        "after set_optimizer_state",
        now,
        &grads,
        &t.grads().unwrap(),
        &t.cores().unwrap(),
        state.as_deref(),
    );
    // Bad values: named errors, nothing changed.
    let (before_c, before_s) = (t.cores().unwrap(), t.optimizer_state().unwrap());
    let mut bad = given.clone();
    bad[1][4] = -1.0;
    let e = t
        .params_mut()
        .set_optimizer_state(&bad)
        .unwrap_err()
        .to_string();
    // Element 4 of core 1 is element 64 over all cores (core 0 has 60).
    assert!(e.contains("element 64") && e.contains(">= 0"), "{e}");
    bad[1][4] = f32::NAN;
    assert!(t.params_mut().set_optimizer_state(&bad).is_err());
    let mut short = given.clone();
    short[2].pop();
    let e = t
        .params_mut()
        .set_optimizer_state(&short)
        .unwrap_err()
        .to_string();
    assert!(e.contains("core 2"), "{e}");
    let mut nan = fresh.clone();
    nan[0][3] = f32::INFINITY;
    let e = t.set_cores(&nan).unwrap_err().to_string();
    assert!(e.contains("finite") && e.contains("element 3"), "{e}");
    assert_eq!(t.cores().unwrap(), before_c);
    assert_eq!(t.optimizer_state().unwrap(), before_s);
    let mut sgd =
        TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, options(SGD, Pooling::Sum, None))
            .unwrap();
    let e = sgd
        .params_mut()
        .set_optimizer_state(&given)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not Adagrad"), "{e}");
}

/// `TtParams::new_group` draws table t's cores as a table alone would from seed `seed + t`, and
/// the group computes each table's rows from them.
#[test]
fn new_group_draws_each_table_as_alone() {
    let g = gpu();
    let shapes = vec![
        TtShape::new(100, &[4, 5, 6], &[2, 2, 4], &[4, 8]).unwrap(),
        TtShape::new(60, &[3, 4, 5], &[2, 2, 4], &[4, 8]).unwrap(),
    ];
    for init in [TtInit::SampledGaussian, TtInit::Uniform] {
        let opts = TtOptions {
            init,
            seed: 40,
            ..TtOptions::default()
        };
        let group = TtParams::new_group(&g, shapes.clone(), opts.clone()).unwrap();
        assert_eq!(group.tables().len(), 2);
        for (t, s) in shapes.iter().enumerate() {
            let alone = TtParams::new(
                &g,
                s.clone(),
                TtOptions {
                    seed: 40 + t as u64,
                    ..opts.clone()
                },
            )
            .unwrap();
            let got = group.table_cores(t).unwrap();
            assert_eq!(got, alone.cores().unwrap(), "{init:?}: table {t}");
            assert!(got.iter().flatten().any(|&x| x != 0.0));
        }
        // Table 1 is not table 0's draw (the seeds differ per table).
        let same_seed = TtParams::new(&g, shapes[1].clone(), opts.clone()).unwrap();
        assert_ne!(group.table_cores(1).unwrap(), same_seed.cores().unwrap());
    }
}

/// One table's bags of a step: ids, offsets, output gradient `[8, 16]`.
type TableStep = (Vec<i64>, Vec<i64>, Vec<f32>);

/// Two tables of one group's factors, three steps of bags for them, and their twins after the
/// first two steps.
struct Setup {
    shapes: Vec<TtShape>,
    cores: Vec<Vec<Vec<f32>>>,
    /// Per step, per table.
    steps: Vec<Vec<TableStep>>,
    twins: Vec<TwinTable>,
}

fn setup() -> Setup {
    let shapes = vec![
        TtShape::new(100, &[4, 5, 6], &[2, 2, 4], &[4, 8]).unwrap(),
        TtShape::new(60, &[3, 4, 5], &[2, 2, 4], &[4, 8]).unwrap(),
    ];
    let cores: Vec<Vec<Vec<f32>>> = shapes
        .iter()
        .enumerate()
        .map(|(t, s)| random_cores(s, 80 + t as u64))
        .collect();
    let mut r = rng(81);
    let steps: Vec<Vec<_>> = (0..3)
        .map(|_| {
            shapes
                .iter()
                .map(|s| {
                    let (i, o) = bags(&mut r, 8, 4, s.num_embeddings);
                    (i, o, values(&mut r, 8 * 16))
                })
                .collect()
        })
        .collect();
    let mut twins: Vec<TwinTable> = shapes
        .iter()
        .zip(&cores)
        .map(|(s, c)| TwinTable::new(s, c))
        .collect();
    for this_step in &steps[..2] {
        for (tw, (i, o, d)) in twins.iter_mut().zip(this_step) {
            tw.step(ADAGRAD, Pooling::Sum, i, o, d);
        }
    }
    Setup {
        shapes,
        cores,
        steps,
        twins,
    }
}

/// Asserts a saved Adagrad state against the twin's.
fn assert_state(what: &str, state: &[Vec<f32>], twin: &TwinTable) {
    for (k, sk) in state.iter().enumerate() {
        assert_close(
            &format!("{what} core {k}"),
            sk,
            &to_f64(&twin.state[k]),
            1e-5,
            1e-9,
        );
    }
}

/// Adagrad state in checkpoints for a `TtTableBatch`: after two steps each table is saved and
/// loaded back; the saved state is the twin's, and a third step from the files is bitwise the
/// third step without them.
#[test]
fn adagrad_state_of_a_table_batch_survives_checkpoints() {
    use ttrec::tt::checkpoint;
    let g = gpu();
    let dir = temp_dir("edges-tt-batch-ckpt");
    let Setup {
        shapes,
        cores,
        steps,
        twins,
    } = setup();
    let opts = options(ADAGRAD, Pooling::Sum, None);
    let tables = shapes
        .iter()
        .zip(&cores)
        .map(|(s, c)| TtEmbeddingBag::from_cores(&g, s.clone(), c, opts.clone()).unwrap())
        .collect();
    let mut batch = TtTableBatch::new(tables).unwrap();
    let step = |batch: &mut TtTableBatch, s: usize| {
        let all: Vec<Bags> = steps[s].iter().map(|(i, o, _)| Bags::new(i, o)).collect();
        let douts: Vec<&[f32]> = steps[s].iter().map(|(_, _, d)| &d[..]).collect();
        batch.forward_backward(&all, &douts).unwrap();
    };
    step(&mut batch, 0);
    step(&mut batch, 1);
    let mut loaded = Vec::new();
    for (t, table) in batch.tables().iter().enumerate() {
        let path = dir.join(format!("batch-{t}.safetensors"));
        table.save(&path).unwrap();
        let ck = checkpoint::load(&path).unwrap();
        let state = ck.adagrad_state.as_ref().expect("the file holds the state");
        assert_state(&format!("saved state of table {t}"), state, &twins[t]);
        loaded.push(TtEmbeddingBag::load(&g, &path, opts.clone()).unwrap());
    }
    let mut resumed = TtTableBatch::new(loaded).unwrap();
    step(&mut batch, 2);
    step(&mut resumed, 2);
    for t in 0..2 {
        let (a, b) = (&batch.tables()[t], &resumed.tables()[t]);
        assert_eq!(a.cores().unwrap(), b.cores().unwrap(), "batch table {t}");
        assert_eq!(
            a.optimizer_state().unwrap(),
            b.optimizer_state().unwrap(),
            "batch table {t} state"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Adagrad state in checkpoints for a group (tables stored as one, shared dispatches): each
/// table's part of the cores and state saved as a TT checkpoint; the saved state is the twin's,
/// and a group rebuilt from the files takes a third step bitwise like the original.
#[test]
fn adagrad_state_of_a_group_survives_checkpoints() {
    use ttrec::tt::checkpoint::{self, TtCheckpoint};
    let g = gpu();
    let dir = temp_dir("edges-tt-group-ckpt");
    let Setup {
        shapes,
        cores,
        steps,
        twins,
    } = setup();
    let opts = options(ADAGRAD, Pooling::Sum, None);
    let (b, d) = (8usize, 16usize);
    let run_group = |params: &TtParams, s: usize| {
        let out = g.storage("out", (b * 2 * d * 4) as u64);
        let mut dout = vec![0f32; b * 2 * d];
        for (t, (_, _, dt)) in steps[s].iter().enumerate() {
            for i in 0..b {
                dout[i * 2 * d + t * d..][..d].copy_from_slice(&dt[i * d..][..d]);
            }
        }
        let dout_buf = g.storage_from("dout", &dout);
        let mut gb = GraphBuilder::new(&g);
        let lk = TtLookups::declare(&mut gb, params, 64, 2 * b, "group");
        lk.record_forward_backward(
            &mut gb,
            params,
            &Buf::from(&out),
            &Buf::from(&dout_buf),
            true,
        )
        .unwrap();
        let plan = gb.build().unwrap();
        let mut input = plan.new_input();
        let all: Vec<Bags> = steps[s].iter().map(|(i, o, _)| Bags::new(i, o)).collect();
        let place = Placement {
            col: vec![0, d],
            stride: vec![2 * d; 2],
        };
        lk.fill(&mut input, params, &all, &place, Pooling::Sum)
            .unwrap();
        plan.run_with(&input).unwrap();
        g.wait().unwrap();
    };
    let group = TtParams::group_from_cores(&g, shapes.clone(), &cores, opts.clone()).unwrap();
    run_group(&group, 0);
    run_group(&group, 1);
    let state = group.optimizer_state().unwrap().expect("Adagrad state");
    let mut files = Vec::new();
    for (t, s) in shapes.iter().enumerate() {
        let ck = TtCheckpoint {
            shape: s.clone(),
            cores: group.table_cores(t).unwrap(),
            adagrad_state: Some(table_part(&group, &state, t)),
        };
        assert_state(
            &format!("group state of table {t}"),
            ck.adagrad_state.as_ref().unwrap(),
            &twins[t],
        );
        let path = dir.join(format!("group-{t}.safetensors"));
        checkpoint::save(&path, &ck).unwrap();
        files.push(checkpoint::load(&path).unwrap());
    }
    let group_cores: Vec<Vec<Vec<f32>>> = files.iter().map(|f| f.cores.clone()).collect();
    let mut back = TtParams::group_from_cores(&g, shapes.clone(), &group_cores, opts).unwrap();
    // The group's state, core k: every table's rows in order.
    let whole: Vec<Vec<f32>> = (0..3)
        .map(|k| {
            files
                .iter()
                .flat_map(|f| f.adagrad_state.as_ref().unwrap()[k].clone())
                .collect()
        })
        .collect();
    back.set_optimizer_state(&whole).unwrap();
    run_group(&group, 2);
    run_group(&back, 2);
    assert_eq!(group.cores().unwrap(), back.cores().unwrap(), "group cores");
    assert_eq!(
        group.optimizer_state().unwrap(),
        back.optimizer_state().unwrap(),
        "group state"
    );
    std::fs::remove_dir_all(&dir).ok();
}
