//! The CPU twin of a whole DLRM training step, in f64, composed from the kernels' twins
//! ([`super::nn`], [`super::tt`]): the oracle the GPU step is tested against, and itself tested
//! against PyTorch's fixtures. It takes the model as plain shapes ([`TwinModel`]) rather than
//! `dlrm::DlrmConfig`, so the twins stay below the model they check.

use std::collections::HashMap;

use super::{md, nn, qr, tt};
use crate::error::{Error, Result};
use crate::tt_shape::{Pooling, TtShape};

/// The model a twin step runs: dlrm's shapes, nothing of the GPU model.
#[derive(Clone, Debug)]
pub struct TwinModel {
    /// Bottom MLP widths, the dense features first (every layer with ReLU).
    pub bottom_mlp: Vec<usize>,
    /// Top MLP widths, the interaction's width first (ReLU after every layer but the last).
    pub top_mlp: Vec<usize>,
    /// Embedding dimension D.
    pub dim: usize,
    /// The embedding tables, in order.
    pub tables: Vec<TwinTable>,
    /// The SGD step's learning rate.
    pub learning_rate: f32,
}

/// One embedding table of a [`TwinModel`].
#[derive(Clone, Debug)]
pub enum TwinTable {
    /// A dense `[rows, D]` table, parameter `emb_l.{t}.weight`.
    Dense { rows: u64 },
    /// A TT table, parameters `emb_l.{t}.tt_cores.{k}`.
    Tt(TtShape),
    /// dlrm's quotient-remainder table of `rows` ids, parameters `emb_l.{t}.weight_q`
    /// `[ceil(rows / collisions), part]` and `emb_l.{t}.weight_r` `[collisions, part]` (part:
    /// D, or D / 2 for concat).
    Qr {
        rows: u64,
        collisions: u64,
        operation: qr::QrOperation,
    },
    /// A mixed-dimension table: `emb_l.{t}.embs.weight` `[rows, dim]` projected by
    /// `emb_l.{t}.proj.weight` `[D, dim]`.
    Md { rows: u64, dim: usize },
}

/// A QR table's parameters in f64 (owned; [`QrOwned::weights`] lends them to the twin).
struct QrOwned {
    q: Vec<f64>,
    r: Vec<f64>,
    part: usize,
    collisions: u64,
    operation: qr::QrOperation,
}

impl QrOwned {
    fn weights(&self) -> qr::QrWeights<'_> {
        qr::QrWeights {
            q: &self.q,
            r: &self.r,
            part: self.part,
            collisions: self.collisions,
            operation: self.operation,
        }
    }
}

/// Table `t`'s QR parameters from `params`, when it is a QR table.
fn qr_weights(
    model: &TwinModel,
    params: &HashMap<String, Vec<f32>>,
    t: usize,
) -> Result<Option<QrOwned>> {
    let TwinTable::Qr {
        collisions,
        operation,
        ..
    } = &model.tables[t]
    else {
        return Ok(None);
    };
    let get = |name: String| -> Result<Vec<f64>> {
        params
            .get(&name)
            .map(|v| f64s(v))
            .ok_or_else(|| Error::input(None, format!("the twin has no parameter {name}")))
    };
    let part = match operation {
        qr::QrOperation::Concat => model.dim / 2,
        _ => model.dim,
    };
    Ok(Some(QrOwned {
        q: get(format!("emb_l.{t}.weight_q"))?,
        r: get(format!("emb_l.{t}.weight_r"))?,
        part,
        collisions: *collisions,
        operation: *operation,
    }))
}

