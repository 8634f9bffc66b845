//! Which tables become TT, with which shapes and ranks, and what the model then occupies.
//!
//! - TT only where it pays: a table becomes TT only when its cores hold at most half the
//!   parameters of its dense form ([`TT_PAYS_FACTOR`]); chosen by default, a table where TT does
//!   not pay stays dense, and asked for explicitly (`--tt-tables`, `--tt-threshold`) it is kept
//!   with a warning that TT grows it.
//! - A budget (`--embedding-budget 20MB`, `--compression 100x`): the embeddings' parameter bytes
//!   (f32) at most the budget. The planner keeps every table dense when they fit; otherwise it
//!   takes the highest rank of a ladder (from `--tt-rank`, default 32, down to 1) at which
//!   turning the tables where TT pays into TT, largest saving first, fits, and turns only as many
//!   as needed. Shapes are the reference's automatic ones (3 cores).
//! - [`ModelPlan`]: per table its rows, form (dense, TT, quotient-remainder or mixed-dimension),
//!   the form's sizes (TT shapes and ranks; QR quotient and remainder rows and operation; MD width
//!   and projection) and bytes of parameters, optimizer state and row cache beside its dense size,
//!   and the MLPs' bytes (`ttrec plan`, and the `plan` field of the training summary).

use crate::cache::CacheConfig;
use crate::dlrm::{DlrmConfig, TableKind, TtCacheOptions};
use crate::error::{Error, Result};
use crate::tt::CorePrecision;
use crate::tt_shape::TtShape;

/// TT pays when the dense table has at least this many times the cores' parameters.
pub const TT_PAYS_FACTOR: f64 = 2.0;

/// The default TT rank (and the budget planner's highest rank without `--tt-rank`).
pub const DEFAULT_RANK: usize = 32;

/// Ranks the budget planner tries, highest first (those above its highest rank skipped).
const RANK_LADDER: [usize; 13] = [128, 96, 64, 48, 32, 24, 16, 12, 8, 6, 4, 2, 1];

/// "12.3 MB" for a byte count (as the training summary prints sizes).
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else {
        format!("{:.1} kB", n / 1e3)
    }
}

/// Table `t`'s name as Criteo's columns are named (C1..C26).
pub fn table_name(t: usize) -> String {
    format!("C{}", t + 1)
}

/// "20MB", "1.5 GB", "512KiB", "1000" (bytes): decimal kB/MB/GB/TB, binary KiB/MiB/GiB.
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("a size such as 20MB or 1.5GiB, got {s:?}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        u => {
            return Err(format!(
                "unknown unit {u:?} in {s:?} (B, kB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    let bytes = v * mult;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(format!("must be at least 1 byte, got {s:?}"));
    }
    Ok(bytes as u64)
}

/// "100x" or "100": a compression factor above 1.
pub fn parse_compression(s: &str) -> std::result::Result<f64, String> {
    let t = s.trim();
    let t = t.strip_suffix(['x', 'X']).unwrap_or(t);
    let v: f64 = t
        .parse()
        .map_err(|_| format!("a factor such as 100x, got {s:?}"))?;
    if !(v.is_finite() && v >= 1.0) {
        return Err(format!(
            "must be at least 1 (1x: no compression), got {s:?}"
        ));
    }
    Ok(v)
}

/// The embeddings' size goal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// Parameter bytes of all tables together, at most.
    Bytes(u64),
    /// Dense parameter bytes over stored ones, at least.
    Compression(f64),
}

impl Budget {
    /// The byte budget for embeddings whose dense form takes `dense_bytes`.
    pub fn bytes(self, dense_bytes: u64) -> u64 {
        match self {
            Budget::Bytes(b) => b,
            Budget::Compression(c) => (dense_bytes as f64 / c).floor() as u64,
        }
    }
    /// The option as given: "--embedding-budget 20.0 MB (20000000 bytes)" or "--compression 100x".
    pub fn describe(self) -> String {
        match self {
            Budget::Bytes(b) => format!("--embedding-budget {} ({b} bytes)", bytes(b)),
            Budget::Compression(c) => format!("--compression {c}x"),
        }
    }
}

