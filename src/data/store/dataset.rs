//! [`PreprocessedDataset`]: a store mapped into memory, its rows, dictionaries and splits, and
//! the batches served from it on a background thread.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::build::build;
use super::format::{Header, StoredRow, HEADER_LEN, ROW_BYTES};
use super::{default_store_path, map_if_valid, map_standalone, Mapped, Mismatch, StoreState};
use crate::data::batches::{Batch, BatchLoader};
use crate::data::hash::mix64;
use crate::data::preprocess::{
    row_order, split_ranges, Dictionary, PreprocessConfig, Split, SplitRanges,
};
use crate::data::reader::ReadStats;
use crate::data::sources::BuildProgress;
use crate::data::NUM_SPARSE;
use crate::{Error, Result};

struct Inner {
    mmap: Mmap,
    header: Header,
    store_path: PathBuf,
    config: PreprocessConfig,
    splits: SplitRanges,
}

/// A preprocessed Criteo file, memory-mapped from its store. Cheap to clone (shared mapping), so
/// batch threads can hold it.
#[derive(Clone)]
pub struct PreprocessedDataset {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PreprocessedDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreprocessedDataset")
            .field("store", &self.inner.store_path)
            .field("rows", &self.inner.header.rows)
            .field("splits", &self.inner.splits)
            .finish()
    }
}

/// How [`PreprocessedDataset::batches`] serves a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOptions {
    pub batch_size: usize,
    /// Batches kept ready ahead of the consumer.
    pub prefetch: usize,
    /// Drop a last batch smaller than `batch_size`.
    pub drop_last: bool,
    /// Mixed into the shuffle seed, so each epoch sees the training rows in another order.
    pub epoch: u64,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            batch_size: 128,
            prefetch: 4,
            drop_last: false,
            epoch: 0,
        }
    }
}

impl PreprocessedDataset {
    /// Maps `<source>.ttcache`, building (or rebuilding) it first unless it is valid. Returns the
    /// state the store was found in ([`StoreState::Valid`] = reused).
    pub fn open_or_build(
        source: impl AsRef<Path>,
        config: &PreprocessConfig,
    ) -> Result<(Self, StoreState)> {
        let source = source.as_ref();
        Self::open_or_build_at(source, default_store_path(source), config)
    }

    /// Like [`open_or_build`](Self::open_or_build) with the store at `store`.
    pub fn open_or_build_at(
        source: impl AsRef<Path>,
        store: impl AsRef<Path>,
        config: &PreprocessConfig,
    ) -> Result<(Self, StoreState)> {
        Self::open_or_build_sources(&[source.as_ref().to_path_buf()], store, config, None)
    }

    /// The store at `store` of several files read in order as one data set (dlrm's day files),
    /// built (with `progress` calls) unless valid.
    pub fn open_or_build_sources(
        sources: &[PathBuf],
        store: impl AsRef<Path>,
        config: &PreprocessConfig,
        progress: Option<BuildProgress>,
    ) -> Result<(Self, StoreState)> {
        Self::open_or_build_with(sources, store, config, Mismatch::Rebuild, progress)
    }

    /// [`open_or_build_sources`](Self::open_or_build_sources), with a store that is there but
    /// not valid (other sources, other settings, another format, damaged) treated as `mismatch`
    /// says: rebuilt, or an error naming the difference and the flag that rebuilds.
    pub fn open_or_build_with(
        sources: &[PathBuf],
        store: impl AsRef<Path>,
        config: &PreprocessConfig,
        mismatch: Mismatch,
        progress: Option<BuildProgress>,
    ) -> Result<(Self, StoreState)> {
        let store = store.as_ref();
        if sources.is_empty() {
            return Err(Error::file(store, "a store needs at least one source file"));
        }
        let found = match map_if_valid(sources, store, config)? {
            Ok(mapped) => {
                log::debug!("reusing the data store {}", store.display());
                return Ok((Self::from_mapped(mapped, store, config)?, StoreState::Valid));
            }
            Err(state) => state,
        };
        if let (Mismatch::Refuse { flag }, false) = (mismatch, found == StoreState::Missing) {
            return Err(Error::file(
                store,
                format!(
                    "the data store there was not built from these sources with these settings ({found}); it is not overwritten silently: pass {flag} to rebuild it, or name another store"
                ),
            ));
        }
        log::info!(
            "data store {} is {found}; building it from {} file(s)",
            store.display(),
            sources.len()
        );
        let (data, _) = Self::build_sources(sources, store, config, progress)?;
        Ok((data, found))
    }

