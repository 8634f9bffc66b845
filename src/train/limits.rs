//! A run's options against the adapter's limits, before the model is built: the buffers that
//! grow with `--tt-rank` (the TT cores), `--cache-rows` (the cached rows) and the batch sizes
//! (a batch's activations) must each fit one storage binding. Without this check a plan too
//! large for the adapter fails late (after seconds of drawing cores) or in raw wgpu errors; with
//! it the error names the option, the size and the limit at once.

use crate::dlrm::{DlrmConfig, TtCacheOptions};
use crate::error::{Error, Result};
use crate::gpu::Gpu;

use super::epoch::Schedule;
use super::options::TrainArgs;
use super::report::bytes;

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// TT tables stored as one group (same column factors and ranks).
struct TtGroup {
    q: Vec<usize>,
    ranks: Vec<usize>,
    tables: Vec<usize>,
    /// Bytes of each core (the tables' cores stacked).
    core_bytes: Vec<u64>,
    rows: u64,
}

/// The TT tables of `config` grouped as the model stores them.
fn tt_groups(config: &DlrmConfig) -> Result<Vec<TtGroup>> {
    let mut groups: Vec<TtGroup> = Vec::new();
    for t in 0..config.tables.len() {
        let Some(s) = config.tt_shape(t)? else {
            continue;
        };
        let i = match groups.iter().position(|g| g.q == s.q && g.ranks == s.ranks) {
            Some(i) => i,
            None => {
                groups.push(TtGroup {
                    q: s.q.clone(),
                    ranks: s.ranks.clone(),
                    tables: vec![],
                    core_bytes: vec![0; s.d()],
                    rows: 0,
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[i];
        g.tables.push(t);
        for (k, b) in g.core_bytes.iter_mut().enumerate() {
            *b += s.core_len(k) as u64 * 4;
        }
        g.rows += s.num_embeddings;
    }
    Ok(groups)
}

/// Checks the buffers that `args` make grow against `gpu`'s binding limit; the error names
/// the option, the buffer and its size, and the limit.
pub(super) fn check(
    gpu: &Gpu,
    args: &TrainArgs,
    config: &DlrmConfig,
    schedule: &Schedule,
) -> Result<()> {
    let limit = gpu.max_binding();
    let over = |flag: String, what: String, need: u64| {
        Error::input(
            None,
            format!(
                "{flag}: {what} needs {} ({need} bytes), over this adapter's limit of {} ({limit} bytes) per storage binding",
                bytes(need),
                bytes(limit)
            ),
        )
    };
    let groups = tt_groups(config)?;
    for TtGroup {
        tables, core_bytes, ..
    } in &groups
    {
        for (k, &need) in core_bytes.iter().enumerate() {
            if need > limit {
                let rank = args
                    .tt_rank
                    .map_or("32 (the default)".to_string(), |r| r.to_string());
                return Err(over(
                    format!("--tt-rank {rank}"),
                    format!("core {k} of the TT tables {tables:?}"),
                    need,
                ));
            }
        }
    }
    if let Some(rows) = args.cache_rows {
        let options = TtCacheOptions {
            rows,
            warmup_steps: args.cache_warmup,
            refresh_every: args.cache_refresh,
        };
        for TtGroup {
            tables,
            rows: group_rows,
            ..
        } in &groups
        {
            let c = options.config(*group_rows, tables.len())?;
            let need = (c.rows * config.dim()) as u64 * 4;
            if need > limit {
                return Err(over(
                    format!("--cache-rows {rows}"),
                    format!(
                        "the cache of the TT tables {tables:?} ({} rows of {} values)",
                        c.rows,
                        config.dim()
                    ),
                    need,
                ));
            }
        }
    }
    // The widest per-sample rows of a step: the embeddings and bottom output meeting in the
    // interaction, its output, and every MLP layer, each also stored transposed.
    let width = config
        .bottom_mlp
        .iter()
        .chain(&config.top_widths())
        .map(|&w| pad4(w))
        .chain([config.vectors() * config.dim()])
        .max()
        .unwrap_or(1) as u64;
    for (flag, value, batch) in [
        (
            "--mini-batch-size",
            args.mini_batch_size as i64,
            schedule.batch_size,
        ),
        (
            "--test-mini-batch-size",
            args.test_mini_batch_size,
            schedule.eval_batch,
        ),
    ] {
        let need = pad4(batch) as u64 * width * 4;
        if need > limit {
            return Err(over(
                format!("{flag} {value}"),
                format!(
                    "a batch's activations ({width} values a sample; at most {} samples fit)",
                    limit / (width * 4)
                ),
                need,
            ));
        }
    }
    Ok(())
}
