//! The raw Criteo files behind a data set: finding them, stamping them, reading them as one.
//!
//! - [`expand_sources`] turns `--data` arguments into files (directories of day files expanded
//!   in natural order, so `day_2` comes before `day_10`).
//! - `SourceStamp` and [`content_hash`] are what a [store](super::store) remembers of its
//!   sources to judge staleness: the size and modification time, cheap to read, and a hash of the
//!   contents, which catches an edit that keeps both (files up to [`WHOLE_HASH_LIMIT`] are hashed
//!   whole; larger ones by [`SAMPLED_BLOCKS`] sampled blocks, so an edit between the blocks of a
//!   huge file can go unnoticed if it also keeps the size and the mtime).
//! - `SourceChain` reads several files one after the other as one stream of samples, counting
//!   the bytes read for progress; the store is built from it.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use xxhash_rust::xxh3::Xxh3;

use super::hash::mix64;
use super::reader::{Counting, CriteoReader, ReadStats};
use super::RawSample;
use crate::{Error, Result};

/// The file name ending of a preprocessed data store (see [`super::store`]); such files are never
/// taken for sources when a directory is expanded.
pub const STORE_EXTENSION: &str = ".ttcache";

/// The Criteo files of `paths`: files as given, directories expanded to their files (hidden
/// files and data stores skipped) in natural order, so `day_2` comes before `day_10`.
pub fn expand_sources(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = fs::metadata(p).map_err(|e| Error::file(p, format!("cannot read: {e}")))?;
        if !meta.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut files: Vec<PathBuf> = fs::read_dir(p)
            .map_err(|e| Error::file(p, format!("cannot list: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
                f.is_file()
                    && name.is_some_and(|n| !n.starts_with('.') && !n.ends_with(STORE_EXTENSION))
            })
            .collect();
        if files.is_empty() {
            return Err(Error::file(p, "the directory holds no data files"));
        }
        files.sort_by_key(|f| natural_key(&f.to_string_lossy()));
        out.extend(files);
    }
    if out.is_empty() {
        return Err(Error::input(None, "no data files given"));
    }
    Ok(out)
}

/// Sort key that orders runs of digits by value ("day_2" < "day_10").
fn natural_key(s: &str) -> Vec<(String, u64)> {
    let mut key = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_digit() {
            let mut n = 0u64;
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                n = n.saturating_mul(10).saturating_add(d as u64 - '0' as u64);
                chars.next();
            }
            key.push((std::mem::take(&mut text), n));
        } else {
            text.push(c);
            chars.next();
        }
    }
    key.push((text, 0));
    key
}

/// What a store remembers of its sources' metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourceStamp {
    /// Bytes of all sources together.
    pub size: u64,
    /// For one source its modification time (ns since the epoch); for several, a fingerprint of
    /// every file's path, size and time.
    pub mtime: i64,
}

impl SourceStamp {
    /// The stamp of `sources` as they are now.
    pub fn of(sources: &[PathBuf]) -> Result<SourceStamp> {
        if let [one] = sources {
            let (size, mtime) = file_stamp(one)?;
            return Ok(SourceStamp { size, mtime });
        }
        let mut size = 0u64;
        let mut print = 0x5eed_u64;
        for s in sources {
            let (n, t) = file_stamp(s)?;
            size += n;
            let name = s.to_string_lossy();
            let mut h = mix64(n ^ mix64(t as u64));
            for chunk in name.as_bytes().chunks(8) {
                let mut w = [0u8; 8];
                w[..chunk.len()].copy_from_slice(chunk);
                h = mix64(h ^ u64::from_le_bytes(w));
            }
            print = mix64(print ^ h);
        }
        Ok(SourceStamp {
            size,
            mtime: print as i64,
        })
    }
}

/// Size and modification time (ns since the epoch) of one source.
fn file_stamp(source: &Path) -> Result<(u64, i64)> {
    let meta =
        fs::metadata(source).map_err(|e| Error::file(source, format!("cannot stat: {e}")))?;
    let mtime = meta
        .modified()
        .map_err(|e| Error::file(source, format!("no modification time: {e}")))?;
    let ns = match mtime.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_nanos().min(i64::MAX as u128) as i64),
    };
    Ok((meta.len(), ns))
}

/// Sources up to this size (each) are hashed whole.
pub const WHOLE_HASH_LIMIT: u64 = 64 << 20;
/// Blocks hashed of a larger source: the first, the last, and the others evenly spaced between.
pub const SAMPLED_BLOCKS: u64 = 64;
/// Bytes of one sampled block.
pub const SAMPLED_BLOCK_LEN: u64 = 1 << 20;

/// XXH3-64 of the contents of `sources` in order: each file whole up to [`WHOLE_HASH_LIMIT`],
/// by [`SAMPLED_BLOCKS`] blocks of [`SAMPLED_BLOCK_LEN`] above (at most 64 MiB read per file).
pub fn content_hash(sources: &[PathBuf]) -> Result<u64> {
    let mut all = Xxh3::new();
    for s in sources {
        let hash = file_content_hash(s, WHOLE_HASH_LIMIT, SAMPLED_BLOCKS, SAMPLED_BLOCK_LEN)
            .map_err(|e| Error::file(s, format!("cannot read to hash it: {e}")))?;
        all.update(&hash.to_le_bytes());
    }
    Ok(all.digest())
}

