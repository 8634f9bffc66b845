//! MLPs on the GPU (src/nn/mlp.rs) against the CPU twin: forward with ReLUs, backward into the
//! arena's gradients (weights and biases), the input gradient, one fused SGD step, padding kept
//! at zero, and both product variants.

mod common;

use common::*;
use ttrec::graph::{Buf, GraphBuilder};
use ttrec::kernels::matmul::GemmVariant;
use ttrec::kernels::MatrixAt;
use ttrec::nn::mlp::Layer;
use ttrec::nn::{Act, ArenaLayout, Mlp, ParamArena};
use ttrec::tt::Optimizer;
use ttrec::twin::nn as twin;

fn check(variant: GemmVariant, relu_last: bool) {
    check_with(variant, relu_last, false);
}

/// Per layer, the Adagrad state of its weight and of its bias.
type States = Vec<(Vec<f32>, Vec<f32>)>;

/// Adagrad's state for every tensor: positive, different per tensor.
fn adagrad_states(mlp: &Mlp) -> States {
    let mut r = rng(5);
    let mut pos =
        |n: usize| -> Vec<f32> { values(&mut r, n).iter().map(|v| v.abs() + 0.1).collect() };
    mlp.layers
        .iter()
        .map(|l| (pos(l.weight.len()), pos(l.bias.len())))
        .collect()
}

/// The optimizer of a check and a layer's state before the step.
struct Update<'a> {
    adagrad: bool,
    lr: f32,
    eps: f32,
    state: &'a (Vec<f32>, Vec<f32>),
}

/// Layer `l`'s weight, bias (and Adagrad state) after the update from `params` and the twin's
/// gradients, and the weight's transposed copy the update wrote: bitwise the new weight.
fn check_update(
    arena: &ParamArena,
    l: &Layer,
    params: &(Vec<f32>, Vec<f32>),
    (dw, db): (&[f64], &[f64]),
    u: &Update,
    what: &str,
) {
    let (lr, eps) = (u.lr as f64, u.eps as f64);
    let (want_w, want_b) = if u.adagrad {
        let (w, sw) = twin::adagrad(&to_f64(&params.0), &to_f64(&u.state.0), dw, lr, eps);
        let (b, sb) = twin::adagrad(&to_f64(&params.1), &to_f64(&u.state.1), db, lr, eps);
        let state = |name: &str| arena.state(name).unwrap().unwrap();
        assert_close(what, &state(&l.weight.name), &sw, 1e-5, 1e-6);
        assert_close(what, &state(&l.bias.name), &sb, 1e-5, 1e-6);
        (w, b)
    } else {
        let b = twin::sgd(&to_f64(&params.1), db, lr);
        (twin::sgd(&to_f64(&params.0), dw, lr), b)
    };
    let new_w = arena.get(&l.weight.name).unwrap();
    let updated = |name: &str| format!("{what} {name} updated");
    assert_close(&updated(&l.weight.name), &new_w, &want_w, 1e-5, 1e-6);
    let new_b = arena.get(&l.bias.name).unwrap();
    assert_close(&updated(&l.bias.name), &new_b, &want_b, 1e-5, 1e-6);
    let new_wt = arena.get_transposed(&l.weight.name).unwrap();
    for r in 0..l.outputs {
        for c in 0..l.inputs {
            assert_eq!(
                new_wt[c * l.outputs + r].to_bits(),
                new_w[r * l.inputs + c].to_bits(),
                "{what} {} transposed copy at ({r}, {c})",
                l.weight.name
            );
        }
    }
}

