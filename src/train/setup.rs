//! The start of a run, before the first step: the data (synthetic, or Criteo files through the
//! preprocessed cache, built with a progress bar), the model (fresh or resumed from
//! `--load-model`) and the lines that describe both.

use std::path::Path;

use crate::compress::{choose_tables, tt_svd, RankChoice, Selection};
use crate::dlrm::{Dlrm, DlrmConfig, DlrmOptions, OptimizerKind, TableKind, TtCacheOptions};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::progress::{Progress, Unit};

use super::checkpoint::{self, Position};
use super::data::TrainData;
use super::options::{Checked, TrainArgs, TtShapeFlags};
use super::output::Output;

/// The run's samples, with the lines saying where they come from (and, for files, how many
/// lines were read and skipped).
pub(super) fn load_data(args: &TrainArgs, c: &Checked, out: &Output) -> Result<TrainData> {
    let data = if c.data.is_empty() {
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
            &c.data,
            c.store.clone(),
            c.max_ind_range,
            args.test_fraction,
            args.seed,
            args.rebuild_data_store,
            Some(&mut progress),
        )?;
        bar.finish();
        d
    };
    out.line(&format!("data: {}", data.describe()));
    if !c.data.is_empty() {
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
    Ok(planned_config(args, c, table_sizes)?.0)
}

/// [`config_of`] with the lines that explain the choice of TT tables (tables left dense where
/// TT does not pay, warnings where TT grows a table asked for, the budget's outcome).
pub(super) fn planned_config(
    args: &TrainArgs,
    c: &Checked,
    table_sizes: &[u64],
) -> Result<(DlrmConfig, Vec<String>)> {
    let base = DlrmConfig {
        bottom_mlp: c.bottom.clone(),
        top_mlp: c.top.clone(),
        tables: vec![],
        learning_rate: args.learning_rate as f32,
        tt_init: c.tt_init,
        seed: args.seed,
    }
    .with_table_sizes(table_sizes);
    let selection = match (c.budget, args.tt_tables, args.tt_threshold) {
        (Some(b), _, _) => Selection::Budget(b),
        (None, Some(k), _) => Selection::Largest(k),
        (None, None, Some(rows)) => Selection::Threshold(rows),
        (None, None, None) => Selection::Default,
    };
    let (config, notes) = match (c.embedding, c.baseline) {
        (super::EmbeddingKind::Tt, _) => choose_tables(&base, selection, c.tt_rank)?,
        (_, Some(b)) => (base.with_baseline(b)?, vec![]),
        (_, None) => (base, vec![]),
    };
    let config = with_tt_shapes(config, &c.tt_shapes)?;
    config.validate()?;
    Ok((config, notes))
}

/// FBTT's explicit shapes (`--tt-ranks`, `--tt-p-shapes`, `--tt-q-shapes`) on every TT table
/// of `config`; what is not given stays as suggested for the number of cores. An error names
/// the flag and the table whose rows a row-factor list does not cover.
fn with_tt_shapes(mut config: DlrmConfig, f: &TtShapeFlags) -> Result<DlrmConfig> {
    if *f == TtShapeFlags::default() {
        return Ok(config);
    }
    let dim = config.dim();
    let tt: Vec<usize> = (0..config.tables.len())
        .filter(|&t| matches!(config.tables[t].kind, TableKind::Tt { .. }))
        .collect();
    if let Some(p) = f.p.as_ref().filter(|p| p.len() > 1 && p.len() != tt.len()) {
        return Err(Error::input(
            None,
            format!(
                "--tt-p-shapes gives {} lists for {} TT tables (tables {tt:?}): give one list for all, or one per TT table",
                p.len(),
                tt.len()
            ),
        ));
    }
    for (i, &t) in tt.iter().enumerate() {
        let rows = config.tables[t].rows;
        let TableKind::Tt { p, q, ranks } = &mut config.tables[t].kind else {
            continue;
        };
        let cores = f
            .ranks
            .as_ref()
            .map(|r| r.len() + 1)
            .or(f.q.as_ref().map(Vec::len))
            .or(f.p.as_ref().map(|p| p[0].len()))
            .unwrap_or(p.len());
        *ranks = f.ranks.clone().unwrap_or_else(|| vec![ranks[0]; cores - 1]);
        *q =
            f.q.clone()
                .unwrap_or_else(|| crate::tt::shapes::suggested_dim_shape(dim, cores));
        *p = match &f.p {
            Some(lists) => lists[if lists.len() == 1 { 0 } else { i }].clone(),
            None => crate::tt::suggested_tt_shapes(rows, cores, true),
        };
        let covered: u128 = p.iter().map(|&x| x as u128).product();
        if covered < rows as u128 {
            return Err(Error::input(
                Some(t),
                format!(
                    "--tt-p-shapes {}: the product {covered} does not cover the table's {rows} rows",
                    p.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
                ),
            ));
        }
    }
    Ok(config)
}

