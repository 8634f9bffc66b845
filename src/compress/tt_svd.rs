//! TT-SVD (Oseledets 2011): a dense `N x D` table as d TT cores by sequential truncated SVDs,
//! left to right, and the way back. No GPU: plain f64 arithmetic on the host, the SVDs by
//! `faer`.
//!
//! The table is padded with zero rows to prod(p), reshaped to the tensor of index order
//! `(i_0, j_0, i_1, j_1, ..., i_{d-1}, j_{d-1})` (row digits over p, column digits over q, the
//! first digit most significant, as [`TtShape`] numbers them), and unfolded step by step: at step
//! k the remainder is a matrix of `R_k p_k q_k` rows; its first `R_{k+1}` left singular vectors
//! become core k (stored in the reference layout `[p_k, R_k q_k R_{k+1}]`) and `S V^T` of them
//! the next remainder. The cores are left-orthogonal, so the squared Frobenius error of the
//! result is exactly the sum over the steps of the squared discarded singular values (each step's
//! truncation is the best of its rank for that unfolding: Eckart-Young).

use faer::Mat;

use crate::error::{Error, Result};
use crate::tt_shape::TtShape;

/// How the interior ranks R_1..R_{d-1} are chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum RankChoice {
    /// These ranks. Where an unfolding holds fewer independent directions than asked, the rank
    /// is still the one asked: the extra directions of core k get small fixed values and the
    /// next core zeros, so the table is represented the same and training can use them.
    Fixed(Vec<usize>),
    /// The smallest ranks whose result is within this relative Frobenius error of the table:
    /// each of the d-1 truncations may discard `tolerance / sqrt(d-1) * ||W||_F`.
    Tolerance(f64),
}

/// A TT-SVD's result.
#[derive(Clone, Debug)]
pub struct TtSvd {
    pub shape: TtShape,
    /// Core k row-major `[p_k, R_k q_k R_{k+1}]`.
    pub cores: Vec<Vec<f32>>,
    /// Every singular value of each of the d-1 unfoldings, largest first.
    pub singular_values: Vec<Vec<f64>>,
    /// Per unfolding: the Frobenius norm of the singular values it discarded.
    pub discarded: Vec<f64>,
    /// Frobenius norm of the (padded) table.
    pub table_norm: f64,
}

impl TtSvd {
    /// The exact Frobenius error of the cores in f64 (before their rounding to f32), relative
    /// to the table's norm: sqrt(sum of every discarded singular value squared) / ||W||_F.
    pub fn predicted_relative_error(&self) -> f64 {
        let sq: f64 = self.discarded.iter().map(|x| x * x).sum();
        if self.table_norm > 0.0 {
            sq.sqrt() / self.table_norm
        } else {
            0.0
        }
    }
}

/// Checks `table` (`rows x dim`, row-major) against the factors.
fn check_table(table_len: usize, rows: u64, q: &[usize]) -> Result<()> {
    let dim: usize = q.iter().product();
    if table_len as u64 != rows * dim as u64 {
        return Err(Error::shape(
            None,
            format!(
                "the table has {table_len} values; {rows} rows of prod(q) = {dim} columns need {}",
                rows * dim as u64
            ),
        ));
    }
    Ok(())
}

/// The table (`rows x prod(q)`, row-major, f32 or f64 through `value`) as the interleaved tensor
/// `(i_0, j_0, ..., i_{d-1}, j_{d-1})` in f64, rows past `rows` zero.
fn interleave(value: impl Fn(usize) -> f64, rows: u64, p: &[usize], q: &[usize]) -> Vec<f64> {
    let d = p.len();
    let dim: usize = q.iter().product();
    let padded: usize = p.iter().product();
    let mut out = vec![0.0f64; padded * dim];
    // Position of digit pairs in the interleaved order: stride of i_k and of j_k.
    let mut stride_i = vec![0usize; d];
    let mut stride_j = vec![0usize; d];
    let mut s = 1usize;
    for k in (0..d).rev() {
        stride_j[k] = s;
        s *= q[k];
        stride_i[k] = s;
        s *= p[k];
    }
    let col_pos: Vec<usize> = (0..dim)
        .map(|mut j| {
            let mut pos = 0;
            for k in (0..d).rev() {
                pos += (j % q[k]) * stride_j[k];
                j /= q[k];
            }
            pos
        })
        .collect();
    for i in 0..rows as usize {
        let mut rest = i;
        let mut base = 0;
        for k in (0..d).rev() {
            base += (rest % p[k]) * stride_i[k];
            rest /= p[k];
        }
        for (j, &cp) in col_pos.iter().enumerate() {
            out[base + cp] = value(i * dim + j);
        }
    }
    out
}

/// A small fixed value for the padded directions (see [`RankChoice::Fixed`]): a hash of the
/// position mapped to +-scale.
fn filler(k: usize, row: usize, col: usize, scale: f64) -> f64 {
    let mut h = (k as u64) << 40 ^ (row as u64) << 20 ^ col as u64;
    h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 29;
    if h & 1 == 0 {
        scale
    } else {
        -scale
    }
}

