//! One streaming pass over a Criteo file that reports what `ttrec data inspect` shows.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::preprocess::{categorical_value, Dictionary};
use super::reader::{Counting, CriteoReader, MalformedKind, ReadStats};
use super::{column_name, NUM_DENSE, NUM_SPARSE};
use crate::{Error, Result};

/// What a pass over a file found.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub stats: ReadStats,
    /// Share of valid samples labelled 1.
    pub positive_rate: f64,
    /// Share of valid samples where I1..I13 is empty.
    pub dense_missing_rate: [f64; NUM_DENSE],
    /// Share of valid samples where C1..C26 is empty.
    pub sparse_missing_rate: [f64; NUM_SPARSE],
    /// Distinct values per column after dlrm's mapping (missing = value 0): the table sizes.
    pub table_sizes: [u64; NUM_SPARSE],
}

/// Reads `path` once (bounded memory apart from the per-column distinct sets).
pub fn inspect_file(path: impl AsRef<Path>, max_ind_range: Option<u64>) -> Result<FileReport> {
    inspect_file_with_progress(path, max_ind_range, &mut |_, _| {})
}

/// Valid samples between two calls of an [`inspect_file_with_progress`] callback.
pub const INSPECT_PROGRESS_EVERY: u64 = 65_536;

/// [`inspect_file`], calling `progress(bytes of the file read, file size)` every
/// [`INSPECT_PROGRESS_EVERY`] valid samples and at the end (for a gzip file both count
/// compressed bytes).
pub fn inspect_file_with_progress(
    path: impl AsRef<Path>,
    max_ind_range: Option<u64>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<FileReport> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::file(path, format!("cannot open: {e}")))?;
    let size = file
        .metadata()
        .map_err(|e| Error::file(path, format!("cannot stat: {e}")))?
        .len();
    let count = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: file,
        count: count.clone(),
    };
    let mut reader = CriteoReader::from_read(path, counting)
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let mut dict = Dictionary::new();
    let mut positives = 0u64;
    let mut dense_missing = [0u64; NUM_DENSE];
    let mut sparse_missing = [0u64; NUM_SPARSE];
    while let Some(s) = reader.next_sample()? {
        positives += s.label as u64;
        for (m, x) in dense_missing.iter_mut().zip(&s.dense) {
            *m += x.is_none() as u64;
        }
        for (c, x) in s.sparse.iter().enumerate() {
            sparse_missing[c] += x.is_none() as u64;
            dict.id_or_insert(c, categorical_value(*x, max_ind_range));
        }
        if reader.stats().valid.is_multiple_of(INSPECT_PROGRESS_EVERY) {
            progress(count.load(Ordering::Relaxed), size);
        }
    }
    progress(count.load(Ordering::Relaxed), size);
    let stats = reader.stats().clone();
    let rate = |k: u64| {
        if stats.valid == 0 {
            0.0
        } else {
            k as f64 / stats.valid as f64
        }
    };
    Ok(FileReport {
        positive_rate: rate(positives),
        dense_missing_rate: dense_missing.map(rate),
        sparse_missing_rate: sparse_missing.map(rate),
        table_sizes: dict.table_sizes(),
        stats,
    })
}

impl FileReport {
    /// Valid lines.
    pub fn valid_lines(&self) -> u64 {
        self.stats.valid
    }

    /// Malformed lines of all kinds.
    pub fn malformed_lines(&self) -> u64 {
        self.stats.malformed_total()
    }

    /// The report as one JSON object (the `--json` output).
    pub fn to_json(&self) -> serde_json::Value {
        let mut malformed = serde_json::Map::new();
        for kind in MalformedKind::ALL {
            let examples: Vec<_> = self
                .stats
                .examples_of(kind)
                .iter()
                .map(|m| json!({"line": m.line, "column": m.column.map(column_name), "value": m.value}))
                .collect();
            malformed.insert(
                kind.name().to_string(),
                json!({"count": self.stats.count(kind), "first": examples}),
            );
        }
        let dense: serde_json::Map<_, _> = (0..NUM_DENSE)
            .map(|j| (column_name(1 + j), json!(self.dense_missing_rate[j])))
            .collect();
        let sparse: serde_json::Map<_, _> = (0..NUM_SPARSE)
            .map(|c| {
                (
                    column_name(1 + NUM_DENSE + c),
                    json!(self.sparse_missing_rate[c]),
                )
            })
            .collect();
        json!({
            "lines": self.stats.lines,
            "valid_lines": self.valid_lines(),
            "malformed_lines": self.malformed_lines(),
            "malformed": malformed,
            "positive_rate": self.positive_rate,
            "missing_rate": {"dense": dense, "categorical": sparse},
            "table_sizes": self.table_sizes,
        })
    }
}
