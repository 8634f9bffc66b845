//! The preprocessed binary cache: parse a Criteo file once, then memory-map the result.
//!
//! Layout (little-endian hosts; numbers in the header are little-endian):
//! - header, [`HEADER_LEN`] bytes: magic, format version, the source's size and mtime,
//!   `max_ind_range`, row count, payload length and checksum, the source's line and malformed
//!   counts, the 26 table sizes, and a checksum of the header itself;
//! - rows: `rows` x [`CachedRow`] (160 bytes: label, 13 dense f32, 26 ids u32), so a batch gathers
//!   each sample from one place;
//! - dictionaries: for each column, its categorical values in id order (u32).
//!
//! The checksums are XXH3-64. The file is written with [`crate::io::write_atomic_with`]
//! (temporary file in the same directory, fsync, rename), so a crash leaves either the old cache
//! or the new one. A cache whose source changed (size or mtime), whose options differ, whose
//! format version is another, or whose bytes do not match their checksum is rebuilt, never used.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytemuck::{Pod, Zeroable};
use memmap2::Mmap;

use super::batches::{Batch, BatchLoader};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use super::hash::mix64;
use super::preprocess::{
    row_order, split_ranges, Dictionary, PreprocessConfig, Split, SplitRanges,
};
use super::reader::{Counting, CriteoReader, ReadStats};
use super::{NUM_DENSE, NUM_SPARSE};
use crate::{Error, Result};

const MAGIC: [u8; 8] = *b"TTRECCRT";
/// Format version; bump on any layout change so old caches are rebuilt. Version 2: the header
/// and payload checksums are XXH3-64 (version 1 had a hand-written checksum).
pub const FORMAT_VERSION: u32 = 2;
/// Bytes of the header before the rows.
pub const HEADER_LEN: usize = 320;
const ROW_BYTES: u64 = std::mem::size_of::<CachedRow>() as u64;

/// One preprocessed sample as stored in the cache.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct CachedRow {
    pub label: f32,
    pub dense: [f32; NUM_DENSE],
    pub sparse: [u32; NUM_SPARSE],
}

/// `<source>.ttcache`, next to the source.
pub fn default_cache_path(source: impl AsRef<Path>) -> PathBuf {
    let mut name = source.as_ref().as_os_str().to_owned();
    name.push(".ttcache");
    PathBuf::from(name)
}

/// The cache of `sources` when none is named: `<first file>.ttcache`, or
/// `<first file>.<n>-files.ttcache` for several files (what `ttrec train` and `ttrec data
/// preprocess` both use).
pub fn default_cache_path_for(sources: &[PathBuf]) -> Result<PathBuf> {
    let first = sources
        .first()
        .ok_or_else(|| Error::input(None, "no data files given"))?;
    let mut name = first.as_os_str().to_owned();
    if sources.len() > 1 {
        name.push(format!(".{}-files", sources.len()));
    }
    name.push(".ttcache");
    Ok(PathBuf::from(name))
}

/// What was found at a cache path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheState {
    /// Present, matching the source and options, checksum verified.
    Valid,
    /// No file.
    Missing,
    /// Well-formed but built from another version of the source, other options or format.
    Stale(String),
    /// Damaged: wrong magic, length or checksum.
    Corrupt(String),
}

impl CacheState {
    pub fn is_valid(&self) -> bool {
        matches!(self, CacheState::Valid)
    }
}

impl std::fmt::Display for CacheState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheState::Valid => write!(f, "valid"),
            CacheState::Missing => write!(f, "missing"),
            CacheState::Stale(why) => write!(f, "stale: {why}"),
            CacheState::Corrupt(why) => write!(f, "corrupt: {why}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Header {
    version: u32,
    source_size: u64,
    source_mtime_ns: i64,
    max_ind_range: u64,
    rows: u64,
    payload_len: u64,
    payload_checksum: u64,
    source_lines: u64,
    malformed: [u64; 4],
    table_sizes: [u64; NUM_SPARSE],
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            b[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&MAGIC);
        put(&self.version.to_le_bytes());
        put(&(HEADER_LEN as u32).to_le_bytes());
        for v in [
            self.source_size,
            self.source_mtime_ns as u64,
            self.max_ind_range,
            self.rows,
            self.payload_len,
            self.payload_checksum,
            self.source_lines,
        ] {
            put(&v.to_le_bytes());
        }
        for v in self.malformed.iter().chain(&self.table_sizes) {
            put(&v.to_le_bytes());
        }
        let end = at;
        let sum = xxh3_64(&b[..end]);
        b[end..end + 8].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Decodes a header, or says why the bytes are not one.
    fn decode(b: &[u8]) -> std::result::Result<Header, CacheState> {
        if b.len() < HEADER_LEN {
            return Err(CacheState::Corrupt(format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                b.len()
            )));
        }
        if b[..8] != MAGIC {
            return Err(CacheState::Corrupt("not a ttrec cache (bad magic)".into()));
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(CacheState::Stale(format!(
                "format version {version}, expected {FORMAT_VERSION}"
            )));
        }
        let fields_end = 16 + 7 * 8 + (4 + NUM_SPARSE) * 8;
        if u32_at(12) as usize != HEADER_LEN || xxh3_64(&b[..fields_end]) != u64_at(fields_end) {
            return Err(CacheState::Corrupt("header checksum mismatch".into()));
        }
        Ok(Header {
            version,
            source_size: u64_at(16),
            source_mtime_ns: u64_at(24) as i64,
            max_ind_range: u64_at(32),
            rows: u64_at(40),
            payload_len: u64_at(48),
            payload_checksum: u64_at(56),
            source_lines: u64_at(64),
            malformed: std::array::from_fn(|i| u64_at(72 + 8 * i)),
            table_sizes: std::array::from_fn(|i| u64_at(104 + 8 * i)),
        })
    }
}