/// TT-SVD of `table` (`rows x prod(q)`, row-major) into cores of row factors `p` (prod(p) >=
/// rows) and column factors `q`, ranks as `ranks` says.
pub fn tt_svd(
    table: &[f32],
    rows: u64,
    p: &[usize],
    q: &[usize],
    ranks: &RankChoice,
) -> Result<TtSvd> {
    check_table(table.len(), rows, q)?;
    if let Some(i) = table.iter().position(|x| !x.is_finite()) {
        let dim: usize = q.iter().product();
        return Err(Error::input(
            None,
            format!(
                "the table's value at row {}, column {} is {}; TT-SVD needs finite values",
                i / dim,
                i % dim,
                table[i]
            ),
        ));
    }
    let tensor = interleave(|i| table[i] as f64, rows, p, q);
    tt_svd_tensor(tensor, rows, p, q, ranks)
}

/// [`tt_svd`] of an f64 table (the tests' exact inputs).
pub fn tt_svd_f64(
    table: &[f64],
    rows: u64,
    p: &[usize],
    q: &[usize],
    ranks: &RankChoice,
) -> Result<TtSvd> {
    check_table(table.len(), rows, q)?;
    let tensor = interleave(|i| table[i], rows, p, q);
    tt_svd_tensor(tensor, rows, p, q, ranks)
}

fn tt_svd_tensor(
    tensor: Vec<f64>,
    rows: u64,
    p: &[usize],
    q: &[usize],
    ranks: &RankChoice,
) -> Result<TtSvd> {
    let d = p.len();
    // Shape checks (d, prod(p) >= rows, no zero factor) with placeholder ranks.
    TtShape::new(rows, p, q, &vec![1; d.saturating_sub(1)])?;
    let tolerance = match ranks {
        RankChoice::Fixed(r) => {
            if r.len() != d - 1 || r.contains(&0) {
                return Err(Error::shape(
                    None,
                    format!(
                        "{d} cores need {} interior ranks of at least 1, got {r:?}",
                        d - 1
                    ),
                ));
            }
            None
        }
        RankChoice::Tolerance(t) => {
            if !(t.is_finite() && *t >= 0.0) {
                return Err(Error::input(
                    None,
                    format!("the tolerance must be a number of 0 or more, got {t}"),
                ));
            }
            Some(*t)
        }
    };
    let table_norm = tensor.iter().map(|x| x * x).sum::<f64>().sqrt();
    let step_budget = tolerance.map(|t| t / ((d - 1) as f64).sqrt() * table_norm);
    let mut rest = tensor;
    let mut r_prev = 1usize;
    let mut cores = Vec::with_capacity(d);
    let mut interior = Vec::with_capacity(d - 1);
    let mut singular_values = Vec::with_capacity(d - 1);
    let mut discarded = Vec::with_capacity(d - 1);
    for k in 0..d - 1 {
        let m = r_prev * p[k] * q[k];
        let n = rest.len() / m;
        let a = Mat::<f64>::from_fn(m, n, |i, j| rest[i * n + j]);
        // The remainder lives on in `a` only (memory: tables of millions of rows).
        drop(std::mem::take(&mut rest));
        let svd = a.thin_svd().map_err(|e| {
            Error::input(
                None,
                format!("the SVD of unfolding {k} did not converge: {e:?}"),
            )
        })?;
        let s: Vec<f64> = (0..m.min(n)).map(|i| svd.S()[i]).collect();
        let available = s.len();
        let r = match (ranks, step_budget) {
            (RankChoice::Fixed(r), _) => r[k],
            (_, Some(budget)) => {
                // Smallest rank whose discarded tail is within the step's budget.
                let mut tail = 0.0f64;
                let mut r = available;
                while r > 1 && (tail + s[r - 1] * s[r - 1]).sqrt() <= budget {
                    tail += s[r - 1] * s[r - 1];
                    r -= 1;
                }
                r
            }
            _ => unreachable!("fixed ranks or a tolerance"),
        };
        let kept = r.min(available);
        discarded.push(s[kept..].iter().map(|x| x * x).sum::<f64>().sqrt());
        let u = svd.U();
        let scale = 1e-3 / (m as f64).sqrt();
        let u_at = |row: usize, col: usize| {
            if col < kept {
                u[(row, col)]
            } else {
                filler(k, row, col, scale)
            }
        };
        // Core k: U's rows are (r_prev, i_k, j_k); stored [i_k][r_prev][j_k][r].
        let mut core = vec![0f32; p[k] * r_prev * q[k] * r];
        for rp in 0..r_prev {
            for ik in 0..p[k] {
                for jk in 0..q[k] {
                    let row = (rp * p[k] + ik) * q[k] + jk;
                    let at = ((ik * r_prev + rp) * q[k] + jk) * r;
                    for col in 0..r {
                        core[at + col] = u_at(row, col) as f32;
                    }
                }
            }
        }
        cores.push(core);
        // The next remainder: S V^T of the kept directions, zeros for the padded ones.
        let v = svd.V();
        let mut next = vec![0f64; r * n];
        for col in 0..kept {
            let sc = s[col];
            let out = &mut next[col * n..(col + 1) * n];
            for (j, o) in out.iter_mut().enumerate() {
                *o = sc * v[(j, col)];
            }
        }
        singular_values.push(s);
        interior.push(r);
        rest = next;
        r_prev = r;
    }
    // The last core: the remainder, rows (r_prev, i, j), stored [i][r_prev][j][1].
    let last = d - 1;
    let mut core = vec![0f32; p[last] * r_prev * q[last]];
    for rp in 0..r_prev {
        for ik in 0..p[last] {
            for jk in 0..q[last] {
                core[(ik * r_prev + rp) * q[last] + jk] =
                    rest[(rp * p[last] + ik) * q[last] + jk] as f32;
            }
        }
    }
    cores.push(core);
    let shape = TtShape::new(rows, p, q, &interior)?;
    Ok(TtSvd {
        shape,
        cores,
        singular_values,
        discarded,
        table_norm,
    })
}

