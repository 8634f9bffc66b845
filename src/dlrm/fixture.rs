//! DLRM parity fixtures (`ttrec-dlrm-v1`, made by `tools/dlrm/gen_fixtures.py` in PyTorch
//! float64): a model's configuration and parameters, one batch, and the expected loss,
//! probabilities, intermediate values, every gradient and every parameter after one SGD step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::dlrm::config::{parse_widths, DlrmConfig, TableConfig, TableKind};
use crate::error::{Error, Result};
use crate::tt::checkpoint::read_safetensors;
use crate::tt::TtInit;

/// The format name in a fixture's metadata.
pub const FORMAT: &str = "ttrec-dlrm-v1";

/// A parsed DLRM fixture.
#[derive(Clone, Debug)]
pub struct DlrmFixture {
    pub path: PathBuf,
    pub name: String,
    pub source: String,
    pub config: DlrmConfig,
    /// Parameters in file order of names (sorted).
    pub params: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub dense: Vec<f32>,
    pub sparse: Vec<u32>,
    pub labels: Vec<f32>,
    /// `expected.*` tensors by name: (shape, values).
    pub expected: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn list(s: &str, key: &str, path: &Path) -> Result<Vec<usize>> {
    s.split(',')
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| Error::file(path, format!("metadata {key}: {v:?} is not an integer")))
        })
        .collect()
}

impl DlrmFixture {
    /// Reads and checks a fixture; an unknown tensor is an error.
    pub fn read(path: &Path) -> Result<Self> {
        let (meta, tensors) = read_safetensors(path)?;
        let get = |k: &str| -> Result<&str> {
            meta.get(k)
                .map(|s| s.as_str())
                .ok_or_else(|| Error::file(path, format!("metadata {k} is missing")))
        };
        if get("format")? != FORMAT {
            return Err(Error::file(
                path,
                format!("format {:?}; {FORMAT} expected", get("format")?),
            ));
        }
        let bottom = parse_widths(get("arch_mlp_bot")?)?;
        let top_full = parse_widths(get("arch_mlp_top")?)?;
        let sizes = list(get("table_sizes")?, "table_sizes", path)?;
        let kinds: Vec<&str> = get("tables")?.split(',').map(str::trim).collect();
        if kinds.len() != sizes.len() {
            return Err(Error::file(
                path,
                format!(
                    "{} table kinds for {} table sizes",
                    kinds.len(),
                    sizes.len()
                ),
            ));
        }
        let tt_specs: Vec<&str> = get("tt_shapes")?
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let mut next_tt = tt_specs.iter();
        let mut tables = Vec::new();
        for (t, (&rows, kind)) in sizes.iter().zip(&kinds).enumerate() {
            let kind = match *kind {
                "dense" => TableKind::Dense,
                "tt" => {
                    let spec = next_tt.next().ok_or_else(|| {
                        Error::file(
                            path,
                            format!("table {t} is tt but tt_shapes has no entry for it"),
                        )
                    })?;
                    let parts: Vec<&str> = spec.split('/').collect();
                    if parts.len() != 3 {
                        return Err(Error::file(
                            path,
                            format!("tt_shapes entry {spec:?} is not p/q/ranks"),
                        ));
                    }
                    TableKind::Tt {
                        p: list(parts[0], "tt_shapes", path)?,
                        q: list(parts[1], "tt_shapes", path)?,
                        ranks: list(parts[2], "tt_shapes", path)?,
                    }
                }
                other => {
                    return Err(Error::file(
                        path,
                        format!("table {t} has kind {other:?}; dense or tt expected"),
                    ))
                }
            };
            tables.push(TableConfig {
                rows: rows as u64,
                kind,
            });
        }
        let lr: f32 = get("learning_rate")?
            .parse()
            .map_err(|_| Error::file(path, "metadata learning_rate is not a number"))?;
        let config = DlrmConfig {
            bottom_mlp: bottom,
            top_mlp: top_full.get(1..).unwrap_or_default().to_vec(),
            tables,
            learning_rate: lr,
            tt_init: TtInit::SampledGaussian,
            seed: 0,
        };
        config
            .validate()
            .map_err(|e| Error::file(path, e.to_string()))?;
        if top_full.first() != Some(&config.interaction_width()) {
            return Err(Error::file(
                path,
                format!(
                    "arch_mlp_top starts with {:?}; the interaction gives {}",
                    top_full.first(),
                    config.interaction_width()
                ),
            ));
        }
        let mut params = Vec::new();
        let mut expected = HashMap::new();
        let (mut dense, mut sparse, mut labels) = (None, None, None);
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        for name in names {
            let t = &tensors[name];
            match name.as_str() {
                "batch.dense" => dense = Some(t.f32s(name, path)?),
                "batch.labels" => labels = Some(t.f32s(name, path)?),
                "batch.sparse" => {
                    let v = t.i64s(name, path)?;
                    if let Some(i) = v.iter().position(|&x| !(0..=u32::MAX as i64).contains(&x)) {
                        return Err(Error::file(
                            path,
                            format!("batch.sparse[{i}] = {} is not an id", v[i]),
                        ));
                    }
                    sparse = Some(v.into_iter().map(|x| x as u32).collect());
                }
                n if n.starts_with("expected.") => {
                    expected.insert(n.to_string(), (t.shape.clone(), t.f32s(name, path)?));
                }
                n if n.starts_with("bot_l.")
                    || n.starts_with("top_l.")
                    || n.starts_with("emb_l.") =>
                {
                    params.push((n.to_string(), t.shape.clone(), t.f32s(name, path)?));
                }
                n => return Err(Error::file(path, format!("unknown tensor {n}"))),
            }
        }
        let missing = |what: &str| Error::file(path, format!("tensor {what} is missing"));
        Ok(DlrmFixture {
            path: path.to_path_buf(),
            name: meta.get("name").cloned().unwrap_or_default(),
            source: meta.get("source").cloned().unwrap_or_default(),
            config,
            params,
            dense: dense.ok_or_else(|| missing("batch.dense"))?,
            sparse: sparse.ok_or_else(|| missing("batch.sparse"))?,
            labels: labels.ok_or_else(|| missing("batch.labels"))?,
            expected,
        })
    }

    /// An expected tensor's values.
    pub fn expected(&self, name: &str) -> Result<&[f32]> {
        self.expected
            .get(name)
            .map(|(_, v)| v.as_slice())
            .ok_or_else(|| Error::file(&self.path, format!("tensor {name} is missing")))
    }
}
