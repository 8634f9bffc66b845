//! A DLRM training run as a dlrm user expects it (`ttrec train`, `examples/train_kaggle.rs`):
//! data (synthetic or Criteo files through the data store), the model (TT or dense tables), the
//! training loop with progress, periodic evaluation, checkpoints and resume, and the summary.
//! - [`options`]: the options (dlrm's names) and their checks.
//! - [`data`]: where samples come from, served from any (epoch, batch) position.
//! - [`checkpoint`]: save and resume.
//! - [`report`]: metric lines, the summary, the plot.
//! - `setup` (data and model before the first step), `inference` (`--inference-only`),
//!   `limits` (options against the adapter's limits), `epoch` (the training loop), `output`
//!   (bar or plain lines): the run's private parts.
//!
//! What a run guarantees: every option and output path is checked before any work (outputs
//! are locked against a second run); a non-finite model stops the run with an error naming
//! the step, the first non-finite tensor and the last finite checkpoint, and is never saved;
//! SIGINT and SIGTERM during training finish the step, write a checkpoint and exit with 130
//! and 143 (elsewhere they stop at once, removing temp files); a failed optional plot is
//! reported and leaves the exit code 0.

pub mod baseline_flags;
pub mod checkpoint;
pub mod data;
pub mod dlrm_flags;
mod epoch;
mod inference;
mod limits;
pub mod lr;
#[cfg(feature = "mpi")]
pub mod mpi_rank;
pub mod options;
mod output;
pub mod report;
mod setup;

use std::path::PathBuf;
use std::time::Instant;

use crate::dist::{self, Collective};
use crate::dlrm::{Dlrm, DlrmConfig, OptimizerKind};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
pub use checkpoint::Position;
pub use data::TrainData;
use epoch::{Schedule, Trainer};
use options::Checked;
pub use options::{EmbeddingKind, TrainArgs};
use output::Output;
use report::{MetricsLog, TrainSummary};

/// [`run_on`] as one rank of a data-parallel group (`mpirun -np P ttrec train ...`, see
/// [`crate::dist`]): every rank trains on its `--mini-batch-size` rows of each global batch of
/// P times as many, so positions, schedules and checkpoints count global batches (a checkpoint
/// records the global batch and resumes under any P and B with the same product). Rank 0 builds
/// the data store (the others wait for it), reads a checkpoint to resume from (the others get
/// its bytes), prints and writes; every rank returns the same summary. An error is this rank's
/// alone: the caller ends the job ([`Collective::abort`]).
pub fn run_group(gpu: &Gpu, args: &TrainArgs, group: &dyn Collective) -> Result<TrainSummary> {
    let checked = args.check()?;
    crate::signals::install();
    if args.cache_rows.is_some() {
        return Err(Error::input(
            None,
            "--cache-rows (the TT row cache) is not supported in data-parallel runs",
        ));
    }
    if checked.embedding == EmbeddingKind::Qr {
        return Err(Error::input(
            None,
            "--embedding qr is not supported in data-parallel runs yet",
        ));
    }
    let (rank, ranks) = (group.rank(), group.size());
    let lead = rank == 0;
    let _locks = if lead {
        lock_outputs(args)?
    } else {
        Vec::new()
    };
    let out = if lead { Output::new() } else { Output::muted() };
    if lead {
        for note in &checked.notes {
            eprintln!("note: {note}");
        }
    }
    out.line(&format!(
        "adapter: {} (rank 0 of {ranks} data-parallel ranks, {} samples per rank per step)",
        gpu.adapter_name(),
        args.mini_batch_size
    ));
    // The data store is built once, by rank 0; the others open it after.
    let data = if lead {
        let d = setup::load_data(args, &checked, &out)?;
        dist::barrier(group)?;
        d
    } else {
        dist::barrier(group)?;
        // Rank 0 has just built (or rebuilt) the store: open it as it is.
        let opener = TrainArgs {
            rebuild_data_store: false,
            ..args.clone()
        };
        setup::load_data(&opener, &checked, &out)?
    };
    // The run as one process sees it: batches of P B samples; only rank 0 writes.
    let mut global = args.clone();
    global.mini_batch_size = args.mini_batch_size * ranks;
    if !lead {
        global.metrics_jsonl = None;
        global.summary_json = None;
        global.plot = None;
    }
    // Resuming: rank 0 reads the checkpoint; every other rank restores from its bytes.
    let _copy = match &args.load_model {
        Some(path) => {
            let bytes = if lead {
                std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?
            } else {
                Vec::new()
            };
            let bytes = group.broadcast_bytes(bytes)?;
            if lead {
                None
            } else {
                let copy = tempfile::NamedTempFile::new()
                    .map_err(|e| Error::input(None, format!("a temporary file: {e}")))?;
                std::fs::write(copy.path(), &bytes)
                    .map_err(|e| Error::file(copy.path(), format!("cannot write: {e}")))?;
                global.load_model = Some(copy.path().to_path_buf());
                Some(copy)
            }
        }
        None => None,
    };
    let (config, notes) = setup::planned_config(&global, &checked, &data.table_sizes())?;
    for note in &notes {
        out.line(note);
    }
    let mut schedule = schedule(&global, &checked, &data)?;
    schedule.batch_size = args.mini_batch_size;
    limits::check(gpu, args, &config, &schedule)?;
    let (mut model, pos) = setup::build_model(gpu, &global, &checked, &config, &data, &out)?;
    let log = match (&global.metrics_jsonl, lead) {
        (Some(p), true) => Some(MetricsLog::open(p)?),
        _ => None,
    };
    let t = Instant::now();
    model.prepare_parallel(schedule.batch_size, ranks)?;
    model.prepare_eval(schedule.eval_batch)?;
    out.line(&format!(
        "plans built in {:.1} s (data-parallel step for {} samples per rank, evaluation of {})",
        t.elapsed().as_secs_f64(),
        schedule.batch_size,
        schedule.eval_batch
    ));
    let mut trainer = Trainer::new(&global, &data, &config, model, out, pos, schedule, log);
    trainer.group = Some(group);
    let train_seconds = trainer.run_epochs()?;
    let exchange = trainer.counters.exchange_seconds;
    let hash = trainer.check_same_parameters()?;
    trainer.out.line(&format!(
        "data-parallel: {ranks} ranks, {:.2} s of {:.2} s training in the gradient exchange; parameters identical on every rank (hash {hash:016x})",
        exchange, train_seconds
    ));
    finish(trainer, train_seconds)
}

