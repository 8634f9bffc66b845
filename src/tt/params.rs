//! The GPU-resident state of one TT table: cores, their dense gradients, optimizer state and the
//! optimizer's parameters. Recording lookups against it is [`crate::tt::TtLookups`]'s job, so a
//! table can take part in any step graph (its own, or a whole model's).

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Buf, GraphBuilder};
use crate::kernels::optim::{record_update, OptParams, UpdateKind};
use crate::tt::table::TtOptions;
use crate::tt::{init_cores, Optimizer, TtShape};

/// Cores, gradients and optimizer state of a TT table, in GPU buffers.
pub struct TtParams {
    gpu: Gpu,
    shape: TtShape,
    options: TtOptions,
    cores: Vec<wgpu::Buffer>,
    /// Per-slice transposed copies of cores 1..d-1, refreshed by each backward: the transposed
    /// chain then reads contiguous rows (None where the shapes do not allow the vec4 path).
    cores_t: Vec<Option<wgpu::Buffer>>,
    grads: Vec<wgpu::Buffer>,
    /// Adagrad accumulators (a 16-byte placeholder per core otherwise).
    state: Vec<wgpu::Buffer>,
    opt_params: Vec<wgpu::Buffer>,
}

impl std::fmt::Debug for TtParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtParams")
            .field("shape", &self.shape)
            .field("options", &self.options)
            .finish()
    }
}

/// Whether core k's backward product runs on a transposed copy: the plain vec4 chain needs
/// q_k R_{k+1} and R_k to be multiples of 4.
pub(crate) fn transposed_backward(shape: &TtShape, k: usize) -> bool {
    k >= 1
        && (shape.q[k] * shape.ranks[k + 1]).is_multiple_of(4)
        && shape.ranks[k].is_multiple_of(4)
}

fn check_finite(cores: &[Vec<f32>]) -> Result<()> {
    if let Some(i) = cores.iter().flatten().position(|x| !x.is_finite()) {
        return Err(Error::shape(
            None,
            format!("core values must be finite; element {i} (over all cores) is not"),
        ));
    }
    Ok(())
}

impl TtParams {
    /// Parameters of `shape` with cores drawn by `options.init`.
    pub fn new(gpu: &Gpu, shape: TtShape, options: TtOptions) -> Result<Self> {
        let cores = init_cores(&shape, options.init, options.seed);
        Self::from_cores(gpu, shape, &cores, options)
    }

    /// Parameters with the given cores (core k row-major `[p_k, R_k q_k R_{k+1}]`).
    pub fn from_cores(
        gpu: &Gpu,
        shape: TtShape,
        cores: &[Vec<f32>],
        options: TtOptions,
    ) -> Result<Self> {
        shape.check_cores(cores)?;
        check_finite(cores)?;
        if let Some(0) = options.max_chunk_lookups {
            return Err(Error::input(None, "max_chunk_lookups is 0"));
        }
        let d = shape.d();
        for k in 0..d {
            let bytes = shape.core_len(k) as u64 * 4;
            if bytes > gpu.max_binding() {
                return Err(Error::shape(
                    None,
                    format!(
                        "core {k} needs {bytes} bytes, over the adapter's {} byte binding limit",
                        gpu.max_binding()
                    ),
                ));
            }
        }
        let cores_buf: Vec<_> = (0..d)
            .map(|k| gpu.storage_from(&format!("tt core {k}"), &cores[k]))
            .collect();
        let cores_t = (0..d)
            .map(|k| {
                transposed_backward(&shape, k).then(|| {
                    gpu.storage(
                        &format!("tt core {k} transposed"),
                        shape.core_len(k) as u64 * 4,
                    )
                })
            })
            .collect();
        let grads = (0..d)
            .map(|k| gpu.storage(&format!("tt grad {k}"), shape.core_len(k) as u64 * 4))
            .collect();
        let adagrad = matches!(options.optimizer, Optimizer::Adagrad { .. });
        let state = (0..d)
            .map(|k| {
                let len = if adagrad { shape.core_len(k) } else { 4 };
                gpu.storage_from(&format!("tt state {k}"), &vec![0f32; len])
            })
            .collect();
        let opt_params = (0..d)
            .map(|k| gpu.uniform(&format!("tt opt {k}"), 16))
            .collect();
        let t = TtParams {
            gpu: gpu.clone(),
            shape,
            options,
            cores: cores_buf,
            cores_t,
            grads,
            state,
            opt_params,
        };
        t.write_opt_params();
        Ok(t)
    }

    fn write_opt_params(&self) {
        let (lr, eps) = match self.options.optimizer {
            Optimizer::None => (0.0, 0.0),
            Optimizer::Sgd { lr } => (lr, 0.0),
            Optimizer::Adagrad { lr, eps } => (lr, eps),
        };
        for k in 0..self.shape.d() {
            let p = OptParams {
                lr,
                eps,
                len: self.shape.core_len(k) as u32,
                _pad: 0,
            };
            self.gpu.write(&self.opt_params[k], &[p]);
        }
    }

