//! `ttrec data ...`: inspect Criteo files, build their binary data store, write synthetic ones.
//! Long passes show a progress bar on stderr (plain lines when stderr is not a terminal).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use ttrec::data::{
    check_store, check_store_sources, column_name, default_store_path, default_store_path_for,
    expand_sources, inspect_file_with_progress, MalformedKind, Mismatch, PreprocessConfig,
    PreprocessedDataset, StoreState, SyntheticCriteo, NUM_DENSE, NUM_SPARSE,
};
use ttrec::progress::{Progress, Unit};

use super::args::{positive_f64, positive_u64};

/// `ttrec data` subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Report valid and malformed lines, positive rate, per-column missing rate and distinct
    /// counts, and whether a valid data store exists.
    Inspect {
        /// A Criteo file in the raw layout, plain or gzip.
        file: PathBuf,
        /// Print one JSON object ("type": "data_inspect") instead of text.
        #[arg(long)]
        json: bool,
        /// Take categorical values modulo this before counting distinct values (dlrm's option).
        #[arg(long, value_parser = positive_u64)]
        max_ind_range: Option<u64>,
        /// Data store to check (default: FILE.ttcache). `--cache` is its old name.
        #[arg(long, alias = "cache", value_name = "PATH")]
        store: Option<PathBuf>,
    },
    /// Build the binary data store `ttrec train --data FILE...` uses (parse and preprocess once;
    /// training then memory-maps it). Does nothing when a valid store is there; a store of
    /// other sources or settings is an error unless --force.
    Preprocess {
        /// Criteo files in the raw layout (plain or gzip), or directories of day files, read
        /// in order as one data set, as `ttrec train --data` takes them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where the data store goes (default: the first file's name + .ttcache, as `ttrec
        /// train` looks for it; pass the same path as train's --processed-data-file). `--cache`
        /// is its old name.
        #[arg(long, alias = "cache", value_name = "PATH")]
        store: Option<PathBuf>,
        /// Take categorical values modulo this (dlrm's option; Terabyte uses 10000000). Train
        /// with the same value.
        #[arg(long, value_parser = positive_u64)]
        max_ind_range: Option<u64>,
        /// Rebuild even when a valid store is there, or over one of other sources or settings.
        #[arg(long)]
        force: bool,
        /// Print one JSON object ("type": "data_preprocess") instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write synthetic Criteo-shaped samples in the raw layout (gzip when FILE ends in .gz).
    Synth {
        /// Number of samples (lines).
        #[arg(long, value_parser = positive_u64)]
        samples: u64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Seed; the same seed writes the same file.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Factor on Kaggle's table sizes.
        #[arg(long, default_value_t = 1.0, value_parser = positive_f64, allow_negative_numbers = true)]
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
            store,
        } => inspect(file, json, max_ind_range, store),
        DataCommand::Preprocess {
            files,
            store,
            max_ind_range,
            force,
            json,
        } => preprocess(files, store, max_ind_range, force, json),
        DataCommand::Synth {
            samples,
            out,
            seed,
            scale,
        } => {
            let synth = SyntheticCriteo::new(seed, scale)?;
            let mut progress = Progress::new(
                format!("writing {}", out.display()),
                samples,
                Unit::Items("samples"),
            );
            synth
                .write_raw_with_progress(&out, samples, &mut |done| progress.set(done))
                .with_context(|| format!("writing {samples} synthetic samples"))?;
            progress.finish();
            eprintln!(
                "wrote {samples} samples to {} (seed {seed}, scale {scale})",
                out.display()
            );
            Ok(())
        }
    }
}

