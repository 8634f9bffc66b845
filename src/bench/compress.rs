//! `ttrec bench compress`: the compression methods compared with everything else fixed. The
//! same training run (data, seed, batches, learning-rate schedule, evaluation split, MLPs) is
//! made once per method (`--embedding tt|dense|qr|md`) through the trainer's own entry point
//! ([`crate::train::run_quiet`]), and each run gives one row: its tables of that kind, embedding
//! parameters and bytes (as `ttrec plan` counts them), the whole model's bytes, AUC, log loss,
//! accuracy, training samples/s and evaluation seconds. A method that fails keeps its row, with
//! its error; the others still run.

use crate::compress::plan::bytes;
use crate::compress::ModelPlan;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::train::report::TrainSummary;
use crate::train::{EmbeddingKind, TrainArgs};

use super::BenchEnv;

/// Every method, in the order `--methods` defaults to.
pub const ALL_METHODS: [EmbeddingKind; 4] = [
    EmbeddingKind::Tt,
    EmbeddingKind::Dense,
    EmbeddingKind::Qr,
    EmbeddingKind::Md,
];

/// The options of one method's run: `base` with `--embedding method`, and the options that
/// belong to other methods dropped (the TT options, the `--qr-*` and `--md-*` flags apply to
/// their method only). With QR concat, a bottom MLP ending in D ends in 2 D, as dlrm builds it
/// (each QR part is D/2 wide); the returned note says so.
pub fn method_args(base: &TrainArgs, method: EmbeddingKind) -> (TrainArgs, Option<String>) {
    let mut a = base.clone();
    a.embedding = method;
    let b = &mut a.baselines;
    b.qr_flag = false;
    b.md_flag = false;
    if method != EmbeddingKind::Qr {
        b.qr_threshold = None;
        b.qr_operation = None;
        b.qr_collisions = None;
    }
    if method != EmbeddingKind::Md {
        b.md_threshold = None;
        b.md_temperature = None;
        b.md_round_dims = false;
    }
    if method != EmbeddingKind::Tt {
        a.tt_tables = None;
        a.tt_threshold = None;
        a.tt_rank = None;
        a.tt_ranks = None;
        a.tt_p_shapes = None;
        a.tt_q_shapes = None;
        a.tt_init = None;
        a.embedding_budget = None;
        a.compression = None;
        a.cache_rows = None;
    }
    let mut note = None;
    if a.baselines.concat(method) {
        let d = a.arch_sparse_feature_size;
        if let Some(head) = a.arch_mlp_bot.strip_suffix(&format!("-{d}")) {
            a.arch_mlp_bot = format!("{head}-{}", 2 * d);
            note = Some(format!(
                "qr concat: the bottom MLP is {} (two QR parts of {} columns side by side, as dlrm builds it)",
                a.arch_mlp_bot,
                d / 2
            ));
        }
    }
    (a, note)
}

/// The options `bench compress` cannot take: each method's run would write the same file.
pub fn check_base(base: &TrainArgs) -> Result<()> {
    let mut refused: Vec<&str> = base.outputs().iter().map(|(flag, _)| *flag).collect();
    if base.load_model.is_some() {
        refused.push("--load-model");
    }
    if base.inference_only {
        refused.push("--inference-only");
    }
    if let Some(flag) = refused.first() {
        return Err(Error::input(
            None,
            format!(
                "{flag} is not an option of bench compress: every method trains its own model from scratch (run `ttrec train --embedding ...` for one method's outputs)"
            ),
        ));
    }
    if base.embedding != EmbeddingKind::Tt || base.baselines.qr_flag || base.baselines.md_flag {
        return Err(Error::input(
            None,
            "--embedding, --qr-flag and --md-flag choose one method; bench compress takes --methods",
        ));
    }
    Ok(())
}

/// What one method's run gave: its plan (when its configuration was valid), its summary (when
/// it trained), or the error that stopped it.
#[derive(Clone, Debug)]
pub struct MethodRun {
    pub method: EmbeddingKind,
    /// Embedding parameters of the method's model (as stored: cores, both QR tables, MD
    /// tables and projections).
    pub embedding_params: Option<u64>,
    pub plan: Option<ModelPlan>,
    pub summary: Option<TrainSummary>,
    pub error: Option<String>,
    /// A note on the method's options (QR concat's bottom MLP).
    pub note: Option<String>,
}

impl MethodRun {
    /// Tables of this method's kind ("7/26": 7 of 26 tables are TT), or "-" without a plan.
    pub fn tables(&self) -> String {
        match &self.plan {
            Some(p) => format!("{}/{}", p.tables_of(self.method.name()), p.tables.len()),
            None => "-".into(),
        }
    }

    /// Embedding bytes of every table dense over this method's.
    pub fn x_smaller(&self) -> Option<f64> {
        self.plan
            .as_ref()
            .map(|p| p.dense_embedding_bytes() as f64 / p.embedding_bytes().max(1) as f64)
    }

    /// Parameter bytes of the whole model: embeddings and MLPs (what a checkpoint holds).
    pub fn model_bytes(&self) -> Option<u64> {
        self.plan
            .as_ref()
            .map(|p| p.embedding_bytes() + p.mlp_bytes)
    }

