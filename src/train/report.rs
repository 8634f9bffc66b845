//! What a training run reports: metric lines (`--metrics-jsonl`), the final summary (stdout and
//! `--summary-json`, written atomically) and the plot of training loss and evaluation AUC.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::metrics::Evaluation;

/// One printed point of the run: a training interval or an evaluation.
#[derive(Clone, Debug)]
pub enum MetricPoint {
    Train {
        epoch: u64,
        batch: u64,
        step: u64,
        loss: f64,
        accuracy: f64,
        samples_per_s: f64,
    },
    Test {
        epoch: u64,
        batch: u64,
        step: u64,
        eval: Evaluation,
        best_auc: f64,
    },
}

impl MetricPoint {
    pub fn json(&self) -> serde_json::Value {
        match self {
            MetricPoint::Train {
                epoch,
                batch,
                step,
                loss,
                accuracy,
                samples_per_s,
            } => serde_json::json!({
                "kind": "train", "epoch": epoch, "batch": batch, "step": step,
                "loss": loss, "accuracy": accuracy, "samples_per_s": samples_per_s,
            }),
            MetricPoint::Test {
                epoch,
                batch,
                step,
                eval,
                best_auc,
            } => serde_json::json!({
                "kind": "test", "epoch": epoch, "batch": batch, "step": step,
                "samples": eval.samples, "auc": eval.roc_auc, "logloss": eval.log_loss,
                "accuracy": eval.accuracy, "best_auc": best_auc,
            }),
        }
    }
}

/// Appends metric lines to a JSONL file.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::file(path, format!("cannot open for appending: {e}")))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn append(&mut self, point: &MetricPoint) -> Result<()> {
        writeln!(self.file, "{}", point.json())
            .map_err(|e| Error::file(&self.path, format!("cannot write: {e}")))
    }
}

/// The end of a run.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub adapter: String,
    pub eval: Evaluation,
    pub best_auc: f64,
    pub steps: u64,
    pub epochs: u64,
    pub train_samples: u64,
    pub train_seconds: f64,
    pub eval_samples: u64,
    pub eval_seconds: f64,
    pub embedding_params: u64,
    pub uncompressed_embedding_params: u64,
    pub tt_params: u64,
    pub dense_table_params: u64,
    pub mlp_params: u64,
    pub tt_tables: usize,
    pub lines_read: u64,
    pub malformed: Vec<(&'static str, u64)>,
    pub data: String,
    pub config: serde_json::Value,
    /// The TT groups' LFU caches (statistics, refreshes), when on.
    pub cache: Option<(crate::cache::CacheStats, u64)>,
}

/// "12.3 MB" for a byte count.
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

impl TrainSummary {
    pub fn train_samples_per_s(&self) -> f64 {
        self.train_samples as f64 / self.train_seconds.max(1e-9)
    }
    pub fn eval_samples_per_s(&self) -> f64 {
        self.eval_samples as f64 / self.eval_seconds.max(1e-9)
    }
    /// Uncompressed embedding parameters over stored ones (the paper's count: embeddings only).
    pub fn compression_ratio(&self) -> f64 {
        self.uncompressed_embedding_params as f64 / self.embedding_params.max(1) as f64
    }
    pub fn malformed_lines(&self) -> u64 {
        self.malformed.iter().map(|(_, n)| n).sum()
    }

    pub fn json(&self) -> serde_json::Value {
        let malformed: serde_json::Map<String, serde_json::Value> = self
            .malformed
            .iter()
            .map(|(k, n)| (k.to_string(), serde_json::json!(n)))
            .collect();
        serde_json::json!({
            "auc": self.eval.roc_auc,
            "logloss": self.eval.log_loss,
            "accuracy": self.eval.accuracy,
            "best_auc": self.best_auc,
            "eval_samples": self.eval.samples,
            "train_samples_per_s": self.train_samples_per_s(),
            "eval_samples_per_s": self.eval_samples_per_s(),
            "train_samples": self.train_samples,
            "train_seconds": self.train_seconds,
            "steps": self.steps,
            "epochs": self.epochs,
            "adapter": self.adapter,
            "embedding_params": self.embedding_params,
            "uncompressed_embedding_params": self.uncompressed_embedding_params,
            "compression_ratio": self.compression_ratio(),
            "tt_tables": self.tt_tables,
            "tt_core_params": self.tt_params,
            "dense_table_params": self.dense_table_params,
            "mlp_params": self.mlp_params,
            "model_bytes": 4 * (self.embedding_params + self.mlp_params),
            "uncompressed_model_bytes": 4 * (self.uncompressed_embedding_params + self.mlp_params),
            "lines_read": self.lines_read,
            "malformed_lines": self.malformed_lines(),
            "malformed_by_kind": malformed,
            "data": self.data,
            "config": self.config,
            "ttrec_version": env!("CARGO_PKG_VERSION"),
            "cache_hit_rate": self.cache.map(|(c, _)| c.hit_rate()),
            "cache": self.cache.map(|(c, refreshes)| serde_json::json!({
                "lookups": c.lookups,
                "hits": c.hits,
                "hit_rate": c.hit_rate(),
                "dropped": c.dropped,
                "members": c.members,
                "occupied": c.occupied,
                "refreshes": refreshes,
            })),
        })
    }

