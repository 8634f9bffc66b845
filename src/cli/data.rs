//! `ttrec data ...`: inspect Criteo files, write synthetic ones.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use ttrec::data::{
    check_cache, column_name, default_cache_path, inspect_file, MalformedKind, PreprocessConfig,
    SyntheticCriteo, NUM_DENSE, NUM_SPARSE,
};

/// `ttrec data` subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Report valid and malformed lines, positive rate, per-column missing rate and distinct
    /// counts, and whether a valid binary cache exists.
    Inspect {
        /// A Criteo file in the raw layout, plain or gzip.
        file: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Take categorical values modulo this before counting distinct values (dlrm's option).
        #[arg(long)]
        max_ind_range: Option<u64>,
        /// Cache to check (default: FILE.ttcache).
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Write synthetic Criteo-shaped samples in the raw layout (gzip when FILE ends in .gz).
    Synth {
        /// Number of samples (lines).
        #[arg(long)]
        samples: u64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Seed; the same seed writes the same file.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Factor on Kaggle's table sizes.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
    },
}

/// Runs a `ttrec data` subcommand.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Inspect {
            file,
            json,
            max_ind_range,
            cache,
        } => {
            let report = inspect_file(&file, max_ind_range)?;
            let cache = cache.unwrap_or_else(|| default_cache_path(&file));
            let config = PreprocessConfig {
                max_ind_range,
                ..PreprocessConfig::default()
            };
            let cache_state = check_cache(&file, &cache, &config)?;
            if json {
                let mut obj = report.to_json();
                obj["cache"] = serde_json::json!({
                    "path": cache.display().to_string(),
                    "valid": cache_state.is_valid(),
                    "state": cache_state.to_string(),
                });
                println!("{}", serde_json::to_string(&obj)?);
                return Ok(());
            }
            let s = &report.stats;
            println!(
                "{}: {} lines, {} valid, {} malformed",
                file.display(),
                s.lines,
                s.valid,
                s.malformed_total()
            );
            for kind in MalformedKind::ALL {
                if s.count(kind) > 0 {
                    let first: Vec<String> =
                        s.examples_of(kind).iter().map(|m| m.to_string()).collect();
                    println!(
                        "  {}: {} (first: {})",
                        kind.name(),
                        s.count(kind),
                        first.join("; ")
                    );
                }
            }
            println!("positive rate: {:.4}", report.positive_rate);
            println!("{:<6} {:>9} {:>12}", "column", "missing", "distinct");
            for j in 0..NUM_DENSE {
                println!(
                    "{:<6} {:>8.2}%",
                    column_name(1 + j),
                    100.0 * report.dense_missing_rate[j]
                );
            }
            for c in 0..NUM_SPARSE {
                println!(
                    "{:<6} {:>8.2}% {:>12}",
                    column_name(1 + NUM_DENSE + c),
                    100.0 * report.sparse_missing_rate[c],
                    report.table_sizes[c]
                );
            }
            println!("cache {}: {cache_state}", cache.display());
            Ok(())
        }
        DataCommand::Synth {
            samples,
            out,
            seed,
            scale,
        } => {
            let synth = SyntheticCriteo::new(seed, scale)?;
            synth
                .write_raw(&out, samples)
                .with_context(|| format!("writing {samples} synthetic samples"))?;
            eprintln!(
                "wrote {samples} samples to {} (seed {seed}, scale {scale})",
                out.display()
            );
            Ok(())
        }
    }
}
