//! Automatic TT shapes, as the reference's `suggested_tt_shapes` (FBTT-Embedding's
//! `tt_embeddings_ops.py`; the rule is restated in the project's `spec/tt-rec.md`), and
//! [`TtShape::auto`], which picks a whole shape from (num_embeddings, embedding_dim, tt_ranks) as
//! the reference's `TTEmbeddingBag` constructor does.
//!
//! `auto_shape(n, d)`: the prime factors of n with multiplicity, padded with 1s to length d; over
//! every partition of that multiset into exactly d blocks take the block products, sort them
//! ascending into x, split `xf = x[..d/2]`, `xl = x[d/2..]` and interleave `xf[0], xl[0], xf[1], xl[1]`,
//! ... (then the rest of xl); keep the tuple of maximal Shannon entropy (natural log) of x/sum(x).
//!
//! Instead of enumerating set partitions (exponential in the number of prime factors), the
//! distinct block-product tuples are enumerated directly: when n has at least d prime factors
//! they are exactly the non-decreasing d-tuples of divisors >= 2 whose product is n; otherwise the
//! only partition is into singletons (the primes and the padding 1s). Ties in entropy keep the
//! lexicographically smallest sorted tuple.

use crate::error::{Error, Result};
use crate::tt_shape::TtShape;

/// Prime factors of `n` with multiplicity, ascending (empty for n <= 1).
fn prime_factors(mut n: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut f = 2u64;
    while f.saturating_mul(f) <= n {
        while n.is_multiple_of(f) {
            out.push(f);
            n /= f;
        }
        f += if f == 2 { 1 } else { 2 };
    }
    if n > 1 {
        out.push(n);
    }
    out
}

/// All divisors of `n` (n >= 1), ascending.
fn divisors(n: u64) -> Vec<u64> {
    let mut divs = vec![1u64];
    let factors = prime_factors(n);
    let mut i = 0;
    while i < factors.len() {
        let p = factors[i];
        let mult = factors[i..].iter().take_while(|&&f| f == p).count();
        let base = divs.clone();
        let mut pk = 1u64;
        for _ in 0..mult {
            pk *= p;
            divs.extend(base.iter().map(|&d| d * pk));
        }
        i += mult;
    }
    divs.sort_unstable();
    divs
}

/// Shannon entropy (natural log) of `x / sum(x)`.
fn entropy(x: &[u64]) -> f64 {
    let sum: f64 = x.iter().map(|&v| v as f64).sum();
    -x.iter()
        .map(|&v| {
            let p = v as f64 / sum;
            if p > 0.0 {
                p * p.ln()
            } else {
                0.0
            }
        })
        .sum::<f64>()
}

/// Non-decreasing tuples of `slots` divisors (each >= `min`) of `rest` with product `rest`.
fn factor_tuples(
    divs: &[u64],
    rest: u64,
    slots: usize,
    min: u64,
    cur: &mut Vec<u64>,
    out: &mut Vec<Vec<u64>>,
) {
    if slots == 1 {
        if rest >= min {
            cur.push(rest);
            out.push(cur.clone());
            cur.pop();
        }
        return;
    }
    for &f in divs {
        if f < min || !rest.is_multiple_of(f) {
            continue;
        }
        // f is the smallest of the remaining factors: f^slots <= rest.
        if (f as u128).pow(slots as u32) > rest as u128 {
            break;
        }
        cur.push(f);
        factor_tuples(divs, rest / f, slots - 1, f, cur, out);
        cur.pop();
    }
}

/// The reference's interleave of an ascending tuple: x[..d/2] and x[d/2..] round-robin.
fn interleave(x: &[u64]) -> Vec<u64> {
    let (xf, xl) = x.split_at(x.len() / 2);
    let mut out = Vec::with_capacity(x.len());
    for i in 0..xl.len() {
        if i < xf.len() {
            out.push(xf[i]);
        }
        out.push(xl[i]);
    }
    out
}

/// The reference's `_auto_shape(n, d)`: the most balanced factorisation of n into d factors.
fn auto_shape(n: u64, d: usize) -> Vec<u64> {
    if d == 0 {
        return Vec::new();
    }
    let primes = prime_factors(n);
    let candidates: Vec<Vec<u64>> = if primes.len() <= d {
        let mut x = vec![1u64; d - primes.len()];
        x.extend(primes);
        vec![x]
    } else {
        let divs = divisors(n);
        let mut out = Vec::new();
        factor_tuples(&divs, n, d, 2, &mut Vec::with_capacity(d), &mut out);
        out
    };
    let mut best: Option<(f64, &Vec<u64>)> = None;
    for c in &candidates {
        let h = entropy(c);
        if best.is_none_or(|(bh, _)| h > bh) {
            best = Some((h, c));
        }
    }
    interleave(best.expect("at least one factorisation").1)
}

/// ceil(n / 10^i) * 10^i (None where it does not fit a u64).
fn round_up(n: u64, i: u32) -> Option<u64> {
    let m = 10u64.checked_pow(i)?;
    n.div_ceil(m).checked_mul(m)
}

