//! `ttrec bench dlrm` under mpirun (feature `mpi`): the data-parallel step's training speed,
//! per rank and in total, and the time each step spends in the gradient exchange.

use std::time::Instant;

use crate::data::SyntheticCriteo;
use crate::dist::{self, Collective};
use crate::dlrm::{Dlrm, DlrmBatch};
use crate::error::Result;

/// What one data-parallel configuration measured, as every rank saw it.
#[derive(Clone, Debug)]
pub struct DistBenchResult {
    pub ranks: usize,
    /// Samples per rank per step.
    pub batch: usize,
    pub steps: usize,
    /// Per rank: its samples per second.
    pub per_rank_samples_per_s: Vec<f64>,
    /// Per rank: milliseconds per step in the exchange (sum, scaling, gathers).
    pub per_rank_exchange_ms: Vec<f64>,
    /// All ranks' samples over the slowest rank's time.
    pub total_samples_per_s: f64,
    /// Bytes of the flat gradient each rank exchanges per step.
    pub gradient_bytes: u64,
}

impl DistBenchResult {
    /// One JSON object, `"type": "bench_dlrm_dist"`.
    pub fn json(&self, variant: &str) -> serde_json::Value {
        serde_json::json!({
            "type": "bench_dlrm_dist",
            "variant": variant,
            "ranks": self.ranks,
            "batch_per_rank": self.batch,
            "steps": self.steps,
            "total_samples_per_s": self.total_samples_per_s,
            "per_rank_samples_per_s": self.per_rank_samples_per_s,
            "per_rank_exchange_ms": self.per_rank_exchange_ms,
            "gradient_bytes": self.gradient_bytes,
        })
    }
}

/// Measures data-parallel steps of `batch` samples per rank on `model` (every rank the same
/// model): two warm-up steps, then steps until `seconds` and `min_steps` are reached on every
/// rank (the ranks agree on when to stop).
pub fn run_dlrm_parallel(
    model: &mut Dlrm,
    scale: f64,
    batch: usize,
    group: &dyn Collective,
    min_steps: usize,
    seconds: f64,
) -> Result<DistBenchResult> {
    let (rank, ranks) = (group.rank(), group.size());
    let synth = SyntheticCriteo::new(1, scale)?;
    // Each rank its own part of distinct global batches, made before timing.
    let batches: Vec<_> = (0..8u64)
        .map(|i| synth.batch((i * ranks as u64 + rank as u64) * batch as u64, batch))
        .collect();
    model.prepare_parallel(batch, ranks)?;
    for b in batches.iter().take(2) {
        model.train_step_parallel(&DlrmBatch::from(b), group)?;
    }
    let start = Instant::now();
    let (mut steps, mut exchange) = (0usize, 0.0);
    loop {
        let b = &batches[steps % batches.len()];
        exchange += model.train_step_parallel(&DlrmBatch::from(b), group)?;
        steps += 1;
        let done = steps >= min_steps.max(1) && start.elapsed().as_secs_f64() >= seconds;
        if dist::any(group, done)? {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    model.take_stats()?;
    let all = dist::gather_f64(group, &[secs, exchange])?;
    let slowest = all.chunks_exact(2).map(|c| c[0]).fold(0.0, f64::max);
    Ok(DistBenchResult {
        ranks,
        batch,
        steps,
        per_rank_samples_per_s: all
            .chunks_exact(2)
            .map(|c| (steps * batch) as f64 / c[0])
            .collect(),
        per_rank_exchange_ms: all
            .chunks_exact(2)
            .map(|c| 1e3 * c[1] / steps as f64)
            .collect(),
        total_samples_per_s: (steps * batch * ranks) as f64 / slowest,
        gradient_bytes: 4 * model.parameter_counts().0 + 4 * model.parameter_counts().2,
    })
}
