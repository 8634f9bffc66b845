//! Saving and loading TT cores as safetensors in the reference layout: tensors `tt_cores.K`
//! (f32 `[p_k, R_k q_k R_{k+1}]`, the FBTT-Embedding module's parameter names) plus metadata
//! `num_embeddings`, `p_shapes`, `q_shapes`, `tt_ranks` (comma-separated, interior ranks).
//! Files are written atomically (temporary file, fsync, rename).

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::tt::TtShape;

/// A tensor read from a safetensors file.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Tensor {
    /// Values as f32 (the tensor must be F32).
    pub fn f32s(&self, name: &str, path: &Path) -> Result<Vec<f32>> {
        if self.dtype != Dtype::F32 {
            return Err(Error::file(
                path,
                format!("tensor {name} is {:?}; F32 expected", self.dtype),
            ));
        }
        Ok(bytemuck::pod_collect_to_vec(&self.data))
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
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view = safetensors::tensor::TensorView::new(
                Dtype::F32,
                shape.clone(),
                bytemuck::cast_slice(data),
            )
            .map_err(|e| Error::file(path, format!("tensor {name}: {e}")))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, Some(metadata))
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
        ("format".to_string(), "ttrec-tt-cores-v1".to_string()),
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

/// Saves `cores` of `shape` to `path`.
pub fn save_cores(path: &Path, shape: &TtShape, cores: &[Vec<f32>]) -> Result<()> {
    shape.check_cores(cores)?;
    let tensors: Vec<_> = (0..shape.d())
        .map(|k| {
            (
                format!("tt_cores.{k}"),
                shape.core_shape(k).to_vec(),
                cores[k].clone(),
            )
        })
        .collect();
    write_safetensors(path, &tensors, shape_metadata(shape))
}

/// Loads a shape and cores saved by [`save_cores`] (or by PyTorch with the same names; `cores.K`
/// as in parity fixtures is accepted too).
pub fn load_cores(path: &Path) -> Result<(TtShape, Vec<Vec<f32>>)> {
    let (meta, tensors) = read_safetensors(path)?;
    let shape = shape_from_metadata(&meta, path)?;
    let mut cores = Vec::new();
    for k in 0..shape.d() {
        let t = tensors
            .get(&format!("tt_cores.{k}"))
            .map(|t| (format!("tt_cores.{k}"), t))
            .or_else(|| {
                tensors
                    .get(&format!("cores.{k}"))
                    .map(|t| (format!("cores.{k}"), t))
            })
            .ok_or_else(|| Error::file(path, format!("tensor tt_cores.{k} is missing")))?;
        let want = shape.core_shape(k);
        if t.1.shape != want {
            return Err(Error::file(
                path,
                format!(
                    "tensor {} has shape {:?}; the metadata's shape needs {want:?}",
                    t.0, t.1.shape
                ),
            ));
        }
        cores.push(t.1.f32s(&t.0, path)?);
    }
    Ok((shape, cores))
}
