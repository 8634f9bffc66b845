//! TT cores stored as f16 (`--tt-precision f16`): the f16 kernels validate with naga; the
//! GPU's f32 -> f16 rounding is to nearest, ties to even (the twin's); forward and core
//! gradients of an f16 table are bitwise those of the f32 kernels over the rounded cores (every
//! arithmetic is f32); SGD and Adagrad updates (fused and whole-core) are bitwise the twin's
//! (src/twin/tt_f16.rs); outputs and gradients are within the stated f16 bound of the f64
//! parity fixtures; an adapter without SHADER_F16 gets a named error. Runs on lavapipe.

mod common;

use common::*;
use ttrec::gpu::shaders::{CorePrecision, Shader, ShaderTypes};
use ttrec::parity::{check_close_with_slack, f16_storage_slack, fixtures_in, Fixture};
use ttrec::tt::{Bags, Optimizer, Pooling, TtEmbeddingBag, TtOptions, TtShape};
use ttrec::twin::tt as twin;
use ttrec::twin::tt_f16;

fn options(optimizer: Optimizer, precision: CorePrecision, chunk: Option<usize>) -> TtOptions {
    TtOptions {
        optimizer,
        precision,
        max_chunk_lookups: chunk,
        pooling: Pooling::Sum,
        ..TtOptions::default()
    }
}

/// Every specialisation of the shaders that bind cores parses and validates with naga.
#[test]
fn f16_shaders_validate_with_naga() {
    for shader in [Shader::Tt, Shader::TtSubgroup, Shader::Optim] {
        for lead in [false, true] {
            let types = ShaderTypes::new(CorePrecision::F16, lead);
            let source = shader.source_typed(types);
            let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| {
                panic!(
                    "{} ({types:?}): {}",
                    shader.name(),
                    e.emit_to_string(&source)
                )
            });
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::all(),
            )
            .validate(&module)
            .unwrap_or_else(|e| {
                panic!(
                    "{} ({types:?}): {}",
                    shader.name(),
                    e.emit_to_string(&source)
                )
            });
        }
    }
}

/// The GPU rounds a new f16 core value to nearest with ties to even, as `half` (the twin) does:
/// an SGD step at lr 1 from zero cores writes `-dout` exactly (core 1 all ones, rank 1, one
/// column per core-1 digit), so the stored values are the GPU's rounding of chosen ties.
#[test]
fn gpu_rounds_f32_to_f16_to_nearest_even() {
    let shape = TtShape::new(4, &[2, 2], &[8, 1], &[1]).unwrap();
    let cores = vec![vec![0.0f32; 16], vec![1.0f32; 2]];
    let ulp = 2f32.powi(-10); // f16 spacing in [1, 2)
                              // Exact ties between neighbours with even and odd mantissas, both signs, halfway cases at
                              // 2048 (spacing 2), a value just off a tie and one needing no rounding.
    let want_new = [
        1.0 + 0.5 * ulp,
        1.0 + 1.5 * ulp,
        -(1.0 + 0.5 * ulp),
        -(1.0 + 1.5 * ulp),
        2049.0,
        2051.0,
        1.0 + 0.5 * ulp + ulp / 64.0,
        0.75,
    ];
    // Two bags of one lookup each, rows 0 (digits 0, 0) and 3 (digits 1, 1): core 0's rows 0
    // and 1 both get the gradient `dout`; with chunks of one lookup the update is the
    // whole-core pass, otherwise the one fused into the gradient kernels.
    let dout: Vec<f32> = want_new.iter().chain(&want_new).map(|v| -v).collect();
    for chunk in [None, Some(1)] {
        let opts = options(Optimizer::Sgd { lr: 1.0 }, CorePrecision::F16, chunk);
        let mut t = TtEmbeddingBag::from_cores(&gpu(), shape.clone(), &cores, opts).unwrap();
        let (idx, off) = (vec![0i64, 3], vec![0i64, 1, 2]);
        t.backward(&Bags::new(&idx, &off), &dout).unwrap();
        let got = t.cores().unwrap();
        let want: Vec<f32> = want_new.iter().map(|&v| tt_f16::round_f16(v)).collect();
        assert_eq!(
            bits(&got[0][..8]),
            bits(&want),
            "chunk {chunk:?}: {:?}",
            got[0]
        );
        assert_eq!(
            bits(&got[0][8..]),
            bits(&want),
            "chunk {chunk:?}: {:?}",
            got[0]
        );
        // Ties went to the even neighbour, not up or towards zero.
        assert_eq!(got[0][0], 1.0);
        assert_eq!(got[0][1], 1.0 + 2.0 * ulp);
        assert_eq!(got[0][4], 2048.0);
        assert_eq!(got[0][5], 2052.0);
        assert_eq!(got[0][6], 1.0 + ulp);
        assert_eq!(got[1], vec![1.0, 1.0], "core 1 saw a zero gradient");
    }
}

