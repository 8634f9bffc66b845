//! TT tables: shapes ([`TtShape`], [`TtShape::auto`], [`shapes`]), initialisation ([`init`]),
//! the TT-EmbeddingBag ([`TtEmbeddingBag`], several in one call: [`TtTableBatch`]) with its
//! options ([`TtOptions`], [`Pooling`], [`Optimizer`]), its GPU state ([`TtParams`]) and
//! checkpoints ([`checkpoint`]).
//!
//! Core k is stored row-major as `[p_k, R_k q_k R_{k+1}]`, the reference (FBTT-Embedding)
//! layout, so cores move between ttrec and PyTorch unchanged. Lookups are
//! [`Bags`]: indices (u32 or i64) and B+1 offsets, optionally per-sample weights.
//!
//! Where things live (this file is the public face only: modules and re-exports):
//! - `options.rs`: [`TtOptions`] and [`Optimizer`];
//! - `params.rs`: [`TtParams`], the GPU state of a table or of a group of tables stored as one;
//! - `row_cache.rs`: [`TtCache`], the LFU row cache attached to a table, and `refresh.rs`, its
//!   refresh as training steps drive it;
//! - `lookups/`: recording a table's lookups into a step graph (layout, host packing, routing,
//!   chain);
//! - `table.rs`: the standalone [`TtEmbeddingBag`] and [`TtTableBatch`], plans of their lookups;
//! - `init.rs`, `checkpoint.rs`, `shapes.rs` (shapes suggested as the reference does).
//!
//! [`TtShape`], [`Pooling`] (`src/tt_shape.rs`) and [`Bags`], [`Ids`] (`src/tt_bags.rs`) are
//! plain types defined below this module, so that the CPU twins can share them.

pub mod checkpoint;
pub mod init;
/// **Unstable internals**: recording a table's lookups into a step graph; public for the crate's
/// tests and models only, hidden from the docs, may change in any release.
#[doc(hidden)]
pub mod lookups;
pub mod options;
#[doc(hidden)]
pub mod params;
mod refresh;
pub mod row_cache;
pub mod shapes;
#[doc(hidden)]
pub mod table;

pub use crate::kernels::tt::{CoreGradStrategy, TtKernels};
pub use crate::kernels::tt_route::SortStrategy;
#[doc(hidden)]
pub use crate::tt_bags::Placement;
pub use crate::tt_bags::{Bags, Ids};
#[doc(hidden)]
pub use crate::tt_shape::GroupTable;
pub use crate::tt_shape::{Pooling, TtShape};
pub use init::{init_cores, TtInit};
#[doc(hidden)]
pub use lookups::{TtLookups, TtSaved};
pub use options::{CorePrecision, Optimizer, TtOptions, DEFAULT_SCRATCH_BYTES};
pub use params::TtParams;
pub use row_cache::TtCache;
pub use shapes::suggested_tt_shapes;
pub use table::{Mode, TtEmbeddingBag, TtTableBatch};
