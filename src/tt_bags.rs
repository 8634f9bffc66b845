//! Bags of lookups as the caller gives them (ids as u32 or i64, B+1 offsets, optional
//! per-sample weights), their validation against a table (every problem named with its position
//! and value), and where a batch's pooled rows go ([`Placement`]). Plain data, no GPU: below both
//! the GPU tables ([`crate::tt`], which re-exports these types) and the routing twin
//! ([`crate::twin::tt_route`]), which take the same inputs.

use crate::error::{Error, Result};
use crate::tt_shape::{Pooling, TtShape};

/// Integer ids as the caller holds them: u32 or i64 (PyTorch's default index type).
#[derive(Clone, Copy, Debug)]
pub enum Ids<'a> {
    U32(&'a [u32]),
    I64(&'a [i64]),
}

impl Ids<'_> {
    pub fn len(&self) -> usize {
        match self {
            Ids::U32(v) => v.len(),
            Ids::I64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Element `i` widened to i64.
    pub fn get(&self, i: usize) -> i64 {
        match self {
            Ids::U32(v) => v[i] as i64,
            Ids::I64(v) => v[i],
        }
    }
}

impl<'a> From<&'a [u32]> for Ids<'a> {
    fn from(v: &'a [u32]) -> Self {
        Ids::U32(v)
    }
}
impl<'a> From<&'a [i64]> for Ids<'a> {
    fn from(v: &'a [i64]) -> Self {
        Ids::I64(v)
    }
}
impl<'a> From<&'a Vec<u32>> for Ids<'a> {
    fn from(v: &'a Vec<u32>) -> Self {
        Ids::U32(v)
    }
}
impl<'a> From<&'a Vec<i64>> for Ids<'a> {
    fn from(v: &'a Vec<i64>) -> Self {
        Ids::I64(v)
    }
}

/// A batch of B bags: `indices` of all lookups, B+1 `offsets` (`offsets[0] = 0`,
/// `offsets[B] = indices.len()`, non-decreasing), optional per-sample `weights` (sum pooling only).
#[derive(Clone, Copy, Debug)]
pub struct Bags<'a> {
    pub indices: Ids<'a>,
    pub offsets: Ids<'a>,
    pub weights: Option<&'a [f32]>,
}

impl<'a> Bags<'a> {
    pub fn new(indices: impl Into<Ids<'a>>, offsets: impl Into<Ids<'a>>) -> Self {
        Bags {
            indices: indices.into(),
            offsets: offsets.into(),
            weights: None,
        }
    }
    pub fn with_weights(mut self, weights: &'a [f32]) -> Self {
        self.weights = Some(weights);
        self
    }
    /// Number of bags B (0 when offsets is empty, which validation rejects).
    pub fn num_bags(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    /// Number of lookups.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Checks the batch against a table: every problem is named with its position and value.
    pub fn validate(&self, shape: &TtShape, pooling: Pooling) -> Result<()> {
        let nnz = self.indices.len();
        if nnz >= (1 << 31) {
            return Err(Error::input(
                None,
                format!("{nnz} lookups in one call; at most 2^31 - 1"),
            ));
        }
        let no = self.offsets.len();
        if no == 0 {
            return Err(Error::input(
                None,
                "offsets is empty; B bags need B+1 offsets (the last = number of indices)",
            ));
        }
        if self.offsets.get(0) != 0 {
            return Err(Error::input(
                None,
                format!("offsets[0] = {}; it must be 0", self.offsets.get(0)),
            ));
        }
        for i in 1..no {
            let (a, b) = (self.offsets.get(i - 1), self.offsets.get(i));
            if b < a {
                return Err(Error::input(
                    None,
                    format!("offsets decrease at position {i}: {a} then {b}"),
                ));
            }
        }
        let last = self.offsets.get(no - 1);
        if last != nnz as i64 {
            return Err(Error::input(
                None,
                format!("offsets[{}] = {last} but there are {nnz} indices; the last offset must equal the number of indices", no - 1),
            ));
        }
        let n = shape.num_embeddings as i64;
        for i in 0..nnz {
            let v = self.indices.get(i);
            if v < 0 || v >= n {
                return Err(Error::input(
                    None,
                    format!("index {v} at position {i} is out of range; the table has {n} rows (0..{n})"),
                ));
            }
        }
        if let Some(w) = self.weights {
            if pooling == Pooling::Mean {
                return Err(Error::input(
                    None,
                    "per-sample weights are only allowed with sum pooling, not mean",
                ));
            }
            if w.len() != nnz {
                return Err(Error::input(
                    None,
                    format!("{} per-sample weights for {nnz} indices", w.len()),
                ));
            }
            if let Some(i) = w.iter().position(|x| !x.is_finite()) {
                return Err(Error::input(
                    None,
                    format!("per-sample weight at position {i} is {}", w[i]),
                ));
            }
        }
        Ok(())
    }
}

/// Where pooled rows go: bag b of table t at element `col[t] + b * stride[t]` of the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub col: Vec<usize>,
    pub stride: Vec<usize>,
}

impl Placement {
    /// One table's bags as the rows of a dense `[B, D]` matrix.
    pub fn dense(dim: usize) -> Self {
        Placement {
            col: vec![0],
            stride: vec![dim],
        }
    }
}
