//! The LFU row cache of TT tables (TT-Rec's "cache"): the most frequently looked-up rows are kept
//! as a dense `[C, D]` table, served from it and trained directly, while the other rows are
//! computed from the cores.
//!
//! How it works (kernels in `shaders/tt_cache.wgsl`, launchers in `kernels::tt_cache`):
//! - every training forward counts each lookup's key (`key = key offset of its table + id`) in an
//!   open-addressing hash table of [`CacheConfig::hash_entries`] entries (linear probing over at
//!   most [`CacheConfig::max_probe`] entries; a key that finds no entry is reported in
//!   [`CacheStats::dropped`], never silently lost) and looks up its cache slot;
//! - a refresh chooses the members: the [`CacheConfig::rows`] non-empty entries of highest count
//!   (ties: the smaller key first), all of them when fewer are non-empty, and gives each member a
//!   slot; every other entry loses its slot (no stale slot survives a refresh);
//! - lookups of members add `scale * cache[slot]` to their bag, and the cached rows train per
//!   occurrence in lookup order (SGD, or row-wise Adagrad with one state per cached row).
//!
//! Slot numbers may differ between runs (a key's entry depends on the order of concurrent
//! inserts when keys collide); no output does: a cached row's value depends only on its key.
//! `twin::tt_cache` is the plain-Rust model of all of it that the tests compare the kernels
//! with.

use thiserror::Error as ThisError;

/// A hash entry without a key (keys must be below it).
pub const EMPTY: u32 = u32::MAX;
/// No slot: the key is not a member of the cache.
pub const NONE: u32 = u32::MAX;
/// Largest key the hash table can hold (`EMPTY - 1`): a group's tables together may have at
/// most `MAX_KEY + 1` rows.
pub const MAX_KEY: u32 = u32::MAX - 1;
/// u32 words of the stats buffer: `[lookups, hits, dropped, members, occupied, r, r, r]`; the
/// probe adds the first three, a refresh writes the next two, words 5..8 are free for the
/// caller (e.g. refresh counts).
pub const STATS_WORDS: usize = 8;
/// u32 words of a refresh's selection output: `[members, occupied, ...]` (the rest is the
/// radix select's working state).
pub const SELECTION_WORDS: usize = 8;

/// The default probe limit of the hash table.
pub const DEFAULT_MAX_PROBE: usize = 32;
/// The smallest default hash table (entries).
pub const MIN_HASH_ENTRIES: usize = 1 << 16;
/// The largest hash table [`CacheConfig::validate`] accepts: 2^26 entries (three u32 arrays of
/// 256 MiB each).
pub const MAX_HASH_ENTRIES: usize = 1 << 26;
/// The largest hash table [`CacheConfig::for_table`] picks by default: 2^24 entries (three u32
/// arrays of 64 MiB, within lavapipe's 128 MiB per binding).
pub const DEFAULT_HASH_CAP: usize = 1 << 24;

/// How a table's LFU cache is sized and when it refreshes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Cache rows C: members at most.
    pub rows: usize,
    /// Hash table entries H, a power of two, at least `rows` (4x or more keeps probe chains
    /// short).
    pub hash_entries: usize,
    /// Entries a key may probe before it is reported as dropped.
    pub max_probe: usize,
    /// Training steps before the first refresh (rows are served from the cores until then).
    pub warmup_steps: usize,
    /// Training steps between refreshes after the first.
    pub refresh_every: usize,
}

/// What is wrong with a [`CacheConfig`].
#[derive(Clone, Debug, PartialEq, ThisError)]
#[non_exhaustive]
pub enum CacheConfigError {
    #[error("cache fraction {fraction} is not in (0, 1]")]
    Fraction { fraction: f64 },
    #[error("a cache of 0 rows (turn the cache off instead)")]
    NoRows,
    #[error("{rows} cache rows for a table of {table_rows} rows")]
    MoreRowsThanTable { rows: usize, table_rows: u64 },
    #[error("{entries} hash entries is not a power of two")]
    HashNotPowerOfTwo { entries: usize },
    #[error("{entries} hash entries cannot hold {rows} cache rows")]
    HashTooSmall { entries: usize, rows: usize },
    #[error("{entries} hash entries is over the limit of {max}")]
    HashTooLarge { entries: usize, max: usize },
    #[error("max_probe {max_probe} is not in 1..={entries} (the hash entries)")]
    MaxProbe { max_probe: usize, entries: usize },
    #[error("refresh_every is 0")]
    RefreshEveryZero,
    #[error("tables of {rows} rows in all have keys over {max}", max = MAX_KEY)]
    TooManyKeys { rows: u64 },
}

impl From<CacheConfigError> for crate::Error {
    fn from(e: CacheConfigError) -> Self {
        crate::Error::input(None, format!("cache: {e}"))
    }
}

