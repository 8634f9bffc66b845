//! `ttrec bench tt|dlrm|cache|gemm|compress`: runs the benchmarks of [`ttrec::bench`] and prints their
//! tables (or JSON records), with a progress bar on stderr. The flags every benchmark shares
//! (how long each measurement runs, per-kernel times, JSON) are one struct, [`RunFlags`].

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;

use ttrec::bench::cache::run_cache;
use ttrec::bench::dlrm::{
    bench_model_as, counts_report, default_scale, node_part, run_dlrm, DlrmBenchConfig,
    DlrmBenchResult, StepCounts, COUNT_DEVICES, FMA_LATENCY_CYCLES,
};
use ttrec::bench::{run_tt_with, tt_configs};
use ttrec::gpu::{AdapterOptions, DeviceLimits, Gpu, KernelClass};
use ttrec::kernels::matmul::GemmVariant;
use ttrec::progress::{Progress, Unit};

use super::args::{non_negative_f64, positive_f64, positive_usize};

mod compress;

/// How long each measurement runs, and what is printed: shared by every `ttrec bench`
/// subcommand (flattened into each; a subcommand renames or re-describes a flag where its
/// meaning there is narrower).
#[derive(Debug, Args)]
pub struct RunFlags {
    /// Print one JSON object per result instead of text.
    #[arg(long)]
    pub json: bool,
    /// Timed iterations at least.
    #[arg(long, default_value_t = 10, value_parser = positive_usize)]
    pub iters: usize,
    /// Seconds each measurement lasts at least.
    #[arg(long, default_value_t = 1.0, value_parser = non_negative_f64, allow_negative_numbers = true)]
    pub seconds: f64,
    /// Also print per-kernel GPU times of one step (needs timestamp queries).
    #[arg(long)]
    pub profile: bool,
    /// The device's limits: the adapter's own, or WebGPU's defaults.
    #[arg(long, value_enum, default_value_t = DeviceLimits::Adapter)]
    pub limits: DeviceLimits,
}

impl RunFlags {
    /// The device these flags ask for.
    fn gpu(&self) -> anyhow::Result<Gpu> {
        Ok(Gpu::with_options(&AdapterOptions::with_limits(
            self.limits,
        ))?)
    }
}

/// `ttrec bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// TT-EmbeddingBag: forward, backward+SGD and the whole step per configuration.
    Tt(BenchTtArgs),
    /// DLRM training step (dlrm's Kaggle configuration): samples/s, FLOPs per sample.
    Dlrm(BenchDlrmArgs),
    /// Matrix products: GFLOP/s of each product variant per shape (default: the Kaggle DLRM
    /// step's products at batch 128, 2,048 and 16,384).
    Gemm(BenchGemmArgs),
    /// The LFU row cache on the kaggle-r32 table with Zipf-skewed lookups: hit rate and
    /// training step time per lookup by cache size.
    Cache(BenchCacheArgs),
    /// Compression methods compared: the same model trained once per method (tt, dense, qr,
    /// md) with everything else fixed; per method its tables, bytes, AUC, log loss, accuracy,
    /// samples/s (takes train's options).
    Compress(Box<compress::BenchCompressArgs>),
}

/// `ttrec bench cache`
#[derive(Debug, Args)]
#[command(
    mut_arg("json", |a| a.help(r#"Print one JSON object per case ("type": "bench_cache")"#)),
    mut_arg("iters", |a| a.help("Timed steps at least")),
    mut_arg("seconds", |a| a.help("Seconds each case lasts at least")),
)]
pub struct BenchCacheArgs {
    /// Zipf exponents of the lookups (above 1), comma-separated or repeated.
    #[arg(long, value_delimiter = ',', default_values_t = [1.05, 1.2], value_parser = positive_f64)]
    pub zipf: Vec<f64>,
    /// Cache sizes as fractions of the table's rows (0: no cache), comma-separated or repeated.
    #[arg(long = "cache-fraction", value_delimiter = ',', default_values_t = [0.0, 0.001, 0.01], value_parser = non_negative_f64)]
    pub fractions: Vec<f64>,
    /// Bags per step.
    #[arg(long, default_value_t = 2048, value_parser = positive_usize)]
    pub bags: usize,
    /// Lookups per bag.
    #[arg(long, default_value_t = 1, value_parser = positive_usize)]
    pub bag_len: usize,
    /// Training steps before the timed ones (the cache counts them, then refreshes once).
    #[arg(long, default_value_t = 32, value_parser = positive_usize)]
    pub warmup: usize,
    #[command(flatten)]
    pub run: RunFlags,
}

