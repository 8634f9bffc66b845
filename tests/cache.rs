//! The LFU row cache kernels (shaders/tt_cache.wgsl) against their CPU twin (src/twin/tt_cache.rs):
//! probe counts over several batches of several tables (Zipf-skewed ids with duplicates, empty
//! bags, key offsets), hits and stats, drops reported when the hash table is tiny, the refresh's
//! members (ties, fewer keys than rows) and slots (no stale slot after a second refresh), the
//! pooling of cached rows, their SGD and row-wise Adagrad updates over two steps with hot rows,
//! and bitwise determinism of every output across two runs.

mod common;

use std::collections::HashMap;

use common::*;
use rand::Rng;
use ttrec::cache::{CacheStats, EMPTY, NONE, SELECTION_WORDS, STATS_WORDS};
use ttrec::gpu::Gpu;
use ttrec::graph::{Buf, GraphBuilder};
use ttrec::kernels::optim::{OptParams, UpdateKind};
use ttrec::kernels::tt_cache::{
    read_cache_stats, record_cache_pool, record_cache_probe, record_cache_reset,
    record_cache_select, record_cache_update, CacheHash,
};
use ttrec::kernels::tt_route::RouteParams;
use ttrec::twin::tt_cache::{
    count_keys, keys_of, pool_hits, update_rows, HashTwin, Pool, TwinBatch, TwinOpt,
};

const DIM: usize = 8;

/// A batch of a group of tables, laid out as the kernels read it.
struct Batch {
    ids: Vec<u32>,
    /// Per table: [first lookup, key offset].
    tables: Vec<[u32; 2]>,
    /// num_bags + 1 offsets, then padding.
    offsets: Vec<u32>,
    bag_dest: Vec<u32>,
    weights: Vec<f32>,
    num_bags: usize,
    /// Rows of the output: bags per table (the output is [rows, tables * DIM]).
    rows: usize,
    pool: Pool,
}

impl Batch {
    fn nnz(&self) -> usize {
        self.ids.len()
    }
    fn keys(&self) -> Vec<u32> {
        keys_of(&self.ids, &self.tables)
    }
    fn twin(&self) -> TwinBatch<'_> {
        TwinBatch {
            offsets: &self.offsets,
            bag_dest: &self.bag_dest,
            weights: &self.weights,
            pool: self.pool,
            num_bags: self.num_bags,
        }
    }
    fn route(&self) -> RouteParams {
        RouteParams {
            nnz: self.nnz() as u32,
            num_bags: self.num_bags as u32,
            tables: self.tables.len() as u32,
            cap: self.nnz() as u32,
            pool: match self.pool {
                Pool::Sum => 0,
                Pool::Mean => 1,
                Pool::Weighted => 2,
            },
            _pad: [0; 3],
        }
    }
}

/// `bags` bags per table of lengths 0..=max_len, ids Zipf-like (id = rows * u^skew, so small
/// ids are hot); table 1 has no lookups at all.
fn batch(seed: u64, rows: &[u32], bags: usize, max_len: usize, skew: f64, pool: Pool) -> Batch {
    let mut r = rng(seed);
    let t_n = rows.len();
    let (mut ids, mut tables, mut offsets, mut bag_dest) = (vec![], vec![], vec![], vec![]);
    let mut key_offset = 0u32;
    for (t, &n) in rows.iter().enumerate() {
        tables.push([ids.len() as u32, key_offset]);
        key_offset += n;
        for b in 0..bags {
            offsets.push(ids.len() as u32);
            bag_dest.push(((b * t_n + t) * DIM) as u32);
            let len = if t == 1 {
                0
            } else {
                r.random_range(0..=max_len)
            };
            for _ in 0..len {
                let u: f64 = r.random();
                ids.push(((n as f64 * u.powf(skew)) as u32).min(n - 1));
            }
        }
    }
    let num_bags = offsets.len();
    offsets.push(ids.len() as u32);
    offsets.extend([ids.len() as u32; 3]); // padding, as a plan's capacity leaves
    let weights = values(&mut r, ids.len());
    Batch {
        ids,
        tables,
        offsets,
        bag_dest,
        weights,
        num_bags,
        rows: bags,
        pool,
    }
}