fn inspect(
    file: PathBuf,
    json: bool,
    max_ind_range: Option<u64>,
    store: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut progress = Progress::new(format!("reading {}", file.display()), 0, Unit::Bytes);
    let report = inspect_file_with_progress(&file, max_ind_range, &mut |done, total| {
        progress.set_total(total);
        progress.set(done);
    })?;
    progress.finish();
    let store = store.unwrap_or_else(|| default_store_path(&file));
    let config = PreprocessConfig {
        max_ind_range,
        ..PreprocessConfig::default()
    };
    let store_state = check_store(&file, &store, &config)?;
    if json {
        let mut obj = serde_json::Map::new();
        obj.insert("type".into(), "data_inspect".into());
        obj.insert("file".into(), file.display().to_string().into());
        if let serde_json::Value::Object(m) = report.to_json() {
            obj.extend(m);
        }
        let store_json = json!({
            "path": store.display().to_string(),
            "valid": store_state.is_valid(),
            "state": store_state.to_string(),
        });
        // "cache" is the key's old name, kept so existing readers of this output still work.
        obj.insert("cache".into(), store_json.clone());
        obj.insert("store".into(), store_json);
        println!("{}", serde_json::Value::Object(obj));
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
            let first: Vec<String> = s.examples_of(kind).iter().map(|m| m.to_string()).collect();
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
    let hint = match store_state {
        StoreState::Valid => String::new(),
        _ => {
            let mut cmd = format!("ttrec data preprocess {}", file.display());
            if store != default_store_path(&file) {
                cmd.push_str(&format!(" --store {}", store.display()));
            }
            if let Some(r) = max_ind_range {
                cmd.push_str(&format!(" --max-ind-range {r}"));
            }
            // A store that is there is only rebuilt over when asked.
            if store_state != StoreState::Missing {
                cmd.push_str(" --force");
            }
            format!(" (build it: {cmd})")
        }
    };
    println!("data store {}: {store_state}{hint}", store.display());
    Ok(())
}

fn preprocess(
    paths: Vec<PathBuf>,
    store: Option<PathBuf>,
    max_ind_range: Option<u64>,
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    let files = expand_sources(&paths)?;
    let store = match store {
        Some(s) => s,
        None => default_store_path_for(&files)?,
    };
    let config = PreprocessConfig {
        max_ind_range,
        ..PreprocessConfig::default()
    };
    let start = Instant::now();
    let mut progress = Progress::new("building the data store", 0, Unit::Bytes);
    let mut report = |done: u64, total: u64| {
        progress.set_total(total);
        progress.set(done);
    };
    let (data, found, built) = if force {
        let found = check_store_sources(&files, &store, &config)?;
        let (data, _) =
            PreprocessedDataset::build_sources(&files, &store, &config, Some(&mut report))?;
        (data, found, true)
    } else {
        // A store of other sources or settings is never overwritten without --force.
        let (data, found) = PreprocessedDataset::open_or_build_with(
            &files,
            &store,
            &config,
            Mismatch::Refuse { flag: "--force" },
            Some(&mut report),
        )?;
        let built = !found.is_valid();
        (data, found, built)
    };
    progress.finish();
    let seconds = start.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&store)
        .with_context(|| format!("{}: cannot stat the data store", store.display()))?
        .len();
    let malformed = data.malformed_counts();
    if json {
        let by_kind: serde_json::Map<_, _> = MalformedKind::ALL
            .iter()
            .map(|k| (k.name().to_string(), json!(malformed[k.index()])))
            .collect();
        println!(
            "{}",
            json!({
                "type": "data_preprocess",
                // "cache" is the key's old name, kept for existing readers of this output.
                "cache": store.display().to_string(),
                "store": store.display().to_string(),
                "sources": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
                "max_ind_range": max_ind_range,
                "found": found.to_string(),
                "built": built,
                "seconds": seconds,
                "lines": data.source_lines(),
                "rows": data.len(),
                "malformed_lines": malformed.iter().sum::<u64>(),
                "malformed": by_kind,
                "table_sizes": data.table_sizes(),
                "bytes": bytes,
            })
        );
        return Ok(());
    }
    if built {
        println!(
            "built {} from {} file(s) in {seconds:.1} s (it was {found})",
            store.display(),
            files.len()
        );
    } else {
        println!(
            "{} is valid: nothing to do (--force rebuilds it)",
            store.display()
        );
    }
    let bad: u64 = malformed.iter().sum();
    let kinds: Vec<String> = MalformedKind::ALL
        .iter()
        .filter(|k| malformed[k.index()] > 0)
        .map(|k| format!("{}: {}", k.name(), malformed[k.index()]))
        .collect();
    println!(
        "{} lines, {} samples, {bad} malformed lines skipped{}; {:.1} MB",
        data.source_lines(),
        data.len(),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        },
        bytes as f64 / 1e6
    );
    println!(
        "table sizes: {}",
        data.table_sizes()
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