fn bench_cache(a: BenchCacheArgs) -> anyhow::Result<()> {
    if let Some(z) = a.zipf.iter().find(|&&z| z <= 1.0) {
        bail!("--zipf {z}: the exponent must be above 1");
    }
    if let Some(f) = a.fractions.iter().find(|&&f| f > 1.0) {
        bail!("--cache-fraction {f}: a fraction of the rows is at most 1");
    }
    let gpu = a.run.gpu()?;
    if !a.run.json {
        println!("adapter: {}", gpu.adapter_name());
        println!(
            "table: kaggle-r32 (10,131,227 rows, ranks 32), {} bags x {}",
            a.bags, a.bag_len
        );
        println!(
            "{:>5} {:>8} {:>9} {:>9} {:>12} {:>9} {:>15}",
            "zipf", "cache %", "rows", "hit rate", "step us/lkp", "speed-up", "p10-p90 ms"
        );
    }
    let mut progress =
        Progress::steps("bench cache", a.zipf.len() as u64, Unit::Items("exponents"));
    for (k, &zipf) in a.zipf.iter().enumerate() {
        progress.set(k as u64);
        let results = run_cache(
            &gpu,
            zipf,
            &a.fractions,
            a.bags,
            a.bag_len,
            a.warmup,
            a.run.iters,
            a.run.seconds,
            a.run.profile,
            &mut |what| progress.set_message(format!("zipf {zipf}: {what}")),
        )
        .with_context(|| format!("zipf {zipf}"))?;
        let base = results
            .iter()
            .find(|r| r.cache_fraction == 0.0)
            .map(|r| r.us_per_lookup());
        for r in &results {
            let line = if a.run.json {
                let mut v = r.json();
                if let (Some(b), Some(obj)) = (base, v.as_object_mut()) {
                    obj.insert("speedup".into(), json!(b / r.us_per_lookup()));
                }
                v.to_string()
            } else {
                format!(
                    "{:>5} {:>8} {:>9} {:>9.3} {:>12.3} {:>9} {:>15}",
                    zipf,
                    format!("{}", r.cache_fraction * 100.0),
                    r.cache_rows,
                    r.hit_rate,
                    r.us_per_lookup(),
                    base.map_or("-".to_string(), |b| format!(
                        "{:.2}x",
                        b / r.us_per_lookup()
                    )),
                    format!("{:.2}-{:.2}", r.step.p10 / 1e3, r.step.p90 / 1e3)
                )
            };
            progress.suspend(|| {
                println!("{line}");
                for (label, ns) in &r.profile {
                    if a.run.json {
                        println!(
                            "{}",
                            json!({"type": "bench_cache_kernel", "zipf": zipf, "cache_fraction": r.cache_fraction, "node": label, "us": ns / 1e3})
                        );
                    } else {
                        println!("    {:<40} {:>10.1} us", label, ns / 1e3);
                    }
                }
            });
        }
    }
    let cases = a.zipf.len();
    progress.set(cases as u64);
    progress.finish();
    Ok(())
}

