//! A Criteo-shaped synthetic source: the default data when no click log is at hand.
//!
//! Every sample is a pure function of `(seed, index)` (stateless hashing, no RNG state), so
//! generation is deterministic, needs no storage, and any range of samples can be made in any
//! order or in parallel. Ids come out already dense (`< table size`), so no dictionary is needed.
//!
//! - Dense: 13 count-like features with Criteo-like missing rates; `ln(1 + x)` is exponential-ish
//!   (x is Pareto-tailed); a few columns have small negative values, as in Kaggle's I2.
//! - Categorical: 26 features with Kaggle's table sizes (scaled), ids drawn log-uniformly (a
//!   Zipf law with exponent 1) and scattered over the table by a per-column bijection; Criteo-like
//!   missing rates (missing = id 0).
//! - Labels: Bernoulli(sigmoid(teacher logit)); the hidden teacher sums per-id random effects on
//!   every categorical column, dense terms, a categorical x categorical and a dense x categorical
//!   interaction; its gain and bias are calibrated at construction to a logit spread that gives an
//!   AUC near 0.8 and about 25% positives.

use std::io::Write;
use std::path::Path;

use super::batches::{Batch, BatchLoader};
use super::hash::mix64;
use super::preprocess::dense_transform;
use super::{scaled_table_sizes, NUM_DENSE, NUM_SPARSE};
use crate::{Error, Result};

/// Share of missing values per dense column, roughly Kaggle's.
const DENSE_MISSING: [f64; NUM_DENSE] = [
    0.45, 0.0, 0.21, 0.22, 0.03, 0.22, 0.04, 0.0005, 0.04, 0.45, 0.04, 0.76, 0.22,
];
/// Mean of `ln(1 + x)` per dense column (the spread of its heavy tail).
const DENSE_LOG_MEAN: [f64; NUM_DENSE] = [
    0.9, 2.2, 2.0, 1.7, 6.5, 3.5, 1.5, 2.3, 3.2, 0.5, 1.0, 0.6, 1.8,
];
/// Share of missing values per categorical column, roughly Kaggle's.
const SPARSE_MISSING: [f64; NUM_SPARSE] = [
    0.0, 0.0, 0.03, 0.03, 0.0, 0.12, 0.0, 0.0, 0.0, 0.0, 0.0, 0.03, 0.0, 0.0, 0.0, 0.03, 0.0, 0.0,
    0.44, 0.44, 0.03, 0.76, 0.0, 0.03, 0.44, 0.44,
];
/// Spread of the teacher's logit: with Bernoulli labels the teacher's own AUC is about 0.83 and
/// a hashed logistic regression on 100k samples reaches about 0.77 (Criteo models: 0.78-0.80).
const TARGET_LOGIT_STD: f64 = 1.6;
/// Wanted share of positive labels (Criteo Kaggle has about 25.6%).
pub const TARGET_POSITIVE_RATE: f64 = 0.25;
/// Samples used to calibrate the teacher, drawn from indices no caller uses (the top of u64).
const PILOT_SAMPLES: u64 = 20_000;
const PILOT_BASE: u64 = u64::MAX - PILOT_SAMPLES;
/// The categorical x categorical interaction: (C6, C14); the dense x categorical one: (I5, C9).
const PAIR: (usize, usize) = (5, 13);
const DENSE_BY_CAT: (usize, usize) = (4, 8);
const LN1P_TABLE_LEN: usize = 4096;
/// How often (in samples) [`SyntheticCriteo::write_raw_with_progress`] reports.
pub const PROGRESS_EVERY: u64 = 16_384;

/// One synthetic sample, with what the teacher knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticSample {
    pub label: u8,
    /// Raw I1..I13 (`None` = missing), as they would appear in a Criteo line.
    pub dense_raw: [Option<i64>; NUM_DENSE],
    /// I1..I13 after dlrm's transform (`dense_transform(dense_raw)`).
    pub dense: [f32; NUM_DENSE],
    /// Dense ids, `< table size`; 0 where `sparse_missing` is set.
    pub sparse: [u32; NUM_SPARSE],
    /// Bit c set when C(c+1) is missing.
    pub sparse_missing: u32,
    /// The hidden teacher's logit: the Bayes-optimal score.
    pub logit: f32,
}

