//! What a training run reports: metric lines (`--metrics-jsonl`), the final summary (stdout and
//! `--summary-json`, written atomically) and the plot of training loss and evaluation AUC.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::metrics::Evaluation;

/// One printed point of the run: a training interval or an evaluation. In the metrics file,
/// epochs count from 1 as on the console, and the log loss is `logloss` in every record (and
/// in the summary).
#[derive(Clone, Debug)]
pub enum MetricPoint {
    Train {
        epoch: u64,
        batch: u64,
        step: u64,
        loss: f64,
        accuracy: f64,
        samples_per_s: f64,
        /// The learning rate of the interval's last step.
        lr: f64,
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
                lr,
            } => serde_json::json!({
                "kind": "train", "epoch": epoch + 1, "batch": batch, "step": step,
                "logloss": loss, "accuracy": accuracy, "samples_per_s": samples_per_s,
                "lr": lr,
            }),
            MetricPoint::Test {
                epoch,
                batch,
                step,
                eval,
                best_auc,
            } => serde_json::json!({
                "kind": "test", "epoch": epoch + 1, "batch": batch, "step": step,
                "samples": eval.samples, "auc": eval.roc_auc, "logloss": eval.log_loss,
                "accuracy": eval.accuracy, "best_auc": best_auc,
            }),
        }
    }
}

/// Appends metric lines to a JSONL file, each record one whole line written with one `write`
/// (so that two runs appending to one file never interleave inside a line), marked with the
/// run's id and start time. A write that fails is cut back to the last newline, and so is a
/// partial last line found on opening (left by an earlier run's failed write).
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
    run: String,
    started: String,
}

impl MetricsLog {
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(|e| Error::file(path, format!("cannot open for appending: {e}")))?;
        let cut = cut_to_last_newline(&mut file)
            .map_err(|e| Error::file(path, format!("cannot repair: {e}")))?;
        if cut > 0 {
            log::warn!(
                "{}: removed a partial last line of {cut} bytes (an earlier write failed)",
                path.display()
            );
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
            run: format!("{}-{:x}", std::process::id(), now.as_micros()),
            started: utc_timestamp(now.as_secs()),
        })
    }

    /// This run's id in the records: `PID-MICROSECONDS` (hex) of its start.
    pub fn run_id(&self) -> &str {
        &self.run
    }

    pub fn append(&mut self, point: &MetricPoint) -> Result<()> {
        let mut record = point.json();
        record["run"] = serde_json::json!(self.run);
        record["started"] = serde_json::json!(self.started);
        let mut line = record.to_string();
        line.push('\n');
        match write_line(&mut self.file, line.as_bytes()) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = cut_to_last_newline(&mut self.file);
                Err(Error::file(&self.path, format!("cannot write: {e}")))
            }
        }
    }
}

/// Writes `line` with one `write`; a short write is an error (the caller cuts it back).
fn write_line(w: &mut impl Write, line: &[u8]) -> std::io::Result<()> {
    let n = w.write(line)?;
    if n < line.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("{n} of {} bytes written", line.len()),
        ));
    }
    Ok(())
}

/// Truncates `file` after its last newline (to empty when it has none); returns the bytes cut.
fn cut_to_last_newline(file: &mut std::fs::File) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end)?;
    }
    Ok(len - end)
}