/// What staleness is judged by: for one source its size and modification time (ns since the
/// epoch); for several, the total size and a fingerprint of every file's path, size and time.
fn sources_stamp(sources: &[PathBuf]) -> Result<(u64, i64)> {
    if let [one] = sources {
        return source_stamp(one);
    }
    let mut size = 0u64;
    let mut print = 0x5eed_u64;
    for s in sources {
        let (n, t) = source_stamp(s)?;
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
    Ok((size, print as i64))
}

/// The Criteo files of `paths`: files as given, directories expanded to their files (hidden
/// files and `.ttcache` files skipped) in natural order, so `day_2` comes before `day_10`.
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
                f.is_file() && name.is_some_and(|n| !n.starts_with('.') && !n.ends_with(".ttcache"))
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

/// Size and modification time (ns since the epoch) of one source.
fn source_stamp(source: &Path) -> Result<(u64, i64)> {
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

/// Checks the cache at `cache` against `source` and `config` (including the payload checksum).
pub fn check_cache(
    source: impl AsRef<Path>,
    cache: impl AsRef<Path>,
    config: &PreprocessConfig,
) -> Result<CacheState> {
    check_cache_sources(&[source.as_ref().to_path_buf()], cache, config)
}

/// [`check_cache`] for a cache built from several files.
pub fn check_cache_sources(
    sources: &[PathBuf],
    cache: impl AsRef<Path>,
    config: &PreprocessConfig,
) -> Result<CacheState> {
    Ok(match try_map(sources, cache.as_ref(), config)? {
        Ok(_) => CacheState::Valid,
        Err(state) => state,
    })
}

/// Maps a valid cache, or says what is wrong with it. I/O errors on the source are errors.
fn try_map(
    sources: &[PathBuf],
    cache: &Path,
    config: &PreprocessConfig,
) -> Result<std::result::Result<(Mmap, Header), CacheState>> {
    let (size, mtime) = sources_stamp(sources)?;
    let mut file = match File::open(cache) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err(CacheState::Missing)),
        Err(e) => return Err(Error::file(cache, format!("cannot open cache: {e}"))),
    };
    let mut head = Vec::with_capacity(HEADER_LEN);
    (&mut file)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::file(cache, e.to_string()))?;
    let header = match Header::decode(&head) {
        Ok(h) => h,
        Err(state) => return Ok(Err(state)),
    };
    if header.source_size != size {
        return Ok(Err(CacheState::Stale(format!(
            "source size changed: cached {} bytes, now {size}",
            header.source_size
        ))));
    }
    if header.source_mtime_ns != mtime {
        return Ok(Err(CacheState::Stale(format!(
            "source modified: cached mtime {} ns, now {mtime} ns",
            header.source_mtime_ns
        ))));
    }
    let want_range = config.max_ind_range.unwrap_or(0);
    if header.max_ind_range != want_range {
        return Ok(Err(CacheState::Stale(format!(
            "built with max_ind_range {}, asked for {want_range} (0 = none)",
            header.max_ind_range
        ))));
    }
    let dict_len: u64 = header.table_sizes.iter().sum();
    let expect_payload = header
        .rows
        .checked_mul(ROW_BYTES)
        .and_then(|r| r.checked_add(dict_len.checked_mul(4)?));
    if expect_payload != Some(header.payload_len) || header.rows == 0 {
        return Ok(Err(CacheState::Corrupt(format!(
            "payload length {} does not match {} rows and {dict_len} dictionary entries",
            header.payload_len, header.rows
        ))));
    }
    let file_len = file
        .metadata()
        .map_err(|e| Error::file(cache, e.to_string()))?
        .len();
    if file_len != HEADER_LEN as u64 + header.payload_len {
        return Ok(Err(CacheState::Corrupt(format!(
            "file is {file_len} bytes, header says {}",
            HEADER_LEN as u64 + header.payload_len
        ))));
    }
    // SAFETY: the cache is only ever replaced by rename, never written in place, so the mapped
    // inode does not change under us (unless someone edits it by hand, which the checksum below
    // catches at open time).
    let mmap =
        unsafe { Mmap::map(&file) }.map_err(|e| Error::file(cache, format!("cannot map: {e}")))?;
    if xxh3_64(&mmap[HEADER_LEN..]) != header.payload_checksum {
        return Ok(Err(CacheState::Corrupt("payload checksum mismatch".into())));
    }
    Ok(Ok((mmap, header)))
}

