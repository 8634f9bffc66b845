//! TT-EmbeddingBag on the GPU: cores, gradients and optimizer state live in GPU buffers; each call
//! (forward, backward, or both) is a plan built once per capacity and replayed with one submit.
//! Several tables run in one call through [`TtTableBatch`].

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Buf, GraphBuilder, Plan};
use crate::kernels::optim::{record_update, OptParams, UpdateKind};
use crate::kernels::tt::{
    record_chain, record_chain_sg, record_core_grad, record_pool, record_row_grad,
    record_transpose, ChainShape, ChunkParams, CoreGradShape, PieceLayout, PrefixSource,
};
use crate::tt::batch::{cut_pieces, prepare, Bags};
use crate::tt::{init_cores, Optimizer, Pooling, TtInit, TtShape};

/// Default bound on scratch memory per call: lookups are processed in chunks so that no call needs
/// more, whatever the batch.
pub const DEFAULT_SCRATCH_BYTES: u64 = 96 << 20;

/// Options of a TT table besides its shape.
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
    /// Use the subgroup kernels where the adapter has fixed-size subgroups and a product fits
    /// them (false: the portable kernels only; results are bitwise the same).
    pub subgroup_kernels: bool,
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
            subgroup_kernels: true,
        }
    }
}

/// What a call computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Forward,
    /// Recomputes the prefixes, then gradients and the fused update.
    Backward,
    /// Forward and backward sharing the prefixes, one submit.
    ForwardBackward,
}

impl Mode {
    fn forward_out(self) -> bool {
        matches!(self, Mode::Forward | Mode::ForwardBackward)
    }
    fn backward(self) -> bool {
        matches!(self, Mode::Backward | Mode::ForwardBackward)
    }
}

/// A TT-compressed embedding bag table on the GPU.
pub struct TtEmbeddingBag {
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
    plans: HashMap<(Mode, usize, usize), CallPlan>,
}

/// Per-table buffers of a call plan.
struct TableIo {
    nnz_cap: usize,
    bag_cap: usize,
    chunk: usize,
    chunk_params: Vec<wgpu::Buffer>,
    digits: wgpu::Buffer,
    bag: wgpu::Buffer,
    scale: wgpu::Buffer,
    offsets: wgpu::Buffer,
    sorted: wgpu::Buffer,
    segments: Vec<wgpu::Buffer>,
    /// Per core: its lookups cut into pieces of one digit, where the subgroup chain runs.
    pieces: Vec<Option<(PieceLayout, wgpu::Buffer)>>,
    out: wgpu::Buffer,
    dout: wgpu::Buffer,
}

struct CallPlan {
    plan: Plan,
    ios: Vec<TableIo>,
}

/// Whether core k's backward product runs on a transposed copy: the plain vec4 chain needs
/// q_k R_{k+1} and R_k to be multiples of 4.
fn transposed_backward(shape: &TtShape, k: usize) -> bool {
    k >= 1
        && (shape.q[k] * shape.ranks[k + 1]).is_multiple_of(4)
        && shape.ranks[k].is_multiple_of(4)
}

fn capacity(n: usize) -> usize {
    n.max(64).next_power_of_two()
}

impl TtEmbeddingBag {
    /// A table of `shape` with cores drawn by `options.init`.
    pub fn new(gpu: &Gpu, shape: TtShape, options: TtOptions) -> Result<Self> {
        let cores = init_cores(&shape, options.init, options.seed);
        Self::from_cores(gpu, shape, &cores, options)
    }

