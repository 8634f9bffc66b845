//! A TT table with its LFU row cache against a CPU twin of the whole behaviour, over several
//! refresh cycles: counting (the hash twin), the top-C choice (ties: smaller key), routing
//! (cached rows from the cache, the misses through the cores), pooling, the training of cached
//! rows (per occurrence) and of the cores (from the misses only), and the refresh computing the
//! members' rows from the current cores. Membership must agree exactly, values to float
//! rounding. Then: a cached table trains like an uncached one (fixed seed), and bad cache
//! options are named errors.

mod common;

use common::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use ttrec::cache::{CacheConfig, NONE};
use ttrec::tt::{Bags, Optimizer, Pooling, TtEmbeddingBag, TtOptions, TtShape};
use ttrec::twin::tt as rtt;
use ttrec::twin::tt_cache::{update_rows, HashTwin, Pool, TwinBatch, TwinOpt};

/// Zipf-like ids (a few rows take most lookups), with duplicates and empty bags.
fn skewed_bags(r: &mut ChaCha8Rng, bags: usize, n: u64) -> (Vec<i64>, Vec<i64>) {
    let mut idx = Vec::new();
    let mut off = vec![0i64];
    for _ in 0..bags {
        let len = r.random_range(0..=6);
        for _ in 0..len {
            let u: f64 = r.random();
            idx.push(((u.powi(6) * n as f64) as i64).min(n as i64 - 1));
        }
        off.push(idx.len() as i64);
    }
    (idx, off)
}

/// The whole table in plain Rust: cores (f32, updated from f64 gradients) and the cache.
struct Twin {
    shape: TtShape,
    cores: Vec<Vec<f32>>,
    core_state: Vec<Vec<f32>>,
    hash: HashTwin,
    values: Vec<f32>,
    state: Vec<f32>,
    config: CacheConfig,
    opt: Optimizer,
    pooling: Pooling,
    steps: usize,
}

impl Twin {
    /// One training step; returns the forward output.
    fn step(&mut self, idx: &[i64], off: &[i64], dout: &[f32]) -> Vec<f64> {
        let dim = self.shape.dim();
        let keys: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        let hit = self.hash.probe(&keys, true);
        // The cores' part: the misses, weighted by their bag's pooling scale.
        let (mut mi, mut mo, mut mw) = (Vec::new(), vec![0u64], Vec::new());
        for b in 0..off.len() - 1 {
            let (lo, hi) = (off[b] as usize, off[b + 1] as usize);
            for n in lo..hi {
                if hit[n] == NONE {
                    mi.push(idx[n] as u64);
                    mw.push(match self.pooling {
                        Pooling::Mean => 1.0 / (hi - lo) as f32,
                        Pooling::Sum => 1.0,
                    });
                }
            }
            mo.push(mi.len() as u64);
        }
        let mut out = rtt::forward(&self.shape, &self.cores, &mi, &mo, Some(&mw), Pooling::Sum);
        let grads = rtt::backward(
            &self.shape,
            &self.cores,
            &mi,
            &mo,
            Some(&mw),
            Pooling::Sum,
            dout,
        );
        let offsets: Vec<u32> = off.iter().map(|&o| o as u32).collect();
        let bag_dest: Vec<u32> = (0..off.len() - 1).map(|b| (b * dim) as u32).collect();
        let batch = TwinBatch {
            offsets: &offsets,
            bag_dest: &bag_dest,
            weights: &[],
            pool: match self.pooling {
                Pooling::Mean => Pool::Mean,
                Pooling::Sum => Pool::Sum,
            },
            num_bags: off.len() - 1,
        };
        let mut cached = vec![0f32; out.len()];
        ttrec::twin::tt_cache::pool_hits(&batch, &hit, &self.values, dim, &mut cached);
        for (o, c) in out.iter_mut().zip(&cached) {
            *o += *c as f64;
        }
        let opt = match self.opt {
            Optimizer::Sgd { lr } => {
                self.cores = rtt::sgd_update(&self.cores, &grads, lr as f64);
                TwinOpt::Sgd { lr }
            }
            Optimizer::Adagrad { lr, eps } => {
                let (c, s) = rtt::adagrad_update(
                    &self.cores,
                    &self.core_state,
                    &grads,
                    lr as f64,
                    eps as f64,
                );
                self.cores = c;
                self.core_state = s;
                TwinOpt::Adagrad { lr, eps }
            }
            Optimizer::None => unreachable!("a cache needs an optimizer"),
        };
        update_rows(
            &batch,
            &hit,
            dout,
            dim,
            &mut self.values,
            &mut self.state,
            opt,
        );
        self.steps += 1;
        let (w, every) = (self.config.warmup_steps, self.config.refresh_every);
        if self.steps == w || (self.steps > w && (self.steps - w).is_multiple_of(every)) {
            self.refresh();
        }
        out
    }

