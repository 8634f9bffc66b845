//! Scoring with a trained model (`ttrec predict`, `ttrec train --inference-only`, apps): a
//! checkpoint carries the model and its [`Encoding`] (dictionaries or their rule,
//! `max_ind_range`, the transforms), so raw Criteo lines of any file, or the rows of any data
//! store, become click probabilities in input order.
//! - [`load_model`] / [`Scorer::load`]: the model and its encoding from a checkpoint.
//! - [`Scorer::score_files`], [`Scorer::score_store`]: probabilities (and, labels being there,
//!   AUC, log loss and accuracy).
//! - [`save_model`]: an app's trained model as a checkpoint that scores.
//! - `output`: the scores as TSV (one per line) or `.npy`.
//!
//! A malformed line has no probability: its place holds NaN, so line i of the output is line i
//! of the input. Files without labels (39 fields a line, as Kaggle's `test.txt`) score too,
//! without metrics. Serving inside an app's own encoder is [`Dlrm::score_into`].

mod output;
mod unlabeled;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use output::write_scores;

use crate::data::{Batch, Encoder, Encoding, PreprocessedDataset, RawSample, NUM_SPARSE};
use crate::dlrm::{Dlrm, DlrmBatch, DlrmOptions};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::metrics::{evaluate, Evaluation};
use crate::train::checkpoint::{self, CheckpointMeta, Position};

/// A checkpoint's model on `gpu` and its encoding. A checkpoint without scoring data (format
/// v2, written before ttrec carried it) is an error that says how to get one.
pub fn load_model(gpu: &Gpu, path: &Path, mut options: DlrmOptions) -> Result<(Dlrm, Encoding)> {
    let ck = checkpoint::load(path)?;
    // The model's TT cores are stored as the checkpoint's were (f16 files give f16 models).
    options.tt_precision = ck.meta.tt_precision;
    let encoding = ck.meta.encoding.clone().ok_or_else(|| {
        Error::file(
            path,
            "this checkpoint (format ttrec-train-checkpoint-v2) carries no scoring data (dictionaries, max_ind_range): resume it with `ttrec train --load-model` for one step and save it again (--save-model) to score with it",
        )
    })?;
    let sizes = encoding.table_sizes();
    let config = &ck.meta.config;
    if config.tables.len() != NUM_SPARSE {
        return Err(Error::file(
            path,
            format!(
                "the model has {} tables; scoring Criteo data needs {NUM_SPARSE}",
                config.tables.len()
            ),
        ));
    }
    for (t, table) in config.tables.iter().enumerate() {
        if sizes[t] > table.rows {
            return Err(Error::file(
                path,
                format!(
                    "dictionary C{} maps to {} rows, its table has {}",
                    t + 1,
                    sizes[t],
                    table.rows
                ),
            ));
        }
    }
    let mut model = Dlrm::zeroed(gpu, config.clone(), options)?;
    ck.restore(&mut model, path)?;
    Ok((model, encoding))
}

/// Writes `model` with `encoding` as a checkpoint that [`load_model`] and `ttrec predict` read
/// (and `ttrec train --load-model` resumes, position: its steps, in the first epoch).
pub fn save_model(path: &Path, model: &Dlrm, encoding: &Encoding) -> Result<()> {
    let steps = model.steps();
    let meta = CheckpointMeta {
        config: model.config().clone(),
        position: Position {
            epoch: 0,
            batch: steps,
            step: steps,
            best_auc: f64::NAN,
        },
        batch_size: 0,
        ranks: 1,
        data: "saved by an application".into(),
        seed: model.config().seed,
        encoding: Some(encoding.clone()),
        tt_precision: model.options().tt_precision,
    };
    checkpoint::save(path, model, &meta)
}

/// What scoring produced.
#[derive(Clone, Debug)]
pub struct Scores {
    /// One per input line (or store row), in input order; NaN for a malformed line.
    pub probabilities: Vec<f32>,
    /// The labels of the scored lines (NaN for a malformed line and an unlabelled file's).
    pub labels: Vec<f32>,
    /// AUC, log loss and accuracy over the scored lines with labels (`None` without any).
    pub evaluation: Option<Evaluation>,
    /// Lines skipped as malformed.
    pub malformed: u64,
    /// Per column, values the training data never held (scored as missing ones).
    pub unseen: [u64; NUM_SPARSE],
    pub seconds: f64,
}

