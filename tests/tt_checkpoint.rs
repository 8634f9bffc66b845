//! TT checkpoints: the Adagrad state survives a save and load (training on is bitwise what it
//! would have been without the save), older cores-only files still load, and a reference
//! (FBTT-Embedding) state dict in its `[T, p, R q R]` layout, written here with the safetensors
//! crate, loads and gives the rows of the cores it holds.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use ttrec::tt::checkpoint::{self, TtCheckpoint};
use ttrec::tt::{Bags, Optimizer, Pooling, TtEmbeddingBag, TtOptions, TtShape};
use ttrec::twin::tt as reference;

fn adagrad() -> TtOptions {
    TtOptions {
        optimizer: Optimizer::Adagrad {
            lr: 0.05,
            eps: 1e-8,
        },
        ..TtOptions::default()
    }
}

/// `steps` training steps on random bags drawn from `seed`.
fn train(t: &mut TtEmbeddingBag, seed: u64, steps: usize) {
    let mut r = rng(seed);
    let n = t.shape().num_embeddings;
    let dim = t.shape().dim();
    for _ in 0..steps {
        let (idx, off) = bags(&mut r, 24, 5, n);
        let dout = values(&mut r, 24 * dim);
        t.forward_backward(&Bags::new(&idx, &off), &dout).unwrap();
    }
}

fn u64s(v: &[i64]) -> Vec<u64> {
    v.iter().map(|&x| x as u64).collect()
}

#[test]
fn adagrad_state_round_trips_and_training_continues_bitwise() {
    let g = gpu();
    let dir = temp_dir("tt-ckpt-adagrad");
    let shape = TtShape::new(300, &[6, 7, 8], &[2, 3, 2], &[5, 4]).unwrap();
    let cores = random_cores(&shape, 1);
    let mut a = TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, adagrad()).unwrap();
    train(&mut a, 2, 3);
    let path = dir.join("table.safetensors");
    a.save(&path).unwrap();
    let saved = checkpoint::load(&path).unwrap();
    let state = saved
        .adagrad_state
        .clone()
        .expect("an Adagrad table saves its state");
    assert_eq!(saved.shape, shape);
    assert_eq!(saved.cores, a.cores().unwrap());
    assert_eq!(Some(state.clone()), a.optimizer_state().unwrap());
    assert!(
        state.iter().flatten().any(|&s| s > 0.0),
        "3 steps leave state"
    );

    let mut b = TtEmbeddingBag::load(&g, &path, adagrad()).unwrap();
    assert_eq!(b.optimizer_state().unwrap(), Some(state));
    train(&mut a, 3, 3);
    train(&mut b, 3, 3);
    assert_eq!(b.cores().unwrap(), a.cores().unwrap());
    assert_eq!(b.optimizer_state().unwrap(), a.optimizer_state().unwrap());

    // Without the state (a cores-only file) training on differs: the state is what matters.
    let v1 = dir.join("cores-only.safetensors");
    checkpoint::save_cores(&v1, &saved.shape, &saved.cores).unwrap();
    assert_eq!(checkpoint::load(&v1).unwrap().adagrad_state, None);
    let mut c = TtEmbeddingBag::load(&g, &v1, adagrad()).unwrap();
    assert!(c
        .optimizer_state()
        .unwrap()
        .unwrap()
        .iter()
        .flatten()
        .all(|&s| s == 0.0));
    let mut a2 = TtEmbeddingBag::load(&g, &path, adagrad()).unwrap();
    train(&mut a2, 3, 3);
    train(&mut c, 3, 3);
    assert_ne!(c.cores().unwrap(), a2.cores().unwrap());

    // A table with another optimizer ignores the state; SGD tables save none.
    let sgd = TtOptions {
        optimizer: Optimizer::Sgd { lr: 0.1 },
        ..TtOptions::default()
    };
    let s = TtEmbeddingBag::load(&g, &path, sgd.clone()).unwrap();
    assert_eq!(s.cores().unwrap(), saved.cores);
    let sgd_path = dir.join("sgd.safetensors");
    s.save(&sgd_path).unwrap();
    assert_eq!(checkpoint::load(&sgd_path).unwrap().adagrad_state, None);
    std::fs::remove_dir_all(&dir).ok();
}