/// `ttrec bench dlrm`
#[derive(Debug, Args)]
#[command(
    mut_arg("json", |a| a.help(r#"Print one JSON object per measurement ("type": "bench_dlrm"; with --profile also "bench_dlrm_node" and "bench_dlrm_part")"#)),
    mut_arg("iters", |a| a.long("steps").value_name("STEPS").help("Steps each measurement takes at least")),
    mut_arg("seconds", |a| a.default_value("3")),
    mut_arg("profile", |a| a.help("Also print GPU times of one step's kernels, summed by model part (needs timestamps)")),
)]
pub struct BenchDlrmArgs {
    /// Embedding variants, comma-separated or repeated: tt (the 7 largest tables TT) and/or dense.
    #[arg(long, value_delimiter = ',', value_parser = ["tt", "dense"], default_values_t = ["tt".to_string(), "dense".to_string()])]
    pub variant: Vec<String>,
    /// Batch sizes, comma-separated or repeated.
    #[arg(long, value_delimiter = ',', value_parser = positive_usize, default_values_t = [128usize, 2048])]
    pub batch: Vec<usize>,
    /// Kaggle's table sizes times this (default: 1, or 0.05 for dense tables on a CPU adapter).
    #[arg(long, value_parser = positive_f64, allow_negative_numbers = true)]
    pub scale: Option<f64>,
    /// Rank of the TT tables.
    #[arg(long, default_value_t = 32, value_parser = positive_usize)]
    pub rank: usize,
    // `--iters` is named `--steps` here, and measurements last 3 s by default.
    #[command(flatten)]
    pub run: RunFlags,
    /// Matrix-product variant: registers (the CPU class's), tiled or split (the GPU class's).
    #[arg(long, value_parser = ["registers", "tiled", "split"])]
    pub gemm: Option<String>,
    /// Kernel class: auto (the adapter's), gpu or cpu (GPU-shaped kernels on any adapter).
    #[arg(long, default_value = "auto", value_parser = KernelClass::parse)]
    pub kernels: KernelClass,
    /// Run nothing: build each step's plan and print per node its kernel, workgroups, serial
    /// chain, FLOPs, bytes and the time they imply on an H100 and an M2-class GPU, and the
    /// step's implied samples/s (by the counts, NOT measured).
    #[arg(long)]
    pub counts: bool,
    /// Under mpirun: also print every rank's samples/s and exchange time.
    #[arg(long)]
    pub per_rank: bool,
    /// How TT cores are stored: f32, or f16 (needs an adapter with SHADER_F16).
    #[arg(long, default_value = "f32", value_name = "f32|f16", value_parser = ttrec::train::options::parse_tt_precision)]
    pub tt_precision: ttrec::tt::CorePrecision,
}

/// The product variant `--gemm` names (None: the kernel class's).
fn gemm_flag(a: &BenchDlrmArgs) -> Option<GemmVariant> {
    a.gemm.as_deref().map(|g| match g {
        "registers" => GemmVariant::Registers,
        "split" => GemmVariant::Split,
        _ => GemmVariant::Tiled,
    })
}

/// `ttrec bench dlrm --counts`: the structural report of each (variant, batch) step.
fn bench_dlrm_counts(a: &BenchDlrmArgs, gpu: &Gpu) -> anyhow::Result<()> {
    if !a.run.json {
        println!("adapter: {} (plans built, nothing run)", gpu.adapter_name());
        for d in COUNT_DEVICES {
            println!("model {}", d.describe());
        }
        println!("node time = max(FLOPs at peak, bytes at bandwidth, serial x {FMA_LATENCY_CYCLES} cycles) + command cost; peak and bandwidth scaled by min(1, workgroups / units)");
    }
    let kernels = a.kernels.resolve(gpu);
    for variant in &a.variant {
        let cfg = |batch| DlrmBenchConfig {
            variant: variant.clone(),
            batch,
            scale: a.scale.unwrap_or_else(|| default_scale(gpu, variant)),
            rank: a.rank,
        };
        let mut model = bench_model_as(
            gpu,
            &cfg(a.batch[0]),
            gemm_flag(a),
            a.kernels,
            a.tt_precision,
        )
        .with_context(|| format!("dlrm {variant} model"))?;
        for &batch in &a.batch {
            let counts = model
                .train_counts(batch)
                .with_context(|| format!("dlrm {variant} batch {batch} plan"))?;
            let class = format!("{kernels:?}").to_lowercase();
            for l in counts_report(&counts, variant, batch, &class, a.run.json) {
                println!("{l}");
            }
        }
    }
    Ok(())
}