/// The suggested TT form of a table of `rows` rows at `dim` columns and rank `rank`, and its
/// parameter count.
pub fn suggested(rows: u64, dim: usize, rank: usize) -> Result<(TableKind, u64)> {
    let kind = DlrmConfig::suggested_tt(rows, dim, rank);
    let TableKind::Tt { p, q, ranks } = &kind else {
        unreachable!("suggested_tt is TT")
    };
    let shape = TtShape::with_dim(rows, dim, p, q, ranks)?;
    Ok((kind, shape.num_params() as u64))
}

/// Whether TT cores of `tt_params` pay for a table of `rows x dim`.
pub fn tt_pays(rows: u64, dim: usize, tt_params: u64) -> bool {
    tt_params as f64 * TT_PAYS_FACTOR <= (rows * dim as u64) as f64
}

/// How the tables were asked to be chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Selection {
    /// The default: the 7 largest tables where TT pays.
    Default,
    /// `--tt-tables K`: the K largest.
    Largest(usize),
    /// `--tt-threshold ROWS`: every table of at least ROWS rows.
    Threshold(u64),
    /// A budget.
    Budget(Budget),
}

/// The tables of `base` (every table dense) chosen as `selection` says at rank `rank` (a
/// budget's highest rank); with the lines to show the user (why tables stay dense, warnings
/// where TT grows a table). Errors: more TT tables asked than exist, a budget that cannot be met.
pub fn choose_tables(
    base: &DlrmConfig,
    selection: Selection,
    rank: usize,
) -> Result<(DlrmConfig, Vec<String>)> {
    let dim = base.dim();
    let n = base.tables.len();
    let mut config = base.clone();
    let mut notes = Vec::new();
    let chosen: Vec<usize> = match selection {
        Selection::Budget(b) => return plan_budget(base, b, rank),
        Selection::Largest(k) if k > n => {
            return Err(Error::input(
                None,
                format!("--tt-tables {k}: the data has {n} tables (use --tt-tables {n} or fewer)"),
            ))
        }
        Selection::Largest(k) => base.tables_by_size().into_iter().take(k).collect(),
        Selection::Default => base.tables_by_size().into_iter().take(7).collect(),
        Selection::Threshold(rows) => (0..n).filter(|&t| base.tables[t].rows >= rows).collect(),
    };
    let mut stay_dense = Vec::new();
    for &t in &chosen {
        let rows = base.tables[t].rows;
        let (kind, params) = suggested(rows, dim, rank)?;
        let dense = rows * dim as u64;
        if selection == Selection::Default && !tt_pays(rows, dim, params) {
            stay_dense.push(format!("{} ({rows} rows)", table_name(t)));
            continue;
        }
        if params >= dense {
            notes.push(format!(
                "warning: table {} ({rows} rows): its TT cores at rank {rank} hold {params} parameters, more than its dense form's {dense}: TT grows this table (ask for fewer TT tables, or --embedding-budget)",
                table_name(t)
            ));
        }
        config.tables[t].kind = kind;
    }
    if !stay_dense.is_empty() {
        notes.push(format!(
            "dense where TT would not be {TT_PAYS_FACTOR}x smaller at rank {rank}: {}",
            stay_dense.join(", ")
        ));
    }
    if matches!(selection, Selection::Threshold(_)) && chosen.is_empty() {
        notes.push("warning: no table reaches --tt-threshold: every table is dense".into());
    }
    config.validate()?;
    Ok((config, notes))
}