    /// Builds the store at `store` from `sources` whatever is there now (`ttrec data
    /// preprocess --force`), then maps it; returns it with what the read saw (lines, malformed
    /// lines by kind and their first examples).
    pub fn build_sources(
        sources: &[PathBuf],
        store: impl AsRef<Path>,
        config: &PreprocessConfig,
        progress: Option<BuildProgress>,
    ) -> Result<(Self, ReadStats)> {
        let store = store.as_ref();
        if sources.is_empty() {
            return Err(Error::file(store, "a store needs at least one source file"));
        }
        let start = std::time::Instant::now();
        let stats = build(sources, store, config, progress)?;
        match map_if_valid(sources, store, config)? {
            Ok(mapped) => {
                let data = Self::from_mapped(mapped, store, config)?;
                log::info!(
                    "data store {} built: {} rows from {} lines in {:.1} s",
                    store.display(),
                    data.len(),
                    stats.lines,
                    start.elapsed().as_secs_f64()
                );
                Ok((data, stats))
            }
            Err(state) => Err(Error::file(
                store,
                format!(
                    "store just built is not usable ({state}); did the source change meanwhile?"
                ),
            )),
        }
    }

    /// Maps an existing store without ever building one; an error says why it is not valid.
    pub fn open(
        source: impl AsRef<Path>,
        store: impl AsRef<Path>,
        config: &PreprocessConfig,
    ) -> Result<Self> {
        let (source, store) = (source.as_ref(), store.as_ref());
        match map_if_valid(&[source.to_path_buf()], store, config)? {
            Ok(mapped) => Self::from_mapped(mapped, store, config),
            Err(state) => Err(Error::file(store, format!("data store is {state}"))),
        }
    }

    /// Maps the store at `store` on its own, without its sources (`ttrec predict --data
    /// X.ttcache`): verified against its own checksums, all rows in file order as the training
    /// split (no shuffle).
    pub fn open_standalone(store: impl AsRef<Path>) -> Result<Self> {
        let store = store.as_ref();
        let config = PreprocessConfig {
            split: crate::data::SplitMode::LastFraction(0.0),
            shuffle_seed: None,
            ..PreprocessConfig::default()
        };
        let mapped = map_standalone(store)?;
        let config = PreprocessConfig {
            max_ind_range: (mapped.1.max_ind_range > 0).then_some(mapped.1.max_ind_range),
            ..config
        };
        Self::from_mapped(mapped, store, &config)
    }

    fn from_mapped(
        (mmap, header): Mapped,
        store: &Path,
        config: &PreprocessConfig,
    ) -> Result<Self> {
        let splits = split_ranges(header.rows, config.split)?;
        Ok(PreprocessedDataset {
            inner: Arc::new(Inner {
                mmap,
                header,
                store_path: store.to_path_buf(),
                config: config.clone(),
                splits,
            }),
        })
    }

    /// Number of rows (valid samples of the source).
    pub fn len(&self) -> u64 {
        self.inner.header.rows
    }

    /// Never true for a built store (an empty source is an error); here for completeness.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the store lives.
    pub fn store_path(&self) -> &Path {
        &self.inner.store_path
    }

    /// The `max_ind_range` the store was built with (`None`: values kept whole).
    pub fn max_ind_range(&self) -> Option<u64> {
        (self.inner.header.max_ind_range > 0).then_some(self.inner.header.max_ind_range)
    }

    /// Lines of the source, valid or not.
    pub fn source_lines(&self) -> u64 {
        self.inner.header.source_lines
    }

