//! An application that already owns a wgpu device (say, a renderer) hands it to ttrec, trains a
//! TT-compressed table for a few steps on random bags and reads a row back.
//!
//! cargo run --release --example embed_in_app

use rand::{Rng, SeedableRng};
use ttrec::gpu::Gpu;
use ttrec::tt::{Bags, Optimizer, Pooling, TtEmbeddingBag, TtOptions, TtShape};

fn main() -> anyhow::Result<()> {
    // A private runtime directory for Mesa when XDG_RUNTIME_DIR is unset (before any device).
    ttrec::gpu::ensure_runtime_dir();
    // wgpu's warnings and ttrec's log lines to stderr at level warn; RUST_LOG overrides.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    // The app's own device, created the usual wgpu way.
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
    let mut table = TtEmbeddingBag::new(&gpu, shape, options)?;

    // Pull the pooled embedding of every bag towards a target of all ones.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let bags = 256;
    let indices: Vec<u32> = (0..bags * 4)
        .map(|_| rng.random_range(0..1_000_000u32))
        .collect();
    let offsets: Vec<u32> = (0..=bags as u32).map(|b| b * 4).collect();
    let batch = Bags::new(&indices, &offsets);
    for step in 0..10 {
        let out = table.forward(&batch)?;
        let loss: f32 = out.iter().map(|y| (y - 1.0) * (y - 1.0)).sum::<f32>() / out.len() as f32;
        let grad: Vec<f32> = out
            .iter()
            .map(|y| 2.0 * (y - 1.0) / out.len() as f32)
            .collect();
        table.backward(&batch, &grad)?;
        println!("step {step}: loss {loss:.5}");
    }
    let row = table.forward(&Bags::new(&indices[..1], &[0u32, 1][..]))?;
    println!("row {}: {:?}", indices[0], row);
    Ok(())
}
