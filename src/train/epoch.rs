//! The training loop of a run: epochs of steps from the run's position on, the running loss
//! printed (and logged) every `--print-freq` steps, an evaluation every `--test-freq` steps and
//! at the end of each epoch, each followed by a checkpoint, and Ctrl-C (or
//! `--stop-after-steps`) ending the run with a checkpoint. Owns the model and every counter the
//! summary reports.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::dlrm::{Dlrm, DlrmBatch, DlrmConfig};
use crate::error::{Error, Result};
use crate::metrics::{evaluate, Evaluation};

use super::checkpoint::{self, CheckpointMeta, Position};
use super::data::TrainData;
use super::options::TrainArgs;
use super::output::Output;
use super::report::{MetricPoint, MetricsLog};

/// How a run is cut into steps and evaluations.
#[derive(Clone, Copy, Debug)]
pub(super) struct Schedule {
    /// Samples per training step.
    pub batch_size: usize,
    /// Training batches per epoch (`--num-batches`, at most a whole epoch).
    pub batches: usize,
    pub epochs: u64,
    /// Evaluate every this many batches (and at the end of each epoch).
    pub test_freq: usize,
    /// The evaluation plan's batch (the test set in balanced batches).
    pub eval_batch: usize,
}

/// Samples and seconds of a run's training and evaluation.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Counters {
    pub train_samples: u64,
    pub eval_samples: u64,
    pub eval_seconds: f64,
    /// The loop's seconds spent evaluating and writing checkpoints (not training).
    pub not_training: f64,
}

/// The print interval in progress: its clock, samples, and the running statistics shown on the
/// bar (loss sum, correct, samples of the last printed interval).
struct Interval {
    start: Instant,
    samples: u64,
    running: (f64, usize, usize),
}

impl Interval {
    fn new() -> Self {
        Interval {
            start: Instant::now(),
            samples: 0,
            running: (0.0, 0, 0),
        }
    }
    fn restart(&mut self) {
        self.start = Instant::now();
        self.samples = 0;
    }
    fn rate(&self) -> f64 {
        self.samples as f64 / self.start.elapsed().as_secs_f64().max(1e-9)
    }
}

/// A run in progress: the model, where it stands, and what it has reported.
pub(super) struct Trainer<'a> {
    pub args: &'a TrainArgs,
    pub data: &'a TrainData,
    pub config: &'a DlrmConfig,
    pub model: Dlrm,
    pub out: Output,
    pub pos: Position,
    pub schedule: Schedule,
    pub log: Option<MetricsLog>,
    /// Every metric point of the run (for the plot).
    pub points: Vec<MetricPoint>,
    pub counters: Counters,
    /// The last evaluation and the step it was made at.
    pub last_eval: Option<(Evaluation, u64)>,
    steps_this_run: u64,
    interrupted: Arc<AtomicBool>,
}

