//! Thin launchers of the WGSL kernel families under `shaders/`: each adds nodes to a
//! [`crate::graph::GraphBuilder`] with a pipeline specialised for the shapes at hand.

pub mod optim;
pub mod tt;

/// Threads per workgroup of every ttrec kernel (the WGSL `WG`).
pub const WORKGROUP: u32 = 64;
