//! The start of a run, before the first step: the data (synthetic, or Criteo files through the
//! preprocessed cache, built with a progress bar), the model (fresh or resumed from
//! `--load-model`) and the lines that describe both.

use crate::dlrm::{Dlrm, DlrmConfig, DlrmOptions, TableKind, TtCacheOptions};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::progress::{Progress, Unit};

use super::checkpoint::{self, Position};
use super::data::TrainData;
use super::options::{Checked, TrainArgs};
use super::output::Output;

/// The run's samples, with the lines saying where they come from (and, for files, how many
/// lines were read and skipped).
pub(super) fn load_data(args: &TrainArgs, out: &Output) -> Result<TrainData> {
    let data = if args.data.is_empty() {
        TrainData::synthetic(
            args.seed,
            args.synthetic_scale,
            args.synthetic_samples,
            args.test_fraction.unwrap_or(0.1),
        )?
    } else {
        let mut bar = Progress::new("building the data store", 0, Unit::Bytes);
        let mut progress = |done: u64, total: u64| {
            bar.set_total(total);
            bar.set(done);
        };
        let d = TrainData::criteo_rebuilding(
            &args.data,
            args.processed_data_file.clone(),
            args.max_ind_range,
            args.test_fraction,
            args.seed,
            args.rebuild_data_store,
            Some(&mut progress),
        )?;
        bar.finish();
        d
    };
    out.line(&format!("data: {}", data.describe()));
    if !args.data.is_empty() {
        out.line(&read_report_line(&data));
    }
    Ok(data)
}

/// "data: N lines read, M malformed skipped (kind: n, ...)".
fn read_report_line(data: &TrainData) -> String {
    let (lines, malformed) = data.read_report();
    let bad: u64 = malformed.iter().map(|(_, n)| n).sum();
    let kinds: Vec<String> = malformed
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    format!(
        "data: {lines} lines read, {bad} malformed skipped{}",
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        }
    )
}

/// The model configuration of a run whose options were checked (`c`) over data with
/// `table_sizes`.
pub(super) fn config_of(args: &TrainArgs, c: &Checked, table_sizes: &[u64]) -> Result<DlrmConfig> {
    let base = DlrmConfig {
        bottom_mlp: c.bottom.clone(),
        top_mlp: c.top.clone(),
        tables: vec![],
        learning_rate: args.learning_rate,
        tt_init: c.tt_init,
        seed: args.seed,
    }
    .with_table_sizes(table_sizes);
    let config = match (args.embedding, c.tt_tables, c.tt_threshold) {
        (super::EmbeddingKind::Dense, _, _) => base,
        (super::EmbeddingKind::Tt, _, Some(rows)) => base.with_tt_threshold(rows, c.tt_rank)?,
        (super::EmbeddingKind::Tt, k, None) => base.with_tt_largest(k.unwrap_or(7), c.tt_rank)?,
    };
    config.validate()?;
    Ok(config)
}

/// The model of `config` on `gpu`: fresh, or resumed from `--load-model` (checked to fit this
/// run); with the position it starts from. Prints the resume and the model lines.
pub(super) fn build_model(
    gpu: &Gpu,
    args: &TrainArgs,
    config: &DlrmConfig,
    data: &TrainData,
    out: &Output,
) -> Result<(Dlrm, Position)> {
    let options = DlrmOptions {
        kernels: args.kernels,
        tt_cache: args.cache_rows.map(|rows| TtCacheOptions {
            rows,
            warmup_steps: args.cache_warmup,
            refresh_every: args.cache_refresh,
        }),
        ..DlrmOptions::default()
    };
    let mut model = Dlrm::new(gpu, config.clone(), options)?;
    let mut pos = Position {
        epoch: 0,
        batch: 0,
        step: 0,
        best_auc: f64::NAN,
    };
    if let Some(path) = &args.load_model {
        let ck = checkpoint::load(path)?;
        ck.check_fits(config, args.mini_batch_size, &data.fingerprint(), path)?;
        ck.restore(&mut model, path)?;
        pos = ck.meta.position;
        out.line(&format!(
            "resumed from {} at epoch {}, batch {} (step {})",
            path.display(),
            pos.epoch + 1,
            pos.batch,
            pos.step
        ));
    }
    out.line(&model_line(args, config, &model)?);
    Ok((model, pos))
}

/// TT tables of `config`.
pub(super) fn tt_table_count(config: &DlrmConfig) -> usize {
    config
        .tables
        .iter()
        .filter(|t| matches!(t.kind, TableKind::Tt { .. }))
        .count()
}

/// "model: bottom MLP ..., N embedding parameters (Kx smaller than dense), M MLP parameters".
fn model_line(args: &TrainArgs, config: &DlrmConfig, model: &Dlrm) -> Result<String> {
    let (mlp_params, _, _) = model.parameter_counts();
    Ok(format!(
        "model: bottom MLP {}, top MLP {}-{}, D = {}, {} tables ({} TT, rank {}), {} embedding parameters ({:.1}x smaller than dense), {} MLP parameters",
        args.arch_mlp_bot,
        config.interaction_width(),
        args.arch_mlp_top,
        config.dim(),
        config.tables.len(),
        tt_table_count(config),
        args.tt_rank.unwrap_or(32),
        config.embedding_params()?,
        config.uncompressed_embedding_params() as f64 / config.embedding_params()?.max(1) as f64,
        mlp_params
    ))
}
