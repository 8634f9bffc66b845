//! The shape of a DLRM: dense features, embedding dimension, MLP widths, and per table its size
//! and whether it is stored dense or as a TT. dlrm's Kaggle and Terabyte configurations are the
//! presets. Beside it, [`DlrmOptions`]: the choices that do not change the model's math (kernel
//! variants, the statistics ring, shard sizes, the TT groups' row cache).

use crate::cache::CacheConfig;
use crate::data::{KAGGLE_TABLE_SIZES, NUM_DENSE, TERABYTE_TABLE_SIZES};
use crate::error::{Error, Result};
use crate::gpu::KernelClass;
use crate::kernels::matmul::GemmVariant;
use crate::tt::shapes::suggested_dim_shape;
use crate::tt::TtKernels;
use crate::tt::{suggested_tt_shapes, TtInit, TtShape};

/// How one embedding table is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableKind {
    /// Uncompressed `[N, D]` rows (dlrm's `nn.EmbeddingBag`).
    Dense,
    /// Tensor-train cores: row factors `p`, column factors `q` (prod(q) = D), interior ranks.
    Tt {
        p: Vec<usize>,
        q: Vec<usize>,
        ranks: Vec<usize>,
    },
    /// dlrm's quotient-remainder embedding (`QREmbeddingBag`): a quotient table of
    /// ceil(rows / collisions) rows and a remainder table of `collisions` rows, each bag pooled
    /// in both and the two pooled vectors combined by `operation`.
    Qr {
        collisions: u64,
        operation: QrOperation,
    },
    /// dlrm's mixed-dimension embedding (`PrEmbeddingBag`): rows of `dim` < D columns, the pooled
    /// vector projected to D by a bias-free linear layer.
    Md { dim: usize },
}

/// How a quotient-remainder table combines its two pooled vectors (dlrm's `--qr-operation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum QrOperation {
    /// Elementwise product (dlrm's default).
    Mult,
    /// Elementwise sum.
    Add,
    /// The two side by side: each part is D/2 wide (dlrm: the bottom MLP ends in twice
    /// `--arch-sparse-feature-size`).
    Concat,
}

impl QrOperation {
    /// dlrm's name.
    pub fn name(self) -> &'static str {
        match self {
            QrOperation::Mult => "mult",
            QrOperation::Add => "add",
            QrOperation::Concat => "concat",
        }
    }
    /// Columns of each of the two tables at embedding dimension `dim`.
    pub fn part_dim(self, dim: usize) -> usize {
        match self {
            QrOperation::Concat => dim / 2,
            _ => dim,
        }
    }
}

impl std::str::FromStr for QrOperation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mult" => Ok(QrOperation::Mult),
            "add" => Ok(QrOperation::Add),
            "concat" => Ok(QrOperation::Concat),
            other => Err(Error::input(
                None,
                format!("QR operation {other:?}: mult, add or concat"),
            )),
        }
    }
}

impl TableKind {
    /// The kind's short name: dense, tt, qr, md.
    pub fn name(&self) -> &'static str {
        match self {
            TableKind::Dense => "dense",
            TableKind::Tt { .. } => "tt",
            TableKind::Qr { .. } => "qr",
            TableKind::Md { .. } => "md",
        }
    }

    /// Rows of the quotient table of a QR table of `rows` rows (dlrm: ceil(rows / collisions)).
    pub fn qr_quotient_rows(rows: u64, collisions: u64) -> u64 {
        rows.div_ceil(collisions)
    }
}

/// One embedding table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableConfig {
    pub rows: u64,
    pub kind: TableKind,
}

/// A DLRM's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct DlrmConfig {
    /// Bottom MLP widths, input first (dlrm's `--arch-mlp-bot`): the input is the number of dense
    /// features, the output the embedding dimension D.
    pub bottom_mlp: Vec<usize>,
    /// Top MLP widths after its input (dlrm's `--arch-mlp-top`), ending in 1 (the logit); the
    /// input width D + F(F-1)/2 follows from the tables.
    pub top_mlp: Vec<usize>,
    pub tables: Vec<TableConfig>,
    /// SGD learning rate of every parameter.
    pub learning_rate: f32,
    /// How TT cores are drawn.
    pub tt_init: TtInit,
    /// Seed of every initialisation.
    pub seed: u64,
}

