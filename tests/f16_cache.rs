//! The LFU row cache of an f16 TT table stores its rows as f16 (shaders/tt_cache.wgsl with
//! `core_t = f16`): the module validates with naga; the pooling of f16 rows (read into f32) and
//! their SGD and row-wise Adagrad updates (f32 arithmetic, each occurrence's value rounded once
//! to f16) are bitwise the twin's (src/twin/tt_cache.rs `update_rows_f16`) on random non-zero
//! inputs with hot rows; a cached f16 table's refresh stores the members' rows rounded to f16
//! from the f32 rows its cores give. Runs on lavapipe (SHADER_F16).

mod common;

use common::*;
use rand::Rng;
use ttrec::cache::{CacheConfig, NONE};
use ttrec::gpu::shaders::{CorePrecision, Shader, ShaderTypes};
use ttrec::gpu::Gpu;
use ttrec::graph::{Buf, GraphBuilder};
use ttrec::kernels::optim::{OptParams, UpdateKind};
use ttrec::kernels::tt_cache::{record_cache_pool_as, record_cache_update_as};
use ttrec::kernels::tt_route::RouteParams;
use ttrec::tt::{Bags, Optimizer, Pooling, TtEmbeddingBag, TtOptions, TtShape};
use ttrec::twin::tt_cache::{pool_hits, update_rows_f16, Pool, TwinBatch, TwinOpt};
use ttrec::twin::tt_f16::round_f16;

const DIM: usize = 6;
const C: usize = 9;

#[test]
fn f16_cache_shader_validates_with_naga() {
    let src = Shader::TtCache.source_typed(ShaderTypes::new(CorePrecision::F16, false));
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("tt_cache f16: {}", e.emit_to_string(&src)));
    let caps = naga::valid::Capabilities::all();
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("tt_cache f16: {}", e.emit_to_string(&src)));
}

fn f16_buffer(g: &Gpu, label: &str, v: &[f32]) -> wgpu::Buffer {
    let mut bits: Vec<u16> = v
        .iter()
        .map(|&x| half::f16::from_f32(x).to_bits())
        .collect();
    bits.resize(bits.len().next_multiple_of(2), 0);
    g.storage_from(label, &bits)
}

fn read_f16(g: &Gpu, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let bytes = g.read_bytes(b, 0, n as u64 * 2).unwrap();
    bytes
        .chunks_exact(2)
        .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
        .collect()
}

/// Random bags over C slots (hot slots 0..3 take most hits, a third of the lookups miss), one
/// pooling, then two SGD or Adagrad updates, every output bitwise against the twin.
fn pool_and_train_f16(kind: UpdateKind, pool: Pool, seed: u64) {
    let g = gpu();
    let mut r = rng(seed);
    let num_bags = 12;
    let (mut offsets, mut hit) = (vec![0u32], Vec::new());
    for _ in 0..num_bags {
        for _ in 0..r.random_range(0..=5) {
            hit.push(match r.random_range(0..6) {
                0 | 1 => NONE,
                2..=4 => r.random_range(0..3),
                _ => r.random_range(3..C as u32),
            });
        }
        offsets.push(hit.len() as u32);
    }
    let nnz = hit.len();
    offsets.extend([nnz as u32; 3]);
    let bag_dest: Vec<u32> = (0..num_bags).map(|b| (b * DIM) as u32).collect();
    let weights = values(&mut r, nnz);
    let mut rows: Vec<f32> = values(&mut r, C * DIM).into_iter().map(round_f16).collect();
    let mut state: Vec<f32> = (0..C).map(|s| 0.01 * (1 + s % 4) as f32).collect();
    let out_host = values(&mut r, num_bags * DIM);
    let dout_host = values(&mut r, num_bags * DIM);
    let route = g.uniform("route", 32);
    let pool_code = match pool {
        Pool::Sum => 0,
        Pool::Mean => 1,
        Pool::Weighted => 2,
    };
    let params = RouteParams {
        nnz: nnz as u32,
        num_bags: num_bags as u32,
        tables: 1,
        cap: nnz as u32,
        pool: pool_code,
        _pad: [0; 3],
    };
    g.write(&route, &[params]);
    let bufs = [
        g.storage_from("offsets", &offsets),
        g.storage_from("bag dest", &bag_dest),
        g.storage_from("weights", &weights),
        g.storage_from("hit", &hit),
    ];
    let values_buf = f16_buffer(&g, "cache rows f16", &rows);
    let state_buf = g.storage_from("state", &state);
    let out = g.storage_from("out", &out_host);
    let dout = g.storage_from("dout", &dout_host);
    let (lr, eps) = (0.3f32, 1e-8f32);
    let opt = g.uniform("opt", 16);
    let len = C as u32;
    g.write(
        &opt,
        &[OptParams {
            lr,
            eps,
            len,
            _pad: 0,
        }],
    );
    let ext = Buf::from;
    let inputs = || {
        [
            ext(&route),
            ext(&bufs[0]),
            ext(&bufs[1]),
            ext(&bufs[2]),
            ext(&bufs[3]),
        ]
    };
    let mut gb = GraphBuilder::new(&g);
    let sizes = [DIM, num_bags + 3, nnz, nnz];
    let f16 = CorePrecision::F16;
    record_cache_pool_as(
        &mut gb,
        "pool",
        inputs(),
        ext(&values_buf),
        ext(&out),
        sizes,
        f16,
    )
    .unwrap();
    let state_bind = match kind {
        UpdateKind::Sgd => ext(g.placeholder_rw()),
        UpdateKind::Adagrad => ext(&state_buf),
    };
    for _ in 0..2 {
        let [a, b, c, d, e] = inputs();
        record_cache_update_as(
            &mut gb,
            "update",
            [a, b, c, d, e, ext(&dout)],
            [ext(&values_buf), state_bind.clone(), ext(&opt)],
            kind,
            [DIM, nnz + 5, C, nnz],
            f16,
        )
        .unwrap();
    }
    gb.build().unwrap().run().unwrap();

    let batch = TwinBatch {
        offsets: &offsets,
        bag_dest: &bag_dest,
        weights: &weights,
        pool,
        num_bags,
    };
    let what = format!("{kind:?} {pool:?}");
    let mut want_out = out_host.clone();
    pool_hits(&batch, &hit, &rows, DIM, &mut want_out);
    let got_out = g.read_f32(&out, 0, num_bags * DIM).unwrap();
    assert_eq!(bits(&got_out), bits(&want_out), "{what}: pooled out");
    assert_ne!(got_out, out_host, "{what}: some bags have hits");
    let before = rows.clone();
    let twin_opt = match kind {
        UpdateKind::Sgd => TwinOpt::Sgd { lr },
        UpdateKind::Adagrad => TwinOpt::Adagrad { lr, eps },
    };
    for _ in 0..2 {
        update_rows_f16(
            &batch, &hit, &dout_host, DIM, &mut rows, &mut state, twin_opt,
        );
    }
    let got_rows = read_f16(&g, &values_buf, C * DIM);
    assert_eq!(bits(&got_rows), bits(&rows), "{what}: trained f16 rows");
    assert_ne!(got_rows, before, "{what}: rows moved");
    if kind == UpdateKind::Adagrad {
        let got_state = g.read_f32(&state_buf, 0, C).unwrap();
        assert_eq!(bits(&got_state), bits(&state), "{what}: Adagrad state");
    }
}

