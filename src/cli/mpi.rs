//! `ttrec train` under `mpirun` (feature `mpi`): this process is one rank of a data-parallel
//! run ([`ttrec::train::run_group`]) on the adapter its local rank picks. A rank that fails
//! prints its error, naming its rank, and ends the whole job (MPI_Abort), so that no rank waits
//! for it forever.

use ttrec::dist::mpi::MpiGroup;
use ttrec::dist::Collective;
use ttrec::gpu::{AdapterOptions, DeviceLimits, Gpu};

/// The adapter of the rank with index `local_rank` on its machine: `TTREC_ADAPTER` when set,
/// else the machine's GPUs (discrete, then integrated) dealt out by local rank, else the one
/// adapter ttrec would pick alone (a CPU adapter shared by the ranks).
fn gpu_for(local_rank: usize, limits: DeviceLimits) -> ttrec::Result<Gpu> {
    let opts = AdapterOptions::with_limits(limits);
    if opts.name.is_some() {
        return Gpu::with_options(&opts);
    }
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    for kind in [
        wgpu::DeviceType::DiscreteGpu,
        wgpu::DeviceType::IntegratedGpu,
    ] {
        let mut gpus: Vec<_> = adapters
            .iter()
            .filter(|a| a.get_info().device_type == kind)
            .collect();
        if !gpus.is_empty() {
            gpus.sort_by_key(|a| (a.get_info().name, a.get_info().device));
            return Gpu::from_adapter_with(gpus[local_rank % gpus.len()], limits);
        }
    }
    Gpu::with_options(&opts)
}

/// 128 + the signal this rank or (agreed) another rank received, else 1.
fn exit_code() -> i32 {
    let signal = ttrec::signals::received().or_else(ttrec::dist::agreed_signal);
    signal.map_or(1, |s| 128 + s)
}

/// Trains as this rank of the job; exits the process (every rank's exit code is the job's).
pub fn train(args: &ttrec::train::TrainArgs) -> anyhow::Result<()> {
    let group = MpiGroup::init()?;
    let result = gpu_for(group.local_rank(), args.limits)
        .and_then(|gpu| ttrec::train::run_group(&gpu, args, &group));
    match result {
        Ok(_) => Ok(()),
        // Every rank stopped after the same step and rank 0 wrote the checkpoint: the ranks end
        // normally (MPI finalised), rank 0 names the error and the exit code says why.
        Err(e) if ttrec::dist::stopped_together() => {
            let lead = group.rank() == 0;
            drop(group);
            if lead {
                eprintln!("error: {e:#}");
            }
            std::process::exit(exit_code())
        }
        Err(e) => {
            eprintln!(
                "error: rank {} of {}: {e:#}; ending the job",
                group.rank(),
                group.size()
            );
            group.abort(exit_code())
        }
    }
}

/// `ttrec bench dlrm` as this rank of the job: for each variant and batch (per rank), the
/// data-parallel step's total and per-rank samples/s and its exchange time; rank 0 prints.
pub fn bench_dlrm(a: super::bench::BenchDlrmArgs) -> anyhow::Result<()> {
    let group = MpiGroup::init()?;
    let result = bench_ranks(&a, &group);
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            eprintln!(
                "error: rank {} of {}: {e:#}; ending the job",
                group.rank(),
                group.size()
            );
            group.abort(1)
        }
    }
}

fn bench_ranks(a: &super::bench::BenchDlrmArgs, group: &MpiGroup) -> anyhow::Result<()> {
    use ttrec::bench::dlrm::{bench_model, default_scale, DlrmBenchConfig};
    let gpu = gpu_for(group.local_rank(), a.run.limits)?;
    let lead = group.rank() == 0;
    if lead && !a.run.json {
        println!(
            "adapter: {} (rank 0 of {} ranks)",
            gpu.adapter_name(),
            group.size()
        );
        println!(
            "{:<7} {:>5} {:>10} {:>14} {:>16} {:>14} {:>12}",
            "variant",
            "ranks",
            "batch/rank",
            "total smp/s",
            "per-rank smp/s",
            "exchange ms",
            "grad MB"
        );
    }
    for variant in &a.variant {
        for &batch in &a.batch {
            let cfg = DlrmBenchConfig {
                variant: variant.clone(),
                batch,
                scale: a.scale.unwrap_or_else(|| default_scale(&gpu, variant)),
                rank: a.rank,
            };
            let mut model = bench_model(&gpu, &cfg, None, a.kernels)?;
            let r = ttrec::bench::dist::run_dlrm_parallel(
                &mut model,
                cfg.scale,
                batch,
                group,
                a.run.iters,
                a.run.seconds,
            )?;
            if !lead {
                continue;
            }
            if a.run.json {
                println!("{}", r.json(variant));
                continue;
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            println!(
                "{:<7} {:>5} {:>10} {:>14.0} {:>16.0} {:>14.2} {:>12.2}",
                variant,
                r.ranks,
                batch,
                r.total_samples_per_s,
                mean(&r.per_rank_samples_per_s),
                mean(&r.per_rank_exchange_ms),
                r.gradient_bytes as f64 / 1e6
            );
            if a.per_rank {
                for (i, (s, x)) in r
                    .per_rank_samples_per_s
                    .iter()
                    .zip(&r.per_rank_exchange_ms)
                    .enumerate()
                {
                    println!("  rank {i}: {s:.0} samples/s, {x:.2} ms/step in the exchange");
                }
            }
        }
    }
    Ok(())
}