/// Choices that do not change the model's math.
#[derive(Clone, Debug)]
pub struct DlrmOptions {
    /// The kernel class (products and TT tables) where `gemm` and `tt_kernels` do not say:
    /// [`KernelClass::Auto`] follows the adapter.
    pub kernels: KernelClass,
    /// The matrix-product variant (default: chosen from the kernel class).
    pub gemm: Option<GemmVariant>,
    /// The TT tables' kernel variants (None: chosen for the adapter; results are bitwise the
    /// same whatever the choice).
    pub tt_kernels: Option<TtKernels>,
    /// Steps whose statistics the GPU keeps before the host must read them (it reads them
    /// itself, with one wait, when the ring is full).
    pub stats_ring: usize,
    /// Cap on a dense-table shard's bytes (default: the adapter's binding limit).
    pub max_shard_bytes: Option<u64>,
    /// An LFU row cache on every TT group (None: no cache).
    pub tt_cache: Option<TtCacheOptions>,
    /// The optimizer of every parameter (MLPs, dense tables, TT cores), at the configuration's
    /// learning rate.
    pub optimizer: OptimizerKind,
    /// How the TT cores are stored (`--tt-precision`): f32, or f16 (f32 arithmetic; needs
    /// `SHADER_F16`). It changes the model's values, so checkpoints record it, as the optimizer.
    pub tt_precision: crate::tt::CorePrecision,
}

/// Which optimizer trains a model (dlrm's `--optimizer`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum OptimizerKind {
    /// Plain SGD (dlrm's default).
    #[default]
    Sgd,
    /// Adagrad as `torch.optim.Adagrad`: accumulator from 0, this `eps` (torch's is 1e-10).
    Adagrad { eps: f32 },
}

impl OptimizerKind {
    /// torch.optim.Adagrad's default epsilon.
    pub const TORCH_ADAGRAD_EPS: f32 = 1e-10;

    /// The optimizer at learning rate `lr`.
    pub fn at(self, lr: f32) -> crate::tt::Optimizer {
        match self {
            OptimizerKind::Sgd => crate::tt::Optimizer::Sgd { lr },
            OptimizerKind::Adagrad { eps } => crate::tt::Optimizer::Adagrad { lr, eps },
        }
    }

    /// dlrm's name: "sgd", "adagrad".
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adagrad { .. } => "adagrad",
        }
    }
}

impl Default for DlrmOptions {
    fn default() -> Self {
        DlrmOptions {
            kernels: KernelClass::Auto,
            gemm: None,
            tt_kernels: None,
            stats_ring: 1024,
            max_shard_bytes: None,
            tt_cache: None,
            optimizer: OptimizerKind::Sgd,
            tt_precision: crate::tt::CorePrecision::F32,
        }
    }
}

/// The LFU row cache of each TT group of a model (see [`crate::cache`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TtCacheOptions {
    /// Cache rows: below 1, a fraction of the group's rows; from 1 on, rows per TT table.
    pub rows: f64,
    /// Training steps before the first refresh.
    pub warmup_steps: usize,
    /// Training steps between refreshes.
    pub refresh_every: usize,
}

impl TtCacheOptions {
    /// The cache of a group of tables with `rows` rows in all, `tables` of them.
    pub fn config(&self, rows: u64, tables: usize) -> Result<CacheConfig> {
        if !(self.rows.is_finite() && self.rows > 0.0) {
            return Err(Error::input(
                None,
                format!(
                    "cache rows {}: a fraction in (0, 1) or a count of at least 1",
                    self.rows
                ),
            ));
        }
        let want = if self.rows < 1.0 {
            self.rows * rows as f64
        } else {
            self.rows.floor() * tables as f64
        };
        let fraction = (want / rows as f64).min(1.0);
        let mut c = CacheConfig::for_table(rows, fraction)?;
        c.warmup_steps = self.warmup_steps;
        c.refresh_every = self.refresh_every;
        c.validate(rows)?;
        Ok(c)
    }
}

