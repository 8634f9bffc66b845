//! Training checkpoints: every parameter of the model as safetensors under dlrm's state-dict
//! names (TT cores as `emb_l.{t}.tt_cores.{k}` in the reference layout `[p_k, R_k q_k R_{k+1}]`,
//! so a PyTorch user of FBTT-Embedding can load them), the optimizer, the data position, the
//! seed and the configuration in the metadata, what scoring new raw lines needs (the
//! [`Encoding`]: `max_ind_range`, the transforms and the categorical rule in the metadata, the
//! dictionaries as U32 tensors `dictionary.C1` ..), and a checksum over every byte that resuming
//! or scoring reads: each tensor's name and values and each metadata entry. Written atomically
//! and byte for byte the same for the same model (metadata sorted, no timestamps); a model with
//! a non-finite value is never written. A truncated, corrupted, mismatched or non-finite file is
//! an error that says what is wrong. A v2 checkpoint (no scoring data) still loads, to resume.

use std::collections::HashMap;
use std::path::Path;

use crate::data::{Categories, Encoding, NUM_SPARSE};
use crate::dlrm::{Dlrm, DlrmConfig};
use crate::error::{Error, Result};
use crate::tt::checkpoint::read_safetensors;

/// The format name in a checkpoint's metadata (v1's checksum covered the tensors only; v2 had
/// no scoring data).
pub const FORMAT: &str = "ttrec-train-checkpoint-v3";
/// The format before the scoring data: still loaded (to resume; scoring asks for v3).
const FORMAT_V2: &str = "ttrec-train-checkpoint-v2";

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Position {
    /// The epoch being trained (0-based).
    pub epoch: u64,
    /// Batches of that epoch already trained (at the end of a run, all it trained: a run
    /// resumed with a larger `--num-batches` continues the same epoch).
    pub batch: u64,
    /// Training steps since the start of the run (all epochs).
    pub step: u64,
    /// Best evaluation AUC so far (NaN before the first evaluation).
    pub best_auc: f64,
}

impl Position {
    /// Checks that batch and step agree: in the first epoch every step is one of its batches;
    /// later, each earlier epoch took at least one step.
    pub fn check(&self) -> std::result::Result<(), String> {
        let ok = if self.epoch == 0 {
            self.step == self.batch
        } else {
            self.step >= self.batch + self.epoch
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "position epoch {}, batch {}, step {} is impossible (batch and step disagree)",
                self.epoch, self.batch, self.step
            ))
        }
    }
}

/// What a checkpoint holds besides the parameters.
#[derive(Clone, Debug)]
pub struct CheckpointMeta {
    pub config: DlrmConfig,
    pub position: Position,
    pub batch_size: usize,
    /// The data-parallel ranks that trained it (1: one process); `batch_size` is their global
    /// batch, ranks x each rank's `--mini-batch-size`, so any ranks and per-rank batch with the
    /// same product resume it.
    pub ranks: usize,
    /// The data's fingerprint (see `TrainData::fingerprint`).
    pub data: String,
    pub seed: u64,
    /// How raw lines become this model's inputs (`None` in a v2 checkpoint).
    pub encoding: Option<Encoding>,
    /// How the TT cores are stored: f16 cores are written as F16 tensors, with metadata
    /// `tt_precision` f16 (absent: f32, as every file before it).
    pub tt_precision: crate::tt::CorePrecision,
}

/// The dictionary tensor of column `c` (0-based).
fn dictionary_name(c: usize) -> String {
    format!("dictionary.C{}", c + 1)
}

