//! The flags of dlrm's `dlrm_s_pytorch.py` that ttrec takes so that dlrm's command lines (its
//! `bench/dlrm_s_criteo_kaggle.sh` and `..._terabyte.sh`) run as they are. A flag that means
//! something here maps onto ttrec's option; one that means nothing here is accepted and reported
//! once ("note: --use-gpu: ..."); one that asks for something ttrec does not do (another loss,
//! interaction or activation, quantization, ONNX) is an error that says so. The flags that
//! change the run (`--optimizer`, the learning-rate policy, the MLPerf targets, FBTT's TT
//! shapes) are [`super::TrainArgs`]' own.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::{Error, Result};

/// dlrm's flags without a ttrec option of their own.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "dlrm_s_pytorch.py flags (accepted for dlrm's scripts)")]
pub struct DlrmFlags {
    /// dlrm's data file: a raw Criteo file, a directory of day files, or Terabyte's prefix
    /// (`./input/day` for day_0, day_1, ...). The same as --data.
    #[arg(long, value_name = "PATH", conflicts_with = "data")]
    pub raw_data_file: Option<PathBuf>,
    /// dataset: the files of --raw-data-file (or --data); random: ttrec's synthetic source.
    #[arg(long, value_name = "KIND", value_parser = ["dataset", "random", "internal"])]
    pub data_generation: Option<String>,
    /// kaggle or terabyte (noted: the split is ttrec's, see --test-fraction).
    #[arg(long, value_name = "NAME", value_parser = ["kaggle", "terabyte"])]
    pub data_set: Option<String>,
    /// bce only (ttrec trains with binary cross-entropy on the sigmoid).
    #[arg(long, value_name = "NAME")]
    pub loss_function: Option<String>,
    /// Accepted (Criteo's labels are 0 or 1 already).
    #[arg(long, value_name = "BOOL", value_parser = python_bool)]
    pub round_targets: Option<bool>,
    /// dot only.
    #[arg(long, value_name = "OP")]
    pub arch_interaction_op: Option<String>,
    /// relu only.
    #[arg(long, value_name = "NAME")]
    pub activation_function: Option<String>,
    /// Accepted; the table sizes come from the data.
    #[arg(long, value_name = "SIZES")]
    pub arch_embedding_size: Option<String>,
    /// total only (ttrec shuffles the training rows of every day together).
    #[arg(long, value_name = "HOW")]
    pub data_randomize: Option<String>,
    /// 0 only (no sub-sampling).
    #[arg(long, value_name = "RATE")]
    pub data_sub_sample_rate: Option<f64>,
    /// 32 only (no quantization).
    #[arg(long, value_name = "BITS")]
    pub quantize_mlp_with_bit: Option<u32>,
    /// 32 only (no quantization).
    #[arg(long, value_name = "BITS")]
    pub quantize_emb_with_bit: Option<u32>,
    /// 1 only.
    #[arg(long, value_name = "N")]
    pub mlperf_grad_accum_iter: Option<u32>,
    /// Accepted, no effect (the data store serves batches from memory).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub test_num_workers: Option<i64>,
    /// Accepted, no effect (the data store serves batches from memory).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub num_workers: Option<i64>,
    /// Accepted, no effect.
    #[arg(long, value_name = "N")]
    pub print_precision: Option<u32>,
    /// Accepted, no effect.
    #[arg(long, value_name = "NAME")]
    pub tensor_board_filename: Option<String>,
    /// Accepted, no effect.
    #[arg(long, value_name = "BOOL", value_parser = python_bool)]
    pub sync_dense_params: Option<bool>,
    /// Accepted, no effect (a non-finite loss always stops the run).
    #[arg(long, value_name = "X")]
    pub loss_threshold: Option<f64>,
    /// Accepted, no effect (ttrec always prints times and samples/s).
    #[arg(long)]
    pub print_time: bool,
    /// Accepted, no effect.
    #[arg(long)]
    pub print_wall_time: bool,
    /// Accepted, no effect (the data store is always memory-mapped).
    #[arg(long)]
    pub memory_map: bool,
    /// Accepted; no MLPerf log (the thresholds apply without it).
    #[arg(long)]
    pub mlperf_logging: bool,
    /// Accepted, no effect.
    #[arg(long)]
    pub mlperf_bin_loader: bool,
    /// Accepted, no effect.
    #[arg(long)]
    pub mlperf_bin_shuffle: bool,
    /// Accepted; see `ttrec bench dlrm` for per-kernel times.
    #[arg(long)]
    pub enable_profiling: bool,
    /// Accepted; ttrec picks the adapter (see --adapter).
    #[arg(long)]
    pub use_gpu: bool,
    /// Accepted, no effect.
    #[arg(long)]
    pub debug_mode: bool,
    /// Accepted, no effect.
    #[arg(long)]
    pub plot_compute_graph: bool,
    /// Accepted, no effect.
    #[arg(long)]
    pub dataset_multiprocessing: bool,
    /// Not supported (dlrm's self-interaction).
    #[arg(long)]
    pub arch_interaction_itself: bool,
    /// Not supported (no ONNX export).
    #[arg(long)]
    pub save_onnx: bool,
}

