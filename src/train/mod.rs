//! A DLRM training run as a dlrm user expects it (`ttrec train`, `examples/train_kaggle.rs`):
//! data (synthetic or Criteo files through the data store), the model (TT or dense tables), the
//! training loop with progress, periodic evaluation, checkpoints and resume, and the summary.
//! - [`options`]: the options (dlrm's names) and their checks.
//! - [`data`]: where samples come from, served from any (epoch, batch) position.
//! - [`checkpoint`]: save and resume.
//! - [`report`]: metric lines, the summary, the plot.

pub mod checkpoint;
pub mod data;
pub mod options;
pub mod report;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use indicatif::ProgressBar;

use crate::dlrm::{Dlrm, DlrmBatch, DlrmConfig, DlrmOptions, TableKind, TtCacheOptions};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::metrics::{evaluate, Evaluation};
use crate::progress::{bar_style, Progress, Style, Unit};
use checkpoint::CheckpointMeta;
pub use checkpoint::Position;
pub use data::TrainData;
pub use options::{EmbeddingKind, TrainArgs};
use report::{MetricPoint, MetricsLog, TrainSummary};

/// Set by Ctrl-C: the loop finishes the current step, writes a checkpoint and stops.
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn interrupt_flag() -> Arc<AtomicBool> {
    INTERRUPTED
        .get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(false));
            let f = flag.clone();
            // If a handler is already installed (the embedding app's), Ctrl-C keeps its meaning.
            if let Err(e) = ctrlc::set_handler(move || {
                if f.swap(true, Ordering::SeqCst) {
                    // A second Ctrl-C: stop now.
                    std::process::exit(130);
                }
            }) {
                log::info!("Ctrl-C keeps its meaning (no checkpoint on interrupt): {e}");
            }
            flag
        })
        .clone()
}

/// The model configuration of a run over data with `table_sizes`.
pub fn model_config(args: &TrainArgs, table_sizes: &[u64]) -> Result<DlrmConfig> {
    let c = args.check()?;
    let base = DlrmConfig {
        bottom_mlp: c.bottom.clone(),
        top_mlp: c.top.clone(),
        tables: vec![],
        learning_rate: args.learning_rate,
        tt_init: c.tt_init,
        seed: args.seed,
    }
    .with_table_sizes(table_sizes);
    let config = match (args.embedding, c.tt_tables, c.tt_threshold) {
        (EmbeddingKind::Dense, _, _) => base,
        (EmbeddingKind::Tt, _, Some(rows)) => base.with_tt_threshold(rows, c.tt_rank)?,
        (EmbeddingKind::Tt, k, None) => base.with_tt_largest(k.unwrap_or(7), c.tt_rank)?,
    };
    config.validate()?;
    Ok(config)
}

/// Where a run writes its checkpoint when interrupted without `--save-model`.
fn interrupted_path(args: &TrainArgs) -> PathBuf {
    args.save_model
        .clone()
        .unwrap_or_else(|| PathBuf::from("train_kaggle.interrupted.safetensors"))
}

/// How the run prints: a progress bar on a terminal, plain lines otherwise (see
/// [`crate::progress::Style::from_env`]).
struct Output {
    bar: Option<ProgressBar>,
}