    /// The human-readable summary.
    pub fn text(&self) -> String {
        let e = &self.eval;
        let mut s = String::new();
        s += &format!(
            "final evaluation on {} samples: log loss {:.6}, accuracy {:.3} %, AUC {:.4} (best {:.4})\n",
            e.samples,
            e.log_loss,
            100.0 * e.accuracy,
            e.roc_auc,
            self.best_auc
        );
        s += &format!(
            "training: {} steps, {} samples in {:.1} s = {:.0} samples/s; evaluation {:.0} samples/s; adapter {}\n",
            self.steps,
            self.train_samples,
            self.train_seconds,
            self.train_samples_per_s(),
            self.eval_samples_per_s(),
            self.adapter
        );
        if let Some((c, refreshes)) = &self.cache {
            s += &format!(
                "cache: hit rate {:.1} % of {} lookups, {} rows cached, {} keys counted, {} counts dropped, {refreshes} refreshes\n",
                100.0 * c.hit_rate(),
                c.lookups,
                c.members,
                c.occupied,
                c.dropped
            );
        }
        s += &format!(
            "model: TT cores {} params ({}) in {} tables, dense tables {} params ({}), MLPs {} params ({})\n",
            self.tt_params,
            bytes(4 * self.tt_params),
            self.tt_tables,
            self.dense_table_params,
            bytes(4 * self.dense_table_params),
            self.mlp_params,
            bytes(4 * self.mlp_params)
        );
        s += &format!(
            "embeddings: {} params ({}) against {} uncompressed ({}): {:.1}x smaller\n",
            self.embedding_params,
            bytes(4 * self.embedding_params),
            self.uncompressed_embedding_params,
            bytes(4 * self.uncompressed_embedding_params),
            self.compression_ratio()
        );
        s
    }
}

/// The plot's path next to `summary` (or the metrics file): same name, `.svg`.
pub fn plot_path(anchor: &Path) -> PathBuf {
    anchor.with_extension("svg")
}

/// Draws training loss and evaluation AUC over the steps of `points` as an SVG at `path`
/// (written atomically).
pub fn plot(points: &[MetricPoint], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let loss: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| match p {
            MetricPoint::Train { step, loss, .. } if loss.is_finite() => {
                Some((*step as f64, *loss))
            }
            _ => None,
        })
        .collect();
    let auc: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| match p {
            MetricPoint::Test { step, eval, .. } => Some((*step as f64, eval.roc_auc)),
            _ => None,
        })
        .collect();
    let max_step = loss.iter().chain(&auc).map(|p| p.0).fold(1.0f64, f64::max);
    let range = |v: &[(f64, f64)], lo: f64, hi: f64| {
        let (a, b) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        if a > b {
            (lo, hi)
        } else {
            let pad = ((b - a) * 0.1).max(1e-3);
            (a - pad, b + pad)
        }
    };
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, (960, 640)).into_drawing_area();
        let draw = |e: &dyn std::fmt::Display| Error::file(path, format!("plotting: {e}"));
        area.fill(&WHITE).map_err(|e| draw(&e))?;
        let (top, bottom) = area.split_vertically(320);
        let (l0, l1) = range(&loss, 0.3, 0.7);
        let mut c = ChartBuilder::on(&top)
            .caption(
                "training loss (BCE, mean over each print interval)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_step, l0..l1)
            .map_err(|e| draw(&e))?;
        c.configure_mesh()
            .x_desc("step")
            .draw()
            .map_err(|e| draw(&e))?;
        c.draw_series(LineSeries::new(loss.iter().copied(), &BLUE))
            .map_err(|e| draw(&e))?;
        let (a0, a1) = range(&auc, 0.5, 1.0);
        let mut c = ChartBuilder::on(&bottom)
            .caption("evaluation AUC", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_step, a0..a1)
            .map_err(|e| draw(&e))?;
        c.configure_mesh()
            .x_desc("step")
            .draw()
            .map_err(|e| draw(&e))?;
        c.draw_series(LineSeries::new(auc.iter().copied(), &RED))
            .map_err(|e| draw(&e))?;
        c.draw_series(auc.iter().map(|&p| Circle::new(p, 3, RED.filled())))
            .map_err(|e| draw(&e))?;
        area.present().map_err(|e| draw(&e))?;
    }
    crate::io::write_atomic(path, svg.as_bytes())
}
