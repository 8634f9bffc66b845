//! One rank of a data-parallel training job under `mpirun` (feature `mpi`): the adapter its
//! local rank picks, [`super::run_group`] over MPI, and the job's end (a rank that fails
//! prints its error, naming its rank, and ends the whole job with MPI_Abort, so no rank waits
//! for it forever). Used by `ttrec train` and the `train_kaggle` example alike.

use crate::dist::mpi::MpiGroup;
use crate::dist::Collective;
use crate::gpu::{AdapterOptions, DeviceLimits, Gpu};

/// The adapter of the rank with index `local_rank` on its machine: `TTREC_ADAPTER` when set,
/// else the machine's GPUs (discrete, then integrated) dealt out by local rank, else the one
/// adapter ttrec would pick alone (a CPU adapter shared by the ranks).
pub fn gpu_for(local_rank: usize, limits: DeviceLimits) -> crate::Result<Gpu> {
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
    let signal = crate::signals::received().or_else(crate::dist::agreed_signal);
    signal.map_or(1, |s| 128 + s)
}

/// Trains as this rank of the job; on an error it exits the process (every rank's exit code is
/// the job's).
pub fn train_as_rank(args: &super::TrainArgs) -> crate::Result<()> {
    let group = MpiGroup::init()?;
    let result = gpu_for(group.local_rank(), args.limits)
        .and_then(|gpu| super::run_group(&gpu, args, &group));
    match result {
        Ok(_) => Ok(()),
        // Every rank stopped after the same step and rank 0 wrote the checkpoint: the ranks end
        // normally (MPI finalised), rank 0 names the error and the exit code says why.
        Err(e) if crate::dist::stopped_together() => {
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
