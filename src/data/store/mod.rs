//! The data store: Criteo files parsed and preprocessed once into one binary file (`.ttcache`),
//! then memory-mapped by every later run.
//!
//! - [`format`](mod@format): the header and row layout.
//! - [`build`](mod@build): parsing the sources and writing the store atomically.
//! - [`dataset`]: [`PreprocessedDataset`], the mapped store, its splits and batches.
//!
//! This module judges whether a store may be used ([`StoreState`]). A store whose sources changed
//! (size, mtime or contents, see [`content_hash`]), whose options differ, whose format version is
//! another, or whose bytes do not match their checksum is never used. What happens to it then is
//! the caller's [`Mismatch`]: rebuilt over (`open_or_build`), or, as `ttrec train` and `ttrec
//! data preprocess` do, an error naming the difference and the flag that rebuilds: a store is
//! never overwritten silently (it may have taken hours, or belong to another data set). The
//! file is written with [`crate::io::write_atomic_with`] (temporary file in the same directory,
//! fsync, rename), so a crash leaves either the old store or the new one.

pub mod build;
pub mod dataset;
pub mod format;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use xxhash_rust::xxh3::xxh3_64;

pub use dataset::{BatchOptions, PreprocessedDataset};
pub use format::{StoredRow, FORMAT_VERSION, HEADER_LEN};

use super::preprocess::PreprocessConfig;
use super::sources::{content_hash, SourceStamp, STORE_EXTENSION};
use crate::{Error, Result};
use format::Header;

/// `<source>.ttcache`, next to the source.
pub fn default_store_path(source: impl AsRef<Path>) -> PathBuf {
    let mut name = source.as_ref().as_os_str().to_owned();
    name.push(STORE_EXTENSION);
    PathBuf::from(name)
}

/// The store of `sources` when none is named: `<first file>.ttcache`, or
/// `<first file>.<n>-files.ttcache` for several files (what `ttrec train` and `ttrec data
/// preprocess` both use).
pub fn default_store_path_for(sources: &[PathBuf]) -> Result<PathBuf> {
    let first = sources
        .first()
        .ok_or_else(|| Error::input(None, "no data files given"))?;
    let mut name = first.as_os_str().to_owned();
    if sources.len() > 1 {
        name.push(format!(".{}-files", sources.len()));
    }
    name.push(STORE_EXTENSION);
    Ok(PathBuf::from(name))
}

/// What to do with a store that is there but not valid for the sources and settings asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch<'a> {
    /// Build over it.
    Rebuild,
    /// An error that names the difference and offers `flag`, the option that rebuilds.
    Refuse { flag: &'a str },
}

/// Whether the file at `path` starts like a data store (its magic bytes), whatever its name.
pub fn is_store_file(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == format::MAGIC
}

/// Maps a store on its own, without its sources (scoring a store whose sources are elsewhere):
/// format, header, length and payload checksum verified.
pub(crate) fn map_standalone(store: &Path) -> Result<Mapped> {
    let file = File::open(store)
        .map_err(|e| Error::file(store, format!("cannot open the data store: {e}")))?;
    let corrupt = |why: String| Error::file(store, format!("data store is {why}"));
    let mut head = Vec::with_capacity(HEADER_LEN);
    (&file)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::file(store, e.to_string()))?;
    let header = Header::decode(&head).map_err(|state| corrupt(state.to_string()))?;
    let len = file
        .metadata()
        .map_err(|e| Error::file(store, e.to_string()))?
        .len();
    if let Some(why) = length_mismatch(&header, len) {
        return Err(corrupt(format!("corrupt: {why}")));
    }
    // SAFETY: as in `map_if_valid`: stores are replaced by rename, never written in place.
    let mmap =
        unsafe { Mmap::map(&file) }.map_err(|e| Error::file(store, format!("cannot map: {e}")))?;
    if xxh3_64(&mmap[HEADER_LEN..]) != header.payload_checksum {
        return Err(corrupt("corrupt: payload checksum mismatch".into()));
    }
    Ok((mmap, header))
}

/// What was found at a store path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreState {
    /// Present, matching the source and options, checksum verified.
    Valid,
    /// No file.
    Missing,
    /// Well-formed but built from another version of the source, other options or format.
    Stale(String),
    /// Damaged: wrong magic, length or checksum.
    Corrupt(String),
}

impl StoreState {
    pub fn is_valid(&self) -> bool {
        matches!(self, StoreState::Valid)
    }
}

