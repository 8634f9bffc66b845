//! Launchers of `shaders/tt.wgsl`: the per-lookup core chain, pooling, the row gradient and the
//! segment-ordered core gradient, each specialised by override constants for its shapes; and
//! [`TtKernels`], the variants a TT table records its steps with (this shader's, the subgroup
//! chain of `kernels::tt_subgroup`, the sort of `kernels::tt_route`).

use crate::error::Result;
use crate::gpu::shaders::{CorePrecision, Kernel, ShaderTypes};
use crate::gpu::{AdapterClass, Gpu};
use crate::graph::{Buf, Cost, GraphBuilder};
use crate::kernels::named;
use crate::kernels::optim::UpdateKind;
use crate::kernels::tt_route::SortStrategy;
use crate::kernels::{launch, launch_typed};

/// How the core gradients are reduced. Both sum each row's lookups in blocks of
/// [`CORE_GRAD_BLOCK`] and add the block sums to the row's gradient in sorted order, so their
/// results are bitwise equal; they differ in who does the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoreGradStrategy {
    /// One invocation per core row and tile walks the row's blocks one after the other: the
    /// least work and memory traffic, best where invocations are few and strong (CPU adapters).
    Rows,
    /// Every block (a *piece*) is summed by its own invocations into a partial gradient, then a
    /// second kernel adds each row's partials in order: a hot row with thousands of lookups is
    /// spread over the GPU instead of one serial loop.
    Pieces,
}

/// Lookups summed in registers before a block sum is added (the WGSL `BLOCK`).
pub const CORE_GRAD_BLOCK: usize = 16;

/// The kernel variants of TT tables: decided once when a table is created, from the adapter
/// unless given in the table's options, and shown by `ttrec info` and the benches. Every choice
/// gives bitwise the same results on one adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TtKernels {
    /// Use the subgroup chain where the adapter has fixed-size subgroups and a product fits.
    pub subgroups: bool,
    pub core_grad: CoreGradStrategy,
    /// How each core's lookups are sorted by digit.
    pub sort: SortStrategy,
    /// Most vec4 columns per invocation in the chain and core-gradient kernels (4, 2 or 1).
    pub col_quads: usize,
    /// Most row quads per core-gradient invocation (2 or 1; 4 stops lavapipe's unrolling).
    pub row_quads: usize,
    /// Groups of 4 output columns per invocation of the transposed chain (1 to 4).
    pub t_col_groups: usize,
    /// One output row per invocation of the chain and of the core-gradient pieces (the GPU
    /// class: M or RK times the invocations, so that small products still fill a GPU); the
    /// same sums in the same order as the 4-row tiles.
    pub row_tiles: bool,
}

impl TtKernels {
    /// The variants for `gpu`: rows-strategy core gradients on CPU adapters, pieces on GPUs;
    /// subgroup kernels wherever the adapter has fixed-size subgroups; the tile widths measured
    /// best on lavapipe and the H100 (BENCHMARKS.md).
    pub fn for_adapter(gpu: &Gpu) -> Self {
        Self::for_class(gpu.class())
    }

    /// The variants of adapter class `class` (a [`crate::gpu::KernelClass`] resolved), whatever
    /// the adapter: how `--kernels gpu` runs the GPU kernels on lavapipe.
    pub fn for_class(class: AdapterClass) -> Self {
        TtKernels {
            subgroups: true,
            core_grad: match class {
                AdapterClass::Cpu => CoreGradStrategy::Rows,
                AdapterClass::Gpu => CoreGradStrategy::Pieces,
            },
            sort: match class {
                AdapterClass::Cpu => SortStrategy::Workgroup,
                AdapterClass::Gpu => SortStrategy::Blocks,
            },
            // GPUs: the thinnest tiles (most invocations); the sums are the same either way.
            col_quads: match class {
                AdapterClass::Cpu => 4,
                AdapterClass::Gpu => 1,
            },
            row_quads: match class {
                AdapterClass::Cpu => 2,
                AdapterClass::Gpu => 1,
            },
            t_col_groups: match class {
                AdapterClass::Cpu => 2,
                AdapterClass::Gpu => 1,
            },
            row_tiles: class == AdapterClass::Gpu,
        }
    }

    /// The portable kernels only (no subgroup operations), otherwise as [`Self::for_adapter`].
    pub fn portable(gpu: &Gpu) -> Self {
        TtKernels {
            subgroups: false,
            ..Self::for_adapter(gpu)
        }
    }

