//! Neural-network modules built from the kernels: each declares its parameters and adds its
//! forward, backward and update nodes to a step graph.
//! - [`embedding`]: uncompressed embedding tables (EmbeddingBag, sum) as one sharded group.
//! - [`qr`]: dlrm's quotient-remainder tables (two dense tables each, combined per bag).
//! - [`mlp`]: linear layers with ReLU, every parameter of a model in one arena.
//! - [`md`]: dlrm's mixed-dimension tables (narrow rows, then a projection to D).
//!
//! **Unstable internals**: public for the crate's tests and benchmarks only, hidden from the
//! docs, may change in any release.

pub mod embedding;
pub mod md;
pub mod mlp;
pub mod qr;
mod row_sort;

pub use embedding::{DenseBagGroup, DenseBagLookups};
pub use mlp::{act_transient, Act, ArenaLayout, ArenaTensor, Mlp, MlpActivations, ParamArena};
pub use qr::{QrBagGroup, QrLookups, QrPart, QrTableSpec};
