//! Thin launchers of the WGSL kernel families under `shaders/`: each adds nodes to a
//! [`crate::graph::GraphBuilder`] with a pipeline specialised for the shapes at hand.

pub mod cache;
pub mod embedding;
pub mod interaction;
pub mod loss;
pub mod matmul;
pub mod optim;
pub mod route;
pub mod tt;

use crate::error::Result;
use crate::gpu::grid;
use crate::gpu::shaders::Kernel;
use crate::graph::{Buf, GraphBuilder};

/// Threads per workgroup of every ttrec kernel (the WGSL `WG`).
pub const WORKGROUP: u32 = 64;

/// The workgroup grid for `invocations` threads of a kernel recorded into `g` (folded into y
/// past the adapter's per-dimension limit).
pub(crate) fn groups(g: &GraphBuilder, invocations: u64) -> [u32; 3] {
    grid(
        invocations,
        WORKGROUP,
        g.gpu().limits().max_compute_workgroups_per_dimension,
    )
}

/// The one way kernels are launched: `kernel` specialised by `constants` (pipeline cached), with
/// `bindings[i]` at `@binding(i)`, over `invocations` threads in workgroups of [`WORKGROUP`].
pub(crate) fn launch(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    kernel: Kernel,
    constants: &[(&str, f64)],
    bindings: Vec<Buf>,
    invocations: u64,
) -> Result<()> {
    let grid = groups(g, invocations);
    launch_grid(g, label, kernel, constants, bindings, grid)
}

/// [`launch`] over an explicit workgroup grid (kernels with their own workgroup shape).
pub(crate) fn launch_grid(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    kernel: Kernel,
    constants: &[(&str, f64)],
    bindings: Vec<Buf>,
    grid: [u32; 3],
) -> Result<()> {
    let pipeline = g.gpu().pipeline(kernel, constants)?;
    g.dispatch(label, pipeline, bindings, grid);
    Ok(())
}

/// A row-major f32 matrix inside a buffer: element (r, c) at `offset + r * stride + c` (in
/// elements). Lets kernels read and write sub-blocks of shared buffers, e.g. each embedding
/// table's pooled rows as one column block of the interaction's input, with no copies.
#[derive(Clone, Debug)]
pub struct MatrixAt {
    pub buf: Buf,
    pub stride: usize,
    pub offset: usize,
}

impl MatrixAt {
    /// A dense matrix of `cols` columns at the start of `buf`.
    pub fn dense(buf: Buf, cols: usize) -> Self {
        MatrixAt {
            buf,
            stride: cols,
            offset: 0,
        }
    }
}
