//! Launcher of `shaders/optim.wgsl`: fused SGD and Adagrad over a whole parameter buffer.

use crate::error::Result;
use crate::gpu::shaders::Kernel;
use crate::graph::{Buf, Cost, GraphBuilder};
use crate::kernels::launch;
use crate::kernels::named;

/// Uniform parameters of an update (the WGSL `OptParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct OptParams {
    pub lr: f32,
    pub eps: f32,
    pub len: u32,
    pub _pad: u32,
}

/// Which update the kernel applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateKind {
    Sgd,
    Adagrad,
}

/// Adds the update of `len` elements of `weight` from `grad` (and `state` for Adagrad; any buffer
/// for SGD) with the learning rate and eps held in the uniform buffer `params`.
#[allow(clippy::too_many_arguments)]
pub fn record_update(
    g: &mut GraphBuilder,
    label: &str,
    kind: UpdateKind,
    params: Buf,
    grad: Buf,
    weight: Buf,
    state: Buf,
    len: usize,
) -> Result<()> {
    let code = match kind {
        UpdateKind::Sgd => 0.0,
        UpdateKind::Adagrad => 1.0,
    };
    launch(
        g,
        label,
        Kernel::Optim,
        &[("OPTIMIZER", code)],
        named![params, grad, weight, state],
        len as u64,
    )?;
    // Elementwise: read parameter, gradient and state, write parameter and state.
    g.set_cost(Cost {
        flops: 4.0 * len as f64,
        bytes: 20.0 * len as f64,
        serial: 1,
    });
    Ok(())
}
