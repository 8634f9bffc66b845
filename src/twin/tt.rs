//! CPU twin of the TT-EmbeddingBag kernels (shaders/tt.wgsl), in f64.
//!
//! Written straight from the math of `spec/tt-rec.md`, not as the GPU's optimized chain:
//! `W[i, j] = sum over r_1..r_{d-1} of prod_k G_k[i_k](r_k, j_k, r_{k+1})` with `r_0 = r_d = 0`,
//! where `G_k[i_k]` is the row-major `[R_k, q_k, R_{k+1}]` block stored at row `i_k` of core k
//! (storage `[p_k, R_k q_k R_{k+1}]`). Row digits and column digits are C order (digit 0 most
//! significant). The functions assume valid input (the GPU path validates) and cost
//! O(lookups * D * prod(R) * d), independent of N (except [`full_weight`]).

use std::collections::BTreeMap;

use crate::tt_shape::{Pooling, TtShape};

/// Column digits of `j` (q_0's digit most significant).
fn col_digits(shape: &TtShape, j: usize) -> Vec<usize> {
    let d = shape.d();
    let mut out = vec![0; d];
    let mut rest = j;
    for k in (0..d).rev() {
        out[k] = rest % shape.q[k];
        rest /= shape.q[k];
    }
    out
}

/// Offset of `G_k[i_k](a, j_k, b)` in core k's storage.
fn core_pos(shape: &TtShape, k: usize, ik: usize, a: usize, jk: usize, b: usize) -> usize {
    ik * shape.core_cols(k) + (a * shape.q[k] + jk) * shape.ranks[k + 1] + b
}

/// Calls `f(r)` for every rank tuple `r = (r_0 = 0, r_1, ..., r_{d-1}, r_d = 0)`.
fn for_each_rank_tuple(shape: &TtShape, mut f: impl FnMut(&[usize])) {
    let d = shape.d();
    let mut r = vec![0usize; d + 1];
    loop {
        f(&r);
        // Odometer over the interior ranks r_1..r_{d-1}.
        let mut k = d - 1;
        loop {
            if k == 0 {
                return;
            }
            r[k] += 1;
            if r[k] < shape.ranks[k] {
                break;
            }
            r[k] = 0;
            k -= 1;
        }
    }
}

/// Row `index` of the full matrix, D values.
pub fn tt_row(shape: &TtShape, cores: &[Vec<f32>], index: u64) -> Vec<f64> {
    let d = shape.d();
    let digits = shape.digits(index);
    let mut row = vec![0.0f64; shape.dim()];
    for (j, out) in row.iter_mut().enumerate() {
        let jd = col_digits(shape, j);
        let mut acc = 0.0f64;
        for_each_rank_tuple(shape, |r| {
            let mut prod = 1.0f64;
            for k in 0..d {
                prod *= cores[k][core_pos(shape, k, digits[k], r[k], jd[k], r[k + 1])] as f64;
            }
            acc += prod;
        });
        *out = acc;
    }
    row
}

/// Full N x D matrix (row-major), for small tables.
pub fn full_weight(shape: &TtShape, cores: &[Vec<f32>]) -> Vec<f64> {
    let mut out = Vec::with_capacity(shape.num_embeddings as usize * shape.dim());
    for i in 0..shape.num_embeddings {
        out.extend(tt_row(shape, cores, i));
    }
    out
}

/// Coefficient of lookup `n` of bag `b` in the pooled output: `w_n` (sum) or `1/len` (mean).
fn lookup_scale(
    offsets: &[u64],
    b: usize,
    n: usize,
    weights: Option<&[f32]>,
    pooling: Pooling,
) -> f64 {
    match pooling {
        Pooling::Sum => weights.map_or(1.0, |w| w[n] as f64),
        Pooling::Mean => {
            assert!(
                weights.is_none(),
                "per-sample weights are only allowed with sum pooling"
            );
            1.0 / (offsets[b + 1] - offsets[b]) as f64
        }
    }
}

/// Pooled forward: offsets has B+1 entries (`offsets[0] = 0`, `offsets[B] = indices.len()`);
/// weights only with Sum; mean of empty bag = 0. Returns `[B*D]`.
pub fn forward(
    shape: &TtShape,
    cores: &[Vec<f32>],
    indices: &[u64],
    offsets: &[u64],
    weights: Option<&[f32]>,
    pooling: Pooling,
) -> Vec<f64> {
    let dim = shape.dim();
    let bags = offsets.len() - 1;
    let mut out = vec![0.0f64; bags * dim];
    for b in 0..bags {
        let (start, end) = (offsets[b] as usize, offsets[b + 1] as usize);
        for (n, &index) in (start..end).zip(&indices[start..end]) {
            let s = lookup_scale(offsets, b, n, weights, pooling);
            let row = tt_row(shape, cores, index);
            for (o, v) in out[b * dim..(b + 1) * dim].iter_mut().zip(&row) {
                *o += s * v;
            }
        }
    }
    out
}