const ROWS: [u32; 3] = [5000, 700, 40];

fn ext(b: &wgpu::Buffer) -> Buf {
    Buf::from(b)
}

fn raw(b: &Buf) -> &wgpu::Buffer {
    match b {
        Buf::External(b) => b,
        _ => unreachable!("tests bind their own buffers"),
    }
}

/// A cache on the GPU: hash table, stats, members, selection, values and Adagrad state.
struct GpuCache {
    g: Gpu,
    hash: CacheHash,
    stats: wgpu::Buffer,
    members: wgpu::Buffer,
    selection: wgpu::Buffer,
    c: usize,
}

impl GpuCache {
    fn new(g: &Gpu, entries: usize, max_probe: usize, c: usize) -> Self {
        let hash = CacheHash::new(g, "cache", entries, max_probe).unwrap();
        // Poisoned: the refresh must write every word it owns.
        let members = g.storage_from("members", &vec![0x5555_5555u32; c.max(1)]);
        let selection = g.storage_from("selection", &[0x5555_5555u32; SELECTION_WORDS]);
        GpuCache {
            g: g.clone(),
            hash,
            stats: g.storage_from("stats", &[0u32; STATS_WORDS]),
            members,
            selection,
            c,
        }
    }

    /// Inputs of a batch: (route, ids, tables, offsets, bag_dest, weights, hit).
    fn inputs(&self, b: &Batch) -> [wgpu::Buffer; 7] {
        let g = &self.g;
        let route = g.uniform("route", 32);
        g.write(&route, &[b.route()]);
        let flat: Vec<u32> = b.tables.iter().flatten().copied().collect();
        [
            route,
            g.storage_from("ids", &b.ids),
            g.storage_from("tables", &flat),
            g.storage_from("offsets", &b.offsets),
            g.storage_from("bag dest", &b.bag_dest),
            g.storage_from("weights", &b.weights),
            g.storage_from("hit", &vec![0x5555_5555u32; b.nnz().max(1)]),
        ]
    }

    fn probe(&self, b: &Batch, count: bool) -> Vec<u32> {
        let i = self.inputs(b);
        let mut gb = GraphBuilder::new(&self.g);
        record_cache_probe(
            &mut gb,
            "probe",
            ext(&i[0]),
            ext(&i[1]),
            ext(&i[2]),
            &self.hash,
            ext(&i[6]),
            ext(&self.stats),
            count,
            b.nnz() + 5,
            b.tables.len(),
        )
        .unwrap();
        gb.build().unwrap().run().unwrap();
        self.g.read_u32(&i[6], 0, b.nnz()).unwrap()
    }

    fn refresh(&self) -> (Vec<u32>, Vec<u32>) {
        let mut gb = GraphBuilder::new(&self.g);
        record_cache_select(
            &mut gb,
            "refresh",
            &self.hash,
            self.c,
            ext(&self.members),
            ext(&self.selection),
            ext(&self.stats),
        )
        .unwrap();
        gb.build().unwrap().run().unwrap();
        (
            self.g.read_u32(&self.members, 0, self.c).unwrap(),
            self.g
                .read_u32(&self.selection, 0, SELECTION_WORDS)
                .unwrap(),
        )
    }

    /// The hash table as the twin holds it.
    fn read_hash(&self) -> HashTwin {
        let h = self.hash.entries;
        let r = |b: &Buf| self.g.read_u32(raw(b), 0, h).unwrap();
        HashTwin::from_parts(
            r(&self.hash.keys),
            r(&self.hash.counts),
            r(&self.hash.slots),
            self.hash.max_probe,
        )
    }

    fn stats(&self) -> CacheStats {
        read_cache_stats(&self.g, &self.stats).unwrap()
    }

    /// Writes keys and counts into the hash table directly (slots untouched).
    fn write_entries(&self, keys: &[u32], counts: &[u32]) {
        self.g.write(raw(&self.hash.keys), keys);
        self.g.write(raw(&self.hash.counts), counts);
    }
}