    /// One line for reports: "subgroups on, core grad pieces, sort blocks, tiles 4/2/2".
    pub fn describe(&self) -> String {
        format!(
            "subgroups {}, core grad {}, sort {}, tiles {}/{}/{}",
            if self.subgroups { "on" } else { "off" },
            match self.core_grad {
                CoreGradStrategy::Rows => "rows",
                CoreGradStrategy::Pieces => "pieces",
            },
            match self.sort {
                SortStrategy::Blocks => "blocks",
                SortStrategy::Workgroup => "workgroup",
            },
            self.col_quads,
            self.row_quads,
            self.t_col_groups
        ) + if self.row_tiles { ", row tiles" } else { "" }
    }
}

/// The per-chunk uniform (the WGSL `Chunk`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ChunkParams {
    pub start: u32,
    pub len: u32,
    pub cap: u32,
    pub num_bags: u32,
    pub index: u32,
    pub _pad: [u32; 3],
}

/// Shapes of one chain product C = A (m x k) * B (k x n) per lookup.
#[derive(Clone, Copy, Debug)]
pub struct ChainShape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Core whose slice is B (its digit selects the slice).
    pub core: usize,
    /// B is stored transposed ([n, k]): the backward direction.
    pub trans_b: bool,
    /// A is core 0's slice at the lookup's digit 0 instead of scratch.
    pub a_from_core: bool,
}

/// Adds one chain product for up to `max_lookups` lookups of a chunk.
#[allow(clippy::too_many_arguments)]
pub fn record_chain(
    g: &mut GraphBuilder,
    label: String,
    s: ChainShape,
    chunk: Buf,
    digits: Buf,
    a: Buf,
    core: Buf,
    out: Buf,
    max_lookups: usize,
    kernels: &TtKernels,
    precision: CorePrecision,
) -> Result<()> {
    // Vectorised variants where the inner dimensions allow vec4 reads.
    let kernel = match (s.trans_b, s.k.is_multiple_of(4), s.n.is_multiple_of(4)) {
        (false, true, true) if kernels.row_tiles => Kernel::TtChainRowV4,
        (false, true, true) => Kernel::TtChainV4,
        (true, true, _) => Kernel::TtChainTV4,
        _ => Kernel::TtChain,
    };
    // Wider column tiles amortise each invocation's loads of A over more columns.
    let tnq = if kernel == Kernel::TtChainTV4 {
        kernels.t_col_groups.clamp(1, 4).min(s.n.div_ceil(4))
    } else {
        widest_quads(kernels.col_quads, s.n)
    };
    let col_tiles = match kernel {
        Kernel::TtChainV4 | Kernel::TtChainRowV4 => s.n / 4 / tnq,
        Kernel::TtChainTV4 => s.n.div_ceil(4 * tnq),
        _ => s.n.div_ceil(4),
    };
    let row_tiles = match kernel {
        Kernel::TtChainRowV4 => s.m,
        _ => s.m.div_ceil(4),
    };
    launch_typed(
        g,
        label,
        kernel,
        ShaderTypes::new(precision, s.a_from_core),
        &[
            ("M", s.m as f64),
            ("K", s.k as f64),
            ("N", s.n as f64),
            ("CORE_K", s.core as f64),
            ("TRANS_B", if s.trans_b { 1.0 } else { 0.0 }),
            ("A_FROM_CORE", if s.a_from_core { 1.0 } else { 0.0 }),
            ("TNQ", tnq as f64),
        ],
        named![chunk, digits, a, b = core, out],
        max_lookups as u64 * row_tiles as u64 * col_tiles as u64,
    )?;
    g.set_cost(chain_cost(&s, max_lookups));
    Ok(())
}

/// The count of one chain product over `lookups` lookups, whatever the kernel: per lookup an
/// m x k by k x n product; reads A and the lookup's slice of B (gathered: counted per lookup),
/// writes C; every output is one chain of k multiply-adds.
pub fn chain_cost(s: &ChainShape, lookups: usize) -> Cost {
    let (l, m, k, n) = (lookups as f64, s.m as f64, s.k as f64, s.n as f64);
    Cost {
        flops: 2.0 * l * m * k * n,
        bytes: 4.0 * l * (m * k + k * n + m * n + 1.0),
        serial: s.k as u64,
    }
}

