//! Launcher of `shaders/optim.wgsl`: fused SGD and Adagrad over a whole parameter buffer.

use crate::error::Result;
use crate::gpu::shaders::{CorePrecision, Kernel, ShaderTypes};
use crate::graph::{Buf, Cost, GraphBuilder};
use crate::kernels::named;
use crate::kernels::{launch, launch_typed};

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
    record_update_as(
        g,
        label,
        kind,
        params,
        grad,
        weight,
        state,
        len,
        CorePrecision::F32,
    )
}

/// [`record_update`] of a `weight` stored at `precision` (TT cores as f16: the new value is
/// computed in f32 and rounded once when stored).
#[allow(clippy::too_many_arguments)]
pub fn record_update_as(
    g: &mut GraphBuilder,
    label: &str,
    kind: UpdateKind,
    params: Buf,
    grad: Buf,
    weight: Buf,
    state: Buf,
    len: usize,
    precision: CorePrecision,
) -> Result<()> {
    let code = match kind {
        UpdateKind::Sgd => 0.0,
        UpdateKind::Adagrad => 1.0,
    };
    launch_typed(
        g,
        label,
        Kernel::Optim,
        ShaderTypes::new(precision, false),
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

/// The buffers and block table of an update over the MLPs' parameter arena
/// ([`record_arena_update`]).
#[derive(Clone, Debug)]
pub struct ArenaUpdate {
    pub kind: UpdateKind,
    /// The uniform [`OptParams`].
    pub params: Buf,
    pub grad: Buf,
    pub weight: Buf,
    /// Adagrad's state (any buffer of at least 16 bytes for SGD).
    pub state: Buf,
    /// The weights' transposed copies, written beside the weights.
    pub weight_t: Buf,
    /// The tensors' table: per tensor `[first block, offset / 4, stride / 4, stored rows / 4
    /// (0 for a vector)]` ([`arena_blocks`]).
    pub tensors: Buf,
    pub tensor_count: usize,
    /// Blocks in all: 4 x 4 blocks of the matrices, vec4s of the vectors.
    pub blocks: usize,
    /// Values updated, and of them the values of matrices (also written transposed).
    pub values: usize,
    pub matrix_values: usize,
    /// The finiteness check fused into the update, if any.
    pub check: Option<FiniteFlag>,
}

/// Where a fused finiteness check reports (as `shaders/finite.wgsl` does): the step uniform
/// (`StepParams`), the statistics ring and the region's code (above 0).
#[derive(Clone, Debug)]
pub struct FiniteFlag {
    pub step: Buf,
    pub stats: Buf,
    pub code: u32,
}

/// One tensor of an arena as the update sees it: `offset`, row `stride` and `stored_rows` (all
/// multiples of 4; `None` rows for a vector of `stride` values).
#[derive(Clone, Copy, Debug)]
pub struct ArenaSpan {
    pub offset: usize,
    pub stride: usize,
    pub stored_rows: Option<usize>,
}

/// The block table of `spans` for [`ArenaUpdate::tensors`] and the block count.
pub fn arena_blocks(spans: &[ArenaSpan]) -> (Vec<[u32; 4]>, usize) {
    let mut first = 0;
    let table = spans
        .iter()
        .map(|s| {
            let rows4 = s.stored_rows.map_or(0, |r| r / 4);
            let entry = [
                first as u32,
                (s.offset / 4) as u32,
                (s.stride / 4) as u32,
                rows4 as u32,
            ];
            first += s.stride / 4 * rows4.max(1);
            entry
        })
        .collect();
    (table, first)
}

/// Adds the update of every tensor of an arena, its weights' transposed copies written too
/// (`shaders/optim.wgsl` `optim_arena`): one dispatch, no transposes in the step.
pub fn record_arena_update(g: &mut GraphBuilder, label: &str, u: &ArenaUpdate) -> Result<()> {
    let code = match u.kind {
        UpdateKind::Sgd => 0.0,
        UpdateKind::Adagrad => 1.0,
    };
    if u.check.as_ref().is_some_and(|c| c.code == 0) {
        return Err(crate::error::Error::input(
            None,
            "a fused finiteness check needs a code above 0",
        ));
    }
    // No check: placeholders in its bindings (the optimizer's own 16-byte uniform, read twice;
    // a writable placeholder).
    let check = u.check.clone().unwrap_or_else(|| FiniteFlag {
        step: u.params.clone(),
        stats: Buf::from(g.gpu().placeholder_rw()),
        code: 0,
    });
    launch(
        g,
        label,
        Kernel::OptimArena,
        &[
            ("OPTIMIZER", code),
            ("TENSORS", u.tensor_count as f64),
            ("BLOCKS", u.blocks as f64),
            (
                "FINITE_CODE",
                u.check.as_ref().map_or(0.0, |c| c.code as f64),
            ),
        ],
        named![
            params = u.params.clone(),
            grad = u.grad.clone(),
            weight = u.weight.clone(),
            state = u.state.clone(),
            weight_t = u.weight_t.clone(),
            tensors = u.tensors.clone(),
            step = check.step,
            stats = check.stats,
        ],
        u.blocks as u64,
    )?;
    // As `optim`, plus the transposed copies written (the check reads nothing more); serial:
    // the table scan.
    g.set_cost(Cost {
        flops: 4.0 * u.values as f64,
        bytes: 20.0 * u.values as f64 + 4.0 * u.matrix_values as f64,
        serial: u.tensor_count as u64,
    });
    Ok(())
}
