//! CPU twins of the nn kernels (shaders/matmul.wgsl, interaction.wgsl, loss.wgsl,
//! embedding.wgsl), in f64 on logical (unpadded, row-major) matrices. Written from the math, not
//! from the kernels' blocking.

/// A row-major matrix view: element (r, c) at `offset + r * stride + c`.
#[derive(Clone, Copy, Debug)]
pub struct At {
    pub stride: usize,
    pub offset: usize,
}

/// C[M, N] = A^T B with A stored [K, M] and B stored [K, N], read through their views (the one
/// form of every MLP product, see shaders/matmul.wgsl).
pub fn gemm_tn(m: usize, n: usize, k: usize, a: &[f32], a_at: At, b: &[f32], b_at: At) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k)
                .map(|kk| {
                    a[a_at.offset + kk * a_at.stride + i] as f64
                        * b[b_at.offset + kk * b_at.stride + j] as f64
                })
                .sum();
        }
    }
    out
}

/// Transpose of a `rows x cols` row-major matrix.
pub fn transpose(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = x[r * cols + c];
        }
    }
    out
}

/// y = x W^T + b, then ReLU when `relu`: x `[B, in]`, W `[out, in]`, b `[out]` -> `[B, out]`.
pub fn linear_forward(x: &[f64], w: &[f64], b: &[f64], inputs: usize, relu: bool) -> Vec<f64> {
    let outputs = b.len();
    let rows = x.len() / inputs;
    let mut y = vec![0.0; rows * outputs];
    for r in 0..rows {
        for o in 0..outputs {
            let z: f64 = (0..inputs)
                .map(|i| x[r * inputs + i] * w[o * inputs + i])
                .sum::<f64>()
                + b[o];
            y[r * outputs + o] = if relu { z.max(0.0) } else { z };
        }
    }
    y
}

/// Gradients of a linear layer given dy, the gradient w.r.t. its output y (after the ReLU when
/// `relu`): returns (dx `[B, in]`, dW `[out, in]`, db `[out]`).
pub fn linear_backward(
    x: &[f64],
    w: &[f64],
    y: &[f64],
    dy: &[f64],
    inputs: usize,
    relu: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let outputs = w.len() / inputs;
    let rows = x.len() / inputs;
    // dz = dy * relu'(z), read off y: y > 0 exactly where z > 0.
    let dz: Vec<f64> = dy
        .iter()
        .zip(y)
        .map(|(&g, &v)| if !relu || v > 0.0 { g } else { 0.0 })
        .collect();
    let mut dx = vec![0.0; rows * inputs];
    let mut dw = vec![0.0; outputs * inputs];
    let mut db = vec![0.0; outputs];
    for r in 0..rows {
        for o in 0..outputs {
            let g = dz[r * outputs + o];
            db[o] += g;
            for i in 0..inputs {
                dx[r * inputs + i] += g * w[o * inputs + i];
                dw[o * inputs + i] += g * x[r * inputs + i];
            }
        }
    }
    (dx, dw, db)
}

/// Width of the interaction's output for F vectors of D values: D + F(F-1)/2.
pub fn interaction_width(vectors: usize, dim: usize) -> usize {
    dim + vectors * (vectors - 1) / 2
}

/// dlrm's dot interaction: t [B, F, D] -> [B, D + F(F-1)/2] = [t[b, 0], t_i . t_j for j < i in
/// the order i = 1..F-1, j = 0..i-1].
pub fn interaction_forward(t: &[f64], vectors: usize, dim: usize) -> Vec<f64> {
    let width = interaction_width(vectors, dim);
    let batch = t.len() / (vectors * dim);
    let mut r = vec![0.0; batch * width];
    for b in 0..batch {
        let v = |i: usize| &t[(b * vectors + i) * dim..(b * vectors + i + 1) * dim];
        let out = &mut r[b * width..(b + 1) * width];
        out[..dim].copy_from_slice(v(0));
        let mut col = dim;
        for i in 1..vectors {
            for j in 0..i {
                out[col] = v(i).iter().zip(v(j)).map(|(x, y)| x * y).sum();
                col += 1;
            }
        }
    }
    r
}