/// `2026-12-05T06:19:00Z` for seconds since the Unix epoch (UTC).
pub fn utc_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
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
    /// How the TT cores were stored (their bytes per parameter).
    pub tt_precision: crate::tt::CorePrecision,
    pub dense_table_params: u64,
    pub mlp_params: u64,
    pub tt_tables: usize,
    pub lines_read: u64,
    pub malformed: Vec<(&'static str, u64)>,
    pub data: String,
    pub config: serde_json::Value,
    /// The TT groups' LFU caches (statistics, refreshes), when on.
    pub cache: Option<(crate::cache::CacheStats, u64)>,
    /// Per table its form, shapes, ranks and bytes, and the MLPs' bytes
    /// ([`crate::compress::ModelPlan::to_json`]).
    pub plan: serde_json::Value,
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

    /// Tables of each kind (dense, tt, qr, md), from the plan's per-table forms.
    pub fn tables_by_kind(&self) -> Vec<(&'static str, usize)> {
        let forms: Vec<&str> = self.plan["tables"]
            .as_array()
            .map(|t| t.iter().filter_map(|t| t["form"].as_str()).collect())
            .unwrap_or_default();
        ["dense", "tt", "qr", "md"]
            .into_iter()
            .map(|kind| (kind, forms.iter().filter(|&&f| f == kind).count()))
            .collect()
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
            "tables_by_kind": self
                .tables_by_kind()
                .into_iter()
                .map(|(k, n)| (k.to_string(), serde_json::json!(n)))
                .collect::<serde_json::Map<_, _>>(),
            "tt_core_params": self.tt_params,
            "tt_core_bytes": self.tt_precision.bytes() * self.tt_params,
            "tt_precision": self.tt_precision.name(),
            "dense_table_params": self.dense_table_params,
            "mlp_params": self.mlp_params,
            "model_bytes": 4 * (self.embedding_params + self.mlp_params),
            "uncompressed_model_bytes": 4 * (self.uncompressed_embedding_params + self.mlp_params),
            "lines_read": self.lines_read,
            "malformed_lines": self.malformed_lines(),
            "malformed_by_kind": malformed,
            "data": self.data,
            "config": self.config,
            "plan": self.plan,
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
            "model: TT cores {} params ({}{}) in {} tables, dense tables {} params ({}), MLPs {} params ({})\n",
            self.tt_params,
            bytes(self.tt_precision.bytes() * self.tt_params),
            if self.tt_precision == crate::tt::CorePrecision::F16 {
                " as f16"
            } else {
                ""
            },
            self.tt_tables,
            self.dense_table_params,
            bytes(4 * self.dense_table_params),
            self.mlp_params,
            bytes(4 * self.mlp_params)
        );
        // Quotient-remainder and mixed-dimension tables: every kind's count.
        let kinds = self.tables_by_kind();
        if kinds
            .iter()
            .any(|&(k, n)| (k == "qr" || k == "md") && n > 0)
        {
            let each: Vec<String> = kinds
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            s += &format!("tables: {}\n", each.join(", "));
        }
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

/// Draws the run over its steps as an SVG at `path` (written atomically): above, the log loss
/// (training, mean over each print interval, and evaluation); below, the evaluation AUC. Axes
/// are labelled; steps are whole numbers.
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
    let evals = |f: fn(&Evaluation) -> f64| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter_map(|p| match p {
                MetricPoint::Test { step, eval, .. } if f(eval).is_finite() => {
                    Some((*step as f64, f(eval)))
                }
                _ => None,
            })
            .collect()
    };
    let auc = evals(|e| e.roc_auc);
    let eval_loss = evals(|e| e.log_loss);
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
    let whole = |x: &f64| format!("{:.0}", x);
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, (960, 640)).into_drawing_area();
        let draw = |e: &dyn std::fmt::Display| Error::file(path, format!("plotting: {e}"));
        area.fill(&WHITE).map_err(|e| draw(&e))?;
        let (top, bottom) = area.split_vertically(320);
        let both: Vec<(f64, f64)> = loss.iter().chain(&eval_loss).copied().collect();
        let (l0, l1) = range(&both, 0.3, 0.7);
        let mut c = ChartBuilder::on(&top)
            .caption(
                "log loss (BCE): training (mean over each print interval) and evaluation",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_step, l0..l1)
            .map_err(|e| draw(&e))?;
        c.configure_mesh()
            .x_desc("training step")
            .y_desc("log loss")
            .x_label_formatter(&whole)
            .draw()
            .map_err(|e| draw(&e))?;
        c.draw_series(LineSeries::new(loss.iter().copied(), &BLUE))
            .map_err(|e| draw(&e))?
            .label("training log loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        c.draw_series(LineSeries::new(eval_loss.iter().copied(), &MAGENTA))
            .map_err(|e| draw(&e))?
            .label("evaluation log loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA));
        c.draw_series(
            eval_loss
                .iter()
                .map(|&p| Circle::new(p, 3, MAGENTA.filled())),
        )
        .map_err(|e| draw(&e))?;
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| draw(&e))?;
        let (a0, a1) = range(&auc, 0.5, 1.0);
        let mut c = ChartBuilder::on(&bottom)
            .caption("evaluation AUC", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_step, a0..a1)
            .map_err(|e| draw(&e))?;
        c.configure_mesh()
            .x_desc("training step")
            .y_desc("ROC AUC")
            .x_label_formatter(&whole)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_timestamps() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_798_000_000), "2026-12-23T04:26:40Z");
    }

    /// A writer that counts its `write` calls and accepts at most `cap` bytes in all.
    struct Counting {
        writes: usize,
        cap: usize,
        got: Vec<u8>,
    }

    impl Write for Counting {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.writes += 1;
            let n = b.len().min(self.cap - self.got.len());
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_record_is_one_write_and_a_short_one_is_an_error() {
        let line = b"{\"kind\":\"train\",\"loss\":0.5}\n";
        let mut w = Counting {
            writes: 0,
            cap: 1000,
            got: vec![],
        };
        write_line(&mut w, line).unwrap();
        assert_eq!((w.writes, w.got.as_slice()), (1, &line[..]));
        let mut full = Counting {
            writes: 0,
            cap: 10,
            got: vec![],
        };
        assert!(write_line(&mut full, line).is_err());
        assert_eq!(full.writes, 1);
    }

    #[test]
    fn a_partial_last_line_is_cut_back() {
        let dir = std::env::temp_dir().join(format!("ttrec-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.jsonl");
        for (text, want) in [
            ("{\"a\":1}\n{\"b\":", "{\"a\":1}\n"),
            ("{\"a\":1}\n", "{\"a\":1}\n"),
            ("{\"partial", ""),
            ("", ""),
        ] {
            std::fs::write(&path, text).unwrap();
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .unwrap();
            let cut = cut_to_last_newline(&mut f).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), want, "{text:?}");
            assert_eq!(cut as usize, text.len() - want.len());
        }
        // A long last line (over one read block) without a newline.
        let long = format!("{{\"a\":1}}\n{}", "x".repeat(10_000));
        std::fs::write(&path, &long).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        cut_to_last_newline(&mut f).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