impl std::fmt::Display for StoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreState::Valid => write!(f, "valid"),
            StoreState::Missing => write!(f, "missing"),
            StoreState::Stale(why) => write!(f, "stale: {why}"),
            StoreState::Corrupt(why) => write!(f, "corrupt: {why}"),
        }
    }
}

/// Checks the store at `store` against `source` and `config` (including the payload checksum).
pub fn check_store(
    source: impl AsRef<Path>,
    store: impl AsRef<Path>,
    config: &PreprocessConfig,
) -> Result<StoreState> {
    check_store_sources(&[source.as_ref().to_path_buf()], store, config)
}

/// [`check_store`] for a store built from several files.
pub fn check_store_sources(
    sources: &[PathBuf],
    store: impl AsRef<Path>,
    config: &PreprocessConfig,
) -> Result<StoreState> {
    Ok(match map_if_valid(sources, store.as_ref(), config)? {
        Ok(_) => StoreState::Valid,
        Err(state) => state,
    })
}

/// A store mapped into memory with its decoded header.
pub(crate) type Mapped = (Mmap, Header);

/// Maps a valid store, or says what is wrong with it. I/O errors on the source are errors.
pub(crate) fn map_if_valid(
    sources: &[PathBuf],
    store: &Path,
    config: &PreprocessConfig,
) -> Result<std::result::Result<Mapped, StoreState>> {
    let stamp = SourceStamp::of(sources)?;
    let mut file = match File::open(store) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err(StoreState::Missing)),
        Err(e) => {
            return Err(Error::file(
                store,
                format!("cannot open the data store: {e}"),
            ))
        }
    };
    let mut head = Vec::with_capacity(HEADER_LEN);
    (&mut file)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::file(store, e.to_string()))?;
    let header = match Header::decode(&head) {
        Ok(h) => h,
        Err(state) => return Ok(Err(state)),
    };
    if let Some(stale) = staleness(&header, &stamp, config) {
        return Ok(Err(StoreState::Stale(stale)));
    }
    // Last, as it reads the sources (up to 64 MiB each).
    let hash = content_hash(sources)?;
    if header.source_hash != hash {
        return Ok(Err(StoreState::Stale(format!(
            "source content changed (same size and mtime): stored hash {:016x}, now {hash:016x}",
            header.source_hash
        ))));
    }
    let file_len = file
        .metadata()
        .map_err(|e| Error::file(store, e.to_string()))?
        .len();
    if let Some(corrupt) = length_mismatch(&header, file_len) {
        return Ok(Err(StoreState::Corrupt(corrupt)));
    }
    // SAFETY: the store is only ever replaced by rename, never written in place, so the mapped
    // inode does not change under us (unless someone edits it by hand, which the checksum below
    // catches at open time).
    let mmap =
        unsafe { Mmap::map(&file) }.map_err(|e| Error::file(store, format!("cannot map: {e}")))?;
    if xxh3_64(&mmap[HEADER_LEN..]) != header.payload_checksum {
        return Ok(Err(StoreState::Corrupt("payload checksum mismatch".into())));
    }
    Ok(Ok((mmap, header)))
}

/// Why a well-formed header does not belong to these sources and options, if it does not.
fn staleness(header: &Header, now: &SourceStamp, config: &PreprocessConfig) -> Option<String> {
    if header.source_size != now.size {
        return Some(format!(
            "source size changed: stored {} bytes, now {}",
            header.source_size, now.size
        ));
    }
    if header.source_mtime_ns != now.mtime {
        return Some(format!(
            "source modified: stored mtime {} ns, now {} ns",
            header.source_mtime_ns, now.mtime
        ));
    }
    let want_range = config.max_ind_range.unwrap_or(0);
    if header.max_ind_range != want_range {
        return Some(format!(
            "built with max_ind_range {}, asked for {want_range} (0 = none)",
            header.max_ind_range
        ));
    }
    None
}

/// Why the header's counts do not match the file's length, if they do not.
fn length_mismatch(header: &Header, file_len: u64) -> Option<String> {
    if header.expected_payload_len() != Some(header.payload_len) || header.rows == 0 {
        let dict_len: u64 = header.table_sizes.iter().sum();
        return Some(format!(
            "payload length {} does not match {} rows and {dict_len} dictionary entries",
            header.payload_len, header.rows
        ));
    }
    if file_len != HEADER_LEN as u64 + header.payload_len {
        return Some(format!(
            "file is {file_len} bytes, header says {}",
            HEADER_LEN as u64 + header.payload_len
        ));
    }
    None
}
