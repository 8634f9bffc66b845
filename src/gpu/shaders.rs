//! The WGSL sources under `shaders/`, embedded in the binary, and the typed names of every kernel
//! ttrec launches: a launcher asks for a [`Kernel`], never for an entry point by string.

/// What every shader starts with (shaders/prelude.wgsl): `WG`, `linear_id` and the uniform
/// structs that several kernel families share.
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// The directive WebGPU (Tint) needs before a module that calls subgroup built-ins.
pub const WEBGPU_SUBGROUPS: &str = "enable subgroups;";

/// How TT cores are stored on the GPU (`--tt-precision`): f32, or f16 where the adapter has
/// `wgpu::Features::SHADER_F16`. Arithmetic is f32 either way: kernels read a stored value into
/// f32, accumulate in f32 and round a written value to the storage type once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CorePrecision {
    #[default]
    F32,
    F16,
}

impl CorePrecision {
    /// The precision named `f32` or `f16` (command-line flags, checkpoints).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "f32" => Some(CorePrecision::F32),
            "f16" => Some(CorePrecision::F16),
            _ => None,
        }
    }

    /// The flag's spelling: `f32` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            CorePrecision::F32 => "f32",
            CorePrecision::F16 => "f16",
        }
    }

    /// Bytes of one stored value.
    pub fn bytes(self) -> u64 {
        match self {
            CorePrecision::F32 => 4,
            CorePrecision::F16 => 2,
        }
    }
}

/// The storage types a module is specialised for: WGSL aliases prepended to its source.
/// `core_t` types the bindings that hold TT cores (and their transposed copies); `lead_t` the
/// chain's left operand and the core gradient's prefix, which are core 0 itself for some
/// launches (`A_FROM_CORE`, `P_MODE` 1) and f32 scratch for others. With [`CorePrecision::F32`]
/// both are f32 and every `f32(x)` / `core_t(v)` conversion is the identity (naga emits none),
/// so the f32 kernels compute exactly what they computed before the aliases existed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ShaderTypes {
    pub core: CorePrecision,
    /// `lead_t` is the core type (the launch binds core 0 there).
    pub lead_is_core: bool,
}

impl ShaderTypes {
    /// Every binding f32: what every kernel outside the TT family runs with.
    pub const F32: ShaderTypes = ShaderTypes {
        core: CorePrecision::F32,
        lead_is_core: false,
    };

    /// Cores stored as `core`; `lead_t` the core type where `lead_is_core`.
    pub fn new(core: CorePrecision, lead_is_core: bool) -> Self {
        ShaderTypes {
            core,
            // With f32 cores both choices are one module.
            lead_is_core: lead_is_core && core == CorePrecision::F16,
        }
    }

    /// The WGSL lines that declare the aliases (and enable f16 where a type is f16).
    pub fn header(self) -> String {
        let ty = |p: CorePrecision| match p {
            CorePrecision::F32 => "f32",
            CorePrecision::F16 => "f16",
        };
        let lead = if self.lead_is_core {
            self.core
        } else {
            CorePrecision::F32
        };
        let enable = if self.core == CorePrecision::F16 {
            "enable f16;\n"
        } else {
            ""
        };
        format!(
            "{enable}alias core_t = {};\nalias lead_t = {};\n",
            ty(self.core),
            ty(lead)
        )
    }
}

/// A kernel family: one WGSL file under `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Tt,
    TtSubgroup,
    TtRoute,
    TtCache,
    Optim,
    Matmul,
    Interaction,
    Loss,
    Embedding,
    Finite,
    Qr,
}

impl Shader {
    pub const ALL: [Shader; 11] = [
        Shader::Tt,
        Shader::TtSubgroup,
        Shader::TtRoute,
        Shader::TtCache,
        Shader::Optim,
        Shader::Matmul,
        Shader::Interaction,
        Shader::Loss,
        Shader::Embedding,
        Shader::Finite,
        Shader::Qr,
    ];

