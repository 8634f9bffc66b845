//! The options of a training run (`ttrec train`, `examples/train_kaggle.rs`), named as dlrm's
//! `dlrm_s_pytorch.py` names them where dlrm has them, and their checks: a bad option or
//! combination is an error before any work.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::data::NUM_DENSE;
use crate::dlrm::config::parse_widths;
use crate::error::{Error, Result};
use crate::gpu::DeviceLimits;
use crate::tt::TtInit;

/// Synthetic samples (train + test) of the default run: sized so that the default run finishes
/// in under 5 minutes on a 2-core machine without a GPU (lavapipe).
pub const DEFAULT_SYNTHETIC_SAMPLES: u64 = 280_000;

/// How the embedding tables are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EmbeddingKind {
    /// The largest tables as tensor trains (`--tt-tables`, `--tt-threshold`), the rest dense.
    Tt,
    /// Every table uncompressed, as dlrm.
    Dense,
}

/// Options of a DLRM training run.
#[derive(Clone, Debug, Args)]
pub struct TrainArgs {
    /// Raw Criteo TSV files (plain or gzip), or directories of day files, read in order as one
    /// data set. Default: the built-in synthetic Criteo-shaped source.
    #[arg(long, num_args = 1.., value_name = "PATH")]
    pub data: Vec<PathBuf>,
    /// The preprocessed data store of --data (built when missing, then reused; one built from
    /// other files or settings is an error unless --rebuild-data-store).
    /// Default: `<first file>.ttcache`.
    #[arg(long, value_name = "PATH")]
    pub processed_data_file: Option<PathBuf>,
    /// Synthetic samples, train and test together (without --data).
    #[arg(long, default_value_t = DEFAULT_SYNTHETIC_SAMPLES)]
    pub synthetic_samples: u64,
    /// Factor on Kaggle's table sizes for the synthetic source.
    #[arg(long, default_value_t = 1.0)]
    pub synthetic_scale: f64,
    /// Passes over the training data.
    #[arg(long, default_value_t = 1)]
    pub nepochs: usize,
    /// Training batches per epoch at most (default: all).
    #[arg(long)]
    pub num_batches: Option<usize>,
    #[arg(long, default_value_t = 256)]
    pub mini_batch_size: usize,
    #[arg(long, default_value_t = 16384)]
    pub test_mini_batch_size: usize,
    #[arg(long, default_value_t = 0.2)]
    pub learning_rate: f32,
    /// Embedding dimension D.
    #[arg(long, default_value_t = 16)]
    pub arch_sparse_feature_size: usize,
    /// Bottom MLP widths, dash-separated, input first (13 dense features) and D last.
    #[arg(long, default_value = "13-512-256-64-16")]
    pub arch_mlp_bot: String,
    /// Top MLP widths after the interaction, dash-separated, ending in 1.
    #[arg(long, default_value = "512-256-1")]
    pub arch_mlp_top: String,
    /// Categorical values are taken modulo this before the dictionary (dlrm's Terabyte option).
    #[arg(long)]
    pub max_ind_range: Option<u64>,
    /// Evaluate on the last F of the samples (default: dlrm's split, the first half of the last
    /// of 7 days; synthetic data: 0.1).
    #[arg(long, value_name = "F")]
    pub test_fraction: Option<f64>,
    /// Evaluate every N training batches (and always at the end of each epoch).
    #[arg(long, value_name = "N")]
    pub test_freq: Option<usize>,
    /// Print (and log) the running loss every N training batches.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub print_freq: usize,
    /// Seed of every initialisation and of the order of the training samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = EmbeddingKind::Tt)]
    pub embedding: EmbeddingKind,
    /// TT-compress the K largest tables (default 7).
    #[arg(long, value_name = "K", conflicts_with = "tt_threshold")]
    pub tt_tables: Option<usize>,
    /// TT-compress every table of at least ROWS rows.
    #[arg(long, value_name = "ROWS")]
    pub tt_threshold: Option<u64>,
    /// Rank of the TT tables (default 32).
    #[arg(long, value_name = "R")]
    pub tt_rank: Option<usize>,
    /// How TT cores are drawn: sampled-gaussian (default), uniform, naive-uniform, normal,
    /// approx-normal.
    #[arg(long, value_name = "NAME")]
    pub tt_init: Option<String>,
    /// An LFU row cache on the TT tables: rows as a fraction of each TT group's rows (below 1,
    /// e.g. 0.01) or a count per TT table (from 1 on). Off by default.
    #[arg(long, value_name = "ROWS", allow_negative_numbers = true)]
    pub cache_rows: Option<f64>,
    /// Training steps before the cache's first refresh.
    #[arg(long, value_name = "STEPS", default_value_t = 100)]
    pub cache_warmup: usize,
    /// Training steps between the cache's refreshes.
    #[arg(long, value_name = "STEPS", default_value_t = 1000)]
    pub cache_refresh: usize,
    /// Write checkpoints here (at each evaluation, at the end, on Ctrl-C).
    #[arg(long, value_name = "PATH")]
    pub save_model: Option<PathBuf>,
    /// Resume from this checkpoint (its model shape must match the options).
    #[arg(long, value_name = "PATH")]
    pub load_model: Option<PathBuf>,
    /// Write the run's summary as one JSON object (and the plot next to it).
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
    /// Append one JSON line per print and test step.
    #[arg(long, value_name = "PATH")]
    pub metrics_jsonl: Option<PathBuf>,
    /// Draw training loss and evaluation AUC here (SVG). Default: next to --summary-json (or
    /// --metrics-jsonl), where a plot that cannot be written is only reported; named here, it
    /// is an output like the others (checked before any work, its failure an error).
    #[arg(long, value_name = "PATH")]
    pub plot: Option<PathBuf>,
    /// The device's limits: the adapter's own, or WebGPU's defaults (a run that fits a
    /// browser's WebGPU device).
    #[arg(long, value_enum, default_value_t = DeviceLimits::Adapter)]
    pub limits: DeviceLimits,
    /// Stop after N training steps in this run, as Ctrl-C would (checkpoint, non-zero exit).
    #[arg(long, value_name = "N", hide = true)]
    pub stop_after_steps: Option<u64>,
    /// Kernel class: auto (the adapter's), gpu or cpu (GPU-shaped kernels on any adapter).
    #[arg(long, default_value = "auto", value_parser = crate::gpu::KernelClass::parse)]
    pub kernels: crate::gpu::KernelClass,
    /// dlrm's evaluation-only run: score this run's evaluation samples with the --load-model
    /// checkpoint (mapped through its own dictionaries), print AUC, log loss and accuracy; no
    /// training.
    #[arg(long, requires = "load_model")]
    pub inference_only: bool,
    /// Rebuild the --processed-data-file store when it was built from other files or with
    /// other settings (without it, that is an error: a store is never overwritten silently).
    #[arg(long)]
    pub rebuild_data_store: bool,
}

