//! Launcher of `shaders/qr.wgsl`: the combination of dlrm's quotient-remainder tables' two pooled
//! parts into their slots of T (forward), and its gradient back onto the parts (backward). The
//! parts themselves are pooled and updated by the dense-table kernels ([`super::embedding`]).

use crate::error::Result;
use crate::gpu::shaders::Kernel;
use crate::graph::{Buf, Cost, GraphBuilder};
use crate::kernels::launch;
use crate::kernels::named;

/// How a QR table combines its two pooled parts (dlrm's `--qr-operation`; the WGSL `op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QrOp {
    /// Elementwise product.
    Mult,
    /// Elementwise sum.
    Add,
    /// The quotient part, then the remainder part (each D / 2).
    Concat,
}

impl QrOp {
    /// The shader's code of the operation.
    pub fn code(self) -> u32 {
        match self {
            QrOp::Mult => 0,
            QrOp::Add => 1,
            QrOp::Concat => 2,
        }
    }
}

/// One QR table (the WGSL `QrMeta`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct QrMeta {
    /// First column of the table's slot in T.
    pub t_col: u32,
    /// First column of its quotient part in E (the remainder part follows).
    pub e_col: u32,
    /// [`QrOp::code`].
    pub op: u32,
    pub _pad: u32,
}

/// Shapes of a combination: `tables` QR tables over `bags` rows; slots of `dim` values in T
/// (`t_stride` per row), parts of `part` values in E (`e_stride` per row).
#[derive(Clone, Copy, Debug)]
pub struct QrShape {
    pub tables: usize,
    pub bags: usize,
    pub dim: usize,
    pub part: usize,
    pub t_stride: usize,
    pub e_stride: usize,
}

impl QrShape {
    fn overrides(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("TABLES", self.tables as f64),
            ("BAGS", self.bags as f64),
            ("D", self.dim as f64),
            ("PART", self.part as f64),
            ("T_STRIDE", self.t_stride as f64),
            ("E_STRIDE", self.e_stride as f64),
        ]
    }
}

/// Adds the forward combination: every QR table's slot of `t` from its parts in `e` (`meta`:
/// one [`QrMeta`] per table).
pub fn record_qr_combine(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    s: QrShape,
    meta: Buf,
    e: Buf,
    t: Buf,
) -> Result<()> {
    let n = (s.bags * s.tables * s.dim) as u64;
    launch(
        g,
        label,
        Kernel::QrCombine,
        &s.overrides(),
        named![meta, e, t],
        n,
    )?;
    // Elementwise: one op per output value, two reads (one for concat) and a write.
    g.set_cost(Cost {
        flops: n as f64,
        bytes: 4.0 * 3.0 * n as f64,
        serial: 1,
    });
    Ok(())
}

/// Adds the backward of the combination: `de` (E's layout) from `dt` (T's) and the forward's `e`.
pub fn record_qr_split(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    s: QrShape,
    meta: Buf,
    e: Buf,
    dt: Buf,
    de: Buf,
) -> Result<()> {
    let n = (s.bags * s.tables * 2 * s.part) as u64;
    launch(
        g,
        label,
        Kernel::QrSplit,
        &s.overrides(),
        named![meta, e, dt, de],
        n,
    )?;
    // Elementwise: a product (mult) per value, dT and E read, dE written.
    g.set_cost(Cost {
        flops: n as f64,
        bytes: 4.0 * 3.0 * n as f64,
        serial: 1,
    });
    Ok(())
}
