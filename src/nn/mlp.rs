//! Multi-layer perceptrons on the GPU. Every weight and bias of a model's MLPs lives in one
//! [`ParamArena`] (and its gradients in a twin buffer of the same layout), so the whole dense
//! update is one dispatch. Widths are padded to multiples of 4 (vec4 loads); padding is zero
//! in parameters, activations and gradients, and stays zero through training.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Buf, GraphBuilder};
use crate::kernels::matmul::{record_gemm, record_weight_grad, Gemm, GemmVariant, WeightGrad};
use crate::kernels::optim::{
    arena_blocks, record_arena_update, ArenaSpan, ArenaUpdate, FiniteFlag, UpdateKind,
};
use crate::kernels::MatrixAt;
use crate::tt::init::Gauss;
use crate::tt::Optimizer;

/// Rounds up to a multiple of 4.
pub fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// A logical `rows x cols` tensor (or a vector of `cols`) stored at `offset` of the arena with
/// row stride `stride` (rows padded to `stored_rows`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaTensor {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub stored_rows: usize,
    pub stride: usize,
    pub offset: usize,
    /// A 1-D tensor (a bias).
    pub vector: bool,
}

impl ArenaTensor {
    /// Logical shape as a list.
    pub fn shape(&self) -> Vec<usize> {
        if self.vector {
            vec![self.cols]
        } else {
            vec![self.rows, self.cols]
        }
    }
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn stored_len(&self) -> usize {
        self.stored_rows * self.stride
    }
}

/// Values (256 bytes, the largest storage-offset alignment WebGPU allows a device to ask for)
/// every arena tensor's offset is a multiple of: each tensor can be bound on its own, so one
/// dispatch can write a weight's and a bias's gradients without two bindings of the whole arena
/// (writable aliasing, which WebGPU forbids). The padding is zero and never trained.
pub const TENSOR_ALIGN: usize = 64;

/// Lays tensors out in an arena before it exists.
#[derive(Debug, Default)]
pub struct ArenaLayout {
    tensors: Vec<ArenaTensor>,
    len: usize,
}

impl ArenaLayout {
    /// Adds a `rows x cols` matrix, padded to `pad4(rows) x pad4(cols)`.
    pub fn add_matrix(&mut self, name: &str, rows: usize, cols: usize) -> ArenaTensor {
        self.push(name, rows, cols, pad4(rows), false)
    }

    /// Adds a vector of `len` values, padded to `pad4(len)`.
    pub fn add_vector(&mut self, name: &str, len: usize) -> ArenaTensor {
        self.push(name, 1, len, 1, true)
    }

    fn push(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        stored_rows: usize,
        vector: bool,
    ) -> ArenaTensor {
        let t = ArenaTensor {
            name: name.to_string(),
            rows,
            cols,
            stored_rows,
            stride: pad4(cols),
            offset: self.len.div_ceil(TENSOR_ALIGN) * TENSOR_ALIGN,
            vector,
        };
        self.len = t.offset + t.stored_len();
        self.tensors.push(t.clone());
        t
    }
}

/// Every dense (MLP) parameter of a model with its gradient and optimizer state, in GPU buffers.
pub struct ParamArena {
    gpu: Gpu,
    tensors: Vec<ArenaTensor>,
    len: usize,
    params: wgpu::Buffer,
    /// Every weight transposed ([in, out] at the weight's offset): written with the weights,
    /// by [`ParamArena::set`] and by the update, so the step never transposes.
    params_t: wgpu::Buffer,
    grads: wgpu::Buffer,
    state: wgpu::Buffer,
    optimizer: Optimizer,
    opt_params: wgpu::Buffer,
    /// The update's table of tensors ([`arena_blocks`]) and its block count.
    blocks: wgpu::Buffer,
    block_count: usize,
}

impl std::fmt::Debug for ParamArena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamArena")
            .field("tensors", &self.tensors.len())
            .field("len", &self.len)
            .field("optimizer", &self.optimizer)
            .finish()
    }
}

