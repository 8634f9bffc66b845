//! Launcher of `shaders/matmul.wgsl`: the MLPs' matrix products C = A^T B with fused epilogues,
//! and the transposes that give every product that form.

use crate::error::{Error, Result};
use crate::gpu::shaders::Kernel;
use crate::gpu::Gpu;
use crate::graph::{Buf, GraphBuilder};
use crate::kernels::named;
use crate::kernels::{groups, launch, launch_grid, MatrixAt};

/// How a product runs; chosen once per adapter ([`GemmVariant::for_gpu`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmVariant {
    /// Register blocks, no workgroup memory: the default on every adapter (fastest measured on
    /// lavapipe and on the H100).
    Registers,
    /// 64 x 64 tiles through workgroup memory: kept for GPUs where it may win (slower on the H100
    /// so far).
    Tiled,
}

impl GemmVariant {
    /// The variant for `gpu`: the register kernels everywhere for now. Measured on an NVIDIA H100
    /// (Vulkan) in the DLRM step, they beat the tiled kernels (11,700 vs 8,000 samples/s at batch
    /// 128, 32,200 vs 21,700 at 2048), though both are far from the GPU's rate: their time
    /// grows with K whatever M x N, so the long serial k loops (the weight gradient's K is the
    /// batch) need splitting across invocations before GPUs run them well.
    pub fn for_gpu(_gpu: &Gpu) -> Self {
        GemmVariant::Registers
    }
}

/// `C[M, N] = A^T B` with A stored `[K, M]`, B stored `[K, N]`, then the epilogue: + `bias[n]`, ReLU,
/// zeroed where mask[m, n] <= 0; stored as C and/or C^T ([N, M]).
#[derive(Clone, Debug)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: MatrixAt,
    pub b: MatrixAt,
    pub c: Option<MatrixAt>,
    pub ct: Option<MatrixAt>,
    /// (buffer, element offset) of N values added to every row.
    pub bias: Option<(Buf, usize)>,
    pub relu: bool,
    pub mask: Option<MatrixAt>,
}

/// A weight gradient C = A^T B stored as C, and the bias gradient sum_k A[k, m] where given.
#[derive(Clone, Debug)]
pub struct WeightGrad {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: MatrixAt,
    pub b: MatrixAt,
    pub c: MatrixAt,
    pub bias_grad: Option<(Buf, usize)>,
}

fn quad(x: usize) -> bool {
    x.is_multiple_of(4)
}

fn aligned(x: &MatrixAt) -> bool {
    quad(x.stride) && quad(x.offset)
}

/// Whether the register kernels can run a product: vec4 alignment of every operand and rows of
/// A long enough for vec4 loads up to pad4(M).
fn fits_registers(m: usize, n: usize, a: &MatrixAt, b: &MatrixAt, others: &[&MatrixAt]) -> bool {
    quad(n)
        && aligned(a)
        && aligned(b)
        && a.stride >= m.div_ceil(4) * 4
        && others.iter().all(|x| aligned(x))
}

fn check_dims(m: usize, n: usize, k: usize) -> Result<()> {
    if m == 0 || n == 0 || k == 0 {
        return Err(Error::shape(
            None,
            format!("matrix product of {m} x {n} x {k} has an empty dimension"),
        ));
    }
    Ok(())
}

struct Launch {
    kernel: Kernel,
    groups: [u32; 3],
    tm: usize,
    tn: usize,
}

fn choose_launch(
    g: &GraphBuilder,
    m: usize,
    n: usize,
    variant: GemmVariant,
    wgrad: bool,
) -> Result<Launch> {
    match variant {
        GemmVariant::Registers => {
            // 8 rows x 4 vec4 columns where N allows: the measured best on lavapipe (14.5
            // GFLOP/s on 128 x 512 x 368 against 11.7 for 8 x 2; 8 x 8 spills and runs 5x slower).
            let tm = if m <= 4 { 4 } else { 8 };
            let tn = [4, 2, 1]
                .into_iter()
                .find(|&t| n.is_multiple_of(4 * t))
                .unwrap_or(1);
            let inv = m.div_ceil(tm) as u64 * (n / (4 * tn)) as u64;
            Ok(Launch {
                kernel: if wgrad {
                    Kernel::GemmTnWgrad
                } else {
                    Kernel::GemmTn
                },
                groups: groups(g, inv),
                tm,
                tn,
            })
        }
        GemmVariant::Tiled => {
            let groups = [n.div_ceil(64) as u32, m.div_ceil(64) as u32, 1];
            let max = g.gpu().limits().max_compute_workgroups_per_dimension;
            if groups[0] > max || groups[1] > max {
                return Err(Error::shape(
                    None,
                    format!("matrix product of {m} x {n} is over the adapter's grid"),
                ));
            }
            Ok(Launch {
                kernel: if wgrad {
                    Kernel::GemmTiledWgrad
                } else {
                    Kernel::GemmTiled
                },
                groups,
                tm: 8,
                tn: 1,
            })
        }
    }
}

fn flag(b: bool) -> f64 {
    b as u8 as f64
}