/// Python's `type=bool` values as people write them: True/False, true/false, 1/0.
fn python_bool(s: &str) -> std::result::Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("must be True or False, got {s:?}")),
    }
}

fn unsupported(flag: &str, value: &str, what: &str) -> Error {
    Error::input(None, format!("{flag} {value}: {what}"))
}

impl DlrmFlags {
    /// Refuses the values that ask for what ttrec does not do; the error names the flag.
    pub fn check(&self) -> Result<()> {
        if let Some(l) = &self.loss_function {
            if l != "bce" {
                return Err(unsupported(
                    "--loss-function",
                    l,
                    "ttrec trains with binary cross-entropy only (bce)",
                ));
            }
        }
        if let Some(op) = self.arch_interaction_op.as_deref().filter(|o| *o != "dot") {
            return Err(unsupported(
                "--arch-interaction-op",
                op,
                "ttrec's interaction is dot only",
            ));
        }
        if let Some(a) = self.activation_function.as_deref().filter(|a| *a != "relu") {
            return Err(unsupported(
                "--activation-function",
                a,
                "ttrec's MLPs use relu only",
            ));
        }
        if self.arch_interaction_itself {
            return Err(unsupported(
                "--arch-interaction-itself",
                "",
                "not supported: ttrec's interaction has no self terms (dlrm's default)",
            ));
        }
        if self.save_onnx {
            return Err(unsupported(
                "--save-onnx",
                "",
                "ttrec has no ONNX export; --save-model writes a safetensors checkpoint under dlrm's state-dict names",
            ));
        }
        if let Some(r) = self.data_sub_sample_rate.filter(|&r| r != 0.0) {
            return Err(unsupported(
                "--data-sub-sample-rate",
                &r.to_string(),
                "ttrec does not sub-sample (0 only)",
            ));
        }
        for (flag, bits) in [
            ("--quantize-mlp-with-bit", self.quantize_mlp_with_bit),
            ("--quantize-emb-with-bit", self.quantize_emb_with_bit),
        ] {
            if let Some(b) = bits.filter(|&b| b != 32) {
                return Err(unsupported(
                    flag,
                    &b.to_string(),
                    "ttrec does not quantize (32 only)",
                ));
            }
        }
        if let Some(n) = self.mlperf_grad_accum_iter.filter(|&n| n != 1) {
            return Err(unsupported(
                "--mlperf-grad-accum-iter",
                &n.to_string(),
                "ttrec updates at every step (1 only)",
            ));
        }
        if let Some(r) = self.data_randomize.as_deref().filter(|r| *r != "total") {
            return Err(unsupported(
                "--data-randomize",
                r,
                "ttrec shuffles the training rows of all days together (total only)",
            ));
        }
        if self.data_generation.as_deref() == Some("internal") {
            return Err(unsupported(
                "--data-generation",
                "internal",
                "no internal data here; use dataset (with --raw-data-file) or random",
            ));
        }
        Ok(())
    }

