//! Every CPU twin of the GPU kernels, in one place: plain Rust (f64 where it matters), written
//! from the math rather than from the kernels' blocking, the oracle of every test. One file per
//! shader family, named after it: `tt` (`shaders/tt.wgsl`, `tt_subgroup.wgsl` and the TT
//! optimizers), `tt_f16` (f16 cores' rounding and updates), `tt_route` (`tt_route.wgsl`),
//! `tt_cache` (`tt_cache.wgsl`), `nn` (`matmul`, `interaction`, `loss`, `embedding`), `qr`
//! (`qr.wgsl` with the dense pooling), `md` (the mixed-dimension tables), and `dlrm`, a whole
//! DLRM step composed from them.
//!
//! Layering: the twins use only the plain types below them (`tt_shape`, `tt_bags`, the row
//! cache's constants in `cache`, `error`), never the GPU code they check. Their functions assume valid input (the GPU path validates).

pub mod dlrm;
pub mod finite;
pub mod md;
pub mod nn;
pub mod qr;
pub mod tt;
pub mod tt_cache;
pub mod tt_f16;
pub mod tt_route;