/// Called while a cache is built with (bytes of the source files read, their total size).
pub type BuildProgress<'a> = &'a mut dyn FnMut(u64, u64);

/// Reads several Criteo files one after the other as one stream of samples; counts the file
/// bytes read for progress.
struct ChainReader<'a> {
    files: Vec<PathBuf>,
    next: usize,
    current: Option<CriteoReader>,
    done_stats: ReadStats,
    read: Arc<std::sync::atomic::AtomicU64>,
    total: u64,
    progress: Option<BuildProgress<'a>>,
}

impl<'a> ChainReader<'a> {
    fn new(files: &[PathBuf], total: u64, progress: Option<BuildProgress<'a>>) -> Self {
        ChainReader {
            files: files.to_vec(),
            next: 0,
            current: None,
            done_stats: ReadStats::default(),
            read: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            total,
            progress,
        }
    }

    fn first_path(&self) -> &Path {
        &self.files[0]
    }

    fn next_sample(&mut self) -> Result<Option<super::RawSample>> {
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
                        if let Some(p) = self.progress.as_mut() {
                            p(
                                self.read.load(std::sync::atomic::Ordering::Relaxed),
                                self.total,
                            );
                        }
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
                    if let Some(p) = self.progress.as_mut() {
                        p(
                            self.read.load(std::sync::atomic::Ordering::Relaxed),
                            self.total,
                        );
                    }
                }
            }
        }
    }

    fn stats(&self) -> ReadStats {
        self.done_stats.clone()
    }
}

/// Parses `sources` and writes their cache atomically at `cache`; returns what the read saw.
fn build(
    sources: &[PathBuf],
    cache: &Path,
    config: &PreprocessConfig,
    progress: Option<BuildProgress>,
) -> Result<ReadStats> {
    let (size, mtime) = sources_stamp(sources)?;
    let total: u64 = sources
        .iter()
        .map(|s| fs::metadata(s).map(|m| m.len()).unwrap_or(0))
        .sum();
    let mut reader = ChainReader::new(sources, total, progress);
    crate::io::write_atomic_with(cache, |out| {
        write_cache(&mut reader, out, size, mtime, config)
    })
}