    /// Malformed source lines per kind, indexed like [`crate::data::MalformedKind::ALL`].
    pub fn malformed_counts(&self) -> [u64; 4] {
        self.inner.header.malformed
    }

    /// Embedding table sizes C1..C26 (distinct values per column).
    pub fn table_sizes(&self) -> [u64; NUM_SPARSE] {
        self.inner.header.table_sizes
    }

    /// All rows, in file order.
    pub fn rows(&self) -> &[StoredRow] {
        let end = HEADER_LEN + (self.len() * ROW_BYTES) as usize;
        bytemuck::cast_slice(&self.inner.mmap[HEADER_LEN..end])
    }

    /// Row `i` in file order.
    pub fn row(&self, i: u64) -> Option<&StoredRow> {
        self.rows().get(usize::try_from(i).ok()?)
    }

    /// Categorical values of `column` (0-based) in id order: the dictionary that maps raw values
    /// to the ids in [`StoredRow::sparse`].
    pub fn dictionary_values(&self, column: usize) -> &[u32] {
        let sizes = &self.inner.header.table_sizes;
        let start = HEADER_LEN
            + (self.len() * ROW_BYTES) as usize
            + 4 * sizes[..column].iter().sum::<u64>() as usize;
        bytemuck::cast_slice(&self.inner.mmap[start..start + 4 * sizes[column] as usize])
    }

    /// The dictionary as a lookup structure (to map other data to the same ids).
    pub fn dictionary(&self) -> Result<Dictionary> {
        Dictionary::from_values(
            (0..NUM_SPARSE)
                .map(|c| self.dictionary_values(c).to_vec())
                .collect(),
        )
    }

    /// Row ranges of the three splits.
    pub fn splits(&self) -> &SplitRanges {
        &self.inner.splits
    }

    /// Rows of the training split.
    pub fn train(&self) -> Range<u64> {
        self.inner.splits.train.clone()
    }

    /// Rows of the test split.
    pub fn test(&self) -> Range<u64> {
        self.inner.splits.test.clone()
    }

    /// Rows of the validation split.
    pub fn val(&self) -> Range<u64> {
        self.inner.splits.val.clone()
    }

    /// The rows of `split` in serving order: training rows shuffled (per `epoch`) when the config
    /// has a shuffle seed, evaluation rows in file order.
    pub fn order(&self, split: Split, epoch: u64) -> Vec<u64> {
        let seed = match (split, self.inner.config.shuffle_seed) {
            (Split::Train, Some(seed)) => Some(mix64(seed ^ mix64(epoch))),
            _ => None,
        };
        row_order(self.inner.splits.get(split), seed)
    }

    /// Appends the rows `indices` to `batch`.
    pub fn fill_batch(&self, indices: &[u64], batch: &mut Batch) -> Result<()> {
        let rows = self.rows();
        for &i in indices {
            let r = usize::try_from(i)
                .ok()
                .and_then(|i| rows.get(i))
                .ok_or_else(|| {
                    Error::input(
                        None,
                        format!("row {i} out of range: the data set has {} rows", rows.len()),
                    )
                })?;
            batch.push(r.label, &r.dense, &r.sparse);
        }
        Ok(())
    }

    /// Batches of `split`, gathered on a background thread.
    pub fn batches(&self, split: Split, options: &BatchOptions) -> Result<BatchLoader> {
        if options.batch_size == 0 {
            return Err(Error::input(None, "batch size must be at least 1"));
        }
        let order = self.order(split, options.epoch);
        let bs = options.batch_size;
        let n_batches = if options.drop_last {
            order.len() / bs
        } else {
            order.len().div_ceil(bs)
        };
        let data = self.clone();
        let mut next = 0usize;
        BatchLoader::spawn(options.prefetch, Some(n_batches), move || {
            if next >= n_batches {
                return None;
            }
            let rows = &order[next * bs..((next + 1) * bs).min(order.len())];
            next += 1;
            let mut batch = Batch::with_capacity(rows.len());
            Some(data.fill_batch(rows, &mut batch).map(|()| batch))
        })
    }
}
