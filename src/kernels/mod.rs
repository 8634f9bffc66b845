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

use crate::gpu::grid;
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
