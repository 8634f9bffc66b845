//! dlrm's preprocessing of Criteo (as its `dlrm_data_pytorch.py` does it): missing -> 0, dense
//! `log(max(x, 0) + 1)`, categorical `% max_ind_range` then per-column dense ids, the 7-day split.

use std::ops::Range;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::hash::IntHashMap;
use super::{RawSample, NUM_DENSE, NUM_SPARSE};
use crate::{Error, Result};

/// How the rows are cut into train / test / validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SplitMode {
    /// dlrm's recipe: `days` equal consecutive chunks (the first ones one row longer); train = all
    /// but the last day; the last day's first half (rounded up) is test, the rest validation.
    Days(u32),
    /// The last `fraction` of the rows (rounded to the nearest row) is the evaluation set, split in
    /// half like the last day above; the rest is train.
    LastFraction(f64),
}

impl Default for SplitMode {
    fn default() -> Self {
        SplitMode::Days(7)
    }
}

/// One of the three parts of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
    Val,
}

/// Row ranges of the three splits; they are consecutive and cover all rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRanges {
    pub train: Range<u64>,
    pub test: Range<u64>,
    pub val: Range<u64>,
}

impl SplitRanges {
    /// The range of `split`.
    pub fn get(&self, split: Split) -> Range<u64> {
        match split {
            Split::Train => self.train.clone(),
            Split::Test => self.test.clone(),
            Split::Val => self.val.clone(),
        }
    }
}

/// The split of `rows` rows under `mode`. Kaggle's 45,840,617 lines give 39,291,958 / 3,274,330 /
/// 3,274,329, as in dlrm.
pub fn split_ranges(rows: u64, mode: SplitMode) -> Result<SplitRanges> {
    let eval = match mode {
        SplitMode::Days(days) => {
            if days < 2 {
                return Err(Error::input(
                    None,
                    format!("the day split needs at least 2 days, got {days}"),
                ));
            }
            let days = days as u64;
            // Days 0..rows%days are one row longer, so the last day has the floor.
            rows / days
        }
        SplitMode::LastFraction(f) => {
            if !(f.is_finite() && (0.0..=1.0).contains(&f)) {
                return Err(Error::input(
                    None,
                    format!("evaluation fraction must be in [0, 1], got {f}"),
                ));
            }
            ((rows as f64 * f).round() as u64).min(rows)
        }
    };
    let train_end = rows - eval;
    let test_end = train_end + eval.div_ceil(2);
    Ok(SplitRanges {
        train: 0..train_end,
        test: train_end..test_end,
        val: test_end..rows,
    })
}

/// Options of the preprocessing; `max_ind_range` changes the store's contents, the others only how
/// the stored rows are served.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    /// Categorical values are taken `% max_ind_range` before the dictionary (Terabyte: 10M or 40M).
    pub max_ind_range: Option<u64>,
    /// How rows are split.
    pub split: SplitMode,
    /// Seed of the shuffle of training rows; `None` keeps file order.
    pub shuffle_seed: Option<u64>,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig {
            max_ind_range: None,
            split: SplitMode::default(),
            shuffle_seed: Some(0),
        }
    }
}

/// dlrm's dense transform: missing -> 0, negatives clipped to 0, then `ln(x + 1)` (in f64, stored
/// as f32).
#[inline]
pub fn dense_transform(x: Option<i64>) -> f32 {
    match x {
        Some(v) if v > 0 => (v as f64).ln_1p() as f32,
        _ => 0.0,
    }
}

/// dlrm's categorical value before the dictionary: missing -> 0, then `% max_ind_range` if given.
#[inline]
pub fn categorical_value(x: Option<u32>, max_ind_range: Option<u64>) -> u32 {
    let v = x.unwrap_or(0);
    match max_ind_range {
        Some(r) if r > 0 => (v as u64 % r) as u32,
        _ => v,
    }
}

/// Per-column maps from categorical value to dense id `0..count`, ids in order of first
/// appearance. (dlrm numbers them in sorted order; any numbering is a relabelling of the same
/// table, and first appearance lets one streaming pass write final ids.)
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    maps: Vec<IntHashMap<u32, u32>>,
    values: Vec<Vec<u32>>,
}

impl Dictionary {
    /// An empty dictionary with 26 columns.
    pub fn new() -> Self {
        Dictionary {
            maps: vec![IntHashMap::default(); NUM_SPARSE],
            values: vec![Vec::new(); NUM_SPARSE],
        }
    }

    /// Rebuilds a dictionary from its per-column values in id order (as kept in the data store).
    pub fn from_values(values: Vec<Vec<u32>>) -> Result<Self> {
        if values.len() != NUM_SPARSE {
            return Err(Error::input(
                None,
                format!(
                    "dictionary needs {NUM_SPARSE} columns, got {}",
                    values.len()
                ),
            ));
        }
        let mut maps = Vec::with_capacity(NUM_SPARSE);
        for (c, col) in values.iter().enumerate() {
            let mut m = IntHashMap::default();
            m.reserve(col.len());
            for (id, &v) in col.iter().enumerate() {
                if m.insert(v, id as u32).is_some() {
                    return Err(Error::input(
                        None,
                        format!("dictionary column C{} has value {v:#x} twice", c + 1),
                    ));
                }
            }
            maps.push(m);
        }
        Ok(Dictionary { maps, values })
    }

    /// The id of `value` in `column` (0-based), adding it when new.
    #[inline]
    pub fn id_or_insert(&mut self, column: usize, value: u32) -> u32 {
        let next = self.values[column].len() as u32;
        let id = *self.maps[column].entry(value).or_insert(next);
        if id == next {
            self.values[column].push(value);
        }
        id
    }

    /// The id of `value` in `column`, if seen.
    pub fn id(&self, column: usize, value: u32) -> Option<u32> {
        self.maps[column].get(&value).copied()
    }

    /// Distinct values per column: the embedding table sizes.
    pub fn table_sizes(&self) -> [u64; NUM_SPARSE] {
        std::array::from_fn(|c| self.values[c].len() as u64)
    }

    /// Values of `column` in id order.
    pub fn values(&self, column: usize) -> &[u32] {
        &self.values[column]
    }

    /// Preprocesses one raw sample, growing the dictionary: (label, dense, ids).
    #[inline]
    pub fn preprocess(
        &mut self,
        sample: &RawSample,
        max_ind_range: Option<u64>,
    ) -> (f32, [f32; NUM_DENSE], [u32; NUM_SPARSE]) {
        let dense = sample.dense.map(dense_transform);
        let mut ids = [0u32; NUM_SPARSE];
        for (c, id) in ids.iter_mut().enumerate() {
            *id = self.id_or_insert(c, categorical_value(sample.sparse[c], max_ind_range));
        }
        (sample.label as f32, dense, ids)
    }
}

/// Row indices of `range`, shuffled with `seed` when given (ChaCha8, so the order is the same on
/// every platform).
pub fn row_order(range: Range<u64>, seed: Option<u64>) -> Vec<u64> {
    let mut rows: Vec<u64> = range.collect();
    if let Some(seed) = seed {
        rows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    }
    rows
}
