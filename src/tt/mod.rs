//! TT tables: shapes ([`TtShape`], [`TtShape::auto`], [`shapes`]), initialisation ([`init`]),
//! the TT-EmbeddingBag ([`TtEmbeddingBag`], several in one call: [`TtTableBatch`]) with its
//! options ([`TtOptions`], [`Pooling`], [`Optimizer`]), its GPU state ([`TtParams`]) and
//! checkpoints ([`checkpoint`]).
//!
//! Core k is stored row-major as `[p_k, R_k q_k R_{k+1}]`, the reference (FBTT-Embedding)
//! layout, so cores move between ttrec and PyTorch unchanged. Lookups are
//! [`Bags`]: indices (u32 or i64) and B+1 offsets, optionally per-sample weights.

pub mod init;
pub mod shapes;

pub use crate::shape::{Pooling, TtShape};
pub use init::TtInit;
pub use shapes::suggested_tt_shapes;

/// The update fused into the backward pass (the reference's `sparse=True`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// No update: backward accumulates dense core gradients.
    None,
    /// W <- W - lr * g.
    Sgd { lr: f32 },
    /// s <- s + g^2; W <- W - lr * g / (sqrt(s) + eps); s starts at 0.
    Adagrad { lr: f32, eps: f32 },
}

impl Optimizer {
    /// Changes the learning rate; the kind (and eps) stay.
    pub fn set_learning_rate(&mut self, lr: f32) {
        match self {
            Optimizer::Sgd { lr: l } | Optimizer::Adagrad { lr: l, .. } => *l = lr,
            Optimizer::None => {}
        }
    }

    /// The update kernels' uniform for a buffer of `len` elements (internal).
    #[doc(hidden)]
    pub fn params(&self, len: usize) -> crate::kernels::optim::OptParams {
        let (lr, eps) = match *self {
            Optimizer::None => (0.0, 0.0),
            Optimizer::Sgd { lr } => (lr, 0.0),
            Optimizer::Adagrad { lr, eps } => (lr, eps),
        };
        crate::kernels::optim::OptParams {
            lr,
            eps,
            len: len as u32,
            _pad: 0,
        }
    }
}

/// **Unstable internals**: batch preparation (digits, sorting, pieces) for the kernels; public
/// for the crate's tests only, hidden from the docs. [`Bags`] and [`Ids`] are re-exported.
#[doc(hidden)]
pub mod batch;
pub mod cache;
pub mod checkpoint;
/// **Unstable internals**: recording a table's lookups into a step graph; public for the crate's
/// tests and models only, hidden from the docs, may change in any release.
#[doc(hidden)]
pub mod lookups;
#[doc(hidden)]
pub mod params;
#[doc(hidden)]
pub mod table;

pub use crate::kernels::route::SortStrategy;
pub use crate::kernels::tt::{CoreGradStrategy, TtKernels};
pub use batch::{Bags, Ids};
pub use init::init_cores;
#[doc(hidden)]
pub use lookups::{TtLookups, TtSaved};
pub use params::TtParams;
pub use table::{Mode, TtEmbeddingBag, TtOptions, TtTableBatch, DEFAULT_SCRATCH_BYTES};