/// Parses a dash-separated width list such as dlrm's "13-512-256-64-16".
pub fn parse_widths(s: &str) -> Result<Vec<usize>> {
    s.split('-')
        .map(|w| {
            w.trim()
                .parse::<usize>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| {
                    Error::input(
                        None,
                        format!("MLP widths {s:?}: {w:?} is not a positive integer"),
                    )
                })
        })
        .collect()
}

/// Formats widths as dlrm does ("13-512-256").
pub fn format_widths(w: &[usize]) -> String {
    w.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("-")
}

impl DlrmConfig {
    /// dlrm's Kaggle configuration (D = 16, bottom 13-512-256-64-16, top 512-256-1, SGD lr 0.1)
    /// with the 7 largest tables as rank-32 TT tables, as the TT-Rec paper trains it.
    pub fn kaggle() -> Self {
        Self::kaggle_dense()
            .with_tt_largest(7, 32)
            .expect("the Kaggle tables have TT shapes")
    }

    /// dlrm's Kaggle configuration with every table dense (2.16 GB of embeddings).
    pub fn kaggle_dense() -> Self {
        DlrmConfig {
            bottom_mlp: vec![NUM_DENSE, 512, 256, 64, 16],
            top_mlp: vec![512, 256, 1],
            tables: KAGGLE_TABLE_SIZES
                .iter()
                .map(|&rows| TableConfig {
                    rows,
                    kind: TableKind::Dense,
                })
                .collect(),
            learning_rate: 0.1,
            tt_init: TtInit::SampledGaussian,
            seed: 0,
        }
    }

    /// dlrm's Terabyte configuration (D = 64, bottom 13-512-256-64, top 512-512-256-1, tables
    /// capped at 10M rows) with the 7 largest tables as rank-32 TT tables.
    pub fn terabyte() -> Self {
        DlrmConfig {
            bottom_mlp: vec![NUM_DENSE, 512, 256, 64],
            top_mlp: vec![512, 512, 256, 1],
            tables: TERABYTE_TABLE_SIZES
                .iter()
                .map(|&rows| TableConfig {
                    rows,
                    kind: TableKind::Dense,
                })
                .collect(),
            learning_rate: 0.1,
            tt_init: TtInit::SampledGaussian,
            seed: 0,
        }
        .with_tt_largest(7, 32)
        .expect("the Terabyte tables have TT shapes")
    }

    /// Embedding dimension D (the bottom MLP's output).
    pub fn dim(&self) -> usize {
        *self.bottom_mlp.last().unwrap_or(&0)
    }
    /// Dense features per sample (the bottom MLP's input).
    pub fn dense_features(&self) -> usize {
        self.bottom_mlp.first().copied().unwrap_or(0)
    }
    /// Vectors meeting in the interaction: the bottom output and one per table.
    pub fn vectors(&self) -> usize {
        self.tables.len() + 1
    }
    /// Width of the interaction's output, the top MLP's input: D + F(F-1)/2.
    pub fn interaction_width(&self) -> usize {
        self.dim() + self.vectors() * (self.vectors() - 1) / 2
    }
    /// Top MLP widths with its input first.
    pub fn top_widths(&self) -> Vec<usize> {
        let mut w = vec![self.interaction_width()];
        w.extend_from_slice(&self.top_mlp);
        w
    }
    /// The TT shape of table `t` (None for a dense table).
    pub fn tt_shape(&self, t: usize) -> Result<Option<TtShape>> {
        match &self.tables[t].kind {
            TableKind::Dense | TableKind::Qr { .. } | TableKind::Md { .. } => Ok(None),
            TableKind::Tt { p, q, ranks } => {
                TtShape::with_dim(self.tables[t].rows, self.dim(), p, q, ranks)
                    .map(Some)
                    .map_err(|e| e.with_table(t))
            }
        }
    }