/// Adds the pooling of a chunk's rows into the bag outputs (bag b's row at element `dest[b]` of
/// `out`): the first chunk writes every bag, later ones (`accumulate`) add to it.
#[allow(clippy::too_many_arguments)]
pub fn record_pool(
    g: &mut GraphBuilder,
    label: String,
    dim: usize,
    chunk: Buf,
    offsets: Buf,
    scale: Buf,
    rows: Buf,
    out: Buf,
    dest: Buf,
    accumulate: bool,
    max_bags: usize,
    runs: RunBounds,
) -> Result<()> {
    launch(
        g,
        label,
        Kernel::TtPool,
        &[
            ("D", dim as f64),
            ("ACCUMULATE", if accumulate { 1.0 } else { 0.0 }),
        ],
        named![chunk, offsets, scale, rows, out, dest],
        max_bags as u64 * dim as u64,
    )?;
    // One invocation per (bag, column) walks the bag's lookups in the chunk.
    let (bags, d, lookups) = (max_bags as f64, dim as f64, runs.lookups as f64);
    g.set_cost(Cost {
        flops: 2.0 * lookups * d,
        bytes: 4.0 * (lookups * (d + 1.0) + bags * (d * (1.0 + accumulate as u8 as f64) + 3.0)),
        serial: runs.chunk_bag() as u64,
    });
    Ok(())
}

/// What a plan knows of its batches' runs, for the counts of the kernels whose loops walk
/// them (the structural report; the kernels themselves take any batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunBounds {
    /// Lookups of a chunk.
    pub lookups: usize,
    /// Most lookups of one bag in a batch.
    pub bag: usize,
    /// Most lookups of one row (of any core, or of the table) in a batch.
    pub row: usize,
}

impl RunBounds {
    /// Any batch of up to `nnz_cap` lookups in chunks of `chunk`: one bag or one row may
    /// hold them all.
    pub fn any(chunk: usize, nnz_cap: usize) -> Self {
        RunBounds {
            lookups: chunk,
            bag: nnz_cap,
            row: nnz_cap,
        }
    }

    /// The longest bag within one chunk.
    pub fn chunk_bag(&self) -> usize {
        self.bag.min(self.lookups)
    }

    /// The most lookups of one row within one chunk.
    pub fn chunk_row(&self) -> usize {
        self.row.min(self.lookups)
    }

    /// One lookup per bag (DLRM's one-hot features) with `bags_per_table` bags per table: a
    /// row (of one table) sees at most one lookup per bag.
    pub fn one_hot(self, bags_per_table: usize) -> Self {
        RunBounds {
            bag: 1,
            row: bags_per_table,
            ..self
        }
    }
}

/// Adds the per-lookup row gradient `drow[n] = scale[n] * dout[dest[n]..]` (`dest[n]`: where the
/// lookup's bag's gradient row starts).
#[allow(clippy::too_many_arguments)]
pub fn record_row_grad(
    g: &mut GraphBuilder,
    label: String,
    dim: usize,
    chunk: Buf,
    dest: Buf,
    scale: Buf,
    dout: Buf,
    drow: Buf,
    max_lookups: usize,
) -> Result<()> {
    launch(
        g,
        label,
        Kernel::TtRowGrad,
        &[("D", dim as f64)],
        named![chunk, dest, scale, dout, drow],
        max_lookups as u64 * dim as u64,
    )?;
    let (l, d) = (max_lookups as f64, dim as f64);
    g.set_cost(Cost {
        flops: l * d,
        bytes: 4.0 * l * (2.0 * d + 2.0),
        serial: 1,
    });
    Ok(())
}

/// Where the left factor P_k of a core gradient comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixSource {
    /// P_0 = 1 (core 0).
    One,
    /// P_1 = core 0's slice.
    Core0,
    /// P_k from scratch.
    Scratch,
}

/// Shapes of one core gradient: `grad[row]` (rk x nk) += P^T (rk x qk) * dP (qk x nk).
#[derive(Clone, Copy, Debug)]
pub struct CoreGradShape {
    pub core: usize,
    pub rows: usize,
    pub qk: usize,
    pub rk: usize,
    pub nk: usize,
    pub prefix: PrefixSource,
}

/// The update fused into a core gradient (a plan with one chunk): which optimizer, its uniform
/// parameters, the core and its optimizer state.
#[derive(Clone, Debug)]
pub struct FusedUpdate {
    pub kind: UpdateKind,
    pub opt: Buf,
    pub weight: Buf,
    pub state: Buf,
}

/// The core-gradient pieces of a chunk ([`CoreGradStrategy::Pieces`]): each row's first piece
/// (from the sort), the partial sums' scratch and the piece slots per chunk.
#[derive(Clone, Debug)]
pub struct GradPieces {
    pub starts: Buf,
    pub partial: Buf,
    pub per_chunk: usize,
}

impl GradPieces {
    /// Piece slots a chunk of `chunk` lookups over `rows` rows may need: every row may end in a
    /// partial piece.
    pub fn slots(chunk: usize, rows: usize) -> usize {
        chunk.div_ceil(CORE_GRAD_BLOCK) + rows.min(chunk)
    }
}

