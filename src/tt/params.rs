//! The GPU-resident state of a TT table, or of a group of TT tables with the same column factors
//! and ranks stored as one (core k of the group holds every table's rows of core k, table after
//! table, so all the group's lookups run in the same dispatches): cores, their dense gradients,
//! optimizer state, the optimizer's parameters and the row cache ([`TtCache`]) where the options
//! ask for one. Recording lookups against it is [`crate::tt::TtLookups`]'s job, so tables can
//! take part in any step graph (their own, or a whole model's); the cache's refresh, which
//! records lookups, is `tt::refresh`'s.

use crate::cache::CacheStats;
use crate::error::{Error, Result};
use crate::gpu::shaders::CorePrecision;
use crate::gpu::Gpu;
use crate::graph::{Buf, GraphBuilder};
use crate::kernels::optim::{record_update_as, UpdateKind};
use crate::kernels::tt::TtKernels;
use crate::tt::init::init_cores;
use crate::tt::options::{Optimizer, TtOptions};
use crate::tt::row_cache::TtCache;
use crate::tt_shape::{GroupTable, TtShape};

/// Cores, gradients and optimizer state of a TT table or group of tables, in GPU buffers.
pub struct TtParams {
    gpu: Gpu,
    /// The group's shape: p_k = rows of core k over all tables (the only table's shape for a
    /// single table).
    shape: TtShape,
    tables: Vec<GroupTable>,
    options: TtOptions,
    /// The kernel variants, fixed at creation (`options.kernels` or the adapter's).
    kernels: TtKernels,
    cores: Vec<wgpu::Buffer>,
    /// Per-slice transposed copies of cores 1..d-1, refreshed by each backward: the transposed
    /// chain then reads contiguous rows (None where the shapes do not allow the vec4 path).
    cores_t: Vec<Option<wgpu::Buffer>>,
    grads: Vec<wgpu::Buffer>,
    /// Adagrad accumulators (a 16-byte placeholder per core otherwise).
    state: Vec<wgpu::Buffer>,
    opt_params: Vec<wgpu::Buffer>,
    /// The LFU row cache, where `options.cache` asks for one.
    cache: Option<TtCache>,
}

impl std::fmt::Debug for TtParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtParams")
            .field("shape", &self.shape)
            .field("options", &self.options)
            .field("kernels", &self.kernels)
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

/// `values` as stored at `precision` (f16: rounded to nearest, ties to even, as the `half` crate
/// and the GPU's f32 -> f16 conversion do), as bytes.
pub(crate) fn stored_bytes(precision: CorePrecision, values: &[f32]) -> Vec<u8> {
    match precision {
        CorePrecision::F32 => bytemuck::cast_slice(values).to_vec(),
        CorePrecision::F16 => values
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
            .collect(),
    }
}

/// [`stored_bytes`] padded with zeros to whole 4-byte words (what a buffer write takes).
fn stored_words(precision: CorePrecision, values: &[f32]) -> Vec<u8> {
    let mut bytes = stored_bytes(precision, values);
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    bytes
}

