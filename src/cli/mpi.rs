//! `ttrec train` under `mpirun` (feature `mpi`): this process is one rank of a data-parallel
//! run ([`ttrec::train::run_group`]) on the adapter its local rank picks. A rank that fails
//! prints its error, naming its rank, and ends the whole job (MPI_Abort), so that no rank waits
//! for it forever.

use ttrec::dist::mpi::MpiGroup;
use ttrec::dist::Collective;
use ttrec::train::mpi_rank::gpu_for;

/// Trains as this rank of the job (see [`ttrec::train::mpi_rank`]).
pub fn train(args: &ttrec::train::TrainArgs) -> anyhow::Result<()> {
    Ok(ttrec::train::mpi_rank::train_as_rank(args)?)
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
    use ttrec::bench::dlrm::{bench_model_as, default_scale, DlrmBenchConfig};
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
            let mut model = bench_model_as(&gpu, &cfg, None, a.kernels, a.tt_precision)?;
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
