//! Launcher of `shaders/matmul.wgsl`: the MLPs' matrix products C = A^T B with fused epilogues.
//! The weights' transposed copies the forward reads are written by the MLPs' update
//! (`crate::nn::ParamArena`), so no step transposes.

use crate::error::{Error, Result};
use crate::gpu::shaders::Kernel;
use crate::gpu::{AdapterClass, Gpu};
use crate::graph::{Buf, Cost, GraphBuilder};
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
    /// The GPU class's products: 64 x 64 tiles through workgroup memory as vec4s (loaded as
    /// vec4s where the operands are aligned), a 4 x 4 register block per invocation, and split-K
    /// where the output tiles are too few to fill a GPU or K is long ([`k_split`]): partial sums
    /// to scratch, added in a fixed order by a combine kernel (bitwise deterministic, no
    /// atomics). Short-K products with few tiles ([`is_thin`]) run `gemm_thin` instead.
    Split,
}

impl GemmVariant {
    /// The variant for `gpu`'s class ([`GemmVariant::for_class`]). Measured on an NVIDIA H100
    /// (Vulkan) in the DLRM step, the register kernels beat the unsplit tiled kernels (11,700 vs
    /// 8,000 samples/s at batch 128, 32,200 vs 21,700 at 2048): both walk K in series, and the
    /// weight gradient's K is the batch, which [`GemmVariant::Split`] splits across workgroups.
    pub fn for_gpu(gpu: &Gpu) -> Self {
        Self::for_class(gpu.class())
    }

    /// The variant of kernel class `class`: the register kernels on CPU adapters, the split-K
    /// tiles on GPUs.
    pub fn for_class(class: AdapterClass) -> Self {
        match class {
            AdapterClass::Cpu => GemmVariant::Registers,
            AdapterClass::Gpu => GemmVariant::Split,
        }
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
        GemmVariant::Tiled | GemmVariant::Split => {
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
    if variant == GemmVariant::Split {
        return record_gemm_split(g, label.into(), p);
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
    )?;
    note_product(g, &l, [p.m, p.n, p.k], p.k, forward_out_bytes(p));
    Ok(())
}

/// Adds weight gradient `p` (and its bias gradient).
pub fn record_weight_grad(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    p: &WeightGrad,
    variant: GemmVariant,
) -> Result<()> {
    check_dims(p.m, p.n, p.k)?;
    if variant == GemmVariant::Split {
        return record_weight_grad_split(g, label.into(), p);
    }
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
    )?;
    let out = 4.0 * (p.m * p.n + p.bias_grad.as_ref().map_or(0, |_| p.m)) as f64;
    note_product(g, &l, [p.m, p.n, p.k], p.k, out);
    Ok(())
}

/// Bytes the forward epilogue moves: C and/or C^T written, the mask and the bias read.
fn forward_out_bytes(p: &Gemm) -> f64 {
    let mn = (p.m * p.n) as f64;
    let stores = p.c.is_some() as u8 + p.ct.is_some() as u8 + p.mask.is_some() as u8;
    4.0 * (mn * stores as f64 + p.bias.as_ref().map_or(0.0, |_| p.n as f64))
}

/// Records the counts of the product node just launched with `l`: `serial` multiply-adds per
/// accumulator, 2 M N K flops, A and B read once and `out_bytes` written.
fn note_product(g: &mut GraphBuilder, l: &Launch, [m, n, k]: [usize; 3], serial: usize, out: f64) {
    let invocations = match l.kernel {
        Kernel::GemmTn | Kernel::GemmTnWgrad => (m.div_ceil(l.tm) * (n / (4 * l.tn))) as u64,
        Kernel::GemmThin => (m * n) as u64,
        _ => l.groups.iter().map(|&x| x as u64).product::<u64>() * 256,
    };
    if let Some(meta) = g.last_meta() {
        meta.invocations = Some(invocations);
    }
    g.set_cost(Cost {
        flops: 2.0 * (m * n * k) as f64,
        bytes: 4.0 * (k * (m + n)) as f64 + out,
        serial: serial as u64,
    });
}

/// Workgroups a GPU-class product launches at least where its FLOPs are worth filling the GPU
/// (an H100 has 132 SMs; two workgroups each).
pub const GPU_MIN_WORKGROUPS: usize = 256;
/// Longest K range one invocation of a GPU-class product walks.
pub const GPU_MAX_SERIAL: usize = 512;
/// Products under this many FLOPs are split only to bound the serial chain.
pub const GPU_FILL_FLOPS: f64 = 1e6;
/// Shortest K range worth a part of its own: a part shorter than this costs its combine more
/// than it saves (a thin K of 4 is never cut in 2).
pub const GPU_MIN_PART: usize = 8;
/// Forward and input-gradient products with K at most this and too few 64 x 64 tiles to fill
/// the GPU run [`Kernel::GemmThin`]: one output per invocation, no split, no combine.
pub const GPU_THIN_K: usize = 64;
/// The GPU kernels' output tile (64 x 64).
const GPU_TILE: usize = 64;

/// How a GPU-class product splits K: `parts` ranges of `kc` (the last may be shorter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KSplit {
    pub parts: usize,
    pub kc: usize,
}

