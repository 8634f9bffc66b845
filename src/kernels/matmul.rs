//! Launcher of `shaders/matmul.wgsl`: the MLPs' matrix products with fused epilogues.

use crate::error::{Error, Result};
use crate::gpu::{grid, AdapterClass, Gpu};
use crate::graph::{Buf, GraphBuilder};
use crate::kernels::{MatrixAt, WORKGROUP};

/// Which product (see the shader's header): `Nt` forward, `Nn` input gradient, `Tn` weight
/// gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmLayout {
    /// C = A B^T, B stored [N, K].
    Nt,
    /// C = A B.
    Nn,
    /// C = A^T B, A stored [K, M].
    Tn,
}

/// How a product runs; chosen once per adapter ([`GemmVariant::for_gpu`]) since CPU adapters
/// and GPUs want opposite trade-offs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmVariant {
    /// Register blocks, no workgroup memory: CPU adapters (lavapipe).
    Registers,
    /// 64 x 64 tiles through workgroup memory: GPUs.
    Tiled,
}

impl GemmVariant {
    /// The variant for `gpu`'s adapter class.
    pub fn for_gpu(gpu: &Gpu) -> Self {
        match gpu.class() {
            AdapterClass::Cpu => GemmVariant::Registers,
            AdapterClass::Gpu => GemmVariant::Tiled,
        }
    }
}

/// One product C[M, N] = op(A) op(B) with its epilogue.
#[derive(Clone, Debug)]
pub struct Gemm {
    pub layout: GemmLayout,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: MatrixAt,
    pub b: MatrixAt,
    pub c: MatrixAt,
    /// `Nt`/`Nn`: bias added to every row (buffer, element offset). `Tn`: where the bias gradient
    /// (the sum of A over k) is written.
    pub bias: Option<(Buf, usize)>,
    /// `Nt`/`Nn`: max(0, .) after the bias.
    pub relu: bool,
    /// `Nt`/`Nn`: outputs are zeroed where `mask[m, n] <= 0` (the ReLU derivative of a layer's
    /// output).
    pub mask: Option<MatrixAt>,
}

fn quad(x: usize) -> bool {
    x.is_multiple_of(4)
}

impl Gemm {
    /// Whether the register kernels can run this product (vec4 alignment of every operand).
    pub fn fits_registers(&self) -> bool {
        let mats = [&self.a, &self.b, &self.c]
            .into_iter()
            .chain(self.mask.as_ref())
            .all(|x| quad(x.stride) && quad(x.offset));
        let inner = match self.layout {
            GemmLayout::Nt | GemmLayout::Nn => quad(self.k),
            GemmLayout::Tn => quad(self.m),
        };
        mats && inner && quad(self.n) && self.bias.as_ref().is_none_or(|(_, o)| quad(*o))
    }

    fn check(&self) -> Result<()> {
        if self.m == 0 || self.n == 0 || self.k == 0 {
            return Err(Error::shape(
                None,
                format!(
                    "matrix product of {} x {} x {} has an empty dimension",
                    self.m, self.n, self.k
                ),
            ));
        }
        if self.layout == GemmLayout::Tn && (self.relu || self.mask.is_some()) {
            return Err(Error::shape(
                None,
                "the weight-gradient product has no ReLU or mask epilogue",
            ));
        }
        Ok(())
    }
}

/// Adds product `p` with `variant` (falling back to the tiled kernel where the register kernels'
/// alignment does not hold).
pub fn record_gemm(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    p: &Gemm,
    variant: GemmVariant,
) -> Result<()> {
    p.check()?;
    let variant = if variant == GemmVariant::Registers && !p.fits_registers() {
        GemmVariant::Tiled
    } else {
        variant
    };
    let placeholder = Buf::from(g.gpu().placeholder());
    let (bias_buf, bias_off) = p.bias.clone().unwrap_or_else(|| (placeholder.clone(), 0));
    let mask = p.mask.clone().unwrap_or(MatrixAt {
        buf: placeholder.clone(),
        stride: 4,
        offset: 0,
    });
    let tm = match p.layout {
        GemmLayout::Tn if !p.m.is_multiple_of(8) => 4,
        _ if p.m <= 4 => 4,
        _ => 8,
    };
    let tn = if p.n.is_multiple_of(8) { 2 } else { 1 };
    let layout_code = match p.layout {
        GemmLayout::Nt => 0.0,
        GemmLayout::Nn => 1.0,
        GemmLayout::Tn => 2.0,
    };
    let constants = [
        ("M", p.m as f64),
        ("N", p.n as f64),
        ("K", p.k as f64),
        ("LDA", p.a.stride as f64),
        ("LDB", p.b.stride as f64),
        ("LDC", p.c.stride as f64),
        ("LDM", mask.stride as f64),
        ("A_OFF", p.a.offset as f64),
        ("B_OFF", p.b.offset as f64),
        ("C_OFF", p.c.offset as f64),
        ("M_OFF", mask.offset as f64),
        ("BIAS_OFF", bias_off as f64),
        (
            "BIAS",
            (p.layout != GemmLayout::Tn && p.bias.is_some()) as u8 as f64,
        ),
        ("RELU", p.relu as u8 as f64),
        ("MASK", p.mask.is_some() as u8 as f64),
        (
            "BIAS_GRAD",
            (p.layout == GemmLayout::Tn && p.bias.is_some()) as u8 as f64,
        ),
        ("TM", tm as f64),
        ("TN", tn as f64),
        ("LAYOUT", layout_code),
    ];
    let (entry, groups) = match variant {
        GemmVariant::Registers => {
            let entry = match p.layout {
                GemmLayout::Nt => "gemm_nt",
                GemmLayout::Nn => "gemm_nn",
                GemmLayout::Tn => "gemm_tn",
            };
            let inv = p.m.div_ceil(tm) as u64 * (p.n / (4 * tn)) as u64;
            let gr = grid(
                inv,
                WORKGROUP,
                g.gpu().limits().max_compute_workgroups_per_dimension,
            );
            (entry, gr)
        }
        GemmVariant::Tiled => {
            let entry = if p.layout == GemmLayout::Tn {
                "gemm_tiled_tn"
            } else {
                "gemm_tiled"
            };
            let gr = [p.n.div_ceil(64) as u32, p.m.div_ceil(64) as u32, 1];
            let max = g.gpu().limits().max_compute_workgroups_per_dimension;
            if gr[0] > max || gr[1] > max {
                return Err(Error::shape(
                    None,
                    format!(
                        "matrix product of {} x {} is over the adapter's grid",
                        p.m, p.n
                    ),
                ));
            }
            (entry, gr)
        }
    };
    let pipeline = g.gpu().pipeline("matmul", entry, &constants)?;
    let bindings = if p.layout == GemmLayout::Tn {
        vec![p.a.buf.clone(), p.b.buf.clone(), p.c.buf.clone(), bias_buf]
    } else {
        vec![
            p.a.buf.clone(),
            p.b.buf.clone(),
            p.c.buf.clone(),
            bias_buf,
            mask.buf,
        ]
    };
    g.dispatch(
        format!("{} ({entry})", label.into()),
        pipeline,
        bindings,
        groups,
    );
    Ok(())
}
