//! The data store's format version: a store of an older version (version 1 had a hand-written
//! checksum, version 2 has XXH3-64, version 3 adds the source's content hash) is reported stale,
//! rebuilt by `open_or_build`, and refused with a clear error by `open`.

mod common;
use common::temp_dir;

use ttrec::data::store::{FORMAT_VERSION, HEADER_LEN};
use ttrec::data::{
    check_store, default_store_path, PreprocessConfig, PreprocessedDataset, StoreState,
};

#[test]
fn an_old_format_version_is_stale_rebuilt_and_refused_by_open() {
    let dir = temp_dir("store-version");
    let source = dir.join("train.txt");
    std::fs::write(&source, common::sample_text()).unwrap();
    let store = default_store_path(&source);
    let config = PreprocessConfig::default();
    let (data, state) = PreprocessedDataset::open_or_build(&source, &config).unwrap();
    assert_eq!(state, StoreState::Missing);
    let rows = data.len();
    drop(data);

    // The version field follows the 8-byte magic.
    let mut bytes = std::fs::read(&store).unwrap();
    assert!(bytes.len() > HEADER_LEN);
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        FORMAT_VERSION
    );
    // A version-2 store (the layout before the content hash) is stale, naming both versions.
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    std::fs::write(&store, &bytes).unwrap();
    let state = check_store(&source, &store, &config).unwrap();
    assert_eq!(
        state,
        StoreState::Stale(format!("format version 2, expected {FORMAT_VERSION}"))
    );
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(&store, &bytes).unwrap();

    let state = check_store(&source, &store, &config).unwrap();
    let want = format!("format version 1, expected {FORMAT_VERSION}");
    assert!(
        matches!(&state, StoreState::Stale(why) if why.contains(&want)),
        "{state}"
    );
    let err = PreprocessedDataset::open(&source, &store, &config).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&*store.to_string_lossy()) && msg.contains(&want),
        "{msg}"
    );

    let (data, state) = PreprocessedDataset::open_or_build(&source, &config).unwrap();
    assert!(matches!(state, StoreState::Stale(_)), "{state}");
    assert_eq!(data.len(), rows);
    drop(data);
    assert_eq!(
        check_store(&source, &store, &config).unwrap(),
        StoreState::Valid
    );
    // Nothing but the source and the store: no temporary file is left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    std::fs::remove_dir_all(dir).unwrap();
}
