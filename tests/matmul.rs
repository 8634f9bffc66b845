//! The MLP products (shaders/matmul.wgsl: C = A^T B with its epilogues, the weight gradient with
//! the bias gradient) against their CPU twin (src/twin/nn.rs), in both
//! variants (register blocks for CPU adapters, workgroup tiles for GPUs): ragged shapes, operands
//! at offsets inside wider buffers, every epilogue, both stores.

mod common;

use common::*;
use ttrec::graph::Buf;
use ttrec::kernels::matmul::{
    is_thin, k_split, record_gemm, record_weight_grad, Gemm, GemmVariant, WeightGrad,
    GPU_MAX_SERIAL, GPU_MIN_PART,
};
use ttrec::kernels::MatrixAt;
use ttrec::twin::nn::{self as twin, At};

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
        k: 7,
        bias: false,
        relu: false,
        mask: false,
    },
];

/// Shapes for the GPU class's split-K products: M, N and K multiples of neither the 64 x 64
/// tiles, the 16-deep K steps nor 4, so every edge (ragged tiles, a short last part, a short
/// last K step) is taken; long K (over [`GPU_MAX_SERIAL`]) and few tiles both force parts.
const SPLIT_CASES: &[Case] = &[
    Case {
        m: 67,
        n: 45,
        k: 1031,
        bias: true,
        relu: true,
        mask: true,
    },
    Case {
        m: 130,
        n: 70,
        k: 77,
        bias: true,
        relu: false,
        mask: false,
    },
    Case {
        m: 5,
        n: 3,
        k: 2049,
        bias: false,
        relu: false,
        mask: false,
    },
];

/// Thin products (short K, few tiles) for the GPU class's `gemm_thin`: odd and unaligned, and
/// aligned with a K of exactly its limit.
const THIN_CASES: &[Case] = &[
    Case {
        m: 67,
        n: 45,
        k: 13,
        bias: true,
        relu: true,
        mask: true,
    },
    Case {
        m: 130,
        n: 12,
        k: 64,
        bias: false,
        relu: false,
        mask: true,
    },
    Case {
        m: 3,
        n: 5,
        k: 4,
        bias: true,
        relu: false,
        mask: false,
    },
];

/// Operand views inside wider buffers: 4 spare columns, an offset of one row and 8.
fn at(cols: usize) -> At {
    At {
        stride: cols + 4,
        offset: cols + 8,
    }
}

fn mat(buf: &wgpu::Buffer, a: At) -> MatrixAt {
    MatrixAt {
        buf: Buf::from(buf),
        stride: a.stride,
        offset: a.offset,
    }
}

fn check_gemm(variant: GemmVariant, c: Case, seed: u64) {
    let gpu = gpu();
    let mut r = rng(seed);
    let mp = c.m.div_ceil(4) * 4;
    let (a_at, b_at, c_at, ct_at) = (at(mp), at(c.n), at(c.n), at(c.m));
    let a = values(&mut r, a_at.offset + c.k * a_at.stride);
    let b = values(&mut r, b_at.offset + c.k * b_at.stride);
    let bias_vals = values(&mut r, c.n + 8);
    let mask = values(&mut r, c.m * c.n);
    let c_len = c_at.offset + c.m * c_at.stride;
    let ct_len = ct_at.offset + c.n * ct_at.stride;
    let a_buf = gpu.storage_from("a", &a);
    let b_buf = gpu.storage_from("b", &b);
    let c_buf = gpu.storage_from("c", &vec![POISON; c_len]);
    let ct_buf = gpu.storage_from("ct", &vec![POISON; ct_len]);
    let bias_buf = gpu.storage_from("bias", &bias_vals);
    let mask_buf = gpu.storage_from("mask", &mask);
    let p = Gemm {
        m: c.m,
        n: c.n,
        k: c.k,
        a: mat(&a_buf, a_at),
        b: mat(&b_buf, b_at),
        c: Some(mat(&c_buf, c_at)),
        ct: Some(mat(&ct_buf, ct_at)),
        bias: c.bias.then(|| (Buf::from(&bias_buf), 4)),
        relu: c.relu,
        mask: c.mask.then(|| MatrixAt::dense(Buf::from(&mask_buf), c.n)),
    };
    run_graph(&gpu, |g| record_gemm(g, "gemm", &p, variant));
    let mut want = twin::gemm_tn(c.m, c.n, c.k, &a, a_at, &b, b_at);
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
    let what = format!("{variant:?} {c:?}");
    let rtol = 4e-6 * (c.k as f64).sqrt();
    let got = gpu.read_f32(&c_buf, 0, c_len).unwrap();
    let got_c = strip(&got, c_at, c.m, c.n, &what);
    assert_close(&what, &got_c, &want, rtol, 1e-6);
    let got = gpu.read_f32(&ct_buf, 0, ct_len).unwrap();
    let got_ct = strip(&got, ct_at, c.n, c.m, &format!("{what} C^T"));
    assert_close(
        &format!("{what} C^T"),
        &got_ct,
        &twin::transpose(&want, c.m, c.n),
        rtol,
        1e-6,
    );
}