/// Dense gradient of sum(grad_output * forward(...)) w.r.t. every core; returns one Vec per core
/// with core k's storage layout [p_k, R_k q_k R_{k+1}].
///
/// dW[i, j] = sum over lookups n of index i of scale_n * grad_output[bag(n), j]; then
/// `dG_k[i_k](r_k, j_k, r_{k+1}) += dW[i, j] * prod_{l != k} G_l[i_l](r_l, j_l, r_{l+1})` for every
/// rank tuple and column j.
pub fn backward(
    shape: &TtShape,
    cores: &[Vec<f32>],
    indices: &[u64],
    offsets: &[u64],
    weights: Option<&[f32]>,
    pooling: Pooling,
    grad_output: &[f32],
) -> Vec<Vec<f64>> {
    let grad_output: Vec<f64> = grad_output.iter().map(|&x| x as f64).collect();
    backward_f64(
        shape,
        cores,
        indices,
        offsets,
        weights,
        pooling,
        &grad_output,
    )
}

/// [`backward`] with an f64 output gradient (a model's twin keeps every value in f64).
pub fn backward_f64(
    shape: &TtShape,
    cores: &[Vec<f32>],
    indices: &[u64],
    offsets: &[u64],
    weights: Option<&[f32]>,
    pooling: Pooling,
    grad_output: &[f64],
) -> Vec<Vec<f64>> {
    let d = shape.d();
    let dim = shape.dim();
    let bags = offsets.len() - 1;
    // Gradient w.r.t. the rows of W that are looked up (duplicates summed).
    let mut dw: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for b in 0..bags {
        let (start, end) = (offsets[b] as usize, offsets[b + 1] as usize);
        for (n, &index) in (start..end).zip(&indices[start..end]) {
            let s = lookup_scale(offsets, b, n, weights, pooling);
            let g = dw.entry(index).or_insert_with(|| vec![0.0; dim]);
            for (gj, &go) in g.iter_mut().zip(&grad_output[b * dim..(b + 1) * dim]) {
                *gj += s * go;
            }
        }
    }
    let mut grads: Vec<Vec<f64>> = (0..d).map(|k| vec![0.0; shape.core_len(k)]).collect();
    let mut factors = vec![0.0f64; d];
    for (&index, g) in &dw {
        let digits = shape.digits(index);
        for (j, &gj) in g.iter().enumerate() {
            let jd = col_digits(shape, j);
            for_each_rank_tuple(shape, |r| {
                for k in 0..d {
                    factors[k] =
                        cores[k][core_pos(shape, k, digits[k], r[k], jd[k], r[k + 1])] as f64;
                }
                for k in 0..d {
                    let others: f64 = (0..d).filter(|&l| l != k).map(|l| factors[l]).product();
                    grads[k][core_pos(shape, k, digits[k], r[k], jd[k], r[k + 1])] += gj * others;
                }
            });
        }
    }
    grads
}

/// SGD: w - lr*g (f32 result, computed in f64 then rounded).
pub fn sgd_update(cores: &[Vec<f32>], grads: &[Vec<f64>], lr: f64) -> Vec<Vec<f32>> {
    cores
        .iter()
        .zip(grads)
        .map(|(c, g)| {
            c.iter()
                .zip(g)
                .map(|(&w, &g)| (w as f64 - lr * g) as f32)
                .collect()
        })
        .collect()
}

/// Adagrad: s' = s + g^2; w' = w - lr*g/(sqrt(s')+eps). Returns (updated cores, new state).
/// Computed in f64 (s' unrounded in the update), both results rounded to f32.
pub fn adagrad_update(
    cores: &[Vec<f32>],
    state: &[Vec<f32>],
    grads: &[Vec<f64>],
    lr: f64,
    eps: f64,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut new_cores = Vec::with_capacity(cores.len());
    let mut new_state = Vec::with_capacity(cores.len());
    for ((c, s), g) in cores.iter().zip(state).zip(grads) {
        let mut nc = Vec::with_capacity(c.len());
        let mut ns = Vec::with_capacity(c.len());
        for ((&w, &s), &g) in c.iter().zip(s).zip(g) {
            let s2 = s as f64 + g * g;
            nc.push((w as f64 - lr * g / (s2.sqrt() + eps)) as f32);
            ns.push(s2 as f32);
        }
        new_cores.push(nc);
        new_state.push(ns);
    }
    (new_cores, new_state)
}
