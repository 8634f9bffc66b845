//! `ttrec predict`: a trained model (a `--save-model` checkpoint) scores raw Criteo lines or a
//! data store: one click probability per input line, in input order (TSV or `.npy`), and with
//! the labels AUC, log loss and accuracy. The scoring itself is [`ttrec::predict`].

use std::path::PathBuf;

use clap::Args;
use ttrec::data::{expand_sources, is_store_file, PreprocessedDataset, NUM_SPARSE};
use ttrec::dlrm::DlrmOptions;
use ttrec::gpu::Gpu;
use ttrec::predict::{write_scores, Scorer, Scores};
use ttrec::progress::{Progress, Unit};

use super::args::positive_usize;

/// `ttrec predict`
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The checkpoint to score with (`ttrec train --save-model`).
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// Raw Criteo files (plain or gzip) or directories of day files, read in order; or one
    /// data store (`.ttcache`, recognised by its contents), all its rows in file order.
    #[arg(long, num_args = 1.., required = true, value_name = "PATH")]
    pub data: Vec<PathBuf>,
    /// Where the probabilities go: `.npy` for a NumPy array, anything else for one per line.
    /// Default: one per line on stdout (the report then goes to stderr).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Samples per forward pass.
    #[arg(long, default_value_t = 16384, value_parser = positive_usize)]
    pub mini_batch_size: usize,
    /// Kernel class: auto (the adapter's), gpu or cpu.
    #[arg(long, default_value = "auto", value_parser = ttrec::gpu::KernelClass::parse)]
    pub kernels: ttrec::gpu::KernelClass,
}

/// Scores `args.data` with `args.model`.
pub fn predict(args: PredictArgs) -> anyhow::Result<()> {
    let _lock = match &args.out {
        Some(p) => Some(ttrec::io::OutputLock::acquire(p, "--out")?),
        None => None,
    };
    let gpu = Gpu::new()?;
    let options = DlrmOptions {
        kernels: args.kernels,
        ..DlrmOptions::default()
    };
    let mut scorer = Scorer::load(&gpu, &args.model, options)?;
    // The report goes where the scores do not.
    let report = |line: String| {
        if args.out.is_some() {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    };
    report(format!(
        "adapter: {}; model {} ({} steps)",
        gpu.adapter_name(),
        args.model.display(),
        scorer.model().steps()
    ));
    let store = match args.data.as_slice() {
        [one] if one.is_file() && is_store_file(one) => Some(one),
        _ => None,
    };
    let scores = match store {
        Some(path) => {
            let data = PreprocessedDataset::open_standalone(path)?;
            let mut bar = Progress::new("scoring", data.len(), Unit::Items("samples"));
            let s = scorer.score_store(
                &data,
                0..data.len(),
                args.mini_batch_size,
                Some(&mut |n| bar.set(n)),
            )?;
            bar.finish();
            s
        }
        None => {
            let files = expand_sources(&args.data)?;
            let mut bar = Progress::new("scoring", 0, Unit::Items("lines"));
            let s = scorer.score_files(&files, args.mini_batch_size, Some(&mut |n| bar.set(n)))?;
            bar.finish();
            s
        }
    };
    write_scores(args.out.as_deref(), &scores.probabilities)?;
    for line in summary(&scores) {
        report(line);
    }
    if let Some(p) = &args.out {
        report(format!("probabilities: {}", p.display()));
    }
    Ok(())
}

/// The lines that describe `s`: counts, throughput, unseen values, metrics.
fn summary(s: &Scores) -> Vec<String> {
    let malformed = match s.malformed {
        0 => String::new(),
        n => format!(" ({n} malformed lines skipped, NaN in their place)"),
    };
    let mut lines = vec![format!(
        "scored {} samples{malformed} in {:.2} s: {:.0} samples/s",
        s.scored(),
        s.seconds,
        s.scored() as f64 / s.seconds.max(1e-9)
    )];
    let unseen: Vec<String> = (0..NUM_SPARSE)
        .filter(|&c| s.unseen[c] > 0)
        .map(|c| format!("C{}: {}", c + 1, s.unseen[c]))
        .collect();
    if !unseen.is_empty() {
        lines.push(format!(
            "categories the training data never held (scored as missing ones): {}",
            unseen.join(", ")
        ));
    }
    if s.evaluation.is_none() {
        lines.push("no labels in the input: no AUC, log loss or accuracy".into());
    }
    if let Some(e) = &s.evaluation {
        lines.push(format!(
            "evaluation on {} samples: log loss {:.6}, accuracy {:.3} %, AUC {:.6}",
            e.samples,
            e.log_loss,
            100.0 * e.accuracy,
            e.roc_auc
        ));
    }
    lines
}