/// The `rows x cols` block at `at`; everything else of the buffer must still be poison.
fn strip(buf: &[f32], at: At, rows: usize, cols: usize, what: &str) -> Vec<f32> {
    assert!(
        buf[..at.offset].iter().all(|&x| x == POISON),
        "{what}: written before the matrix"
    );
    let mut out = Vec::new();
    for i in 0..rows {
        let row = &buf[at.offset + i * at.stride..][..at.stride];
        out.extend_from_slice(&row[..cols]);
        assert!(
            row[cols..].iter().all(|&x| x == POISON),
            "{what}: padding of row {i} written"
        );
    }
    out
}

fn check_wgrad(variant: GemmVariant, c: Case, seed: u64) {
    let gpu = gpu();
    let mut r = rng(seed);
    let m = c.m.div_ceil(4) * 4;
    let (a_at, b_at, c_at) = (at(m), at(c.n), at(c.n));
    let a = values(&mut r, a_at.offset + c.k * a_at.stride);
    let b = values(&mut r, b_at.offset + c.k * b_at.stride);
    let c_len = c_at.offset + m * c_at.stride;
    let a_buf = gpu.storage_from("a", &a);
    let b_buf = gpu.storage_from("b", &b);
    let c_buf = gpu.storage_from("c", &vec![POISON; c_len]);
    let bias_buf = gpu.storage_from("bias grad", &vec![POISON; m + 8]);
    let p = WeightGrad {
        m,
        n: c.n,
        k: c.k,
        a: mat(&a_buf, a_at),
        b: mat(&b_buf, b_at),
        c: mat(&c_buf, c_at),
        bias_grad: c.bias.then(|| (Buf::from(&bias_buf), 4)),
    };
    run_graph(&gpu, |g| record_weight_grad(g, "wgrad", &p, variant));
    let what = format!("{variant:?} weight grad {c:?}");
    let rtol = 4e-6 * (c.k as f64).sqrt();
    let got = gpu.read_f32(&c_buf, 0, c_len).unwrap();
    let want = twin::gemm_tn(m, c.n, c.k, &a, a_at, &b, b_at);
    assert_close(&what, &strip(&got, c_at, m, c.n, &what), &want, rtol, 1e-6);
    let got_b = gpu.read_f32(&bias_buf, 0, m + 8).unwrap();
    if c.bias {
        let want_b: Vec<f64> = (0..m)
            .map(|i| {
                (0..c.k)
                    .map(|kk| a[a_at.offset + kk * a_at.stride + i] as f64)
                    .sum()
            })
            .collect();
        assert_close(
            &format!("{what} bias"),
            &got_b[4..4 + m],
            &want_b,
            rtol,
            1e-6,
        );
        assert!(got_b[..4]
            .iter()
            .chain(&got_b[4 + m..])
            .all(|&x| x == POISON));
    } else {
        assert!(
            got_b.iter().all(|&x| x == POISON),
            "{what}: bias gradient written"
        );
    }
}