impl Scores {
    /// Lines (or rows) scored.
    pub fn scored(&self) -> u64 {
        self.probabilities.len() as u64 - self.malformed
    }
}

/// Called with the samples scored so far.
pub type ScoreProgress<'a> = &'a mut dyn FnMut(u64);

/// A trained model with what maps raw data to its inputs.
#[derive(Debug)]
pub struct Scorer {
    model: Dlrm,
    encoding: Encoding,
    encoder: Encoder,
    /// Full batches scored in this call (after one, a short batch is padded to the same plan).
    full_batches: u64,
    /// Seconds spent building plans during this call (not counted as scoring time).
    setup_seconds: f64,
}

/// Samples gathered for one batch and where their probabilities go.
struct Pending {
    batch: Batch,
    slots: Vec<usize>,
}

impl Scorer {
    /// The model of the checkpoint at `path` on `gpu` (see [`load_model`]).
    pub fn load(gpu: &Gpu, path: &Path, options: DlrmOptions) -> Result<Self> {
        let (model, encoding) = load_model(gpu, path, options)?;
        Self::new(model, encoding)
    }

    /// A scorer of `model` with the `encoding` of its training data.
    pub fn new(model: Dlrm, encoding: Encoding) -> Result<Self> {
        let encoder = encoding.encoder()?;
        Ok(Scorer {
            model,
            encoding,
            encoder,
            full_batches: 0,
            setup_seconds: 0.0,
        })
    }

    pub fn model(&mut self) -> &mut Dlrm {
        &mut self.model
    }

    pub fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    /// Scores `pending` into `out`: with the plan of `batch` samples (a last short batch padded
    /// to it), or, when all the data is one short batch, with a plan of its own size.
    fn flush(&mut self, p: &mut Pending, batch: usize, out: &mut Scores) -> Result<()> {
        if p.batch.is_empty() {
            return Ok(());
        }
        let plan = if self.full_batches > 0 {
            batch
        } else {
            // The first plan's pipelines are compiled off the clock (throughput is scoring's).
            let t = Instant::now();
            self.model.prepare_eval(p.batch.len())?;
            self.setup_seconds += t.elapsed().as_secs_f64();
            p.batch.len()
        };
        if p.batch.len() == batch {
            self.full_batches += 1;
        }
        let probs = self
            .model
            .predict_padded(&DlrmBatch::from(&p.batch), plan)?;
        for ((&slot, prob), label) in p.slots.iter().zip(probs).zip(&p.batch.labels) {
            out.probabilities[slot] = prob;
            out.labels[slot] = *label;
        }
        p.batch = Batch::with_capacity(batch);
        p.slots.clear();
        Ok(())
    }

    /// Scores every line of `files` (raw Criteo, plain or gzip; read in order) in batches of
    /// `batch`; `progress` hears the lines read so far.
    pub fn score_files(
        &mut self,
        files: &[PathBuf],
        batch: usize,
        mut progress: Option<ScoreProgress>,
    ) -> Result<Scores> {
        let start = self.begin(batch, None)?;
        let mut out = empty_scores();
        let mut p = Pending {
            batch: Batch::with_capacity(batch),
            slots: Vec::with_capacity(batch),
        };
        let mut unlabelled = Vec::new();
        for file in files {
            let (mut reader, labelled) = unlabeled::open(file)?;
            // Output slots of this file's lines: line n (1-based) is base + n - 1.
            let base = out.probabilities.len();
            while let Some(s) = reader.next_sample()? {
                self.push_raw(&s, base, &mut p, &mut out);
                if p.batch.len() == batch {
                    self.flush(&mut p, batch, &mut out)?;
                    if let Some(f) = progress.as_mut() {
                        f(out.probabilities.len() as u64);
                    }
                }
            }
            // Malformed lines at the end of the file.
            out.grow_to(base + reader.stats().lines as usize);
            if !labelled {
                unlabelled.push(base..out.probabilities.len());
            }
        }
        self.flush(&mut p, batch, &mut out)?;
        for r in unlabelled {
            out.labels[r].fill(f32::NAN);
        }
        self.finish(out, start)
    }

