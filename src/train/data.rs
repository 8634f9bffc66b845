//! Where a training run's samples come from: the synthetic Criteo-shaped source, or Criteo files
//! through the preprocessed data store. Both serve training batches from any (epoch, batch) position,
//! so a resumed run sees exactly the batches an uninterrupted one would.

use std::ops::Range;
use std::path::PathBuf;

use crate::data::{
    default_store_path_for, expand_sources, Batch, BatchLoader, BuildProgress, Categories,
    Encoding, MalformedKind, Mismatch, PreprocessConfig, PreprocessedDataset, Split, SplitMode,
    StoreState, SyntheticCriteo, NUM_SPARSE,
};
use crate::error::{Error, Result};

/// The samples of a run.
#[allow(clippy::large_enum_variant)] // one value per run
pub enum TrainData {
    Synthetic {
        source: SyntheticCriteo,
        train: Range<u64>,
        test: Range<u64>,
    },
    Criteo {
        dataset: PreprocessedDataset,
        files: Vec<PathBuf>,
        store_state: StoreState,
        /// Evaluation rows (dlrm's test half of the last day, or the whole last fraction).
        test: Range<u64>,
    },
}

impl std::fmt::Debug for TrainData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl TrainData {
    /// The synthetic source: `samples` samples of which the last `test_fraction` are evaluated.
    pub fn synthetic(seed: u64, scale: f64, samples: u64, test_fraction: f64) -> Result<Self> {
        let test = ((samples as f64 * test_fraction).round() as u64).clamp(1, samples - 1);
        Ok(TrainData::Synthetic {
            source: SyntheticCriteo::new(seed, scale)?,
            train: 0..samples - test,
            test: samples - test..samples,
        })
    }

    /// Criteo files (directories expanded) through the data store at `store` (default: next to the
    /// first file), built with `progress` when missing. A store that is there but was built
    /// from other sources or settings is an error naming the difference (see
    /// [`criteo_rebuilding`](Self::criteo_rebuilding)).
    pub fn criteo(
        paths: &[PathBuf],
        store: Option<PathBuf>,
        max_ind_range: Option<u64>,
        test_fraction: Option<f64>,
        seed: u64,
        progress: Option<BuildProgress>,
    ) -> Result<Self> {
        Self::criteo_rebuilding(
            paths,
            store,
            max_ind_range,
            test_fraction,
            seed,
            false,
            progress,
        )
    }

    /// [`criteo`](Self::criteo); with `rebuild` (`--rebuild-data-store`) a store built from
    /// other sources or settings is rebuilt over instead.
    pub fn criteo_rebuilding(
        paths: &[PathBuf],
        store: Option<PathBuf>,
        max_ind_range: Option<u64>,
        test_fraction: Option<f64>,
        seed: u64,
        rebuild: bool,
        progress: Option<BuildProgress>,
    ) -> Result<Self> {
        let files = expand_sources(paths)?;
        let store = match store {
            Some(s) => s,
            None => default_store_path_for(&files)?,
        };
        let config = PreprocessConfig {
            max_ind_range,
            split: match test_fraction {
                Some(f) => SplitMode::LastFraction(f),
                None => SplitMode::Days(7),
            },
            shuffle_seed: Some(seed),
        };
        let mismatch = if rebuild {
            Mismatch::Rebuild
        } else {
            Mismatch::Refuse {
                flag: "--rebuild-data-store",
            }
        };
        let (dataset, store_state) =
            PreprocessedDataset::open_or_build_with(&files, &store, &config, mismatch, progress)?;
        let test = match test_fraction {
            // The whole last fraction (the store's split halves it into test and validation).
            Some(_) => dataset.test().start..dataset.val().end,
            None => dataset.test(),
        };
        if dataset.train().is_empty() || test.is_empty() {
            return Err(Error::input(
                None,
                format!(
                    "{} valid samples are too few to split into training and evaluation sets",
                    dataset.len()
                ),
            ));
        }
        Ok(TrainData::Criteo {
            dataset,
            files,
            store_state,
            test,
        })
    }

    /// Rows of each embedding table.
    pub fn table_sizes(&self) -> [u64; NUM_SPARSE] {
        match self {
            TrainData::Synthetic { source, .. } => *source.table_sizes(),
            TrainData::Criteo { dataset, .. } => {
                // A column with no value at all still needs one row.
                dataset.table_sizes().map(|n| n.max(1))
            }
        }
    }

    pub fn train_samples(&self) -> u64 {
        match self {
            TrainData::Synthetic { train, .. } => train.end - train.start,
            TrainData::Criteo { dataset, .. } => dataset.train().end - dataset.train().start,
        }
    }

    pub fn test_samples(&self) -> u64 {
        match self {
            TrainData::Synthetic { test, .. } | TrainData::Criteo { test, .. } => {
                test.end - test.start
            }
        }
    }

    /// Batches of `batch` samples of training epoch `epoch`, from batch `skip` on, `count`
    /// batches at most.
    pub fn train_batches(
        &self,
        epoch: u64,
        batch: usize,
        skip: usize,
        count: usize,
    ) -> Result<BatchLoader> {
        let rows: Vec<u64> = match self {
            TrainData::Synthetic { train, .. } => train.clone().collect(),
            TrainData::Criteo { dataset, .. } => dataset.order(Split::Train, epoch),
        };
        self.loader(rows, batch, skip, count)
    }