impl ParamArena {
    /// An arena for `layout`'s tensors, all zero.
    pub fn new(gpu: &Gpu, layout: ArenaLayout, optimizer: Optimizer) -> Result<Self> {
        let bytes = layout.len.max(4) as u64 * 4;
        if bytes > gpu.max_binding() {
            return Err(Error::shape(
                None,
                format!(
                    "the MLP parameters need {bytes} bytes, over the adapter's binding limit {}",
                    gpu.max_binding()
                ),
            ));
        }
        let adagrad = matches!(optimizer, Optimizer::Adagrad { .. });
        let (table, block_count) = arena_blocks(&Self::spans(&layout.tensors));
        let a = ParamArena {
            gpu: gpu.clone(),
            len: layout.len,
            params: gpu.storage("mlp params", bytes),
            params_t: gpu.storage("mlp params transposed", bytes),
            grads: gpu.storage("mlp grads", bytes),
            state: gpu.storage("mlp optimizer state", if adagrad { bytes } else { 16 }),
            tensors: layout.tensors,
            optimizer,
            opt_params: gpu.uniform("mlp opt", 16),
            blocks: gpu.storage_from("mlp update blocks", &table),
            block_count,
        };
        a.write_opt_params();
        Ok(a)
    }

    /// The tensors as the update sees them.
    fn spans(tensors: &[ArenaTensor]) -> Vec<ArenaSpan> {
        tensors
            .iter()
            .map(|t| ArenaSpan {
                offset: t.offset,
                stride: t.stride,
                stored_rows: (!t.vector).then_some(t.stored_rows),
            })
            .collect()
    }

    fn write_opt_params(&self) {
        self.gpu
            .write(&self.opt_params, &[self.optimizer.params(self.len)]);
    }

    /// Changes the learning rate (takes effect at the next submit).
    pub fn set_learning_rate(&mut self, lr: f32) {
        self.optimizer.set_learning_rate(lr);
        self.write_opt_params();
    }

    pub fn tensors(&self) -> &[ArenaTensor] {
        &self.tensors
    }
    /// Parameters (logical, without padding).
    pub fn num_params(&self) -> usize {
        self.tensors.iter().map(|t| t.len()).sum()
    }
    pub fn params_buffer(&self) -> &wgpu::Buffer {
        &self.params
    }
    pub fn grads_buffer(&self) -> &wgpu::Buffer {
        &self.grads
    }

