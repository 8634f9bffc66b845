//! The synthetic Criteo source: determinism, shapes, label rate, learnability, raw lines.

mod common;
use common::temp_dir;

use std::collections::HashMap;

use ttrec::data::{
    dense_transform, scaled_table_sizes, CriteoReader, SyntheticCriteo, KAGGLE_TABLE_SIZES,
};
use ttrec::metrics::roc_auc;

#[test]
fn deterministic_for_a_seed_and_independent_of_batching() {
    let a = SyntheticCriteo::new(42, 0.01).unwrap();
    let b = SyntheticCriteo::new(42, 0.01).unwrap();
    let c = SyntheticCriteo::new(43, 0.01).unwrap();
    assert_eq!(a.batch(1000, 256), b.batch(1000, 256));
    assert_ne!(a.batch(1000, 256), c.batch(1000, 256));
    // Sample i is the same whether made alone, in a batch, or by the background loader.
    let whole = a.batch(0, 300);
    let loaded: Vec<_> = a
        .batches(0, 100, 3, 2)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(loaded.len(), 3);
    assert_eq!(loaded[2], a.batch(200, 100));
    let s = a.sample(137);
    assert_eq!(whole.labels[137], s.label as f32);
    assert_eq!(&whole.sparse[137 * 26..138 * 26], &s.sparse);
    assert_eq!(s.dense, s.dense_raw.map(dense_transform));
}

#[test]
fn ids_fit_the_scaled_kaggle_tables_and_are_skewed() {
    assert_eq!(scaled_table_sizes(1.0).unwrap(), KAGGLE_TABLE_SIZES);
    let sizes = scaled_table_sizes(0.001).unwrap();
    assert_eq!(
        (sizes[2], sizes[8]),
        (10_132, 1),
        "C3 = ceil(10131227 / 1000), C9 = ceil(0.003)"
    );
    assert!(scaled_table_sizes(0.0).is_err() && scaled_table_sizes(f64::NAN).is_err());

    let g = SyntheticCriteo::new(1, 1.0).unwrap();
    assert_eq!(g.table_sizes(), &KAGGLE_TABLE_SIZES);
    let n = 50_000;
    let batch = g.batch(0, n);
    for (k, &id) in batch.sparse.iter().enumerate() {
        assert!(
            (id as u64) < KAGGLE_TABLE_SIZES[k % 26],
            "sample {} C{}: id {id}",
            k / 26,
            k % 26 + 1
        );
    }
    // Zipf-like: C3 (10M rows) repeats its ids; the most frequent one is a few percent of draws,
    // where a uniform draw would give about 1 in 10M.
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for id in batch.table_ids(2) {
        *counts.entry(id).or_default() += 1;
    }
    let top = *counts.values().max().unwrap() as f64 / n as f64;
    assert!(top > 0.02, "most frequent C3 id is only {top:.4} of draws");
    // Uniform draws from 10M ids would be almost all distinct; log-uniform ones about half.
    assert!(
        counts.len() < n * 6 / 10,
        "{} distinct C3 ids in {n} draws: not skewed",
        counts.len()
    );
    // Frequent ids are scattered over the table, not packed at its start.
    let mut frequent: Vec<_> = counts
        .iter()
        .filter(|(_, &k)| k >= 20)
        .map(|(&id, _)| id as u64)
        .collect();
    frequent.sort_unstable();
    assert!(
        *frequent.last().unwrap() > KAGGLE_TABLE_SIZES[2] / 2,
        "{frequent:?}"
    );
}

#[test]
fn missing_rates_and_heavy_tails_look_like_criteo() {
    let g = SyntheticCriteo::new(2, 0.01).unwrap();
    let n = 40_000u64;
    let samples: Vec<_> = (0..n).map(|i| g.sample(i)).collect();
    let missing =
        |j: usize| samples.iter().filter(|s| s.dense_raw[j].is_none()).count() as f64 / n as f64;
    assert!(
        (missing(0) - 0.45).abs() < 0.02,
        "I1 missing {}",
        missing(0)
    );
    assert!(missing(1) == 0.0);
    let c22 = samples
        .iter()
        .filter(|s| s.sparse_missing & (1 << 21) != 0)
        .count() as f64
        / n as f64;
    assert!((c22 - 0.76).abs() < 0.02, "C22 missing {c22}");
    let mut i5: Vec<i64> = samples.iter().filter_map(|s| s.dense_raw[4]).collect();
    i5.sort_unstable();
    let (median, max) = (i5[i5.len() / 2], *i5.last().unwrap());
    assert!(
        max > 100 * median.max(1),
        "I5 not heavy-tailed: median {median}, max {max}"
    );
    assert!(
        samples
            .iter()
            .any(|s| s.dense_raw[1].is_some_and(|x| x < 0)),
        "I2 has some negatives"
    );
}

