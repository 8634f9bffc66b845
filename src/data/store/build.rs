//! Building a store: read the sources once through the dlrm preprocessing and write rows,
//! dictionaries and header atomically.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

use super::format::{Header, StoredRow, FORMAT_VERSION, HEADER_LEN, ROW_BYTES};
use crate::data::preprocess::{Dictionary, PreprocessConfig};
use crate::data::reader::ReadStats;
use crate::data::sources::{content_hash, BuildProgress, SourceChain, SourceStamp};
use crate::data::NUM_SPARSE;
use crate::io::AtomicWriter;
use crate::{Error, Result};

/// Parses `sources` and writes their store atomically at `store`; returns what the read saw.
pub(crate) fn build(
    sources: &[PathBuf],
    store: &Path,
    config: &PreprocessConfig,
    progress: Option<BuildProgress>,
) -> Result<ReadStats> {
    // Stamped before the read: a source that changes while it is read makes the store stale.
    let stamp = SourceStamp::of(sources)?;
    let hash = content_hash(sources)?;
    let mut reader = SourceChain::new(sources, progress);
    crate::io::write_atomic_with(store, |out| {
        write_store(&mut reader, out, (&stamp, hash), config)
    })
}

/// Writes a zero header, the rows as they are read, the dictionaries, then the real header.
fn write_store(
    reader: &mut SourceChain,
    out: &mut AtomicWriter,
    (stamp, source_hash): (&SourceStamp, u64),
    config: &PreprocessConfig,
) -> Result<ReadStats> {
    out.write_all(&[0u8; HEADER_LEN])?;
    let mut sum = Xxh3::new();
    let mut dict = Dictionary::new();
    let mut chunk: Vec<StoredRow> = Vec::with_capacity(4096);
    let mut rows = 0u64;
    let flush = |chunk: &mut Vec<StoredRow>, out: &mut AtomicWriter, sum: &mut Xxh3| {
        let bytes: &[u8] = bytemuck::cast_slice(chunk);
        sum.update(bytes);
        out.write_all(bytes)?;
        chunk.clear();
        Ok::<(), Error>(())
    };
    while let Some(sample) = reader.next_sample()? {
        let (label, dense, sparse) = dict.preprocess(&sample, config.max_ind_range);
        chunk.push(StoredRow {
            label,
            dense,
            sparse,
        });
        rows += 1;
        if chunk.len() == chunk.capacity() {
            flush(&mut chunk, out, &mut sum)?;
        }
    }
    flush(&mut chunk, out, &mut sum)?;
    if rows == 0 {
        return Err(Error::file(reader.first_path(), "no valid Criteo lines"));
    }
    let mut dict_len = 0u64;
    for c in 0..NUM_SPARSE {
        let bytes: &[u8] = bytemuck::cast_slice(dict.values(c));
        sum.update(bytes);
        out.write_all(bytes)?;
        dict_len += dict.values(c).len() as u64;
    }
    let stats = reader.stats();
    let header = Header {
        version: FORMAT_VERSION,
        source_size: stamp.size,
        source_mtime_ns: stamp.mtime,
        source_hash,
        max_ind_range: config.max_ind_range.unwrap_or(0),
        rows,
        payload_len: rows * ROW_BYTES + dict_len * 4,
        payload_checksum: sum.digest(),
        source_lines: stats.lines,
        malformed: stats.malformed,
        table_sizes: dict.table_sizes(),
    };
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&header.encode())?;
    Ok(stats)
}
