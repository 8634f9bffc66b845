//! The raw Criteo files behind a data set: finding them, stamping them, reading them as one.
//!
//! - [`expand_sources`] turns `--data` arguments into files (directories of day files expanded
//!   in natural order, so `day_2` comes before `day_10`).
//! - [`SourceStamp`] is what a [store](super::store) remembers of its sources to judge staleness:
//!   the size and modification time, which are cheap to read.
//! - [`SourceChain`] reads several files one after the other as one stream of samples, counting
//!   the bytes read for progress; the store is built from it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

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
