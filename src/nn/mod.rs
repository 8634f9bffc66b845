//! Neural-network modules built from the kernels: each declares its parameters and adds its
//! forward, backward and update nodes to a step graph.
//! - [`embedding`]: uncompressed embedding tables (EmbeddingBag, sum) as one sharded group.
//! - [`mlp`]: linear layers with ReLU, every parameter of a model in one arena.

pub mod embedding;
pub mod mlp;

pub use embedding::{DenseBagGroup, DenseBagLookups};
pub use mlp::{act_transient, Act, ArenaLayout, ArenaTensor, Mlp, MlpActivations, ParamArena};
