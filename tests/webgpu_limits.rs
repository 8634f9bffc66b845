//! What WebGPU requires of ttrec, checked on this adapter: no dispatch binds a buffer range to a
//! writable binding and another binding at once (the graph refuses it when recording, naming the
//! node and both bindings), and every plan (TT step, cached TT step, DLRM train and eval, with
//! the CPU- and the GPU-class TT kernels) builds and runs under WebGPU's default limits with the
//! results it has under the adapter's own limits, bitwise.

mod common;

use common::*;
use ttrec::cache::CacheConfig;
use ttrec::dlrm::{Dlrm, DlrmBatch, DlrmConfig, DlrmOptions};
use ttrec::gpu::reflect::Access;
use ttrec::gpu::shaders::Kernel;
use ttrec::gpu::{AdapterOptions, DeviceLimits, Gpu};
use ttrec::graph::{Binding, Buf, GraphBuilder};
use ttrec::tt::{
    Bags, CoreGradStrategy, Optimizer, SortStrategy, TtEmbeddingBag, TtKernels, TtOptions, TtShape,
};

fn webgpu() -> Gpu {
    Gpu::with_options(&AdapterOptions::with_limits(DeviceLimits::Webgpu))
        .unwrap_or_else(|e| panic!("a device with WebGPU's default limits: {e}"))
}

/// A transpose dispatch (`core` read, `out` read-write) of `core` into `out`.
fn transpose(g: &mut GraphBuilder, core: Buf, out: Buf) -> ttrec::Result<()> {
    let pipeline = g
        .gpu()
        .pipeline(
            Kernel::TtTransposeSlices,
            &[("RK", 1.0), ("NK", 4.0), ("PK", 2.0)],
        )
        .unwrap();
    g.dispatch(
        "transpose under test",
        "tt::transpose_slices",
        pipeline,
        vec![
            Binding {
                name: "core",
                access: Access::Read,
                buf: core,
            },
            Binding {
                name: "out",
                access: Access::ReadWrite,
                buf: out,
            },
        ],
        [1, 1, 1],
    )
}

#[test]
fn writable_aliasing_is_refused_when_recorded() {
    let gpu = gpu();
    let mut g = GraphBuilder::new(&gpu);
    let buffer = gpu.storage("shared", 1024);
    // The same buffer read and written: refused, naming the node and both bindings.
    let e = transpose(&mut g, Buf::from(&buffer), Buf::from(&buffer))
        .unwrap_err()
        .to_string();
    for want in [
        "transpose under test",
        "tt::transpose_slices",
        "core (storage, read)",
        "out (storage, read_write)",
    ] {
        assert!(e.contains(want), "{want:?} not in: {e}");
    }
    // Through the launcher too.
    let e = ttrec::kernels::tt::record_transpose(
        &mut g,
        "launched".into(),
        Buf::from(&buffer),
        Buf::from(&buffer),
        2,
        1,
        4,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("\"launched\"") && e.contains("core") && e.contains("out"),
        "{e}"
    );
    // Overlapping slices of one buffer: refused; disjoint ones: fine.
    let slice = |offset, size| Buf::Slice {
        buffer: buffer.clone(),
        offset,
        size,
    };
    assert!(transpose(&mut g, slice(0, 512), slice(256, 512)).is_err());
    assert!(transpose(&mut g, slice(256, 512), Buf::from(&buffer)).is_err());
    transpose(&mut g, slice(0, 256), slice(256, 256)).unwrap();
    // One transient twice: refused; two transients (distinct while both are live): fine.
    let (t0, t1) = (g.transient("t0", 64), g.transient("t1", 64));
    let e = transpose(&mut g, t0.clone(), t0.clone())
        .unwrap_err()
        .to_string();
    assert!(e.contains("transient \"t0\""), "{e}");
    transpose(&mut g, t0, t1).unwrap();
    assert_eq!(g.len(), 2, "refused dispatches were recorded");
    g.build().unwrap();
}

/// A small DLRM with two TT tables and two dense ones.
fn dlrm_config() -> DlrmConfig {
    small_dlrm_config(3, false)
}

/// The TT kernel variants of a CPU adapter and of a GPU (with and without subgroups).
fn kernel_classes(gpu: &Gpu) -> Vec<TtKernels> {
    let cpu = TtKernels {
        core_grad: CoreGradStrategy::Rows,
        sort: SortStrategy::Workgroup,
        ..TtKernels::for_adapter(gpu)
    };
    let gpu_class = TtKernels {
        core_grad: CoreGradStrategy::Pieces,
        sort: SortStrategy::Blocks,
        ..cpu
    };
    vec![
        cpu,
        TtKernels {
            subgroups: false,
            ..cpu
        },
        gpu_class,
        TtKernels {
            subgroups: false,
            ..gpu_class
        },
    ]
}

