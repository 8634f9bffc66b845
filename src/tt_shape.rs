//! The plain description of a tensor-train table: its shape (N rows of D columns as d cores),
//! how a bag's rows are pooled, and where a table's rows sit in a group of tables stored as one.
//! No GPU, nothing of [`crate::tt`]: both the GPU tables ([`crate::tt`], which re-exports these
//! types) and the CPU twins ([`crate::twin`]) build on it. (Not to be confused with
//! `tt::shapes`, which *suggests* shapes the way the reference does.)

use crate::error::{Error, Result};

/// Shape of a TT table: `num_embeddings` (N) rows, `p` row factors (prod(p) >= N), `q` column
/// factors (prod(q) = D), and the d+1 TT ranks including the boundary ranks R_0 = R_d = 1.
///
/// Core k is stored row-major as `[p_k, R_k * q_k * R_{k+1}]`: the slice of row digit i_k is a
/// row-major `[R_k, q_k, R_{k+1}]` block, the reference (FBTT-Embedding) layout. Row i has digits
/// `i = sum_k i_k prod_{l>k} p_l` (core 0's digit most significant), columns likewise over q.
///
/// Build one with the factors spelled out ([`TtShape::new`], [`TtShape::with_dim`]) or chosen
/// as the reference chooses them ([`TtShape::auto`]):
///
/// ```
/// use ttrec::tt::TtShape;
/// // 1,000 rows of 64 columns: p = (10, 10, 10), q = (4, 4, 4), interior ranks (16, 16).
/// let shape = TtShape::with_dim(1000, 64, &[10, 10, 10], &[4, 4, 4], &[16, 16])?;
/// assert_eq!(shape.ranks, [1, 16, 16, 1]);
/// assert_eq!(shape.core_shape(1), [10, 16 * 4 * 16]);
/// assert_eq!(shape.num_params(), 10 * 64 + 10 * 1024 + 10 * 64);
/// assert_eq!(shape.digits(123), [1, 2, 3]);
/// assert_eq!(shape, TtShape::auto(1000, 64, &[16, 16])?);
/// // Errors say what is wrong.
/// let err = TtShape::new(1000, &[10, 10], &[4, 4], &[16]).unwrap_err();
/// assert!(err.to_string().contains("prod(p) = 100 < num_embeddings = 1000"), "{err}");
/// # Ok::<(), ttrec::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TtShape {
    pub num_embeddings: u64,
    pub p: Vec<usize>,
    pub q: Vec<usize>,
    /// d+1 ranks: `ranks[0] == ranks[d] == 1`.
    pub ranks: Vec<usize>,
}

impl TtShape {
    /// Checks and builds a shape from the interior ranks R_1..R_{d-1}.
    pub fn new(
        num_embeddings: u64,
        p: &[usize],
        q: &[usize],
        interior_ranks: &[usize],
    ) -> Result<Self> {
        let d = p.len();
        if !(2..=4).contains(&d) {
            return Err(Error::shape(
                None,
                format!("{d} cores given; TT tables have 2 to 4 cores"),
            ));
        }
        if q.len() != d {
            return Err(Error::shape(
                None,
                format!("{} column factors q for {d} row factors p", q.len()),
            ));
        }
        if interior_ranks.len() != d - 1 {
            return Err(Error::shape(
                None,
                format!(
                    "{} interior ranks given; {d} cores need {}",
                    interior_ranks.len(),
                    d - 1
                ),
            ));
        }
        if num_embeddings == 0 {
            return Err(Error::shape(None, "num_embeddings is 0"));
        }
        for (k, &v) in p.iter().enumerate() {
            if v == 0 {
                return Err(Error::shape(None, format!("p[{k}] is 0")));
            }
        }
        for (k, &v) in q.iter().enumerate() {
            if v == 0 {
                return Err(Error::shape(None, format!("q[{k}] is 0")));
            }
        }
        for (k, &r) in interior_ranks.iter().enumerate() {
            if r == 0 {
                return Err(Error::shape(None, format!("rank R_{} is 0", k + 1)));
            }
        }
        let rows: u128 = p.iter().map(|&v| v as u128).product();
        if rows < num_embeddings as u128 {
            return Err(Error::shape(
                None,
                format!("prod(p) = {rows} < num_embeddings = {num_embeddings}; the row factors must cover every row"),
            ));
        }
        if rows > u32::MAX as u128 + 1 {
            return Err(Error::shape(
                None,
                format!("prod(p) = {rows} exceeds 2^32 rows"),
            ));
        }
        let mut ranks = vec![1];
        ranks.extend_from_slice(interior_ranks);
        ranks.push(1);
        let shape = TtShape {
            num_embeddings,
            p: p.to_vec(),
            q: q.to_vec(),
            ranks,
        };
        for k in 0..d {
            let len = shape.core_cols(k) as u128 * shape.p[k] as u128;
            if len > (1u128 << 31) {
                return Err(Error::shape(
                    None,
                    format!("core {k} has {len} elements; at most 2^31 are supported"),
                ));
            }
        }
        Ok(shape)
    }