impl Output {
    fn new() -> Self {
        Output { bar: None }
    }
    fn line(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None => println!("{s}"),
        }
    }
    fn start_epoch(&mut self, epoch: u64, epochs: u64, total: u64, done: u64) {
        // A bar where every progress has one (a terminal, unless TTREC_PROGRESS says otherwise).
        if Style::from_env() == Style::Bar {
            let bar = ProgressBar::new(total).with_position(done);
            bar.set_style(bar_style("{pos}/{len} batches, {msg}"));
            bar.set_prefix(format!("epoch {}/{}", epoch + 1, epochs));
            self.bar = Some(bar);
        }
    }
    fn step(&self, msg: impl FnOnce() -> String) {
        if let Some(b) = &self.bar {
            b.inc(1);
            if b.position() % 8 == 0 {
                b.set_message(msg());
            }
        }
    }
    fn end_epoch(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Runs training as `args` say; the summary on success. Interruption (Ctrl-C), a non-finite loss
/// and bad data are errors (the caller exits non-zero).
pub fn run(args: &TrainArgs) -> Result<TrainSummary> {
    args.check()?;
    let gpu = Gpu::with_options(&crate::gpu::AdapterOptions::with_limits(args.limits))?;
    run_on(&gpu, args)
}

/// [`run`] on a given adapter.
pub fn run_on(gpu: &Gpu, args: &TrainArgs) -> Result<TrainSummary> {
    args.check()?;
    let interrupted = interrupt_flag();
    let mut out = Output::new();
    out.line(&format!("adapter: {}", gpu.adapter_name()));
    // Data.
    let data = if args.data.is_empty() {
        TrainData::synthetic(
            args.seed,
            args.synthetic_scale,
            args.synthetic_samples,
            args.test_fraction.unwrap_or(0.1),
        )?
    } else {
        let mut bar = Progress::new("building the data store", 0, Unit::Bytes);
        let mut progress = |done: u64, total: u64| {
            bar.set_total(total);
            bar.set(done);
        };
        let d = TrainData::criteo(
            &args.data,
            args.processed_data_file.clone(),
            args.max_ind_range,
            args.test_fraction,
            args.seed,
            Some(&mut progress),
        )?;
        bar.finish();
        d
    };
    out.line(&format!("data: {}", data.describe()));
    let (lines, malformed) = data.read_report();
    if !args.data.is_empty() {
        let bad: u64 = malformed.iter().map(|(_, n)| n).sum();
        let kinds: Vec<String> = malformed
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        out.line(&format!(
            "data: {lines} lines read, {bad} malformed skipped{}",
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            }
        ));
    }
    // Model.
    let config = model_config(args, &data.table_sizes())?;
    let options = DlrmOptions {
        tt_cache: args.cache_rows.map(|rows| TtCacheOptions {
            rows,
            warmup_steps: args.cache_warmup,
            refresh_every: args.cache_refresh,
        }),
        ..DlrmOptions::default()
    };
    let mut model = Dlrm::new(gpu, config.clone(), options)?;
    let mut pos = Position {
        epoch: 0,
        batch: 0,
        step: 0,
        best_auc: f64::NAN,
    };
    if let Some(path) = &args.load_model {
        let ck = checkpoint::load(path)?;
        ck.check_fits(&config, args.mini_batch_size, &data.fingerprint(), path)?;
        ck.restore(&mut model, path)?;
        pos = ck.meta.position;
        out.line(&format!(
            "resumed from {} at epoch {}, batch {} (step {})",
            path.display(),
            pos.epoch + 1,
            pos.batch,
            pos.step
        ));
    }
    let tt_tables = config
        .tables
        .iter()
        .filter(|t| matches!(t.kind, TableKind::Tt { .. }))
        .count();
    let (mlp_params, dense_params, tt_params) = model.parameter_counts();
    out.line(&format!(
        "model: bottom MLP {}, top MLP {}-{}, D = {}, {} tables ({} TT, rank {}), {} embedding parameters ({:.1}x smaller than dense), {} MLP parameters",
        args.arch_mlp_bot,
        config.interaction_width(),
        args.arch_mlp_top,
        config.dim(),
        config.tables.len(),
        tt_tables,
        args.tt_rank.unwrap_or(32),
        config.embedding_params()?,
        config.uncompressed_embedding_params() as f64 / config.embedding_params()?.max(1) as f64,
        mlp_params
    ));
    let mut log = match &args.metrics_jsonl {
        Some(p) => Some(MetricsLog::open(p)?),
        None => None,
    };
    let mut points: Vec<MetricPoint> = Vec::new();
    let mut record = |p: MetricPoint, log: &mut Option<MetricsLog>| -> Result<()> {
        if let Some(l) = log {
            l.append(&p)?;
        }
        points.push(p);
        Ok(())
    };
    let meta = |pos: Position| CheckpointMeta {
        config: config.clone(),
        position: pos,
        batch_size: args.mini_batch_size,
        data: data.fingerprint(),
        seed: args.seed,
    };
    let save = |model: &Dlrm, pos: Position, path: &Path| -> Result<()> {
        checkpoint::save(path, model, &meta(pos))
    };

    let bs = args.mini_batch_size;
    // Whole batches only: every distinct batch size is a plan of its own (compiled pipelines).
    let per_epoch = data.batches_per_epoch(bs);
    if per_epoch == 0 {
        return Err(Error::input(
            None,
            format!(
                "{} training samples do not make one batch of --mini-batch-size {bs}",
                data.train_samples()
            ),
        ));
    }
    let batches = args.num_batches.map_or(per_epoch, |n| n.min(per_epoch));
    let epochs = args.nepochs as u64;
    // Without --test-freq: dlrm evaluates at the end of each epoch; the synthetic default run
    // also evaluates every quarter epoch, for a curve of AUC over the run.
    let test_freq = match (args.test_freq, args.data.is_empty()) {
        (Some(f), _) => f,
        (None, true) => batches.div_ceil(4).max(1),
        (None, false) => batches,
    };
    let mut train_samples = 0u64;
    let mut eval_seconds = 0.0;
    let mut eval_samples = 0u64;
    let mut last_eval: Option<(Evaluation, u64)> = None;
    let mut steps_this_run = 0u64;
    // Plans (and their compiled pipelines) before the clock starts. Evaluation batches are
    // balanced (33,000 samples at --test-mini-batch-size 16384: 3 x 11,000), so the padding of
    // the last one is small.
    let test_n = data.test_samples() as usize;
    let eval_batches = test_n.div_ceil(args.test_mini_batch_size).max(1);
    let eval_batch = test_n.div_ceil(eval_batches).max(1);
    let t = Instant::now();
    model.prepare_train(bs)?;
    model.prepare_eval(eval_batch)?;
    out.line(&format!(
        "plans built in {:.1} s (pipelines compiled for batches of {bs} and {eval_batch})",
        t.elapsed().as_secs_f64()
    ));

    let evaluate_now = |model: &mut Dlrm,
                        pos: &mut Position,
                        out: &Output,
                        eval_seconds: &mut f64,
                        eval_samples: &mut u64|
     -> Result<Evaluation> {
        // Steps still queued on the GPU are training time, not evaluation time.
        model.gpu().wait()?;
        let t = Instant::now();
        let mut labels = Vec::with_capacity(data.test_samples() as usize);
        let mut probs = Vec::with_capacity(data.test_samples() as usize);
        for b in data.test_batches(eval_batch)? {
            let b = b?;
            probs.extend(model.predict_padded(&DlrmBatch::from(&b), eval_batch)?);
            labels.extend_from_slice(&b.labels);
        }
        let ev = evaluate(&labels, &probs)?;
        *eval_seconds += t.elapsed().as_secs_f64();
        *eval_samples += labels.len() as u64;
        if pos.best_auc.is_nan() || ev.roc_auc > pos.best_auc {
            pos.best_auc = ev.roc_auc;
        }
        out.line(&format!(
            "Testing at {}/{} of epoch {}: loss {:.6}, accuracy {:.3} %, auc {:.4}, best auc {:.4}",
            pos.batch,
            batches,
            pos.epoch + 1,
            ev.log_loss,
            100.0 * ev.accuracy,
            ev.roc_auc,
            pos.best_auc
        ));
        Ok(ev)
    };

    // Training time: the loop's wall time less evaluations and checkpoints.
    let loop_start = Instant::now();
    let mut not_training = 0.0;
    while pos.epoch < epochs {
        if pos.batch as usize >= batches {
            pos.epoch += 1;
            pos.batch = 0;
            continue;
        }
        out.start_epoch(pos.epoch, epochs, batches as u64, pos.batch);
        let loader = data.train_batches(
            pos.epoch,
            bs,
            pos.batch as usize,
            batches - pos.batch as usize,
        )?;
        let mut interval_start = Instant::now();
        let mut interval_samples = 0u64;
        let mut running = (0.0f64, 0usize, 0usize); // loss sum, correct, samples (since print)
        for b in loader {
            let b = b?;
            model.train_step(&DlrmBatch::from(&b))?;
            train_samples += b.len() as u64;
            interval_samples += b.len() as u64;
            pos.batch += 1;
            pos.step += 1;
            steps_this_run += 1;
            let rate = interval_samples as f64 / interval_start.elapsed().as_secs_f64().max(1e-9);
            let shown = running;
            out.step(|| {
                if shown.2 > 0 {
                    format!("{rate:.0} samples/s, loss {:.5}", shown.0 / shown.2 as f64)
                } else {
                    format!("{rate:.0} samples/s")
                }
            });
            let at_end = pos.batch as usize == batches;
            let stop = interrupted.load(Ordering::SeqCst)
                || args.stop_after_steps.is_some_and(|n| steps_this_run >= n);
            if pos.batch.is_multiple_of(args.print_freq as u64) || at_end || stop {
                // Reading the statistics waits for the GPU.
                let stats = model.take_stats()?;
                if let Some(s) = stats.iter().find(|s| !s.loss.is_finite()) {
                    out.end_epoch();
                    return Err(Error::Stopped(
                        format!(
                            "training stopped: the loss of step {} (epoch {}) is {}; the last good checkpoint{} is kept",
                            s.step + 1,
                            pos.epoch + 1,
                            s.loss,
                            args.save_model
                                .as_ref()
                                .map(|p| format!(" ({})", p.display()))
                                .unwrap_or_default()
                        ),
                    ));
                }
                let n: usize = stats.iter().map(|s| s.samples).sum();
                let loss = stats.iter().map(|s| s.loss * s.samples as f64).sum::<f64>();
                let correct: usize = stats.iter().map(|s| s.correct).sum();
                running = (loss, correct, n);
                if n > 0 {
                    let rate = interval_samples as f64 / interval_start.elapsed().as_secs_f64();
                    let mean = loss / n as f64;
                    let acc = correct as f64 / n as f64;
                    let cache = model.cache_stats()?.map(|(s, _)| s.hit_rate());
                    let cache_msg = cache.map_or(String::new(), |h| {
                        format!(", cache hit rate {:.1} %", 100.0 * h)
                    });
                    let msg = format!(
                        "Finished training it {}/{} of epoch {}, {:.0} samples/s, loss {:.6}, accuracy {:.3} %{cache_msg}",
                        pos.batch,
                        batches,
                        pos.epoch + 1,
                        rate,
                        mean,
                        100.0 * acc
                    );
                    match &out.bar {
                        Some(b) => {
                            b.set_message(format!("{rate:.0} samples/s, loss {mean:.5}{cache_msg}"))
                        }
                        None => out.line(&msg),
                    }
                    record(
                        MetricPoint::Train {
                            epoch: pos.epoch,
                            batch: pos.batch,
                            step: pos.step,
                            loss: mean,
                            accuracy: acc,
                            samples_per_s: rate,
                        },
                        &mut log,
                    )?;
                }
                interval_start = Instant::now();
                interval_samples = 0;
            }
            if stop {
                out.end_epoch();
                let path = interrupted_path(args);
                save(&model, pos, &path)?;
                return Err(Error::Stopped(
                    format!(
                        "training interrupted after step {} (epoch {}, batch {}/{}); checkpoint written to {}; resume with --load-model {}",
                        pos.step,
                        pos.epoch + 1,
                        pos.batch,
                        batches,
                        path.display(),
                        path.display()
                    ),
                ));
            }
            let test_now = at_end || pos.batch.is_multiple_of(test_freq as u64);
            if test_now {
                let paused = Instant::now();
                let ev = evaluate_now(
                    &mut model,
                    &mut pos,
                    &out,
                    &mut eval_seconds,
                    &mut eval_samples,
                )?;
                record(
                    MetricPoint::Test {
                        epoch: pos.epoch,
                        batch: pos.batch,
                        step: pos.step,
                        eval: ev,
                        best_auc: pos.best_auc,
                    },
                    &mut log,
                )?;
                last_eval = Some((ev, pos.step));
                if let Some(path) = &args.save_model {
                    // Saved where the position is consistent: at the end of an epoch, the next.
                    let mut at = pos;
                    if at_end {
                        at.epoch += 1;
                        at.batch = 0;
                    }
                    save(&model, at, path)?;
                }
                not_training += paused.elapsed().as_secs_f64();
                interval_start = Instant::now();
                interval_samples = 0;
            }
        }
        out.end_epoch();
        pos.epoch += 1;
        pos.batch = 0;
    }
    model.gpu().wait()?;
    let train_seconds = loop_start.elapsed().as_secs_f64() - not_training;
    let eval = match last_eval {
        Some((ev, step)) if step == pos.step => ev,
        _ => evaluate_now(
            &mut model,
            &mut pos,
            &out,
            &mut eval_seconds,
            &mut eval_samples,
        )?,
    };
    if let Some(path) = &args.save_model {
        save(&model, pos, path)?;
    }
    let summary = TrainSummary {
        adapter: gpu.adapter_name(),
        eval,
        best_auc: pos.best_auc,
        steps: pos.step,
        epochs,
        train_samples,
        train_seconds,
        eval_samples,
        eval_seconds,
        embedding_params: config.embedding_params()?,
        uncompressed_embedding_params: config.uncompressed_embedding_params(),
        tt_params,
        dense_table_params: dense_params,
        mlp_params,
        tt_tables,
        lines_read: lines,
        malformed,
        data: data.describe(),
        config: config.to_json(),
        cache: model.cache_stats()?,
    };
    print!("{}", summary.text());
    if let Some(p) = &args.summary_json {
        let text = serde_json::to_string_pretty(&summary.json()).expect("JSON");
        crate::io::write_atomic(p, text.as_bytes())?;
    }
    let plot_anchor = args.summary_json.as_ref().or(args.metrics_jsonl.as_ref());
    if let Some(anchor) = plot_anchor {
        let path = report::plot_path(anchor);
        report::plot(&points, &path)?;
        println!("plot of loss and AUC: {}", path.display());
    }
    if args.data.is_empty() {
        println!(
            "This was synthetic Criteo-shaped data. To train on Criteo Kaggle, download its train.txt and run:\n  cargo run --release --example train_kaggle -- --data train.txt --processed-data-file kaggle.ttcache --test-freq 10000"
        );
    }
    Ok(summary)
}