/// The model configuration of a run over data with `table_sizes`.
pub fn model_config(args: &TrainArgs, table_sizes: &[u64]) -> Result<DlrmConfig> {
    setup::config_of(args, &args.check()?, table_sizes)
}

/// The tables a run of `args` over data with `table_sizes` would train (see
/// [`crate::compress::plan`]) and what its model occupies; with the lines explaining the choice.
pub fn plan(
    args: &TrainArgs,
    table_sizes: &[u64],
) -> Result<(crate::compress::ModelPlan, Vec<String>)> {
    let checked = args.check()?;
    let (config, notes) = setup::planned_config(args, &checked, table_sizes)?;
    let cache = setup::cache_options(args);
    let adagrad = matches!(checked.optimizer, OptimizerKind::Adagrad { .. });
    Ok((
        crate::compress::model_plan_at(
            &config,
            adagrad,
            cache.as_ref(),
            args.tt_precision.unwrap_or_default(),
        )?,
        notes,
    ))
}

/// Where a run writes its checkpoint when interrupted without `--save-model`.
fn interrupted_path(args: &TrainArgs) -> PathBuf {
    args.save_model
        .clone()
        .unwrap_or_else(|| PathBuf::from("train_kaggle.interrupted.safetensors"))
}

/// Runs training as `args` say; the summary on success. A signal (SIGINT, SIGTERM), a
/// non-finite model and bad data are errors (the caller exits non-zero: with
/// [`crate::signals::exit_code`] after a signal).
pub fn run(args: &TrainArgs) -> Result<TrainSummary> {
    let checked = args.check()?;
    crate::signals::install();
    let _locks = lock_outputs(args)?;
    let gpu = Gpu::with_options(&crate::gpu::AdapterOptions::with_limits(args.limits))?;
    run_checked(&gpu, args, &checked, Output::new())
}

/// [`run`] on a given adapter.
pub fn run_on(gpu: &Gpu, args: &TrainArgs) -> Result<TrainSummary> {
    let checked = args.check()?;
    crate::signals::install();
    let _locks = lock_outputs(args)?;
    run_checked(gpu, args, &checked, Output::new())
}

/// [`run_on`] printing nothing on stdout (no log lines, no summary): one run of a comparison
/// (`ttrec bench compress`), whose caller prints the results. Notes on the options and, on a
/// terminal, the progress bars still go to stderr; the run's outputs (`--summary-json`,
/// checkpoints) are written as asked.
pub fn run_quiet(gpu: &Gpu, args: &TrainArgs) -> Result<TrainSummary> {
    let checked = args.check()?;
    crate::signals::install();
    let _locks = lock_outputs(args)?;
    run_checked(gpu, args, &checked, Output::bars_only())
}