    /// The flags given, by name without dashes (records of the run).
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            if !v.is_null() && v != serde_json::Value::Bool(false) {
                m.insert(k.into(), v);
            }
        };
        use serde_json::json;
        put(
            "raw_data_file",
            json!(self.raw_data_file.as_ref().map(|p| p.display().to_string())),
        );
        put("data_generation", json!(self.data_generation));
        put("data_set", json!(self.data_set));
        put("loss_function", json!(self.loss_function));
        put("round_targets", json!(self.round_targets));
        put("arch_interaction_op", json!(self.arch_interaction_op));
        put("activation_function", json!(self.activation_function));
        put("arch_embedding_size", json!(self.arch_embedding_size));
        put("data_randomize", json!(self.data_randomize));
        put("data_sub_sample_rate", json!(self.data_sub_sample_rate));
        put("quantize_mlp_with_bit", json!(self.quantize_mlp_with_bit));
        put("quantize_emb_with_bit", json!(self.quantize_emb_with_bit));
        put("mlperf_grad_accum_iter", json!(self.mlperf_grad_accum_iter));
        put("test_num_workers", json!(self.test_num_workers));
        put("num_workers", json!(self.num_workers));
        put("print_precision", json!(self.print_precision));
        put("tensor_board_filename", json!(self.tensor_board_filename));
        put("sync_dense_params", json!(self.sync_dense_params));
        put("loss_threshold", json!(self.loss_threshold));
        for (k, v) in [
            ("print_time", self.print_time),
            ("print_wall_time", self.print_wall_time),
            ("memory_map", self.memory_map),
            ("mlperf_logging", self.mlperf_logging),
            ("mlperf_bin_loader", self.mlperf_bin_loader),
            ("mlperf_bin_shuffle", self.mlperf_bin_shuffle),
            ("enable_profiling", self.enable_profiling),
            ("use_gpu", self.use_gpu),
            ("debug_mode", self.debug_mode),
            ("plot_compute_graph", self.plot_compute_graph),
            ("dataset_multiprocessing", self.dataset_multiprocessing),
        ] {
            put(k, json!(v));
        }
        serde_json::Value::Object(m)
    }

    /// One note per flag given that means nothing here, saying why (printed once at the start).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let mut note = |given: bool, flag: &str, why: &str| {
            if given {
                notes.push(format!("{flag}: {why}"));
            }
        };
        note(
            self.use_gpu,
            "--use-gpu",
            "ttrec picks the adapter; see --adapter (and `ttrec info --list`)",
        );
        note(
            self.memory_map,
            "--memory-map",
            "ttrec's data store is always memory-mapped",
        );
        note(
            self.print_time,
            "--print-time",
            "ttrec always prints times and samples/s",
        );
        note(self.print_wall_time, "--print-wall-time", "no effect here");
        note(
            self.mlperf_logging,
            "--mlperf-logging",
            "ttrec writes no MLPerf log (see --metrics-jsonl, --summary-json); --mlperf-auc-threshold and --mlperf-acc-threshold apply without it",
        );
        note(
            self.mlperf_bin_loader || self.mlperf_bin_shuffle,
            "--mlperf-bin-loader/--mlperf-bin-shuffle",
            "ttrec reads its own data store",
        );
        note(
            self.enable_profiling,
            "--enable-profiling",
            "no PyTorch profiler here; per-kernel GPU times: `ttrec bench dlrm`",
        );
        note(
            self.test_num_workers.is_some() || self.num_workers.is_some(),
            "--num-workers/--test-num-workers",
            "the data store serves batches from memory; there are no loader workers",
        );
        note(
            self.round_targets.is_some(),
            "--round-targets",
            "Criteo's labels are 0 or 1 already",
        );
        note(
            self.arch_embedding_size.is_some(),
            "--arch-embedding-size",
            "the table sizes come from the data",
        );
        note(
            self.debug_mode || self.plot_compute_graph || self.dataset_multiprocessing,
            "--debug-mode/--plot-compute-graph/--dataset-multiprocessing",
            "no effect here",
        );
        note(
            self.print_precision.is_some()
                || self.tensor_board_filename.is_some()
                || self.sync_dense_params.is_some(),
            "--print-precision/--tensor-board-filename/--sync-dense-params",
            "no effect here",
        );
        note(
            self.loss_threshold.is_some(),
            "--loss-threshold",
            "no effect here (a non-finite loss always stops the run)",
        );
        note(
            self.data_set.as_deref() == Some("terabyte"),
            "--data-set terabyte",
            "ttrec cuts the rows into 7 equal days as for Kaggle (evaluation: the first half of the last); --test-fraction sets another split",
        );
        notes
    }
}

/// The files of dlrm's `--raw-data-file`: the path itself when it exists, else Terabyte's
/// prefix form (`day` for `day_0`, `day_1`, ... in order, plain or `.gz`).
pub fn raw_data_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.exists() {
        return Ok(vec![path.to_path_buf()]);
    }
    let day = |k: usize| {
        let base = format!("{}_{k}", path.display());
        [PathBuf::from(&base), PathBuf::from(format!("{base}.gz"))]
            .into_iter()
            .find(|p| p.is_file())
    };
    let days: Vec<PathBuf> = (0..).map_while(day).collect();
    if days.is_empty() {
        return Err(Error::file(
            path,
            "--raw-data-file: no such file or directory, and no day files of that prefix (day_0, day_1, ...)",
        ));
    }
    Ok(days)
}

/// ttrec's data store for dlrm's `--processed-data-file`: dlrm names an `.npz` (its own
/// format, which ttrec neither reads nor writes); ttrec keeps its store beside it as
/// `.ttcache`. Returns the path and, when it was changed, a note.
pub fn store_for_processed(path: &Path) -> (PathBuf, Option<String>) {
    if path.extension().is_some_and(|e| e == "npz") {
        let store = path.with_extension("ttcache");
        let note = format!(
            "--processed-data-file {}: ttrec does not read or write dlrm's .npz; its data store is {}",
            path.display(),
            store.display()
        );
        return (store, Some(note));
    }
    (path.to_path_buf(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terabyte_prefixes_expand_to_day_files_in_order() {
        let dir = std::env::temp_dir().join(format!("ttrec-dlrm-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["day_0", "day_1.gz", "day_2", "day_10"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let files = raw_data_files(&dir.join("day")).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        // day_3 is missing: the days end there (day_10 is not reached).
        assert_eq!(names, ["day_0", "day_1.gz", "day_2"]);
        assert_eq!(raw_data_files(&dir.join("day_0")).unwrap().len(), 1);
        let e = raw_data_files(&dir.join("night")).unwrap_err().to_string();
        assert!(e.contains("--raw-data-file"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
        let (store, note) = store_for_processed(Path::new("in/kaggle_processed.npz"));
        assert_eq!(store, Path::new("in/kaggle_processed.ttcache"));
        assert!(note.unwrap().contains(".npz"));
        assert_eq!(store_for_processed(Path::new("a.ttcache")).1, None);
    }

    #[test]
    fn python_bools() {
        assert_eq!(python_bool("True"), Ok(true));
        assert_eq!(python_bool("False"), Ok(false));
        assert!(python_bool("maybe").is_err());
    }
}
