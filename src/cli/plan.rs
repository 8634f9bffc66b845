//! `ttrec plan`: what a training run's model will occupy, before any work: per embedding table
//! its rows, form (dense, TT, QR or MD) with the form's sizes (TT shapes and ranks, QR quotient
//! and remainder rows and operation, MD width and projection) and bytes of parameters, optimizer
//! state and row cache beside its dense size, and the MLPs' bytes. It takes `ttrec train`'s
//! options and plans through the run's own configuration, so `--embedding-budget`,
//! `--compression`, `--tt-tables`, `--tt-rank`, `--embedding qr|md` and the `--qr-*` / `--md-*`
//! flags plan exactly the run.

use std::io::Write;

use anyhow::bail;
use clap::Args;
use ttrec::data::{scaled_table_sizes, KAGGLE_TABLE_SIZES, TERABYTE_TABLE_SIZES};
use ttrec::train::{TrainArgs, TrainData};

/// Options of `ttrec plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The tables' rows: `kaggle`, `terabyte` (dlrm's sizes), or a comma-separated list.
    /// Default: those of the run's data (--data's store, built if missing, or the synthetic
    /// source's at --synthetic-scale).
    #[arg(long, value_name = "SIZES")]
    pub table_sizes: Option<String>,
    /// Print one JSON object ("type": "plan") instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// The tables' rows of a run of `t`: `sizes` as `--table-sizes` takes it, or by default those of
/// the run's data (`ttrec bench compress` plans every method over the same).
pub fn table_sizes(t: &TrainArgs, sizes: Option<&str>) -> anyhow::Result<Vec<u64>> {
    Ok(match sizes {
        Some("kaggle") => KAGGLE_TABLE_SIZES.to_vec(),
        Some("terabyte") => TERABYTE_TABLE_SIZES.to_vec(),
        Some(list) => list
            .split(',')
            .map(|s| match s.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("--table-sizes: {s:?} is not a row count of at least 1"),
            })
            .collect::<anyhow::Result<_>>()?,
        None if t.data.is_empty() && t.dlrm.raw_data_file.is_none() => {
            scaled_table_sizes(t.synthetic_scale)?.to_vec()
        }
        None => {
            // The files and store as train resolves them (dlrm's --raw-data-file included).
            let c = t.check()?;
            TrainData::criteo(
                &c.data,
                c.store.clone(),
                c.max_ind_range,
                t.test_fraction,
                t.seed,
                None,
            )?
            .table_sizes()
            .to_vec()
        }
    })
}

/// Runs `ttrec plan`.
pub fn plan(a: PlanArgs) -> anyhow::Result<()> {
    let sizes = table_sizes(&a.train, a.table_sizes.as_deref())?;
    let (plan, notes) = ttrec::train::plan(&a.train, &sizes)?;
    let text = if a.json {
        let mut v = plan.to_json();
        v["type"] = "plan".into();
        v["notes"] = notes.into();
        format!("{v}\n")
    } else {
        notes.iter().map(|n| format!("{n}\n")).collect::<String>() + &plan.text()
    };
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}
