//! The LFU row cache where the DLRM uses it: over a group of tables (keys = the table's first
//! key + id), against the cache twin over several refresh cycles; one cached DLRM step against
//! the model's twin; and the cache's training rules (row-wise Adagrad on the mean of g^2, state
//! reset at each refresh, SGD per occurrence) against closed forms written here, not copied from
//! the kernels as the cache twin is.

mod common;

use std::collections::{HashMap, HashSet};

use common::twins::{cache as ctwin, dlrm as dtwin, tt as twin};
use common::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use ttrec::cache::CacheConfig;
use ttrec::dlrm::{
    Dlrm, DlrmBatch, DlrmConfig, DlrmOptions, TableConfig, TableKind, TtCacheOptions,
};
use ttrec::graph::{Buf, GraphBuilder};
use ttrec::tt::Placement;
use ttrec::tt::{
    Bags, Optimizer, Pooling, TtEmbeddingBag, TtLookups, TtOptions, TtParams, TtShape,
};

/// Zipf-like ids in [0, n): a few small ids take most lookups (in every table, so that tables
/// share ids and only their key offsets tell them apart).
fn skewed_id(r: &mut ChaCha8Rng, n: u64) -> u64 {
    let u: f64 = r.random();
    ((u.powi(6) * n as f64) as u64).min(n - 1)
}

fn skewed_bags(r: &mut ChaCha8Rng, bags: usize, n: u64) -> (Vec<i64>, Vec<i64>) {
    let mut idx = Vec::new();
    let mut off = vec![0i64];
    for _ in 0..bags {
        for _ in 0..r.random_range(0..=5) {
            idx.push(skewed_id(r, n) as i64);
        }
        off.push(idx.len() as i64);
    }
    (idx, off)
}

/// A group's tables and their shared cache in plain Rust: each table's cores (f64 gradients
/// from the misses, SGD), the hash twin over keys `first key of the table + id`, the cached rows.
struct GroupTwin {
    shapes: Vec<TtShape>,
    cores: Vec<Vec<Vec<f32>>>,
    /// Each table's first key: the rows of the tables before it (computed here, not read).
    first_key: Vec<u64>,
    hash: ctwin::HashTwin,
    values: Vec<f32>,
    config: CacheConfig,
    lr: f32,
    steps: usize,
}

impl GroupTwin {
    fn step(&mut self, batches: &[(Vec<i64>, Vec<i64>)], douts: &[Vec<f32>]) -> Vec<Vec<f64>> {
        let dim = self.shapes[0].dim();
        let mut outs = Vec::new();
        let mut hits = Vec::new();
        for (t, (idx, off)) in batches.iter().enumerate() {
            let keys: Vec<u32> = idx
                .iter()
                .map(|&i| (self.first_key[t] + i as u64) as u32)
                .collect();
            let hit = self.hash.probe(&keys, true);
            // The cores' part: the misses.
            let (mut mi, mut mo) = (Vec::new(), vec![0u64]);
            for b in 0..off.len() - 1 {
                for n in off[b] as usize..off[b + 1] as usize {
                    if hit[n] == ttrec::cache::NONE {
                        mi.push(idx[n] as u64);
                    }
                }
                mo.push(mi.len() as u64);
            }
            let s = &self.shapes[t];
            let mut out = twin::forward(s, &self.cores[t], &mi, &mo, None, Pooling::Sum);
            let grads = twin::backward(s, &self.cores[t], &mi, &mo, None, Pooling::Sum, &douts[t]);
            self.cores[t] = twin::sgd_update(&self.cores[t], &grads, self.lr as f64);
            let offsets: Vec<u32> = off.iter().map(|&o| o as u32).collect();
            let bag_dest: Vec<u32> = (0..off.len() - 1).map(|b| (b * dim) as u32).collect();
            let batch = ctwin::TwinBatch {
                offsets: &offsets,
                bag_dest: &bag_dest,
                weights: &[],
                pool: ctwin::Pool::Sum,
                num_bags: off.len() - 1,
            };
            let mut cached = vec![0f32; out.len()];
            ctwin::pool_hits(&batch, &hit, &self.values, dim, &mut cached);
            for (o, c) in out.iter_mut().zip(&cached) {
                *o += *c as f64;
            }
            outs.push(out);
            hits.push((offsets, bag_dest, hit));
        }
        // The cached rows train after the forward, per occurrence in lookup order (table by
        // table).
        for (t, (offsets, bag_dest, hit)) in hits.iter().enumerate() {
            let batch = ctwin::TwinBatch {
                offsets,
                bag_dest,
                weights: &[],
                pool: ctwin::Pool::Sum,
                num_bags: offsets.len() - 1,
            };
            let mut no_state = vec![0f32; self.config.rows];
            ctwin::update_rows(
                &batch,
                hit,
                &douts[t],
                dim,
                &mut self.values,
                &mut no_state,
                ctwin::TwinOpt::Sgd { lr: self.lr },
            );
        }
        self.steps += 1;
        let (w, every) = (self.config.warmup_steps, self.config.refresh_every);
        if self.steps == w || (self.steps > w && (self.steps - w).is_multiple_of(every)) {
            self.refresh();
        }
        outs
    }

