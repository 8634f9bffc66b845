//! dlrm's `--inference-only`: the `--load-model` checkpoint scores this run's evaluation
//! samples (through its own encoding, so a store with other dictionaries maps to the model's
//! ids), and the run reports AUC, log loss and accuracy without a training step.

use std::time::Instant;

use crate::dlrm::{DlrmBatch, DlrmOptions};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::metrics::evaluate;
use crate::predict::Scorer;
use crate::progress::{Progress, Unit};

use super::data::TrainData;
use super::options::{Checked, TrainArgs};
use super::output::Output;
use super::report::TrainSummary;

/// Evaluates the `--load-model` checkpoint on `data`'s evaluation samples.
pub(super) fn run(
    gpu: &Gpu,
    args: &TrainArgs,
    checked: &Checked,
    data: &TrainData,
    out: &Output,
) -> Result<TrainSummary> {
    let path = args.load_model.as_ref().ok_or_else(|| {
        Error::input(
            None,
            "--inference-only needs --load-model (the model to evaluate)",
        )
    })?;
    let options = DlrmOptions {
        kernels: args.kernels,
        ..DlrmOptions::default()
    };
    let mut scorer = Scorer::load(gpu, path, options)?;
    // Balanced evaluation batches, as a training run cuts them.
    let n = data.test_samples() as usize;
    let batch = n.div_ceil(n.div_ceil(checked.test_batch).max(1)).max(1);
    // Pipelines compiled before the clock starts, as in a training run.
    scorer.model().prepare_eval(batch)?;
    let mut bar = Progress::new("evaluating", n as u64, Unit::Items("samples"));
    let t = Instant::now();
    let (labels, probs) = match data.dataset() {
        Some(ds) => {
            let s =
                scorer.score_store(ds, data.test_rows(), batch, Some(&mut |done| bar.set(done)))?;
            (s.labels, s.probabilities)
        }
        None => {
            if scorer.encoding() != &data.encoding() {
                return Err(Error::file(
                    path,
                    "the checkpoint was trained on other data than this synthetic source (its table sizes differ): pass the same --synthetic-scale, or score Criteo files with `ttrec predict`",
                ));
            }
            let (mut labels, mut probs) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for b in data.test_batches(batch)? {
                let b = b?;
                probs.extend(scorer.model().predict_padded(&DlrmBatch::from(&b), batch)?);
                labels.extend_from_slice(&b.labels);
                bar.set(labels.len() as u64);
            }
            (labels, probs)
        }
    };
    bar.finish();
    let seconds = t.elapsed().as_secs_f64();
    let eval = evaluate(&labels, &probs)?;
    out.line(&format!(
        "Testing (inference only, {}) on {} samples: loss {:.6}, accuracy {:.3} %, auc {:.4}; {:.0} samples/s",
        path.display(),
        eval.samples,
        eval.log_loss,
        100.0 * eval.accuracy,
        eval.roc_auc,
        eval.samples as f64 / seconds.max(1e-9)
    ));
    let model = scorer.model();
    let config = model.config().clone();
    let (mlp_params, dense_table_params, tt_params) = model.parameter_counts();
    let (lines_read, malformed) = data.read_report();
    let summary = TrainSummary {
        adapter: gpu.adapter_name(),
        eval,
        best_auc: eval.roc_auc,
        steps: model.steps(),
        epochs: 0,
        train_samples: 0,
        train_seconds: 0.0,
        eval_samples: eval.samples as u64,
        eval_seconds: seconds,
        embedding_params: config.embedding_params()?,
        uncompressed_embedding_params: config.uncompressed_embedding_params(),
        tt_params,
        tt_precision: model.options().tt_precision,
        dense_table_params,
        mlp_params,
        tt_tables: super::setup::tt_table_count(&config),
        lines_read,
        malformed,
        data: data.describe(),
        config: super::run_record(args, data, &config, model)?,
        cache: None,
        plan: super::setup::plan_json(args, model.options().optimizer, &config)?,
    };
    if let Some(p) = &args.summary_json {
        let text = serde_json::to_string_pretty(&summary.json()).expect("JSON");
        crate::io::write_atomic(p, text.as_bytes())?;
    }
    Ok(summary)
}