/// The split of an `m x n x k` product: enough parts that its tiles times parts reach
/// [`GPU_MIN_WORKGROUPS`] (products over [`GPU_FILL_FLOPS`]), but no part shorter than
/// [`GPU_MIN_PART`], and no part longer than [`GPU_MAX_SERIAL`]; one part where neither asks
/// for more. Chosen once, when the plan is built.
pub fn k_split(m: usize, n: usize, k: usize) -> KSplit {
    let tiles = m.div_ceil(GPU_TILE) * n.div_ceil(GPU_TILE);
    let fill = if 2.0 * (m * n * k) as f64 > GPU_FILL_FLOPS {
        GPU_MIN_WORKGROUPS.div_ceil(tiles).min(k / GPU_MIN_PART)
    } else {
        1
    };
    let want = fill.max(k.div_ceil(GPU_MAX_SERIAL)).clamp(1, k);
    let kc = k.div_ceil(want);
    KSplit {
        parts: k.div_ceil(kc),
        kc,
    }
}

/// Whether a GPU-class forward or input-gradient product runs [`Kernel::GemmThin`]: K at most
/// [`GPU_THIN_K`] and fewer output tiles than [`GPU_MIN_WORKGROUPS`] (with more, the tiles
/// fill the GPU unsplit).
pub fn is_thin(m: usize, n: usize, k: usize) -> bool {
    k <= GPU_THIN_K && m.div_ceil(GPU_TILE) * n.div_ceil(GPU_TILE) < GPU_MIN_WORKGROUPS
}

/// Whether `gemm_gpu` and `gemm_gpu_wgrad` can load `a` and `b` as vec4s (else their `_any`
/// twins load scalars): strides and offsets multiples
/// of 4 and rows at least pad4(M) and pad4(N) long.
fn fits_v4(m: usize, n: usize, a: &MatrixAt, b: &MatrixAt) -> bool {
    aligned(a) && aligned(b) && a.stride >= m.div_ceil(4) * 4 && b.stride >= n.div_ceil(4) * 4
}

/// The grid of a GPU-class product: output tiles in x (n) and y (m), parts in z.
fn split_grid(g: &GraphBuilder, m: usize, n: usize, s: KSplit) -> Result<[u32; 3]> {
    let grid = [n.div_ceil(GPU_TILE), m.div_ceil(GPU_TILE), s.parts];
    let max = g.gpu().limits().max_compute_workgroups_per_dimension as usize;
    if grid.iter().any(|&x| x > max) {
        return Err(Error::shape(
            None,
            format!(
                "matrix product of {m} x {n} in {} parts is over the adapter's grid",
                s.parts
            ),
        ));
    }
    Ok(grid.map(|x| x as u32))
}

