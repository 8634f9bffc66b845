//! Criteo data: streaming reader, dlrm preprocessing, binary data store, batches, synthetic source.
//!
//! The pieces a DLRM training loop needs, none of them touching the GPU:
//! - [`CriteoReader`] streams the raw Kaggle/Terabyte layout (plain or gzip) in bounded memory and
//!   skips malformed lines, counting them per [`MalformedKind`].
//! - [`Dictionary`] and the functions of [`preprocess`] do dlrm's preprocessing (missing -> 0,
//!   `log(max(x, 0) + 1)`, `% max_ind_range`, per-column dense ids, the 7-day split).
//! - [`sources`] finds the files of a data set (directories of day files) and reads them as one.
//! - [`store`] holds the data store: the binary file written on the first pass over the sources
//!   and memory-mapped as a [`PreprocessedDataset`]; later runs skip parsing. Stale or corrupt
//!   stores are rebuilt, never used.
//! - [`Encoding`] is what a trained model needs to score new raw lines (its dictionaries or
//!   their rule, `max_ind_range`, the transforms); checkpoints carry it.
//! - [`BatchLoader`] produces [`Batch`]es on a background thread so reading overlaps training.
//! - [`SyntheticCriteo`] generates Criteo-shaped batches on the fly when there is no data set.

pub mod batches;
pub mod encoding;
mod hash;
pub mod inspect;
pub mod preprocess;
pub mod reader;
pub mod sources;
pub mod store;
pub mod synth;

pub use batches::{Batch, BatchLoader};
pub use encoding::{Categories, Encoder, Encoding};
pub use inspect::{inspect_file, inspect_file_with_progress, FileReport};
pub use preprocess::{
    categorical_value, dense_transform, row_order, split_ranges, Dictionary, PreprocessConfig,
    Split, SplitMode, SplitRanges,
};
pub use reader::{parse_line, CriteoReader, Malformed, MalformedKind, RawSample, ReadStats};
pub use sources::{expand_sources, BuildProgress};
pub use store::{
    check_store, check_store_sources, default_store_path, default_store_path_for, is_store_file,
    BatchOptions, Mismatch, PreprocessedDataset, StoreState, StoredRow,
};
pub use synth::{SyntheticCriteo, SyntheticSample};

/// Dense (integer) features per sample: I1..I13.
pub const NUM_DENSE: usize = 13;
/// Categorical features per sample: C1..C26.
pub const NUM_SPARSE: usize = 26;
/// Tab-separated fields per raw line: label, I1..I13, C1..C26.
pub const NUM_FIELDS: usize = 1 + NUM_DENSE + NUM_SPARSE;

/// Table sizes of C1..C26 after dlrm's preprocessing of Criteo Kaggle (no `max_ind_range`).
pub const KAGGLE_TABLE_SIZES: [u64; NUM_SPARSE] = [
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27, 14992,
    5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
];

/// Table sizes of C1..C26 for Criteo Terabyte with `max_ind_range` = 10M.
pub const TERABYTE_TABLE_SIZES: [u64; NUM_SPARSE] = [
    9980333, 36084, 17217, 7378, 20134, 3, 7112, 1442, 61, 9758201, 1333352, 313829, 10, 2208,
    11156, 122, 4, 970, 14, 9994222, 7267859, 9946608, 415421, 12420, 101, 36,
];

/// Kaggle's table sizes scaled by `scale` (rounded up, at least 1, at most `u32::MAX` so ids fit
/// in `u32`), for quick runs that keep the tables' relative sizes.
pub fn scaled_table_sizes(scale: f64) -> crate::Result<[u64; NUM_SPARSE]> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(crate::Error::input(
            None,
            format!("table scale must be a positive number, got {scale}"),
        ));
    }
    Ok(KAGGLE_TABLE_SIZES.map(|n| ((n as f64 * scale).ceil() as u64).clamp(1, u32::MAX as u64)))
}

/// Name of raw field `index` (0 = label, 1..=13 = I1..I13, 14..=39 = C1..C26), for messages.
pub fn column_name(index: usize) -> String {
    match index {
        0 => "label".to_string(),
        i if i <= NUM_DENSE => format!("I{i}"),
        i if i < NUM_FIELDS => format!("C{}", i - NUM_DENSE),
        i => format!("field {}", i + 1),
    }
}
