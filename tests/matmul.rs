//! The MLP products (shaders/matmul.wgsl) against their CPU twin (src/reference/nn.rs): every
//! layout, both variants (register blocks for CPU adapters, workgroup tiles for GPUs), ragged
//! shapes, strided operands inside larger buffers, and every epilogue.

mod common;

use common::*;
use ttrec::graph::Buf;
use ttrec::kernels::matmul::{record_gemm, Gemm, GemmLayout, GemmVariant};
use ttrec::kernels::MatrixAt;
use ttrec::reference::nn::{self as twin, At, Layout};

#[derive(Clone, Copy, Debug)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    bias: bool,
    relu: bool,
    mask: bool,
}

const CASES: &[Case] = &[
    // Ragged batch (not a multiple of the row tile), N a multiple of 4 but not of 8.
    Case {
        m: 13,
        n: 12,
        k: 20,
        bias: true,
        relu: true,
        mask: false,
    },
    // A DLRM layer shape: 367 (padded to 368) inputs, 64 outputs.
    Case {
        m: 37,
        n: 64,
        k: 368,
        bias: true,
        relu: false,
        mask: true,
    },
    // Tiny: one row, the last top layer's 4 padded outputs.
    Case {
        m: 1,
        n: 4,
        k: 16,
        bias: true,
        relu: true,
        mask: false,
    },
    Case {
        m: 70,
        n: 136,
        k: 44,
        bias: false,
        relu: false,
        mask: false,
    },
];

fn to_layout(l: GemmLayout) -> Layout {
    match l {
        GemmLayout::Nt => Layout::Nt,
        GemmLayout::Nn => Layout::Nn,
        GemmLayout::Tn => Layout::Tn,
    }
}

/// Runs one product with operands placed at offsets inside wider buffers and compares with the
/// twin; pads of C must stay poisoned.
fn check(layout: GemmLayout, variant: GemmVariant, c: Case, seed: u64) {
    let gpu = gpu();
    let mut r = rng(seed);
    // Stored shapes of A and B, with 4 spare columns and an offset of one row + 4.
    let (a_rows, a_cols) = if layout == GemmLayout::Tn {
        (c.k, c.m)
    } else {
        (c.m, c.k)
    };
    let (b_rows, b_cols) = if layout == GemmLayout::Nt {
        (c.n, c.k)
    } else {
        (c.k, c.n)
    };
    let at = |cols: usize| At {
        stride: cols + 4,
        offset: cols + 8,
    };
    let (a_at, b_at, c_at) = (at(a_cols), at(b_cols), at(c.n));
    let a = values(&mut r, a_at.offset + a_rows * a_at.stride);
    let b = values(&mut r, b_at.offset + b_rows * b_at.stride);
    let bias_vals = values(&mut r, c.n.max(c.m) + 8);
    let mask = values(&mut r, c.m * c.n);
    let c_len = c_at.offset + c.m * c_at.stride;
    let a_buf = gpu.storage_from("a", &a);
    let b_buf = gpu.storage_from("b", &b);
    let c_buf = gpu.storage_from("c", &vec![POISON; c_len]);
    let bias_buf = gpu.storage_from("bias", &bias_vals);
    let mask_buf = gpu.storage_from("mask", &mask);
    let mat = |buf: &wgpu::Buffer, at: At| MatrixAt {
        buf: Buf::from(buf),
        stride: at.stride,
        offset: at.offset,
    };
    let tn = layout == GemmLayout::Tn;
    let p = Gemm {
        layout,
        m: c.m,
        n: c.n,
        k: c.k,
        a: mat(&a_buf, a_at),
        b: mat(&b_buf, b_at),
        c: mat(&c_buf, c_at),
        bias: c.bias.then(|| (Buf::from(&bias_buf), 4)),
        relu: c.relu && !tn,
        mask: (c.mask && !tn).then(|| MatrixAt::dense(Buf::from(&mask_buf), c.n)),
    };
    run_graph(&gpu, |g| record_gemm(g, "gemm", &p, variant));
    let got = gpu.read_f32(&c_buf, 0, c_len).unwrap();
    let got_bias = gpu.read_f32(&bias_buf, 0, bias_vals.len()).unwrap();
    let mut want = twin::gemm(to_layout(layout), c.m, c.n, c.k, &a, a_at, &b, b_at);
    if !tn {
        for i in 0..c.m {
            for j in 0..c.n {
                let v = &mut want[i * c.n + j];
                if c.bias {
                    *v += bias_vals[4 + j] as f64;
                }
                if c.relu {
                    *v = v.max(0.0);
                }
                if c.mask && mask[i * c.n + j] <= 0.0 {
                    *v = 0.0;
                }
            }
        }
    }
    let what = format!("{layout:?} {variant:?} {c:?}");
    let mut got_c = Vec::new();
    for i in 0..c.m {
        let row = &got[c_at.offset + i * c_at.stride..][..c_at.stride];
        got_c.extend_from_slice(&row[..c.n]);
        assert!(
            row[c.n..].iter().all(|&x| x == POISON),
            "{what}: padding of row {i} written"
        );
    }
    assert!(
        got[..c_at.offset].iter().all(|&x| x == POISON),
        "{what}: before C written"
    );
    // f32 sums of K terms: rtol grows with K.
    let rtol = 1e-6 * (c.k as f64).sqrt() * 4.0;
    assert_close(&what, &got_c, &want, rtol, 1e-6);
    if tn && c.bias {
        // The bias gradient: the sum of A (stored [K, M]) over k.
        let want_b: Vec<f64> = (0..c.m)
            .map(|i| {
                (0..c.k)
                    .map(|kk| a[a_at.offset + kk * a_at.stride + i] as f64)
                    .sum()
            })
            .collect();
        assert_close(
            &format!("{what} bias grad"),
            &got_bias[4..4 + c.m],
            &want_b,
            rtol,
            1e-6,
        );
    } else {
        assert_eq!(got_bias, bias_vals, "{what}: bias must not be written");
    }
}

