//! dlrm's DLRM with TT-compressed tables, trained end to end on the GPU.
//! - [`config`]: model shapes, dlrm's Kaggle and Terabyte presets, which tables are TT.
//! - [`model`]: the model on the GPU; a training step is one replayed plan, one submit.
//! - `twin`: the CPU twin of a whole step (f64), the oracle of the tests (an unstable
//!   internal, hidden from these docs).
//! - [`fixture`]: PyTorch parity fixtures (`ttrec-dlrm-v1`).
//! - `finite`: the per-step finiteness checks of the parameters, recorded into the training
//!   plan (their flag travels in the step statistics).

pub mod config;
mod finite;
pub mod fixture;
pub mod model;
/// **Unstable internals**: the tests' CPU oracle of a DLRM step; hidden from the docs, may change
/// in any release.
#[doc(hidden)]
pub mod twin;

pub use config::{DlrmConfig, TableConfig, TableKind};
pub use model::{Dlrm, DlrmBatch, DlrmOptions, StepStats, Trace, TtCacheOptions};
