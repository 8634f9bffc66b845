//! `ttrec kernels --export DIR`: writes every compute pipeline the Kaggle DLRM's training and
//! evaluation plans and standalone TT tables build (WGSL as compiled, entry points, override
//! constants, bindings); see `ttrec::export`.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use ttrec::export::{class_name, export, ExportOptions};
use ttrec::gpu::{Gpu, KernelClass};
use ttrec::kernels::matmul::GemmVariant;

use super::args::positive_usize;

/// `ttrec kernels`
#[derive(Debug, Args)]
pub struct KernelsArgs {
    /// Write the pipelines into DIR: shaders/*.wgsl, pipelines/*.json, manifest.json.
    #[arg(long, value_name = "DIR")]
    pub export: PathBuf,
    /// Kernel variants: those for this adapter's class (auto), for CPU adapters or for GPUs.
    #[arg(long, default_value = "auto", value_parser = KernelClass::parse)]
    pub kernels: KernelClass,
    /// Samples per training and evaluation batch (the pipelines' shapes depend on it).
    #[arg(long, default_value_t = 256, value_parser = positive_usize)]
    pub batch: usize,
    /// Matrix-product variant (default: the model's choice for the adapter).
    #[arg(long, value_parser = ["registers", "tiled", "split"])]
    pub gemm: Option<String>,
    /// Print one JSON object ("type": "kernels_export") instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `ttrec kernels --export DIR`
pub fn kernels(a: KernelsArgs) -> anyhow::Result<()> {
    let gpu = Gpu::new()?;
    let options = ExportOptions {
        class: a.kernels.resolve(&gpu),
        batch: a.batch,
        gemm: a.gemm.as_deref().map(|g| match g {
            "registers" => GemmVariant::Registers,
            "split" => GemmVariant::Split,
            _ => GemmVariant::Tiled,
        }),
    };
    let summary = export(&gpu, &a.export, &options)?;
    if a.json {
        let record = json!({
            "type": "kernels_export",
            "dir": a.export.display().to_string(),
            "kernels": class_name(options.class),
            "batch": options.batch,
            "adapter": gpu.adapter_name(),
            "pipelines": summary.pipelines.len(),
            "shaders": summary.shaders.iter().map(|s| s.name()).collect::<Vec<_>>(),
        });
        println!("{record}");
    } else {
        println!("adapter: {}", gpu.adapter_name());
        for plan in &summary.plans {
            println!("built: {plan}");
        }
        println!(
            "wrote {} pipelines of {} shaders into {} (manifest.json lists them)",
            summary.pipelines.len(),
            summary.shaders.len(),
            a.export.display()
        );
    }
    Ok(())
}