    /// A table with the given cores (core k row-major `[p_k, R_k q_k R_{k+1}]`).
    pub fn from_cores(
        gpu: &Gpu,
        shape: TtShape,
        cores: &[Vec<f32>],
        options: TtOptions,
    ) -> Result<Self> {
        shape.check_cores(cores)?;
        if let Some(i) = cores.iter().flatten().position(|x| !x.is_finite()) {
            return Err(Error::shape(
                None,
                format!("core values must be finite; element {i} (over all cores) is not"),
            ));
        }
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
        let t = TtEmbeddingBag {
            gpu: gpu.clone(),
            shape,
            options,
            cores: cores_buf,
            cores_t,
            grads,
            state,
            opt_params,
            plans: HashMap::new(),
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

    /// Changes the learning rate (and eps) of the fused optimizer; the kind stays.
    pub fn set_learning_rate(&mut self, lr: f32) {
        match &mut self.options.optimizer {
            Optimizer::Sgd { lr: l } | Optimizer::Adagrad { lr: l, .. } => *l = lr,
            Optimizer::None => {}
        }
        self.write_opt_params();
    }

    /// Lookups per chunk: the largest number whose scratch fits the budget and every binding.
    fn chunk_lookups(&self, nnz_cap: usize) -> usize {
        let s = &self.shape;
        let d = s.d();
        let mut per_lookup = 2 * s.dim(); // row and its gradient
        let mut largest = s.dim();
        for k in 1..d {
            let block = s.q_prefix(k) * s.ranks[k];
            // prefix P_k (k >= 2) and its gradient dP_k
            per_lookup += if k >= 2 { 2 * block } else { block };
            largest = largest.max(block);
        }
        let by_budget = (self.options.scratch_bytes / (per_lookup as u64 * 4)).max(1);
        let by_binding = (self.gpu.max_binding() / (largest as u64 * 4)).max(1);
        let mut c = by_budget.min(by_binding) as usize;
        if let Some(m) = self.options.max_chunk_lookups {
            c = c.min(m);
        }
        c.min(nnz_cap).max(1)
    }

    fn make_io(&self, nnz_cap: usize, bag_cap: usize) -> TableIo {
        let g = &self.gpu;
        let d = self.shape.d();
        let dim = self.shape.dim();
        let chunk = self.chunk_lookups(nnz_cap);
        let chunks = nnz_cap.div_ceil(chunk);
        let pieces = (0..d)
            .map(|k| {
                let layout = self.piece_layout(k, chunk)?;
                let bytes = (chunks * layout.per_chunk * layout.len) as u64 * 4;
                Some((layout, g.storage("tt pieces", bytes)))
            })
            .collect();
        TableIo {
            nnz_cap,
            bag_cap,
            chunk,
            chunk_params: (0..chunks)
                .map(|c| g.uniform(&format!("tt chunk {c}"), 32))
                .collect(),
            digits: g.storage("tt digits", (d * nnz_cap) as u64 * 4),
            bag: g.storage("tt bag", nnz_cap as u64 * 4),
            scale: g.storage("tt scale", nnz_cap as u64 * 4),
            offsets: g.storage("tt offsets", (bag_cap + 1) as u64 * 4),
            sorted: g.storage("tt sorted", (d * nnz_cap) as u64 * 4),
            segments: (0..d)
                .map(|k| g.storage("tt segments", (chunks * (self.shape.p[k] + 1)) as u64 * 4))
                .collect(),
            pieces,
            out: g.storage("tt out", (bag_cap * dim) as u64 * 4),
            dout: g.storage("tt dout", (bag_cap * dim) as u64 * 4),
        }
    }

    /// Forward product k: P_{k+1} = P_k * G_k[i_k] (P_1 is core 0's slice).
    fn forward_product(&self, k: usize) -> ChainShape {
        let s = &self.shape;
        ChainShape {
            m: s.q_prefix(k),
            k: s.ranks[k],
            n: s.q[k] * s.ranks[k + 1],
            core: k,
            trans_b: false,
            a_from_core: k == 1,
        }
    }

    /// Backward product k: dP_k = dP_{k+1} * G_k[i_k]^T, on the transposed copy where there is one.
    fn backward_product(&self, k: usize) -> ChainShape {
        let s = &self.shape;
        ChainShape {
            m: s.q_prefix(k),
            k: s.q[k] * s.ranks[k + 1],
            n: s.ranks[k],
            core: k,
            trans_b: self.cores_t[k].is_none(),
            a_from_core: false,
        }
    }

    /// The pieces of core k for the subgroup chain, where the adapter has fixed-size subgroups
    /// and one of core k's products fits the kernel.
    fn piece_layout(&self, k: usize, chunk: usize) -> Option<PieceLayout> {
        if k == 0 || !self.options.subgroup_kernels {
            return None;
        }
        let lanes = self.gpu.subgroup_size()? as usize;
        let layout = PieceLayout::new(lanes, self.shape.q_prefix(k), self.shape.p[k], chunk)?;
        (layout.fits(&self.forward_product(k)) || layout.fits(&self.backward_product(k)))
            .then_some(layout)
    }

    /// Adds product `shape` of core k for one chunk: the subgroup kernel where it fits.
    #[allow(clippy::too_many_arguments)]
    fn record_product(
        &self,
        g: &mut GraphBuilder,
        io: &TableIo,
        label: String,
        shape: ChainShape,
        chunk: Buf,
        a: Buf,
        b: Buf,
        out: Buf,
    ) -> Result<()> {
        let digits = Buf::from(&io.digits);
        match &io.pieces[shape.core] {
            Some((layout, pieces)) if layout.fits(&shape) => record_chain_sg(
                g,
                format!("{label} (subgroup)"),
                shape,
                *layout,
                self.shape.p[shape.core],
                chunk,
                digits,
                Buf::from(pieces),
                a,
                b,
                out,
            ),
            _ => record_chain(g, label, shape, chunk, digits, a, b, out, io.chunk),
        }
    }

    /// Adds this table's nodes for `mode` to `g`.
    fn record(&self, g: &mut GraphBuilder, io: &TableIo, mode: Mode, tag: &str) -> Result<()> {
        let s = &self.shape;
        let d = s.d();
        let dim = s.dim();
        let c = io.chunk;
        let f = 4u64;
        // Scratch shared by all chunks: prefixes P_k (k >= 2), the row, their gradients.
        let mut prefix: Vec<Option<Buf>> = vec![None; d];
        let mut dprefix: Vec<Option<Buf>> = vec![None; d];
        for k in 1..d {
            let block = (s.q_prefix(k) * s.ranks[k]) as u64;
            if k >= 2 {
                prefix[k] = Some(g.transient(&format!("{tag} P{k}"), c as u64 * block * f));
            }
            if mode.backward() {
                dprefix[k] = Some(g.transient(&format!("{tag} dP{k}"), c as u64 * block * f));
            }
        }
        let row = g.transient(&format!("{tag} rows"), (c * dim) as u64 * f);
        let drow = if mode.backward() {
            Some(g.transient(&format!("{tag} drows"), (c * dim) as u64 * f))
        } else {
            None
        };
        if mode.forward_out() {
            g.clear(format!("{tag} zero out"), Buf::from(&io.out));
        }
        if mode.backward() {
            for k in 0..d {
                g.clear(format!("{tag} zero grad {k}"), Buf::from(&self.grads[k]));
            }
        }
        if mode.backward() {
            for k in 1..d {
                if let Some(t) = &self.cores_t[k] {
                    record_transpose(
                        g,
                        format!("{tag} transpose core {k}"),
                        Buf::from(&self.cores[k]),
                        Buf::from(t),
                        s.p[k],
                        s.ranks[k],
                        s.q[k] * s.ranks[k + 1],
                    )?;
                }
            }
        }
        let digits = Buf::from(&io.digits);
        for (ci, params) in io.chunk_params.iter().enumerate() {
            let chunk = Buf::from(params);
            // Forward chain: P_{k+1} = P_k * G_k[i_k]; the last product is the row.
            let last_chain = if mode.forward_out() { d - 1 } else { d - 2 };
            for k in 1..=last_chain {
                let a = if k == 1 {
                    Buf::from(&self.cores[0])
                } else {
                    prefix[k].clone().expect("prefix")
                };
                let out = if k == d - 1 {
                    row.clone()
                } else {
                    prefix[k + 1].clone().expect("prefix")
                };
                self.record_product(
                    g,
                    io,
                    format!("{tag} c{ci} chain {k}"),
                    self.forward_product(k),
                    chunk.clone(),
                    a,
                    Buf::from(&self.cores[k]),
                    out,
                )?;
            }
            if mode.forward_out() {
                record_pool(
                    g,
                    format!("{tag} c{ci} pool"),
                    dim,
                    chunk.clone(),
                    Buf::from(&io.offsets),
                    Buf::from(&io.scale),
                    row.clone(),
                    Buf::from(&io.out),
                    io.bag_cap,
                )?;
            }
            if !mode.backward() {
                continue;
            }
            let drow = drow.clone().expect("drow");
            record_row_grad(
                g,
                format!("{tag} c{ci} row grad"),
                dim,
                chunk.clone(),
                Buf::from(&io.bag),
                Buf::from(&io.scale),
                Buf::from(&io.dout),
                drow.clone(),
                c,
            )?;
            let dp_next = |k: usize| {
                if k + 1 == d {
                    drow.clone()
                } else {
                    dprefix[k + 1].clone().expect("dprefix")
                }
            };
            // dP_k = dP_{k+1} * G_k[i_k]^T, from the last core down to core 1.
            for k in (1..d).rev() {
                // With a transposed copy the product reads G_k^T's contiguous rows.
                let b = match &self.cores_t[k] {
                    Some(t) => Buf::from(t),
                    None => Buf::from(&self.cores[k]),
                };
                self.record_product(
                    g,
                    io,
                    format!("{tag} c{ci} chain^T {k}"),
                    self.backward_product(k),
                    chunk.clone(),
                    dp_next(k),
                    b,
                    dprefix[k].clone().expect("dprefix"),
                )?;
            }
            // grad G_k[row] += sum over the row's lookups of P_k^T dP_{k+1}.
            for k in (0..d).rev() {
                let (src, pbuf) = match k {
                    0 => (PrefixSource::One, Buf::from(&self.cores[0])),
                    1 => (PrefixSource::Core0, Buf::from(&self.cores[0])),
                    _ => (PrefixSource::Scratch, prefix[k].clone().expect("prefix")),
                };
                let shape = CoreGradShape {
                    core: k,
                    rows: s.p[k],
                    qk: s.q_prefix(k),
                    rk: s.ranks[k],
                    nk: s.q[k] * s.ranks[k + 1],
                    prefix: src,
                };
                record_core_grad(
                    g,
                    format!("{tag} c{ci} core grad {k}"),
                    shape,
                    chunk.clone(),
                    digits.clone(),
                    Buf::from(&io.sorted),
                    Buf::from(&io.segments[k]),
                    pbuf,
                    dp_next(k),
                    Buf::from(&self.grads[k]),
                )?;
            }
        }
        if mode.backward() {
            let kind = match self.options.optimizer {
                Optimizer::None => None,
                Optimizer::Sgd { .. } => Some(UpdateKind::Sgd),
                Optimizer::Adagrad { .. } => Some(UpdateKind::Adagrad),
            };
            if let Some(kind) = kind {
                for k in 0..d {
                    record_update(
                        g,
                        &format!("{tag} update core {k}"),
                        kind,
                        Buf::from(&self.opt_params[k]),
                        Buf::from(&self.grads[k]),
                        Buf::from(&self.cores[k]),
                        Buf::from(&self.state[k]),
                        s.core_len(k),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Validates `bags` and uploads them (and `dout`) into `io`.
    fn upload(&self, io: &TableIo, bags: &Bags, dout: Option<&[f32]>) -> Result<()> {
        let hb = prepare(
            &self.shape,
            bags,
            self.options.pooling,
            io.nnz_cap,
            io.bag_cap,
            io.chunk,
        );
        let g = &self.gpu;
        for (ci, buf) in io.chunk_params.iter().enumerate() {
            let start = (ci * io.chunk).min(hb.nnz);
            let end = ((ci + 1) * io.chunk).min(hb.nnz);
            let p = ChunkParams {
                start: start as u32,
                len: (end - start) as u32,
                cap: io.nnz_cap as u32,
                num_bags: hb.num_bags as u32,
                index: ci as u32,
                _pad: [0; 3],
            };
            g.write(buf, &[p]);
        }
        g.write(&io.digits, &hb.digits);
        g.write(&io.bag, &hb.bag);
        g.write(&io.scale, &hb.scale);
        g.write(&io.offsets, &hb.offsets);
        g.write(&io.sorted, &hb.sorted);
        for (k, seg) in hb.segments.iter().enumerate() {
            g.write(&io.segments[k], seg);
        }
        for (k, pieces) in io.pieces.iter().enumerate() {
            if let Some((layout, buf)) = pieces {
                let cut = cut_pieces(
                    &hb,
                    k,
                    self.shape.p[k],
                    io.nnz_cap,
                    io.chunk,
                    layout.len,
                    layout.per_chunk,
                );
                g.write(buf, &cut);
            }
        }
        if let Some(dout) = dout {
            g.write(&io.dout, dout);
        }
        Ok(())
    }

    fn check_dout(&self, bags: &Bags, dout: &[f32]) -> Result<()> {
        let want = bags.num_bags() * self.shape.dim();
        if dout.len() != want {
            return Err(Error::input(
                None,
                format!(
                    "grad_output has {} values; {} bags x D = {} needs {want}",
                    dout.len(),
                    bags.num_bags(),
                    self.shape.dim()
                ),
            ));
        }
        if let Some(i) = dout.iter().position(|x| !x.is_finite()) {
            return Err(Error::input(
                None,
                format!("grad_output at position {i} is {}", dout[i]),
            ));
        }
        Ok(())
    }

    /// Validates the call, uploads it into the plan for its capacities (built on first use) and
    /// replays that plan: one submit, no wait. Returns the plan's key.
    fn submit(
        &mut self,
        bags: &Bags,
        dout: Option<&[f32]>,
        mode: Mode,
    ) -> Result<(Mode, usize, usize)> {
        bags.validate(&self.shape, self.options.pooling)?;
        if let Some(dout) = dout {
            self.check_dout(bags, dout)?;
        } else if mode.backward() {
            return Err(Error::input(None, "a backward call needs grad_output"));
        }
        let key = (mode, capacity(bags.nnz()), capacity(bags.num_bags()));
        if !self.plans.contains_key(&key) {
            if self.plans.len() >= 8 {
                self.plans.clear();
            }
            let io = self.make_io(key.1, key.2);
            let mut g = GraphBuilder::new(&self.gpu);
            self.record(&mut g, &io, mode, "tt")?;
            let plan = g.build()?;
            self.plans.insert(
                key,
                CallPlan {
                    plan,
                    ios: vec![io],
                },
            );
        }
        let cp = &self.plans[&key];
        self.upload(&cp.ios[0], bags, dout)?;
        cp.plan.run()?;
        Ok(key)
    }

    fn call(&mut self, bags: &Bags, dout: Option<&[f32]>, mode: Mode) -> Result<Option<Vec<f32>>> {
        let key = self.submit(bags, dout, mode)?;
        if mode.forward_out() {
            let out = self.gpu.read_f32(
                &self.plans[&key].ios[0].out,
                0,
                bags.num_bags() * self.shape.dim(),
            )?;
            Ok(Some(out))
        } else {
            self.gpu.wait()?;
            Ok(None)
        }
    }

    /// Pooled rows of every bag, `[B, D]` row-major.
    pub fn forward(&mut self, bags: &Bags) -> Result<Vec<f32>> {
        Ok(self
            .call(bags, None, Mode::Forward)?
            .expect("forward output"))
    }

    /// Gradient of `sum(grad_output * forward(bags))` into the dense core gradients, then the
    /// fused update (if any). `grad_output` is `[B, D]`.
    pub fn backward(&mut self, bags: &Bags, grad_output: &[f32]) -> Result<()> {
        self.call(bags, Some(grad_output), Mode::Backward)
            .map(|_| ())
    }

    /// Forward and backward with update in one submit (the training step of a table alone);
    /// returns the forward output computed before the update.
    pub fn forward_backward(&mut self, bags: &Bags, grad_output: &[f32]) -> Result<Vec<f32>> {
        Ok(self
            .call(bags, Some(grad_output), Mode::ForwardBackward)?
            .expect("forward output"))
    }

    /// Runs the plan of `mode` for `bags` without reading anything back (benchmarks).
    pub fn replay_only(
        &mut self,
        bags: &Bags,
        grad_output: Option<&[f32]>,
        mode: Mode,
    ) -> Result<()> {
        self.submit(bags, grad_output, mode).map(|_| ())
    }

    /// Per-node GPU times of the plan of `mode` for `bags` (needs timestamp queries).
    pub fn profile(
        &mut self,
        bags: &Bags,
        grad_output: Option<&[f32]>,
        mode: Mode,
    ) -> Result<Vec<crate::graph::NodeTime>> {
        let key = self.submit(bags, grad_output, mode)?;
        self.gpu.wait()?;
        self.plans[&key].plan.run_profiled()
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
        if let Some(i) = cores.iter().flatten().position(|x| !x.is_finite()) {
            return Err(Error::shape(
                None,
                format!("core values must be finite; element {i} (over all cores) is not"),
            ));
        }
        for (k, core) in cores.iter().enumerate() {
            self.gpu.write(&self.cores[k], core);
            if matches!(self.options.optimizer, Optimizer::Adagrad { .. }) {
                self.gpu
                    .write(&self.state[k], &vec![0f32; self.shape.core_len(k)]);
            }
        }
        Ok(())
    }

    /// The full N x D matrix, computed on the GPU by the forward kernels; for small tables
    /// (at most 2^26 values).
    pub fn full_weight(&mut self) -> Result<Vec<f32>> {
        let n = self.shape.num_embeddings as usize;
        let total = n as u128 * self.shape.dim() as u128;
        if total > 1 << 26 {
            return Err(Error::input(
                None,
                format!(
                    "full_weight of {n} x {} is too large; it is meant for small tables",
                    self.shape.dim()
                ),
            ));
        }
        let idx: Vec<u32> = (0..n as u32).collect();
        let off: Vec<u32> = (0..=n as u32).collect();
        // Sum pooling with bags of one row is the row itself, whatever the table's pooling.
        let pooling = self.options.pooling;
        self.options.pooling = Pooling::Sum;
        let r = self.forward(&Bags::new(&idx, &off));
        self.options.pooling = pooling;
        r
    }
}

impl TtEmbeddingBag {
    /// Saves the cores as safetensors in the reference layout (atomically).
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        crate::tt::checkpoint::save_cores(path.as_ref(), &self.shape, &self.cores()?)
    }

    /// Loads a table saved by [`TtEmbeddingBag::save`] (or by PyTorch in the same layout).
    pub fn load(gpu: &Gpu, path: impl AsRef<std::path::Path>, options: TtOptions) -> Result<Self> {
        let (shape, cores) = crate::tt::checkpoint::load_cores(path.as_ref())?;
        Self::from_cores(gpu, shape, &cores, options)
    }
}

/// Several TT tables (shapes may differ) run in one call: one plan with every table's nodes, one
/// submit. This is how a DLRM step looks up its 26 tables.
pub struct TtTableBatch {
    gpu: Gpu,
    tables: Vec<TtEmbeddingBag>,
    plans: HashMap<(Mode, Vec<(usize, usize)>), CallPlan>,
}

impl TtTableBatch {
    /// Takes ownership of `tables`; they must share one [`Gpu`].
    pub fn new(tables: Vec<TtEmbeddingBag>) -> Result<Self> {
        let gpu = tables
            .first()
            .ok_or_else(|| Error::input(None, "a table batch needs at least one table"))?
            .gpu
            .clone();
        for (t, table) in tables.iter().enumerate() {
            if table.gpu.device() != gpu.device() {
                return Err(Error::input(
                    Some(t),
                    "all tables of a batch must live on the same device",
                ));
            }
        }
        Ok(TtTableBatch {
            gpu,
            tables,
            plans: HashMap::new(),
        })
    }

    pub fn tables(&self) -> &[TtEmbeddingBag] {
        &self.tables
    }
    pub fn tables_mut(&mut self) -> &mut [TtEmbeddingBag] {
        &mut self.tables
    }

    fn call(
        &mut self,
        bags: &[Bags],
        douts: Option<&[&[f32]]>,
        mode: Mode,
    ) -> Result<Option<Vec<Vec<f32>>>> {
        if bags.len() != self.tables.len() {
            return Err(Error::input(
                None,
                format!("{} batches for {} tables", bags.len(), self.tables.len()),
            ));
        }
        if let Some(d) = douts {
            if d.len() != self.tables.len() {
                return Err(Error::input(
                    None,
                    format!("{} grad_outputs for {} tables", d.len(), self.tables.len()),
                ));
            }
        }
        // Validate everything before any GPU work; errors name the table.
        for (t, (table, b)) in self.tables.iter().zip(bags).enumerate() {
            b.validate(&table.shape, table.options.pooling)
                .map_err(|e| e.with_table(t))?;
            if let Some(d) = douts {
                table.check_dout(b, d[t]).map_err(|e| e.with_table(t))?;
            }
        }
        let caps: Vec<(usize, usize)> = bags
            .iter()
            .map(|b| (capacity(b.nnz()), capacity(b.num_bags())))
            .collect();
        let key = (mode, caps.clone());
        if !self.plans.contains_key(&key) {
            if self.plans.len() >= 8 {
                self.plans.clear();
            }
            let mut g = GraphBuilder::new(&self.gpu);
            let mut ios = Vec::new();
            for (t, (table, &(nc, bc))) in self.tables.iter().zip(&caps).enumerate() {
                let io = table.make_io(nc, bc);
                table.record(&mut g, &io, mode, &format!("table {t}"))?;
                ios.push(io);
            }
            self.plans.insert(
                key.clone(),
                CallPlan {
                    plan: g.build()?,
                    ios,
                },
            );
        }
        let cp = &self.plans[&key];
        for (t, table) in self.tables.iter().enumerate() {
            table.upload(&cp.ios[t], &bags[t], douts.map(|d| d[t]))?;
        }
        cp.plan.run()?;
        if !mode.forward_out() {
            self.gpu.wait()?;
            return Ok(None);
        }
        let mut outs = Vec::new();
        for (t, table) in self.tables.iter().enumerate() {
            outs.push(self.gpu.read_f32(
                &cp.ios[t].out,
                0,
                bags[t].num_bags() * table.shape.dim(),
            )?);
        }
        Ok(Some(outs))
    }

    /// Pooled outputs of every table, one submit.
    pub fn forward(&mut self, bags: &[Bags]) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .call(bags, None, Mode::Forward)?
            .expect("forward output"))
    }
    /// Backward (with each table's fused update) of every table, one submit.
    pub fn backward(&mut self, bags: &[Bags], grad_outputs: &[&[f32]]) -> Result<()> {
        self.call(bags, Some(grad_outputs), Mode::Backward)
            .map(|_| ())
    }
    /// Forward and backward of every table, one submit.
    pub fn forward_backward(
        &mut self,
        bags: &[Bags],
        grad_outputs: &[&[f32]],
    ) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .call(bags, Some(grad_outputs), Mode::ForwardBackward)?
            .expect("forward output"))
    }
}
