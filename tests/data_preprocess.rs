//! dlrm preprocessing: hand-computed rows of the sample, dictionaries, split sizes, shuffle.

mod common;
use common::{sample_path, sample_text};

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ttrec::data::{
    categorical_value, dense_transform, inspect_file, row_order, split_ranges, CriteoReader,
    Dictionary, SplitMode, SplitRanges,
};

// The expected values are written out by hand on purpose (not ln(2) from std).
#[allow(clippy::approx_constant, clippy::excessive_precision)]
#[test]
fn first_sample_line_by_hand() {
    let mut reader = CriteoReader::open(sample_path()).unwrap();
    let s = reader.next_sample().unwrap().unwrap();
    let mut dict = Dictionary::new();
    let (label, dense, ids) = dict.preprocess(&s, None);
    assert_eq!(label, 0.0);
    // Raw I1..I13 = 1 1 5 0 1382 4 15 2 181 1 2 _ 2; ln(x + 1) by hand, missing -> 0.
    let want = [
        0.6931472, 0.6931472, 1.7917595, 0.0, 7.2320103, 1.6094379, 2.7725887, 1.0986123,
        5.2040067, 0.6931472, 1.0986123, 0.0, 1.0986123,
    ];
    for (j, (&got, &w)) in dense.iter().zip(&want).enumerate() {
        assert!((got - w).abs() < 1e-6, "I{}: {got} vs {w}", j + 1);
    }
    // First row: every column's first value gets id 0.
    assert_eq!(ids, [0; 26]);
    // C1 = 68fd1e64 = 1761418852; % 10M = 1418852. C22 is missing -> value 0.
    assert_eq!(categorical_value(s.sparse[0], None), 1_761_418_852);
    assert_eq!(categorical_value(s.sparse[0], Some(10_000_000)), 1_418_852);
    assert_eq!(categorical_value(s.sparse[21], Some(10_000_000)), 0);
    assert_eq!(dict.values(0), [1_761_418_852]);
}

#[test]
fn dense_transform_clips_negatives_and_maps_missing_to_zero() {
    assert_eq!(dense_transform(None), 0.0);
    assert_eq!(dense_transform(Some(-3)), 0.0);
    assert_eq!(dense_transform(Some(0)), 0.0);
    assert!((dense_transform(Some(1_000_000)) - 13.815512).abs() < 1e-5);
}

#[test]
fn dictionary_ids_and_table_sizes_match_a_naive_count_on_the_sample() {
    let text = sample_text();
    for range in [None, Some(7u64), Some(1000)] {
        let mut sets: Vec<HashSet<u64>> = vec![HashSet::new(); 26];
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            for c in 0..26 {
                let v = if f[14 + c].is_empty() {
                    0
                } else {
                    u64::from_str_radix(f[14 + c], 16).unwrap()
                };
                sets[c].insert(range.map_or(v, |r| v % r));
            }
        }
        let naive: Vec<u64> = sets.iter().map(|s| s.len() as u64).collect();
        let report = inspect_file(sample_path(), range).unwrap();
        assert_eq!(
            report.table_sizes.to_vec(),
            naive,
            "max_ind_range {range:?}"
        );

        let mut dict = Dictionary::new();
        for s in CriteoReader::open(sample_path()).unwrap() {
            let s = s.unwrap();
            let (_, _, ids) = dict.preprocess(&s, range);
            for c in 0..26 {
                // ids are dense and map back to the value they came from.
                assert!((ids[c] as u64) < naive[c]);
                assert_eq!(
                    dict.values(c)[ids[c] as usize],
                    categorical_value(s.sparse[c], range)
                );
            }
        }
        assert_eq!(dict.table_sizes().to_vec(), naive);
        let rebuilt =
            Dictionary::from_values((0..26).map(|c| dict.values(c).to_vec()).collect()).unwrap();
        assert_eq!(rebuilt.id(4, dict.values(4)[3]), Some(3));
    }
    // Facts the sample is built with (tests/common/criteo.rs): C9 takes 2 values, C22 is mostly
    // empty, 44 of 200 labels are positive.
    let report = inspect_file(sample_path(), None).unwrap();
    assert_eq!(report.table_sizes[8], 2);
    assert!((report.sparse_missing_rate[21] - 0.84).abs() < 1e-12);
    assert!((report.positive_rate - 0.22).abs() < 1e-12);
}

#[test]
fn kaggle_split_sizes_match_dlrm() {
    let s = split_ranges(45_840_617, SplitMode::Days(7)).unwrap();
    assert_eq!(s.train.end - s.train.start, 39_291_958);
    assert_eq!(s.test.end - s.test.start, 3_274_330);
    assert_eq!(s.val.end - s.val.start, 3_274_329);
    assert_eq!(39_291_958usize.div_ceil(128), 306_969);
    // 100 rows: days of 15, 15, 14, 14, 14, 14, 14; last day 7 + 7.
    assert_eq!(
        split_ranges(100, SplitMode::Days(7)).unwrap(),
        SplitRanges {
            train: 0..86,
            test: 86..93,
            val: 93..100
        }
    );
    assert_eq!(
        split_ranges(100, SplitMode::LastFraction(0.1)).unwrap(),
        SplitRanges {
            train: 0..90,
            test: 90..95,
            val: 95..100
        }
    );
    assert!(split_ranges(10, SplitMode::Days(1)).is_err());
    assert!(split_ranges(10, SplitMode::LastFraction(1.5)).is_err());
}

#[test]
fn day_split_matches_explicit_day_chunks_on_random_sizes() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..200 {
        let rows = rng.random_range(0..100_000u64);
        let days = rng.random_range(2..30u32);
        // Explicit chunks: the first rows % days days take one extra row.
        let mut bounds = vec![0u64];
        for d in 0..days as u64 {
            let len = rows / days as u64 + u64::from(d < rows % days as u64);
            bounds.push(bounds.last().unwrap() + len);
        }
        let last_start = bounds[days as usize - 1];
        let last_len = rows - last_start;
        let s = split_ranges(rows, SplitMode::Days(days)).unwrap();
        assert_eq!(s.train, 0..last_start, "rows {rows} days {days}");
        assert_eq!(s.test, last_start..last_start + last_len.div_ceil(2));
        assert_eq!(s.val.end, rows);
    }
}

#[test]
fn shuffle_is_a_seeded_permutation() {
    let a = row_order(10..1010, Some(9));
    assert_eq!(a, row_order(10..1010, Some(9)));
    assert_ne!(a, row_order(10..1010, Some(10)));
    assert_ne!(a, (10..1010).collect::<Vec<_>>());
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (10..1010).collect::<Vec<_>>());
    assert_eq!(row_order(0..5, None), [0, 1, 2, 3, 4]);
}
