//! dlrm's DLRM with TT-compressed tables, trained end to end on the GPU.
//! - [`config`]: model shapes, dlrm's Kaggle and Terabyte presets, which tables are TT.
//! - [`model`]: the model on the GPU; a training step is one replayed plan, one submit.
//! - [`fixture`]: PyTorch parity fixtures (`ttrec-dlrm-v1`).
//!
//! The CPU twin of a whole step (f64, the tests' oracle) is `twin::dlrm`, with the other twins.

pub mod config;
pub mod fixture;
pub mod model;

pub use config::{DlrmConfig, TableConfig, TableKind};
pub use model::{Dlrm, DlrmBatch, DlrmOptions, StepStats, Trace, TtCacheOptions};
