//! The data store: contents, reuse, staleness and corruption detection; batches from it.

mod common;
use common::temp_dir;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use ttrec::data::{
    check_store, default_store_path, BatchOptions, CriteoReader, Dictionary, PreprocessConfig,
    PreprocessedDataset, Split, SplitMode, StoreState,
};

/// A private copy of the sample (the store goes next to it).
fn copy_sample(dir: &Path) -> PathBuf {
    let text = common::sample_text();
    let path = dir.join("train.txt");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn store_holds_the_preprocessed_rows_and_is_reused() {
    let dir = temp_dir("store-contents");
    let source = copy_sample(&dir);
    let config = PreprocessConfig::default();
    let (data, state) = PreprocessedDataset::open_or_build(&source, &config).unwrap();
    assert_eq!(state, StoreState::Missing);
    assert_eq!(data.store_path(), default_store_path(&source));
    assert_eq!(data.len(), 200);
    assert_eq!(data.source_lines(), 200);
    assert_eq!(data.malformed_counts(), [0; 4]);
    // Every row equals the streaming preprocessing of the same line.
    let mut dict = Dictionary::new();
    for (i, s) in CriteoReader::open(&source).unwrap().enumerate() {
        let (label, dense, sparse) = dict.preprocess(&s.unwrap(), None);
        let row = data.row(i as u64).unwrap();
        assert_eq!(
            (row.label, row.dense, row.sparse),
            (label, dense, sparse),
            "row {i}"
        );
    }
    assert_eq!(data.table_sizes(), dict.table_sizes());
    for c in 0..26 {
        assert_eq!(data.dictionary_values(c), dict.values(c), "C{}", c + 1);
    }
    assert!(data.row(200).is_none());
    // 200 rows in 7 days: the first 4 days have 29 rows, the last day 28 (test 14, val 14).
    assert_eq!(data.splits().val.end, 200);
    assert_eq!(
        (data.train(), data.test(), data.val()),
        (0..172, 172..186, 186..200)
    );
    drop(data);
    let (again, state) = PreprocessedDataset::open_or_build(&source, &config).unwrap();
    assert_eq!(state, StoreState::Valid);
    assert_eq!(again.len(), 200);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn stale_stores_are_detected_and_rebuilt() {
    let dir = temp_dir("store-stale");
    let source = copy_sample(&dir);
    let store = dir.join("elsewhere.bin");
    let config = PreprocessConfig::default();
    PreprocessedDataset::open_or_build_at(&source, &store, &config).unwrap();
    assert_eq!(
        check_store(&source, &store, &config).unwrap(),
        StoreState::Valid
    );

    // Another max_ind_range gives other ids: stale.
    let capped = PreprocessConfig {
        max_ind_range: Some(1000),
        ..config.clone()
    };
    assert!(
        matches!(check_store(&source, &store, &capped).unwrap(), StoreState::Stale(w) if w.contains("max_ind_range"))
    );

    // Appending a line changes the size.
    let first_line = std::fs::read_to_string(&source)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&source)
        .unwrap();
    writeln!(f, "{first_line}").unwrap();
    drop(f);
    assert!(
        matches!(check_store(&source, &store, &config).unwrap(), StoreState::Stale(w) if w.contains("size"))
    );
    let (data, state) = PreprocessedDataset::open_or_build_at(&source, &store, &config).unwrap();
    assert!(matches!(state, StoreState::Stale(_)));
    assert_eq!(data.len(), 201);
    drop(data);

    // Same size, other content, other mtime: flip a label and move the mtime.
    let text = std::fs::read_to_string(&source).unwrap();
    let flipped = match text.strip_prefix('0') {
        Some(rest) => format!("1{rest}"),
        None => format!("0{}", &text[1..]),
    };
    std::fs::write(&source, flipped).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&source)
        .unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
        .unwrap();
    drop(f);
    assert!(
        matches!(check_store(&source, &store, &config).unwrap(), StoreState::Stale(w) if w.contains("modified"))
    );
    let (data, _) = PreprocessedDataset::open_or_build_at(&source, &store, &config).unwrap();
    assert_eq!(
        data.row(0).unwrap().label,
        if text.starts_with('0') { 1.0 } else { 0.0 }
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Issue 16 item 9: an edit that keeps the size and the mtime is caught by the source's content
/// hash: the store is stale, `open` refuses it, `open_or_build` rebuilds it with the new contents.
#[test]
fn a_same_size_edit_with_the_mtime_restored_is_stale() {
    let dir = temp_dir("store-same-size");
    let source = copy_sample(&dir);
    let store = default_store_path(&source);
    let config = PreprocessConfig::default();
    let (data, _) = PreprocessedDataset::open_or_build(&source, &config).unwrap();
    let old_label = data.row(0).unwrap().label;
    drop(data);
    let new_label = common::criteo::flip_first_label_keeping_size_and_mtime(&source);
    assert_ne!(new_label, old_label);
    let state = check_store(&source, &store, &config).unwrap();
    assert!(
        matches!(&state, StoreState::Stale(w) if w.contains("content")),
        "{state}"
    );
    let err = PreprocessedDataset::open(&source, &store, &config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("stale") && err.contains("content"), "{err}");
    let (data, state) = PreprocessedDataset::open_or_build(&source, &config).unwrap();
    assert!(matches!(state, StoreState::Stale(_)), "{state}");
    assert_eq!(data.row(0).unwrap().label, new_label);
    drop(data);
    assert_eq!(
        check_store(&source, &store, &config).unwrap(),
        StoreState::Valid
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn corrupt_stores_are_detected_never_used_and_rebuilt() {
    let dir = temp_dir("store-corrupt");
    let source = copy_sample(&dir);
    let store = default_store_path(&source);
    let config = PreprocessConfig::default();
    let (good, _) = PreprocessedDataset::open_or_build(&source, &config).unwrap();
    let good_rows: Vec<_> = good.rows().to_vec();
    drop(good);
    let pristine = std::fs::read(&store).unwrap();

    type Corruption = Box<dyn Fn(&mut Vec<u8>)>;
    // (what, how, a word the reason must contain)
    let corruptions: Vec<(&str, Corruption, &str)> = vec![
        (
            "payload byte",
            Box::new(|b: &mut Vec<u8>| b[5000] ^= 0x10),
            "checksum",
        ),
        (
            "dictionary byte",
            Box::new(|b: &mut Vec<u8>| *b.last_mut().unwrap() ^= 1),
            "checksum",
        ),
        (
            "header byte",
            Box::new(|b: &mut Vec<u8>| b[45] ^= 1),
            "header",
        ),
        (
            "truncated",
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 4)),
            "bytes",
        ),
        (
            "extended",
            Box::new(|b: &mut Vec<u8>| b.extend_from_slice(&[0; 8])),
            "bytes",
        ),
        ("magic", Box::new(|b: &mut Vec<u8>| b[0] = b'X'), "magic"),
        (
            "shorter than a header",
            Box::new(|b: &mut Vec<u8>| b.truncate(100)),
            "shorter",
        ),
    ];
    for (what, corrupt, reason) in corruptions {
        let mut bytes = pristine.clone();
        corrupt(&mut bytes);
        std::fs::write(&store, &bytes).unwrap();
        let state = check_store(&source, &store, &config).unwrap();
        assert!(
            matches!(&state, StoreState::Corrupt(w) if w.contains(reason)),
            "{what}: {state}"
        );
        let err = PreprocessedDataset::open(&source, &store, &config)
            .unwrap_err()
            .to_string();
        assert!(err.contains("corrupt"), "{what}: {err}");
        let (data, state) = PreprocessedDataset::open_or_build(&source, &config).unwrap();
        assert!(matches!(state, StoreState::Corrupt(_)), "{what}");
        assert_eq!(data.rows(), &good_rows[..], "{what}: rebuilt rows differ");
    }
    // No temporary files are left behind by the rebuilds.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_mostly_malformed_source_builds_no_store() {
    let dir = temp_dir("store-junk");
    let source = dir.join("junk.txt");
    std::fs::write(&source, "a\nb\nc\n").unwrap();
    let err = PreprocessedDataset::open_or_build(&source, &PreprocessConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 of 3 lines are malformed"), "{err}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no store or temp file left"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn batches_cover_each_split_once_in_the_configured_order() {
    let dir = temp_dir("store-batches");
    let source = copy_sample(&dir);
    let config = PreprocessConfig {
        split: SplitMode::LastFraction(0.25),
        shuffle_seed: Some(4),
        ..Default::default()
    };
    let (data, _) = PreprocessedDataset::open_or_build(&source, &config).unwrap();
    assert_eq!(
        (data.train(), data.test(), data.val()),
        (0..150, 150..175, 175..200)
    );
    let options = BatchOptions {
        batch_size: 32,
        prefetch: 2,
        drop_last: false,
        epoch: 0,
    };
    let batches: Vec<_> = data
        .batches(Split::Train, &options)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(
        batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
        [32, 32, 32, 32, 22]
    );
    // The shuffled order, and each batch's contents gathered from exactly those rows.
    let order = data.order(Split::Train, 0);
    assert_ne!(order, (0..150).collect::<Vec<_>>());
    assert_eq!(order.iter().copied().collect::<HashSet<_>>().len(), 150);
    for (b, rows) in batches.iter().zip(order.chunks(32)) {
        for (k, &r) in rows.iter().enumerate() {
            let row = data.row(r).unwrap();
            assert_eq!(b.labels[k], row.label);
            assert_eq!(&b.dense[k * 13..(k + 1) * 13], &row.dense);
            assert_eq!(&b.sparse[k * 26..(k + 1) * 26], &row.sparse);
        }
        assert_eq!(
            b.table_ids(2),
            rows.iter()
                .map(|&r| data.row(r).unwrap().sparse[2])
                .collect::<Vec<_>>()
        );
    }
    // Another epoch, another order; evaluation splits stay in file order.
    assert_ne!(data.order(Split::Train, 1), order);
    assert_eq!(data.order(Split::Test, 3), (150..175).collect::<Vec<_>>());
    let drop_last = BatchOptions {
        drop_last: true,
        ..options.clone()
    };
    assert_eq!(data.batches(Split::Val, &drop_last).unwrap().count(), 0);
    assert_eq!(
        data.batches(Split::Val, &options)
            .unwrap()
            .map(|b| b.unwrap().len())
            .sum::<usize>(),
        25
    );
    // A loader dropped half-way stops its thread (this would hang otherwise).
    let mut loader = data
        .batches(
            Split::Train,
            &BatchOptions {
                batch_size: 1,
                prefetch: 1,
                ..options.clone()
            },
        )
        .unwrap();
    assert!(loader.next().is_some());
    drop(loader);
    assert!(data
        .batches(
            Split::Train,
            &BatchOptions {
                prefetch: 0,
                ..options.clone()
            }
        )
        .is_err());
    assert!(data
        .batches(
            Split::Train,
            &BatchOptions {
                batch_size: 0,
                ..options
            }
        )
        .is_err());
    std::fs::remove_dir_all(dir).unwrap();
}