fn bench_dlrm(a: BenchDlrmArgs) -> anyhow::Result<()> {
    // Under mpirun (feature `mpi`): the data-parallel step, every rank measuring.
    #[cfg(feature = "mpi")]
    if ttrec::dist::mpi::launched() {
        return super::mpi::bench_dlrm(a);
    }
    let gpu = a.run.gpu()?;
    gpu.check_precision(a.tt_precision, "--tt-precision")?;
    if a.counts {
        return bench_dlrm_counts(&a, &gpu);
    }
    if !a.run.json {
        println!(
            "adapter: {}{}",
            gpu.adapter_name(),
            f16_note(a.tt_precision)
        );
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
    let total = (a.variant.len() * a.batch.len()) as u64;
    let mut progress = Progress::steps("bench dlrm", total, Unit::Items("measurements"));
    let mut done = 0;
    for variant in &a.variant {
        let mut model = None;
        for &batch in &a.batch {
            let cfg = DlrmBenchConfig {
                variant: variant.clone(),
                batch,
                scale: a.scale.unwrap_or_else(|| default_scale(&gpu, variant)),
                rank: a.rank,
            };
            progress.set_message(format!("{variant} batch {batch}"));
            progress.set(done);
            if model.is_none() {
                model = Some(
                    bench_model_as(&gpu, &cfg, gemm_flag(&a), a.kernels, a.tt_precision)
                        .with_context(|| format!("dlrm {variant} model"))?,
                );
            }
            let m = model.as_mut().expect("model");
            let r = run_dlrm(&gpu, m, &cfg, a.run.iters, a.run.seconds, a.run.profile)
                .with_context(|| format!("dlrm {variant} batch {batch}"))?;
            done += 1;
            let mut lines = Vec::new();
            if a.run.json {
                let mut v = r.json();
                v["tt_precision"] = json!(a.tt_precision.name());
                lines.push(v.to_string());
            } else {
                lines.push(format!(
                    "{:<7} {:>6} {:>7} {:>12} {:>12.0} {:>14.2} {:>10.3} {:>9.2}",
                    variant,
                    batch,
                    cfg.scale,
                    r.embedding_params,
                    r.samples_per_s,
                    r.synced_step_ms,
                    r.mflop_per_sample(),
                    r.gflops()
                ));
            }
            if a.run.profile {
                lines.extend(dlrm_profile_lines(&r, variant, batch, a.run.json));
            }
            progress.suspend(|| {
                for l in &lines {
                    println!("{l}");
                }
            });
        }
    }
    progress.set(done);
    progress.finish();
    if !a.run.json {
        if let Some(note) = scale_note(&gpu, &a) {
            println!("{note}");
        }
    }
    Ok(())
}

/// A note when the variants ran at different table scales (dense tables shrink on a CPU
/// adapter to fit its memory): their rows are not the same model.
fn scale_note(gpu: &Gpu, a: &BenchDlrmArgs) -> Option<String> {
    let scales: Vec<(String, f64)> = a
        .variant
        .iter()
        .map(|v| (v.clone(), a.scale.unwrap_or_else(|| default_scale(gpu, v))))
        .collect();
    let first = scales.first()?.1;
    if scales.iter().all(|(_, s)| *s == first) {
        return None;
    }
    let each: Vec<String> = scales.iter().map(|(v, s)| format!("{v} at {s}")).collect();
    Some(format!(
        "note: the table scales differ ({}: Kaggle's table sizes times the scale; dense tables are scaled down by default on a CPU adapter to fit its memory), so the rows compare different models; --scale sets one for all",
        each.join(", ")
    ))
}

/// The lines of `--profile` for one DLRM measurement: with `json`, one `bench_dlrm_node` record
/// per node; then the GPU time summed by model part (`bench_dlrm_part` records or text lines).
fn dlrm_profile_lines(r: &DlrmBenchResult, variant: &str, batch: usize, json: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if json {
        lines.extend(dlrm_node_records(r, variant, batch));
    }
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
    if !json && !r.counts.is_empty() {
        let sum = StepCounts::of(&r.counts);
        lines.push(format!(
            "    step: {} commands ({} dispatches)",
            sum.commands, sum.dispatches
        ));
    }
    for (p, us, n) in &parts {
        let flops = r
            .flops_per_sample
            .iter()
            .find(|(k, _)| k == p)
            .map(|(_, f)| f * batch as f64);
        if json {
            lines.push(
                json!({"type": "bench_dlrm_part", "variant": variant, "batch": batch, "part": p, "nodes": n, "us": us, "gflops": flops.map(|f| f / (us * 1e3))})
                    .to_string(),
            );
        } else {
            let gf = flops
                .map(|f| format!("{:>8.2} GFLOP/s", f / (us * 1e3)))
                .unwrap_or_default();
            lines.push(format!(
                "    {:<14} {:>4} nodes {:>10.1} us {:>5.1}% {gf}",
                p,
                n,
                us,
                100.0 * us / total
            ));
        }
    }
    lines
}

/// The structural report: one `bench_dlrm_node` record per node of the step's plan with its
/// kernel, workgroups, invocations, serial chain, FLOPs and bytes (counted by the launchers) and
/// its GPU time where timestamps exist.
fn dlrm_node_records(r: &DlrmBenchResult, variant: &str, batch: usize) -> Vec<String> {
    r.counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let us = r
                .profile
                .get(i)
                .filter(|(label, _)| *label == c.label)
                .map(|(_, us)| *us);
            json!({
                "type": "bench_dlrm_node",
                "variant": variant,
                "batch": batch,
                "node": c.label,
                "kernel": c.kernel,
                "workgroups": c.workgroups,
                "invocations": c.invocations,
                "serial": c.cost.map(|k| k.serial),
                "flops": c.cost.map(|k| k.flops),
                "bytes": c.cost.map(|k| k.bytes),
                "gpu_ms": us.map(|us| us / 1e3),
                "us": us,
            })
            .to_string()
        })
        .collect()
}