/// Shapes that take the portable vec4 chain and core gradients, the subgroup chain, the scalar
/// kernels (odd dimensions) and a fourth core.
fn shapes() -> Vec<TtShape> {
    vec![
        TtShape::new(90, &[9, 11], &[4, 4], &[8]).unwrap(),
        TtShape::new(2000, &[13, 11, 14], &[4, 4, 4], &[32, 8]).unwrap(),
        TtShape::new(100, &[4, 5, 6], &[3, 1, 2], &[5, 7]).unwrap(),
        TtShape::new(200, &[3, 4, 5, 4], &[2, 3, 2, 2], &[3, 5, 4]).unwrap(),
    ]
}

/// An f16 table computes in f32 over its rounded cores: its forward and core gradients are
/// bitwise those of an f32 table holding the rounded cores; its SGD and Adagrad updates
/// (fused into the gradient kernels with one chunk, the whole-core pass with several) are
/// bitwise the twin's f32 update rounded to f16.
#[test]
fn f16_tables_match_f32_kernels_and_twin_bitwise() {
    let g = gpu();
    for (si, shape) in shapes().into_iter().enumerate() {
        let cores = tt_f16::round_cores(&random_cores(&shape, 40 + si as u64));
        let mut r = rng(50 + si as u64);
        let (idx, off) = bags(&mut r, 24, 6, shape.num_embeddings);
        let dout = values(&mut r, 24 * shape.dim());
        let b = Bags::new(&idx, &off);
        let optimizers = [
            Optimizer::Sgd { lr: 0.05 },
            Optimizer::Adagrad {
                lr: 0.05,
                eps: 1e-8,
            },
        ];
        for optimizer in optimizers {
            for chunk in [None, Some(7)] {
                let what = format!("shape {si} {optimizer:?} chunk {chunk:?}");
                let mut f32_table = TtEmbeddingBag::from_cores(
                    &g,
                    shape.clone(),
                    &cores,
                    options(Optimizer::None, CorePrecision::F32, chunk),
                )
                .unwrap();
                let want_out = f32_table.forward_backward(&b, &dout).unwrap();
                let grads = f32_table.grads().unwrap();
                let opts = options(optimizer, CorePrecision::F16, chunk);
                let mut t = TtEmbeddingBag::from_cores(&g, shape.clone(), &cores, opts).unwrap();
                assert_eq!(bits(&t.forward(&b).unwrap()), bits(&want_out), "{what}");
                let out = t.forward_backward(&b, &dout).unwrap();
                assert_eq!(bits(&out), bits(&want_out), "{what}: forward");
                let got_grads = t.grads().unwrap();
                for k in 0..shape.d() {
                    assert_eq!(bits(&got_grads[k]), bits(&grads[k]), "{what}: grad {k}");
                }
                let (want_cores, want_state) = match optimizer {
                    Optimizer::Sgd { lr } => (tt_f16::sgd_update(&cores, &grads, lr), None),
                    Optimizer::Adagrad { lr, eps } => {
                        let zero: Vec<Vec<f32>> =
                            cores.iter().map(|c| vec![0.0; c.len()]).collect();
                        let (c, s) = tt_f16::adagrad_update(&cores, &zero, &grads, lr, eps);
                        (c, Some(s))
                    }
                    Optimizer::None => unreachable!(),
                };
                let got = t.cores().unwrap();
                for k in 0..shape.d() {
                    assert_eq!(bits(&got[k]), bits(&want_cores[k]), "{what}: core {k}");
                    assert_ne!(got[k], cores[k], "{what}: core {k} did not move");
                }
                if let Some(want_state) = want_state {
                    let state = t.optimizer_state().unwrap().unwrap();
                    for k in 0..shape.d() {
                        assert_eq!(bits(&state[k]), bits(&want_state[k]), "{what}: state {k}");
                    }
                }
            }
        }
    }
}

