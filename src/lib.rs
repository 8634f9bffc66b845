//! ttrec: TT-Rec tensor-train compressed embedding tables on any GPU, through wgpu.
//!
//! Layers, bottom up (each uses only the ones below it):
//! - [`data`], [`metrics`]: Criteo reader, preprocessing, cache, synthetic source; no GPU.
//! - [`io`]: the atomic file write every writer uses.
//! - [`mod@reference`]: CPU twins of every GPU kernel, in f64; the oracle of the tests.
//! - [`gpu`]: adapter/device (own or borrowed), buffers, pipeline cache, readback, timestamps.
//! - [`graph`]: the executor; a step is a plan of dispatches built once and replayed.
//! - [`kernels`]: thin launchers of the WGSL kernel families under `shaders/`.
//! - [`tt`]: TT shapes, initialisation, the TT-EmbeddingBag table, checkpoints.
//! - [`nn`]: dense embedding tables, MLPs: modules that record their nodes into a step.
//! - [`dlrm`]: the DLRM model; its training step is one replayed graph.
//! - [`train`]: a whole training run (data, loop, evaluation, checkpoints, summary).
//! - [`parity`], [`mod@bench`]: the CUDA-parity checker and the benchmarks behind the CLI.
//! - [`progress`]: progress bars (plain lines off a terminal) for programs' long operations.

pub mod bench;
pub mod data;
pub mod dlrm;
pub mod error;
pub mod gpu;
pub mod graph;
pub mod io;
pub mod kernels;
pub mod metrics;
pub mod nn;
pub mod parity;
pub mod progress;
pub mod reference;
pub mod train;
pub mod tt;

pub use error::{Error, Result};