/// An advisory lock on every output of the run, or the error naming the run that holds one.
fn lock_outputs(args: &TrainArgs) -> Result<Vec<crate::io::OutputLock>> {
    args.outputs()
        .iter()
        .map(|(flag, path)| crate::io::OutputLock::acquire(path, flag))
        .collect()
}

/// [`run`] with options already checked, printing through `out`.
fn run_checked(
    gpu: &Gpu,
    args: &TrainArgs,
    checked: &Checked,
    out: Output,
) -> Result<TrainSummary> {
    for note in &checked.notes {
        eprintln!("note: {note}");
    }
    out.line(&format!("adapter: {}", gpu.adapter_name()));
    // An adapter without f16 is refused before any data is read.
    if let Some(p) = args.tt_precision {
        gpu.check_precision(p, "--tt-precision")?;
    }
    let data = setup::load_data(args, checked, &out)?;
    if args.inference_only {
        return inference::run(gpu, args, checked, &data, &out);
    }
    let (config, notes) = setup::planned_config(args, checked, &data.table_sizes())?;
    for note in &notes {
        out.line(note);
    }
    let schedule = schedule(args, checked, &data)?;
    limits::check(gpu, args, &config, &schedule)?;
    let (mut model, pos) = setup::build_model(gpu, args, checked, &config, &data, &out)?;
    let log = match &args.metrics_jsonl {
        Some(p) => Some(MetricsLog::open(p)?),
        None => None,
    };
    prepare_plans(&mut model, &schedule, &out)?;
    let mut trainer = Trainer::new(args, &data, &config, model, out, pos, schedule, log);
    let train_seconds = trainer.run_epochs()?;
    finish(trainer, train_seconds)
}

/// How the run is cut into steps and evaluations; an error when not one batch fits.
fn schedule(args: &TrainArgs, c: &Checked, data: &TrainData) -> Result<Schedule> {
    let bs = args.mini_batch_size;
    // Whole batches only: every distinct batch size is a plan of its own (compiled pipelines).
    let per_epoch = data.batches_per_epoch(bs);
    if per_epoch == 0 {
        return Err(Error::input(
            None,
            format!(
                "{} training samples do not make one batch of --mini-batch-size {bs}",
                data.train_samples()
            ),
        ));
    }
    let batches = c.num_batches.map_or(per_epoch, |n| n.min(per_epoch));
    // Without --test-freq: dlrm evaluates at the end of each epoch; the synthetic default run
    // also evaluates every quarter epoch, for a curve of AUC over the run.
    let test_freq = match (c.test_freq, c.data.is_empty()) {
        (Some(f), _) => f,
        (None, true) => batches.div_ceil(4).max(1),
        (None, false) => batches,
    };
    // Evaluation batches are balanced (33,000 samples at --test-mini-batch-size 16384: 3 x
    // 11,000), so the padding of the last one is small.
    let test_n = data.test_samples() as usize;
    let eval_batches = test_n.div_ceil(c.test_batch).max(1);
    let eval_batch = test_n.div_ceil(eval_batches).max(1);
    Ok(Schedule {
        batch_size: bs,
        batches,
        epochs: args.nepochs as u64,
        test_freq,
        eval_batch,
        lr: c.lr,
        auc_target: c.auc_target,
        acc_target: c.acc_target,
    })
}

/// Plans (and their compiled pipelines) before the clock starts.
fn prepare_plans(model: &mut Dlrm, s: &Schedule, out: &Output) -> Result<()> {
    let t = Instant::now();
    model.prepare_train(s.batch_size)?;
    model.prepare_eval(s.eval_batch)?;
    out.line(&format!(
        "plans built in {:.1} s (pipelines compiled for batches of {} and {})",
        t.elapsed().as_secs_f64(),
        s.batch_size,
        s.eval_batch
    ));
    Ok(())
}

