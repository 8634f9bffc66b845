//! Batches produced ahead of the consumer on a background thread, through a bounded channel, so
//! reading (or generating) overlaps training and memory stays at `prefetch` batches.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use super::{NUM_DENSE, NUM_SPARSE};
use crate::{Error, Result};

/// One batch of B samples, row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// `[B, 13]` preprocessed dense features.
    pub dense: Vec<f32>,
    /// `[B, 26]` dense ids, one per table.
    pub sparse: Vec<u32>,
    /// `[B]` labels, 0.0 or 1.0.
    pub labels: Vec<f32>,
}

impl Batch {
    /// An empty batch with room for `batch_size` samples.
    pub fn with_capacity(batch_size: usize) -> Self {
        Batch {
            dense: Vec::with_capacity(batch_size * NUM_DENSE),
            sparse: Vec::with_capacity(batch_size * NUM_SPARSE),
            labels: Vec::with_capacity(batch_size),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the batch has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Appends one sample.
    pub fn push(&mut self, label: f32, dense: &[f32; NUM_DENSE], sparse: &[u32; NUM_SPARSE]) {
        self.labels.push(label);
        self.dense.extend_from_slice(dense);
        self.sparse.extend_from_slice(sparse);
    }

    /// The ids of table `table` for every sample, `[B]` (embedding bags read one table at a time).
    pub fn table_ids(&self, table: usize) -> Vec<u32> {
        self.sparse
            .iter()
            .skip(table)
            .step_by(NUM_SPARSE)
            .copied()
            .collect()
    }
}

/// Iterator over batches made on a background thread. Dropping it stops the thread.
pub struct BatchLoader {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
    len_hint: Option<usize>,
}

impl std::fmt::Debug for BatchLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchLoader")
            .field("len_hint", &self.len_hint)
            .finish()
    }
}

impl BatchLoader {
    /// Runs `produce` on a new thread until it returns `None` or an error, keeping at most
    /// `prefetch` (>= 1) batches ready. `len_hint` is the number of batches, when known.
    pub fn spawn<F>(prefetch: usize, len_hint: Option<usize>, mut produce: F) -> Result<Self>
    where
        F: FnMut() -> Option<Result<Batch>> + Send + 'static,
    {
        if prefetch == 0 {
            return Err(Error::input(None, "prefetch depth must be at least 1"));
        }
        let (tx, rx) = sync_channel(prefetch);
        let handle = std::thread::Builder::new()
            .name("ttrec-batches".into())
            .spawn(move || {
                while let Some(item) = produce() {
                    let stop = item.is_err();
                    // A send error means the loader was dropped: nobody wants more batches.
                    if tx.send(item).is_err() || stop {
                        break;
                    }
                }
            })
            .map_err(Error::Io)?;
        Ok(BatchLoader {
            rx: Some(rx),
            handle: Some(handle),
            len_hint,
        })
    }

    /// The number of batches this loader yields in total, when known.
    pub fn len_hint(&self) -> Option<usize> {
        self.len_hint
    }
}

impl Iterator for BatchLoader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.rx.as_ref()?.recv().ok();
        if item.is_none() {
            if let Some(h) = self.handle.take() {
                if h.join().is_err() {
                    return Some(Err(Error::input(
                        None,
                        "the batch producer thread panicked",
                    )));
                }
            }
        }
        item
    }
}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        // Closing the receiver makes the producer's next send fail, so join cannot hang.
        self.rx.take();
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                log::warn!("a batch producer thread panicked (its batches were not all used)");
            }
        }
    }
}
