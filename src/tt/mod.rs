//! TT tables: shapes, initialisation, the TT-EmbeddingBag module and checkpoints.

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

    /// The update kernels' uniform for a buffer of `len` elements.
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

pub mod batch;
pub mod checkpoint;
pub mod lookups;
pub mod params;
pub mod table;

pub use batch::{Bags, Ids};
pub use init::init_cores;
pub use lookups::{TtLookups, TtSaved};
pub use params::TtParams;
pub use table::{Mode, TtEmbeddingBag, TtOptions, TtTableBatch};