#[test]
fn gemm_registers_matches_twin() {
    for (i, &c) in CASES.iter().enumerate() {
        check_gemm(GemmVariant::Registers, c, 10 + i as u64);
    }
}
#[test]
fn gemm_tiled_matches_twin() {
    for (i, &c) in CASES.iter().enumerate() {
        check_gemm(GemmVariant::Tiled, c, 10 + i as u64);
    }
}
#[test]
fn weight_grad_registers_matches_twin() {
    for (i, &c) in CASES.iter().enumerate() {
        check_wgrad(GemmVariant::Registers, c, 20 + i as u64);
    }
}
#[test]
fn weight_grad_tiled_matches_twin() {
    for (i, &c) in CASES.iter().enumerate() {
        check_wgrad(GemmVariant::Tiled, c, 20 + i as u64);
    }
}

#[test]
fn gemm_split_matches_twin() {
    for (i, &c) in CASES.iter().chain(SPLIT_CASES).enumerate() {
        check_gemm(GemmVariant::Split, c, 30 + i as u64);
    }
}
#[test]
fn weight_grad_split_matches_twin() {
    for (i, &c) in CASES.iter().chain(SPLIT_CASES).enumerate() {
        check_wgrad(GemmVariant::Split, c, 40 + i as u64);
    }
}

#[test]
fn gemm_thin_matches_twin() {
    for (i, &c) in THIN_CASES.iter().enumerate() {
        assert!(is_thin(c.m, c.n, c.k), "{c:?}");
        check_gemm(GemmVariant::Split, c, 50 + i as u64);
    }
}

/// No part of a split is shorter than [`GPU_MIN_PART`] (a K of 4 is never cut in two), at the
/// step's shapes and beyond.
#[test]
fn thin_k_is_never_split() {
    for (m, n) in [(4, 4), (16, 64), (2048, 256), (5, 3)] {
        for k in 1..=700 {
            let s = k_split(m, n, k);
            assert!(s.parts == 1 || s.kc >= GPU_MIN_PART, "{m}x{n}x{k}: {s:?}");
        }
    }
    assert_eq!(k_split(2048, 256, 4).parts, 1);
}

