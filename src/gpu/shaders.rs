//! The WGSL sources under `shaders/`, embedded in the binary, and the typed names of every kernel
//! ttrec launches: a launcher asks for a [`Kernel`], never for an entry point by string.

/// What every shader starts with (shaders/prelude.wgsl): `WG`, `linear_id` and the uniform
/// structs that several kernel families share.
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

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
}

impl Shader {
    pub const ALL: [Shader; 9] = [
        Shader::Tt,
        Shader::TtSubgroup,
        Shader::TtRoute,
        Shader::TtCache,
        Shader::Optim,
        Shader::Matmul,
        Shader::Interaction,
        Shader::Loss,
        Shader::Embedding,
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
        }
    }

    /// The module's source: the prelude, then the file.
    pub fn source(self) -> String {
        format!("{PRELUDE}\n{}", self.file())
    }

    /// The shader whose file stem is `name`.
    pub fn from_name(name: &str) -> Option<Shader> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

macro_rules! kernels {
    ($($variant:ident => $shader:ident :: $entry:literal,)*) => {
        /// Every compute entry point ttrec launches, with its shader.
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
        }
    };
}

kernels! {
    TtChain => Tt::"chain",
    TtChainV4 => Tt::"chain_v4",
    TtChainTV4 => Tt::"chain_t_v4",
    TtPool => Tt::"pool",
    TtRowGrad => Tt::"row_grad",
    TtCoreGrad => Tt::"core_grad",
    TtCoreGradV4 => Tt::"core_grad_v4",
    TtCoreGradPiecesV4 => Tt::"core_grad_pieces_v4",
    TtCoreGradCombine => Tt::"core_grad_combine",
    TtTransposeSlices => Tt::"transpose_slices",
    TtChainSg => TtSubgroup::"chain_sg",
    RouteDigits => TtRoute::"route_digits",
    RouteBags => TtRoute::"route_bags",
    SortCount => TtRoute::"sort_count",
    SortScan => TtRoute::"sort_scan",
    SortSegments => TtRoute::"sort_segments",
    SortPlace => TtRoute::"sort_place",
    SortFused => TtRoute::"sort_fused",
    CompactCount => TtRoute::"compact_count",
    CompactScan => TtRoute::"compact_scan",
    CompactPlace => TtRoute::"compact_place",
    CompactFinish => TtRoute::"compact_finish",
    MembersBatch => TtRoute::"members_batch",
    CacheReset => TtCache::"cache_reset",
    CacheProbe => TtCache::"cache_probe",
    SelectInit => TtCache::"select_init",
    SelectHist => TtCache::"select_hist",
    SelectChoose => TtCache::"select_choose",
    SelectCount => TtCache::"select_count",
    SelectScan => TtCache::"select_scan",
    SelectPlace => TtCache::"select_place",
    CachePool => TtCache::"cache_pool",
    SlotSortCount => TtCache::"slot_sort_count",
    SlotSortScan => TtCache::"slot_sort_scan",
    SlotSortPlace => TtCache::"slot_sort_place",
    CacheUpdate => TtCache::"cache_update",
    Optim => Optim::"optim",
    GemmTn => Matmul::"gemm_tn",
    GemmTnWgrad => Matmul::"gemm_tn_wgrad",
    GemmTiled => Matmul::"gemm_tiled",
    GemmTiledWgrad => Matmul::"gemm_tiled_wgrad",
    Transpose => Matmul::"transpose",
    InteractFwd => Interaction::"interact_fwd",
    InteractBwd => Interaction::"interact_bwd",
    Bce => Loss::"bce",
    Probabilities => Loss::"probabilities",
    BagFwd => Embedding::"bag_fwd",
    BagBwd => Embedding::"bag_bwd",
}