fn plan_budget(
    base: &DlrmConfig,
    budget: Budget,
    max_rank: usize,
) -> Result<(DlrmConfig, Vec<String>)> {
    let dim = base.dim();
    let dense_bytes = 4 * base.uncompressed_embedding_params();
    let limit = budget.bytes(dense_bytes);
    let goal = budget.describe();
    if dense_bytes <= limit {
        let note = format!("{goal}: every table dense ({}) fits", bytes(dense_bytes));
        return Ok((base.clone(), vec![note]));
    }
    let mut smallest = dense_bytes;
    for &rank in RANK_LADDER.iter().filter(|&&r| r <= max_rank) {
        // Tables where TT pays at this rank, largest saving first (ties: lower index).
        let mut candidates = Vec::new();
        for (t, table) in base.tables.iter().enumerate() {
            let (kind, params) = suggested(table.rows, dim, rank)?;
            if tt_pays(table.rows, dim, params) {
                let saving = 4 * (table.rows * dim as u64 - params);
                candidates.push((saving, t, kind));
            }
        }
        candidates.sort_by_key(|(saving, t, _)| (std::cmp::Reverse(*saving), *t));
        let mut total = dense_bytes;
        let mut config = base.clone();
        let mut turned = 0;
        for (saving, t, kind) in candidates {
            if total <= limit {
                break;
            }
            total -= saving;
            config.tables[t].kind = kind;
            turned += 1;
        }
        smallest = smallest.min(total);
        if total <= limit {
            config.validate()?;
            let note = format!(
                "{goal}: {turned} TT tables at rank {rank}, embeddings {} of {} dense ({:.1}x smaller)",
                bytes(total),
                bytes(dense_bytes),
                dense_bytes as f64 / total.max(1) as f64
            );
            return Ok((config, vec![note]));
        }
    }
    Err(Error::input(
        None,
        format!(
            "{goal} cannot be met ({limit} bytes of embeddings): the smallest embeddings the planner finds (every table where TT pays, at rank 1) take {smallest} bytes"
        ),
    ))
}

/// A quotient-remainder table's two tables (dlrm's `QREmbeddingBag`).
#[derive(Clone, Debug, PartialEq)]
pub struct QrPlan {
    /// Rows of the quotient table: ceil(rows / collisions).
    pub quotient_rows: u64,
    /// Rows of the remainder table: the collisions.
    pub remainder_rows: u64,
    /// How the two pooled vectors combine: mult, add or concat.
    pub operation: &'static str,
    /// Columns of each of the two tables (D, or D/2 for concat).
    pub part_dim: usize,
}

/// A mixed-dimension table (dlrm's `PrEmbeddingBag`): its rows' width and the projection to D.
#[derive(Clone, Debug, PartialEq)]
pub struct MdPlan {
    pub width: usize,
    /// The bias-free projection's shape, `[width, D]`.
    pub projection: [usize; 2],
}

/// One table's line of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct TablePlan {
    pub name: String,
    pub rows: u64,
    /// The table's kind: "dense", "tt", "qr" or "md" ([`TableKind::name`]).
    pub form: &'static str,
    /// TT tables: row factors, column factors, interior ranks (empty for the other kinds).
    pub p: Vec<usize>,
    pub q: Vec<usize>,
    pub ranks: Vec<usize>,
    /// QR tables: their two tables.
    pub qr: Option<QrPlan>,
    /// MD tables: their width and projection.
    pub md: Option<MdPlan>,
    pub param_bytes: u64,
    pub optimizer_bytes: u64,
    pub cache_bytes: u64,
    pub dense_bytes: u64,
}

/// What a model occupies, table by table.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelPlan {
    pub tables: Vec<TablePlan>,
    pub mlp_bytes: u64,
    pub mlp_optimizer_bytes: u64,
    /// "sgd" (no state) or "adagrad" (one f32 per parameter).
    pub optimizer: &'static str,
}

/// Bytes of a TT table's row cache (values, row-wise optimizer state, the hash table's three
/// u32 arrays and the slots' keys), as if cached alone (a TT group shares one hash table).
fn cache_bytes(
    cache: &TtCacheOptions,
    rows: u64,
    dim: usize,
    adagrad: bool,
    value_bytes: u64,
) -> Result<u64> {
    let c: CacheConfig = cache.config(rows, 1)?;
    let per_row = value_bytes * dim as u64 + 4 + if adagrad { 4 } else { 0 };
    Ok(c.rows as u64 * per_row + 12 * c.hash_entries as u64)
}

