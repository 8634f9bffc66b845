//! Twin of `shaders/qr.wgsl` with the dense-table pooling around it: dlrm's quotient-remainder
//! embedding (`QREmbeddingBag`, mode sum) forward and its gradients, in f64, from the math.

use super::nn::{bag_backward, bag_forward};

/// How the two pooled parts combine (dlrm's `--qr-operation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QrOperation {
    Mult,
    Add,
    Concat,
}

/// A QR table's parameters: the quotient table `[ceil(rows / c), part]`, the remainder table
/// `[c, part]`.
#[derive(Clone, Copy, Debug)]
pub struct QrWeights<'a> {
    pub q: &'a [f64],
    pub r: &'a [f64],
    pub part: usize,
    pub collisions: u64,
    pub operation: QrOperation,
}

/// What the forward keeps for the backward: both pooled parts `[B, part]`.
#[derive(Clone, Debug)]
pub struct QrPooled {
    pub q: Vec<f64>,
    pub r: Vec<f64>,
}

fn split_ids(indices: &[u64], c: u64) -> (Vec<u64>, Vec<u64>) {
    (
        indices.iter().map(|i| i / c).collect(),
        indices.iter().map(|i| i % c).collect(),
    )
}

/// The pooled, combined vectors `[B, D]` (D = part, or 2 part for concat) and the parts.
pub fn forward(w: &QrWeights, indices: &[u64], offsets: &[u64]) -> (Vec<f64>, QrPooled) {
    let (iq, ir) = split_ids(indices, w.collisions);
    let q = bag_forward(w.q, w.part, &iq, offsets);
    let r = bag_forward(w.r, w.part, &ir, offsets);
    let out = match w.operation {
        QrOperation::Mult => q.iter().zip(&r).map(|(a, b)| a * b).collect(),
        QrOperation::Add => q.iter().zip(&r).map(|(a, b)| a + b).collect(),
        QrOperation::Concat => q
            .chunks(w.part)
            .zip(r.chunks(w.part))
            .flat_map(|(a, b)| a.iter().chain(b).copied())
            .collect(),
    };
    (out, QrPooled { q, r })
}

/// The gradients of sum(dout * forward) w.r.t. the quotient and remainder tables (dense).
pub fn backward(
    w: &QrWeights,
    indices: &[u64],
    offsets: &[u64],
    pooled: &QrPooled,
    dout: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let p = w.part;
    let (dq, dr): (Vec<f64>, Vec<f64>) = match w.operation {
        QrOperation::Mult => (
            dout.iter().zip(&pooled.r).map(|(g, r)| g * r).collect(),
            dout.iter().zip(&pooled.q).map(|(g, q)| g * q).collect(),
        ),
        QrOperation::Add => (dout.to_vec(), dout.to_vec()),
        QrOperation::Concat => (
            dout.chunks(2 * p).flat_map(|c| c[..p].to_vec()).collect(),
            dout.chunks(2 * p).flat_map(|c| c[p..].to_vec()).collect(),
        ),
    };
    let (iq, ir) = split_ids(indices, w.collisions);
    (
        bag_backward(w.q.len() / p, p, &iq, offsets, &dq),
        bag_backward(w.r.len() / p, p, &ir, offsets, &dr),
    )
}
