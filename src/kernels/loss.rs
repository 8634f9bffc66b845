//! Launcher of `shaders/loss.wgsl`: sigmoid + binary cross-entropy, and the probabilities.

use crate::error::Result;
use crate::gpu::shaders::Kernel;
use crate::graph::{Buf, Cost, GraphBuilder};
use crate::kernels::named;
use crate::kernels::{launch, launch_grid};

/// The per-step uniform of the loss (the WGSL `StepParams`): which slot of the statistics ring
/// this step writes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepParams {
    pub slot: u32,
    pub _pad: [u32; 3],
}

/// Values per slot of the statistics ring: mean loss (each sample's clamped as the evaluation's
/// log loss clamps it), correct predictions, 1.0 if a logit was non-finite, and the parameters'
/// non-finite code (a u32: 0 when finite; see [`super::finite`]).
pub const STATS_PER_STEP: usize = 4;

/// Adds the loss of `batch` logits (column 0 of rows of `ldz` values in `logits`) against
/// `labels`: dlogits (same layout, padding zeroed), its transpose `dlogits_t` [ldz, pad4(B)],
/// and the step's statistics in `stats`.
#[allow(clippy::too_many_arguments)]
pub fn record_bce(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    batch: usize,
    ldz: usize,
    step: Buf,
    logits: Buf,
    labels: Buf,
    dlogits: Buf,
    dlogits_t: Buf,
    stats: Buf,
) -> Result<()> {
    launch_grid(
        g,
        label,
        Kernel::Bce,
        &[
            ("BATCH", batch as f64),
            ("LDZ", ldz as f64),
            ("LDB", batch.div_ceil(4) as f64 * 4.0),
        ],
        named![step, logits, labels, dlogits, stats, dlogits_t],
        [1, 1, 1],
    )?;
    // One workgroup of 256: each invocation walks every 256th sample (zeroing its row's
    // padding), then a tree of 8 halvings sums the statistics.
    if let Some(m) = g.last_meta() {
        m.invocations = Some(256);
    }
    g.set_cost(Cost {
        flops: 10.0 * batch as f64,
        bytes: 4.0 * (batch * (3 * ldz + 1)) as f64,
        serial: (batch.div_ceil(256) * ldz + 8) as u64,
    });
    Ok(())
}

/// Adds `prob[b] = sigmoid(logits[b * ldz])`.
pub fn record_probabilities(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    batch: usize,
    ldz: usize,
    logits: Buf,
    prob: Buf,
) -> Result<()> {
    launch(
        g,
        label,
        Kernel::Probabilities,
        &[("BATCH", batch as f64), ("LDZ", ldz as f64)],
        named![logits, prob],
        batch as u64,
    )
}