/// The reference's `suggested_tt_shapes(n, d, allow_round_up)`: d factors whose product is n (or,
/// with `allow_round_up`, n rounded up to `ceil(n / 10^i) * 10^i` for the first i in
/// 0..digits(n) whose factorisation has maximal entropy). Use it for the row factors p; for the
/// column factors use [`suggested_dim_shape`], which never changes D. `n = 0` is taken as 1;
/// `d = 0` gives no factors; round-up candidates beyond `u64::MAX` are skipped.
///
/// ```
/// use ttrec::tt::suggested_tt_shapes;
/// assert_eq!(suggested_tt_shapes(1_000_000, 3, true), vec![100, 100, 100]);
/// // 10,131,227 (prime) is rounded up to 11,000,000.
/// assert_eq!(suggested_tt_shapes(10_131_227, 3, true), vec![200, 220, 250]);
/// ```
pub fn suggested_tt_shapes(n: u64, d: usize, allow_round_up: bool) -> Vec<usize> {
    let n = n.max(1);
    let shape = if allow_round_up {
        let digits = n.to_string().len() as u32;
        let mut best: Option<(f64, Vec<u64>)> = None;
        for i in 0..digits {
            let Some(n_i) = round_up(n, i) else {
                continue;
            };
            let s = auto_shape(n_i, d);
            let h = entropy(&s);
            if best.as_ref().is_none_or(|(bh, _)| h > *bh) {
                best = Some((h, s));
            }
        }
        best.expect("n has at least one digit").1
    } else {
        auto_shape(n, d)
    };
    shape.into_iter().map(|v| v as usize).collect()
}

/// Column factors q for an embedding dimension D: the round-up shape if its product is still D,
/// else the exact factorisation of D (prod(q) == D always).
pub fn suggested_dim_shape(dim: usize, d: usize) -> Vec<usize> {
    let rounded = suggested_tt_shapes(dim as u64, d, true);
    if rounded.iter().product::<usize>() == dim {
        rounded
    } else {
        suggested_tt_shapes(dim as u64, d, false)
    }
}

impl TtShape {
    /// The shape the reference's `TTEmbeddingBag(num_embeddings, embedding_dim, tt_ranks)` picks
    /// when `tt_p_shapes` and `tt_q_shapes` are not given: d = `interior_ranks.len() + 1` cores,
    /// row factors `p = suggested_tt_shapes(num_embeddings, d, true)` (N rounded up to a
    /// well-balanced prod(p) >= N; rows beyond N are never used), column factors
    /// `q = suggested_tt_shapes(embedding_dim, d, true)` when its product is still D, else the
    /// exact factorisation of D (the reference's `enforce_embedding_dim = True` result; with its
    /// default it would fail an assertion there). See [`suggested_tt_shapes`] for the rule.
    ///
    /// Like the reference, a prime N or D is not an error: a prime D = 17 with d = 3 gives
    /// q = (1, 1, 17), a valid if poorly balanced shape. Errors (naming the value): no or more
    /// than 3 interior ranks (TT tables have 2 to 4 cores), N or D of 0, N beyond 2^32 rows, a
    /// rank of 0, or a core beyond 2^31 elements. (Where the rounded-up rows would pass 2^32,
    /// N's own factorisation is used.)
    ///
    /// ```
    /// use ttrec::tt::TtShape;
    /// let shape = TtShape::auto(1_000_000, 64, &[16, 16])?;
    /// assert_eq!(shape.p, [100, 100, 100]);
    /// assert_eq!(shape.q, [4, 4, 4]);
    /// assert_eq!(shape.ranks, [1, 16, 16, 1]);
    /// // A prime row count: rounded up to 11,000,000 rows.
    /// let shape = TtShape::auto(10_131_227, 16, &[32, 32])?;
    /// assert_eq!((shape.p.as_slice(), shape.q.as_slice()), (&[200, 220, 250][..], &[2, 2, 4][..]));
    /// assert!(TtShape::auto(1000, 16, &[8, 8, 8, 8]).is_err()); // 5 cores
    /// # Ok::<(), ttrec::Error>(())
    /// ```
    pub fn auto(
        num_embeddings: u64,
        embedding_dim: usize,
        interior_ranks: &[usize],
    ) -> Result<Self> {
        let d = interior_ranks.len() + 1;
        if !(2..=4).contains(&d) {
            return Err(Error::shape(
                None,
                format!(
                    "{} interior ranks give {d} cores; TT tables have 2 to 4 cores (1 to 3 interior ranks)",
                    interior_ranks.len()
                ),
            ));
        }
        if num_embeddings == 0 {
            return Err(Error::shape(None, "num_embeddings is 0"));
        }
        if embedding_dim == 0 {
            return Err(Error::shape(None, "embedding_dim is 0"));
        }
        if num_embeddings > 1 << 32 {
            return Err(Error::shape(
                None,
                format!("num_embeddings = {num_embeddings} exceeds 2^32 rows"),
            ));
        }
        let mut p = suggested_tt_shapes(num_embeddings, d, true);
        if p.iter().map(|&v| v as u128).product::<u128>() > 1 << 32 {
            // Rounded up past the 2^32 rows a table can address: N itself still fits.
            p = suggested_tt_shapes(num_embeddings, d, false);
        }
        let q = suggested_dim_shape(embedding_dim, d);
        Self::with_dim(num_embeddings, embedding_dim, &p, &q, interior_ranks)
    }
}