    /// The file's stem under `shaders/`.
    pub fn name(self) -> &'static str {
        match self {
            Shader::Tt => "tt",
            Shader::TtSubgroup => "tt_subgroup",
            Shader::TtRoute => "tt_route",
            Shader::TtCache => "tt_cache",
            Shader::Optim => "optim",
            Shader::Matmul => "matmul",
            Shader::Interaction => "interaction",
            Shader::Loss => "loss",
            Shader::Embedding => "embedding",
            Shader::Finite => "finite",
            Shader::Qr => "qr",
        }
    }

    /// The file as written (without the prelude).
    pub fn file(self) -> &'static str {
        match self {
            Shader::Tt => include_str!("../../shaders/tt.wgsl"),
            Shader::TtSubgroup => include_str!("../../shaders/tt_subgroup.wgsl"),
            Shader::TtRoute => include_str!("../../shaders/tt_route.wgsl"),
            Shader::TtCache => include_str!("../../shaders/tt_cache.wgsl"),
            Shader::Optim => include_str!("../../shaders/optim.wgsl"),
            Shader::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Shader::Interaction => include_str!("../../shaders/interaction.wgsl"),
            Shader::Loss => include_str!("../../shaders/loss.wgsl"),
            Shader::Embedding => include_str!("../../shaders/embedding.wgsl"),
            Shader::Finite => include_str!("../../shaders/finite.wgsl"),
            Shader::Qr => include_str!("../../shaders/qr.wgsl"),
        }
    }

    /// The module's source with f32 storage: the type aliases, the prelude, then the file.
    pub fn source(self) -> String {
        self.source_typed(ShaderTypes::F32)
    }

    /// The module's source specialised for `types`: its aliases (see [`ShaderTypes`]), the
    /// prelude, then the file.
    pub fn source_typed(self, types: ShaderTypes) -> String {
        format!("{}{PRELUDE}\n{}", types.header(), self.file())
    }

    /// Whether the shader calls subgroup built-ins (needs `wgpu::Features::SUBGROUP`).
    pub fn uses_subgroups(self) -> bool {
        self == Shader::TtSubgroup
    }

    /// The module's source for a WebGPU implementation that compiles WGSL itself (Dawn/Tint in
    /// Chrome, the browser backend of wgpu): [`Self::source`] with `enable subgroups;` first
    /// where the shader uses subgroups. WebGPU requires that directive; naga 30, which compiles
    /// the WGSL of every native wgpu backend, rejects it ("not yet supported", gfx-rs/wgpu#5555),
    /// so one file serves both with the line added only here.
    pub fn webgpu_source(self) -> String {
        self.webgpu_source_typed(ShaderTypes::F32)
    }

    /// [`Self::webgpu_source`] specialised for `types`.
    pub fn webgpu_source_typed(self, types: ShaderTypes) -> String {
        if self.uses_subgroups() {
            format!("{WEBGPU_SUBGROUPS}\n{}", self.source_typed(types))
        } else {
            self.source_typed(types)
        }
    }

    /// The shader whose file stem is `name`.
    pub fn from_name(name: &str) -> Option<Shader> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

macro_rules! kernels {
    ($($variant:ident => $shader:ident :: $entry:literal [$($binding:ident),*],)*) => {
        /// Every compute entry point ttrec launches, with its shader and its bindings' names in
        /// `@binding` order (launchers pass buffers by these names; `kernels::launch` checks them,
        /// and a test checks their count against the shader).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Kernel {
            $($variant,)*
        }

        impl Kernel {
            pub const ALL: &'static [Kernel] = &[$(Kernel::$variant,)*];

            pub fn shader(self) -> Shader {
                match self {
                    $(Kernel::$variant => Shader::$shader,)*
                }
            }

            /// The entry point's name in the shader.
            pub fn entry(self) -> &'static str {
                match self {
                    $(Kernel::$variant => $entry,)*
                }
            }

            /// The names of the entry point's bindings, binding 0 first.
            pub fn bindings(self) -> &'static [&'static str] {
                match self {
                    $(Kernel::$variant => &[$(stringify!($binding)),*],)*
                }
            }
        }
    };
}