    fn tensor(&self, name: &str) -> Result<&ArenaTensor> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::input(None, format!("no MLP parameter named {name}")))
    }

    fn read(&self, buf: &wgpu::Buffer, name: &str) -> Result<Vec<f32>> {
        let t = self.tensor(name)?;
        let stored = self.gpu.read_f32(buf, t.offset, t.stored_len())?;
        Ok((0..t.rows)
            .flat_map(|r| stored[r * t.stride..r * t.stride + t.cols].iter().copied())
            .collect())
    }

    /// Parameter `name` (logical layout, row-major).
    pub fn get(&self, name: &str) -> Result<Vec<f32>> {
        self.read(&self.params, name)
    }
    /// The gradient of `name` from the last backward.
    pub fn grad(&self, name: &str) -> Result<Vec<f32>> {
        self.read(&self.grads, name)
    }
    /// The Adagrad state of `name` (None for other optimizers).
    pub fn state(&self, name: &str) -> Result<Option<Vec<f32>>> {
        if !matches!(self.optimizer, Optimizer::Adagrad { .. }) {
            return Ok(None);
        }
        self.read(&self.state, name).map(Some)
    }

    fn write(&self, buf: &wgpu::Buffer, name: &str, values: &[f32], what: &str) -> Result<()> {
        let t = self.tensor(name)?;
        if values.len() != t.len() {
            return Err(Error::input(
                None,
                format!(
                    "{name}: {} values given, the {what} has {:?} = {}",
                    values.len(),
                    t.shape(),
                    t.len()
                ),
            ));
        }
        if let Some(i) = values.iter().position(|x| !x.is_finite()) {
            return Err(Error::input(
                None,
                format!("{name}: value {} at position {i} is not finite", values[i]),
            ));
        }
        let mut stored = vec![0f32; t.stored_len()];
        for r in 0..t.rows {
            stored[r * t.stride..r * t.stride + t.cols]
                .copy_from_slice(&values[r * t.cols..(r + 1) * t.cols]);
        }
        self.gpu
            .queue()
            .write_buffer(buf, t.offset as u64 * 4, bytemuck::cast_slice(&stored));
        if buf == &self.params && !t.vector {
            // The weight's transposed copy: [stride, stored_rows] at the same offset.
            let mut tr = vec![0f32; t.stored_len()];
            for r in 0..t.stored_rows {
                for c in 0..t.stride {
                    tr[c * t.stored_rows + r] = stored[r * t.stride + c];
                }
            }
            self.gpu.queue().write_buffer(
                &self.params_t,
                t.offset as u64 * 4,
                bytemuck::cast_slice(&tr),
            );
        }
        Ok(())
    }

    /// Replaces parameter `name` (logical layout), and a weight's transposed copy with it.
    pub fn set(&mut self, name: &str, values: &[f32]) -> Result<()> {
        self.write(&self.params, name, values, "parameter")
    }
    /// Replaces the Adagrad state of `name` (resuming).
    pub fn set_state(&mut self, name: &str, values: &[f32]) -> Result<()> {
        if !matches!(self.optimizer, Optimizer::Adagrad { .. }) {
            return Err(Error::input(
                None,
                format!("{name}: optimizer state given but the optimizer keeps none"),
            ));
        }
        self.write(&self.state, name, values, "state")
    }

    /// Adds the update of every parameter from its gradient, each weight's transposed copy
    /// written with it: one dispatch.
    pub fn record_update(&self, g: &mut GraphBuilder, tag: &str) -> Result<()> {
        self.record_update_checked(g, tag, None).map(|_| ())
    }

    /// [`ParamArena::record_update`] with the finiteness check of the new values fused into it
    /// (`check`: where it reports). Returns whether an update (and so the check) was recorded:
    /// false for [`Optimizer::None`], whose parameters the step does not change.
    pub fn record_update_checked(
        &self,
        g: &mut GraphBuilder,
        tag: &str,
        check: Option<FiniteFlag>,
    ) -> Result<bool> {
        let kind = match self.optimizer {
            Optimizer::None => return Ok(false),
            Optimizer::Sgd { .. } => UpdateKind::Sgd,
            Optimizer::Adagrad { .. } => UpdateKind::Adagrad,
        };
        let stored = |m: bool| -> usize {
            self.tensors
                .iter()
                .filter(|t| t.vector != m)
                .map(|t| t.stored_len())
                .sum()
        };
        record_arena_update(
            g,
            &format!("{tag} update"),
            &ArenaUpdate {
                kind,
                params: Buf::from(&self.opt_params),
                grad: Buf::from(&self.grads),
                weight: Buf::from(&self.params),
                state: Buf::from(&self.state),
                weight_t: Buf::from(&self.params_t),
                tensors: Buf::from(&self.blocks),
                tensor_count: self.tensors.len(),
                blocks: self.block_count,
                values: stored(true) + stored(false),
                matrix_values: stored(true),
                check,
            },
        )?;
        Ok(true)
    }

    /// The transposed copy of weight `name` (logical layout `[in, out]`), as the forward reads
    /// it.
    pub fn get_transposed(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensor(name)?;
        let stored = self
            .gpu
            .read_f32(&self.params_t, t.offset, t.stored_len())?;
        Ok((0..t.cols)
            .flat_map(|c| {
                stored[c * t.stored_rows..c * t.stored_rows + t.rows]
                    .iter()
                    .copied()
            })
            .collect())
    }

    /// Weight `t` (padded `[stored_rows, stride]`) as a product's operand: for layers outside
    /// [`Mlp`] whose weights live in the arena (the MD tables' projections, `nn::md`).
    pub fn weight_at(&self, t: &ArenaTensor) -> MatrixAt {
        self.at(&self.params, t)
    }
    /// Weight `t`'s transposed copy (`[stride, stored_rows]`) as a product's operand.
    pub fn weight_t_at(&self, t: &ArenaTensor) -> MatrixAt {
        self.at_t(t)
    }
    /// Weight `t`'s gradient bound on its own, as a weight-gradient product's output.
    pub fn grad_at(&self, t: &ArenaTensor) -> MatrixAt {
        self.own(&self.grads, t)
    }

    /// Where weight `t`'s transposed copy lives: [stride, stored_rows] at its offset.
    fn at_t(&self, t: &ArenaTensor) -> MatrixAt {
        MatrixAt {
            buf: Buf::from(&self.params_t),
            stride: t.stored_rows,
            offset: t.offset,
        }
    }

    fn at(&self, buf: &wgpu::Buffer, t: &ArenaTensor) -> MatrixAt {
        MatrixAt {
            buf: Buf::from(buf),
            stride: t.stride,
            offset: t.offset,
        }
    }

    /// Tensor `t` of `buf` bound on its own ([`TENSOR_ALIGN`]), for a dispatch that writes two
    /// tensors of one arena.
    fn own(&self, buf: &wgpu::Buffer, t: &ArenaTensor) -> MatrixAt {
        MatrixAt {
            buf: Buf::Slice {
                buffer: buf.clone(),
                offset: t.offset as u64 * 4,
                size: t.stored_len() as u64 * 4,
            },
            stride: t.stride,
            offset: 0,
        }
    }
}