/// The override constants every product kernel (forward and weight gradient, both variants)
/// takes: the sizes `[M, N, K]`, the strides and element offsets of `[A, B, C]`, the bias
/// offset and the register tile of `launch`. Each launcher appends its own epilogue flags.
fn product_constants(
    [m, n, k]: [usize; 3],
    [a, b, c]: [&MatrixAt; 3],
    bias_off: usize,
    launch: &Launch,
) -> Vec<(&'static str, f64)> {
    vec![
        ("M", m as f64),
        ("N", n as f64),
        ("K", k as f64),
        ("LDA", a.stride as f64),
        ("LDB", b.stride as f64),
        ("LDC", c.stride as f64),
        ("A_OFF", a.offset as f64),
        ("B_OFF", b.offset as f64),
        ("C_OFF", c.offset as f64),
        ("BIAS_OFF", bias_off as f64),
        ("TM", launch.tm as f64),
        ("TN", launch.tn as f64),
    ]
}

/// Adds product `p` with `variant` (the tiled kernel where the register kernels' alignment does
/// not hold).
pub fn record_gemm(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    p: &Gemm,
    variant: GemmVariant,
) -> Result<()> {
    check_dims(p.m, p.n, p.k)?;
    if p.c.is_none() && p.ct.is_none() {
        return Err(Error::shape(None, "a matrix product with no output"));
    }
    let others: Vec<&MatrixAt> = p.c.iter().chain(p.mask.as_ref()).collect();
    let bias_ok = p.bias.as_ref().is_none_or(|(_, o)| quad(*o));
    let variant = if variant == GemmVariant::Registers
        && !(bias_ok && fits_registers(p.m, p.n, &p.a, &p.b, &others))
    {
        GemmVariant::Tiled
    } else {
        variant
    };
    let l = choose_launch(g, p.m, p.n, variant, false)?;
    let ro = Buf::from(g.gpu().placeholder());
    let none = |buf: Buf| MatrixAt {
        buf,
        stride: 4,
        offset: 0,
    };
    // Absent C and C^T: distinct read-write placeholders (writable bindings may not alias).
    let rw = |i| Buf::from(g.gpu().placeholder_rw_n(i));
    let (rw0, rw1) = (rw(0), rw(1));
    let c = p.c.clone().unwrap_or_else(|| none(rw0));
    let ct = p.ct.clone().unwrap_or_else(|| none(rw1));
    let mask = p.mask.clone().unwrap_or_else(|| none(ro.clone()));
    let (bias, bias_off) = p.bias.clone().unwrap_or((ro, 0));
    let mut constants = product_constants([p.m, p.n, p.k], [&p.a, &p.b, &c], bias_off, &l);
    constants.extend([
        ("LDCT", ct.stride as f64),
        ("LDM", mask.stride as f64),
        ("CT_OFF", ct.offset as f64),
        ("M_OFF", mask.offset as f64),
        ("BIAS", flag(p.bias.is_some())),
        ("RELU", flag(p.relu)),
        ("MASK", flag(p.mask.is_some())),
        ("STORE_C", flag(p.c.is_some())),
        ("STORE_CT", flag(p.ct.is_some())),
    ]);
    launch_grid(
        g,
        format!("{} ({})", label.into(), l.kernel.entry()),
        l.kernel,
        &constants,
        named![
            a = p.a.buf.clone(),
            b = p.b.buf.clone(),
            c = c.buf,
            bias,
            mask = mask.buf,
            ct = ct.buf,
        ],
        l.groups,
    )
}

/// Adds weight gradient `p` (and its bias gradient).
pub fn record_weight_grad(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    p: &WeightGrad,
    variant: GemmVariant,
) -> Result<()> {
    check_dims(p.m, p.n, p.k)?;
    let bias_ok = p.bias_grad.as_ref().is_none_or(|(_, o)| quad(*o));
    let variant = if variant == GemmVariant::Registers
        && !(bias_ok && quad(p.m) && fits_registers(p.m, p.n, &p.a, &p.b, &[&p.c]))
    {
        GemmVariant::Tiled
    } else {
        variant
    };
    let l = choose_launch(g, p.m, p.n, variant, true)?;
    let (bias, bias_off) = p
        .bias_grad
        .clone()
        .unwrap_or_else(|| (Buf::from(g.gpu().placeholder_rw()), 0));
    let mut constants = product_constants([p.m, p.n, p.k], [&p.a, &p.b, &p.c], bias_off, &l);
    constants.push(("BIAS_GRAD", flag(p.bias_grad.is_some())));
    launch_grid(
        g,
        format!("{} ({})", label.into(), l.kernel.entry()),
        l.kernel,
        &constants,
        named![
            a = p.a.buf.clone(),
            b = p.b.buf.clone(),
            c = p.c.buf.clone(),
            bias_grad = bias,
        ],
        l.groups,
    )
}

/// Adds out = input^T for a `rows x cols` matrix (dimensions, strides and offsets multiples
/// of 4).
pub fn record_transpose(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    rows: usize,
    cols: usize,
    input: &MatrixAt,
    output: &MatrixAt,
) -> Result<()> {
    if !(quad(rows) && quad(cols) && aligned(input) && aligned(output)) {
        return Err(Error::shape(
            None,
            format!("transpose of {rows} x {cols} needs dimensions, strides and offsets in multiples of 4"),
        ));
    }
    launch(
        g,
        label,
        Kernel::Transpose,
        &[
            ("ROWS", rows as f64),
            ("COLS", cols as f64),
            ("IN_LD", input.stride as f64),
            ("OUT_LD", output.stride as f64),
            ("IN_OFF", input.offset as f64),
            ("OUT_OFF", output.offset as f64),
        ],
        named![input = input.buf.clone(), output = output.buf.clone()],
        (rows * cols / 16) as u64,
    )
}