/// The plan of `config` trained with SGD (`adagrad` false) or elementwise Adagrad, with the TT
/// tables' row cache where `cache` asks for one, every parameter f32.
pub fn model_plan(
    config: &DlrmConfig,
    adagrad: bool,
    cache: Option<&TtCacheOptions>,
) -> Result<ModelPlan> {
    model_plan_at(config, adagrad, cache, CorePrecision::F32)
}

/// [`model_plan`] with the TT cores and their cached rows stored at `precision`
/// (`--tt-precision`; the optimizer state stays f32).
pub fn model_plan_at(
    config: &DlrmConfig,
    adagrad: bool,
    cache: Option<&TtCacheOptions>,
    precision: CorePrecision,
) -> Result<ModelPlan> {
    let dim = config.dim();
    let state = |bytes: u64| if adagrad { bytes } else { 0 };
    let mut tables = Vec::with_capacity(config.tables.len());
    for (t, table) in config.tables.iter().enumerate() {
        let dense_bytes = 4 * table.rows * dim as u64;
        let params = config.table_params(t).map_err(|e| e.with_table(t))?;
        let value_bytes = match (&table.kind, precision) {
            (TableKind::Tt { .. }, CorePrecision::F16) => 2,
            _ => 4,
        };
        let param_bytes = value_bytes * params;
        let mut plan = TablePlan {
            name: table_name(t),
            rows: table.rows,
            form: table.kind.name(),
            p: vec![],
            q: vec![],
            ranks: vec![],
            qr: None,
            md: None,
            param_bytes,
            optimizer_bytes: state(4 * params),
            cache_bytes: 0,
            dense_bytes,
        };
        match &table.kind {
            TableKind::Dense => {}
            TableKind::Tt { .. } => {
                if let Some(shape) = config.tt_shape(t)? {
                    plan.p = shape.p.clone();
                    plan.q = shape.q.clone();
                    plan.ranks = shape.interior_ranks().to_vec();
                }
                if let Some(c) = cache {
                    plan.cache_bytes = cache_bytes(c, table.rows, dim, adagrad, value_bytes)
                        .map_err(|e| e.with_table(t))?;
                }
            }
            TableKind::Qr {
                collisions,
                operation,
            } => {
                plan.qr = Some(QrPlan {
                    quotient_rows: TableKind::qr_quotient_rows(table.rows, *collisions),
                    remainder_rows: *collisions,
                    operation: operation.name(),
                    part_dim: operation.part_dim(dim),
                })
            }
            TableKind::Md { dim: width } => {
                plan.md = Some(MdPlan {
                    width: *width,
                    projection: [*width, dim],
                })
            }
        }
        tables.push(plan);
    }
    let mlp_bytes = 4 * config.mlp_params();
    Ok(ModelPlan {
        tables,
        mlp_bytes,
        mlp_optimizer_bytes: state(mlp_bytes),
        optimizer: if adagrad { "adagrad" } else { "sgd" },
    })
}

impl ModelPlan {
    /// Tables of `form` ("dense", "tt", "qr", "md").
    pub fn tables_of(&self, form: &str) -> usize {
        self.tables.iter().filter(|t| t.form == form).count()
    }

    /// The compressed kinds' counts: "7 TT" (also "0 TT" for an all-dense model), "18 QR",
    /// "18 MD".
    fn kinds_line(&self) -> String {
        let mut parts: Vec<String> = ["tt", "qr", "md"]
            .into_iter()
            .map(|form| (form, self.tables_of(form)))
            .filter(|&(_, n)| n > 0)
            .map(|(form, n)| format!("{n} {}", form.to_uppercase()))
            .collect();
        if parts.is_empty() {
            parts.push("0 TT".into());
        }
        parts.join(", ")
    }