    pub fn shape(&self) -> &TtShape {
        &self.shape
    }
    pub fn options(&self) -> &TtOptions {
        &self.options
    }
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
    /// The GPU buffer of core k (for apps that bind it themselves).
    pub fn core_buffer(&self, k: usize) -> &wgpu::Buffer {
        &self.cores[k]
    }
    /// The GPU buffer of core k's dense gradient (written by each backward).
    pub fn grad_buffer(&self, k: usize) -> &wgpu::Buffer {
        &self.grads[k]
    }
    pub(crate) fn opt_buffer(&self, k: usize) -> &wgpu::Buffer {
        &self.opt_params[k]
    }
    pub(crate) fn state_buffer(&self, k: usize) -> &wgpu::Buffer {
        &self.state[k]
    }
    /// The fused update's kind (None for `Optimizer::None`).
    pub fn update_kind(&self) -> Option<UpdateKind> {
        match self.options.optimizer {
            Optimizer::None => None,
            Optimizer::Sgd { .. } => Some(UpdateKind::Sgd),
            Optimizer::Adagrad { .. } => Some(UpdateKind::Adagrad),
        }
    }
    pub(crate) fn core_t_buffer(&self, k: usize) -> Option<&wgpu::Buffer> {
        self.cores_t[k].as_ref()
    }
    /// Parameter count (sum over cores of p_k R_k q_k R_{k+1}).
    pub fn num_params(&self) -> usize {
        (0..self.shape.d()).map(|k| self.shape.core_len(k)).sum()
    }

    /// Changes the learning rate of the fused optimizer; the kind and eps stay. Takes effect at
    /// the next submit.
    pub fn set_learning_rate(&mut self, lr: f32) {
        match &mut self.options.optimizer {
            Optimizer::Sgd { lr: l } | Optimizer::Adagrad { lr: l, .. } => *l = lr,
            Optimizer::None => {}
        }
        self.write_opt_params();
    }

    /// The cores, read back.
    pub fn cores(&self) -> Result<Vec<Vec<f32>>> {
        (0..self.shape.d())
            .map(|k| self.gpu.read_f32(&self.cores[k], 0, self.shape.core_len(k)))
            .collect()
    }
    /// The dense core gradients of the last backward.
    pub fn grads(&self) -> Result<Vec<Vec<f32>>> {
        (0..self.shape.d())
            .map(|k| self.gpu.read_f32(&self.grads[k], 0, self.shape.core_len(k)))
            .collect()
    }
    /// The Adagrad accumulators (None for other optimizers).
    pub fn optimizer_state(&self) -> Result<Option<Vec<Vec<f32>>>> {
        if !matches!(self.options.optimizer, Optimizer::Adagrad { .. }) {
            return Ok(None);
        }
        let s: Result<Vec<_>> = (0..self.shape.d())
            .map(|k| self.gpu.read_f32(&self.state[k], 0, self.shape.core_len(k)))
            .collect();
        s.map(Some)
    }
    /// Replaces the cores (and resets the optimizer state).
    pub fn set_cores(&mut self, cores: &[Vec<f32>]) -> Result<()> {
        self.shape.check_cores(cores)?;
        check_finite(cores)?;
        for (k, core) in cores.iter().enumerate() {
            self.gpu.write(&self.cores[k], core);
            if matches!(self.options.optimizer, Optimizer::Adagrad { .. }) {
                self.gpu
                    .write(&self.state[k], &vec![0f32; self.shape.core_len(k)]);
            }
        }
        Ok(())
    }
    /// Restores Adagrad accumulators saved with [`TtParams::optimizer_state`] (resuming).
    pub fn set_optimizer_state(&mut self, state: &[Vec<f32>]) -> Result<()> {
        if !matches!(self.options.optimizer, Optimizer::Adagrad { .. }) {
            return Err(Error::input(
                None,
                "optimizer state given for a table whose optimizer keeps none (not Adagrad)",
            ));
        }
        self.shape.check_cores(state)?;
        if let Some(i) = state
            .iter()
            .flatten()
            .position(|x| !(x.is_finite() && *x >= 0.0))
        {
            return Err(Error::input(
                None,
                format!("Adagrad state must be finite and >= 0; element {i} is not"),
            ));
        }
        for (k, s) in state.iter().enumerate() {
            self.gpu.write(&self.state[k], s);
        }
        Ok(())
    }

    /// Adds the update of every core from its gradient, a pass over every element (nothing for
    /// `Optimizer::None`). [`crate::tt::TtLookups::record_backward`] records it, or fuses the
    /// update of the touched rows into the gradient kernels where it can.
    pub fn record_update(&self, g: &mut GraphBuilder, tag: &str) -> Result<()> {
        let Some(kind) = self.update_kind() else {
            return Ok(());
        };
        for k in 0..self.shape.d() {
            record_update(
                g,
                &format!("{tag} update core {k}"),
                kind,
                Buf::from(&self.opt_params[k]),
                Buf::from(&self.grads[k]),
                Buf::from(&self.cores[k]),
                Buf::from(&self.state[k]),
                self.shape.core_len(k),
            )?;
        }
        Ok(())
    }
}
