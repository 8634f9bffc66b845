//! An application that already owns a wgpu device (say, a renderer) hands it to ttrec and keeps
//! its data on the GPU:
//! 1. a TT-compressed table trained in the app's own encoder: `forward_into` writes the pooled
//!    rows into the app's buffer, the app's own compute shader turns them into a gradient, and
//!    `backward_from` reads that gradient from the app's buffer (no readback inside the loop);
//! 2. a small DLRM trained, saved with what scoring needs, loaded back (as a server would), and
//!    serving click probabilities with `score_into`, straight into the app's buffer in the app's
//!    encoder.
//!
//! cargo run --release --example embed_in_app

use rand::{Rng, SeedableRng};
use ttrec::data::{Categories, Encoding, NUM_DENSE, NUM_SPARSE};
use ttrec::dlrm::{Dlrm, DlrmBatch, DlrmConfig, DlrmOptions, TableConfig, TableKind};
use ttrec::gpu::Gpu;
use ttrec::tt::{Bags, Optimizer, Pooling, TtEmbeddingBag, TtOptions, TtShape};

/// The app's own kernel: the gradient of the mean squared distance of every pooled value to 1.
const GRADIENT_WGSL: &str = r#"
@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let n = arrayLength(&g);
    if (id.x < n) {
        g[id.x] = 2.0 * (y[id.x] - 1.0) / f32(n);
    }
}
"#;

fn main() -> anyhow::Result<()> {
    // A private runtime directory for Mesa when XDG_RUNTIME_DIR is unset (before any device).
    ttrec::gpu::ensure_runtime_dir();
    // wgpu's warnings and ttrec's log lines to stderr at level warn; RUST_LOG overrides.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    // The app's own device, created the usual wgpu way, with the adapter's limits (ttrec needs
    // no feature; see `Gpu::from_device`).
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .map_err(|e| {
                anyhow::anyhow!(
                    "no adapter ({e}); on Linux without a GPU: apt-get install mesa-vulkan-drivers"
                )
            })?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("my app"),
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;
    println!("app device on {}", adapter.get_info().name);

    // ttrec computes on it.
    let gpu = Gpu::from_device(device, queue, adapter.get_info());
    train_a_table_on_the_gpu(&gpu)?;
    serve_a_dlrm(&gpu)?;
    Ok(())
}

/// A storage buffer of the app's, `n` f32 values.
fn app_buffer(gpu: &Gpu, label: &str, n: usize) -> wgpu::Buffer {
    gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: 4 * n as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// Part 1: a TT table's forward, the app's gradient kernel and the table's backward with its
/// fused Adagrad update, all in one encoder of the app's per step.
fn train_a_table_on_the_gpu(gpu: &Gpu) -> anyhow::Result<()> {
    // A 1,000,000 x 16 table as three cores: 1e6 = 100 x 100 x 100 rows, 16 = 2 x 2 x 4 columns.
    let shape = TtShape::with_dim(1_000_000, 16, &[100, 100, 100], &[2, 2, 4], &[16, 16])?;
    println!(
        "{shape}: {} parameters, {:.0}x smaller than dense",
        shape.num_params(),
        shape.compression()
    );
    let options = TtOptions {
        pooling: Pooling::Sum,
        optimizer: Optimizer::Adagrad {
            lr: 0.05,
            eps: 1e-8,
        },
        ..TtOptions::default()
    };
    let mut table = TtEmbeddingBag::new(gpu, shape, options)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let bags = 256;
    let indices: Vec<u32> = (0..bags * 4)
        .map(|_| rng.random_range(0..1_000_000u32))
        .collect();
    let offsets: Vec<u32> = (0..=bags as u32).map(|b| b * 4).collect();
    let batch = Bags::new(&indices, &offsets);

    // The app's buffers and its gradient pipeline.
    let n = bags * 16;
    let (pooled, grad) = (
        app_buffer(gpu, "pooled rows", n),
        app_buffer(gpu, "gradient", n),
    );
    let device = gpu.device();
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("app gradient"),
        source: wgpu::ShaderSource::Wgsl(GRADIENT_WGSL.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("app gradient"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("app gradient"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: pooled.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: grad.as_entire_binding(),
            },
        ],
    });
    for step in 0..10 {
        let mut enc = device.create_command_encoder(&Default::default());
        table.forward_into(&batch, &pooled, &mut enc)?;
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups((n as u32).div_ceil(64), 1, 1);
        }
        table.backward_from(&batch, &grad, &mut enc)?;
        gpu.queue().submit([enc.finish()]);
        // Only to print the loss: the loop itself never reads back.
        if step % 3 == 0 || step == 9 {
            let y = gpu.read_f32(&pooled, 0, n)?;
            let loss = y.iter().map(|v| (v - 1.0) * (v - 1.0)).sum::<f32>() / n as f32;
            println!("table step {step}: loss {loss:.5} (before the step's update)");
        }
    }
    Ok(())
}