impl Default for TrainArgs {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            args: TrainArgs,
        }
        Wrap::parse_from(["train"]).args
    }
}

/// Checked options.
#[derive(Clone, Debug)]
pub struct Checked {
    pub bottom: Vec<usize>,
    pub top: Vec<usize>,
    pub tt_rank: usize,
    pub tt_init: TtInit,
    pub tt_tables: Option<usize>,
    pub tt_threshold: Option<u64>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::input(None, msg)
}

impl TrainArgs {
    /// Checks every option and combination before any work; the error names the option.
    pub fn check(&self) -> Result<Checked> {
        let bottom =
            parse_widths(&self.arch_mlp_bot).map_err(|e| bad(format!("--arch-mlp-bot: {e}")))?;
        let top =
            parse_widths(&self.arch_mlp_top).map_err(|e| bad(format!("--arch-mlp-top: {e}")))?;
        if bottom.first() != Some(&NUM_DENSE) {
            return Err(bad(format!(
                "--arch-mlp-bot {} must start with {NUM_DENSE} (Criteo's dense features)",
                self.arch_mlp_bot
            )));
        }
        if bottom.len() < 2 || bottom.last() != Some(&self.arch_sparse_feature_size) {
            return Err(bad(format!(
                "--arch-mlp-bot {} must end with --arch-sparse-feature-size {} (the bottom MLP's output meets the embeddings)",
                self.arch_mlp_bot, self.arch_sparse_feature_size
            )));
        }
        if !self.arch_sparse_feature_size.is_multiple_of(4) {
            return Err(bad(format!(
                "--arch-sparse-feature-size {} must be a multiple of 4",
                self.arch_sparse_feature_size
            )));
        }
        if top.last() != Some(&1) {
            return Err(bad(format!(
                "--arch-mlp-top {} must end with 1 (the click logit)",
                self.arch_mlp_top
            )));
        }
        if self.mini_batch_size == 0 || self.test_mini_batch_size == 0 {
            return Err(bad(
                "--mini-batch-size and --test-mini-batch-size must be positive",
            ));
        }
        if self.nepochs == 0 {
            return Err(bad("--nepochs must be at least 1"));
        }
        if self.num_batches == Some(0) {
            return Err(bad("--num-batches must be at least 1"));
        }
        if self.print_freq == 0 || self.test_freq == Some(0) {
            return Err(bad("--print-freq and --test-freq must be at least 1"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(bad(format!(
                "--learning-rate must be a positive number, got {}",
                self.learning_rate
            )));
        }
        if let Some(f) = self.test_fraction {
            if !(f.is_finite() && f > 0.0 && f < 1.0) {
                return Err(bad(format!(
                    "--test-fraction must be between 0 and 1 (exclusive), got {f}"
                )));
            }
        }
        self.check_data_source()?;
        if self.max_ind_range == Some(0) {
            return Err(bad("--max-ind-range must be at least 1"));
        }
        let tt_options = self.tt_tables.is_some()
            || self.tt_threshold.is_some()
            || self.tt_rank.is_some()
            || self.tt_init.is_some();
        if self.embedding == EmbeddingKind::Dense && tt_options {
            return Err(bad(
                "--tt-tables, --tt-threshold, --tt-rank and --tt-init need --embedding tt",
            ));
        }
        if self.tt_tables == Some(0) {
            return Err(bad(
                "--tt-tables must be at least 1 (use --embedding dense for none)",
            ));
        }
        if let Some(r) = self.cache_rows {
            if !(r.is_finite() && r > 0.0) {
                return Err(bad(format!(
                    "--cache-rows must be a fraction in (0, 1) or a row count of at least 1, got {r}"
                )));
            }
            if self.embedding == EmbeddingKind::Dense {
                return Err(bad(
                    "--cache-rows needs --embedding tt (it caches TT tables' rows)",
                ));
            }
        }
        if self.cache_refresh == 0 {
            return Err(bad("--cache-refresh must be at least 1"));
        }
        let tt_rank = self.tt_rank.unwrap_or(32);
        if tt_rank == 0 {
            return Err(bad("--tt-rank must be at least 1"));
        }
        let tt_init = match &self.tt_init {
            Some(s) => s
                .parse()
                .map_err(|e: Error| bad(format!("--tt-init: {e}")))?,
            None => TtInit::SampledGaussian,
        };
        self.check_paths()?;
        Ok(Checked {
            bottom,
            top,
            tt_rank,
            tt_init,
            tt_tables: match (self.embedding, self.tt_tables, self.tt_threshold) {
                (EmbeddingKind::Tt, None, None) => Some(7),
                (_, t, _) => t,
            },
            tt_threshold: self.tt_threshold,
        })
    }

    /// The data source's options: the synthetic source's, or files that exist.
    fn check_data_source(&self) -> Result<()> {
        if self.data.is_empty() {
            if self.processed_data_file.is_some() {
                return Err(bad(
                    "--processed-data-file needs --data (the synthetic source has no data store)",
                ));
            }
            if self.max_ind_range.is_some() {
                return Err(bad("--max-ind-range needs --data"));
            }
            if self.synthetic_samples < 20 {
                return Err(bad("--synthetic-samples must be at least 20"));
            }
            if !(self.synthetic_scale.is_finite() && self.synthetic_scale > 0.0) {
                return Err(bad(format!(
                    "--synthetic-scale must be a positive number, got {}",
                    self.synthetic_scale
                )));
            }
        } else {
            for p in &self.data {
                if !p.exists() {
                    return Err(Error::file(p, "--data: no such file or directory"));
                }
            }
        }
        Ok(())
    }

    /// The checkpoint to load exists; every output can be written: not a directory, in a
    /// directory that exists and takes new files, no two outputs on one path.
    fn check_paths(&self) -> Result<()> {
        if let Some(p) = &self.load_model {
            if !p.is_file() {
                return Err(Error::file(p, "--load-model: no such checkpoint file"));
            }
        }
        let outputs = self.outputs();
        for (i, (flag, p)) in outputs.iter().enumerate() {
            if let Some((other, _)) = outputs[..i].iter().find(|(_, q)| q == p) {
                return Err(Error::file(
                    p,
                    format!("{other} and {flag} name the same file"),
                ));
            }
            check_output(flag, p)?;
        }
        Ok(())
    }

    /// The run's outputs by option: checkpoint, summary, metrics, the plot when named.
    pub fn outputs(&self) -> Vec<(&'static str, PathBuf)> {
        [
            ("--save-model", &self.save_model),
            ("--summary-json", &self.summary_json),
            ("--metrics-jsonl", &self.metrics_jsonl),
            ("--plot", &self.plot),
        ]
        .into_iter()
        .filter_map(|(flag, p)| p.clone().map(|p| (flag, p)))
        .collect()
    }
}

/// Checks that output `p` of option `flag` can be written: not a directory, in a directory
/// that exists and takes a new file (tried: permission bits do not tell, e.g. for root or on
/// a read-only mount), and, for a file there already, one that opens for writing.
fn check_output(flag: &str, p: &std::path::Path) -> Result<()> {
    if p.is_dir() {
        return Err(Error::file(p, format!("{flag}: is a directory")));
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::file(
            p,
            format!("{flag}: the directory {} does not exist", dir.display()),
        ));
    }
    tempfile::Builder::new()
        .prefix(".ttrec-write-check.")
        .tempfile_in(dir)
        .map_err(|e| {
            Error::file(
                p,
                format!(
                    "{flag}: cannot write in the directory {}: {e}",
                    dir.display()
                ),
            )
        })?;
    if p.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(p)
            .map_err(|e| Error::file(p, format!("{flag}: cannot write: {e}")))?;
    }
    Ok(())
}