    /// The members' rows from the current cores, their state zeroed.
    fn refresh(&mut self) {
        let dim = self.shape.dim();
        let members = self.hash.refresh(self.config.rows);
        let ids: Vec<u64> = members.iter().map(|&k| k as u64).collect();
        let offs: Vec<u64> = (0..=ids.len() as u64).collect();
        let rows = rtt::forward(&self.shape, &self.cores, &ids, &offs, None, Pooling::Sum);
        self.values = vec![0.0; self.config.rows * dim];
        for (i, v) in rows.iter().enumerate() {
            self.values[i] = *v as f32;
        }
        self.state = vec![0.0; self.config.rows];
    }

    /// (key, row) of every member, sorted by key.
    fn rows_by_key(&self) -> Vec<(u32, Vec<f32>)> {
        let dim = self.shape.dim();
        let mut out: Vec<(u32, Vec<f32>)> = (0..self.hash.keys.len())
            .filter(|&e| self.hash.slots[e] != NONE)
            .map(|e| {
                let s = self.hash.slots[e] as usize;
                (
                    self.hash.keys[e],
                    self.values[s * dim..(s + 1) * dim].to_vec(),
                )
            })
            .collect();
        out.sort_by_key(|(k, _)| *k);
        out
    }
}

fn config(rows: usize) -> CacheConfig {
    CacheConfig {
        rows,
        hash_entries: 1024,
        max_probe: 32,
        warmup_steps: 2,
        refresh_every: 3,
    }
}

fn run_against_twin(pooling: Pooling, opt: Optimizer, seed: u64, chunk: Option<usize>) {
    let g = gpu();
    let shape = TtShape::new(5000, &[13, 11, 35], &[4, 4, 4], &[8, 8]).unwrap();
    let cores = random_cores(&shape, seed);
    let cfg = config(40);
    let options = TtOptions {
        pooling,
        optimizer: opt,
        cache: Some(cfg),
        max_chunk_lookups: chunk,
        ..TtOptions::default()
    };
    let mut table = TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, options).unwrap();
    let mut twin = Twin {
        shape: shape.clone(),
        core_state: cores.iter().map(|c| vec![0.0; c.len()]).collect(),
        cores,
        hash: HashTwin::new(cfg.hash_entries, cfg.max_probe),
        values: vec![0.0; cfg.rows * shape.dim()],
        state: vec![0.0; cfg.rows],
        config: cfg,
        opt,
        pooling,
        steps: 0,
    };
    let mut r = rng(seed + 1);
    let what = format!("{pooling:?} {opt:?}");
    let mut refreshed = 0;
    for step in 0..9 {
        let (idx, off) = skewed_bags(&mut r, 48, shape.num_embeddings);
        let dout = values(&mut r, (off.len() - 1) * shape.dim());
        let got = table
            .forward_backward(&Bags::new(&idx, &off), &dout)
            .unwrap();
        let want = twin.step(&idx, &off, &dout);
        assert_close(
            &format!("{what}: step {step} output"),
            &got,
            &want,
            1e-4,
            1e-5,
        );
        let stats = table.params_mut().cache_stats().unwrap();
        assert_eq!(stats.lookups, twin.hash.lookups, "{what}: lookups probed");
        assert_eq!(stats.hits, twin.hash.hits, "{what}: hits at step {step}");
        assert_eq!(stats.dropped, 0, "{what}: no count dropped");
        // After each refresh: the same members, and their rows (trained since) by key.
        let mut rows = table.params().cache_rows().unwrap();
        rows.sort_by_key(|(k, _)| *k);
        let want_rows = twin.rows_by_key();
        let keys = |v: &[(u32, Vec<f32>)]| v.iter().map(|(k, _)| *k).collect::<Vec<_>>();
        assert_eq!(
            keys(&rows),
            keys(&want_rows),
            "{what}: members after step {step}"
        );
        for ((k, got), (_, want)) in rows.iter().zip(&want_rows) {
            assert_close(
                &format!("{what}: cached row {k} after step {step}"),
                got,
                &to_f64(want),
                1e-4,
                1e-5,
            );
        }
        if !rows.is_empty() {
            refreshed += 1;
        }
    }
    assert_eq!(
        table.params().cache().unwrap().refreshes(),
        3,
        "{what}: refreshes"
    );
    assert!(refreshed >= 7, "{what}: the cache served from step 2 on");
    let got = table.cores().unwrap();
    for (k, (got, want)) in got.iter().zip(&twin.cores).enumerate() {
        assert_close(
            &format!("{what}: core {k} after 9 steps"),
            got,
            &to_f64(want),
            1e-4,
            1e-5,
        );
    }
    let stats = table.params_mut().cache_stats().unwrap();
    assert!(
        stats.hit_rate() > 0.2,
        "{what}: skewed lookups hit the cache: {stats:?}"
    );
}