/// What the adapter line adds for `--tt-precision f16` (nothing for f32: the default output
/// stays as it was).
fn f16_note(p: ttrec::tt::CorePrecision) -> &'static str {
    match p {
        ttrec::tt::CorePrecision::F16 => ", TT cores stored as f16",
        ttrec::tt::CorePrecision::F32 => "",
    }
}

/// `ttrec bench tt`
#[derive(Debug, Args)]
#[command(mut_arg("json", |a| a.help(r#"Print one JSON object per configuration ("type": "bench_tt"; with --profile also one "bench_tt_kernel" per kernel)"#)))]
pub struct BenchTtArgs {
    /// Configurations to run, comma-separated or repeated (fbtt, kaggle-r8, kaggle-r16,
    /// kaggle-r32 by default; also fbtt-b8k and kaggle-r32-b64k, real GPU batch sizes).
    #[arg(long = "config", value_name = "NAME", value_delimiter = ',')]
    pub configs: Vec<String>,
    /// Bags per step, instead of each configuration's.
    #[arg(long, value_parser = positive_usize)]
    pub bags: Option<usize>,
    /// Lookups per bag, instead of each configuration's.
    #[arg(long, value_parser = positive_usize)]
    pub bag_len: Option<usize>,
    /// Kernel class: auto (the adapter's), gpu or cpu (GPU-shaped kernels on any adapter).
    #[arg(long, default_value = "auto", value_parser = KernelClass::parse)]
    pub kernels: KernelClass,
    /// How TT cores are stored: f32, or f16 (needs an adapter with SHADER_F16).
    #[arg(long, default_value = "f32", value_name = "f32|f16", value_parser = ttrec::train::options::parse_tt_precision)]
    pub tt_precision: ttrec::tt::CorePrecision,
    #[command(flatten)]
    pub run: RunFlags,
}