/// The MLP of `widths` in a new arena, initialised, with the optimizer (Adagrad from
/// [`adagrad_states`] where `adagrad_eps` is given, else SGD) and the states.
fn setup(
    gpu: &ttrec::gpu::Gpu,
    widths: &[usize],
    relu_last: bool,
    adagrad_eps: Option<f32>,
    lr: f32,
) -> (Mlp, ParamArena, States) {
    let mut layout = ArenaLayout::default();
    let mlp = Mlp::declare(&mut layout, "bot_l", widths, relu_last).unwrap();
    let optimizer = match adagrad_eps {
        Some(eps) => Optimizer::Adagrad { lr, eps },
        None => Optimizer::Sgd { lr },
    };
    let mut arena = ParamArena::new(gpu, layout, optimizer).unwrap();
    mlp.init(&mut arena, 3).unwrap();
    let states = adagrad_states(&mlp);
    if adagrad_eps.is_some() {
        for (l, (sw, sb)) in mlp.layers.iter().zip(&states) {
            arena.set_state(&l.weight.name, sw).unwrap();
            arena.set_state(&l.bias.name, sb).unwrap();
        }
    }
    (mlp, arena, states)
}

/// The forward's output `y` (`batch` rows of `out_p`, `width` logical) against the twin's, and
/// its padding zero.
fn check_output(what: &str, y: &[f32], want: &[f64], batch: usize, out_p: usize, width: usize) {
    let y_logical: Vec<f32> = (0..batch)
        .flat_map(|b| y[b * out_p..b * out_p + width].to_vec())
        .collect();
    assert_close(&format!("{what} output"), &y_logical, want, 1e-5, 1e-6);
    for b in 0..batch {
        assert!(
            y[b * out_p + width..(b + 1) * out_p]
                .iter()
                .all(|&v| v == 0.0),
            "output padding"
        );
    }
}

/// One forward, backward and update (SGD, or Adagrad from a non-zero state) against the twin.
fn check_with(variant: GemmVariant, relu_last: bool, adagrad: bool) {
    let gpu = gpu();
    let widths = [13usize, 24, 10, 1];
    let batch = 11;
    let lr = 0.25f32;
    let eps = 1e-3f32;
    let (mlp, arena, states) = setup(&gpu, &widths, relu_last, adagrad.then_some(eps), lr);
    let mut r = rng(4);
    let (in_p, out_p) = (mlp.input_stride(), mlp.output_stride());
    let x = values(&mut r, batch * widths[0]);
    let bp = batch.div_ceil(4) * 4;
    // Both layouts of the input and of the output gradient, zero padded.
    let pad = |v: &[f32], w: usize, wp: usize| {
        let mut rows = vec![0f32; batch * wp];
        let mut cols = vec![0f32; wp * bp];
        for b in 0..batch {
            for c in 0..w {
                rows[b * wp + c] = v[b * w + c];
                cols[c * bp + b] = v[b * w + c];
            }
        }
        (rows, cols)
    };
    let (x_rows, x_cols) = pad(&x, widths[0], in_p);
    let dz = values(&mut r, batch * widths[3]);
    let (dz_rows, dz_cols) = pad(&dz, widths[3], out_p);
    let params: Vec<(Vec<f32>, Vec<f32>)> = mlp
        .layers
        .iter()
        .map(|l| {
            (
                arena.get(&l.weight.name).unwrap(),
                arena.get(&l.bias.name).unwrap(),
            )
        })
        .collect();
    let x_buf = gpu.storage_from("x", &x_rows);
    let xt_buf = gpu.storage_from("x^T", &x_cols);
    let y_buf = gpu.storage_from("y", &vec![POISON; batch * out_p]);
    let yt_buf = gpu.storage_from("y^T", &vec![POISON; out_p * bp]);
    let dz_buf = gpu.storage_from("dz", &dz_rows);
    let dzt_buf = gpu.storage_from("dz^T", &dz_cols);
    let dx_buf = gpu.storage_from("dx", &vec![POISON; batch * in_p]);
    let dxt_buf = gpu.storage_from("dx^T", &vec![POISON; in_p * bp]);
    let mut g = GraphBuilder::new(&gpu);
    let acts = mlp
        .record_forward(
            &mut g,
            &arena,
            Act {
                rows: MatrixAt::dense(Buf::from(&x_buf), in_p),
                cols: MatrixAt::dense(Buf::from(&xt_buf), bp),
            },
            Some(MatrixAt::dense(Buf::from(&y_buf), out_p)),
            Some(MatrixAt::dense(Buf::from(&yt_buf), bp)),
            batch,
            variant,
            "mlp",
        )
        .unwrap();
    mlp.record_backward(
        &mut g,
        &arena,
        &acts,
        Act {
            rows: MatrixAt::dense(Buf::from(&dz_buf), out_p),
            cols: MatrixAt::dense(Buf::from(&dzt_buf), bp),
        },
        Some(MatrixAt::dense(Buf::from(&dx_buf), in_p)),
        Some(MatrixAt::dense(Buf::from(&dxt_buf), bp)),
        batch,
        variant,
        "mlp",
    )
    .unwrap();
    arena.record_update(&mut g, "mlp").unwrap();
    g.build().unwrap().run().unwrap();
    gpu.wait().unwrap();

    // Twin: forward keeping every layer's output, then backward from dz (pre-activation of the
    // last layer: the caller's mask already applied).
    let mut acts64 = vec![to_f64(&x)];
    for (i, l) in mlp.layers.iter().enumerate() {
        let y = twin::linear_forward(
            &acts64[i],
            &to_f64(&params[i].0),
            &to_f64(&params[i].1),
            l.inputs,
            l.relu,
        );
        acts64.push(y);
    }
    let what = format!("{variant:?} relu_last {relu_last}");
    let y = gpu.read_f32(&y_buf, 0, batch * out_p).unwrap();
    check_output(&what, &y, &acts64[3], batch, out_p, widths[3]);
    let mut grad = to_f64(&dz);
    for i in (0..mlp.layers.len()).rev() {
        let l = &mlp.layers[i];
        // The twin masks by this layer's ReLU; dz is already past it for the last layer.
        let relu = l.relu && i + 1 < mlp.layers.len();
        let (dx, dw, db) = twin::linear_backward(
            &acts64[i],
            &to_f64(&params[i].0),
            &acts64[i + 1],
            &grad,
            l.inputs,
            relu,
        );
        assert_close(
            &format!("{what} {} grad", l.weight.name),
            &arena.grad(&l.weight.name).unwrap(),
            &dw,
            1e-5,
            1e-6,
        );
        assert_close(
            &format!("{what} {} grad", l.bias.name),
            &arena.grad(&l.bias.name).unwrap(),
            &db,
            1e-5,
            1e-6,
        );
        let update = Update {
            adagrad,
            lr,
            eps,
            state: &states[i],
        };
        check_update(&arena, l, &params[i], (&dw, &db), &update, &what);
        grad = dx;
    }
    let dx = gpu.read_f32(&dx_buf, 0, batch * in_p).unwrap();
    let dx_logical: Vec<f32> = (0..batch)
        .flat_map(|b| dx[b * in_p..b * in_p + widths[0]].to_vec())
        .collect();
    assert_close(
        &format!("{what} input grad"),
        &dx_logical,
        &grad,
        1e-5,
        1e-6,
    );
}

