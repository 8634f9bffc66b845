//! Saving and loading TT tables as safetensors.
//!
//! **ttrec's own files** ([`save`], [`load`], [`TtEmbeddingBag::save`], [`TtEmbeddingBag::load`]):
//! tensors `tt_cores.K` (f32 `[p_k, R_k q_k R_{k+1}]`, the FBTT-Embedding module's parameter
//! names and per-table layout) and, for an Adagrad table, its accumulators as
//! `optimizer_state.optimizer_stateK` (same shape; the reference's buffer names), plus metadata
//! `format` ([`FORMAT`]), `num_embeddings`, `p_shapes`, `q_shapes`, `tt_ranks` (comma-separated,
//! interior ranks). Files of the previous format ([`FORMAT_V1`], cores only), parity fixtures
//! (`cores.K`) and files without a `format` key are read too; any other format is an error that
//! names it. Files are written atomically (temporary file, fsync, rename).
//!
//! **A reference state dict** ([`load_reference`], [`TtEmbeddingBag::load_reference`]): what
//! `safetensors.torch.save_file(module.state_dict(), path)` writes for FBTT-Embedding's
//! `TTEmbeddingBag` / `TableBatchedTTEmbeddingBag` (its `tt_embeddings_ops.py`), optionally under a
//! prefix such as `emb_l.0.` when the table sits in a model:
//! - `tt_cores.K`: f32 `[T, p_k, R_k q_k R_{k+1}]`, T tables of one shape (T = 1 for
//!   `TTEmbeddingBag`); a 2-D `[p_k, R_k q_k R_{k+1}]` is read as T = 1;
//! - `optimizer_state.optimizer_stateK`: the elementwise Adagrad accumulators, shaped as the cores,
//!   or `[0]` for SGD (no state);
//! - `L`: i64 `[d]`, the row-digit strides `prod_{l>k} p_l`, checked against the shape;
//! - the row cache's `hashtbl`, `cache_state`, `cache_freq`, `cache_weight`,
//!   `cache_optimizer_state`: not loaded. ttrec has no row cache, and the reference itself discards
//!   trained cache rows at its next `cache_populate()`; the rows ttrec serves are the cores' rows.
//!
//! A state dict does not say N, D or the ranks, so the caller gives the shape (for a table built
//! as `TTEmbeddingBag(N, D, tt_ranks)`, [`TtShape::auto`] gives the same p and q). Every tensor
//! under the prefix must be one of the above: a stray one (a wrong prefix, another module) is an
//! error naming it.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tt::options::{CorePrecision, Optimizer, TtOptions};
use crate::tt::table::TtEmbeddingBag;
use crate::tt_shape::TtShape;

/// The format name of the TT checkpoints this version writes (cores and optimizer state).
pub const FORMAT: &str = "ttrec-tt-cores-v2";
/// The previous format (cores only), still read.
pub const FORMAT_V1: &str = "ttrec-tt-cores-v1";
/// Parity fixtures (`cores.K`) can be read as checkpoints of their starting cores.
const FORMAT_PARITY: &str = "ttrec-parity-v1";

/// A tensor read from a safetensors file.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Tensor {
    /// Values as f32 (the tensor must be F32, or F16: TT cores stored as f16, widened exactly).
    pub fn f32s(&self, name: &str, path: &Path) -> Result<Vec<f32>> {
        match self.dtype {
            Dtype::F32 => Ok(bytemuck::pod_collect_to_vec(&self.data)),
            Dtype::F16 => Ok(self
                .data
                .chunks_exact(2)
                .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
                .collect()),
            d => Err(Error::file(
                path,
                format!("tensor {name} is {d:?}; F32 expected"),
            )),
        }
    }
    /// Values as i64 (I64 or I32 tensors).
    pub fn i64s(&self, name: &str, path: &Path) -> Result<Vec<i64>> {
        match self.dtype {
            Dtype::I64 => Ok(bytemuck::pod_collect_to_vec(&self.data)),
            Dtype::I32 => Ok(bytemuck::pod_collect_to_vec::<u8, i32>(&self.data)
                .into_iter()
                .map(i64::from)
                .collect()),
            d => Err(Error::file(
                path,
                format!("tensor {name} is {d:?}; I64 expected"),
            )),
        }
    }
}

/// Reads every tensor and the metadata of a safetensors file.
pub fn read_safetensors(path: &Path) -> Result<(HashMap<String, String>, HashMap<String, Tensor>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::file(path, format!("not a safetensors file: {e}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::file(path, format!("not a safetensors file: {e}")))?;
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                Tensor {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    data: view.data().to_vec(),
                },
            )
        })
        .collect();
    Ok((metadata, tensors))
}