#[test]
fn cached_table_matches_the_twin_sum_sgd() {
    run_against_twin(Pooling::Sum, Optimizer::Sgd { lr: 0.05 }, 11, None);
}

#[test]
fn cached_table_matches_the_twin_mean_adagrad_in_chunks() {
    run_against_twin(
        Pooling::Mean,
        Optimizer::Adagrad {
            lr: 0.05,
            eps: 1e-8,
        },
        12,
        // Chunks of 16 lookups: the misses' chunks and the refresh's (40 members) come from
        // the GPU's compaction and member batch.
        Some(16),
    );
}

/// A student table learns a teacher table's pooled rows on skewed lookups, with and without a
/// cache (same seed): both learn, and the cached one ends within noise of the uncached one.
#[test]
fn cached_table_trains_like_an_uncached_one() {
    let g = gpu();
    let shape = TtShape::new(5000, &[13, 11, 35], &[4, 4, 4], &[8, 8]).unwrap();
    let teacher = TtEmbeddingBag::from_cores(
        &g,
        shape.clone(),
        &random_cores(&shape, 5),
        TtOptions::default(),
    )
    .unwrap();
    let mut teacher = teacher;
    let student_cores = random_cores(&shape, 6);
    let run = |cache: Option<CacheConfig>, teacher: &mut TtEmbeddingBag| {
        let options = TtOptions {
            optimizer: Optimizer::Adagrad {
                lr: 0.05,
                eps: 1e-8,
            },
            cache,
            ..TtOptions::default()
        };
        let mut student =
            TtEmbeddingBag::from_cores(&g, shape.clone(), &student_cores, options).unwrap();
        let mut r = rng(7);
        let mut losses = Vec::new();
        for _ in 0..60 {
            let (idx, off) = skewed_bags(&mut r, 64, shape.num_embeddings);
            let bags = Bags::new(&idx, &off);
            let target = teacher.forward(&bags).unwrap();
            let out = student.forward(&bags).unwrap();
            let dout: Vec<f32> = out.iter().zip(&target).map(|(o, t)| o - t).collect();
            let loss: f64 = dout.iter().map(|&d| 0.5 * (d as f64) * (d as f64)).sum();
            losses.push(loss / (off.len() - 1) as f64);
            student.backward(&bags, &dout).unwrap();
        }
        let stats = student.params_mut().cache_stats().ok();
        (losses, stats)
    };
    let (plain, no_stats) = run(None, &mut teacher);
    assert!(no_stats.is_none(), "the uncached student has no cache");
    let cfg = CacheConfig {
        warmup_steps: 5,
        refresh_every: 10,
        ..config(50)
    };
    let (cached, stats) = run(Some(cfg), &mut teacher);
    // The cache served lookups (a cache that never hits would make the runs equal).
    let stats = stats.expect("cache statistics");
    assert!(
        stats.hit_rate() > 0.2 && stats.members == 50,
        "the cache barely served: {stats:?}"
    );
    // Before the first refresh nothing is cached: the same losses up to rounding (the misses
    // take the cache's compaction path, whose sums may round differently).
    for (s, (a, b)) in cached[..5].iter().zip(&plain[..5]).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs(),
            "warm-up step {s}: {a} vs {b}"
        );
    }
    let differ = cached.iter().zip(&plain).filter(|(a, b)| a != b).count();
    assert!(
        differ >= 50,
        "only {differ} of 60 losses differ with a cache serving {:.0} % of lookups",
        100.0 * stats.hit_rate()
    );
    let tail = |v: &[f64]| v[v.len() - 10..].iter().sum::<f64>() / 10.0;
    let head = |v: &[f64]| v[..5].iter().sum::<f64>() / 5.0;
    assert!(
        tail(&plain) < 0.5 * head(&plain),
        "uncached did not learn: {plain:?}"
    );
    assert!(
        tail(&cached) < 0.5 * head(&cached),
        "cached did not learn: {cached:?}"
    );
    let rel = (tail(&cached) - tail(&plain)).abs() / tail(&plain);
    assert!(
        rel < 0.25,
        "cached {:.4} vs uncached {:.4} (relative {rel:.3})",
        tail(&cached),
        tail(&plain)
    );
}