/// One linear layer: its width, whether a ReLU follows, and where its weight and bias live.
#[derive(Clone, Debug)]
pub struct Layer {
    pub inputs: usize,
    pub outputs: usize,
    pub relu: bool,
    pub weight: ArenaTensor,
    pub bias: ArenaTensor,
}

/// A stack of linear layers (dlrm's `create_mlp`), named as dlrm's state dict:
/// `{prefix}.{2i}.weight` `[out, in]` and `{prefix}.{2i}.bias` `[out]`.
#[derive(Clone, Debug)]
pub struct Mlp {
    pub layers: Vec<Layer>,
}

/// A batch of B activations (or their gradients) of one width in both layouts the products
/// read: `rows` batch-major `[B, pad4(width)]` and `cols` feature-major `[pad4(width), pad4(B)]`.
#[derive(Clone, Debug)]
pub struct Act {
    pub rows: MatrixAt,
    pub cols: MatrixAt,
}

/// Declares transients for an activation of `width` values per sample in both layouts.
pub fn act_transient(g: &mut GraphBuilder, tag: &str, batch: usize, width: usize) -> Act {
    let (wp, bp) = (pad4(width), pad4(batch));
    Act {
        rows: MatrixAt::dense(
            g.transient(&format!("{tag} rows"), (batch * wp) as u64 * 4),
            wp,
        ),
        cols: MatrixAt::dense(
            g.transient(&format!("{tag} cols"), (wp * bp) as u64 * 4),
            bp,
        ),
    }
}

/// The activations of one forward, kept for the backward: the input and each layer's output
/// (batch-major).
#[derive(Clone, Debug)]
pub struct MlpActivations {
    pub input: Act,
    pub outputs: Vec<MatrixAt>,
}

impl Mlp {
    /// Declares the layers of `widths` (input first) in `layout`; ReLU after every layer, or
    /// after all but the last when `relu_last` is false.
    pub fn declare(
        layout: &mut ArenaLayout,
        prefix: &str,
        widths: &[usize],
        relu_last: bool,
    ) -> Result<Self> {
        if widths.len() < 2 || widths.contains(&0) {
            return Err(Error::shape(
                None,
                format!("MLP {prefix} needs at least two non-zero widths, got {widths:?}"),
            ));
        }
        let n = widths.len() - 1;
        let layers = (0..n)
            .map(|i| Layer {
                inputs: widths[i],
                outputs: widths[i + 1],
                relu: relu_last || i + 1 < n,
                weight: layout.add_matrix(
                    &format!("{prefix}.{}.weight", 2 * i),
                    widths[i + 1],
                    widths[i],
                ),
                bias: layout.add_vector(&format!("{prefix}.{}.bias", 2 * i), widths[i + 1]),
            })
            .collect();
        Ok(Mlp { layers })
    }