/// The model of `config` on `gpu`: fresh, or resumed from `--load-model` (checked to fit this
/// run); with the position it starts from. Prints the resume and the model lines.
pub(super) fn build_model(
    gpu: &Gpu,
    args: &TrainArgs,
    c: &Checked,
    config: &DlrmConfig,
    data: &TrainData,
    out: &Output,
) -> Result<(Dlrm, Position)> {
    let loaded = match &args.load_model {
        Some(path) => Some((path, checkpoint::load(path)?)),
        None => None,
    };
    // --tt-precision, else the checkpoint's (an f16 checkpoint resumes in f16), else f32.
    let tt_precision = args
        .tt_precision
        .or(loaded.as_ref().map(|(_, ck)| ck.meta.tt_precision))
        .unwrap_or_default();
    let options = DlrmOptions {
        kernels: args.kernels,
        optimizer: c.optimizer,
        tt_cache: cache_options(args),
        tt_precision,
        ..DlrmOptions::default()
    };
    let mut model = Dlrm::new(gpu, config.clone(), options)?;
    let mut pos = Position {
        epoch: 0,
        batch: 0,
        step: 0,
        best_auc: f64::NAN,
    };
    if let Some((path, ck)) = loaded {
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
    let from_dense = args.tt_init.as_deref();
    if let Some(path) = from_dense.and_then(|s| s.strip_prefix("from-dense:")) {
        out.line(&warm_start(&mut model, Path::new(path))?);
    }
    out.line(&model_line(config, &model)?);
    Ok((model, pos))
}

/// `--tt-init from-dense:PATH`: every parameter from the dense model at `path` (same MLPs and
/// table sizes): TT tables as the TT-SVD of its tables at their shapes and ranks, the rest
/// copied. The line that says so, with the largest relative error of a TT table.
fn warm_start(model: &mut Dlrm, path: &Path) -> Result<String> {
    let ck = checkpoint::load(path)?;
    let find = |name: &str, want: &[usize]| -> Result<&Vec<f32>> {
        let (_, shape, values) = ck
            .tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .ok_or_else(|| {
                Error::file(
                    path,
                    format!("--tt-init from-dense: tensor {name} is missing (a dense model of the same shape is needed)"),
                )
            })?;
        if shape != want {
            return Err(Error::file(
                path,
                format!("--tt-init from-dense: tensor {name} has shape {shape:?}; this model needs {want:?}"),
            ));
        }
        Ok(values)
    };
    let config = model.config().clone();
    let dim = config.dim();
    let (mut tt, mut worst) = (0, (0.0f64, 0usize));
    for (t, table) in config.tables.iter().enumerate() {
        let name = format!("emb_l.{t}.weight");
        let dense = find(&name, &[table.rows as usize, dim])?;
        let Some(shape) = config.tt_shape(t)? else {
            model.set_parameter(&name, dense)?;
            continue;
        };
        let ranks = RankChoice::Fixed(shape.interior_ranks().to_vec());
        let svd =
            tt_svd(dense, table.rows, &shape.p, &shape.q, &ranks).map_err(|e| e.with_table(t))?;
        for (k, core) in svd.cores.iter().enumerate() {
            model.set_parameter(&format!("emb_l.{t}.tt_cores.{k}"), core)?;
        }
        let err = svd.predicted_relative_error();
        if err >= worst.0 {
            worst = (err, t);
        }
        tt += 1;
    }
    for (name, shape) in model.parameter_names() {
        if !name.starts_with("emb_l.") {
            let values = find(&name, &shape)?.clone();
            model.set_parameter(&name, &values)?;
        }
    }
    Ok(format!(
        "warm start from {}: {tt} TT tables by TT-SVD (relative error at most {:.4}, table {}), the dense tables and MLPs copied",
        path.display(),
        worst.0,
        crate::compress::plan::table_name(worst.1)
    ))
}

/// The table plan of `config` as the run trains it (SGD; the row cache of --cache-rows), for the
/// summary.
pub(super) fn plan_json(
    args: &TrainArgs,
    optimizer: OptimizerKind,
    config: &DlrmConfig,
) -> Result<serde_json::Value> {
    let cache = cache_options(args);
    let adagrad = matches!(optimizer, OptimizerKind::Adagrad { .. });
    let precision = args.tt_precision.unwrap_or_default();
    Ok(crate::compress::model_plan_at(config, adagrad, cache.as_ref(), precision)?.to_json())
}

/// The TT row cache `--cache-rows` and its steps ask for.
pub(crate) fn cache_options(args: &TrainArgs) -> Option<TtCacheOptions> {
    args.cache_rows.map(|rows| TtCacheOptions {
        rows,
        warmup_steps: args.cache_warmup,
        refresh_every: args.cache_refresh,
    })
}

/// TT tables of `config`.
pub(super) fn tt_table_count(config: &DlrmConfig) -> usize {
    config
        .tables
        .iter()
        .filter(|t| matches!(t.kind, TableKind::Tt { .. }))
        .count()
}

/// "model: bottom MLP ..., N tables (K TT, ranks R), N embedding parameters (Kx smaller than
/// dense), M MLP parameters"; "(K TT, ..., Q quotient-remainder)" with QR tables; "(all
/// dense)" and no compression for a dense model.
fn model_line(config: &DlrmConfig, model: &Dlrm) -> Result<String> {
    let (mlp_params, _, _) = model.parameter_counts();
    let mut ranks: Vec<String> = Vec::new();
    for table in &config.tables {
        if let TableKind::Tt { ranks: r, .. } = &table.kind {
            let r = r
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",");
            if !ranks.contains(&r) {
                ranks.push(r);
            }
        }
    }
    let tt = tt_table_count(config);
    let mut kinds = Vec::new();
    if tt > 0 {
        kinds.push(format!("{tt} TT, ranks {}", ranks.join(" / ")));
    }
    let qr = config
        .tables
        .iter()
        .filter(|t| matches!(t.kind, TableKind::Qr { .. }))
        .count();
    if qr > 0 {
        kinds.push(format!("{qr} quotient-remainder"));
    }
    let md_widths: Vec<String> = (config.tables.iter())
        .filter_map(|t| match t.kind {
            TableKind::Md { dim } => Some(dim.to_string()),
            _ => None,
        })
        .collect();
    if !md_widths.is_empty() {
        kinds.push(format!(
            "{} MD, widths {}",
            md_widths.len(),
            md_widths.join(",")
        ));
    }
    let tables = if kinds.is_empty() {
        "all dense".to_string()
    } else {
        kinds.join(", ")
    };
    let embedding = config.embedding_params()?;
    let size = if kinds.is_empty() {
        String::new()
    } else {
        format!(
            " ({:.1}x smaller than dense)",
            config.uncompressed_embedding_params() as f64 / embedding.max(1) as f64
        )
    };
    Ok(format!(
        "model: bottom MLP {}, top MLP {}-{}, D = {}, {} tables ({tables}), {embedding} embedding parameters{size}, {mlp_params} MLP parameters",
        crate::dlrm::config::format_widths(&config.bottom_mlp),
        config.interaction_width(),
        crate::dlrm::config::format_widths(&config.top_mlp),
        config.dim(),
        config.tables.len(),
    ))
}