/// Gradient of the interaction: dr [B, D + F(F-1)/2] -> dt [B, F, D] (no ReLU mask).
pub fn interaction_backward(t: &[f64], dr: &[f64], vectors: usize, dim: usize) -> Vec<f64> {
    let width = interaction_width(vectors, dim);
    let batch = t.len() / (vectors * dim);
    let mut dt = vec![0.0; t.len()];
    for b in 0..batch {
        let base = b * vectors * dim;
        let g = &dr[b * width..(b + 1) * width];
        for c in 0..dim {
            dt[base + c] += g[c];
        }
        let mut col = dim;
        for i in 1..vectors {
            for j in 0..i {
                let z = g[col];
                for c in 0..dim {
                    dt[base + i * dim + c] += z * t[base + j * dim + c];
                    dt[base + j * dim + c] += z * t[base + i * dim + c];
                }
                col += 1;
            }
        }
    }
    dt
}

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Mean binary cross-entropy of sigmoid(z) against the labels; returns (loss, dloss/dz, correct
/// predictions at 0.5).
pub fn bce(logits: &[f64], labels: &[f64]) -> (f64, Vec<f64>, usize) {
    let n = logits.len() as f64;
    let mut loss = 0.0;
    let mut correct = 0;
    let mut dz = Vec::with_capacity(logits.len());
    for (&z, &y) in logits.iter().zip(labels) {
        // Clamped as the evaluation's log loss clamps the probability (shaders/loss.wgsl).
        let eps = crate::metrics::LOG_LOSS_EPS;
        loss += (z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()).clamp(-(-eps).ln_1p(), -eps.ln());
        dz.push((sigmoid(z) - y) / n);
        if (z > 0.0) == (y > 0.5) {
            correct += 1;
        }
    }
    (loss / n, dz, correct)
}

/// EmbeddingBag (sum): rows of `weight` [N, D] pooled per bag (offsets has B+1 entries).
pub fn bag_forward(weight: &[f64], dim: usize, indices: &[u64], offsets: &[u64]) -> Vec<f64> {
    let bags = offsets.len() - 1;
    let mut out = vec![0.0; bags * dim];
    for b in 0..bags {
        for &i in &indices[offsets[b] as usize..offsets[b + 1] as usize] {
            let row = &weight[i as usize * dim..(i as usize + 1) * dim];
            for (o, w) in out[b * dim..(b + 1) * dim].iter_mut().zip(row) {
                *o += w;
            }
        }
    }
    out
}

/// Dense gradient [rows, D] of sum(dout * bag_forward(...)).
pub fn bag_backward(
    rows: usize,
    dim: usize,
    indices: &[u64],
    offsets: &[u64],
    dout: &[f64],
) -> Vec<f64> {
    let mut grad = vec![0.0; rows * dim];
    for b in 0..offsets.len() - 1 {
        for &i in &indices[offsets[b] as usize..offsets[b + 1] as usize] {
            for c in 0..dim {
                grad[i as usize * dim + c] += dout[b * dim + c];
            }
        }
    }
    grad
}

/// Elementwise SGD: w - lr g.
pub fn sgd(w: &[f64], g: &[f64], lr: f64) -> Vec<f64> {
    w.iter().zip(g).map(|(w, g)| w - lr * g).collect()
}

/// Elementwise Adagrad from state s: (w - lr g / (sqrt(s + g^2) + eps), s + g^2).
pub fn adagrad(w: &[f64], s: &[f64], g: &[f64], lr: f64, eps: f64) -> (Vec<f64>, Vec<f64>) {
    let s2: Vec<f64> = s.iter().zip(g).map(|(s, g)| s + g * g).collect();
    let w2 = w
        .iter()
        .zip(g)
        .zip(&s2)
        .map(|((w, g), s)| w - lr * g / (s.sqrt() + eps))
        .collect();
    (w2, s2)
}