#[test]
fn f16_cache_pool_and_sgd_match_twin_bitwise() {
    pool_and_train_f16(UpdateKind::Sgd, Pool::Sum, 1);
    pool_and_train_f16(UpdateKind::Sgd, Pool::Weighted, 2);
}

#[test]
fn f16_cache_pool_and_adagrad_match_twin_bitwise() {
    pool_and_train_f16(UpdateKind::Adagrad, Pool::Mean, 3);
    pool_and_train_f16(UpdateKind::Adagrad, Pool::Weighted, 4);
}

/// A cached f16 table: after the first refresh its cached rows are f16 values, each the f32
/// row of its key (from an uncached f16 table over the same cores) rounded once to f16.
#[test]
fn f16_table_refresh_stores_rounded_rows() {
    let g = gpu();
    let shape = TtShape::new(300, &[5, 6, 10], &[2, 2, 2], &[4, 4]).unwrap();
    let cores = random_cores(&shape, 7);
    let cache = CacheConfig {
        rows: 10,
        hash_entries: 256,
        max_probe: 32,
        warmup_steps: 1,
        refresh_every: 100,
    };
    let options = |cache| TtOptions {
        optimizer: Optimizer::Sgd { lr: 0.05 },
        precision: CorePrecision::F16,
        pooling: Pooling::Sum,
        cache,
        ..TtOptions::default()
    };
    let mut t =
        TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, options(Some(cache))).unwrap();
    let mut r = rng(8);
    let (idx, off) = bags(&mut r, 16, 5, 40);
    let dout = values(&mut r, 16 * shape.dim());
    t.forward_backward(&Bags::new(&idx, &off), &dout).unwrap();
    assert_eq!(t.params().cache().unwrap().refreshes(), 1, "refreshed");
    let rows = t.params().cache_rows().unwrap();
    assert!(!rows.is_empty(), "members");
    let trained = t.cores().unwrap();
    let mut plain = TtEmbeddingBag::from_cores(&g, shape.clone(), &trained, options(None)).unwrap();
    let ids: Vec<i64> = rows.iter().map(|(k, _)| *k as i64).collect();
    let offs: Vec<i64> = (0..=ids.len() as i64).collect();
    let want = plain.forward(&Bags::new(&ids, &offs)).unwrap();
    for (i, (k, got)) in rows.iter().enumerate() {
        let want: Vec<f32> = want[i * shape.dim()..(i + 1) * shape.dim()]
            .iter()
            .map(|&x| round_f16(x))
            .collect();
        assert_eq!(bits(got), bits(&want), "cached row {k}");
    }
}