/// Every member entry has a distinct slot < m with members[slot] == its key, every other entry
/// NONE, and members past m are NONE.
fn check_slots(t: &HashTwin, members: &[u32], m: usize) {
    let mut seen = vec![false; m];
    for (e, (&k, &s)) in t.keys.iter().zip(&t.slots).enumerate() {
        if s == NONE {
            continue;
        }
        assert_ne!(k, EMPTY, "empty entry {e} has slot {s}");
        assert!((s as usize) < m, "entry {e}: slot {s} >= members {m}");
        assert!(!seen[s as usize], "slot {s} given twice");
        seen[s as usize] = true;
        assert_eq!(members[s as usize], k, "members[{s}]");
    }
    assert!(seen.iter().all(|&x| x), "every slot below m is used");
    assert!(members[m..].iter().all(|&k| k == NONE), "members past m");
}

/// The refresh on the GPU against the twin's refresh of the same entries.
fn refresh_and_check(cache: &GpuCache) -> (HashTwin, Vec<u32>) {
    let mut twin = cache.read_hash();
    let (members, selection) = cache.refresh();
    let want = twin.refresh(cache.c);
    let got = cache.read_hash();
    let m = want.len();
    assert_eq!(selection[0] as usize, m, "member count");
    assert_eq!(selection[1] as u64, twin.occupied, "occupied entries");
    assert_eq!(&members[..m], &want[..], "members in slot order");
    assert_eq!(got.slots, twin.slots, "slots of every entry");
    check_slots(&got, &members, m);
    let stats = cache.stats();
    assert_eq!((stats.members, stats.occupied), (m as u64, twin.occupied));
    (got, members)
}

#[test]
fn probe_counts_refresh_and_hits_match_twin() {
    let g = gpu();
    let cache = GpuCache::new(&g, 4096, 32, 60);
    let mut all_keys = Vec::new();
    let mut nnz = 0u64;
    for (s, pool) in [(1, Pool::Sum), (2, Pool::Mean), (3, Pool::Weighted)] {
        let b = batch(s, &ROWS, 40, 9, 3.0, pool);
        let hit = cache.probe(&b, true);
        assert!(
            hit.iter().all(|&h| h == NONE),
            "no members before a refresh"
        );
        all_keys.extend(b.keys());
        nnz += b.nnz() as u64;
    }
    let exact = count_keys(&all_keys);
    assert!(exact.values().any(|&c| c > 20), "hot keys");
    let t = cache.read_hash();
    assert_eq!(t.counts_by_key(), exact, "counts per key");
    for (&k, _) in exact.iter() {
        assert!(t.find(k).is_some(), "key {k} findable along its chain");
    }
    let stats = cache.stats();
    assert_eq!((stats.lookups, stats.hits, stats.dropped), (nnz, 0, 0));

    let (mut t, _) = refresh_and_check(&cache);
    // Counting after the refresh: hits are the members' slots.
    let b = batch(4, &ROWS, 40, 9, 3.0, Pool::Sum);
    let keys = b.keys();
    let hit = cache.probe(&b, true);
    let want_hit = t.probe(&keys, true);
    assert_eq!(hit, want_hit, "hits");
    let hits = hit.iter().filter(|&&h| h != NONE).count() as u64;
    assert!(hits > 0 && hits < b.nnz() as u64);
    let stats = cache.stats();
    assert_eq!(
        (stats.lookups, stats.hits, stats.dropped),
        (nnz + b.nnz() as u64, hits, 0)
    );
    all_keys.extend(&keys);
    assert_eq!(cache.read_hash().counts_by_key(), count_keys(&all_keys));

    // Evaluation: no counts, no inserts (unseen keys are misses, not drops).
    let before = cache.read_hash();
    let b = batch(5, &ROWS, 40, 9, 1.0, Pool::Sum);
    let hit = cache.probe(&b, false);
    let want: Vec<u32> = b
        .keys()
        .iter()
        .map(|&k| before.find(k).map_or(NONE, |e| before.slots[e]))
        .collect();
    assert_eq!(hit, want, "evaluation hits");
    assert_eq!(cache.read_hash(), before, "evaluation changes nothing");
    assert_eq!(cache.stats().dropped, 0);

    // A second refresh with the new counts: no stale slot remains.
    refresh_and_check(&cache);
}