/// Notes the counts of a `gemm_gpu*` node over `grid`.
fn note_split_product(
    g: &mut GraphBuilder,
    grid: [u32; 3],
    [m, n, k]: [usize; 3],
    s: KSplit,
    out: f64,
) {
    let launch = Launch {
        kernel: Kernel::GemmGpu,
        groups: grid,
        tm: 4,
        tn: 1,
    };
    note_product(g, &launch, [m, n, k], s.kc, out);
}

/// Notes the counts of a combine node: `elements` outputs, each the sum of `parts` values.
fn note_combine(g: &mut GraphBuilder, elements: usize, parts: usize, out: f64) {
    g.set_cost(Cost {
        flops: (elements * (parts - 1)) as f64,
        bytes: 4.0 * (elements * parts) as f64 + out,
        serial: parts as u64,
    });
}

/// The override constants of the GPU-class kernels beyond [`product_constants`].
fn split_constants(s: KSplit, split: bool) -> [(&'static str, f64); 3] {
    [
        ("KC", s.kc as f64),
        ("SPLIT", flag(split)),
        ("PARTS", s.parts as f64),
    ]
}

/// [`record_gemm`] with [`GemmVariant::Split`]: `gemm_gpu` with the epilogue in one part, or
/// `gemm_gpu` into scratch and `gemm_combine`.
fn record_gemm_split(g: &mut GraphBuilder, label: String, p: &Gemm) -> Result<()> {
    let thin = is_thin(p.m, p.n, p.k);
    let s = if thin {
        KSplit { parts: 1, kc: p.k }
    } else {
        k_split(p.m, p.n, p.k)
    };
    let grid = split_grid(g, p.m, p.n, s)?;
    let kernel = if thin {
        Kernel::GemmThin
    } else if fits_v4(p.m, p.n, &p.a, &p.b) {
        Kernel::GemmGpu
    } else {
        Kernel::GemmGpuAny
    };
    let ro = Buf::from(g.gpu().placeholder());
    let rw = Buf::from(g.gpu().placeholder_rw());
    let none = |buf: &Buf| MatrixAt::dense(buf.clone(), 4);
    let c = p.c.clone().unwrap_or_else(|| none(&rw));
    let ct = p.ct.clone().unwrap_or_else(|| none(&rw));
    let mask = p.mask.clone().unwrap_or_else(|| none(&ro));
    let (bias, bias_off) = p.bias.clone().unwrap_or((ro.clone(), 0));
    let split = s.parts > 1;
    let scratch =
        split.then(|| g.transient(&format!("{label} parts"), (4 * s.parts * p.m * p.n) as u64));
    let tile_c = scratch
        .clone()
        .map_or(c.clone(), |b| MatrixAt::dense(b, p.n));
    let tiles = Launch {
        kernel,
        groups: grid,
        tm: 4,
        tn: 1,
    };
    // The tiles write C (or the scratch), the combine C: each is told its own place.
    let constants_for = |c_at: &MatrixAt| {
        let mut k = product_constants([p.m, p.n, p.k], [&p.a, &p.b, c_at], bias_off, &tiles);
        k.extend([
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
        k.extend(split_constants(s, split));
        k
    };
    let constants = constants_for(&tile_c);
    let (tile_bias, tile_mask, tile_ct) = if split {
        (ro.clone(), ro.clone(), rw.clone())
    } else {
        (bias.clone(), mask.buf.clone(), ct.buf.clone())
    };
    let bindings = named![
        a = p.a.buf.clone(),
        b = p.b.buf.clone(),
        c = tile_c.buf,
        bias = tile_bias,
        mask = tile_mask,
        ct = tile_ct,
    ];
    let node = format!("{label} ({})", kernel.entry());
    if thin {
        launch(g, node, kernel, &constants, bindings, (p.m * p.n) as u64)?;
        note_product(g, &tiles, [p.m, p.n, p.k], p.k, forward_out_bytes(p));
        return Ok(());
    }
    launch_grid(g, node, kernel, &constants, bindings, grid)?;
    let Some(parts) = scratch else {
        note_split_product(g, grid, [p.m, p.n, p.k], s, forward_out_bytes(p));
        return Ok(());
    };
    note_split_product(
        g,
        grid,
        [p.m, p.n, p.k],
        s,
        4.0 * (s.parts * p.m * p.n) as f64,
    );
    launch(
        g,
        format!("{label} (gemm_combine)"),
        Kernel::GemmCombine,
        &constants_for(&c),
        named![parts, c = c.buf, bias, mask = mask.buf, ct = ct.buf],
        (p.m * p.n) as u64,
    )?;
    note_combine(g, p.m * p.n, s.parts, forward_out_bytes(p));
    Ok(())
}

/// [`record_weight_grad`] with [`GemmVariant::Split`]: `gemm_gpu_wgrad` storing C and the bias
/// gradient in one part, or into scratch and `gemm_combine_wgrad`.
fn record_weight_grad_split(g: &mut GraphBuilder, label: String, p: &WeightGrad) -> Result<()> {
    let s = k_split(p.m, p.n, p.k);
    let grid = split_grid(g, p.m, p.n, s)?;
    let rw = Buf::from(g.gpu().placeholder_rw());
    let (bias_grad, bias_off) = p.bias_grad.clone().unwrap_or((rw.clone(), 0));
    let split = s.parts > 1;
    let scratch = split.then(|| {
        g.transient(
            &format!("{label} parts"),
            (4 * s.parts * (p.m * p.n + p.m)) as u64,
        )
    });
    let tile_c = scratch
        .clone()
        .map_or(p.c.clone(), |b| MatrixAt::dense(b, p.n));
    let kernel = if fits_v4(p.m, p.n, &p.a, &p.b) {
        Kernel::GemmGpuWgrad
    } else {
        Kernel::GemmGpuWgradAny
    };
    let tiles = Launch {
        kernel,
        groups: grid,
        tm: 4,
        tn: 1,
    };
    let mut constants = product_constants([p.m, p.n, p.k], [&p.a, &p.b, &tile_c], bias_off, &tiles);
    constants.push(("BIAS_GRAD", flag(p.bias_grad.is_some())));
    constants.extend(split_constants(s, split));
    let out = 4.0 * (p.m * p.n + p.bias_grad.as_ref().map_or(0, |_| p.m)) as f64;
    launch_grid(
        g,
        format!("{label} ({})", kernel.entry()),
        kernel,
        &constants,
        named![
            a = p.a.buf.clone(),
            b = p.b.buf.clone(),
            c = tile_c.buf,
            bias_grad = if split { rw.clone() } else { bias_grad.clone() },
        ],
        grid,
    )?;
    let Some(parts) = scratch else {
        note_split_product(g, grid, [p.m, p.n, p.k], s, out);
        return Ok(());
    };
    note_split_product(
        g,
        grid,
        [p.m, p.n, p.k],
        s,
        4.0 * (s.parts * (p.m * p.n + p.m)) as f64,
    );
    let rows = p.bias_grad.as_ref().map_or(0, |_| p.m);
    let mut constants = product_constants([p.m, p.n, p.k], [&p.a, &p.b, &p.c], bias_off, &tiles);
    constants.push(("BIAS_GRAD", flag(p.bias_grad.is_some())));
    constants.extend(split_constants(s, split));
    launch(
        g,
        format!("{label} (gemm_combine_wgrad)"),
        Kernel::GemmCombineWgrad,
        &constants,
        named![parts, c = p.c.buf.clone(), bias_grad],
        (p.m * p.n + rows) as u64,
    )?;
    note_combine(g, p.m * p.n + rows, s.parts, out);
    Ok(())
}