fn check_all(layout: GemmLayout, variant: GemmVariant) {
    for (i, &c) in CASES.iter().enumerate() {
        check(layout, variant, c, 10 + i as u64);
    }
}

#[test]
fn nt_forward_registers_matches_twin() {
    check_all(GemmLayout::Nt, GemmVariant::Registers);
}
#[test]
fn nn_input_grad_registers_matches_twin() {
    check_all(GemmLayout::Nn, GemmVariant::Registers);
}
#[test]
fn tn_weight_grad_registers_matches_twin() {
    check_all(GemmLayout::Tn, GemmVariant::Registers);
}
#[test]
fn nt_forward_tiled_matches_twin() {
    check_all(GemmLayout::Nt, GemmVariant::Tiled);
}
#[test]
fn nn_input_grad_tiled_matches_twin() {
    check_all(GemmLayout::Nn, GemmVariant::Tiled);
}
#[test]
fn tn_weight_grad_tiled_matches_twin() {
    check_all(GemmLayout::Tn, GemmVariant::Tiled);
}

#[test]
fn unaligned_operands_fall_back_to_the_tiled_kernel() {
    // K = 13 (the raw dense features) cannot take vec4 loads: the launcher must still be right.
    check(
        GemmLayout::Nt,
        GemmVariant::Registers,
        Case {
            m: 9,
            n: 8,
            k: 13,
            bias: true,
            relu: true,
            mask: false,
        },
        3,
    );
}

#[test]
fn products_are_bitwise_deterministic() {
    let gpu = gpu();
    let mut r = rng(5);
    let (m, n, k) = (50, 64, 96);
    let a = gpu.storage_from("a", &values(&mut r, m * k));
    let b = gpu.storage_from("b", &values(&mut r, n * k));
    let run = |variant| {
        let c = gpu.storage("c", (m * n * 4) as u64);
        let p = Gemm {
            layout: GemmLayout::Nt,
            m,
            n,
            k,
            a: MatrixAt::dense(Buf::from(&a), k),
            b: MatrixAt::dense(Buf::from(&b), k),
            c: MatrixAt::dense(Buf::from(&c), n),
            bias: None,
            relu: false,
            mask: None,
        };
        run_graph(&gpu, |g| record_gemm(g, "gemm", &p, variant));
        gpu.read_f32(&c, 0, m * n).unwrap()
    };
    for variant in [GemmVariant::Registers, GemmVariant::Tiled] {
        let (x, y) = (run(variant), run(variant));
        assert!(
            x.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{variant:?}"
        );
    }
}