#[test]
fn labels_are_about_a_quarter_positive_and_the_teacher_ranks_well() {
    let g = SyntheticCriteo::new(7, 0.05).unwrap();
    let n = 100_000u64;
    let samples: Vec<_> = (0..n).map(|i| g.sample(i)).collect();
    let labels: Vec<f32> = samples.iter().map(|s| s.label as f32).collect();
    let rate = labels.iter().sum::<f32>() as f64 / n as f64;
    assert!((0.23..0.27).contains(&rate), "positive rate {rate}");
    let logits: Vec<f32> = samples.iter().map(|s| s.logit).collect();
    let auc = roc_auc(&labels, &logits).unwrap();
    eprintln!("positive rate {rate:.4}, teacher AUC {auc:.4}");
    assert!((0.76..0.86).contains(&auc), "teacher AUC {auc}");
    // A constant predictor has nothing to rank.
    assert_eq!(roc_auc(&labels, &vec![0.25; n as usize]).unwrap(), 0.5);
}

/// Logistic regression on hashed one-hot ids plus the dense features, plain SGD.
struct HashedLogistic {
    weights: Vec<f32>,
    dense: [f32; 13],
    bias: f32,
}

const BUCKETS: usize = 1 << 18;

impl HashedLogistic {
    fn features(sparse: &[u32]) -> impl Iterator<Item = usize> + '_ {
        sparse.iter().enumerate().map(|(c, &id)| {
            let h = ((c as u64) << 32 | id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (h >> 40) as usize % BUCKETS
        })
    }
    fn score(&self, dense: &[f32], sparse: &[u32]) -> f32 {
        let mut z = self.bias
            + dense
                .iter()
                .zip(&self.dense)
                .map(|(x, w)| x * w)
                .sum::<f32>();
        for f in Self::features(sparse) {
            z += self.weights[f];
        }
        z
    }
    fn step(&mut self, dense: &[f32], sparse: &[u32], label: f32, lr: f32) {
        let p = 1.0 / (1.0 + (-self.score(dense, sparse)).exp());
        let g = p - label;
        self.bias -= lr * g;
        for (w, x) in self.dense.iter_mut().zip(dense) {
            *w -= lr * 0.1 * g * x;
        }
        for f in Self::features(sparse) {
            self.weights[f] -= lr * g;
        }
    }
}

#[test]
fn a_model_that_learns_beats_a_constant_predictor() {
    let g = SyntheticCriteo::new(3, 0.01).unwrap();
    let train = g.batch(0, 100_000);
    let test = g.batch(1 << 40, 30_000);
    let mut model = HashedLogistic {
        weights: vec![0.0; BUCKETS],
        dense: [0.0; 13],
        bias: 0.0,
    };
    for _epoch in 0..2 {
        for i in 0..train.len() {
            model.step(
                &train.dense[i * 13..(i + 1) * 13],
                &train.sparse[i * 26..(i + 1) * 26],
                train.labels[i],
                0.05,
            );
        }
    }
    let scores: Vec<f32> = (0..test.len())
        .map(|i| {
            model.score(
                &test.dense[i * 13..(i + 1) * 13],
                &test.sparse[i * 26..(i + 1) * 26],
            )
        })
        .collect();
    let auc = roc_auc(&test.labels, &scores).unwrap();
    eprintln!("held-out AUC of hashed logistic regression: {auc:.4}");
    assert!(
        auc > 0.7,
        "held-out AUC of hashed logistic regression: {auc}"
    );
}

#[test]
fn raw_lines_read_back_as_the_same_samples() {
    let dir = temp_dir("synth-raw");
    let g = SyntheticCriteo::new(5, 0.001).unwrap();
    for name in ["s.txt", "s.txt.gz"] {
        let path = dir.join(name);
        g.write_raw(&path, 2000).unwrap();
        let gz = std::fs::read(&path).unwrap()[..2] == [0x1f, 0x8b];
        assert_eq!(gz, name.ends_with(".gz"), "{name}");
        let mut n = 0u64;
        for s in CriteoReader::open(&path).unwrap() {
            let s = s.unwrap();
            let want = g.sample(s.line - 1);
            assert_eq!(s.label, want.label);
            assert_eq!(s.dense, want.dense_raw);
            for c in 0..26 {
                let expect =
                    (want.sparse_missing & (1 << c) == 0).then(|| g.raw_value(c, want.sparse[c]));
                assert_eq!(s.sparse[c], expect, "line {} C{}", s.line, c + 1);
            }
            n += 1;
        }
        assert_eq!(n, 2000);
    }
    std::fs::remove_dir_all(dir).unwrap();
}