fn write_cache(
    reader: &mut ChainReader,
    out: &mut crate::io::AtomicWriter,
    size: u64,
    mtime: i64,
    config: &PreprocessConfig,
) -> Result<ReadStats> {
    out.write_all(&[0u8; HEADER_LEN])?;
    let mut sum = Xxh3::new();
    let mut dict = Dictionary::new();
    let mut chunk: Vec<CachedRow> = Vec::with_capacity(4096);
    let mut rows = 0u64;
    let flush = |chunk: &mut Vec<CachedRow>, out: &mut crate::io::AtomicWriter, sum: &mut Xxh3| {
        let bytes: &[u8] = bytemuck::cast_slice(chunk);
        sum.update(bytes);
        out.write_all(bytes)?;
        chunk.clear();
        Ok::<(), Error>(())
    };
    while let Some(sample) = reader.next_sample()? {
        let (label, dense, sparse) = dict.preprocess(&sample, config.max_ind_range);
        chunk.push(CachedRow {
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
        source_size: size,
        source_mtime_ns: mtime,
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

struct Inner {
    mmap: Mmap,
    header: Header,
    cache_path: PathBuf,
    config: PreprocessConfig,
    splits: SplitRanges,
}

/// A preprocessed Criteo file, memory-mapped from its cache. Cheap to clone (shared mapping), so
/// batch threads can hold it.
#[derive(Clone)]
pub struct PreprocessedDataset {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PreprocessedDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreprocessedDataset")
            .field("cache", &self.inner.cache_path)
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
    /// state the cache was found in ([`CacheState::Valid`] = reused).
    pub fn open_or_build(
        source: impl AsRef<Path>,
        config: &PreprocessConfig,
    ) -> Result<(Self, CacheState)> {
        let source = source.as_ref();
        Self::open_or_build_at(source, default_cache_path(source), config)
    }

    /// Like [`open_or_build`](Self::open_or_build) with the cache at `cache`.
    pub fn open_or_build_at(
        source: impl AsRef<Path>,
        cache: impl AsRef<Path>,
        config: &PreprocessConfig,
    ) -> Result<(Self, CacheState)> {
        Self::open_or_build_sources(&[source.as_ref().to_path_buf()], cache, config, None)
    }

    /// The cache at `cache` of several files read in order as one data set (dlrm's day files),
    /// built (with `progress` calls) unless valid.
    pub fn open_or_build_sources(
        sources: &[PathBuf],
        cache: impl AsRef<Path>,
        config: &PreprocessConfig,
        progress: Option<BuildProgress>,
    ) -> Result<(Self, CacheState)> {
        let cache = cache.as_ref();
        if sources.is_empty() {
            return Err(Error::file(cache, "a cache needs at least one source file"));
        }
        let found = match try_map(sources, cache, config)? {
            Ok(mapped) => {
                log::debug!("reusing the data cache {}", cache.display());
                return Ok((Self::from_mapped(mapped, cache, config)?, CacheState::Valid));
            }
            Err(state) => state,
        };
        log::info!(
            "data cache {} is {found}; building it from {} file(s)",
            cache.display(),
            sources.len()
        );
        let (data, _) = Self::build_sources(sources, cache, config, progress)?;
        Ok((data, found))
    }

    /// Builds the cache at `cache` from `sources` whatever is there now (`ttrec data
    /// preprocess --force`), then maps it; returns it with what the read saw (lines, malformed
    /// lines by kind and their first examples).
    pub fn build_sources(
        sources: &[PathBuf],
        cache: impl AsRef<Path>,
        config: &PreprocessConfig,
        progress: Option<BuildProgress>,
    ) -> Result<(Self, ReadStats)> {
        let cache = cache.as_ref();
        if sources.is_empty() {
            return Err(Error::file(cache, "a cache needs at least one source file"));
        }
        let start = std::time::Instant::now();
        let stats = build(sources, cache, config, progress)?;
        match try_map(sources, cache, config)? {
            Ok(mapped) => {
                let data = Self::from_mapped(mapped, cache, config)?;
                log::info!(
                    "data cache {} built: {} rows from {} lines in {:.1} s",
                    cache.display(),
                    data.len(),
                    stats.lines,
                    start.elapsed().as_secs_f64()
                );
                Ok((data, stats))
            }
            Err(state) => Err(Error::file(
                cache,
                format!(
                    "cache just built is not usable ({state}); did the source change meanwhile?"
                ),
            )),
        }
    }

    /// Maps an existing cache without ever building one; an error says why it is not valid.
    pub fn open(
        source: impl AsRef<Path>,
        cache: impl AsRef<Path>,
        config: &PreprocessConfig,
    ) -> Result<Self> {
        let (source, cache) = (source.as_ref(), cache.as_ref());
        match try_map(&[source.to_path_buf()], cache, config)? {
            Ok(mapped) => Self::from_mapped(mapped, cache, config),
            Err(state) => Err(Error::file(cache, format!("cache is {state}"))),
        }
    }

    fn from_mapped(
        (mmap, header): (Mmap, Header),
        cache: &Path,
        config: &PreprocessConfig,
    ) -> Result<Self> {
        let splits = split_ranges(header.rows, config.split)?;
        Ok(PreprocessedDataset {
            inner: Arc::new(Inner {
                mmap,
                header,
                cache_path: cache.to_path_buf(),
                config: config.clone(),
                splits,
            }),
        })
    }

    /// Number of rows (valid samples of the source).
    pub fn len(&self) -> u64 {
        self.inner.header.rows
    }

    /// Never true for a built cache (an empty source is an error); here for completeness.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the cache lives.
    pub fn cache_path(&self) -> &Path {
        &self.inner.cache_path
    }

    /// Lines of the source, valid or not.
    pub fn source_lines(&self) -> u64 {
        self.inner.header.source_lines
    }

    /// Malformed source lines per kind, indexed like [`super::MalformedKind::ALL`].
    pub fn malformed_counts(&self) -> [u64; 4] {
        self.inner.header.malformed
    }

    /// Embedding table sizes C1..C26 (distinct values per column).
    pub fn table_sizes(&self) -> [u64; NUM_SPARSE] {
        self.inner.header.table_sizes
    }

    /// All rows, in file order.
    pub fn rows(&self) -> &[CachedRow] {
        let end = HEADER_LEN + (self.len() * ROW_BYTES) as usize;
        bytemuck::cast_slice(&self.inner.mmap[HEADER_LEN..end])
    }

    /// Row `i` in file order.
    pub fn row(&self, i: u64) -> Option<&CachedRow> {
        self.rows().get(usize::try_from(i).ok()?)
    }

    /// Categorical values of `column` (0-based) in id order: the dictionary that maps raw values
    /// to the ids in [`CachedRow::sparse`].
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
