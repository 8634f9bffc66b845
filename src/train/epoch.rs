//! The training loop of a run: epochs of steps from the run's position on, the running loss
//! printed (and logged) every `--print-freq` steps, an evaluation every `--test-freq` steps and
//! at the end of each epoch, each followed by a checkpoint, and SIGINT/SIGTERM (or
//! `--stop-after-steps`) ending the run with a checkpoint. Owns the model and every counter the
//! summary reports.
//!
//! A diverged model never passes for a trained one: the steps' statistics (which flag a
//! non-finite loss) are read at every print and before every evaluation, and every checkpoint
//! is checked finite on the host before it is written; either finding stops the run naming the
//! step, the first non-finite tensor and the last checkpoint that is truly finite.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::Batch;
use crate::dist::{self, Collective};
use crate::dlrm::{Dlrm, DlrmBatch, DlrmConfig, StepStats};
use crate::error::{Error, Result};
use crate::metrics::{evaluate, Evaluation};
use crate::signals;

use super::checkpoint::{self, CheckpointMeta, Position};
use super::data::TrainData;
use super::lr::LrPolicy;
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
    /// The learning rate of each step (dlrm's warm-up and decay).
    pub lr: LrPolicy,
    /// Stop once the best evaluation AUC exceeds this (`--mlperf-auc-threshold`).
    pub auc_target: Option<f64>,
    /// Stop once the best evaluation accuracy exceeds this (`--mlperf-acc-threshold`).
    pub acc_target: Option<f64>,
}

/// Samples and seconds of a run's training and evaluation.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Counters {
    pub train_samples: u64,
    pub eval_samples: u64,
    pub eval_seconds: f64,
    /// The loop's seconds spent evaluating and writing checkpoints (not training).
    pub not_training: f64,
    /// Seconds of data-parallel steps spent exchanging gradients (0 in one process).
    pub exchange_seconds: f64,
}

