//! dlrm's dot interaction (shaders/interaction.wgsl) against its CPU twin: forward (copy of the
//! bottom vector, pair order, zeroed padding) and backward (with and without the ReLU mask).

mod common;

use common::*;
use ttrec::graph::Buf;
use ttrec::kernels::interaction::{
    record_interaction_bwd, record_interaction_fwd, InteractionShape,
};
use ttrec::twin::nn as twin;

fn shapes() -> Vec<InteractionShape> {
    vec![
        // dlrm's Kaggle shape: 27 vectors of 16, 367 values padded to 368.
        InteractionShape {
            batch: 5,
            vectors: 27,
            dim: 16,
            out_stride: 368,
        },
        InteractionShape {
            batch: 33,
            vectors: 4,
            dim: 8,
            out_stride: 16,
        },
        InteractionShape {
            batch: 1,
            vectors: 2,
            dim: 4,
            out_stride: 5,
        },
    ]
}

#[test]
fn forward_matches_twin_and_zeroes_padding() {
    let gpu = gpu();
    for (i, s) in shapes().into_iter().enumerate() {
        let mut r = rng(i as u64);
        let t = values(&mut r, s.batch * s.vectors * s.dim);
        let t_buf = gpu.storage_from("t", &t);
        let r_buf = gpu.storage_from("r", &vec![POISON; s.batch * s.out_stride]);
        let bp = s.batch.div_ceil(4) * 4;
        let rt_buf = gpu.storage_from("r^T", &vec![POISON; s.out_stride * bp]);
        run_graph(&gpu, |g| {
            record_interaction_fwd(
                g,
                "fwd",
                s,
                Buf::from(&t_buf),
                Buf::from(&r_buf),
                Buf::from(&rt_buf),
            )
        });
        let got = gpu.read_f32(&r_buf, 0, s.batch * s.out_stride).unwrap();
        let want = twin::interaction_forward(&to_f64(&t), s.vectors, s.dim);
        let w = s.out_width();
        let mut got_rows = Vec::new();
        for b in 0..s.batch {
            let row = &got[b * s.out_stride..(b + 1) * s.out_stride];
            got_rows.extend_from_slice(&row[..w]);
            assert!(
                row[w..].iter().all(|&x| x == 0.0),
                "{s:?}: padding of row {b} not zero"
            );
        }
        assert_close(&format!("{s:?}"), &got_rows, &want, 1e-6, 1e-7);
        // The transposed copy holds the same values, padding included; pad samples untouched.
        let rt = gpu.read_f32(&rt_buf, 0, s.out_stride * bp).unwrap();
        for c in 0..s.out_stride {
            for b in 0..bp {
                let v = rt[c * bp + b];
                if b < s.batch {
                    assert_eq!(
                        v.to_bits(),
                        got[b * s.out_stride + c].to_bits(),
                        "{s:?} R^T[{c}, {b}]"
                    );
                } else {
                    assert_eq!(v, POISON, "{s:?} R^T[{c}, {b}] written");
                }
            }
        }
    }
}

#[test]
fn backward_matches_twin_with_and_without_mask() {
    let gpu = gpu();
    for (i, s) in shapes().into_iter().enumerate() {
        for mask0 in [false, true] {
            let mut r = rng(100 + i as u64);
            let t = values(&mut r, s.batch * s.vectors * s.dim);
            let w = s.out_width();
            let mut dr = values(&mut r, s.batch * s.out_stride);
            // Padding of dR holds garbage on purpose: it must not be read.
            for b in 0..s.batch {
                for c in w..s.out_stride {
                    dr[b * s.out_stride + c] = POISON;
                }
            }
            let t_buf = gpu.storage_from("t", &t);
            let dr_buf = gpu.storage_from("dr", &dr);
            let dt_buf = gpu.storage_from("dt", &vec![POISON; t.len()]);
            let bp = s.batch.div_ceil(4) * 4;
            let dt0_buf = gpu.storage_from("dt0^T", &vec![POISON; s.dim * bp]);
            run_graph(&gpu, |g| {
                record_interaction_bwd(
                    g,
                    "bwd",
                    s,
                    Buf::from(&dr_buf),
                    Buf::from(&t_buf),
                    Buf::from(&dt_buf),
                    Buf::from(&dt0_buf),
                    mask0,
                )
            });
            let dt0 = gpu.read_f32(&dt0_buf, 0, s.dim * bp).unwrap();
            let got = gpu.read_f32(&dt_buf, 0, t.len()).unwrap();
            let dr_logical: Vec<f64> = (0..s.batch)
                .flat_map(|b| {
                    dr[b * s.out_stride..b * s.out_stride + w]
                        .iter()
                        .map(|&x| x as f64)
                })
                .collect();
            let mut want = twin::interaction_backward(&to_f64(&t), &dr_logical, s.vectors, s.dim);
            if mask0 {
                for b in 0..s.batch {
                    for c in 0..s.dim {
                        let at = b * s.vectors * s.dim + c;
                        if t[at] <= 0.0 {
                            want[at] = 0.0;
                        }
                    }
                }
            }
            assert_close(&format!("{s:?} mask {mask0}"), &got, &want, 1e-6, 1e-7);
            for c in 0..s.dim {
                for b in 0..s.batch {
                    let at = b * s.vectors * s.dim + c;
                    assert_eq!(
                        dt0[c * bp + b].to_bits(),
                        got[at].to_bits(),
                        "{s:?} dT0^T[{c}, {b}]"
                    );
                }
            }
        }
    }
}

#[test]
fn malformed_shapes_are_errors() {
    let gpu = gpu();
    let buf = gpu.storage("x", 64);
    let bad = InteractionShape {
        batch: 2,
        vectors: 3,
        dim: 6,
        out_stride: 9,
    };
    let mut g = ttrec::graph::GraphBuilder::new(&gpu);
    let e = record_interaction_fwd(
        &mut g,
        "fwd",
        bad,
        Buf::from(&buf),
        Buf::from(&buf),
        Buf::from(&buf),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("multiple of 4"), "{e}");
    let short = InteractionShape {
        batch: 2,
        vectors: 3,
        dim: 4,
        out_stride: 6,
    };
    assert!(record_interaction_fwd(
        &mut g,
        "fwd",
        short,
        Buf::from(&buf),
        Buf::from(&buf),
        Buf::from(&buf)
    )
    .is_err());
}