    /// The table and id of a key.
    fn table_of(&self, key: u32) -> (usize, u64) {
        let t = self
            .first_key
            .iter()
            .rposition(|&f| f <= key as u64)
            .expect("a key");
        (t, key as u64 - self.first_key[t])
    }

    fn refresh(&mut self) {
        let dim = self.shapes[0].dim();
        let members = self.hash.refresh(self.config.rows);
        self.values = vec![0.0; self.config.rows * dim];
        for (slot, &key) in members.iter().enumerate() {
            let (t, id) = self.table_of(key);
            let row = twin::tt_row(&self.shapes[t], &self.cores[t], id);
            for (c, v) in row.iter().enumerate() {
                self.values[slot * dim + c] = *v as f32;
            }
        }
    }

    fn rows_by_key(&self) -> Vec<(u32, Vec<f32>)> {
        let dim = self.shapes[0].dim();
        let mut out: Vec<(u32, Vec<f32>)> = (0..self.hash.keys.len())
            .filter(|&e| self.hash.slots[e] != ttrec::cache::NONE)
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

/// Three tables stored as one group with one cache (as a DLRM's TT group is): nine steps over
/// three refreshes against the group twin: outputs, hits, members by key (each table's keys
/// after the rows of the tables before it), cached rows and every table's cores.
#[test]
fn a_cached_group_of_tables_matches_the_twin() {
    let g = gpu();
    let shapes = vec![
        TtShape::new(5000, &[13, 11, 35], &[4, 4, 4], &[8, 8]).unwrap(),
        TtShape::new(700, &[7, 10, 10], &[4, 4, 4], &[8, 8]).unwrap(),
        TtShape::new(1200, &[10, 12, 10], &[4, 4, 4], &[8, 8]).unwrap(),
    ];
    let cores: Vec<Vec<Vec<f32>>> = shapes
        .iter()
        .enumerate()
        .map(|(t, s)| random_cores(s, 90 + t as u64))
        .collect();
    let config = CacheConfig {
        rows: 60,
        hash_entries: 2048,
        max_probe: 32,
        warmup_steps: 2,
        refresh_every: 3,
    };
    let lr = 0.05f32;
    let options = TtOptions {
        optimizer: Optimizer::Sgd { lr },
        cache: Some(config),
        ..TtOptions::default()
    };
    let mut params = TtParams::group_from_cores(&g, shapes.clone(), &cores, options).unwrap();
    let mut tw = GroupTwin {
        shapes: shapes.clone(),
        cores: cores.clone(),
        first_key: vec![0, 5000, 5700],
        hash: ctwin::HashTwin::new(config.hash_entries, config.max_probe),
        values: vec![0.0; config.rows * shapes[0].dim()],
        config,
        lr,
        steps: 0,
    };
    let (b, d) = (32usize, shapes[0].dim());
    let stride = 3 * d;
    let out = g.storage("out", (b * stride * 4) as u64);
    let dout_buf = g.storage("dout", (b * stride * 4) as u64);
    let mut gb = GraphBuilder::new(&g);
    let lk = TtLookups::declare(&mut gb, &params, 3 * b * 5, 3 * b, "group");
    lk.record_forward_backward(
        &mut gb,
        &params,
        &Buf::from(&out),
        &Buf::from(&dout_buf),
        true,
    )
    .unwrap();
    let plan = gb.build().unwrap();
    let mut input = plan.new_input();
    let place = Placement {
        col: vec![0, d, 2 * d],
        stride: vec![stride; 3],
    };
    let mut r = rng(91);
    let mut shared_ids = 0;
    for step in 0..9 {
        let batches: Vec<(Vec<i64>, Vec<i64>)> = shapes
            .iter()
            .map(|s| skewed_bags(&mut r, b, s.num_embeddings))
            .collect();
        let dout = values(&mut r, b * stride);
        g.write(&dout_buf, &dout);
        let list: Vec<Bags> = batches.iter().map(|(i, o)| Bags::new(i, o)).collect();
        lk.fill(&mut input, &params, &list, &place, Pooling::Sum)
            .unwrap();
        plan.run_with(&input).unwrap();
        params.cache_step().unwrap();
        let got = g.read_f32(&out, 0, b * stride).unwrap();
        let part = |v: &[f32], t: usize| -> Vec<f32> {
            (0..b)
                .flat_map(|i| v[i * stride + t * d..][..d].to_vec())
                .collect()
        };
        let douts: Vec<Vec<f32>> = (0..3).map(|t| part(&dout, t)).collect();
        let want = tw.step(&batches, &douts);
        for (t, want_t) in want.iter().enumerate() {
            assert_close(
                &format!("step {step} table {t} output"),
                &part(&got, t),
                want_t,
                1e-4,
                1e-5,
            );
        }
        let stats = params.cache_stats().unwrap();
        assert_eq!(stats.lookups, tw.hash.lookups, "step {step}: lookups");
        assert_eq!(stats.hits, tw.hash.hits, "step {step}: hits");
        assert_eq!(stats.dropped, 0);
        let mut rows = params.cache_rows().unwrap();
        rows.sort_by_key(|(k, _)| *k);
        let want_rows = tw.rows_by_key();
        let keys = |v: &[(u32, Vec<f32>)]| v.iter().map(|(k, _)| *k).collect::<Vec<_>>();
        assert_eq!(keys(&rows), keys(&want_rows), "members after step {step}");
        for ((k, got), (_, want)) in rows.iter().zip(&want_rows) {
            assert_close(
                &format!("cached row of key {k} after step {step}"),
                got,
                &to_f64(want),
                1e-4,
                1e-5,
            );
        }
        // The same small ids cached in two tables (different keys, different rows).
        let ids: Vec<HashSet<u64>> = (0..3)
            .map(|t| {
                rows.iter()
                    .map(|(k, _)| tw.table_of(*k))
                    .filter(|(tt, _)| *tt == t)
                    .map(|(_, id)| id)
                    .collect()
            })
            .collect();
        shared_ids += ids[0].intersection(&ids[1]).count() + ids[1].intersection(&ids[2]).count();
    }
    assert_eq!(params.cache().unwrap().refreshes(), 3);
    assert!(shared_ids > 0, "no id was cached in two tables at once");
    let stats = params.cache_stats().unwrap();
    assert!(stats.hit_rate() > 0.2, "{stats:?}");
    for (t, want) in tw.cores.iter().enumerate() {
        for (k, got) in params.table_cores(t).unwrap().iter().enumerate() {
            assert_close(
                &format!("table {t} core {k} after 9 steps"),
                got,
                &to_f64(&want[k]),
                1e-4,
                1e-5,
            );
        }
    }
}

/// A model with a dense table and three TT tables of one group (one cache).
fn cached_model_config() -> DlrmConfig {
    let tt = |rows: u64, p: Vec<usize>| TableConfig {
        rows,
        kind: TableKind::Tt {
            p,
            q: vec![2, 2, 2],
            ranks: vec![4, 8],
        },
    };
    DlrmConfig {
        bottom_mlp: vec![13, 16, 8],
        top_mlp: vec![12, 1],
        tables: vec![
            TableConfig {
                rows: 20,
                kind: TableKind::Dense,
            },
            tt(200, vec![5, 6, 7]),
            tt(150, vec![5, 5, 6]),
            tt(90, vec![3, 5, 6]),
        ],
        learning_rate: 0.2,
        tt_init: ttrec::tt::TtInit::SampledGaussian,
        seed: 4,
    }
}

/// A batch with skewed ids (shared small ids across tables).
fn skewed_batch(config: &DlrmConfig, b: usize, seed: u64) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let mut r = rng(seed);
    let dense: Vec<f32> = (0..b * 13).map(|_| r.random_range(0.0..3.0)).collect();
    let sparse: Vec<u32> = (0..b)
        .flat_map(|_| {
            config
                .tables
                .iter()
                .map(|t| skewed_id(&mut r, t.rows) as u32)
                .collect::<Vec<_>>()
        })
        .collect();
    let labels: Vec<f32> = (0..b).map(|i| (i % 3 == 0) as u8 as f32).collect();
    (dense, sparse, labels)
}

/// The twin's parameters of `m` with every TT table as a dense table of rows `rows[t]`.
fn as_dense(
    m: &Dlrm,
    config: &DlrmConfig,
    rows: &HashMap<usize, Vec<f32>>,
) -> HashMap<String, Vec<f32>> {
    let mut p: HashMap<String, Vec<f32>> = HashMap::new();
    for (n, _) in m.parameter_names() {
        if !n.contains("tt_cores") {
            p.insert(n.clone(), m.parameter(&n).unwrap());
        }
    }
    for t in 0..config.tables.len() {
        if let Some(r) = rows.get(&t) {
            p.insert(format!("emb_l.{t}.weight"), r.clone());
        }
    }
    p
}

/// The full rows of TT table t from the model's cores.
fn tt_rows(m: &Dlrm, config: &DlrmConfig, t: usize) -> (TtShape, Vec<Vec<f32>>, Vec<f32>) {
    let shape = config.tt_shape(t).unwrap().unwrap();
    let cores: Vec<Vec<f32>> = (0..shape.d())
        .map(|k| m.parameter(&format!("emb_l.{t}.tt_cores.{k}")).unwrap())
        .collect();
    let full: Vec<f32> = twin::full_weight(&shape, &cores)
        .iter()
        .map(|&v| v as f32)
        .collect();
    (shape, cores, full)
}

/// A cached SGD step at `lr` on a TT table with `cores` before the step, rows `rows_now` at the
/// refresh (full `[N, D]`), the twin's dense row gradient `dw` and the batch's `ids`: the cores
/// after it (the misses' gradients only, each missed id once with its summed row gradient) and
/// the rows the model then serves (members: their cached row - lr dW; others: the new cores').
fn after_cached_step(
    shape: &TtShape,
    cores: &[Vec<f32>],
    rows_now: &[f32],
    dw: &[f64],
    ids: &[u64],
    is_member: impl Fn(u64) -> bool,
    lr: f64,
) -> (Vec<Vec<f32>>, Vec<f32>) {
    let d = shape.dim();
    let missed: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|&id| !is_member(id))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let offsets: Vec<u64> = (0..=missed.len() as u64).collect();
    let dout: Vec<f64> = missed
        .iter()
        .flat_map(|&id| dw[id as usize * d..][..d].to_vec())
        .collect();
    let grads = twin::backward_f64(shape, cores, &missed, &offsets, None, Pooling::Sum, &dout);
    let new_cores = twin::sgd_update(cores, &grads, lr);
    let mut rows: Vec<f32> = twin::full_weight(shape, &new_cores)
        .iter()
        .map(|&v| v as f32)
        .collect();
    for id in 0..shape.num_embeddings {
        if is_member(id) {
            for i in id as usize * d..(id as usize + 1) * d {
                rows[i] = (rows_now[i] as f64 - lr * dw[i]) as f32;
            }
        }
    }
    (new_cores, rows)
}

