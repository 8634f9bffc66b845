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
    /// Fixture files (ttrec-parity-v1 TT-EmbeddingBag or ttrec-dlrm-v1 DLRM safetensors) or
    /// directories of them.
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
        let result = ttrec::parity::fixture_format(path).and_then(|format| {
            if format == ttrec::dlrm::fixture::FORMAT {
                let fx = ttrec::dlrm::fixture::DlrmFixture::read(path)?;
                ttrec::parity::run_dlrm_fixture(&gpu, &fx, Default::default())
            } else {
                Fixture::read(path).and_then(|fx| run_fixture(&gpu, &fx))
            }
        });
        match result {
            Err(e) => {
                failed += 1;
                println!("FAIL {}: {e}", path.display());
            }
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
    /// DLRM training step (dlrm's Kaggle configuration): samples/s, FLOPs per sample.
    Dlrm(BenchDlrmArgs),
}

#[derive(Debug, Args)]
pub struct BenchDlrmArgs {
    /// Embedding variants: tt (the 7 largest tables TT) and/or dense.
    #[arg(long, value_delimiter = ',', default_values_t = ["tt".to_string(), "dense".to_string()])]
    pub variant: Vec<String>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_values_t = [128usize, 2048])]
    pub batch: Vec<usize>,
    /// Kaggle's table sizes times this (default: 1, or 0.05 for dense tables on a CPU adapter).
    #[arg(long)]
    pub scale: Option<f64>,
    /// Rank of the TT tables.
    #[arg(long, default_value_t = 32)]
    pub rank: usize,
    /// Seconds each measurement lasts at least.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Steps each measurement takes at least.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Print one JSON object per measurement.
    #[arg(long)]
    pub json: bool,
    /// Also print GPU times of one step's kernels, summed by model part (needs timestamps).
    #[arg(long)]
    pub profile: bool,
    /// Matrix-product variant: registers (CPU adapters' default) or tiled (GPUs' default).
    #[arg(long, value_parser = ["registers", "tiled"])]
    pub gemm: Option<String>,
}

fn bench_dlrm(a: BenchDlrmArgs) -> anyhow::Result<()> {
    use ttrec::bench::dlrm::{bench_model, default_scale, node_part, run_dlrm, DlrmBenchConfig};
    for v in &a.variant {
        if v != "tt" && v != "dense" {
            bail!("unknown --variant {v:?}; tt or dense");
        }
    }
    if let Some(s) = a.scale {
        if !(s.is_finite() && s > 0.0) {
            bail!("--scale must be a positive number, got {s}");
        }
    }
    if !(a.seconds.is_finite() && a.seconds >= 0.0) {
        bail!("--seconds must be a non-negative number, got {}", a.seconds);
    }
    if a.batch.contains(&0) {
        bail!("--batch sizes must be positive");
    }
    let gpu = Gpu::new()?;
    if !a.json {
        println!("adapter: {}", gpu.adapter_name());
        println!(
            "{:<7} {:>6} {:>7} {:>12} {:>12} {:>14} {:>10} {:>9}",
            "variant",
            "batch",
            "scale",
            "emb params",
            "samples/s",
            "synced ms/step",
            "MFLOP/smp",
            "GFLOP/s"
        );
    }
    for variant in &a.variant {
        let mut model = None;
        for &batch in &a.batch {
            let cfg = DlrmBenchConfig {
                variant: variant.clone(),
                batch,
                scale: a.scale.unwrap_or_else(|| default_scale(&gpu, variant)),
                rank: a.rank,
            };
            if model.is_none() {
                let gemm = a.gemm.as_deref().map(|g| match g {
                    "registers" => ttrec::kernels::matmul::GemmVariant::Registers,
                    _ => ttrec::kernels::matmul::GemmVariant::Tiled,
                });
                model = Some(
                    bench_model(&gpu, &cfg, gemm)
                        .with_context(|| format!("dlrm {variant} model"))?,
                );
            }
            let m = model.as_mut().expect("model");
            let r = run_dlrm(&gpu, m, &cfg, a.steps, a.seconds, a.profile)
                .with_context(|| format!("dlrm {variant} batch {batch}"))?;
            if a.json {
                println!("{}", r.json());
            } else {
                println!(
                    "{:<7} {:>6} {:>7} {:>12} {:>12.0} {:>14.2} {:>10.3} {:>9.2}",
                    variant,
                    batch,
                    cfg.scale,
                    r.embedding_params,
                    r.samples_per_s,
                    r.synced_step_ms,
                    r.mflop_per_sample(),
                    r.gflops()
                );
            }
            if a.profile && a.json {
                for (label, us) in &r.profile {
                    println!(
                        "{}",
                        serde_json::json!({"bench": "dlrm-node", "variant": variant, "batch": batch, "node": label, "us": us})
                    );
                }
            }
            if a.profile {
                let mut parts: Vec<(&str, f64, usize)> = Vec::new();
                for (label, us) in &r.profile {
                    let p = node_part(label);
                    match parts.iter_mut().find(|x| x.0 == p) {
                        Some(e) => {
                            e.1 += us;
                            e.2 += 1;
                        }
                        None => parts.push((p, *us, 1)),
                    }
                }
                let total: f64 = parts.iter().map(|p| p.1).sum();
                for (p, us, n) in &parts {
                    let flops = r
                        .flops_per_sample
                        .iter()
                        .find(|(k, _)| k == p)
                        .map(|(_, f)| f * batch as f64);
                    if a.json {
                        println!(
                            "{}",
                            serde_json::json!({"bench": "dlrm-profile", "variant": variant, "batch": batch, "part": p, "nodes": n, "us": us, "gflops": flops.map(|f| f / (us * 1e3))})
                        );
                    } else {
                        let gf = flops
                            .map(|f| format!("{:>8.2} GFLOP/s", f / (us * 1e3)))
                            .unwrap_or_default();
                        println!(
                            "    {:<14} {:>4} nodes {:>10.1} us {:>5.1}% {gf}",
                            p,
                            n,
                            us,
                            100.0 * us / total
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct BenchTtArgs {
    /// Configurations to run, comma-separated (fbtt, kaggle-r8, kaggle-r16, kaggle-r32 by
    /// default; also fbtt-b8k and kaggle-r32-b64k, real GPU batch sizes).
    #[arg(long = "config", value_name = "NAME", value_delimiter = ',')]
    pub configs: Vec<String>,
    /// Bags per step, instead of each configuration's.
    #[arg(long)]
    pub bags: Option<usize>,
    /// Lookups per bag, instead of each configuration's.
    #[arg(long)]
    pub bag_len: Option<usize>,
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
        BenchCommand::Dlrm(a) => bench_dlrm(a),
        BenchCommand::Tt(a) => {
            if a.bags == Some(0) || a.bag_len == Some(0) {
                bail!("--bags and --bag-len must be positive");
            }
            if !(a.seconds.is_finite() && a.seconds >= 0.0) {
                bail!("--seconds must be a non-negative number, got {}", a.seconds);
            }
            let mut all = tt_configs();
            for c in &mut all {
                c.bags = a.bags.unwrap_or(c.bags);
                c.bag_len = a.bag_len.unwrap_or(c.bag_len);
            }
            let chosen: Vec<String> = if a.configs.is_empty() {
                ttrec::bench::default_tt_configs()
                    .into_iter()
                    .map(String::from)
                    .collect()
            } else {
                a.configs.clone()
            };
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
            for cfg in all.iter().filter(|c| chosen.iter().any(|n| n == c.name)) {
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