/// Everything one step computes.
#[derive(Clone, Debug)]
pub struct TwinStep {
    pub loss: f64,
    pub correct: usize,
    /// `[B]`
    pub probabilities: Vec<f64>,
    /// `[B, D]`
    pub bottom_out: Vec<f64>,
    /// `[B, D + F(F-1)/2]`
    pub interaction: Vec<f64>,
    /// Dense gradient of the mean loss w.r.t. every parameter, by name.
    pub grads: HashMap<String, Vec<f64>>,
    /// Every parameter after one SGD step, by name.
    pub updated: HashMap<String, Vec<f64>>,
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// One SGD step of `model` with parameters `params` (dlrm's names, logical layouts) on a batch
/// (`dense` `[B, features]`, `sparse` `[B, tables]`, `labels` `[B]`).
pub fn step(
    model: &TwinModel,
    params: &HashMap<String, Vec<f32>>,
    dense: &[f32],
    sparse: &[u32],
    labels: &[f32],
) -> Result<TwinStep> {
    let get = |name: &str| -> Result<&Vec<f32>> {
        params
            .get(name)
            .ok_or_else(|| Error::input(None, format!("the twin has no parameter {name}")))
    };
    let b = labels.len();
    let d = model.dim;
    let tables = model.tables.len();
    let f = 1 + tables;
    // Bottom MLP, every layer with ReLU.
    let bottom = &model.bottom_mlp;
    let mut bot_acts = vec![f64s(dense)];
    for i in 0..bottom.len() - 1 {
        let w = f64s(get(&format!("bot_l.{}.weight", 2 * i))?);
        let bias = f64s(get(&format!("bot_l.{}.bias", 2 * i))?);
        let y = nn::linear_forward(&bot_acts[i], &w, &bias, bottom[i], true);
        bot_acts.push(y);
    }
    let x = bot_acts.last().expect("layers").clone();
    // Embeddings: every bag is one lookup.
    let offsets: Vec<u64> = (0..=b as u64).collect();
    let ids = |t: usize| -> Vec<u64> { (0..b).map(|s| sparse[s * tables + t] as u64).collect() };
    let mut emb = Vec::with_capacity(tables);
    let mut qr_pooled = HashMap::new();
    // Each MD table's pooled rows, for its backward.
    let mut md_pooled: HashMap<usize, Vec<f64>> = HashMap::new();
    for t in 0..tables {
        let idx = ids(t);
        emb.push(match &model.tables[t] {
            TwinTable::Qr { .. } => {
                let w = qr_weights(model, params, t)?.expect("a QR table");
                let (out, pooled) = qr::forward(&w.weights(), &idx, &offsets);
                qr_pooled.insert(t, pooled);
                out
            }
            TwinTable::Dense { .. } => {
                nn::bag_forward(&f64s(get(&format!("emb_l.{t}.weight"))?), d, &idx, &offsets)
            }
            TwinTable::Tt(shape) => {
                let cores: Vec<Vec<f32>> = (0..shape.d())
                    .map(|k| get(&format!("emb_l.{t}.tt_cores.{k}")).cloned())
                    .collect::<Result<_>>()?;
                tt::forward(shape, &cores, &idx, &offsets, None, Pooling::Sum)
            }
            TwinTable::Md { dim, .. } => {
                let rows = f64s(get(&format!("emb_l.{t}.embs.weight"))?);
                let proj = f64s(get(&format!("emb_l.{t}.proj.weight"))?);
                let (pooled, out) = md::forward(&rows, &proj, *dim, &idx, &offsets);
                md_pooled.insert(t, pooled);
                out
            }
        });
    }
    let mut tmat = vec![0.0; b * f * d];
    for s in 0..b {
        tmat[s * f * d..s * f * d + d].copy_from_slice(&x[s * d..(s + 1) * d]);
        for (t, e) in emb.iter().enumerate() {
            tmat[(s * f + t + 1) * d..(s * f + t + 2) * d].copy_from_slice(&e[s * d..(s + 1) * d]);
        }
    }
    let r = nn::interaction_forward(&tmat, f, d);
    // Top MLP, ReLU after every layer but the last.
    let top = &model.top_mlp;
    let nl = top.len() - 1;
    let mut top_acts = vec![r.clone()];
    for i in 0..nl {
        let w = f64s(get(&format!("top_l.{}.weight", 2 * i))?);
        let bias = f64s(get(&format!("top_l.{}.bias", 2 * i))?);
        let y = nn::linear_forward(&top_acts[i], &w, &bias, top[i], i + 1 < nl);
        top_acts.push(y);
    }
    let z = top_acts.last().expect("layers").clone();
    let (loss, dz, correct) = nn::bce(&z, &f64s(labels));
    let mut grads = HashMap::new();
    // Top backward.
    let mut g = dz;
    for i in (0..nl).rev() {
        let w = f64s(get(&format!("top_l.{}.weight", 2 * i))?);
        let (dx, dw, db) =
            nn::linear_backward(&top_acts[i], &w, &top_acts[i + 1], &g, top[i], i + 1 < nl);
        grads.insert(format!("top_l.{}.weight", 2 * i), dw);
        grads.insert(format!("top_l.{}.bias", 2 * i), db);
        g = dx;
    }
    let dt = nn::interaction_backward(&tmat, &g, f, d);
    // Bottom backward from dT[:, 0].
    let mut g: Vec<f64> = (0..b)
        .flat_map(|s| dt[s * f * d..s * f * d + d].to_vec())
        .collect();
    for i in (0..bottom.len() - 1).rev() {
        let w = f64s(get(&format!("bot_l.{}.weight", 2 * i))?);
        let (dx, dw, db) =
            nn::linear_backward(&bot_acts[i], &w, &bot_acts[i + 1], &g, bottom[i], true);
        grads.insert(format!("bot_l.{}.weight", 2 * i), dw);
        grads.insert(format!("bot_l.{}.bias", 2 * i), db);
        g = dx;
    }
    // Tables from dT[:, t + 1].
    for t in 0..tables {
        let idx = ids(t);
        let de: Vec<f64> = (0..b)
            .flat_map(|s| dt[(s * f + t + 1) * d..(s * f + t + 2) * d].to_vec())
            .collect();
        match &model.tables[t] {
            TwinTable::Qr { .. } => {
                let w = qr_weights(model, params, t)?.expect("a QR table");
                let (gq, gr) = qr::backward(&w.weights(), &idx, &offsets, &qr_pooled[&t], &de);
                grads.insert(format!("emb_l.{t}.weight_q"), gq);
                grads.insert(format!("emb_l.{t}.weight_r"), gr);
            }
            TwinTable::Dense { rows } => {
                let rows = *rows as usize;
                grads.insert(
                    format!("emb_l.{t}.weight"),
                    nn::bag_backward(rows, d, &idx, &offsets, &de),
                );
            }
            TwinTable::Tt(shape) => {
                let cores: Vec<Vec<f32>> = (0..shape.d())
                    .map(|k| get(&format!("emb_l.{t}.tt_cores.{k}")).cloned())
                    .collect::<Result<_>>()?;
                let gk = tt::backward_f64(shape, &cores, &idx, &offsets, None, Pooling::Sum, &de);
                for (k, gk) in gk.into_iter().enumerate() {
                    grads.insert(format!("emb_l.{t}.tt_cores.{k}"), gk);
                }
            }
            TwinTable::Md { rows, dim } => {
                let proj = f64s(get(&format!("emb_l.{t}.proj.weight"))?);
                let (g_rows, g_proj) = md::backward(
                    *rows as usize,
                    &proj,
                    *dim,
                    &idx,
                    &offsets,
                    &md_pooled[&t],
                    &de,
                );
                grads.insert(format!("emb_l.{t}.embs.weight"), g_rows);
                grads.insert(format!("emb_l.{t}.proj.weight"), g_proj);
            }
        }
    }
    let lr = model.learning_rate as f64;
    let mut updated = HashMap::new();
    for (name, gr) in &grads {
        updated.insert(name.clone(), nn::sgd(&f64s(get(name)?), gr, lr));
    }
    Ok(TwinStep {
        loss,
        correct,
        probabilities: z.iter().map(|&v| nn::sigmoid(v)).collect(),
        bottom_out: x,
        interaction: r,
        grads,
        updated,
    })
}
