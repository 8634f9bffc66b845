//! `ttrec parity`, `ttrec bench` and `ttrec info`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use ttrec::bench::{run_tt, tt_configs};
use ttrec::gpu::Gpu;
use ttrec::parity::{dump, run_fixture, Fixture};

/// `ttrec parity FILE...`
#[derive(Debug, Args)]
pub struct ParityArgs {
    /// Fixture files (ttrec-parity-v1 safetensors) or directories of them.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write what was computed to DIR/<fixture file name> as safetensors.
    #[arg(long, value_name = "DIR")]
    pub dump: Option<PathBuf>,
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
    let gpu = Gpu::new()?;
    println!("adapter: {}", gpu.adapter_name());
    let mut failed = 0;
    for path in &files {
        let result = Fixture::read(path).and_then(|fx| run_fixture(&gpu, &fx).map(|r| (fx, r)));
        match result {
            Err(e) => {
                failed += 1;
                println!("FAIL {}: {e}", path.display());
            }
            Ok((_, report)) => {
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
                if !report.pass() {
                    failed += 1;
                }
                if let Some(dir) = &args.dump {
                    let out = dump(&report, path, dir)?;
                    println!("     wrote {}", out.display());
                }
            }
        }
    }
    println!("{} passed, {} failed", files.len() - failed, failed);
    if failed > 0 {
        bail!("{failed} of {} fixtures failed", files.len());
    }
    Ok(())
}

/// `ttrec bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// TT-EmbeddingBag: forward, backward+SGD and the whole step per configuration.
    Tt(BenchTtArgs),
}

#[derive(Debug, Args)]
pub struct BenchTtArgs {
    /// Configurations to run (fbtt, kaggle-r8, kaggle-r16, kaggle-r32); all by default.
    #[arg(long = "config", value_name = "NAME")]
    pub configs: Vec<String>,
    /// Print one JSON object per configuration.
    #[arg(long)]
    pub json: bool,
    /// Timed iterations at least.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Seconds each measurement lasts at least.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Also print per-kernel GPU times of one step (needs timestamp queries).
    #[arg(long)]
    pub profile: bool,
}

pub fn bench(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Tt(a) => {
            let all = tt_configs();
            for c in &a.configs {
                if !all.iter().any(|x| x.name == c) {
                    bail!(
                        "unknown config {c:?}; known: {}",
                        all.iter().map(|x| x.name).collect::<Vec<_>>().join(", ")
                    );
                }
            }
            let gpu = Gpu::new()?;
            if !a.json {
                println!("adapter: {}", gpu.adapter_name());
                println!(
                    "{:<11} {:>8} {:>11} {:>10} {:>11} {:>10} {:>11} {:>10} {:>10}",
                    "config",
                    "lookups",
                    "fwd us/lkp",
                    "fwd GF/s",
                    "bwd us/lkp",
                    "bwd GF/s",
                    "step us/lkp",
                    "step GF/s",
                    "step ms"
                );
            }
            for cfg in all
                .iter()
                .filter(|c| a.configs.is_empty() || a.configs.iter().any(|n| n == c.name))
            {
                let r = run_tt(&gpu, cfg, a.iters.max(1), a.seconds, a.profile)
                    .with_context(|| format!("config {}", cfg.name))?;
                if a.json {
                    println!("{}", r.json());
                } else {
                    println!(
                        "{:<11} {:>8} {:>11.3} {:>10.2} {:>11.3} {:>10.2} {:>11.3} {:>10.2} {:>10.2}",
                        r.config,
                        r.lookups,
                        r.forward_us / r.lookups as f64,
                        r.forward_gflops(),
                        r.backward_us / r.lookups as f64,
                        r.backward_gflops(),
                        r.us_per_lookup(),
                        r.gflops(),
                        r.step_us / 1e3
                    );
                }
                for (label, ns) in &r.profile {
                    if a.json {
                        println!(
                            "{}",
                            serde_json::json!({"config": r.config, "node": label, "us": ns / 1e3})
                        );
                    } else {
                        println!("    {:<32} {:>10.1} us", label, ns / 1e3);
                    }
                }
            }
            Ok(())
        }
    }
}

/// `ttrec info`: the adapter ttrec picks and its limits.
pub fn info() -> anyhow::Result<()> {
    let gpu = Gpu::new()?;
    let l = gpu.limits();
    println!("adapter: {}", gpu.adapter_name());
    println!("class: {:?}", gpu.class());
    println!("driver: {} {}", gpu.info().driver, gpu.info().driver_info);
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
    match gpu.subgroup_size() {
        Some(n) => println!("subgroups: {n} lanes (subgroup kernels on)"),
        None => println!(
            "subgroups: off (adapter sizes {}..{})",
            gpu.info().subgroup_min_size,
            gpu.info().subgroup_max_size
        ),
    }
    Ok(())
}