/// Whether core gradient `s` runs the vec4 kernels (and so may run as pieces).
pub fn core_grad_is_vec4(s: &CoreGradShape) -> bool {
    s.nk.is_multiple_of(4) && (s.prefix == PrefixSource::One || s.rk.is_multiple_of(4))
}

/// Adds the accumulation of one chunk's contribution to core `s.core`'s gradient, and with
/// `update` the fused update of the rows it touches (`opt` is the core's optimizer uniform,
/// bound even without an update). With `pieces` (and a vec4 shape) as pieces and a combine,
/// otherwise row by row: bitwise the same either way.
#[allow(clippy::too_many_arguments)]
pub fn record_core_grad(
    g: &mut GraphBuilder,
    label: String,
    s: CoreGradShape,
    chunk: Buf,
    digits: Buf,
    sorted: Buf,
    segments: Buf,
    prefix: Buf,
    dp: Buf,
    grad: Buf,
    opt: Buf,
    update: Option<FusedUpdate>,
    pieces: Option<&GradPieces>,
    kernels: &TtKernels,
    runs: RunBounds,
    precision: CorePrecision,
) -> Result<()> {
    let types = ShaderTypes::new(precision, s.prefix == PrefixSource::Core0);
    let mode = match s.prefix {
        PrefixSource::One => 0.0,
        PrefixSource::Core0 => 1.0,
        PrefixSource::Scratch => 2.0,
    };
    let vec4 = core_grad_is_vec4(&s);
    let tnq = widest_quads(kernels.col_quads, s.nk);
    let trq = if vec4 && s.prefix != PrefixSource::One {
        widest_quads(kernels.row_quads, s.rk)
    } else {
        1
    };
    // The GPU class's pieces own one row of the slice each (rows of P^T: RK of them).
    let row_pieces = kernels.row_tiles && vec4 && pieces.is_some();
    let fused = match update.as_ref().map(|u| u.kind) {
        None => 0.0,
        Some(UpdateKind::Sgd) => 1.0,
        Some(UpdateKind::Adagrad) => 2.0,
    };
    let mut constants = vec![
        ("QK", s.qk as f64),
        ("RK", s.rk as f64),
        ("NK", s.nk as f64),
        ("PK", s.rows as f64),
        ("P_MODE", mode),
        ("CORE_K", s.core as f64),
        ("TNQ", tnq as f64),
        ("TRQ", trq as f64),
        ("BLOCK", CORE_GRAD_BLOCK as f64),
    ];
    // Core 0 reads no prefix; bind the placeholder there so that its own buffer can be updated
    // (read-write) in the same dispatch.
    let prefix = if s.prefix == PrefixSource::One {
        Buf::from(g.gpu().placeholder())
    } else {
        prefix
    };
    // Without an update, weight and state are not touched: distinct placeholders, since two
    // writable bindings may not alias.
    let (weight, state) = match &update {
        Some(u) => (u.weight.clone(), u.state.clone()),
        None => (
            Buf::from(g.gpu().placeholder_rw_n(0)),
            Buf::from(g.gpu().placeholder_rw_n(1)),
        ),
    };
    let col_tiles = if vec4 {
        s.nk / 4 / tnq
    } else {
        s.nk.div_ceil(4)
    };
    let tiles = if row_pieces {
        s.rk as u64 * col_tiles as u64
    } else {
        s.rk.div_ceil(4 * trq) as u64 * col_tiles as u64
    };
    let cost = CoreGradCost::new(&s, runs, update.is_some());
    if let (true, Some(pieces)) = (vec4, pieces) {
        constants.push(("PIECES", pieces.per_chunk as f64));
        launch_typed(
            g,
            format!("{label} pieces"),
            if row_pieces {
                Kernel::TtCoreGradPiecesRow
            } else {
                Kernel::TtCoreGradPiecesV4
            },
            types,
            &constants,
            named![
                chunk = chunk.clone(),
                digits,
                sorted,
                segments,
                prefix,
                dp,
                partial = pieces.partial.clone(),
                starts = pieces.starts.clone()
            ],
            pieces.per_chunk as u64 * tiles,
        )?;
        g.set_cost(cost.pieces(pieces.per_chunk));
        constants.pop();
        constants.push(("FUSED_UPDATE", fused));
        launch_typed(
            g,
            format!("{label} combine"),
            Kernel::TtCoreGradCombine,
            types,
            &constants,
            named![
                chunk,
                starts = pieces.starts.clone(),
                partial = pieces.partial.clone(),
                grad,
                opt,
                weight,
                state
            ],
            (s.rows * s.rk * s.nk / 4) as u64,
        )?;
        g.set_cost(cost.combine(pieces.per_chunk));
        return Ok(());
    }
    constants.push(("FUSED_UPDATE", fused));
    launch_typed(
        g,
        label,
        if vec4 {
            Kernel::TtCoreGradV4
        } else {
            Kernel::TtCoreGrad
        },
        types,
        &constants,
        named![chunk, digits, sorted, segments, prefix, dp, grad, opt, weight, state],
        s.rows as u64 * tiles,
    )?;
    g.set_cost(cost.rows());
    Ok(())
}

