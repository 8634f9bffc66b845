//! A TT table's options besides its shape ([`TtOptions`]: pooling, the fused optimizer,
//! initialisation, scratch bound, kernel variants, the optional row cache) and the optimizer
//! ([`Optimizer`]). Plain values, read by the table's state ([`crate::tt::TtParams`]) and its
//! lookups.

use crate::cache::CacheConfig;
pub use crate::gpu::shaders::CorePrecision;
use crate::kernels::optim::OptParams;
use crate::kernels::tt::TtKernels;
use crate::tt::init::TtInit;
use crate::tt_shape::Pooling;

/// Default bound on scratch memory per call: lookups are processed in chunks so that no call needs
/// more, whatever the batch.
pub const DEFAULT_SCRATCH_BYTES: u64 = 96 << 20;

/// Options of a TT table besides its shape. The default: sum pooling, SGD with learning rate
/// 0.1, the sampled-Gaussian initialisation from seed 0.
///
/// ```
/// use ttrec::tt::{Optimizer, Pooling, TtInit, TtOptions};
/// let options = TtOptions {
///     pooling: Pooling::Mean,
///     optimizer: Optimizer::Adagrad { lr: 0.1, eps: 1e-10 }, // the reference's defaults
///     init: TtInit::SampledGaussian,
///     seed: 7,
///     ..TtOptions::default()
/// };
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct TtOptions {
    pub pooling: Pooling,
    pub optimizer: Optimizer,
    pub init: TtInit,
    pub seed: u64,
    /// Upper bound on the scratch bytes of one call (chunking keeps below it).
    pub scratch_bytes: u64,
    /// Optional hard cap on lookups per chunk (tests use it to force many chunks).
    pub max_chunk_lookups: Option<usize>,
    /// The kernel variants (None: chosen for the adapter when the table is created, see
    /// [`TtKernels::for_adapter`]). Every choice gives bitwise the same results.
    pub kernels: Option<TtKernels>,
    /// An LFU row cache of the most looked-up rows (None: no cache); see [`crate::cache`].
    /// Needs SGD or Adagrad: cached rows train directly.
    pub cache: Option<CacheConfig>,
    /// How the cores are stored on the GPU: f32, or f16 (half the memory, f32 arithmetic; needs
    /// `wgpu::Features::SHADER_F16`). Gradients and the Adagrad state stay f32.
    pub precision: CorePrecision,
}

impl Default for TtOptions {
    fn default() -> Self {
        TtOptions {
            pooling: Pooling::Sum,
            optimizer: Optimizer::Sgd { lr: 0.1 },
            init: TtInit::SampledGaussian,
            seed: 0,
            scratch_bytes: DEFAULT_SCRATCH_BYTES,
            max_chunk_lookups: None,
            kernels: None,
            cache: None,
            precision: CorePrecision::F32,
        }
    }
}

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
    pub fn params(&self, len: usize) -> OptParams {
        let (lr, eps) = match *self {
            Optimizer::None => (0.0, 0.0),
            Optimizer::Sgd { lr } => (lr, 0.0),
            Optimizer::Adagrad { lr, eps } => (lr, eps),
        };
        OptParams {
            lr,
            eps,
            len: len as u32,
            _pad: 0,
        }
    }
}