/// Values stored at `precision` read back as f32 (f16 widens exactly).
pub(crate) fn stored_values(precision: CorePrecision, bytes: &[u8]) -> Vec<f32> {
    match precision {
        CorePrecision::F32 => bytemuck::pod_collect_to_vec(bytes),
        CorePrecision::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect(),
    }
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
        let tables = vec![GroupTable {
            shape: shape.clone(),
            bases: vec![0; shape.d()],
        }];
        Self::build(gpu, shape, tables, cores, options)
    }

    /// A group of tables (same number of cores, column factors and ranks) stored as one; table
    /// t's cores drawn by `options.init` from seed `options.seed + t`.
    pub fn new_group(gpu: &Gpu, shapes: Vec<TtShape>, options: TtOptions) -> Result<Self> {
        let cores: Vec<Vec<Vec<f32>>> = shapes
            .iter()
            .enumerate()
            .map(|(t, s)| init_cores(s, options.init, options.seed.wrapping_add(t as u64)))
            .collect();
        Self::group_from_cores(gpu, shapes, &cores, options)
    }

    /// A group of tables with the given cores (`cores[t][k]`: table t's core k).
    pub fn group_from_cores(
        gpu: &Gpu,
        shapes: Vec<TtShape>,
        cores: &[Vec<Vec<f32>>],
        options: TtOptions,
    ) -> Result<Self> {
        let first = shapes
            .first()
            .ok_or_else(|| Error::shape(None, "a TT group needs at least one table"))?
            .clone();
        if cores.len() != shapes.len() {
            return Err(Error::shape(
                None,
                format!("{} core sets for {} tables", cores.len(), shapes.len()),
            ));
        }
        let d = first.d();
        let mut rows = vec![0usize; d];
        let mut tables = Vec::with_capacity(shapes.len());
        for (t, s) in shapes.into_iter().enumerate() {
            if s.q != first.q || s.ranks != first.ranks {
                return Err(Error::shape(
                    Some(t),
                    format!(
                        "a TT group's tables share column factors and ranks: q {:?} ranks {:?} against table 0's q {:?} ranks {:?}",
                        s.q, s.ranks, first.q, first.ranks
                    ),
                ));
            }
            s.check_cores(&cores[t]).map_err(|e| e.with_table(t))?;
            tables.push(GroupTable {
                bases: rows.clone(),
                shape: s.clone(),
            });
            for (r, p) in rows.iter_mut().zip(&s.p) {
                *r += p;
            }
        }
        let padded: u64 = rows.iter().map(|&r| r as u64).product();
        let interior = &first.ranks[1..d];
        let shape = TtShape::new(padded, &rows, &first.q, interior)?;
        let group_cores: Vec<Vec<f32>> = (0..d)
            .map(|k| cores.iter().flat_map(|c| c[k].iter().copied()).collect())
            .collect();
        Self::build(gpu, shape, tables, &group_cores, options)
    }

    fn build(
        gpu: &Gpu,
        shape: TtShape,
        tables: Vec<GroupTable>,
        cores: &[Vec<f32>],
        options: TtOptions,
    ) -> Result<Self> {
        shape.check_cores(cores)?;
        check_finite(cores)?;
        if let Some(0) = options.max_chunk_lookups {
            return Err(Error::input(None, "max_chunk_lookups is 0"));
        }
        gpu.check_precision(options.precision, "--tt-precision")?;
        let elem = options.precision.bytes();
        let d = shape.d();
        for k in 0..d {
            let bytes = shape.core_len(k) as u64 * elem;
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
            .map(|k| {
                let bytes = stored_words(options.precision, &cores[k]);
                let buf = gpu.storage(&format!("tt core {k}"), bytes.len() as u64);
                if !bytes.is_empty() {
                    gpu.queue().write_buffer(&buf, 0, &bytes);
                }
                buf
            })
            .collect();
        let cores_t = (0..d)
            .map(|k| {
                transposed_backward(&shape, k).then(|| {
                    gpu.storage(
                        &format!("tt core {k} transposed"),
                        shape.core_len(k) as u64 * elem,
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
        let cache =
            match options.cache {
                None => None,
                Some(_) if options.optimizer == Optimizer::None => return Err(Error::input(
                    None,
                    "a TT cache trains its rows directly: it needs the SGD or Adagrad optimizer",
                )),
                Some(config) => Some(TtCache::new(
                    gpu,
                    config,
                    &tables,
                    shape.dim(),
                    adagrad,
                    options.precision,
                )?),
            };
        let t = TtParams {
            gpu: gpu.clone(),
            shape,
            tables,
            kernels: options
                .kernels
                .unwrap_or_else(|| TtKernels::for_adapter(gpu)),
            options,
            cores: cores_buf,
            cores_t,
            grads,
            state,
            opt_params,
            cache,
        };
        t.write_opt_params();
        Ok(t)
    }

    fn write_opt_params(&self) {
        for k in 0..self.shape.d() {
            let p = self.options.optimizer.params(self.shape.core_len(k));
            self.gpu.write(&self.opt_params[k], &[p]);
        }
    }

    /// The shape of the cores as stored (a group's p_k sum its tables' p_k).
    pub fn shape(&self) -> &TtShape {
        &self.shape
    }
    /// The tables stored in these cores, with where their rows start.
    #[doc(hidden)]
    pub fn tables(&self) -> &[GroupTable] {
        &self.tables
    }

    fn table(&self, t: usize) -> Result<&GroupTable> {
        self.tables.get(t).ok_or_else(|| {
            Error::input(
                None,
                format!("table {t} of a TT group of {}", self.tables.len()),
            )
        })
    }

    /// Table `t`'s part of core `k` of `bufs` (cores, gradients or state). Like the other
    /// per-core calls, its errors leave the table unnamed: `t` indexes this group, and the
    /// caller knows the table's number in its model.
    fn read_table_core(&self, bufs: &[wgpu::Buffer], t: usize, k: usize) -> Result<Vec<f32>> {
        let tb = self.table(t)?;
        if k >= self.shape.d() {
            return Err(Error::input(
                None,
                format!("no core {k} in a {}-core table", self.shape.d()),
            ));
        }
        let cols = self.shape.core_cols(k);
        self.gpu
            .read_f32(&bufs[k], tb.bases[k] * cols, tb.shape.core_len(k))
    }

    /// Table `t`'s part of core `k`, read back as f32 from its storage precision.
    fn read_table_core_values(&self, t: usize, k: usize) -> Result<Vec<f32>> {
        let tb = self.table(t)?;
        if k >= self.shape.d() {
            return Err(Error::input(
                None,
                format!("no core {k} in a {}-core table", self.shape.d()),
            ));
        }
        let elem = self.options.precision.bytes();
        let at = (tb.bases[k] * self.shape.core_cols(k)) as u64 * elem;
        let len = tb.shape.core_len(k) as u64 * elem;
        // Copies start on 4-byte boundaries: an f16 part may start mid-word.
        let lead = at % 4;
        let bytes = self.gpu.read_bytes(&self.cores[k], at - lead, len + lead)?;
        Ok(stored_values(
            self.options.precision,
            &bytes[lead as usize..],
        ))
    }

    /// How the cores are stored (f32 or f16).
    pub fn precision(&self) -> CorePrecision {
        self.options.precision
    }

    /// Bytes of the cores as stored on the GPU.
    pub fn core_bytes(&self) -> u64 {
        self.num_params() as u64 * self.options.precision.bytes()
    }

    /// Table `t`'s cores (the reference layout of that table alone).
    pub fn table_cores(&self, t: usize) -> Result<Vec<Vec<f32>>> {
        (0..self.shape.d())
            .map(|k| self.read_table_core_values(t, k))
            .collect()
    }
    /// Table `t`'s core `k` alone (one read, for checkpoints).
    pub fn table_core(&self, t: usize, k: usize) -> Result<Vec<f32>> {
        self.read_table_core_values(t, k)
    }
    /// Table `t`'s dense core gradients of the last backward.
    pub fn table_grads(&self, t: usize) -> Result<Vec<Vec<f32>>> {
        (0..self.shape.d())
            .map(|k| self.read_table_core(&self.grads, t, k))
            .collect()
    }
    /// Table `t`'s dense gradient of core `k` of the last backward.
    pub fn table_grad(&self, t: usize, k: usize) -> Result<Vec<f32>> {
        self.read_table_core(&self.grads, t, k)
    }

    /// Replaces table `t`'s cores (and resets its Adagrad state).
    pub fn set_table_cores(&mut self, t: usize, cores: &[Vec<f32>]) -> Result<()> {
        let tb = self.table(t)?.clone();
        tb.shape.check_cores(cores).map_err(|e| e.with_table(t))?;
        check_finite(cores).map_err(|e| e.with_table(t))?;
        for (k, core) in cores.iter().enumerate() {
            self.write_table_core(&tb, k, core)?;
        }
        Ok(())
    }

    /// Replaces table `t`'s core `k` alone (and resets its Adagrad state).
    pub fn set_table_core(&mut self, t: usize, k: usize, core: &[f32]) -> Result<()> {
        let tb = self.table(t)?.clone();
        if k >= self.shape.d() {
            return Err(Error::input(
                None,
                format!("no core {k} in a {}-core table", self.shape.d()),
            ));
        }
        if core.len() != tb.shape.core_len(k) {
            let [r, c] = tb.shape.core_shape(k);
            return Err(Error::shape(
                None,
                format!(
                    "core {k} has {} elements; shape [{r}, {c}] needs {}",
                    core.len(),
                    tb.shape.core_len(k)
                ),
            ));
        }
        if let Some(i) = core.iter().position(|x| !x.is_finite()) {
            return Err(Error::shape(
                None,
                format!("core values must be finite; element {i} of core {k} is not"),
            ));
        }
        self.write_table_core(&tb, k, core)
    }

    /// Writes `core` as `tb`'s part of core `k` and zeroes that part's Adagrad state.
    fn write_table_core(&self, tb: &GroupTable, k: usize, core: &[f32]) -> Result<()> {
        let at = (tb.bases[k] * self.shape.core_cols(k)) as u64;
        let queue = self.gpu.queue();
        match self.options.precision {
            CorePrecision::F32 => {
                queue.write_buffer(&self.cores[k], at * 4, bytemuck::cast_slice(core))
            }
            // Writes are whole 4-byte words: the part goes into the core's stored bytes,
            // which are written back whole (loading a checkpoint, not a training step).
            CorePrecision::F16 => {
                let len = self.shape.core_len(k) as u64 * 2;
                let mut all = self.gpu.read_bytes(&self.cores[k], 0, len)?;
                let part = stored_bytes(CorePrecision::F16, core);
                all[at as usize * 2..at as usize * 2 + part.len()].copy_from_slice(&part);
                all.resize(all.len().next_multiple_of(4), 0);
                queue.write_buffer(&self.cores[k], 0, &all);
            }
        }
        if matches!(self.options.optimizer, Optimizer::Adagrad { .. }) {
            queue.write_buffer(
                &self.state[k],
                at * 4,
                bytemuck::cast_slice(&vec![0f32; core.len()]),
            );
        }
        Ok(())
    }
    pub fn options(&self) -> &TtOptions {
        &self.options
    }
    /// The table's LFU cache, where its options ask for one.
    pub fn cache(&self) -> Option<&TtCache> {
        self.cache.as_ref()
    }
    pub(crate) fn cache_mut(&mut self) -> Option<&mut TtCache> {
        self.cache.as_mut()
    }

    /// The cache's statistics since the table was made: lookups, hits and dropped counts
    /// summed over every step (read from the GPU, one wait), members and occupied hash entries
    /// as of the last refresh.
    pub fn cache_stats(&mut self) -> Result<CacheStats> {
        let gpu = self.gpu.clone();
        self.cache
            .as_mut()
            .ok_or_else(|| Error::input(None, "this TT table has no cache"))?
            .read_stats(&gpu)
    }

    /// The cached rows by key (read from the GPU): the members of the last refresh and their
    /// current (trained) values.
    pub fn cache_rows(&self) -> Result<Vec<(u32, Vec<f32>)>> {
        self.cache
            .as_ref()
            .ok_or_else(|| Error::input(None, "this TT table has no cache"))?
            .read_rows(&self.gpu, self.shape.dim())
    }

    /// The kernel variants this table's steps are recorded with.
    pub fn kernels(&self) -> &TtKernels {
        &self.kernels
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
    #[doc(hidden)]
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
        self.options.optimizer.set_learning_rate(lr);
        self.write_opt_params();
    }

    /// The cores, read back.
    pub fn cores(&self) -> Result<Vec<Vec<f32>>> {
        let elem = self.options.precision.bytes();
        (0..self.shape.d())
            .map(|k| {
                let bytes =
                    self.gpu
                        .read_bytes(&self.cores[k], 0, self.shape.core_len(k) as u64 * elem)?;
                Ok(stored_values(self.options.precision, &bytes))
            })
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
            let bytes = stored_words(self.options.precision, core);
            if !bytes.is_empty() {
                self.gpu.queue().write_buffer(&self.cores[k], 0, &bytes);
            }
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
    #[doc(hidden)]
    pub fn record_update(&self, g: &mut GraphBuilder, tag: &str) -> Result<()> {
        let Some(kind) = self.update_kind() else {
            return Ok(());
        };
        for k in 0..self.shape.d() {
            record_update_as(
                g,
                &format!("{tag} update core {k}"),
                kind,
                Buf::from(&self.opt_params[k]),
                Buf::from(&self.grads[k]),
                Buf::from(&self.cores[k]),
                Buf::from(&self.state[k]),
                self.shape.core_len(k),
                self.options.precision,
            )?;
        }
        Ok(())
    }
}