    /// Parameter bytes of every table.
    pub fn embedding_bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.param_bytes).sum()
    }
    /// Bytes of every table dense.
    pub fn dense_embedding_bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.dense_bytes).sum()
    }
    /// Everything: parameters, optimizer state and caches of tables and MLPs.
    pub fn total_bytes(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| t.param_bytes + t.optimizer_bytes + t.cache_bytes)
            .sum::<u64>()
            + self.mlp_bytes
            + self.mlp_optimizer_bytes
    }

    /// The plan as JSON (`ttrec plan --json`, the training summary's `plan`).
    pub fn to_json(&self) -> serde_json::Value {
        let tables: Vec<serde_json::Value> = self
            .tables
            .iter()
            .map(|t| {
                let mut v = serde_json::json!({
                    "name": t.name, "rows": t.rows, "form": t.form,
                    "p": t.p, "q": t.q, "ranks": t.ranks,
                    "param_bytes": t.param_bytes, "optimizer_bytes": t.optimizer_bytes,
                    "cache_bytes": t.cache_bytes, "dense_bytes": t.dense_bytes,
                });
                if let Some(qr) = &t.qr {
                    v["qr"] = serde_json::json!({
                        "quotient_rows": qr.quotient_rows,
                        "remainder_rows": qr.remainder_rows,
                        "operation": qr.operation,
                        "part_dim": qr.part_dim,
                    });
                }
                if let Some(md) = &t.md {
                    v["md"] = serde_json::json!({"width": md.width, "projection": md.projection});
                }
                v
            })
            .collect();
        serde_json::json!({
            "optimizer": self.optimizer,
            "tables": tables,
            "embedding_bytes": self.embedding_bytes(),
            "dense_embedding_bytes": self.dense_embedding_bytes(),
            "mlp_bytes": self.mlp_bytes,
            "mlp_optimizer_bytes": self.mlp_optimizer_bytes,
            "total_bytes": self.total_bytes(),
        })
    }

    /// The plan as a text table.
    pub fn text(&self) -> String {
        let b = |n: u64| if n == 0 { "-".to_string() } else { bytes(n) };
        let list = |v: &[usize]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut s = format!(
            "{:<5} {:>10} {:<6} {:<14} {:<8} {:<8} {:>10} {:>10} {:>10} {:>10}\n",
            "table", "rows", "form", "p", "q", "ranks", "params", "optimizer", "cache", "dense"
        );
        for t in &self.tables {
            // The TT columns; a QR or MD table's sizes span them.
            let shape = match (&t.qr, &t.md) {
                (Some(qr), _) => format!(
                    "{:<32}",
                    format!(
                        "{} + {} rows x {}, {}",
                        qr.quotient_rows, qr.remainder_rows, qr.part_dim, qr.operation
                    )
                ),
                (_, Some(md)) => format!(
                    "{:<32}",
                    format!(
                        "width {}, projection {}x{}",
                        md.width, md.projection[0], md.projection[1]
                    )
                ),
                _ => format!("{:<14} {:<8} {:<8}", list(&t.p), list(&t.q), list(&t.ranks)),
            };
            s += &format!(
                "{:<5} {:>10} {:<6} {shape} {:>10} {:>10} {:>10} {:>10}\n",
                t.name,
                t.rows,
                t.form,
                b(t.param_bytes),
                b(t.optimizer_bytes),
                b(t.cache_bytes),
                b(t.dense_bytes)
            );
        }
        s += &format!(
            "embeddings: {} in {} tables ({}), {} dense, {:.1}x smaller\n",
            b(self.embedding_bytes()),
            self.tables.len(),
            self.kinds_line(),
            b(self.dense_embedding_bytes()),
            self.dense_embedding_bytes() as f64 / self.embedding_bytes().max(1) as f64
        );
        s += &format!(
            "MLPs: {} parameters, {} optimizer state ({}); total {}\n",
            b(self.mlp_bytes),
            b(self.mlp_optimizer_bytes),
            self.optimizer,
            b(self.total_bytes())
        );
        s
    }
}