    /// Padded width of the input.
    pub fn input_stride(&self) -> usize {
        pad4(self.layers[0].inputs)
    }
    /// Padded width of the output.
    pub fn output_stride(&self) -> usize {
        pad4(self.layers.last().expect("layers").outputs)
    }
    /// Parameters of all layers.
    pub fn num_params(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weight.len() + l.bias.len())
            .sum()
    }
    /// Multiply-adds per sample of the forward.
    pub fn macs_per_sample(&self) -> usize {
        self.layers.iter().map(|l| l.inputs * l.outputs).sum()
    }

    /// dlrm's initialisation of every layer: W ~ N(0, sqrt(2/(in+out))), b ~ N(0, sqrt(1/out)),
    /// from `seed`.
    pub fn init(&self, arena: &mut ParamArena, seed: u64) -> Result<()> {
        let mut rng = Gauss::new(seed);
        for l in &self.layers {
            let sw = (2.0 / (l.inputs + l.outputs) as f64).sqrt();
            let sb = (1.0 / l.outputs as f64).sqrt();
            let w: Vec<f32> = (0..l.weight.len())
                .map(|_| (rng.sample() * sw) as f32)
                .collect();
            let b: Vec<f32> = (0..l.bias.len())
                .map(|_| (rng.sample() * sb) as f32)
                .collect();
            arena.set(&l.weight.name, &w)?;
            arena.set(&l.bias.name, &b)?;
        }
        Ok(())
    }

    /// Adds the forward of `batch` samples of `input` (pad columns zero). Layer outputs go to
    /// transients; the last one's batch-major copy to `output` when given, and its
    /// feature-major copy to `output_t` when given. Reads the weights' transposed copies (kept
    /// by [`ParamArena::set`] and [`ParamArena::record_update`]).
    #[allow(clippy::too_many_arguments)]
    pub fn record_forward(
        &self,
        g: &mut GraphBuilder,
        arena: &ParamArena,
        input: Act,
        output: Option<MatrixAt>,
        output_t: Option<MatrixAt>,
        batch: usize,
        variant: GemmVariant,
        tag: &str,
    ) -> Result<MlpActivations> {
        let mut outputs = Vec::with_capacity(self.layers.len());
        let mut x_t = input.cols.clone();
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            let out_p = pad4(l.outputs);
            let (y, y_t) = if i == last {
                let y = output.clone().unwrap_or_else(|| {
                    MatrixAt::dense(
                        g.transient(&format!("{tag} y{i} rows"), (batch * out_p) as u64 * 4),
                        out_p,
                    )
                });
                (y, output_t.clone())
            } else {
                let a = act_transient(g, &format!("{tag} y{i}"), batch, l.outputs);
                (a.rows, Some(a.cols))
            };
            record_gemm(
                g,
                format!("{tag} layer {i} forward"),
                &Gemm {
                    m: batch,
                    n: out_p,
                    k: pad4(l.inputs),
                    a: x_t.clone(),
                    b: arena.at_t(&l.weight),
                    c: Some(y.clone()),
                    ct: y_t.clone(),
                    bias: Some((Buf::from(&arena.params), l.bias.offset)),
                    relu: l.relu,
                    mask: None,
                },
                variant,
            )?;
            outputs.push(y);
            if let Some(t) = y_t {
                x_t = t;
            }
        }
        Ok(MlpActivations { input, outputs })
    }

    /// Adds the backward from `dz`, the gradient w.r.t. the last layer's pre-activation in both
    /// layouts (the caller applies the last ReLU's mask, e.g. fused into its own kernel): weight
    /// and bias gradients of every layer into the arena's gradients, and, when `dx` is given,
    /// the gradient w.r.t. the input: its batch-major copy, and its feature-major copy when
    /// `dx_t` is given.
    #[allow(clippy::too_many_arguments)]
    pub fn record_backward(
        &self,
        g: &mut GraphBuilder,
        arena: &ParamArena,
        acts: &MlpActivations,
        dz: Act,
        dx: Option<MatrixAt>,
        dx_t: Option<MatrixAt>,
        batch: usize,
        variant: GemmVariant,
        tag: &str,
    ) -> Result<()> {
        let mut dz = dz;
        for i in (0..self.layers.len()).rev() {
            let l = &self.layers[i];
            let x = if i == 0 {
                acts.input.rows.clone()
            } else {
                acts.outputs[i - 1].clone()
            };
            let (in_p, out_p) = (pad4(l.inputs), pad4(l.outputs));
            record_weight_grad(
                g,
                format!("{tag} layer {i} weight grad"),
                &WeightGrad {
                    m: out_p,
                    n: in_p,
                    k: batch,
                    a: dz.rows.clone(),
                    b: x,
                    // Weight and bias gradients bound apart: both are written.
                    c: arena.own(&arena.grads, &l.weight),
                    bias_grad: Some((arena.own(&arena.grads, &l.bias).buf, 0)),
                },
                variant,
            )?;
            let target = if i > 0 {
                Some(act_transient(
                    g,
                    &format!("{tag} dz{}", i - 1),
                    batch,
                    l.inputs,
                ))
            } else {
                dx.clone().map(|rows| Act {
                    rows,
                    cols: dx_t.clone().unwrap_or(MatrixAt {
                        buf: Buf::from(g.gpu().placeholder_rw()),
                        stride: 4,
                        offset: 0,
                    }),
                })
            };
            let Some(target) = target else { break };
            let store_t = i > 0 || dx_t.is_some();
            // dZ_{i-1} = (dZ_i W_i) * relu'(Y_{i-1}); the input of layer 0 has no ReLU.
            let mask = (i > 0 && self.layers[i - 1].relu).then(|| acts.outputs[i - 1].clone());
            record_gemm(
                g,
                format!("{tag} layer {i} input grad"),
                &Gemm {
                    m: batch,
                    n: in_p,
                    k: out_p,
                    a: dz.cols.clone(),
                    b: arena.at(&arena.params, &l.weight),
                    c: Some(target.rows.clone()),
                    ct: store_t.then(|| target.cols.clone()),
                    bias: None,
                    relu: false,
                    mask,
                },
                variant,
            )?;
            dz = target;
        }
        Ok(())
    }
}
