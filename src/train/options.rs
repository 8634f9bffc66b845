//! The options of a training run (`ttrec train`, `examples/train_kaggle.rs`), named as dlrm's
//! `dlrm_s_pytorch.py` names them where dlrm has them, and their checks: a bad option or
//! combination is an error before any work.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::data::NUM_DENSE;
use crate::dlrm::config::parse_widths;
use crate::dlrm::OptimizerKind;
use crate::error::{Error, Result};
use crate::gpu::DeviceLimits;
use crate::tt::TtInit;

use super::baseline_flags::BaselineFlags;
use super::dlrm_flags::{raw_data_files, store_for_processed, DlrmFlags};
use super::lr::LrPolicy;

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
    /// dlrm's quotient-remainder tables for the tables above --qr-threshold rows (`--qr-*`).
    Qr,
    /// dlrm's mixed-dimension tables for the tables above --md-threshold rows (`--md-*`).
    Md,
}

impl EmbeddingKind {
    /// The name `--embedding` takes.
    pub fn name(self) -> &'static str {
        match self {
            EmbeddingKind::Tt => "tt",
            EmbeddingKind::Dense => "dense",
            EmbeddingKind::Qr => "qr",
            EmbeddingKind::Md => "md",
        }
    }
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
    /// Training batches per epoch at most (default, or 0 as in dlrm: all).
    #[arg(long)]
    pub num_batches: Option<usize>,
    #[arg(long, default_value_t = 256)]
    pub mini_batch_size: usize,
    /// Evaluation batch (-1 as in dlrm: --mini-batch-size).
    #[arg(long, default_value_t = 16384, allow_negative_numbers = true)]
    pub test_mini_batch_size: i64,
    #[arg(long, default_value_t = 0.2)]
    pub learning_rate: f64,
    /// The optimizer of every parameter: sgd or adagrad (torch.optim.Adagrad's, eps 1e-10).
    #[arg(long, default_value = "sgd", value_name = "NAME")]
    pub optimizer: String,
    /// dlrm's learning-rate warm-up: the rate rises linearly over the first W steps.
    #[arg(long, default_value_t = 0, value_name = "W")]
    pub lr_num_warmup_steps: u64,
    /// dlrm's learning-rate decay starts at this step (at or after the warm-up's end).
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub lr_decay_start_step: u64,
    /// dlrm's learning-rate decay: quadratic to 0 (floor 1e-7) over N steps, then held.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub lr_num_decay_steps: u64,
    /// Stop training once an evaluation's best AUC exceeds this (dlrm's MLPerf target; 0: off).
    #[arg(long, value_name = "AUC")]
    pub mlperf_auc_threshold: Option<f64>,
    /// Stop training once an evaluation's best accuracy exceeds this (a fraction; 0: off).
    #[arg(long, value_name = "ACC")]
    pub mlperf_acc_threshold: Option<f64>,
    /// Embedding dimension D.
    #[arg(long, default_value_t = 16)]
    pub arch_sparse_feature_size: usize,
    /// Bottom MLP widths, dash-separated, input first (13 dense features) and D last.
    #[arg(long, default_value = "13-512-256-64-16")]
    pub arch_mlp_bot: String,
    /// Top MLP widths after the interaction, dash-separated, ending in 1.
    #[arg(long, default_value = "512-256-1")]
    pub arch_mlp_top: String,
    /// Categorical values are taken modulo this before the dictionary (dlrm's Terabyte option;
    /// -1 as in dlrm: none).
    #[arg(long, allow_negative_numbers = true)]
    pub max_ind_range: Option<i64>,
    /// Evaluate on the last F of the samples (default: dlrm's split, the first half of the last
    /// of 7 days; synthetic data: 0.1).
    #[arg(long, value_name = "F")]
    pub test_fraction: Option<f64>,
    /// Evaluate every N training batches (and always at the end of each epoch; -1 as in dlrm:
    /// the default).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub test_freq: Option<i64>,
    /// Print (and log) the running loss every N training batches.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub print_freq: usize,
    /// Seed of every initialisation and of the order of the training samples (dlrm's
    /// --numpy-rand-seed).
    #[arg(long, default_value_t = 0, alias = "numpy-rand-seed")]
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
    #[arg(long, value_name = "R", conflicts_with = "tt_ranks")]
    pub tt_rank: Option<usize>,
    /// FBTT's interior ranks of every TT table, comma-separated (`32,32`: 3 cores).
    #[arg(long, value_name = "R1,R2,..")]
    pub tt_ranks: Option<String>,
    /// FBTT's row factors, comma-separated, one list for every TT table or one per TT table
    /// separated by `;` (in table order); each list's product must cover its table's rows.
    #[arg(long, value_name = "P1,P2,..")]
    pub tt_p_shapes: Option<String>,
    /// FBTT's column factors, comma-separated; their product must be the embedding dimension.
    #[arg(long, value_name = "Q1,Q2,..")]
    pub tt_q_shapes: Option<String>,
    /// How TT cores are drawn: sampled-gaussian (default), uniform, naive-uniform, normal,
    /// approx-normal; or from-dense:CHECKPOINT, the TT-SVD of a dense model's tables (its MLPs
    /// and dense tables copied too: a warm start).
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
    /// How TT cores are stored on the GPU: f32, or f16 (half the memory; f32 arithmetic; needs
    /// an adapter with SHADER_F16). Default: f32, or the --load-model checkpoint's.
    #[arg(long, value_name = "f32|f16", value_parser = parse_tt_precision)]
    pub tt_precision: Option<crate::tt::CorePrecision>,
    /// dlrm's evaluation-only run: score this run's evaluation samples with the --load-model
    /// checkpoint (mapped through its own dictionaries), print AUC, log loss and accuracy; no
    /// training.
    #[arg(long, requires = "load_model")]
    pub inference_only: bool,
    /// Rebuild the --processed-data-file store when it was built from other files or with
    /// other settings (without it, that is an error: a store is never overwritten silently).
    #[arg(long)]
    pub rebuild_data_store: bool,
    /// Embedding parameter bytes at most (e.g. 20MB, 1.5GiB): the planner chooses per table
    /// dense or TT, and the TT ranks (at most --tt-rank); TT only where it pays.
    #[arg(long, value_name = "SIZE", value_parser = crate::compress::plan::parse_bytes,
          conflicts_with_all = ["tt_tables", "tt_threshold", "compression"])]
    pub embedding_budget: Option<u64>,
    /// Embeddings this many times smaller than dense at least (e.g. 100x), planned as
    /// --embedding-budget.
    #[arg(long, value_name = "FACTOR", value_parser = crate::compress::plan::parse_compression,
          conflicts_with_all = ["tt_tables", "tt_threshold"])]
    pub compression: Option<f64>,
    /// dlrm's quotient-remainder and mixed-dimension options.
    #[command(flatten)]
    pub baselines: BaselineFlags,
    /// dlrm's flags that have no ttrec option of their own.
    #[command(flatten)]
    pub dlrm: DlrmFlags,
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