#[test]
fn drops_are_reported_when_the_hash_table_is_tiny() {
    let g = gpu();
    for (entries, max_probe) in [(16, 16), (64, 2)] {
        let cache = GpuCache::new(&g, entries, max_probe, 8);
        let b = batch(11, &ROWS, 30, 8, 1.5, Pool::Sum);
        let keys = b.keys();
        cache.probe(&b, true);
        let exact = count_keys(&keys);
        let t = cache.read_hash();
        let present = t.counts_by_key();
        // A key is counted in full or dropped in full: each entry changes only once.
        for (k, c) in &present {
            assert_eq!(exact[k], *c, "count of present key {k}");
        }
        let lost: u32 = exact
            .iter()
            .filter(|(k, _)| !present.contains_key(k))
            .map(|(_, c)| c)
            .sum();
        let stats = cache.stats();
        assert!(lost > 0, "the table is too small for the batch");
        assert_eq!(stats.dropped, lost as u64, "dropped occurrences");
        assert_eq!(stats.lookups, keys.len() as u64);
        if max_probe >= entries {
            assert_eq!(present.len(), entries, "a full table");
        }
        refresh_and_check(&cache);
    }
}

#[test]
fn refresh_breaks_ties_by_key_and_takes_all_when_fewer() {
    let g = gpu();
    let h = 2048;
    let mut r = rng(21);
    // 400 keys at random entries; counts with many ties, some spanning every byte of a u32.
    let mut keys = vec![EMPTY; h];
    let mut counts = vec![0u32; h];
    let mut used = std::collections::HashSet::new();
    let mut placed = 0;
    while placed < 400 {
        let e = r.random_range(0..h);
        let k = r.random_range(0..1_000_000u32);
        if keys[e] != EMPTY || !used.insert(k) {
            continue;
        }
        keys[e] = k;
        counts[e] = match placed % 5 {
            0 => 1,
            1 => 2,
            2 => 3 + r.random_range(0..3),
            3 => 0x0102_0300 + r.random_range(0..2),
            _ => 0x7fff_0000,
        };
        placed += 1;
    }
    // Keys that differ only in their lowest bits, tied at the top count.
    for (e, k) in [(5usize, 0x00ab_cd00u32), (6, 0x00ab_cd01), (7, 0x01ab_cd00)] {
        if keys[e] == EMPTY && used.insert(k) {
            keys[e] = k;
            counts[e] = 0x7fff_0000;
        }
    }
    for c in [1, 37, 80, 81, 250, 500, 2048] {
        let cache = GpuCache::new(&g, h, 32, c);
        cache.write_entries(&keys, &counts);
        let (t, members) = refresh_and_check(&cache);
        let m = t.keys.iter().filter(|&&k| k != EMPTY).count().min(c);
        assert_eq!(members.iter().filter(|&&k| k != NONE).count(), m);
        // A second refresh with other counts (ranks reversed) moves members: no stale slot.
        let reversed: Vec<u32> = counts
            .iter()
            .map(|&x| if x == 0 { 0 } else { 0x8000_0000 - x })
            .collect();
        cache.write_entries(&keys, &reversed);
        refresh_and_check(&cache);
    }
    // No cache rows: no members, but the occupied entries are still reported.
    let cache = GpuCache::new(&g, 1024, 32, 0);
    cache.probe(&batch(22, &ROWS, 20, 6, 2.0, Pool::Sum), true);
    refresh_and_check(&cache);
    let stats = cache.stats();
    assert!(stats.occupied > 0 && stats.members == 0, "{stats:?}");
    // An empty table: no members.
    let cache = GpuCache::new(&g, 64, 8, 10);
    let (_, selection) = cache.refresh();
    assert_eq!(selection[0], 0);
    assert!(cache.read_hash().slots.iter().all(|&s| s == NONE));
}

