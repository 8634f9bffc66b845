//! `ttrec bench cache`: the LFU row cache on the `kaggle-r32` table (10,131,227 rows, ranks 32)
//! with Zipf-skewed lookups: hit rate and whole training step time per lookup, for cache sizes
//! given as fractions of the table's rows (0: no cache).

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::bench::{tt_configs, BenchEnv, Spread};
use crate::cache::CacheConfig;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tt::{Bags, Mode, Optimizer, Pooling, TtEmbeddingBag, TtOptions, TtShape};

/// One measured case.
#[derive(Clone, Debug)]
pub struct CacheBenchResult {
    pub zipf: f64,
    pub cache_fraction: f64,
    pub cache_rows: usize,
    /// Hits over lookups during the timed steps.
    pub hit_rate: f64,
    pub lookups: usize,
    /// Whole training step (forward, backward, updates), microseconds.
    pub step: Spread,
    pub env: BenchEnv,
    /// Per-node GPU times of one step (label, ns), when asked for.
    pub profile: Vec<(String, f64)>,
}

impl CacheBenchResult {
    pub fn us_per_lookup(&self) -> f64 {
        self.step.median / self.lookups as f64
    }

    pub fn json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert("type".into(), "bench_cache".into());
        self.env.add_to(&mut obj);
        let rest = serde_json::json!({
            "config": "kaggle-r32",
            "zipf": self.zipf,
            "cache_fraction": self.cache_fraction,
            "cache_rows": self.cache_rows,
            "hit_rate": self.hit_rate,
            "lookups": self.lookups,
            "us_per_lookup": self.us_per_lookup(),
            "step_us": self.step.json(),
        });
        if let serde_json::Value::Object(m) = rest {
            obj.extend(m);
        }
        serde_json::Value::Object(obj)
    }
}

/// Ids of rank k drawn with probability proportional to k^-s (s > 1, k <= n), by a Pareto draw
/// rejected past n; rank k is row `(k - 1) * 2,654,435,761 mod n`, so hot rows are spread over
/// the table (and over every core's digits).
pub fn zipf_ids(rng: &mut ChaCha8Rng, s: f64, n: u64, count: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let u: f64 = rng.random();
        let k = (1.0 - u).powf(-1.0 / (s - 1.0)).floor();
        if k >= 1.0 && k <= n as f64 {
            let rank = k as u64 - 1;
            out.push(((rank as u128 * 2_654_435_761u128) % n as u128) as u32);
        }
    }
    out
}

/// One case being measured: its table, batches and timings.
struct Case {
    zipf: f64,
    fraction: f64,
    rows: usize,
    table: TtEmbeddingBag,
    next: usize,
    warmup: usize,
    times: Vec<f64>,
    before: Option<crate::cache::CacheStats>,
}

/// Runs the cases of one Zipf exponent side by side: each case's table takes `warmup` training
/// steps on fresh batches (the cache counts them, then refreshes once at their end); then the
/// cases take timed training steps in turn, on other fresh batches, until each has `min_iters`
/// steps and `min_seconds` have passed. Taking turns puts every case under the same machine
/// noise (lavapipe's step times vary by 2x from minute to minute).
#[allow(clippy::too_many_arguments)]
pub fn run_cache(
    gpu: &Gpu,
    zipf: f64,
    fractions: &[f64],
    bags: usize,
    bag_len: usize,
    warmup: usize,
    min_iters: usize,
    min_seconds: f64,
    profile: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<CacheBenchResult>> {
    if !(zipf > 1.0 && zipf.is_finite()) {
        return Err(Error::input(
            None,
            format!("zipf exponent {zipf}: must be above 1"),
        ));
    }
    let cfg = tt_configs()
        .into_iter()
        .find(|c| c.name == "kaggle-r32")
        .expect("kaggle-r32");
    let shape = TtShape::new(cfg.num_embeddings, &cfg.p, &cfg.q, &cfg.ranks)?;
    let n = shape.num_embeddings;
    let warmup = warmup.max(1);
    let nnz = bags * bag_len;
    let offsets: Vec<u32> = (0..=bags).map(|b| (b * bag_len) as u32).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let dout: Vec<f32> = (0..bags * shape.dim())
        .map(|_| rng.random_range(-1e-3..1e-3))
        .collect();
    // Fresh batches throughout (the same for every case): the timed steps look up rows the
    // warm-up may not have seen.
    let ids: Vec<Vec<u32>> = (0..warmup + 16)
        .map(|_| zipf_ids(&mut rng, zipf, n, nnz))
        .collect();
    let mut cases = Vec::new();
    for &fraction in fractions {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(Error::input(
                None,
                format!("cache fraction {fraction}: must be in [0, 1]"),
            ));
        }
        progress(&format!("warm-up, cache {fraction}"));
        let cache = if fraction > 0.0 {
            let mut c = CacheConfig::for_table(n, fraction)?;
            c.warmup_steps = warmup;
            c.refresh_every = usize::MAX;
            Some(c)
        } else {
            None
        };
        let options = TtOptions {
            pooling: Pooling::Sum,
            optimizer: Optimizer::Sgd { lr: 0.01 },
            seed: 1,
            cache,
            ..TtOptions::default()
        };
        let mut table = TtEmbeddingBag::new(gpu, shape.clone(), options)?;
        for batch in ids.iter().take(warmup) {
            table.replay_only(
                &Bags::new(batch, &offsets),
                Some(&dout),
                Mode::ForwardBackward,
            )?;
        }
        gpu.wait()?;
        let before = match cache {
            Some(_) => Some(table.params_mut().cache_stats()?),
            None => None,
        };
        cases.push(Case {
            zipf,
            fraction,
            rows: cache.map_or(0, |c| c.rows),
            table,
            next: warmup,
            warmup,
            times: Vec::new(),
            before,
        });
    }
    progress("timed steps");
    let start = Instant::now();
    loop {
        for case in cases.iter_mut() {
            let batch = &ids[case.next];
            let t = Instant::now();
            case.table.replay_only(
                &Bags::new(batch, &offsets),
                Some(&dout),
                Mode::ForwardBackward,
            )?;
            gpu.wait()?;
            case.times.push(t.elapsed().as_secs_f64() * 1e6);
            case.next = if case.next + 1 == ids.len() {
                case.warmup
            } else {
                case.next + 1
            };
        }
        let steps = cases.first().map_or(0, |c| c.times.len());
        if (steps >= min_iters.max(1) && start.elapsed().as_secs_f64() >= min_seconds)
            || steps >= 10_000
        {
            break;
        }
    }
    let mut out = Vec::new();
    for mut case in cases {
        let profile = if profile {
            let batch = &ids[case.warmup];
            case.table
                .profile(
                    &Bags::new(batch, &offsets),
                    Some(&dout),
                    Mode::ForwardBackward,
                )?
                .into_iter()
                .map(|n| (n.label, n.nanos))
                .collect()
        } else {
            Vec::new()
        };
        let hit_rate = match case.before {
            Some(before) => {
                let after = case.table.params_mut().cache_stats()?;
                let lookups = after.lookups - before.lookups;
                (after.hits - before.hits) as f64 / lookups.max(1) as f64
            }
            None => 0.0,
        };
        out.push(CacheBenchResult {
            zipf: case.zipf,
            cache_fraction: case.fraction,
            cache_rows: case.rows,
            hit_rate,
            lookups: nnz,
            step: Spread::of(case.times),
            env: BenchEnv::of(gpu),
            profile,
        });
    }
    Ok(out)
}