/// Part 2: a DLRM trained for a few steps, saved as a checkpoint that carries its encoding,
/// loaded back, and serving probabilities into the app's buffer in the app's encoder.
fn serve_a_dlrm(gpu: &Gpu) -> anyhow::Result<()> {
    let rows: [u64; NUM_SPARSE] = std::array::from_fn(|t| 1000 + 500 * t as u64);
    let config = DlrmConfig {
        bottom_mlp: vec![NUM_DENSE, 64, 16],
        top_mlp: vec![64, 1],
        tables: rows
            .iter()
            .map(|&rows| TableConfig {
                rows,
                kind: TableKind::Dense,
            })
            .collect(),
        ..DlrmConfig::kaggle_dense()
    }
    .with_tt_largest(3, 8)?;
    let mut model = Dlrm::new(gpu, config, DlrmOptions::default())?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let b = 128;
    let dense: Vec<f32> = (0..b * NUM_DENSE)
        .map(|_| rng.random_range(0.0..5.0))
        .collect();
    let sparse: Vec<u32> = (0..b * NUM_SPARSE)
        .map(|i| rng.random_range(0..rows[i % NUM_SPARSE] as u32))
        .collect();
    // Clicks where the first dense feature is large: something to learn.
    let labels: Vec<f32> = (0..b)
        .map(|s| (dense[s * NUM_DENSE] > 2.5) as u32 as f32)
        .collect();
    let batch = DlrmBatch {
        dense: &dense,
        sparse: &sparse,
        labels: &labels,
    };
    for _ in 0..20 {
        model.train_step(&batch)?;
    }
    let losses = model.take_stats()?;
    println!(
        "dlrm: loss {:.4} after the first step, {:.4} after the last",
        losses[0].loss,
        losses[losses.len() - 1].loss
    );

    // Saved with the rule that maps raw values to rows (here the ids are the values), so the
    // file alone scores (`ttrec predict --model` too); loaded back as a server would.
    let path =
        std::env::temp_dir().join(format!("embed_in_app-{}.safetensors", std::process::id()));
    let encoding = Encoding {
        max_ind_range: None,
        categories: Categories::Modulo(rows),
    };
    ttrec::predict::save_model(&path, &model, &encoding)?;
    let (mut served, _) = ttrec::predict::load_model(gpu, &path, DlrmOptions::default())?;
    std::fs::remove_file(&path)?;

    // Serving: the probabilities land in the app's buffer, inside the app's encoder, next to
    // whatever else the app records there.
    let scores = app_buffer(gpu, "click probabilities", b);
    let mut enc = gpu.device().create_command_encoder(&Default::default());
    served.score_into(&batch, &scores, 0, &mut enc)?;
    gpu.queue().submit([enc.finish()]);
    // Read back here only to show them.
    let p = gpu.read_f32(&scores, 0, b)?;
    let auc = ttrec::metrics::roc_auc(&labels, &p)?;
    println!(
        "served {b} probabilities on the GPU: first {:.4} {:.4} {:.4}; AUC on the training batch {auc:.3}",
        p[0], p[1], p[2]
    );
    Ok(())
}