/// One cached DLRM step against the model's twin: after two warm-up steps the group's cache
/// refreshes (members: the top C keys by count, computed here); the third step's loss and the
/// MLP's updates are the twin's; each member's cached row moves by -lr x its summed row
/// gradient, the cores by the gradient of the misses only; and a prediction after it (through
/// the cache) is the twin's with those rows.
#[test]
fn a_cached_dlrm_step_matches_the_twin() {
    let g = gpu();
    let config = cached_model_config();
    let cache = TtCacheOptions {
        rows: 10.0,
        warmup_steps: 2,
        refresh_every: 100,
    };
    let options = DlrmOptions {
        tt_cache: Some(cache),
        ..DlrmOptions::default()
    };
    let mut m = Dlrm::new(&g, config.clone(), options).unwrap();
    let c = cache.config(440, 3).unwrap().rows;
    let first_key: HashMap<usize, u64> = [(1, 0), (2, 200), (3, 350)].into_iter().collect();
    let b = 32;
    let batches: Vec<_> = (0..4).map(|s| skewed_batch(&config, b, 300 + s)).collect();
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for (s, (dense, sparse, labels)) in batches[..2].iter().enumerate() {
        // Warm-up steps: no member yet, the step is the plain model's.
        let before = common::parameters_of(&m);
        let want = dtwin::step(
            &common::twins::twin_model(&config),
            &before,
            dense,
            sparse,
            labels,
        )
        .unwrap();
        m.train_step(&DlrmBatch {
            dense,
            sparse,
            labels,
        })
        .unwrap();
        let loss = m.take_stats().unwrap()[0].loss;
        assert_close(
            &format!("warm-up step {s} loss"),
            &[loss as f32],
            &[want.loss],
            2e-5,
            0.0,
        );
        for (i, &id) in sparse.iter().enumerate() {
            if let Some(f) = first_key.get(&(i % 4)) {
                *counts.entry((f + id as u64) as u32).or_default() += 1;
            }
        }
    }
    let (stats, refreshes) = m.cache_stats().unwrap().expect("a cache");
    assert_eq!(refreshes, 1);
    assert_eq!(stats.hits, 0, "no hit before the first refresh");
    // The members: the C keys of highest count, ties to the smaller key.
    let mut by_count: Vec<(u32, u32)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let members: HashSet<u32> = by_count.iter().take(c).map(|&(k, _)| k).collect();
    assert_eq!(stats.members as usize, members.len());
    assert!(members.len() == c, "fewer distinct keys than cache rows");
    // Step 3 through the cache. The twin sees every TT table as a dense table of its rows (the
    // cached rows are the rows at the refresh, not trained since).
    let tt_tables = [1usize, 2, 3];
    let mut rows_now = HashMap::new();
    let mut tt_state = HashMap::new();
    for &t in &tt_tables {
        let (shape, cores, full) = tt_rows(&m, &config, t);
        rows_now.insert(t, full);
        tt_state.insert(t, (shape, cores));
    }
    let mut dense_config = config.clone();
    for &t in &tt_tables {
        dense_config.tables[t].kind = TableKind::Dense;
    }
    let (dense, sparse, labels) = &batches[2];
    let want = dtwin::step(
        &common::twins::twin_model(&dense_config),
        &as_dense(&m, &config, &rows_now),
        dense,
        sparse,
        labels,
    )
    .unwrap();
    m.train_step(&DlrmBatch {
        dense,
        sparse,
        labels,
    })
    .unwrap();
    let loss = m.take_stats().unwrap()[0].loss;
    assert_close("cached step loss", &[loss as f32], &[want.loss], 2e-5, 0.0);
    let (stats, _) = m.cache_stats().unwrap().unwrap();
    let lookups_hit = (0..b)
        .flat_map(|s| tt_tables.iter().map(move |&t| (s, t)))
        .filter(|&(s, t)| members.contains(&((first_key[&t] + sparse[s * 4 + t] as u64) as u32)))
        .count();
    assert_eq!(stats.hits as usize, lookups_hit, "hits of the cached step");
    assert!(lookups_hit > 0 && lookups_hit < 3 * b, "{lookups_hit} hits");
    for (n, w) in &want.updated {
        if !n.starts_with("emb_l.1.") && !n.starts_with("emb_l.2.") && !n.starts_with("emb_l.3.") {
            assert_close(
                &format!("updated {n}"),
                &m.parameter(n).unwrap(),
                w,
                2e-5,
                1e-7,
            );
        }
    }
    // Expected rows after the step: members' cached rows -= lr x their row gradient; the cores
    // -= lr x the gradient of the misses (each missed id once, with its summed row gradient).
    let lr = config.learning_rate as f64;
    let mut rows_after = HashMap::new();
    for &t in &tt_tables {
        let (shape, cores) = &tt_state[&t];
        let ids: Vec<u64> = (0..b).map(|s| sparse[s * 4 + t] as u64).collect();
        let is_member = |id: u64| members.contains(&((first_key[&t] + id) as u32));
        let dw = &want.grads[&format!("emb_l.{t}.weight")];
        let (new_cores, rows) =
            after_cached_step(shape, cores, &rows_now[&t], dw, &ids, is_member, lr);
        for (k, want_k) in new_cores.iter().enumerate() {
            assert_close(
                &format!("table {t} core {k} after the cached step"),
                &m.parameter(&format!("emb_l.{t}.tt_cores.{k}")).unwrap(),
                &to_f64(want_k),
                2e-5,
                1e-7,
            );
        }
        rows_after.insert(t, rows);
    }
    // A prediction through the cache: the twin's probabilities with those rows.
    let (dense, sparse, _) = &batches[3];
    let probe = dtwin::step(
        &common::twins::twin_model(&dense_config),
        &as_dense(&m, &config, &rows_after),
        dense,
        sparse,
        &vec![0.0; b],
    )
    .unwrap();
    let got = m
        .predict(&DlrmBatch {
            dense,
            sparse,
            labels: &[],
        })
        .unwrap();
    assert_close(
        "predictions after the cached step",
        &got,
        &probe.probabilities,
        2e-5,
        1e-7,
    );
}