/// The value of cached row `key` (a function of the key only, so results compare across runs
/// whose slots differ).
fn row_of(key: u32) -> Vec<f32> {
    values(&mut rng(1000 + key as u64), DIM)
}

fn cache_values(members: &[u32], c: usize) -> Vec<f32> {
    let mut v = vec![0f32; c * DIM];
    for (s, &k) in members.iter().enumerate() {
        if k != NONE {
            v[s * DIM..(s + 1) * DIM].copy_from_slice(&row_of(k));
        }
    }
    v
}

/// |a - b| within `ulps` units in the last place of the larger (lavapipe matches the twin bit for
/// bit; the slack is for GPUs that fuse a multiply and an add).
fn assert_ulps(what: &str, got: &[f32], want: &[f32], ulps: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let tol = ulps * f32::EPSILON * a.abs().max(b.abs()).max(1e-30);
        assert!((a - b).abs() <= tol, "{what}[{i}]: {a} vs {b}");
    }
}

/// Everything one run produces, keyed by key (not slot).
#[derive(Debug, PartialEq)]
struct RunOutputs {
    out: Vec<Vec<u32>>,
    rows: HashMap<u32, Vec<u32>>,
    state: HashMap<u32, u32>,
    stats: CacheStats,
}

/// Warm-up counting, a refresh with `c` cache rows, then per pooling mode: probe, pool, and two
/// update steps, each against the twin. With more than 255 members the update's sort by slot
/// takes two radix passes. Returns the outputs for the determinism check.
fn pool_and_train(kind: UpdateKind, c: usize) -> RunOutputs {
    let g = gpu();
    let cache = GpuCache::new(&g, 8192, 32, c);
    let warm_bags = if c > 256 { 300 } else { 50 };
    for s in 0..3 {
        cache.probe(&batch(30 + s, &ROWS, warm_bags, 10, 2.0, Pool::Sum), true);
    }
    let (mut twin, members) = refresh_and_check(&cache);
    let m = members.iter().filter(|&&k| k != NONE).count();
    assert!(c < 256 || m > 256, "{m} members: two sort passes");
    let mut values_host = cache_values(&members, c);
    // Adagrad state, also a function of the key.
    let mut state_host: Vec<f32> = (0..c)
        .map(|s| match members[s] {
            NONE => 0.0,
            k => 0.01 * (1 + k % 7) as f32,
        })
        .collect();
    let values_buf = g.storage_from("cache values", &values_host);
    let state_buf = g.storage_from("state", &state_host);
    let (lr, eps) = (0.05f32, 1e-8f32);
    let opt = g.uniform("opt", 16);
    g.write(
        &opt,
        &[OptParams {
            lr,
            eps,
            len: c as u32,
            _pad: 0,
        }],
    );
    let twin_opt = match kind {
        UpdateKind::Sgd => TwinOpt::Sgd { lr },
        UpdateKind::Adagrad => TwinOpt::Adagrad { lr, eps },
    };
    let mut outs = Vec::new();
    for (step, pool) in [Pool::Mean, Pool::Weighted, Pool::Sum]
        .into_iter()
        .enumerate()
    {
        let b = batch(40 + step as u64, &ROWS, 50, 10, 4.0, pool);
        let hit = cache.probe(&b, true);
        assert_eq!(hit, twin.probe(&b.keys(), true), "hits of step {step}");
        let by_slot = count_keys(&hit);
        let hottest = by_slot
            .iter()
            .filter(|(&s, _)| s != NONE)
            .map(|(_, &n)| n)
            .max()
            .unwrap();
        assert!(hottest >= 20, "a hot cached row ({hottest} occurrences)");
        let i = cache.inputs(&b);
        g.write(&i[6], &hit);
        let out_len = b.rows * ROWS.len() * DIM;
        let mut r = rng(50 + step as u64);
        let out_host = values(&mut r, out_len);
        let out = g.storage_from("out", &out_host);
        let dout_host = values(&mut r, out_len);
        let dout = g.storage_from("dout", &dout_host);
        let mut gb = GraphBuilder::new(&g);
        record_cache_pool(
            &mut gb,
            "pool",
            ext(&i[0]),
            ext(&i[3]),
            ext(&i[4]),
            ext(&i[5]),
            ext(&i[6]),
            ext(&values_buf),
            ext(&out),
            DIM,
            b.num_bags + 3,
            b.nnz(),
            b.nnz(),
        )
        .unwrap();
        let state_bind = match kind {
            UpdateKind::Sgd => ext(g.placeholder_rw()),
            UpdateKind::Adagrad => ext(&state_buf),
        };
        // Two update steps with the same batch (the second sees the first's rows and state).
        for _ in 0..2 {
            record_cache_update(
                &mut gb,
                "update",
                ext(&i[0]),
                ext(&i[3]),
                ext(&i[4]),
                ext(&i[5]),
                ext(&i[6]),
                ext(&dout),
                ext(&values_buf),
                state_bind.clone(),
                ext(&opt),
                kind,
                DIM,
                b.nnz() + 7,
                c,
                b.nnz(),
            )
            .unwrap();
        }
        gb.build().unwrap().run().unwrap();

        let mut want_out = out_host.clone();
        pool_hits(&b.twin(), &hit, &values_host, DIM, &mut want_out);
        let got_out = g.read_f32(&out, 0, out_len).unwrap();
        assert_ulps(&format!("pooled out ({pool:?})"), &got_out, &want_out, 1.0);
        assert!(got_out != out_host, "some bags have hits");
        for _ in 0..2 {
            update_rows(
                &b.twin(),
                &hit,
                &dout_host,
                DIM,
                &mut values_host,
                &mut state_host,
                twin_opt,
            );
        }
        let got_values = g.read_f32(&values_buf, 0, c * DIM).unwrap();
        let got_state = g.read_f32(&state_buf, 0, c).unwrap();
        assert_ulps(
            &format!("trained rows ({pool:?}, {kind:?})"),
            &got_values,
            &values_host,
            4.0,
        );
        assert_ulps("Adagrad state", &got_state, &state_host, 4.0);
        outs.push(got_out.iter().map(|x| x.to_bits()).collect());
        // Continue from the GPU's values, so later steps compare one step's arithmetic.
        values_host = got_values;
        state_host = got_state;
    }
    RunOutputs {
        out: outs,
        rows: (0..m)
            .map(|s| {
                let row = &values_host[s * DIM..(s + 1) * DIM];
                (members[s], row.iter().map(|x| x.to_bits()).collect())
            })
            .collect(),
        state: (0..m)
            .map(|s| (members[s], state_host[s].to_bits()))
            .collect(),
        stats: cache.stats(),
    }
}