#[test]
fn mlp_registers_matches_twin() {
    check(GemmVariant::Registers, false);
    check(GemmVariant::Registers, true);
}

#[test]
fn mlp_tiled_matches_twin() {
    check(GemmVariant::Tiled, false);
}

/// The GPU class's products with Adagrad: the arena update's Adagrad path and the transposed
/// copies it writes.
#[test]
fn mlp_split_adagrad_matches_twin() {
    check_with(GemmVariant::Split, true, true);
}

#[test]
fn bad_parameters_are_named() {
    let gpu = gpu();
    let mut layout = ArenaLayout::default();
    let mlp = Mlp::declare(&mut layout, "top_l", &[5, 4, 1], false).unwrap();
    let mut arena = ParamArena::new(&gpu, layout, Optimizer::Sgd { lr: 0.1 }).unwrap();
    let e = arena
        .set("top_l.2.weight", &[1.0, 2.0])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("top_l.2.weight") && e.contains("2 values"),
        "{e}"
    );
    let e = arena
        .set("top_l.0.bias", &[0.0, f32::NAN, 0.0, 0.0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("position 1"), "{e}");
    assert!(arena.get("top_l.4.weight").is_err());
    assert_eq!(mlp.num_params(), 5 * 4 + 4 + 4 + 1);
    assert!(Mlp::declare(&mut ArenaLayout::default(), "x", &[3], false).is_err());
}