/// Checked options, with dlrm's sentinels (-1, 0) and forms resolved.
#[derive(Clone, Debug)]
pub struct Checked {
    pub bottom: Vec<usize>,
    pub top: Vec<usize>,
    pub tt_rank: usize,
    pub tt_init: TtInit,
    pub tt_tables: Option<usize>,
    pub tt_threshold: Option<u64>,
    /// FBTT's explicit TT shapes, when given.
    pub tt_shapes: TtShapeFlags,
    /// The data files (empty: the synthetic source).
    pub data: Vec<PathBuf>,
    /// The data store (None: the default next to the first file).
    pub store: Option<PathBuf>,
    pub max_ind_range: Option<u64>,
    pub num_batches: Option<usize>,
    pub test_freq: Option<usize>,
    pub test_batch: usize,
    pub optimizer: OptimizerKind,
    pub lr: LrPolicy,
    pub auc_target: Option<f64>,
    pub acc_target: Option<f64>,
    /// Flags accepted without effect and forms changed, one line each (printed once).
    pub notes: Vec<String>,
    /// `--embedding-budget` or `--compression`.
    pub budget: Option<crate::compress::Budget>,
    /// `--tt-init from-dense:PATH`: the dense checkpoint TT tables start from.
    pub tt_from_dense: Option<PathBuf>,
    /// The embedding method (`--embedding`, or dlrm's `--qr-flag` / `--md-flag`).
    pub embedding: EmbeddingKind,
    /// The QR or MD baseline with its options, for `--embedding qr|md`.
    pub baseline: Option<crate::dlrm::Baseline>,
}