/// Criteo-shaped synthetic data, generated on the fly. Sample `i` depends only on `(seed, i)`.
#[derive(Debug, Clone)]
pub struct SyntheticCriteo {
    pub seed: u64,
    pub scale: f64,
    table_sizes: [u64; NUM_SPARSE],
    ln_sizes: [f64; NUM_SPARSE],
    scatter_mul: [u64; NUM_SPARSE],
    scatter_add: [u64; NUM_SPARSE],
    /// `u64::MAX / n` per column: `% n` by multiplication (Barrett), a 64-bit division is slow.
    barrett: [u64; NUM_SPARSE],
    /// `dense_transform(x)` for small x, which is most of them.
    ln1p_table: Box<[f32]>,
    sparse_missing: [u32; NUM_SPARSE],
    sparse_weight: [f32; NUM_SPARSE],
    column_salt: [u64; NUM_SPARSE],
    dense_missing: [u32; NUM_DENSE],
    dense_log_mean: [f64; NUM_DENSE],
    dense_weight: [f32; NUM_DENSE],
    dense_center: [f32; NUM_DENSE],
    gain: f32,
    bias: f32,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Threshold on 32 random bits that is crossed with probability `p`.
fn threshold(p: f64) -> u32 {
    (p * 4_294_967_296.0).min(u32::MAX as f64) as u32
}

/// A roughly standard normal value from 64 random bits (sum of two uniforms, variance 1).
#[inline(always)]
fn normalish(h: u64) -> f32 {
    let a = (h >> 40) as f32 * (1.0 / 16_777_216.0);
    let b = (h & 0xff_ffff) as f32 * (1.0 / 16_777_216.0);
    (a + b - 1.0) * 2.449_489_7
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl SyntheticCriteo {
    /// A generator with Kaggle's table sizes times `scale` (see [`scaled_table_sizes`]).
    // Loops index several per-column arrays at once; iterators would obscure that.
    #[allow(clippy::needless_range_loop)]
    pub fn new(seed: u64, scale: f64) -> Result<Self> {
        let table_sizes = scaled_table_sizes(scale)?;
        let salt = |k: u64| mix64(seed ^ mix64(k));
        let mut s = SyntheticCriteo {
            seed,
            scale,
            table_sizes,
            ln_sizes: table_sizes.map(|n| (n as f64 + 1.0).ln()),
            scatter_mul: [1; NUM_SPARSE],
            scatter_add: [0; NUM_SPARSE],
            barrett: table_sizes.map(|n| u64::MAX / n),
            ln1p_table: (0..LN1P_TABLE_LEN as i64)
                .map(|x| dense_transform(Some(x)))
                .collect(),
            sparse_missing: SPARSE_MISSING.map(threshold),
            sparse_weight: [0.0; NUM_SPARSE],
            column_salt: std::array::from_fn(|c| salt(1000 + c as u64)),
            dense_missing: DENSE_MISSING.map(threshold),
            dense_log_mean: DENSE_LOG_MEAN,
            dense_weight: [0.0; NUM_DENSE],
            dense_center: DENSE_LOG_MEAN.map(|m| m as f32),
            gain: 1.0,
            bias: 0.0,
        };
        for c in 0..NUM_SPARSE {
            let n = table_sizes[c];
            let mut a = salt(2000 + c as u64) % n;
            while n > 1 && gcd(a.max(1), n) != 1 {
                a += 1;
            }
            s.scatter_mul[c] = a.max(1) % n.max(2);
            s.scatter_add[c] = salt(3000 + c as u64) % n;
            // Effects on every column, some stronger, so there is signal of every kind to learn.
            s.sparse_weight[c] = 0.3 + 0.5 * ((salt(4000 + c as u64) >> 40) as f32 / 16_777_216.0);
        }
        for j in 0..NUM_DENSE {
            s.dense_weight[j] = 0.25 * normalish(salt(5000 + j as u64));
        }
        s.calibrate();
        Ok(s)
    }

    /// Sets `gain` so the logit has [`TARGET_LOGIT_STD`], then `bias` so the mean predicted
    /// probability is [`TARGET_POSITIVE_RATE`], on pilot samples.
    fn calibrate(&mut self) {
        self.gain = 1.0;
        self.bias = 0.0;
        let raw: Vec<f64> = (0..PILOT_SAMPLES)
            .map(|i| self.sample(PILOT_BASE + i).logit as f64)
            .collect();
        let mean = raw.iter().sum::<f64>() / raw.len() as f64;
        let var = raw.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / raw.len() as f64;
        let gain = TARGET_LOGIT_STD / var.sqrt().max(1e-9);
        let centered: Vec<f64> = raw.iter().map(|x| (x - mean) * gain).collect();
        let rate = |b: f64| {
            centered
                .iter()
                .map(|x| 1.0 / (1.0 + (-(x + b)).exp()))
                .sum::<f64>()
                / centered.len() as f64
        };
        let (mut lo, mut hi) = (-20.0, 20.0);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if rate(mid) < TARGET_POSITIVE_RATE {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.gain = gain as f32;
        self.bias = (0.5 * (lo + hi) - mean * gain) as f32;
    }

    /// Table sizes C1..C26 (ids are below these).
    pub fn table_sizes(&self) -> &[u64; NUM_SPARSE] {
        &self.table_sizes
    }

    #[inline(always)]
    fn effect(&self, c: usize, key: u64) -> f32 {
        normalish(mix64(self.column_salt[c] ^ key))
    }

    /// Sample `index`.
    // Loops index several per-column arrays at once; iterators would obscure that.
    #[allow(clippy::needless_range_loop)]
    #[inline]
    pub fn sample(&self, index: u64) -> SyntheticSample {
        let base = mix64(self.seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut dense_raw = [None; NUM_DENSE];
        let mut dense = [0f32; NUM_DENSE];
        let mut logit = 0f32;
        for j in 0..NUM_DENSE {
            let h = mix64(base.wrapping_add((j as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03)));
            if (h as u32) < self.dense_missing[j] {
                continue;
            }
            // ln(1 + x) ~ Exponential(mean m): x is Pareto-tailed, as counts in click logs are.
            let u = ((h >> 32) as f64 + 0.5) * (1.0 / 4_294_967_296.0);
            let x = ((-u.ln() * self.dense_log_mean[j]).exp().floor() - 1.0).min(1e15) as i64;
            // Kaggle's I2 has a few small negatives (clipped to 0 by dlrm).
            let x = if j == 1 && (h >> 32) & 0x1f == 0 {
                -1 - ((h >> 37) & 1) as i64
            } else {
                x
            };
            dense_raw[j] = Some(x);
            dense[j] = match self.ln1p_table.get(x.max(0) as usize) {
                Some(&v) => v,
                None => dense_transform(Some(x)),
            };
            logit += self.dense_weight[j] * (dense[j] - self.dense_center[j]);
        }
        let mut sparse = [0u32; NUM_SPARSE];
        let mut missing = 0u32;
        for c in 0..NUM_SPARSE {
            let h = mix64(base ^ (c as u64 + 100).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            if (h as u32) < self.sparse_missing[c] {
                missing |= 1 << c;
                logit += self.sparse_weight[c] * self.effect(c, u64::MAX);
                continue;
            }
            let n = self.table_sizes[c];
            let u = ((h >> 32) as f64 + 0.5) * (1.0 / 4_294_967_296.0);
            let rank = ((u * self.ln_sizes[c]).exp() as u64)
                .saturating_sub(1)
                .min(n - 1);
            let id = self.mod_n(c, rank * self.scatter_mul[c] + self.scatter_add[c]);
            sparse[c] = id as u32;
            logit += self.sparse_weight[c] * self.effect(c, id);
        }
        let (a, b) = PAIR;
        logit += 0.8 * self.effect(a, ((sparse[a] as u64) << 32) | sparse[b] as u64 | (1 << 63));
        let (j, c) = DENSE_BY_CAT;
        logit += 0.3
            * (dense[j] - self.dense_center[j])
            * self.effect(c, (sparse[c] as u64) | (1 << 62));
        let logit = self.gain * logit + self.bias;
        let u = (mix64(base ^ 0x5851_f42d_4c95_7f2d) >> 40) as f32 * (1.0 / 16_777_216.0);
        let label = (u < sigmoid(logit)) as u8;
        SyntheticSample {
            label,
            dense_raw,
            dense,
            sparse,
            sparse_missing: missing,
            logit,
        }
    }

    /// `x % table_sizes[c]` without a division.
    #[inline(always)]
    fn mod_n(&self, c: usize, x: u64) -> u64 {
        let n = self.table_sizes[c];
        let q = ((x as u128 * self.barrett[c] as u128) >> 64) as u64;
        let mut r = x - q * n;
        while r >= n {
            r -= n;
        }
        r
    }

    /// Appends samples `first..first + count` to `batch`, preprocessed as dlrm would.
    pub fn fill_batch(&self, first: u64, count: usize, batch: &mut Batch) {
        for i in 0..count as u64 {
            let s = self.sample(first + i);
            batch.push(s.label as f32, &s.dense, &s.sparse);
        }
    }

    /// Samples `first..first + batch_size` as one batch.
    pub fn batch(&self, first: u64, batch_size: usize) -> Batch {
        let mut b = Batch::with_capacity(batch_size);
        self.fill_batch(first, batch_size, &mut b);
        b
    }

    /// `num_batches` consecutive batches starting at sample `first`, generated on a background
    /// thread. Use disjoint sample ranges for training and evaluation.
    pub fn batches(
        &self,
        first: u64,
        batch_size: usize,
        num_batches: usize,
        prefetch: usize,
    ) -> Result<BatchLoader> {
        if batch_size == 0 {
            return Err(Error::input(None, "batch size must be at least 1"));
        }
        let gen = self.clone();
        let mut k = 0usize;
        BatchLoader::spawn(prefetch, Some(num_batches), move || {
            if k >= num_batches {
                return None;
            }
            let b = gen.batch(first + (k * batch_size) as u64, batch_size);
            k += 1;
            Some(Ok(b))
        })
    }

    /// The raw categorical value written for id `id` of column `c`: a 32-bit hash, never 0 (0 is
    /// what a missing value becomes).
    pub fn raw_value(&self, c: usize, id: u32) -> u32 {
        (mix64(self.column_salt[c] ^ 0x7f4a_7c15 ^ ((id as u64) << 20)) as u32).max(1)
    }

    /// Writes sample `index` as one raw Criteo line (with `\n`).
    pub fn write_line(&self, index: u64, out: &mut impl Write) -> std::io::Result<()> {
        let s = self.sample(index);
        let mut line = Vec::with_capacity(256);
        line.push(b'0' + s.label);
        for x in s.dense_raw {
            line.push(b'\t');
            if let Some(x) = x {
                write!(line, "{x}")?;
            }
        }
        for c in 0..NUM_SPARSE {
            line.push(b'\t');
            if s.sparse_missing & (1 << c) == 0 {
                write!(line, "{:08x}", self.raw_value(c, s.sparse[c]))?;
            }
        }
        line.push(b'\n');
        out.write_all(&line)
    }

    /// Writes samples `0..samples` in the raw layout to `path`, gzip-compressed when the name ends
    /// in `.gz`. Written atomically ([`crate::io::write_atomic_with`]), so a partial file never
    /// looks complete.
    pub fn write_raw(&self, path: impl AsRef<Path>, samples: u64) -> Result<()> {
        self.write_raw_with_progress(path, samples, &mut |_| {})
    }

    /// [`write_raw`](Self::write_raw), calling `progress` with the samples written so far every
    /// [`PROGRESS_EVERY`] samples and once at the end.
    pub fn write_raw_with_progress(
        &self,
        path: impl AsRef<Path>,
        samples: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let path = path.as_ref();
        let gz = path.extension().is_some_and(|e| e == "gz");
        crate::io::write_atomic_with(path, |out| {
            let mut lines = |mut out: &mut dyn Write| -> Result<()> {
                for i in 0..samples {
                    self.write_line(i, &mut out)?;
                    if (i + 1) % PROGRESS_EVERY == 0 {
                        progress(i + 1);
                    }
                }
                progress(samples);
                Ok(())
            };
            if gz {
                let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
                lines(&mut enc)?;
                enc.finish()?;
            } else {
                lines(out)?;
            }
            Ok(())
        })
    }
}
