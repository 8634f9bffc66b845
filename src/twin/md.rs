//! The CPU twin of dlrm's mixed-dimension tables (`nn::md`: the embedding group's pooling, the
//! transposition and the products of `matmul`), in f64: a table `[N, m]` pooled per bag (sum),
//! then projected to D by W `[D, m]` without bias.

use super::nn;

/// (pooled `[B, m]`, projected `[B, D]`) of the bags (`indices`, `offsets`).
pub fn forward(
    rows: &[f64],
    proj: &[f64],
    dim: usize,
    indices: &[u64],
    offsets: &[u64],
) -> (Vec<f64>, Vec<f64>) {
    let pooled = nn::bag_forward(rows, dim, indices, offsets);
    let out_dim = proj.len() / dim;
    let out = nn::linear_forward(&pooled, proj, &vec![0.0; out_dim], dim, false);
    (pooled, out)
}

/// (rows' gradient `[N, m]`, projection's gradient `[D, m]`) from `dout` `[B, D]`, with the
/// forward's `pooled`: dW = dout^T pooled, d(pooled) = dout W, then each bag's rows get its
/// pooled gradient.
pub fn backward(
    num_rows: usize,
    proj: &[f64],
    dim: usize,
    indices: &[u64],
    offsets: &[u64],
    pooled: &[f64],
    dout: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let (dpooled, dw, _) = nn::linear_backward(pooled, proj, dout, dout, dim, false);
    (
        nn::bag_backward(num_rows, dim, indices, offsets, &dpooled),
        dw,
    )
}
