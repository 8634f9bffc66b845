//! Subcommands of the `ttrec` binary, one file each: `parity`, `bench` (tt, dlrm, gemm, cache, compress),
//! `info`, `kernels` (the pipeline export), `data` (inspect, preprocess, synth), `train` and
//! `predict`; `tt` (convert: dense <-> TT) and `plan` (what a run's model occupies); `args`
//! holds the value parsers they share.
//!
//! With `--json` every line on stdout is one JSON object whose `"type"` says what it is:
//! `info`; `kernels_export`; `parity_case`, `parity_summary`; `bench_tt`, `bench_tt_kernel`;
//! `bench_dlrm`, `bench_dlrm_node`, `bench_dlrm_part`; `bench_gemm`; `bench_cache`; `bench_compress`; `tt_convert`;
//! `plan`. Progress goes
//! to stderr.

pub mod args;
pub mod bench;
pub mod data;
pub mod info;
pub mod kernels;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod parity;
pub mod plan;
pub mod predict;
pub mod train;
pub mod tt;