#[test]
fn pool_and_sgd_updates_match_twin() {
    pool_and_train(UpdateKind::Sgd, 40);
    pool_and_train(UpdateKind::Sgd, 700);
}

#[test]
fn pool_and_adagrad_updates_match_twin() {
    pool_and_train(UpdateKind::Adagrad, 40);
    pool_and_train(UpdateKind::Adagrad, 700);
}

#[test]
fn outputs_are_bitwise_deterministic() {
    for kind in [UpdateKind::Sgd, UpdateKind::Adagrad] {
        for c in [40, 700] {
            assert_eq!(
                pool_and_train(kind, c),
                pool_and_train(kind, c),
                "{kind:?}, {c}"
            );
        }
    }
}

#[test]
fn reset_empties_the_table() {
    let g = gpu();
    let cache = GpuCache::new(&g, 1024, 32, 16);
    cache.probe(&batch(60, &ROWS, 20, 6, 2.0, Pool::Sum), true);
    cache.refresh();
    assert!(cache.read_hash().slots.iter().any(|&s| s != NONE));
    let mut gb = GraphBuilder::new(&g);
    record_cache_reset(&mut gb, "reset", &cache.hash).unwrap();
    gb.build().unwrap().run().unwrap();
    assert_eq!(cache.read_hash(), HashTwin::new(1024, 32));
}