impl CacheConfig {
    /// A cache of `ceil(fraction * num_rows)` rows (at most `num_rows`) for a table of
    /// `num_rows` rows. Hash entries: the next power of two >= max(4 C, 65,536), capped at
    /// [`DEFAULT_HASH_CAP`] (2^24) but never below the next power of two >= 2 C; at most
    /// [`MAX_HASH_ENTRIES`]. Probe limit [`DEFAULT_MAX_PROBE`]; first refresh after 100 steps,
    /// then every 1,000 steps.
    pub fn for_table(num_rows: u64, fraction: f64) -> Result<Self, CacheConfigError> {
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(CacheConfigError::Fraction { fraction });
        }
        let rows = ((fraction * num_rows as f64).ceil() as u64).min(num_rows) as usize;
        let wanted = (4 * rows).max(MIN_HASH_ENTRIES).next_power_of_two();
        let hash_entries = wanted
            .min(DEFAULT_HASH_CAP)
            .max((2 * rows).next_power_of_two())
            .min(MAX_HASH_ENTRIES);
        let config = CacheConfig {
            rows,
            hash_entries,
            max_probe: DEFAULT_MAX_PROBE,
            warmup_steps: 100,
            refresh_every: 1000,
        };
        config.validate(num_rows)?;
        Ok(config)
    }

    /// Checks the config for a table (or group of tables) of `table_rows` rows (keys).
    pub fn validate(&self, table_rows: u64) -> Result<(), CacheConfigError> {
        let h = self.hash_entries;
        if self.rows == 0 {
            return Err(CacheConfigError::NoRows);
        }
        if self.rows as u64 > table_rows {
            return Err(CacheConfigError::MoreRowsThanTable {
                rows: self.rows,
                table_rows,
            });
        }
        if table_rows > MAX_KEY as u64 + 1 {
            return Err(CacheConfigError::TooManyKeys { rows: table_rows });
        }
        if !h.is_power_of_two() {
            return Err(CacheConfigError::HashNotPowerOfTwo { entries: h });
        }
        if h > MAX_HASH_ENTRIES {
            return Err(CacheConfigError::HashTooLarge {
                entries: h,
                max: MAX_HASH_ENTRIES,
            });
        }
        if h < self.rows {
            return Err(CacheConfigError::HashTooSmall {
                entries: h,
                rows: self.rows,
            });
        }
        if self.max_probe == 0 || self.max_probe > h {
            return Err(CacheConfigError::MaxProbe {
                max_probe: self.max_probe,
                entries: h,
            });
        }
        if self.refresh_every == 0 {
            return Err(CacheConfigError::RefreshEveryZero);
        }
        Ok(())
    }
}

/// Counters of a cache, from its stats buffer ([`STATS_WORDS`] u32 words). The GPU counters are
/// u32 and wrap after 2^32 lookups: read them (and zero the buffer) at least that often and add
/// the readings up here in u64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups probed.
    pub lookups: u64,
    /// Lookups served from the cache.
    pub hits: u64,
    /// Counted lookups whose key found no hash entry within the probe limit (not counted).
    pub dropped: u64,
    /// Members chosen by the last refresh.
    pub members: u64,
    /// Non-empty hash entries (distinct keys seen) at the last refresh.
    pub occupied: u64,
}

impl CacheStats {
    /// The counters of a stats buffer's words.
    pub fn from_words(words: &[u32]) -> Self {
        let w = |i: usize| words.get(i).copied().unwrap_or(0) as u64;
        CacheStats {
            lookups: w(0),
            hits: w(1),
            dropped: w(2),
            members: w(3),
            occupied: w(4),
        }
    }

    /// Adds the counters of a later reading (lookups, hits, dropped); members and occupied are
    /// the later reading's.
    pub fn accumulate(&mut self, later: &CacheStats) {
        self.lookups += later.lookups;
        self.hits += later.hits;
        self.dropped += later.dropped;
        self.members = later.members;
        self.occupied = later.occupied;
    }

    /// Hits per lookup (0 without lookups).
    pub fn hit_rate(&self) -> f64 {
        if self.lookups == 0 {
            0.0
        } else {
            self.hits as f64 / self.lookups as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_table_sizes_and_validates() {
        let c = CacheConfig::for_table(1_000_000, 0.1).unwrap();
        assert_eq!(c.rows, 100_000);
        assert_eq!(c.hash_entries, 1 << 19);
        let small = CacheConfig::for_table(1000, 0.01).unwrap();
        assert_eq!((small.rows, small.hash_entries), (10, 1 << 16));
        let big = CacheConfig::for_table(1 << 26, 0.1).unwrap();
        assert_eq!(big.hash_entries, 1 << 24);
        assert!(matches!(
            CacheConfig::for_table(1 << 30, 0.5),
            Err(CacheConfigError::HashTooSmall { .. })
        ));
        assert!(matches!(
            CacheConfig::for_table(10, 0.0),
            Err(CacheConfigError::Fraction { .. })
        ));
        let mut bad = c;
        bad.hash_entries = 3000;
        assert!(matches!(
            bad.validate(1_000_000),
            Err(CacheConfigError::HashNotPowerOfTwo { .. })
        ));
        bad.hash_entries = 1 << 16;
        assert!(matches!(
            bad.validate(1_000_000),
            Err(CacheConfigError::HashTooSmall { .. })
        ));
        bad = c;
        bad.max_probe = 0;
        assert!(matches!(
            bad.validate(1_000_000),
            Err(CacheConfigError::MaxProbe { .. })
        ));
        bad = c;
        bad.refresh_every = 0;
        assert!(bad.validate(1_000_000).is_err());
        assert!(matches!(
            c.validate(1000),
            Err(CacheConfigError::MoreRowsThanTable { .. })
        ));
        let e: crate::Error = CacheConfigError::NoRows.into();
        assert!(e.to_string().contains("0 rows"), "{e}");
    }
}