/// The GPU class's kernel per product shape: vec4 loads where the operands are aligned, scalar
/// loads where not, `gemm_thin` for a short K, and the same bits from vec4 and scalar loads
/// (the same sums in the same order).
#[test]
fn gpu_products_pick_vec4_loads_with_the_same_bits() {
    let gpu = gpu();
    let (m, n, k) = (36, 28, 700);
    let mut r = rng(8);
    // A and B once at offset 0 (aligned) and once at offset 1 (scalar loads).
    let a = values(&mut r, k * m);
    let b = values(&mut r, k * n);
    let shifted = |v: &[f32]| [&[7.0], v].concat();
    let (ab, bb) = (gpu.storage_from("a", &a), gpu.storage_from("b", &b));
    let (ab1, bb1) = (
        gpu.storage_from("a at 1", &shifted(&a)),
        gpu.storage_from("b at 1", &shifted(&b)),
    );
    let run = |off: usize, wgrad: bool| {
        let (ab, bb) = if off == 0 { (&ab, &bb) } else { (&ab1, &bb1) };
        let c = gpu.storage_from("c", &vec![POISON; m * n]);
        let bias = gpu.storage_from("bias", &vec![POISON; m]);
        let at = |buf: &wgpu::Buffer, stride| MatrixAt {
            buf: Buf::from(buf),
            stride,
            offset: off,
        };
        let mut g = ttrec::graph::GraphBuilder::new(&gpu);
        if wgrad {
            let p = WeightGrad {
                m,
                n,
                k,
                a: at(ab, m),
                b: at(bb, n),
                c: MatrixAt::dense(Buf::from(&c), n),
                bias_grad: Some((Buf::from(&bias), 0)),
            };
            record_weight_grad(&mut g, "p", &p, GemmVariant::Split).unwrap();
        } else {
            let p = Gemm {
                m,
                n,
                k,
                a: at(ab, m),
                b: at(bb, n),
                c: Some(MatrixAt::dense(Buf::from(&c), n)),
                ct: None,
                bias: None,
                relu: true,
                mask: None,
            };
            record_gemm(&mut g, "p", &p, GemmVariant::Split).unwrap();
        }
        let plan = g.build().unwrap();
        let first = plan.labels()[0].to_string();
        plan.run().unwrap();
        gpu.wait().unwrap();
        let mut out = gpu.read_f32(&c, 0, m * n).unwrap();
        if wgrad {
            out.extend(gpu.read_f32(&bias, 0, m).unwrap());
        }
        (first, out)
    };
    for wgrad in [false, true] {
        let (v4_label, v4) = run(0, wgrad);
        let (scalar_label, scalar) = run(1, wgrad);
        let entry = if wgrad { "gemm_gpu_wgrad" } else { "gemm_gpu" };
        assert_eq!(v4_label, format!("p ({entry})"));
        assert_eq!(scalar_label, format!("p ({entry}_any)"));
        assert!(v4.iter().all(|x| x.is_finite() && *x != POISON));
        assert!(v4.iter().any(|&x| x != 0.0));
        assert!(
            v4.iter()
                .zip(&scalar)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "vec4 and scalar loads differ (weight gradient: {wgrad})"
        );
    }
}

/// The split cases do split (else the tests above would not test the combine), every part
/// is at most [`GPU_MAX_SERIAL`] long, and the parts cover K exactly.
#[test]
fn split_cases_take_several_parts() {
    for c in SPLIT_CASES {
        let s = k_split(c.m, c.n, c.k);
        assert!(s.parts > 1, "{c:?}: {s:?}");
        assert!(s.kc <= GPU_MAX_SERIAL, "{c:?}: {s:?}");
        assert!(
            (s.parts - 1) * s.kc < c.k && s.parts * s.kc >= c.k,
            "{c:?}: {s:?}"
        );
    }
}

#[test]
fn split_products_are_bitwise_deterministic() {
    let gpu = gpu();
    let mut r = rng(6);
    let (m, n, k) = (37, 29, 1500);
    let a = gpu.storage_from("a", &values(&mut r, k * m));
    let b = gpu.storage_from("b", &values(&mut r, k * n));
    assert!(k_split(m, n, k).parts > 1);
    let run = |wgrad: bool| {
        let c = gpu.storage("c", (m * n * 4) as u64);
        let bias = gpu.storage("bias grad", (m * 4) as u64);
        let (a, b) = (
            MatrixAt::dense(Buf::from(&a), m),
            MatrixAt::dense(Buf::from(&b), n),
        );
        let cm = MatrixAt::dense(Buf::from(&c), n);
        run_graph(&gpu, |g| {
            if wgrad {
                let p = WeightGrad {
                    m,
                    n,
                    k,
                    a,
                    b,
                    c: cm,
                    bias_grad: Some((Buf::from(&bias), 0)),
                };
                record_weight_grad(g, "wgrad", &p, GemmVariant::Split)
            } else {
                let p = Gemm {
                    m,
                    n,
                    k,
                    a,
                    b,
                    c: Some(cm),
                    ct: None,
                    bias: None,
                    relu: false,
                    mask: None,
                };
                record_gemm(g, "gemm", &p, GemmVariant::Split)
            }
        });
        let mut out = gpu.read_f32(&c, 0, m * n).unwrap();
        if wgrad {
            out.extend(gpu.read_f32(&bias, 0, m).unwrap());
        }
        out
    };
    for wgrad in [false, true] {
        let (x, y) = (run(wgrad), run(wgrad));
        assert!(x.iter().any(|&v| v != 0.0));
        assert!(
            x.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
            "split product (weight gradient: {wgrad}) differs between two runs"
        );
    }
}