/// The full `N x D` table of `cores` (row-major), computed in f64: rows sharing leading digits
/// share the partial products of their leading cores.
pub fn tt_to_dense_f64(shape: &TtShape, cores: &[Vec<f32>]) -> Result<Vec<f64>> {
    shape.check_cores(cores)?;
    let dim = shape.dim();
    let rows = shape.num_embeddings as usize;
    let mut out = vec![0f64; rows * dim];
    // Prefix: the product of cores 0..k for the leading digits, [q_0 .. q_{k-1}, R_k] row-major.
    fn descend(
        shape: &TtShape,
        cores: &[Vec<f32>],
        k: usize,
        row_base: usize,
        prefix: &[f64],
        out: &mut [f64],
    ) {
        let d = shape.d();
        let (r_in, qk, r_out) = (shape.ranks[k], shape.q[k], shape.ranks[k + 1]);
        let lead = prefix.len() / r_in;
        let block = r_in * qk * r_out;
        let stride: usize = shape.p[k + 1..].iter().product();
        for ik in 0..shape.p[k] {
            let first_row = row_base + ik * stride;
            if first_row >= shape.num_embeddings as usize {
                break;
            }
            let g = &cores[k][ik * block..(ik + 1) * block];
            let mut next = vec![0f64; lead * qk * r_out];
            for a in 0..lead {
                for r in 0..r_in {
                    let x = prefix[a * r_in + r];
                    if x == 0.0 {
                        continue;
                    }
                    for j in 0..qk {
                        let src = &g[(r * qk + j) * r_out..(r * qk + j + 1) * r_out];
                        let dst = &mut next[(a * qk + j) * r_out..(a * qk + j + 1) * r_out];
                        for (o, &gv) in dst.iter_mut().zip(src) {
                            *o += x * gv as f64;
                        }
                    }
                }
            }
            if k + 1 == d {
                let dim = next.len();
                out[first_row * dim..(first_row + 1) * dim].copy_from_slice(&next);
            } else {
                descend(shape, cores, k + 1, first_row, &next, out);
            }
        }
    }
    descend(shape, cores, 0, 0, &[1.0], &mut out);
    Ok(out)
}

/// [`tt_to_dense_f64`] rounded to f32.
pub fn tt_to_dense(shape: &TtShape, cores: &[Vec<f32>]) -> Result<Vec<f32>> {
    Ok(tt_to_dense_f64(shape, cores)?
        .into_iter()
        .map(|x| x as f32)
        .collect())
}

/// How far an approximation is from a table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReconstructionError {
    /// ||W - W~||_F / ||W||_F (0 for an all-zero table reproduced exactly).
    pub relative_frobenius: f64,
    /// The row with the largest error norm, that norm, and that row's own norm.
    pub worst_row: u64,
    pub worst_row_error: f64,
    pub worst_row_norm: f64,
}

/// The error of `approx` against `table`, both `rows x dim` row-major.
pub fn reconstruction_error(table: &[f32], approx: &[f64], dim: usize) -> ReconstructionError {
    let mut err_sq = 0.0f64;
    let mut norm_sq = 0.0f64;
    let mut worst = (0u64, 0.0f64, 0.0f64);
    for (i, (w, a)) in table.chunks(dim).zip(approx.chunks(dim)).enumerate() {
        let e: f64 = w.iter().zip(a).map(|(&x, &y)| (x as f64 - y).powi(2)).sum();
        let n: f64 = w.iter().map(|&x| (x as f64).powi(2)).sum();
        err_sq += e;
        norm_sq += n;
        if e.sqrt() > worst.1 {
            worst = (i as u64, e.sqrt(), n.sqrt());
        }
    }
    ReconstructionError {
        relative_frobenius: if norm_sq > 0.0 {
            (err_sq / norm_sq).sqrt()
        } else {
            err_sq.sqrt()
        },
        worst_row: worst.0,
        worst_row_error: worst.1,
        worst_row_norm: worst.2,
    }
}
