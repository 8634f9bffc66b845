//! `ttrec info`: the adapter ttrec picks (`TTREC_ADAPTER`, `WGPU_BACKEND` choose), its limits
//! and the kernel variants chosen for it, as text or one `info` JSON record.

use clap::Args;
use serde_json::json;

use ttrec::bench::BenchEnv;
use ttrec::gpu::Gpu;

/// `ttrec info`
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print one JSON object ("type": "info") instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `ttrec info`: the adapter ttrec picks and its limits.
pub fn info(args: InfoArgs) -> anyhow::Result<()> {
    let gpu = Gpu::new()?;
    let l = gpu.limits();
    let i = gpu.info();
    if args.json {
        let mut obj = serde_json::Map::new();
        obj.insert("type".into(), "info".into());
        BenchEnv::of(&gpu).add_to(&mut obj);
        let rest = json!({
            "class": format!("{:?}", gpu.class()),
            "vendor": i.vendor,
            "device": i.device,
            "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
            "max_buffer_size": l.max_buffer_size,
            "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
            "subgroup_min_size": i.subgroup_min_size,
            "subgroup_max_size": i.subgroup_max_size,
            "subgroup_kernels": gpu.subgroup_size().is_some(),
        });
        if let serde_json::Value::Object(m) = rest {
            obj.extend(m);
        }
        println!("{}", serde_json::Value::Object(obj));
        return Ok(());
    }
    println!("adapter: {}", gpu.adapter_name());
    println!("class: {:?}", gpu.class());
    println!("driver: {} {}", i.driver, i.driver_info);
    println!(
        "max storage binding: {} bytes",
        l.max_storage_buffer_binding_size
    );
    println!("max buffer: {} bytes", l.max_buffer_size);
    println!(
        "max workgroups per dimension: {}",
        l.max_compute_workgroups_per_dimension
    );
    println!("timestamps: {}", gpu.has_timestamps());
    println!(
        "tt kernels: {}",
        ttrec::tt::TtKernels::for_adapter(&gpu).describe()
    );
    match gpu.subgroup_size() {
        Some(n) => println!("subgroups: {n} lanes (subgroup kernels on)"),
        None => println!(
            "subgroups: off (adapter sizes {}..{})",
            i.subgroup_min_size, i.subgroup_max_size
        ),
    }
    Ok(())
}
