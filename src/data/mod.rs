//! Criteo data: streaming reader, dlrm preprocessing, binary cache, batches, synthetic source.