    /// Table indices by decreasing size (ties: lower index first).
    pub fn tables_by_size(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.tables.len()).collect();
        order.sort_by_key(|&t| (std::cmp::Reverse(self.tables[t].rows), t));
        order
    }

    /// The suggested TT kind for a table of `rows` rows at dimension `dim`: 3 cores, row
    /// factors from [`suggested_tt_shapes`] (rounded up), column factors from the dimension,
    /// both interior ranks `rank`.
    pub fn suggested_tt(rows: u64, dim: usize, rank: usize) -> TableKind {
        TableKind::Tt {
            p: suggested_tt_shapes(rows, 3, true),
            q: suggested_dim_shape(dim, 3),
            ranks: vec![rank, rank],
        }
    }

    /// Makes the `k` largest tables TT with rank `rank` (the others dense).
    pub fn with_tt_largest(mut self, k: usize, rank: usize) -> Result<Self> {
        let chosen: Vec<usize> = self.tables_by_size().into_iter().take(k).collect();
        let dim = self.dim();
        for (t, table) in self.tables.iter_mut().enumerate() {
            table.kind = if chosen.contains(&t) {
                Self::suggested_tt(table.rows, dim, rank)
            } else {
                TableKind::Dense
            };
        }
        self.validate()?;
        Ok(self)
    }

    /// Makes every table of at least `threshold` rows TT with rank `rank`.
    pub fn with_tt_threshold(mut self, threshold: u64, rank: usize) -> Result<Self> {
        let dim = self.dim();
        for table in &mut self.tables {
            table.kind = if table.rows >= threshold {
                Self::suggested_tt(table.rows, dim, rank)
            } else {
                TableKind::Dense
            };
        }
        self.validate()?;
        Ok(self)
    }

    /// Replaces the table sizes (keeping each table's kind choice by rank of size is the
    /// caller's job: use [`DlrmConfig::with_tt_largest`] after).
    pub fn with_table_sizes(mut self, sizes: &[u64]) -> Self {
        self.tables = sizes
            .iter()
            .map(|&rows| TableConfig {
                rows,
                kind: TableKind::Dense,
            })
            .collect();
        self
    }

    /// Checks the configuration; errors say which part is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::shape(None, msg));
        if self.bottom_mlp.len() < 2 || self.bottom_mlp.contains(&0) {
            return bad(format!(
                "the bottom MLP {} needs an input and at least one layer, all non-zero",
                format_widths(&self.bottom_mlp)
            ));
        }
        let d = self.dim();
        if !d.is_multiple_of(4) {
            return bad(format!(
                "the embedding dimension (the bottom MLP's last width) is {d}; ttrec's DLRM needs a multiple of 4"
            ));
        }
        if self.top_mlp.is_empty()
            || self.top_mlp.contains(&0)
            || *self.top_mlp.last().unwrap() != 1
        {
            return bad(format!(
                "the top MLP {} must end in 1 (the logit)",
                format_widths(&self.top_mlp)
            ));
        }
        if self.tables.is_empty() {
            return bad("a DLRM needs at least one embedding table".into());
        }
        for (t, table) in self.tables.iter().enumerate() {
            if table.rows == 0 {
                return Err(Error::shape(Some(t), "the table has 0 rows"));
            }
            if table.rows > u32::MAX as u64 {
                return Err(Error::shape(
                    Some(t),
                    format!("{} rows; ids are 32-bit", table.rows),
                ));
            }
            self.tt_shape(t)?;
            self.check_compositional(t)?;
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "the learning rate must be positive, got {}",
                self.learning_rate
            ));
        }
        Ok(())
    }

    /// A QR or MD table's own checks (other kinds pass): what the kind needs of the
    /// dimension, its collisions or its width, naming the table.
    fn check_compositional(&self, t: usize) -> Result<()> {
        let d = self.dim();
        match &self.tables[t].kind {
            TableKind::Qr {
                collisions,
                operation,
            } => {
                if *collisions == 0 {
                    return Err(Error::shape(Some(t), "QR collisions must be at least 1"));
                }
                if *operation == QrOperation::Concat && !d.is_multiple_of(8) {
                    return Err(Error::shape(
                        Some(t),
                        format!(
                            "QR concat splits the embedding dimension {d} in two halves; it must be a multiple of 8"
                        ),
                    ));
                }
            }
            TableKind::Md { dim } if *dim == 0 || *dim >= d => {
                return Err(Error::shape(
                    Some(t),
                    format!(
                        "a mixed-dimension table's width {dim} must be between 1 and the embedding dimension {d} (excluded: at {d} it is dense)"
                    ),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Parameters of table `t` as stored: TT cores, both QR tables, an MD table and its
    /// projection, or the dense rows.
    pub fn table_params(&self, t: usize) -> Result<u64> {
        let d = self.dim() as u64;
        let rows = self.tables[t].rows;
        Ok(match &self.tables[t].kind {
            TableKind::Dense => rows * d,
            TableKind::Tt { .. } => self
                .tt_shape(t)?
                .map(|s| s.num_params() as u64)
                .unwrap_or(0),
            TableKind::Qr {
                collisions,
                operation,
            } => {
                (TableKind::qr_quotient_rows(rows, *collisions) + collisions)
                    * operation.part_dim(d as usize) as u64
            }
            TableKind::Md { dim } => rows * *dim as u64 + *dim as u64 * d,
        })
    }

    /// Parameters of the embeddings as stored (TT cores for TT tables, and so on).
    pub fn embedding_params(&self) -> Result<u64> {
        let mut n = 0;
        for t in 0..self.tables.len() {
            n += self.table_params(t)?;
        }
        Ok(n)
    }
    /// Parameters of the embeddings uncompressed (every table dense).
    pub fn uncompressed_embedding_params(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum::<u64>() * self.dim() as u64
    }
    /// Parameters of both MLPs.
    pub fn mlp_params(&self) -> u64 {
        let count =
            |w: &[usize]| -> u64 { w.windows(2).map(|p| (p[0] * p[1] + p[1]) as u64).sum() };
        count(&self.bottom_mlp) + count(&self.top_widths())
    }
    /// Multiply-adds per sample of the MLPs' forward (the step costs about 3x this in FLOP pairs).
    pub fn mlp_macs_per_sample(&self) -> u64 {
        let count = |w: &[usize]| -> u64 { w.windows(2).map(|p| (p[0] * p[1]) as u64).sum() };
        count(&self.bottom_mlp) + count(&self.top_widths())
    }
}

impl DlrmConfig {
    /// The configuration as JSON (checkpoints and run summaries).
    pub fn to_json(&self) -> serde_json::Value {
        let tables: Vec<serde_json::Value> = self
            .tables
            .iter()
            .map(|t| match &t.kind {
                TableKind::Dense => serde_json::json!({"rows": t.rows, "kind": "dense"}),
                TableKind::Tt { p, q, ranks } => serde_json::json!({
                    "rows": t.rows, "kind": "tt", "p": p, "q": q, "ranks": ranks
                }),
                TableKind::Qr {
                    collisions,
                    operation,
                } => serde_json::json!({
                    "rows": t.rows, "kind": "qr", "collisions": collisions,
                    "operation": operation.name()
                }),
                TableKind::Md { dim } => serde_json::json!({
                    "rows": t.rows, "kind": "md", "dim": dim
                }),
            })
            .collect();
        serde_json::json!({
            "arch_mlp_bot": format_widths(&self.bottom_mlp),
            "arch_mlp_top": format_widths(&self.top_mlp),
            "tables": tables,
            "learning_rate": self.learning_rate,
            "tt_init": self.tt_init.name(),
            "seed": self.seed,
        })
    }

    /// Reads [`DlrmConfig::to_json`]'s output; errors name the field.
    pub fn from_json(v: &serde_json::Value) -> Result<Self> {
        let bad = |what: &str| Error::input(None, format!("model configuration: {what}"));
        let text = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .ok_or_else(|| bad(&format!("{k} missing")))
        };
        let list = |t: &serde_json::Value, k: &str| -> Result<Vec<usize>> {
            t.get(k)
                .and_then(|x| x.as_array())
                .ok_or_else(|| bad(&format!("table {k} missing")))?
                .iter()
                .map(|x| {
                    x.as_u64()
                        .map(|x| x as usize)
                        .ok_or_else(|| bad(&format!("table {k}")))
                })
                .collect()
        };
        let mut tables = Vec::new();
        for t in v
            .get("tables")
            .and_then(|x| x.as_array())
            .ok_or_else(|| bad("tables missing"))?
        {
            let rows = t
                .get("rows")
                .and_then(|x| x.as_u64())
                .ok_or_else(|| bad("table rows"))?;
            let kind = match t.get("kind").and_then(|x| x.as_str()) {
                Some("dense") => TableKind::Dense,
                Some("tt") => TableKind::Tt {
                    p: list(t, "p")?,
                    q: list(t, "q")?,
                    ranks: list(t, "ranks")?,
                },
                Some("qr") => TableKind::Qr {
                    collisions: t
                        .get("collisions")
                        .and_then(|x| x.as_u64())
                        .ok_or_else(|| bad("table collisions"))?,
                    operation: t
                        .get("operation")
                        .and_then(|x| x.as_str())
                        .ok_or_else(|| bad("table operation"))?
                        .parse()?,
                },
                Some("md") => TableKind::Md {
                    dim: t
                        .get("dim")
                        .and_then(|x| x.as_u64())
                        .ok_or_else(|| bad("table dim"))? as usize,
                },
                other => return Err(bad(&format!("table kind {other:?}"))),
            };
            tables.push(TableConfig { rows, kind });
        }
        let config = DlrmConfig {
            bottom_mlp: parse_widths(text("arch_mlp_bot")?)?,
            top_mlp: parse_widths(text("arch_mlp_top")?)?,
            tables,
            learning_rate: v
                .get("learning_rate")
                .and_then(|x| x.as_f64())
                .ok_or_else(|| bad("learning_rate missing"))? as f32,
            tt_init: text("tt_init")?.parse()?,
            seed: v
                .get("seed")
                .and_then(|x| x.as_u64())
                .ok_or_else(|| bad("seed missing"))?,
        };
        config.validate()?;
        Ok(config)
    }

    /// What differs between `self` and `other` in the model's shape (not the learning rate
    /// or seed), one line each, for "checkpoint does not fit" errors.
    pub fn shape_differences(&self, other: &DlrmConfig) -> Vec<String> {
        let mut out = Vec::new();
        if self.bottom_mlp != other.bottom_mlp {
            out.push(format!(
                "--arch-mlp-bot: {} vs {}",
                format_widths(&self.bottom_mlp),
                format_widths(&other.bottom_mlp)
            ));
        }
        if self.top_mlp != other.top_mlp {
            out.push(format!(
                "--arch-mlp-top: {} vs {}",
                format_widths(&self.top_mlp),
                format_widths(&other.top_mlp)
            ));
        }
        if self.tables.len() != other.tables.len() {
            out.push(format!(
                "tables: {} vs {}",
                self.tables.len(),
                other.tables.len()
            ));
            return out;
        }
        let show = |t: &TableConfig| match &t.kind {
            TableKind::Dense => format!("{} rows dense", t.rows),
            TableKind::Tt { p, q, ranks } => format!(
                "{} rows tt p {} q {} ranks {}",
                t.rows,
                format_widths(p),
                format_widths(q),
                format_widths(ranks)
            ),
            TableKind::Qr {
                collisions,
                operation,
            } => format!(
                "{} rows qr {} collisions {collisions}",
                t.rows,
                operation.name()
            ),
            TableKind::Md { dim } => format!("{} rows md dim {dim}", t.rows),
        };
        for (i, (a, b)) in self.tables.iter().zip(&other.tables).enumerate() {
            if a != b {
                out.push(format!(
                    "table {i} (C{}): {} vs {}",
                    i + 1,
                    show(a),
                    show(b)
                ));
            }
        }
        if self.tt_init != other.tt_init {
            out.push(format!("--tt-init: {} vs {}", self.tt_init, other.tt_init));
        }
        out
    }
}