/// The hash of one file (its length, then its bytes or its sampled blocks).
fn file_content_hash(
    path: &Path,
    whole_limit: u64,
    blocks: u64,
    block_len: u64,
) -> std::io::Result<u64> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut hash = Xxh3::new();
    hash.update(&len.to_le_bytes());
    let mut buf = vec![0u8; block_len.min(len).max(1) as usize];
    if len <= whole_limit {
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
        }
        return Ok(hash.digest());
    }
    let span = len - block_len;
    for i in 0..blocks {
        let offset = (span as u128 * i as u128 / (blocks - 1).max(1) as u128) as u64;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut buf)?;
        hash.update(&buf);
    }
    Ok(hash.digest())
}

/// Called while a store is built with (bytes of the source files read, their total size).
pub type BuildProgress<'a> = &'a mut dyn FnMut(u64, u64);

/// Reads several Criteo files one after the other as one stream of samples; counts the file
/// bytes read for progress.
pub(crate) struct SourceChain<'a> {
    files: Vec<PathBuf>,
    next: usize,
    current: Option<CriteoReader>,
    done_stats: ReadStats,
    read: Arc<AtomicU64>,
    total: u64,
    progress: Option<BuildProgress<'a>>,
}

impl<'a> SourceChain<'a> {
    /// A chain over `files` (at least one), calling `progress` as they are read.
    pub fn new(files: &[PathBuf], progress: Option<BuildProgress<'a>>) -> Self {
        let total = files
            .iter()
            .map(|s| fs::metadata(s).map(|m| m.len()).unwrap_or(0))
            .sum();
        SourceChain {
            files: files.to_vec(),
            next: 0,
            current: None,
            done_stats: ReadStats::default(),
            read: Arc::new(AtomicU64::new(0)),
            total,
            progress,
        }
    }

    /// The first file, named when the whole chain holds no valid line.
    pub fn first_path(&self) -> &Path {
        &self.files[0]
    }

    /// The next valid sample of the chain, `Ok(None)` after the last file.
    pub fn next_sample(&mut self) -> Result<Option<RawSample>> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.files.get(self.next) else {
                    return Ok(None);
                };
                self.next += 1;
                let file =
                    File::open(path).map_err(|e| Error::file(path, format!("cannot open: {e}")))?;
                let counting = Counting {
                    inner: file,
                    count: self.read.clone(),
                };
                self.current = Some(
                    CriteoReader::from_read(path, counting)
                        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?,
                );
            }
            let reader = self.current.as_mut().expect("a reader");
            match reader.next_sample()? {
                Some(s) => {
                    if reader.stats().valid.is_multiple_of(65_536) {
                        self.report_progress();
                    }
                    return Ok(Some(s));
                }
                None => {
                    let st = self.current.take().expect("a reader").stats().clone();
                    let d = &mut self.done_stats;
                    d.lines += st.lines;
                    d.valid += st.valid;
                    d.bytes += st.bytes;
                    for k in 0..4 {
                        d.malformed[k] += st.malformed[k];
                        if d.examples[k].is_empty() {
                            d.examples[k] = st.examples[k].clone();
                        }
                    }
                    self.report_progress();
                }
            }
        }
    }

    fn report_progress(&mut self) {
        if let Some(p) = self.progress.as_mut() {
            p(self.read.load(Ordering::Relaxed), self.total);
        }
    }

    /// What the files read to their end saw, summed.
    pub fn stats(&self) -> ReadStats {
        self.done_stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file larger than the whole-hash limit is hashed by blocks at its start, its end and
    /// evenly between: an edit inside a block changes the hash, one between blocks does not.
    #[test]
    fn sampled_hash_sees_its_blocks_and_only_those() {
        let dir = std::env::temp_dir().join(format!("ttrec-hash-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.txt");
        // 1,000 bytes: blocks of 10 at 0, 330, 660 and 990 (4 blocks over a span of 990).
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let hash_of = |b: &[u8]| {
            fs::write(&path, b).unwrap();
            file_content_hash(&path, 100, 4, 10).unwrap()
        };
        let base = hash_of(&bytes);
        assert_eq!(hash_of(&bytes), base, "deterministic");
        for at in [0, 9, 330, 339, 665, 990, 999] {
            let mut edited = bytes.clone();
            edited[at] ^= 1;
            assert_ne!(hash_of(&edited), base, "an edit at {at} is inside a block");
        }
        for at in [10, 329, 340, 659, 989] {
            let mut edited = bytes.clone();
            edited[at] ^= 1;
            assert_eq!(hash_of(&edited), base, "an edit at {at} is between blocks");
        }
        // Below the limit every byte counts; the length always does.
        let small = &bytes[..100];
        let small_hash = file_content_hash_of(&path, small);
        let mut edited = small.to_vec();
        edited[50] ^= 1;
        assert_ne!(file_content_hash_of(&path, &edited), small_hash);
        assert_ne!(hash_of(&bytes[..999]), base);
        fs::remove_dir_all(dir).unwrap();
    }

    fn file_content_hash_of(path: &Path, bytes: &[u8]) -> u64 {
        fs::write(path, bytes).unwrap();
        file_content_hash(path, 100, 4, 10).unwrap()
    }
}
