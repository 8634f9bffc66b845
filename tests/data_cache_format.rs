//! The cache's format version: a cache of an older version (version 1 had a hand-written
//! checksum, version 2 has XXH3-64) is reported stale, rebuilt by `open_or_build`, and refused
//! with a clear error by `open`.

mod common;
use common::temp_dir;

use ttrec::data::cache::{FORMAT_VERSION, HEADER_LEN};
use ttrec::data::{
    check_cache, default_cache_path, CacheState, PreprocessConfig, PreprocessedDataset,
};

#[test]
fn an_old_format_version_is_stale_rebuilt_and_refused_by_open() {
    let dir = temp_dir("cache-version");
    let source = dir.join("train.txt");
    std::fs::write(&source, common::real_text()).unwrap();
    let cache = default_cache_path(&source);
    let config = PreprocessConfig::default();
    let (data, state) = PreprocessedDataset::open_or_build(&source, &config).unwrap();
    assert_eq!(state, CacheState::Missing);
    let rows = data.len();
    drop(data);

    // The version field follows the 8-byte magic.
    let mut bytes = std::fs::read(&cache).unwrap();
    assert!(bytes.len() > HEADER_LEN);
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        FORMAT_VERSION
    );
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(&cache, &bytes).unwrap();

    let state = check_cache(&source, &cache, &config).unwrap();
    let want = format!("format version 1, expected {FORMAT_VERSION}");
    assert!(
        matches!(&state, CacheState::Stale(why) if why.contains(&want)),
        "{state}"
    );
    let err = PreprocessedDataset::open(&source, &cache, &config).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&*cache.to_string_lossy()) && msg.contains(&want),
        "{msg}"
    );

    let (data, state) = PreprocessedDataset::open_or_build(&source, &config).unwrap();
    assert!(matches!(state, CacheState::Stale(_)), "{state}");
    assert_eq!(data.len(), rows);
    drop(data);
    assert_eq!(
        check_cache(&source, &cache, &config).unwrap(),
        CacheState::Valid
    );
    // Nothing but the source and the cache: no temporary file is left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    std::fs::remove_dir_all(dir).unwrap();
}