fn bench_tt(a: BenchTtArgs) -> anyhow::Result<()> {
    let mut all = tt_configs();
    for c in &mut all {
        c.bags = a.bags.unwrap_or(c.bags);
        c.bag_len = a.bag_len.unwrap_or(c.bag_len);
        c.kernels = a.kernels;
        c.precision = a.tt_precision;
    }
    let chosen: Vec<String> = if a.configs.is_empty() {
        ttrec::bench::default_tt_configs()
            .into_iter()
            .map(String::from)
            .collect()
    } else {
        a.configs.clone()
    };
    for c in &chosen {
        if !all.iter().any(|x| x.name == c) {
            bail!(
                "unknown --config {c:?}; known: {}",
                all.iter().map(|x| x.name).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let gpu = a.run.gpu()?;
    gpu.check_precision(a.tt_precision, "--tt-precision")?;
    if !a.run.json {
        println!(
            "adapter: {}{}",
            gpu.adapter_name(),
            f16_note(a.tt_precision)
        );
        println!(
            "{:<11} {:>10} {:>3} {:>7} {:>9} {:>8} {:>11} {:>10} {:>11} {:>10} {:>11} {:>10} {:>10} {:>17}",
            "config",
            "rows",
            "D",
            "ranks",
            "bags",
            "lookups",
            "fwd us/lkp",
            "fwd GF/s",
            "bwd us/lkp",
            "bwd GF/s",
            "step us/lkp",
            "step GF/s",
            "step ms",
            "p10-p90 ms"
        );
    }
    let runs: Vec<_> = all
        .iter()
        .filter(|c| chosen.iter().any(|n| n == c.name))
        .collect();
    let mut progress = Progress::steps(
        "bench tt",
        3 * runs.len() as u64,
        Unit::Items("measurements"),
    );
    for (i, cfg) in runs.iter().enumerate() {
        let mut k = 3 * i as u64;
        let r = run_tt_with(
            &gpu,
            cfg,
            a.run.iters,
            a.run.seconds,
            a.run.profile,
            &mut |what| {
                progress.set_message(format!("{} {what}", cfg.name));
                progress.set(k);
                k += 1;
            },
        )
        .with_context(|| format!("config {}", cfg.name))?;
        let mut lines = Vec::new();
        let ranks = format!("{},{}", cfg.ranks[0], cfg.ranks[1]);
        if a.run.json {
            let mut v = r.json();
            v["rows"] = json!(cfg.num_embeddings);
            v["dim"] = json!(cfg.q.iter().product::<usize>());
            v["p"] = json!(cfg.p);
            v["q"] = json!(cfg.q);
            v["ranks"] = json!(cfg.ranks);
            v["tt_precision"] = json!(cfg.precision.name());
            lines.push(v.to_string());
        } else {
            lines.push(format!(
                "{:<11} {:>10} {:>3} {:>7} {:>9} {:>8} {:>11.3} {:>10.2} {:>11.3} {:>10.2} {:>11.3} {:>10.2} {:>10.2} {:>17}",
                r.config,
                cfg.num_embeddings,
                cfg.q.iter().product::<usize>(),
                ranks,
                format!("{}x{}", r.bags, r.bag_len),
                r.lookups,
                r.forward_us / r.lookups as f64,
                r.forward_gflops(),
                r.backward_us / r.lookups as f64,
                r.backward_gflops(),
                r.us_per_lookup(),
                r.gflops(),
                r.step_us / 1e3,
                format!(
                    "{:.2}-{:.2}",
                    r.step_spread.p10 / 1e3,
                    r.step_spread.p90 / 1e3
                )
            ));
        }
        for (label, ns) in &r.profile {
            if a.run.json {
                lines.push(
                    json!({"type": "bench_tt_kernel", "config": r.config, "node": label, "us": ns / 1e3})
                        .to_string(),
                );
            } else {
                lines.push(format!("    {:<32} {:>10.1} us", label, ns / 1e3));
            }
        }
        progress.suspend(|| {
            for l in &lines {
                println!("{l}");
            }
        });
    }
    progress.set(3 * runs.len() as u64);
    progress.finish();
    Ok(())
}

pub fn bench(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Dlrm(a) => bench_dlrm(a),
        BenchCommand::Tt(a) => bench_tt(a),
        BenchCommand::Cache(a) => bench_cache(a),
        BenchCommand::Gemm(a) => bench_gemm(a),
        BenchCommand::Compress(a) => compress::bench_compress(*a),
    }
}

/// `ttrec bench gemm`
#[derive(Debug, Args)]
#[command(
    mut_arg("json", |a| a.help(r#"Print one JSON object per product and variant ("type": "bench_gemm")"#)),
    mut_arg("iters", |a| a.help("Products timed per case at least")),
    mut_arg("profile", |a| a.hide(true)),
)]
pub struct BenchGemmArgs {
    /// Product shapes MxNxK (C[M, N] = A^T B, K the reduction), comma-separated or repeated.
    #[arg(long, value_delimiter = ',', value_parser = ttrec::bench::gemm::parse_shape)]
    pub shape: Vec<[usize; 3]>,
    /// Only this class's variant (cpu: registers, gpu: split, auto: the adapter's); default:
    /// every variant.
    #[arg(long, value_parser = KernelClass::parse)]
    pub kernels: Option<KernelClass>,
    #[command(flatten)]
    pub run: RunFlags,
}

fn bench_gemm(a: BenchGemmArgs) -> anyhow::Result<()> {
    use ttrec::bench::gemm::{kaggle_shapes, run_gemm, DEFAULT_BATCHES};
    let gpu = Gpu::new()?;
    let shapes = if a.shape.is_empty() {
        kaggle_shapes(&DEFAULT_BATCHES)
    } else {
        a.shape.clone()
    };
    let variants = match a.kernels {
        Some(k) => vec![GemmVariant::for_class(k.resolve(&gpu))],
        None => vec![
            GemmVariant::Registers,
            GemmVariant::Tiled,
            GemmVariant::Split,
        ],
    };
    if !a.run.json {
        println!("adapter: {}", gpu.adapter_name());
        println!(
            "{:>20} {:<10} {:>12} {:>10}  kernels",
            "M x N x K", "variant", "us", "GFLOP/s"
        );
    }
    let total = (shapes.len() * variants.len()) as u64;
    let mut progress = Progress::steps("bench gemm", total, Unit::Items("cases"));
    for (i, &shape) in shapes.iter().enumerate() {
        for (j, &variant) in variants.iter().enumerate() {
            let [m, n, k] = shape;
            progress.set((i * variants.len() + j) as u64);
            progress.set_message(format!("{m}x{n}x{k} {variant:?}"));
            let r = run_gemm(&gpu, shape, variant, a.run.iters, a.run.seconds)
                .with_context(|| format!("product {m}x{n}x{k} ({variant:?})"))?;
            let line = if a.run.json {
                r.json(&gpu).to_string()
            } else {
                format!(
                    "{:>20} {:<10} {:>12.1} {:>10.2}  {}",
                    format!("{m} x {n} x {k}"),
                    format!("{variant:?}"),
                    r.us,
                    r.gflops(),
                    r.kernels.join(" + ")
                )
            };
            progress.suspend(|| println!("{line}"));
        }
    }
    progress.set(total);
    progress.finish();
    Ok(())
}
