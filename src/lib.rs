//! ttrec: TT-Rec tensor-train compressed embedding tables on any GPU, through wgpu.
//!
//! An embedding table of N rows by D columns is stored as d small cores (a tensor train, as in
//! FBTT-Embedding, the reference implementation of the TT-Rec paper) and its rows are computed on
//! the fly on the GPU: forward (embedding bag, sum or mean pooling), backward, and the fused SGD
//! or Adagrad update, deterministic, on Vulkan, Metal, DX12 or a CPU Vulkan such as lavapipe.
//!
//! ```
//! use ttrec::gpu::Gpu;
//! use ttrec::tt::{Bags, Optimizer, TtEmbeddingBag, TtOptions, TtShape};
//!
//! let gpu = Gpu::new()?;
//! // 1,000,000 rows of 16 columns, three cores of ranks 8: p = (100, 100, 100) and
//! // q = (2, 2, 4) chosen as FBTT-Embedding's TTEmbeddingBag(1_000_000, 16, [8, 8]) would.
//! let shape = TtShape::auto(1_000_000, 16, &[8, 8])?;
//! assert_eq!(shape.p, [100, 100, 100]);
//! let options = TtOptions {
//!     optimizer: Optimizer::Adagrad { lr: 0.1, eps: 1e-10 },
//!     ..TtOptions::default()
//! };
//! let mut table = TtEmbeddingBag::new(&gpu, shape, options)?;
//!
//! // Two bags: rows {3, 999_999} and row {42}; `offsets` has one entry more than bags.
//! let indices = [3u32, 999_999, 42];
//! let offsets = [0u32, 2, 3];
//! let bags = Bags::new(&indices[..], &offsets[..]);
//! let pooled = table.forward(&bags)?; // [2, 16], row-major
//! assert_eq!(pooled.len(), 2 * 16);
//!
//! // Backward of sum(grad_output * pooled), with the Adagrad step fused into it.
//! let grad_output = vec![0.5f32; pooled.len()];
//! table.backward(&bags, &grad_output)?;
//! assert_ne!(table.forward(&bags)?, pooled);
//!
//! // Bad input is an error naming what is wrong, before any GPU work.
//! let too_far = [1_000_000u32];
//! let err = table.forward(&Bags::new(&too_far[..], &[0u32, 1][..])).unwrap_err();
//! assert!(err.to_string().contains("1000000"), "{err}");
//! # Ok::<(), ttrec::Error>(())
//! ```
//!
//! The public API, by what it is for:
//! - [`tt`]: TT tables: [`tt::TtShape`] (with [`tt::TtShape::auto`]), [`tt::TtOptions`],
//!   [`tt::TtEmbeddingBag`], [`tt::TtTableBatch`], initialisations, [`tt::checkpoint`] (ttrec's
//!   files and reference state dicts).
//! - [`gpu`]: the [`gpu::Gpu`] context, on ttrec's own device or one the application owns.
//! - [`dlrm`], [`train`]: dlrm's DLRM model with TT tables and whole training runs.
//! - [`predict`]: a trained model from its checkpoint, scoring raw lines or a data store.
//! - [`data`], [`metrics`]: Criteo data (reader, preprocessing, cache, synthetic) and evaluation.
//! - [`parity`]: the checker of CUDA-parity fixtures.
//! - [`Error`], [`Result`]: every error names what is wrong (table, position, value).
//!
//! Layers, bottom up (each uses only the ones below it): `error`; `io` (the atomic file write
//! every writer uses, output locks), `signals` (SIGINT and SIGTERM), `progress` (bars, or plain
//! lines off a terminal); `data`, `metrics` and
//! the plain types of TT tables (`tt_shape`: shapes and pooling; `tt_bags`: the caller's lookups
//! and where their rows go; `cache`: the row cache's configuration), no GPU; `twin`, the CPU
//! twins of every kernel in f64 (the tests' oracle); `gpu`; `graph`, the executor (a step is a
//! plan of dispatches built once and replayed); `kernels`, launchers of the WGSL kernels under
//! `shaders/`, one file per shader; `tt`; `nn` (dense tables, MLPs); `dlrm`; `train` and
//! `predict` (it reads `train`'s checkpoints, and `train --inference-only` scores through it:
//! file by file, no cycle); `parity`, `bench`; `compress` (TT-SVD, the table planner); `dist`,
//! data-parallel training's rank group (fixed-order sums and gathers, plain Rust; MPI behind
//! the feature `mpi`), used by `dlrm`'s split step and `train`. The modules `twin`, `graph`,
//! `kernels`, `nn` and `bench` are unstable internals: public so the crate's tests, benchmarks
//! and binary can reach them, hidden from these docs, without any stability promise.

#![warn(missing_debug_implementations)]

/// **Unstable internals**: the benchmarks behind `ttrec bench` and `cargo bench`.
#[doc(hidden)]
pub mod bench;
pub mod cache;
pub mod compress;
pub mod data;
pub mod dist;
pub mod dlrm;
pub mod error;
pub mod export;
pub mod gpu;
#[doc(hidden)]
pub mod graph;
pub mod io;
/// **Unstable internals**: public for the crate's tests and benchmarks only, hidden from the docs,
/// may change in any release.
#[doc(hidden)]
pub mod kernels;
pub mod metrics;
#[doc(hidden)]
pub mod nn;
pub mod parity;
pub mod predict;
pub mod progress;
pub mod signals;
pub mod train;
pub mod tt;
mod tt_bags;
mod tt_shape;
/// **Unstable internals**: the tests' CPU oracle; its functions assume valid input. Public for
/// the crate's tests only, hidden from the docs, may change in any release.
#[doc(hidden)]
pub mod twin;

pub use error::{Error, Result};