    /// Queues raw sample `s` of a file whose first line goes to output slot `base`.
    fn push_raw(&mut self, s: &RawSample, base: usize, p: &mut Pending, out: &mut Scores) {
        let slot = base + s.line as usize - 1;
        out.grow_to(slot);
        out.grow_to(slot + 1);
        let (label, dense, ids) = self.encoder.encode(s);
        p.batch.push(label, &dense, &ids);
        p.slots.push(slot);
    }

    /// Scores the rows `rows` of the data store `data`, in order, in batches of `batch`. The
    /// store's ids are mapped through its own dictionaries to the model's (nothing to map when
    /// they are the model's); a store built with another `max_ind_range` is an error.
    pub fn score_store(
        &mut self,
        data: &PreprocessedDataset,
        rows: Range<u64>,
        batch: usize,
        mut progress: Option<ScoreProgress>,
    ) -> Result<Scores> {
        let n = rows.end.saturating_sub(rows.start) as usize;
        let start = self.begin(batch, Some(n))?;
        self.encoder.check_store_range(data.max_ind_range())?;
        let same_ids = match &self.encoding.categories {
            crate::data::Categories::Dictionary(v) => {
                data.max_ind_range() == self.encoding.max_ind_range
                    && (0..NUM_SPARSE).all(|c| v[c] == data.dictionary_values(c))
            }
            crate::data::Categories::Modulo(_) => false,
        };
        let all = data.rows();
        let mut out = empty_scores();
        out.probabilities = vec![f32::NAN; n];
        out.labels = vec![f32::NAN; n];
        let mut p = Pending {
            batch: Batch::with_capacity(batch),
            slots: Vec::with_capacity(batch),
        };
        for (slot, i) in rows.enumerate() {
            let r = all.get(i as usize).ok_or_else(|| {
                Error::input(
                    None,
                    format!(
                        "row {i} out of range: the data store has {} rows",
                        all.len()
                    ),
                )
            })?;
            let ids = if same_ids {
                r.sparse
            } else {
                std::array::from_fn(|c| {
                    let value = data.dictionary_values(c)[r.sparse[c] as usize];
                    self.encoder.stored_id(c, value)
                })
            };
            p.batch.push(r.label, &r.dense, &ids);
            p.slots.push(slot);
            if p.batch.len() == batch {
                self.flush(&mut p, batch, &mut out)?;
                if let Some(f) = progress.as_mut() {
                    f(slot as u64 + 1);
                }
            }
        }
        self.flush(&mut p, batch, &mut out)?;
        self.finish(out, start)
    }

    /// Checks `batch` and, knowing the number of samples `n`, builds the plan before the clock
    /// starts.
    fn begin(&mut self, batch: usize, n: Option<usize>) -> Result<Instant> {
        if batch == 0 {
            return Err(Error::input(None, "the batch size must be at least 1"));
        }
        self.full_batches = 0;
        self.setup_seconds = 0.0;
        self.encoder.reset_unseen();
        if let Some(n) = n.filter(|&n| n > 0) {
            self.model.prepare_eval(batch.min(n))?;
        }
        Ok(Instant::now())
    }

    /// The metrics over the scored lines, the unseen counts and the time.
    fn finish(&mut self, mut out: Scores, start: Instant) -> Result<Scores> {
        let (labels, probs): (Vec<f32>, Vec<f32>) = out
            .labels
            .iter()
            .zip(&out.probabilities)
            .filter(|(l, p)| !p.is_nan() && !l.is_nan())
            .map(|(l, p)| (*l, *p))
            .unzip();
        out.malformed = out.probabilities.iter().filter(|p| p.is_nan()).count() as u64;
        if !probs.is_empty() {
            out.evaluation = Some(evaluate(&labels, &probs)?);
        }
        out.unseen = self.encoder.unseen();
        out.seconds = (start.elapsed().as_secs_f64() - self.setup_seconds).max(0.0);
        Ok(out)
    }
}

fn empty_scores() -> Scores {
    Scores {
        probabilities: Vec::new(),
        labels: Vec::new(),
        evaluation: None,
        malformed: 0,
        unseen: [0; NUM_SPARSE],
        seconds: 0.0,
    }
}

impl Scores {
    /// Slots up to `len` exist (NaN until scored: malformed lines stay NaN).
    fn grow_to(&mut self, len: usize) {
        if self.probabilities.len() < len {
            self.probabilities.resize(len, f32::NAN);
            self.labels.resize(len, f32::NAN);
        }
    }
}