/// Steps between the data-parallel ranks' comparisons of their parameters' hash (also compared
/// at every evaluation).
const HASH_EVERY: u64 = 200;

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
    /// The last checkpoint this run wrote and its step.
    last_saved: Option<(PathBuf, u64)>,
    /// Step statistics read (and checked) before an evaluation, for the next printed interval.
    pending: Vec<StepStats>,
    steps_this_run: u64,
    /// The learning rate the model trains at now.
    lr_now: f32,
    /// Best evaluation accuracy of this run (for `--mlperf-acc-threshold`).
    best_accuracy: f64,
    /// An MLPerf target was reached: training ends after this evaluation.
    pub target_reached: bool,
    /// The data-parallel group this rank trains in (None: one process).
    pub group: Option<&'a dyn Collective>,
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
            last_saved: None,
            pending: Vec::new(),
            steps_this_run: 0,
            lr_now: config.learning_rate,
            best_accuracy: f64::NAN,
            target_reached: false,
            group: None,
        }
    }

    /// Trains every remaining epoch; returns the training seconds (the loop's wall time less
    /// evaluations and checkpoints). A signal meanwhile ends the run after its step.
    pub(super) fn run_epochs(&mut self) -> Result<f64> {
        let _deferred = signals::Deferred::new();
        let loop_start = Instant::now();
        loop {
            if self.pos.batch as usize >= self.schedule.batches {
                // This epoch is done, as far as --num-batches goes: on to the next, if any.
                if self.pos.epoch + 1 >= self.schedule.epochs {
                    break;
                }
                self.pos.epoch += 1;
                self.pos.batch = 0;
                continue;
            }
            if self.pos.epoch >= self.schedule.epochs || self.target_reached {
                break;
            }
            self.train_epoch()?;
        }
        self.model.gpu().wait()?;
        // Data-parallel: a signal after the last step's check stops every rank or none.
        let signalled = match self.group {
            Some(g) => dist::agree_stop(g, false, signals::received())?.1.is_some(),
            None => signals::received().is_some(),
        };
        if signalled {
            return Err(self.stop_interrupted());
        }
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
        // A data-parallel step takes the global batch of P B rows; this rank trains on its part.
        let loader = self.data.train_batches(
            self.pos.epoch,
            bs * self.ranks(),
            self.pos.batch as usize,
            batches - self.pos.batch as usize,
        )?;
        let mut interval = Interval::new();
        for b in loader {
            let b = b?;
            self.set_step_rate()?;
            self.train_step(&b)?;
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
            let stop = signals::received().is_some()
                || self
                    .args
                    .stop_after_steps
                    .is_some_and(|n| self.steps_this_run >= n);
            // Every rank stops after the same step (a signal may reach them steps apart, or
            // only one of them).
            let stop = match self.group {
                Some(g) => dist::agree_stop(g, stop, signals::received())?.0,
                None => stop,
            };
            if self.pos.step.is_multiple_of(HASH_EVERY) {
                self.check_same_parameters()?;
            }
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
                self.test_and_save()?;
                interval.restart();
                if self.target_reached {
                    break;
                }
            }
        }
        self.out.end_epoch();
        Ok(())
    }

    /// The learning rate of the step about to run (number `pos.step + 1`), as dlrm's scheduler
    /// sets it; the model's rate changes only when it does.
    fn set_step_rate(&mut self) -> Result<()> {
        let lr = self.schedule.lr.rate(self.pos.step + 1) as f32;
        if lr != self.lr_now {
            self.model.set_learning_rate(lr)?;
            self.lr_now = lr;
        }
        Ok(())
    }

    /// After an evaluation: whether a `--mlperf-*-threshold` target is now exceeded (dlrm's
    /// test: the best value so far, strictly above the target); prints dlrm's line when so.
    fn check_targets(&mut self, ev: &Evaluation) {
        if self.best_accuracy.is_nan() || ev.accuracy > self.best_accuracy {
            self.best_accuracy = ev.accuracy;
        }
        let hits = [
            ("auc", self.schedule.auc_target, self.pos.best_auc),
            ("accuracy", self.schedule.acc_target, self.best_accuracy),
        ];
        for (what, target, best) in hits {
            if let Some(t) = target.filter(|&t| best > t) {
                self.out.line(&format!(
                    "MLPerf testing {what} threshold {t} reached (best {best:.6}), stop training"
                ));
                self.target_reached = true;
                return;
            }
        }
    }

    /// Reads the steps' statistics (waits for the GPU), stops on a non-finite one, and prints
    /// and logs the interval's mean loss, accuracy and speed.
    fn print_interval(&mut self, interval: &mut Interval) -> Result<()> {
        self.read_stats()?;
        let stats = std::mem::take(&mut self.pending);
        let n: usize = stats.iter().map(|s| s.samples).sum();
        let loss = stats.iter().map(|s| s.loss * s.samples as f64).sum::<f64>();
        let correct: usize = stats.iter().map(|s| s.correct).sum();
        let (loss, correct, n) = self.combine_stats(loss, correct, n)?;
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
            // The line above the bar (kept in the terminal's log), its gist on the bar.
            self.out.line(&msg);
            self.out
                .set_message(format!("{rate:.0} samples/s, loss {mean:.5}{cache_msg}"));
            let p = self.pos;
            self.record(MetricPoint::Train {
                epoch: p.epoch,
                batch: p.batch,
                step: p.step,
                loss: mean,
                accuracy: acc,
                samples_per_s: rate,
                lr: self.schedule.lr.rate(p.step),
            })?;
        }
        interval.restart();
        Ok(())
    }

    /// Reads the statistics of the steps run since the last read (waits for the GPU) into
    /// `pending`; a non-finite one stops the run.
    fn read_stats(&mut self) -> Result<()> {
        let stats = self.model.take_stats()?;
        let bad =
            |s: &&StepStats| !s.loss.is_finite() || s.non_finite_logits || s.non_finite_code != 0;
        if let Some(s) = stats.iter().find(bad) {
            let loss = format!("the loss of step {} is {}", s.step + 1, s.loss);
            let what = if s.non_finite_code != 0 {
                let region = self.model.non_finite_region(s.non_finite_code);
                format!(
                    "{loss}, but its update left a NaN or an infinity in {}",
                    region.unwrap_or_else(|| "the parameters".into())
                )
            } else if s.non_finite_logits {
                format!("{loss}, but its logits are NaN or infinite")
            } else {
                loss
            };
            return Err(self.diverged(s.step + 1, &what, None));
        }
        self.pending.extend(stats);
        Ok(())
    }

    /// The error that stops a run whose model went non-finite at `step` (`what`): it names the
    /// first non-finite tensor (`bad`, or found now) and the last truly finite checkpoint.
    fn diverged(&mut self, step: u64, what: &str, bad: Option<String>) -> Error {
        self.out.end_epoch();
        let bad = bad.or_else(|| match checkpoint::parameters(&self.model) {
            Ok(t) => checkpoint::first_non_finite(&t),
            Err(e) => Some(format!("(the parameters cannot be read: {e})")),
        });
        let tensor = match bad {
            Some(b) => format!("the first non-finite tensor is {b}"),
            None => "the parameters are still finite".to_string(),
        };
        Error::Stopped(format!(
            "training stopped at step {step} (epoch {}): the model is non-finite: {what}; {tensor}. {}",
            self.pos.epoch + 1,
            self.kept_note()
        ))
    }

    /// Which checkpoint is the last finite one, for a run that stops on a non-finite model.
    fn kept_note(&self) -> String {
        if let Some((path, step)) = &self.last_saved {
            return format!(
                "The last finite checkpoint is {} (step {step}); nothing later was saved.",
                path.display()
            );
        }
        match &self.args.save_model {
            None => "No finite checkpoint was written (no --save-model).".to_string(),
            // Loading checks the checksum and that every value is finite.
            Some(path) => match checkpoint::load(path) {
                Ok(ck) => format!(
                    "The last finite checkpoint is {} (step {}), written before this run; nothing was saved over it.",
                    path.display(),
                    ck.meta.position.step
                ),
                Err(_) if path.exists() => format!(
                    "No finite checkpoint was written; {} (not a loadable, finite checkpoint) was left as it was.",
                    path.display()
                ),
                Err(_) => format!(
                    "No finite checkpoint was written ({} does not exist).",
                    path.display()
                ),
            },
        }
    }

    /// A signal (or `--stop-after-steps`): writes the checkpoint and returns the error that
    /// ends the run, saying where to resume from.
    fn stop_interrupted(&mut self) -> Error {
        self.out.end_epoch();
        let path = super::interrupted_path(self.args);
        if let Err(e) = self.save(self.pos, &path) {
            return e;
        }
        // The other ranks end only once rank 0 has written the checkpoint.
        if let Some(g) = self.group {
            if let Err(e) = dist::barrier(g) {
                return e;
            }
            dist::mark_stopped_together();
        }
        let by = match signals::received().or_else(dist::agreed_signal) {
            Some(s) => signals::name(s),
            None => "--stop-after-steps",
        };
        Error::Stopped(format!(
            "training interrupted after step {} (epoch {}, batch {}/{}; {by}); checkpoint written to {}; resume with --load-model {}",
            self.pos.step,
            self.pos.epoch + 1,
            self.pos.batch,
            self.schedule.batches,
            path.display(),
            path.display()
        ))
    }

    /// An evaluation, logged, then the checkpoint (`--save-model`).
    fn test_and_save(&mut self) -> Result<()> {
        let paused = Instant::now();
        // Nothing non-finite is evaluated or saved: the steps since the last print first.
        self.read_stats()?;
        let ev = self.evaluate()?;
        self.check_same_parameters()?;
        let p = self.pos;
        self.record(MetricPoint::Test {
            epoch: p.epoch,
            batch: p.batch,
            step: p.step,
            eval: ev,
            best_auc: p.best_auc,
        })?;
        self.last_eval = Some((ev, p.step));
        self.check_targets(&ev);
        if let Some(path) = &self.args.save_model {
            // At the end of an epoch, saved as "batch = batches": a run resumed with a larger
            // --num-batches continues this epoch, one with more --nepochs starts the next.
            self.save(p, path)?;
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
        self.out
            .start_eval(self.data.test_samples().div_ceil(eval_batch as u64));
        let mut sizes = Vec::new();
        // Data-parallel: rank r scores the batches r, r + P, ...; the scores are gathered.
        let (rank, ranks) = self.group.map_or((0, 1), |g| (g.rank(), g.size()));
        for (i, b) in self.data.test_batches(eval_batch)?.enumerate() {
            let b = b?;
            if i % ranks == rank {
                probs.extend(
                    self.model
                        .predict_padded(&DlrmBatch::from(&b), eval_batch)?,
                );
            }
            sizes.push(b.len());
            labels.extend_from_slice(&b.labels);
            self.out.eval_step();
        }
        self.out.end_eval();
        if let Some(g) = self.group {
            probs = gather_scores(g, &probs, &sizes)?;
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

    /// Writes the model at position `pos` to `path` (atomically), after checking every value
    /// finite on the host: a non-finite model stops the run instead.
    pub(super) fn save(&mut self, pos: Position, path: &Path) -> Result<()> {
        if !self.is_lead() {
            return Ok(());
        }
        let tensors = checkpoint::parameters(&self.model)?;
        if let Some(bad) = checkpoint::first_non_finite(&tensors) {
            let what = format!(
                "a parameter is non-finite at the checkpoint of step {}",
                pos.step
            );
            return Err(self.diverged(pos.step, &what, Some(bad)));
        }
        let meta = CheckpointMeta {
            config: self.config.clone(),
            position: pos,
            batch_size: self.args.mini_batch_size,
            ranks: self.group.map_or(1, |g| g.size()),
            data: self.data.fingerprint(),
            seed: self.args.seed,
            encoding: Some(self.data.encoding()),
            tt_precision: self.model.options().tt_precision,
        };
        checkpoint::write(path, &tensors, &meta)?;
        self.last_saved = Some((path.to_path_buf(), pos.step));
        Ok(())
    }

    /// Reads and checks the statistics of steps not read yet (before a final evaluation).
    pub(super) fn check_pending_steps(&mut self) -> Result<()> {
        self.read_stats()
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

/// This rank's part of global batch `b` (`per_rank` samples of every rank, in rank order).
fn rank_part(b: &Batch, rank: usize, per_rank: usize) -> Batch {
    let n = b.len().max(1);
    let (features, tables) = (b.dense.len() / n, b.sparse.len() / n);
    let rows = dist::rank_rows(rank, per_rank);
    Batch {
        dense: b.dense[rows.start * features..rows.end * features].to_vec(),
        sparse: b.sparse[rows.start * tables..rows.end * tables].to_vec(),
        labels: b.labels[rows.clone()].to_vec(),
    }
}

/// Every rank's scores of its evaluation batches (rank r scored batches r, r + P, ...) put
/// back in batch order; `sizes` are the batches' sample counts.
fn gather_scores(g: &dyn Collective, mine: &[f32], sizes: &[usize]) -> Result<Vec<f32>> {
    let parts = g.all_gather_bytes(bytemuck::cast_slice(mine))?;
    let parts: Vec<Vec<f32>> = parts
        .iter()
        .map(|p| {
            p.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                .collect()
        })
        .collect();
    let mut at = vec![0usize; parts.len()];
    let mut all = Vec::with_capacity(sizes.iter().sum());
    for (i, &n) in sizes.iter().enumerate() {
        let r = i % parts.len();
        let part = parts[r].get(at[r]..at[r] + n).ok_or_else(|| {
            Error::input(
                None,
                format!("rank {r} returned too few evaluation scores (batch {i})"),
            )
        })?;
        all.extend_from_slice(part);
        at[r] += n;
    }
    Ok(all)
}

impl Trainer<'_> {
    /// Ranks training together (1 in one process).
    fn ranks(&self) -> usize {
        self.group.map_or(1, |g| g.size())
    }

    /// Whether this process prints and writes (rank 0, or the only process).
    pub(super) fn is_lead(&self) -> bool {
        self.group.is_none_or(|g| g.rank() == 0)
    }

    /// One step on global batch `b`: the whole batch in one process, this rank's part of it in a
    /// data-parallel run.
    fn train_step(&mut self, b: &Batch) -> Result<()> {
        match self.group {
            None => self.model.train_step(&DlrmBatch::from(b)),
            Some(g) => {
                dist::injected_fault(g.rank(), self.pos.step)?;
                let part = rank_part(b, g.rank(), self.schedule.batch_size);
                let secs = self.model.train_step_parallel(&DlrmBatch::from(&part), g)?;
                self.counters.exchange_seconds += secs;
                Ok(())
            }
        }
    }

    /// The interval's (loss sum, correct, samples) over every rank (in rank order).
    fn combine_stats(&self, loss: f64, correct: usize, n: usize) -> Result<(f64, usize, usize)> {
        let Some(g) = self.group else {
            return Ok((loss, correct, n));
        };
        let all = dist::gather_f64(g, &[loss, correct as f64, n as f64])?;
        let (mut l, mut c, mut k) = (0.0, 0.0, 0.0);
        for r in all.chunks_exact(3) {
            l += r[0];
            c += r[1];
            k += r[2];
        }
        Ok((l, c as usize, k as usize))
    }

    /// Data-parallel: stops the run, naming the step and the ranks, when a rank's parameters
    /// differ from rank 0's (their hashes compared).
    pub(super) fn check_same_parameters(&mut self) -> Result<u64> {
        let Some(g) = self.group else {
            return Ok(0);
        };
        let tensors = checkpoint::parameters(&self.model)?;
        let hash = dist::hash_tensors(tensors.iter().map(|t| &t.2[..]));
        let differ = dist::differing_ranks(g, hash)?;
        if differ.is_empty() {
            return Ok(hash);
        }
        Err(Error::Stopped(format!(
            "training stopped at step {}: the parameters of rank(s) {differ:?} differ from rank 0's (the data-parallel ranks diverged)",
            self.pos.step
        )))
    }
}
