//! `cargo bench --bench tt`: the TT-EmbeddingBag configurations of `ttrec bench tt` (forward,
//! backward + SGD, whole step), on the adapter ttrec picks. Plain main: the numbers are medians of
//! timed replays after warm-up, the same code as the CLI.

fn main() -> anyhow::Result<()> {
    ttrec::gpu::ensure_runtime_dir();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let gpu = ttrec::gpu::Gpu::new()?;
    println!("adapter: {}", gpu.adapter_name());
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for cfg in ttrec::bench::tt_configs() {
        if !filter.is_empty() && !filter.iter().any(|f| cfg.name.contains(f.as_str())) {
            continue;
        }
        let r = ttrec::bench::run_tt(&gpu, &cfg, 10, 1.0, false)?;
        println!("{}", r.json());
    }
    Ok(())
}