/// The counts of one chunk's core gradient: per lookup a P^T (rk x qk) by dP (qk x nk)
/// product; the slice of a row is [rk, nk].
struct CoreGradCost {
    flops: f64,
    /// Bytes of the lookups' operands (P, dP, the sorted index).
    operand_bytes: f64,
    /// Values of the gradient (rows x rk x nk).
    grad: f64,
    slice: f64,
    qk: u64,
    row_run: u64,
    /// Values each updated element reads and writes (grad and, fused, weight and state).
    touched: f64,
}

impl CoreGradCost {
    fn new(s: &CoreGradShape, runs: RunBounds, fused: bool) -> Self {
        let (l, qk, rk, nk) = (runs.lookups as f64, s.qk as f64, s.rk as f64, s.nk as f64);
        let p = if s.prefix == PrefixSource::One {
            0.0
        } else {
            rk
        };
        CoreGradCost {
            flops: 2.0 * l * qk * rk * nk,
            operand_bytes: 4.0 * l * (qk * (p + nk) + 2.0),
            grad: s.rows as f64 * rk * nk,
            slice: rk * nk,
            qk: s.qk as u64,
            row_run: runs.chunk_row() as u64,
            touched: if fused { 6.0 } else { 2.0 },
        }
    }

    /// Row by row: one invocation walks its row's lookups (blocks of [`CORE_GRAD_BLOCK`]).
    fn rows(&self) -> Cost {
        Cost {
            flops: self.flops,
            bytes: self.operand_bytes + 4.0 * self.touched * self.grad,
            serial: self.row_run * self.qk,
        }
    }

    /// Pieces: one block of lookups each, to `slots` partial slices.
    fn pieces(&self, slots: usize) -> Cost {
        Cost {
            flops: self.flops,
            bytes: self.operand_bytes + 4.0 * slots as f64 * self.slice,
            serial: CORE_GRAD_BLOCK as u64 * self.qk,
        }
    }

    /// The combine: each row's partials added in piece order, then the fused update.
    fn combine(&self, slots: usize) -> Cost {
        let partials = slots as f64 * self.slice;
        Cost {
            flops: partials
                + if self.touched > 2.0 {
                    5.0 * self.grad
                } else {
                    0.0
                },
            bytes: 4.0 * (partials + self.touched * self.grad),
            serial: self.row_run.div_ceil(CORE_GRAD_BLOCK as u64),
        }
    }
}

/// The widest of 4, 2, 1 quads that is at most `cap` and divides `len` into whole quads.
fn widest_quads(cap: usize, len: usize) -> usize {
    [4, 2, 1]
        .into_iter()
        .filter(|&t| t <= cap)
        .find(|t| len.is_multiple_of(4 * t))
        .unwrap_or(1)
}

/// Adds the transposition of every `[rk, nk]` slice of a core with `rows` slices into `out`.
pub fn record_transpose(
    g: &mut GraphBuilder,
    label: String,
    core: Buf,
    out: Buf,
    rows: usize,
    rk: usize,
    nk: usize,
) -> Result<()> {
    record_transpose_as(g, label, core, out, rows, rk, nk, CorePrecision::F32)
}

/// [`record_transpose`] of a core stored at `precision` (the copy is stored alike: a plain
/// copy, exact).
#[allow(clippy::too_many_arguments)]
pub fn record_transpose_as(
    g: &mut GraphBuilder,
    label: String,
    core: Buf,
    out: Buf,
    rows: usize,
    rk: usize,
    nk: usize,
    precision: CorePrecision,
) -> Result<()> {
    launch_typed(
        g,
        label,
        Kernel::TtTransposeSlices,
        ShaderTypes::new(precision, false),
        &[("RK", rk as f64), ("NK", nk as f64), ("PK", rows as f64)],
        named![core, out],
        (rows * rk * nk) as u64,
    )?;
    g.set_cost(Cost {
        flops: 0.0,
        bytes: 8.0 * (rows * rk * nk) as f64,
        serial: 1,
    });
    Ok(())
}
