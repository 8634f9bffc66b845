//! Launcher of `shaders/finite.wgsl`: the per-step finiteness checks of parameter buffers,
//! each raising word [`NON_FINITE_WORD`] of the step's slot of the statistics ring to its
//! region's code when it finds a NaN or an infinity.

use crate::error::Result;
use crate::gpu::shaders::Kernel;
use crate::graph::{Buf, Cost, GraphBuilder};
use crate::kernels::launch;
use crate::kernels::named;

/// The word of a statistics slot that the checks raise (see `kernels::loss::STATS_PER_STEP`).
pub const NON_FINITE_WORD: usize = 3;

/// Threads of a span check at most (each loops over its share of the region).
const SPAN_THREADS: u64 = 1 << 16;

/// One region to check (the WGSL `FiniteRegion`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FiniteRegion {
    /// First value of a span; first group row of a shard.
    pub offset: u32,
    /// Values of a span; rows of a shard.
    pub len: u32,
    /// What the slot's word becomes (at least) when a value is non-finite.
    pub code: u32,
    /// Values per row (shards).
    pub dim: u32,
    /// Segments of the batch (shards).
    pub segments: u32,
    pub _pad: [u32; 3],
}

/// Adds the check of `region.len` values of `values` from `region.offset` (the region's
/// parameters in the uniform buffer `params`); `step` is the step's [`super::loss::StepParams`].
pub fn record_finite_span(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    len: usize,
    step: Buf,
    region: Buf,
    values: Buf,
    stats: Buf,
) -> Result<()> {
    record_finite_span_as(g, label, len, step, region, values, stats, false)
}

/// [`record_finite_span`] over `len` 32-bit words that each hold two f16 values where `halves`
/// (TT cores stored as f16).
#[allow(clippy::too_many_arguments)]
pub fn record_finite_span_as(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    len: usize,
    step: Buf,
    region: Buf,
    values: Buf,
    stats: Buf,
    halves: bool,
) -> Result<()> {
    let constants: &[(&str, f64)] = if halves { &[("HALVES", 1.0)] } else { &[] };
    launch(
        g,
        label,
        Kernel::FiniteSpan,
        constants,
        named![step, region, values, stats],
        (len as u64).clamp(1, SPAN_THREADS),
    )?;
    // A bit test per value (no flops), a grid-stride loop over the region.
    g.set_cost(Cost {
        flops: 0.0,
        bytes: 4.0 * len as f64,
        serial: (len as u64).div_ceil(SPAN_THREADS).max(1),
    });
    Ok(())
}

/// Adds the check of the rows of one dense-table shard (`weight`) that the step's `segs`
/// updated: `segments * dim` threads.
#[allow(clippy::too_many_arguments)]
pub fn record_finite_rows(
    g: &mut GraphBuilder,
    label: impl Into<String>,
    segments: usize,
    dim: usize,
    step: Buf,
    region: Buf,
    segs: Buf,
    weight: Buf,
    stats: Buf,
) -> Result<()> {
    launch(
        g,
        label,
        Kernel::FiniteRows,
        &[],
        named![step, region, segs, weight, stats],
        (segments * dim).max(1) as u64,
    )?;
    g.set_cost(Cost {
        flops: 0.0,
        bytes: 4.0 * (segments * (dim + 3)) as f64,
        serial: 1,
    });
    Ok(())
}