kernels! {
    TtChain => Tt::"chain" [chunk, digits, a, b, out],
    TtChainV4 => Tt::"chain_v4" [chunk, digits, a, b, out],
    TtChainTV4 => Tt::"chain_t_v4" [chunk, digits, a, b, out],
    TtChainRowV4 => Tt::"chain_row_v4" [chunk, digits, a, b, out],
    TtPool => Tt::"pool" [chunk, offsets, scale, rows, out, dest],
    TtRowGrad => Tt::"row_grad" [chunk, dest, scale, dout, drow],
    TtCoreGrad => Tt::"core_grad" [chunk, digits, sorted, segments, prefix, dp, grad, opt, weight, state],
    TtCoreGradV4 => Tt::"core_grad_v4" [chunk, digits, sorted, segments, prefix, dp, grad, opt, weight, state],
    TtCoreGradPiecesV4 => Tt::"core_grad_pieces_v4" [chunk, digits, sorted, segments, prefix, dp, partial, starts],
    TtCoreGradPiecesRow => Tt::"core_grad_pieces_row" [chunk, digits, sorted, segments, prefix, dp, partial, starts],
    TtCoreGradCombine => Tt::"core_grad_combine" [chunk, starts, partial, grad, opt, weight, state],
    TtTransposeSlices => Tt::"transpose_slices" [core, out],
    TtChainSg => TtSubgroup::"chain_sg" [chunk, digits, pieces, a, b, out],
    RouteDigits => TtRoute::"route_digits" [route, ids, tables, digits],
    RouteBags => TtRoute::"route_bags" [route, offsets, bag_dest, weights, dest, scale, orig],
    SortCount => TtRoute::"sort_count" [route, digits, counts],
    SortScan => TtRoute::"sort_scan" [route, counts, totals],
    SortSegments => TtRoute::"sort_segments" [route, totals, segments, grad_pieces, sg_starts],
    SortPlace => TtRoute::"sort_place" [route, digits, counts, segments, sorted, sg_starts, sg_pieces],
    SortFused => TtRoute::"sort_fused" [route, digits, scratch, segments, grad_pieces, sg_starts, sorted, sg_pieces],
    CompactCount => TtRoute::"compact_count" [route, hit, blocks],
    CompactScan => TtRoute::"compact_scan" [route, blocks, total],
    CompactPlace => TtRoute::"compact_place" [route, hit, blocks, ids, tt_ids, orig, rank],
    CompactFinish => TtRoute::"compact_finish" [route, total, rank, offsets, tables, tt_offsets, tt_tables, params],
    MembersBatch => TtRoute::"members_batch" [route, selection, params],
    CacheReset => TtCache::"cache_reset" [keys, counts, slots],
    CacheProbe => TtCache::"cache_probe" [route, ids, tables, keys, counts, slots, hit, stats],
    SelectInit => TtCache::"select_init" [selection, hist, members],
    SelectHist => TtCache::"select_hist" [selection, keys, counts, hist],
    SelectChoose => TtCache::"select_choose" [selection, hist, stats],
    SelectCount => TtCache::"select_count" [selection, keys, counts, tiles],
    SelectScan => TtCache::"select_scan" [tiles],
    SelectPlace => TtCache::"select_place" [selection, keys, counts, tiles, slots, members],
    CachePool => TtCache::"cache_pool" [route, offsets, bag_dest, weights, hit, values, out],
    SlotSortCount => TtCache::"slot_sort_count" [route, hit, src, counts],
    SlotSortScan => TtCache::"slot_sort_scan" [counts, bases],
    SlotSortPlace => TtCache::"slot_sort_place" [route, hit, src, counts, bases, dst],
    CacheUpdate => TtCache::"cache_update" [route, dest, scale, hit, sorted, dout, values, state, opt],
    CacheStore => TtCache::"cache_store" [rows, values],
    Optim => Optim::"optim" [params, grad, weight, state],
    OptimArena => Optim::"optim_arena" [params, grad, weight, state, weight_t, tensors, step, stats],
    GemmTn => Matmul::"gemm_tn" [a, b, c, bias, mask, ct],
    GemmTnWgrad => Matmul::"gemm_tn_wgrad" [a, b, c, bias_grad],
    GemmTiled => Matmul::"gemm_tiled" [a, b, c, bias, mask, ct],
    GemmTiledWgrad => Matmul::"gemm_tiled_wgrad" [a, b, c, bias_grad],
    GemmGpu => Matmul::"gemm_gpu" [a, b, c, bias, mask, ct],
    GemmGpuWgrad => Matmul::"gemm_gpu_wgrad" [a, b, c, bias_grad],
    GemmGpuAny => Matmul::"gemm_gpu_any" [a, b, c, bias, mask, ct],
    GemmGpuWgradAny => Matmul::"gemm_gpu_wgrad_any" [a, b, c, bias_grad],
    GemmThin => Matmul::"gemm_thin" [a, b, c, bias, mask, ct],
    GemmCombine => Matmul::"gemm_combine" [parts, c, bias, mask, ct],
    GemmCombineWgrad => Matmul::"gemm_combine_wgrad" [parts, c, bias_grad],
    InteractFwd => Interaction::"interact_fwd" [t, r, r_t],
    InteractBwd => Interaction::"interact_bwd" [dr, t, dt, dt0_t],
    Bce => Loss::"bce" [step, logits, labels, dlogits, stats, dlogits_t],
    Probabilities => Loss::"probabilities" [logits, prob],
    BagFwd => Embedding::"bag_fwd" [offsets, rows, col_off, weight, out],
    BagBwd => Embedding::"bag_bwd" [opt, segs, dest, dout, weight, state, seg_grad],
    BagBwdPieces => Embedding::"bag_bwd_pieces" [cuts, dest, dout, partial],
    BagBwdCombine => Embedding::"bag_bwd_combine" [opt, segs, seg_pieces, partial, weight, state, seg_grad],
    BagFwdS => Embedding::"bag_fwd_s" [offsets, rows, col_off, weight, out],
    BagBwdS => Embedding::"bag_bwd_s" [opt, segs, dest, dout, weight, state, seg_grad],
    BagBwdPiecesS => Embedding::"bag_bwd_pieces_s" [cuts, dest, dout, partial],
    BagBwdCombineS => Embedding::"bag_bwd_combine_s" [opt, segs, seg_pieces, partial, weight, state, seg_grad],
    FiniteSpan => Finite::"finite_span" [step, region, values, stats],
    FiniteRows => Finite::"finite_rows" [step, region, segs, weight, stats],
    QrCombine => Qr::"qr_combine" [meta, e, t],
    QrSplit => Qr::"qr_split" [meta, e, dt, de],
}
