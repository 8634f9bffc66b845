//! `ttrec info`: the adapter ttrec picks (`--adapter` / `TTREC_ADAPTER`, `WGPU_BACKEND` choose),
//! its limits and the kernel variants that actually run on it, as text or one `info` JSON
//! record; `--list` lists every adapter with its backend and class instead.

use clap::Args;
use serde_json::json;

use ttrec::bench::BenchEnv;
use ttrec::gpu::{AdapterClass, Gpu};

/// `ttrec info`
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print one JSON object ("type": "info", or "info_adapter" per adapter with --list)
    /// instead of text.
    #[arg(long)]
    pub json: bool,
    /// List every adapter wgpu finds (within WGPU_BACKEND), with backend and class, the one
    /// ttrec picks first; pick another with --adapter NAME.
    #[arg(long)]
    pub list: bool,
}

/// The class ttrec gives an adapter of this device type (CPU adapters run the CPU kernels).
fn class_of(info: &wgpu::AdapterInfo) -> AdapterClass {
    if info.device_type == wgpu::DeviceType::Cpu {
        AdapterClass::Cpu
    } else {
        AdapterClass::Gpu
    }
}

/// `ttrec info --list`.
fn list(json_out: bool) -> anyhow::Result<()> {
    let adapters = Gpu::adapters()?;
    let want = std::env::var("TTREC_ADAPTER")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.to_lowercase());
    // The one ttrec picks: the first (best) one, or the first whose name contains --adapter.
    let picked = adapters.iter().position(|a| {
        want.as_ref()
            .is_none_or(|w| a.get_info().name.to_lowercase().contains(w))
    });
    for (i, a) in adapters.iter().enumerate() {
        let info = a.get_info();
        if json_out {
            println!(
                "{}",
                json!({
                    "type": "info_adapter",
                    "name": info.name,
                    "backend": format!("{:?}", info.backend),
                    "device_type": format!("{:?}", info.device_type),
                    "class": format!("{:?}", class_of(&info)),
                    "driver": info.driver,
                    "driver_info": info.driver_info,
                    "picked": picked == Some(i),
                })
            );
        } else {
            println!(
                "{} {} (backend {:?}, {:?}, class {:?}; driver {} {})",
                if picked == Some(i) { "*" } else { " " },
                info.name,
                info.backend,
                info.device_type,
                class_of(&info),
                info.driver,
                info.driver_info
            );
        }
    }
    if !json_out {
        match picked {
            Some(_) => println!(
                "(*: the adapter ttrec uses; choose with --adapter NAME, a part of the name in any case)"
            ),
            None => println!(
                "no adapter name contains {:?} (--adapter or TTREC_ADAPTER)",
                want.unwrap_or_default()
            ),
        }
    }
    Ok(())
}

/// `ttrec info`: the adapter ttrec picks and its limits.
pub fn info(args: InfoArgs) -> anyhow::Result<()> {
    if args.list {
        return list(args.json);
    }
    let gpu = Gpu::new()?;
    let l = gpu.limits();
    let i = gpu.info();
    let env = BenchEnv::of(&gpu);
    let gemm = ttrec::kernels::matmul::GemmVariant::for_class(gpu.class());
    if args.json {
        let mut obj = serde_json::Map::new();
        obj.insert("type".into(), "info".into());
        env.add_to(&mut obj);
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
            "shader_f16": gpu.has_f16(),
            "gemm_variant": format!("{gemm:?}"),
        });
        if let serde_json::Value::Object(m) = rest {
            obj.extend(m);
        }
        println!("{}", serde_json::Value::Object(obj));
        return Ok(());
    }
    println!("adapter: {}", gpu.adapter_name());
    println!("class: {:?} (the kernels --kernels auto runs)", gpu.class());
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
    // What runs: the subgroup kernels only where the adapter's subgroups passed the probe.
    match gpu.subgroup_size() {
        Some(n) => println!("subgroups: {n} lanes (subgroup kernels on)"),
        None => println!(
            "subgroups: off (adapter sizes {}..{}; the portable kernels run)",
            i.subgroup_min_size, i.subgroup_max_size
        ),
    }
    println!("tt kernels: {}", env.tt_kernels);
    if gpu.has_f16() {
        println!("shader f16: yes (--tt-precision f16 stores TT cores as f16)");
    } else {
        println!("shader f16: no (--tt-precision f16 is refused on this adapter)");
    }
    println!("matrix products: {gemm:?}");
    Ok(())
}