/// The encoding's dictionaries as U32 tensors (none for the modulo rule).
fn dictionary_tensors(encoding: Option<&Encoding>) -> U32Tensors {
    match encoding.map(|e| &e.categories) {
        Some(Categories::Dictionary(values)) => values
            .iter()
            .enumerate()
            .map(|(c, v)| (dictionary_name(c), vec![v.len()], v.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Tensors as a checkpoint holds them: (name, shape, values).
pub type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;
/// U32 tensors (the dictionaries): (name, shape, values).
type U32Tensors = Vec<(String, Vec<usize>, Vec<u32>)>;

/// A 64-bit FNV-1a hash of every F32 tensor's name and bytes, in name order, then of every U32
/// tensor's (none before v3, so a v2 file hashes as it did), then of every metadata entry but
/// the checksum itself, in key order (lengths first, so that no two different files hash the
/// same bytes).
fn checksum(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    u32_tensors: &[(String, Vec<usize>, Vec<u32>)],
    meta: &HashMap<String, String>,
) -> u64 {
    let mut sorted: Vec<&(String, Vec<usize>, Vec<f32>)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut sorted_u32: Vec<&(String, Vec<usize>, Vec<u32>)> = u32_tensors.iter().collect();
    sorted_u32.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (name, shape, data) in sorted {
        eat(name.as_bytes());
        for d in shape {
            eat(&(*d as u64).to_le_bytes());
        }
        eat(bytemuck::cast_slice(data));
    }
    for (name, shape, data) in sorted_u32 {
        eat(name.as_bytes());
        for d in shape {
            eat(&(*d as u64).to_le_bytes());
        }
        eat(bytemuck::cast_slice(data));
    }
    let mut keys: Vec<&String> = meta.keys().filter(|k| *k != "checksum").collect();
    keys.sort();
    for k in keys {
        let v = &meta[k];
        eat(&(k.len() as u64).to_le_bytes());
        eat(k.as_bytes());
        eat(&(v.len() as u64).to_le_bytes());
        eat(v.as_bytes());
    }
    h
}

/// The first tensor with a non-finite value: "NAME (N of M values non-finite, the first NaN
/// at i)".
pub fn first_non_finite(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Option<String> {
    tensors.iter().find_map(|(name, _, v)| {
        let first = v.iter().position(|x| !x.is_finite())?;
        let n = v.iter().filter(|x| !x.is_finite()).count();
        Some(format!(
            "{name} ({n} of {} values non-finite, the first {} at {first})",
            v.len(),
            v[first]
        ))
    })
}

/// Every parameter of `model` read back, in its state-dict order.
pub fn parameters(model: &Dlrm) -> Result<Tensors> {
    let mut tensors = Vec::new();
    for (name, shape) in model.parameter_names() {
        let data = model.parameter(&name)?;
        tensors.push((name, shape, data));
    }
    Ok(tensors)
}

/// Writes `model` and `meta` to `path` atomically; a model with a non-finite value is an
/// error and nothing is written.
pub fn save(path: &Path, model: &Dlrm, meta: &CheckpointMeta) -> Result<()> {
    let tensors = parameters(model)?;
    if let Some(bad) = first_non_finite(&tensors) {
        return Err(Error::file(
            path,
            format!("not written: the model is non-finite: {bad}"),
        ));
    }
    write(path, &tensors, meta)
}

/// Writes `tensors` (checked finite by the caller) and `meta` to `path` atomically.
pub fn write(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    meta: &CheckpointMeta,
) -> Result<()> {
    let p = &meta.position;
    let mut m = HashMap::new();
    m.insert("format".to_string(), FORMAT.to_string());
    m.insert(
        "ttrec_version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    m.insert("config".to_string(), meta.config.to_json().to_string());
    m.insert(
        "optimizer".to_string(),
        format!("sgd lr {}", meta.config.learning_rate),
    );
    m.insert(
        "position".to_string(),
        serde_json::json!({
            "epoch": p.epoch,
            "batch": p.batch,
            "step": p.step,
            "best_auc": if p.best_auc.is_finite() { serde_json::json!(p.best_auc) } else { serde_json::Value::Null },
        })
        .to_string(),
    );
    m.insert("batch_size".to_string(), meta.batch_size.to_string());
    m.insert("ranks".to_string(), meta.ranks.to_string());
    m.insert("data".to_string(), meta.data.clone());
    m.insert("seed".to_string(), meta.seed.to_string());
    if let Some(e) = &meta.encoding {
        m.insert("scoring".to_string(), e.to_json().to_string());
    }
    let f16 = meta.tt_precision == crate::tt::CorePrecision::F16;
    if f16 {
        m.insert(
            crate::tt::checkpoint::PRECISION_KEY.to_string(),
            meta.tt_precision.name().to_string(),
        );
    }
    let dictionaries = dictionary_tensors(meta.encoding.as_ref());
    let sum = checksum(tensors, &dictionaries, &m);
    m.insert("checksum".to_string(), format!("{sum:016x}"));
    // The checksum covers the values (f16 ones widened exactly), whatever their dtype on disk.
    let is_f16 = |name: &str| f16 && name.contains(".tt_cores.");
    let bytes = crate::io::safetensors_bytes_with_f16(tensors, &is_f16, &dictionaries, &m)
        .map_err(|e| Error::file(path, format!("serialising: {e}")))?;
    crate::io::write_atomic(path, &bytes)
}

/// A checkpoint read from disk and verified against its checksum.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

/// Reads and verifies a checkpoint.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let (m, raw) = read_safetensors(path).map_err(|e| match e {
        Error::File { msg, .. } => Error::file(
            path,
            format!("not a readable checkpoint (truncated or not safetensors?): {msg}"),
        ),
        e => e,
    })?;
    let get = |k: &str| -> Result<&String> {
        m.get(k)
            .ok_or_else(|| Error::file(path, format!("checkpoint metadata {k} is missing")))
    };
    let format = get("format")?;
    if format != FORMAT && format != FORMAT_V2 {
        let older = if get("format")? == "ttrec-train-checkpoint-v1" {
            " (written by an older ttrec, whose checksum does not cover the metadata)"
        } else {
            ""
        };
        return Err(Error::file(
            path,
            format!("format {:?}{older}; {FORMAT} expected", get("format")?),
        ));
    }
    let config_json: serde_json::Value = serde_json::from_str(get("config")?)
        .map_err(|e| Error::file(path, format!("metadata config is not JSON: {e}")))?;
    let config =
        DlrmConfig::from_json(&config_json).map_err(|e| Error::file(path, e.to_string()))?;
    let pos: serde_json::Value = serde_json::from_str(get("position")?)
        .map_err(|e| Error::file(path, format!("metadata position is not JSON: {e}")))?;
    let num = |k: &str| -> Result<u64> {
        pos.get(k)
            .and_then(|v| v.as_u64())
            .ok_or_else(|| Error::file(path, format!("metadata position.{k} is missing")))
    };
    let position = Position {
        epoch: num("epoch")?,
        batch: num("batch")?,
        step: num("step")?,
        best_auc: pos
            .get("best_auc")
            .and_then(|v| v.as_f64())
            .unwrap_or(f64::NAN),
    };
    let parse_u = |k: &str| -> Result<u64> {
        get(k)?
            .parse()
            .map_err(|_| Error::file(path, format!("metadata {k} is not an integer")))
    };
    let mut tensors = Vec::new();
    let mut dictionaries: U32Tensors = Vec::new();
    for (name, t) in raw {
        if t.dtype == safetensors::Dtype::U32 && name.starts_with("dictionary.") {
            let data: Vec<u32> = bytemuck::pod_collect_to_vec(&t.data);
            dictionaries.push((name, t.shape, data));
            continue;
        }
        let data = t.f32s(&name, path)?;
        if t.shape.iter().product::<usize>() != data.len() {
            return Err(Error::file(path, format!("tensor {name} is truncated")));
        }
        tensors.push((name, t.shape, data));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let want = get("checksum")?;
    let got = format!("{:016x}", checksum(&tensors, &dictionaries, &m));
    if &got != want {
        return Err(Error::file(
            path,
            format!("checksum mismatch (stored {want}, computed {got}): the file is corrupted"),
        ));
    }
    position.check().map_err(|e| Error::file(path, e))?;
    if let Some(bad) = first_non_finite(&tensors) {
        return Err(Error::file(path, format!("the model is non-finite: {bad}")));
    }
    Ok(Checkpoint {
        meta: CheckpointMeta {
            config,
            position,
            batch_size: parse_u("batch_size")? as usize,
            // Written since data-parallel training; older checkpoints came from one process.
            ranks: match m.get("ranks") {
                Some(_) => parse_u("ranks")? as usize,
                None => 1,
            },
            data: get("data")?.clone(),
            seed: parse_u("seed")?,
            encoding: read_encoding(&m, dictionaries, path)?,
            tt_precision: crate::tt::checkpoint::precision_from_metadata(&m, path)?,
        },
        tensors,
    })
}

/// The scoring data of a verified checkpoint's metadata `m` and dictionary tensors (`None`
/// before v3).
fn read_encoding(
    m: &HashMap<String, String>,
    mut dictionaries: U32Tensors,
    path: &Path,
) -> Result<Option<Encoding>> {
    let Some(text) = m.get("scoring") else {
        return Ok(None);
    };
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::file(path, format!("metadata scoring is not JSON: {e}")))?;
    let values = if dictionaries.is_empty() {
        None
    } else {
        let mut values = Vec::with_capacity(NUM_SPARSE);
        for c in 0..NUM_SPARSE {
            let name = dictionary_name(c);
            let i = dictionaries
                .iter()
                .position(|(n, _, _)| *n == name)
                .ok_or_else(|| Error::file(path, format!("tensor {name} is missing")))?;
            values.push(dictionaries.swap_remove(i).2);
        }
        if let Some((extra, _, _)) = dictionaries.first() {
            return Err(Error::file(
                path,
                format!("tensor {extra} is not a dictionary column"),
            ));
        }
        Some(values)
    };
    Encoding::from_json(&json, values)
        .map(Some)
        .map_err(|e| Error::file(path, e.to_string()))
}

impl Checkpoint {
    /// Checks that this checkpoint fits a run of `config` over `data` with batches of
    /// `batch_size`; the error lists every difference.
    pub fn check_fits(
        &self,
        config: &DlrmConfig,
        batch_size: usize,
        data: &str,
        path: &Path,
    ) -> Result<()> {
        let mut diffs = self.meta.config.shape_differences(config);
        if self.meta.batch_size != batch_size {
            diffs.push(format!(
                "--mini-batch-size: {} vs {batch_size}",
                self.meta.batch_size
            ));
        }
        if self.meta.data != data {
            diffs.push(format!("data: {} vs {data}", self.meta.data));
        }
        if self.meta.config.seed != config.seed {
            diffs.push(format!(
                "--seed: {} vs {}",
                self.meta.config.seed, config.seed
            ));
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(Error::file(
                path,
                format!(
                    "the checkpoint does not fit this run (checkpoint vs this run): {}",
                    diffs.join("; ")
                ),
            ))
        }
    }

    /// Loads every parameter into `model` (whose shape has been checked).
    pub fn restore(&self, model: &mut Dlrm, path: &Path) -> Result<()> {
        let names = model.parameter_names();
        for (name, shape) in &names {
            let (_, s, v) = self
                .tensors
                .iter()
                .find(|(n, _, _)| n == name)
                .ok_or_else(|| Error::file(path, format!("tensor {name} is missing")))?;
            if s != shape {
                return Err(Error::file(
                    path,
                    format!("tensor {name} has shape {s:?}; the model needs {shape:?}"),
                ));
            }
            model
                .set_parameter(name, v)
                .map_err(|e| Error::file(path, format!("tensor {name}: {e}")))?;
        }
        if let Some((extra, _, _)) = self
            .tensors
            .iter()
            .find(|(n, _, _)| !names.iter().any(|(m, _)| m == n))
        {
            return Err(Error::file(
                path,
                format!("tensor {extra} is not a parameter of this model"),
            ));
        }
        model.set_steps(self.meta.position.step)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: u64, batch: u64, step: u64) -> Position {
        Position {
            epoch,
            batch,
            step,
            best_auc: f64::NAN,
        }
    }

    #[test]
    fn batch_and_step_must_agree() {
        assert!(at(0, 20, 20).check().is_ok());
        assert!(at(0, 30, 20).check().unwrap_err().contains("disagree"));
        assert!(at(0, 20, 30).check().is_err());
        assert!(at(2, 5, 7).check().is_ok());
        assert!(at(2, 5, 6).check().is_err());
    }

    #[test]
    fn the_checksum_covers_metadata_and_shapes() {
        let t = vec![("w".to_string(), vec![2, 2], vec![1f32, 2.0, 3.0, 4.0])];
        let m: HashMap<String, String> = [("position", "{\"batch\":20}"), ("seed", "1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let base = checksum(&t, &[], &m);
        let mut m2 = m.clone();
        m2.insert("position".into(), "{\"batch\":30}".into());
        assert_ne!(checksum(&t, &[], &m2), base);
        m2 = m.clone();
        m2.insert("checksum".into(), "anything".into());
        assert_eq!(
            checksum(&t, &[], &m2),
            base,
            "the checksum entry itself is not covered"
        );
        let t2 = vec![("w".to_string(), vec![4, 1], vec![1f32, 2.0, 3.0, 4.0])];
        assert_ne!(checksum(&t2, &[], &m), base);
    }

    /// A v3 checkpoint carries the encoding (dictionaries as U32 tensors, checksummed); a v2
    /// one (no scoring data) still loads, for resuming, with no encoding.
    #[test]
    fn the_encoding_round_trips_and_v2_still_loads() {
        let dir = std::env::temp_dir().join(format!("ttrec-ck-v3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ck.safetensors");
        let tensors = vec![("w".to_string(), vec![2], vec![1f32, 2.0])];
        let mut values = vec![vec![5u32, 0, 7]; NUM_SPARSE];
        values[3] = vec![];
        let encoding = Encoding {
            max_ind_range: Some(1000),
            categories: Categories::Dictionary(values),
        };
        let mut meta = CheckpointMeta {
            config: DlrmConfig::kaggle_dense(),
            position: Position {
                epoch: 0,
                batch: 2,
                step: 2,
                best_auc: 0.75,
            },
            batch_size: 8,
            ranks: 2,
            data: "test".into(),
            seed: 1,
            encoding: Some(encoding.clone()),
            tt_precision: Default::default(),
        };
        write(&path, &tensors, &meta).unwrap();
        let ck = load(&path).unwrap();
        assert_eq!(ck.meta.encoding, Some(encoding));
        assert_eq!((ck.meta.ranks, ck.meta.batch_size), (2, 8));
        assert_eq!(ck.tensors, tensors);

        // A flipped byte in a dictionary is caught by the checksum.
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 1; // the last value of dictionary.C9 (the F32 tensor "w" comes after)
        std::fs::write(&path, &bytes).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");

        // The same without scoring data, under v2's name and checksum.
        meta.encoding = None;
        write(&path, &tensors, &meta).unwrap();
        let (mut m, _) = read_safetensors(&path).unwrap();
        m.insert("format".into(), FORMAT_V2.into());
        let sum = checksum(&tensors, &[], &m);
        m.insert("checksum".into(), format!("{sum:016x}"));
        let bytes = crate::io::safetensors_bytes(&tensors, &m).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let ck = load(&path).unwrap();
        assert_eq!(ck.meta.encoding, None);
        assert_eq!(ck.meta.position.step, 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_first_non_finite_tensor_is_named() {
        let t = vec![
            ("a".to_string(), vec![2], vec![1f32, 2.0]),
            (
                "b".to_string(),
                vec![3],
                vec![1f32, f32::NAN, f32::INFINITY],
            ),
            ("c".to_string(), vec![1], vec![f32::NAN]),
        ];
        let s = first_non_finite(&t).unwrap();
        assert!(
            s.starts_with("b (2 of 3 values non-finite, the first NaN at 1)"),
            "{s}"
        );
        assert_eq!(first_non_finite(&t[..1]), None);
    }
}
