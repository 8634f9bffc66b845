//! `ttrec parity FILE...`: runs the TT-EmbeddingBag (`ttrec-parity-v1`) and DLRM
//! (`ttrec-dlrm-v1`) fixtures on this adapter, prints one verdict per fixture (text or
//! `parity_case` JSON records and a `parity_summary`), and fails if any fixture is off.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use serde_json::json;

use ttrec::bench::BenchEnv;
use ttrec::gpu::{AdapterOptions, DeviceLimits, Gpu, KernelClass};
use ttrec::kernels::tt::TtKernels;
use ttrec::parity::{dump, run_fixture_with, Fixture, ParityReport};

/// `ttrec parity FILE...`
#[derive(Debug, Args)]
pub struct ParityArgs {
    /// Fixture files (ttrec-parity-v1 TT-EmbeddingBag or ttrec-dlrm-v1 DLRM safetensors) or
    /// directories of them.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write what was computed to DIR/<fixture file name> as safetensors.
    #[arg(long, value_name = "DIR")]
    pub dump: Option<PathBuf>,
    /// Print one JSON object per fixture ("type": "parity_case") and a summary
    /// ("type": "parity_summary") instead of text.
    #[arg(long)]
    pub json: bool,
    /// The device's limits: the adapter's own, or WebGPU's defaults.
    #[arg(long, value_enum, default_value_t = DeviceLimits::Adapter)]
    pub limits: DeviceLimits,
    /// Which TT kernels run: the adapter's class (auto), the CPU-shaped or the GPU-shaped ones
    /// (every class must pass; their errors differ by their order of additions).
    #[arg(long, default_value = "auto", value_parser = KernelClass::parse)]
    pub kernels: KernelClass,
    /// Use the subgroup chain where the adapter has it (on) or the portable kernels only (off).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub subgroups: OnOff,
}

/// A switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// One fixture's JSON record.
fn parity_case_json(
    path: &std::path::Path,
    result: &Result<ParityReport, String>,
    dumped: Option<&std::path::Path>,
) -> serde_json::Value {
    match result {
        Err(e) => json!({
            "type": "parity_case",
            "file": path.display().to_string(),
            "pass": false,
            "error": e,
        }),
        Ok(r) => json!({
            "type": "parity_case",
            "file": path.display().to_string(),
            "name": r.name,
            "source": r.source,
            "pass": r.pass(),
            "error": null,
            "dump": dumped.map(|p| p.display().to_string()),
            "checks": r.checks.iter().map(|c| json!({
                "name": c.name,
                "worst_abs": c.worst_abs,
                "worst_index": c.worst_index,
                "tolerance": c.tolerance,
                "max_abs_want": c.max_abs_want,
                "pass": c.pass,
            })).collect::<Vec<_>>(),
        }),
    }
}

/// Runs every fixture; fails if any tensor is off or any fixture cannot run.
pub fn parity(args: ParityArgs) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for f in &args.files {
        if f.is_dir() {
            files.extend(ttrec::parity::fixtures_in(f)?);
        } else {
            files.push(f.clone());
        }
    }
    if files.is_empty() {
        bail!("no fixture files found in {:?}", args.files);
    }
    let gpu = Gpu::with_options(&AdapterOptions::with_limits(args.limits))?;
    let kernels = TtKernels {
        subgroups: args.subgroups == OnOff::On,
        ..TtKernels::for_class(args.kernels.resolve(&gpu))
    };
    if !args.json {
        println!("adapter: {}", gpu.adapter_name());
        println!("TT kernels: {}", kernels.describe());
    }
    let mut failed = 0;
    for path in &files {
        let result = ttrec::parity::fixture_format(path)
            .and_then(|format| {
                if format == ttrec::dlrm::fixture::FORMAT {
                    let fx = ttrec::dlrm::fixture::DlrmFixture::read(path)?;
                    ttrec::parity::run_dlrm_fixture(&gpu, &fx, Default::default())
                } else {
                    Fixture::read(path).and_then(|fx| run_fixture_with(&gpu, &fx, Some(kernels)))
                }
            })
            .map_err(|e| e.to_string());
        let dumped = match (&result, &args.dump) {
            (Ok(report), Some(dir)) => Some(dump(report, path, dir)?),
            _ => None,
        };
        if !matches!(&result, Ok(r) if r.pass()) {
            failed += 1;
        }
        if args.json {
            println!("{}", parity_case_json(path, &result, dumped.as_deref()));
            continue;
        }
        match &result {
            Err(e) => println!("FAIL {}: {e}", path.display()),
            Ok(report) => {
                let status = if report.pass() { "ok  " } else { "FAIL" };
                println!(
                    "{status} {} ({}) [{}]",
                    report.name,
                    path.display(),
                    report.source
                );
                for c in &report.checks {
                    println!(
                        "     {:<28} worst |err| {:.3e} at {:<6} tolerance {:.3e} (max|want| {:.3e}) {}",
                        c.name,
                        c.worst_abs,
                        c.worst_index,
                        c.tolerance,
                        c.max_abs_want,
                        if c.pass { "" } else { "<- FAIL" }
                    );
                }
                if let Some(out) = &dumped {
                    println!("     wrote {}", out.display());
                }
            }
        }
    }
    if args.json {
        let mut obj = serde_json::Map::new();
        obj.insert("type".into(), "parity_summary".into());
        BenchEnv::of(&gpu).add_to(&mut obj);
        let limits = match args.limits {
            DeviceLimits::Adapter => "adapter",
            DeviceLimits::Webgpu => "webgpu",
        };
        obj.insert("limits".into(), limits.into());
        obj.insert("passed".into(), (files.len() - failed).into());
        obj.insert("failed".into(), failed.into());
        obj.insert("total".into(), files.len().into());
        println!("{}", serde_json::Value::Object(obj));
    } else {
        println!("{} passed, {} failed", files.len() - failed, failed);
    }
    if failed > 0 {
        bail!("{failed} of {} fixtures failed", files.len());
    }
    Ok(())
}