/// A cache member's training, from closed forms: after a refresh its row-wise Adagrad state is
/// 0, so one occurrence with row gradient g moves it by -lr g / (rms(g) + eps), whatever the
/// scale of g (the state is the mean of g^2 over the columns, not the sum); a second occurrence
/// in the same step by -lr g2 / (sqrt(ms(g1) + ms(g2)) + eps). The next refresh recomputes the
/// rows from the current cores and starts the state at 0 again. With SGD a member moves by
/// -lr x the sum of its occurrences' gradients.
#[test]
fn cached_rows_train_by_the_closed_forms() {
    let g = gpu();
    let shape = TtShape::new(120, &[4, 5, 6], &[2, 2, 4], &[4, 4]).unwrap();
    let dim = shape.dim();
    let cores = random_cores(&shape, 95);
    for opt in [
        Optimizer::Adagrad {
            lr: 0.05,
            eps: 1e-8,
        },
        Optimizer::Sgd { lr: 0.05 },
    ] {
        let config = CacheConfig {
            rows: 3,
            hash_entries: 1024,
            max_probe: 32,
            warmup_steps: 1,
            refresh_every: 2,
        };
        let options = TtOptions {
            optimizer: opt,
            cache: Some(config),
            ..TtOptions::default()
        };
        let mut t = TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, options).unwrap();
        // Counting steps: ids 1, 2, 3 most often, the members of every refresh.
        let counting: Vec<i64> = [vec![1; 6], vec![2; 5], vec![3; 4], vec![40, 41, 42]].concat();
        let count_off = vec![0i64, counting.len() as i64];
        let mut r = rng(96);
        // Bags of the measured steps: [1], [2, 2], [1], [50] (50 is never cached).
        let idx = vec![1i64, 2, 2, 1, 50];
        let off = vec![0i64, 1, 3, 4, 5];
        for round in 0..2 {
            // A counting step (it ends with a refresh), then a measured step.
            let dc = values(&mut r, dim);
            t.forward_backward(&Bags::new(&counting, &count_off), &dc)
                .unwrap();
            let before: HashMap<u32, Vec<f32>> =
                t.params().cache_rows().unwrap().into_iter().collect();
            let keys: HashSet<u32> = before.keys().copied().collect();
            assert_eq!(keys, HashSet::from([1, 2, 3]), "{opt:?} round {round}");
            // The refresh computed the rows from the current cores.
            let now = t.cores().unwrap();
            for (&k, row) in &before {
                let want = twin::tt_row(&shape, &now, k as u64);
                assert_close(
                    &format!("{opt:?} round {round}: row {k} at refresh"),
                    row,
                    &want,
                    1e-5,
                    1e-6,
                );
            }
            // Gradients of very different scales per bag.
            let scale = [1.0f32, 30.0, 0.01, 1.0];
            let mut dout = values(&mut r, 4 * dim);
            for (b, s) in scale.iter().enumerate() {
                dout[b * dim..(b + 1) * dim]
                    .iter_mut()
                    .for_each(|x| *x *= s);
            }
            t.forward_backward(&Bags::new(&idx, &off), &dout).unwrap();
            let after: HashMap<u32, Vec<f32>> =
                t.params().cache_rows().unwrap().into_iter().collect();
            let grad = |b: usize| -> Vec<f64> { to_f64(&dout[b * dim..(b + 1) * dim]) };
            let ms = |g: &[f64]| g.iter().map(|x| x * x).sum::<f64>() / g.len() as f64;
            // Expected move of each member: occurrences in lookup order.
            let occurrences: [(u32, Vec<usize>); 3] =
                [(1, vec![0, 2]), (2, vec![1, 1]), (3, vec![])];
            for (key, bags_of) in occurrences {
                let mut want: Vec<f64> = to_f64(&before[&key]);
                match opt {
                    Optimizer::Adagrad { lr, eps } => {
                        let mut state = 0.0; // reset by the refresh
                        for &b in &bags_of {
                            let gb = grad(b);
                            state += ms(&gb);
                            for (w, gc) in want.iter_mut().zip(&gb) {
                                *w -= lr as f64 * gc / (state.sqrt() + eps as f64);
                            }
                        }
                    }
                    Optimizer::Sgd { lr } => {
                        for &b in &bags_of {
                            for (w, gc) in want.iter_mut().zip(grad(b)) {
                                *w -= lr as f64 * gc;
                            }
                        }
                    }
                    Optimizer::None => unreachable!(),
                }
                assert_close(
                    &format!("{opt:?} round {round}: member {key} after the step"),
                    &after[&key],
                    &want,
                    1e-4,
                    1e-6,
                );
            }
        }
        assert_eq!(t.params().cache().unwrap().refreshes(), 2, "{opt:?}");
    }
}
