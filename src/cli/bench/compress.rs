//! `ttrec bench compress`: trains the same model once per compression method and prints one
//! row per method (see [`ttrec::bench::compress`]); `--out` writes the same table atomically.
//! A method that fails shows its error in its row, the others still run, and the command then
//! exits non-zero.

use anyhow::bail;
use clap::Args;

use ttrec::bench::compress::{
    check_base, common_settings, header, method_args, run_method, ALL_METHODS,
};
use ttrec::bench::BenchEnv;
use ttrec::gpu::{AdapterOptions, Gpu};
use ttrec::train::{EmbeddingKind, TrainArgs};

/// `ttrec bench compress`
#[derive(Debug, Args)]
#[command(mut_arg("embedding", |a| a.hide(true)))]
pub struct BenchCompressArgs {
    /// The methods to compare, comma-separated: tt, dense, qr, md (default: all four). The TT
    /// options (--tt-*, --embedding-budget, --compression, --cache-rows) apply to tt only, the
    /// --qr-* and --md-* flags to qr and md only.
    #[arg(long, value_name = "LIST", value_enum, value_delimiter = ',')]
    pub methods: Vec<EmbeddingKind>,
    /// Print one JSON object per method ("type": "bench_compress") instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the table (or the JSON lines) to this file, atomically.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
    /// Every option of `ttrec train` (data, batches, seed, model, the methods' own options):
    /// the same for every method.
    #[command(flatten)]
    pub train: TrainArgs,
}

/// Runs `ttrec bench compress`.
pub fn bench_compress(a: BenchCompressArgs) -> anyhow::Result<()> {
    let asked = if a.methods.is_empty() {
        ALL_METHODS.to_vec()
    } else {
        a.methods.clone()
    };
    // Each method once, in the order given.
    let mut methods: Vec<EmbeddingKind> = Vec::new();
    for m in asked {
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    check_base(&a.train)?;
    if let Some(out) = &a.out {
        check_out(out)?;
    }
    // Every method plans over the same tables: those of the run's data (a Criteo file's store is
    // built here once, then every run opens it).
    let sizes =
        super::super::plan::table_sizes(&method_args(&a.train, EmbeddingKind::Dense).0, None)?;
    let gpu = Gpu::with_options(&AdapterOptions::with_limits(a.train.limits))?;
    let env = BenchEnv::of(&gpu);
    let settings = common_settings(&a.train);
    let mut lines = Vec::new();
    let mut emit = |line: String| {
        println!("{line}");
        lines.push(line);
    };
    if !a.json {
        emit(format!("adapter: {}", env.adapter));
        emit(header());
    }
    let mut failed = Vec::new();
    for (i, &method) in methods.iter().enumerate() {
        let name = method.name();
        eprintln!(
            "bench compress: {name} ({}/{}): training",
            i + 1,
            methods.len()
        );
        let t = std::time::Instant::now();
        let run = run_method(&gpu, &a.train, method, &sizes)?;
        if let Some(note) = &run.note {
            eprintln!("bench compress: {name}: {note}");
        }
        match (&run.summary, &run.error) {
            (Some(s), None) => eprintln!(
                "bench compress: {name} done in {:.0} s (AUC {:.4})",
                t.elapsed().as_secs_f64(),
                s.eval.roc_auc
            ),
            (_, e) => {
                eprintln!(
                    "bench compress: {name} failed: {}",
                    e.as_deref().unwrap_or("?")
                );
                failed.push(name);
            }
        }
        if a.json {
            emit(run.json(&env, &settings).to_string());
        } else {
            emit(run.text());
        }
    }
    if let Some(out) = &a.out {
        let mut text = lines.join("\n");
        text.push('\n');
        ttrec::io::write_atomic(out, text.as_bytes())?;
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} methods failed: {} (their rows say why)",
            failed.len(),
            methods.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// `--out` is checked before any training: not a directory, in a directory that takes a new
/// file (tried, as train checks its outputs).
fn check_out(out: &std::path::Path) -> anyhow::Result<()> {
    if out.is_dir() {
        bail!("--out {}: is a directory", out.display());
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if let Err(e) = tempfile::Builder::new()
        .prefix(".ttrec-write-check.")
        .tempfile_in(dir)
    {
        bail!(
            "--out {}: cannot write in the directory {}: {e}",
            out.display(),
            dir.display()
        );
    }
    Ok(())
}