/// Writes `tensors` (name, dtype, shape, little-endian bytes) with `metadata`.
fn write_raw(
    path: &Path,
    tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)],
    metadata: Option<HashMap<String, String>>,
) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, dt, s, b)| (n.clone(), TensorView::new(*dt, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, metadata).unwrap()).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn older_and_foreign_checkpoint_files() {
    let dir = temp_dir("tt-ckpt-formats");
    let shape = TtShape::new(50, &[5, 10], &[4, 2], &[3]).unwrap();
    let cores = random_cores(&shape, 4);
    let state: Vec<Vec<f32>> = random_cores(&shape, 5)
        .into_iter()
        .map(|c| c.into_iter().map(f32::abs).collect())
        .collect();
    let shape_meta = [
        ("num_embeddings", "50"),
        ("p_shapes", "5,10"),
        ("q_shapes", "4,2"),
        ("tt_ranks", "3"),
    ];
    let core_tensors = |names: &dyn Fn(usize) -> String, data: &[Vec<f32>]| {
        (0..2)
            .map(|k| {
                (
                    names(k),
                    Dtype::F32,
                    shape.core_shape(k).to_vec(),
                    f32_bytes(&data[k]),
                )
            })
            .collect::<Vec<_>>()
    };
    // A file of the first format (as ttrec 0.1 wrote it): cores only.
    let v1 = dir.join("v1.safetensors");
    let mut m = meta(&shape_meta);
    m.insert("format".into(), "ttrec-tt-cores-v1".into());
    write_raw(
        &v1,
        &core_tensors(&|k| format!("tt_cores.{k}"), &cores),
        Some(m.clone()),
    );
    let ck = checkpoint::load(&v1).unwrap();
    assert_eq!(
        (ck.shape.clone(), ck.cores.clone(), ck.adagrad_state),
        (shape.clone(), cores.clone(), None)
    );
    // No format key (a PyTorch user's file in the same layout), with state.
    let plain = dir.join("plain.safetensors");
    let mut t = core_tensors(&|k| format!("tt_cores.{k}"), &cores);
    t.extend(core_tensors(&checkpoint::state_name, &state));
    write_raw(&plain, &t, Some(meta(&shape_meta)));
    let ck = checkpoint::load(&plain).unwrap();
    assert_eq!(ck.adagrad_state.as_ref(), Some(&state));
    let table = TtEmbeddingBag::load(&gpu(), &plain, adagrad()).unwrap();
    assert_eq!(table.optimizer_state().unwrap(), Some(state.clone()));
    // A later format is refused by name.
    let v9 = dir.join("v9.safetensors");
    let mut m9 = m.clone();
    m9.insert("format".into(), "ttrec-tt-cores-v9".into());
    write_raw(
        &v9,
        &core_tensors(&|k| format!("tt_cores.{k}"), &cores),
        Some(m9),
    );
    let e = checkpoint::load(&v9).unwrap_err().to_string();
    assert!(
        e.contains("v9.safetensors") && e.contains("\"ttrec-tt-cores-v9\""),
        "{e}"
    );
    // Half the state: the missing tensor is named.
    let half = dir.join("half.safetensors");
    let mut t = core_tensors(&|k| format!("tt_cores.{k}"), &cores);
    t.push(core_tensors(&checkpoint::state_name, &state).remove(0));
    write_raw(&half, &t, Some(m.clone()));
    let e = checkpoint::load(&half).unwrap_err().to_string();
    assert!(
        e.contains("optimizer_state.optimizer_state1 is missing"),
        "{e}"
    );
    // State of the wrong shape, and negative state, are named too.
    let bad = dir.join("bad.safetensors");
    let mut t = core_tensors(&|k| format!("tt_cores.{k}"), &cores);
    let mut st = core_tensors(&checkpoint::state_name, &state);
    st[1].2 = vec![shape.core_len(1)];
    t.extend(st);
    write_raw(&bad, &t, Some(m.clone()));
    let e = checkpoint::load(&bad).unwrap_err().to_string();
    assert!(
        e.contains("optimizer_state.optimizer_state1 has shape [60]"),
        "{e}"
    );
    let neg = dir.join("neg.safetensors");
    let mut negative = state.clone();
    negative[0][3] = -1.0;
    let mut t = core_tensors(&|k| format!("tt_cores.{k}"), &cores);
    t.extend(core_tensors(&checkpoint::state_name, &negative));
    write_raw(&neg, &t, Some(m));
    let e = TtEmbeddingBag::load(&gpu(), &neg, adagrad())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("neg.safetensors") && e.contains("element 3"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

type Raw = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;
/// One table's cores and Adagrad state.
type Table = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// A reference state dict: `{prefix}tt_cores.K` `[T, p_k, R_k q_k R_{k+1}]`, the Adagrad
/// buffers, the strides `L` and the (empty) row-cache buffers, plus another module's tensor.
fn reference_state_dict(prefix: &str, shape: &TtShape, tables: &[Table]) -> Raw {
    let d = shape.d();
    let t = tables.len();
    let mut tensors = vec![(
        "bot_l.0.weight".to_string(),
        Dtype::F32,
        vec![2, 2],
        f32_bytes(&[1.0, 2.0, 3.0, 4.0]),
    )];
    for k in 0..d {
        let [p, cols] = shape.core_shape(k);
        let cores: Vec<f32> = tables.iter().flat_map(|(c, _)| c[k].clone()).collect();
        let state: Vec<f32> = tables.iter().flat_map(|(_, s)| s[k].clone()).collect();
        tensors.push((
            format!("{prefix}tt_cores.{k}"),
            Dtype::F32,
            vec![t, p, cols],
            f32_bytes(&cores),
        ));
        tensors.push((
            format!("{prefix}optimizer_state.optimizer_state{k}"),
            Dtype::F32,
            vec![t, p, cols],
            f32_bytes(&state),
        ));
    }
    let l: Vec<i64> = (0..d)
        .map(|k| shape.p[k + 1..].iter().product::<usize>() as i64)
        .collect();
    tensors.push((
        format!("{prefix}L"),
        Dtype::I64,
        vec![d],
        l.iter().flat_map(|x| x.to_le_bytes()).collect(),
    ));
    tensors.push((format!("{prefix}hashtbl"), Dtype::I64, vec![0], vec![]));
    tensors.push((format!("{prefix}cache_state"), Dtype::I32, vec![0], vec![]));
    tensors
}

#[test]
fn a_reference_state_dict_loads_and_gives_its_rows() {
    let g = gpu();
    let dir = temp_dir("tt-ckpt-reference");
    // A TTEmbeddingBag(1000, 16, [6, 5]): the shape the reference picks.
    let shape = TtShape::auto(1000, 16, &[6, 5]).unwrap();
    assert_eq!(
        (shape.p.as_slice(), shape.q.as_slice()),
        (&[10, 10, 10][..], &[2, 2, 4][..])
    );
    let tables: Vec<_> = (0..2)
        .map(|t| {
            let state = random_cores(&shape, 20 + t)
                .into_iter()
                .map(|c| c.into_iter().map(|x| x * x).collect())
                .collect();
            (random_cores(&shape, 10 + t), state)
        })
        .collect::<Vec<Table>>();
    let one = dir.join("one.safetensors");
    write_raw(
        &one,
        &reference_state_dict("emb_l.3.", &shape, &tables[..1]),
        None,
    );
    let mut t = TtEmbeddingBag::load_reference(&g, &one, &shape, "emb_l.3.", adagrad()).unwrap();
    assert_eq!(t.cores().unwrap(), tables[0].0);
    assert_eq!(t.optimizer_state().unwrap().as_ref(), Some(&tables[0].1));
    // Its rows are the cores' rows (the CPU twin over the cores in the file).
    let mut r = rng(30);
    let (idx, off) = bags(&mut r, 40, 6, 1000);
    let got = t.forward(&Bags::new(&idx, &off)).unwrap();
    let want = reference::forward(
        &shape,
        &tables[0].0,
        &u64s(&idx),
        &u64s(&off),
        None,
        Pooling::Sum,
    );
    assert_close("reference state dict rows", &got, &want, 1e-5, 1e-7);
    // And an Adagrad step continues from the file's state.
    let dout = values(&mut r, 40 * 16);
    t.backward(&Bags::new(&idx, &off), &dout).unwrap();
    let grads = reference::backward(
        &shape,
        &tables[0].0,
        &u64s(&idx),
        &u64s(&off),
        None,
        Pooling::Sum,
        &dout,
    );
    let (c1, s1) = reference::adagrad_update(&tables[0].0, &tables[0].1, &grads, 0.05, 1e-8);
    let (cores, state) = (t.cores().unwrap(), t.optimizer_state().unwrap().unwrap());
    for k in 0..3 {
        assert_close(
            &format!("core {k} after a step"),
            &cores[k],
            &to_f64(&c1[k]),
            1e-5,
            1e-7,
        );
        assert_close(
            &format!("state {k} after a step"),
            &state[k],
            &to_f64(&s1[k]),
            1e-5,
            1e-9,
        );
    }
    // An SGD state dict (empty [0] state buffers), 2-D cores [p, R q R]: no state.
    let sgd = dir.join("sgd.safetensors");
    let mut raw = reference_state_dict("", &shape, &tables[..1]);
    raw.remove(0);
    for (name, _, dims, bytes) in raw.iter_mut() {
        if name.starts_with("optimizer_state.") {
            *dims = vec![0];
            bytes.clear();
        } else if name.starts_with("tt_cores.") {
            dims.remove(0);
        }
    }
    write_raw(&sgd, &raw, None);
    let ck = checkpoint::load_reference(&sgd, &shape, "").unwrap();
    assert_eq!(
        ck,
        vec![TtCheckpoint {
            shape: shape.clone(),
            cores: tables[0].0.clone(),
            adagrad_state: None
        }]
    );

    // A table batch (T = 2): each table's cores and state.
    let two = dir.join("two.safetensors");
    write_raw(&two, &reference_state_dict("tbl.", &shape, &tables), None);
    let both = checkpoint::load_reference(&two, &shape, "tbl.").unwrap();
    assert_eq!(both.len(), 2);
    for (ck, (cores, state)) in both.iter().zip(&tables) {
        assert_eq!(
            (&ck.shape, &ck.cores, ck.adagrad_state.as_ref()),
            (&shape, cores, Some(state))
        );
    }
    let e = TtEmbeddingBag::load_reference(&g, &two, &shape, "tbl.", adagrad())
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds 2 tables"), "{e}");

    // Errors name the tensor: another module's tensor (no prefix), a wrong prefix, a shape that
    // is not the file's, strides that do not match p.
    let e = checkpoint::load_reference(&two, &shape, "")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bot_l.0.weight is not part of"), "{e}");
    let e = checkpoint::load_reference(&two, &shape, "emb_l.0.")
        .unwrap_err()
        .to_string();
    assert!(e.contains("emb_l.0.tt_cores.0 is missing"), "{e}");
    let other = TtShape::auto(1000, 16, &[6, 4]).unwrap();
    let e = checkpoint::load_reference(&two, &other, "tbl.")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tbl.tt_cores.1 has shape [2, 10, 60]") && e.contains("[T, 10, 48]"),
        "{e}"
    );
    let bad_l = dir.join("bad-l.safetensors");
    let mut raw = reference_state_dict("tbl.", &shape, &tables);
    let l = raw.iter_mut().find(|t| t.0 == "tbl.L").unwrap();
    l.3 = [100i64, 1, 1]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    write_raw(&bad_l, &raw, None);
    let e = checkpoint::load_reference(&bad_l, &shape, "tbl.")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tbl.L = [100, 1, 1]") && e.contains("[100, 10, 1]"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