/// FBTT's `--tt-ranks`, `--tt-p-shapes`, `--tt-q-shapes`, parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TtShapeFlags {
    pub ranks: Option<Vec<usize>>,
    /// One list for every TT table, or one per TT table.
    pub p: Option<Vec<Vec<usize>>>,
    pub q: Option<Vec<usize>>,
}

/// "4,8,16" as positive integers; the error names the flag.
fn factor_list(flag: &str, s: &str) -> Result<Vec<usize>> {
    let v: Option<Vec<usize>> = s
        .split(',')
        .map(|x| x.trim().parse::<usize>().ok().filter(|&n| n > 0))
        .collect();
    match v {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(bad(format!(
            "{flag} {s:?}: must be comma-separated whole numbers of at least 1"
        ))),
    }
}

/// `--tt-precision`: f32 or f16.
pub fn parse_tt_precision(s: &str) -> std::result::Result<crate::tt::CorePrecision, String> {
    crate::tt::CorePrecision::parse(s).ok_or_else(|| format!("{s:?}: f32 or f16"))
}

fn bad(msg: impl Into<String>) -> Error {
    Error::input(None, msg)
}

impl TrainArgs {
    /// Checks every option and combination before any work; the error names the option.
    pub fn check(&self) -> Result<Checked> {
        self.dlrm.check()?;
        let embedding = self.baselines.embedding(self.embedding);
        let baseline = self.baselines.check(embedding)?;
        let (bottom, top) = self.check_model()?;
        if self.mini_batch_size == 0 || self.test_mini_batch_size == 0 {
            return Err(bad(
                "--mini-batch-size and --test-mini-batch-size must be positive",
            ));
        }
        if self.nepochs == 0 {
            return Err(bad("--nepochs must be at least 1"));
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
        let mut notes = self.dlrm.notes();
        let (data, store) = self.check_data_source(&mut notes)?;
        if self.max_ind_range == Some(0) {
            return Err(bad("--max-ind-range must be at least 1 (or -1: none)"));
        }
        let tt_shapes = self.check_tt_options()?;
        if let Some(r) = self.cache_rows {
            if !(r.is_finite() && r > 0.0) {
                return Err(bad(format!(
                    "--cache-rows must be a fraction in (0, 1) or a row count of at least 1, got {r}"
                )));
            }
            if self.baselines.embedding(self.embedding) != EmbeddingKind::Tt {
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
        let tt_from_dense = self
            .tt_init
            .as_deref()
            .and_then(|s| s.strip_prefix("from-dense:"))
            .map(PathBuf::from);
        if let Some(p) = &tt_from_dense {
            if !p.is_file() {
                return Err(Error::file(
                    p,
                    "--tt-init from-dense: no such checkpoint file",
                ));
            }
            if self.load_model.is_some() {
                return Err(bad(
                    "--tt-init from-dense: and --load-model both say where the model starts; give one",
                ));
            }
        }
        let tt_init = match self.tt_init.as_deref().filter(|_| tt_from_dense.is_none()) {
            Some(s) => s
                .parse()
                .map_err(|e: Error| bad(format!("--tt-init: {e}")))?,
            None => TtInit::SampledGaussian,
        };
        let optimizer = self.check_optimizer()?;
        let lr = LrPolicy::new(
            self.learning_rate,
            self.lr_num_warmup_steps,
            self.lr_decay_start_step,
            self.lr_num_decay_steps,
        )?;
        let target = |flag: &str, v: Option<f64>| -> Result<Option<f64>> {
            match v {
                None => Ok(None),
                Some(0.0) => Ok(None),
                Some(t) if t.is_finite() && t > 0.0 && t < 1.0 => Ok(Some(t)),
                Some(t) => Err(bad(format!(
                    "{flag} must be between 0 and 1 (0: off), got {t}"
                ))),
            }
        };
        let auc_target = target("--mlperf-auc-threshold", self.mlperf_auc_threshold)?;
        let acc_target = target("--mlperf-acc-threshold", self.mlperf_acc_threshold)?;
        self.check_paths()?;
        Ok(Checked {
            bottom,
            top,
            tt_rank,
            tt_init,
            tt_tables: match (embedding, self.tt_tables, self.tt_threshold) {
                (EmbeddingKind::Tt, None, None) => Some(7),
                (_, t, _) => t,
            },
            tt_threshold: self.tt_threshold,
            tt_shapes,
            data,
            store,
            max_ind_range: self.max_ind_range.filter(|&m| m > 0).map(|m| m as u64),
            num_batches: self.num_batches.filter(|&n| n > 0),
            test_freq: self.test_freq.filter(|&f| f > 0).map(|f| f as usize),
            test_batch: if self.test_mini_batch_size < 0 {
                self.mini_batch_size
            } else {
                self.test_mini_batch_size as usize
            },
            optimizer,
            lr,
            auc_target,
            acc_target,
            notes,
            budget: match (self.embedding_budget, self.compression) {
                (Some(b), _) => Some(crate::compress::Budget::Bytes(b)),
                (None, Some(c)) => Some(crate::compress::Budget::Compression(c)),
                (None, None) => None,
            },
            tt_from_dense,
            embedding,
            baseline,
        })
    }

    /// The MLP widths, checked against each other and the embedding dimension.
    fn check_model(&self) -> Result<(Vec<usize>, Vec<usize>)> {
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
        let concat = self
            .baselines
            .concat(self.baselines.embedding(self.embedding));
        let want = self.arch_sparse_feature_size * if concat { 2 } else { 1 };
        if bottom.len() < 2 || bottom.last() != Some(&want) {
            return Err(bad(if concat {
                format!(
                    "--arch-mlp-bot {} must end with twice --arch-sparse-feature-size {} (QR concat puts two vectors of that size side by side, as in dlrm)",
                    self.arch_mlp_bot, self.arch_sparse_feature_size
                )
            } else {
                format!(
                    "--arch-mlp-bot {} must end with --arch-sparse-feature-size {} (the bottom MLP's output meets the embeddings)",
                    self.arch_mlp_bot, self.arch_sparse_feature_size
                )
            }));
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
        Ok((bottom, top))
    }

    /// The TT options: only with TT tables; FBTT's shapes parsed and consistent with each
    /// other and the embedding dimension (their fit to each table is checked with the sizes).
    fn check_tt_options(&self) -> Result<TtShapeFlags> {
        let tt_options = self.tt_tables.is_some()
            || self.tt_threshold.is_some()
            || self.tt_rank.is_some()
            || self.tt_init.is_some()
            || self.tt_ranks.is_some()
            || self.tt_p_shapes.is_some()
            || self.tt_q_shapes.is_some()
            || self.embedding_budget.is_some()
            || self.compression.is_some();
        if self.baselines.embedding(self.embedding) != EmbeddingKind::Tt && tt_options {
            return Err(bad(
                "--tt-tables, --tt-threshold, --tt-rank(s), --tt-p-shapes, --tt-q-shapes, --tt-init, --embedding-budget and --compression need --embedding tt",
            ));
        }
        if self.tt_tables == Some(0) {
            return Err(bad(
                "--tt-tables must be at least 1 (use --embedding dense for none)",
            ));
        }
        let ranks = match &self.tt_ranks {
            Some(s) => Some(factor_list("--tt-ranks", s)?),
            None => None,
        };
        let q = match &self.tt_q_shapes {
            Some(s) => Some(factor_list("--tt-q-shapes", s)?),
            None => None,
        };
        let p = match &self.tt_p_shapes {
            Some(s) => Some(
                s.split(';')
                    .map(|one| factor_list("--tt-p-shapes", one))
                    .collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let cores = |what: &str, n: usize| (what.to_string(), n);
        let mut counts: Vec<(String, usize)> = Vec::new();
        if let Some(r) = &ranks {
            counts.push(cores("--tt-ranks (interior ranks: cores - 1)", r.len() + 1));
        }
        if let Some(q) = &q {
            counts.push(cores("--tt-q-shapes", q.len()));
            let d: usize = q.iter().product();
            if d != self.arch_sparse_feature_size {
                return Err(bad(format!(
                    "--tt-q-shapes {}: the product {d} must be --arch-sparse-feature-size {}",
                    self.tt_q_shapes.as_deref().unwrap_or(""),
                    self.arch_sparse_feature_size
                )));
            }
        }
        for list in p.iter().flatten() {
            counts.push(cores("--tt-p-shapes", list.len()));
        }
        if let Some((first, n)) = counts.first() {
            if let Some((other, m)) = counts.iter().find(|(_, m)| m != n) {
                return Err(bad(format!(
                    "{first} gives {n} cores but {other} gives {m}: every TT shape flag must give the same number of cores"
                )));
            }
            if *n < 2 {
                return Err(bad(format!("{first}: a TT table needs at least 2 cores")));
            }
        }
        Ok(TtShapeFlags { ranks, p, q })
    }

    /// `--optimizer`: sgd or adagrad.
    fn check_optimizer(&self) -> Result<OptimizerKind> {
        match self.optimizer.as_str() {
            "sgd" => Ok(OptimizerKind::Sgd),
            "adagrad" => {
                if self.load_model.is_some() {
                    return Err(bad(
                        "--optimizer adagrad with --load-model: checkpoints do not hold Adagrad's accumulators yet, so a resumed run would not continue this one",
                    ));
                }
                Ok(OptimizerKind::Adagrad {
                    eps: OptimizerKind::TORCH_ADAGRAD_EPS,
                })
            }
            "rwsadagrad" => Err(bad(
                "--optimizer rwsadagrad: dlrm's row-wise sparse Adagrad is not in ttrec; choose sgd or adagrad",
            )),
            other => Err(bad(format!(
                "--optimizer {other:?}: choose sgd or adagrad"
            ))),
        }
    }

    /// The data source's options: the synthetic source's, or files that exist (dlrm's
    /// --raw-data-file resolved, its .npz store renamed); returns the files and the store.
    fn check_data_source(
        &self,
        notes: &mut Vec<String>,
    ) -> Result<(Vec<PathBuf>, Option<PathBuf>)> {
        let data = match &self.dlrm.raw_data_file {
            Some(p) => raw_data_files(p)?,
            None => self.data.clone(),
        };
        match self.dlrm.data_generation.as_deref() {
            Some("dataset") if data.is_empty() => {
                return Err(bad(
                    "--data-generation dataset needs --raw-data-file (or --data)",
                ))
            }
            Some("random") if !data.is_empty() => {
                return Err(bad(
                    "--data-generation random is the synthetic source: drop --raw-data-file/--data",
                ))
            }
            Some("random") => notes.push(
                "--data-generation random: ttrec's synthetic Criteo-shaped source (--synthetic-samples, --synthetic-scale)".into(),
            ),
            _ => {}
        }
        if data.is_empty() {
            if self.processed_data_file.is_some() {
                return Err(bad(
                    "--processed-data-file needs --data (the synthetic source has no data store)",
                ));
            }
            if self.max_ind_range.is_some_and(|m| m > 0) {
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
            return Ok((data, None));
        }
        for p in &data {
            if !p.exists() {
                return Err(Error::file(p, "--data: no such file or directory"));
            }
        }
        let store = self.processed_data_file.as_deref().map(|p| {
            let (store, note) = store_for_processed(p);
            notes.extend(note);
            store
        });
        Ok((data, store))
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

    /// Every option as given (numbers as typed: `--learning-rate 0.2` is 0.2), by its flag's
    /// name without dashes; dlrm's extra flags under `dlrm_flags`, those given only.
    pub fn to_json(&self) -> serde_json::Value {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let mut all = serde_json::json!({
            "data": self.data.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "processed_data_file": path(&self.processed_data_file),
            "synthetic_samples": self.synthetic_samples,
            "synthetic_scale": self.synthetic_scale,
            "nepochs": self.nepochs,
            "num_batches": self.num_batches,
            "mini_batch_size": self.mini_batch_size,
            "test_mini_batch_size": self.test_mini_batch_size,
            "learning_rate": self.learning_rate,
            "optimizer": self.optimizer,
            "lr_num_warmup_steps": self.lr_num_warmup_steps,
            "lr_decay_start_step": self.lr_decay_start_step,
            "lr_num_decay_steps": self.lr_num_decay_steps,
            "mlperf_auc_threshold": self.mlperf_auc_threshold,
            "mlperf_acc_threshold": self.mlperf_acc_threshold,
        });
        let more = serde_json::json!({
            "arch_sparse_feature_size": self.arch_sparse_feature_size,
            "arch_mlp_bot": self.arch_mlp_bot,
            "arch_mlp_top": self.arch_mlp_top,
            "max_ind_range": self.max_ind_range,
            "test_fraction": self.test_fraction,
            "test_freq": self.test_freq,
            "print_freq": self.print_freq,
            "seed": self.seed,
            "embedding": self.baselines.embedding(self.embedding).name(),
            "qr_threshold": self.baselines.qr_threshold,
            "qr_operation": self.baselines.qr_operation.map(|o| o.name()),
            "qr_collisions": self.baselines.qr_collisions,
            "md_threshold": self.baselines.md_threshold,
            "md_temperature": self.baselines.md_temperature,
            "md_round_dims": self.baselines.md_round_dims,
            "tt_tables": self.tt_tables,
            "tt_threshold": self.tt_threshold,
            "tt_rank": self.tt_rank,
            "tt_ranks": self.tt_ranks,
            "tt_p_shapes": self.tt_p_shapes,
            "tt_q_shapes": self.tt_q_shapes,
            "tt_init": self.tt_init,
            "cache_rows": self.cache_rows,
            "cache_warmup": self.cache_warmup,
            "cache_refresh": self.cache_refresh,
            "save_model": path(&self.save_model),
            "load_model": path(&self.load_model),
            "summary_json": path(&self.summary_json),
            "metrics_jsonl": path(&self.metrics_jsonl),
            "plot": path(&self.plot),
            "limits": format!("{:?}", self.limits).to_lowercase(),
            "kernels": format!("{:?}", self.kernels).to_lowercase(),
            "tt_precision": self.tt_precision.map(|p| p.name()),
            "stop_after_steps": self.stop_after_steps,
            "dlrm_flags": self.dlrm.to_json(),
        });
        if let (Some(a), serde_json::Value::Object(b)) = (all.as_object_mut(), more) {
            a.extend(b);
        }
        all
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