/// Writes f32 tensors and metadata to `path` atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    // Byte-reproducible: the metadata sorted, not in the map's order.
    let bytes = crate::io::safetensors_bytes(tensors, &metadata)
        .map_err(|e| Error::file(path, format!("serialising: {e}")))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` atomically: the crate's one atomic write, [`crate::io::write_atomic`].
pub use crate::io::write_atomic;

fn join(v: &[usize]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a comma-separated list of positive integers from metadata key `key`.
pub fn parse_list(meta: &HashMap<String, String>, key: &str, path: &Path) -> Result<Vec<usize>> {
    let s = meta
        .get(key)
        .ok_or_else(|| Error::file(path, format!("metadata {key} is missing")))?;
    s.split(',')
        .map(|t| {
            t.trim().parse::<usize>().map_err(|_| {
                Error::file(
                    path,
                    format!("metadata {key} = {s:?} is not a list of integers"),
                )
            })
        })
        .collect()
}

/// The shape metadata of a checkpoint.
pub fn shape_metadata(shape: &TtShape) -> HashMap<String, String> {
    HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        (
            "num_embeddings".to_string(),
            shape.num_embeddings.to_string(),
        ),
        ("p_shapes".to_string(), join(&shape.p)),
        ("q_shapes".to_string(), join(&shape.q)),
        ("tt_ranks".to_string(), join(shape.interior_ranks())),
    ])
}

/// Reads the shape from checkpoint metadata.
pub fn shape_from_metadata(meta: &HashMap<String, String>, path: &Path) -> Result<TtShape> {
    let n: u64 = meta
        .get("num_embeddings")
        .ok_or_else(|| Error::file(path, "metadata num_embeddings is missing"))?
        .trim()
        .parse()
        .map_err(|_| Error::file(path, "metadata num_embeddings is not an integer"))?;
    let p = parse_list(meta, "p_shapes", path)?;
    let q = parse_list(meta, "q_shapes", path)?;
    let r = parse_list(meta, "tt_ranks", path)?;
    TtShape::new(n, &p, &q, &r).map_err(|e| Error::file(path, e.to_string()))
}

/// One TT table as a checkpoint holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct TtCheckpoint {
    pub shape: TtShape,
    /// Core k, row-major `[p_k, R_k q_k R_{k+1}]`.
    pub cores: Vec<Vec<f32>>,
    /// The Adagrad accumulators, laid out as the cores; None where the table keeps none (SGD, no
    /// optimizer) or the file predates them.
    pub adagrad_state: Option<Vec<Vec<f32>>>,
}

/// The tensor name of core `k`'s Adagrad accumulators (the reference's buffer name).
pub fn state_name(k: usize) -> String {
    format!("optimizer_state.optimizer_state{k}")
}

/// Saves a checkpoint to `path` atomically (format [`FORMAT`]).
pub fn save(path: &Path, ck: &TtCheckpoint) -> Result<()> {
    save_as(path, ck, CorePrecision::F32)
}

/// The metadata key of a table's core storage (written for f16 only: an f32 file is as before).
pub const PRECISION_KEY: &str = "tt_precision";

/// [`save`] of cores stored at `precision`: f16 cores as F16 tensors (exact: their values are
/// f16), with metadata [`PRECISION_KEY`] `f16`; the Adagrad state stays F32.
pub fn save_as(path: &Path, ck: &TtCheckpoint, precision: CorePrecision) -> Result<()> {
    let shape = &ck.shape;
    shape.check_cores(&ck.cores)?;
    let mut tensors: Vec<_> = (0..shape.d())
        .map(|k| {
            (
                format!("tt_cores.{k}"),
                shape.core_shape(k).to_vec(),
                ck.cores[k].clone(),
            )
        })
        .collect();
    if let Some(state) = &ck.adagrad_state {
        shape.check_cores(state).map_err(|e| {
            Error::input(None, format!("Adagrad state does not fit the cores: {e}"))
        })?;
        for (k, s) in state.iter().enumerate() {
            tensors.push((state_name(k), shape.core_shape(k).to_vec(), s.clone()));
        }
    }
    let mut meta = shape_metadata(shape);
    if precision == CorePrecision::F16 {
        meta.insert(PRECISION_KEY.to_string(), precision.name().to_string());
    }
    let f16 = |name: &str| precision == CorePrecision::F16 && name.starts_with("tt_cores.");
    let bytes = crate::io::safetensors_bytes_with_f16(&tensors, &f16, &[], &meta)
        .map_err(|e| Error::file(path, format!("serialising: {e}")))?;
    write_atomic(path, &bytes)
}

/// The core storage a checkpoint's metadata records: f16 where [`PRECISION_KEY`] says so, f32
/// otherwise (files without the key were all f32).
pub fn precision_from_metadata(
    meta: &HashMap<String, String>,
    path: &Path,
) -> Result<CorePrecision> {
    match meta.get(PRECISION_KEY) {
        None => Ok(CorePrecision::F32),
        Some(s) => CorePrecision::parse(s).ok_or_else(|| {
            Error::file(
                path,
                format!("metadata {PRECISION_KEY} = {s:?}: f32 or f16 expected"),
            )
        }),
    }
}

/// The core storage of the TT checkpoint at `path` (see [`precision_from_metadata`]).
pub fn load_precision(path: &Path) -> Result<CorePrecision> {
    let (meta, _) = read_safetensors(path)?;
    precision_from_metadata(&meta, path)
}

/// Saves `cores` of `shape` to `path` (no optimizer state).
pub fn save_cores(path: &Path, shape: &TtShape, cores: &[Vec<f32>]) -> Result<()> {
    save(
        path,
        &TtCheckpoint {
            shape: shape.clone(),
            cores: cores.to_vec(),
            adagrad_state: None,
        },
    )
}

/// Reads the f32 tensor `name` of `shape` `want`.
fn core_tensor(
    tensors: &HashMap<String, Tensor>,
    name: &str,
    want: &[usize],
    path: &Path,
) -> Result<Option<Vec<f32>>> {
    let Some(t) = tensors.get(name) else {
        return Ok(None);
    };
    if t.shape != want {
        return Err(Error::file(
            path,
            format!(
                "tensor {name} has shape {:?}; the metadata's shape needs {want:?}",
                t.shape
            ),
        ));
    }
    t.f32s(name, path).map(Some)
}

/// Loads a checkpoint written by [`save`] (or a [`FORMAT_V1`] file, a parity fixture's starting
/// cores, or a file in the same layout without a `format` key, as PyTorch users write them).
pub fn load(path: &Path) -> Result<TtCheckpoint> {
    let (meta, tensors) = read_safetensors(path)?;
    if let Some(f) = meta.get("format") {
        if ![FORMAT, FORMAT_V1, FORMAT_PARITY].contains(&f.as_str()) {
            return Err(Error::file(
                path,
                format!(
                    "format {f:?} is not a TT checkpoint this ttrec reads ({FORMAT}, {FORMAT_V1})"
                ),
            ));
        }
    }
    let shape = shape_from_metadata(&meta, path)?;
    let mut cores = Vec::new();
    for k in 0..shape.d() {
        let want = shape.core_shape(k);
        let core = match core_tensor(&tensors, &format!("tt_cores.{k}"), &want, path)? {
            Some(c) => c,
            None => core_tensor(&tensors, &format!("cores.{k}"), &want, path)?
                .ok_or_else(|| Error::file(path, format!("tensor tt_cores.{k} is missing")))?,
        };
        cores.push(core);
    }
    let state = (0..shape.d())
        .map(|k| core_tensor(&tensors, &state_name(k), &shape.core_shape(k), path))
        .collect::<Result<Vec<_>>>()?;
    let state = all_or_none(state, state_name, path)?;
    Ok(TtCheckpoint {
        shape,
        cores,
        adagrad_state: state,
    })
}

/// Every core's optimizer state or none: a file with some cores' state only is an error naming
/// the first missing tensor.
fn all_or_none(
    state: Vec<Option<Vec<f32>>>,
    name: impl Fn(usize) -> String,
    path: &Path,
) -> Result<Option<Vec<Vec<f32>>>> {
    match state.iter().position(Option::is_none) {
        None => Ok(Some(state.into_iter().flatten().collect())),
        Some(_) if state.iter().all(Option::is_none) => Ok(None),
        Some(k) => Err(Error::file(
            path,
            format!(
                "tensor {} is missing or empty while other cores have Adagrad state",
                name(k)
            ),
        )),
    }
}

/// Loads a shape and cores saved by [`save_cores`] or [`save`] (see [`load`]).
pub fn load_cores(path: &Path) -> Result<(TtShape, Vec<Vec<f32>>)> {
    let ck = load(path)?;
    Ok((ck.shape, ck.cores))
}

/// The tensors of a reference state dict besides cores and optimizer state: the row-digit
/// strides and the row cache (not loaded).
const REFERENCE_BUFFERS: [&str; 6] = [
    "L",
    "hashtbl",
    "cache_state",
    "cache_freq",
    "cache_weight",
    "cache_optimizer_state",
];

/// Where a table's tensors sit in a reference state dict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatePrefix<'a> {
    /// The file is the `TTEmbeddingBag` module's own state dict: `tt_cores.0`, ...
    Module,
    /// The table sits in a model under this prefix: `"emb_l.3."` for dlrm's table 3 holds
    /// `emb_l.3.tt_cores.0`, ...
    Under(&'a str),
}

impl StatePrefix<'_> {
    /// The text before each tensor name (empty for [`StatePrefix::Module`]).
    pub fn as_str(&self) -> &str {
        match self {
            StatePrefix::Module => "",
            StatePrefix::Under(p) => p,
        }
    }
}

/// A prefix as text (`""` is [`StatePrefix::Module`]).
impl<'a> From<&'a str> for StatePrefix<'a> {
    fn from(p: &'a str) -> Self {
        if p.is_empty() {
            StatePrefix::Module
        } else {
            StatePrefix::Under(p)
        }
    }
}

/// Loads the T tables of a reference (FBTT-Embedding) state dict saved as safetensors, whose
/// tensors are named `{prefix}tt_cores.K` etc. (see the module docs), all of `shape`. Errors name
/// the tensor and what is wrong: a missing core, a shape that is not `shape`'s, a dtype other than
/// f32, table counts that disagree, strides `L` that do not match p, a stray tensor.
pub fn load_reference<'a>(
    path: &Path,
    shape: &TtShape,
    prefix: impl Into<StatePrefix<'a>>,
) -> Result<Vec<TtCheckpoint>> {
    let prefix = prefix.into();
    let prefix = prefix.as_str();
    let (_, tensors) = read_safetensors(path)?;
    let d = shape.d();
    let known = |name: &str| -> bool {
        REFERENCE_BUFFERS.contains(&name)
            || (0..d).any(|k| name == format!("tt_cores.{k}") || name == state_name(k))
    };
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        if let Some(rest) = name.strip_prefix(prefix) {
            if !known(rest) {
                return Err(Error::file(
                    path,
                    format!(
                        "tensor {name} is not part of a {d}-core TT-EmbeddingBag state dict under prefix {prefix:?} (a table inside a model needs its prefix, e.g. \"emb_l.0.\")"
                    ),
                ));
            }
        }
    }
    // Cores: [T, p_k, cols] (or [p_k, cols] for one table).
    let mut tables: Option<usize> = None;
    let mut cores: Vec<Vec<f32>> = Vec::with_capacity(d);
    let read = |name: &str, k: usize, tables: &mut Option<usize>| -> Result<Vec<f32>> {
        let t = &tensors[name];
        let [p, cols] = shape.core_shape(k);
        let t_count = match t.shape.as_slice() {
            [tt, pp, cc] if *pp == p && *cc == cols => *tt,
            [pp, cc] if *pp == p && *cc == cols => 1,
            s => {
                return Err(Error::file(
                    path,
                    format!(
                        "tensor {name} has shape {s:?}; core {k} of {shape} is [T, {p}, {cols}]"
                    ),
                ))
            }
        };
        if t_count == 0 {
            return Err(Error::file(path, format!("tensor {name} holds 0 tables")));
        }
        match tables {
            Some(n) if *n != t_count => {
                return Err(Error::file(
                    path,
                    format!("tensor {name} holds {t_count} tables; the cores before it {n}"),
                ))
            }
            _ => *tables = Some(t_count),
        }
        t.f32s(name, path)
    };
    for k in 0..d {
        let name = format!("{prefix}tt_cores.{k}");
        if !tensors.contains_key(&name) {
            return Err(Error::file(path, format!("tensor {name} is missing")));
        }
        cores.push(read(&name, k, &mut tables)?);
    }
    let t_count = tables.expect("d >= 2 cores read");
    // Adagrad state: all cores' or none (SGD keeps empty [0] tensors).
    let mut state = Vec::with_capacity(d);
    for k in 0..d {
        let name = format!("{prefix}{}", state_name(k));
        state.push(match tensors.get(&name) {
            Some(t) if t.shape.iter().product::<usize>() > 0 => Some(read(&name, k, &mut tables)?),
            _ => None,
        });
    }
    let state = all_or_none(state, |k| format!("{prefix}{}", state_name(k)), path)?;
    // Row-digit strides.
    let l_name = format!("{prefix}L");
    if let Some(t) = tensors.get(&l_name) {
        let got = t.i64s(&l_name, path)?;
        let want: Vec<i64> = (0..d)
            .map(|k| shape.p[k + 1..].iter().map(|&v| v as i64).product())
            .collect();
        if got != want {
            return Err(Error::file(
                path,
                format!(
                    "tensor {l_name} = {got:?}; p = {:?} has strides {want:?}",
                    shape.p
                ),
            ));
        }
    }
    // Split the T tables.
    let split = |all: &[Vec<f32>]| -> Vec<Vec<Vec<f32>>> {
        (0..t_count)
            .map(|t| {
                (0..d)
                    .map(|k| {
                        let len = shape.core_len(k);
                        all[k][t * len..(t + 1) * len].to_vec()
                    })
                    .collect()
            })
            .collect()
    };
    let per_table_cores = split(&cores);
    let per_table_state = state.as_deref().map(split);
    Ok(per_table_cores
        .into_iter()
        .enumerate()
        .map(|(t, cores)| TtCheckpoint {
            shape: shape.clone(),
            cores,
            adagrad_state: per_table_state.as_ref().map(|s| s[t].clone()),
        })
        .collect())
}

impl TtEmbeddingBag {
    /// The table as a checkpoint holds it: shape, cores and (for Adagrad) the accumulators.
    pub fn checkpoint(&self) -> Result<TtCheckpoint> {
        Ok(TtCheckpoint {
            shape: self.shape().clone(),
            cores: self.cores()?,
            adagrad_state: self.optimizer_state()?,
        })
    }

    /// A table from a checkpoint. Its Adagrad accumulators are restored when `options` has an
    /// Adagrad optimizer (they start at 0 where the checkpoint has none); a table with another
    /// optimizer ignores them.
    pub fn from_checkpoint(gpu: &Gpu, ck: &TtCheckpoint, options: TtOptions) -> Result<Self> {
        let adagrad = matches!(options.optimizer, Optimizer::Adagrad { .. });
        let mut table = Self::from_cores(gpu, ck.shape.clone(), &ck.cores, options)?;
        if let (true, Some(state)) = (adagrad, &ck.adagrad_state) {
            table.params_mut().set_optimizer_state(state)?;
        }
        Ok(table)
    }

    /// Saves the cores and (for Adagrad) the optimizer state as safetensors (atomically); see the
    /// [module docs](self) for the layout. Cores stored as f16 are saved as F16 tensors.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save_as(
            path.as_ref(),
            &self.checkpoint()?,
            self.params().precision(),
        )
    }

    /// Loads a table saved by [`TtEmbeddingBag::save`] (or an older cores-only file, or one
    /// PyTorch wrote in the same layout); the Adagrad state as in
    /// [`TtEmbeddingBag::from_checkpoint`]. Loading then training gives bitwise what training on
    /// without the save would have.
    /// A file of f16 cores gives an f16 table whatever `options.precision` says (its values
    /// are f16); an f32 file is stored as `options.precision` asks.
    pub fn load(gpu: &Gpu, path: impl AsRef<Path>, mut options: TtOptions) -> Result<Self> {
        let path = path.as_ref();
        let ck = load(path)?;
        if load_precision(path)? == CorePrecision::F16 {
            options.precision = CorePrecision::F16;
        }
        Self::from_checkpoint(gpu, &ck, options).map_err(|e| Error::file(path, e.to_string()))
    }

    /// Loads a table from a reference (FBTT-Embedding) `TTEmbeddingBag` state dict saved as
    /// safetensors, its tensors under `prefix` ([`StatePrefix::Module`] for the module's own
    /// state dict, [`StatePrefix::Under`]`("emb_l.0.")` inside a model); see
    /// [`load_reference`]. The file must hold exactly one table.
    pub fn load_reference<'a>(
        gpu: &Gpu,
        path: impl AsRef<Path>,
        shape: &TtShape,
        prefix: impl Into<StatePrefix<'a>>,
        options: TtOptions,
    ) -> Result<Self> {
        let path = path.as_ref();
        let tables = load_reference(path, shape, prefix)?;
        if tables.len() != 1 {
            return Err(Error::file(
                path,
                format!(
                    "the state dict holds {} tables (a TableBatchedTTEmbeddingBag); load them with tt::checkpoint::load_reference",
                    tables.len()
                ),
            ));
        }
        Self::from_checkpoint(gpu, &tables[0], options)
            .map_err(|e| Error::file(path, e.to_string()))
    }
}