/// The end of a run: the final evaluation (unless the last step was just evaluated), the last
/// checkpoint, the summary (stdout, `--summary-json`) and the plot.
fn finish(mut t: Trainer, train_seconds: f64) -> Result<TrainSummary> {
    let args = t.args;
    t.check_pending_steps()?;
    let eval = match t.last_eval {
        Some((ev, step)) if step == t.pos.step => ev,
        _ => t.evaluate()?,
    };
    if let Some(path) = &args.save_model {
        t.save(t.pos, path)?;
    }
    let summary = summary(&mut t, eval, train_seconds)?;
    if !t.is_lead() {
        return Ok(summary);
    }
    let quiet = t.out.is_muted();
    if !quiet {
        print!("{}", summary.text());
    }
    if let Some(p) = &args.summary_json {
        let text = serde_json::to_string_pretty(&summary.json()).expect("JSON");
        crate::io::write_atomic(p, text.as_bytes())?;
    }
    // The plot: an error only when asked for with --plot; next to the summary, a failure is
    // reported and the finished run keeps its success.
    let anchor = args.summary_json.as_ref().or(args.metrics_jsonl.as_ref());
    let plot = match (&args.plot, anchor) {
        (Some(p), _) => Some((p.clone(), true)),
        (None, Some(a)) => Some((report::plot_path(a), false)),
        (None, None) => None,
    };
    if let Some((path, asked)) = plot {
        match report::plot(&t.points, &path) {
            Ok(()) if quiet => {}
            Ok(()) => println!("plot of loss and AUC: {}", path.display()),
            Err(e) if !asked => eprintln!("warning: the plot was not written: {e}"),
            Err(e) => return Err(e),
        }
    }
    if matches!(t.data, TrainData::Synthetic { .. }) && !quiet {
        println!(
            "This was synthetic Criteo-shaped data. To train on Criteo Kaggle, download its train.txt and run:\n  cargo run --release --example train_kaggle -- --data train.txt --processed-data-file kaggle.ttcache --test-freq 10000"
        );
    }
    Ok(summary)
}

/// The summary's `config`: every option as given, with what they resolved to: the model, the
/// data files with their sizes and content hashes (XXH3-64 as the data store checks them: whole
/// up to 64 MiB, sampled above), the data store, ttrec's version, the adapter and the kernel
/// variants that ran.
fn run_record(
    args: &TrainArgs,
    data: &TrainData,
    config: &DlrmConfig,
    model: &Dlrm,
) -> Result<serde_json::Value> {
    let mut record = args.to_json();
    let files = match data {
        TrainData::Criteo { files, dataset, .. } => {
            let mut out = Vec::new();
            for f in files {
                let bytes = std::fs::metadata(f)
                    .map_err(|e| Error::file(f, format!("cannot read: {e}")))?
                    .len();
                let hash = crate::data::sources::content_hash(std::slice::from_ref(f))?;
                out.push(serde_json::json!({
                    "path": f.display().to_string(),
                    "bytes": bytes,
                    "xxh3": format!("{hash:016x}"),
                }));
            }
            Some((out, dataset.store_path().display().to_string()))
        }
        TrainData::Synthetic { .. } => None,
    };
    let gpu = model.gpu().clone();
    let class = args.kernels.resolve(&gpu);
    let mut tt = crate::tt::TtKernels::for_class(class);
    tt.subgroups &= gpu.subgroup_size().is_some();
    let extra = serde_json::json!({
        "model": config.to_json(),
        "data_files": files.as_ref().map(|f| &f.0),
        "data_store": files.as_ref().map(|f| &f.1),
        "data_source": data.describe(),
        "ttrec_version": env!("CARGO_PKG_VERSION"),
        "adapter": gpu.adapter_name(),
        "kernel_class": format!("{class:?}").to_lowercase(),
        "tt_kernels": tt.describe(),
        // What the TT cores were stored as (the flag's, or the resumed checkpoint's).
        "tt_precision": model.options().tt_precision.name(),
        "gemm_variant": format!("{:?}", model.gemm_variant()),
    });
    if let (Some(r), serde_json::Value::Object(e)) = (record.as_object_mut(), extra) {
        r.extend(e);
    }
    Ok(record)
}

/// The run's summary after its final evaluation `eval`.
fn summary(
    t: &mut Trainer,
    eval: crate::metrics::Evaluation,
    train_seconds: f64,
) -> Result<TrainSummary> {
    let config = t.config;
    let (mlp_params, dense_params, tt_params) = t.model.parameter_counts();
    let (lines, malformed) = t.data.read_report();
    Ok(TrainSummary {
        adapter: t.model.gpu().adapter_name(),
        eval,
        best_auc: t.pos.best_auc,
        steps: t.pos.step,
        epochs: t.schedule.epochs,
        train_samples: t.counters.train_samples,
        train_seconds,
        eval_samples: t.counters.eval_samples,
        eval_seconds: t.counters.eval_seconds,
        embedding_params: config.embedding_params()?,
        uncompressed_embedding_params: config.uncompressed_embedding_params(),
        tt_params,
        tt_precision: t.model.options().tt_precision,
        dense_table_params: dense_params,
        mlp_params,
        tt_tables: setup::tt_table_count(config),
        lines_read: lines,
        malformed,
        data: t.data.describe(),
        config: run_record(t.args, t.data, t.config, &t.model)?,
        cache: t.model.cache_stats()?,
        plan: setup::plan_json(t.args, t.model.options().optimizer, config)?,
    })
}