    /// Builds a shape whose D must equal prod(q).
    pub fn with_dim(
        num_embeddings: u64,
        dim: usize,
        p: &[usize],
        q: &[usize],
        interior_ranks: &[usize],
    ) -> Result<Self> {
        let s = Self::new(num_embeddings, p, q, interior_ranks)?;
        if s.dim() != dim {
            return Err(Error::shape(
                None,
                format!(
                    "prod(q) = {} but the embedding dimension D = {dim}",
                    s.dim()
                ),
            ));
        }
        Ok(s)
    }

    /// Number of cores d.
    pub fn d(&self) -> usize {
        self.p.len()
    }
    /// Embedding dimension D = prod(q).
    pub fn dim(&self) -> usize {
        self.q.iter().product()
    }
    /// prod(p): rows addressable by the cores (>= N).
    pub fn padded_rows(&self) -> u64 {
        self.p.iter().map(|&v| v as u64).product()
    }
    /// Interior ranks R_1..R_{d-1}.
    pub fn interior_ranks(&self) -> &[usize] {
        &self.ranks[1..self.d()]
    }
    /// Columns of core k's storage: R_k * q_k * R_{k+1}.
    pub fn core_cols(&self, k: usize) -> usize {
        self.ranks[k] * self.q[k] * self.ranks[k + 1]
    }
    /// Storage shape of core k: `[p_k, R_k q_k R_{k+1}]`.
    pub fn core_shape(&self, k: usize) -> [usize; 2] {
        [self.p[k], self.core_cols(k)]
    }
    /// Number of f32 elements of core k.
    pub fn core_len(&self, k: usize) -> usize {
        self.p[k] * self.core_cols(k)
    }
    /// Parameters of all cores.
    pub fn num_params(&self) -> usize {
        (0..self.d()).map(|k| self.core_len(k)).sum()
    }
    /// Compression against a dense N x D table.
    pub fn compression(&self) -> f64 {
        self.num_embeddings as f64 * self.dim() as f64 / self.num_params() as f64
    }
    /// Row digits of `index` (core 0 most significant).
    pub fn digits(&self, index: u64) -> Vec<usize> {
        let mut out = vec![0; self.d()];
        let mut rest = index;
        for k in (0..self.d()).rev() {
            out[k] = (rest % self.p[k] as u64) as usize;
            rest /= self.p[k] as u64;
        }
        out
    }
    /// Q_k = q_0 * ... * q_{k-1} (Q_0 = 1).
    pub fn q_prefix(&self, k: usize) -> usize {
        self.q[..k].iter().product()
    }
    /// Checks that `cores` have this shape's lengths.
    pub fn check_cores(&self, cores: &[Vec<f32>]) -> Result<()> {
        if cores.len() != self.d() {
            return Err(Error::shape(
                None,
                format!("{} cores given for a {}-core shape", cores.len(), self.d()),
            ));
        }
        for (k, c) in cores.iter().enumerate() {
            if c.len() != self.core_len(k) {
                let [r, cc] = self.core_shape(k);
                return Err(Error::shape(
                    None,
                    format!(
                        "core {k} has {} elements; shape [{r}, {cc}] needs {}",
                        c.len(),
                        self.core_len(k)
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for TtShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "N={} D={} p={:?} q={:?} ranks={:?}",
            self.num_embeddings,
            self.dim(),
            self.p,
            self.q,
            self.interior_ranks()
        )
    }
}

/// How the rows of a bag are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// Sum of the (optionally weighted) rows; an empty bag is a zero row.
    Sum,
    /// Mean of the rows; an empty bag is a zero row; per-sample weights are not allowed.
    Mean,
}

/// One table of a group of TT tables stored as one: its shape and, per core, the first row of
/// its slices in the group's core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupTable {
    pub shape: TtShape,
    pub bases: Vec<usize>,
}