/// Bad cache options are named errors at creation.
#[test]
fn bad_cache_options_are_named_errors() {
    let g = gpu();
    let shape = TtShape::new(5000, &[13, 11, 35], &[4, 4, 4], &[8, 8]).unwrap();
    let make = |opt: Optimizer, cfg: CacheConfig| {
        let options = TtOptions {
            optimizer: opt,
            cache: Some(cfg),
            ..TtOptions::default()
        };
        TtEmbeddingBag::new(&g, shape.clone(), options)
            .unwrap_err()
            .to_string()
    };
    let sgd = Optimizer::Sgd { lr: 0.1 };
    let e = make(Optimizer::None, config(10));
    assert!(e.contains("SGD or Adagrad"), "{e}");
    let e = make(sgd, config(6000));
    assert!(e.contains("6000") && e.contains("5000"), "{e}");
    let e = make(
        sgd,
        CacheConfig {
            hash_entries: 1000,
            ..config(10)
        },
    );
    assert!(e.contains("1000") && e.contains("power of two"), "{e}");
    let e = make(
        sgd,
        CacheConfig {
            refresh_every: 0,
            ..config(10)
        },
    );
    assert!(e.contains("refresh_every"), "{e}");
}

/// GPU-resident training (forward_into / backward_from into the app's encoder) counts and
/// refreshes the cache as the host calls do: the same members, rows and cores after the
/// warm-up's refresh and two cached steps.
#[test]
fn gpu_resident_steps_refresh_the_cache_like_host_calls() {
    let g = gpu();
    let shape = TtShape::new(5000, &[13, 11, 35], &[4, 4, 4], &[8, 8]).unwrap();
    let cores = random_cores(&shape, 31);
    let options = TtOptions {
        optimizer: Optimizer::Sgd { lr: 0.05 },
        cache: Some(config(30)),
        ..TtOptions::default()
    };
    let mut host = TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, options.clone()).unwrap();
    let mut dev = TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, options).unwrap();
    let mut r = rng(32);
    let dim = shape.dim();
    for step in 0..4 {
        let (idx, off) = skewed_bags(&mut r, 40, shape.num_embeddings);
        let b = Bags::new(&idx, &off);
        let dout = values(&mut r, (off.len() - 1) * dim);
        let want = host.forward(&b).unwrap();
        host.backward(&b, &dout).unwrap();
        let out = g.storage("app rows", (want.len() * 4) as u64);
        let grad = g.storage_from("app grad", &dout);
        let mut enc = g.device().create_command_encoder(&Default::default());
        dev.forward_into(&b, &out, &mut enc).unwrap();
        dev.backward_from(&b, &grad, &mut enc).unwrap();
        g.queue().submit([enc.finish()]);
        let got = g.read_f32(&out, 0, want.len()).unwrap();
        assert_eq!(got, want, "rows at step {step}");
    }
    assert_eq!(host.params().cache().unwrap().refreshes(), 1);
    assert_eq!(dev.params().cache().unwrap().refreshes(), 1);
    let rows = |t: &TtEmbeddingBag| {
        let mut v = t.params().cache_rows().unwrap();
        v.sort_by_key(|(k, _)| *k);
        v
    };
    assert!(!rows(&host).is_empty());
    assert_eq!(rows(&dev), rows(&host), "cached rows");
    assert_eq!(dev.cores().unwrap(), host.cores().unwrap(), "cores");
}