/// Against the f64 parity fixtures (f32 cores, float64 reference): an f16 table's output and
/// core gradients are within the f16 storage bound of `parity::f16_storage_slack` on top of the
/// f32 rule. Storing a core rounds each value by at most 2^-11 relative; a product of m stored
/// factors is then off by at most (1 + 2^-11)^m - 1 relative, and a sum of such products by
/// that much of the sum of their magnitudes, which the f64 twin computes over |cores|, |dout|
/// and |weights| (m = d for outputs, d - 1 for a core's gradient).
#[test]
fn f16_tables_within_the_stated_bound_of_the_parity_fixtures() {
    let g = gpu();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/parity");
    let mut checked = 0;
    for path in fixtures_in(std::path::Path::new(dir)).unwrap() {
        let fx = Fixture::read(&path).unwrap();
        let opts = TtOptions {
            pooling: fx.pooling,
            optimizer: Optimizer::None,
            precision: CorePrecision::F16,
            ..TtOptions::default()
        };
        let mut t = TtEmbeddingBag::from_cores(&g, fx.shape.clone(), &fx.cores, opts).unwrap();
        let mut b = Bags::new(&fx.indices, &fx.offsets);
        if let Some(w) = &fx.weights {
            b = b.with_weights(w);
        }
        let out = t.forward_backward(&b, &fx.grad_output).unwrap();
        let grads = t.grads().unwrap();
        let abs_cores: Vec<Vec<f32>> = fx
            .cores
            .iter()
            .map(|c| c.iter().map(|x| x.abs()).collect())
            .collect();
        let abs_w: Option<Vec<f32>> = fx
            .weights
            .as_ref()
            .map(|w| w.iter().map(|x| x.abs()).collect());
        let abs_dout: Vec<f32> = fx.grad_output.iter().map(|x| x.abs()).collect();
        let (ix, of) = (u64s(&fx.indices), u64s(&fx.offsets));
        let d = fx.shape.d();
        for (name, _, want) in &fx.expected {
            let (got, magnitude, factors) = if name == "expected.output" {
                let m = twin::forward(
                    &fx.shape,
                    &abs_cores,
                    &ix,
                    &of,
                    abs_w.as_deref(),
                    fx.pooling,
                );
                (out.clone(), m, d)
            } else if let Some(k) = name.strip_prefix("expected.grad.cores.") {
                let k: usize = k.parse().unwrap();
                let m = twin::backward(
                    &fx.shape,
                    &abs_cores,
                    &ix,
                    &of,
                    abs_w.as_deref(),
                    fx.pooling,
                    &abs_dout,
                );
                (grads[k].clone(), m[k].clone(), d - 1)
            } else {
                continue;
            };
            let slack = f16_storage_slack(factors, &magnitude);
            let c = check_close_with_slack(name, &to_f64(&got), &to_f64(want), &slack);
            assert!(
                c.pass,
                "{}: {name} off by {:.3e} at {} (bound {:.3e})",
                fx.name, c.worst_abs, c.worst_index, c.tolerance
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} tensors checked");
}

/// An adapter without SHADER_F16 (lavapipe's GL adapter) refuses f16 cores with an error that
/// names the adapter, the feature and the flag, and never falls back to f32.
#[test]
fn an_adapter_without_shader_f16_gets_a_named_error() {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = wgpu::Backends::GL;
    let instance = wgpu::Instance::new(desc);
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::GL));
    let adapter = adapters
        .into_iter()
        .find(|a| !a.features().contains(wgpu::Features::SHADER_F16))
        .expect("a GL adapter without SHADER_F16 (Mesa's llvmpipe GL, as in CI)");
    let g = ttrec::gpu::Gpu::from_adapter(&adapter).unwrap();
    assert!(!g.has_f16());
    let shape = TtShape::new(90, &[9, 11], &[4, 4], &[8]).unwrap();
    let opts = options(Optimizer::Sgd { lr: 0.1 }, CorePrecision::F16, None);
    let e = TtEmbeddingBag::new(&g, shape.clone(), opts)
        .unwrap_err()
        .to_string();
    let name = adapter.get_info().name;
    assert!(
        e.contains("SHADER_F16") && e.contains("--tt-precision") && e.contains(&name),
        "{e}"
    );
    // f32 cores work there.
    let opts = options(Optimizer::Sgd { lr: 0.1 }, CorePrecision::F32, None);
    TtEmbeddingBag::new(&g, shape, opts).unwrap();
}