/// Bits of: a TT table's outputs and cores after training steps with and without a cache, in
/// several chunks and in one; a DLRM's losses, parameters and predictions.
fn run_everything(gpu: &Gpu, kernels: TtKernels) -> Vec<Vec<u32>> {
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mut out = Vec::new();
    let shape = TtShape::new(700, &[8, 9, 10], &[2, 2, 2], &[8, 8]).unwrap();
    let cores = random_cores(&shape, 5);
    let mut r = rng(9);
    let (idx, off) = bags(&mut r, 60, 6, 700);
    let bags_ = Bags::new(&idx, &off);
    let dout = values(&mut r, 60 * shape.dim());
    for (chunk, cache) in [
        (97, None),
        (10_000, None),
        (10_000, Some(40)),
        (97, Some(40)),
    ] {
        let options = TtOptions {
            optimizer: Optimizer::Adagrad {
                lr: 0.05,
                eps: 1e-8,
            },
            max_chunk_lookups: Some(chunk),
            kernels: Some(kernels),
            cache: cache.map(|rows| CacheConfig {
                rows,
                hash_entries: 256,
                max_probe: 32,
                warmup_steps: 1,
                refresh_every: 2,
            }),
            ..TtOptions::default()
        };
        let mut t = TtEmbeddingBag::from_cores(gpu, shape.clone(), &cores, options)
            .unwrap_or_else(|e| panic!("table (chunk {chunk}, cache {cache:?}): {e}"));
        for _ in 0..3 {
            out.push(bits(&t.forward_backward(&bags_, &dout).unwrap()));
        }
        out.extend(t.cores().unwrap().iter().map(|c| bits(c)));
    }
    let config = dlrm_config();
    let options = DlrmOptions {
        tt_kernels: Some(kernels),
        ..DlrmOptions::default()
    };
    let mut m = Dlrm::new(gpu, config.clone(), options).unwrap();
    let batch = 24;
    let dense: Vec<f32> = values(&mut r, batch * 13)
        .iter()
        .map(|v| v.abs() * 3.0)
        .collect();
    let sparse: Vec<u32> = (0..batch)
        .flat_map(|i| {
            config
                .tables
                .iter()
                .map(move |t| (i * 7 % t.rows as usize) as u32)
        })
        .collect();
    let labels: Vec<f32> = (0..batch).map(|i| (i % 3 == 0) as u8 as f32).collect();
    let b = DlrmBatch {
        dense: &dense,
        sparse: &sparse,
        labels: &labels,
    };
    for _ in 0..3 {
        m.train_step(&b).unwrap();
    }
    out.push(
        m.take_stats()
            .unwrap()
            .iter()
            .flat_map(|s| {
                let b = s.loss.to_bits();
                [b as u32, (b >> 32) as u32]
            })
            .collect(),
    );
    out.push(bits(&m.predict(&b).unwrap()));
    let mut names = m.parameter_names();
    names.sort();
    for (n, _) in names {
        out.push(bits(&m.parameter(&n).unwrap()));
    }
    out
}

#[test]
fn every_plan_runs_under_webgpu_limits_with_the_same_bits() {
    let (native, web) = (gpu(), webgpu());
    assert_eq!(web.limits().max_storage_buffer_binding_size, 128 << 20);
    assert_eq!(web.limits().max_storage_buffers_per_shader_stage, 8);
    for kernels in kernel_classes(&native) {
        let a = run_everything(&native, kernels);
        let b = run_everything(&web, kernels);
        assert!(
            a == b,
            "results differ under WebGPU's limits ({})",
            kernels.describe()
        );
    }
    native.take_error().unwrap();
    web.take_error().unwrap();
}

/// A transient larger than WebGPU's 128 MiB storage binding, or a caller's buffer bound whole
/// over it, is ttrec's own error naming the buffer (or node and binding) and the limit, raised
/// when the plan is built, before wgpu's validation.
#[test]
fn an_oversized_transient_names_the_limit() {
    let web = webgpu();
    let mut g = GraphBuilder::new(&web);
    let big = g.transient("big scratch", 130 << 20);
    let small = g.transient("small", 256);
    transpose(&mut g, small, big).unwrap();
    let e = g.build().unwrap_err().to_string();
    assert!(
        e.contains("big scratch") && e.contains("maxStorageBufferBindingSize"),
        "{e}"
    );
    // A caller's buffer over the binding limit, bound whole: named by node and binding.
    let mut g = GraphBuilder::new(&web);
    let big = web.storage("big", 129 << 20);
    let small = g.transient("small", 256);
    transpose(&mut g, small, Buf::from(&big)).unwrap();
    let e = g.build().unwrap_err().to_string();
    assert!(
        e.contains("transpose under test")
            && e.contains("to out")
            && e.contains("maxStorageBufferBindingSize of 134217728"),
        "{e}"
    );
    web.take_error().unwrap();
}