    /// One text row under [`header`].
    pub fn text(&self) -> String {
        let method = self.method.name();
        let sizes = match (&self.plan, self.embedding_params) {
            (Some(p), Some(n)) => format!(
                "{:>7} {:>12} {:>10} {:>9.1}x {:>11}",
                self.tables(),
                n,
                bytes(p.embedding_bytes()),
                self.x_smaller().unwrap_or(f64::NAN),
                bytes(self.model_bytes().unwrap_or(0))
            ),
            _ => format!("{:>7} {:>12} {:>10} {:>10} {:>11}", "-", "-", "-", "-", "-"),
        };
        match (&self.summary, &self.error) {
            (Some(s), None) => format!(
                "{method:<6} {sizes} {:>7.4} {:>9.5} {:>8.2}% {:>10.0} {:>7.1}",
                s.eval.roc_auc,
                s.eval.log_loss,
                100.0 * s.eval.accuracy,
                s.train_samples_per_s(),
                s.eval_seconds
            ),
            (_, Some(e)) => format!("{method:<6} {sizes}  error: {e}"),
            (None, None) => format!("{method:<6} {sizes}  (not run)"),
        }
    }

    /// The `--json` record (`"type": "bench_compress"`), with the adapter and `settings`.
    pub fn json(&self, env: &BenchEnv, settings: &serde_json::Value) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert("type".into(), "bench_compress".into());
        env.add_to(&mut obj);
        let s = self.summary.as_ref();
        let p = self.plan.as_ref();
        let rest = serde_json::json!({
            "method": self.method.name(),
            "ok": self.error.is_none() && s.is_some(),
            "error": self.error,
            "note": self.note,
            "tables": p.map(|p| p.tables.len()),
            "tables_of_kind": p.map(|p| p.tables_of(self.method.name())),
            "embedding_params": self.embedding_params,
            "embedding_bytes": p.map(|p| p.embedding_bytes()),
            "dense_embedding_bytes": p.map(|p| p.dense_embedding_bytes()),
            "x_smaller": self.x_smaller(),
            "mlp_bytes": p.map(|p| p.mlp_bytes),
            "model_bytes": self.model_bytes(),
            "memory_bytes": p.map(|p| p.total_bytes()),
            "auc": s.map(|s| s.eval.roc_auc),
            "logloss": s.map(|s| s.eval.log_loss),
            "accuracy": s.map(|s| s.eval.accuracy),
            "best_auc": s.map(|s| s.best_auc),
            "train_samples_per_s": s.map(|s| s.train_samples_per_s()),
            "train_samples": s.map(|s| s.train_samples),
            "train_seconds": s.map(|s| s.train_seconds),
            "steps": s.map(|s| s.steps),
            "eval_samples": s.map(|s| s.eval.samples),
            "eval_seconds": s.map(|s| s.eval_seconds),
            "data": s.map(|s| s.data.clone()),
            "plan": p.map(|p| p.to_json()),
            "settings": settings,
        });
        if let serde_json::Value::Object(m) = rest {
            obj.extend(m);
        }
        serde_json::Value::Object(obj)
    }
}

/// The text table's header (two lines: units under the names).
pub fn header() -> String {
    format!(
        "{:<6} {:>7} {:>12} {:>10} {:>10} {:>11} {:>7} {:>9} {:>9} {:>10} {:>7}",
        "method",
        "tables",
        "emb params",
        "emb bytes",
        "x smaller",
        "model bytes",
        "AUC",
        "log loss",
        "accuracy",
        "samples/s",
        "eval s"
    )
}

/// The settings every method's run shares: the options as given, without the method and the
/// options that belong to one method.
pub fn common_settings(base: &TrainArgs) -> serde_json::Value {
    let mut v = base.to_json();
    if let Some(m) = v.as_object_mut() {
        m.remove("embedding");
    }
    v
}

/// Runs `method` over data with `table_sizes`: its plan, then its training on `gpu`. Errors
/// land in the returned row; only a signal (SIGINT, SIGTERM) stops the comparison (`Err`).
pub fn run_method(
    gpu: &Gpu,
    base: &TrainArgs,
    method: EmbeddingKind,
    table_sizes: &[u64],
) -> Result<MethodRun> {
    let (args, note) = method_args(base, method);
    let mut run = MethodRun {
        method,
        embedding_params: None,
        plan: None,
        summary: None,
        error: None,
        note,
    };
    let planned = crate::train::plan(&args, table_sizes).and_then(|(plan, _)| {
        let config = crate::train::model_config(&args, table_sizes)?;
        Ok((plan, config.embedding_params()?))
    });
    match planned {
        Ok((plan, params)) => {
            run.plan = Some(plan);
            run.embedding_params = Some(params);
        }
        Err(e) => {
            run.error = Some(e.to_string());
            return Ok(run);
        }
    }
    match crate::train::run_quiet(gpu, &args) {
        Ok(s) => run.summary = Some(s),
        Err(e) if crate::signals::received().is_some() => return Err(e),
        Err(e) => run.error = Some(e.to_string()),
    }
    Ok(run)
}