impl<'a> Trainer<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        args: &'a TrainArgs,
        data: &'a TrainData,
        config: &'a DlrmConfig,
        model: Dlrm,
        out: Output,
        pos: Position,
        schedule: Schedule,
        log: Option<MetricsLog>,
        interrupted: Arc<AtomicBool>,
    ) -> Self {
        Trainer {
            args,
            data,
            config,
            model,
            out,
            pos,
            schedule,
            log,
            points: Vec::new(),
            counters: Counters::default(),
            last_eval: None,
            steps_this_run: 0,
            interrupted,
        }
    }

    /// Trains every remaining epoch; returns the training seconds (the loop's wall time less
    /// evaluations and checkpoints).
    pub(super) fn run_epochs(&mut self) -> Result<f64> {
        let loop_start = Instant::now();
        while self.pos.epoch < self.schedule.epochs {
            if self.pos.batch as usize >= self.schedule.batches {
                self.pos.epoch += 1;
                self.pos.batch = 0;
                continue;
            }
            self.train_epoch()?;
            self.pos.epoch += 1;
            self.pos.batch = 0;
        }
        self.model.gpu().wait()?;
        Ok(loop_start.elapsed().as_secs_f64() - self.counters.not_training)
    }

    /// The rest of the current epoch, from `pos.batch` on.
    fn train_epoch(&mut self) -> Result<()> {
        let (bs, batches) = (self.schedule.batch_size, self.schedule.batches);
        self.out.start_epoch(
            self.pos.epoch,
            self.schedule.epochs,
            batches as u64,
            self.pos.batch,
        );
        let loader = self.data.train_batches(
            self.pos.epoch,
            bs,
            self.pos.batch as usize,
            batches - self.pos.batch as usize,
        )?;
        let mut interval = Interval::new();
        for b in loader {
            let b = b?;
            self.model.train_step(&DlrmBatch::from(&b))?;
            self.counters.train_samples += b.len() as u64;
            interval.samples += b.len() as u64;
            self.pos.batch += 1;
            self.pos.step += 1;
            self.steps_this_run += 1;
            let rate = interval.rate();
            let shown = interval.running;
            self.out.step(|| {
                if shown.2 > 0 {
                    format!("{rate:.0} samples/s, loss {:.5}", shown.0 / shown.2 as f64)
                } else {
                    format!("{rate:.0} samples/s")
                }
            });
            let at_end = self.pos.batch as usize == batches;
            let stop = self.interrupted.load(Ordering::SeqCst)
                || self
                    .args
                    .stop_after_steps
                    .is_some_and(|n| self.steps_this_run >= n);
            if self.pos.batch.is_multiple_of(self.args.print_freq as u64) || at_end || stop {
                self.print_interval(&mut interval)?;
            }
            if stop {
                return Err(self.stop_interrupted());
            }
            if at_end
                || self
                    .pos
                    .batch
                    .is_multiple_of(self.schedule.test_freq as u64)
            {
                self.test_and_save(at_end)?;
                interval.restart();
            }
        }
        self.out.end_epoch();
        Ok(())
    }

    /// Reads the steps' statistics (waits for the GPU), stops on a non-finite loss, and prints
    /// and logs the interval's mean loss, accuracy and speed.
    fn print_interval(&mut self, interval: &mut Interval) -> Result<()> {
        let stats = self.model.take_stats()?;
        if let Some(s) = stats.iter().find(|s| !s.loss.is_finite()) {
            self.out.end_epoch();
            return Err(Error::Stopped(format!(
                "training stopped: the loss of step {} (epoch {}) is {}; the last good checkpoint{} is kept",
                s.step + 1,
                self.pos.epoch + 1,
                s.loss,
                self.args
                    .save_model
                    .as_ref()
                    .map(|p| format!(" ({})", p.display()))
                    .unwrap_or_default()
            )));
        }
        let n: usize = stats.iter().map(|s| s.samples).sum();
        let loss = stats.iter().map(|s| s.loss * s.samples as f64).sum::<f64>();
        let correct: usize = stats.iter().map(|s| s.correct).sum();
        interval.running = (loss, correct, n);
        if n > 0 {
            let rate = interval.samples as f64 / interval.start.elapsed().as_secs_f64();
            let mean = loss / n as f64;
            let acc = correct as f64 / n as f64;
            let cache = self.model.cache_stats()?.map(|(s, _)| s.hit_rate());
            let cache_msg = cache.map_or(String::new(), |h| {
                format!(", cache hit rate {:.1} %", 100.0 * h)
            });
            let msg = format!(
                "Finished training it {}/{} of epoch {}, {:.0} samples/s, loss {:.6}, accuracy {:.3} %{cache_msg}",
                self.pos.batch,
                self.schedule.batches,
                self.pos.epoch + 1,
                rate,
                mean,
                100.0 * acc
            );
            match &self.out.bar {
                Some(b) => b.set_message(format!("{rate:.0} samples/s, loss {mean:.5}{cache_msg}")),
                None => self.out.line(&msg),
            }
            let p = self.pos;
            self.record(MetricPoint::Train {
                epoch: p.epoch,
                batch: p.batch,
                step: p.step,
                loss: mean,
                accuracy: acc,
                samples_per_s: rate,
            })?;
        }
        interval.restart();
        Ok(())
    }

    /// Ctrl-C (or `--stop-after-steps`): writes the checkpoint and returns the error that ends
    /// the run, saying where to resume from.
    fn stop_interrupted(&mut self) -> Error {
        self.out.end_epoch();
        let path = super::interrupted_path(self.args);
        if let Err(e) = self.save(self.pos, &path) {
            return e;
        }
        Error::Stopped(format!(
            "training interrupted after step {} (epoch {}, batch {}/{}); checkpoint written to {}; resume with --load-model {}",
            self.pos.step,
            self.pos.epoch + 1,
            self.pos.batch,
            self.schedule.batches,
            path.display(),
            path.display()
        ))
    }

    /// An evaluation, logged, then the checkpoint (`--save-model`).
    fn test_and_save(&mut self, at_end: bool) -> Result<()> {
        let paused = Instant::now();
        let ev = self.evaluate()?;
        let p = self.pos;
        self.record(MetricPoint::Test {
            epoch: p.epoch,
            batch: p.batch,
            step: p.step,
            eval: ev,
            best_auc: p.best_auc,
        })?;
        self.last_eval = Some((ev, p.step));
        if let Some(path) = &self.args.save_model {
            // Saved where the position is consistent: at the end of an epoch, the next.
            let mut at = p;
            if at_end {
                at.epoch += 1;
                at.batch = 0;
            }
            self.save(at, path)?;
        }
        self.counters.not_training += paused.elapsed().as_secs_f64();
        Ok(())
    }

    /// Evaluates the model on the whole test set; updates the best AUC and prints the line.
    pub(super) fn evaluate(&mut self) -> Result<Evaluation> {
        // Steps still queued on the GPU are training time, not evaluation time.
        self.model.gpu().wait()?;
        let t = Instant::now();
        let eval_batch = self.schedule.eval_batch;
        let mut labels = Vec::with_capacity(self.data.test_samples() as usize);
        let mut probs = Vec::with_capacity(self.data.test_samples() as usize);
        for b in self.data.test_batches(eval_batch)? {
            let b = b?;
            probs.extend(
                self.model
                    .predict_padded(&DlrmBatch::from(&b), eval_batch)?,
            );
            labels.extend_from_slice(&b.labels);
        }
        let ev = evaluate(&labels, &probs)?;
        self.counters.eval_seconds += t.elapsed().as_secs_f64();
        self.counters.eval_samples += labels.len() as u64;
        let pos = &mut self.pos;
        if pos.best_auc.is_nan() || ev.roc_auc > pos.best_auc {
            pos.best_auc = ev.roc_auc;
        }
        self.out.line(&format!(
            "Testing at {}/{} of epoch {}: loss {:.6}, accuracy {:.3} %, auc {:.4}, best auc {:.4}",
            pos.batch,
            self.schedule.batches,
            pos.epoch + 1,
            ev.log_loss,
            100.0 * ev.accuracy,
            ev.roc_auc,
            pos.best_auc
        ));
        Ok(ev)
    }

    /// Writes the model at position `pos` to `path` (atomically).
    pub(super) fn save(&self, pos: Position, path: &Path) -> Result<()> {
        let meta = CheckpointMeta {
            config: self.config.clone(),
            position: pos,
            batch_size: self.args.mini_batch_size,
            data: self.data.fingerprint(),
            seed: self.args.seed,
        };
        checkpoint::save(path, &self.model, &meta)
    }

    /// Appends a metric point to the metrics file and to the run's points.
    fn record(&mut self, p: MetricPoint) -> Result<()> {
        if let Some(l) = &mut self.log {
            l.append(&p)?;
        }
        self.points.push(p);
        Ok(())
    }
}