    /// The evaluation rows (of the data store, or of the synthetic source).
    pub fn test_rows(&self) -> Range<u64> {
        match self {
            TrainData::Synthetic { test, .. } | TrainData::Criteo { test, .. } => test.clone(),
        }
    }

    /// Batches of the evaluation samples, in order.
    pub fn test_batches(&self, batch: usize) -> Result<BatchLoader> {
        let rows: Vec<u64> = match self {
            TrainData::Synthetic { test, .. } | TrainData::Criteo { test, .. } => {
                test.clone().collect()
            }
        };
        let count = rows.len().div_ceil(batch);
        self.loader(rows, batch, 0, count)
    }

    fn loader(
        &self,
        rows: Vec<u64>,
        batch: usize,
        skip: usize,
        count: usize,
    ) -> Result<BatchLoader> {
        let total = rows.len().div_ceil(batch);
        let end = total.min(skip + count);
        let mut next = skip.min(end);
        let n = end - next;
        let source = match self {
            TrainData::Synthetic { source, .. } => Ok(source.clone()),
            TrainData::Criteo { dataset, .. } => Err(dataset.clone()),
        };
        BatchLoader::spawn(4, Some(n), move || {
            if next >= end {
                return None;
            }
            let ids = &rows[next * batch..((next + 1) * batch).min(rows.len())];
            next += 1;
            let mut b = Batch::with_capacity(ids.len());
            Some(match &source {
                Ok(synth) => {
                    // Synthetic rows are consecutive: one call fills the batch.
                    synth.fill_batch(ids[0], ids.len(), &mut b);
                    Ok(b)
                }
                Err(ds) => ds.fill_batch(ids, &mut b).map(|()| b),
            })
        })
    }

    /// Whole training batches per epoch (a last partial batch is dropped).
    pub fn batches_per_epoch(&self, batch: usize) -> usize {
        self.train_samples() as usize / batch
    }

    /// One line on where the data comes from.
    pub fn describe(&self) -> String {
        match self {
            TrainData::Synthetic { source, train, test } => format!(
                "synthetic Criteo-shaped samples (seed {}, Kaggle table sizes x {}): {} for training, {} for evaluation",
                source.seed,
                source.scale,
                train.end - train.start,
                test.end - test.start
            ),
            TrainData::Criteo { dataset, files, store_state, test } => format!(
                "{} file(s) ({}{}), store {} ({}): {} samples, {} for training, {} for evaluation",
                files.len(),
                files[0].display(),
                if files.len() > 1 { ", ..." } else { "" },
                dataset.store_path().display(),
                if store_state.is_valid() { "reused".to_string() } else { format!("built: was {store_state}") },
                dataset.len(),
                dataset.train().end - dataset.train().start,
                test.end - test.start
            ),
        }
    }

    /// Lines read and malformed lines skipped, by kind (zeros for the synthetic source).
    pub fn read_report(&self) -> (u64, Vec<(&'static str, u64)>) {
        match self {
            TrainData::Synthetic { train, test, .. } => (
                test.end.max(train.end),
                MalformedKind::ALL.iter().map(|k| (k.name(), 0)).collect(),
            ),
            TrainData::Criteo { dataset, .. } => (
                dataset.source_lines(),
                MalformedKind::ALL
                    .iter()
                    .map(|k| (k.name(), dataset.malformed_counts()[k.index()]))
                    .collect(),
            ),
        }
    }

    /// How raw lines become model inputs for this data (a checkpoint carries it, so the model
    /// scores other files): the store's dictionaries and `max_ind_range`, or for the synthetic
    /// source (whose ids are its values) the values modulo the table sizes.
    pub fn encoding(&self) -> Encoding {
        match self {
            TrainData::Synthetic { source, .. } => Encoding {
                max_ind_range: None,
                categories: Categories::Modulo(*source.table_sizes()),
            },
            TrainData::Criteo { dataset, .. } => Encoding {
                max_ind_range: dataset.max_ind_range(),
                categories: Categories::Dictionary(
                    (0..NUM_SPARSE)
                        .map(|c| dataset.dictionary_values(c).to_vec())
                        .collect(),
                ),
            },
        }
    }

    /// The data store of Criteo data (`None` for the synthetic source).
    pub fn dataset(&self) -> Option<&PreprocessedDataset> {
        match self {
            TrainData::Synthetic { .. } => None,
            TrainData::Criteo { dataset, .. } => Some(dataset),
        }
    }

    /// What identifies the data for a checkpoint: a resumed run must see the same samples.
    pub fn fingerprint(&self) -> String {
        match self {
            TrainData::Synthetic {
                source,
                train,
                test,
            } => format!(
                "synthetic seed {} scale {} train {}..{} test {}..{}",
                source.seed, source.scale, train.start, train.end, test.start, test.end
            ),
            TrainData::Criteo { dataset, test, .. } => format!(
                "criteo {} samples, tables {:?}, train {:?}, test {:?}",
                dataset.len(),
                dataset.table_sizes(),
                dataset.train(),
                test
            ),
        }
    }
}