#[test]
fn unaligned_operands_fall_back_to_the_tiled_kernel() {
    // N = 13 cannot take vec4 stores: the launcher must still be right.
    let gpu = gpu();
    let (m, n, k) = (9, 13, 5);
    let mut r = rng(3);
    let a = values(&mut r, k * m);
    let b = values(&mut r, k * n);
    let (ab, bb) = (gpu.storage_from("a", &a), gpu.storage_from("b", &b));
    let cb = gpu.storage_from("c", &vec![POISON; m * n]);
    let p = Gemm {
        m,
        n,
        k,
        a: MatrixAt::dense(Buf::from(&ab), m),
        b: MatrixAt::dense(Buf::from(&bb), n),
        c: Some(MatrixAt::dense(Buf::from(&cb), n)),
        ct: None,
        bias: None,
        relu: false,
        mask: None,
    };
    // Asked for the register kernel, the launcher records the tiled one.
    let mut g = ttrec::graph::GraphBuilder::new(&gpu);
    record_gemm(&mut g, "gemm", &p, GemmVariant::Registers).unwrap();
    let plan = g.build().unwrap();
    assert_eq!(plan.labels(), ["gemm (gemm_tiled)"], "the kernel that ran");
    plan.run().unwrap();
    gpu.wait().unwrap();
    // An aligned product (M = 8, N = 12) keeps the register kernel.
    let aligned = Gemm {
        m: 8,
        n: 12,
        a: MatrixAt::dense(Buf::from(&ab), 8),
        c: Some(MatrixAt::dense(Buf::from(&cb), 12)),
        b: MatrixAt::dense(Buf::from(&bb), 12),
        ..p.clone()
    };
    let mut g = ttrec::graph::GraphBuilder::new(&gpu);
    record_gemm(&mut g, "gemm", &aligned, GemmVariant::Registers).unwrap();
    assert_eq!(g.build().unwrap().labels(), ["gemm (gemm_tn)"]);
    let want = twin::gemm_tn(
        m,
        n,
        k,
        &a,
        At {
            stride: m,
            offset: 0,
        },
        &b,
        At {
            stride: n,
            offset: 0,
        },
    );
    assert_close(
        "unaligned",
        &gpu.read_f32(&cb, 0, m * n).unwrap(),
        &want,
        1e-5,
        1e-6,
    );
}

#[test]
fn products_are_bitwise_deterministic() {
    let gpu = gpu();
    let mut r = rng(5);
    let (m, n, k) = (50, 64, 96);
    let a = gpu.storage_from("a", &values(&mut r, k * 52));
    let b = gpu.storage_from("b", &values(&mut r, k * n));
    let run = |variant| {
        let c = gpu.storage("c", (m * n * 4) as u64);
        let p = Gemm {
            m,
            n,
            k,
            a: MatrixAt::dense(Buf::from(&a), 52),
            b: MatrixAt::dense(Buf::from(&b), n),
            c: Some(MatrixAt::dense(Buf::from(&c), n)),
            ct: None,
            bias: None,
            relu: false,
            mask: None,
        };
        run_graph(&gpu, |g| record_gemm(g, "gemm", &p, variant));
        gpu.read_f32(&c, 0, m * n).unwrap()
    };
    for variant in [
        GemmVariant::Registers,
        GemmVariant::Tiled,
        GemmVariant::Split,
    ] {
        let (x, y) = (run(variant), run(variant));
        assert!(
            x.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{variant:?}"
        );
    }
}
